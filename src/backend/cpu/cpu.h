/* cpu.h — the CPU kernels of the forward pass: GEMM through OpenBLAS, a causal
 * attention kernel, and the element-wise / row-wise loops around them; each backward
 * kernel (`_bwd`, f32) is declared and defined beside its forward one. The CPU
 * backend (cpu_backend.c) puts them in its table; tests and benchmarks of the
 * kernels themselves may call them directly.
 *
 * Row-major everywhere. Loops that are not GEMMs are written to vectorise and are
 * compiled in several versions (AVX-512, AVX2, baseline) with the one the CPU
 * supports chosen at load time (gcc target_clones / ifunc), never only at build time;
 * the attention kernel and the exp of silu / softmax use AVX-512 intrinsics chosen at
 * run time (__builtin_cpu_supports), with a scalar fallback.
 *
 * Threads: the kernels that are not BLAS split their work over cpu_get_threads()
 * threads (the BLAS thread count: 1 per rank at mpiexec -np 2 on 2 cores, so nothing
 * is oversubscribed). Work is cut into fixed tasks (a head of a sequence, a block of
 * elements) whose arithmetic does not depend on which thread runs them or on the
 * thread count, so results are bit-identical for any number of threads.
 */
#ifndef TP_BACKEND_CPU_H
#define TP_BACKEND_CPU_H

#include "backend/backend.h"   /* tp_attn_shape, tp_attn_seq, tp_attn_mode */
#include "backend/cpu/pool.h"  /* cpu_parallel_for, cpu_set_threads, cpu_get_threads */
#include "backend/multiversion.h" /* TP_MULTIVERSION */

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
/* Its backward (backend.h rmsnorm_bwd); returns -1 when dw's f64 row of sums cannot
 * be allocated, else 0. */
int cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t rows,
                    int64_t d, float eps);
/* gate[i] = silu(gate[i]) * up[i] */
void cpu_silu_mul(float *restrict gate, const float *restrict up, size_t n);
/* Its backward (backend.h silu_mul_bwd): gate, up are silu_mul's inputs. */
void cpu_silu_mul_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n);
/* y[i] += x[i] */
void cpu_add(float *restrict y, const float *restrict x, size_t n);
/* Causal softmax of row i of s[T, ld] over columns 0..i (columns > i set to 0);
 * scale applied to the scores first. Computed in f32 like torch's eager attention. */
void cpu_softmax_causal(float *s, int64_t T, int64_t ld, float scale);
/* The same for T queries at positions offset..offset+T-1 over offset+T keys: row i
 * keeps columns 0..offset+i (decoding with a KV cache). */
void cpu_softmax_causal_offset(float *s, int64_t T, int64_t ld, float scale, int64_t offset);

/* In place on x [rows, nh*dh], rotate_half convention (pairs (i, i+dh/2) of each
 * head); row r is at position pos[r]; cos, sin are [max_pos, dh/2] tables. */
void cpu_rope(float *x, int64_t rows, int nh, int dh, const int32_t *pos, const float *cos, const float *sin);
/* Its backward, in place on dx (rotation by the opposite angle). */
void cpu_rope_bwd(float *dx, int64_t rows, int nh, int dh, const int32_t *pos, const float *cos, const float *sin);

/* Causal attention, one call for a batch of sequences of different lengths, with the
 * semantics of the backend's `attention` op (backend.h: tp_attn_seq, modes). The
 * masked upper triangle is not computed; FUSED keeps p in a small per-thread block.
 * Heads x sequences run in parallel. Returns 0, or -1 when the per-thread blocks
 * cannot be allocated. */
int cpu_attention(const tp_attn_shape *a, const tp_attn_seq *seqs, int nseq, tp_attn_mode mode);
/* Its backward (backend.h attention_bwd): the pattern recomputed per head by the
 * forward's own PATTERN code, then the softmax and product Jacobians; one task per
 * (sequence, kv head), so dk/dv sums over the shared query heads need no locking and
 * the bits do not depend on the thread count. Returns 0, or -1 when the per-thread
 * blocks (two [nq, off+nq] matrices plus the forward's) cannot be allocated. */
int cpu_attention_bwd(const tp_attn_shape *a, const tp_attn_seq *seqs, const tp_attn_grad *grads, int nseq);

/* y[i] = exp(x[i]) with the kernel silu and softmax use (AVX-512: Cephes polynomial,
 * max error 2 ulp; scalar: libm expf). For tests. */
void cpu_exp(float *restrict y, const float *restrict x, size_t n);

/* A short description of the CPU features the kernels dispatch on. */
const char *cpu_features(void);

#endif
