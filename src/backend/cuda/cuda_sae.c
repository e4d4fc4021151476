/* cuda_sae.c — the SAE's training slots of the CUDA backend (backend.h's sae_*):
 * arguments checked here (TP_ERR_RANGE with the sizes), then the launches of
 * kernels/sae.cu through CUDA_CHECK. Queued on the context's stream, except
 * sae_adam, which waits for the gradient's norm (the clipping factor is a host
 * decision, as on the CPU). */
#include "backend/cuda/cuda_ctx.h"

// defines: kern_sae_encode_in, kern_sae_topk, kern_sae_decode, kern_sae_sparse_bwd, kern_sae_project,
// kern_sae_sumsq, kern_sae_adam, kern_sae_renorm, kern_sae_relu, kern_sae_residual, kern_sae_relu_bwd_init,
// kern_sae_relu_bwd_pre
#include "kernels.h"

#include <limits.h>
#include <math.h>

static tp_status check_rows(const char *op, int64_t n, int64_t d)
{
    if (n < 0 || n > INT_MAX || d < 1)
        return tp_err(TP_ERR_RANGE, "cuda %s: rows %lld must be in [0, %d] and width %lld >= 1", op, (long long)n,
                      INT_MAX, (long long)d);
    return TP_OK;
}

tp_status cuda_sae_encode_in(tp_backend *be, const float *x, int64_t n, int64_t d, float s, const float *b_dec,
                             bool sub_b_dec, float *u, float *xt, double *sum_u, double *sqnorm)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_rows("sae_encode_in", n, d));
    if (n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_encode_in(c->stream, x, n, d, s, b_dec, sub_b_dec, u, xt, sum_u, sqnorm));
    return TP_OK;
}

tp_status cuda_sae_topk(tp_backend *be, float *pre, int64_t n, int64_t F, const float *bias, const int32_t *cand,
                        int64_t n_cand, int64_t k, int64_t *ptr, int32_t *idx, float *val)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_rows("sae_topk", n, F));
    if (!cand) n_cand = F;
    if (F > INT32_MAX || n_cand < 1 || n_cand > F || k < 1 || k > n_cand)
        return tp_err(TP_ERR_RANGE, "cuda sae_topk: k = %lld of %lld candidates of %lld latents", (long long)k,
                      (long long)n_cand, (long long)F);
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_topk(c->stream, pre, n, F, bias, cand, n_cand, (int)k, ptr, idx, val));
    return TP_OK;
}

tp_status cuda_sae_decode(tp_backend *be, int64_t n, int64_t d, tp_sae_codes codes, const float *W, const float *b,
                          const float *u, float *out, double *fires, double *active, double *sqsum)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_rows("sae_decode", n, d));
    if (n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_decode(c->stream, n, d, codes.ptr, codes.idx, codes.val, W, b, u, out, fires, active, sqsum));
    return TP_OK;
}

tp_status cuda_sae_sparse_bwd(tp_backend *be, const tp_sae_bwd *a)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_rows("sae_sparse_bwd", a->n, a->d));
    if (a->F < 1) return tp_err(TP_ERR_RANGE, "cuda sae_sparse_bwd: %lld latents", (long long)a->F);
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_sparse_bwd(c->stream, a->n, a->d, a->F, a->codes.ptr, a->codes.idx, a->codes.val, a->delta,
                                   a->coef, a->aux.ptr, a->aux.idx, a->aux.val, a->adelta, a->aux_coef, a->xt,
                                   a->W_enc, a->W_dec, a->sub_b_dec, a->grad));
    return TP_OK;
}

tp_status cuda_sae_adam(tp_backend *be, const tp_sae_adam *a, double *grad_norm)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (a->F < 1 || a->F > INT_MAX || a->d < 1 || a->P < 2 * a->F * a->d)
        return tp_err(TP_ERR_RANGE, "cuda sae_adam: %lld parameters for %lld latents of width %lld",
                      (long long)a->P, (long long)a->F, (long long)a->d);
    const size_t fd = (size_t)a->F * (size_t)a->d, P = (size_t)a->P;
    double *sq = NULL;
    TP_CHECK(cuda_scratch(c, CUDA_SCRATCH_ROWS, sizeof *sq, (void **)&sq));
    CUDA_ENTER(c);
    if (a->decoder_unit_norm) CUDA_CHECK(kern_sae_project(c->stream, a->params + fd, a->grad + fd, a->F, a->d));
    CUDA_CHECK(kern_sae_sumsq(c->stream, a->grad, P, sq));
    double h = 0;
    CUDA_CHECK(cudaMemcpyAsync(&h, sq, sizeof h, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    const double gn = sqrt(h);
    *grad_norm = gn;
    const double coef = a->max_grad_norm > 0 ? a->max_grad_norm / (gn + 1e-6) : 1.0;
    CUDA_CHECK(kern_sae_adam(c->stream, a->params, a->grad, a->m, a->v, P, (float)coef, coef < 1, a->step_size,
                             a->bc2, a->eps, a->w1, a->b2, a->w2));
    if (a->decoder_unit_norm) CUDA_CHECK(kern_sae_renorm(c->stream, a->params + fd, a->F, a->d));
    return TP_OK;
}

tp_status cuda_sae_relu(tp_backend *be, float *pre, int64_t n, int64_t F, int64_t d, const float *b_enc,
                        const float *W_dec, float *dec_norm, double *fires, double *active, double *l1)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_rows("sae_relu", n, F));
    if (F > INT_MAX || d < 1)
        return tp_err(TP_ERR_RANGE, "cuda sae_relu: %lld latents of width %lld", (long long)F, (long long)d);
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_relu(c->stream, pre, n, F, d, b_enc, W_dec, dec_norm, fires, active, l1));
    return TP_OK;
}

tp_status cuda_sae_residual(tp_backend *be, int64_t n, int64_t d, const float *b, const float *u, float *delta,
                            double *sqsum)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_rows("sae_residual", n, d));
    if (n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_residual(c->stream, n, d, b, u, delta, sqsum));
    return TP_OK;
}

static tp_status check_relu_bwd(const char *op, const tp_sae_relu_bwd *a)
{
    TP_CHECK(check_rows(op, a->n, a->d));
    if (a->F < 1) return tp_err(TP_ERR_RANGE, "cuda %s: %lld latents", op, (long long)a->F);
    return TP_OK;
}

tp_status cuda_sae_relu_bwd_init(tp_backend *be, const tp_sae_relu_bwd *a)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_relu_bwd("sae_relu_bwd_init", a));
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_relu_bwd_init(c->stream, a->n, a->d, a->F, a->delta, a->coef, a->grad));
    return TP_OK;
}

tp_status cuda_sae_relu_bwd_pre(tp_backend *be, const tp_sae_relu_bwd *a)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_relu_bwd("sae_relu_bwd_pre", a));
    if (a->n == 0) return tp_err(TP_ERR_RANGE, "cuda sae_relu_bwd_pre: no rows");
    CUDA_ENTER(c);
    CUDA_CHECK(kern_sae_relu_bwd_pre(c->stream, a->n, a->d, a->F, a->f, a->W_dec, a->dec_norm, a->l1_coef, a->G,
                                     a->colsum, a->grad));
    return TP_OK;
}
