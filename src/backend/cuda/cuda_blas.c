/* cuda_blas.c — the dense linear algebra slots of the CUDA backend on cuBLAS
 * (contracts: backend/backend.h, row-major BLAS semantics).
 *
 * Row-major on a column-major library: a row-major X [r, c] with leading dimension
 * ld is, read column-major, Xᵀ [c, r] with the same ld. So row-major
 * C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS gets B before A, n
 * before m, and each matrix's own trans flag unchanged. A row-major upper triangle
 * is the column-major lower one.
 *
 * cuBLAS's 64-bit API (`_64`): sizes and leading dimensions past 2^31 are taken
 * (N tokens × d reaches 10^10 at 7B). The handle is in pointer mode host: alpha and
 * beta are host values, and dot / nrm2 write their result to host memory (`out` is a
 * host pointer) and wait for it. TF32 (tp_backend_options.tf32) is the handle's
 * math mode and moves f32 GEMMs by ~1e-3 relative; f64 is never affected.
 */
#include "backend/cuda/cuda_ctx.h"

static cublasOperation_t cublas_op(tp_trans t) { return t == TP_TRANS ? CUBLAS_OP_T : CUBLAS_OP_N; }

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* Sizes and leading dimensions of C = op(A)·op(B), row-major: A is [m,k] (or [k,m]
 * transposed), B [k,n] (or [n,k]), C [m,n]. */
static tp_status check_gemm(const char *op, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k,
                            int64_t lda, int64_t ldb, int64_t ldc)
{
    if (m < 0 || n < 0 || k < 0)
        return tp_err(TP_ERR_RANGE, "cuda %s: m=%lld n=%lld k=%lld must be >= 0", op, (long long)m, (long long)n,
                      (long long)k);
    int64_t need_a = max1(ta == TP_TRANS ? m : k), need_b = max1(tb == TP_TRANS ? k : n), need_c = max1(n);
    if (lda < need_a || ldb < need_b || ldc < need_c)
        return tp_err(TP_ERR_RANGE,
                      "cuda %s: leading dimensions lda=%lld ldb=%lld ldc=%lld too small for row-major %s[%lld,%lld], "
                      "%s[%lld,%lld], C[%lld,%lld] (need >= %lld, %lld, %lld)",
                      op, (long long)lda, (long long)ldb, (long long)ldc, ta == TP_TRANS ? "Aᵀ" : "A",
                      (long long)(ta == TP_TRANS ? k : m), (long long)(ta == TP_TRANS ? m : k),
                      tb == TP_TRANS ? "Bᵀ" : "B", (long long)(tb == TP_TRANS ? n : k),
                      (long long)(tb == TP_TRANS ? k : n), (long long)m, (long long)n, (long long)need_a,
                      (long long)need_b, (long long)need_c);
    return TP_OK;
}

tp_status cuda_gemm_f32(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                        int64_t ldc)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_gemm("gemm_f32", ta, tb, m, n, k, lda, ldb, ldc));
    if (m == 0 || n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUBLAS_CHECK(cublasSgemm_64(c->blas, cublas_op(tb), cublas_op(ta), n, m, k, &alpha, B, ldb, A, lda, &beta, C,
                                ldc));
    return TP_OK;
}

tp_status cuda_gemm_f64(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k,
                        double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                        double *C, int64_t ldc)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_gemm("gemm_f64", ta, tb, m, n, k, lda, ldb, ldc));
    if (m == 0 || n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUBLAS_CHECK(cublasDgemm_64(c->blas, cublas_op(tb), cublas_op(ta), n, m, k, &alpha, B, ldb, A, lda, &beta, C,
                                ldc));
    return TP_OK;
}

tp_status cuda_gemv_f32(tp_backend *be, tp_trans ta, int64_t m, int64_t n, float alpha, const float *A,
                        int64_t lda, const float *x, float beta, float *y)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (m < 0 || n < 0 || lda < max1(n))
        return tp_err(TP_ERR_RANGE, "cuda gemv_f32: m=%lld n=%lld >= 0 and lda=%lld >= max(1, n) required for "
                      "row-major A[%lld,%lld]", (long long)m, (long long)n, (long long)lda, (long long)m,
                      (long long)n);
    CUDA_ENTER(c);
    /* Row-major A [m,n] is column-major Aᵀ [n,m]: A·x is op T on it, Aᵀ·x op N. */
    CUBLAS_CHECK(cublasSgemv_64(c->blas, ta == TP_TRANS ? CUBLAS_OP_N : CUBLAS_OP_T, n, m, &alpha, A, lda, x, 1,
                                &beta, y, 1));
    return TP_OK;
}

tp_status cuda_syrk_f64(tp_backend *be, tp_trans ta, int64_t n, int64_t k, double alpha, const double *A,
                        int64_t lda, double beta, double *C, int64_t ldc)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    int64_t need_a = max1(ta == TP_TRANS ? n : k);
    if (n < 0 || k < 0 || lda < need_a || ldc < max1(n))
        return tp_err(TP_ERR_RANGE, "cuda syrk_f64: n=%lld k=%lld >= 0, lda=%lld >= %lld and ldc=%lld >= %lld "
                      "required for row-major A[%lld,%lld]", (long long)n, (long long)k, (long long)lda,
                      (long long)need_a, (long long)ldc, (long long)max1(n),
                      (long long)(ta == TP_TRANS ? k : n), (long long)(ta == TP_TRANS ? n : k));
    CUDA_ENTER(c);
    /* ta = TRANS: A [k,n] row-major is column-major M = Aᵀ [n,k] and AᵀA = M·Mᵀ
     * (op N); NO_TRANS: A [n,k] is M = Aᵀ [k,n] and A·Aᵀ = Mᵀ·M (op T). */
    CUBLAS_CHECK(cublasDsyrk_64(c->blas, CUBLAS_FILL_MODE_LOWER, ta == TP_TRANS ? CUBLAS_OP_N : CUBLAS_OP_T, n, k,
                                &alpha, A, lda, &beta, C, ldc));
    return TP_OK;
}

tp_status cuda_syr_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *A, int64_t lda)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (n < 0 || lda < max1(n))
        return tp_err(TP_ERR_RANGE, "cuda syr_f64: n=%lld >= 0 and lda=%lld >= max(1, n) required", (long long)n,
                      (long long)lda);
    CUDA_ENTER(c);
    CUBLAS_CHECK(cublasDsyr_64(c->blas, CUBLAS_FILL_MODE_LOWER, n, &alpha, x, 1, A, lda));
    return TP_OK;
}

tp_status cuda_dot_f64(tp_backend *be, int64_t n, const double *x, const double *y, double *out)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    *out = 0;
    if (n < 0) return tp_err(TP_ERR_RANGE, "cuda dot_f64: n=%lld must be >= 0", (long long)n);
    CUDA_ENTER(c);
    CUBLAS_CHECK(cublasDdot_64(c->blas, n, x, 1, y, 1, out));
    return TP_OK;
}

tp_status cuda_axpy_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *y)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (n < 0) return tp_err(TP_ERR_RANGE, "cuda axpy_f64: n=%lld must be >= 0", (long long)n);
    CUDA_ENTER(c);
    CUBLAS_CHECK(cublasDaxpy_64(c->blas, n, &alpha, x, 1, y, 1));
    return TP_OK;
}

tp_status cuda_nrm2_f64(tp_backend *be, int64_t n, const double *x, double *out)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    *out = 0;
    if (n < 0) return tp_err(TP_ERR_RANGE, "cuda nrm2_f64: n=%lld must be >= 0", (long long)n);
    CUDA_ENTER(c);
    CUBLAS_CHECK(cublasDnrm2_64(c->blas, n, x, 1, out));
    return TP_OK;
}

tp_status cuda_scal_f64(tp_backend *be, int64_t n, double alpha, double *x)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (n < 0) return tp_err(TP_ERR_RANGE, "cuda scal_f64: n=%lld must be >= 0", (long long)n);
    CUDA_ENTER(c);
    CUBLAS_CHECK(cublasDscal_64(c->blas, n, &alpha, x, 1));
    return TP_OK;
}
