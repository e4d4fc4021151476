/* cuda_ops.c — the forward-pass slots of the CUDA backend and their backward (all
 * but linear, in cuda_blas.c): arguments checked here
 * (TP_ERR_RANGE with the sizes), then one launch of a kernel of kernels/ whose
 * cudaError_t CUDA_CHECK turns into a tp_status. Contracts: backend/backend.h. */
#include "backend/cuda/cuda_ctx.h"

// defines: kern_rmsnorm, kern_rope, kern_silu_mul, kern_add, kern_embed, kern_dtype, kern_attention,
// kern_*_bwd, kern_ids_check
#include "kernels.h"

#include <limits.h>

tp_status cuda_rmsnorm(tp_backend *be, float *out, const float *x, const float *w, int64_t rows, int64_t d,
                       float eps)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    /* One block per row: the grid's x dimension takes up to 2^31 - 1 blocks. */
    if (rows < 0 || rows > INT_MAX || d < 1)
        return tp_err(TP_ERR_RANGE, "cuda rmsnorm: rows %lld must be in [0, %d] and d %lld >= 1", (long long)rows,
                      INT_MAX, (long long)d);
    if (rows == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_rmsnorm(c->stream, out, x, w, rows, d, eps));
    return TP_OK;
}

/* Positions are device memory and the tables' length is not an argument: the caller
 * keeps pos[r] in [0, max_pos), as on the CPU. */
static tp_status check_rope(const char *op, int64_t rows, int nh, int dh)
{
    if (rows < 0 || nh < 1 || dh < 2 || dh % 2 != 0)
        return tp_err(TP_ERR_RANGE, "cuda %s: rows %lld >= 0, heads %d >= 1 and an even head dim %d >= 2 required",
                      op, (long long)rows, nh, dh);
    return TP_OK;
}

/* Both directions: the rotation (rope) and its transpose (rope_bwd). */
static tp_status rope_either(tp_backend *be, int inverse, float *x, int64_t rows, int nh, int dh,
                             const int32_t *pos, const float *cos, const float *sin)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_rope(inverse ? "rope_bwd" : "rope", rows, nh, dh));
    if (rows == 0) return TP_OK;
    CUDA_ENTER(c);
    if (inverse) CUDA_CHECK(kern_rope_bwd(c->stream, x, rows, nh, dh, pos, cos, sin));
    else CUDA_CHECK(kern_rope(c->stream, x, rows, nh, dh, pos, cos, sin));
    return TP_OK;
}

tp_status cuda_rope(tp_backend *be, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
                    const float *cos, const float *sin)
{
    return rope_either(be, 0, x, rows, nh, dh, pos, cos, sin);
}

tp_status cuda_silu_mul(tp_backend *be, float *gate, const float *up, size_t n)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_silu_mul(c->stream, gate, up, n));
    return TP_OK;
}

tp_status cuda_add(tp_backend *be, float *y, const float *x, size_t n)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_add(c->stream, y, x, n));
    return TP_OK;
}

/* The ids are device memory, so they are checked on the device: a kernel folds the
 * first bad row into ctx->bad_row (set to all ones before it); this waits for it (one
 * 8-byte download and a stream sync, once per forward pass) and fails as the CPU
 * backend does, TP_ERR_RANGE naming the id and its row. */
static tp_status ids_report(struct cuda_ctx *c, const char *op, const int32_t *ids, int64_t vocab)
{
    unsigned long long bad = 0;
    CUDA_CHECK(cudaMemcpyAsync(&bad, c->bad_row, sizeof bad, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (bad == ULLONG_MAX) return TP_OK;
    int32_t id = 0;
    CUDA_CHECK(cudaMemcpyAsync(&id, ids + bad, sizeof id, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return tp_err(TP_ERR_RANGE, "%s: token id %d at row %llu is outside the vocabulary [0, %lld)", op, (int)id, bad,
                  (long long)vocab);
}

static tp_status check_embed(const char *op, int64_t vocab, int64_t d, int64_t rows)
{
    if (rows < 0 || vocab < 0 || d < 1)
        return tp_err(TP_ERR_RANGE, "cuda %s: rows %lld >= 0, vocab %lld >= 0 and d %lld >= 1 required", op,
                      (long long)rows, (long long)vocab, (long long)d);
    return TP_OK;
}

/* embed's kernel writes a bad row as zeros and records it itself. */
tp_status cuda_embed(tp_backend *be, float *out, const void *table, tp_dtype dt, int64_t vocab, int64_t d,
                     const int32_t *ids, int64_t rows)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    kern_dtype kd;
    switch (dt) {
    case TP_DTYPE_F32: kd = KERN_F32; break;
    case TP_DTYPE_BF16: kd = KERN_BF16; break;
    case TP_DTYPE_F16: kd = KERN_F16; break;
    default:
        return tp_err(TP_ERR_UNSUPPORTED, "cuda embed: table dtype %s (F32, BF16 or F16 expected)",
                      tp_dtype_name(dt));
    }
    TP_CHECK(check_embed("embed", vocab, d, rows));
    if (rows == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaMemsetAsync(c->bad_row, 0xff, sizeof *c->bad_row, c->stream));
    CUDA_CHECK(kern_embed(c->stream, out, table, kd, vocab, d, ids, rows, c->bad_row));
    return ids_report(c, "embed", ids, vocab);
}

/* The ids are checked before anything is added: a bad id leaves dtable unchanged. */
tp_status cuda_embed_bwd(tp_backend *be, float *dtable, const float *dout, int64_t vocab, int64_t d,
                         const int32_t *ids, int64_t rows)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_embed("embed_bwd", vocab, d, rows));
    if (rows == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaMemsetAsync(c->bad_row, 0xff, sizeof *c->bad_row, c->stream));
    CUDA_CHECK(kern_ids_check(c->stream, ids, rows, vocab, c->bad_row));
    TP_CHECK(ids_report(c, "embed_bwd", ids, vocab));
    CUDA_CHECK(kern_embed_bwd(c->stream, dtable, dout, vocab, d, ids, rows));
    return TP_OK;
}

/* ---- backward of the row and element-wise ops ---------------------------------------- */

tp_status cuda_rmsnorm_bwd(tp_backend *be, float *dx, float *dw, const float *dout, const float *x, const float *w,
                           int64_t rows, int64_t d, float eps)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (rows < 0 || rows > INT_MAX || d < 1)
        return tp_err(TP_ERR_RANGE, "cuda rmsnorm_bwd: rows %lld must be in [0, %d] and d %lld >= 1",
                      (long long)rows, INT_MAX, (long long)d);
    if (rows == 0 && !dw) return TP_OK;
    CUDA_ENTER(c);
    void *inv = NULL;
    if (dw && rows > 0) TP_CHECK(cuda_scratch(c, CUDA_SCRATCH_ROWS, (size_t)rows * sizeof(float), &inv));
    CUDA_CHECK(kern_rmsnorm_bwd(c->stream, dx, dw, inv, dout, x, w, rows, d, eps));
    return TP_OK;
}

tp_status cuda_rope_bwd(tp_backend *be, float *dx, int64_t rows, int nh, int dh, const int32_t *pos,
                        const float *cos, const float *sin)
{
    return rope_either(be, 1, dx, rows, nh, dh, pos, cos, sin);
}

tp_status cuda_silu_mul_bwd(tp_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, size_t n)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (n == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_silu_mul_bwd(c->stream, dgate, dup, dout, gate, up, n));
    return TP_OK;
}

/* ---- attention ----------------------------------------------------------------------
 * One launch per sequence (kernels/attention.cu): sequences of a varlen batch have
 * their own lengths, offsets and pointers. The shape is checked here against what
 * the kernels take (a head dimension up to 1024, up to 65535 heads). */

static tp_status check_attn(const char *op, const tp_attn_shape *a, const tp_attn_seq *seqs, int nseq,
                            int need_p)
{
    if (a->H < 1 || a->K < 1 || a->H % a->K != 0 || a->H > 65535 || a->dh < 1 || a->dh > 1024 ||
        a->ldq < (int64_t)a->H * a->dh || a->ldz < (int64_t)a->H * a->dh || a->ldk < (int64_t)a->K * a->dh ||
        nseq < 0)
        return tp_err(TP_ERR_RANGE, "cuda %s: H=%d, K=%d (dividing H, H <= 65535), dh=%d (1..1024), ldq=%lld, "
                      "ldz=%lld >= H*dh and ldk=%lld >= K*dh required", op, a->H, a->K, a->dh, (long long)a->ldq,
                      (long long)a->ldz, (long long)a->ldk);
    for (int s = 0; s < nseq; s++) {
        if (seqs[s].nq < 0 || seqs[s].off < 0 || seqs[s].nq > INT_MAX || seqs[s].off + seqs[s].nq > INT_MAX)
            return tp_err(TP_ERR_RANGE, "cuda %s: sequence %d: %lld queries at offset %lld", op, s,
                          (long long)seqs[s].nq, (long long)seqs[s].off);
        if (need_p && !seqs[s].p)
            return tp_err(TP_ERR_INTERNAL, "cuda %s: sequence %d has no pattern buffer for this mode", op, s);
    }
    return TP_OK;
}

tp_status cuda_attention(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs, int nseq,
                         tp_attn_mode mode)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    if (mode != TP_ATTN_FUSED && mode != TP_ATTN_PATTERN && mode != TP_ATTN_PV)
        return tp_err(TP_ERR_INTERNAL, "cuda attention: mode %d", (int)mode);
    TP_CHECK(check_attn("attention", a, seqs, nseq, mode != TP_ATTN_FUSED));
    CUDA_ENTER(c);
    for (int s = 0; s < nseq; s++) {
        const tp_attn_seq *q = &seqs[s];
        CUDA_CHECK(kern_attention(c->stream, (int)mode, q->q, q->k, q->v, q->z, q->p, q->nq, q->off, a->H, a->K,
                                  a->dh, a->ldq, a->ldk, a->ldz, a->scale));
    }
    return TP_OK;
}

tp_status cuda_attention_bwd(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs,
                             const tp_attn_grad *grads, int nseq)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    TP_CHECK(check_attn("attention_bwd", a, seqs, nseq, 0));
    int64_t nq_max = 0;
    for (int s = 0; s < nseq; s++) nq_max = seqs[s].nq > nq_max ? seqs[s].nq : nq_max;
    CUDA_ENTER(c);
    void *stats = NULL;
    if (nq_max > 0)
        TP_CHECK(cuda_scratch(c, CUDA_SCRATCH_ATTN, 3 * (size_t)a->H * (size_t)nq_max * sizeof(float), &stats));
    for (int s = 0; s < nseq; s++) {
        const tp_attn_seq *q = &seqs[s];
        const tp_attn_grad *g = &grads[s];
        if (q->nq == 0) {   /* no query reads the prefix's keys: their gradients are 0 */
            size_t pitch = (size_t)a->ldk * sizeof(float), width = (size_t)a->K * (size_t)a->dh * sizeof(float);
            if (q->off > 0) {
                CUDA_CHECK(cudaMemset2DAsync(g->dk, pitch, 0, width, (size_t)q->off, c->stream));
                CUDA_CHECK(cudaMemset2DAsync(g->dv, pitch, 0, width, (size_t)q->off, c->stream));
            }
            continue;
        }
        CUDA_CHECK(kern_attention_bwd(c->stream, q->q, q->k, q->v, q->p, g->dz, g->dq, g->dk, g->dv, g->dp, stats,
                                      q->nq, q->off, a->H, a->K, a->dh, a->ldq, a->ldk, a->ldz, a->scale));
    }
    return TP_OK;
}
