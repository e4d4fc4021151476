/* sae.cu — the SAE's TopK selection and sparse decode on the GPU (kernels.h:
 * kern_topk_rows, kern_topk_decode). Not wired into training yet: analysis/sae/sae.c
 * runs its select and decode on host memory (docs/cuda.md). */
#include "cuda_common.cuh"

#define TOPK_BLOCK 256   /* a power of two: the tree reduction halves it */

/* (v, i) ranks above (w, j): larger value, or the same value and a lower index (the
 * CPU's select_topk keeps the lower index on ties). NaN ranks below everything. */
__device__ __forceinline__ bool topk_above(float v, int64_t i, float w, int64_t j)
{
    if (isnan(v)) return false;
    if (isnan(w)) return true;
    return v > w || (v == w && i < j);
}

/* One block per row, k rounds: round t picks the best element ranking below the
 * pick of round t-1 (a strict total order, so no element is picked twice and no
 * marks are needed). Each round reads the row once: O(k F) per row, simple and
 * exact; a radix select would be the faster version. Output sorted best first. */
__global__ void topk_rows_kernel(const float *__restrict__ x, int64_t F, int64_t ld, int k,
                                 float *__restrict__ vals, int32_t *__restrict__ idx)
{
    __shared__ float bv[TOPK_BLOCK];
    __shared__ int64_t bi[TOPK_BLOCK];
    const float *row = x + (int64_t)blockIdx.x * ld;
    float pv = INFINITY;
    int64_t pi = -1;   /* nothing picked yet: everything ranks below (+inf, -1) but +inf itself */
    for (int t = 0; t < k; t++) {
        float best = NAN;
        int64_t besti = INT64_MAX;
        for (int64_t j = threadIdx.x; j < F; j += blockDim.x) {
            float v = row[j];
            bool below_prev = pi < 0 || topk_above(pv, pi, v, j);
            if (below_prev && (besti == INT64_MAX || topk_above(v, j, best, besti))) best = v, besti = j;
        }
        bv[threadIdx.x] = best, bi[threadIdx.x] = besti;
        __syncthreads();
        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) {
                float w = bv[threadIdx.x + s];
                int64_t wj = bi[threadIdx.x + s];
                if (wj != INT64_MAX && (bi[threadIdx.x] == INT64_MAX || topk_above(w, wj, bv[threadIdx.x], bi[threadIdx.x])))
                    bv[threadIdx.x] = w, bi[threadIdx.x] = wj;
            }
            __syncthreads();
        }
        pv = bv[0], pi = bi[0];
        __syncthreads();   /* everyone has read the pick before the next round writes */
        if (threadIdx.x == 0) {
            vals[(int64_t)blockIdx.x * k + t] = pv;
            /* -1: only NaNs were left after a NaN pick */
            idx[(int64_t)blockIdx.x * k + t] = pi == INT64_MAX ? -1 : (int32_t)pi;
        }
    }
}

extern "C" cudaError_t kern_topk_rows(cudaStream_t stream, const float *x, int64_t rows, int64_t F, int64_t ld,
                                      int k, float *vals, int32_t *idx)
{
    if (rows < 0 || rows > INT_MAX || F < 1 || F > INT32_MAX || ld < F || k < 1 || k > F)
        return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    topk_rows_kernel<<<(unsigned)rows, TOPK_BLOCK, 0, stream>>>(x, F, ld, k, vals, idx);
    return cudaGetLastError();
}

/* out[r, :] = bias + Σ_t vals[r,t] · W[idx[r,t], :] over the t with vals > 0 (the
 * SAE keeps positive activations only), in t order; one block per row, threads over
 * the d columns. bias may be NULL (0). */
__global__ void topk_decode_kernel(float *__restrict__ out, int64_t ldo, const float *__restrict__ vals,
                                   const int32_t *__restrict__ idx, int k, const float *__restrict__ W, int64_t d,
                                   const float *__restrict__ bias)
{
    int64_t r = blockIdx.x;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = bias ? bias[c] : 0.0f;
        for (int t = 0; t < k; t++) {
            float v = vals[r * k + t];
            if (v > 0.0f && idx[r * k + t] >= 0) acc = fmaf(v, W[(int64_t)idx[r * k + t] * d + c], acc);
        }
        out[r * ldo + c] = acc;
    }
}

extern "C" cudaError_t kern_topk_decode(cudaStream_t stream, float *out, int64_t ldo, const float *vals,
                                        const int32_t *idx, int64_t rows, int k, const float *W, int64_t d,
                                        const float *bias)
{
    if (rows < 0 || rows > INT_MAX || k < 1 || d < 1 || ldo < d) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    topk_decode_kernel<<<(unsigned)rows, TP_CUDA_BLOCK, 0, stream>>>(out, ldo, vals, idx, k, W, d, bias);
    return cudaGetLastError();
}
