/* layers_bwd.c — the backward of the shared pieces of the decoder layers (see
 * layers_bwd.h): gradient hooks, linear layers, attention, MLP, final norm and head.
 * Each function is the reverse of its forward in layers.c, reading the tape that
 * forward saved. */
#include "model/layers_bwd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- gradient hooks ----------------------------------------------------------------- */

static tp_status stage_reserve(tp_backward *b, size_t n)
{
    if (n <= b->stage_elems) return TP_OK;
    free(b->stage);
    b->bytes -= b->stage_elems * sizeof(float);
    b->stage_elems = 0;
    if (!(b->stage = tp_malloc(n * sizeof(float)))) return TP_ERR_NOMEM;
    b->stage_elems = n;
    b->bytes += n * sizeof(float);
    return TP_OK;
}

/* Device readers, and readers on a host-memory backend, read the gradient in place;
 * otherwise the callbacks get a host copy that is never put back, so nothing they
 * write reaches the backward. */
static tp_status fire_info(tp_backward *b, const tp_hook_info *info, float *data)
{
    const tp_hooks *h = b->grad_hooks;
    TP_CHECK(hooks_fire_device(h, info, data));
    if (!hooks_point_host(h, info->layer, info->point)) return TP_OK;
    if (b->be->host_memory && !hooks_point_edits(h, info->layer, info->point)) return hooks_fire(h, info, data);
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    TP_CHECK(stage_reserve(b, n));
    TP_CHECK(be_download(b->be, b->stage, data, n * sizeof(float)));
    return hooks_fire(h, info, b->stage);
}

tp_status bwd_fire(tp_backward *b, int L, tp_hook_point pt, float *data)
{
    if (!hooks_active(b->grad_hooks, L, pt)) return TP_OK;
    const tp_forward *f = b->f;
    char name[96];
    tp_hook_info info = {.layer = L, .point = pt, .seq = 0, .nseq = f->nseq, .seq_lens = f->lens};
    info.name = hooks_point_name(L, pt, name, sizeof name);
    info.ndim = hooks_point_shape(&b->m->cfg, pt, 1, (int)f->rows, info.shape);
    return fire_info(b, &info, data);
}

/* ---- linear layers ------------------------------------------------------------------- */

tp_status bwd_linear_n(tp_backward *b, const tp_mat *const *W, const float *const *dy, int nw, float *dx)
{
    if (nw < 1 || nw > FWD_LINEAR_MAX)
        return tp_err(TP_ERR_INTERNAL, "bwd_linear_n: %d matrices (1..%d)", nw, FWD_LINEAR_MAX);
    tp_linear_out o[FWD_LINEAR_MAX];
    for (int i = 0; i < nw; i++) {
        if (W[i]->cols != W[0]->cols)
            return tp_err(TP_ERR_INTERNAL, "bwd_linear_n: %s has %lld inputs, %s %lld", W[i]->name,
                          (long long)W[i]->cols, W[0]->name, (long long)W[0]->cols);
        o[i] = (tp_linear_out){.w = W[i]->data, .n = W[i]->rows, .ldw = W[i]->cols, .dtype = W[i]->dtype,
                               .y = NULL, .ldy = W[i]->rows};
    }
    return be_linear_bwd(b->be, b->f->rows, W[0]->cols, NULL, W[0]->cols, o, nw, dy, dx);
}

static tp_status bwd_linear(tp_backward *b, const tp_mat *W, const float *dy, float *dx)
{
    return bwd_linear_n(b, &W, &dy, 1, dx);
}

/* ---- attention ------------------------------------------------------------------------ */

/* The attention work of each sequence from the tape: rotated q/k, v, the edited
 * pattern when a forward hook edited it; and where its gradients go. */
static void attn_bwd_seqs(tp_backward *b, int L)
{
    const tp_forward *f = b->f;
    const tp_model_config *c = &b->m->cfg;
    int64_t qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    float *const *tape = b->tape.slot[L];
    float *pat = b->tape.pattern ? b->tape.pattern[L] : NULL;
    for (int s = 0; s < f->nseq; s++) {
        size_t r0 = (size_t)f->row0[s];
        int64_t T = f->lens[s];
        f->aseq[s] = (tp_attn_seq){.q = tape[TAPE_ROT_Q] + r0 * qd, .k = tape[TAPE_ROT_K] + r0 * kd,
                                   .v = tape[TAPE_V] + r0 * kd, .z = NULL, .p = pat, .nq = T, .off = 0};
        b->agrad[s] = (tp_attn_grad){.dz = b->dz + r0 * qd, .dq = b->dq + r0 * qd, .dk = b->dk + r0 * kd,
                                     .dv = b->dv + r0 * kd, .dp = NULL};
        if (pat) pat += (size_t)c->num_heads * (size_t)T * (size_t)T;
    }
}

/* With a gradient hook on the pattern: one sequence at a time, d/dpattern into
 * b->dpattern and delivered as [1, H, n_b, n_b] (info->seq = b), as the forward does. */
static tp_status attn_bwd_with_pattern(tp_backward *b, int L, const tp_attn_shape *shape)
{
    const tp_forward *f = b->f;
    int H = shape->H;
    if (!b->dpattern) {
        size_t n = (size_t)H * (size_t)f->max_seq * (size_t)f->max_seq;
        void *p = NULL;
        TP_CHECK(be_alloc(b->be, n * sizeof(float), &p));
        b->dpattern = p;
        b->bytes += n * sizeof(float);
    }
    for (int s = 0; s < f->nseq; s++) {
        int64_t T = f->lens[s];
        tp_attn_grad g = b->agrad[s];
        g.dp = b->dpattern;
        TP_CHECK(be_attention_bwd(b->be, shape, &f->aseq[s], &g, 1));
        char name[96];
        tp_hook_info info = {.layer = L, .point = TP_HOOK_PATTERN, .ndim = 4, .seq = s, .nseq = f->nseq,
                             .seq_lens = f->lens, .shape = {1, H, T, T}};
        info.name = hooks_point_name(L, TP_HOOK_PATTERN, name, sizeof name);
        TP_CHECK(fire_info(b, &info, b->dpattern));
    }
    return TP_OK;
}

static tp_status bwd_attention_from_dz(tp_backward *b, int L, float *d_in);

tp_status bwd_attention(tp_backward *b, int L, float *d_o, float *d_in)
{
    const tp_layer *l = &b->f->w->layers[L];
    TP_CHECK(bwd_fire(b, L, TP_HOOK_ATTN_O, d_o));
    TP_CHECK(bwd_linear(b, &l->o, d_o, b->dz));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_Z, b->dz));
    return bwd_attention_from_dz(b, L, d_in);
}

/* From b->dz (d attn.hook_z) to d_in: attention, RoPE, QK-norm and the q/k/v
 * projections, firing their gradient hooks. */
static tp_status bwd_attention_from_dz(tp_backward *b, int L, float *d_in)
{
    const tp_model_config *c = &b->m->cfg;
    const tp_layer *l = &b->f->w->layers[L];
    const tp_forward *f = b->f;
    int H = c->num_heads, K = c->num_kv_heads, dh = c->head_dim;
    int64_t rows = f->rows, qd = (int64_t)H * dh, kd = (int64_t)K * dh;
    float eps = (float)c->rms_norm_eps;
    float *const *tape = b->tape.slot[L];

    attn_bwd_seqs(b, L);
    const tp_attn_shape shape = {.H = H, .K = K, .dh = dh, .ldq = qd, .ldk = kd, .ldz = qd,
                                 .scale = 1.0f / sqrtf((float)dh)};
    if (hooks_active(b->grad_hooks, L, TP_HOOK_PATTERN)) TP_CHECK(attn_bwd_with_pattern(b, L, &shape));
    else TP_CHECK(be_attention_bwd(b->be, &shape, f->aseq, b->agrad, f->nseq));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_ROT_K, b->dk));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_ROT_Q, b->dq));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_V, b->dv));

    TP_CHECK(be_rope_bwd(b->be, b->dq, rows, H, dh, f->pos, f->rope_cos, f->rope_sin));
    TP_CHECK(be_rope_bwd(b->be, b->dk, rows, K, dh, f->pos, f->rope_cos, f->rope_sin));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_K, b->dk));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_Q, b->dq));
    if (l->q_norm) TP_CHECK(be_rmsnorm_bwd(b->be, b->dq, NULL, b->dq, tape[TAPE_Q_PROJ], l->q_norm, rows, qd, eps));
    if (l->k_norm) TP_CHECK(be_rmsnorm_bwd(b->be, b->dk, NULL, b->dk, tape[TAPE_K_PROJ], l->k_norm, rows, kd, eps));

    const tp_mat *W[3] = {&l->q, &l->k, &l->v};
    const float *dy[3] = {b->dq, b->dk, b->dv};
    return bwd_linear_n(b, W, dy, 3, d_in);
}

/* ---- MLP ------------------------------------------------------------------------------- */

tp_status bwd_mlp(tp_backward *b, int L, float *d_o, float *d_in)
{
    const tp_layer *l = &b->f->w->layers[L];
    int64_t rows = b->f->rows, F = b->m->cfg.intermediate_size;
    float *const *tape = b->tape.slot[L];

    TP_CHECK(bwd_fire(b, L, TP_HOOK_MLP_O, d_o));
    TP_CHECK(bwd_linear(b, &l->down, d_o, b->dgate));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_MLP_POST, b->dgate));
    /* in place: d hook_post becomes d hook_pre */
    TP_CHECK(be_silu_mul_bwd(b->be, b->dgate, b->dup, b->dgate, tape[TAPE_GATE], tape[TAPE_UP], (size_t)(rows * F)));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_MLP_PRE_LINEAR, b->dup));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_MLP_PRE, b->dgate));

    const tp_mat *W[2] = {&l->gate, &l->up};
    const float *dy[2] = {b->dgate, b->dup};
    return bwd_linear_n(b, W, dy, 2, d_in);
}

/* ---- final norm and head ------------------------------------------------------------------ */

tp_status bwd_head(tp_backward *b, const float *dlogits)
{
    const tp_model *m = b->m;
    const tp_model_config *c = &m->cfg;
    int64_t rows = b->f->rows;
    const float *dl = dlogits;
    if (!b->be->host_memory) {
        TP_CHECK(be_upload(b->be, b->dlogits, dlogits, (size_t)rows * (size_t)c->vocab_size * sizeof(float)));
        dl = b->dlogits;
    }
    TP_CHECK(bwd_linear(b, &b->f->w->lm_head, dl, b->t1));
    TP_CHECK(bwd_fire(b, -1, TP_HOOK_LN_FINAL, b->t1));
    return be_rmsnorm_bwd(b->be, b->g, NULL, b->t1, b->tape.final, b->f->w->final_norm, rows, c->hidden_size,
                          (float)c->rms_norm_eps);
}

/* ---- one head's input gradient ------------------------------------------------------------ */

tp_status backward_attention_head_input_grad(tp_backward *b, int L, int h, const float *dz, float *dx)
{
    const tp_model_config *c = &b->m->cfg;
    if (!b->ready) return tp_err(TP_ERR_INTERNAL, "backward_attention_head_input_grad: no tape");
    if (L < 0 || L >= c->num_layers || h < 0 || h >= c->num_heads)
        return tp_err(TP_ERR_RANGE, "backward_attention_head_input_grad: layer %d head %d out of range (%d layers, "
                      "%d heads)", L, h, c->num_layers, c->num_heads);
    int64_t rows = b->f->rows, d = c->hidden_size, dh = c->head_dim, qd = (int64_t)c->num_heads * dh;
    TP_CHECK(model_weights_need(b->m, b->be, L, -1));
    TP_CHECK(stage_reserve(b, (size_t)(rows * (qd > d ? qd : d))));
    memset(b->stage, 0, (size_t)(rows * qd) * sizeof(float));
    for (int64_t r = 0; r < rows; r++)   /* dz masked to head h's columns */
        memcpy(b->stage + r * qd + h * dh, dz + r * qd + h * dh, (size_t)dh * sizeof(float));
    TP_CHECK(be_upload(b->be, b->dz, b->stage, (size_t)(rows * qd) * sizeof(float)));
    const tp_hooks *saved = b->grad_hooks;
    b->grad_hooks = NULL;   /* no gradient hook fires for a partial gradient */
    tp_status st = bwd_attention_from_dz(b, L, b->t1);
    if (st == TP_OK && c->arch == TP_ARCH_LLAMA)   /* the pre-norm: input_layernorm */
        st = be_rmsnorm_bwd(b->be, b->t2, NULL, b->t1, b->tape.slot[L][TAPE_RESID_PRE], b->f->w->layers[L].norm1, rows,
                            d, (float)c->rms_norm_eps);
    b->grad_hooks = saved;
    TP_CHECK(st);
    return be_download(b->be, dx, c->arch == TP_ARCH_LLAMA ? b->t2 : b->t1, (size_t)(rows * d) * sizeof(float));
}
