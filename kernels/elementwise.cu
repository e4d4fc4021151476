/* elementwise.cu — element-wise kernels: SwiGLU gate, residual add, bf16 widening,
 * f32 narrowing to bf16 / f16 (kernels.h: kern_silu_mul, kern_add, kern_bf16_to_f32,
 * kern_f32_to_half). Grid-stride loops, so any n runs with a bounded grid. */
#include "cuda_common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

__global__ void silu_mul_kernel(float *__restrict__ gate, const float *__restrict__ up, size_t n)
{
    /* silu(g) = g * sigmoid(g) = g / (1 + e^-g), as the CPU backend and torch write it */
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

extern "C" cudaError_t kern_silu_mul(cudaStream_t stream, float *gate, const float *up, size_t n)
{
    if (n == 0) return cudaSuccess;
    silu_mul_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, stream>>>(gate, up, n);
    return cudaGetLastError();
}

extern "C" cudaError_t kern_add(cudaStream_t stream, float *y, const float *x, size_t n)
{
    if (n == 0) return cudaSuccess;
    add_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, stream>>>(y, x, n);
    return cudaGetLastError();
}

extern "C" cudaError_t kern_bf16_to_f32(cudaStream_t stream, float *out, const uint16_t *in, size_t n)
{
    if (n == 0) return cudaSuccess;
    bf16_to_f32_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, stream>>>(out, in, n);
    return cudaGetLastError();
}

/* f32 → bf16 / f16, round to nearest even (the GEMM inputs of `linear`), from a
 * strided [rows, cols] block into a packed one. */
__global__ void f32_to_half_kernel(void *__restrict__ dst, kern_dtype dt, const float *__restrict__ src,
                                   size_t cols, size_t ld, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float v = src[(i / cols) * ld + i % cols];
        if (dt == KERN_BF16) ((__nv_bfloat16 *)dst)[i] = __float2bfloat16_rn(v);
        else ((__half *)dst)[i] = __float2half_rn(v);
    }
}

extern "C" cudaError_t kern_f32_to_half(cudaStream_t stream, void *dst, kern_dtype dt, const float *src,
                                        int64_t rows, int64_t cols, int64_t ld)
{
    if (rows < 0 || cols < 0 || ld < cols || (dt != KERN_BF16 && dt != KERN_F16)) return cudaErrorInvalidValue;
    size_t n = (size_t)rows * (size_t)cols;
    if (n == 0) return cudaSuccess;
    f32_to_half_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, stream>>>(dst, dt, src, (size_t)cols, (size_t)ld, n);
    return cudaGetLastError();
}
