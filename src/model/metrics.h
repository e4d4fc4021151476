/* metrics.h — scalar metrics of a varlen batch's logits and their gradients, the
 * starting point of a backward pass (model/backward.h).
 *
 * logits: [Σ lens, V] row-major f32 (backward_forward's), sequence b at rows
 * row0_b .. row0_b + lens[b] − 1 (row0_b = Σ_{b'<b} lens[b']). Each metric returns its
 * value in f64 (log-sum-exp in f64 from the f32 logits, as lm_loss.c) and, when dlogits
 * is not NULL, writes d value / d logits [Σ lens, V] in f32, every entry (0 where the
 * metric does not look). pos[b] is the position within sequence b (0 .. lens[b] − 1);
 * pos NULL means each sequence's last position. With p = softmax(logits[row]):
 *
 *   metric_logit_diff  (1/nseq) Σ_b logits[row_b][target[b]] − logits[row_b][distractor[b]]
 *                      d/dlogits = (+1 at target, −1 at distractor) / nseq on row_b
 *   metric_logprob     (1/nseq) Σ_b log p_b[token[b]]
 *                      d/dlogits = (onehot(token[b]) − p_b) / nseq on row_b
 *   metric_mean_loss   mean over every predicted position of the batch (t < lens[b] − 1
 *                      in each sequence, N = Σ (lens[b] − 1) of them) of −log p[ids[t+1]]:
 *                      transformers' causal-LM loss with labels = input_ids (a padded
 *                      batch with label −100 on the padding gives the same mean);
 *                      d/dlogits = (p − onehot(next)) / N on each predicted row, 0 on
 *                      each sequence's last row
 *
 * row_b = row0_b + pos[b]. Errors (TP_ERR_RANGE, naming the sequence): a token outside
 * [0, V), a position outside its sequence, a length < 1, or (mean loss) no sequence
 * with two tokens.
 */
#ifndef TP_METRICS_H
#define TP_METRICS_H

#include "core/error.h"

#include <stdint.h>

tp_status metric_logit_diff(const float *logits, int V, const int *lens, int nseq, const int *pos,
                            const int32_t *target, const int32_t *distractor, double *value, float *dlogits);
tp_status metric_logprob(const float *logits, int V, const int *lens, int nseq, const int *pos,
                         const int32_t *token, double *value, float *dlogits);
/* ids: the batch's Σ lens token ids (the labels). */
tp_status metric_mean_loss(const float *logits, int V, const int *lens, int nseq, const int32_t *ids,
                           double *value, float *dlogits);

#endif
