/* backward.cu — the backward of the row and element-wise ops (kernels.h:
 * kern_rmsnorm_bwd, kern_silu_mul_bwd, kern_ids_check, kern_embed_bwd); the
 * attention's is in attention.cu, RoPE's in rope.cu. Formulas: backend/backend.h. */
#include "cuda_common.cuh"
// defines: block_sum, block_max
#include "pointwise_grad.h"
#include "reduce.cuh"

/* r = 1/sqrt(mean(x²) + eps) of each row, into inv[rows] (for dw). */
__global__ void rms_inv_kernel(float *__restrict__ inv, const float *__restrict__ x, int64_t d, float eps)
{
    const float *xr = x + (int64_t)blockIdx.x * d;
    float ss = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
    ss = block_sum(ss);
    if (threadIdx.x == 0) inv[blockIdx.x] = 1.0f / sqrtf(ss / (float)d + eps);
}

/* dw[c] = Σ_r g[r,c] x[r,c] r_r: one thread per column, rows in order, summed in f64
 * (thousands of rows feed one value). */
__global__ void rms_dw_kernel(float *__restrict__ dw, const float *__restrict__ g, const float *__restrict__ x,
                              const float *__restrict__ inv, int64_t rows, int64_t d)
{
    GRID_STRIDE(c, (size_t)d)
    {
        double acc = 0.0;
        for (int64_t r = 0; r < rows; r++) acc += (double)g[r * d + c] * x[r * d + c] * inv[r];
        dw[c] = (float)acc;
    }
}

/* dx = r (g⊙w − x r² Σ(g⊙w⊙x)/d), one block per row. No __restrict__ on dx / g: dx
 * may alias dout; each thread reads the elements it later writes, and every read of
 * the sums' pass is done before block_sum returns. */
__global__ void rms_dx_kernel(float *dx, const float *g, const float *__restrict__ x, const float *__restrict__ w,
                              int64_t d, float eps)
{
    int64_t base = (int64_t)blockIdx.x * d;
    float ss = 0.0f, gwx = 0.0f;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        float xi = x[base + i];
        ss += xi * xi;
        gwx += g[base + i] * w[i] * xi;
    }
    ss = block_sum(ss);
    gwx = block_sum(gwx);
    float inv = 1.0f / sqrtf(ss / (float)d + eps), c = inv * inv * gwx / (float)d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dx[base + i] = inv * (g[base + i] * w[i] - x[base + i] * c);
}

extern "C" cudaError_t kern_rmsnorm_bwd(cudaStream_t stream, float *dx, float *dw, float *inv_scratch,
                                        const float *dout, const float *x, const float *w, int64_t rows, int64_t d,
                                        float eps)
{
    if (rows < 0 || rows > INT_MAX || d < 1 || (dw && rows > 0 && !inv_scratch)) return cudaErrorInvalidValue;
    if (rows == 0) return dw ? cudaMemsetAsync(dw, 0, (size_t)d * sizeof(float), stream) : cudaSuccess;
    if (dw) {
        /* before dx: dx may overwrite dout */
        rms_inv_kernel<<<(unsigned)rows, TP_CUDA_BLOCK, 0, stream>>>(inv_scratch, x, d, eps);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
        rms_dw_kernel<<<cuda_grid_for((size_t)d), TP_CUDA_BLOCK, 0, stream>>>(dw, dout, x, inv_scratch, rows, d);
        if ((e = cudaGetLastError()) != cudaSuccess) return e;
    }
    rms_dx_kernel<<<(unsigned)rows, TP_CUDA_BLOCK, 0, stream>>>(dx, dout, x, w, d, eps);
    return cudaGetLastError();
}

/* Not restrict: dgate or dup may alias dout (each element is read before written). */
__global__ void silu_mul_bwd_kernel(float *dgate, float *dup, const float *dout, const float *__restrict__ gate,
                                    const float *__restrict__ up, size_t n)
{
    GRID_STRIDE(i, n)
    {
        float dg, du;
        tp_silu_mul_grad(gate[i], up[i], dout[i], &dg, &du);
        dgate[i] = dg;
        dup[i] = du;
    }
}

extern "C" cudaError_t kern_silu_mul_bwd(cudaStream_t stream, float *dgate, float *dup, const float *dout,
                                         const float *gate, const float *up, size_t n)
{
    if (n == 0) return cudaSuccess;
    silu_mul_bwd_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, stream>>>(dgate, dup, dout, gate, up, n);
    return cudaGetLastError();
}

__global__ void ids_check_kernel(const int32_t *__restrict__ ids, int64_t rows, int64_t vocab,
                                 unsigned long long *bad_row)
{
    GRID_STRIDE(r, (size_t)rows)
    {
        int64_t id = ids[r];
        if (id < 0 || id >= vocab) atomicMin(bad_row, (unsigned long long)r);
    }
}

extern "C" cudaError_t kern_ids_check(cudaStream_t stream, const int32_t *ids, int64_t rows, int64_t vocab,
                                      unsigned long long *bad_row)
{
    if (rows < 0 || vocab < 0) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    ids_check_kernel<<<cuda_grid_for((size_t)rows), TP_CUDA_BLOCK, 0, stream>>>(ids, rows, vocab, bad_row);
    return cudaGetLastError();
}

/* dtable[ids[r], c] += dout[r, c]: one thread per column, rows in order, so a token
 * that occurs twice gets both rows, in the CPU's order, without atomics. Rows with
 * an id outside [0, vocab) are skipped (the caller has refused them already). */
__global__ void embed_bwd_kernel(float *__restrict__ dtable, const float *__restrict__ dout, int64_t vocab,
                                 int64_t d, const int32_t *__restrict__ ids, int64_t rows)
{
    GRID_STRIDE(c, (size_t)d)
    {
        for (int64_t r = 0; r < rows; r++) {
            int64_t id = ids[r];
            if (id >= 0 && id < vocab) dtable[id * d + (int64_t)c] += dout[r * d + (int64_t)c];
        }
    }
}

extern "C" cudaError_t kern_embed_bwd(cudaStream_t stream, float *dtable, const float *dout, int64_t vocab,
                                      int64_t d, const int32_t *ids, int64_t rows)
{
    if (rows < 0 || vocab < 0 || d < 1) return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    embed_bwd_kernel<<<cuda_grid_for((size_t)d), TP_CUDA_BLOCK, 0, stream>>>(dtable, dout, vocab, d, ids, rows);
    return cudaGetLastError();
}
