/* elementwise.cu — element-wise kernels: SwiGLU gate, residual add, bf16 widening
 * (cuda.h: cuda_silu_mul, cuda_add, cuda_bf16_to_f32). Grid-stride loops, so any
 * n runs with a bounded grid. */
#include "cuda_common.cuh"

#define GRID_STRIDE(i, n)                                                        \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);     \
         i += (size_t)gridDim.x * blockDim.x)

__global__ void silu_mul_kernel(float *__restrict__ gate, const float *__restrict__ up, size_t n)
{
    /* silu(g) = g * sigmoid(g) = g / (1 + e^-g), as cpu_silu_mul and torch write it */
    GRID_STRIDE(i, n)
    {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

__global__ void add_kernel(float *__restrict__ y, const float *__restrict__ x, size_t n)
{
    GRID_STRIDE(i, n) y[i] += x[i];
}

__global__ void bf16_to_f32_kernel(float *__restrict__ out, const uint16_t *__restrict__ in,
                                   size_t n)
{
    /* bf16 is the top half of an f32: widening is exact, bit for bit tp_bf16_to_f32. */
    GRID_STRIDE(i, n) out[i] = __uint_as_float((unsigned)in[i] << 16);
}

extern "C" tp_status cuda_silu_mul(cuda_ctx *ctx, float *gate, const float *up, size_t n)
{
    if (n == 0) return TP_OK;
    silu_mul_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, ctx->stream>>>(gate, up, n);
    CUDA_CHECK_LAUNCH(silu_mul_kernel);
    return TP_OK;
}

extern "C" tp_status cuda_add(cuda_ctx *ctx, float *y, const float *x, size_t n)
{
    if (n == 0) return TP_OK;
    add_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, ctx->stream>>>(y, x, n);
    CUDA_CHECK_LAUNCH(add_kernel);
    return TP_OK;
}

extern "C" tp_status cuda_bf16_to_f32(cuda_ctx *ctx, float *out, const uint16_t *in, size_t n)
{
    if (n == 0) return TP_OK;
    bf16_to_f32_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, ctx->stream>>>(out, in, n);
    CUDA_CHECK_LAUNCH(bf16_to_f32_kernel);
    return TP_OK;
}
