/* cuda.c — device probe, context, device buffers, cuBLAS GEMM and the NCCL
 * version query of the CUDA backend (contract in cuda.h; kernels in kernels/). */
#include "cuda_common.cuh"

#include <stdio.h>
#include <stdlib.h>

#ifdef TP_HAVE_NCCL
#include <nccl.h>
#endif

tp_status cuda_probe(int *n_devices, char *name, size_t n)
{
    *n_devices = 0;
    if (name && n) name[0] = '\0';
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        /* Any failure here means no usable GPU (no driver, driver older than the
         * runtime, no device); clear the error so later calls start clean. */
        (void)cudaGetLastError();
        return tp_err(TP_ERR_NO_DEVICE, "no GPU: cudaGetDeviceCount: %s (%d)",
                      cudaGetErrorString(e), (int)e);
    }
    if (count < 1) return tp_err(TP_ERR_NO_DEVICE, "no GPU: cudaGetDeviceCount found 0 devices");
    if (name && n) {
        struct cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        snprintf(name, n, "%s", prop.name);
    }
    *n_devices = count;
    return TP_OK;
}

/* Releases what ctx holds. With report == 0 (cleanup after a failed cuda_ctx_new)
 * errors are not recorded, so the message stays that of the first failure. */
static tp_status ctx_release(cuda_ctx *ctx, int report)
{
    if (!ctx) return TP_OK;
    tp_status st = TP_OK;
    if (ctx->blas) {
        cublasStatus_t bs = cublasDestroy(ctx->blas);
        if (bs != CUBLAS_STATUS_SUCCESS && report)
            st = cublas_err_at(bs, __FILE__, __LINE__, "cublasDestroy(ctx->blas)");
    }
    if (ctx->stream) {
        cudaError_t e = cudaStreamDestroy(ctx->stream);
        if (e != cudaSuccess && report && st == TP_OK)
            st = cuda_err_at(e, __FILE__, __LINE__, "cudaStreamDestroy(ctx->stream)");
    }
    free(ctx);
    return st;
}

tp_status cuda_ctx_new(int device, cuda_ctx **out)
{
    *out = NULL;
    int count = 0;
    TP_CHECK(cuda_probe(&count, NULL, 0));
    if (device < 0 || device >= count)
        return tp_err(TP_ERR_RANGE, "cuda: device %d out of range (%d GPU%s)", device, count,
                      count == 1 ? "" : "s");
    cuda_ctx *ctx = tp_calloc(1, sizeof *ctx);
    if (!ctx) return TP_ERR_NOMEM;
    ctx->device = device;
    tp_status st = TP_OK;
    CUDA_CHECK_GOTO(cudaSetDevice(device), st, fail);
    /* Non-blocking: our stream never serialises with the legacy default stream
     * that other libraries may use. */
    CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), st, fail);
    cublasStatus_t bs = cublasCreate(&ctx->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        ctx->blas = NULL;
        /* Without a working GPU cublasCreate answers NOT_INITIALIZED. */
        if (bs == CUBLAS_STATUS_NOT_INITIALIZED)
            st = tp_err(TP_ERR_NO_DEVICE, "no GPU: cublasCreate: %s (%s %d)",
                        cublasGetStatusString(bs), cublasGetStatusName(bs), (int)bs);
        else
            st = cublas_err_at(bs, __FILE__, __LINE__, "cublasCreate(&ctx->blas)");
        goto fail;
    }
    bs = cublasSetStream(ctx->blas, ctx->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        st = cublas_err_at(bs, __FILE__, __LINE__, "cublasSetStream(ctx->blas, ctx->stream)");
        goto fail;
    }
    *out = ctx;
    return TP_OK;
fail:
    ctx_release(ctx, 0);
    return st;
}

tp_status cuda_ctx_free(cuda_ctx *ctx) { return ctx_release(ctx, 1); }

int cuda_ctx_device(const cuda_ctx *ctx) { return ctx->device; }

tp_status cuda_ctx_set_tf32(cuda_ctx *ctx, int on)
{
    /* CUBLAS_DEFAULT_MATH keeps f32 inputs exact (NVIDIA_TF32_OVERRIDE=1 in the
     * environment could still force TF32: it is the user's switch, not ours). */
    CUBLAS_CHECK(cublasSetMathMode(ctx->blas, on ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    ctx->tf32 = on != 0;
    return TP_OK;
}

tp_status cuda_sync(cuda_ctx *ctx)
{
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    return TP_OK;
}

tp_status cuda_alloc(cuda_ctx *ctx, size_t bytes, void **dev)
{
    *dev = NULL;
    if (bytes == 0) return TP_OK;
    CUDA_CHECK(cudaSetDevice(ctx->device));
    cudaError_t e = cudaMalloc(dev, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        *dev = NULL;
        return tp_err(TP_ERR_NOMEM, "cuda: out of GPU memory allocating %zu bytes on device %d",
                      bytes, ctx->device);
    }
    CUDA_CHECK(e);
    return TP_OK;
}

tp_status cuda_free(cuda_ctx *ctx, void *dev)
{
    if (!dev) return TP_OK;
    (void)ctx;
    CUDA_CHECK(cudaFree(dev));
    return TP_OK;
}

tp_status cuda_upload(cuda_ctx *ctx, void *dev, const void *host, size_t bytes)
{
    if (bytes == 0) return TP_OK;
    CUDA_CHECK(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    return TP_OK;
}

tp_status cuda_download(cuda_ctx *ctx, void *host, const void *dev, size_t bytes)
{
    if (bytes == 0) return TP_OK;
    CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, ctx->stream));
    CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    return TP_OK;
}

tp_status cuda_gemm_nt(cuda_ctx *ctx, int64_t m, int64_t n, int64_t k, float alpha,
                       const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                       float *C, int64_t ldc)
{
    const int64_t dims[] = {m, n, k, lda, ldb, ldc};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++)
        if (dims[i] < 0 || dims[i] > INT_MAX)
            return tp_err(TP_ERR_RANGE,
                          "cuda_gemm_nt: m=%lld n=%lld k=%lld lda=%lld ldb=%lld ldc=%lld: each "
                          "must be in [0, %d]",
                          (long long)m, (long long)n, (long long)k, (long long)lda,
                          (long long)ldb, (long long)ldc, INT_MAX);
    if (lda < (k > 1 ? k : 1) || ldb < (k > 1 ? k : 1) || ldc < (n > 1 ? n : 1))
        return tp_err(TP_ERR_RANGE,
                      "cuda_gemm_nt: leading dimensions lda=%lld ldb=%lld ldc=%lld too small for "
                      "row-major A[%lld,%lld], B[%lld,%lld], C[%lld,%lld]",
                      (long long)lda, (long long)ldb, (long long)ldc, (long long)m, (long long)k,
                      (long long)n, (long long)k, (long long)m, (long long)n);
    if (m == 0 || n == 0) return TP_OK;
    /* cuBLAS is column-major: a row-major X[r,c] with leading dimension ld is the
     * column-major X^T with the same ld. So row-major C = A·B^T is column-major
     * C^T[n,m] = B·A^T, where B is op(T) of the stored column-major B^T[k,n] and
     * A^T[k,m] is the stored A as is. */
    CUBLAS_CHECK(cublasSgemm(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha,
                             B, (int)ldb, A, (int)lda, &beta, C, (int)ldc));
    return TP_OK;
}

tp_status cuda_nccl_version(int *version)
{
    *version = 0;
#ifdef TP_HAVE_NCCL
    NCCL_CHECK(ncclGetVersion(version));
    return TP_OK;
#else
    return tp_err(TP_ERR_UNSUPPORTED, "cuda_nccl_version: built without NCCL (libnccl not found)");
#endif
}
