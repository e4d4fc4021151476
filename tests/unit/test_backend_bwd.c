/* test_backend_bwd.c — the CPU backend's backward ops (backend.h `_bwd` slots)
 * against central finite differences of f64 reference code.
 *
 * Each op y = f(x) is checked through the scalar ℓ(x) = Σ dy · f(x) with a random
 * upstream dy: the reference gradient is (ℓ(x + h e_i) − ℓ(x − h e_i)) / 2h of an f64
 * implementation of the forward op, at the op's own f32 inputs (exact in f64). With
 * h = 1e-5 on inputs of size ~1 the f64 difference is good to ~1e-10 (rounding
 * 1e-16/h, truncation h²·ℓ''' ~ 1e-10), far below what is tested.
 *
 * Tolerance: max|got − ref| / max|ref| <= 2e-5. The ops compute in f32 over at most
 * ~100 terms per sum (rounding ~1e-6 relative); a wrong sign, a missing term or a
 * transposed index moves the result by O(1) (each test was seen to fail with one
 * such change). Ops that are linear in their input (linear, embed, the pattern
 * gradient) are also checked in closed form where a finite difference would be slow.
 */
#include "backend/backend.h"
#include "backend/cpu/cpu.h"   /* cpu_set_threads, cpu_get_threads */
#include "core/dtype.h"
#include "tp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL_TOL 2e-5
#define FD_H 1e-5

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* uniform in [-1, 1) (splitmix64) */
static double urand(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}

static float *rand_f32(size_t n, double scale)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = (float)(scale * urand());
    return p;
}

static double *to_f64(const float *x, size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = x[i];
    return p;
}

/* Max |got − ref| / max |ref| of f32 results against f64 references. */
static double rel_err(const float *got, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= num)) num = e;   /* NaN wins */
        if (fabs(ref[i]) > den) den = fabs(ref[i]);
    }
    return den > 0 ? num / den : num;
}

#define ASSERT_CLOSE(got, ref, n, what)                                                          \
    do {                                                                                         \
        double e_ = rel_err((got), (ref), (n));                                                  \
        ck_assert_msg(e_ <= REL_TOL, "%s: relative error %.3g > %.0e", (what), e_, REL_TOL);     \
    } while (0)

/* Central differences of loss over x[0..n) (f64, perturbed in place and restored). */
typedef double (*loss_fn)(void *ctx);
static void fd_grad(loss_fn loss, void *ctx, double *x, size_t n, double *g)
{
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + FD_H;
        double lp = loss(ctx);
        x[i] = x0 - FD_H;
        double lm = loss(ctx);
        x[i] = x0;
        g[i] = (lp - lm) / (2 * FD_H);
    }
}

static double *new_f64(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    ck_assert_ptr_nonnull(p);
    return p;
}

/* ---- linear ---------------------------------------------------------------------- */

/* Weight values as the op reads them: the stored dtype widened to f64. */
static void *store_weights(const float *w, size_t n, tp_dtype dt, double *wide)
{
    void *out = malloc(n * tp_dtype_size(dt));
    ck_assert_ptr_nonnull(out);
    for (size_t i = 0; i < n; i++) {
        if (dt == TP_DTYPE_F32) ((float *)out)[i] = w[i];
        else if (dt == TP_DTYPE_BF16) ((uint16_t *)out)[i] = tp_f32_to_bf16(w[i]);
        else ((uint16_t *)out)[i] = tp_f32_to_f16(w[i]);
    }
    float *f = malloc(n * sizeof *f);
    ck_assert_ptr_nonnull(f);
    tp_convert_to_f32(dt, out, f, n);
    for (size_t i = 0; i < n; i++) wide[i] = f[i];
    free(f);
    return out;
}

typedef struct {
    int64_t m, k, ldx;
    int nout;
    int64_t n[3], ldw[3], ldy[3];
    double *x, *w[3], *dy[3];
} lin_ctx;

static double lin_loss(void *p)
{
    const lin_ctx *c = p;
    double l = 0;
    for (int o = 0; o < c->nout; o++)
        for (int64_t r = 0; r < c->m; r++)
            for (int64_t j = 0; j < c->n[o]; j++) {
                double y = 0;
                for (int64_t i = 0; i < c->k; i++) y += c->x[r * c->ldx + i] * c->w[o][j * c->ldw[o] + i];
                l += c->dy[o][r * c->ldy[o] + j] * y;
            }
    return l;
}

START_TEST(test_linear_bwd)
{
    /* q/k/v-like: three outputs of one X, one per weight dtype, odd sizes, padded
     * strides everywhere (ldx > k, ldw > k, ldy > n). */
    lin_ctx c = {.m = 5, .k = 37, .ldx = 41, .nout = 3, .n = {19, 8, 13}, .ldw = {39, 37, 40},
                 .ldy = {20, 8, 17}};
    const tp_dtype dts[3] = {TP_DTYPE_F32, TP_DTYPE_BF16, TP_DTYPE_F16};
    tp_linear_out outs[3];
    float *dyf[3];
    void *stored[3];
    for (int o = 0; o < 3; o++) {
        size_t nw = (size_t)c.n[o] * (size_t)c.ldw[o], ny = (size_t)c.m * (size_t)c.ldy[o];
        float *w = rand_f32(nw, 0.5);
        c.w[o] = new_f64(nw);
        stored[o] = store_weights(w, nw, dts[o], c.w[o]);
        dyf[o] = rand_f32(ny, 1.0);
        c.dy[o] = to_f64(dyf[o], ny);
        outs[o] = (tp_linear_out){.w = stored[o], .n = c.n[o], .ldw = c.ldw[o], .dtype = dts[o], .y = NULL,
                                  .ldy = c.ldy[o]};
        free(w);
    }
    size_t nx = (size_t)c.m * (size_t)c.ldx;
    float *xf = rand_f32(nx, 1.0), *dx = malloc(nx * sizeof *dx);
    c.x = to_f64(xf, nx);
    for (size_t i = 0; i < nx; i++) dx[i] = 777.0f;   /* padding must stay untouched */
    tp_backend *be = backend_cpu();
    ck_assert_int_eq(be_linear_bwd(be, c.m, c.k, NULL, c.ldx, outs, 3, (const float *const *)dyf, dx), TP_OK);
    double *ref = new_f64(nx);
    fd_grad(lin_loss, &c, c.x, nx, ref);
    for (int64_t r = 0; r < c.m; r++) {
        ASSERT_CLOSE(dx + r * c.ldx, ref + r * c.ldx, (size_t)c.k, "linear_bwd dX row");
        for (int64_t i = c.k; i < c.ldx; i++) ck_assert_float_eq(dx[r * c.ldx + i], 777.0f);
    }
    /* One output alone writes (does not add to) dX. */
    float *dx1 = calloc(nx, sizeof *dx1);
    for (size_t i = 0; i < nx; i++) dx1[i] = 5.0f;
    ck_assert_int_eq(be_linear_bwd(be, c.m, c.k, NULL, c.ldx, &outs[2], 1, (const float *const *)&dyf[2], dx1),
                     TP_OK);
    for (int64_t r = 0; r < c.m; r++)
        for (int64_t i = 0; i < c.k; i++) {
            double want = 0;
            for (int64_t j = 0; j < c.n[2]; j++) want += c.dy[2][r * c.ldy[2] + j] * c.w[2][j * c.ldw[2] + i];
            ck_assert_msg(fabs(dx1[r * c.ldx + i] - want) <= 1e-5, "single output: %g vs %g", dx1[r * c.ldx + i],
                          want);
        }
    for (int o = 0; o < 3; o++) free(stored[o]), free(c.w[o]), free(dyf[o]), free(c.dy[o]);
    free(xf), free(dx), free(dx1), free(c.x), free(ref);
}
END_TEST

/* BF16 weights larger than one converted tile (4 Mi elements): dX = dY · W in closed
 * form in f64 (linear in dY, so the finite difference would be this sum). */
START_TEST(test_linear_bwd_tiles)
{
    int64_t m = 3, k = 2048, n = 2100;   /* 4.3 Mi elements: two tiles */
    size_t nw = (size_t)n * (size_t)k;
    float *w = rand_f32(nw, 0.5);
    double *wide = new_f64(nw);
    void *stored = store_weights(w, nw, TP_DTYPE_BF16, wide);
    float *dy = rand_f32((size_t)m * n, 1.0), *dx = malloc((size_t)m * k * sizeof *dx);
    tp_linear_out o = {.w = stored, .n = n, .ldw = k, .dtype = TP_DTYPE_BF16, .y = NULL, .ldy = n};
    ck_assert_int_eq(be_linear_bwd(backend_cpu(), m, k, NULL, k, &o, 1, (const float *const *)&dy, dx), TP_OK);
    double *ref = new_f64((size_t)m * k);
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < n; j++) {
            double d = dy[r * n + j];
            for (int64_t i = 0; i < k; i++) ref[r * k + i] += d * wide[j * k + i];
        }
    ASSERT_CLOSE(dx, ref, (size_t)(m * k), "linear_bwd over two bf16 tiles");
    free(w), free(wide), free(stored), free(dy), free(dx), free(ref);
}
END_TEST

/* ---- rmsnorm ---------------------------------------------------------------------- */

typedef struct {
    int64_t rows, d;
    double eps;
    double *x, *w, *g;
} rms_ctx;

static double rms_loss(void *p)
{
    const rms_ctx *c = p;
    double l = 0;
    for (int64_t r = 0; r < c->rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < c->d; i++) ss += c->x[r * c->d + i] * c->x[r * c->d + i];
        double inv = 1.0 / sqrt(ss / (double)c->d + c->eps);
        for (int64_t i = 0; i < c->d; i++) l += c->g[r * c->d + i] * c->w[i] * c->x[r * c->d + i] * inv;
    }
    return l;
}

START_TEST(test_rmsnorm_bwd)
{
    int64_t rows = 4, d = 37;
    float eps = 1e-5f;
    float *x = rand_f32((size_t)(rows * d), 1.0), *g = rand_f32((size_t)(rows * d), 1.0);
    float *w = rand_f32((size_t)d, 0.3);
    for (int64_t i = 0; i < d; i++) w[i] += 1.0f;
    for (int64_t i = 0; i < d; i++) x[3 * d + i] *= 0.01f;   /* a row where eps matters */
    rms_ctx c = {rows, d, eps, to_f64(x, (size_t)(rows * d)), to_f64(w, (size_t)d), to_f64(g, (size_t)(rows * d))};
    float *dx = malloc((size_t)(rows * d) * sizeof *dx), *dw = malloc((size_t)d * sizeof *dw);
    tp_backend *be = backend_cpu();
    ck_assert_int_eq(be_rmsnorm_bwd(be, dx, dw, g, x, w, rows, d, eps), TP_OK);
    double *rx = new_f64((size_t)(rows * d)), *rw = new_f64((size_t)d);
    fd_grad(rms_loss, &c, c.x, (size_t)(rows * d), rx);
    fd_grad(rms_loss, &c, c.w, (size_t)d, rw);
    for (int64_t r = 0; r < rows; r++) ASSERT_CLOSE(dx + r * d, rx + r * d, (size_t)d, "rmsnorm_bwd dx row");
    ASSERT_CLOSE(dw, rw, (size_t)d, "rmsnorm_bwd dw");
    /* dx may alias dout, dw may be NULL: the same bits. */
    float *inplace = malloc((size_t)(rows * d) * sizeof *inplace);
    memcpy(inplace, g, (size_t)(rows * d) * sizeof *inplace);
    ck_assert_int_eq(be_rmsnorm_bwd(be, inplace, NULL, inplace, x, w, rows, d, eps), TP_OK);
    ck_assert_mem_eq(inplace, dx, (size_t)(rows * d) * sizeof *dx);
    free(x), free(g), free(w), free(dx), free(dw), free(rx), free(rw), free(inplace);
    free(c.x), free(c.w), free(c.g);
}
END_TEST

/* ---- rope ------------------------------------------------------------------------- */

typedef struct {
    int64_t rows;
    int nh, dh;
    const int32_t *pos;
    const float *cs, *sn;
    double *x, *g;
} rope_ctx;

static double rope_loss(void *p)
{
    const rope_ctx *c = p;
    int half = c->dh / 2;
    double l = 0;
    for (int64_t r = 0; r < c->rows; r++)
        for (int h = 0; h < c->nh; h++) {
            const double *v = c->x + (r * c->nh + h) * c->dh, *g = c->g + (r * c->nh + h) * c->dh;
            for (int i = 0; i < half; i++) {
                double cs = c->cs[c->pos[r] * half + i], sn = c->sn[c->pos[r] * half + i];
                l += g[i] * (v[i] * cs - v[i + half] * sn) + g[i + half] * (v[i + half] * cs + v[i] * sn);
            }
        }
    return l;
}

START_TEST(test_rope_bwd)
{
    int64_t rows = 4;
    int nh = 3, dh = 10, half = 5, max_pos = 8;
    const int32_t pos[4] = {3, 0, 7, 2};
    float *cs = malloc((size_t)max_pos * half * sizeof *cs), *sn = malloc((size_t)max_pos * half * sizeof *sn);
    for (int t = 0; t < max_pos; t++)
        for (int i = 0; i < half; i++) {
            double ang = t * pow(100.0, -(double)i / half);
            cs[t * half + i] = (float)cos(ang), sn[t * half + i] = (float)sin(ang);
        }
    size_t n = (size_t)rows * nh * dh;
    float *x = rand_f32(n, 1.0), *g = rand_f32(n, 1.0);
    rope_ctx c = {rows, nh, dh, pos, cs, sn, to_f64(x, n), to_f64(g, n)};
    double *ref = new_f64(n);
    fd_grad(rope_loss, &c, c.x, n, ref);
    ck_assert_int_eq(be_rope_bwd(backend_cpu(), g, rows, nh, dh, pos, cs, sn), TP_OK);
    ASSERT_CLOSE(g, ref, n, "rope_bwd");
    free(cs), free(sn), free(x), free(g), free(ref), free(c.x), free(c.g);
}
END_TEST

/* ---- attention -------------------------------------------------------------------- */

#define MAXSEQ 3

/* One attention problem: sequences of (nq, off) packed one after another, q [rows,
 * ldq], k/v [keys, ldk] (each sequence's keys from its position 0), z/dz [rows, ldz]. */
typedef struct {
    int H, K, dh, nseq;
    int64_t nq[MAXSEQ], off[MAXSEQ], qrow[MAXSEQ], krow[MAXSEQ];
    int64_t ldq, ldk, ldz, rows, keys;
    double scale;
    double *q, *k, *v, *dz;
    double *edit;   /* NULL, or E = P_edited − P0 per (seq, head) [H, nq, nk], held constant */
    int64_t eoff[MAXSEQ];
} att_ctx;

/* f64 pattern of (seq s, head h) into P [nq, nk] (masked entries 0). */
static void att_pattern(const att_ctx *c, int s, int h, double *P)
{
    int g = h / (c->H / c->K);
    int64_t nq = c->nq[s], nk = c->off[s] + nq;
    for (int64_t i = 0; i < nq; i++) {
        const double *qi = c->q + (c->qrow[s] + i) * c->ldq + h * c->dh;
        int64_t ni = c->off[s] + i + 1;
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j < nk; j++) {
            double sc = 0;
            if (j < ni) {
                const double *kj = c->k + (c->krow[s] + j) * c->ldk + g * c->dh;
                for (int d = 0; d < c->dh; d++) sc += qi[d] * kj[d];
                sc *= c->scale;
                mx = sc > mx ? sc : mx;
            }
            P[i * nk + j] = sc;
        }
        for (int64_t j = 0; j < nk; j++) {
            P[i * nk + j] = j < ni ? exp(P[i * nk + j] - mx) : 0.0;
            sum += P[i * nk + j];
        }
        for (int64_t j = 0; j < nk; j++) P[i * nk + j] /= sum;
    }
}

static double att_loss(void *p)
{
    const att_ctx *c = p;
    double l = 0;
    double *P = new_f64(64 * 64);
    for (int s = 0; s < c->nseq; s++)
        for (int h = 0; h < c->H; h++) {
            int g = h / (c->H / c->K);
            int64_t nq = c->nq[s], nk = c->off[s] + nq;
            att_pattern(c, s, h, P);
            if (c->edit)
                for (int64_t e = 0; e < nq * nk; e++) P[e] += c->edit[c->eoff[s] + h * nq * nk + e];
            for (int64_t i = 0; i < nq; i++) {
                int64_t ni = c->off[s] + i + 1;
                for (int d = 0; d < c->dh; d++) {
                    double z = 0;
                    for (int64_t j = 0; j < ni; j++)
                        z += P[i * nk + j] * c->v[(c->krow[s] + j) * c->ldk + g * c->dh + d];
                    l += c->dz[(c->qrow[s] + i) * c->ldz + h * c->dh + d] * z;
                }
            }
        }
    free(P);
    return l;
}

typedef struct {
    float *q, *k, *v, *dz, *z;
    float *dq, *dk, *dv;
    tp_attn_seq seqs[MAXSEQ];
    tp_attn_grad grads[MAXSEQ];
    tp_attn_shape a;
} att_run;

/* Padded strides (ldq, ldk, ldz past the heads) so a layout mistake shows. */
static void att_make(att_ctx *c, att_run *r, int H, int K, int dh, int nseq, const int64_t *nq, const int64_t *off)
{
    memset(c, 0, sizeof *c);
    memset(r, 0, sizeof *r);
    c->H = H, c->K = K, c->dh = dh, c->nseq = nseq;
    c->ldq = (int64_t)H * dh + 3, c->ldk = (int64_t)K * dh + 2, c->ldz = (int64_t)H * dh + 1;
    for (int s = 0; s < nseq; s++) {
        c->nq[s] = nq[s], c->off[s] = off[s];
        c->qrow[s] = c->rows, c->krow[s] = c->keys;
        c->rows += nq[s], c->keys += off[s] + nq[s];
    }
    r->a = (tp_attn_shape){.H = H, .K = K, .dh = dh, .ldq = c->ldq, .ldk = c->ldk, .ldz = c->ldz,
                           .scale = 1.0f / sqrtf((float)dh)};
    c->scale = r->a.scale;
    size_t nqe = (size_t)(c->rows * c->ldq), nke = (size_t)(c->keys * c->ldk), nze = (size_t)(c->rows * c->ldz);
    r->q = rand_f32(nqe, 1.0), r->k = rand_f32(nke, 1.0), r->v = rand_f32(nke, 1.0), r->dz = rand_f32(nze, 1.0);
    r->z = calloc(nze, sizeof(float)), r->dq = calloc(nqe, sizeof(float));
    r->dk = calloc(nke, sizeof(float)), r->dv = calloc(nke, sizeof(float));
    c->q = to_f64(r->q, nqe), c->k = to_f64(r->k, nke), c->v = to_f64(r->v, nke), c->dz = to_f64(r->dz, nze);
    for (int s = 0; s < nseq; s++) {
        r->seqs[s] = (tp_attn_seq){.q = r->q + c->qrow[s] * c->ldq, .k = r->k + c->krow[s] * c->ldk,
                                   .v = r->v + c->krow[s] * c->ldk, .z = r->z + c->qrow[s] * c->ldz, .p = NULL,
                                   .nq = nq[s], .off = off[s]};
        r->grads[s] = (tp_attn_grad){.dz = r->dz + c->qrow[s] * c->ldz, .dq = r->dq + c->qrow[s] * c->ldq,
                                     .dk = r->dk + c->krow[s] * c->ldk, .dv = r->dv + c->krow[s] * c->ldk,
                                     .dp = NULL};
    }
}

static void att_free(att_ctx *c, att_run *r)
{
    free(r->q), free(r->k), free(r->v), free(r->dz), free(r->z), free(r->dq), free(r->dk), free(r->dv);
    free(c->q), free(c->k), free(c->v), free(c->dz), free(c->edit);
}

/* The [rows, cols] part of a [rows, ld] f64 array, as f64; the same for f32. */
static double *compact64(const double *x, int64_t rows, int64_t cols, int64_t ld)
{
    double *o = new_f64((size_t)(rows * cols));
    for (int64_t r = 0; r < rows; r++) memcpy(o + r * cols, x + r * ld, (size_t)cols * sizeof *o);
    return o;
}
static float *compact32(const float *x, int64_t rows, int64_t cols, int64_t ld)
{
    float *o = malloc((size_t)(rows * cols) * sizeof *o);
    for (int64_t r = 0; r < rows; r++) memcpy(o + r * cols, x + r * ld, (size_t)cols * sizeof *o);
    return o;
}

/* dq, dk, dv of the op against finite differences of att_loss (c->edit as set). */
static void att_check_fd(att_ctx *c, att_run *r, const char *what)
{
    int64_t qd = (int64_t)c->H * c->dh, kd = (int64_t)c->K * c->dh;
    struct { double *x; float *got; int64_t rows, cols, ld; const char *name; } v[3] = {
        {c->q, r->dq, c->rows, qd, c->ldq, "dq"}, {c->k, r->dk, c->keys, kd, c->ldk, "dk"},
        {c->v, r->dv, c->keys, kd, c->ldk, "dv"}};
    for (int i = 0; i < 3; i++) {
        size_t n = (size_t)(v[i].rows * v[i].ld);
        double *ref = new_f64(n);
        fd_grad(att_loss, c, v[i].x, n, ref);
        double *rc = compact64(ref, v[i].rows, v[i].cols, v[i].ld);
        float *gc = compact32(v[i].got, v[i].rows, v[i].cols, v[i].ld);
        char msg[128];
        snprintf(msg, sizeof msg, "attention_bwd %s %s (H=%d K=%d dh=%d)", what, v[i].name, c->H, c->K, c->dh);
        ASSERT_CLOSE(gc, rc, (size_t)(v[i].rows * v[i].cols), msg);
        free(ref), free(rc), free(gc);
    }
}

static void att_case(int H, int K, int dh, int nseq, const int64_t *nq, const int64_t *off)
{
    att_ctx c;
    att_run r;
    att_make(&c, &r, H, K, dh, nseq, nq, off);
    tp_backend *be = backend_cpu();
    size_t nqe = (size_t)(c.rows * c.ldq), nke = (size_t)(c.keys * c.ldk);

    /* 1. recomputed pattern: against finite differences */
    ck_assert_int_eq(be_attention_bwd(be, &r.a, r.seqs, r.grads, nseq), TP_OK);
    att_check_fd(&c, &r, "recomputed");
    float *dq1 = malloc(nqe * sizeof *dq1), *dk1 = malloc(nke * sizeof *dk1), *dv1 = malloc(nke * sizeof *dv1);
    memcpy(dq1, r.dq, nqe * sizeof *dq1), memcpy(dk1, r.dk, nke * sizeof *dk1), memcpy(dv1, r.dv, nke * sizeof *dv1);

    /* 2. d/dpattern in closed form (z = P V is linear in P): dz_i · v_j for every j,
     * the masked entries included; the other gradients do not change. */
    float *pat[MAXSEQ], *dp[MAXSEQ];
    for (int s = 0; s < nseq; s++) {
        size_t np = (size_t)H * (size_t)(nq[s] * (off[s] + nq[s]));
        pat[s] = calloc(np, sizeof(float)), dp[s] = calloc(np, sizeof(float));
        r.grads[s].dp = dp[s];
    }
    ck_assert_int_eq(be_attention_bwd(be, &r.a, r.seqs, r.grads, nseq), TP_OK);
    ck_assert_mem_eq(r.dq, dq1, nqe * sizeof *dq1);
    ck_assert_mem_eq(r.dk, dk1, nke * sizeof *dk1);
    for (int s = 0; s < nseq; s++) {
        int64_t nk = off[s] + nq[s];
        double *ref = new_f64((size_t)H * (size_t)(nq[s] * nk));
        for (int h = 0; h < H; h++)
            for (int64_t i = 0; i < nq[s]; i++)
                for (int64_t j = 0; j < nk; j++) {
                    double acc = 0;
                    for (int d = 0; d < dh; d++)
                        acc += c.dz[(c.qrow[s] + i) * c.ldz + h * dh + d] *
                               c.v[(c.krow[s] + j) * c.ldk + (h / (H / K)) * dh + d];
                    ref[(h * nq[s] + i) * nk + j] = acc;
                }
        ASSERT_CLOSE(dp[s], ref, (size_t)H * (size_t)(nq[s] * nk), "attention_bwd dpattern");
        free(ref);
        r.grads[s].dp = NULL;
    }

    /* 3. the forward's own pattern handed in: the same bits as recomputing it */
    for (int s = 0; s < nseq; s++) r.seqs[s].p = pat[s];
    ck_assert_int_eq(be_attention(be, &r.a, r.seqs, nseq, TP_ATTN_PATTERN), TP_OK);
    ck_assert_int_eq(be_attention_bwd(be, &r.a, r.seqs, r.grads, nseq), TP_OK);
    ck_assert_mem_eq(r.dq, dq1, nqe * sizeof *dq1);
    ck_assert_mem_eq(r.dk, dk1, nke * sizeof *dk1);
    ck_assert_mem_eq(r.dv, dv1, nke * sizeof *dv1);

    /* 4. an edited pattern: straight-through, i.e. the derivative of
     * z = (softmax(q kᵀ) + E) V with E = P_edited − P0 held constant. */
    int64_t etot = 0;
    for (int s = 0; s < nseq; s++) c.eoff[s] = etot, etot += (int64_t)H * nq[s] * (off[s] + nq[s]);
    c.edit = new_f64((size_t)etot);
    double *P0 = new_f64(64 * 64);
    for (int s = 0; s < nseq; s++) {
        int64_t nk = off[s] + nq[s];
        for (int h = 0; h < H; h++) {
            att_pattern(&c, s, h, P0);
            for (int64_t i = 0; i < nq[s]; i++)
                for (int64_t j = 0; j <= off[s] + i; j++) {
                    float *pe = &pat[s][(h * nq[s] + i) * nk + j];
                    *pe = *pe * 0.5f + (float)(0.2 * urand());
                    c.edit[c.eoff[s] + (h * nq[s] + i) * nk + j] = (double)*pe - P0[i * nk + j];
                }
        }
    }
    ck_assert_int_eq(be_attention_bwd(be, &r.a, r.seqs, r.grads, nseq), TP_OK);
    att_check_fd(&c, &r, "edited pattern");
    free(P0);
    free(c.edit), c.edit = NULL;
    for (int s = 0; s < nseq; s++) r.seqs[s].p = NULL;

    /* 5. one thread or two: the same bits */
    int nt = cpu_get_threads();
    cpu_set_threads(nt == 1 ? 2 : 1);
    ck_assert_int_eq(be_attention_bwd(be, &r.a, r.seqs, r.grads, nseq), TP_OK);
    cpu_set_threads(nt);
    ck_assert_mem_eq(r.dq, dq1, nqe * sizeof *dq1);
    ck_assert_mem_eq(r.dk, dk1, nke * sizeof *dk1);
    ck_assert_mem_eq(r.dv, dv1, nke * sizeof *dv1);

    for (int s = 0; s < nseq; s++) free(pat[s]), free(dp[s]);
    free(dq1), free(dk1), free(dv1);
    att_free(&c, &r);
}

/* GQA (2 query heads per kv head), dh 16 (the AVX-512 score kernel where the CPU has
 * it), three sequences, the last continuing after 2 earlier positions (off > 0). */
START_TEST(test_attention_bwd_gqa)
{
    const int64_t nq[3] = {5, 3, 4}, off[3] = {0, 0, 2};
    att_case(4, 2, 16, 3, nq, off);
}
END_TEST

/* Three query heads on one kv head, dh 6 (the scalar kernel), two sequences, one of
 * them longer than a block of the kernel. */
START_TEST(test_attention_bwd_odd)
{
    const int64_t nq[2] = {13, 2}, off[2] = {0, 3};   /* 13 rows: two of the kernel's 8-row blocks */
    att_case(3, 1, 6, 2, nq, off);
}
END_TEST

START_TEST(test_attention_bwd_bad_heads)
{
    tp_attn_shape a = {.H = 3, .K = 2, .dh = 4, .ldq = 12, .ldk = 8, .ldz = 12, .scale = 0.5f};
    tp_attn_seq s = {0};
    tp_attn_grad g = {0};
    TP_ASSERT_FAILS(be_attention_bwd(backend_cpu(), &a, &s, &g, 1), TP_ERR_RANGE, "3 query heads");
}
END_TEST

/* ---- silu_mul --------------------------------------------------------------------- */

static double silu_mul64(double g, double u) { return g / (1.0 + exp(-g)) * u; }

START_TEST(test_silu_mul_bwd)
{
    /* Over two of the op's 16 Ki-element blocks; gates up to ±12 and a few extremes
     * (where σ saturates and exp(−g) overflows). */
    size_t n = 40000;
    float *g = rand_f32(n, 12.0), *u = rand_f32(n, 2.0), *d = rand_f32(n, 1.0);
    g[0] = 90.0f, g[1] = -90.0f, g[2] = 0.0f, g[3] = -1e-3f;
    float *dg = malloc(n * sizeof *dg), *du = malloc(n * sizeof *du);
    ck_assert_int_eq(be_silu_mul_bwd(backend_cpu(), dg, du, d, g, u, n), TP_OK);
    /* Element-wise: one f64 central difference per element. */
    double *rg = new_f64(n), *ru = new_f64(n);
    for (size_t i = 0; i < n; i++) {
        double gi = g[i], ui = u[i];
        rg[i] = d[i] * (silu_mul64(gi + FD_H, ui) - silu_mul64(gi - FD_H, ui)) / (2 * FD_H);
        ru[i] = d[i] * (silu_mul64(gi, ui + FD_H) - silu_mul64(gi, ui - FD_H)) / (2 * FD_H);
    }
    ASSERT_CLOSE(dg, rg, n, "silu_mul_bwd dgate");
    ASSERT_CLOSE(du, ru, n, "silu_mul_bwd dup");
    /* dgate may alias dout (and dup likewise): the same bits */
    float *alias = malloc(n * sizeof *alias), *du2 = malloc(n * sizeof *du2);
    memcpy(alias, d, n * sizeof *alias);
    ck_assert_int_eq(be_silu_mul_bwd(backend_cpu(), alias, du2, alias, g, u, n), TP_OK);
    ck_assert_mem_eq(alias, dg, n * sizeof *dg);
    ck_assert_mem_eq(du2, du, n * sizeof *du);
    memcpy(alias, d, n * sizeof *alias);
    ck_assert_int_eq(be_silu_mul_bwd(backend_cpu(), du2, alias, alias, g, u, n), TP_OK);
    ck_assert_mem_eq(alias, du, n * sizeof *du);
    ck_assert_mem_eq(du2, dg, n * sizeof *dg);
    free(g), free(u), free(d), free(dg), free(du), free(rg), free(ru), free(alias), free(du2);
}
END_TEST

/* ---- embed ------------------------------------------------------------------------ */

typedef struct {
    int64_t d, rows;
    const int32_t *ids;
    double *table, *g;
} emb_ctx;

static double emb_loss(void *p)
{
    const emb_ctx *c = p;
    double l = 0;
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t i = 0; i < c->d; i++) l += c->g[r * c->d + i] * c->table[c->ids[r] * c->d + i];
    return l;
}

START_TEST(test_embed_bwd)
{
    int64_t vocab = 11, d = 5, rows = 6;
    const int32_t ids[6] = {3, 0, 3, 10, 7, 3};   /* 3 three times: its rows add up */
    float *g = rand_f32((size_t)(rows * d), 1.0), *tab = rand_f32((size_t)(vocab * d), 1.0);
    emb_ctx c = {d, rows, ids, to_f64(tab, (size_t)(vocab * d)), to_f64(g, (size_t)(rows * d))};
    double *ref = new_f64((size_t)(vocab * d));
    fd_grad(emb_loss, &c, c.table, (size_t)(vocab * d), ref);
    float *dt = calloc((size_t)(vocab * d), sizeof *dt);
    ck_assert_int_eq(be_embed_bwd(backend_cpu(), dt, g, vocab, d, ids, rows), TP_OK);
    ASSERT_CLOSE(dt, ref, (size_t)(vocab * d), "embed_bwd");
    /* accumulates: a second call doubles it */
    ck_assert_int_eq(be_embed_bwd(backend_cpu(), dt, g, vocab, d, ids, rows), TP_OK);
    for (int64_t i = 0; i < vocab * d; i++) ref[i] *= 2;
    ASSERT_CLOSE(dt, ref, (size_t)(vocab * d), "embed_bwd accumulated");
    const int32_t bad[2] = {1, 11};
    TP_ASSERT_FAILS(be_embed_bwd(backend_cpu(), dt, g, vocab, d, bad, 2), TP_ERR_RANGE, "token id 11 at position 1");
    free(g), free(tab), free(ref), free(dt), free(c.table), free(c.g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backend_bwd");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_linear_bwd);
    tcase_add_test(tc, test_linear_bwd_tiles);
    tcase_add_test(tc, test_rmsnorm_bwd);
    tcase_add_test(tc, test_rope_bwd);
    tcase_add_test(tc, test_attention_bwd_gqa);
    tcase_add_test(tc, test_attention_bwd_odd);
    tcase_add_test(tc, test_attention_bwd_bad_heads);
    tcase_add_test(tc, test_silu_mul_bwd);
    tcase_add_test(tc, test_embed_bwd);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
