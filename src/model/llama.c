/* llama.c — one Llama decoder layer (transformers' LlamaDecoderLayer): pre-norm.
 *   h   = x + attn(input_layernorm(x))
 *   out = h + mlp(post_attention_layernorm(h))
 */
#include "model/layers.h"

tp_status llama_block(tp_forward *f, int L)
{
    const tp_layer *l = &f->m->layers[L];
    const tp_model_config *c = &f->m->cfg;
    int64_t rows = f->rows, d = c->hidden_size;
    float eps = (float)c->rms_norm_eps;

    TP_CHECK(fwd_fire(f, L, TP_HOOK_RESID_PRE, f->x));
    TP_CHECK(be_rmsnorm(f->be, f->xn, f->x, l->norm1, rows, d, eps));
    TP_CHECK(fwd_attention(f, L, f->xn));
    rows = f->rows;   /* fewer after attention in forward_run_from's last-row-only final layer */
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ATTN_OUT, f->ao));
    TP_CHECK(be_add(f->be, f->x, f->ao, (size_t)(rows * d)));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_RESID_MID, f->x));

    TP_CHECK(be_rmsnorm(f->be, f->xn, f->x, l->norm2, rows, d, eps));
    TP_CHECK(fwd_mlp(f, L, f->xn));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_OUT, f->ao));
    TP_CHECK(be_add(f->be, f->x, f->ao, (size_t)(rows * d)));
    return fwd_fire(f, L, TP_HOOK_RESID_POST, f->x);
}
