/* cuda.h — the CUDA backend: device probe, a context (stream + cuBLAS handle),
 * device buffers, GEMM through cuBLAS and the row-wise / element-wise kernels of
 * the forward pass (kernels/, one .cu per concern).
 *
 * Built only when nvcc is found (TP_HAVE_CUDA); include it under #ifdef TP_HAVE_CUDA.
 * Same row-major conventions and semantics as backend/cpu.h, so a GPU forward pass
 * can swap one for the other call by call. Pointers named "device" are cudaMalloc'ed
 * (cuda_alloc), never managed memory. Kernel calls and cuda_gemm_nt are enqueued on
 * the context's stream and return without waiting; cuda_upload, cuda_download and
 * cuda_sync wait, and report any error a queued kernel hit.
 *
 * Errors: TP_ERR_NO_DEVICE when there is no usable GPU (no device, driver too old,
 * cuBLAS cannot initialise), TP_ERR_RANGE for sizes the call cannot take,
 * TP_ERR_CUDA for any other CUDA / cuBLAS / NCCL failure; the message names the
 * file, line, failing call and the library's error string.
 */
#ifndef TP_BACKEND_CUDA_H
#define TP_BACKEND_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Inside the C-linkage block: error.h has no C++ guards of its own, and the
 * kernels (CUDA C++) call tp_err_at. */
#include "core/error.h"

typedef struct cuda_ctx cuda_ctx;

/* Number of GPUs and the name of device 0 (name may be NULL). No GPU, or a driver
 * that cannot run this CUDA, → TP_ERR_NO_DEVICE, *n_devices = 0, and a message
 * like "no GPU: cudaGetDeviceCount: CUDA driver version is insufficient ... (35)". */
tp_status cuda_probe(int *n_devices, char *name, size_t n);

/* A context on `device`: a non-blocking stream and a cuBLAS handle bound to it.
 * Sets the calling thread's current device. */
tp_status cuda_ctx_new(int device, cuda_ctx **out);
/* Releases everything even when a step fails; returns the first failure. NULL ok. */
tp_status cuda_ctx_free(cuda_ctx *ctx);
int cuda_ctx_device(const cuda_ctx *ctx);
/* TF32 tensor cores for cuda_gemm_nt (off by default: exact f32 products). TF32
 * keeps 10 mantissa bits of each input, so results move by ~1e-3 relative. */
tp_status cuda_ctx_set_tf32(cuda_ctx *ctx, int on);
/* Waits for everything queued on the context's stream. */
tp_status cuda_sync(cuda_ctx *ctx);

/* Device buffers (cudaMalloc / cudaFree). bytes == 0 gives NULL; freeing NULL is ok. */
tp_status cuda_alloc(cuda_ctx *ctx, size_t bytes, void **dev);
tp_status cuda_free(cuda_ctx *ctx, void *dev);
/* Host ↔ device copies, ordered after the work queued on the stream; they return
 * when the copy is done (so the host buffer may be reused at once). */
tp_status cuda_upload(cuda_ctx *ctx, void *dev, const void *host, size_t bytes);
tp_status cuda_download(cuda_ctx *ctx, void *host, const void *dev, size_t bytes);

/* C[m,n] = alpha * A[m,k] · B[n,k]^T + beta * C, row-major with leading dimensions
 * (as cpu_gemm_nt; B as nn.Linear stores weights). Sizes and leading dimensions
 * must fit in an int (cuBLAS's 32-bit API) and lda, ldb >= k, ldc >= n. */
tp_status cuda_gemm_nt(cuda_ctx *ctx, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);

/* ---- kernels (kernels/); all pointers are device pointers ---------------- */

/* out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w; one block per row, sum of
 * squares in f32 (out may alias x). */
tp_status cuda_rmsnorm(cuda_ctx *ctx, float *out, const float *x, const float *w, int64_t rows,
                       int64_t d, float eps);
/* gate[i] = silu(gate[i]) * up[i] */
tp_status cuda_silu_mul(cuda_ctx *ctx, float *gate, const float *up, size_t n);
/* y[i] += x[i] */
tp_status cuda_add(cuda_ctx *ctx, float *y, const float *x, size_t n);
/* Row i of s[T, ld]: scale, softmax over columns 0..i, columns i+1..T-1 set to 0. */
tp_status cuda_softmax_causal(cuda_ctx *ctx, float *s, int64_t T, int64_t ld, float scale);
/* In-place RoPE on x[rows, nh*dh], rotate_half convention: pairs (i, i+dh/2) of each
 * head. Row r is at position r % T (rows = B*T); cos, sin are [T, dh/2]. dh even. */
tp_status cuda_rope(cuda_ctx *ctx, float *x, int64_t rows, int64_t T, int nh, int dh,
                    const float *cos, const float *sin);
/* out[i] = (float)in[i] for bf16 bit patterns (exact: the bits shifted up 16). */
tp_status cuda_bf16_to_f32(cuda_ctx *ctx, float *out, const uint16_t *in, size_t n);

/* ---- NCCL ------------------------------------------------------------------ */

/* The NCCL library's version code (e.g. 22809 for 2.28.9); needs no GPU.
 * TP_ERR_UNSUPPORTED when built without NCCL (TP_HAVE_NCCL). */
tp_status cuda_nccl_version(int *version);

#ifdef __cplusplus
}
#endif

#endif
