/* attention.cu — causal attention with GQA over one sequence, forward (FUSED, PATTERN,
 * PV) and backward (kernels.h: kern_attention, kern_attention_bwd).
 *
 * Deliberately simple: one block per (query row i, query head h), f32 throughout.
 * The softmax of row i takes three passes over its n = off+i+1 keys (max, sum of
 * exponentials, then p_j = exp(s_j - max) / sum), recomputing the scores each time,
 * so no [T, T] buffer is needed whatever the sequence length. z_i = Σ_j p_j v_j is
 * summed over j in order, a chunk of blockDim probabilities at a time staged in
 * shared memory, thread c owning output column c (dh <= blockDim).
 *
 * Bits: a score is fmaf over the head dimension in order, then rounded times scale
 * (__fmul_rn: no contraction); the probability is the same expression in every mode,
 * so PATTERN followed by PV gives the bits FUSED gives, and the backward's P0 is the
 * forward's pattern. Compared with the CPU (other summation orders, its own expf) the
 * results agree to ~1e-6 relative.
 */
#include "cuda_common.cuh"
// defines: block_sum, block_max
#include "reduce.cuh"

enum { ATT_FUSED = 0, ATT_PATTERN = 1, ATT_PV = 2 };

/* Σ_c a[c]·b[c] in order with fmaf: the same bits whichever operand is in shared memory. */
__device__ __forceinline__ float dot_dh(const float *a, const float *b, int dh)
{
    float s = 0.0f;
    for (int c = 0; c < dh; c++) s = fmaf(a[c], b[c], s);
    return s;
}

__device__ __forceinline__ float att_score(const float *q, const float *k, int dh, float scale)
{
    return __fmul_rn(dot_dh(q, k, dh), scale);
}

/* Max and 1/Σexp of row q over keys 0..n-1 (k rows ldk apart); every thread gets them. */
__device__ void att_row_stats(const float *qs, const float *kh, int64_t ldk, int64_t n, int dh, float scale,
                              float *mx_out, float *inv_out)
{
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) mx = fmaxf(mx, att_score(qs, kh + j * ldk, dh, scale));
    mx = block_max(mx);
    float sum = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) sum += expf(att_score(qs, kh + j * ldk, dh, scale) - mx);
    sum = block_sum(sum);
    *mx_out = mx;
    *inv_out = 1.0f / sum;
}

__device__ __forceinline__ float att_prob(const float *qs, const float *krow, int dh, float scale, float mx,
                                          float inv)
{
    return __fmul_rn(expf(att_score(qs, krow, dh, scale) - mx), inv);
}

/* Shared memory: q_i [dh], then a chunk of probabilities [blockDim]. */
__global__ void attention_kernel(int mode, const float *__restrict__ q, const float *__restrict__ k,
                                 const float *__restrict__ v, float *__restrict__ z, float *p, int64_t nq,
                                 int64_t off, int G, int dh, int64_t ldq, int64_t ldk, int64_t ldz, float scale)
{
    extern __shared__ float sh[];
    float *qs = sh, *ps = sh + dh;
    int64_t i = blockIdx.x, n = off + i + 1, nk = off + nq;
    int h = blockIdx.y, g = h / G, tid = threadIdx.x;
    const float *kh = k + (int64_t)g * dh, *vh = v + (int64_t)g * dh;
    float *prow = p ? p + ((int64_t)h * nq + i) * nk : NULL;
    float mx = 0.0f, inv = 0.0f;
    if (mode != ATT_PV) {
        for (int c = tid; c < dh; c += blockDim.x) qs[c] = q[i * ldq + (int64_t)h * dh + c];
        __syncthreads();
        att_row_stats(qs, kh, ldk, n, dh, scale, &mx, &inv);
    }
    if (mode == ATT_PATTERN) {
        /* masked entries exactly 0 */
        for (int64_t j = tid; j < nk; j += blockDim.x)
            prow[j] = j < n ? att_prob(qs, kh + j * ldk, dh, scale, mx, inv) : 0.0f;
        return;
    }
    float acc = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += blockDim.x) {
        int64_t j = j0 + tid;
        float pj = 0.0f;
        if (j < n) pj = mode == ATT_PV ? prow[j] : att_prob(qs, kh + j * ldk, dh, scale, mx, inv);
        __syncthreads();   /* the previous chunk is consumed */
        ps[tid] = pj;
        __syncthreads();
        int64_t cnt = n - j0 < (int64_t)blockDim.x ? n - j0 : (int64_t)blockDim.x;
        if (tid < dh)
            for (int64_t t = 0; t < cnt; t++) acc = fmaf(ps[t], vh[(j0 + t) * ldk + tid], acc);
    }
    if (tid < dh) z[i * ldz + (int64_t)h * dh + tid] = acc;
}

/* Threads per block: every output column has its thread, whole warps, >= 128. */
static unsigned att_block(int dh)
{
    unsigned b = (unsigned)((dh + 31) / 32 * 32);
    return b < 128 ? 128 : b;
}

static int att_args_ok(int H, int K, int dh, int64_t nq, int64_t off)
{
    return H >= 1 && K >= 1 && H % K == 0 && H <= 65535 && dh >= 1 && dh <= 1024 && nq >= 0 && nq <= INT_MAX &&
           off >= 0;
}

extern "C" cudaError_t kern_attention(cudaStream_t stream, int mode, const float *q, const float *k,
                                      const float *v, float *z, float *p, int64_t nq, int64_t off, int H, int K,
                                      int dh, int64_t ldq, int64_t ldk, int64_t ldz, float scale)
{
    if (!att_args_ok(H, K, dh, nq, off) || mode < ATT_FUSED || mode > ATT_PV || (mode != ATT_FUSED && !p))
        return cudaErrorInvalidValue;
    if (nq == 0) return cudaSuccess;
    unsigned bs = att_block(dh);
    size_t shmem = ((size_t)dh + bs) * sizeof(float);
    dim3 grid((unsigned)nq, (unsigned)H);
    attention_kernel<<<grid, bs, shmem, stream>>>(mode, q, k, v, z, mode == ATT_FUSED ? NULL : p, nq, off, H / K,
                                                   dh, ldq, ldk, ldz, scale);
    return cudaGetLastError();
}

/* ---- backward ----------------------------------------------------------------------
 * Two kernels, nothing [T, T] kept (the CPU's formulas, backend/cpu/cpu.c):
 *   rows (block per (i, h)): P0 row stats (max, 1/sum), dP_ij = dz_i·v_j (into dp for
 *     every j < off+nq when wanted), rho_i = Σ_j P0_ij dP_ij, dq_i = scale Σ_j dS_ij k_j
 *     with dS_ij = P0_ij (dP_ij − rho_i); the stats (max, 1/sum, rho) go to `stats`.
 *   keys (block per (j, kv head g)): over the query heads of g and the rows i that see
 *     j (off+i >= j), dk_j = scale Σ dS_ij q_i and dv_j = Σ P_ij dz_i, P the edited
 *     pattern when given, else P0; both written, one block per (j, g), so no atomics
 *     and the sums do not depend on scheduling. */

__global__ void attention_bwd_rows_kernel(const float *__restrict__ q, const float *__restrict__ k,
                                          const float *__restrict__ v, const float *__restrict__ dz,
                                          float *__restrict__ dq, float *__restrict__ dp,
                                          float *__restrict__ stats, int64_t nq, int64_t off, int G, int dh,
                                          int64_t ldq, int64_t ldk, int64_t ldz, float scale)
{
    extern __shared__ float sh[];
    float *qs = sh, *dzs = sh + dh, *cs = sh + 2 * dh;
    int64_t i = blockIdx.x, n = off + i + 1, nk = off + nq;
    int h = blockIdx.y, g = h / G, tid = threadIdx.x;
    const float *kh = k + (int64_t)g * dh, *vh = v + (int64_t)g * dh;
    for (int c = tid; c < dh; c += blockDim.x) {
        qs[c] = q[i * ldq + (int64_t)h * dh + c];
        dzs[c] = dz[i * ldz + (int64_t)h * dh + c];
    }
    __syncthreads();
    float mx, inv;
    att_row_stats(qs, kh, ldk, n, dh, scale, &mx, &inv);
    float *dprow = dp ? dp + ((int64_t)h * nq + i) * nk : NULL;
    float rho = 0.0f;
    for (int64_t j = tid; j < (dprow ? nk : n); j += blockDim.x) {
        float d = dot_dh(dzs, vh + j * ldk, dh);
        if (dprow) dprow[j] = d;
        if (j < n) rho += att_prob(qs, kh + j * ldk, dh, scale, mx, inv) * d;
    }
    rho = block_sum(rho);
    float acc = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += blockDim.x) {
        int64_t j = j0 + tid;
        float ds = 0.0f;
        if (j < n) ds = att_prob(qs, kh + j * ldk, dh, scale, mx, inv) * (dot_dh(dzs, vh + j * ldk, dh) - rho);
        __syncthreads();
        cs[tid] = ds;
        __syncthreads();
        int64_t cnt = n - j0 < (int64_t)blockDim.x ? n - j0 : (int64_t)blockDim.x;
        if (tid < dh)
            for (int64_t t = 0; t < cnt; t++) acc = fmaf(cs[t], kh[(j0 + t) * ldk + tid], acc);
    }
    if (tid < dh) dq[i * ldq + (int64_t)h * dh + tid] = acc * scale;
    if (tid == 0) {
        float *st = stats + 3 * ((int64_t)h * nq + i);
        st[0] = mx, st[1] = inv, st[2] = rho;
    }
}

/* Shared memory: k_j, v_j [dh] each, then the chunk's dS and P [blockDim] each. */
__global__ void attention_bwd_keys_kernel(const float *__restrict__ q, const float *__restrict__ k,
                                          const float *__restrict__ v, const float *__restrict__ dz,
                                          const float *__restrict__ p, const float *__restrict__ stats,
                                          float *__restrict__ dk, float *__restrict__ dv, int64_t nq, int64_t off,
                                          int G, int dh, int64_t ldq, int64_t ldk, int64_t ldz, float scale)
{
    extern __shared__ float sh[];
    float *ks = sh, *vs = sh + dh, *cds = sh + 2 * dh, *cp = cds + blockDim.x;
    int64_t j = blockIdx.x, nk = off + nq;
    int g = blockIdx.y, tid = threadIdx.x;
    for (int c = tid; c < dh; c += blockDim.x) {
        ks[c] = k[j * ldk + (int64_t)g * dh + c];
        vs[c] = v[j * ldk + (int64_t)g * dh + c];
    }
    __syncthreads();
    int64_t i0 = j - off > 0 ? j - off : 0, ni = nq - i0, total = (int64_t)G * ni;
    float acck = 0.0f, accv = 0.0f;
    for (int64_t t0 = 0; t0 < total; t0 += blockDim.x) {
        int64_t t = t0 + tid;
        float ds = 0.0f, pz = 0.0f;
        if (t < total) {
            int h = g * G + (int)(t / ni);
            int64_t i = i0 + t % ni;
            const float *st = stats + 3 * ((int64_t)h * nq + i);
            float p0 = __fmul_rn(expf(att_score(q + i * ldq + (int64_t)h * dh, ks, dh, scale) - st[0]), st[1]);
            ds = p0 * (dot_dh(dz + i * ldz + (int64_t)h * dh, vs, dh) - st[2]);
            pz = p ? p[((int64_t)h * nq + i) * nk + j] : p0;
        }
        __syncthreads();
        cds[tid] = ds, cp[tid] = pz;
        __syncthreads();
        int64_t cnt = total - t0 < (int64_t)blockDim.x ? total - t0 : (int64_t)blockDim.x;
        if (tid < dh) {
            for (int64_t u = 0; u < cnt; u++) {
                int h = g * G + (int)((t0 + u) / ni);
                int64_t i = i0 + (t0 + u) % ni;
                acck = fmaf(cds[u], q[i * ldq + (int64_t)h * dh + tid], acck);
                accv = fmaf(cp[u], dz[i * ldz + (int64_t)h * dh + tid], accv);
            }
        }
    }
    if (tid < dh) {
        dk[j * ldk + (int64_t)g * dh + tid] = acck * scale;
        dv[j * ldk + (int64_t)g * dh + tid] = accv;
    }
}

extern "C" cudaError_t kern_attention_bwd(cudaStream_t stream, const float *q, const float *k, const float *v,
                                          const float *p, const float *dz, float *dq, float *dk, float *dv,
                                          float *dp, float *stats, int64_t nq, int64_t off, int H, int K, int dh,
                                          int64_t ldq, int64_t ldk, int64_t ldz, float scale)
{
    if (!att_args_ok(H, K, dh, nq, off) || off + nq > INT_MAX) return cudaErrorInvalidValue;
    if (nq == 0) return cudaSuccess;
    unsigned bs = att_block(dh);
    attention_bwd_rows_kernel<<<dim3((unsigned)nq, (unsigned)H), bs, (2 * (size_t)dh + bs) * sizeof(float),
                                stream>>>(q, k, v, dz, dq, dp, stats, nq, off, H / K, dh, ldq, ldk, ldz, scale);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    attention_bwd_keys_kernel<<<dim3((unsigned)(off + nq), (unsigned)K), bs,
                                (2 * (size_t)dh + 2 * (size_t)bs) * sizeof(float), stream>>>(
        q, k, v, dz, p, stats, dk, dv, nq, off, H / K, dh, ldq, ldk, ldz, scale);
    return cudaGetLastError();
}
