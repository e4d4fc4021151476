/* circuit_graph.c — circuits as weighted graphs: building, pruning, JSON, Graphviz. */
#include "analysis/circuits/circuit_graph.h"

#include "core/fsutil.h"

#include <graphviz/gvc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cg_graph {
    cg_node *nodes;
    int n_nodes, cap_nodes;
    cg_edge *edges;
    int n_edges, cap_edges;
};

tp_status cg_new(cg_graph **out)
{
    cg_graph *g = tp_calloc(1, sizeof *g);
    if (!g) return TP_ERR_NOMEM;
    *out = g;
    return TP_OK;
}

void cg_free(cg_graph *g)
{
    if (!g) return;
    free(g->nodes);
    free(g->edges);
    free(g);
}

int cg_num_nodes(const cg_graph *g) { return g->n_nodes; }
int cg_num_edges(const cg_graph *g) { return g->n_edges; }
cg_node *cg_node_at(cg_graph *g, int id) { return id >= 0 && id < g->n_nodes ? &g->nodes[id] : NULL; }
const cg_edge *cg_edge_at(const cg_graph *g, int i) { return i >= 0 && i < g->n_edges ? &g->edges[i] : NULL; }

const char *cg_kind_name(cg_kind k)
{
    static const char *names[] = {"embedding", "head", "mlp", "feature", "logits"};
    return (unsigned)k < sizeof names / sizeof *names ? names[k] : "?";
}

static tp_status grow(void **p, int *cap, int need, size_t elem)
{
    if (need <= *cap) return TP_OK;
    int c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, (size_t)c * elem);
    if (!q) return tp_err(TP_ERR_NOMEM, "circuit graph: out of memory for %d entries", c);
    *p = q;
    *cap = c;
    return TP_OK;
}

static void node_id(cg_node *n)
{
    switch (n->kind) {
    case CG_EMBED: snprintf(n->id, sizeof n->id, "embed"); break;
    case CG_HEAD: snprintf(n->id, sizeof n->id, "a%d.h%d", n->layer, n->index); break;
    case CG_MLP: snprintf(n->id, sizeof n->id, "m%d", n->layer); break;
    case CG_FEATURE: snprintf(n->id, sizeof n->id, "f%d.%s.%d", n->layer, n->hook, n->index); break;
    case CG_LOGITS: snprintf(n->id, sizeof n->id, "logits"); break;
    }
}

int cg_node_find(const cg_graph *g, cg_kind kind, int layer, int index, const char *hook)
{
    if (kind != CG_HEAD && kind != CG_FEATURE) index = -1;
    if (kind == CG_EMBED) layer = -1;
    if (!hook || kind != CG_FEATURE) hook = "";
    for (int i = 0; i < g->n_nodes; i++) {
        const cg_node *n = &g->nodes[i];
        if (n->kind == kind && n->index == index && !strcmp(n->hook, hook) && (kind == CG_LOGITS || n->layer == layer))
            return i;
    }
    return -1;
}

tp_status cg_node_get(cg_graph *g, cg_kind kind, int layer, int index, const char *hook, int *id)
{
    if (kind != CG_HEAD && kind != CG_FEATURE) index = -1;
    if (kind == CG_EMBED) layer = -1;
    if (!hook || kind != CG_FEATURE) hook = "";
    if (strlen(hook) >= sizeof g->nodes[0].hook)
        return tp_err(TP_ERR_RANGE, "circuit graph: hook name '%s' too long", hook);
    if ((*id = cg_node_find(g, kind, layer, index, hook)) >= 0) return TP_OK;
    TP_CHECK(grow((void **)&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof *g->nodes));
    cg_node *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind, n->layer = layer, n->index = index, n->score = NAN;
    snprintf(n->hook, sizeof n->hook, "%s", hook);
    node_id(n);
    *id = g->n_nodes++;
    return TP_OK;
}

tp_status cg_edge_add(cg_graph *g, int u, int v, double w)
{
    if (u < 0 || u >= g->n_nodes || v < 0 || v >= g->n_nodes || u == v)
        return tp_err(TP_ERR_INTERNAL, "circuit graph: edge %d -> %d between unknown or equal nodes (%d nodes)", u, v,
                      g->n_nodes);
    for (int i = 0; i < g->n_edges; i++)
        if (g->edges[i].src == u && g->edges[i].dst == v) {
            g->edges[i].weight += w;
            return TP_OK;
        }
    TP_CHECK(grow((void **)&g->edges, &g->cap_edges, g->n_edges + 1, sizeof *g->edges));
    g->edges[g->n_edges++] = (cg_edge){.src = u, .dst = v, .weight = w};
    return TP_OK;
}

/* ---- pruning -------------------------------------------------------------------- */

/* Edge order: |w| descending, then insertion order (stable and platform-independent). */
static const cg_edge *g_sort_base;
static int by_abs_weight(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double x = fabs(g_sort_base[i].weight), y = fabs(g_sort_base[j].weight);
    if (x != y) return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

static tp_status edge_order(const cg_graph *g, int **out)
{
    int *ord = tp_malloc((size_t)(g->n_edges ? g->n_edges : 1) * sizeof *ord);
    if (!ord) return TP_ERR_NOMEM;
    for (int i = 0; i < g->n_edges; i++) ord[i] = i;
    g_sort_base = g->edges;
    qsort(ord, (size_t)g->n_edges, sizeof *ord, by_abs_weight);
    *out = ord;
    return TP_OK;
}

/* reach[i] = 1 when node i reaches a logits node through kept edges (reverse sweep
 * to a fixed point: the graph is small). */
static void mark_reaching(const cg_graph *g, const char *keep_edge, char *reach)
{
    for (int i = 0; i < g->n_nodes; i++) reach[i] = g->nodes[i].kind == CG_LOGITS;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int e = 0; e < g->n_edges; e++)
            if (keep_edge[e] && reach[g->edges[e].dst] && !reach[g->edges[e].src]) reach[g->edges[e].src] = 1, changed = 1;
    }
}

static void compact(cg_graph *g, const char *keep_edge, const char *keep_node)
{
    int *map = malloc((size_t)(g->n_nodes ? g->n_nodes : 1) * sizeof *map);
    int n = 0, m = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        map[i] = keep_node[i] ? n : -1;
        if (keep_node[i]) g->nodes[n++] = g->nodes[i];
    }
    for (int e = 0; e < g->n_edges; e++) {
        cg_edge x = g->edges[e];
        if (!keep_edge[e] || map[x.src] < 0 || map[x.dst] < 0) continue;
        g->edges[m++] = (cg_edge){.src = map[x.src], .dst = map[x.dst], .weight = x.weight};
    }
    g->n_nodes = n, g->n_edges = m;
    free(map);
}

tp_status cg_prune(cg_graph *g, double min_abs, int max_edges)
{
    int *ord = NULL;
    TP_CHECK(edge_order(g, &ord));
    char *keep_edge = calloc((size_t)g->n_edges + 1, 1), *reach = calloc((size_t)g->n_nodes + 1, 1);
    if (!keep_edge || !reach) {
        free(ord), free(keep_edge), free(reach);
        return tp_err(TP_ERR_NOMEM, "circuit graph: out of memory pruning %d edges", g->n_edges);
    }
    for (int r = 0, kept = 0; r < g->n_edges; r++) {
        int e = ord[r];
        if (fabs(g->edges[e].weight) < min_abs || (max_edges > 0 && kept >= max_edges)) continue;
        keep_edge[e] = 1, kept++;
    }
    mark_reaching(g, keep_edge, reach);
    compact(g, keep_edge, reach);   /* an edge into a node that cannot reach logits goes with it */
    free(ord), free(keep_edge), free(reach);
    return TP_OK;
}

/* ---- JSON ------------------------------------------------------------------------ */

static json_t *node_json(const cg_node *n)
{
    json_t *o = json_pack("{s:s, s:s, s:i}", "id", n->id, "kind", cg_kind_name(n->kind), "layer", n->layer);
    if (!o) return NULL;
    if (n->kind == CG_HEAD) json_object_set_new(o, "head", json_integer(n->index));
    if (n->kind == CG_FEATURE) {
        json_object_set_new(o, "feature", json_integer(n->index));
        json_object_set_new(o, "hook", json_string(n->hook));
    }
    if (n->label[0]) json_object_set_new(o, "label", json_string(n->label));
    json_object_set_new(o, "score", isfinite(n->score) ? json_real(n->score) : json_null());
    return o;
}

tp_status cg_to_json(const cg_graph *g, json_t **out)
{
    json_t *nodes = json_array(), *edges = json_array(), *o = json_object();
    int *ord = NULL;
    tp_status st = nodes && edges && o ? edge_order(g, &ord) : tp_err(TP_ERR_NOMEM, "circuit graph: JSON");
    for (int i = 0; st == TP_OK && i < g->n_nodes; i++)
        if (json_array_append_new(nodes, node_json(&g->nodes[i]))) st = tp_err(TP_ERR_NOMEM, "circuit graph: JSON");
    for (int r = 0; st == TP_OK && r < g->n_edges; r++) {
        const cg_edge *e = &g->edges[ord[r]];
        json_t *x = json_pack("{s:s, s:s, s:f}", "source", g->nodes[e->src].id, "target", g->nodes[e->dst].id,
                              "weight", e->weight);
        if (json_array_append_new(edges, x)) st = tp_err(TP_ERR_NOMEM, "circuit graph: JSON");
    }
    free(ord);
    if (st == TP_OK) {
        json_object_set_new(o, "nodes", nodes);
        json_object_set_new(o, "edges", edges);
        *out = o;
        return TP_OK;
    }
    json_decref(nodes), json_decref(edges), json_decref(o);
    return st;
}

/* ---- Graphviz -------------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} strbuf;

static void sb_printf(strbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *s, const char *fmt, ...)
{
    if (s->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) { s->failed = 1; return; }
        if (s->buf && s->len + (size_t)n < s->cap) { s->len += (size_t)n; return; }
        size_t cap = s->cap ? s->cap * 2 : 4096;
        while (cap < s->len + (size_t)n + 1) cap *= 2;
        char *b = realloc(s->buf, cap);
        if (!b) { s->failed = 1; return; }
        s->buf = b, s->cap = cap;
    }
}

/* A label as a quoted DOT string: quotes and backslashes escaped, control
 * characters dropped (they would end the figure's text). */
static void sb_quoted(strbuf *s, const char *text)
{
    sb_printf(s, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\') sb_printf(s, "\\%c", *p);
        else if (*p == '\n') sb_printf(s, "\\n");
        else if (*p >= 0x20) sb_printf(s, "%c", *p);
    }
    sb_printf(s, "\"");
}

static void dot_node(strbuf *s, const cg_node *n)
{
    static const char *shape[] = {"box", "ellipse", "box", "note", "doubleoctagon"};
    static const char *fill[] = {"#e8e8e8", "#cfe3ff", "#ffe2c2", "#e2f5d0", "#f2d0f5"};
    char text[300];
    snprintf(text, sizeof text, "%s%s%s", n->id, n->label[0] ? "\n" : "", n->label);
    sb_printf(s, "  \"%s\" [label=", n->id);
    sb_quoted(s, text);
    sb_printf(s, ", shape=%s, style=filled, fillcolor=\"%s\"];\n", shape[n->kind], fill[n->kind]);
}

static void dot_ranks(strbuf *s, const cg_graph *g)
{
    int lo = 0, hi = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].layer < lo) lo = g->nodes[i].layer;
        if (g->nodes[i].layer > hi) hi = g->nodes[i].layer;
    }
    for (int L = lo; L <= hi; L++) {
        int any = 0;
        for (int i = 0; i < g->n_nodes; i++) {
            const cg_node *n = &g->nodes[i];
            if (n->layer != L || n->kind == CG_MLP) continue;   /* an MLP sits below its layer's heads */
            if (!any) sb_printf(s, "  { rank=same;");
            sb_printf(s, " \"%s\";", n->id);
            any = 1;
        }
        if (any) sb_printf(s, " }\n");
    }
}

tp_status cg_to_dot(const cg_graph *g, const char *title, char **out)
{
    strbuf s = {0};
    double wmax = 0;
    for (int e = 0; e < g->n_edges; e++) wmax = fmax(wmax, fabs(g->edges[e].weight));
    sb_printf(&s, "digraph circuit {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
                  "  edge [arrowsize=0.6];\n");
    if (title) {
        sb_printf(&s, "  labelloc=t;\n  label=");
        sb_quoted(&s, title);
        sb_printf(&s, ";\n");
    }
    for (int i = 0; i < g->n_nodes; i++) dot_node(&s, &g->nodes[i]);
    dot_ranks(&s, g);
    for (int e = 0; e < g->n_edges; e++) {
        const cg_edge *x = &g->edges[e];
        double rel = wmax > 0 ? fabs(x->weight) / wmax : 0;
        sb_printf(&s, "  \"%s\" -> \"%s\" [penwidth=%.2f, color=\"%s\", tooltip=\"%.4g\"];\n", g->nodes[x->src].id,
                  g->nodes[x->dst].id, 0.5 + 4.5 * rel, x->weight >= 0 ? "#1f5fbf" : "#c0392b", x->weight);
    }
    sb_printf(&s, "}\n");
    if (s.failed) {
        free(s.buf);
        return tp_err(TP_ERR_NOMEM, "circuit graph: out of memory writing the Graphviz text");
    }
    *out = s.buf;
    return TP_OK;
}

/* Graphviz reports parse errors through a callback: kept for our one-line message
 * instead of printed to stderr. */
static char g_gv_msg[256];
static int gv_error(char *msg)
{
    snprintf(g_gv_msg, sizeof g_gv_msg, "%s", msg);
    g_gv_msg[strcspn(g_gv_msg, "\n")] = '\0';
    return 0;
}

tp_status cg_render_svg(const char *dot, const char *path)
{
    g_gv_msg[0] = '\0';
    agseterrf(gv_error);
    GVC_t *gvc = gvContext();
    if (!gvc) return tp_err(TP_ERR_INTERNAL, "%s: Graphviz could not start (gvContext)", path);
    Agraph_t *g = agmemread(dot);
    tp_status st = TP_OK;
    char *svg = NULL;
    unsigned int len = 0;
    if (!g) st = tp_err(TP_ERR_FORMAT, "%s: Graphviz could not parse the circuit's .dot text (%s)", path, g_gv_msg);
    else if (gvLayout(gvc, g, "dot") != 0)
        st = tp_err(TP_ERR_INTERNAL, "%s: Graphviz layout 'dot' failed (is the dot layout plug-in installed?)", path);
    else if (gvRenderData(gvc, g, "svg", &svg, &len) != 0 || !svg)
        st = tp_err(TP_ERR_INTERNAL, "%s: Graphviz could not render SVG", path);
    else st = fs_write_atomic(path, svg, len);
    if (svg) gvFreeRenderData(svg);
    if (g) {
        gvFreeLayout(gvc, g);
        agclose(g);
    }
    gvFreeContext(gvc);
    return st;
}

tp_status cg_write(const cg_graph *g, const json_t *meta, const char *dir, const char *name)
{
    char path[TP_PATH_MAX];
    json_t *doc = meta ? json_deep_copy(meta) : json_object(), *gj = NULL;
    char *dot = NULL;
    tp_status st = doc ? cg_to_json(g, &gj) : tp_err(TP_ERR_NOMEM, "circuit graph: JSON");
    if (st == TP_OK) {
        json_object_update(doc, gj);
        st = fs_mkdir_p(dir);
    }
    if (st == TP_OK) st = fs_path(path, sizeof path, "%s/%s.json", dir, name);
    if (st == TP_OK) st = fs_write_json(path, doc);
    if (st == TP_OK) {
        json_t *t = json_object_get(meta, "title");
        st = cg_to_dot(g, json_is_string(t) ? json_string_value(t) : name, &dot);
    }
    if (st == TP_OK) st = fs_path(path, sizeof path, "%s/%s.dot", dir, name);
    if (st == TP_OK) st = fs_write_atomic(path, dot, strlen(dot));
    if (st == TP_OK) st = fs_path(path, sizeof path, "%s/%s.svg", dir, name);
    if (st == TP_OK) st = cg_render_svg(dot, path);
    free(dot);
    json_decref(gj);
    json_decref(doc);
    return st;
}
