/* kernels.h — C-linkage launchers of the CUDA kernels in this folder.
 *
 * The kernels know nothing of TranspOLMo: this header and the .cu files include
 * only CUDA's own headers, never src/. Each launcher enqueues its kernel on
 * `stream` and returns the launch's cudaError_t (cudaSuccess, or what
 * cudaGetLastError() reported: a bad configuration shows at the launch site, a
 * fault while running only at the next synchronising call). Arguments are checked
 * by the caller (src/backend/cuda/, which turns errors into tp_status with file,
 * line and call); a launcher only refuses, with cudaErrorInvalidValue, sizes its
 * grid cannot take. Empty work (zero rows or elements) launches nothing.
 *
 * All pointers are device memory. Row-major, f32 activations.
 *
 * Included from C (gcc) and from CUDA C++ (nvcc).
 */
#ifndef TP_KERNELS_KERNELS_H
#define TP_KERNELS_KERNELS_H

#include <cuda_runtime_api.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of an embedding table (kernels/ has no tp_dtype). */
typedef enum { KERN_F32 = 0, KERN_BF16, KERN_F16 } kern_dtype;

/* rmsnorm.cu: out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w; one block per row
 * (rows <= INT_MAX), sum of squares in f32; out may alias x. */
cudaError_t kern_rmsnorm(cudaStream_t stream, float *out, const float *x, const float *w, int64_t rows,
                         int64_t d, float eps);

/* elementwise.cu: gate[i] = silu(gate[i]) * up[i] */
cudaError_t kern_silu_mul(cudaStream_t stream, float *gate, const float *up, size_t n);
/* elementwise.cu: y[i] += x[i] */
cudaError_t kern_add(cudaStream_t stream, float *y, const float *x, size_t n);
/* elementwise.cu: out[i] = (float)in[i] for bf16 bit patterns (exact). */
cudaError_t kern_bf16_to_f32(cudaStream_t stream, float *out, const uint16_t *in, size_t n);

/* elementwise.cu: dst [rows, cols] packed = src [rows, cols] (row stride ld) rounded
 * to bf16 or f16 (dt KERN_BF16 / KERN_F16), nearest even. */
cudaError_t kern_f32_to_half(cudaStream_t stream, void *dst, kern_dtype dt, const float *src, int64_t rows,
                             int64_t cols, int64_t ld);

/* attention.cu: causal attention of one sequence (backend.h, tp_attn_seq): nq queries
 * at positions off.., keys / values from position 0; query head h reads kv head
 * h / (H/K). mode 0 FUSED (z), 1 PATTERN (p [H, nq, off+nq], masked entries 0), 2 PV
 * (z from p). H <= 65535, dh <= 1024, nq <= INT_MAX. */
cudaError_t kern_attention(cudaStream_t stream, int mode, const float *q, const float *k, const float *v,
                           float *z, float *p, int64_t nq, int64_t off, int H, int K, int dh, int64_t ldq,
                           int64_t ldk, int64_t ldz, float scale);
/* attention.cu: its backward (backend.h, attention_bwd) for one sequence: dq, dk, dv
 * written (dk, dv rows 0..off+nq-1, row stride ldk), dp [H, nq, off+nq] when not NULL;
 * p the edited pattern (NULL: the recomputed one). stats: device scratch of
 * 3 * H * nq floats. */
cudaError_t kern_attention_bwd(cudaStream_t stream, const float *q, const float *k, const float *v,
                               const float *p, const float *dz, float *dq, float *dk, float *dv, float *dp,
                               float *stats, int64_t nq, int64_t off, int H, int K, int dh, int64_t ldq,
                               int64_t ldk, int64_t ldz, float scale);

/* backward.cu (formulas: backend.h): rmsnorm_bwd (dw NULL: not wanted; inv_scratch
 * [rows] device floats when dw is wanted; dx may alias dout), silu_mul_bwd (either
 * output may alias dout), embed_bwd (accumulates; rows with a bad id are skipped) and
 * the id check both embed ops need (first bad row folded into *bad_row by atomicMin,
 * as kern_embed). */
cudaError_t kern_rmsnorm_bwd(cudaStream_t stream, float *dx, float *dw, float *inv_scratch, const float *dout,
                             const float *x, const float *w, int64_t rows, int64_t d, float eps);
cudaError_t kern_silu_mul_bwd(cudaStream_t stream, float *dgate, float *dup, const float *dout, const float *gate,
                              const float *up, size_t n);
cudaError_t kern_ids_check(cudaStream_t stream, const int32_t *ids, int64_t rows, int64_t vocab,
                           unsigned long long *bad_row);
cudaError_t kern_embed_bwd(cudaStream_t stream, float *dtable, const float *dout, int64_t vocab, int64_t d,
                           const int32_t *ids, int64_t rows);

/* sae.cu: the k largest of each row of x [rows, F] (row stride ld), best first, ties
 * to the lower index (the CPU's select_topk), into vals / idx [rows, k]; and the
 * decode out[r, :] = bias + Σ_t vals[r,t] W[idx[r,t], :] over positive vals (W [F, d],
 * bias may be NULL). */
cudaError_t kern_topk_rows(cudaStream_t stream, const float *x, int64_t rows, int64_t F, int64_t ld, int k,
                           float *vals, int32_t *idx);
cudaError_t kern_topk_decode(cudaStream_t stream, float *out, int64_t ldo, const float *vals, const int32_t *idx,
                             int64_t rows, int k, const float *W, int64_t d, const float *bias);

/* sae.cu, the training ops behind the backend's sae_* slots (contracts: backend.h;
 * f64 sums are device memory, added to with atomics). kern_sae_topk writes k codes a
 * row (ptr[r] = r·k, best first, padding ≤ 0 or idx −1) from the candidates cand
 * (NULL: all F; increasing); the sparse backward zeroes grad first; the optimiser
 * step is kern_sae_project (g −= (g·w)w per decoder row), kern_sae_sumsq (*out = Σx²),
 * kern_sae_adam (g *= cf when clip, then Adam) and kern_sae_renorm (w /= ‖w‖). */
cudaError_t kern_sae_encode_in(cudaStream_t stream, const float *x, int64_t n, int64_t d, float s, const float *b_dec,
                               int sub_b_dec, float *u, float *xt, double *sum_u, double *sqnorm);
cudaError_t kern_sae_topk(cudaStream_t stream, float *pre, int64_t n, int64_t F, const float *bias,
                          const int32_t *cand, int64_t n_cand, int k, int64_t *ptr, int32_t *idx, float *val);
cudaError_t kern_sae_decode(cudaStream_t stream, int64_t n, int64_t d, const int64_t *ptr, const int32_t *idx,
                            const float *val, const float *W, const float *b, const float *u, float *out,
                            double *fires, double *active, double *sqsum);
cudaError_t kern_sae_sparse_bwd(cudaStream_t stream, int64_t n, int64_t d, int64_t F, const int64_t *ptr,
                                const int32_t *idx, const float *val, const float *delta, float coef,
                                const int64_t *aux_ptr, const int32_t *aux_idx, const float *aux_val,
                                const float *adelta, float aux_coef, const float *xt, const float *W_enc,
                                const float *W_dec, int sub_b_dec, float *grad);
cudaError_t kern_sae_project(cudaStream_t stream, const float *W_dec, float *gW_dec, int64_t F, int64_t d);
cudaError_t kern_sae_sumsq(cudaStream_t stream, const float *x, size_t n, double *out);
cudaError_t kern_sae_adam(cudaStream_t stream, float *params, float *grad, float *m, float *v, size_t n, float cf,
                          int clip, float step_size, float bc2, float eps, float w1, float b2, float w2);
cudaError_t kern_sae_renorm(cudaStream_t stream, float *W_dec, int64_t F, int64_t d);
/* sae.cu, ReLU's elementwise ops (the backend's sae_relu, sae_residual, sae_relu_bwd_init
 * and sae_relu_bwd_pre; contracts: backend.h, tp_sae_relu_bwd; f64 sums by atomics).
 * kern_sae_relu_bwd_pre needs n ≥ 1. */
cudaError_t kern_sae_relu(cudaStream_t stream, float *pre, int64_t n, int64_t F, int64_t d, const float *b_enc,
                          const float *W_dec, float *dec_norm, double *fires, double *active, double *l1);
cudaError_t kern_sae_residual(cudaStream_t stream, int64_t n, int64_t d, const float *b, const float *u,
                              float *delta, double *sqsum);
cudaError_t kern_sae_relu_bwd_init(cudaStream_t stream, int64_t n, int64_t d, int64_t F, const float *delta,
                                   float coef, float *grad);
cudaError_t kern_sae_relu_bwd_pre(cudaStream_t stream, int64_t n, int64_t d, int64_t F, const float *f,
                                  const float *W_dec, const float *dec_norm, float l1_coef, float *G, float *colsum,
                                  float *grad);

/* softmax.cu: row i of s[T, ld]: scale, softmax over columns 0..i, columns
 * i+1..T-1 set to 0 (T <= INT_MAX, ld >= T). */
cudaError_t kern_softmax_causal(cudaStream_t stream, float *s, int64_t T, int64_t ld, float scale);

/* rope.cu: in place on x[rows, nh*dh], rotate_half convention (pairs (i, i+dh/2) of
 * each head); row r is at position pos[r], cos, sin are [max_pos, dh/2] tables. dh
 * even; the caller guarantees 0 <= pos[r] < max_pos. */
cudaError_t kern_rope(cudaStream_t stream, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
                      const float *cos, const float *sin);
/* rope.cu: its backward, in place on dx: the rotation by the negative angle. */
cudaError_t kern_rope_bwd(cudaStream_t stream, float *dx, int64_t rows, int nh, int dh, const int32_t *pos,
                          const float *cos, const float *sin);

/* embed.cu: out[r,:] = table[ids[r],:] widened to f32 (exactly: bf16 and f16 as
 * tp_bf16_to_f32 / tp_f16_to_f32 do, an f16 NaN made quiet). A row whose id is
 * outside [0, vocab) is written as zeros and its index is folded into *bad_row by
 * atomicMin; the caller sets *bad_row to UINT64_MAX before the launch and reads it
 * after a sync. */
cudaError_t kern_embed(cudaStream_t stream, float *out, const void *table, kern_dtype dt, int64_t vocab,
                       int64_t d, const int32_t *ids, int64_t rows, unsigned long long *bad_row);

#ifdef __cplusplus
}
#endif

#endif
