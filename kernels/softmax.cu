/* softmax.cu — scaled causal softmax of attention scores, one block per row
 * (cuda.h: cuda_softmax_causal). */
#include "cuda_common.cuh"
#include "reduce.cuh"

/* Row i of s[T, ld]: the same steps as cpu_softmax_causal (scale, subtract the row
 * max, exp, normalise by the f32 sum; columns past i are 0), as torch's eager
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

extern "C" tp_status cuda_softmax_causal(cuda_ctx *ctx, float *s, int64_t T, int64_t ld,
                                         float scale)
{
    if (T < 0 || T > INT_MAX || ld < T)
        return tp_err(TP_ERR_RANGE, "cuda_softmax_causal: T %lld must be in [0, %d] and ld %lld >= T",
                      (long long)T, INT_MAX, (long long)ld);
    if (T == 0) return TP_OK;
    softmax_causal_kernel<<<(unsigned)T, TP_CUDA_BLOCK, 0, ctx->stream>>>(s, T, ld, scale);
    CUDA_CHECK_LAUNCH(softmax_causal_kernel);
    return TP_OK;
}
