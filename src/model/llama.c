/* llama.c — one Llama decoder layer (transformers' LlamaDecoderLayer): pre-norm,
 * forward and backward.
 *   h   = x + attn(input_layernorm(x))
 *   out = h + mlp(post_attention_layernorm(h))
 * so the backward, with g = d/d out:
 *   d/dh = g + norm2_bwd(mlp_bwd(g)),   d/dx = d/dh + norm1_bwd(attn_bwd(d/dh)).
 */
#include "model/layers_bwd.h"

/* What llama_block_bwd reads: the two norms' inputs (resid_pre, resid_mid),
 * attention's and silu's inputs. */
const unsigned llama_tape_slots = 1u << TAPE_RESID_PRE | 1u << TAPE_ROT_Q | 1u << TAPE_ROT_K | 1u << TAPE_V |
                                  1u << TAPE_RESID_MID | 1u << TAPE_GATE | 1u << TAPE_UP;

tp_status llama_block(tp_forward *f, int L)
{
    const tp_layer *l = &f->w->layers[L];
    const tp_model_config *c = &f->m->cfg;
    int64_t rows = f->rows, d = c->hidden_size;
    float eps = (float)c->rms_norm_eps;

    TP_CHECK(fwd_fire(f, L, TP_HOOK_RESID_PRE, f->x));
    TP_CHECK(fwd_tape_save(f, L, TAPE_RESID_PRE, f->x, d));
    TP_CHECK(be_rmsnorm(f->be, f->xn, f->x, l->norm1, rows, d, eps));
    TP_CHECK(fwd_attention(f, L, f->xn));
    rows = f->rows;   /* fewer after attention in forward_run_from's last-row-only final layer */
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ATTN_OUT, f->ao));
    TP_CHECK(be_add(f->be, f->x, f->ao, (size_t)(rows * d)));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_RESID_MID, f->x));

    TP_CHECK(fwd_tape_save(f, L, TAPE_RESID_MID, f->x, d));
    TP_CHECK(be_rmsnorm(f->be, f->xn, f->x, l->norm2, rows, d, eps));
    TP_CHECK(fwd_mlp(f, L, f->xn));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_OUT, f->ao));
    TP_CHECK(be_add(f->be, f->x, f->ao, (size_t)(rows * d)));
    return fwd_fire(f, L, TP_HOOK_RESID_POST, f->x);
}

tp_status llama_block_bwd(tp_backward *b, int L)
{
    const tp_layer *l = &b->f->w->layers[L];
    const tp_model_config *c = &b->m->cfg;
    float *const *tape = b->tape.slot[L];
    int64_t rows = b->f->rows, d = c->hidden_size;
    float eps = (float)c->rms_norm_eps;

    /* hook_mlp_out and mlp.hook_out are one tensor in Llama: bwd_mlp fires the latter. */
    TP_CHECK(bwd_fire(b, L, TP_HOOK_RESID_POST, b->g));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_MLP_OUT, b->g));
    TP_CHECK(bwd_mlp(b, L, b->g, b->t1));
    TP_CHECK(be_rmsnorm_bwd(b->be, b->t2, NULL, b->t1, tape[TAPE_RESID_MID], l->norm2, rows, d, eps));
    TP_CHECK(be_add(b->be, b->g, b->t2, (size_t)(rows * d)));
    TP_CHECK(bwd_fire(b, L, TP_HOOK_RESID_MID, b->g));

    TP_CHECK(bwd_fire(b, L, TP_HOOK_ATTN_OUT, b->g));
    TP_CHECK(bwd_attention(b, L, b->g, b->t1));
    TP_CHECK(be_rmsnorm_bwd(b->be, b->t2, NULL, b->t1, tape[TAPE_RESID_PRE], l->norm1, rows, d, eps));
    TP_CHECK(be_add(b->be, b->g, b->t2, (size_t)(rows * d)));
    return bwd_fire(b, L, TP_HOOK_RESID_PRE, b->g);
}
