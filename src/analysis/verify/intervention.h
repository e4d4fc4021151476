/* intervention.h — ablations and steering as forward-pass hook callbacks.
 *
 * A target is a component of the model:
 *   head    L.H   attention head H of layer L: its slice of attn.hook_z (dh columns),
 *                 i.e. what the head writes before o_proj
 *   mlp     L     the MLP of layer L: hook_mlp_out, what it adds to the residual stream
 *   neuron  L:I   column I of mlp.hook_post (silu(gate)·up, the input of down_proj)
 *   feature HOOK:ID  latent ID of the run's SAE at capture point HOOK (results/sae_*),
 *                 read in the SAE's own (SAELens) rule from the activation x at HOOK
 * and a mode says what it becomes, at every position of every sequence:
 *   zero      the component's value set to 0 (a feature: its activation a set to 0)
 *   mean      its mean over the statistics rows (below)
 *   resample  its value at a statistics row drawn by a seeded hash of (seed, sequence,
 *             position), the same for any number of ranks
 *   steer α   heads, MLPs, neurons: their value multiplied by α; features:
 *             x += α·W_dec[ID] (W_dec of the SAELens export, raw activation space)
 * A feature's ablation changes x by (a' − a)·W_dec[ID], a' its new activation, so the
 * SAE's reconstruction error stays in x. Several features at one point are read from
 * the same x (before any of them is edited) and their edits added.
 *
 * Statistics (mean, resample) come from the clean model run over given corpus
 * sequences split over the ranks: every position but the first of each sequence (the
 * rows the activation store masks); sums reduced in f64, so the mean does not depend
 * on the number of ranks; the resample bank is every `stride`-th such row in global
 * order (at most IV_BANK_ROWS), gathered in that order.
 */
#ifndef TP_INTERVENTION_H
#define TP_INTERVENTION_H

#include "core/error.h"
#include "data/sequences.h"
#include "model/forward.h"
#include "model/hooks.h"

#include <jansson.h>
#include <stdbool.h>

typedef enum { IV_HEAD = 0, IV_MLP, IV_NEURON, IV_FEATURE } iv_kind;
typedef enum { IV_ZERO = 0, IV_MEAN, IV_RESAMPLE, IV_STEER } iv_mode;

#define IV_BANK_ROWS 2048

typedef struct {
    iv_kind kind;
    int layer;
    int index;                 /* head, neuron or feature id; -1 for an MLP */
    char hook[96];             /* features: the SAE's capture point (canonical name) */
} iv_target;

typedef struct iv_set iv_set;

/* Appends the targets of the command-line lists (each may be NULL): heads "1.3,2.0",
 * features "blocks.2.hook_resid_post:17,...", mlps "1,3", neurons "2:101,...". Every
 * index is checked against the model; an error names the item and the valid range. */
tp_status iv_parse(const tp_model_config *c, const char *heads, const char *features, const char *mlps,
                   const char *neurons, iv_target **targets, int *n);

/* A set of targets under one mode (alpha: the steering factor, IV_STEER only).
 * Feature targets load the SAE of their hook from sae_dir_of(hook) (the run's
 * results/sae_* folder), an error naming the folder when absent or when its d_in is
 * not the point's width. */
typedef tp_status (*iv_sae_dir_fn)(char *buf, size_t n, const char *hook, void *user);
tp_status iv_new(const tp_model *m, const iv_target *targets, int n, iv_mode mode, double alpha,
                 iv_sae_dir_fn sae_dir_of, void *user, iv_set **out);
void iv_free(iv_set *s);

bool iv_needs_statistics(const iv_set *s);   /* mean or resample */
/* Runs the clean model over `seqs` (the same on every rank; each rank its contiguous
 * share, `batch` at a time) and keeps the statistics. Collective. */
tp_status iv_collect_statistics(iv_set *s, tp_forward *f, const tp_sequences *seqs, int batch, uint64_t seed);

/* Gives dst the statistics src collected for the same targets (kind, layer, index,
 * hook), as if dst had collected them on the same sequences with the same seed: one
 * collection over every target serves many sets. An error when a target of dst is
 * not in src or src has none. Local (no communication). */
tp_status iv_share_statistics(iv_set *dst, const iv_set *src);

/* Adds the editing callbacks to h. Before each forward call, iv_set_batch names the
 * global index of each sequence in the call (resample's hash uses it). */
tp_status iv_add_hooks(iv_set *s, tp_hooks *h);
void iv_set_batch(iv_set *s, const int64_t *seq_ids, int nseq);

/* Target i's statistics (after iv_collect_statistics): its mean [width] and resample
 * bank [bank_rows, width]. For tests and reports. */
void iv_statistics(const iv_set *s, int i, const float **mean, const float **bank, int64_t *bank_rows, int *width);

/* {"mode", "alpha"?, "targets": [...], "statistics": {...}?} (new reference). */
json_t *iv_describe(const iv_set *s);
const char *iv_mode_name(iv_mode m);
tp_status iv_mode_parse(const char *text, iv_mode *out);

#endif
