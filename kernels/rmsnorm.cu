/* rmsnorm.cu — RMSNorm, one block per row (kernels.h: kern_rmsnorm). */
#include "cuda_common.cuh"
// defines: block_sum, block_max
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
    /* mean, then 1/sqrt (IEEE sqrtf and division, not rsqrtf), as the CPU backend and
     * Olmo2RMSNorm / LlamaRMSNorm compute it. */
    float inv = 1.0f / sqrtf(ss / (float)d + eps);
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) o[i] = w[i] * (xr[i] * inv);
}

extern "C" cudaError_t kern_rmsnorm(cudaStream_t stream, float *out, const float *x, const float *w,
                                    int64_t rows, int64_t d, float eps)
{
    if (rows < 0 || rows > INT_MAX || d < 1) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    rmsnorm_kernel<<<(unsigned)rows, TP_CUDA_BLOCK, 0, stream>>>(out, x, w, d, eps);
    return cudaGetLastError();
}
