/* cuda_ctx.h — inside the CUDA backend only: the context behind tp_backend.context
 * and the slot functions that cuda_backend.c puts in the table (cuda_ops.c: the
 * forward-pass kernels of kernels/; cuda_blas.c: cuBLAS). Their contracts are the
 * slots' in backend/backend.h.
 *
 * Every slot makes the context's device current first (a process may hold backends
 * on several GPUs), enqueues its work on the context's stream and returns without
 * waiting, except where a result goes to the host (embed's id check, dot, nrm2) or
 * the host buffer must be free again on return (upload, download).
 */
#ifndef TP_BACKEND_CUDA_CTX_H
#define TP_BACKEND_CUDA_CTX_H

#include "backend/backend.h"
#include "backend/cuda/cuda_check.h"

#include <stdbool.h>
#include <stddef.h>

/* Device scratch an op needs for the length of its queued work (linear's bf16 / f16
 * copy of X, attention_bwd's row statistics, rmsnorm_bwd's row scales). Grown on
 * demand (after a stream sync, since queued work may still read the old block), freed
 * at close; stream order keeps one op's use apart from the next one's. */
enum { CUDA_SCRATCH_GEMM = 0, CUDA_SCRATCH_ATTN, CUDA_SCRATCH_ROWS, CUDA_SCRATCH_N };

struct cuda_ctx {
    int device;
    cudaStream_t stream;           /* non-blocking: never serialises with the legacy stream */
    /* prefetch's lane: copies overlap the compute stream; events order the two */
    cudaStream_t copy_stream;
    cudaEvent_t compute_done, copies_done;
    /* download_async's completion handles, recorded on `stream` after each copy */
    cudaEvent_t download_done[TP_BE_COPY_SLOTS];
    cublasHandle_t blas;           /* bound to stream, pointer mode host */
    bool tf32;
    unsigned long long *bad_row;   /* device: first row of the last embed with a bad id */
    struct { void *ptr; size_t bytes; } scratch[CUDA_SCRATCH_N];
    char device_name[256];
    char arch[16];                 /* "sm_90" */
};

static inline struct cuda_ctx *cuda_ctx_of(const tp_backend *be) { return (struct cuda_ctx *)be->context; }

/* The device of ctx becomes the calling thread's current one. */
#define CUDA_ENTER(ctx) CUDA_CHECK(cudaSetDevice((ctx)->device))

/* cuda_backend.c: *p = scratch `slot` of at least `bytes` bytes (see above). */
tp_status cuda_scratch(struct cuda_ctx *c, int slot, size_t bytes, void **p);

/* cuda_ops.c */
tp_status cuda_rmsnorm(tp_backend *be, float *out, const float *x, const float *w, int64_t rows, int64_t d,
                       float eps);
tp_status cuda_rope(tp_backend *be, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
                    const float *cos, const float *sin);
tp_status cuda_silu_mul(tp_backend *be, float *gate, const float *up, size_t n);
tp_status cuda_add(tp_backend *be, float *y, const float *x, size_t n);
tp_status cuda_embed(tp_backend *be, float *out, const void *table, tp_dtype dt, int64_t vocab, int64_t d,
                     const int32_t *ids, int64_t rows);
tp_status cuda_rmsnorm_bwd(tp_backend *be, float *dx, float *dw, const float *dout, const float *x, const float *w,
                           int64_t rows, int64_t d, float eps);
tp_status cuda_rope_bwd(tp_backend *be, float *dx, int64_t rows, int nh, int dh, const int32_t *pos,
                        const float *cos, const float *sin);
tp_status cuda_silu_mul_bwd(tp_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, size_t n);
tp_status cuda_embed_bwd(tp_backend *be, float *dtable, const float *dout, int64_t vocab, int64_t d,
                         const int32_t *ids, int64_t rows);
tp_status cuda_attention(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs, int nseq,
                         tp_attn_mode mode);
tp_status cuda_attention_bwd(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs,
                             const tp_attn_grad *grads, int nseq);

/* cuda_sae.c: the SAE's training ops */
tp_status cuda_sae_encode_in(tp_backend *be, const float *x, int64_t n, int64_t d, float s, const float *b_dec,
                             bool sub_b_dec, float *u, float *xt, double *sum_u, double *sqnorm);
tp_status cuda_sae_topk(tp_backend *be, float *pre, int64_t n, int64_t F, const float *bias, const int32_t *cand,
                        int64_t n_cand, int64_t k, int64_t *ptr, int32_t *idx, float *val);
tp_status cuda_sae_decode(tp_backend *be, int64_t n, int64_t d, tp_sae_codes codes, const float *W, const float *b,
                          const float *u, float *out, double *fires, double *active, double *sqsum);
tp_status cuda_sae_sparse_bwd(tp_backend *be, const tp_sae_bwd *a);
tp_status cuda_sae_adam(tp_backend *be, const tp_sae_adam *a, double *grad_norm);
tp_status cuda_sae_relu(tp_backend *be, float *pre, int64_t n, int64_t F, int64_t d, const float *b_enc,
                        const float *W_dec, float *dec_norm, double *fires, double *active, double *l1);
tp_status cuda_sae_residual(tp_backend *be, int64_t n, int64_t d, const float *b, const float *u, float *delta,
                            double *sqsum);
tp_status cuda_sae_relu_bwd_init(tp_backend *be, const tp_sae_relu_bwd *a);
tp_status cuda_sae_relu_bwd_pre(tp_backend *be, const tp_sae_relu_bwd *a);

/* cuda_blas.c */
tp_status cuda_linear(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx, const tp_linear_out *outs,
                      int nout);
tp_status cuda_linear_bwd(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx,
                          const tp_linear_out *outs, int nout, const float *const *dy, float *dx);
tp_status cuda_gemm_f32(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                        int64_t ldc);
tp_status cuda_gemm_f64(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k,
                        double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                        double *C, int64_t ldc);
tp_status cuda_gemv_f32(tp_backend *be, tp_trans ta, int64_t m, int64_t n, float alpha, const float *A,
                        int64_t lda, const float *x, float beta, float *y);
tp_status cuda_syrk_f64(tp_backend *be, tp_trans ta, int64_t n, int64_t k, double alpha, const double *A,
                        int64_t lda, double beta, double *C, int64_t ldc);
tp_status cuda_syr_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *A, int64_t lda);
tp_status cuda_dot_f64(tp_backend *be, int64_t n, const double *x, const double *y, double *out);
tp_status cuda_axpy_f64(tp_backend *be, int64_t n, double alpha, const double *x, double *y);
tp_status cuda_nrm2_f64(tp_backend *be, int64_t n, const double *x, double *out);
tp_status cuda_scal_f64(tp_backend *be, int64_t n, double alpha, double *x);

#endif
