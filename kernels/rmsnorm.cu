/* rmsnorm.cu — RMSNorm, one block per row (cuda.h: cuda_rmsnorm). */
#include "cuda_common.cuh"
#include "reduce.cuh"

/* No __restrict__ on x / out: out may alias x. Each thread reads the elements it
 * later writes, and every read of the first pass is done before block_sum returns. */
__global__ void rmsnorm_kernel(float *out, const float *x, const float *__restrict__ w,
                               int64_t d, float eps)
{
    const float *xr = x + (int64_t)blockIdx.x * d;
    float *o = out + (int64_t)blockIdx.x * d;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    /* mean, then 1/sqrt (IEEE sqrtf and division, not rsqrtf), as cpu_rmsnorm and
     * Olmo2RMSNorm / LlamaRMSNorm compute it. */
    float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) o[i] = w[i] * (xr[i] * inv);
}

extern "C" tp_status cuda_rmsnorm(cuda_ctx *ctx, float *out, const float *x, const float *w,
                                  int64_t rows, int64_t d, float eps)
{
    if (rows < 0 || rows > INT_MAX || d < 1)
        return tp_err(TP_ERR_RANGE, "cuda_rmsnorm: rows %lld must be in [0, %d] and d %lld >= 1",
                      (long long)rows, INT_MAX, (long long)d);
    if (rows == 0) return TP_OK;
    rmsnorm_kernel<<<(unsigned)rows, TP_CUDA_BLOCK, 0, ctx->stream>>>(out, x, w, d, eps);
    CUDA_CHECK_LAUNCH(rmsnorm_kernel);
    return TP_OK;
}
