/* olmo2.c — one OLMo-2 decoder layer (transformers' Olmo2DecoderLayer).
 *
 * OLMo-2 normalises the *outputs* of its sub-blocks, not their inputs:
 *   h   = x + post_attention_layernorm(attn(x))     q/k RMSNorm over the whole projection
 *   out = h + post_feedforward_layernorm(mlp(h))
 */
#include "model/layers.h"

tp_status olmo2_block(tp_forward *f, int L)
{
    const tp_layer *l = &f->m->layers[L];
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
