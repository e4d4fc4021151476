#include "analysis/sae/sae_ce.h"

#include "core/progress.h"
#include "dist/world.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tp_status sae_ce_text_open(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const int64_t *exclude_docs,
                           size_t n_exclude, int64_t num_docs, uint64_t seed, tp_dataset *out)
{
    if (num_docs < 1) return tp_err(TP_ERR_CONFIG, "sae ce: %lld held-out documents asked for", (long long)num_docs);
    return dataset_open_heldout(spec, tok, eos_id, "sae ce (held-out text)", exclude_docs, n_exclude,
                                (size_t)num_docs, seed, out);
}

/* ---- the callback on (layer, pt) ---- */

typedef enum { SPLICE_NONE = 0, SPLICE_ZERO, SPLICE_REPLACE } splice_mode;

typedef struct {
    splice_mode mode;
    sae_ce_replace_fn replace;
    void *user;
    const int32_t *ids;     /* the batch: B sequences of T tokens */
    int B, T;
    int skip_first;
    int32_t bos_id;
    int64_t cols;
    float *in, *out;        /* gathered rows [B*T, cols] each */
    int64_t fired;          /* calls in this pass */
    int64_t replaced;       /* rows rewritten in this pass */
} splice_ctx;

/* The capture phase's mask: row r of the batch (position r mod T) is kept as it is. */
static inline int splice_keeps(const splice_ctx *c, int64_t r)
{
    return (c->skip_first && r % c->T == 0) || (c->bos_id >= 0 && c->ids[r] == c->bos_id);
}

/* data: rows [r0, r0 + rows) of the batch, r0 = info->seq · T (the whole batch in
 * one call today; a call covering whole sequences from info->seq is handled too). */
static tp_status splice_hook(const tp_hook_info *info, float *data, void *user)
{
    splice_ctx *c = user;
    int64_t rows = info->shape[0] * info->shape[1], cols = 1, r0 = (int64_t)info->seq * c->T;
    for (int k = 2; k < info->ndim; k++) cols *= info->shape[k];
    if (r0 < 0 || r0 + rows > (int64_t)c->B * c->T || cols != c->cols)
        return tp_err(TP_ERR_INTERNAL, "sae ce: %s delivered rows [%lld, %lld) x %lld, the batch has %lld x %lld",
                      info->name, (long long)r0, (long long)(r0 + rows), (long long)cols, (long long)c->B * c->T,
                      (long long)c->cols);
    c->fired++;
    if (c->mode == SPLICE_NONE) return TP_OK;
    const size_t w = (size_t)cols;
    int64_t n = 0;
    if (c->mode == SPLICE_ZERO) {
        for (int64_t r = 0; r < rows; r++)
            if (!splice_keeps(c, r0 + r)) memset(data + (size_t)r * w, 0, w * sizeof *data), n++;
    } else {
        for (int64_t r = 0; r < rows; r++)
            if (!splice_keeps(c, r0 + r)) memcpy(c->in + (size_t)n++ * w, data + (size_t)r * w, w * sizeof *data);
        if (n) TP_CHECK(c->replace(c->user, c->in, n, cols, c->out));
        int64_t k = 0;
        for (int64_t r = 0; r < rows; r++)
            if (!splice_keeps(c, r0 + r)) memcpy(data + (size_t)r * w, c->out + (size_t)k++ * w, w * sizeof *data);
    }
    c->replaced += n;
    return TP_OK;
}

/* ---- log-softmax pieces, f64 from f32 ---- */

/* log Σ exp(z): m + log Σ exp(z − m), as lm_loss computes it (same bits). */
double sae_ce_row_lse(const float *restrict z, int V)
{
    double mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)z[i] - mx);
    return mx + log(sum);
}

/* KL(p_c ‖ p_o) = Σ_v p_c(v) (log p_c(v) − log p_o(v)); exactly 0 when zc == zo. */
double sae_ce_row_kl(const float *restrict zc, double lse_c, const float *restrict zo, double lse_o, int V)
{
    double kl = 0;
    for (int i = 0; i < V; i++) {
        double a = (double)zc[i] - lse_c, b = (double)zo[i] - lse_o;
        kl += exp(a) * (a - b);
    }
    return kl;
}

/* ---- batches and their ranks ---- */

/* Batches over the whole list, as lm_loss_sequences forms them: runs of at most
 * `batch` consecutive sequences of one length. first[u] = first sequence of batch u,
 * first[n] = n_seqs. */
static tp_status make_batches(const tp_sequences *s, int batch, size_t **first, size_t *n)
{
    size_t *u = tp_malloc((s->n_seqs + 1) * sizeof *u), k = 0, i = 0;
    if (!u) return TP_ERR_NOMEM;
    while (i < s->n_seqs) {
        size_t T = sequences_len(s, i), j = i + 1;
        while (j < s->n_seqs && j - i < (size_t)batch && sequences_len(s, j) == T) j++;
        u[k++] = i;
        i = j;
    }
    u[k] = s->n_seqs;
    *first = u, *n = k;
    return TP_OK;
}

/* Rank r of `size` owns batches [cut(r), cut(r+1)): cut(r) is the batch boundary
 * whose token offset is nearest r·N/size (the lowest on a tie), so the shares are
 * equal up to half a batch and contiguous. */
static size_t batch_cut(const tp_sequences *s, const size_t *first, size_t nb, int r, int size)
{
    if (r <= 0) return 0;
    if (r >= size) return nb;
    double target = (double)s->n_tokens * r / size, best = INFINITY;
    size_t cut = 0;
    for (size_t u = 0; u <= nb; u++) {
        double d = fabs((double)s->seq_start[first[u]] - target);
        if (d < best) best = d, cut = u;
    }
    return cut;
}

/* ---- the evaluation ---- */

enum { SUM_CE_CLEAN = 0, SUM_CE_ZERO, SUM_CE_SAE, SUM_KL_SAE, SUM_KL_ZERO, SUM_TOKENS, SUM_SEQS, SUM_ROWS, SUM_N };

static tp_status check_args(tp_forward *f, const tp_sequences *seqs, int batch, int layer, tp_hook_point pt,
                            int64_t *cols)
{
    const tp_model_config *mc = &forward_model(f)->cfg;
    if (batch < 1 || batch > forward_max_batch(f))
        return tp_err(TP_ERR_CONFIG, "sae ce: batch %d outside [1, %d] (the forward pass's size)", batch,
                      forward_max_batch(f));
    if (pt < 0 || pt >= TP_HOOK_POINT_COUNT || pt == TP_HOOK_PATTERN)
        return tp_err(TP_ERR_CONFIG, "sae ce: capture point %d has no activation rows", (int)pt);
    if (pt < TP_HOOK_LAYER_COUNT ? layer < 0 || layer >= mc->num_layers : layer != -1)
        return tp_err(TP_ERR_CONFIG, "sae ce: layer %d of %s is out of range (%s)", layer,
                      hooks_point_suffix(pt), pt < TP_HOOK_LAYER_COUNT ? "[0, num_layers)" : "must be -1");
    int64_t shape[4];
    int nd = hooks_point_shape(mc, pt, 1, 1, shape);
    *cols = 1;
    for (int k = 2; k < nd; k++) *cols *= shape[k];
    for (size_t i = 0; i < seqs->n_seqs; i++)
        if (sequences_len(seqs, i) > (size_t)forward_max_seq(f))
            return tp_err(TP_ERR_CONFIG, "sae ce: sequence %zu has %zu tokens, the forward pass takes %d", i,
                          sequences_len(seqs, i), forward_max_seq(f));
    return TP_OK;
}

/* This rank's batches [u0, u1): the three passes, CE and KL summed into sums. */
static tp_status run_batches(tp_forward *f, const tp_sequences *seqs, const size_t *first, size_t u0, size_t u1,
                             int layer, tp_hook_point pt, splice_ctx *ctx, double *sums)
{
    const int V = forward_model(f)->cfg.vocab_size;
    size_t max_rows = 0, my_tokens = 0;
    for (size_t u = u0; u < u1; u++) {
        size_t rows = seqs->seq_start[first[u + 1]] - seqs->seq_start[first[u]];
        max_rows = rows > max_rows ? rows : max_rows;
        my_tokens += rows;
    }
    tp_hooks *hooks = NULL;
    float *zc = NULL;
    double *lse_c = NULL;
    tp_status st = TP_OK;
    if (!max_rows) return TP_OK;
    zc = tp_malloc(max_rows * (size_t)V * sizeof *zc);
    lse_c = tp_malloc(max_rows * sizeof *lse_c);
    ctx->in = tp_malloc(max_rows * (size_t)ctx->cols * sizeof *ctx->in);
    ctx->out = tp_malloc(max_rows * (size_t)ctx->cols * sizeof *ctx->out);
    if (!zc || !lse_c || !ctx->in || !ctx->out) { st = TP_ERR_NOMEM; goto done; }
    TP_CHECK_GOTO(hooks_new(forward_model(f)->cfg.num_layers, &hooks), st, done);
    TP_CHECK_GOTO(hooks_add(hooks, layer, pt, splice_hook, ctx), st, done);

    tp_progress prog;
    tp_progress_begin(&prog, "sae ce", "tokens", my_tokens);
    for (size_t u = u0; u < u1; u++) {
        const size_t s0 = first[u], T = sequences_len(seqs, s0);
        const int B = (int)(first[u + 1] - s0);
        const int32_t *ids = seqs->tokens + seqs->seq_start[s0];
        tp_progress_add(&prog, (uint64_t)B * T);
        if (T < 2) continue;
        /* The clean pass has the callback too, leaving the tensor alone, so that the
         * three passes take the same path through the forward pass (the point is
         * materialised for a callback) and differ only by what is written. */
        const float *z;
        ctx->ids = ids, ctx->B = B, ctx->T = (int)T;
        ctx->mode = SPLICE_NONE;
        TP_CHECK_GOTO(forward_run(f, ids, B, (int)T, hooks, TP_LOGITS_ALL, -1, &z), st, done_prog);
        memcpy(zc, z, (size_t)B * T * (size_t)V * sizeof *zc);
        double ce = 0;
        for (int b = 0; b < B; b++) {
            double seq_ce = 0;   /* per sequence first, as lm_loss_sequences sums */
            for (size_t t = 0; t + 1 < T; t++) {
                size_t row = (size_t)b * T + t;
                lse_c[row] = sae_ce_row_lse(zc + row * (size_t)V, V);
                seq_ce += lse_c[row] - (double)zc[row * (size_t)V + (size_t)ids[row + 1]];
            }
            ce += seq_ce;
        }
        sums[SUM_CE_CLEAN] += ce;
        sums[SUM_TOKENS] += (double)B * (double)(T - 1);
        sums[SUM_SEQS] += B;

        for (int pass = 0; pass < 2; pass++) {
            ctx->mode = pass == 0 ? SPLICE_ZERO : SPLICE_REPLACE;
            ctx->fired = ctx->replaced = 0;
            TP_CHECK_GOTO(forward_run(f, ids, B, (int)T, hooks, TP_LOGITS_ALL, -1, &z), st, done_prog);
            if (!ctx->fired) {
                st = tp_err(TP_ERR_INTERNAL, "sae ce: the forward pass never reached %s",
                            hooks_point_suffix(pt));
                goto done_prog;
            }
            double kl = 0;   /* summed in the clean pass's order, so equal logits give equal sums */
            ce = 0;
            for (int b = 0; b < B; b++) {
                double seq_ce = 0, seq_kl = 0;
                for (size_t t = 0; t + 1 < T; t++) {
                    size_t row = (size_t)b * T + t;
                    const float *zo = z + row * (size_t)V;
                    double lse_o = sae_ce_row_lse(zo, V);
                    seq_ce += lse_o - (double)zo[ids[row + 1]];
                    seq_kl += sae_ce_row_kl(zc + row * (size_t)V, lse_c[row], zo, lse_o, V);
                }
                ce += seq_ce, kl += seq_kl;
            }
            sums[pass == 0 ? SUM_CE_ZERO : SUM_CE_SAE] += ce;
            sums[pass == 0 ? SUM_KL_ZERO : SUM_KL_SAE] += kl;
        }
        sums[SUM_ROWS] += (double)ctx->replaced;
    }
done_prog:
    tp_progress_end(&prog);
done:
    hooks_free(hooks);
    free(zc);
    free(lse_c);
    free(ctx->in);
    free(ctx->out);
    ctx->in = ctx->out = NULL;
    return st;
}

tp_status sae_ce_evaluate_with(tp_forward *f, const tp_sequences *seqs, int batch, int layer, tp_hook_point pt,
                               sae_ce_replace_fn replace, void *user, int skip_first, int32_t bos_id,
                               MPI_Comm comm, sae_ce_result *out)
{
    memset(out, 0, sizeof *out);
    int rank = 0, size = 1;
    if (comm != MPI_COMM_NULL) {
        MPI_Comm_rank(comm, &rank);
        MPI_Comm_size(comm, &size);
    }
    splice_ctx ctx = {.replace = replace, .user = user, .skip_first = skip_first != 0, .bos_id = bos_id};
    double sums[SUM_N] = {0};
    size_t *first = NULL, nb = 0;
    tp_status st = check_args(f, seqs, batch, layer, pt, &ctx.cols);
    if (st == TP_OK && !replace) st = tp_err(TP_ERR_INTERNAL, "sae ce: no replacement function");
    if (st == TP_OK) st = make_batches(seqs, batch, &first, &nb);
    if (st == TP_OK) {
        size_t u0 = batch_cut(seqs, first, nb, rank, size), u1 = batch_cut(seqs, first, nb, rank + 1, size);
        st = run_batches(f, seqs, first, u0, u1 > u0 ? u1 : u0, layer, pt, &ctx, sums);
    }
    free(first);
    if (comm != MPI_COMM_NULL) {
        TP_CHECK(dist_agree(comm, st, "sae ce"));
        TP_CHECK(dist_allreduce_sum_f64(comm, sums, SUM_N));
    } else {
        TP_CHECK(st);
    }
    if (sums[SUM_TOKENS] <= 0)
        return tp_err(TP_ERR_FORMAT, "sae ce: no predicted position: every one of the %zu sequences has fewer "
                      "than 2 tokens", seqs->n_seqs);
    const double n = sums[SUM_TOKENS];
    out->ce_clean = sums[SUM_CE_CLEAN] / n;
    out->ce_zero = sums[SUM_CE_ZERO] / n;
    out->ce_sae = sums[SUM_CE_SAE] / n;
    out->recovered = out->ce_zero == out->ce_clean ? NAN
                                                   : (out->ce_zero - out->ce_sae) / (out->ce_zero - out->ce_clean);
    out->kl_sae = sums[SUM_KL_SAE] / n;
    out->kl_zero = sums[SUM_KL_ZERO] / n;
    out->tokens = (int64_t)sums[SUM_TOKENS];
    out->sequences = (int64_t)sums[SUM_SEQS];
    out->rows_replaced = (int64_t)sums[SUM_ROWS];
    return TP_OK;
}

static tp_status replace_by_sae(void *user, const float *rows, int64_t n, int64_t d, float *out)
{
    (void)d;
    return sae_reconstruct(user, rows, n, out);
}

tp_status sae_ce_evaluate(tp_forward *f, const tp_sequences *seqs, int batch, int layer, tp_hook_point pt,
                          sae_model *sae, int skip_first, int32_t bos_id, MPI_Comm comm, sae_ce_result *out)
{
    int64_t shape[4], cols = 1;
    tp_status st = TP_OK;
    if (pt >= 0 && pt < TP_HOOK_POINT_COUNT && pt != TP_HOOK_PATTERN) {
        int nd = hooks_point_shape(&forward_model(f)->cfg, pt, 1, 1, shape);
        for (int k = 2; k < nd; k++) cols *= shape[k];
        if (!sae || sae->cfg.d_in != cols)
            st = tp_err(TP_ERR_CONFIG, "sae ce: the SAE takes rows of %lld values, %s has %lld",
                        sae ? (long long)sae->cfg.d_in : -1LL, hooks_point_suffix(pt), (long long)cols);
    }
    if (st != TP_OK) {
        memset(out, 0, sizeof *out);
        if (comm != MPI_COMM_NULL) TP_CHECK(dist_agree(comm, st, "sae ce"));
        return st;
    }
    return sae_ce_evaluate_with(f, seqs, batch, layer, pt, replace_by_sae, sae, skip_first, bos_id, comm, out);
}
