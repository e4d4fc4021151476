/* olmo2.c — one OLMo-2 decoder layer (transformers' Olmo2DecoderLayer), forward and
 * backward.
 *
 * OLMo-2 normalises the *outputs* of its sub-blocks, not their inputs:
 *   h   = x + post_attention_layernorm(attn(x))     q/k RMSNorm over the whole projection
 *   out = h + post_feedforward_layernorm(mlp(h))
 * so the backward, with g = d/d out:
 *   d/dh = g + mlp_bwd(norm2_bwd(g)),   d/dx = d/dh + attn_bwd(norm1_bwd(d/dh)).
 */
#include "model/layers_bwd.h"

/* What olmo2_block_bwd reads: the norms' inputs (q/k projections, o_proj and
 * down_proj outputs), attention's and silu's inputs. */
const unsigned olmo2_tape_slots = 1u << TAPE_Q_PROJ | 1u << TAPE_K_PROJ | 1u << TAPE_ROT_Q | 1u << TAPE_ROT_K |
                                  1u << TAPE_V | 1u << TAPE_ATTN_O | 1u << TAPE_GATE | 1u << TAPE_UP |
                                  1u << TAPE_MLP_O;

tp_status olmo2_block(tp_forward *f, int L)
{
    const tp_layer *l = &f->w->layers[L];
    const tp_model_config *c = &f->m->cfg;
    int64_t rows = f->rows, d = c->hidden_size;
    float eps = (float)c->rms_norm_eps;

    TP_CHECK(fwd_fire(f, L, TP_HOOK_RESID_PRE, f->x));
    TP_CHECK(fwd_attention(f, L, f->x));
    rows = f->rows;   /* fewer after attention in forward_run_from's last-row-only final layer */
    TP_CHECK(be_rmsnorm(f->be, f->ao, f->ao, l->norm1, rows, d, eps));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ATTN_OUT, f->ao));
    TP_CHECK(be_add(f->be, f->x, f->ao, (size_t)(rows * d)));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_RESID_MID, f->x));

    TP_CHECK(fwd_mlp(f, L, f->x));
    TP_CHECK(be_rmsnorm(f->be, f->ao, f->ao, l->norm2, rows, d, eps));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_OUT, f->ao));
    TP_CHECK(be_add(f->be, f->x, f->ao, (size_t)(rows * d)));
    return fwd_fire(f, L, TP_HOOK_RESID_POST, f->x);
}

tp_status olmo2_block_bwd(tp_backward *b, int L)
{
    const tp_layer *l = &b->f->w->layers[L];
    const tp_model_config *c = &b->m->cfg;
    float *const *tape = b->tape.slot[L];
    int64_t rows = b->f->rows, d = c->hidden_size;
    float eps = (float)c->rms_norm_eps;

    TP_CHECK(bwd_fire(b, L, TP_HOOK_RESID_POST, b->g));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_MLP_OUT, b->g));
    TP_CHECK(be_rmsnorm_bwd(b->be, b->t1, NULL, b->g, tape[TAPE_MLP_O], l->norm2, rows, d, eps));
    TP_CHECK(bwd_mlp(b, L, b->t1, b->t2));
    TP_CHECK(be_add(b->be, b->g, b->t2, (size_t)(rows * d)));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_RESID_MID, b->g));

    TP_CHECK(bwd_fire(b, L, TP_HOOK_ATTN_OUT, b->g));
    TP_CHECK(be_rmsnorm_bwd(b->be, b->t1, NULL, b->g, tape[TAPE_ATTN_O], l->norm1, rows, d, eps));
    TP_CHECK(bwd_attention(b, L, b->t1, b->t2));
    TP_CHECK(be_add(b->be, b->g, b->t2, (size_t)(rows * d)));
    return bwd_fire(b, L, TP_HOOK_RESID_PRE, b->g);
}
