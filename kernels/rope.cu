/* rope.cu — rotary position embedding, rotate_half convention (cuda.h: cuda_rope). */
#include "cuda_common.cuh"

/* One thread per rotated pair (row r, head h, i < dh/2): (v[i], v[i+half]) turns by
 * the angle of position r % T, as in transformers' apply_rotary_pos_emb. The
 * products are rounded before the add (__fmul_rn: no FMA contraction), as the
 * CPU loop computes them. */
__global__ void rope_kernel(float *x, size_t pairs, int64_t T, int nh, int dh,
                            const float *__restrict__ cs, const float *__restrict__ sn)
{
    int half = dh / 2;
    for (size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x; p < pairs;
         p += (size_t)gridDim.x * blockDim.x) {
        size_t i = p % (size_t)half, rh = p / (size_t)half;
        size_t h = rh % (size_t)nh, r = rh / (size_t)nh;
        size_t t = r % (size_t)T;
        float *v = x + r * (size_t)nh * (size_t)dh + h * (size_t)dh;
        float c = cs[t * (size_t)half + i], s = sn[t * (size_t)half + i];
        float a = v[i], b = v[i + half];
        v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        v[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

extern "C" tp_status cuda_rope(cuda_ctx *ctx, float *x, int64_t rows, int64_t T, int nh, int dh,
                               const float *cos, const float *sin)
{
    if (rows < 0 || T < 1 || nh < 1 || dh < 2 || dh % 2 != 0)
        return tp_err(TP_ERR_RANGE,
                      "cuda_rope: rows %lld >= 0, T %lld >= 1, heads %d >= 1 and an even head "
                      "dim %d >= 2 required",
                      (long long)rows, (long long)T, nh, dh);
    size_t pairs = (size_t)rows * (size_t)nh * (size_t)(dh / 2);
    if (pairs == 0) return TP_OK;
    rope_kernel<<<cuda_grid_for(pairs), TP_CUDA_BLOCK, 0, ctx->stream>>>(x, pairs, T, nh, dh, cos,
                                                                        sin);
    CUDA_CHECK_LAUNCH(rope_kernel);
    return TP_OK;
}
