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

/* softmax.cu: row i of s[T, ld]: scale, softmax over columns 0..i, columns
 * i+1..T-1 set to 0 (T <= INT_MAX, ld >= T). */
cudaError_t kern_softmax_causal(cudaStream_t stream, float *s, int64_t T, int64_t ld, float scale);

/* rope.cu: in place on x[rows, nh*dh], rotate_half convention (pairs (i, i+dh/2) of
 * each head); row r is at position pos[r], cos, sin are [max_pos, dh/2] tables. dh
 * even; the caller guarantees 0 <= pos[r] < max_pos. */
cudaError_t kern_rope(cudaStream_t stream, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
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
