/* cuda_backend.c — the CUDA backend's table and its context: a stream and a cuBLAS
 * handle on one GPU, device buffers (cudaMalloc, never managed memory), the copies
 * and the sync (contract: backend/cuda/cuda_backend.h, backend/backend.h).
 *
 * Ops are queued on the context's non-blocking stream and return at once; upload
 * and download are ordered after the queued work and return when the copy is done
 * (the host buffer may be reused at once); download_async returns at once and its
 * slot's wait is where the copy is done; download, wait and sync are where a failure
 * of queued work is reported. Every slot of the table is filled.
 */
#include "backend/cuda/cuda_backend.h"

#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_ctx.h"

#include <stdio.h>
#include <stdlib.h>

/* ---- buffers -------------------------------------------------------------------- */

/* The status of an allocation that gave `e`: out of memory is TP_ERR_NOMEM naming
 * the size, what ran out ("GPU memory") and the device, with *ptr NULL. */
static tp_status alloc_status(const struct cuda_ctx *c, cudaError_t e, void **ptr, size_t bytes, const char *what)
{
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        *ptr = NULL;
        return tp_err(TP_ERR_NOMEM, "cuda: out of %s allocating %zu bytes on device %d (%s)", what, bytes, c->device,
                      c->device_name);
    }
    CUDA_CHECK(e);
    return TP_OK;
}

static tp_status cuda_alloc(tp_backend *be, size_t bytes, void **ptr)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    *ptr = NULL;
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    return alloc_status(c, cudaMalloc(ptr, bytes), ptr, bytes, "GPU memory");
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

/* After the compute stream's queued work (an event it records, the copy stream waits
 * for), on the copy stream. From pageable memory (the mmap) cudaMemcpyAsync returns
 * once the source is staged; the DMA still overlaps the compute stream's kernels. */
static tp_status cuda_prefetch(tp_backend *be, void *dst, const void *host_src, size_t bytes)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaEventRecord(c->compute_done, c->stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->copy_stream, c->compute_done, 0));
    CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, c->copy_stream));
    return TP_OK;
}

static tp_status cuda_prefetch_wait(tp_backend *be)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    CUDA_ENTER(c);
    CUDA_CHECK(cudaEventRecord(c->copies_done, c->copy_stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->stream, c->copies_done, 0));
    return TP_OK;
}

/* Pinned (page-locked) host memory: a copy into it is a DMA the host does not wait
 * for, where one into pageable memory would be staged by the driver. */
static tp_status cuda_host_alloc(tp_backend *be, size_t bytes, void **ptr)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    *ptr = NULL;
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    return alloc_status(c, cudaHostAlloc(ptr, bytes, cudaHostAllocDefault), ptr, bytes, "pinned host memory");
}

static void cuda_host_free(tp_backend *be, void *ptr)
{
    if (!ptr) return;
    (void)cudaSetDevice(cuda_ctx_of(be)->device);
    (void)cudaFreeHost(ptr);
}

/* On the compute stream, not the copy stream: the forward overwrites its buffers in
 * place (hook_resid_post is the next layer's input and gets the next layer's adds), so
 * the compute stream would have to wait for a copy-stream copy at once anyway, and on
 * the copy stream the download would also queue behind the next layer's weight
 * prefetch. Into pinned memory the copy is a DMA in stream order: the GPU copies while
 * the host, which does not wait, writes the previous batch to HDF5. */
static tp_status cuda_download_async(tp_backend *be, void *host_dst, const void *src, size_t bytes, int slot)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(backend_check_copy_slot(be, slot));
    if (bytes == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaEventRecord(c->download_done[slot], c->stream));
    return TP_OK;
}

/* An event never recorded counts as complete: waiting on an unused slot returns. */
static tp_status cuda_wait(tp_backend *be, int slot)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(backend_check_copy_slot(be, slot));
    CUDA_ENTER(c);
    CUDA_CHECK(cudaEventSynchronize(c->download_done[slot]));
    return TP_OK;
}

static tp_status cuda_sync(tp_backend *be)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    CUDA_ENTER(c);
    CUDA_CHECK(cudaStreamSynchronize(c->copy_stream));
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

tp_status cuda_scratch(struct cuda_ctx *c, int slot, size_t bytes, void **p)
{
    *p = NULL;
    if (c->scratch[slot].bytes >= bytes) {
        *p = c->scratch[slot].ptr;
        return TP_OK;
    }
    CUDA_ENTER(c);
    CUDA_CHECK(cudaStreamSynchronize(c->stream));   /* queued work may still read the old block */
    CUDA_CHECK(cudaFree(c->scratch[slot].ptr));
    c->scratch[slot].ptr = NULL, c->scratch[slot].bytes = 0;
    cudaError_t e = cudaMalloc(&c->scratch[slot].ptr, bytes);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        c->scratch[slot].ptr = NULL;
        return tp_err(TP_ERR_NOMEM, "cuda: out of GPU memory allocating %zu bytes of scratch on device %d (%s)",
                      bytes, c->device, c->device_name);
    }
    CUDA_CHECK(e);
    c->scratch[slot].bytes = bytes;
    *p = c->scratch[slot].ptr;
    return TP_OK;
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
    .prefetch = cuda_prefetch,
    .prefetch_wait = cuda_prefetch_wait,
    .host_alloc = cuda_host_alloc,
    .host_free = cuda_host_free,
    .download_async = cuda_download_async,
    .wait = cuda_wait,

    .linear = cuda_linear,
    .linear_bwd = cuda_linear_bwd,
    .rmsnorm = cuda_rmsnorm,
    .rmsnorm_bwd = cuda_rmsnorm_bwd,
    .rope = cuda_rope,
    .rope_bwd = cuda_rope_bwd,
    .attention = cuda_attention,
    .attention_bwd = cuda_attention_bwd,
    .silu_mul = cuda_silu_mul,
    .silu_mul_bwd = cuda_silu_mul_bwd,
    .add = cuda_add,
    .embed = cuda_embed,
    .embed_bwd = cuda_embed_bwd,

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

    .sae_encode_in = cuda_sae_encode_in,
    .sae_topk = cuda_sae_topk,
    .sae_decode = cuda_sae_decode,
    .sae_sparse_bwd = cuda_sae_sparse_bwd,
    .sae_adam = cuda_sae_adam,
    .sae_relu = cuda_sae_relu,
    .sae_residual = cuda_sae_residual,
    .sae_relu_bwd_init = cuda_sae_relu_bwd_init,
    .sae_relu_bwd_pre = cuda_sae_relu_bwd_pre,
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
        if (c->copy_stream) (void)cudaStreamSynchronize(c->copy_stream);
        if (c->stream) (void)cudaStreamSynchronize(c->stream);
        if (c->bad_row) (void)cudaFree(c->bad_row);
        for (int i = 0; i < CUDA_SCRATCH_N; i++) (void)cudaFree(c->scratch[i].ptr);
        if (c->blas) (void)cublasDestroy(c->blas);
        if (c->stream) (void)cudaStreamDestroy(c->stream);
        if (c->copy_stream) (void)cudaStreamDestroy(c->copy_stream);
        if (c->compute_done) (void)cudaEventDestroy(c->compute_done);
        if (c->copies_done) (void)cudaEventDestroy(c->copies_done);
        for (int i = 0; i < TP_BE_COPY_SLOTS; i++)
            if (c->download_done[i]) (void)cudaEventDestroy(c->download_done[i]);
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
    CUDA_CHECK_GOTO(cudaStreamCreateWithFlags(&c->copy_stream, cudaStreamNonBlocking), st, fail);
    /* ordering only: no timing, so the events cost no timestamps */
    CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&c->compute_done, cudaEventDisableTiming), st, fail);
    CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&c->copies_done, cudaEventDisableTiming), st, fail);
    for (int i = 0; i < TP_BE_COPY_SLOTS; i++)
        CUDA_CHECK_GOTO(cudaEventCreateWithFlags(&c->download_done[i], cudaEventDisableTiming), st, fail);
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
