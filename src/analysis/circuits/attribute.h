/* attribute.h — `circuits attribute`: EAP / EAP-IG (eap.h) of one or several
 * clean/corrupted prompt pairs -> results/circuits/attribute_<id>.json (every edge
 * ranked, node scores, the metric on both runs, settings, prompts, definitions) and the
 * top-K edges as a circuit graph (circuit_graph.h): results/circuits/<id>.json, .dot, .svg.
 *
 * Several pairs: every score is the mean over the pairs of the pair's score, as are
 * LD_clean and LD_corr; normalized scores divide by mean LD_clean − mean LD_corr (null
 * when it is 0). Pair i is computed by rank i mod np and sent to rank 0, which adds the
 * pairs in order: the JSON is the same bits for any number of ranks.
 *
 * SAE features (eap_features.h): with sae_features > 0 and SAEs in the run at residual
 * points, the top sae_features features per point (by |mean node score|) become nodes
 * with their edges. With several pairs that takes two passes: the node scores of every
 * feature first (summed on rank 0, which picks the features and broadcasts them), then
 * the edges of the picked ones.
 */
#ifndef TP_CIRCUITS_ATTRIBUTE_H
#define TP_CIRCUITS_ATTRIBUTE_H

#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/circuit_graph.h"
#include "analysis/circuits/eap.h"
#include "analysis/circuits/eap_features.h"

#include <stdint.h>

typedef struct {
    const char *clean_text, *corrupt_text;
    const int32_t *clean, *corrupt;
    int T;
    const char *target_text, *distractor_text;   /* distractor NULL: none */
    int32_t target, distractor;                  /* distractor -1: none */
} attribute_pair;

typedef struct {
    int npairs;
    const attribute_pair *pairs;
    const char *pairs_file;     /* where the pairs came from; NULL: --clean/--corrupt */
    int ig_steps, top;
    int sae_features;           /* features kept as nodes per SAE point of the run; 0: none */
    const char *id;
} attribute_request;

/* The definitions every attribution JSON states. */
json_t *attribute_definitions_json(int ig_steps);
/* Ranked edges [{"source","target","score","normalized"}] (existing edges only). */
json_t *attribute_edges_json(const eap_scores *s, double denom);
/* Ranked nodes [{"node","score","normalized"}]. */
json_t *attribute_nodes_json(const eap_scores *s, double denom);
/* The graph of the top-K edges by |score| (cg_prune: those reaching logits), node
 * scores on its nodes. */
tp_status attribute_graph(const eap_scores *s, int top, cg_graph **out);

/* The selected features of fs as nodes (scores / scale) with their edges of |w| ≥
 * min_abs (after / scale); with only_present, only edges whose other end is already a
 * node of cg. A feature left without an edge is not added. */
tp_status attribute_add_features(cg_graph *cg, const eap_feat_scores *fs, double scale, double min_abs,
                                 int only_present);
/* The definitions of the feature scores (the "features" block of every JSON that has one). */
json_t *attribute_features_definitions_json(void);

/* Collective: the ranks share the pairs; rank 0 writes. */
tp_status attribute_run(const circuits_ctx *cx, const attribute_request *rq, const char *run_dir);

#endif
