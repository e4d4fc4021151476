/* cuda_ops.c — the forward-pass slots of the CUDA backend: arguments checked here
 * (TP_ERR_RANGE with the sizes), then one launch of a kernel of kernels/ whose
 * cudaError_t CUDA_CHECK turns into a tp_status. Contracts: backend/backend.h. */
#include "backend/cuda/cuda_ctx.h"

// defines: kern_rmsnorm, kern_rope, kern_silu_mul, kern_add, kern_embed, kern_dtype
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

tp_status cuda_rope(tp_backend *be, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
                    const float *cos, const float *sin)
{
    struct cuda_ctx *c = cuda_ctx_of(be);
    /* Positions are device memory and the tables' length is not an argument: the
     * caller keeps pos[r] in [0, max_pos), as on the CPU. */
    if (rows < 0 || nh < 1 || dh < 2 || dh % 2 != 0)
        return tp_err(TP_ERR_RANGE, "cuda rope: rows %lld >= 0, heads %d >= 1 and an even head dim %d >= 2 required",
                      (long long)rows, nh, dh);
    if (rows == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(kern_rope(c->stream, x, rows, nh, dh, pos, cos, sin));
    return TP_OK;
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

/* The ids are device memory, so they are checked on the device: the kernel writes a
 * bad row as zeros and records the first bad row in ctx->bad_row; this call waits for
 * it (one 8-byte download and a stream sync, once per forward pass) and fails as the
 * CPU backend does, TP_ERR_RANGE naming the id and its row. */
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
    if (rows < 0 || vocab < 0 || d < 1)
        return tp_err(TP_ERR_RANGE, "cuda embed: rows %lld >= 0, vocab %lld >= 0 and d %lld >= 1 required",
                      (long long)rows, (long long)vocab, (long long)d);
    if (rows == 0) return TP_OK;
    CUDA_ENTER(c);
    CUDA_CHECK(cudaMemsetAsync(c->bad_row, 0xff, sizeof *c->bad_row, c->stream));
    CUDA_CHECK(kern_embed(c->stream, out, table, kd, vocab, d, ids, rows, c->bad_row));
    unsigned long long bad = 0;
    CUDA_CHECK(cudaMemcpyAsync(&bad, c->bad_row, sizeof bad, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    if (bad == ULLONG_MAX) return TP_OK;
    int32_t id = 0;
    CUDA_CHECK(cudaMemcpyAsync(&id, ids + bad, sizeof id, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    return tp_err(TP_ERR_RANGE, "embed: token id %d at row %llu is outside the vocabulary [0, %lld)", (int)id, bad,
                  (long long)vocab);
}
