/* sae_phase.h — phase 4: sparse autoencoders trained data-parallel on the store's
 * rows, evaluated, exported in the SAELens layout, and catalogued (docs/sae.md).
 *
 * One SAE per selected capture point (sae.hooks); all of them train in one pass over
 * the rows: row_stream.h gives the same shuffled global batches for any number of
 * ranks, each rank computes the gradient of its share of a batch, one MPI_Allreduce
 * sums it, and every rank takes the same Adam step (sae.h). Rank 0 writes.
 *
 * Resume: every sae.checkpoint_every steps rank 0 writes each SAE's full state
 * (checkpoints/sae/<name>/checkpoint-<step>.safetensors: weights, Adam moments, step,
 * RNG, dead-latent counters) and then checkpoints/sae/checkpoint.json naming that step and the data
 * position; a rerun with the same configuration continues from there and ends at the
 * weights an uninterrupted run reaches.
 *
 * Held out: whole documents, stratified over the corpus domains (row_stream.h); FVU,
 * explained variance and L0 are measured on their rows, CE-loss recovered and KL on
 * their text. The features catalog (density, dead and dense latents, contexts,
 * domain profiles) covers every unmasked row of the store, each rank scanning its
 * share. The summary says how many documents and rows of each domain each number
 * rests on ("coverage").
 *
 * Outputs: results/sae_layer_<L>/{cfg.json, sae_weights.safetensors,
 * sparsity.safetensors} (sae_export.h: what SAELens loads), results/sae_summary.json
 * (training curve, held-out evaluation, coverage), results/features_catalog.json and
 * its index; training checkpoints under checkpoints/sae/.
 */
#ifndef TP_SAE_PHASE_H
#define TP_SAE_PHASE_H

#include "analysis/hook_select.h"
#include "analysis/sae/sae.h"
#include "core/config.h"
#include "core/error.h"
#include "phase.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

/* The sae.* section, typed. */
typedef struct {
    bool skip;                          /* sae.skip */
    hook_request hooks;                 /* sae.hooks with `layers` */
    sae_arch arch;                      /* sae.architecture */
    int64_t expansion, hidden_dim;      /* d_sae = hidden_dim, or expansion x d */
    int64_t k;                          /* sae.k */
    const char *k_origin;
    int64_t aux_k, dead_tokens;
    double l1_coefficient, learning_rate;
    int64_t num_epochs, batch_size;
    uint64_t seed;
    bool b_dec_auto;                    /* sae.b_dec_init = auto: the recipe's */
    sae_bdec_init b_dec_init;
    int64_t checkpoint_every, chunk_rows, window_chunks;
    double eval_fraction;
    int64_t catalog_top_k, catalog_context, catalog_max_detailed;
    int64_t eval_num_samples;           /* sae.eval.num_samples */
} sae_settings;

extern const tp_cfg_section sae_section;
extern const tp_phase sae_phase;
tp_status sae_settings_read(const tp_config *cfg, sae_settings *out);
tp_status sae_phase_run(const tp_config *cfg, const char *run_dir);

/* checkpoints/sae/checkpoint.json as a resume reads it, checked like user input
 * against the run it would resume (shape: E epochs of W windows, window_rows(user,
 * e, w) rows each, B rows a batch) and its hooks[0..n).
 * TP_OK: present = 0 when there is no file; else the position (a batch that exists,
 * step = the batches before it) and, for each hook it records, last[i] = that
 * step's metrics and curve[i] a new reference to the curve so far (the caller gives
 * last and curve, n entries each, curve NULL-initialised, and decrefs them).
 * An error (present = 1), the message naming the file and the field: not JSON,
 * another configuration (key), a field missing, of the wrong type or out of range,
 * an unknown or repeated hook; nothing is filled in then. */
typedef struct {
    int64_t epochs, windows, batch;
    int64_t (*window_rows)(void *user, int64_t epoch, int64_t window);
    void *user;
} sae_ck_shape;
typedef struct {
    bool present;
    int64_t step, epoch, window, batch;
    sae_metrics *last;
    json_t **curve;
} sae_checkpoint;
tp_status sae_checkpoint_read(const char *path, const char *key, const char *const *hooks, int n,
                              const sae_ck_shape *shape, sae_checkpoint *out);

#endif
