/* cuda_backend.c — the CUDA backend's table and its context: a stream and a cuBLAS
 * handle on one GPU, device buffers (cudaMalloc, never managed memory), the copies
 * and the sync (contract: backend/cuda/cuda_backend.h, backend/backend.h).
 *
 * Ops are queued on the context's non-blocking stream and return at once; upload
 * and download are ordered after the queued work and return when the copy is done
 * (the host buffer may be reused at once); download and sync are where a failure of
 * queued work is reported. Slots without a kernel yet are NULL, so be_<slot> fails
 * with "op <slot> is not available on cuda".
 */
#include "backend/cuda/cuda_backend.h"

#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_ctx.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- buffers -------------------------------------------------------------------- */

static tp_status cuda_alloc(tp_backend *be, size_t bytes, void **ptr)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    *ptr = NULL;
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    cudaError_t e = cudaMalloc(ptr, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        *ptr = NULL;
        return tp_err(TP_ERR_NOMEM, "cuda: out of GPU memory allocating %zu bytes on device %d (%s)", bytes,
                      c->device, c->device_name);
    }
    CUDA_CHECK(e);
    return TP_OK;
}

/* The slot returns nothing: a failing cudaFree (a fault of earlier queued work) is
 * reported again by the next sync or download. */
static void cuda_free(tp_backend *be, void *ptr)
{
    if (!ptr) return;
    (void)cudaSetDevice(cuda_ctx_of(be)->device);
    (void)cudaFree(ptr);
}

static tp_status cuda_upload(tp_backend *be, void *dst, const void *host_src, size_t bytes)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return TP_OK;
}

static tp_status cuda_download(tp_backend *be, void *host_dst, const void *src, size_t bytes)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return TP_OK;
}

/* Device to device, queued on the stream like the kernels (ordered after them). */
static tp_status cuda_copy(tp_backend *be, void *dst, const void *src, size_t bytes)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    return TP_OK;
}

static tp_status cuda_sync(tp_backend *be)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    CUDA_ENTER(c);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return TP_OK;
}

static void cuda_info(const tp_backend *be, tp_backend_info *out)
{
    const struct cuda_ctx *c = cuda_ctx_of(be);
    out->name = "cuda";
    out->device = c->device_name;
    out->kernels = c->arch;
    out->linear_gemm = "cublas";
}

/* ---- the table ------------------------------------------------------------------- */

static const tp_backend_i cuda_iface = {
    .alloc = cuda_alloc,
    .free = cuda_free,
    .upload = cuda_upload,
    .download = cuda_download,
    .copy = cuda_copy,
    .sync = cuda_sync,
    .info = cuda_info,

    .linear = NULL,          /* issue 19: bf16 cuBLASLt with weights uploaded once */
    .linear_bwd = NULL,      /* backward ops: not written for the GPU yet */
    .rmsnorm = cuda_rmsnorm,
    .rmsnorm_bwd = NULL,
    .rope = cuda_rope,
    .rope_bwd = NULL,
    .attention = NULL,       /* no kernel yet: batched Q·Kᵀ / P·V around kernels/softmax.cu, GQA, offsets */
    .attention_bwd = NULL,
    .silu_mul = cuda_silu_mul,
    .silu_mul_bwd = NULL,
    .add = cuda_add,
    .embed = cuda_embed,
    .embed_bwd = NULL,

    .gemm_f32 = cuda_gemm_f32,
    .gemm_f64 = cuda_gemm_f64,
    .gemv_f32 = cuda_gemv_f32,
    .syrk_f64 = cuda_syrk_f64,
    .syrk_f32 = NULL,        /* PCA's f32 Gram runs on the CPU backend */
    .syr_f64 = cuda_syr_f64,
    .dot_f64 = cuda_dot_f64,
    .axpy_f64 = cuda_axpy_f64,
    .nrm2_f64 = cuda_nrm2_f64,
    .scal_f64 = cuda_scal_f64,
};

const tp_backend_i *backend_cuda_table(void) { return &cuda_iface; }

/* ---- open / close ------------------------------------------------------------------ */

/* Releases what be holds, whatever step of backend_cuda_open got that far. Errors are
 * not recorded: after a failed open the message stays that of the first failure, and
 * close has no caller to tell. */
static void cuda_release(tp_backend *be)
{
    if (!be) return;
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (c) {
        (void)cudaSetDevice(c->device);
        if (c->stream) (void)cudaStreamSynchronize(c->stream);
        if (c->bad_row) (void)cudaFree(c->bad_row);
        if (c->blas) (void)cublasDestroy(c->blas);
        if (c->stream) (void)cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

tp_status backend_cuda_open(const tp_backend_options *opt, tp_backend **out)
{
    *out = NULL;
    int count = 0;
    TP_CHECK(cuda_probe(&count, NULL, 0));
    if (opt->device < 0 || opt->device >= count)
        return tp_err(TP_ERR_RANGE, "cuda: device %d out of range (%d GPU%s)", opt->device, count,
                      count == 1 ? "" : "s");
    tp_backend *be = tp_calloc(1, sizeof *be);
    if (!be) return TP_ERR_NOMEM;
    struct cuda_ctx *c = tp_calloc(1, sizeof *c);
    if (!c) {
        free(be);
        return TP_ERR_NOMEM;
    }
    *be = (tp_backend){.name = "cuda", .host_memory = false, .iface = cuda_iface, .context = c};
    c->device = opt->device;

    tp_status st = TP_OK;
    CUDA_CHECK_GOTO(cudaSetDevice(c->device), st, fail);
    struct cudaDeviceProp prop;
    CUDA_CHECK_GOTO(cudaGetDeviceProperties(&prop, c->device), st, fail);
    snprintf(c->device_name, sizeof c->device_name, "%s", prop.name);
    snprintf(c->arch, sizeof c->arch, "sm_%d%d", prop.major, prop.minor);
    /* Non-blocking: our stream never serialises with the legacy default stream that
     * other libraries may use. */
    CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), st, fail);
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        /* Without a working GPU cublasCreate answers NOT_INITIALIZED. */
        if (bs == CUBLAS_STATUS_NOT_INITIALIZED)
            st = tp_err(TP_ERR_NO_DEVICE, "no GPU: cublasCreate: %s (%s %d)", cublasGetStatusString(bs),
                        cublasGetStatusName(bs), (int)bs);
        else
            st = cublas_err_at(bs, __FILE__, __LINE__, "cublasCreate(&c->blas)");
        goto fail;
    }
    CUBLAS_CHECK_GOTO(cublasSetStream(c->blas, c->stream), st, fail);
    CUBLAS_CHECK_GOTO(cublasSetPointerMode(c->blas, CUBLAS_POINTER_MODE_HOST), st, fail);
    /* CUBLAS_DEFAULT_MATH keeps f32 inputs exact (NVIDIA_TF32_OVERRIDE=1 in the
     * environment could still force TF32: it is the user's switch, not ours). TF32
     * keeps 10 mantissa bits of each input: f32 GEMMs move by ~1e-3 relative. */
    c->tf32 = opt->tf32;
    CUBLAS_CHECK_GOTO(cublasSetMathMode(c->blas, c->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH), st,
                      fail);
    CUDA_CHECK_GOTO(cudaMalloc((void **)&c->bad_row, sizeof *c->bad_row), st, fail);
    *out = be;
    return TP_OK;
fail:
    cuda_release(be);
    return st;
}

void backend_cuda_close(tp_backend *be) { cuda_release(be); }
