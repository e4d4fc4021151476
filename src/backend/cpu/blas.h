/* blas.h — the CPU backend's ops that go to OpenBLAS.
 *
 * The analyses' dense linear algebra (gemm_f32/f64, gemv_f32, syrk_f64/f32, syr_f64,
 * dot/axpy/nrm2/scal_f64): thin wrappers over the cblas calls the analyses made
 * themselves before, with unit strides and the upper triangle, so results are the
 * same bits. And the OpenBLAS path of `linear`: f32 weights straight from their
 * mapping, BF16/F16 converted to f32 a tile of rows at a time into a workspace the
 * backend owns, then one sgemm per tile. The backward of `linear` (dX = dY · W) takes
 * the same path: weight gradients are never formed, so it is one NN sgemm per output.
 *
 * Sizes and leading dimensions must fit OpenBLAS's blasint (TP_ERR_RANGE otherwise).
 * Like every CPU op: one calling thread at a time (the workspace and the pool are
 * process-wide).
 */
#ifndef TP_BACKEND_CPU_BLAS_H
#define TP_BACKEND_CPU_BLAS_H

#include "backend/backend.h"

#include <stddef.h>

/* f32 tile of a converted weight matrix, grown to the largest tile asked for. */
typedef struct {
    float *p;
    size_t elems;
} cpu_wtile;

/* Y = X · Wᵀ for one output of `linear` through sgemm (any dtype tp_convert_to_f32
 * reads; non-f32 weights are converted per tile into ws). */
tp_status cpu_blas_linear(cpu_wtile *ws, int64_t m, int64_t k, const float *x, int64_t ldx,
                          const tp_linear_out *o);

/* Its backward, dX [m, k] (row stride ldx) = Σ_i dY_i · W_i (backend.h linear_bwd):
 * one sgemm per output (per tile of rows for BF16/F16), the first writing, the rest
 * adding. */
tp_status cpu_blas_linear_bwd(cpu_wtile *ws, int64_t m, int64_t k, const tp_linear_out *outs, int nout,
                              const float *const *dy, float *dx, int64_t ldx);

/* The slots of backend.h's "dense linear algebra" section, same arguments. */
tp_status cpu_be_gemm_f32(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                          int64_t ldc);
tp_status cpu_be_gemm_f64(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k,
                          double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                          double *C, int64_t ldc);
tp_status cpu_be_gemv_f32(tp_backend *be, tp_trans ta, int64_t m, int64_t n, float alpha, const float *A,
                          int64_t lda, const float *x, float beta, float *y);
tp_status cpu_be_syrk_f64(tp_backend *be, tp_trans ta, int64_t n, int64_t k, double alpha, const double *A,
                          int64_t lda, double beta, double *C, int64_t ldc);
tp_status cpu_be_syrk_f32(tp_backend *be, tp_trans ta, int64_t n, int64_t k, float alpha, const float *A,
                          int64_t lda, float beta, float *C, int64_t ldc);
tp_status cpu_be_syr_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *A, int64_t lda);
tp_status cpu_be_dot_f64(tp_backend *be, int64_t n, const double *x, const double *y, double *out);
tp_status cpu_be_axpy_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *y);
tp_status cpu_be_nrm2_f64(tp_backend *be, int64_t n, const double *x, double *out);
tp_status cpu_be_scal_f64(tp_backend *be, int64_t n, double alpha, double *x);

#endif
