/* test_backend.c — the backend table (backend/backend.h) and the CPU backend that
 * fills it.
 *
 * The table: every slot of the CPU backend is set, the _bwd ones included (their
 * numerics: test_backend_bwd.c); a NULL slot called through be_* fails with TP_ERR_UNSUPPORTED "op <slot> is not available on
 * <backend>"; an unknown backend name is TP_ERR_CONFIG listing the known ones.
 * The CPU ops against what the code called before the table existed, bit for bit
 * (no tolerance: the slots are meant to be the same arithmetic): each BLAS wrapper
 * against the direct cblas call, rope with per-row positions against the
 * per-sequence loop forward.c had, linear against cpu_linear / sgemm per the dispatch
 * rule, embed's out-of-vocabulary message.
 * The forward pass on a device-like backend (the CPU's ops, host_memory = 0, copies
 * counted): the same bits as on the CPU, inputs uploaded, a hook point downloaded only
 * where a callback is and uploaded back only where one may edit, logits downloaded.
 */
#include "backend/backend.h"
#include "backend/cpu/cpu.h"      /* cpu_features */
#include "backend/cpu/linear.h"   /* cpu_linear, cpu_linear_supported, cpu_linear_enable */
#include "core/dtype.h"
#include "core/error.h"
#include "model/backward.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/model.h"
#include "tp_test.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x243f6a8885a308d3ull;

/* uniform in [-1, 1) (splitmix64) */
static double urand(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(1ull << 53) * 2.0 - 1.0;
}

static float *rand_f32(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = (float)urand();
    return p;
}

static double *rand_f64(size_t n)
{
    double *p = malloc((n ? n : 1) * sizeof *p);
    ck_assert_ptr_nonnull(p);
    for (size_t i = 0; i < n; i++) p[i] = urand();
    return p;
}

static void *dup(const void *p, size_t bytes)
{
    void *q = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(q);
    memcpy(q, p, bytes);
    return q;
}

/* ---- the table ------------------------------------------------------------------ */

typedef void (*any_fn)(void);
typedef struct {
    const char *name;
    any_fn fn;
} slot;

#define SLOT(s) {#s, (any_fn)be->iface.s}

START_TEST(test_cpu_slots)
{
    const tp_backend *be = backend_cpu();
    const slot slots[] = {
        SLOT(alloc), SLOT(free), SLOT(upload), SLOT(download), SLOT(copy), SLOT(sync), SLOT(info),
        SLOT(prefetch), SLOT(prefetch_wait), SLOT(host_alloc), SLOT(host_free), SLOT(download_async), SLOT(wait),
        SLOT(linear), SLOT(linear_bwd), SLOT(rmsnorm), SLOT(rmsnorm_bwd), SLOT(rope), SLOT(rope_bwd),
        SLOT(attention), SLOT(attention_bwd), SLOT(silu_mul), SLOT(silu_mul_bwd), SLOT(add), SLOT(embed),
        SLOT(embed_bwd), SLOT(gemm_f32), SLOT(gemm_f64), SLOT(gemv_f32), SLOT(syrk_f64), SLOT(syrk_f32),
        SLOT(syr_f64), SLOT(dot_f64), SLOT(axpy_f64), SLOT(nrm2_f64), SLOT(scal_f64),
        SLOT(sae_encode_in), SLOT(sae_topk), SLOT(sae_decode), SLOT(sae_sparse_bwd), SLOT(sae_adam),
        SLOT(sae_relu), SLOT(sae_residual), SLOT(sae_relu_bwd_init), SLOT(sae_relu_bwd_pre),
    };
    size_t n = sizeof slots / sizeof *slots;
    /* Every member is a function pointer: a slot added to backend.h but not to the
     * list above fails here. */
    ck_assert_uint_eq(sizeof(tp_backend_i), n * sizeof(any_fn));
    for (size_t i = 0; i < n; i++) ck_assert_msg(slots[i].fn != NULL, "cpu slot %s is NULL", slots[i].name);
    ck_assert_str_eq(be->name, "cpu");
    ck_assert(be->host_memory);
}
END_TEST

/* Pinned buffers are aligned host memory; download_async is a memcpy done on return
 * and wait only checks its slot. */
START_TEST(test_cpu_download_async)
{
    tp_backend *be = backend_cpu();
    void *p = (void *)&p;
    ck_assert(be_host_alloc(be, 0, &p) == TP_OK);
    ck_assert_ptr_null(p);
    float *h = NULL, x[33];
    ck_assert(be_host_alloc(be, sizeof x, (void **)&h) == TP_OK);
    ck_assert_uint_eq((uintptr_t)h % 64, 0);
    for (int i = 0; i < 33; i++) x[i] = (float)urand();
    for (int s = 0; s < TP_BE_COPY_SLOTS; s++) {
        memset(h, 0, sizeof x);
        ck_assert(be_download_async(be, h, x, sizeof x, s) == TP_OK);
        ck_assert(!memcmp(h, x, sizeof x));
        ck_assert(be_wait(be, s) == TP_OK);
    }
    ck_assert_int_eq(be_download_async(be, h, x, sizeof x, TP_BE_COPY_SLOTS), TP_ERR_RANGE);
    TP_ASSERT_ERR_HAS("copy slot 2 out of range [0, 2)");
    ck_assert_int_eq(be_wait(be, -1), TP_ERR_RANGE);
    be_host_free(be, h);
    be_host_free(be, NULL);
}
END_TEST

START_TEST(test_null_slot)
{
    tp_backend fake = *backend_cpu();
    fake.name = "fake";
    fake.iface.rmsnorm = NULL;
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1};
    tp_err_clear();
    ck_assert_int_eq(be_rmsnorm(&fake, x, x, w, 1, 4, 1e-6f), TP_ERR_UNSUPPORTED);
    TP_ASSERT_ERR_HAS("op rmsnorm is not available on fake");
    /* a backward slot left NULL, as a device backend may leave it */
    fake.iface.rmsnorm_bwd = NULL;
    float dx[4], dw[4];
    ck_assert_int_eq(be_rmsnorm_bwd(&fake, dx, dw, x, x, w, 1, 4, 1e-6f), TP_ERR_UNSUPPORTED);
    TP_ASSERT_ERR_HAS("op rmsnorm_bwd is not available on fake");
}
END_TEST

START_TEST(test_open)
{
    tp_backend *be = (tp_backend *)1;
    ck_assert_int_eq(backend_open("nope", NULL, &be), TP_ERR_CONFIG);
    ck_assert_ptr_null(be);
    TP_ASSERT_ERR_HAS("unknown backend 'nope'");
    TP_ASSERT_ERR_HAS(backend_names());
    ck_assert_msg(strstr(backend_names(), "cpu"), "%s", backend_names());

    /* NULL options are the config's defaults: TranspOLMo's GEMM where the CPU has it */
    cpu_linear_enable(0);
    ck_assert_int_eq(backend_open("cpu", NULL, &be), TP_OK);
    ck_assert_ptr_eq(be, backend_cpu());
    ck_assert_ptr_eq(backend_default(), backend_cpu());
    tp_backend_info info;
    be_info(be, &info);
    ck_assert_str_eq(info.name, "cpu");
    ck_assert_str_eq(info.kernels, cpu_features());
    ck_assert_str_eq(info.linear_gemm, cpu_linear_bf16_supported() ? "transpolmo-avx512-bf16"
                                       : cpu_linear_supported() ? "transpolmo-avx512" : "openblas");
    ck_assert_int_ge(info.threads, 1);
    ck_assert_str_eq(info.blas, openblas_get_config());
    ck_assert_int_eq(backend_open("cpu", &(tp_backend_options){.own_gemm = false}, &be), TP_OK);
    ck_assert_int_eq(cpu_linear_supported(), 0);
    be_info(be, &info);
    ck_assert_str_eq(info.linear_gemm, "openblas");
    /* forward.bf16_compute: off keeps the f32 kernel; on is an error where it cannot run */
    ck_assert_int_eq(backend_open("cpu", &(tp_backend_options){.own_gemm = true, .bf16_compute = TP_BF16_COMPUTE_OFF},
                                  &be), TP_OK);
    ck_assert_int_eq(cpu_linear_bf16_active(), 0);
    be_info(be, &info);
    ck_assert_str_eq(info.linear_gemm, cpu_linear_supported() ? "transpolmo-avx512" : "openblas");
    ck_assert_int_eq(backend_open("cpu", &(tp_backend_options){.own_gemm = false, .bf16_compute = TP_BF16_COMPUTE_ON},
                                  &be), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("forward.bf16_compute: on needs");
    tp_status on = backend_open("cpu", &(tp_backend_options){.own_gemm = true, .bf16_compute = TP_BF16_COMPUTE_ON}, &be);
    ck_assert_int_eq(on, cpu_linear_bf16_supported() ? TP_OK : TP_ERR_CONFIG);
    ck_assert_int_eq(cpu_linear_bf16_active(), cpu_linear_bf16_supported());
    ck_assert_int_eq(backend_open("cpu", &(tp_backend_options){.own_gemm = true}, &be), TP_OK);
    cpu_linear_bf16_enable(0); /* the rest of this test checks the f32 kernel */

    void *p = (void *)1;
    ck_assert_int_eq(be_alloc(be, 0, &p), TP_OK);
    ck_assert_ptr_null(p);
    ck_assert_int_eq(be_alloc(be, 64, &p), TP_OK);
    ck_assert_int_eq(be_upload(be, p, "0123456789", 10), TP_OK);
    char back[10];
    ck_assert_int_eq(be_download(be, back, p, 10), TP_OK);
    ck_assert(!memcmp(back, "0123456789", 10));
    ck_assert_int_eq(be_sync(be), TP_OK);
    be_free(be, p);
    backend_close(be);   /* the singleton: nothing happens */
    ck_assert_ptr_eq(backend_cpu(), be);
}
END_TEST

/* ---- the BLAS wrappers against the direct cblas calls ------------------------------ */

static CBLAS_TRANSPOSE cb(tp_trans t) { return t == TP_TRANS ? CblasTrans : CblasNoTrans; }

START_TEST(test_gemm_bits)
{
    tp_backend *be = backend_cpu();
    const int m = 37, n = 29, k = 45, pad = 3;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
            size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb, nc = (size_t)m * ldc;
            float *A = rand_f32(na), *B = rand_f32(nb), *C = rand_f32(nc), *R = dup(C, nc * sizeof *C);
            ck_assert_int_eq(be_gemm_f32(be, (tp_trans)ta, (tp_trans)tb, m, n, k, 0.75f, A, lda, B, ldb, -0.5f, C,
                                         ldc), TP_OK);
            cblas_sgemm(CblasRowMajor, cb((tp_trans)ta), cb((tp_trans)tb), m, n, k, 0.75f, A, lda, B, ldb, -0.5f, R,
                        ldc);
            ck_assert_msg(!memcmp(C, R, nc * sizeof *C), "gemm_f32 ta=%d tb=%d", ta, tb);
            free(A), free(B), free(C), free(R);

            double *Ad = rand_f64(na), *Bd = rand_f64(nb), *Cd = rand_f64(nc), *Rd = dup(Cd, nc * sizeof *Cd);
            ck_assert_int_eq(be_gemm_f64(be, (tp_trans)ta, (tp_trans)tb, m, n, k, 1.25, Ad, lda, Bd, ldb, 0.5, Cd,
                                         ldc), TP_OK);
            cblas_dgemm(CblasRowMajor, cb((tp_trans)ta), cb((tp_trans)tb), m, n, k, 1.25, Ad, lda, Bd, ldb, 0.5, Rd,
                        ldc);
            ck_assert_msg(!memcmp(Cd, Rd, nc * sizeof *Cd), "gemm_f64 ta=%d tb=%d", ta, tb);
            free(Ad), free(Bd), free(Cd), free(Rd);
        }
}
END_TEST

START_TEST(test_gemv_syrk_syr_bits)
{
    tp_backend *be = backend_cpu();
    const int m = 41, n = 23, lda = 27;
    for (int ta = 0; ta < 2; ta++) {
        int nx = ta ? m : n, ny = ta ? n : m;
        float *A = rand_f32((size_t)m * lda), *x = rand_f32((size_t)nx), *y = rand_f32((size_t)ny);
        float *r = dup(y, (size_t)ny * sizeof *y);
        ck_assert_int_eq(be_gemv_f32(be, (tp_trans)ta, m, n, -1.5f, A, lda, x, 0.25f, y), TP_OK);
        cblas_sgemv(CblasRowMajor, cb((tp_trans)ta), m, n, -1.5f, A, lda, x, 1, 0.25f, r, 1);
        ck_assert_msg(!memcmp(y, r, (size_t)ny * sizeof *y), "gemv_f32 ta=%d", ta);
        free(A), free(x), free(y), free(r);
    }
    const int d = 19, rows = 33, ldc = 21;
    for (int ta = 0; ta < 2; ta++) {
        /* TRANS: A [rows, d], C = Aᵀ A; NO_TRANS: A [d, rows], C = A Aᵀ */
        int ld = (ta ? d : rows) + 2;
        size_t na = (size_t)(ta ? rows : d) * ld;
        double *A = rand_f64(na), *C = rand_f64((size_t)d * ldc), *R = dup(C, (size_t)d * ldc * sizeof *C);
        ck_assert_int_eq(be_syrk_f64(be, (tp_trans)ta, d, rows, 1.0, A, ld, 0.5, C, ldc), TP_OK);
        cblas_dsyrk(CblasRowMajor, CblasUpper, cb((tp_trans)ta), d, rows, 1.0, A, ld, 0.5, R, ldc);
        ck_assert_msg(!memcmp(C, R, (size_t)d * ldc * sizeof *C), "syrk_f64 ta=%d", ta);
        free(A), free(C), free(R);
        float *a = rand_f32(na), *c = rand_f32((size_t)d * ldc), *r = dup(c, (size_t)d * ldc * sizeof *c);
        ck_assert_int_eq(be_syrk_f32(be, (tp_trans)ta, d, rows, 1.0f, a, ld, 0.5f, c, ldc), TP_OK);
        cblas_ssyrk(CblasRowMajor, CblasUpper, cb((tp_trans)ta), d, rows, 1.0f, a, ld, 0.5f, r, ldc);
        ck_assert_msg(!memcmp(c, r, (size_t)d * ldc * sizeof *c), "syrk_f32 ta=%d", ta);
        free(a), free(c), free(r);
    }
    double *x = rand_f64((size_t)d), *G = rand_f64((size_t)d * ldc), *R = dup(G, (size_t)d * ldc * sizeof *G);
    ck_assert_int_eq(be_syr_f64(be, d, -0.125, x, G, ldc), TP_OK);
    cblas_dsyr(CblasRowMajor, CblasUpper, d, -0.125, x, 1, R, ldc);
    ck_assert(!memcmp(G, R, (size_t)d * ldc * sizeof *G));
    free(x), free(G), free(R);
}
END_TEST

START_TEST(test_level1_bits)
{
    tp_backend *be = backend_cpu();
    const int n = 1003;
    double *x = rand_f64(n), *y = rand_f64(n), *r = dup(y, n * sizeof *y), out = 0;
    ck_assert_int_eq(be_dot_f64(be, n, x, y, &out), TP_OK);
    double ref = cblas_ddot(n, x, 1, y, 1);
    ck_assert(!memcmp(&out, &ref, sizeof out));
    ck_assert_int_eq(be_nrm2_f64(be, n, x, &out), TP_OK);
    ref = cblas_dnrm2(n, x, 1);
    ck_assert(!memcmp(&out, &ref, sizeof out));
    ck_assert_int_eq(be_axpy_f64(be, n, 0.3, x, y), TP_OK);
    cblas_daxpy(n, 0.3, x, 1, r, 1);
    ck_assert(!memcmp(y, r, n * sizeof *y));
    ck_assert_int_eq(be_scal_f64(be, n, -1.7, y), TP_OK);
    cblas_dscal(n, -1.7, r, 1);
    ck_assert(!memcmp(y, r, n * sizeof *y));
    free(x), free(y), free(r);
}
END_TEST

/* ---- rope: per-row positions against forward.c's old per-sequence loop ------------- */

/* forward.c's apply_rope before the backend table: sequence s at rows row0[s].., its
 * row t at position pos0 + t. */
static void rope_per_sequence(float *x, int nseq, const int *lens, const int64_t *row0, int pos0, int nh, int dh,
                              const float *rope_cos, const float *rope_sin)
{
    int half = dh / 2;
    for (int s = 0; s < nseq; s++) {
        for (int t = 0; t < lens[s]; t++) {
            int64_t r = row0[s] + t;
            int pos = pos0 + t;
            const float *cs = rope_cos + (size_t)pos * half, *sn = rope_sin + (size_t)pos * half;
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
}

START_TEST(test_rope_positions)
{
    const int lens[] = {3, 7, 1, 5}, nseq = 4, nh = 3, dh = 16, half = dh / 2;
    for (int pos0 = 0; pos0 <= 4; pos0 += 4) {
        int64_t row0[5] = {0};
        for (int s = 0; s < nseq; s++) row0[s + 1] = row0[s] + lens[s];
        int64_t rows = row0[nseq];
        int max_pos = pos0 + 7;
        float *cs = rand_f32((size_t)max_pos * half), *sn = rand_f32((size_t)max_pos * half);
        float *x = rand_f32((size_t)rows * nh * dh), *ref = dup(x, (size_t)rows * nh * dh * sizeof *x);
        int32_t pos[16];
        for (int s = 0; s < nseq; s++)
            for (int t = 0; t < lens[s]; t++) pos[row0[s] + t] = pos0 + t;
        ck_assert_int_eq(be_rope(backend_cpu(), x, rows, nh, dh, pos, cs, sn), TP_OK);
        rope_per_sequence(ref, nseq, lens, row0, pos0, nh, dh, cs, sn);
        ck_assert_msg(!memcmp(x, ref, (size_t)rows * nh * dh * sizeof *x), "rope pos0=%d", pos0);
        free(cs), free(sn), free(x), free(ref);
    }
}
END_TEST

/* ---- linear: the dispatch rule ------------------------------------------------------- */

static cpu_wtype wtype(tp_dtype dt)
{
    return dt == TP_DTYPE_BF16 ? CPU_W_BF16 : dt == TP_DTYPE_F16 ? CPU_W_F16 : CPU_W_F32;
}

/* W [n, ldw] of dtype dt with random values; *wf its f32 values (what sgemm sees). */
static void *make_w(tp_dtype dt, int64_t n, int64_t ldw, float **wf)
{
    size_t cnt = (size_t)n * (size_t)ldw;
    float *f = rand_f32(cnt);
    *wf = f;
    if (dt == TP_DTYPE_F32) return dup(f, cnt * sizeof *f);
    void *w = malloc(cnt * 2);
    ck_assert_ptr_nonnull(w);
    tp_convert_from_f32(dt, f, w, cnt);
    tp_convert_to_f32(dt, w, f, cnt);
    return w;
}

/* y = x · Wᵀ by sgemm over tiles of `tile` rows of W's f32 values, as the OpenBLAS
 * path computes it. */
static void sgemm_tiles(int64_t m, int64_t k, const float *x, const float *wf, int64_t ldw, int64_t n, int64_t tile,
                        float *y)
{
    float *t = malloc((size_t)tile * (size_t)k * sizeof *t);
    ck_assert_ptr_nonnull(t);
    for (int64_t r0 = 0; r0 < n; r0 += tile) {
        int64_t r = n - r0 < tile ? n - r0 : tile;
        for (int64_t i = 0; i < r; i++) memcpy(t + i * k, wf + (r0 + i) * ldw, (size_t)k * sizeof *t);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)r, (int)k, 1.0f, x, (int)k, t, (int)k, 0.0f,
                    y + r0, (int)n);
    }
    free(t);
}

START_TEST(test_linear_dispatch)
{
    tp_backend *be = backend_cpu();
    const int64_t k = 96, n = 40;
    float *x = rand_f32((size_t)8 * k);
    for (int use_own = 0; use_own < 2; use_own++) {
        cpu_linear_enable(use_own);
        int own = cpu_linear_supported();
        for (int64_t m = 1; m <= 8; m += 7) {       /* below and above LINEAR_MIN_ROWS (4) */
            for (int d = 0; d < 2; d++) {
                tp_dtype dt = d ? TP_DTYPE_BF16 : TP_DTYPE_F32;
                float *wf;
                void *w = make_w(dt, n, k, &wf);
                float *y = calloc((size_t)(m * n), sizeof *y), *ref = calloc((size_t)(m * n), sizeof *ref);
                tp_linear_out o = {.w = w, .n = n, .ldw = k, .dtype = dt, .y = y, .ldy = n};
                ck_assert_int_eq(be_linear(be, m, k, x, k, &o, 1), TP_OK);
                if (own && (m >= 4 || dt != TP_DTYPE_F32)) {
                    cpu_linear_out co = {w, n, k, wtype(dt), ref, n};
                    ck_assert_int_eq(cpu_linear(m, k, x, k, &co, 1), 0);
                } else {
                    sgemm_tiles(m, k, x, wf, k, n, n, ref);
                }
                ck_assert_msg(!memcmp(y, ref, (size_t)(m * n) * sizeof *y), "linear own=%d m=%lld dtype=%s", own,
                              (long long)m, tp_dtype_name(dt));
                free(w), free(wf), free(y), free(ref);
            }
        }
    }
    cpu_linear_enable(1);
    free(x);
}
END_TEST

/* The OpenBLAS path over several tiles (4 Mi floats each: 1024 rows of k = 4096),
 * with W contiguous and with a row stride past k. */
START_TEST(test_linear_blas_tiles)
{
    tp_backend *be = backend_cpu();
    const int64_t m = 3, k = 4096, n = 1100, tile = ((int64_t)4 << 20) / k;
    cpu_linear_enable(0);
    float *x = rand_f32((size_t)(m * k));
    for (int64_t ldw = k; ldw <= k + 5; ldw += 5) {
        float *wf;
        void *w = make_w(TP_DTYPE_BF16, n, ldw, &wf);
        float *y = calloc((size_t)(m * n), sizeof *y), *ref = calloc((size_t)(m * n), sizeof *ref);
        tp_linear_out o = {.w = w, .n = n, .ldw = ldw, .dtype = TP_DTYPE_BF16, .y = y, .ldy = n};
        ck_assert_int_eq(be_linear(be, m, k, x, k, &o, 1), TP_OK);
        sgemm_tiles(m, k, x, wf, ldw, n, tile, ref);
        ck_assert_msg(!memcmp(y, ref, (size_t)(m * n) * sizeof *y), "blas tiles ldw=%lld", (long long)ldw);
        free(w), free(wf), free(y), free(ref);
    }
    cpu_linear_enable(1);
    free(x);
}
END_TEST

/* ---- embed ------------------------------------------------------------------------------ */

START_TEST(test_embed)
{
    const int64_t vocab = 5, d = 6;
    float *table = rand_f32((size_t)(vocab * d)), out[3 * 6];
    int32_t ids[3] = {4, 0, 2};
    ck_assert_int_eq(be_embed(backend_cpu(), out, table, TP_DTYPE_F32, vocab, d, ids, 3), TP_OK);
    for (int r = 0; r < 3; r++) ck_assert(!memcmp(out + r * d, table + ids[r] * d, (size_t)d * sizeof *out));
    int32_t bad[2] = {1, 7};
    ck_assert_int_eq(be_embed(backend_cpu(), out, table, TP_DTYPE_F32, vocab, d, bad, 2), TP_ERR_RANGE);
    ck_assert_msg(strstr(tp_err_msg(), "token id 7 at position 1 is outside the vocabulary [0, 5)"), "%s",
                  tp_err_msg());
    free(table);
}
END_TEST

/* ---- the forward pass on a device-like backend ---------------------------------------- */

static struct {
    int up, down;
} copies;

static tp_status counting_upload(tp_backend *be, void *dst, const void *src, size_t bytes)
{
    copies.up++;
    memcpy(dst, src, bytes);
    return TP_OK;
}

static tp_status counting_download(tp_backend *be, void *dst, const void *src, size_t bytes)
{
    copies.down++;
    memcpy(dst, src, bytes);
    return TP_OK;
}

typedef struct {
    float *data;   /* what a reader saw, [calls][n] */
    size_t n, calls;
} seen;

static tp_status read_cb(const tp_hook_info *info, float *data, void *user)
{
    seen *s = user;
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    s->data = realloc(s->data, (s->n = n) * (s->calls + 1) * sizeof(float));
    ck_assert_ptr_nonnull(s->data);
    memcpy(s->data + s->calls++ * n, data, n * sizeof(float));
    return TP_OK;
}

static tp_status halve_cb(const tp_hook_info *info, float *data, void *user)
{
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    for (size_t i = 0; i < n; i++) data[i] *= 0.5f;
    return TP_OK;
}

/* Logits [B*T, V] of one run with: a reader on blocks.0.hook_resid_post, an editor on
 * blocks.0.mlp.hook_post and on blocks.1.attn.hook_pattern, a reader on the pattern
 * after it; readers' data into r[0], r[1]. */
static float *run_hooked(const tp_model *m, const int32_t *ids, int B, int T, seen r[2])
{
    tp_hooks *h;
    ck_assert(hooks_new(m->cfg.num_layers, &h) == TP_OK);
    ck_assert(hooks_add_reader(h, 0, TP_HOOK_RESID_POST, read_cb, &r[0]) == TP_OK);
    ck_assert(hooks_add(h, 0, TP_HOOK_MLP_POST, halve_cb, NULL) == TP_OK);
    ck_assert(hooks_add(h, 1, TP_HOOK_PATTERN, halve_cb, NULL) == TP_OK);
    ck_assert(hooks_add_reader(h, 1, TP_HOOK_PATTERN, read_cb, &r[1]) == TP_OK);
    ck_assert(!hooks_point_edits(h, 0, TP_HOOK_RESID_POST));
    ck_assert(hooks_point_edits(h, 0, TP_HOOK_MLP_POST));
    ck_assert(hooks_point_edits(h, 1, TP_HOOK_PATTERN));
    ck_assert(!hooks_point_edits(h, 0, TP_HOOK_Z));
    ck_assert(!hooks_point_edits(NULL, 0, TP_HOOK_Z));
    tp_forward *f;
    ck_assert_msg(forward_new(m, B, T, &f) == TP_OK, "%s", tp_err_msg());
    copies.up = copies.down = 0;
    const float *logits;
    ck_assert_msg(forward_run(f, ids, B, T, h, TP_LOGITS_ALL, -1, &logits) == TP_OK, "%s", tp_err_msg());
    size_t n = (size_t)B * T * (size_t)m->cfg.vocab_size;
    float *out = dup(logits, n * sizeof *out);
    forward_free(f);
    hooks_free(h);
    return out;
}

START_TEST(test_forward_on_device)
{
    tp_model *m = NULL;
    ck_assert_msg(model_open(tp_test_data("models/olmo2-gqa-bf16"), TP_CONVERT_PER_MATRIX, &m) == TP_OK, "%s",
                  tp_err_msg());
    ck_assert_int_ge(m->cfg.num_layers, 2);
    const int B = 2, T = 7;
    int32_t ids[2 * 7];
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)((urand() + 1) / 2 * (m->cfg.vocab_size - 1));

    seen cpu[2] = {{0}}, dev[2] = {{0}};
    float *ref = run_hooked(m, ids, B, T, cpu);

    tp_backend fake = *backend_cpu();
    fake.name = "fake-device";
    fake.host_memory = false;
    fake.iface.upload = counting_upload;
    fake.iface.download = counting_download;
    backend_set_default(&fake);
    /* model_open uploads to the default backend of its time (the CPU: nothing); a
     * model opened before the switch uploads its weights explicitly: all of them, or
     * (_i) streamed through two layer slots */
    ck_assert_ptr_null(model_weights(m, &fake));
    ck_assert_msg(model_upload(m, &fake, _i ? TP_UPLOAD_STREAM : TP_UPLOAD_RESIDENT) == TP_OK, "%s", tp_err_msg());
    ck_assert_ptr_eq(model_weights(m, &fake), m->on_device);
    ck_assert_ptr_ne(m->on_device->layers[0].q.data, m->layers[0].q.data);
    ck_assert(_i ? m->stream != NULL : m->stream == NULL);
    if (_i) ck_assert_ptr_ne(m->on_device->layers[0].q.data, m->on_device->layers[1].q.data);   /* two slots */
    float *got = run_hooked(m, ids, B, T, dev);
    backend_set_default(NULL);
    ck_assert_ptr_eq(backend_default(), backend_cpu());

    size_t n = (size_t)B * T * (size_t)m->cfg.vocab_size;
    ck_assert_msg(!memcmp(got, ref, n * sizeof *got), "logits differ on the device-like backend");
    for (int i = 0; i < 2; i++) {
        ck_assert_uint_eq(dev[i].calls, cpu[i].calls);
        ck_assert(!memcmp(dev[i].data, cpu[i].data, dev[i].calls * dev[i].n * sizeof(float)));
    }
    ck_assert_uint_eq(cpu[1].calls, (size_t)B);   /* the pattern: one call per sequence */
    /* up: ids and positions, the edited mlp.hook_post, the edited pattern per sequence;
     * down: the three hooked points (the pattern per sequence) and the logits */
    ck_assert_int_eq(copies.up, 2 + 1 + B);
    ck_assert_int_eq(copies.down, 1 + 1 + B + 1);
    for (int i = 0; i < 2; i++) free(cpu[i].data), free(dev[i].data);
    free(ref), free(got);
    model_close(m);
}
END_TEST

/* Streaming on a 4-layer model: each slot is refilled (layers 0, 2 share one) in the
 * forward, in forward_run_from from layer 2 and in the backward (layers 3..0), and the
 * results are the bits of the CPU's (the fake device runs the CPU's ops). */
static float *streamed_run(tp_model *m, tp_backend *b, const int32_t *ids, int B, int T, float **dembed)
{
    backend_set_default(b);
    size_t V = (size_t)m->cfg.vocab_size, d = (size_t)m->cfg.hidden_size, rows = (size_t)B * T;
    tp_backward *bw;
    ck_assert_msg(backward_new(m, B, T, &bw) == TP_OK, "%s", tp_err_msg());
    int lens[2] = {T, T};
    const float *logits;
    ck_assert_msg(backward_forward(bw, ids, lens, B, NULL, &logits) == TP_OK, "%s", tp_err_msg());
    float *out = dup(logits, rows * V * sizeof *out);
    float *dl = calloc(rows * V, sizeof *dl);
    ck_assert_ptr_nonnull(dl);
    for (size_t i = 0; i < rows * V; i += 7) dl[i] = 1.0f;
    tp_hooks *gh;
    ck_assert(hooks_new(m->cfg.num_layers, &gh) == TP_OK);
    seen g = {0};
    ck_assert(hooks_add_reader(gh, -1, TP_HOOK_EMBED, read_cb, &g) == TP_OK);
    ck_assert_msg(backward_run(bw, dl, gh) == TP_OK, "%s", tp_err_msg());
    ck_assert_uint_eq(g.calls * g.n, rows * d);
    *dembed = g.data;
    /* from layer 2 on, the residual = the embeddings (any values do) */
    float *resid = calloc(rows * d, sizeof *resid);
    ck_assert_ptr_nonnull(resid);
    for (size_t i = 0; i < rows * d; i++) resid[i] = (float)((i % 13) - 6) * 0.1f;
    tp_forward *f;
    ck_assert_msg(forward_new(m, B, T, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg(forward_run_from(f, 2, resid, lens, B, NULL, NULL, TP_LOGITS_LAST, &logits) == TP_OK, "%s",
                  tp_err_msg());
    out = realloc(out, (rows * V + (size_t)B * V) * sizeof *out);
    ck_assert_ptr_nonnull(out);
    memcpy(out + rows * V, logits, (size_t)B * V * sizeof *out);
    forward_free(f);
    free(resid), free(dl);
    hooks_free(gh);
    backward_free(bw);
    backend_set_default(NULL);
    return out;
}

START_TEST(test_forward_streamed)
{
    char dir[4096];
    const char *src = getenv("TP_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/models/olmo2-tiny", src ? src : ".");
    tp_model *m = NULL;
    ck_assert_msg(model_open(dir, TP_CONVERT_PER_MATRIX, &m) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_ge(m->cfg.num_layers, 3);
    const int B = 2, T = 6;
    int32_t ids[12];
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)((urand() + 1) / 2 * 500);
    float *gc, *gd;
    float *ref = streamed_run(m, backend_cpu(), ids, B, T, &gc);
    tp_backend fake = *backend_cpu();
    fake.name = "fake-device";
    fake.host_memory = false;
    ck_assert_msg(model_upload(m, &fake, TP_UPLOAD_STREAM) == TP_OK, "%s", tp_err_msg());
    ck_assert_ptr_eq(m->on_device->layers[0].q.data, m->on_device->layers[2].q.data);
    float *got = streamed_run(m, &fake, ids, B, T, &gd);
    size_t n = (size_t)(B * T + B) * (size_t)m->cfg.vocab_size;
    ck_assert_msg(!memcmp(got, ref, n * sizeof *got), "logits differ with streamed weights");
    ck_assert_msg(!memcmp(gd, gc, (size_t)(B * T) * (size_t)m->cfg.hidden_size * sizeof *gd),
                  "gradients differ with streamed weights");
    /* layers out of order are refused: two slots hold consecutive layers only */
    ck_assert_int_eq(model_weights_need(m, &fake, 1, 3), TP_ERR_INTERNAL);
    free(ref), free(got), free(gc), free(gd);
    model_close(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("cpu");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_cpu_slots);
    tcase_add_test(tc, test_cpu_download_async);
    tcase_add_test(tc, test_null_slot);
    tcase_add_test(tc, test_open);
    tcase_add_test(tc, test_gemm_bits);
    tcase_add_test(tc, test_gemv_syrk_syr_bits);
    tcase_add_test(tc, test_level1_bits);
    tcase_add_test(tc, test_rope_positions);
    tcase_add_test(tc, test_linear_dispatch);
    tcase_add_test(tc, test_linear_blas_tiles);
    tcase_add_test(tc, test_embed);
    tcase_add_loop_test(tc, test_forward_on_device, 0, 2);
    tcase_add_test(tc, test_forward_streamed);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
