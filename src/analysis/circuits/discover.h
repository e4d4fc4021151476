/* discover.h — a circuit found by EAP and checked by exact node patching
 * (docs/circuits.md, "Discovery"), for one or several prompt pairs.
 *
 * Scores. EAP (eap.h) of every pair; edge and node scores are the mean over the pairs,
 * as are LD_clean and LD_corr.
 *
 * Faithfulness (node-level evaluation, MIB: Mueller et al. 2025). Existing edges are
 * ranked by |mean score| (ties by index); the top k % of them, n_k = ceil(k/100 · E)
 * edges (at least 1 for k > 0), touch the node set C_k (their sources, and their
 * destinations other than logits). m(C) = the mean over pairs of the clean run's metric
 * with every node outside C at its corrupted output (eap_patch_metric). m(N) is the run
 * with every node kept (the clean run), m(∅) the one with none kept;
 *   f(k) = (m(C_k) − m(∅)) / (m(N) − m(∅))
 * at k ∈ DC_K_PCT, k = 0 included (C_0 = ∅, so f(0) = 0 and f(100) = 1 exactly).
 * CPR = Σ trapezoids of f over the fractions k/100 ∈ [0, 1], CMD the same of |1 − f|.
 * The circuit kept is C_k of the smallest k > 0 with f(k) ≥ threshold, else all edges.
 *
 * Verification. The DC_NVERIFY nodes of largest |node score| (eap.h's attribution
 * patching score) are patched exactly, each alone: its clean output put into the
 * corrupted run (every other node kept), effect = m − LD_corr, mean over pairs.
 *
 * Mean ablation (pairs with corrupt NULL): a node's corrupted output is its mean
 * output (given, [d], the same at every position); the "corrupted run" is the clean
 * run with every node at its mean (LD_corr = m(∅)); EAP takes g_v on the clean run
 * (eap_score_against: there is no corrupted run to differentiate); the verification
 * is the node alone set to its mean in the clean run (every other node kept),
 * effect = LD_clean − m, the quantity the clean-gradient node score approximates.
 */
#ifndef TP_CIRCUITS_DISCOVER_H
#define TP_CIRCUITS_DISCOVER_H

#include "analysis/circuits/circuit_graph.h"
#include "analysis/circuits/eap.h"
#include "analysis/circuits/eap_features.h"
#include "core/error.h"
#include "model/model.h"

#include <jansson.h>
#include <stdint.h>

#define DC_NK 11
#define DC_NVERIFY 10
extern const double DC_K_PCT[DC_NK];   /* 0, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100 */

typedef struct {
    const int32_t *clean, *corrupt;    /* [T] each; corrupt NULL: mean ablation */
    int T;
    int32_t target, distractor;        /* distractor -1: none */
    const double *mean;                /* corrupt NULL: every node's mean output [n_up][d] */
} dc_pair;

typedef struct {
    eap_graph g;
    int n_pairs, n_edges;              /* n_edges: existing edges E */
    double ld_clean, ld_corr;          /* means over the pairs */
    double *edge, *node;               /* mean EAP scores [n_up][n_down], [n_up] */
    int edges_k[DC_NK], nodes_k[DC_NK];
    double m_k[DC_NK], f[DC_NK];
    double m_full, m_empty, threshold, cpr, cmd;
    int kept;                          /* index into DC_K_PCT; -1: none reached it (all edges kept) */
    int mean_mode;                     /* the pairs are mean ablations */
    int n_verify, verify_node[DC_NVERIFY];
    double verify_eap[DC_NVERIFY], verify_exact[DC_NVERIFY];
} dc_result;

/* Scores, curve and verification of the pairs (each T ≥ 1, any lengths). */
tp_status dc_run(const tp_model *m, const dc_pair *pairs, int n, double threshold, dc_result *out);
void dc_result_free(dc_result *r);

/* Trapezoid areas of f and |1 − f| over x[0..n). */
void dc_area(const double *x, const double *f, int n, double *cpr, double *cmd);
/* Edges kept at curve point i: n_k of DC_K_PCT[i] over E edges. */
int dc_edges_at(int i, int E);

/* {"evaluation", "k_percent", "edges", "nodes", "m", "f", "m_full", "m_empty", "cpr",
 *  "cmd", "threshold", "reached", "kept_k_percent", "kept_edges"} */
json_t *dc_curve_json(const dc_result *r);
/* [{"node", "eap", "exact"}] */
json_t *dc_verify_json(const dc_result *r);
/* The feature scores (eap_features.h) of the pairs: the mean over the pairs, the top
 * features per point by |mean node score| (several pairs: a first pass of node scores
 * picks them, a second gives their edges). out allocated here. */
tp_status dc_features(const tp_model *m, const dc_pair *pairs, int n, const eap_sae_set *saes, int top,
                      eap_feat_scores *out);
/* The kept circuit as a graph (attribute_graph of the kept edges), and when fs is not
 * NULL its selected features with their edges to and from the circuit's nodes that are
 * at least as strong (|w|) as the circuit's weakest edge. */
tp_status dc_graph(const dc_result *r, const eap_feat_scores *fs, cg_graph **out);

#endif
