/* test_linear.c — backend/linear's GEMM (Y = X · Wᵀ) against an f64 product of the
 * same operands and against OpenBLAS sgemm, on every edge of its blocking:
 * m around the 12-row tile and past the 16-tile row block, n around the 32-column
 * panel and the 8-panel task, k around the 16-wide transpose and the 512 k-block,
 * row strides larger than the width, F32 / BF16 / F16 weights, several outputs
 * sharing one X, and X larger than the packed-X budget (several row blocks). Also: Y outside [m, n] is never written,
 * a row's bits do not depend on the other rows of the call or on the thread count, and
 * nothing is read past the last element of X or W (a guard page after each).
 *
 * Tolerance: |y - ref| <= 1e-5 * Σ_k |x_k w_k| + 1e-30 per element (f32 accumulation
 * over k terms is good to ~k·2^-24 of that sum in the worst case, far less in practice;
 * k <= 8200 here, so 1e-5 is ~20x the typical error and a wrong index or a missing
 * term fails by orders of magnitude).
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

static void run_shape(const shape *s)
{
    float *wf, *x = make_x(s), *y = make_y(s);
    void *w = make_w(s, &wf);
    cpu_linear_out o = {w, s->n, s->ldw, s->type, y, s->ldy};
    ck_assert_int_eq(cpu_linear(s->m, s->k, x, s->ldx, &o, 1), 0);
    check_out(s, x, wf, y, "single");
    if (w != wf) free(w);
    free(wf), free(x), free(y);
}

#define SKIP_IF_UNSUPPORTED()                                                 \
    do {                                                                      \
        if (!cpu_linear_supported()) {                                        \
            printf("skipped: this CPU has no AVX-512 (F, BW, VL)\n");         \
            return;                                                           \
        }                                                                     \
    } while (0)

START_TEST(test_edges)
{
    SKIP_IF_UNSUPPORTED();
    static const int64_t ms[] = {1, 5, 11, 12, 13, 25, 40, 205};
    static const int64_t ns[] = {1, 16, 17, 31, 32, 33, 64, 257, 300};
    static const int64_t ks[] = {1, 7, 16, 17, 255, 511, 512, 513, 1100};
    for (size_t a = 0; a < sizeof ms / sizeof *ms; a++)
        for (size_t b = 0; b < sizeof ns / sizeof *ns; b++)
            for (size_t c = 0; c < sizeof ks / sizeof *ks; c++) {
                shape s = {ms[a], ns[b], ks[c], ks[c], ks[c], ns[b], CPU_W_F32};
                run_shape(&s);
            }
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

/* Several outputs with one X (q/k/v): each equals its own single call, bit for bit. */
START_TEST(test_multi_output)
{
    SKIP_IF_UNSUPPORTED();
    shape sx = {29, 0, 200, 200, 0, 0, CPU_W_F32};
    float *x = make_x(&sx);
    shape s[3] = {{29, 96, 200, 200, 200, 96, CPU_W_F32},
                  {29, 40, 200, 200, 203, 41, CPU_W_BF16},
                  {29, 300, 200, 200, 200, 300, CPU_W_F16}};
    float *wf[3], *y[3], *y1[3];
    void *w[3];
    cpu_linear_out o[3];
    for (int i = 0; i < 3; i++) {
        w[i] = make_w(&s[i], &wf[i]);
        y[i] = make_y(&s[i]), y1[i] = make_y(&s[i]);
        o[i] = (cpu_linear_out){w[i], s[i].n, s[i].ldw, s[i].type, y[i], s[i].ldy};
    }
    ck_assert_int_eq(cpu_linear(29, 200, x, 200, o, 3), 0);
    for (int i = 0; i < 3; i++) {
        check_out(&s[i], x, wf[i], y[i], "multi");
        cpu_linear_out one = o[i];
        one.y = y1[i];
        ck_assert_int_eq(cpu_linear(29, 200, x, 200, &one, 1), 0);
        ck_assert_msg(!memcmp(y[i], y1[i], (size_t)29 * (size_t)s[i].ldy * sizeof(float)),
                      "output %d of a 3-output call differs from its own call", i);
        if (w[i] != wf[i]) free(w[i]);
        free(wf[i]), free(y[i]), free(y1[i]);
    }
    free(x);
}
END_TEST

/* A row's bits: the same alone (m = 1), inside any tile position, at 1 and 2 threads,
 * and in a call large enough to be split into several packed-X row blocks. */
START_TEST(test_row_independence)
{
    SKIP_IF_UNSUPPORTED();
    int64_t m = 1100, n = 45, k = 8200; /* 32 MiB / (12 * 8200 * 4) = 85 tiles per block: 2 blocks */
    shape s = {m, n, k, k, k, n, CPU_W_F32};
    float *x = make_x(&s), *wf, *y = make_y(&s), *y2 = make_y(&s);
    void *w = make_w(&s, &wf);
    cpu_linear_out o = {w, n, k, CPU_W_F32, y, n};
    int threads = cpu_get_threads();
    cpu_set_threads(2);
    ck_assert_int_eq(cpu_linear(m, k, x, k, &o, 1), 0);
    check_out(&s, x, wf, y, "blocks");
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
    free(part), free(x), free(wf), free(y), free(y2);
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
    static const cpu_wtype types[] = {CPU_W_F32, CPU_W_BF16, CPU_W_F16};
    for (int t = 0; t < 3; t++) {
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
        check_out(&s, x, wf, y, "guarded");
        munmap(xb, xl), munmap(wb, wl);
        if (w0 != wf) free(w0);
        free(wf), free(x0), free(y);
    }
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
    tcase_add_test(tc, test_row_independence);
    tcase_add_test(tc, test_no_overread);
    tcase_add_test(tc, test_disable);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
