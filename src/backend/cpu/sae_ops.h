/* sae_ops.h — the SAE's training ops on the CPU (backend.h's sae_* slots) and the
 * host loops analysis/sae/sae.c shares with them: the heap TopK select, and the
 * fixed-order f32 dot and axpy. The slots are the arithmetic sae.c ran before they
 * moved behind the table, unchanged, so CPU training keeps its bits.
 */
#ifndef TP_BACKEND_CPU_SAE_OPS_H
#define TP_BACKEND_CPU_SAE_OPS_H

#include "backend/backend.h"

/* The k largest of row[cand[j]] (cand NULL: row[j]), j < n_cand, k ≤ n_cand, into
 * hv/hi in heap order (root: the first to evict); ties keep the lower index. */
void sae_cpu_select_topk(const float *row, const int32_t *cand, int64_t n_cand, int64_t k, float *hv, int32_t *hi);
/* Σ a·b with 16 partial sums in a fixed order (vectorises; the same bits on every rank). */
float sae_cpu_dotf(const float *restrict a, const float *restrict b, int64_t d);
/* y += a·x */
void sae_cpu_axpyf(float a, const float *restrict x, float *restrict y, int64_t d);

tp_status cpu_be_sae_encode_in(tp_backend *be, const float *x, int64_t n, int64_t d, float s, const float *b_dec,
                               bool sub_b_dec, float *u, float *xt, double *sum_u, double *sqnorm);
tp_status cpu_be_sae_topk(tp_backend *be, float *pre, int64_t n, int64_t F, const float *bias, const int32_t *cand,
                          int64_t n_cand, int64_t k, int64_t *ptr, int32_t *idx, float *val);
tp_status cpu_be_sae_decode(tp_backend *be, int64_t n, int64_t d, tp_sae_codes codes, const float *W,
                            const float *b, const float *u, float *out, double *fires, double *active,
                            double *sqsum);
tp_status cpu_be_sae_sparse_bwd(tp_backend *be, const tp_sae_bwd *a);
tp_status cpu_be_sae_adam(tp_backend *be, const tp_sae_adam *a, double *grad_norm);
tp_status cpu_be_sae_relu(tp_backend *be, float *pre, int64_t n, int64_t F, int64_t d, const float *b_enc,
                          const float *W_dec, float *dec_norm, double *fires, double *active, double *l1);
tp_status cpu_be_sae_residual(tp_backend *be, int64_t n, int64_t d, const float *b, const float *u, float *delta,
                              double *sqsum);
tp_status cpu_be_sae_relu_bwd_init(tp_backend *be, const tp_sae_relu_bwd *a);
tp_status cpu_be_sae_relu_bwd_pre(tp_backend *be, const tp_sae_relu_bwd *a);

#endif
