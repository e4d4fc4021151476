/* pointwise_grad.h — elementwise backward formulas shared by the CPU backend
 * (src/backend/cpu/cpu.c, gcc) and the CUDA kernels (kernels/backward.cu, nvcc), so
 * that the two cannot drift apart (test_cuda_parity compares them at 1e-5). Plain C
 * with <math.h> only; the functions are __host__ __device__ under nvcc. This is the
 * one header of kernels/ that src/ includes. */
#ifndef TP_POINTWISE_GRAD_H
#define TP_POINTWISE_GRAD_H

#include <math.h>

#ifdef __CUDACC__
#define TP_HOST_DEVICE __host__ __device__
#else
#define TP_HOST_DEVICE
#endif

/* Backward of silu_mul, y = silu(g) u, for one element with upstream gradient d:
 * s = 1 / (1 + exp(-g)), silu = g s, silu' = s (1 + g (1 - s));
 * *dg = d u silu'(g), *du = d silu(g). */
static inline TP_HOST_DEVICE void tp_silu_mul_grad(float g, float u, float d, float *dg, float *du)
{
    float s = 1.0f / (1.0f + expf(-g));
    *dg = d * u * (s * (1.0f + g * (1.0f - s)));
    *du = d * (g * s);
}

#endif
