/* test_linear.c — backend/linear's GEMM (Y = X · Wᵀ) against an f64 product of the
 * same operands and against OpenBLAS sgemm, on every edge of its blocking:
 * m around the 12-row tile and past the 16-tile row block, n around the 32-column
 * panel and the 8-panel task, k around the 16-wide transpose and the 512 k-block,
 * row strides larger than the width, F32 / BF16 / F16 weights, several outputs
 * sharing one X, and X larger than the packed-X budget (several row blocks). Also: Y outside [m, n] is never written,
 * a row's bits do not depend on the other rows of the call or on the thread count, and
 * nothing is read past the last element of X or W (a guard page after each).
 * The bf16 path (cpu_linear_bf16_enable, all outputs BF16, AVX512-BF16) on the same
 * edges, k odd included, against the f64 product of X rounded to bf16 and W; its
 * row and thread-count independence; its fallback to the f32 kernel when disabled,
 * unsupported or mixed with another dtype. On a CPU without AVX512-BF16 those tests
 * pass with a "skipped" line.
 *
 * Tolerance: |y - ref| <= 1e-5 * Σ_k |x_k w_k| + 1e-30 per element (f32 accumulation
 * over k terms is good to ~k·2^-24 of that sum in the worst case, far less in practice;
 * k <= 8200 here, so 1e-5 is ~20x the typical error and a wrong index or a missing
 * term fails by orders of magnitude). The bf16 path keeps it: a product of two bf16 is
 * exact in f32, so against X rounded to bf16 only the summation order differs; against
 * f32 X it errs by ~2^-9 of Σ|x w| (bf16's rounding of X), which test_bf16_edges checks
 * it does, so a path that silently ran in f32 fails too.
 */
#include "backend/cpu/linear.h"   /* cpu_linear, cpu_linear_supported, cpu_linear_enable */
#include "backend/cpu/pool.h"     /* cpu_set_threads, cpu_get_threads */
#include "core/dtype.h"
#include "tp_test.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static float urand(void) /* splitmix64 -> [-1, 1) */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

#define GUARD 12345.0f

typedef struct {
    int64_t m, n, k, ldx, ldw, ldy;
    cpu_wtype type;
} shape;

/* W [n, ldw] in `type` and its exact f32 values. */
static void *make_w(const shape *s, float **wf)
{
    size_t cnt = (size_t)s->n * (size_t)s->ldw;
    float *f = malloc(cnt * sizeof(float));
    ck_assert_ptr_nonnull(f);
    for (size_t i = 0; i < cnt; i++) f[i] = urand();
    if (s->type == CPU_W_F32) { *wf = f; return f; }
    tp_dtype dt = s->type == CPU_W_BF16 ? TP_DTYPE_BF16 : TP_DTYPE_F16;
    void *w = malloc(cnt * 2);
    ck_assert_ptr_nonnull(w);
    tp_convert_from_f32(dt, f, w, cnt);
    tp_convert_to_f32(dt, w, f, cnt); /* the values the kernel sees */
    *wf = f;
    return w;
}

/* Checks y against the f64 product (TP_LINEAR_VERBOSE=1 prints the worst error next
 * to OpenBLAS sgemm's on the same operands); the guard columns intact. */
static void check_out(const shape *s, const float *x, const float *wf, const float *y, const char *what)
{
    float *blas = malloc((size_t)s->m * (size_t)s->n * sizeof(float));
    ck_assert_ptr_nonnull(blas);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->m, (int)s->n, (int)s->k, 1.0f, x, (int)s->ldx,
                wf, (int)s->ldw, 0.0f, blas, (int)s->n);
    double worst = 0, worst_blas = 0;
    for (int64_t i = 0; i < s->m; i++) {
        for (int64_t j = 0; j < s->ldy; j++) {
            float v = y[i * s->ldy + j];
            if (j >= s->n) {
                ck_assert_msg(v == GUARD, "%s m=%lld n=%lld k=%lld: y[%lld][%lld] past n was written",
                              what, (long long)s->m, (long long)s->n, (long long)s->k, (long long)i, (long long)j);
                continue;
            }
            double ref = 0, mag = 0;
            for (int64_t t = 0; t < s->k; t++) {
                double p = (double)x[i * s->ldx + t] * (double)wf[j * s->ldw + t];
                ref += p, mag += fabs(p);
            }
            double e = fabs((double)v - ref) / (mag + 1e-30), eb = fabs((double)blas[i * s->n + j] - ref) / (mag + 1e-30);
            if (e > worst) worst = e;
            if (eb > worst_blas) worst_blas = eb;
            ck_assert_msg(e <= 1e-5, "%s m=%lld n=%lld k=%lld type=%d: y[%lld][%lld]=%.9g, f64 %.9g (rel %.3g)", what,
                          (long long)s->m, (long long)s->n, (long long)s->k, (int)s->type, (long long)i, (long long)j,
                          v, ref, e);
        }
    }
    if (getenv("TP_LINEAR_VERBOSE")) printf("%s m=%lld n=%lld k=%lld type=%d: %.3g vs OpenBLAS %.3g\n", what, (long long)s->m, (long long)s->n, (long long)s->k, (int)s->type, worst, worst_blas);
    (void)worst;
    free(blas);
}

static float *make_x(const shape *s)
{
    float *x = malloc((size_t)s->m * (size_t)s->ldx * sizeof(float) + 4);
    ck_assert_ptr_nonnull(x);
    for (int64_t i = 0; i < s->m * s->ldx; i++) x[i] = urand();
    return x;
}

static float *make_y(const shape *s)
{
    float *y = malloc((size_t)s->m * (size_t)s->ldy * sizeof(float) + 4);
    ck_assert_ptr_nonnull(y);
    for (int64_t i = 0; i < s->m * s->ldy; i++) y[i] = GUARD;
    return y;
}

/* X as the bf16 path sees it: every element rounded to bf16 (nearest even). */
static float *round_x_bf16(const shape *s, const float *x)
{
    size_t cnt = (size_t)s->m * (size_t)s->ldx;
    float *r = malloc(cnt * sizeof(float));
    uint16_t *h = malloc(cnt * 2);
    ck_assert(r && h);
    tp_convert_from_f32(TP_DTYPE_BF16, x, h, cnt);
    tp_convert_to_f32(TP_DTYPE_BF16, h, r, cnt);
    free(h);
    return r;
}

/* The largest |y - f64(x·w)| / Σ|x w| over the shape (no guard check). */
static double worst_rel_err(const shape *s, const float *x, const float *wf, const float *y)
{
    double worst = 0;
    for (int64_t i = 0; i < s->m; i++)
        for (int64_t j = 0; j < s->n; j++) {
            double ref = 0, mag = 0;
            for (int64_t t = 0; t < s->k; t++) {
                double p = (double)x[i * s->ldx + t] * (double)wf[j * s->ldw + t];
                ref += p, mag += fabs(p);
            }
            double e = fabs((double)y[i * s->ldy + j] - ref) / (mag + 1e-30);
            if (e > worst) worst = e;
        }
    return worst;
}

/* One call on a random shape, checked against f64; bf16: against X rounded to bf16,
 * and (k >= 64 and 64 outputs or more, where X's rounding shows in the worst of them:
 * one sum alone can land within 1e-5 by chance, seen 5.3e-6 at m = n = 1, k = 1025)
 * farther from f32 X than 1e-5, i.e. X really was rounded. */
static void run_shape_as(const shape *s, int bf16)
{
    float *wf, *x = make_x(s), *y = make_y(s);
    void *w = make_w(s, &wf);
    cpu_linear_out o = {w, s->n, s->ldw, s->type, y, s->ldy};
    ck_assert_int_eq(cpu_linear(s->m, s->k, x, s->ldx, &o, 1), 0);
    float *xr = bf16 ? round_x_bf16(s, x) : x;
    check_out(s, xr, wf, y, bf16 ? "bf16" : "single");
    if (bf16 && s->k >= 64 && s->m * s->n >= 64) {
        double e = worst_rel_err(s, x, wf, y);
        ck_assert_msg(e > 1e-5, "bf16 m=%lld n=%lld k=%lld: within %.3g of the f32-X product: X not rounded?",
                      (long long)s->m, (long long)s->n, (long long)s->k, e);
    }
    if (xr != x) free(xr);
    if (w != wf) free(w);
    free(wf), free(x), free(y);
}

static void run_shape(const shape *s) { run_shape_as(s, 0); }

#define SKIP_IF_UNSUPPORTED()                                                 \
    do {                                                                      \
        if (!cpu_linear_supported()) {                                        \
            printf("skipped: this CPU has no AVX-512 (F, BW, VL)\n");         \
            return;                                                           \
        }                                                                     \
    } while (0)

/* bf16 compute on, or a "skipped" line and 0 when this CPU lacks AVX512-BF16. */
static int bf16_on(void)
{
    if (!cpu_linear_bf16_supported()) {
        printf("skipped: this CPU has no AVX512-BF16 (or no AVX-512): the bf16 path is not used here\n");
        return 0;
    }
    cpu_linear_bf16_enable(1);
    ck_assert_int_eq(cpu_linear_bf16_active(), 1);
    return 1;
}

/* m around the 12-row tile, n around the 32-column panel, k around the transpose
 * width (16 values; 32 bf16 = 16 pairs) and the k-block (512 values, 256 pairs on the
 * bf16 path) and twice it, odd and even. */
static void edges(cpu_wtype type, int bf16)
{
    static const int64_t ms[] = {1, 5, 11, 12, 13, 25, 40, 205};
    static const int64_t ns[] = {1, 16, 17, 31, 32, 33, 64, 257, 300};
    static const int64_t ks[] = {1, 2, 7, 16, 17, 31, 33, 255, 511, 512, 513, 1023, 1024, 1025, 1100};
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) {
                shape s = {ms[a], ns[b], ks[c], ks[c], ks[c], ns[b], type};
                run_shape_as(&s, bf16);
            }
}

START_TEST(test_edges)
{
    SKIP_IF_UNSUPPORTED();
    edges(CPU_W_F32, 0);
}
END_TEST

START_TEST(test_bf16_edges)
{
    if (!bf16_on()) return;
    edges(CPU_W_BF16, 1);
    shape s1 = {37, 70, 301, 305, 303, 75, CPU_W_BF16}; /* every stride padded, odd ldw: pairs unaligned */
    shape s2 = {13, 33, 17, 20, 19, 40, CPU_W_BF16};
    run_shape_as(&s1, 1), run_shape_as(&s2, 1);
    cpu_linear_bf16_enable(0);
}
END_TEST

START_TEST(test_strides_and_types)
{
    SKIP_IF_UNSUPPORTED();
    static const cpu_wtype types[] = {CPU_W_F32, CPU_W_BF16, CPU_W_F16};
    for (int t = 0; t < 3; t++) {
        shape s1 = {37, 70, 300, 305, 301, 75, types[t]};  /* every stride padded */
        shape s2 = {24, 300, 257, 257, 257, 300, types[t]};
        shape s3 = {13, 33, 17, 20, 19, 40, types[t]};
        run_shape(&s1), run_shape(&s2), run_shape(&s3);
    }
}
END_TEST

/* Three outputs of one X: W (stored, and its f32 values), Y, a second Y, the call's outs. */
typedef struct {
    float *wf[3], *y[3], *y1[3];
    void *w[3];
    cpu_linear_out o[3];
} three;

static void three_make(const shape s[3], three *t)
{
    for (int i = 0; i < 3; i++) {
        t->w[i] = make_w(&s[i], &t->wf[i]);
        t->y[i] = make_y(&s[i]), t->y1[i] = make_y(&s[i]);
        t->o[i] = (cpu_linear_out){t->w[i], s[i].n, s[i].ldw, s[i].type, t->y[i], s[i].ldy};
    }
}

static void three_free(three *t)
{
    for (int i = 0; i < 3; i++) {
        if (t->w[i] != t->wf[i]) free(t->w[i]);
        free(t->wf[i]), free(t->y[i]), free(t->y1[i]);
    }
}

/* Several outputs with one X (q/k/v): each equals its own single call, bit for bit. */
START_TEST(test_multi_output)
{
    SKIP_IF_UNSUPPORTED();
    shape sx = {29, 0, 200, 200, 0, 0, CPU_W_F32};
    float *x = make_x(&sx);
    shape s[3] = {{29, 96, 200, 200, 200, 96, CPU_W_F32},
                  {29, 40, 200, 200, 203, 41, CPU_W_BF16},
                  {29, 300, 200, 200, 200, 300, CPU_W_F16}};
    three t;
    three_make(s, &t);
    float **wf = t.wf, **y = t.y, **y1 = t.y1;
    cpu_linear_out *o = t.o;
    ck_assert_int_eq(cpu_linear(29, 200, x, 200, o, 3), 0);
    for (int i = 0; i < 3; i++) {
        check_out(&s[i], x, wf[i], y[i], "multi");
        cpu_linear_out one = o[i];
        one.y = y1[i];
        ck_assert_int_eq(cpu_linear(29, 200, x, 200, &one, 1), 0);
        ck_assert_msg(!memcmp(y[i], y1[i], (size_t)29 * (size_t)s[i].ldy * sizeof(float)),
                      "output %d of a 3-output call differs from its own call", i);
    }
    three_free(&t);
    free(x);
}
END_TEST

/* A row's bits: the same alone (m = 1), inside any tile position, at 1 and 2 threads,
 * and in a call large enough to be split into several packed-X row blocks. */
START_TEST(test_row_independence) /* _i = 0: f32, 1: the bf16 path (k = 8201: odd) */
{
    SKIP_IF_UNSUPPORTED();
    if (_i == 1 && !bf16_on()) return;
    int64_t m = 1100, n = 45, k = 8200 + _i; /* 32 MiB / (12 * 8200 * 4) = 85 tiles per block: 2 blocks */
    shape s = {m, n, k, k, k, n, _i ? CPU_W_BF16 : CPU_W_F32};
    float *x = make_x(&s), *wf, *y = make_y(&s), *y2 = make_y(&s);
    void *w = make_w(&s, &wf);
    cpu_linear_out o = {w, n, k, s.type, y, n};
    int threads = cpu_get_threads();
    cpu_set_threads(2);
    ck_assert_int_eq(cpu_linear(m, k, x, k, &o, 1), 0);
    float *xr = _i ? round_x_bf16(&s, x) : x;
    check_out(&s, xr, wf, y, _i ? "bf16 blocks" : "blocks");
    if (xr != x) free(xr);
    cpu_set_threads(1);
    o.y = y2;
    ck_assert_int_eq(cpu_linear(m, k, x, k, &o, 1), 0);
    ck_assert_msg(!memcmp(y, y2, (size_t)m * (size_t)n * sizeof(float)), "1 thread and 2 threads differ");
    static const int64_t rows[] = {0, 1, 11, 12, 13, 500, 1019, 1020, 1099};
    float one[45];
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        o.y = one;
        ck_assert_int_eq(cpu_linear(1, k, x + rows[i] * k, k, &o, 1), 0);
        ck_assert_msg(!memcmp(one, y + rows[i] * n, sizeof one), "row %lld alone differs from row %lld of the call",
                      (long long)rows[i], (long long)rows[i]);
    }
    /* rows 7..30 as their own call: different tile positions, same bits */
    float *part = malloc(24 * (size_t)n * sizeof(float));
    ck_assert_ptr_nonnull(part);
    o.y = part;
    ck_assert_int_eq(cpu_linear(24, k, x + 7 * k, k, &o, 1), 0);
    ck_assert_msg(!memcmp(part, y + 7 * n, 24 * (size_t)n * sizeof(float)), "rows 7..30 differ when called alone");
    cpu_set_threads(threads);
    cpu_linear_bf16_enable(0);
    if (w != wf) free(w);
    free(part), free(x), free(wf), free(y), free(y2);
}
END_TEST

/* The f32 kernel whenever the bf16 path does not apply: disabled (the default),
 * the kernel disabled altogether, or a call that mixes BF16 with F32 weights (q/k/v
 * sharing one X must take one kernel); all-BF16 outputs sharing X match their own
 * calls bit for bit. */
START_TEST(test_bf16_fallback)
{
    SKIP_IF_UNSUPPORTED();
    ck_assert_int_eq(cpu_linear_bf16_active(), 0); /* off unless asked */
    int64_t m = 29, k = 201;
    shape sx = {m, 0, k, k, 0, 0, CPU_W_F32};
    float *x = make_x(&sx);
    shape s[3] = {{m, 40, k, k, 203, 41, CPU_W_BF16}, {m, 96, k, k, k, 96, CPU_W_BF16}, {m, 33, k, k, k, 33, CPU_W_F32}};
    three t;
    three_make(s, &t);
    float **wf = t.wf, **y = t.y, **y1 = t.y1;
    cpu_linear_out *o = t.o;
    /* disabled: BF16 weights on the f32 kernel, checked against f32 X */
    ck_assert_int_eq(cpu_linear(m, k, x, k, o, 1), 0);
    check_out(&s[0], x, wf[0], y[0], "bf16 off");
    if (cpu_linear_bf16_supported()) {
        cpu_linear_bf16_enable(1);
        cpu_linear_enable(0);
        ck_assert_int_eq(cpu_linear_bf16_active(), 0);
        cpu_linear_enable(1);
        /* mixed with F32: the f32 kernel for all three, the same bits as with bf16 off */
        cpu_linear_out o1[3];
        memcpy(o1, o, sizeof o1);
        for (int i = 0; i < 3; i++) o1[i].y = y1[i];
        ck_assert_int_eq(cpu_linear(m, k, x, k, o1, 3), 0);
        ck_assert_msg(!memcmp(y[0], y1[0], (size_t)m * (size_t)s[0].ldy * sizeof(float)),
                      "a BF16 output beside an F32 one did not take the f32 kernel");
        check_out(&s[2], x, wf[2], y1[2], "mixed f32");
        /* all BF16: two outputs on the bf16 kernel, each the bits of its own call */
        ck_assert_int_eq(cpu_linear(m, k, x, k, o1, 2), 0);
        float *xr = round_x_bf16(&sx, x);
        for (int i = 0; i < 2; i++) {
            check_out(&s[i], xr, wf[i], y1[i], "bf16 multi");
            ck_assert_int_eq(cpu_linear(m, k, x, k, &o[i], 1), 0);
            ck_assert_msg(!memcmp(y[i], y1[i], (size_t)m * (size_t)s[i].ldy * sizeof(float)),
                          "bf16 output %d of a 2-output call differs from its own call", i);
        }
        free(xr);
        cpu_linear_bf16_enable(0);
    } else {
        printf("skipped (partly): this CPU has no AVX512-BF16: only the disabled path was checked\n");
    }
    three_free(&t);
    free(x);
}
END_TEST

/* `bytes` of memory that end exactly where an inaccessible page begins: a read past the
 * end (a masked load with the wrong mask) faults instead of reading a neighbour. */
static void *guarded(size_t bytes, void **base, size_t *len)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE), body = (bytes + pg - 1) / pg * pg;
    *len = body + pg;
    char *b = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(b, MAP_FAILED);
    ck_assert_int_eq(mprotect(b + body, pg, PROT_NONE), 0);
    *base = b;
    return b + body - bytes;
}

/* X and W whose last row ends at a guard page, k not a multiple of 16: the packing
 * must not read past the last element (it would fault). */
START_TEST(test_no_overread)
{
    SKIP_IF_UNSUPPORTED();
    static const cpu_wtype types[] = {CPU_W_F32, CPU_W_BF16, CPU_W_F16, CPU_W_BF16}; /* the last on the bf16 path */
    for (int t = 0; t < 4; t++) {
        if (t == 3 && !bf16_on()) break;
        shape s = {13, 35, 37, 37, 37, 35, types[t]};
        float *wf, *x0 = make_x(&s), *y = make_y(&s);
        void *w0 = make_w(&s, &wf), *xb, *wb;
        size_t xl, wl, esz = types[t] == CPU_W_F32 ? 4 : 2;
        size_t xbytes = (size_t)s.m * (size_t)s.k * 4, wbytes = (size_t)s.n * (size_t)s.k * esz;
        float *x = guarded(xbytes, &xb, &xl);
        void *w = guarded(wbytes, &wb, &wl);
        memcpy(x, x0, xbytes);
        memcpy(w, w0, wbytes);
        cpu_linear_out o = {w, s.n, s.k, s.type, y, s.ldy};
        ck_assert_int_eq(cpu_linear(s.m, s.k, x, s.k, &o, 1), 0);
        float *xr = t == 3 ? round_x_bf16(&s, x) : x;
        check_out(&s, xr, wf, y, "guarded");
        if (xr != x) free(xr);
        munmap(xb, xl), munmap(wb, wl);
        if (w0 != wf) free(w0);
        free(wf), free(x0), free(y);
    }
    cpu_linear_bf16_enable(0);
}
END_TEST

START_TEST(test_disable)
{
    cpu_linear_enable(0);
    ck_assert_int_eq(cpu_linear_supported(), 0);
    float x = 1, w = 2, y = 0;
    cpu_linear_out o = {&w, 1, 1, CPU_W_F32, &y, 1};
    ck_assert_int_eq(cpu_linear(1, 1, &x, 1, &o, 1), -1);
    ck_assert(y == 0.0f);
    cpu_linear_enable(1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("linear");
    TCase *tc = tcase_create("linear");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_edges);
    tcase_add_test(tc, test_strides_and_types);
    tcase_add_test(tc, test_multi_output);
    tcase_add_loop_test(tc, test_row_independence, 0, 2);
    tcase_add_test(tc, test_bf16_edges);
    tcase_add_test(tc, test_bf16_fallback);
    tcase_add_test(tc, test_no_overread);
    tcase_add_test(tc, test_disable);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
