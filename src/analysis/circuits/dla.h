/* dla.h — `circuits dla`: direct logit attribution at the last position of one
 * prompt (docs/circuits.md) -> results/circuits/dla_<id>.json.
 *
 * The metric m = logit(target) [- logit(distractor)] at the last position. The
 * final residual x = embed + Σ_l (attn_out_l + mlp_out_l) (hook_embed,
 * hook_attn_out, hook_mlp_out), and logits = W_U (w_f ⊙ x / s_f) with the final
 * norm's scale s_f = sqrt(mean(x²) + eps) frozen at its value on this prompt, so
 * m = Σ_c c · u with u = w_f ⊙ (W_U[target] - W_U[distractor]) / s_f: each piece's
 * share of m, exactly (up to f32 rounding of the forward pass).
 *
 * Heads. On OLMo-2, attn_out = w_1 ⊙ o / s_1 with o = Σ_h z_h W_O,hᵀ (o_proj's
 * output, attn.hook_out) and post_attention_layernorm's scale s_1 =
 * sqrt(mean(o²) + eps) frozen at its value on this prompt: head h's share
 * w_1 ⊙ (z_h W_O,hᵀ) / s_1, and the heads of a layer add up to its hook_attn_out.
 * On Llama attn_out = o and head h's share is z_h W_O,hᵀ. The MLP's share is
 * hook_mlp_out (after post_feedforward_layernorm on OLMo-2).
 */
#ifndef TP_CIRCUITS_DLA_H
#define TP_CIRCUITS_DLA_H

#include "analysis/circuits/circuits_common.h"

#include <stdint.h>

typedef struct {
    const char *prompt;
    const int32_t *ids;
    int T;
    const char *target_text, *distractor_text;   /* distractor NULL: none */
    int32_t target, distractor;                  /* distractor -1: none */
    const char *id;
} dla_request;

/* Every piece of m, in f64. */
typedef struct {
    int L, H;
    double metric;            /* from the forward pass's logits */
    double embed;
    double *head;             /* [L][H] */
    double *attn, *mlp;       /* [L]: hook_attn_out, hook_mlp_out */
    double *heads_sum;        /* [L]: Σ_h head[l][h] */
    double *attn_scale;       /* [L]: s_1 (OLMo-2), 1 on Llama */
    double final_scale;       /* s_f */
} dla_result;

/* Runs the prompt (rank-local) and attributes m. */
tp_status dla_compute(const circuits_ctx *cx, const dla_request *rq, dla_result *out);
void dla_result_free(dla_result *r);
/* Collective: rank 0 computes and writes results/circuits/dla_<id>.json. */
tp_status dla_run(const circuits_ctx *cx, const dla_request *rq, const char *run_dir);

#endif
