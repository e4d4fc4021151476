/* test_sae.c — sparse autoencoders (src/analysis/sae): gradients against finite
 * differences, 3 training steps against the PyTorch reference
 * (tools/reference/make_golden_sae.py → tests/data/golden/sae), checkpoints,
 * inference, schedules and config errors. No MPI: comm = MPI_COMM_NULL.
 *
 * Tolerances.
 *  - Gradient check: the C gradient (f32) against central differences of an
 *    independent f64 implementation of the loss written from sae.h, with the
 *    activation pattern (ReLU mask, TopK sets, BatchTopK set, AuxK sets and the
 *    AuxK target e) frozen at the base point. That frozen loss is a polynomial of
 *    degree ≤ 2 in each single parameter (smooth in ‖w_i‖), so central differences
 *    with h = 1e-4 are exact up to f64 rounding (~1e-11); what remains is the f32
 *    rounding of the C gradient: sums of ~N·d products, ~1e-6 relative to the
 *    largest entry. Bound: |g − g_fd| ≤ 2e-5·max|g_fd| + 1e-4·|g_fd| per entry.
 *    The base points keep every selection 1e-5 away from a tie or zero (f32
 *    pre-activations err by ~1e-6 here), so f32 and f64 select the same latents
 *    (asserted).
 *  - Directional check of the C loss itself (f32 forward, no freezing): step h =
 *    1e-3 relative along a random direction; the f32 loss carries ~1e-6 relative
 *    rounding, ~1e-3 of the difference; bound 1e-2 relative.
 *  - Golden: per tensor max|c − ref| / max|ref| ≤ 1e-5 for the parameters and the
 *    Adam moments: both sides round the same f32 operations in another order
 *    (GEMM blocking, sums), ~1e-7 per step, and Adam's first steps move every
 *    parameter by about ±lr whatever the gradient's size, so nothing amplifies it
 *    (measured ≤ 3e-6). Metrics relative 1e-5 (f32 sums of N·d terms on both sides,
 *    ~1e-7), the schedules 1e-12, L0, dead and dense fractions and since_fired exact.
 */
#include "analysis/sae/sae.h"
#include "io/safetensors.h"
#include "tp_test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---------------------------------------------------------------- */

static uint64_t test_rng = 12345;
static double urand(void)   /* splitmix64 → [0, 1) */
{
    uint64_t z = (test_rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

static double max_abs_f(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i]));
    return m;
}

/* max|a − b| / max|b| */
static double rel_diff(const float *a, const float *b, size_t n)
{
    double e = 0, s = max_abs_f(b, n);
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - (double)b[i]));
    return s > 0 ? e / s : e;
}

static sae_config small_config(sae_arch arch, int64_t d, int64_t F)
{
    sae_config c = sae_config_default(arch, d, F);
    c.k = arch == SAE_RELU ? 0 : 3;
    c.aux_k = arch == SAE_RELU ? 0 : 4;
    c.dead_tokens = 100;
    c.total_steps = 10;
    return c;
}

/* ---- f64 reference loss with a frozen activation pattern ------------------------- */

typedef struct {
    int64_t N, d, F;
    double s;
    unsigned char *M;   /* [N, F] main activation mask */
    unsigned char *A;   /* [N, F] AuxK mask */
    double *e0;         /* [N, d] AuxK target, frozen */
    int aux_on;         /* AuxK term present (some latent dead, aux_k > 0) */
    double min_gap;     /* smallest distance of a selection from a tie or from 0 */
} frozen;

static void ref_pre(const sae_config *c, const double *p, const float *x, const frozen *fz, int64_t n, double *u,
                    double *pre)
{
    const int64_t d = fz->d, F = fz->F;
    const double *We = p, *be = p + 2 * F * d, *bd = be + F;
    double xt[64];
    for (int64_t j = 0; j < d; j++) {
        u[j] = (double)((float)fz->s * x[n * d + j]);   /* the C input, u = (float)s · x */
        xt[j] = c->apply_b_dec_to_input ? u[j] - bd[j] : u[j];
    }
    for (int64_t i = 0; i < F; i++) {
        double a = be[i];
        for (int64_t j = 0; j < d; j++) a += We[i * d + j] * xt[j];
        pre[i] = a;
    }
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Selection at the base point p: fills fz->M, fz->A, fz->e0, fz->min_gap. */
static void ref_select(const sae_config *c, const double *p, const float *x, const int64_t *since, frozen *fz)
{
    const int64_t N = fz->N, d = fz->d, F = fz->F;
    double *pre = malloc((size_t)(N * F) * sizeof *pre), *u = malloc((size_t)(N * d) * sizeof *u);
    double *tmp = malloc((size_t)(N * F) * sizeof *tmp);
    ck_assert(pre && u && tmp);
    for (int64_t n = 0; n < N; n++) ref_pre(c, p, x, fz, n, u + n * d, pre + n * F);
    fz->min_gap = INFINITY;
    for (int64_t q = 0; q < N * F; q++) fz->min_gap = fmin(fz->min_gap, fabs(pre[q]));   /* ReLU kinks */
    memset(fz->M, 0, (size_t)(N * F));
    memset(fz->A, 0, (size_t)(N * F));
    if (c->arch == SAE_RELU) {
        for (int64_t q = 0; q < N * F; q++) fz->M[q] = pre[q] > 0;
    } else if (c->arch == SAE_TOPK) {
        for (int64_t n = 0; n < N; n++) {
            memcpy(tmp, pre + n * F, (size_t)F * sizeof *tmp);
            qsort(tmp, (size_t)F, sizeof *tmp, cmp_desc);
            double th = tmp[c->k - 1];
            fz->min_gap = fmin(fz->min_gap, tmp[c->k - 1] - tmp[c->k]);
            for (int64_t i = 0; i < F; i++) fz->M[n * F + i] = pre[n * F + i] >= th && pre[n * F + i] > 0;
        }
    } else {
        int64_t np = 0;
        for (int64_t q = 0; q < N * F; q++)
            if (pre[q] > 0) tmp[np++] = pre[q];
        qsort(tmp, (size_t)np, sizeof *tmp, cmp_desc);
        int64_t msel = c->k * N;
        ck_assert_int_gt(np, msel);
        double th = tmp[msel - 1];
        fz->min_gap = fmin(fz->min_gap, tmp[msel - 1] - tmp[msel]);
        for (int64_t q = 0; q < N * F; q++) fz->M[q] = pre[q] >= th && pre[q] > 0;
    }
    /* AuxK among the dead latents */
    if (c->arch != SAE_RELU && c->aux_k > 0) {
        int64_t nd = 0;
        for (int64_t i = 0; i < F; i++) nd += since[i] >= c->dead_tokens;
        int64_t ka = c->aux_k < nd ? c->aux_k : nd;
        fz->aux_on = ka > 0;
        for (int64_t n = 0; n < N && ka > 0; n++) {
            int64_t m = 0;
            for (int64_t i = 0; i < F; i++)
                if (since[i] >= c->dead_tokens) tmp[m++] = pre[n * F + i];
            qsort(tmp, (size_t)m, sizeof *tmp, cmp_desc);
            double th = tmp[ka - 1];
            if (ka < m) fz->min_gap = fmin(fz->min_gap, tmp[ka - 1] - tmp[ka]);
            for (int64_t i = 0; i < F; i++)
                fz->A[n * F + i] = since[i] >= c->dead_tokens && pre[n * F + i] >= th && pre[n * F + i] > 0;
        }
    }
    /* e0 = u − x̂ at the base point */
    const double *Wd = p + F * d, *bd = p + 2 * F * d + F;
    for (int64_t n = 0; n < N; n++) {
        for (int64_t j = 0; j < d; j++) {
            double xh = bd[j];
            for (int64_t i = 0; i < F; i++)
                if (fz->M[n * F + i]) xh += pre[n * F + i] * Wd[i * d + j];
            fz->e0[n * d + j] = u[n * d + j] - xh;
        }
    }
    free(pre), free(u), free(tmp);
}

static double ref_loss(const sae_config *c, const double *p, const float *x, double lam, const frozen *fz)
{
    const int64_t N = fz->N, d = fz->d, F = fz->F;
    const double *Wd = p + F * d, *bd = p + 2 * F * d + F;
    double pre[256], u[64], norm[256], L = 0;
    for (int64_t i = 0; i < F; i++) {
        double q = 0;
        for (int64_t j = 0; j < d; j++) q += Wd[i * d + j] * Wd[i * d + j];
        norm[i] = sqrt(q);
    }
    for (int64_t n = 0; n < N; n++) {
        ref_pre(c, p, x, fz, n, u, pre);
        for (int64_t j = 0; j < d; j++) {
            double xh = bd[j], eh = 0;
            for (int64_t i = 0; i < F; i++) {
                if (fz->M[n * F + i]) xh += pre[i] * Wd[i * d + j];
                if (fz->A[n * F + i]) eh += pre[i] * Wd[i * d + j];
            }
            L += (u[j] - xh) * (u[j] - xh);
            if (fz->aux_on) L += c->aux_coef * (fz->e0[n * d + j] - eh) * (fz->e0[n * d + j] - eh);
        }
        if (c->arch == SAE_RELU)
            for (int64_t i = 0; i < F; i++)
                if (fz->M[n * F + i]) L += lam * pre[i] * norm[i];
    }
    return L / (double)N;
}

/* A model at a generic point: random decoder rows of norms in [0.5, 1.5], an
 * encoder that is not the decoder, non-zero biases; data with an offset. */
static void make_point(sae_model *m, float *x, int64_t N, uint64_t seed)
{
    const int64_t d = m->cfg.d_in, F = m->cfg.d_sae;
    test_rng = seed;
    ck_assert_int_eq(sae_init_weights(m, seed), TP_OK);
    for (int64_t i = 0; i < F; i++) {
        double g = 0.5 + urand();
        for (int64_t j = 0; j < d; j++) {
            m->W_dec[i * d + j] *= (float)g;
            m->W_enc[i * d + j] = (float)(m->W_enc[i * d + j] * 0.8 + 0.2 * nrand() / sqrt((double)d));
        }
        m->b_enc[i] = (float)(0.3 * nrand() - 0.2);
    }
    for (int64_t j = 0; j < d; j++) m->b_dec[j] = (float)(0.3 * nrand() + 0.5);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < d; j++) x[n * d + j] = (float)(nrand() + (j % 3 == 0 ? 1.0 : 0.0));
    ck_assert_int_eq(sae_compute_input_scale(x, N, d, MPI_COMM_NULL, &m->input_scale), TP_OK);
}

static void gradcheck(sae_arch arch, int apply_b_dec, int with_dead, uint64_t seed)
{
    const int64_t d = 8, F = 32, N = 16;
    sae_config c = small_config(arch, d, F);
    c.apply_b_dec_to_input = apply_b_dec;
    c.l1_coef = 0.7, c.l1_warmup_frac = 0.5;   /* λ_0 = 0.7 · 1/5 */
    c.aux_coef = 0.25;                          /* large, so AuxK errors show */
    sae_model m;
    ck_assert_int_eq(sae_init(&m, &c, N), TP_OK);
    float *x = malloc((size_t)(N * d) * sizeof *x);
    ck_assert(x);
    make_point(&m, x, N, seed);
    if (with_dead)
        for (int64_t i = 0; i < F; i += 3) m.since_fired[i] = c.dead_tokens + i;
    ck_assert_int_eq(sae_forward(&m, x, N, N, MPI_COMM_NULL), TP_OK);
    ck_assert_int_eq(sae_backward(&m), TP_OK);
    size_t ns;
    sae_metrics met;
    sae_metrics_from_stats(&m, sae_stats(&m, &ns), &met);

    const int64_t P = m.n_params;
    double *p = malloc((size_t)P * sizeof *p);
    ck_assert(p);
    for (int64_t q = 0; q < P; q++) p[q] = m.params[q];
    frozen fz = {.N = N, .d = d, .F = F, .s = m.input_scale};
    fz.M = malloc((size_t)(N * F));
    fz.A = malloc((size_t)(N * F));
    fz.e0 = malloc((size_t)(N * d) * sizeof *fz.e0);
    ck_assert(fz.M && fz.A && fz.e0);
    ref_select(&c, p, x, m.since_fired, &fz);
    ck_assert_msg(fz.min_gap > 1e-5, "%s: base point within %g of a kink: pick another seed", sae_arch_name(arch),
                  fz.min_gap);
    const double lam = sae_l1_coef_at(&c, 0);
    const double L0 = ref_loss(&c, p, x, lam, &fz);
    ck_assert_msg(fabs(met.loss - L0) <= 1e-5 * fabs(L0), "%s: C loss %.9g, f64 loss %.9g", sae_arch_name(arch),
                  met.loss, L0);
    if (with_dead && arch != SAE_RELU) ck_assert_msg(met.aux > 1e-3 * met.loss, "AuxK term is not exercised");

    double *g = malloc((size_t)P * sizeof *g), gmax = 0;
    ck_assert(g);
    for (int64_t q = 0; q < P; q++) {
        const double h = 1e-4, keep = p[q];
        p[q] = keep + h;
        double lp = ref_loss(&c, p, x, lam, &fz);
        p[q] = keep - h;
        double lm = ref_loss(&c, p, x, lam, &fz);
        p[q] = keep;
        g[q] = (lp - lm) / (2 * h);
        gmax = fmax(gmax, fabs(g[q]));
    }
    const char *group[4] = {"W_enc", "W_dec", "b_enc", "b_dec"};
    for (int64_t q = 0; q < P; q++) {
        int gi = q < F * d ? 0 : q < 2 * F * d ? 1 : q < 2 * F * d + F ? 2 : 3;
        ck_assert_msg(fabs(m.grad[q] - g[q]) <= 2e-5 * gmax + 1e-4 * fabs(g[q]),
                      "%s (b_dec in: %d): d loss / d %s[%lld]: C %.8g, finite differences %.8g (max %.3g)",
                      sae_arch_name(arch), apply_b_dec, group[gi], (long long)q, m.grad[q], g[q], gmax);
    }
    ck_assert(gmax > 0);
    free(g), free(p), free(fz.M), free(fz.A), free(fz.e0), free(x);
    sae_free(&m);
}

START_TEST(test_gradcheck_relu) { gradcheck(SAE_RELU, 0, 0, 101); }
END_TEST
START_TEST(test_gradcheck_relu_bdec_in) { gradcheck(SAE_RELU, 1, 0, 112); }
END_TEST
START_TEST(test_gradcheck_topk) { gradcheck(SAE_TOPK, 1, 1, 103); }
END_TEST
START_TEST(test_gradcheck_topk_no_aux) { gradcheck(SAE_TOPK, 0, 0, 104); }
END_TEST
START_TEST(test_gradcheck_batchtopk) { gradcheck(SAE_BATCHTOPK, 1, 1, 105); }
END_TEST

/* Directional derivative of the C loss itself (f32 forward, nothing frozen, no
 * AuxK: its target is held constant, so the gradient is not the loss's). */
static double c_loss(sae_model *m, const float *x, int64_t N)
{
    ck_assert_int_eq(sae_forward(m, x, N, N, MPI_COMM_NULL), TP_OK);
    size_t ns;
    sae_metrics met;
    sae_metrics_from_stats(m, sae_stats(m, &ns), &met);
    return met.loss;
}

static void dircheck(sae_arch arch, uint64_t seed)
{
    const int64_t d = 8, F = 32, N = 16;
    sae_config c = small_config(arch, d, F);
    c.aux_k = 0;
    c.l1_coef = 0.7;
    sae_model m;
    ck_assert_int_eq(sae_init(&m, &c, N), TP_OK);
    float *x = malloc((size_t)(N * d) * sizeof *x), *p0 = malloc((size_t)m.n_params * sizeof *p0);
    float *v = malloc((size_t)m.n_params * sizeof *v);
    ck_assert(x && p0 && v);
    make_point(&m, x, N, seed);
    ck_assert_int_eq(sae_forward(&m, x, N, N, MPI_COMM_NULL), TP_OK);
    ck_assert_int_eq(sae_backward(&m), TP_OK);
    memcpy(p0, m.params, (size_t)m.n_params * sizeof *p0);
    const double h = 1e-3;
    for (int64_t q = 0; q < m.n_params; q++) v[q] = (float)(h * (fabs(p0[q]) + 0.1) * (urand() < 0.5 ? -1 : 1));
    double gv = 0;
    for (int64_t q = 0; q < m.n_params; q++) {
        m.params[q] = p0[q] + v[q];
        gv += (double)m.grad[q] * ((double)m.params[q] - p0[q]);
    }
    double lp = c_loss(&m, x, N);
    for (int64_t q = 0; q < m.n_params; q++) {
        m.params[q] = p0[q] - v[q];
        gv -= (double)m.grad[q] * ((double)m.params[q] - p0[q]);
    }
    double lm = c_loss(&m, x, N);
    gv /= 2;
    double fd = (lp - lm) / 2;
    ck_assert_msg(fabs(fd - gv) <= 1e-2 * fabs(gv), "%s: loss change %.8g, gradient predicts %.8g",
                  sae_arch_name(arch), fd, gv);
    free(x), free(p0), free(v);
    sae_free(&m);
}

START_TEST(test_dircheck)
{
    dircheck(SAE_RELU, 201);
    dircheck(SAE_TOPK, 202);
    dircheck(SAE_BATCHTOPK, 203);
}
END_TEST

/* ---- golden: 3 steps against PyTorch ------------------------------------------------ */

static json_t *load_reference(void)
{
    json_error_t je;
    json_t *r = json_load_file(tp_test_data("golden/sae/reference.json"), 0, &je);
    ck_assert_msg(r != NULL, "reference.json: %s", je.text);
    return r;
}

static sae_config config_from_golden(json_t *jc)
{
    sae_config c;
    memset(&c, 0, sizeof c);
    const char *arch;
    json_int_t d, F, k, ak, dead, T;
    int bdec;
    json_error_t je;
    int rc = json_unpack_ex(jc, &je, JSON_STRICT,
                            "{s:s, s:I, s:I, s:I, s:I, s:F, s:I, s:F, s:F, s:F, s:F, s:F, s:I, s:F, s:F, s:F, s:F, "
                            "s:i, s:i, s:F, s:i, s:F, s:F}",
                            "architecture", &arch, "d_in", &d, "d_sae", &F, "k", &k, "aux_k", &ak, "aux_coef",
                            &c.aux_coef, "dead_tokens", &dead, "l1_coef", &c.l1_coef, "l1_warmup_frac",
                            &c.l1_warmup_frac, "lr", &c.lr, "lr_warmup_frac", &c.lr_warmup_frac, "lr_decay_frac",
                            &c.lr_decay_frac, "total_steps", &T, "beta1", &c.beta1, "beta2", &c.beta2, "eps",
                            &c.eps, "max_grad_norm", &c.max_grad_norm, "apply_b_dec_to_input",
                            &c.apply_b_dec_to_input, "decoder_unit_norm", &c.decoder_unit_norm, "init_dec_norm",
                            &c.init_dec_norm, "b_dec_init", &bdec, "threshold_lr", &c.threshold_lr, "dense_freq",
                            &c.dense_freq);
    ck_assert_msg(rc == 0, "golden config: %s", je.text);
    ck_assert_int_eq(sae_arch_parse(arch, &c.arch), TP_OK);
    c.d_in = d, c.d_sae = F, c.k = k, c.aux_k = ak, c.dead_tokens = dead, c.total_steps = T;
    c.b_dec_init = (sae_bdec_init)bdec;
    ck_assert_int_eq(sae_config_validate(&c), TP_OK);
    return c;
}

static const st_tensor *tensor(const st_file *f, const char *name, tp_dtype dt, int64_t numel)
{
    const st_tensor *t = st_find(f, name);
    ck_assert_msg(t != NULL, "golden has no %s", name);
    ck_assert_msg(t->dtype == dt && t->numel == numel, "golden %s: dtype %s, %lld values", name,
                  tp_dtype_name(t->dtype), (long long)t->numel);
    return t;
}

static void check_close(const char *what, const float *c, const st_tensor *ref, double tol)
{
    double e = rel_diff(c, ref->data, (size_t)ref->numel);
    ck_assert_msg(e <= tol, "%s: max|c − ref| / max|ref| = %.3g > %.1g", what, e, tol);
}

static void check_metric(const char *arch, int step, const char *name, double c, json_t *jm, double tol)
{
    json_t *v = json_object_get(jm, name);
    ck_assert_msg(json_is_number(v), "golden step %d has no %s", step, name);
    double r = json_number_value(v);
    ck_assert_msg(fabs(c - r) <= tol * fmax(fabs(r), 1e-12), "%s step %d: %s = %.9g, reference %.9g", arch, step,
                  name, c, r);
}

static void golden_run(const char *arch)
{
    json_t *ref = load_reference();
    json_t *ja = json_object_get(json_object_get(ref, "archs"), arch);
    ck_assert(ja);
    sae_config c = config_from_golden(json_object_get(ja, "config"));
    char path[64];
    snprintf(path, sizeof path, "golden/sae/%s.safetensors", arch);
    st_file *f = NULL;
    ck_assert_msg(st_open_file(tp_test_data(path), &f) == TP_OK, "%s", tp_err_msg());
    const int64_t d = c.d_in, F = c.d_sae, N = (int64_t)json_integer_value(json_object_get(ref, "rows"));
    const st_tensor *x = tensor(f, "x", TP_DTYPE_F32, N * d);

    sae_model m;
    ck_assert_int_eq(sae_init(&m, &c, N), TP_OK);
    m.input_scale = json_number_value(json_object_get(ref, "input_scale"));
    const char *names[4] = {"W_enc", "W_dec", "b_enc", "b_dec"};
    float *dst[4] = {m.W_enc, m.W_dec, m.b_enc, m.b_dec};
    const int64_t numel[4] = {F * d, F * d, F, d};
    for (int i = 0; i < 4; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "init.%s", names[i]);
        memcpy(dst[i], tensor(f, nm, TP_DTYPE_F32, numel[i])->data, (size_t)numel[i] * sizeof(float));
    }
    memcpy(m.since_fired, tensor(f, "init.since_fired", TP_DTYPE_I64, F)->data, (size_t)F * sizeof(int64_t));

    json_t *steps = json_object_get(ja, "steps");
    for (size_t s = 0; s < json_array_size(steps); s++) {
        sae_metrics met;
        ck_assert_msg(sae_train_step(&m, x->data, N, MPI_COMM_NULL, &met) == TP_OK, "%s", tp_err_msg());
        json_t *jm = json_array_get(steps, s);
        ck_assert_int_eq(met.step, (int64_t)json_integer_value(json_object_get(jm, "step")));
        check_metric(arch, (int)s, "loss", met.loss, jm, 1e-5);
        check_metric(arch, (int)s, "recon", met.recon, jm, 1e-5);
        check_metric(arch, (int)s, "l1", met.l1, jm, 1e-5);
        check_metric(arch, (int)s, "aux", met.aux, jm, 1e-5);
        check_metric(arch, (int)s, "fvu", met.fvu, jm, 1e-5);
        check_metric(arch, (int)s, "grad_norm", met.grad_norm, jm, 1e-5);
        check_metric(arch, (int)s, "lr", met.lr, jm, 1e-12);
        check_metric(arch, (int)s, "l1_coef", met.l1_coef, jm, 1e-12);
        check_metric(arch, (int)s, "l0", met.l0, jm, 0);
        check_metric(arch, (int)s, "dead_frac", met.dead_frac, jm, 0);
        check_metric(arch, (int)s, "dense_frac", met.dense_frac, jm, 0);
        if (c.arch == SAE_BATCHTOPK) {
            check_metric(arch, (int)s, "batch_threshold", met.batch_threshold, jm, 1e-5);
            check_metric(arch, (int)s, "threshold", met.threshold, jm, 1e-5);
        }
    }
    for (int i = 0; i < 4; i++) {
        char nm[64], what[96];
        snprintf(nm, sizeof nm, "final.%s", names[i]);
        snprintf(what, sizeof what, "%s %s", arch, nm);
        check_close(what, dst[i], tensor(f, nm, TP_DTYPE_F32, numel[i]), 1e-5);
        const float *mv[2] = {m.adam_m, m.adam_v};
        const size_t off = (size_t)(dst[i] - m.params);
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "final.%c.%s", "mv"[k], names[i]);
            snprintf(what, sizeof what, "%s %s", arch, nm);
            check_close(what, mv[k] + off, tensor(f, nm, TP_DTYPE_F32, numel[i]), 1e-5);
        }
    }
    const int64_t *sf = tensor(f, "final.since_fired", TP_DTYPE_I64, F)->data;
    for (int64_t i = 0; i < F; i++) ck_assert_int_eq(m.since_fired[i], sf[i]);
    st_close(f);
    json_decref(ref);
    sae_free(&m);
}

START_TEST(test_golden_relu) { golden_run("relu"); }
END_TEST
START_TEST(test_golden_topk) { golden_run("topk"); }
END_TEST
START_TEST(test_golden_batchtopk) { golden_run("batchtopk"); }
END_TEST

/* Input scale and b_dec (mean, Weiszfeld geometric median) against numpy f64. */
START_TEST(test_golden_scale_and_median)
{
    json_t *ref = load_reference();
    st_file *f = NULL;
    ck_assert_int_eq(st_open_file(tp_test_data("golden/sae/topk.safetensors"), &f), TP_OK);
    const int64_t N = 64, d = 16;
    const float *x = tensor(f, "x", TP_DTYPE_F32, N * d)->data;
    double s = 0, want = json_number_value(json_object_get(ref, "input_scale"));
    ck_assert_int_eq(sae_compute_input_scale(x, N, d, MPI_COMM_NULL, &s), TP_OK);
    ck_assert_msg(fabs(s - want) <= 1e-12 * want, "input scale %.15g, reference %.15g", s, want);
    sae_config c = sae_config_default(SAE_TOPK, d, 64);
    sae_model m;
    ck_assert_int_eq(sae_init(&m, &c, 4), TP_OK);
    m.input_scale = want;
    const char *key[2] = {"mean", "geometric_median"};
    const sae_bdec_init how[2] = {SAE_BDEC_MEAN, SAE_BDEC_GEOMETRIC_MEDIAN};
    for (int t = 0; t < 2; t++) {
        ck_assert_int_eq(sae_init_b_dec(&m, x, N, MPI_COMM_NULL, how[t], 200), TP_OK);
        json_t *jv = json_object_get(ref, key[t]);
        /* f64 on both sides, then rounded to f32: one f32 ulp */
        for (int64_t j = 0; j < d; j++) {
            double r = json_number_value(json_array_get(jv, (size_t)j));
            ck_assert_msg(fabs(m.b_dec[j] - r) <= 1e-6 * (fabs(r) + 1e-3), "%s[%lld] = %.9g, reference %.9g",
                          key[t], (long long)j, m.b_dec[j], r);
        }
    }
    /* The median is not the mean here (the data are skewed). */
    double dm = 0;
    for (int64_t j = 0; j < d; j++)
        dm = fmax(dm, fabs(json_number_value(json_array_get(json_object_get(ref, "mean"), (size_t)j)) -
                           json_number_value(json_array_get(json_object_get(ref, "geometric_median"), (size_t)j))));
    ck_assert(dm > 1e-2);
    ck_assert_int_eq(sae_init_b_dec(&m, x, N, MPI_COMM_NULL, SAE_BDEC_ZERO, 0), TP_OK);
    for (int64_t j = 0; j < d; j++) ck_assert(m.b_dec[j] == 0);
    sae_free(&m);
    st_close(f);
    json_decref(ref);
}
END_TEST

/* ---- initialisation, selection, inference ------------------------------------------ */

START_TEST(test_init_weights)
{
    sae_config c = sae_config_default(SAE_TOPK, 12, 40);
    c.init_dec_norm = 0.5;
    sae_model a, b;
    ck_assert_int_eq(sae_init(&a, &c, 2), TP_OK);
    ck_assert_int_eq(sae_init(&b, &c, 2), TP_OK);
    ck_assert_int_eq(sae_init_weights(&a, 7), TP_OK);
    ck_assert_int_eq(sae_init_weights(&b, 7), TP_OK);
    ck_assert(memcmp(a.params, b.params, (size_t)a.n_params * sizeof(float)) == 0);
    ck_assert(memcmp(a.W_enc, a.W_dec, 12 * 40 * sizeof(float)) == 0);   /* W_enc = W_dec in our layout */
    for (int64_t i = 0; i < 40; i++) {
        double q = 0;
        for (int64_t j = 0; j < 12; j++) q += (double)a.W_dec[i * 12 + j] * a.W_dec[i * 12 + j];
        ck_assert_double_eq_tol(sqrt(q), 0.5, 1e-6);
        ck_assert(a.b_enc[i] == 0);
    }
    /* Mean of the directions ≈ 0 (isotropic): |mean| ≤ 4σ with σ = 0.5/√(12·40) per coordinate. */
    for (int64_t j = 0; j < 12; j++) {
        double s = 0;
        for (int64_t i = 0; i < 40; i++) s += a.W_dec[i * 12 + j];
        ck_assert(fabs(s / 40) < 4 * 0.5 / sqrt(12.0 * 40));
    }
    ck_assert_int_eq(sae_init_weights(&b, 8), TP_OK);
    ck_assert(memcmp(a.params, b.params, (size_t)a.n_params * sizeof(float)) != 0);
    sae_free(&a);
    sae_free(&b);
}
END_TEST

/* BatchTopK keeps exactly k·N of distinct positive values over the batch, some rows
 * more than k and some fewer; TopK exactly k per row (all pre-activations positive). */
START_TEST(test_selection_counts)
{
    const int64_t d = 8, F = 32, N = 16;
    for (int a = SAE_TOPK; a <= SAE_BATCHTOPK; a++) {
        sae_config c = small_config((sae_arch)a, d, F);
        sae_model m;
        ck_assert_int_eq(sae_init(&m, &c, N), TP_OK);
        float x[16 * 8];
        make_point(&m, x, N, 300 + (uint64_t)a);
        for (int64_t i = 0; i < F; i++) m.b_enc[i] = 50;   /* every pre-activation positive */
        ck_assert_int_eq(sae_forward(&m, x, N, N, MPI_COMM_NULL), TP_OK);
        size_t ns;
        double *st = sae_stats(&m, &ns);
        ck_assert_int_eq(ns, SAE_ST_HEAD + d + F);
        ck_assert_double_eq(st[SAE_ST_ACTIVE], (double)(c.k * N));
        ck_assert_double_eq(st[SAE_ST_ROWS], (double)N);
        sae_free(&m);
    }
    /* With fewer positive values than k·N, BatchTopK keeps them all. */
    sae_config c = small_config(SAE_BATCHTOPK, d, F);
    c.k = 30;
    sae_model m;
    ck_assert_int_eq(sae_init(&m, &c, N), TP_OK);
    float x[16 * 8];
    make_point(&m, x, N, 310);
    ck_assert_int_eq(sae_forward(&m, x, N, N, MPI_COMM_NULL), TP_OK);
    size_t ns;
    double *st = sae_stats(&m, &ns);
    ck_assert(st[SAE_ST_ACTIVE] > 0 && st[SAE_ST_ACTIVE] < (double)(c.k * N));
    float *codes = malloc((size_t)(N * F) * sizeof *codes);
    ck_assert(codes);
    m.threshold = 0;
    ck_assert_int_eq(sae_encode(&m, x, N, codes), TP_OK);   /* θ = 0: plain ReLU */
    int64_t pos = 0;
    for (int64_t q = 0; q < N * F; q++) pos += codes[q] > 0;
    ck_assert_double_eq(st[SAE_ST_ACTIVE], (double)pos);
    free(codes);
    sae_free(&m);
}
END_TEST

/* Encode / reconstruct for inference: TopK rows have k active latents equal to the
 * pre-activations; BatchTopK applies θ; reconstruct = (codes·W_dec + b_dec) / s. */
START_TEST(test_inference)
{
    const int64_t d = 8, F = 32, N = 21;
    for (int a = SAE_RELU; a <= SAE_BATCHTOPK; a++) {
        sae_config c = small_config((sae_arch)a, d, F);
        sae_model m;
        ck_assert_int_eq(sae_init(&m, &c, 5), TP_OK);   /* several blocks */
        float x[21 * 8], codes[21 * 32], rec[21 * 8];
        make_point(&m, x, N, 400 + (uint64_t)a);
        m.threshold = 0.4;
        ck_assert_int_eq(sae_encode(&m, x, N, codes), TP_OK);
        ck_assert_int_eq(sae_reconstruct(&m, x, N, rec), TP_OK);
        for (int64_t n = 0; n < N; n++) {
            float u[8], xt[8];
            for (int64_t j = 0; j < d; j++) {
                u[j] = (float)m.input_scale * x[n * d + j];
                xt[j] = c.apply_b_dec_to_input ? u[j] - m.b_dec[j] : u[j];
            }
            int64_t nz = 0;
            double pre[32];
            for (int64_t i = 0; i < F; i++) {
                pre[i] = m.b_enc[i];
                for (int64_t j = 0; j < d; j++) pre[i] += (double)m.W_enc[i * d + j] * xt[j];
                float cv = codes[n * F + i];
                nz += cv != 0;
                if (cv != 0) ck_assert_double_eq_tol(cv, pre[i], 1e-5);
                else if (a == SAE_RELU) ck_assert(pre[i] < 1e-5);
                else if (a == SAE_BATCHTOPK) ck_assert(pre[i] < 0.4 + 1e-5);
            }
            if (a == SAE_TOPK) {
                ck_assert_int_le(nz, c.k);
                for (int64_t i = 0; i < F; i++)   /* no inactive latent beats an active one */
                    for (int64_t i2 = 0; i2 < F; i2++)
                        if (codes[n * F + i] != 0 && codes[n * F + i2] == 0) ck_assert(pre[i2] <= pre[i] + 1e-5);
            }
            for (int64_t j = 0; j < d; j++) {
                double r = m.b_dec[j];
                for (int64_t i = 0; i < F; i++) r += (double)codes[n * F + i] * m.W_dec[i * d + j];
                ck_assert_double_eq_tol(rec[n * d + j], r / m.input_scale, 1e-4);
            }
        }
        sae_free(&m);
    }
}
END_TEST

/* ---- checkpoint ------------------------------------------------------------------- */

static int cfg_equal(const sae_config *a, const sae_config *b)
{
    return a->arch == b->arch && a->d_in == b->d_in && a->d_sae == b->d_sae && a->k == b->k &&
           a->aux_k == b->aux_k && a->aux_coef == b->aux_coef && a->dead_tokens == b->dead_tokens &&
           a->l1_coef == b->l1_coef && a->l1_warmup_frac == b->l1_warmup_frac && a->lr == b->lr &&
           a->lr_warmup_frac == b->lr_warmup_frac && a->lr_decay_frac == b->lr_decay_frac &&
           a->total_steps == b->total_steps && a->beta1 == b->beta1 && a->beta2 == b->beta2 && a->eps == b->eps &&
           a->max_grad_norm == b->max_grad_norm && a->apply_b_dec_to_input == b->apply_b_dec_to_input &&
           a->decoder_unit_norm == b->decoder_unit_norm && a->init_dec_norm == b->init_dec_norm &&
           a->b_dec_init == b->b_dec_init && a->threshold_lr == b->threshold_lr && a->dense_freq == b->dense_freq;
}

START_TEST(test_checkpoint_round_trip)
{
    const int64_t d = 8, F = 32, N = 16;
    for (int a = SAE_RELU; a <= SAE_BATCHTOPK; a++) {
        sae_config c = small_config((sae_arch)a, d, F);
        c.dead_tokens = 20;
        sae_model m, r;
        ck_assert_int_eq(sae_init(&m, &c, N), TP_OK);
        float x[16 * 8];
        make_point(&m, x, N, 500 + (uint64_t)a);
        for (int s = 0; s < 3; s++) ck_assert_int_eq(sae_train_step(&m, x, N, MPI_COMM_NULL, NULL), TP_OK);
        (void)sae_rng_next(&m);
        const char *path = tp_test_tmp_path("ckpt.safetensors");
        ck_assert_msg(sae_save(&m, path) == TP_OK, "%s", tp_err_msg());
        ck_assert_msg(sae_load(path, N, &r) == TP_OK, "%s", tp_err_msg());
        ck_assert(cfg_equal(&r.cfg, &m.cfg));
        ck_assert_int_eq(r.step, 3);
        ck_assert(r.rng == m.rng && r.input_scale == m.input_scale && r.threshold == m.threshold);
        ck_assert(memcmp(r.since_fired, m.since_fired, (size_t)F * sizeof(int64_t)) == 0);
        /* one more step on both: bit-identical */
        sae_metrics ma, mb;
        ck_assert_int_eq(sae_train_step(&m, x, N, MPI_COMM_NULL, &ma), TP_OK);
        ck_assert_int_eq(sae_train_step(&r, x, N, MPI_COMM_NULL, &mb), TP_OK);
        ck_assert(ma.loss == mb.loss);
        ck_assert(memcmp(r.params, m.params, (size_t)m.n_params * sizeof(float)) == 0);
        ck_assert(memcmp(r.adam_m, m.adam_m, (size_t)m.n_params * sizeof(float)) == 0);
        ck_assert(memcmp(r.adam_v, m.adam_v, (size_t)m.n_params * sizeof(float)) == 0);
        ck_assert(sae_rng_next(&r) == sae_rng_next(&m));
        sae_free(&m);
        sae_free(&r);
    }
    /* errors name the file */
    sae_model r;
    tp_err_clear();
    ck_assert_int_eq(sae_load(tp_test_tmp_path("absent.safetensors"), 4, &r), TP_ERR_IO);
    TP_ASSERT_ERR_HAS("absent.safetensors");
    const int64_t sh[1] = {3};
    const float v[3] = {1, 2, 3};
    const st_write_tensor t = {"W_enc", TP_DTYPE_F32, 1, sh, v};
    const char *other = tp_test_tmp_path("other.safetensors");
    ck_assert_int_eq(st_write(other, &t, 1, NULL), TP_OK);
    ck_assert_int_eq(sae_load(other, 4, &r), TP_ERR_FORMAT);
    ck_assert_msg(strstr(tp_err_msg(), "other.safetensors") && strstr(tp_err_msg(), "config_json"), "%s",
                  tp_err_msg());
}
END_TEST

/* ---- schedules and config --------------------------------------------------------- */

START_TEST(test_schedules)
{
    sae_config c = sae_config_default(SAE_RELU, 4, 8);
    c.total_steps = 10, c.lr = 1.0, c.lr_warmup_frac = 0.2, c.lr_decay_frac = 0.2;
    c.l1_coef = 2.0, c.l1_warmup_frac = 0.5;
    const double lr[11] = {0.5, 1, 1, 1, 1, 1, 1, 1, 1, 0.5, 0};
    for (int t = 0; t <= 10; t++) ck_assert_double_eq_tol(sae_lr_at(&c, t), lr[t], 1e-15);
    for (int t = 0; t < 10; t++) ck_assert_double_eq_tol(sae_l1_coef_at(&c, t), t < 4 ? 2.0 * (t + 1) / 5 : 2.0, 1e-15);
    c.lr_warmup_frac = 0, c.lr_decay_frac = 0, c.l1_warmup_frac = 0;
    ck_assert_double_eq(sae_lr_at(&c, 9), 1.0);
    ck_assert_double_eq(sae_l1_coef_at(&c, 0), 2.0);
    /* 0.2 · 5 rounds to 1 step, not 2 (no ceil of 1.0000000000000002) */
    c.total_steps = 5, c.lr_decay_frac = 0.2;
    ck_assert_double_eq(sae_lr_at(&c, 3), 1.0);
    ck_assert_double_eq(sae_lr_at(&c, 4), 1.0);
}
END_TEST

START_TEST(test_config_errors)
{
    sae_arch a;
    ck_assert_int_eq(sae_arch_parse("batchtopk", &a), TP_OK);
    ck_assert_int_eq(a, SAE_BATCHTOPK);
    ck_assert_int_eq(sae_arch_parse("jumprelu", &a), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("jumprelu");
    sae_config c = sae_config_default(SAE_TOPK, 16, 64);
    ck_assert_int_eq(sae_config_validate(&c), TP_OK);
    ck_assert_int_eq(c.aux_k, 64);   /* clamped to d_sae */
    c.k = 65;
    ck_assert_int_eq(sae_config_validate(&c), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("sae.k");
    c = sae_config_default(SAE_RELU, 16, 64);
    ck_assert_int_eq(sae_config_validate(&c), TP_OK);
    c.lr = 0;
    ck_assert_int_eq(sae_config_validate(&c), TP_ERR_CONFIG);
    c = sae_config_default(SAE_RELU, 16, 64);
    c.beta2 = 1;
    ck_assert_int_eq(sae_config_validate(&c), TP_ERR_CONFIG);
    sae_model m;
    c = sae_config_default(SAE_RELU, 16, 64);
    ck_assert_int_eq(sae_init(&m, &c, 0), TP_ERR_RANGE);
    ck_assert_int_eq(sae_init(&m, &c, 4), TP_OK);
    float x[5 * 16] = {0};
    ck_assert_int_eq(sae_train_step(&m, x, 5, MPI_COMM_NULL, NULL), TP_ERR_RANGE);   /* more rows than max_rows */
    ck_assert_int_eq(sae_backward(&m), TP_ERR_INTERNAL);                              /* no forward */
    /* stats not summed: apply_step refuses */
    ck_assert_int_eq(sae_forward(&m, x, 2, 4, MPI_COMM_NULL), TP_OK);
    ck_assert_int_eq(sae_backward(&m), TP_OK);
    ck_assert_int_eq(sae_apply_step(&m, NULL), TP_ERR_INTERNAL);
    /* a diverged step (NaN input) stops with a message instead of poisoning Adam */
    x[3] = NAN;
    ck_assert_int_eq(sae_train_step(&m, x, 4, MPI_COMM_NULL, NULL), TP_ERR_RANGE);
    TP_ASSERT_ERR_HAS("non-finite");
    sae_free(&m);
}
END_TEST

/* ---- the training step on a device-like backend --------------------------------------- */

/* Training on a "fake device" (the CPU's ops with host_memory = 0, so the SAE keeps
 * its parameters, moments and workspace in buffers of its own and copies rows in and
 * stats out as on a GPU) gives the CPU's bits, for every architecture: the same ops
 * in the same order. AuxK on (dead_tokens small), b_dec changed on the host between
 * steps (it must reach the device), a checkpoint-style read (sae_sync_host) after
 * every other step (in between the host's copy is stale, and a step that read it
 * instead of the device's would show). */
START_TEST(test_fake_device_training)
{
    const int64_t d = 8, F = 32, N = 16;
    for (int run = 0; run < 6; run++) {
        const int apply = run & 1;
        const sae_arch arch = (sae_arch)(run / 2);
        sae_config c = small_config(arch, d, F);
        c.dead_tokens = 2 * N;   /* latents die after two steps: AuxK runs */
        c.apply_b_dec_to_input = apply;
        tp_backend fake = *backend_cpu();
        fake.name = "fake-device";
        fake.host_memory = false;
        sae_model a, b;
        float x[16 * 8];
        ck_assert_int_eq(sae_init(&a, &c, N), TP_OK);
        ck_assert_int_eq(sae_init(&b, &c, N), TP_OK);
        ck_assert_int_eq(sae_use_backend(&b, &fake), TP_OK);
        make_point(&a, x, N, 400 + (uint64_t)apply);
        make_point(&b, x, N, 400 + (uint64_t)apply);
        const size_t P = (size_t)a.n_params;
        double aux_seen = 0, l1_seen = 0;
        for (int t = 0; t < 6; t++) {
            if (t == 3) {   /* a host change between steps */
                ck_assert_int_eq(sae_init_b_dec(&a, x, N, MPI_COMM_NULL, SAE_BDEC_MEAN, 0), TP_OK);
                ck_assert_int_eq(sae_init_b_dec(&b, x, N, MPI_COMM_NULL, SAE_BDEC_MEAN, 0), TP_OK);
            }
            const int64_t n = t == 4 ? N / 2 : N;   /* a short batch */
            sae_metrics ma, mb;
            ck_assert_int_eq(sae_train_step(&a, x, n, MPI_COMM_NULL, &ma), TP_OK);
            ck_assert_msg(sae_train_step(&b, x, n, MPI_COMM_NULL, &mb) == TP_OK, "%s", tp_err_msg());
            ck_assert_msg(memcmp(&ma, &mb, sizeof ma) == 0, "%s step %d: metrics differ (loss %.9g vs %.9g)",
                          sae_arch_name(arch), t, ma.loss, mb.loss);
            aux_seen += ma.aux, l1_seen += ma.l1 * ma.l0;
            ck_assert(memcmp(a.since_fired, b.since_fired, (size_t)F * sizeof(int64_t)) == 0);
            if (t % 2 == 0) continue;
            ck_assert_int_eq(sae_sync_host(&b), TP_OK);
            ck_assert_msg(memcmp(a.params, b.params, P * sizeof(float)) == 0, "step %d: parameters differ", t);
            ck_assert(memcmp(a.adam_m, b.adam_m, P * sizeof(float)) == 0);
            ck_assert(memcmp(a.adam_v, b.adam_v, P * sizeof(float)) == 0);
        }
        ck_assert(a.step == 6 && b.step == 6);
        if (arch == SAE_RELU)   /* latents fire, so the mask and the L1 terms are exercised */
            ck_assert_msg(l1_seen > 0, "relu: no latent fired: the test does not cover the backward");
        else
            ck_assert_msg(aux_seen > 0, "AuxK never ran: the test does not cover it");
        if (arch == SAE_BATCHTOPK) {
            /* a batch of 4N rows over the ranks, N of them here: the global threshold
             * gives this rank more than k a row, past the device lists' first room
             * (N·k), which must grow */
            ck_assert_int_eq(sae_forward(&a, x, N, 4 * N, MPI_COMM_NULL), TP_OK);
            ck_assert_msg(sae_forward(&b, x, N, 4 * N, MPI_COMM_NULL) == TP_OK, "%s", tp_err_msg());
            size_t ns = 0, nb = 0;
            double *sa = sae_stats(&a, &ns), *sb = sae_stats(&b, &nb);
            ck_assert(ns == nb);
            ck_assert_msg(sa[SAE_ST_ACTIVE] > (double)(N * c.k), "%.0f active: the lists did not need to grow",
                          sa[SAE_ST_ACTIVE]);
            ck_assert(memcmp(sa, sb, ns * sizeof *sa) == 0);
            ck_assert_int_eq(sae_backward(&a), TP_OK);
            ck_assert_int_eq(sae_backward(&b), TP_OK);
        }
        /* inference reads the host copy */
        float *ca = malloc((size_t)(N * F) * sizeof *ca), *cb = malloc((size_t)(N * F) * sizeof *cb);
        ck_assert(ca && cb);
        ck_assert_int_eq(sae_encode(&a, x, N, ca), TP_OK);
        ck_assert_int_eq(sae_encode(&b, x, N, cb), TP_OK);
        ck_assert(memcmp(ca, cb, (size_t)(N * F) * sizeof *ca) == 0);
        free(ca), free(cb);
        /* back to the CPU: the device's state comes home */
        ck_assert_int_eq(sae_use_backend(&b, backend_cpu()), TP_OK);
        ck_assert_int_eq(sae_train_step(&a, x, N, MPI_COMM_NULL, NULL), TP_OK);
        ck_assert_int_eq(sae_train_step(&b, x, N, MPI_COMM_NULL, NULL), TP_OK);
        ck_assert(memcmp(a.params, b.params, P * sizeof(float)) == 0);
        sae_free(&a), sae_free(&b);
    }
}
END_TEST

/* Every architecture trains on a device backend: none is refused. */
START_TEST(test_device_arch_accepted)
{
    tp_backend fake = *backend_cpu();
    fake.name = "fake-device";
    fake.host_memory = false;
    for (int a = SAE_RELU; a <= SAE_BATCHTOPK; a++) {
        sae_config c = small_config((sae_arch)a, 8, 16);
        sae_model m;
        ck_assert_int_eq(sae_init(&m, &c, 4), TP_OK);
        ck_assert_msg(sae_use_backend(&m, &fake) == TP_OK, "%s: %s", sae_arch_name((sae_arch)a), tp_err_msg());
        sae_free(&m);
    }
}
END_TEST

static Suite *sae_suite(void)
{
    Suite *s = suite_create("sae");
    TCase *tg = tcase_create("gradients");
    tcase_add_test(tg, test_gradcheck_relu);
    tcase_add_test(tg, test_gradcheck_relu_bdec_in);
    tcase_add_test(tg, test_gradcheck_topk);
    tcase_add_test(tg, test_gradcheck_topk_no_aux);
    tcase_add_test(tg, test_gradcheck_batchtopk);
    tcase_add_test(tg, test_dircheck);
    suite_add_tcase(s, tg);
    TCase *tr = tcase_create("golden");
    tcase_add_test(tr, test_golden_relu);
    tcase_add_test(tr, test_golden_topk);
    tcase_add_test(tr, test_golden_batchtopk);
    tcase_add_test(tr, test_golden_scale_and_median);
    suite_add_tcase(s, tr);
    TCase *tm = tcase_create("model");
    tcase_add_test(tm, test_init_weights);
    tcase_add_test(tm, test_selection_counts);
    tcase_add_test(tm, test_inference);
    tcase_add_test(tm, test_checkpoint_round_trip);
    tcase_add_test(tm, test_schedules);
    tcase_add_test(tm, test_config_errors);
    tcase_add_test(tm, test_fake_device_training);
    tcase_add_test(tm, test_device_arch_accepted);
    suite_add_tcase(s, tm);
    return s;
}

int main(void) { return tp_test_run_suite(sae_suite()); }
