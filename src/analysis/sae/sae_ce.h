/* sae_ce.h — "CE-loss recovered": how much of the model's next-token loss survives
 * when a trained SAE's reconstruction replaces the activation it was trained on
 * (phase 4, evaluation; issue 7).
 *
 * Text. sae_ce_text_open() samples documents of the configured corpus (data.corpus,
 * cut by data.seq_len and data.packing as the capture was) that are NOT among the
 * documents of the capture (the store's /doc_index), so the SAE is judged on text it
 * never saw (io/dataset.h: dataset_open_heldout).
 *
 * Passes. Every batch of sequences runs through the model three times with
 * TP_LOGITS_ALL; a callback on (layer, pt) rewrites the activation in the second and
 * third pass:
 *   clean  no callback;
 *   zero   every replaced row of the point is set to 0 (zero ablation);
 *   sae    every replaced row x is set to sae_reconstruct(x) (the SAE splice).
 * Replaced rows are the rows the capture phase keeps: a row at position t of a
 * sequence holding token id is KEPT AS IT IS (not replaced, in both the zero and the
 * sae pass) when (skip_first && t == 0) or (bos_id >= 0 && id == bos_id). Those rows
 * are masked in the store (capture.mask_first, capture.mask_bos), so the SAE never
 * trained on them, and the first position is the attention sink whose outlier norm
 * would dominate both ablations; keeping them in both passes makes the zero baseline
 * and the splice differ only where the SAE is responsible, and the ratio fair.
 *
 * Definitions (natural log; P = every predicted position: position t < T−1 of every
 * sequence with T ≥ 2 tokens, predicting token x_{t+1}; |P| = out->tokens; masked
 * positions are predicted too, and are the same set in all three passes):
 *   log p_π(v | t) = z_π,t[v] − (m + log Σ_u exp(z_π,t[u] − m)),  m = max_u z_π,t[u]
 *       (f64, from the f32 logits z_π,t of pass π ∈ {clean, zero, sae})
 *   ce_π      = (1/|P|) Σ_{t∈P} −log p_π(x_{t+1} | t)
 *   recovered = (ce_zero − ce_sae) / (ce_zero − ce_clean)
 *       (1: the splice loses nothing; 0: no better than zero ablation; can leave
 *       [0, 1]; NaN when ce_zero == ce_clean)
 *   kl_π      = (1/|P|) Σ_{t∈P} Σ_v p_clean(v|t) (log p_clean(v|t) − log p_π(v|t)),
 *       π ∈ {sae, zero}: KL(clean ‖ π) per predicted position, averaged
 * ce_clean is what lm_loss_sequences() gives on the same sequences.
 *
 * Distribution. Sequences are grouped into batches as lm_loss_sequences() does
 * (runs of at most `batch` consecutive sequences of equal length), over the whole
 * sequence list; each rank takes a contiguous run of batches, balanced by tokens.
 * A batch is the same on any number of ranks, so its logits are the same bits and
 * results differ between rank counts only by the order of the f64 sums (one
 * MPI_Allreduce). Every rank gets the result. Collective over comm (MPI_COMM_NULL:
 * one process, no MPI call); a failure on one rank fails every rank (dist_agree).
 *
 * Memory, beyond the forward pass: a copy of the clean logits of one batch
 * ([batch·T, V] f32, as large as the forward's own logits buffer) and its row
 * log-sum-exps; the rows of the point of one batch twice ([batch·T, cols] f32).
 * CE and KL are computed as each pass's logits come out.
 */
#ifndef TP_SAE_CE_H
#define TP_SAE_CE_H

#include "analysis/sae/sae.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/sequences.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/tokenizer.h"

#include <mpi.h>
#include <stdint.h>

typedef struct {
    double ce_clean, ce_zero, ce_sae;   /* mean next-token CE, nats */
    double recovered;                   /* (ce_zero − ce_sae) / (ce_zero − ce_clean) */
    double kl_sae, kl_zero;             /* mean KL(clean ‖ sae), KL(clean ‖ zero), nats */
    int64_t tokens;                     /* predicted positions |P| */
    int64_t sequences;                  /* sequences with at least one prediction */
    int64_t rows_replaced;              /* activation rows the zero/sae passes rewrote */
} sae_ce_result;

/* Held-out text: num_docs documents sampled by `seed` from the documents of
 * spec->corpus not in exclude_docs[0..n_exclude) (the capture's /doc_index), cut as
 * spec->seq_len / spec->packing say. Identical on every rank. dataset_close() it. */
tp_status sae_ce_text_open(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const int64_t *exclude_docs,
                           size_t n_exclude, int64_t num_docs, uint64_t seed, tp_dataset *out);

/* Replacement of n activation rows of width d: rows (input) → out (n × d), which may
 * not alias. The zero and sae passes are this with "write zeros" and
 * "sae_reconstruct". */
typedef tp_status (*sae_ce_replace_fn)(void *user, const float *rows, int64_t n, int64_t d, float *out);

/* The evaluation above. seqs identical on every rank; batch in [1, forward_max_batch(f)]
 * and every sequence at most forward_max_seq(f) tokens; (layer, pt) a point with rows
 * ([B,T,cols]: not attn.hook_pattern; layer −1 for hook_embed / ln_final), and
 * sae->cfg.d_in == cols. The SAE's workspace is used (not between sae_forward and
 * sae_backward). */
tp_status sae_ce_evaluate(tp_forward *f, const tp_sequences *seqs, int batch, int layer, tp_hook_point pt,
                          sae_model *sae, int skip_first, int32_t bos_id, MPI_Comm comm, sae_ce_result *out);

/* The same with any replacement in the third pass (ce_sae, kl_sae and recovered then
 * describe `replace`; d = cols of the point). sae_ce_evaluate is this with
 * sae_reconstruct. For ablation studies and tests. */
tp_status sae_ce_evaluate_with(tp_forward *f, const tp_sequences *seqs, int batch, int layer, tp_hook_point pt,
                               sae_ce_replace_fn replace, void *user, int skip_first, int32_t bos_id,
                               MPI_Comm comm, sae_ce_result *out);

/* The per-row pieces of the passes above, f64 from f32 (exposed for plan --calibrate,
 * which times them): log Σ_v exp z_v, and KL(p_c ‖ p_o) from two rows and their
 * log Σ exp. */
double sae_ce_row_lse(const float *z, int V);
double sae_ce_row_kl(const float *zc, double lse_c, const float *zo, double lse_o, int V);

#endif
