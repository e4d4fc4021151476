/* sae.cu — the SAE's training ops on the GPU (kernels.h): TopK selection
 * (kern_topk_rows, and kern_sae_topk over a candidate list for AuxK), the sparse
 * decode (kern_topk_decode, kern_sae_decode with the loss sums), the sparse backward,
 * ReLU's elementwise forward and backward (the dense products are cuBLAS gemms) and
 * the optimiser step (projection, squared norm, Adam, unit decoder rows). The
 * backend's sae_* slots (src/backend/cuda/cuda_sae.c) launch them; contracts in
 * src/backend/backend.h. */
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
__global__ void topk_rows_kernel(const float *__restrict__ x, int64_t F, int64_t ld, const int32_t *__restrict__ cand,
                                 int k, float *__restrict__ vals, int32_t *__restrict__ idx)
{
    __shared__ float bv[TOPK_BLOCK];
    __shared__ int64_t bi[TOPK_BLOCK];
    const float *row = x + (int64_t)blockIdx.x * ld;
    float pv = INFINITY;
    int64_t pi = -1;   /* nothing picked yet: everything ranks below (+inf, -1) but +inf itself */
    for (int t = 0; t < k; t++) {
        float best = NAN;
        int64_t besti = INT64_MAX;
        for (int64_t q = threadIdx.x; q < F; q += blockDim.x) {
            int64_t j = cand ? cand[q] : q;   /* candidates in increasing index order */
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
    topk_rows_kernel<<<(unsigned)rows, TOPK_BLOCK, 0, stream>>>(x, F, ld, NULL, k, vals, idx);
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

/* ---- training ops (the backend's sae_* slots) ----------------------------------------- */

/* Block-wide f64 sum (TP_CUDA_BLOCK threads, a power of two); every thread gets it. */
__device__ double block_sum_f64(double v)
{
    __shared__ double part[TP_CUDA_BLOCK];
    __syncthreads();
    part[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    return part[0];
}

/* u = s·x (rounded before the subtraction, as the CPU), x̃ = u − b or u */
__global__ void sae_encode_in_kernel(const float *__restrict__ x, size_t n, int64_t d, float s,
                                     const float *__restrict__ b, int sub, float *__restrict__ u,
                                     float *__restrict__ xt)
{
    GRID_STRIDE(i, n)
    {
        float ui = __fmul_rn(s, x[i]);
        u[i] = ui;
        xt[i] = sub ? __fsub_rn(ui, b[i % (size_t)d]) : ui;
    }
}

/* sum_u[j] += Σ_r u[r,j] in row order, a thread per column */
__global__ void sae_colsum_kernel(const float *__restrict__ u, int64_t n, int64_t d, double *__restrict__ sum_u)
{
    GRID_STRIDE(j, (size_t)d)
    {
        double a = 0;
        for (int64_t r = 0; r < n; r++) a += (double)u[(size_t)r * (size_t)d + j];
        sum_u[j] += a;
    }
}

/* *sq += Σ‖u_r‖², a block per row */
__global__ void sae_rowsq_kernel(const float *__restrict__ u, int64_t d, double *sq)
{
    const float *row = u + (size_t)blockIdx.x * (size_t)d;
    double a = 0;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) a += (double)row[j] * row[j];
    a = block_sum_f64(a);
    if (threadIdx.x == 0) atomicAdd(sq, a);
}

extern "C" cudaError_t kern_sae_encode_in(cudaStream_t stream, const float *x, int64_t n, int64_t d, float s,
                                          const float *b_dec, int sub_b_dec, float *u, float *xt, double *sum_u,
                                          double *sqnorm)
{
    if (n < 0 || n > INT_MAX || d < 1) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const size_t nd = (size_t)n * (size_t)d;
    sae_encode_in_kernel<<<cuda_grid_for(nd), TP_CUDA_BLOCK, 0, stream>>>(x, nd, d, s, b_dec, sub_b_dec, u, xt);
    if (sum_u) sae_colsum_kernel<<<cuda_grid_for((size_t)d), TP_CUDA_BLOCK, 0, stream>>>(u, n, d, sum_u);
    if (sqnorm) sae_rowsq_kernel<<<(unsigned)n, TP_CUDA_BLOCK, 0, stream>>>(u, d, sqnorm);
    return cudaGetLastError();
}

__global__ void sae_add_bias_kernel(float *__restrict__ pre, size_t n, int64_t F, const float *__restrict__ bias)
{
    GRID_STRIDE(i, n) pre[i] += bias[i % (size_t)F];
}

__global__ void sae_fixed_ptr_kernel(int64_t *ptr, int64_t n, int64_t k)
{
    GRID_STRIDE(r, (size_t)n + 1) ptr[r] = (int64_t)r * k;
}

extern "C" cudaError_t kern_sae_topk(cudaStream_t stream, float *pre, int64_t n, int64_t F, const float *bias,
                                     const int32_t *cand, int64_t n_cand, int k, int64_t *ptr, int32_t *idx,
                                     float *val)
{
    if (n < 0 || n > INT_MAX || F < 1 || F > INT32_MAX || n_cand < 1 || n_cand > F || k < 1 || k > n_cand)
        return cudaErrorInvalidValue;
    sae_fixed_ptr_kernel<<<cuda_grid_for((size_t)n + 1), TP_CUDA_BLOCK, 0, stream>>>(ptr, n, k);
    if (n == 0) return cudaGetLastError();
    if (bias) {
        const size_t nf = (size_t)n * (size_t)F;
        sae_add_bias_kernel<<<cuda_grid_for(nf), TP_CUDA_BLOCK, 0, stream>>>(pre, nf, F, bias);
    }
    topk_rows_kernel<<<(unsigned)n, TOPK_BLOCK, 0, stream>>>(pre, n_cand, F, cand, k, val, idx);
    return cudaGetLastError();
}

/* A block per row: out = (b − u or out) + Σ val·W[idx] over the row's positive codes
 * in code order; the row's codes counted into fires / active, Σ out² into *sqsum. */
__global__ void sae_decode_kernel(int64_t d, const int64_t *__restrict__ ptr, const int32_t *__restrict__ idx,
                                  const float *__restrict__ val, const float *__restrict__ W,
                                  const float *__restrict__ b, const float *__restrict__ u, float *__restrict__ out,
                                  double *fires, double *active, double *sqsum)
{
    const size_t r = blockIdx.x;
    const int64_t a0 = ptr[r], a1 = ptr[r + 1];
    double sq = 0;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
        float acc = u ? __fsub_rn(b[c], u[r * (size_t)d + c]) : out[r * (size_t)d + c];
        for (int64_t a = a0; a < a1; a++)
            if (val[a] > 0.0f && idx[a] >= 0) acc = __fadd_rn(acc, __fmul_rn(val[a], W[(size_t)idx[a] * (size_t)d + c]));
        out[r * (size_t)d + c] = acc;
        sq += (double)acc * acc;
    }
    if (fires)
        for (int64_t a = a0 + threadIdx.x; a < a1; a += blockDim.x)
            if (val[a] > 0.0f && idx[a] >= 0) atomicAdd(&fires[idx[a]], 1.0), atomicAdd(active, 1.0);
    sq = block_sum_f64(sq);
    if (threadIdx.x == 0) atomicAdd(sqsum, sq);
}

extern "C" cudaError_t kern_sae_decode(cudaStream_t stream, int64_t n, int64_t d, const int64_t *ptr,
                                       const int32_t *idx, const float *val, const float *W, const float *b,
                                       const float *u, float *out, double *fires, double *active, double *sqsum)
{
    if (n < 0 || n > INT_MAX || d < 1) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    sae_decode_kernel<<<(unsigned)n, TP_CUDA_BLOCK, 0, stream>>>(d, ptr, idx, val, W, b, u, out, fires, active,
                                                                sqsum);
    return cudaGetLastError();
}

/* gbd[j] = coef · Σ_r delta[r,j], row order, a thread per column */
__global__ void sae_bdec_grad_kernel(const float *__restrict__ delta, int64_t n, int64_t d, float coef,
                                     float *__restrict__ gbd)
{
    GRID_STRIDE(j, (size_t)d)
    {
        float a = 0;
        for (int64_t r = 0; r < n; r++) a = __fadd_rn(a, __fmul_rn(coef, delta[(size_t)r * (size_t)d + j]));
        gbd[j] = a;
    }
}

/* A block per row: for each of its positive codes i, ∂pre_i = coef·(δ·W_dec[i]),
 * ∂W_dec[i] += coef·val·δ, ∂W_enc[i] += ∂pre_i·x̃, ∂b_enc[i] += ∂pre_i; rows meet
 * in atomics (the sums' order varies from run to run, within f32 rounding). */
__global__ void sae_latent_grads_kernel(int64_t d, const int64_t *__restrict__ ptr, const int32_t *__restrict__ idx,
                                        const float *__restrict__ val, const float *__restrict__ delta,
                                        const float *__restrict__ xt, const float *__restrict__ W_dec, float coef,
                                        float *gWd, float *gWe, float *gbe)
{
    const size_t r = blockIdx.x;
    const float *dl = delta + r * (size_t)d, *x = xt + r * (size_t)d;
    for (int64_t a = ptr[r]; a < ptr[r + 1]; a++) {
        const float v = val[a];
        const int32_t i = idx[a];
        if (!(v > 0.0f) || i < 0) continue;   /* the same for every thread: no divergence at the sums */
        const float *w = W_dec + (size_t)i * (size_t)d;
        double dot = 0;
        for (int64_t c = threadIdx.x; c < d; c += blockDim.x) dot += (double)dl[c] * w[c];
        const float gp = coef * (float)block_sum_f64(dot);
        const float cv = coef * v;
        for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
            atomicAdd(&gWd[(size_t)i * (size_t)d + c], cv * dl[c]);
            atomicAdd(&gWe[(size_t)i * (size_t)d + c], gp * x[c]);
        }
        if (threadIdx.x == 0) atomicAdd(&gbe[i], gp);
    }
}

/* gbd[j] −= Σ_i gbe[i] · W_enc[i, j]: b_dec reaches pre through x̃ = u − b_dec */
__global__ void sae_bdec_enc_kernel(const float *__restrict__ gbe, const float *__restrict__ W_enc, int64_t F,
                                    int64_t d, float *__restrict__ gbd)
{
    GRID_STRIDE(j, (size_t)d)
    {
        float a = gbd[j];
        for (int64_t i = 0; i < F; i++)
            if (gbe[i] != 0.0f) a = __fadd_rn(a, __fmul_rn(-gbe[i], W_enc[(size_t)i * (size_t)d + j]));
        gbd[j] = a;
    }
}

/* grad = 0, then ∂b_dec = coef·Σ_r delta[r] (the start of both backwards) */
static cudaError_t grad_init_bdec(cudaStream_t stream, int64_t n, int64_t d, int64_t F, const float *delta,
                                  float coef, float *grad)
{
    const size_t fd = (size_t)F * (size_t)d;
    cudaError_t e = cudaMemsetAsync(grad, 0, (2 * fd + (size_t)F + (size_t)d) * sizeof(float), stream);
    if (e != cudaSuccess || n == 0) return e;
    sae_bdec_grad_kernel<<<cuda_grid_for((size_t)d), TP_CUDA_BLOCK, 0, stream>>>(delta, n, d, coef,
                                                                               grad + 2 * fd + (size_t)F);
    return cudaGetLastError();
}

extern "C" cudaError_t kern_sae_sparse_bwd(cudaStream_t stream, int64_t n, int64_t d, int64_t F,
                                           const int64_t *ptr, const int32_t *idx, const float *val,
                                           const float *delta, float coef, const int64_t *aux_ptr,
                                           const int32_t *aux_idx, const float *aux_val, const float *adelta,
                                           float aux_coef, const float *xt, const float *W_enc, const float *W_dec,
                                           int sub_b_dec, float *grad)
{
    if (n < 0 || n > INT_MAX || d < 1 || F < 1) return cudaErrorInvalidValue;
    const size_t fd = (size_t)F * (size_t)d;
    float *gWe = grad, *gWd = grad + fd, *gbe = grad + 2 * fd, *gbd = gbe + F;
    cudaError_t e = grad_init_bdec(stream, n, d, F, delta, coef, grad);
    if (e != cudaSuccess || n == 0) return e;
    sae_latent_grads_kernel<<<(unsigned)n, TP_CUDA_BLOCK, 0, stream>>>(d, ptr, idx, val, delta, xt, W_dec, coef,
                                                                       gWd, gWe, gbe);
    if (aux_ptr)
        sae_latent_grads_kernel<<<(unsigned)n, TP_CUDA_BLOCK, 0, stream>>>(d, aux_ptr, aux_idx, aux_val, adelta,
                                                                           xt, W_dec, aux_coef, gWd, gWe, gbe);
    if (sub_b_dec) sae_bdec_enc_kernel<<<cuda_grid_for((size_t)d), TP_CUDA_BLOCK, 0, stream>>>(gbe, W_enc, F, d, gbd);
    return cudaGetLastError();
}

/* A block per decoder row: g −= (g·w) w (f32 dot, as the CPU) */
__global__ void sae_project_kernel(const float *__restrict__ W, float *__restrict__ G, int64_t d)
{
    const float *w = W + (size_t)blockIdx.x * (size_t)d;
    float *g = G + (size_t)blockIdx.x * (size_t)d;
    double dot = 0;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) dot += (double)g[c] * w[c];
    const float p = (float)block_sum_f64(dot);
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) g[c] = __fadd_rn(g[c], __fmul_rn(-p, w[c]));
}

/* *out += Σ x², grid-stride partial sums per block */
__global__ void sae_sumsq_kernel(const float *__restrict__ x, size_t n, double *out)
{
    double a = 0;
    GRID_STRIDE(i, n) a += (double)x[i] * x[i];
    a = block_sum_f64(a);
    if (threadIdx.x == 0) atomicAdd(out, a);
}

extern "C" cudaError_t kern_sae_project(cudaStream_t stream, const float *W_dec, float *gW_dec, int64_t F,
                                        int64_t d)
{
    if (F < 1 || F > INT_MAX || d < 1) return cudaErrorInvalidValue;
    sae_project_kernel<<<(unsigned)F, TP_CUDA_BLOCK, 0, stream>>>(W_dec, gW_dec, d);
    return cudaGetLastError();
}

extern "C" cudaError_t kern_sae_sumsq(cudaStream_t stream, const float *x, size_t n, double *out)
{
    cudaError_t e = cudaMemsetAsync(out, 0, sizeof *out, stream);
    if (e != cudaSuccess || n == 0) return e;
    sae_sumsq_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, stream>>>(x, n, out);
    return cudaGetLastError();
}

/* g *= cf (when clipping), then torch.optim.Adam's f32 update, the CPU's roundings */
__global__ void sae_adam_kernel(float *__restrict__ p, float *__restrict__ g, float *__restrict__ m,
                                float *__restrict__ v, size_t n, float cf, int clip, float step_size, float bc2,
                                float eps, float w1, float b2, float w2)
{
    GRID_STRIDE(q, n)
    {
        float gq = g[q];
        if (clip) g[q] = gq = __fmul_rn(gq, cf);
        const float mq = __fadd_rn(m[q], __fmul_rn(w1, __fsub_rn(gq, m[q])));
        const float vq = __fadd_rn(__fmul_rn(v[q], b2), __fmul_rn(__fmul_rn(w2, gq), gq));
        m[q] = mq, v[q] = vq;
        p[q] = __fsub_rn(p[q], __fmul_rn(step_size, __fdiv_rn(mq, __fadd_rn(__fdiv_rn(sqrtf(vq), bc2), eps))));
    }
}

extern "C" cudaError_t kern_sae_adam(cudaStream_t stream, float *params, float *grad, float *m, float *v, size_t n,
                                     float cf, int clip, float step_size, float bc2, float eps, float w1, float b2,
                                     float w2)
{
    if (n == 0) return cudaSuccess;
    sae_adam_kernel<<<cuda_grid_for(n), TP_CUDA_BLOCK, 0, stream>>>(params, grad, m, v, n, cf, clip, step_size, bc2,
                                                                    eps, w1, b2, w2);
    return cudaGetLastError();
}

/* ‖w‖² of the block's row w [d] in f64 (every thread of the block calls it) */
static __device__ double row_sumsq_f64(const float *w, int64_t d)
{
    double q = 0;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) q += (double)w[c] * w[c];
    return block_sum_f64(q);
}

/* A block per decoder row: w /= ‖w‖ (f64 norm, as the CPU) */
__global__ void sae_renorm_kernel(float *__restrict__ W, int64_t d)
{
    float *w = W + (size_t)blockIdx.x * (size_t)d;
    const double q = row_sumsq_f64(w, d);
    if (q > 0) {
        const float inv = (float)(1.0 / sqrt(q));
        for (int64_t c = threadIdx.x; c < d; c += blockDim.x) w[c] = __fmul_rn(w[c], inv);
    }
}

extern "C" cudaError_t kern_sae_renorm(cudaStream_t stream, float *W_dec, int64_t F, int64_t d)
{
    if (F < 1 || F > INT_MAX || d < 1) return cudaErrorInvalidValue;
    sae_renorm_kernel<<<(unsigned)F, TP_CUDA_BLOCK, 0, stream>>>(W_dec, d);
    return cudaGetLastError();
}

/* ---- relu (the backend's sae_relu, sae_residual, sae_relu_bwd_init, sae_relu_bwd_pre) -- */

/* A block per decoder row: dn[i] = ‖w_i‖ (f64 sum, rounded to f32, as the CPU) */
__global__ void sae_row_norm_kernel(const float *__restrict__ W, int64_t d, float *__restrict__ dn)
{
    const double q = row_sumsq_f64(W + (size_t)blockIdx.x * (size_t)d, d);
    if (threadIdx.x == 0) dn[blockIdx.x] = (float)sqrt(q);
}

/* f = max(pre + b, 0) in place over pre [n, F] (nf = n·F); *l1 += Σ f·dn */
__global__ void sae_relu_kernel(float *__restrict__ pre, size_t nf, int64_t F, const float *__restrict__ b,
                                const float *__restrict__ dn, double *l1)
{
    double a = 0;
    GRID_STRIDE(q, nf)
    {
        const size_t i = q % (size_t)F;
        const float v = __fadd_rn(pre[q], b[i]);
        const float f = v > 0.0f ? v : 0.0f;   /* NaN to 0, as the CPU */
        pre[q] = f;
        a += (double)f * dn[i];
    }
    a = block_sum_f64(a);
    if (threadIdx.x == 0) atomicAdd(l1, a);
}

/* fires[i] += the rows with f[r, i] > 0, a thread per latent; *active += their total */
__global__ void sae_fires_kernel(const float *__restrict__ f, int64_t n, int64_t F, double *fires, double *active)
{
    double a = 0;
    GRID_STRIDE(i, (size_t)F)
    {
        int64_t c = 0;
        for (int64_t r = 0; r < n; r++) c += f[(size_t)r * (size_t)F + i] > 0.0f;
        fires[i] += (double)c;
        a += (double)c;
    }
    a = block_sum_f64(a);
    if (threadIdx.x == 0) atomicAdd(active, a);
}

extern "C" cudaError_t kern_sae_relu(cudaStream_t stream, float *pre, int64_t n, int64_t F, int64_t d,
                                     const float *b_enc, const float *W_dec, float *dec_norm, double *fires,
                                     double *active, double *l1)
{
    if (n < 0 || n > INT_MAX || F < 1 || F > INT_MAX || d < 1) return cudaErrorInvalidValue;
    sae_row_norm_kernel<<<(unsigned)F, TP_CUDA_BLOCK, 0, stream>>>(W_dec, d, dec_norm);
    if (n > 0) {
        const size_t nf = (size_t)n * (size_t)F;
        sae_relu_kernel<<<cuda_grid_for(nf), TP_CUDA_BLOCK, 0, stream>>>(pre, nf, F, b_enc, dec_norm, l1);
        sae_fires_kernel<<<cuda_grid_for((size_t)F), TP_CUDA_BLOCK, 0, stream>>>(pre, n, F, fires, active);
    }
    return cudaGetLastError();
}

/* delta += b − u over [n, d] (nd = n·d), b − u rounded first as the CPU; *sq += Σ delta² */
__global__ void sae_residual_kernel(float *__restrict__ delta, size_t nd, int64_t d, const float *__restrict__ b,
                                    const float *__restrict__ u, double *sq)
{
    double a = 0;
    GRID_STRIDE(q, nd)
    {
        const float v = __fadd_rn(delta[q], __fsub_rn(b[q % (size_t)d], u[q]));
        delta[q] = v;
        a += (double)v * v;
    }
    a = block_sum_f64(a);
    if (threadIdx.x == 0) atomicAdd(sq, a);
}

extern "C" cudaError_t kern_sae_residual(cudaStream_t stream, int64_t n, int64_t d, const float *b, const float *u,
                                         float *delta, double *sqsum)
{
    if (n < 0 || n > INT_MAX || d < 1) return cudaErrorInvalidValue;
    if (n == 0) return cudaSuccess;
    const size_t nd = (size_t)n * (size_t)d;
    sae_residual_kernel<<<cuda_grid_for(nd), TP_CUDA_BLOCK, 0, stream>>>(delta, nd, d, b, u, sqsum);
    return cudaGetLastError();
}

extern "C" cudaError_t kern_sae_relu_bwd_init(cudaStream_t stream, int64_t n, int64_t d, int64_t F,
                                              const float *delta, float coef, float *grad)
{
    if (n < 0 || n > INT_MAX || d < 1 || F < 1) return cudaErrorInvalidValue;
    return grad_init_bdec(stream, n, d, F, delta, coef, grad);
}

/* out[i] += Σ_r x[r, i] over x [n, F] in row order (f32), a thread per column */
__global__ void sae_colsum_f32_kernel(const float *__restrict__ x, int64_t n, int64_t F, float *__restrict__ out)
{
    GRID_STRIDE(i, (size_t)F)
    {
        float a = out[i];
        for (int64_t r = 0; r < n; r++) a = __fadd_rn(a, x[(size_t)r * (size_t)F + i]);
        out[i] = a;
    }
}

/* gWd[i] += (cl·colsum_i/dn_i)·W[i] where colsum_i > 0 and dn_i > 0, over [F, d] (fd = F·d) */
__global__ void sae_l1_dec_kernel(const float *__restrict__ W, const float *__restrict__ colsum,
                                  const float *__restrict__ dn, size_t fd, int64_t d, float cl, float *__restrict__ gWd)
{
    GRID_STRIDE(q, fd)
    {
        const size_t i = q / (size_t)d;
        if (colsum[i] > 0.0f && dn[i] > 0.0f)
            gWd[q] = __fadd_rn(gWd[q], __fmul_rn(__fdiv_rn(__fmul_rn(cl, colsum[i]), dn[i]), W[q]));
    }
}

/* G = f > 0 ? G + cl·dn : 0 over [n, F] (nf = n·F) */
__global__ void sae_relu_mask_kernel(float *__restrict__ G, const float *__restrict__ f, size_t nf, int64_t F,
                                     const float *__restrict__ dn, float cl)
{
    GRID_STRIDE(q, nf) G[q] = f[q] > 0.0f ? __fadd_rn(G[q], __fmul_rn(cl, dn[q % (size_t)F])) : 0.0f;
}

extern "C" cudaError_t kern_sae_relu_bwd_pre(cudaStream_t stream, int64_t n, int64_t d, int64_t F, const float *f,
                                             const float *W_dec, const float *dec_norm, float l1_coef, float *G,
                                             float *colsum, float *grad)
{
    if (n < 1 || n > INT_MAX || d < 1 || F < 1) return cudaErrorInvalidValue;
    const size_t fd = (size_t)F * (size_t)d, nf = (size_t)n * (size_t)F;
    float *gWd = grad + fd, *gbe = grad + 2 * fd;
    cudaError_t e = cudaMemsetAsync(colsum, 0, (size_t)F * sizeof *colsum, stream);
    if (e != cudaSuccess) return e;
    const unsigned gF = cuda_grid_for((size_t)F);
    sae_colsum_f32_kernel<<<gF, TP_CUDA_BLOCK, 0, stream>>>(f, n, F, colsum);
    sae_l1_dec_kernel<<<cuda_grid_for(fd), TP_CUDA_BLOCK, 0, stream>>>(W_dec, colsum, dec_norm, fd, d, l1_coef, gWd);
    sae_relu_mask_kernel<<<cuda_grid_for(nf), TP_CUDA_BLOCK, 0, stream>>>(G, f, nf, F, dec_norm, l1_coef);
    sae_colsum_f32_kernel<<<gF, TP_CUDA_BLOCK, 0, stream>>>(G, n, F, gbe);
    return cudaGetLastError();
}
