/* eap.h — edge attribution patching (EAP, EAP-IG) and exact node patching over the
 * residual-stream graph of circuit_graph.h (docs/circuits.md, "Attribution").
 *
 * Metric. m = logit(T) − logit(D) at the last position (no distractor: logit(T)).
 *
 * Upstream nodes u, outputs a_u [T, d] (residual-space contributions, per position):
 *   embed      hook_embed
 *   a<L>.h<H>  head H's piece of hook_attn_out exactly as dla.h defines it: on OLMo-2
 *              w_1 ⊙ (z_H W_O,Hᵀ) / s_1 with post_attention_layernorm's scale s_1 frozen at
 *              the run's own value per position (a layer's heads add up to hook_attn_out);
 *              on Llama z_H W_O,Hᵀ
 *   m<L>       hook_mlp_out
 * Downstream nodes v, input gradients g_v = ∂m/∂(v's input) [T, d]:
 *   a<L>.h<H>  ∂m/∂resid_pre(L) along head H alone (backward_attention_head_input_grad:
 *              the attention VJP with d hook_z masked to H's columns)
 *   m<L>       ∂m/∂resid_mid(L) − ∂m/∂resid_post(L) (the MLP branch; the skip subtracted)
 *   logits     ∂m/∂resid_post(last layer)
 * u → v exists when u is upstream of v: embed → every v; heads of L → m<L> and every v of
 * later layers (logits last); m<L> → every v of later layers.
 *
 * EAP (Syed et al. 2023): score(u→v) = Σ_pos g_v · (a_u^clean − a_u^corr), g_v on the
 * corrupted run. EAP-IG (inputs; Hanna et al. 2024): g_v averaged over the runs whose
 * embeddings are corr + (k/M)(clean − corr), k = 1..M (a forward hook on hook_embed).
 * Node score (attribution patching, Nanda 2023): score(u) = Σ_pos ∂m/∂a_u · Δa_u with
 * ∂m/∂a_u the gradient where a_u enters the residual (hook_embed, resid_mid(L),
 * resid_post(L)); it equals Σ_v score(u→v) over every v downstream of u.
 *
 * Node patching (eap_patch_metric): a forward pass of `ids` in which every node u with
 * keep[u] == 0 has its output replaced by repl[u] (the residual stream gets
 * repl_u − a_u^current added where a_u enters it; for heads a_u^current is taken with
 * the patched run's own frozen s_1). Kept nodes compute on what they receive.
 */
#ifndef TP_CIRCUITS_EAP_H
#define TP_CIRCUITS_EAP_H

#include "core/error.h"
#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

/* Node numbering: upstream u = 0 embed, 1 + l(H+1) + h heads, 1 + l(H+1) + H mlp l;
 * downstream v = l(H+1) + h heads, l(H+1) + H mlp l, L(H+1) logits. */
typedef struct {
    int L, H, n_up, n_down;
} eap_graph;

eap_graph eap_graph_of(const tp_model_config *c);
/* Whether u → v is an edge (u upstream of v). */
int eap_edge_exists(const eap_graph *g, int u, int v);
/* Layer (-1 embed, L logits) and head (-1 when not a head) of a node. */
void eap_up_node(const eap_graph *g, int u, int *layer, int *head);
void eap_down_node(const eap_graph *g, int v, int *layer, int *head);
/* Name of upstream u / downstream v: "embed", "a1.h3", "m2", "logits". */
void eap_up_name(const eap_graph *g, int u, char *buf, size_t n);
void eap_down_name(const eap_graph *g, int v, char *buf, size_t n);

typedef struct {
    const int32_t *clean, *corrupt;   /* [T] each */
    int T;
    int32_t target, distractor;       /* distractor -1: none */
    int ig_steps;                     /* 0: plain EAP */
} eap_pair;

typedef struct {
    eap_graph g;
    double ld_clean, ld_corr;
    double *edge;    /* [n_up][n_down]; 0 where no edge */
    double *node;    /* [n_up] */
} eap_scores;

typedef struct eap_engine eap_engine;

/* An engine for prompts of up to max_T tokens (one backward state, scratch). */
tp_status eap_engine_new(const tp_model *m, int max_T, eap_engine **out);
void eap_engine_free(eap_engine *e);

/* The outputs a_u of every upstream node on ids[0..T): acts [n_up][T][d] (f64), and the
 * metric of that run. */
tp_status eap_node_outputs(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                           double *acts, double *metric);
/* EAP / EAP-IG scores of one prompt pair (out's arrays allocated here). */
tp_status eap_score(eap_engine *e, const eap_pair *p, eap_scores *out);

/* What a score computed on the way, per position in f64, for extensions that attribute
 * through more nodes (eap_features.h). Gn rows: 0 = ∂m/∂hook_embed (= ∂m/∂resid_pre(0)),
 * 1 + 2l = ∂m/∂resid_mid(l), 2 + 2l = ∂m/∂resid_post(l); with EAP-IG every gradient is
 * the mean over the M runs. */
typedef struct {
    const eap_graph *g;
    int T, d, ig_steps;
    int grad_on_clean;  /* 1: the gradients are on the clean run (eap_score_against), else on the corrupted one */
    const double *A;    /* [n_up][T][d] a_u on the clean run */
    const double *D;    /* [n_up][T][d] a_u^clean − a_u^corr */
    const double *G;    /* [n_down][T][d] g_v */
    const double *Gn;   /* [1 + 2L][T][d] */
} eap_state;
typedef tp_status (*eap_extend_fn)(const eap_state *st, void *user);
/* eap_score, and fn(state, user) once the gradients are in (fn NULL: none). */
tp_status eap_score_ext(eap_engine *e, const eap_pair *p, eap_extend_fn fn, void *user, eap_scores *out);
void eap_scores_free(eap_scores *s);
/* EAP against given corrupted outputs corr [n_up][T][d] (e.g. node means: mean
 * ablation, which has no corrupted run to differentiate): score(u→v) = Σ_pos g_v ·
 * (a_u^clean − corr_u) with g_v on the clean run of ids; ld_corr is stored as given. */
tp_status eap_score_against(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                            const double *corr, double ld_corr, eap_scores *out);
/* The same with an extension (fn NULL: none). */
tp_status eap_score_against_ext(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                                const double *corr, double ld_corr, eap_extend_fn fn, void *user, eap_scores *out);

/* m of the run of ids with the outputs of the nodes with keep[u] == 0 replaced by
 * repl [n_up][T][d] (node patching, above). */
tp_status eap_patch_metric(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                           const uint8_t *keep, const double *repl, double *metric);

#endif
