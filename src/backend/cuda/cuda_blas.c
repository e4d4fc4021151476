/* cuda_blas.c — the dense linear algebra slots of the CUDA backend on cuBLAS, and
 * the model's `linear` / `linear_bwd` on F32, BF16 or F16 weights (contracts:
 * backend/backend.h, row-major BLAS semantics).
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

// defines: kern_f32_to_half
#include "kernels.h"

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

/* ---- linear ----------------------------------------------------------------------
 * Y = X·Wᵀ row-major is, column-major, Yᵀ [n, m] = op_T(W) · Xᵀ: cuBLAS gets W first
 * with op T, X second with op N (the same reading as the BLAS slots above).
 * F32 weights: cublasSgemm in the handle's math mode (TF32 when the backend was opened
 * with tf32). BF16 / F16 weights: X is rounded to the weights' type once per call
 * into scratch (tensor cores take both inputs in one type) and cublasGemmEx
 * accumulates in f32 (CUBLAS_COMPUTE_32F) into f32 Y. Rounding X to bf16 moves the
 * result by ~2^-9 relative per input: that is the bf16 parity tolerance (1e-2 on
 * logits), against the CPU, which widens W to f32 instead. */

static tp_status linear_dtype(const char *op, tp_dtype dt, cudaDataType *out)
{
    switch (dt) {
    case TP_DTYPE_F32: *out = CUDA_R_32F; return TP_OK;
    case TP_DTYPE_BF16: *out = CUDA_R_16BF; return TP_OK;
    case TP_DTYPE_F16: *out = CUDA_R_16F; return TP_OK;
    default:
        return tp_err(TP_ERR_UNSUPPORTED, "cuda %s: weight dtype %s (F32, BF16 or F16 expected)", op,
                      tp_dtype_name(dt));
    }
}

static tp_status check_linear(const char *op, int64_t m, int64_t k, int64_t ldx, const tp_linear_out *outs,
                              int nout)
{
    if (m < 0 || k < 1 || ldx < k || nout < 1)
        return tp_err(TP_ERR_RANGE, "cuda %s: m=%lld >= 0, k=%lld >= 1, ldx=%lld >= k and %d outputs >= 1 required",
                      op, (long long)m, (long long)k, (long long)ldx, nout);
    for (int i = 0; i < nout; i++) {
        cudaDataType dt = CUDA_R_32F;
        TP_CHECK(linear_dtype(op, outs[i].dtype, &dt));
        if (outs[i].n < 0 || outs[i].ldw < k || outs[i].ldy < max1(outs[i].n))
            return tp_err(TP_ERR_RANGE, "cuda %s: output %d: n=%lld >= 0, ldw=%lld >= k=%lld and ldy=%lld >= n required",
                          op, i, (long long)outs[i].n, (long long)outs[i].ldw, (long long)k, (long long)outs[i].ldy);
    }
    return TP_OK;
}

/* src [rows, cols] (row stride ld) rounded to dt into packed scratch. */
static tp_status to_half(struct cuda_ctx *c, tp_dtype dt, const float *src, int64_t rows, int64_t cols, int64_t ld,
                         void **out)
{
    TP_CHECK(cuda_scratch(c, CUDA_SCRATCH_GEMM, (size_t)rows * (size_t)cols * 2, out));
    CUDA_CHECK(kern_f32_to_half(c->stream, *out, dt == TP_DTYPE_BF16 ? KERN_BF16 : KERN_F16, src, rows, cols, ld));
    return TP_OK;
}

/* C (col-major [M, N], ldc) = alpha · op(A) · B + beta · C with A of type dt and B
 * already in dt: Sgemm for F32, GemmEx with f32 accumulation otherwise. */
static tp_status gemm_typed(struct cuda_ctx *c, cublasOperation_t opa, int64_t M, int64_t N, int64_t K,
                            const void *A, int64_t lda, const void *B, int64_t ldb, float beta, float *C,
                            int64_t ldc, tp_dtype dt)
{
    const float one = 1.0f;
    if (dt == TP_DTYPE_F32) {
        CUBLAS_CHECK(cublasSgemm_64(c->blas, opa, CUBLAS_OP_N, M, N, K, &one, A, lda, B, ldb, &beta, C, ldc));
        return TP_OK;
    }
    cudaDataType t = CUDA_R_32F;
    TP_CHECK(linear_dtype("linear", dt, &t));
    CUBLAS_CHECK(cublasGemmEx_64(c->blas, opa, CUBLAS_OP_N, M, N, K, &one, A, t, lda, B, t, ldb, &beta, C,
                                 CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return TP_OK;
}

tp_status cuda_linear(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx, const tp_linear_out *outs,
                      int nout)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_linear("linear", m, k, ldx, outs, nout));
    if (m == 0) return TP_OK;
    CUDA_ENTER(c);
    const void *xh = NULL;   /* X in the 16-bit type of the last converted output */
    tp_dtype xh_dt = TP_DTYPE_F32;
    for (int i = 0; i < nout; i++) {
        const tp_linear_out *o = &outs[i];
        if (o->n == 0) continue;
        const void *B = x;
        int64_t ldb = ldx;
        if (o->dtype != TP_DTYPE_F32) {
            if (!xh || xh_dt != o->dtype) {
                void *p;
                TP_CHECK(to_half(c, o->dtype, x, m, k, ldx, &p));
                xh = p, xh_dt = o->dtype;
            }
            B = xh, ldb = k;
        }
        TP_CHECK(gemm_typed(c, CUBLAS_OP_T, o->n, m, k, o->w, o->ldw, B, ldb, 0.0f, o->y, o->ldy, o->dtype));
    }
    return TP_OK;
}

/* dX = Σ_i dY_i · W_i: column-major dXᵀ [k, m] = W_i (stored [k, n] col-major, op N) ·
 * dY_iᵀ [n, m], the first product written (beta 0), the rest added (beta 1). */
tp_status cuda_linear_bwd(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx,
                          const tp_linear_out *outs, int nout, const float *const *dy, float *dx)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    (void)x;   /* no weight gradient */
    TP_CHECK(check_linear("linear_bwd", m, k, ldx, outs, nout));
    if (m == 0) return TP_OK;
    CUDA_ENTER(c);
    float beta = 0.0f;
    for (int i = 0; i < nout; i++) {
        const tp_linear_out *o = &outs[i];
        if (o->n == 0) continue;
        const void *B = dy[i];
        int64_t ldb = o->ldy;
        if (o->dtype != TP_DTYPE_F32) {
            void *p;
            TP_CHECK(to_half(c, o->dtype, dy[i], m, o->n, o->ldy, &p));
            B = p, ldb = o->n;
        }
        TP_CHECK(gemm_typed(c, CUBLAS_OP_N, k, m, o->n, o->w, o->ldw, B, ldb, beta, dx, ldx, o->dtype));
        beta = 1.0f;
    }
    if (beta == 0.0f)   /* every output empty: dX = 0 */
        CUDA_CHECK(cudaMemset2DAsync(dx, (size_t)ldx * sizeof(float), 0, (size_t)k * sizeof(float), (size_t)m,
                                     c->stream));
    return TP_OK;
}
