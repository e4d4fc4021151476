/* reduce.cuh — block-wide f32 sum and max for the row kernels (rmsnorm, softmax).
 *
 * Every thread of the block gets the result. Needs blockDim.x a multiple of 32
 * (full warps, so the full shuffle mask is right) and at most 1024 threads.
 */
#ifndef TP_KERNELS_REDUCE_CUH
#define TP_KERNELS_REDUCE_CUH

#include <math.h>

__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Partial results of each warp meet in shared memory; every warp then reduces the
 * partials itself, which saves a broadcast round. The leading __syncthreads keeps
 * a second call from overwriting partials a slow warp is still reading. */
__device__ __forceinline__ float block_sum(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_sum(lane < nwarps ? part[lane] : 0.0f);
}

__device__ __forceinline__ float block_max(float v)
{
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    return warp_max(lane < nwarps ? part[lane] : -INFINITY);
}

#endif
