/* cpu.c — the CPU kernels of the forward pass (see cpu.h). */
#include "backend/cpu/cpu.h"

#include "pointwise_grad.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TP_X86 1
#define TP_AVX512 __attribute__((target("avx512f")))
static int have_avx512(void)
{
    /* libgcc fills the feature bits in a constructor; reading them is a load. */
    return __builtin_cpu_supports("avx512f");
}
#else
static int have_avx512(void) { return 0; }
#endif

/* ---- BLAS ---------------------------------------------------------------------- */

void cpu_gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)k,
                alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void cpu_gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k,
                alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

/* ---- exp ----------------------------------------------------------------------- */

#if defined(TP_X86)
/* expf on 16 lanes: Cephes expf (S. Moshier), n = round(x log2 e), r = x - n ln 2 in
 * two parts (C1 has 9 significant bits, so n*C1 is exact), e^r by its degree-7
 * minimax polynomial on [-ln2/2, ln2/2], then r * 2^n by vscalefps, which also
 * gives inf above 88.72 and (denormal) 0 below -103.97 without special cases.
 * Max error 2 ulp against the correctly rounded result (checked over 2^24 points
 * in tests/unit/test_forward.c: test_exp). NaN propagates. */
TP_AVX512 static inline __m512 exp512(__m512 x)
{
    const __m512 hi = _mm512_set1_ps(89.0f), lo = _mm512_set1_ps(-104.0f);
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 c1 = _mm512_set1_ps(0.693359375f), c2 = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(lo, _mm512_min_ps(hi, x));   /* NaN stays NaN (second operand) */
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, c1, x);
    r = _mm512_fnmadd_ps(n, c2, r);
    __m512 z = _mm512_mul_ps(r, r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, z, r);
    p = _mm512_add_ps(p, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

TP_AVX512 static void exp_avx512(float *restrict y, const float *restrict x, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, exp512(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* silu(g) * u = g / (1 + exp(-g)) * u, the operations in torch's order. */
TP_AVX512 static inline __m512 silu_mul512(__m512 g, __m512 u)
{
    __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    return _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u);
}

TP_AVX512 static void silu_mul_avx512(float *restrict gate, const float *restrict up, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(gate + i, silu_mul512(_mm512_loadu_ps(gate + i), _mm512_loadu_ps(up + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(gate + i, m, silu_mul512(_mm512_maskz_loadu_ps(m, gate + i),
                                                       _mm512_maskz_loadu_ps(m, up + i)));
    }
}
#endif

void cpu_exp(float *restrict y, const float *restrict x, size_t n)
{
#if defined(TP_X86)
    if (have_avx512()) { exp_avx512(y, x, n); return; }
#endif
    for (size_t i = 0; i < n; i++) y[i] = expf(x[i]);
}

/* ---- element-wise and row-wise ---------------------------------------------- */

TP_MULTIVERSION
void cpu_rmsnorm(float *out, const float *x, const float *w, int64_t rows, int64_t d, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *o = out + r * d;
        /* Sum of squares in f32 with 16 partial sums (vectorises; torch also reduces
         * in f32), mean then rsqrt as Olmo2RMSNorm / LlamaRMSNorm do. */
        float acc[16] = {0};
        int64_t i = 0;
        for (; i + 16 <= d; i += 16)
            for (int j = 0; j < 16; j++) acc[j] += xr[i + j] * xr[i + j];
        float ss = 0;
        for (int j = 0; j < 16; j++) ss += acc[j];
        for (; i < d; i++) ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (i = 0; i < d; i++) o[i] = w[i] * (xr[i] * inv);
    }
}

/* Backward of cpu_rmsnorm (maths in backend.h, rmsnorm_bwd). The two row sums and
 * r are taken in f64: they feed every element of the row, and f64 costs nothing
 * next to the GEMMs around it. dx may alias dout: a row's sums are read before the
 * row is written. */
int cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t rows,
                    int64_t d, float eps)
{
    double *acc = NULL;
    if (dw && !(acc = calloc((size_t)d ? (size_t)d : 1, sizeof *acc))) return -1;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *g = dout + r * d;
        float *o = dx + r * d;
        double ss = 0, gwx = 0;
        for (int64_t i = 0; i < d; i++) {
            ss += (double)xr[i] * xr[i];
            gwx += (double)g[i] * w[i] * xr[i];
        }
        double inv = 1.0 / sqrt(ss / (double)d + (double)eps), c = inv * inv * gwx / (double)d;
        if (acc)
            for (int64_t i = 0; i < d; i++) acc[i] += (double)g[i] * xr[i] * inv;
        for (int64_t i = 0; i < d; i++) o[i] = (float)(inv * ((double)g[i] * w[i] - (double)xr[i] * c));
    }
    if (acc) {
        for (int64_t i = 0; i < d; i++) dw[i] = (float)acc[i];
        free(acc);
    }
    return 0;
}

static void silu_mul_serial(float *restrict gate, const float *restrict up, size_t n)
{
#if defined(TP_X86)
    if (have_avx512()) { silu_mul_avx512(gate, up, n); return; }
#endif
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* Element-wise work in blocks of 16 Ki floats: small enough to share out evenly,
 * large enough that a task costs far more than taking it. */
#define ELEM_BLOCK ((size_t)16384)

typedef struct {
    float *gate;
    const float *up;
    size_t n;
} silu_job;

static void silu_task(void *arg, int64_t t, int thread)
{
    const silu_job *j = arg;
    size_t i0 = (size_t)t * ELEM_BLOCK, n = j->n - i0 < ELEM_BLOCK ? j->n - i0 : ELEM_BLOCK;
    silu_mul_serial(j->gate + i0, j->up + i0, n);
    (void)thread;
}

void cpu_silu_mul(float *restrict gate, const float *restrict up, size_t n)
{
    silu_job j = {gate, up, n};
    cpu_parallel_for((int64_t)((n + ELEM_BLOCK - 1) / ELEM_BLOCK), silu_task, &j);
}

/* Backward of silu_mul (the formula: kernels/pointwise_grad.h, shared with the CUDA
 * kernel). Not restrict: dgate or dup may alias dout (each element is read before written). */
TP_MULTIVERSION
static void silu_mul_bwd_serial(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float dg, du;
        tp_silu_mul_grad(gate[i], up[i], dout[i], &dg, &du);
        dgate[i] = dg;
        dup[i] = du;
    }
}

typedef struct {
    float *dgate, *dup;
    const float *dout, *gate, *up;
    size_t n;
} silu_bwd_job;

static void silu_bwd_task(void *arg, int64_t t, int thread)
{
    const silu_bwd_job *j = arg;
    size_t i0 = (size_t)t * ELEM_BLOCK, n = j->n - i0 < ELEM_BLOCK ? j->n - i0 : ELEM_BLOCK;
    silu_mul_bwd_serial(j->dgate + i0, j->dup + i0, j->dout + i0, j->gate + i0, j->up + i0, n);
    (void)thread;
}

void cpu_silu_mul_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, size_t n)
{
    silu_bwd_job j = {dgate, dup, dout, gate, up, n};
    cpu_parallel_for((int64_t)((n + ELEM_BLOCK - 1) / ELEM_BLOCK), silu_bwd_task, &j);
}

TP_MULTIVERSION
void cpu_add(float *restrict y, const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* Not multiversioned, like the loop of forward.c it replaces, so that it compiles
 * to the same arithmetic (one multiply per term, no FMA contraction under C11). */
void cpu_rope(float *x, int64_t rows, int nh, int dh, const int32_t *pos, const float *cos_t, const float *sin_t)
{
    int half = dh / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *cs = cos_t + (size_t)pos[r] * half, *sn = sin_t + (size_t)pos[r] * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)r * nh * dh + (size_t)h * dh;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}

/* Backward of cpu_rope: the transpose of each 2x2 rotation, in place on dx. */
void cpu_rope_bwd(float *dx, int64_t rows, int nh, int dh, const int32_t *pos, const float *cos_t,
                  const float *sin_t)
{
    int half = dh / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *cs = cos_t + (size_t)pos[r] * half, *sn = sin_t + (size_t)pos[r] * half;
        for (int h = 0; h < nh; h++) {
            float *v = dx + (size_t)r * nh * dh + (size_t)h * dh;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] + b * sn[i];
                v[i + half] = b * cs[i] - a * sn[i];
            }
        }
    }
}

void cpu_softmax_causal(float *s, int64_t T, int64_t ld, float scale)
{
    cpu_softmax_causal_offset(s, T, ld, scale, 0);
}

#if defined(TP_X86)
TP_AVX512 static void softmax_row_avx512(float *row, int64_t n, float scale)
{
    const __m512 sc = _mm512_set1_ps(scale);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 x = _mm512_mul_ps(_mm512_loadu_ps(row + j), sc);
        _mm512_storeu_ps(row + j, x);
        mx = _mm512_max_ps(mx, x);
    }
    __mmask16 tail = (__mmask16)((1u << (n - j)) - 1);
    if (j < n) {
        __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + j), sc);
        _mm512_mask_storeu_ps(row + j, tail, x);
        mx = _mm512_mask_max_ps(mx, tail, mx, x);
    }
    __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    __m512 sum = _mm512_setzero_ps();
    for (j = 0; j + 16 <= n; j += 16) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(row + j), m));
        _mm512_storeu_ps(row + j, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (j < n) {
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + j), m));
        _mm512_mask_storeu_ps(row + j, tail, e);
        sum = _mm512_mask_add_ps(sum, tail, sum, e);
    }
    __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(sum));
    for (j = 0; j + 16 <= n; j += 16) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), inv));
    if (j < n) _mm512_mask_storeu_ps(row + j, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + j), inv));
}
#endif

/* One row: x = s * scale over n entries, softmax in place. */
static void softmax_row(float *row, int64_t n, float scale)
{
#if defined(TP_X86)
    if (have_avx512()) {
        softmax_row_avx512(row, n, scale);
        return;
    }
#endif
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; j++) {
        row[j] *= scale;
        mx = row[j] > mx ? row[j] : mx;
    }
    float sum = 0;
    for (int64_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - mx);
        sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < n; j++) row[j] *= inv;
}


void cpu_softmax_causal_offset(float *s, int64_t T, int64_t ld, float scale, int64_t offset)
{
    int64_t width = offset + T;
    for (int64_t i = 0; i < T; i++) {
        float *row = s + i * ld;
        int64_t n = offset + i + 1;
        softmax_row(row, n, scale);
        for (int64_t j = n; j < width; j++) row[j] = 0.0f;
    }
}

/* ---- causal attention ------------------------------------------------------------
 * Per (sequence, head), in blocks of ATT_RB query rows: scores of the block against
 * the keys it can see (S = Q_blk K^T, only up to the block's last visible key, padded
 * to 16), softmax of each row over its own visible keys (the rest zeroed), then
 * Z_blk = P_blk V over the same keys. The diagonal block's upper part is computed
 * and then zeroed; nothing above it is touched. The AVX-512 path needs dh % 16 == 0
 * and keeps K transposed ([dh, keys]) so 16 keys' scores are one FMA per dh element;
 * other head dims take the scalar path. */

#define ATT_RB 8

static inline int64_t round16(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct {
    const tp_attn_shape *a;
    const tp_attn_seq *seqs;
    tp_attn_mode mode;
    int vec;                 /* AVX-512 path */
    float **ws;              /* per-thread workspace */
} attn_job;

static size_t attn_ws_floats(int64_t nk, int dh)
{
    int64_t nkp = round16(nk);
    return (size_t)nkp * (size_t)dh + (size_t)ATT_RB * (size_t)nkp;
}

#if defined(TP_X86)
/* S[r, j] = q_r . k_j for rows r < nr (rows >= nr repeat row nr-1 and are not
 * stored), columns j < ncols (a multiple of 16); Kt = [dh, ldkt]. */
TP_AVX512 static void qk_block_avx512(const float *q, int64_t ldq, int nr, const float *Kt, int64_t ldkt,
                                      int64_t ncols, int dh, float *S, int64_t lds)
{
    const float *qr[ATT_RB];
    for (int r = 0; r < ATT_RB; r++) qr[r] = q + (int64_t)(r < nr ? r : nr - 1) * ldq;
    int64_t j = 0;
    for (; j + 32 <= ncols; j += 32) {
        __m512 acc[ATT_RB][2];
        for (int r = 0; r < ATT_RB; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        for (int c = 0; c < dh; c++) {
            __m512 k0 = _mm512_loadu_ps(Kt + (int64_t)c * ldkt + j);
            __m512 k1 = _mm512_loadu_ps(Kt + (int64_t)c * ldkt + j + 16);
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RB; r++) {
                __m512 b = _mm512_set1_ps(qr[r][c]);
                acc[r][0] = _mm512_fmadd_ps(b, k0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(b, k1, acc[r][1]);
            }
        }
        for (int r = 0; r < nr; r++) {
            _mm512_storeu_ps(S + r * lds + j, acc[r][0]);
            _mm512_storeu_ps(S + r * lds + j + 16, acc[r][1]);
        }
    }
    if (j < ncols) {
        __m512 acc[ATT_RB];
        for (int r = 0; r < ATT_RB; r++) acc[r] = _mm512_setzero_ps();
        for (int c = 0; c < dh; c++) {
            __m512 k0 = _mm512_loadu_ps(Kt + (int64_t)c * ldkt + j);
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RB; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(qr[r][c]), k0, acc[r]);
        }
        for (int r = 0; r < nr; r++) _mm512_storeu_ps(S + r * lds + j, acc[r]);
    }
}

/* Z[r, :dh] = sum_{j < nk} P[r, j] V[j, :dh] for rows r < nr. */
TP_AVX512 static void pv_block_avx512(const float *P, int64_t ldp, int nr, int64_t nk, const float *V,
                                      int64_t ldv, int dh, float *Z, int64_t ldz)
{
    const float *pr[ATT_RB];
    for (int r = 0; r < ATT_RB; r++) pr[r] = P + (int64_t)(r < nr ? r : nr - 1) * ldp;
    int c = 0;
    for (; c + 32 <= dh; c += 32) {
        __m512 acc[ATT_RB][2];
        for (int r = 0; r < ATT_RB; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        for (int64_t j = 0; j < nk; j++) {
            __m512 v0 = _mm512_loadu_ps(V + j * ldv + c);
            __m512 v1 = _mm512_loadu_ps(V + j * ldv + c + 16);
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RB; r++) {
                __m512 b = _mm512_set1_ps(pr[r][j]);
                acc[r][0] = _mm512_fmadd_ps(b, v0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(b, v1, acc[r][1]);
            }
        }
        for (int r = 0; r < nr; r++) {
            _mm512_storeu_ps(Z + r * ldz + c, acc[r][0]);
            _mm512_storeu_ps(Z + r * ldz + c + 16, acc[r][1]);
        }
    }
    if (c < dh) {
        __m512 acc[ATT_RB];
        for (int r = 0; r < ATT_RB; r++) acc[r] = _mm512_setzero_ps();
        for (int64_t j = 0; j < nk; j++) {
            __m512 v0 = _mm512_loadu_ps(V + j * ldv + c);
#pragma GCC unroll 8
            for (int r = 0; r < ATT_RB; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(pr[r][j]), v0, acc[r]);
        }
        for (int r = 0; r < nr; r++) _mm512_storeu_ps(Z + r * ldz + c, acc[r]);
    }
}
#endif

static void qk_block_scalar(const float *q, int64_t ldq, int nr, const float *k, int64_t ldk, int64_t ncols,
                            int dh, float *S, int64_t lds)
{
    for (int r = 0; r < nr; r++)
        for (int64_t j = 0; j < ncols; j++) {
            float acc = 0;
            for (int c = 0; c < dh; c++) acc += q[r * ldq + c] * k[j * ldk + c];
            S[r * lds + j] = acc;
        }
}

static void pv_block_scalar(const float *P, int64_t ldp, int nr, int64_t nk, const float *V, int64_t ldv,
                            int dh, float *Z, int64_t ldz)
{
    for (int r = 0; r < nr; r++) {
        float *z = Z + r * ldz;
        for (int c = 0; c < dh; c++) z[c] = 0;
        for (int64_t j = 0; j < nk; j++) {
            float p = P[r * ldp + j];
            for (int c = 0; c < dh; c++) z[c] += p * V[j * ldv + c];
        }
    }
}

static void attn_task(void *arg, int64_t task, int thread)
{
    const attn_job *J = arg;
    const tp_attn_shape *a = J->a;
    const tp_attn_seq *s = &J->seqs[task / a->H];
    int h = (int)(task % a->H), g = h / (a->H / a->K), dh = a->dh;
    int64_t nq = s->nq, off = s->off, nk = off + nq, nkp = round16(nk);
    const float *q = s->q + (int64_t)h * dh, *k = s->k + (int64_t)g * dh, *v = s->v + (int64_t)g * dh;
    float *z = s->z + (int64_t)h * dh;
    float *pat = s->p ? s->p + (size_t)h * (size_t)nq * (size_t)nk : NULL;
    float *Kt = J->ws[thread], *S = Kt + (size_t)nkp * (size_t)dh;

    if (J->mode == TP_ATTN_PV) {
        for (int64_t i0 = 0; i0 < nq; i0 += ATT_RB) {
            int nr = nq - i0 < ATT_RB ? (int)(nq - i0) : ATT_RB;
            int64_t kend = off + i0 + nr;
#if defined(TP_X86)
            if (J->vec) pv_block_avx512(pat + i0 * nk, nk, nr, kend, v, a->ldk, dh, z + i0 * a->ldz, a->ldz);
            else
#endif
                pv_block_scalar(pat + i0 * nk, nk, nr, kend, v, a->ldk, dh, z + i0 * a->ldz, a->ldz);
        }
        return;
    }
    if (J->vec) {
        for (int c = 0; c < dh; c++) {
            float *row = Kt + (size_t)c * (size_t)nkp;
            for (int64_t j = 0; j < nk; j++) row[j] = k[j * a->ldk + c];
            for (int64_t j = nk; j < nkp; j++) row[j] = 0.0f;
        }
    }
    for (int64_t i0 = 0; i0 < nq; i0 += ATT_RB) {
        int nr = nq - i0 < ATT_RB ? (int)(nq - i0) : ATT_RB;
        int64_t kend = off + i0 + nr, kendp = round16(kend);
#if defined(TP_X86)
        if (J->vec) qk_block_avx512(q + i0 * a->ldq, a->ldq, nr, Kt, nkp, kendp, dh, S, nkp);
        else
#endif
            qk_block_scalar(q + i0 * a->ldq, a->ldq, nr, k, a->ldk, kend, dh, S, nkp);
        for (int r = 0; r < nr; r++) {
            float *row = S + (int64_t)r * nkp;
            int64_t n = off + i0 + r + 1;
            softmax_row(row, n, a->scale);
            for (int64_t j = n; j < kendp; j++) row[j] = 0.0f;
        }
        if (J->mode == TP_ATTN_PATTERN) {
            for (int r = 0; r < nr; r++) {
                float *prow = pat + (i0 + r) * nk;
                memcpy(prow, S + (int64_t)r * nkp, (size_t)kend * sizeof(float));
                for (int64_t j = kend; j < nk; j++) prow[j] = 0.0f;
            }
            continue;
        }
#if defined(TP_X86)
        if (J->vec) pv_block_avx512(S, nkp, nr, kend, v, a->ldk, dh, z + i0 * a->ldz, a->ldz);
        else
#endif
            pv_block_scalar(S, nkp, nr, kend, v, a->ldk, dh, z + i0 * a->ldz, a->ldz);
    }
}

int cpu_attention(const tp_attn_shape *a, const tp_attn_seq *seqs, int nseq, tp_attn_mode mode)
{
    int64_t nk_max = 0, ntasks = (int64_t)nseq * a->H;
    for (int s = 0; s < nseq; s++)
        if (seqs[s].off + seqs[s].nq > nk_max) nk_max = seqs[s].off + seqs[s].nq;
    int nt = cpu_get_threads();
    if (nt < 1) nt = 1;
    if (nt > CPU_POOL_MAX) nt = CPU_POOL_MAX;
    float *ws[CPU_POOL_MAX] = {0};
    size_t wsn = attn_ws_floats(nk_max, a->dh);
    int ok = 1;
    for (int t = 0; t < nt && ok; t++) ok = (ws[t] = malloc(wsn * sizeof(float))) != NULL;
    if (!ws[0]) return -1;
    attn_job J = {a, seqs, mode, have_avx512() && a->dh % 16 == 0, ws};
    if (!ok || nt == 1) {   /* one thread (or memory for one block only) */
        for (int64_t t = 0; t < ntasks; t++) attn_task(&J, t, 0);
    } else {
        cpu_parallel_for(ntasks, attn_task, &J);
    }
    for (int t = 0; t < CPU_POOL_MAX; t++) free(ws[t]);
    return 0;
}

/* ---- causal attention, backward ---------------------------------------------------
 * One task per (sequence, kv head): it owns dk and dv of that kv head and dq of the
 * H/K query heads that read it, so tasks never write the same memory and the sums do
 * not depend on the thread count. Per query head h, with n_i = off + i + 1 visible keys
 * in row i:
 *   P0 = the forward's pattern, recomputed by its own PATTERN task (same bits);
 *   dP[i, j] = dz_i · v_j                        (all j < off+nq when dp is wanted)
 *   dv_j += Σ_i P[i, j] dz_i                     (P = the edited pattern if given, else P0)
 *   dS[i, j] = P0[i, j] (dP[i, j] − Σ_j' P0[i, j'] dP[i, j'])   (softmax Jacobian)
 *   dq_i = scale Σ_j dS[i, j] k_j,   dk_j += scale Σ_i dS[i, j] q_i
 * over j < n_i. Dot products keep 16 partial sums so they vectorise. */

static float dot_f32(const float *restrict a, const float *restrict b, int n)
{
    float acc[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (int j = 0; j < 16; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void axpy_f32(float *restrict y, const float *restrict x, float alpha, int n)
{
    for (int i = 0; i < n; i++) y[i] += alpha * x[i];
}

typedef struct {
    const tp_attn_shape *a;
    const tp_attn_seq *seqs;
    const tp_attn_grad *grads;
    int vec;
    float **ws;
} attn_bwd_job;

static size_t attn_bwd_ws_floats(int64_t nq, int64_t nk, int dh)
{
    return attn_ws_floats(nk, dh) + 2 * (size_t)nq * (size_t)nk;
}

static void attn_bwd_head(const attn_bwd_job *J, const tp_attn_seq *s, const tp_attn_grad *gr, int h, int g,
                          float *ws)
{
    const tp_attn_shape *a = J->a;
    int dh = a->dh;
    int64_t nq = s->nq, off = s->off, nk = off + nq;
    const float *q = s->q + (int64_t)h * dh, *k = s->k + (int64_t)g * dh, *v = s->v + (int64_t)g * dh;
    const float *dz = gr->dz + (int64_t)h * dh;
    float *dq = gr->dq + (int64_t)h * dh, *dk = gr->dk + (int64_t)g * dh, *dv = gr->dv + (int64_t)g * dh;
    float *P = ws + attn_ws_floats(nk, dh), *D = P + (size_t)nq * (size_t)nk;

    /* P0: the forward's PATTERN task on this one head (H = K = 1, the same strides). */
    tp_attn_shape a1 = *a;
    a1.H = 1, a1.K = 1;
    tp_attn_seq s1 = {.q = q, .k = k, .v = v, .z = dq, .p = P, .nq = nq, .off = off};
    attn_job J1 = {&a1, &s1, TP_ATTN_PATTERN, J->vec, &ws};
    attn_task(&J1, 0, 0);

    float *dP = gr->dp ? gr->dp + (size_t)h * (size_t)nq * (size_t)nk : D;
    const float *Pz = s->p ? s->p + (size_t)h * (size_t)nq * (size_t)nk : P;
    for (int64_t i = 0; i < nq; i++) {
        int64_t ni = off + i + 1, ncol = gr->dp ? nk : ni;
        const float *dzi = dz + i * a->ldz;
        float *dPi = dP + i * nk;
        for (int64_t j = 0; j < ncol; j++) dPi[j] = dot_f32(dzi, v + j * a->ldk, dh);
        for (int64_t j = 0; j < ni; j++) axpy_f32(dv + j * a->ldk, dzi, Pz[i * nk + j], dh);
    }
    for (int64_t i = 0; i < nq; i++) {
        int64_t ni = off + i + 1;
        float *Pi = P + i * nk;
        const float *dPi = dP + i * nk;
        float rho = 0;
        for (int64_t j = 0; j < ni; j++) rho += Pi[j] * dPi[j];
        for (int64_t j = 0; j < ni; j++) Pi[j] = Pi[j] * (dPi[j] - rho);   /* P now holds dS */
        float *dqi = dq + i * a->ldq;
        const float *qi = q + i * a->ldq;
        for (int c = 0; c < dh; c++) dqi[c] = 0.0f;
        for (int64_t j = 0; j < ni; j++) {
            axpy_f32(dqi, k + j * a->ldk, Pi[j], dh);
            axpy_f32(dk + j * a->ldk, qi, a->scale * Pi[j], dh);
        }
        for (int c = 0; c < dh; c++) dqi[c] *= a->scale;
    }
}

static void attn_bwd_task(void *arg, int64_t task, int thread)
{
    const attn_bwd_job *J = arg;
    const tp_attn_shape *a = J->a;
    int G = a->H / a->K, g = (int)(task % a->K);
    const tp_attn_seq *s = &J->seqs[task / a->K];
    const tp_attn_grad *gr = &J->grads[task / a->K];
    int64_t nk = s->off + s->nq;
    for (int64_t j = 0; j < nk; j++) {
        memset(gr->dk + j * a->ldk + (int64_t)g * a->dh, 0, (size_t)a->dh * sizeof(float));
        memset(gr->dv + j * a->ldk + (int64_t)g * a->dh, 0, (size_t)a->dh * sizeof(float));
    }
    for (int i = 0; i < G; i++) attn_bwd_head(J, s, gr, g * G + i, g, J->ws[thread]);
}

int cpu_attention_bwd(const tp_attn_shape *a, const tp_attn_seq *seqs, const tp_attn_grad *grads, int nseq)
{
    int64_t ntasks = (int64_t)nseq * a->K;
    size_t wsn = 0;
    for (int s = 0; s < nseq; s++) {
        size_t n = attn_bwd_ws_floats(seqs[s].nq, seqs[s].off + seqs[s].nq, a->dh);
        wsn = n > wsn ? n : wsn;
    }
    int nt = cpu_get_threads();
    if (nt < 1) nt = 1;
    if (nt > CPU_POOL_MAX) nt = CPU_POOL_MAX;
    float *ws[CPU_POOL_MAX] = {0};
    int ok = 1;
    for (int t = 0; t < nt && ok; t++) ok = (ws[t] = malloc(wsn * sizeof(float))) != NULL;
    if (!ws[0]) return -1;
    attn_bwd_job J = {a, seqs, grads, have_avx512() && a->dh % 16 == 0, ws};
    if (!ok || nt == 1) {
        for (int64_t t = 0; t < ntasks; t++) attn_bwd_task(&J, t, 0);
    } else {
        cpu_parallel_for(ntasks, attn_bwd_task, &J);
    }
    for (int t = 0; t < CPU_POOL_MAX; t++) free(ws[t]);
    return 0;
}

/* ---- features ----------------------------------------------------------------- */

const char *cpu_features(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "x86-64 baseline";
#else
    return "generic";
#endif
}
