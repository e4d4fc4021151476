/* circuit_graph.h — a circuit as a weighted graph, written as JSON, Graphviz .dot and SVG.
 *
 * Nodes are the model's components in the residual-stream graph that EAP / MIB use:
 *   embed          the token embedding (MIB's "input")
 *   a<L>.h<H>      attention head H of layer L
 *   m<L>           the MLP of layer L
 *   f<L>.<id>      SAE feature <id> at a capture point of layer L (its hook named)
 *   logits         the unembedding (the metric's input)
 * An edge u -> v carries a signed weight (an attribution or patching effect: how much
 * of the metric flows from u's output into v's input). A node may carry a score of its
 * own (e.g. its patching effect). Nodes are kept in insertion order; ids are indices.
 *
 * Output (cg_write): <dir>/<name>.json = the caller's metadata (prompts, method,
 * thresholds, model) with "nodes" and "edges" added; <dir>/<name>.dot; <dir>/<name>.svg
 * laid out by Graphviz's `dot` engine through libgvc (no external program). Each file
 * is written atomically; an earlier graph of the same name stays until the new one is
 * complete.
 */
#ifndef TP_CIRCUIT_GRAPH_H
#define TP_CIRCUIT_GRAPH_H

#include "core/error.h"

#include <jansson.h>
#include <stddef.h>

typedef enum { CG_EMBED = 0, CG_HEAD, CG_MLP, CG_FEATURE, CG_LOGITS } cg_kind;

typedef struct {
    cg_kind kind;
    int layer;                 /* -1 for embed; num_layers for logits */
    int index;                 /* head or feature id; -1 otherwise */
    char hook[96];             /* features: the capture point of the SAE ("" otherwise) */
    char id[128];              /* "a1.h3", "m2", "embed", "logits", "f2.blocks.2.hook_resid_post.117" */
    char label[128];           /* extra text shown in the figure (e.g. a feature's description) */
    double score;              /* a score of the node itself (NAN: none) */
} cg_node;

typedef struct {
    int src, dst;
    double weight;
} cg_edge;

typedef struct cg_graph cg_graph;

tp_status cg_new(cg_graph **out);
void cg_free(cg_graph *g);

/* The node of (kind, layer, index, hook), added when absent. Returns its id in *id. */
tp_status cg_node_get(cg_graph *g, cg_kind kind, int layer, int index, const char *hook, int *id);
/* The id of the node of (kind, layer, index, hook), -1 when absent. */
int cg_node_find(const cg_graph *g, cg_kind kind, int layer, int index, const char *hook);
/* Adds u -> v with weight w (both must exist; u != v). A second edge u -> v adds to the
 * first's weight. */
tp_status cg_edge_add(cg_graph *g, int u, int v, double w);

int cg_num_nodes(const cg_graph *g);
int cg_num_edges(const cg_graph *g);
cg_node *cg_node_at(cg_graph *g, int id);
const cg_edge *cg_edge_at(const cg_graph *g, int i);

/* Keeps the edges with |w| >= min_abs, at most max_edges of the largest |w| (0: no
 * cap; ties broken by insertion order), then the nodes on a path from embed or any
 * node to logits through kept edges ("pruned to what reaches the metric"); logits is
 * always kept. Node ids change: the graph is compacted in order. */
tp_status cg_prune(cg_graph *g, double min_abs, int max_edges);

/* {"nodes": [{"id","kind","layer","head"|"feature","hook","label","score"}],
 *  "edges": [{"source","target","weight"}]}, nodes in order, edges by |weight| desc. */
tp_status cg_to_json(const cg_graph *g, json_t **out);
/* The Graphviz text: one rank per layer (embed at the top, logits at the bottom),
 * edge width by |w| / max|w|, colour by sign (blue +, red −). title may be NULL. */
tp_status cg_to_dot(const cg_graph *g, const char *title, char **out);
/* Lays out `dot` text with libgvc's dot engine and writes SVG to path (atomically). */
tp_status cg_render_svg(const char *dot, const char *path);

/* <dir>/<name>.json (meta's keys, then "nodes" and "edges"; meta may be NULL and is
 * not modified), <dir>/<name>.dot and <dir>/<name>.svg. */
tp_status cg_write(const cg_graph *g, const json_t *meta, const char *dir, const char *name);

const char *cg_kind_name(cg_kind k);   /* "embedding", "head", "mlp", "feature", "logits" */

#endif
