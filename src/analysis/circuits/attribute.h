/* attribute.h — `circuits attribute`: EAP / EAP-IG (eap.h) of one clean/corrupted
 * prompt pair -> results/circuits/attribute_<id>.json (every edge ranked, node scores,
 * the metric on both runs, settings, prompts, definitions) and the top-K edges as a
 * circuit graph (circuit_graph.h): results/circuits/<id>.json, .dot, .svg.
 * Normalized scores divide by LD_clean − LD_corr (null when it is 0).
 */
#ifndef TP_CIRCUITS_ATTRIBUTE_H
#define TP_CIRCUITS_ATTRIBUTE_H

#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/circuit_graph.h"
#include "analysis/circuits/eap.h"

#include <stdint.h>

typedef struct {
    const char *clean_text, *corrupt_text;
    const int32_t *clean, *corrupt;
    int T;
    const char *target_text, *distractor_text;   /* distractor NULL: none */
    int32_t target, distractor;                  /* distractor -1: none */
    int ig_steps, top;
    const char *id;
} attribute_request;

/* The definitions every attribution JSON states. */
json_t *attribute_definitions_json(int ig_steps);
/* Ranked edges [{"source","target","score","normalized"}] (existing edges only). */
json_t *attribute_edges_json(const eap_scores *s, double denom);
/* Ranked nodes [{"node","score","normalized"}]. */
json_t *attribute_nodes_json(const eap_scores *s, double denom);
/* Name of upstream u / downstream v: "embed", "a1.h3", "m2", "logits". */
void attribute_up_name(const eap_graph *g, int u, char *buf, size_t n);
void attribute_down_name(const eap_graph *g, int v, char *buf, size_t n);
/* The graph of the top-K edges by |score| (cg_prune: those reaching logits), node
 * scores on its nodes. */
tp_status attribute_graph(const eap_scores *s, int top, cg_graph **out);

/* Collective: rank 0 computes and writes. */
tp_status attribute_run(const circuits_ctx *cx, const attribute_request *rq, const char *run_dir);

#endif
