/* test_cuda.c — the CUDA backend's table (backend/cuda/) against plain C reference
 * loops written here.
 *
 * Not built (no nvcc, or -DTP_CUDA=OFF): prints "skipped: CUDA backend not built".
 * Built but no GPU: runs what works without one (the probe reports no GPU with the
 * driver's message, backend_open("cuda") refuses the same way, the check macros
 * format their messages, NCCL reports its version, the table has every slot filled
 * and a NULL slot (cleared in a copy) fails with "op linear is not available on
 * cuda"), prints "<test>: skipped: no GPU" for every GPU test and then
 * "skipped: no GPU (<reason>)", and exits 0.
 * With a GPU: every filled slot on random data with odd sizes and padded leading
 * dimensions: rmsnorm, silu_mul, add, rope with per-row positions, embed for F32 /
 * BF16 / F16 and its bad-id report, gemm_f32 (all four trans combinations, TF32
 * too), gemm_f64, gemv_f32, syrk_f64, syr_f64, dot / axpy / nrm2 / scal; the two
 * kernels outside the table (softmax, bf16 widening) through kernels/kernels.h;
 * download_async into pinned host memory (host_alloc) on two slots, each copy done
 * before the op queued after it overwrites its source; and the NULL-slot path on a
 * copy of the opened backend. The slots of issue 19 (linear,
 * attention, the backward ops) are compared with the CPU backend in
 * test_cuda_parity.c.
 *
 * Tolerances. f32: relative error max|gpu - ref| / max|ref| <= 1e-5. The GPU sums
 * in f32 (GEMM over k, rmsnorm's row reduction) in another order than the f64
 * references, and CUDA's expf is within 2 ulp of the true value; both stay around
 * 1e-6 of the largest value at these sizes, while a wrong index, transpose or mask
 * moves results by O(1). TF32 rounds each GEMM input to 10 mantissa bits (2^-11 ~
 * 5e-4 per product): 1e-2. f64: 1e-12 (summation order only). Exact, bit for bit:
 * add (one IEEE add), scal (one multiply), embed and bf16 widening (exact
 * conversions, the f16 NaN quietened as tp_f16_to_f32 does), and everything a
 * call must leave alone (padding, the strict lower triangle of syrk / syr).
 */
#include "tp_test.h"
#include "tp_test_cuda.h"

#include <stdio.h>
#include <stdlib.h>

#ifndef TP_HAVE_CUDA

int main(void)
{
    printf("skipped: CUDA backend not built\n");
    return EXIT_SUCCESS;
}

#else

#include "backend/backend.h"
#include "backend/cuda/cuda.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_check.h"
#include "core/dtype.h"
// defines: kern_softmax_causal, kern_bf16_to_f32 (kernels not in the table yet)
#include "kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define REL_TOL 1e-5
#define REL_TOL_TF32 1e-2
#define REL_TOL_F64 1e-12

static int have_gpu;
static int n_gpus;
static tp_backend *be;

/* splitmix64 (tests/support): deterministic, so failures reproduce */
static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint64_t rng_next(void) { return tp_test_rng_next(&rng_state); }
static double rng_unit(void) { return (double)(rng_next() >> 11) / (double)(1ull << 53); }
static float *rand_f32(size_t n, float lo, float hi) { return tp_test_rand_f32(&rng_state, n, lo, hi); }

static double *rand_f64(size_t n, double lo, double hi)
{
    double *a = malloc(n * sizeof *a);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng_unit();
    return a;
}

static void *copy_of(const void *a, size_t bytes)
{
    void *b = malloc(bytes);
    ck_assert_ptr_nonnull(b);
    memcpy(b, a, bytes);
    return b;
}

#define OK TP_ASSERT_OK

/* A device copy of n bytes of host memory (tests/support). */
static void *dev_from(const void *host, size_t bytes) { return tp_test_on_device(be, host, bytes); }

/* Downloads (which waits for the queued work and reports its failure), then frees. */
static void dev_to(void *host, void *dev, size_t bytes)
{
    OK(be_download(be, host, dev, bytes));
    be_free(be, dev);
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
        TP_ASSERT_ERR_HAS("cudaGetDeviceCount");
    }
    /* name may be NULL */
    ck_assert_int_eq(cuda_probe(&n, NULL, 0), s);
}
END_TEST

START_TEST(test_open_refused)
{
    tp_backend *b = (tp_backend *)&b; /* must come back NULL */
    tp_backend_options opt = {.device = 0};
    if (have_gpu) {
        opt.device = -1;
        ck_assert_int_eq(backend_open("cuda", &opt, &b), TP_ERR_RANGE);
        ck_assert_ptr_null(b);
        opt.device = n_gpus;
        ck_assert_int_eq(backend_cuda_open(&opt, &b), TP_ERR_RANGE);
        TP_ASSERT_ERR_HAS("out of range");
    } else {
        ck_assert_int_eq(backend_open("cuda", &opt, &b), TP_ERR_NO_DEVICE);
        ck_assert_msg(strncmp(tp_err_msg(), "no GPU: ", 8) == 0, "message: %s", tp_err_msg());
        ck_assert_ptr_null(b);
        b = (tp_backend *)&b;
        ck_assert_int_eq(backend_cuda_open(&opt, &b), TP_ERR_NO_DEVICE);
    }
    ck_assert_ptr_null(b);
    backend_cuda_close(NULL);
    backend_close(NULL);
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
    TP_ASSERT_ERR_HAS("cudaSetDevice(4096): ");
    ck_assert_msg(strstr(tp_err_where(), "test_cuda.c:"), "raised at: %s", tp_err_where());
    (void)cudaGetLastError();

    ck_assert_int_eq(bad_cublas(), TP_ERR_CUDA);
    TP_ASSERT_ERR_HAS("fake_cublas_failure(): ");
    TP_ASSERT_ERR_HAS("CUBLAS_STATUS_INVALID_VALUE");
    ck_assert_msg(strstr(tp_err_where(), "test_cuda.c:"), "raised at: %s", tp_err_where());
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

/* The CUDA backend fills every slot (issue 19); their parity with the CPU backend is
 * tests/unit/test_cuda_parity.c. */
#define FILLED_SLOTS(X)                                                                                    \
    X(alloc) X(free) X(upload) X(download) X(copy) X(sync) X(info) X(rmsnorm) X(rope) X(silu_mul) X(add) X(embed) \
    X(gemm_f32) X(gemm_f64) X(gemv_f32) X(syrk_f64) X(syr_f64) X(dot_f64) X(axpy_f64) X(nrm2_f64)         \
    X(scal_f64) X(linear) X(linear_bwd) X(rmsnorm_bwd) X(rope_bwd) X(attention) X(attention_bwd)         \
    X(silu_mul_bwd) X(embed_bwd) X(prefetch) X(prefetch_wait) X(host_alloc) X(host_free) X(download_async)  \
    X(wait) X(sae_encode_in) X(sae_topk) X(sae_decode) X(sae_sparse_bwd) X(sae_adam) X(sae_relu)          \
    X(sae_residual) X(sae_relu_bwd_init) X(sae_relu_bwd_pre)
#define NULL_SLOTS(X) X(syrk_f32)

/* The message, less its " (file:line)" suffix, is `want`. */
static void check_msg(const char *want)
{
    const char *got = tp_err_msg();
    size_t n = strlen(want);
    ck_assert_msg(strncmp(got, want, n) == 0 && (got[n] == '\0' || strncmp(got + n, " (", 2) == 0),
                  "message: '%s', want '%s'", got, want);
}

/* NULL slots fail through the be_<slot> wrappers, before touching any argument: b's
 * table with those slots cleared (the CUDA table has none left). */
static void check_null_slots(const tp_backend *full)
{
    tp_backend copy = *full, *b = &copy;
    b->iface.linear = NULL, b->iface.attention = NULL, b->iface.rmsnorm_bwd = NULL, b->iface.embed_bwd = NULL;
    tp_linear_out out = {0};
    ck_assert_int_eq(be_linear(b, 1, 1, NULL, 1, &out, 1), TP_ERR_UNSUPPORTED);
    check_msg("op linear is not available on cuda");
    tp_attn_shape shape = {0};
    tp_attn_seq seq = {0};
    ck_assert_int_eq(be_attention(b, &shape, &seq, 1, TP_ATTN_FUSED), TP_ERR_UNSUPPORTED);
    check_msg("op attention is not available on cuda");
    ck_assert_int_eq(be_rmsnorm_bwd(b, NULL, NULL, NULL, NULL, NULL, 1, 1, 1e-6f), TP_ERR_UNSUPPORTED);
    check_msg("op rmsnorm_bwd is not available on cuda");
    ck_assert_int_eq(be_embed_bwd(b, NULL, NULL, 1, 1, NULL, 1), TP_ERR_UNSUPPORTED);
    check_msg("op embed_bwd is not available on cuda");
}

START_TEST(test_table)
{
    const tp_backend_i *t = backend_cuda_table();
    ck_assert_ptr_nonnull(t);
#define IS_FILLED(slot) ck_assert_msg(t->slot != NULL, "slot %s should be filled", #slot);
    FILLED_SLOTS(IS_FILLED)
#undef IS_FILLED
    /* PCA's f32 Gram runs on the CPU backend: no kernel for it */
#define IS_NULL(slot) ck_assert_msg(t->slot == NULL, "slot %s has no CUDA kernel", #slot);
    NULL_SLOTS(IS_NULL)
#undef IS_NULL
    /* A backend with no context: only the NULL-slot path may run. */
    tp_backend fake = {.name = "cuda", .host_memory = false, .iface = *t, .context = NULL};
    check_null_slots(&fake);
}
END_TEST

/* ---- on a GPU ------------------------------------------------------------------ */

static void be_setup(void)
{
    tp_backend_options opt = {.device = 0};
    if (backend_open("cuda", &opt, &be) != TP_OK) {
        fprintf(stderr, "backend_open(cuda): %s\n", tp_err_msg());
        exit(EXIT_FAILURE);
    }
}

static void be_teardown(void)
{
    if (be_sync(be) != TP_OK) fprintf(stderr, "be_sync: %s\n", tp_err_msg());
    backend_close(be);
    be = NULL;
}

START_TEST(test_buffers)
{
    ck_assert_str_eq(be->name, "cuda");
    ck_assert(!be->host_memory);
    tp_backend_info info;
    be_info(be, &info);
    ck_assert_str_eq(info.name, "cuda");
    ck_assert_str_eq(info.linear_gemm, "cublas");
    ck_assert(info.device[0] != '\0');
    ck_assert_msg(strncmp(info.kernels, "sm_", 3) == 0, "kernels: %s", info.kernels);

    void *d = (void *)&d;
    OK(be_alloc(be, 0, &d));
    ck_assert_ptr_null(d);
    be_free(be, NULL);

    /* Round trip; the download waits for the upload and leaves the rest alone. */
    size_t n = 1000;
    float *x = rand_f32(n, -1, 1), *got = calloc(n + 1, sizeof *got);
    ck_assert_ptr_nonnull(got);
    got[n] = 42.0f;
    float *dx = dev_from(x, n * sizeof *x);
    OK(be_sync(be));
    dev_to(got, dx, n * sizeof *got);
    ck_assert(memcmp(got, x, n * sizeof *x) == 0);
    ck_assert(got[n] == 42.0f);

    /* Device to device: a copy of the middle, ordered after the upload. */
    float *dy = NULL;
    OK(be_alloc(be, n * sizeof *x, (void **)&dy));
    OK(be_copy(be, dy, dx + 100, (n - 100) * sizeof *x));
    memset(got, 0, n * sizeof *got);
    dev_to(got, dy, (n - 100) * sizeof *got);
    ck_assert(memcmp(got, x + 100, (n - 100) * sizeof *x) == 0);
    be_free(be, dy);

    /* No GPU has 2^62 bytes: out of memory is TP_ERR_NOMEM naming the size. */
    d = (void *)&d;
    ck_assert_int_eq(be_alloc(be, (size_t)1 << 62, &d), TP_ERR_NOMEM);
    ck_assert_ptr_null(d);
    TP_ASSERT_ERR_HAS("out of GPU memory");
    OK(be_sync(be));
    free(x), free(got);
}
END_TEST

/* Capture's double buffering: download_async into pinned memory returns at once and
 * is ordered before the ops queued after it, so an op that overwrites the source
 * right away does not reach the copy; a slot's wait covers its copies only. */
START_TEST(test_download_async)
{
    void *h = (void *)&h;
    OK(be_host_alloc(be, 0, &h));
    ck_assert_ptr_null(h);
    size_t n = 1 << 20;
    float *pinned[2] = {NULL, NULL};
    for (int s = 0; s < 2; s++) OK(be_host_alloc(be, n * sizeof(float), (void **)&pinned[s]));
    float *x = rand_f32(n, -1, 1), *ones = malloc(n * sizeof *ones);
    ck_assert_ptr_nonnull(ones);
    for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
    float *dx = dev_from(x, n * sizeof *x), *d1 = dev_from(ones, n * sizeof *ones);
    OK(be_wait(be, 1));   /* never used: returns */
    for (int round = 0; round < 3; round++) {
        int s = round % 2;
        OK(be_download_async(be, pinned[s], dx, n * sizeof *x, s));
        OK(be_add(be, dx, d1, n));   /* overwrites the source, queued after the copy */
        OK(be_wait(be, s));
        for (size_t i = 0; i < n; i++) ck_assert_float_eq(pinned[s][i], x[i] + (float)round);
        for (size_t i = 0; i < n; i++) x[i] += 1.0f;   /* what dx holds now, the CPU's rounding */
    }
    ck_assert_int_eq(be_download_async(be, pinned[0], dx, n * sizeof *x, 2), TP_ERR_RANGE);
    ck_assert_int_eq(be_wait(be, -1), TP_ERR_RANGE);
    OK(be_sync(be));
    for (int s = 0; s < 2; s++) be_host_free(be, pinned[s]);
    be_host_free(be, NULL);
    be_free(be, dx), be_free(be, d1);
    free(x), free(ones);
}
END_TEST

START_TEST(test_null_slots)
{
    check_null_slots(be);
}
END_TEST

static void ref_rmsnorm(float *out, const float *x, const float *w, int64_t rows, int64_t d, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0;
        for (int64_t i = 0; i < d; i++) ss += (double)x[r * d + i] * x[r * d + i];
        double inv = 1.0 / sqrt(ss / (double)d + eps);
        for (int64_t i = 0; i < d; i++) out[r * d + i] = (float)(w[i] * (x[r * d + i] * inv));
    }
}

static void check_rmsnorm(int in_place)
{
    int64_t rows = 37, d = 129;
    size_t n = (size_t)(rows * d);
    float *x = rand_f32(n, -2, 2), *w = rand_f32((size_t)d, 0.5f, 1.5f);
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    ck_assert(ref && got);
    ref_rmsnorm(ref, x, w, rows, d, 1e-6f);
    float *dx = dev_from(x, n * sizeof *x), *dw = dev_from(w, (size_t)d * sizeof *w), *dout = dx;
    if (!in_place) OK(be_alloc(be, n * sizeof *got, (void **)&dout));
    OK(be_rmsnorm(be, dout, dx, dw, rows, d, 1e-6f));
    dev_to(got, dout, n * sizeof *got);
    if (!in_place) be_free(be, dx);
    be_free(be, dw);
    double e = tp_test_rel_err(got, ref, n);
    ck_assert_msg(e <= REL_TOL, "%s: rel err %g", in_place ? "in place" : "out of place", e);
    free(x), free(w), free(ref), free(got);
}

START_TEST(test_rmsnorm)
{
    check_rmsnorm(0);
    check_rmsnorm(1);
    ck_assert_int_eq(be_rmsnorm(be, NULL, NULL, NULL, 4, 0, 1e-6f), TP_ERR_RANGE);
    ck_assert_int_eq(be_rmsnorm(be, NULL, NULL, NULL, (int64_t)1 << 31, 8, 1e-6f), TP_ERR_RANGE);
    OK(be_rmsnorm(be, NULL, NULL, NULL, 0, 8, 1e-6f));
}
END_TEST

START_TEST(test_silu_mul_add)
{
    size_t n = 37 * 129;
    float *g = rand_f32(n, -6, 6), *u = rand_f32(n, -1, 1);
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    ck_assert(ref && got);
    for (size_t i = 0; i < n; i++) ref[i] = (float)(g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    float *dg = dev_from(g, n * sizeof *g), *du = dev_from(u, n * sizeof *u);
    OK(be_silu_mul(be, dg, du, n));
    OK(be_download(be, got, dg, n * sizeof *got));
    double e = tp_test_rel_err(got, ref, n);
    ck_assert_msg(e <= REL_TOL, "silu_mul: rel err %g", e);

    /* add is one IEEE f32 add per element: the same bits as the host's. */
    for (size_t i = 0; i < n; i++) ref[i] = got[i] + u[i];
    OK(be_add(be, dg, du, n));
    dev_to(got, dg, n * sizeof *got);
    be_free(be, du);
    ck_assert(memcmp(got, ref, n * sizeof *got) == 0);
    OK(be_silu_mul(be, NULL, NULL, 0));
    OK(be_add(be, NULL, NULL, 0));
    free(g), free(u), free(ref), free(got);
}
END_TEST

/* rotate_half convention, row r at position pos[r]. */
static void ref_rope(float *x, int64_t rows, int nh, int dh, const int32_t *pos, const float *cs,
                     const float *sn)
{
    int half = dh / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cs + (size_t)pos[r] * half, *s = sn + (size_t)pos[r] * half;
        for (int h = 0; h < nh; h++) {
            float *v = x + (size_t)r * nh * dh + (size_t)h * dh;
            for (int i = 0; i < half; i++) {
                double a = v[i], b = v[i + half];
                v[i] = (float)(a * c[i] - b * s[i]);
                v[i + half] = (float)(b * c[i] + a * s[i]);
            }
        }
    }
}

START_TEST(test_rope)
{
    /* Two sequences in one call: 37 rows at positions 0..36, then a continuation of 16
     * rows at positions 20..35 (a decode step at offset 20), so position != row. */
    int64_t rows = 37 + 16, max_pos = 64;
    int nh = 3, dh = 66, half = dh / 2;
    int32_t *pos = malloc((size_t)rows * sizeof *pos);
    ck_assert_ptr_nonnull(pos);
    for (int64_t r = 0; r < rows; r++) pos[r] = (int32_t)(r < 37 ? r : 20 + (r - 37));
    size_t n = (size_t)rows * nh * dh, nt = (size_t)max_pos * half;
    float *x = rand_f32(n, -1, 1), *ang = rand_f32(nt, -3.2f, 3.2f);
    float *cs = malloc(nt * sizeof *cs), *sn = malloc(nt * sizeof *sn);
    ck_assert(cs && sn);
    for (size_t i = 0; i < nt; i++) cs[i] = cosf(ang[i]), sn[i] = sinf(ang[i]);
    float *ref = copy_of(x, n * sizeof *x), *got = malloc(n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    ref_rope(ref, rows, nh, dh, pos, cs, sn);
    float *dx = dev_from(x, n * sizeof *x);
    float *dcs = dev_from(cs, nt * sizeof *cs), *dsn = dev_from(sn, nt * sizeof *sn);
    int32_t *dpos = dev_from(pos, (size_t)rows * sizeof *pos);
    OK(be_rope(be, dx, rows, nh, dh, dpos, dcs, dsn));
    dev_to(got, dx, n * sizeof *got);
    be_free(be, dcs);
    be_free(be, dsn);
    be_free(be, dpos);
    double e = tp_test_rel_err(got, ref, n);
    ck_assert_msg(e <= REL_TOL, "rel err %g", e);
    ck_assert_int_eq(be_rope(be, NULL, rows, nh, 65, NULL, NULL, NULL), TP_ERR_RANGE);
    ck_assert_int_eq(be_rope(be, NULL, rows, 0, dh, NULL, NULL, NULL), TP_ERR_RANGE);
    OK(be_rope(be, NULL, 0, nh, dh, NULL, NULL, NULL));
    free(pos), free(x), free(ang), free(cs), free(sn), free(ref), free(got);
}
END_TEST

/* vocab x d = 65536 elements: for BF16 and F16 the table holds every bit pattern
 * (NaNs, Infs, subnormals), and every row is read by some id. */
static void check_embed(tp_dtype dt)
{
    int64_t vocab = 1024, d = 64, rows = 1024 + 77;
    size_t nt = (size_t)(vocab * d), esz = tp_dtype_size(dt);
    void *table = malloc(nt * esz);
    int32_t *ids = malloc((size_t)rows * sizeof *ids);
    float *ref = malloc((size_t)(rows * d) * sizeof *ref), *got = malloc((size_t)(rows * d) * sizeof *got);
    ck_assert(table && ids && ref && got);
    for (size_t i = 0; i < nt; i++) {
        if (dt == TP_DTYPE_F32)
            ((float *)table)[i] = (float)(rng_unit() * 4 - 2);
        else
            ((uint16_t *)table)[i] = (uint16_t)i;
    }
    for (int64_t r = 0; r < rows; r++)
        ids[r] = (int32_t)(r < vocab ? vocab - 1 - r : (int64_t)(rng_next() % (uint64_t)vocab));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < d; j++) {
            size_t t = (size_t)ids[r] * (size_t)d + (size_t)j;
            float v = dt == TP_DTYPE_F32    ? ((float *)table)[t]
                      : dt == TP_DTYPE_BF16 ? tp_bf16_to_f32(((uint16_t *)table)[t])
                                            : tp_f16_to_f32(((uint16_t *)table)[t]);
            ref[r * d + j] = v;
        }
    void *dtab = dev_from(table, nt * esz);
    int32_t *dids = dev_from(ids, (size_t)rows * sizeof *ids);
    float *dout = NULL;
    OK(be_alloc(be, (size_t)(rows * d) * sizeof *got, (void **)&dout));
    OK(be_embed(be, dout, dtab, dt, vocab, d, dids, rows));
    OK(be_download(be, got, dout, (size_t)(rows * d) * sizeof *got));
    ck_assert_msg(memcmp(got, ref, (size_t)(rows * d) * sizeof *got) == 0, "%s: not bit-identical",
                  tp_dtype_name(dt));

    /* Bad ids: TP_ERR_RANGE naming the first bad row and its id; the good rows are
     * still written, the bad ones zeroed. */
    ids[9] = (int32_t)vocab;
    ids[5] = -1;
    OK(be_upload(be, dids, ids, (size_t)rows * sizeof *ids));
    ck_assert_int_eq(be_embed(be, dout, dtab, dt, vocab, d, dids, rows), TP_ERR_RANGE);
    TP_ASSERT_ERR_HAS("token id -1 at row 5 ");
    OK(be_download(be, got, dout, (size_t)(rows * d) * sizeof *got));
    for (int64_t j = 0; j < d; j++) ck_assert(got[5 * d + j] == 0.0f && got[9 * d + j] == 0.0f);
    ck_assert(memcmp(got + 10 * d, ref + 10 * d, (size_t)((rows - 10) * d) * sizeof *got) == 0);

    be_free(be, dtab);
    be_free(be, dids);
    be_free(be, dout);
    free(table), free(ids), free(ref), free(got);
}

START_TEST(test_embed)
{
    check_embed(TP_DTYPE_F32);
    check_embed(TP_DTYPE_BF16);
    check_embed(TP_DTYPE_F16);
    ck_assert_int_eq(be_embed(be, NULL, NULL, TP_DTYPE_F64, 4, 4, NULL, 1), TP_ERR_UNSUPPORTED);
    ck_assert_int_eq(be_embed(be, NULL, NULL, TP_DTYPE_F32, 4, 0, NULL, 1), TP_ERR_RANGE);
    OK(be_embed(be, NULL, NULL, TP_DTYPE_F32, 4, 4, NULL, 0));
}
END_TEST

/* Element (i, j) of op(M), M row-major with leading dimension ld. */
#define OP_AT(M, ld, t, i, j) ((t) == TP_TRANS ? (M)[(size_t)(j) * (ld) + (i)] : (M)[(size_t)(i) * (ld) + (j)])

/* Rows and columns as stored for op(M) of shape [r, c]. */
static int64_t stored_rows(tp_trans t, int64_t r, int64_t c) { return t == TP_TRANS ? c : r; }
static int64_t stored_cols(tp_trans t, int64_t r, int64_t c) { return t == TP_TRANS ? r : c; }

/* gemm_f32 on padded operands against an f64 loop; the padding of C must come back
 * untouched. Returns the relative error. */
static double gemm_f32_err(tp_backend *b, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                           float beta)
{
    int64_t lda = stored_cols(ta, m, k) + 3, ldb = stored_cols(tb, k, n) + 5, ldc = n + 2;
    size_t na = (size_t)(stored_rows(ta, m, k) * lda), nb = (size_t)(stored_rows(tb, k, n) * ldb);
    size_t nc = (size_t)(m * ldc);
    float *A = rand_f32(na, -1, 1), *B = rand_f32(nb, -1, 1), *C = rand_f32(nc, -1, 1);
    float *ref = copy_of(C, nc * sizeof *C), *got = malloc(nc * sizeof *got);
    ck_assert_ptr_nonnull(got);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t l = 0; l < k; l++) s += (double)OP_AT(A, lda, ta, i, l) * OP_AT(B, ldb, tb, l, j);
            ref[i * ldc + j] = (float)(alpha * s + beta * (double)C[i * ldc + j]);
        }
    void *dA = NULL, *dB = NULL, *dC = NULL;
    OK(be_alloc(b, na * sizeof *A, &dA));
    OK(be_alloc(b, nb * sizeof *B, &dB));
    OK(be_alloc(b, nc * sizeof *C, &dC));
    OK(be_upload(b, dA, A, na * sizeof *A));
    OK(be_upload(b, dB, B, nb * sizeof *B));
    OK(be_upload(b, dC, C, nc * sizeof *C));
    OK(be_gemm_f32(b, ta, tb, m, n, k, alpha, dA, lda, dB, ldb, beta, dC, ldc));
    OK(be_download(b, got, dC, nc * sizeof *got));
    be_free(b, dA);
    be_free(b, dB);
    be_free(b, dC);
    for (int64_t i = 0; i < m; i++)
        ck_assert_msg(memcmp(got + i * ldc + n, C + i * ldc + n, (size_t)(ldc - n) * sizeof *C) == 0,
                      "padding of C row %lld changed", (long long)i);
    double e = tp_test_rel_err(got, ref, nc);
    free(A), free(B), free(C), free(ref), free(got);
    return e;
}

static const tp_trans trans_combos[4][2] = {
    {TP_NO_TRANS, TP_NO_TRANS}, {TP_NO_TRANS, TP_TRANS}, {TP_TRANS, TP_NO_TRANS}, {TP_TRANS, TP_TRANS}};

START_TEST(test_gemm_f32)
{
    for (int c = 0; c < 4; c++) {
        tp_trans ta = trans_combos[c][0], tb = trans_combos[c][1];
        double e = gemm_f32_err(be, ta, tb, 37, 129, 71, 0.7f, 0.3f);
        ck_assert_msg(e <= REL_TOL, "ta=%d tb=%d 37x129x71: rel err %g", ta, tb, e);
        e = gemm_f32_err(be, ta, tb, 129, 37, 255, 1.0f, 0.0f);
        ck_assert_msg(e <= REL_TOL, "ta=%d tb=%d 129x37x255: rel err %g", ta, tb, e);
        e = gemm_f32_err(be, ta, tb, 1, 1, 1, 1.0f, 1.0f);
        ck_assert_msg(e <= REL_TOL, "ta=%d tb=%d 1x1x1: rel err %g", ta, tb, e);
    }
    float *p = (float *)16; /* never dereferenced: refused, or nothing to do, before any launch */
    ck_assert_int_eq(be_gemm_f32(be, TP_NO_TRANS, TP_TRANS, 4, 4, 8, 1, p, 7, p, 8, 0, p, 4), TP_ERR_RANGE);
    ck_assert_int_eq(be_gemm_f32(be, TP_NO_TRANS, TP_TRANS, 4, 4, 8, 1, p, 8, p, 8, 0, p, 3), TP_ERR_RANGE);
    ck_assert_int_eq(be_gemm_f32(be, TP_TRANS, TP_NO_TRANS, 5, 4, 8, 1, p, 4, p, 4, 0, p, 4), TP_ERR_RANGE);
    ck_assert_int_eq(be_gemm_f32(be, TP_NO_TRANS, TP_NO_TRANS, -1, 4, 8, 1, p, 8, p, 4, 0, p, 4), TP_ERR_RANGE);
    OK(be_gemm_f32(be, TP_NO_TRANS, TP_TRANS, 0, 4, 8, 1, p, 8, p, 8, 0, p, 4));
}
END_TEST

START_TEST(test_gemm_f32_tf32)
{
    tp_backend *tf = NULL;
    tp_backend_options opt = {.device = 0, .tf32 = true};
    OK(backend_open("cuda", &opt, &tf));
    double e = gemm_f32_err(tf, TP_NO_TRANS, TP_TRANS, 37, 129, 71, 0.7f, 0.3f);
    OK(be_sync(tf));
    backend_close(tf);
    ck_assert_msg(e <= REL_TOL_TF32, "rel err %g", e);
}
END_TEST

START_TEST(test_gemm_f64)
{
    for (int c = 0; c < 4; c++) {
        tp_trans ta = trans_combos[c][0], tb = trans_combos[c][1];
        int64_t m = 37, n = 65, k = 71;
        int64_t lda = stored_cols(ta, m, k) + 1, ldb = stored_cols(tb, k, n) + 2, ldc = n + 3;
        size_t na = (size_t)(stored_rows(ta, m, k) * lda), nb = (size_t)(stored_rows(tb, k, n) * ldb);
        size_t nc = (size_t)(m * ldc);
        double *A = rand_f64(na, -1, 1), *B = rand_f64(nb, -1, 1), *C = rand_f64(nc, -1, 1);
        double *ref = copy_of(C, nc * sizeof *C), *got = malloc(nc * sizeof *got);
        ck_assert_ptr_nonnull(got);
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                long double s = 0;
                for (int64_t l = 0; l < k; l++) s += (long double)OP_AT(A, lda, ta, i, l) * OP_AT(B, ldb, tb, l, j);
                ref[i * ldc + j] = (double)(-0.5L * s + 2.0L * C[i * ldc + j]);
            }
        double *dA = dev_from(A, na * sizeof *A), *dB = dev_from(B, nb * sizeof *B);
        double *dC = dev_from(C, nc * sizeof *C);
        OK(be_gemm_f64(be, ta, tb, m, n, k, -0.5, dA, lda, dB, ldb, 2.0, dC, ldc));
        dev_to(got, dC, nc * sizeof *got);
        be_free(be, dA);
        be_free(be, dB);
        for (int64_t i = 0; i < m; i++)
            ck_assert(memcmp(got + i * ldc + n, C + i * ldc + n, (size_t)(ldc - n) * sizeof *C) == 0);
        double e = tp_test_rel_err_f64(got, ref, nc);
        ck_assert_msg(e <= REL_TOL_F64, "ta=%d tb=%d: rel err %g", ta, tb, e);
        free(A), free(B), free(C), free(ref), free(got);
    }
}
END_TEST

START_TEST(test_gemv_f32)
{
    int64_t m = 37, n = 129, lda = n + 3;
    float *A = rand_f32((size_t)(m * lda), -1, 1);
    float *dA = dev_from(A, (size_t)(m * lda) * sizeof *A);
    for (int t = 0; t < 2; t++) {
        tp_trans ta = t ? TP_TRANS : TP_NO_TRANS;
        int64_t nx = ta == TP_TRANS ? m : n, ny = ta == TP_TRANS ? n : m;
        float *x = rand_f32((size_t)nx, -1, 1), *y = rand_f32((size_t)ny, -1, 1);
        float *ref = malloc((size_t)ny * sizeof *ref), *got = malloc((size_t)ny * sizeof *got);
        ck_assert(ref && got);
        for (int64_t i = 0; i < ny; i++) {
            double s = 0;
            for (int64_t j = 0; j < nx; j++)
                s += (double)(ta == TP_TRANS ? A[j * lda + i] : A[i * lda + j]) * x[j];
            ref[i] = (float)(1.5 * s - 0.25 * y[i]);
        }
        float *dx = dev_from(x, (size_t)nx * sizeof *x), *dy = dev_from(y, (size_t)ny * sizeof *y);
        OK(be_gemv_f32(be, ta, m, n, 1.5f, dA, lda, dx, -0.25f, dy));
        dev_to(got, dy, (size_t)ny * sizeof *got);
        be_free(be, dx);
        double e = tp_test_rel_err(got, ref, (size_t)ny);
        ck_assert_msg(e <= REL_TOL, "ta=%d: rel err %g", ta, e);
        free(x), free(y), free(ref), free(got);
    }
    be_free(be, dA);
    ck_assert_int_eq(be_gemv_f32(be, TP_NO_TRANS, m, n, 1, (float *)16, n - 1, NULL, 0, NULL), TP_ERR_RANGE);
    free(A);
}
END_TEST

/* The strict lower triangle and the padding of a row-major C [n, ldc] must be what
 * they were: syrk and syr write the upper triangle only. */
static void check_upper_only(const double *got, const double *before, int64_t n, int64_t ldc)
{
    for (int64_t i = 0; i < n; i++) {
        ck_assert_msg(memcmp(got + i * ldc, before + i * ldc, (size_t)i * sizeof *got) == 0,
                      "lower triangle of row %lld changed", (long long)i);
        ck_assert_msg(memcmp(got + i * ldc + n, before + i * ldc + n, (size_t)(ldc - n) * sizeof *got) == 0,
                      "padding of row %lld changed", (long long)i);
    }
}

START_TEST(test_syrk_f64)
{
    for (int t = 0; t < 2; t++) {
        tp_trans ta = t ? TP_TRANS : TP_NO_TRANS;
        int64_t n = 45, k = 83, ldc = n + 2;
        /* TRANS: A [k, n] (rows of data, C = AᵀA); NO_TRANS: A [n, k] (C = A·Aᵀ). */
        int64_t ar = ta == TP_TRANS ? k : n, ac = ta == TP_TRANS ? n : k, lda = ac + 3;
        double *A = rand_f64((size_t)(ar * lda), -1, 1), *C = rand_f64((size_t)(n * ldc), -1, 1);
        double *ref = copy_of(C, (size_t)(n * ldc) * sizeof *C), *got = malloc((size_t)(n * ldc) * sizeof *got);
        ck_assert_ptr_nonnull(got);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = i; j < n; j++) {
                long double s = 0;
                for (int64_t l = 0; l < k; l++)
                    s += ta == TP_TRANS ? (long double)A[l * lda + i] * A[l * lda + j]
                                        : (long double)A[i * lda + l] * A[j * lda + l];
                ref[i * ldc + j] = (double)(0.75L * s + 0.5L * C[i * ldc + j]);
            }
        double *dA = dev_from(A, (size_t)(ar * lda) * sizeof *A), *dC = dev_from(C, (size_t)(n * ldc) * sizeof *C);
        OK(be_syrk_f64(be, ta, n, k, 0.75, dA, lda, 0.5, dC, ldc));
        dev_to(got, dC, (size_t)(n * ldc) * sizeof *got);
        be_free(be, dA);
        check_upper_only(got, C, n, ldc);
        double e = tp_test_rel_err_f64(got, ref, (size_t)(n * ldc));
        ck_assert_msg(e <= REL_TOL_F64, "ta=%d: rel err %g", ta, e);
        free(A), free(C), free(ref), free(got);
    }
    ck_assert_int_eq(be_syrk_f64(be, TP_TRANS, 8, 4, 1, (double *)16, 7, 0, (double *)16, 8), TP_ERR_RANGE);
}
END_TEST

START_TEST(test_syr_f64)
{
    int64_t n = 45, lda = n + 2;
    double *x = rand_f64((size_t)n, -1, 1), *A = rand_f64((size_t)(n * lda), -1, 1);
    double *ref = copy_of(A, (size_t)(n * lda) * sizeof *A), *got = malloc((size_t)(n * lda) * sizeof *got);
    ck_assert_ptr_nonnull(got);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i; j < n; j++) ref[i * lda + j] = (double)(A[i * lda + j] + -1.25L * x[i] * x[j]);
    double *dx = dev_from(x, (size_t)n * sizeof *x), *dA = dev_from(A, (size_t)(n * lda) * sizeof *A);
    OK(be_syr_f64(be, n, -1.25, dx, dA, lda));
    dev_to(got, dA, (size_t)(n * lda) * sizeof *got);
    be_free(be, dx);
    check_upper_only(got, A, n, lda);
    double e = tp_test_rel_err_f64(got, ref, (size_t)(n * lda));
    ck_assert_msg(e <= REL_TOL_F64, "rel err %g", e);
    ck_assert_int_eq(be_syr_f64(be, 8, 1, (double *)16, (double *)16, 7), TP_ERR_RANGE);
    free(x), free(A), free(ref), free(got);
}
END_TEST

START_TEST(test_level1_f64)
{
    int64_t n = 1031;
    double *x = rand_f64((size_t)n, -1, 1), *y = rand_f64((size_t)n, -1, 1);
    double *got = malloc((size_t)n * sizeof *got), *ref = malloc((size_t)n * sizeof *ref);
    ck_assert(got && ref);
    double *dx = dev_from(x, (size_t)n * sizeof *x), *dy = dev_from(y, (size_t)n * sizeof *y);
    long double dot = 0, ss = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        dot += (long double)x[i] * y[i];
        mag += fabsl((long double)x[i] * y[i]);
        ss += (long double)x[i] * x[i];
    }

    /* dot and nrm2 write to host memory and wait. */
    double r = NAN;
    OK(be_dot_f64(be, n, dx, dy, &r));
    ck_assert_msg(fabs(r - (double)dot) <= REL_TOL_F64 * (double)mag, "dot %.17g vs %.17Lg", r, dot);
    r = NAN;
    OK(be_nrm2_f64(be, n, dx, &r));
    ck_assert_msg(fabs(r - sqrt((double)ss)) <= REL_TOL_F64 * sqrt((double)ss), "nrm2 %.17g", r);

    /* y += alpha x (cuBLAS may fuse the multiply-add: within an ulp or so) */
    for (int64_t i = 0; i < n; i++) ref[i] = (double)(y[i] + 0.375L * x[i]);
    OK(be_axpy_f64(be, n, 0.375, dx, dy));
    OK(be_download(be, got, dy, (size_t)n * sizeof *got));
    double e = tp_test_rel_err_f64(got, ref, (size_t)n);
    ck_assert_msg(e <= REL_TOL_F64, "axpy: rel err %g", e);

    /* x *= alpha: one multiply, exact */
    for (int64_t i = 0; i < n; i++) ref[i] = -3.0 * x[i];
    OK(be_scal_f64(be, n, -3.0, dx));
    OK(be_download(be, got, dx, (size_t)n * sizeof *got));
    ck_assert(memcmp(got, ref, (size_t)n * sizeof *got) == 0);

    ck_assert_int_eq(be_dot_f64(be, -1, dx, dy, &r), TP_ERR_RANGE);
    OK(be_dot_f64(be, 0, dx, dy, &r));
    ck_assert(r == 0.0);
    be_free(be, dx);
    be_free(be, dy);
    free(x), free(y), free(got), free(ref);
}
END_TEST

/* Kernels without a slot yet, launched directly on the legacy default stream (the
 * backend's stream is non-blocking: uploads and downloads wait for themselves, and
 * the test waits for the kernel with cudaDeviceSynchronize in between). */
START_TEST(test_softmax_causal)
{
    /* ld > T: the columns past T are not the kernel's and must come back unchanged. */
    int64_t T = 37, ld = 41;
    size_t n = (size_t)(T * ld);
    float scale = 1.0f / sqrtf(64.0f);
    float *s = rand_f32(n, -20, 20);
    float *ref = copy_of(s, n * sizeof *s), *got = malloc(n * sizeof *got);
    ck_assert_ptr_nonnull(got);
    for (int64_t i = 0; i < T; i++) {
        double mx = -INFINITY, sum = 0;
        for (int64_t j = 0; j <= i; j++) mx = fmax(mx, (double)s[i * ld + j] * scale);
        for (int64_t j = 0; j <= i; j++) sum += exp((double)s[i * ld + j] * scale - mx);
        for (int64_t j = 0; j < T; j++)
            ref[i * ld + j] = j <= i ? (float)(exp((double)s[i * ld + j] * scale - mx) / sum) : 0.0f;
    }
    float *ds = dev_from(s, n * sizeof *s);
    CUDA_OK(kern_softmax_causal(0, ds, T, ld, scale));
    CUDA_OK(cudaDeviceSynchronize());
    dev_to(got, ds, n * sizeof *got);
    for (int64_t i = 0; i < T; i++) {
        double e = tp_test_rel_err(got + i * ld, ref + i * ld, (size_t)T);
        ck_assert_msg(e <= REL_TOL, "row %lld: rel err %g", (long long)i, e);
        for (int64_t j = i + 1; j < T; j++) ck_assert(got[i * ld + j] == 0.0f);
        ck_assert(memcmp(got + i * ld + T, s + i * ld + T, (size_t)(ld - T) * sizeof *s) == 0);
    }
    ck_assert_int_eq(kern_softmax_causal(0, NULL, 8, 7, 1.0f), cudaErrorInvalidValue);
    free(s), free(ref), free(got);
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
    OK(be_alloc(be, n * sizeof *got, (void **)&dout));
    CUDA_OK(kern_bf16_to_f32(0, dout, din, n));
    CUDA_OK(cudaDeviceSynchronize());
    dev_to(got, dout, n * sizeof *got);
    be_free(be, din);
    ck_assert(memcmp(got, ref, n * sizeof *got) == 0);
    free(in), free(ref), free(got);
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
    tcase_add_test(host, test_open_refused);
    tcase_add_test(host, test_check_macros);
    tcase_add_test(host, test_nccl_version);
    tcase_add_test(host, test_table);
    suite_add_tcase(suite, host);

    const TTest *device_tests[] = {
        test_buffers, test_download_async, test_null_slots, test_rmsnorm,  test_silu_mul_add, test_rope,         test_embed,
        test_gemm_f32, test_gemm_f32_tf32, test_gemm_f64, test_gemv_f32, test_syrk_f64, test_syr_f64,
        test_level1_f64, test_softmax_causal, test_bf16_to_f32,
    };
    size_t n_device = sizeof device_tests / sizeof *device_tests;
    if (have_gpu) {
        TCase *dev = tcase_create("device");
        tcase_set_timeout(dev, 120);
        tcase_add_unchecked_fixture(dev, be_setup, be_teardown);
        for (size_t i = 0; i < n_device; i++) tcase_add_test(dev, device_tests[i]);
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
        for (size_t i = 0; i < n_device; i++) printf("%s: skipped: no GPU\n", device_tests[i]->name);
        /* The message already starts "no GPU: "; the skip line says it once. */
        const char *why = strncmp(reason, "no GPU: ", 8) == 0 ? reason + 8 : reason;
        printf("skipped: no GPU (%s)\n", why);
    }
    return EXIT_SUCCESS;
}

#endif
