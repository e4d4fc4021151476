#include "backend/cpu/sae_ops.h"

#include "backend/multiversion.h"   /* TP_MULTIVERSION */

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- selection ------------------------------------------------------------------------ */

/* Heap order: a is "below" b when its value is lower, or equal with a higher index,
 * so the root is the first to evict and ties keep the lower index. */
static inline int heap_below(float va, int32_t ia, float vb, int32_t ib)
{
    return va < vb || (va == vb && ia > ib);
}

static void heap_sift(float *hv, int32_t *hi, int64_t n, int64_t p)
{
    float v = hv[p];
    int32_t id = hi[p];
    for (;;) {
        int64_t c = 2 * p + 1;
        if (c >= n) break;
        if (c + 1 < n && heap_below(hv[c + 1], hi[c + 1], hv[c], hi[c])) c++;
        if (!heap_below(hv[c], hi[c], v, id)) break;
        hv[p] = hv[c], hi[p] = hi[c];
        p = c;
    }
    hv[p] = v, hi[p] = id;
}

/* O(n_cand) compares plus O(log k) per replacement. */
void sae_cpu_select_topk(const float *restrict row, const int32_t *cand, int64_t n_cand, int64_t k, float *hv,
                         int32_t *hi)
{
    for (int64_t j = 0; j < k; j++) {
        int32_t id = cand ? cand[j] : (int32_t)j;
        hv[j] = row[id], hi[j] = id;
    }
    for (int64_t p = k / 2 - 1; p >= 0; p--) heap_sift(hv, hi, k, p);
    float floor_v = hv[0];
    for (int64_t j = k; j < n_cand; j++) {
        int32_t id = cand ? cand[j] : (int32_t)j;
        float v = row[id];
        if (v > floor_v) {   /* equal values never replace: the lower index stays */
            hv[0] = v, hi[0] = id;
            heap_sift(hv, hi, k, 0);
            floor_v = hv[0];
        }
    }
}

/* ---- dot and axpy --------------------------------------------------------------------- */

/* 16 partial sums, so the loop vectorises (a single float sum cannot be reordered
 * without -ffast-math); the order is fixed, so every rank gets the same bits. */
TP_MULTIVERSION
float sae_cpu_dotf(const float *restrict a, const float *restrict b, int64_t d)
{
    float acc[16] = {0};
    int64_t j = 0;
    for (; j + 16 <= d; j += 16)
        for (int q = 0; q < 16; q++) acc[q] += a[j + q] * b[j + q];
    float s = 0;
    for (int q = 0; q < 16; q++) s += acc[q];
    for (; j < d; j++) s += a[j] * b[j];
    return s;
}

TP_MULTIVERSION
void sae_cpu_axpyf(float a, const float *restrict x, float *restrict y, int64_t d)
{
    for (int64_t j = 0; j < d; j++) y[j] += a * x[j];
}

/* ---- forward -------------------------------------------------------------------------- */

tp_status cpu_be_sae_encode_in(tp_backend *be, const float *x_, int64_t n, int64_t d, float s, const float *b_dec,
                               bool sub_b_dec, float *u_, float *xt_, double *sum_u, double *sqnorm)
{
    (void)be;
    for (int64_t r = 0; r < n; r++) {
        const float *restrict x = x_ + (size_t)r * (size_t)d;
        float *restrict u = u_ + (size_t)r * (size_t)d, *restrict xt = xt_ + (size_t)r * (size_t)d;
        double q = 0;
        for (int64_t j = 0; j < d; j++) {
            u[j] = s * x[j];
            xt[j] = sub_b_dec ? u[j] - b_dec[j] : u[j];
        }
        if (sum_u)
            for (int64_t j = 0; j < d; j++) sum_u[j] += u[j], q += (double)u[j] * u[j];
        if (sqnorm) *sqnorm += q;
    }
    return TP_OK;
}

/* The heap of one row lives on the stack up to this many entries, else the heap. */
#define SAE_TOPK_STACK 1024

tp_status cpu_be_sae_topk(tp_backend *be, float *pre, int64_t n, int64_t F, const float *bias, const int32_t *cand,
                          int64_t n_cand, int64_t k, int64_t *ptr, int32_t *idx, float *val)
{
    (void)be;
    if (!cand) n_cand = F;
    if (k < 1 || k > n_cand)
        return tp_err(TP_ERR_RANGE, "sae_topk: k = %lld of %lld candidates", (long long)k, (long long)n_cand);
    float hv_s[SAE_TOPK_STACK];
    int32_t hi_s[SAE_TOPK_STACK];
    float *hv = hv_s;
    int32_t *hi = hi_s;
    if (k > SAE_TOPK_STACK) {
        hv = malloc((size_t)k * sizeof *hv), hi = malloc((size_t)k * sizeof *hi);
        if (!hv || !hi) {
            free(hv), free(hi);
            return tp_err(TP_ERR_NOMEM, "sae_topk: out of memory for k = %lld", (long long)k);
        }
    }
    size_t na = 0;
    ptr[0] = 0;
    for (int64_t r = 0; r < n; r++) {
        float *restrict p = pre + (size_t)r * (size_t)F;
        if (bias)
            for (int64_t i = 0; i < F; i++) p[i] += bias[i];
        sae_cpu_select_topk(p, cand, n_cand, k, hv, hi);
        for (int64_t j = 0; j < k; j++)
            if (hv[j] > 0) idx[na] = hi[j], val[na++] = hv[j];
        ptr[r + 1] = (int64_t)na;
    }
    if (hv != hv_s) free(hv), free(hi);
    return TP_OK;
}

tp_status cpu_be_sae_decode(tp_backend *be, int64_t n, int64_t d, tp_sae_codes c, const float *W, const float *b,
                            const float *u_, float *out, double *fires, double *active, double *sqsum)
{
    (void)be;
    double sq = 0;
    for (int64_t r = 0; r < n; r++) {
        float *restrict dl = out + (size_t)r * (size_t)d;
        if (u_) {
            const float *restrict u = u_ + (size_t)r * (size_t)d;
            for (int64_t j = 0; j < d; j++) dl[j] = b[j] - u[j];
        }
        for (int64_t a = c.ptr[r]; a < c.ptr[r + 1]; a++) {
            if (!(c.val[a] > 0)) continue;
            sae_cpu_axpyf(c.val[a], W + (size_t)c.idx[a] * (size_t)d, dl, d);
            if (fires) fires[c.idx[a]] += 1, *active += 1;
        }
        for (int64_t j = 0; j < d; j++) sq += (double)dl[j] * dl[j];
    }
    *sqsum += sq;
    return TP_OK;
}

tp_status cpu_be_sae_relu(tp_backend *be, float *pre, int64_t n, int64_t F, int64_t d, const float *b_enc,
                          const float *W_dec, float *dec_norm, double *fires, double *active, double *l1)
{
    (void)be;
    for (int64_t i = 0; i < F; i++) {
        double q = 0;
        const float *wd = W_dec + (size_t)i * (size_t)d;
        for (int64_t j = 0; j < d; j++) q += (double)wd[j] * wd[j];
        dec_norm[i] = (float)sqrt(q);
    }
    double sum = 0;
    int64_t na = 0;
    for (int64_t r = 0; r < n; r++) {
        float *restrict f = pre + (size_t)r * (size_t)F;
        double rl1 = 0;
        for (int64_t i = 0; i < F; i++) f[i] += b_enc[i];
        for (int64_t i = 0; i < F; i++) {
            f[i] = f[i] > 0 ? f[i] : 0.0f;
            rl1 += (double)f[i] * dec_norm[i];
        }
        for (int64_t i = 0; i < F; i++)
            if (f[i] > 0) fires[i] += 1, na++;
        sum += rl1;
    }
    *l1 += sum, *active += (double)na;
    return TP_OK;
}

tp_status cpu_be_sae_residual(tp_backend *be, int64_t n, int64_t d, const float *b, const float *u_, float *delta,
                              double *sqsum)
{
    (void)be;
    double sq = 0;
    for (int64_t r = 0; r < n; r++) {
        float *restrict dl = delta + (size_t)r * (size_t)d;
        const float *restrict u = u_ + (size_t)r * (size_t)d;
        for (int64_t j = 0; j < d; j++) {
            dl[j] += b[j] - u[j];
            sq += (double)dl[j] * dl[j];
        }
    }
    *sqsum += sq;
    return TP_OK;
}

/* ---- backward ------------------------------------------------------------------------- */

/* grad [2Fd + F + d] = 0, then ∂b_dec = Σ_r coef·delta[r] in row order. */
static void grad_init_bdec(float *grad, int64_t n, int64_t d, int64_t F, const float *delta, float coef)
{
    float *gbd = grad + 2 * (size_t)F * (size_t)d + (size_t)F;
    memset(grad, 0, (2 * (size_t)F * (size_t)d + (size_t)F + (size_t)d) * sizeof(float));
    for (int64_t r = 0; r < n; r++) sae_cpu_axpyf(coef, delta + (size_t)r * (size_t)d, gbd, d);
}

/* One row's sparse backward over its codes [a0, a1): with g = coef·δ (δ the row's
 * residual gradient) and x̃ the row's encoder input, ∂W_dec[i] += val·g,
 * ∂pre_i = g·W_dec[i], ∂W_enc[i] += ∂pre_i·x̃, ∂b_enc[i] += ∂pre_i. */
static void latent_grads(const float *W_dec, int64_t d, tp_sae_codes c, int64_t a0, int64_t a1,
                         const float *delta, const float *xt, float coef, float *gWd, float *gWe, float *gbe)
{
    for (int64_t a = a0; a < a1; a++) {
        if (!(c.val[a] > 0)) continue;
        const size_t i = (size_t)c.idx[a];
        float gp = coef * sae_cpu_dotf(delta, W_dec + i * (size_t)d, d);
        sae_cpu_axpyf(coef * c.val[a], delta, gWd + i * (size_t)d, d);
        sae_cpu_axpyf(gp, xt, gWe + i * (size_t)d, d);
        gbe[i] += gp;
    }
}

tp_status cpu_be_sae_sparse_bwd(tp_backend *be, const tp_sae_bwd *a)
{
    (void)be;
    const int64_t d = a->d, F = a->F, n = a->n;
    float *gWe = a->grad, *gWd = a->grad + (size_t)F * (size_t)d, *gbe = gWd + (size_t)F * (size_t)d;
    float *gbd = gbe + F;
    grad_init_bdec(a->grad, n, d, F, a->delta, a->coef);
    if (n == 0) return TP_OK;
    /* only the k (or aux) latents of each row touch W_dec and W_enc */
    for (int64_t r = 0; r < n; r++) {
        const float *xt = a->xt + (size_t)r * (size_t)d;
        latent_grads(a->W_dec, d, a->codes, a->codes.ptr[r], a->codes.ptr[r + 1], a->delta + (size_t)r * (size_t)d,
                     xt, a->coef, gWd, gWe, gbe);
        if (a->aux.ptr)
            latent_grads(a->W_dec, d, a->aux, a->aux.ptr[r], a->aux.ptr[r + 1], a->adelta + (size_t)r * (size_t)d,
                         xt, a->aux_coef, gWd, gWe, gbe);
    }
    if (a->sub_b_dec)
        for (int64_t i = 0; i < F; i++)
            if (gbe[i] != 0) sae_cpu_axpyf(-gbe[i], a->W_enc + (size_t)i * (size_t)d, gbd, d);
    return TP_OK;
}

tp_status cpu_be_sae_relu_bwd_init(tp_backend *be, const tp_sae_relu_bwd *a)
{
    (void)be;
    grad_init_bdec(a->grad, a->n, a->d, a->F, a->delta, a->coef);
    return TP_OK;
}

tp_status cpu_be_sae_relu_bwd_pre(tp_backend *be, const tp_sae_relu_bwd *a)
{
    (void)be;
    const int64_t d = a->d, F = a->F, n = a->n;
    const float cl = a->l1_coef, *dec_norm = a->dec_norm, *f = a->f;
    float *gWd = a->grad + (size_t)F * (size_t)d, *gbe = gWd + (size_t)F * (size_t)d, *colsum = a->colsum;
    /* the L1 term of ∂W_dec: (λ/N) Σ_r f_ri · w_i/‖w_i‖ */
    memset(colsum, 0, (size_t)F * sizeof *colsum);
    for (int64_t r = 0; r < n; r++) {
        const float *restrict fr = f + (size_t)r * (size_t)F;
        for (int64_t i = 0; i < F; i++) colsum[i] += fr[i];
    }
    for (int64_t i = 0; i < F; i++)
        if (colsum[i] > 0 && dec_norm[i] > 0)
            sae_cpu_axpyf(cl * colsum[i] / dec_norm[i], a->W_dec + (size_t)i * (size_t)d, gWd + (size_t)i * (size_t)d,
                          d);
    /* ∂/∂pre = (cr·delta·W_decᵀ + (λ/N)‖w_i‖)·[f > 0] */
    for (int64_t r = 0; r < n; r++) {
        float *restrict g = a->G + (size_t)r * (size_t)F;
        const float *restrict fr = f + (size_t)r * (size_t)F;
        for (int64_t i = 0; i < F; i++) g[i] = fr[i] > 0 ? g[i] + cl * dec_norm[i] : 0.0f;
        for (int64_t i = 0; i < F; i++) gbe[i] += g[i];
    }
    return TP_OK;
}

/* ---- optimiser ------------------------------------------------------------------------ */

tp_status cpu_be_sae_adam(tp_backend *be, const tp_sae_adam *a, double *grad_norm)
{
    (void)be;
    const int64_t d = a->d, F = a->F;
    const size_t P = (size_t)a->P;
    /* locals, not a->…: a store through grad could alias *a and stop the loops vectorising */
    float *restrict grad = a->grad, *restrict params = a->params;
    float *W_dec = params + (size_t)F * (size_t)d, *gWd = grad + (size_t)F * (size_t)d;
    /* 1. no gradient along the unit decoder rows */
    if (a->decoder_unit_norm) {
        for (int64_t i = 0; i < F; i++) {
            const float *wd = W_dec + (size_t)i * (size_t)d;
            float *g = gWd + (size_t)i * (size_t)d;
            sae_cpu_axpyf(-sae_cpu_dotf(g, wd, d), wd, g, d);
        }
    }
    /* 2. clipping by the global norm */
    double gn = 0;
    for (size_t p = 0; p < P; p++) gn += (double)grad[p] * grad[p];
    gn = sqrt(gn);
    *grad_norm = gn;
    if (a->max_grad_norm > 0) {
        double coef = a->max_grad_norm / (gn + 1e-6);
        if (coef < 1) {
            const float cf = (float)coef;
            for (size_t p = 0; p < P; p++) grad[p] *= cf;
        }
    }
    /* 3. Adam, as torch.optim.Adam (single-tensor path) computes it in f32 */
    {
        const float step_size = a->step_size, bc2f = a->bc2, eps = a->eps, w1 = a->w1, b2 = a->b2, w2 = a->w2;
        float *restrict p = params, *restrict mm = a->m, *restrict vv = a->v;
        const float *restrict g = grad;
        for (size_t q = 0; q < P; q++) {
            mm[q] += w1 * (g[q] - mm[q]);
            vv[q] = vv[q] * b2 + w2 * g[q] * g[q];
            p[q] -= step_size * (mm[q] / (sqrtf(vv[q]) / bc2f + eps));
        }
    }
    /* 4. unit decoder rows */
    if (a->decoder_unit_norm) {
        for (int64_t i = 0; i < F; i++) {
            float *wd = W_dec + (size_t)i * (size_t)d;
            double q = 0;
            for (int64_t j = 0; j < d; j++) q += (double)wd[j] * wd[j];
            if (q > 0) {
                const float inv = (float)(1.0 / sqrt(q));
                for (int64_t j = 0; j < d; j++) wd[j] *= inv;
            }
        }
    }
    return TP_OK;
}
