/* layers.c — the shared pieces of the decoder layers (see layers.h): linear layers,
 * hook firing, embedding, attention, MLP, final norm and head. */
#include "model/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- scratch ---------------------------------------------------------------------- */

static tp_status alloc_bytes(tp_forward *f, size_t bytes, void **p)
{
    TP_CHECK(be_alloc(f->be, bytes, p));
    f->bytes += bytes;
    return TP_OK;
}

tp_status fwd_alloc_f32(tp_forward *f, float **p, size_t n)
{
    void *v = NULL;
    TP_CHECK(alloc_bytes(f, n * sizeof(float), &v));
    *p = v;
    return TP_OK;
}

tp_status fwd_alloc_i32(tp_forward *f, int32_t **p, size_t n)
{
    void *v = NULL;
    TP_CHECK(alloc_bytes(f, n * sizeof(int32_t), &v));
    *p = v;
    return TP_OK;
}

tp_status fwd_tape_copy(tp_forward *f, float *dst, const float *src, int64_t width)
{
    return be_copy(f->be, dst, src, (size_t)f->rows * (size_t)width * sizeof(float));
}

/* ---- linear layers ---------------------------------------------------------------- */

tp_status fwd_linear_n(tp_forward *f, const tp_mat *const *W, float *const *y, int nw,
                       const float *x, int64_t n)
{
    if (nw < 1 || nw > FWD_LINEAR_MAX)
        return tp_err(TP_ERR_INTERNAL, "fwd_linear_n: %d matrices (1..%d)", nw, FWD_LINEAR_MAX);
    tp_linear_out o[FWD_LINEAR_MAX];
    int same_k = 1;
    for (int i = 0; i < nw; i++) {
        o[i] = (tp_linear_out){.w = W[i]->data, .n = W[i]->rows, .ldw = W[i]->cols, .dtype = W[i]->dtype,
                               .y = y[i], .ldy = W[i]->rows};
        same_k &= W[i]->cols == W[0]->cols;
    }
    if (same_k) return be_linear(f->be, n, W[0]->cols, x, W[0]->cols, o, nw);
    for (int i = 0; i < nw; i++) TP_CHECK(be_linear(f->be, n, W[i]->cols, x, W[i]->cols, &o[i], 1));
    return TP_OK;
}

tp_status fwd_linear(tp_forward *f, const tp_mat *W, const float *x, int64_t n, float *y)
{
    return fwd_linear_n(f, &W, &y, 1, x, n);
}

/* ---- hooks ------------------------------------------------------------------------ */

static tp_status stage_reserve(tp_forward *f, size_t n)
{
    if (n <= f->stage_elems) return TP_OK;
    free(f->stage);
    f->bytes -= f->stage_elems * sizeof(float);
    f->stage_elems = 0;
    f->stage = tp_malloc(n * sizeof(float));
    if (!f->stage) return TP_ERR_NOMEM;
    f->stage_elems = n;
    f->bytes += n * sizeof(float);
    return TP_OK;
}

/* The callbacks on info's point with `data` [be]: device readers get the buffer
 * itself; the others too on a host-memory backend (no copy), else a host copy, put
 * back only if a callback may edit it. */
static tp_status fire(tp_forward *f, const tp_hook_info *info, float *data)
{
    TP_CHECK(hooks_fire_device(f->hooks, info, data));
    if (f->be->host_memory) return hooks_fire(f->hooks, info, data);
    if (!hooks_point_host(f->hooks, info->layer, info->point)) return TP_OK;
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    TP_CHECK(stage_reserve(f, n));
    TP_CHECK(be_download(f->be, f->stage, data, n * sizeof(float)));
    TP_CHECK(hooks_fire(f->hooks, info, f->stage));
    if (hooks_point_edits(f->hooks, info->layer, info->point))
        TP_CHECK(be_upload(f->be, data, f->stage, n * sizeof(float)));
    return TP_OK;
}

tp_status fwd_fire(tp_forward *f, int L, tp_hook_point pt, float *data)
{
    if (!hooks_active(f->hooks, L, pt)) return TP_OK;
    if (pt == TP_HOOK_PATTERN) return tp_err(TP_ERR_INTERNAL, "pattern hook fired through fwd_fire");
    char name[96];
    tp_hook_info info = {.layer = L, .point = pt, .seq = 0, .nseq = f->nseq, .seq_lens = f->lens};
    info.name = hooks_point_name(L, pt, name, sizeof name);
    info.ndim = f->varlen ? hooks_point_shape(&f->m->cfg, pt, 1, (int)f->rows, info.shape)
                          : hooks_point_shape(&f->m->cfg, pt, f->nseq, f->T, info.shape);
    return fire(f, &info, data);
}

/* ---- embedding -------------------------------------------------------------------- */

tp_status fwd_embed(tp_forward *f, const int32_t *ids)
{
    const tp_mat *E = &f->w->embed;
    TP_CHECK(be_embed(f->be, f->x, E->data, E->dtype, E->rows, E->cols, ids, f->rows));
    return fwd_fire(f, -1, TP_HOOK_EMBED, f->x);
}

/* ---- attention -------------------------------------------------------------------- */

static tp_status qkv(tp_forward *f, int L, const float *in)
{
    const tp_model_config *c = &f->m->cfg;
    const tp_layer *l = &f->w->layers[L];
    int64_t rows = f->rows, qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    float eps = (float)c->rms_norm_eps;
    const tp_mat *W[3] = {&l->q, &l->k, &l->v};
    float *y[3] = {f->q, f->k, f->v};
    TP_CHECK(fwd_linear_n(f, W, y, 3, in, rows));
    TP_CHECK(fwd_tape_save(f, L, TAPE_Q_PROJ, f->q, qd));
    TP_CHECK(fwd_tape_save(f, L, TAPE_K_PROJ, f->k, kd));
    if (l->q_norm) TP_CHECK(be_rmsnorm(f->be, f->q, f->q, l->q_norm, rows, qd, eps));
    if (l->k_norm) TP_CHECK(be_rmsnorm(f->be, f->k, f->k, l->k_norm, rows, kd, eps));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_Q, f->q));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_K, f->k));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_V, f->v));
    TP_CHECK(be_rope(f->be, f->q, rows, c->num_heads, c->head_dim, f->pos, f->rope_cos, f->rope_sin));
    TP_CHECK(be_rope(f->be, f->k, rows, c->num_kv_heads, c->head_dim, f->pos, f->rope_cos, f->rope_sin));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ROT_Q, f->q));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ROT_K, f->k));
    TP_CHECK(fwd_tape_save(f, L, TAPE_ROT_Q, f->q, qd));
    TP_CHECK(fwd_tape_save(f, L, TAPE_ROT_K, f->k, kd));
    return fwd_tape_save(f, L, TAPE_V, f->v, kd);
}

/* The attention work of each sequence; with a KV cache, its rotated keys and values
 * are appended to the cache first and it attends over the cache. */
static tp_status attn_seqs(tp_forward *f, int L)
{
    const tp_model_config *c = &f->m->cfg;
    int64_t qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    for (int b = 0; b < f->nseq; b++) {
        int64_t r0 = f->row0[b], T = f->lens[b];
        const float *kb = f->k + (size_t)r0 * kd, *vb = f->v + (size_t)r0 * kd;
        if (f->kcache) {
            size_t base = ((size_t)L * f->max_batch + (size_t)b) * (size_t)f->max_seq * (size_t)kd;
            size_t bytes = (size_t)T * kd * sizeof(float);
            TP_CHECK(be_copy(f->be, f->kcache + base + (size_t)f->off[b] * kd, kb, bytes));
            TP_CHECK(be_copy(f->be, f->vcache + base + (size_t)f->off[b] * kd, vb, bytes));
            kb = f->kcache + base;
            vb = f->vcache + base;
        }
        f->aseq[b] = (tp_attn_seq){.q = f->q + (size_t)r0 * qd, .k = kb, .v = vb,
                                   .z = f->z + (size_t)r0 * qd, .p = NULL, .nq = T, .off = f->off[b]};
    }
    return TP_OK;
}

/* Per sequence: the pattern of every head, the callbacks (which may edit it), then z
 * from the pattern as it is now. */
static tp_status attn_with_pattern(tp_forward *f, int L, const tp_attn_shape *shape)
{
    int H = shape->H;
    float *saved = f->tape && f->tape->pattern ? f->tape->pattern[L] : NULL;   /* edited patterns */
    if (!f->pattern) {
        /* Only when asked: [H, T, T] for one sequence, kept for later runs. */
        TP_CHECK(fwd_alloc_f32(f, &f->pattern, (size_t)H * (size_t)f->max_seq * (size_t)f->max_seq));
    }
    for (int b = 0; b < f->nseq; b++) {
        int64_t T = f->lens[b];
        f->aseq[b].p = f->pattern;
        TP_CHECK(be_attention(f->be, shape, &f->aseq[b], 1, TP_ATTN_PATTERN));
        char name[96];
        tp_hook_info info = {.layer = L, .point = TP_HOOK_PATTERN, .ndim = 4, .seq = b,
                             .nseq = f->nseq, .seq_lens = f->lens, .shape = {1, H, T, T}};
        info.name = hooks_point_name(L, TP_HOOK_PATTERN, name, sizeof name);
        TP_CHECK(fire(f, &info, f->pattern));
        TP_CHECK(be_attention(f->be, shape, &f->aseq[b], 1, TP_ATTN_PV));
        if (saved) {
            size_t n = (size_t)H * (size_t)T * (size_t)T;
            TP_CHECK(be_copy(f->be, saved, f->pattern, n * sizeof(float)));
            saved += n;
        }
    }
    return TP_OK;
}

/* f->last_only (see layers.h): each sequence's attention for its last query alone
 * (its keys and values, all rows', are in place), then the layer keeps only those rows:
 * row b of x and z becomes sequence b's last row, one position per sequence. */
static void last_query_only(tp_forward *f, int64_t qd)
{
    for (int b = 0; b < f->nseq; b++) {
        tp_attn_seq *a = &f->aseq[b];
        int64_t skip = a->nq - 1;
        a->q += skip * qd, a->z += skip * qd, a->off += (int)skip, a->nq = 1;
    }
}

static tp_status keep_last_rows(tp_forward *f, int64_t qd)
{
    size_t d = (size_t)f->m->cfg.hidden_size;
    for (int b = 0; b < f->nseq; b++) {
        int64_t src = f->row0[b] + f->lens[b] - 1;   /* >= b: moving up never overwrites a later source */
        if (src != b) {
            TP_CHECK(be_copy(f->be, f->x + (size_t)b * d, f->x + (size_t)src * d, d * sizeof(float)));
            TP_CHECK(be_copy(f->be, f->z + (size_t)b * qd, f->z + (size_t)src * qd, (size_t)qd * sizeof(float)));
        }
        f->off[b] += f->lens[b] - 1, f->lens[b] = 1, f->row0[b] = b;
    }
    f->row0[f->nseq] = f->nseq, f->rows = f->nseq;
    return TP_OK;
}

tp_status fwd_attention(tp_forward *f, int L, const float *in)
{
    const tp_model_config *c = &f->m->cfg;
    int H = c->num_heads, K = c->num_kv_heads, dh = c->head_dim;
    int64_t qd = (int64_t)H * dh, kd = (int64_t)K * dh;

    TP_CHECK(qkv(f, L, in));
    int want_pattern = hooks_active(f->hooks, L, TP_HOOK_PATTERN);
    if (want_pattern && f->pos0 > 0)
        return tp_err(TP_ERR_UNSUPPORTED, "attn.hook_pattern is not delivered while decoding with a KV cache");
    TP_CHECK(attn_seqs(f, L));
    if (f->last_only) last_query_only(f, qd);
    const tp_attn_shape shape = {.H = H, .K = K, .dh = dh, .ldq = qd, .ldk = kd, .ldz = qd,
                                 .scale = 1.0f / sqrtf((float)dh)};
    if (want_pattern) TP_CHECK(attn_with_pattern(f, L, &shape));
    else TP_CHECK(be_attention(f->be, &shape, f->aseq, f->nseq, TP_ATTN_FUSED));
    if (f->last_only) TP_CHECK(keep_last_rows(f, qd));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_Z, f->z));
    TP_CHECK(fwd_linear(f, &f->w->layers[L].o, f->z, f->rows, f->ao));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ATTN_O, f->ao));
    return fwd_tape_save(f, L, TAPE_ATTN_O, f->ao, c->hidden_size);
}

/* ---- MLP -------------------------------------------------------------------------- */

tp_status fwd_mlp(tp_forward *f, int L, const float *in)
{
    const tp_layer *l = &f->w->layers[L];
    int64_t rows = f->rows, F = f->m->cfg.intermediate_size;
    const tp_mat *W[2] = {&l->gate, &l->up};
    float *y[2] = {f->gate, f->up};
    TP_CHECK(fwd_linear_n(f, W, y, 2, in, rows));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_PRE, f->gate));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_PRE_LINEAR, f->up));
    TP_CHECK(fwd_tape_save(f, L, TAPE_GATE, f->gate, F));
    TP_CHECK(fwd_tape_save(f, L, TAPE_UP, f->up, F));
    TP_CHECK(be_silu_mul(f->be, f->gate, f->up, (size_t)(rows * F)));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_POST, f->gate));
    TP_CHECK(fwd_linear(f, &l->down, f->gate, rows, f->ao));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_O, f->ao));
    return fwd_tape_save(f, L, TAPE_MLP_O, f->ao, f->m->cfg.hidden_size);
}

/* ---- final norm and head ------------------------------------------------------------ */

static tp_status ensure_logits(tp_forward *f, size_t rows)
{
    /* Grown to the largest request seen: [B, V] for next-token logits costs far less
     * than [B*T, V] at a 100k vocabulary. */
    size_t n = rows * (size_t)f->m->cfg.vocab_size;
    if (n <= f->logits_elems) return TP_OK;
    int host = f->be->host_memory;
    be_free(f->be, f->logits);
    free(f->logits_host);
    f->logits = NULL, f->logits_host = NULL;
    f->bytes -= (host ? 1 : 2) * f->logits_elems * sizeof(float);
    f->logits_elems = 0;
    TP_CHECK(fwd_alloc_f32(f, &f->logits, n));
    if (!host) {   /* the host copy fwd_head hands out */
        if (!(f->logits_host = tp_malloc(n * sizeof(float)))) return TP_ERR_NOMEM;
        f->bytes += n * sizeof(float);
    }
    f->logits_elems = n;
    return TP_OK;
}

/* Logits of each sequence's last position: gather those rows to the top of f->xn
 * (row >= b, so moving up is safe), then one GEMM over B rows. */
static tp_status logits_last(tp_forward *f)
{
    const tp_model *m = f->m;
    int64_t d = m->cfg.hidden_size;
    for (int b = 0; b < f->nseq; b++) {
        int64_t src = f->row0[b] + f->lens[b] - 1;
        if (src != b)
            TP_CHECK(be_copy(f->be, f->xn + (size_t)b * d, f->xn + (size_t)src * d, (size_t)d * sizeof(float)));
    }
    return fwd_linear(f, &f->w->lm_head, f->xn, f->nseq, f->logits);
}

tp_status fwd_head(tp_forward *f, tp_logits_mode mode, const float **logits)
{
    const tp_model *m = f->m;
    const tp_model_config *c = &m->cfg;
    int64_t rows = f->rows;
    TP_CHECK(fwd_tape_save(f, -1, TAPE_SLOTS, f->x, c->hidden_size));
    TP_CHECK(be_rmsnorm(f->be, f->xn, f->x, f->w->final_norm, rows, c->hidden_size, (float)c->rms_norm_eps));
    TP_CHECK(fwd_fire(f, -1, TP_HOOK_LN_FINAL, f->xn));
    if (mode == TP_LOGITS_NONE) {
        if (logits) *logits = NULL;
        return TP_OK;
    }
    size_t out_rows = mode == TP_LOGITS_ALL ? (size_t)rows : (size_t)f->nseq;
    TP_CHECK(ensure_logits(f, out_rows));
    if (mode == TP_LOGITS_ALL) TP_CHECK(fwd_linear(f, &f->w->lm_head, f->xn, rows, f->logits));
    else TP_CHECK(logits_last(f));
    const float *out = f->logits;
    if (!f->be->host_memory) {
        TP_CHECK(be_download(f->be, f->logits_host, f->logits, out_rows * (size_t)c->vocab_size * sizeof(float)));
        out = f->logits_host;
    }
    if (logits) *logits = out;
    return TP_OK;
}
