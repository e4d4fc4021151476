/* rope.cu — rotary position embedding, rotate_half convention, and its backward
 * (kernels.h: kern_rope, kern_rope_bwd). */
#include "cuda_common.cuh"

/* One thread per rotated pair (row r, head h, i < dh/2): (v[i], v[i+half]) turns by
 * the angle of position pos[r], as in transformers' apply_rotary_pos_emb. Rows carry
 * their own positions, so a batch of sequences of different lengths (or a decode
 * step at offset off) is one launch. The products are rounded before the add
 * (__fmul_rn: no FMA contraction), as the CPU loop computes them. inverse turns by
 * the negative angle: the backward (a rotation's Jacobian is its transpose). */
__global__ void rope_kernel(float *x, size_t pairs, int nh, int dh, const int32_t *__restrict__ pos,
                            const float *__restrict__ cs, const float *__restrict__ sn, bool inverse)
{
    size_t half = (size_t)(dh / 2);
    GRID_STRIDE(p, pairs)
    {
        size_t i = p % half, rh = p / half;
        size_t h = rh % (size_t)nh, r = rh / (size_t)nh;
        size_t t = (size_t)pos[r];
        float *v = x + r * (size_t)nh * (size_t)dh + h * (size_t)dh;
        float c = cs[t * half + i], s = sn[t * half + i];
        float a = v[i], b = v[i + half];
        if (inverse) {
            v[i] = __fadd_rn(__fmul_rn(a, c), __fmul_rn(b, s));
            v[i + half] = __fsub_rn(__fmul_rn(b, c), __fmul_rn(a, s));
        } else {
            v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
            v[i + half] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
        }
    }
}

static cudaError_t rope_launch(cudaStream_t stream, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
                               const float *cos, const float *sin, bool inverse)
{
    if (rows < 0 || nh < 1 || dh < 2 || dh % 2 != 0) return cudaErrorInvalidValue;
    size_t pairs = (size_t)rows * (size_t)nh * (size_t)(dh / 2);
    if (pairs == 0) return cudaSuccess;
    rope_kernel<<<cuda_grid_for(pairs), TP_CUDA_BLOCK, 0, stream>>>(x, pairs, nh, dh, pos, cos, sin, inverse);
    return cudaGetLastError();
}

extern "C" cudaError_t kern_rope(cudaStream_t stream, float *x, int64_t rows, int nh, int dh,
                                 const int32_t *pos, const float *cos, const float *sin)
{
    return rope_launch(stream, x, rows, nh, dh, pos, cos, sin, false);
}

extern "C" cudaError_t kern_rope_bwd(cudaStream_t stream, float *dx, int64_t rows, int nh, int dh,
                                     const int32_t *pos, const float *cos, const float *sin)
{
    return rope_launch(stream, dx, rows, nh, dh, pos, cos, sin, true);
}
