/* blas.c — the CPU backend's OpenBLAS ops (see blas.h). */
#include "backend/cpu/blas.h"

#include "backend/cpu/pool.h"   /* cpu_parallel_for */

#include <cblas.h>
#include <stdlib.h>

/* ---- sizes -------------------------------------------------------------------- */

/* OpenBLAS takes blasint sizes: 32 bits unless it was built with INTERFACE64. */
static tp_status check_sizes(const char *op, const int64_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0 || (int64_t)(blasint)v[i] != v[i])
            return tp_err(TP_ERR_RANGE, "%s: size %lld does not fit OpenBLAS's %zu-byte integers", op,
                          (long long)v[i], sizeof(blasint));
    return TP_OK;
}

#define CHECK_SIZES(op, ...) \
    TP_CHECK(check_sizes(op, (const int64_t[]){__VA_ARGS__}, sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

static CBLAS_TRANSPOSE trans(tp_trans t) { return t == TP_TRANS ? CblasTrans : CblasNoTrans; }

/* ---- the analyses' linear algebra ----------------------------------------------- */

tp_status cpu_be_gemm_f32(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                          int64_t ldc)
{
    CHECK_SIZES("gemm_f32", m, n, k, lda, ldb, ldc);
    cblas_sgemm(CblasRowMajor, trans(ta), trans(tb), (blasint)m, (blasint)n, (blasint)k, alpha, A, (blasint)lda, B,
                (blasint)ldb, beta, C, (blasint)ldc);
    return TP_OK;
}

tp_status cpu_be_gemm_f64(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k,
                          double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                          double *C, int64_t ldc)
{
    CHECK_SIZES("gemm_f64", m, n, k, lda, ldb, ldc);
    cblas_dgemm(CblasRowMajor, trans(ta), trans(tb), (blasint)m, (blasint)n, (blasint)k, alpha, A, (blasint)lda, B,
                (blasint)ldb, beta, C, (blasint)ldc);
    return TP_OK;
}

tp_status cpu_be_gemv_f32(tp_backend *be, tp_trans ta, int64_t m, int64_t n, float alpha, const float *A,
                          int64_t lda, const float *x, float beta, float *y)
{
    CHECK_SIZES("gemv_f32", m, n, lda);
    cblas_sgemv(CblasRowMajor, trans(ta), (blasint)m, (blasint)n, alpha, A, (blasint)lda, x, 1, beta, y, 1);
    return TP_OK;
}

tp_status cpu_be_syrk_f64(tp_backend *be, tp_trans ta, int64_t n, int64_t k, double alpha, const double *A,
                          int64_t lda, double beta, double *C, int64_t ldc)
{
    CHECK_SIZES("syrk_f64", n, k, lda, ldc);
    cblas_dsyrk(CblasRowMajor, CblasUpper, trans(ta), (blasint)n, (blasint)k, alpha, A, (blasint)lda, beta, C,
                (blasint)ldc);
    return TP_OK;
}

tp_status cpu_be_syrk_f32(tp_backend *be, tp_trans ta, int64_t n, int64_t k, float alpha, const float *A,
                          int64_t lda, float beta, float *C, int64_t ldc)
{
    CHECK_SIZES("syrk_f32", n, k, lda, ldc);
    cblas_ssyrk(CblasRowMajor, CblasUpper, trans(ta), (blasint)n, (blasint)k, alpha, A, (blasint)lda, beta, C,
                (blasint)ldc);
    return TP_OK;
}

tp_status cpu_be_syr_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *A, int64_t lda)
{
    CHECK_SIZES("syr_f64", n, lda);
    cblas_dsyr(CblasRowMajor, CblasUpper, (blasint)n, alpha, x, 1, A, (blasint)lda);
    return TP_OK;
}

tp_status cpu_be_dot_f64(tp_backend *be, int64_t n, const double *x, const double *y, double *out)
{
    CHECK_SIZES("dot_f64", n);
    *out = cblas_ddot((blasint)n, x, 1, y, 1);
    return TP_OK;
}

tp_status cpu_be_axpy_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *y)
{
    CHECK_SIZES("axpy_f64", n);
    cblas_daxpy((blasint)n, alpha, x, 1, y, 1);
    return TP_OK;
}

tp_status cpu_be_nrm2_f64(tp_backend *be, int64_t n, const double *x, double *out)
{
    CHECK_SIZES("nrm2_f64", n);
    *out = cblas_dnrm2((blasint)n, x, 1);
    return TP_OK;
}

tp_status cpu_be_scal_f64(tp_backend *be, int64_t n, double alpha, double *x)
{
    CHECK_SIZES("scal_f64", n);
    cblas_dscal((blasint)n, alpha, x, 1);
    return TP_OK;
}

/* ---- linear through sgemm ----------------------------------------------------------
 * Largest f32 tile of a converted matrix: 4 Mi floats (16 MiB). Big enough that the
 * GEMM on it runs at full speed, small enough to cost nothing next to the mmap. */
#define WTILE_MAX_ELEMS ((size_t)4 << 20)

static int64_t tile_rows(int64_t n, int64_t k)
{
    size_t r = WTILE_MAX_ELEMS / (size_t)k;
    if (r < 1) r = 1;
    return r < (size_t)n ? (int64_t)r : n;
}

static tp_status wtile_reserve(cpu_wtile *ws, size_t elems)
{
    if (ws->elems >= elems) return TP_OK;
    free(ws->p);
    ws->elems = 0;
    ws->p = tp_malloc(elems * sizeof(float));
    if (!ws->p) return TP_ERR_NOMEM;
    ws->elems = elems;
    return TP_OK;
}

/* BF16/F16 -> f32 conversion of a weight tile, split over the pool (it is
 * memory-bound; one thread leaves the other core idle between GEMMs). A tile is
 * `rows` rows of `cols` elements at stride ld; contiguous tiles are one long row. */
#define CONVERT_BLOCK ((size_t)1 << 18)

typedef struct {
    tp_dtype dt;
    const char *src;
    float *dst;
    size_t rows, cols, ld, blocks_per_row;
} convert_job;

static void convert_task(void *arg, int64_t t, int thread)
{
    const convert_job *j = arg;
    size_t row = (size_t)t / j->blocks_per_row, i0 = (size_t)t % j->blocks_per_row * CONVERT_BLOCK;
    size_t n = j->cols - i0 < CONVERT_BLOCK ? j->cols - i0 : CONVERT_BLOCK;
    tp_convert_to_f32(j->dt, j->src + (row * j->ld + i0) * tp_dtype_size(j->dt), j->dst + row * j->cols + i0, n);
    (void)thread;
}

static void convert_tile(const tp_linear_out *o, int64_t k, int64_t r0, int64_t r, float *dst)
{
    const char *src = (const char *)o->w + (size_t)r0 * (size_t)o->ldw * tp_dtype_size(o->dtype);
    int contiguous = o->ldw == k;
    convert_job cj = {o->dtype, src, dst, contiguous ? 1 : (size_t)r, contiguous ? (size_t)(r * k) : (size_t)k,
                      (size_t)o->ldw, 0};
    cj.blocks_per_row = (cj.cols + CONVERT_BLOCK - 1) / CONVERT_BLOCK;
    cpu_parallel_for((int64_t)(cj.rows * cj.blocks_per_row), convert_task, &cj);
}

tp_status cpu_blas_linear(cpu_wtile *ws, int64_t m, int64_t k, const float *x, int64_t ldx,
                          const tp_linear_out *o)
{
    CHECK_SIZES("linear", m, k, o->n, ldx, o->ldw, o->ldy);
    if (o->dtype == TP_DTYPE_F32 || k == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)o->n, (blasint)k, 1.0f, x,
                    (blasint)ldx, (const float *)o->w, (blasint)o->ldw, 0.0f, o->y, (blasint)o->ldy);
        return TP_OK;
    }
    int64_t R = tile_rows(o->n, k);
    TP_CHECK(wtile_reserve(ws, (size_t)R * (size_t)k));
    for (int64_t r0 = 0; r0 < o->n; r0 += R) {
        int64_t r = o->n - r0 < R ? o->n - r0 : R;
        convert_tile(o, k, r0, r, ws->p);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)r, (blasint)k, 1.0f, x,
                    (blasint)ldx, ws->p, (blasint)k, 0.0f, o->y + r0, (blasint)o->ldy);
    }
    return TP_OK;
}

/* dX = Σ_i dY_i · W_i through sgemm (NN), beside the forward above: f32 weights
 * straight from their mapping, BF16/F16 converted a tile of rows at a time into the
 * same workspace; the first product writes dX (beta 0), every later one adds. */
tp_status cpu_blas_linear_bwd(cpu_wtile *ws, int64_t m, int64_t k, const tp_linear_out *outs, int nout,
                              const float *const *dy, float *dx, int64_t ldx)
{
    float beta = 0.0f;
    for (int i = 0; i < nout; i++) {
        const tp_linear_out *o = &outs[i];
        CHECK_SIZES("linear_bwd", m, k, o->n, ldx, o->ldw, o->ldy);
        if (o->n == 0) continue;
        if (o->dtype == TP_DTYPE_F32) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)k, (blasint)o->n, 1.0f,
                        dy[i], (blasint)o->ldy, (const float *)o->w, (blasint)o->ldw, beta, dx, (blasint)ldx);
            beta = 1.0f;
            continue;
        }
        int64_t R = tile_rows(o->n, k);
        TP_CHECK(wtile_reserve(ws, (size_t)R * (size_t)k));
        for (int64_t r0 = 0; r0 < o->n; r0 += R) {
            int64_t r = o->n - r0 < R ? o->n - r0 : R;
            convert_tile(o, k, r0, r, ws->p);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)k, (blasint)r, 1.0f,
                        dy[i] + r0, (blasint)o->ldy, ws->p, (blasint)k, beta, dx, (blasint)ldx);
            beta = 1.0f;
        }
    }
    if (beta == 0.0f) {   /* no output had a column: dX = 0 */
        for (int64_t r = 0; r < m; r++)
            for (int64_t c = 0; c < k; c++) dx[r * ldx + c] = 0.0f;
    }
    return TP_OK;
}
