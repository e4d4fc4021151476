/* eap_features.h — SAE features as nodes of the EAP graph (docs/circuits.md, "SAE
 * features in the graph").
 *
 * A run's SAE at a residual-stream point P of layer l (hook_resid_pre, hook_resid_mid or
 * hook_resid_post; results/sae_layer_<l>[_<point>], read with SAELens' rule,
 * sae_export.h) re-expresses the stream there: x_P = Σ_f act_f(x_P) d_f + b_dec + ε with
 * d_f the decoder row of feature f. The stream at P is the sum of the outputs of the
 * nodes upstream of P (eap.h), so features sit between them and the nodes downstream:
 *   upstream of P    embed; heads and MLPs of layers < l; the heads of l (resid_mid,
 *                    resid_post); the MLP of l (resid_post)
 *   downstream of P  every other node, logits last
 * With x_P^clean = Σ_{u up} a_u^clean, x_P^corr the same on the corrupted outputs,
 * Δact_f(t) = act_f(x_P^clean(t)) − act_f(x_P^corr(t)) and g_P = ∂m/∂x_P (eap_state's Gn):
 *   node(f)     = Σ_t Δact_f(t) · (d_f · g_P(t))                (attribution patching)
 *   f -> v      = Σ_t Δact_f(t) · (d_f · g_v(t))                 (v downstream of P)
 *   u -> f      = Σ_t (d_f · g_P(t)) J_f(t) · Δa_u(t),  J_f(t) = ∂act_f/∂x_P = W_enc[:, f] ·
 *                 1[f active] (u upstream of P; Sparse Feature Circuits' edge
 *                 ∇_f m · ∇_u f · Δu, in the metric's units), the activity taken where the gradients were: on the
 *                 corrupted run for EAP; for EAP-IG the mean over x_P^corr + (k/M)Δx_P,
 *                 k = 1..M (the path in activation space); on the clean run for
 *                 eap_score_against
 *   point total = Σ_t g_P(t) · Δx_P(t): all that flows through P; Σ_f node(f) is the part
 *                 the features carry (the rest is the change in the SAE's error ε)
 * Σ_v (f -> v) = node(f) exactly (the g_v downstream of P add up to g_P); Σ_u (u -> f) is
 * node(f) where the feature is linear between the two runs.
 * Feature nodes come in addition to the component graph (u -> f -> v runs beside u -> v);
 * the SAE error is not a node. Only the selected features (the top-N by |node| per point,
 * or a given list) get edges; node() is computed for every feature.
 *
 * Scores live in one f64 block so that sums over prompt pairs are one add
 * (eap_feat_block, eap_feat_add).
 */
#ifndef TP_CIRCUITS_EAP_FEATURES_H
#define TP_CIRCUITS_EAP_FEATURES_H

#include "analysis/circuits/eap.h"
#include "analysis/sae/sae_export.h"
#include "core/error.h"
#include "model/hooks.h"

#include <jansson.h>
#include <stdint.h>

typedef struct {
    saelens_sae sae;
    char hook[96];        /* blocks.<l>.hook_resid_post, ... */
    char dir[512];        /* the SAE's folder, relative to the run folder */
    int layer;
    tp_hook_point pt;
} eap_sae;

typedef struct {
    int n;
    eap_sae *s;
} eap_sae_set;

/* The run's SAEs at the residual points of every layer (none: n = 0, not an error);
 * an SAE whose width is not the model's is an error naming its folder. */
tp_status eap_sae_set_open(const char *run_dir, const tp_model_config *c, eap_sae_set *out);
void eap_sae_set_free(eap_sae_set *s);

/* Scores per SAE point. Offsets index the block (eap_feat_scores.block). */
typedef struct {
    int64_t F;
    int nsel;
    int64_t *sel;               /* [nsel] feature ids */
    size_t node, total, in, out, act_clean, act_corr;   /* offsets: [F], [1], [n_up][nsel], [nsel][n_down],
                                                           [nsel] Σ_t act on the clean / corrupted run */
} eap_feat_point;

typedef struct {
    const eap_sae_set *saes;
    eap_graph g;
    int n;                      /* = saes->n */
    eap_feat_point *p;
    size_t size;                /* doubles in block */
    double *block;
} eap_feat_scores;

/* How a score picks its features: top (by |node| of this pair, into the nsel slots
 * eap_feat_scores_new made), none (node and total only; every point's selection must be
 * empty), or the selection already in the scores. */
typedef enum { EAP_FEAT_TOP = 0, EAP_FEAT_NODES_ONLY, EAP_FEAT_GIVEN } eap_feat_mode;

/* Scores with room for top features per point (EAP_FEAT_TOP, EAP_FEAT_NODES_ONLY: 0),
 * zeroed. For EAP_FEAT_GIVEN use eap_feat_select_all afterwards. */
tp_status eap_feat_scores_new(const eap_sae_set *saes, const eap_graph *g, int top, eap_feat_scores *out);
void eap_feat_scores_free(eap_feat_scores *s);
/* The top-n feature ids of point p by |node| (ties: lower id), into sel [n]; returns
 * how many (≤ F). */
int eap_feat_top(const eap_feat_scores *s, int p, int n, int64_t *sel);
/* The top-`top` features of every point (eap_feat_top): ids into sel [n][top], counts into
 * cnt [n]. */
void eap_feat_top_all(const eap_feat_scores *s, int top, int64_t *sel, int *cnt);
/* Every point's selection at once: point p keeps sel[p·top ..] (cnt[p] ids); the block is
 * re-laid out once and zeroed. sel NULL: every selection empty (node scores only). */
tp_status eap_feat_select_all(eap_feat_scores *s, const int64_t *sel, const int *cnt, int top);
/* dst block += src block (same layout). */
void eap_feat_add(eap_feat_scores *dst, const double *src_block);

typedef struct {
    eap_feat_mode mode;
    int top;
    eap_feat_scores *out;       /* its block overwritten */
} eap_feat_request;

/* An eap_extend_fn: user is an eap_feat_request. */
tp_status eap_features_extend(const eap_state *st, void *user);

/* Node id of feature sel[i] of point p, as circuit_graph.h names it. */
void eap_feat_name(const eap_feat_scores *s, int p, int i, char *buf, size_t n);
/* {"saes": [...per point: hook, dir, architecture, d_sae, point_total, features_total ...],
 *  "nodes": [ranked selected features], "edges": [ranked feature edges]}; scores divided
 * by scale (the number of pairs) and normalized by denom. */
json_t *eap_feat_json(const eap_feat_scores *s, double scale, double denom);

#endif
