/* cpu.h — the CPU kernels of the forward pass: GEMM through OpenBLAS and the
 * element-wise / row-wise loops around it.
 *
 * Row-major everywhere. Loops that are not GEMMs are written to vectorise and are
 * compiled in several versions (AVX-512, AVX2, baseline) with the one the CPU
 * supports chosen at load time (gcc target_clones / ifunc), never only at build time.
 */
#ifndef TP_BACKEND_CPU_H
#define TP_BACKEND_CPU_H

#include <stddef.h>
#include <stdint.h>

/* C[m,n] = alpha * A[m,k] · B[n,k]^T + beta * C  (B as nn.Linear stores weights) */
void cpu_gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* C[m,n] = alpha * A[m,k] · B[k,n] + beta * C */
void cpu_gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w  (out may alias x) */
void cpu_rmsnorm(float *out, const float *x, const float *w, int64_t rows, int64_t d, float eps);
/* gate[i] = silu(gate[i]) * up[i] */
void cpu_silu_mul(float *restrict gate, const float *restrict up, size_t n);
/* y[i] += x[i] */
void cpu_add(float *restrict y, const float *restrict x, size_t n);
/* Causal softmax of row i of s[T, ld] over columns 0..i (columns > i set to 0);
 * scale applied to the scores first. Computed in f32 like torch's eager attention. */
void cpu_softmax_causal(float *s, int64_t T, int64_t ld, float scale);
/* The same for T queries at positions offset..offset+T-1 over offset+T keys: row i
 * keeps columns 0..offset+i (decoding with a KV cache). */
void cpu_softmax_causal_offset(float *s, int64_t T, int64_t ld, float scale, int64_t offset);

/* BLAS threads (0 leaves the library default). */
void cpu_set_threads(int n);
int cpu_get_threads(void);
/* A short description of the CPU features the kernels dispatch on. */
const char *cpu_features(void);

#endif
