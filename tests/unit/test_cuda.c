/* test_cuda.c — the CUDA backend (backend/cuda.h) against the CPU backend.
 *
 * Not built (no nvcc, or -DTP_CUDA=OFF): prints "skipped: CUDA backend not built".
 * Built but no GPU: runs what works without one (the probe reports no GPU with a
 * clear message, contexts refuse, the check macros format their messages, NCCL
 * reports its version), then prints "skipped: no GPU (<reason>)" and exits 0.
 * With a GPU: every kernel and the GEMM against backend/cpu.h on random data with
 * odd sizes and padded leading dimensions.
 *
 * Tolerance: relative error max|gpu - cpu| / max|cpu| <= 1e-5. Both sides compute
 * in f32; what differs is summation order (GEMM over k, the row reductions of
 * rmsnorm and softmax) and CUDA's expf (<= 2 ulp) against glibc's, which stay
 * around 1e-6 of the largest value at these sizes. A wrong index, transpose or
 * mask moves results by O(1). TF32 GEMM rounds each input to 10 mantissa bits
 * (2^-11 ~ 5e-4 per product), so it is held to 1e-2.
 */
#include "tp_test.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef TP_HAVE_CUDA

int main(void)
{
    printf("skipped: CUDA backend not built\n");
    return EXIT_SUCCESS;
}

#else

#include "backend/cpu.h"
#include "backend/cuda.h"
#include "core/dtype.h"
#include "cuda_common.cuh"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define REL_TOL 1e-5
#define REL_TOL_TF32 1e-2

static int have_gpu;
static int n_gpus;
static cuda_ctx *ctx;

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng_next(void) /* splitmix64: deterministic, so failures reproduce */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float *rand_f32(size_t n, float lo, float hi)
{
    float *a = malloc(n * sizeof *a);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n; i++)
        a[i] = lo + (hi - lo) * (float)((double)(rng_next() >> 40) / (double)(1ull << 24));
    return a;
}

static float *copy_f32(const float *a, size_t n)
{
    float *b = malloc(n * sizeof *b);
    ck_assert_ptr_nonnull(b);
    memcpy(b, a, n * sizeof *b);
    return b;
}

static double rel_err(const float *a, const float *ref, size_t n)
{
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d; /* NaN propagates as a failure */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

#define OK(call) ck_assert_msg((call) == TP_OK, "%s: %s", #call, tp_err_msg())

static void *dev_from(const void *host, size_t bytes)
{
    void *d = NULL;
    OK(cuda_alloc(ctx, bytes, &d));
    OK(cuda_upload(ctx, d, host, bytes));
    return d;
}

static void dev_to(void *host, void *dev, size_t bytes)
{
    OK(cuda_sync(ctx));
    OK(cuda_download(ctx, host, dev, bytes));
    OK(cuda_free(ctx, dev));
}

/* ---- without a GPU ------------------------------------------------------------ */

START_TEST(test_probe)
{
    int n = -1;
    char name[256];
    tp_status s = cuda_probe(&n, name, sizeof name);
    if (have_gpu) {
        ck_assert_int_eq(s, TP_OK);
        ck_assert_int_ge(n, 1);
        ck_assert(name[0] != '\0');
    } else {
        ck_assert_int_eq(s, TP_ERR_NO_DEVICE);
        ck_assert_int_eq(n, 0);
        ck_assert_msg(strncmp(tp_err_msg(), "no GPU: ", 8) == 0, "message: %s", tp_err_msg());
        ck_assert_msg(strstr(tp_err_msg(), "cudaGetDeviceCount"), "message: %s", tp_err_msg());
    }
    /* name may be NULL */
    ck_assert_int_eq(cuda_probe(&n, NULL, 0), s);
}
END_TEST

START_TEST(test_ctx_refused)
{
    cuda_ctx *c = (cuda_ctx *)&c; /* must come back NULL */
    if (have_gpu) {
        ck_assert_int_eq(cuda_ctx_new(-1, &c), TP_ERR_RANGE);
        ck_assert_ptr_null(c);
        ck_assert_int_eq(cuda_ctx_new(n_gpus, &c), TP_ERR_RANGE);
        ck_assert_msg(strstr(tp_err_msg(), "out of range"), "message: %s", tp_err_msg());
    } else {
        ck_assert_int_eq(cuda_ctx_new(0, &c), TP_ERR_NO_DEVICE);
        ck_assert_msg(strncmp(tp_err_msg(), "no GPU: ", 8) == 0, "message: %s", tp_err_msg());
    }
    ck_assert_ptr_null(c);
    ck_assert_int_eq(cuda_ctx_free(NULL), TP_OK);
}
END_TEST

static tp_status bad_set_device(void)
{
    CUDA_CHECK(cudaSetDevice(4096));
    return TP_OK;
}

static cublasStatus_t fake_cublas_failure(void) { return CUBLAS_STATUS_INVALID_VALUE; }

static tp_status bad_cublas(void)
{
    CUBLAS_CHECK(fake_cublas_failure());
    return TP_OK;
}

START_TEST(test_check_macros)
{
    /* The message names the call, the library's error string and file:line. */
    tp_status s = bad_set_device();
    ck_assert_int_eq(s, have_gpu ? TP_ERR_CUDA : TP_ERR_NO_DEVICE);
    ck_assert_msg(strstr(tp_err_msg(), "cudaSetDevice(4096): "), "message: %s", tp_err_msg());
    ck_assert_msg(strstr(tp_err_msg(), "test_cuda.c:"), "message: %s", tp_err_msg());
    (void)cudaGetLastError();

    ck_assert_int_eq(bad_cublas(), TP_ERR_CUDA);
    ck_assert_msg(strstr(tp_err_msg(), "fake_cublas_failure(): "), "message: %s", tp_err_msg());
    ck_assert_msg(strstr(tp_err_msg(), "CUBLAS_STATUS_INVALID_VALUE"), "message: %s", tp_err_msg());
    ck_assert_msg(strstr(tp_err_msg(), "test_cuda.c:"), "message: %s", tp_err_msg());
}
END_TEST

START_TEST(test_nccl_version)
{
    int v = -1;
#ifdef TP_HAVE_NCCL
    OK(cuda_nccl_version(&v));
    /* NCCL >= 2.9 encodes major*10000 + minor*100 + patch */
    ck_assert_int_ge(v, 20900);
    ck_assert_int_lt(v, 100000);
#else
    ck_assert_int_eq(cuda_nccl_version(&v), TP_ERR_UNSUPPORTED);
    ck_assert_int_eq(v, 0);
#endif
}
END_TEST

/* ---- on a GPU ------------------------------------------------------------------ */

static void ctx_setup(void)
{
    tp_status s = cuda_ctx_new(0, &ctx);
    if (s != TP_OK) {
        fprintf(stderr, "cuda_ctx_new: %s\n", tp_err_msg());
        exit(EXIT_FAILURE);
    }
}

static void ctx_teardown(void)
{
    if (cuda_ctx_free(ctx) != TP_OK) fprintf(stderr, "cuda_ctx_free: %s\n", tp_err_msg());
    ctx = NULL;
}

static double gemm_nt_err(int64_t m, int64_t n, int64_t k, float alpha, float beta)
{
    /* Padded leading dimensions: the padding must come back untouched. */
    int64_t lda = k + 3, ldb = k + 5, ldc = n + 2;
    size_t na = (size_t)(m * lda), nb = (size_t)(n * ldb), nc = (size_t)(m * ldc);
    float *A = rand_f32(na, -1, 1), *B = rand_f32(nb, -1, 1), *C = rand_f32(nc, -1, 1);
    float *ref = copy_f32(C, nc), *got = malloc(nc * sizeof *got);
    ck_assert_ptr_nonnull(got);
    cpu_gemm_nt(m, n, k, alpha, A, lda, B, ldb, beta, ref, ldc);
    float *dA = dev_from(A, na * sizeof *A), *dB = dev_from(B, nb * sizeof *B);
    float *dC = dev_from(C, nc * sizeof *C);
    OK(cuda_gemm_nt(ctx, m, n, k, alpha, dA, lda, dB, ldb, beta, dC, ldc));
    dev_to(got, dC, nc * sizeof *got);
    OK(cuda_free(ctx, dA));
    OK(cuda_free(ctx, dB));
    double e = rel_err(got, ref, nc);
    free(A), free(B), free(C), free(ref), free(got);
    return e;
}

START_TEST(test_gemm_nt)
{
    double e = gemm_nt_err(37, 129, 71, 0.7f, 0.3f);
    ck_assert_msg(e <= REL_TOL, "rel err %g", e);
    e = gemm_nt_err(1, 1, 1, 1.0f, 0.0f);
    ck_assert_msg(e <= REL_TOL, "1x1x1: rel err %g", e);
    e = gemm_nt_err(129, 37, 255, 1.0f, 1.0f);
    ck_assert_msg(e <= REL_TOL, "129x37x255: rel err %g", e);
}
END_TEST

START_TEST(test_gemm_nt_tf32)
{
    OK(cuda_ctx_set_tf32(ctx, 1));
    double e = gemm_nt_err(37, 129, 71, 0.7f, 0.3f);
    OK(cuda_ctx_set_tf32(ctx, 0));
    ck_assert_msg(e <= REL_TOL_TF32, "rel err %g", e);
}
END_TEST

START_TEST(test_gemm_nt_bad_sizes)
{
    float *p = (float *)16; /* never dereferenced: refused before any launch */
    ck_assert_int_eq(cuda_gemm_nt(ctx, 4, 4, 8, 1, p, 7, p, 8, 0, p, 4), TP_ERR_RANGE);
    ck_assert_int_eq(cuda_gemm_nt(ctx, 4, 4, 8, 1, p, 8, p, 8, 0, p, 3), TP_ERR_RANGE);
    ck_assert_int_eq(cuda_gemm_nt(ctx, (int64_t)1 << 31, 4, 8, 1, p, 8, p, 8, 0, p, 4),
                     TP_ERR_RANGE);
    OK(cuda_gemm_nt(ctx, 0, 4, 8, 1, p, 8, p, 8, 0, p, 4));
}
END_TEST

static void check_rmsnorm(int in_place)
{
    int64_t rows = 37, d = 129;
    size_t n = (size_t)(rows * d);
    float *x = rand_f32(n, -2, 2), *w = rand_f32((size_t)d, 0.5f, 1.5f);
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    ck_assert(ref && got);
    cpu_rmsnorm(ref, x, w, rows, d, 1e-6f);
    float *dx = dev_from(x, n * sizeof *x), *dw = dev_from(w, (size_t)d * sizeof *w), *dout = dx;
    if (!in_place) OK(cuda_alloc(ctx, n * sizeof *got, (void **)&dout));
    OK(cuda_rmsnorm(ctx, dout, dx, dw, rows, d, 1e-6f));
    dev_to(got, dout, n * sizeof *got);
    if (!in_place) OK(cuda_free(ctx, dx));
    OK(cuda_free(ctx, dw));
    double e = rel_err(got, ref, n);
    ck_assert_msg(e <= REL_TOL, "%s: rel err %g", in_place ? "in place" : "out of place", e);
    free(x), free(w), free(ref), free(got);
}

START_TEST(test_rmsnorm)
{
    check_rmsnorm(0);
    check_rmsnorm(1);
    ck_assert_int_eq(cuda_rmsnorm(ctx, NULL, NULL, NULL, 4, 0, 1e-6f), TP_ERR_RANGE);
}
END_TEST

START_TEST(test_silu_mul_add)
{
    size_t n = 37 * 129;
    float *g = rand_f32(n, -6, 6), *u = rand_f32(n, -1, 1);
    float *ref = copy_f32(g, n), *got = malloc(n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    cpu_silu_mul(ref, u, n);
    float *dg = dev_from(g, n * sizeof *g), *du = dev_from(u, n * sizeof *u);
    OK(cuda_silu_mul(ctx, dg, du, n));
    OK(cuda_sync(ctx));
    OK(cuda_download(ctx, got, dg, n * sizeof *got));
    double e = rel_err(got, ref, n);
    ck_assert_msg(e <= REL_TOL, "silu_mul: rel err %g", e);

    cpu_add(ref, u, n);
    OK(cuda_add(ctx, dg, du, n));
    dev_to(got, dg, n * sizeof *got);
    OK(cuda_free(ctx, du));
    e = rel_err(got, ref, n);
    ck_assert_msg(e <= REL_TOL, "add: rel err %g", e);
    free(g), free(u), free(ref), free(got);
}
END_TEST

START_TEST(test_softmax_causal)
{
    /* ld > T: the columns past T are not the kernel's and must come back unchanged. */
    int64_t T = 37, ld = 41;
    size_t n = (size_t)(T * ld);
    float scale = 1.0f / sqrtf(64.0f);
    float *s = rand_f32(n, -20, 20);
    float *ref = copy_f32(s, n), *got = malloc(n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    cpu_softmax_causal(ref, T, ld, scale);
    float *ds = dev_from(s, n * sizeof *s);
    OK(cuda_softmax_causal(ctx, ds, T, ld, scale));
    dev_to(got, ds, n * sizeof *got);
    for (int64_t i = 0; i < T; i++) {
        double e = rel_err(got + i * ld, ref + i * ld, (size_t)T);
        ck_assert_msg(e <= REL_TOL, "row %lld: rel err %g", (long long)i, e);
        for (int64_t j = i + 1; j < T; j++) ck_assert(got[i * ld + j] == 0.0f);
        ck_assert(memcmp(got + i * ld + T, s + i * ld + T, (size_t)(ld - T) * sizeof *s) == 0);
    }
    ck_assert_int_eq(cuda_softmax_causal(ctx, NULL, 8, 7, 1.0f), TP_ERR_RANGE);
    free(s), free(ref), free(got);
}
END_TEST

/* The CPU RoPE lives inside model/forward.c (apply_rope, not exported): this is
 * the same loop, rotate_half convention, row r at position r % T. */
static void ref_rope(float *x, int64_t rows, int64_t T, int nh, int dh, const float *cs,
                     const float *sn)
{
    int half = dh / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cs + (size_t)(r % T) * half, *s = sn + (size_t)(r % T) * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)r * nh * dh + (size_t)h * dh;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * c[i] - b * s[i];
                v[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

START_TEST(test_rope)
{
    int64_t B = 2, T = 37, rows = B * T;
    int nh = 3, dh = 66, half = dh / 2;
    size_t n = (size_t)rows * nh * dh, nt = (size_t)T * half;
    float *x = rand_f32(n, -1, 1), *ang = rand_f32(nt, -3.2f, 3.2f);
    float *cs = malloc(nt * sizeof *cs), *sn = malloc(nt * sizeof *sn);
    ck_assert(cs && sn);
    for (size_t i = 0; i < nt; i++) cs[i] = cosf(ang[i]), sn[i] = sinf(ang[i]);
    float *ref = copy_f32(x, n), *got = malloc(n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    ref_rope(ref, rows, T, nh, dh, cs, sn);
    float *dx = dev_from(x, n * sizeof *x);
    float *dcs = dev_from(cs, nt * sizeof *cs), *dsn = dev_from(sn, nt * sizeof *sn);
    OK(cuda_rope(ctx, dx, rows, T, nh, dh, dcs, dsn));
    dev_to(got, dx, n * sizeof *got);
    OK(cuda_free(ctx, dcs));
    OK(cuda_free(ctx, dsn));
    double e = rel_err(got, ref, n);
    ck_assert_msg(e <= REL_TOL, "rel err %g", e);
    ck_assert_int_eq(cuda_rope(ctx, NULL, rows, T, nh, 65, NULL, NULL), TP_ERR_RANGE);
    free(x), free(ang), free(cs), free(sn), free(ref), free(got);
}
END_TEST

START_TEST(test_bf16_to_f32)
{
    /* Every bit pattern, NaNs and subnormals included: widening is exact, so the
     * result must be bit-identical to the CPU's. */
    size_t n = 65536;
    uint16_t *in = malloc(n * sizeof *in);
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    ck_assert(in && ref && got);
    for (size_t i = 0; i < n; i++) in[i] = (uint16_t)i, ref[i] = tp_bf16_to_f32((uint16_t)i);
    uint16_t *din = dev_from(in, n * sizeof *in);
    float *dout = NULL;
    OK(cuda_alloc(ctx, n * sizeof *got, (void **)&dout));
    OK(cuda_bf16_to_f32(ctx, dout, din, n));
    dev_to(got, dout, n * sizeof *got);
    OK(cuda_free(ctx, din));
    ck_assert(memcmp(got, ref, n * sizeof *got) == 0);
    free(in), free(ref), free(got);
}
END_TEST

START_TEST(test_buffers)
{
    void *d = (void *)&d;
    OK(cuda_alloc(ctx, 0, &d));
    ck_assert_ptr_null(d);
    OK(cuda_free(ctx, NULL));
    ck_assert_int_eq(cuda_ctx_device(ctx), 0);
    /* A kernel fault surfaces at the next synchronising call, as TP_ERR_CUDA, not
     * silently: not tested (a device fault poisons the whole context). */
}
END_TEST

int main(void)
{
    char reason[1024] = "";
    tp_status s = cuda_probe(&n_gpus, NULL, 0);
    snprintf(reason, sizeof reason, "%s", tp_err_msg());
    have_gpu = s == TP_OK;

    Suite *suite = suite_create("cuda");
    TCase *host = tcase_create("host");
    tcase_add_test(host, test_probe);
    tcase_add_test(host, test_ctx_refused);
    tcase_add_test(host, test_check_macros);
    tcase_add_test(host, test_nccl_version);
    suite_add_tcase(suite, host);
    if (have_gpu) {
        TCase *dev = tcase_create("device");
        tcase_set_timeout(dev, 120);
        tcase_add_unchecked_fixture(dev, ctx_setup, ctx_teardown);
        tcase_add_test(dev, test_buffers);
        tcase_add_test(dev, test_gemm_nt);
        tcase_add_test(dev, test_gemm_nt_tf32);
        tcase_add_test(dev, test_gemm_nt_bad_sizes);
        tcase_add_test(dev, test_rmsnorm);
        tcase_add_test(dev, test_silu_mul_add);
        tcase_add_test(dev, test_softmax_causal);
        tcase_add_test(dev, test_rope);
        tcase_add_test(dev, test_bf16_to_f32);
        suite_add_tcase(suite, dev);
    }

    SRunner *sr = srunner_create(suite);
    /* CUDA does not survive fork() once the parent has initialised it (cuda_probe
     * did), so the tests run in this process. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed) return EXIT_FAILURE;
    if (!have_gpu) {
        if (s != TP_ERR_NO_DEVICE) {
            fprintf(stderr, "cuda_probe: unexpected %s: %s\n", tp_status_name(s), reason);
            return EXIT_FAILURE;
        }
        /* The message already starts "no GPU: "; the skip line says it once. */
        const char *why = strncmp(reason, "no GPU: ", 8) == 0 ? reason + 8 : reason;
        printf("skipped: no GPU (%s)\n", why);
    }
    return EXIT_SUCCESS;
}

#endif
