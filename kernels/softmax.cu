/* softmax.cu — scaled causal softmax of attention scores, one block per row
 * (kernels.h: kern_softmax_causal). Not in the backend table yet: the building
 * block of the GPU attention (issue 19 and after). */
#include "cuda_common.cuh"
// defines: block_sum, block_max
#include "reduce.cuh"

/* Row i of s[T, ld]: the same steps as the CPU's causal softmax (scale, subtract the
 * row max, exp, normalise by the f32 sum; columns past i are 0), as torch's eager
 * attention does in f32. Each thread touches the same columns in every pass, so
 * the in-place passes need no barrier beyond the reductions. */
__global__ void softmax_causal_kernel(float *s, int64_t T, int64_t ld, float scale)
{
    int64_t i = blockIdx.x, n = i + 1;
    float *row = s + i * ld;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, row[j] * scale);
    mx = block_max(mx);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        float e = expf(row[j] * scale - mx);
        row[j] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum);
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) row[j] *= inv;
    for (int64_t j = n + threadIdx.x; j < T; j += blockDim.x) row[j] = 0.0f;
}

extern "C" cudaError_t kern_softmax_causal(cudaStream_t stream, float *s, int64_t T, int64_t ld,
                                           float scale)
{
    if (T < 0 || T > INT_MAX || ld < T) return cudaErrorInvalidValue;
    if (T == 0) return cudaSuccess;
    softmax_causal_kernel<<<(unsigned)T, TP_CUDA_BLOCK, 0, stream>>>(s, T, ld, scale);
    return cudaGetLastError();
}
