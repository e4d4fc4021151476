/* cpu.h — the CPU kernels of the forward pass: GEMM through OpenBLAS, a causal
 * attention kernel, and the element-wise / row-wise loops around them.
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

#include <stddef.h>
#include <stdint.h>

/* Loops compiled for AVX-512, AVX2 and baseline x86-64, the CPU picking at run time
 * (GCC target_clones; off under ASan, which does not support ifuncs well). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define TP_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TP_MULTIVERSION
#endif

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

/* Causal attention, one call for a batch of sequences of different lengths.
 * Sequence s has nq queries at positions off..off+nq-1 and keys/values at positions
 * 0..off+nq-1; query head h reads kv head h / (H/K). For each (sequence, head):
 *   p[i, j] = softmax_j(scale * q_i . k_j) over j <= off+i (f32, like torch's eager
 *   attention: scores scaled, max subtracted, exp, divided by the sum), z_i = p_i . V.
 * The masked upper triangle is not computed. Modes: CPU_ATTN_FUSED writes z only
 * (p lives in a small per-thread block); CPU_ATTN_PATTERN writes p only, into
 * seqs[s].p = [H, nq, off+nq] (masked entries exactly 0); CPU_ATTN_PV writes z from
 * seqs[s].p (after a hook may have edited it). PATTERN then PV gives the same bits
 * as FUSED. Heads x sequences run in parallel. */
typedef struct {
    const float *q;          /* [nq, ldq]: the sequence's first query row, head 0 */
    const float *k, *v;      /* [off+nq, ldk]: keys / values from position 0 */
    float *z;                /* [nq, ldz]: output, head h at column h*dh */
    float *p;                /* [H, nq, off+nq] pattern (PATTERN / PV modes) */
    int64_t nq, off;
} cpu_attn_seq;

typedef struct {
    int H, K, dh;
    int64_t ldq, ldk, ldz;
    float scale;
} cpu_attn_shape;

typedef enum { CPU_ATTN_FUSED = 0, CPU_ATTN_PATTERN, CPU_ATTN_PV } cpu_attn_mode;

/* Returns 0, or -1 when the per-thread blocks cannot be allocated. */
int cpu_attention(const cpu_attn_shape *a, const cpu_attn_seq *seqs, int nseq, cpu_attn_mode mode);

/* y[i] = exp(x[i]) with the kernel silu and softmax use (AVX-512: Cephes polynomial,
 * max error 2 ulp; scalar: libm expf). For tests. */
void cpu_exp(float *restrict y, const float *restrict x, size_t n);

/* Runs fn(arg, t, thread) for t in [0, ntasks) on up to cpu_get_threads() threads
 * (the caller is thread 0); returns when all are done. thread < cpu_get_threads().
 * One process-wide pool: call it from one thread at a time, never from inside a task.
 * Idle workers spin ~50 us, then sleep. */
typedef void (*cpu_task_fn)(void *arg, int64_t task, int thread);
void cpu_parallel_for(int64_t ntasks, cpu_task_fn fn, void *arg);

/* BLAS threads (0 leaves the library default); also the thread count of the
 * kernels above. */
void cpu_set_threads(int n);
int cpu_get_threads(void);
/* A short description of the CPU features the kernels dispatch on. */
const char *cpu_features(void);

#endif
