/* patch.h — activation patching and causal tracing (`transpolmo circuits patch`).
 *
 * Activation patching (TransformerLens patching.py, get_act_patch_*): run a clean
 * prompt and a corrupted prompt of the same token length; for each cell write the
 * clean activation into the corrupted run and measure
 *     m = (LD_patched − LD_corr) / (LD_clean − LD_corr),
 *     LD = logit(target) − logit(distractor) at the last position.
 * Cells: resid_pre, attn_out, mlp_out per (layer, position) — the clean row of
 * blocks.L.hook_resid_pre / hook_attn_out / hook_mlp_out at that position; z per
 * (layer, head) — the clean attn.hook_z of that head at every position
 * (get_act_patch_attn_head_out_all_pos). m is 1 where a cell restores the clean
 * prediction and 0 where it changes nothing.
 *
 * Causal tracing (Meng et al. 2022, ROME, causal_trace.py): the corrupted run is the
 * clean prompt with Gaussian noise added to the embeddings of chosen tokens (std
 * 3 × the embedding matrix's std); each cell restores one clean state; the metric is
 * p(target) at the last position (softmax of the logits), averaged over noise
 * samples, and its normalized form (p̄_patched − p̄_corr) / (p_clean − p̄_corr).
 *
 * How the work is shared: the clean run is made once and its activations kept per
 * layer (resid_pre, attn_out, mlp_out, z); each corrupted run keeps its resid_pre,
 * rotated keys and values per layer. A patched run starts at the patched layer from
 * the corrupted residual stream (forward_run_from); a cell at position p runs
 * positions p.. only, attending to the corrupted keys and values before p (causal
 * attention: they cannot change), the final layer runs past its keys and values for
 * the last position only, and a cell after attention in the final layer runs the last
 * position alone. The cells of one layer and sweep run as one varlen
 * batch, each cell a sequence of its own patched at its own rows (resid_pre in the
 * input, the others by an editing hook). Batches are dealt round-robin to the MPI ranks and
 * the values summed onto every rank. The batches do not depend on the number of
 * ranks, so with the same threads per rank the values are the same bits for any
 * number of ranks; other batch sizes or thread counts move them by GEMM blocking
 * only (~1e-7 relative with OpenBLAS, none with the AVX-512 kernel; docs/patching.md).
 */
#ifndef TP_PATCH_H
#define TP_PATCH_H

#include "cli.h"
#include "core/error.h"
#include "model/model.h"

#include <stdint.h>

typedef enum { PATCH_RESID_PRE = 0, PATCH_ATTN_OUT, PATCH_MLP_OUT, PATCH_Z, PATCH_NSWEEPS } patch_sweep;

/* "resid_pre", "attn_out", "mlp_out", "z". */
const char *patch_sweep_name(patch_sweep s);
/* Parses "resid_pre,z" into a bit mask (1u << patch_sweep); an unknown name is an
 * error listing the valid ones. */
tp_status patch_parse_sweeps(const char *text, unsigned *mask);

typedef struct {
    int T;                      /* tokens of each prompt */
    const int32_t *clean;       /* [T] */
    const int32_t *corrupt;     /* [T] activation patching; NULL for causal tracing */
    /* causal tracing: noise[s] [nnoise, d] is added to the embeddings at rows
     * noise_pos[0..nnoise) of the clean prompt, one corrupted run per sample s */
    int nsamples;
    const float *noise;         /* [nsamples, nnoise, d] */
    const int *noise_pos;
    int nnoise;
    int32_t target, distractor; /* distractor -1: causal tracing (metric p(target)) */
    unsigned sweeps;            /* mask of patch_sweep bits */
    const int *layers;          /* the layers swept, ascending */
    int nlayers;
    int cells_per_batch;        /* patched sequences per forward call; 0 = from a row budget */
} patch_spec;

typedef struct {
    int nlayers, ncols[PATCH_NSWEEPS];   /* ncols: T for per-position sweeps, heads for z */
    int nsamples;
    double v_clean;             /* LD_clean, or p_clean */
    double v_corr;              /* LD_corr, or p_corr averaged over the samples */
    double *v_corr_sample;      /* [nsamples] p_corr of each noise sample (tracing) */
    /* [nlayers * ncols] per sweep asked for, else NULL: the normalized metric, and for
     * tracing p(target) averaged over the samples */
    double *metric[PATCH_NSWEEPS];
    double *prob[PATCH_NSWEEPS];
    int cells_per_batch;        /* what was used */
    int64_t cells;              /* patched runs made, over every rank */
    double seconds, cpu_seconds; /* this rank's wall and CPU time from the end of the clean
                                    run (the corrupted runs and the sweeps; for logs and
                                    benchmarks, not in the JSON) */
} patch_result;

/* Runs the sweeps of `spec` on every rank of MPI_COMM_WORLD (collective: every rank
 * passes the same spec) and gives every rank the whole result. Errors: a token out of
 * the vocabulary, a layer or noise position out of range, a prompt longer than the
 * context, clean and corrupt giving the same LD (the metric is undefined). */
tp_status patch_run(const tp_model *m, const patch_spec *spec, patch_result *out);
void patch_result_free(patch_result *r);

/* Standard deviation (unbiased, as torch.std) of every entry of the model's input
 * embedding matrix, in f64. */
tp_status patch_embedding_std(const tp_model *m, double *std);
/* out[n] = std × N(0, 1) samples from splitmix64(seed) by Box–Muller (docs/patching.md
 * gives the exact recipe). */
void patch_gaussian(uint64_t seed, double std, float *out, size_t n);

/* `transpolmo circuits patch ...` (docs/patching.md). */
tp_status circuits_patch_cmd(tp_cli *cli);

#endif
