/* linear.h — Y = X · Wᵀ for the forward pass's nn.Linear layers, on our own AVX-512
 * GEMM kernel.
 *
 * Why not OpenBLAS: the weights are read in the dtype they are stored in (F32, BF16,
 * F16, memory-mapped) and packed straight into the kernel's panel layout, so a BF16
 * checkpoint needs no separate f32 tile and no second copy by the BLAS; the kernel is
 * threaded over the output columns on the process's pool with no BLAS-internal
 * synchronisation; and several matrices that read the same X (q/k/v, gate/up) share
 * one packed X. On the 2-core Zen 4 box this runs ~5–10 % above OpenBLAS 0.3.21's
 * sgemm on the forward pass's shapes (BENCHMARKS.md, forward section).
 *
 * The computation: Y[i, j] = Σ_k X[i, k] · W[j, k], summed in f32 by one fused
 * multiply-add chain per output element, k ascending. The order does not depend on
 * the row's position in X, on m, or on the thread count, so a row's result is the
 * same bits whatever rows are computed with it and however many threads run.
 *
 * bf16 compute (cpu_linear_bf16_enable, off by default here; the backend turns it on
 * from `forward.bf16_compute`): a call whose outputs are all BF16 rounds X to bf16
 * (nearest even, as torch's .to(bfloat16)) and multiplies on AVX512-BF16
 * (VDPBF16PS: bf16 products, exact in f32, summed in f32, two k per step, subnormals
 * flushed), W read in its stored bits. That is the product a Hugging Face bf16 model
 * computes (X and W in bf16, f32 accumulation), not the f32 one of the other calls:
 * X's rounding costs ~2^-9 relative per term. The same row, thread count and
 * which-rows independence holds; F32 / F16 weights, or any call with one of them,
 * keep the f32 kernel, and so does a CPU without AVX512-BF16.
 *
 * Needs AVX-512 (F, BW, VL), checked at run time; cpu_linear_supported() says whether
 * it may be called. Like cpu_parallel_for, it is called from one thread at a time
 * (its workspace is process-wide and grows to the largest call: the packed X of at
 * most ~32 MiB and 256 KiB per thread).
 */
#ifndef TP_BACKEND_CPU_LINEAR_H
#define TP_BACKEND_CPU_LINEAR_H

#include <stdint.h>

typedef enum { CPU_W_F32 = 0, CPU_W_BF16, CPU_W_F16 } cpu_wtype;

/* One output of cpu_linear: Y[m, n] (row stride ldy) = X · Wᵀ with W [n, k] (row
 * stride ldw elements) of type `type`. */
typedef struct {
    const void *w;
    int64_t n, ldw;
    cpu_wtype type;
    float *y;
    int64_t ldy;
} cpu_linear_out;

/* 1 when this CPU has the kernel's instruction set and it is enabled. */
int cpu_linear_supported(void);
/* Enables (default) or disables the kernel process-wide (config `forward.gemm`:
 * `openblas` disables it, so the forward pass uses OpenBLAS sgemm). */
void cpu_linear_enable(int on);

/* 1 when this CPU also has AVX512-BF16 (CPUID leaf 7 subleaf 1, EAX bit 5) and the
 * kernel is enabled. */
int cpu_linear_bf16_supported(void);
/* Turns bf16 compute for all-BF16 calls on or off (default off) process-wide. */
void cpu_linear_bf16_enable(int on);
/* 1 when all-BF16 calls run on the bf16 kernel: enabled and supported. */
int cpu_linear_bf16_active(void);

/* Computes every output from the same X [m, k] (row stride ldx). Returns 0, or -1 when
 * the workspace cannot be allocated (nothing written then) or the CPU lacks AVX-512. */
int cpu_linear(int64_t m, int64_t k, const float *x, int64_t ldx, const cpu_linear_out *outs,
               int nout);

#endif
