/* discover.c — mean EAP scores of prompt pairs, the faithfulness curve and the exact
 * verification of the top nodes (discover.h). */
#include "analysis/circuits/discover.h"

#include "analysis/circuits/attribute.h"
#include "analysis/circuits/circuits_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double DC_K_PCT[DC_NK] = {0, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100};

int dc_edges_at(int i, int E)
{
    if (i <= 0) return 0;
    int n = (int)ceil(DC_K_PCT[i] / 100.0 * E - 1e-9);
    return n < 1 ? 1 : n > E ? E : n;
}

void dc_area(const double *x, const double *f, int n, double *cpr, double *cmd)
{
    double a = 0, b = 0;
    for (int i = 0; i + 1 < n; i++) {
        double w = x[i + 1] - x[i];
        a += w * (f[i] + f[i + 1]) / 2;
        b += w * (fabs(1 - f[i]) + fabs(1 - f[i + 1])) / 2;
    }
    *cpr = a, *cmd = b;
}

/* Per pair: the nodes' outputs on the clean and the corrupted run. */
typedef struct {
    double *clean, *corr;   /* [n_up][T][d] each */
    double ld_clean, ld_corr;
} pair_acts;

static const double *g_rank_val;
static int cmp_rank(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    double x = fabs(g_rank_val[i]), y = fabs(g_rank_val[j]);
    return x > y ? -1 : x < y ? 1 : (i > j) - (i < j);
}

/* Indices of existing edges (u * n_down + v) by |score| descending; *E their count. */
static int *rank_edges(const eap_graph *g, const double *edge, int *E)
{
    int n = 0, *ix = malloc((size_t)g->n_up * g->n_down * sizeof *ix);
    if (!ix) return NULL;
    for (int u = 0; u < g->n_up; u++)
        for (int v = 0; v < g->n_down; v++)
            if (eap_edge_exists(g, u, v)) ix[n++] = u * g->n_down + v;
    g_rank_val = edge;
    qsort(ix, (size_t)n, sizeof *ix, cmp_rank);
    *E = n;
    return ix;
}

/* keep[u] for the first n ranked edges: sources and non-logit destinations (v ↔ u = v + 1). */
static int keep_of(const eap_graph *g, const int *ranked, int n, uint8_t *keep)
{
    int count = 0;
    memset(keep, 0, (size_t)g->n_up);
    for (int i = 0; i < n; i++) {
        int u = ranked[i] / g->n_down, v = ranked[i] % g->n_down;
        keep[u] = 1;
        if (v < g->n_down - 1) keep[v + 1] = 1;
    }
    for (int u = 0; u < g->n_up; u++) count += keep[u];
    return count;
}

/* Mean over pairs of m(clean run, nodes outside keep at their corrupted outputs). */
static tp_status mean_patched(eap_engine *e, const dc_pair *p, const pair_acts *a, int n, const uint8_t *keep,
                              double *out)
{
    double s = 0;
    for (int i = 0; i < n; i++) {
        double m;
        TP_CHECK(eap_patch_metric(e, p[i].clean, p[i].T, p[i].target, p[i].distractor, keep, a[i].corr, &m));
        s += m;
    }
    *out = s / n;
    return TP_OK;
}

/* The nodes' outputs of pair p (clean, and corrupted or means) and its EAP scores
 * (with the extension fn when not NULL). */
static tp_status score_pair_ext(eap_engine *e, const dc_pair *p, int n_up, int d, pair_acts *a, eap_extend_fn fn,
                                void *user, eap_scores *s)
{
    TP_CHECK(eap_node_outputs(e, p->clean, p->T, p->target, p->distractor, a->clean, &a->ld_clean));
    if (p->corrupt) {
        eap_pair ep = {.clean = p->clean, .corrupt = p->corrupt, .T = p->T, .target = p->target,
                       .distractor = p->distractor, .ig_steps = 0};
        TP_CHECK(eap_node_outputs(e, p->corrupt, p->T, p->target, p->distractor, a->corr, &a->ld_corr));
        return eap_score_ext(e, &ep, fn, user, s);
    }
    for (int u = 0; u < n_up; u++)   /* the mean at every position */
        for (int t = 0; t < p->T; t++)
            memcpy(a->corr + ((size_t)u * p->T + t) * d, p->mean + (size_t)u * d, (size_t)d * sizeof(double));
    uint8_t *none = calloc((size_t)n_up, 1);
    if (!none) return TP_ERR_NOMEM;
    tp_status st = eap_patch_metric(e, p->clean, p->T, p->target, p->distractor, none, a->corr, &a->ld_corr);
    free(none);
    TP_CHECK(st);
    return eap_score_against_ext(e, p->clean, p->T, p->target, p->distractor, a->corr, a->ld_corr, fn, user, s);
}

static tp_status score_pair(eap_engine *e, const dc_pair *p, int n_up, int d, pair_acts *a, eap_scores *s)
{
    return score_pair_ext(e, p, n_up, d, a, NULL, NULL, s);
}

/* EAP of every pair, summed into r (divided by n by the caller); the outputs kept. */
static tp_status score_pairs(eap_engine *e, const dc_pair *p, int n, int d, pair_acts *a, dc_result *r)
{
    for (int i = 0; i < n; i++) {
        eap_scores s = {0};
        size_t acts_n = (size_t)r->g.n_up * p[i].T * d;
        if (!(a[i].clean = malloc(acts_n * sizeof(double))) || !(a[i].corr = malloc(acts_n * sizeof(double))))
            return tp_err(TP_ERR_NOMEM, "circuits discover: node outputs");
        TP_CHECK(score_pair(e, &p[i], r->g.n_up, d, &a[i], &s));
        size_t ne = (size_t)r->g.n_up * r->g.n_down;
        for (size_t k = 0; k < ne; k++) r->edge[k] += s.edge[k];
        for (int u = 0; u < r->g.n_up; u++) r->node[u] += s.node[u];
        r->ld_clean += s.ld_clean, r->ld_corr += s.ld_corr;
        eap_scores_free(&s);
    }
    return TP_OK;
}

/* The curve: m at every point (a mask equal to the previous point's reuses its m). */
static tp_status curve(eap_engine *e, const dc_pair *p, const pair_acts *a, int n, const int *ranked, dc_result *r)
{
    const eap_graph *g = &r->g;
    uint8_t *keep = malloc((size_t)g->n_up), *prev = malloc((size_t)g->n_up);
    tp_status st = keep && prev ? TP_OK : TP_ERR_NOMEM;
    for (int i = 0; st == TP_OK && i < DC_NK; i++) {
        r->edges_k[i] = dc_edges_at(i, r->n_edges);
        r->nodes_k[i] = keep_of(g, ranked, r->edges_k[i], keep);
        if (i > 0 && !memcmp(keep, prev, (size_t)g->n_up)) r->m_k[i] = r->m_k[i - 1];
        else st = mean_patched(e, p, a, n, keep, &r->m_k[i]);
        memcpy(prev, keep, (size_t)g->n_up);
    }
    free(keep), free(prev);
    TP_CHECK(st);
    /* m(∅): no node kept = point 0; m(N): every node kept = point 100 % (all edges touch all nodes) */
    r->m_empty = r->m_k[0], r->m_full = r->m_k[DC_NK - 1];
    double den = r->m_full - r->m_empty, x[DC_NK];
    for (int i = 0; i < DC_NK; i++) r->f[i] = den != 0 ? (r->m_k[i] - r->m_empty) / den + 0.0 : NAN;   /* + 0.0: no -0 */
    for (int i = 0; i < DC_NK; i++) x[i] = DC_K_PCT[i] / 100.0;
    dc_area(x, r->f, DC_NK, &r->cpr, &r->cmd);
    r->kept = -1;
    for (int i = 1; i < DC_NK && r->kept < 0; i++)
        if (r->f[i] >= r->threshold) r->kept = i;
    return TP_OK;
}

/* Exact effect of the top nodes, each alone: its clean output in the corrupted run
 * (mean ablation: its mean in the clean run, effect LD_clean − m). */
static tp_status verify(eap_engine *e, const dc_pair *p, const pair_acts *a, int n, dc_result *r)
{
    const eap_graph *g = &r->g;
    uint8_t *keep = malloc((size_t)g->n_up), *used = calloc((size_t)g->n_up, 1);
    if (!keep || !used) { free(keep), free(used); return tp_err(TP_ERR_NOMEM, "circuits discover: verification"); }
    r->n_verify = g->n_up < DC_NVERIFY ? g->n_up : DC_NVERIFY;
    tp_status st = TP_OK;
    for (int j = 0; st == TP_OK && j < r->n_verify; j++) {
        int best = -1;
        for (int u = 0; u < g->n_up; u++)
            if (!used[u] && (best < 0 || fabs(r->node[u]) > fabs(r->node[best]))) best = u;
        used[best] = 1;
        memset(keep, 1, (size_t)g->n_up);
        keep[best] = 0;
        double s = 0;
        for (int i = 0; st == TP_OK && i < n; i++) {
            double m = 0;
            if (r->mean_mode) {
                st = eap_patch_metric(e, p[i].clean, p[i].T, p[i].target, p[i].distractor, keep, a[i].corr, &m);
                s += a[i].ld_clean - m;
            } else {
                st = eap_patch_metric(e, p[i].corrupt, p[i].T, p[i].target, p[i].distractor, keep, a[i].clean, &m);
                s += m - a[i].ld_corr;
            }
        }
        r->verify_node[j] = best, r->verify_eap[j] = r->node[best], r->verify_exact[j] = s / n;
    }
    free(keep), free(used);
    return st;
}

static tp_status dc_alloc(const tp_model *m, const dc_pair *pairs, int n, double threshold, dc_result *r)
{
    memset(r, 0, sizeof *r);
    r->g = eap_graph_of(&m->cfg), r->n_pairs = n, r->threshold = threshold;
    r->mean_mode = n > 0 && !pairs[0].corrupt;
    r->edge = calloc((size_t)r->g.n_up * r->g.n_down, sizeof *r->edge);
    r->node = calloc((size_t)r->g.n_up, sizeof *r->node);
    return r->edge && r->node ? TP_OK : tp_err(TP_ERR_NOMEM, "circuits discover: scores");
}

tp_status dc_run(const tp_model *m, const dc_pair *pairs, int n, double threshold, dc_result *r)
{
    if (n < 1) return tp_err(TP_ERR_CONFIG, "circuits discover: no prompt pairs");
    TP_CHECK(dc_alloc(m, pairs, n, threshold, r));
    for (int i = 0; i < n; i++)
        if ((pairs[i].corrupt == NULL) != r->mean_mode || (!pairs[i].corrupt && !pairs[i].mean)) {
            dc_result_free(r);
            return tp_err(TP_ERR_CONFIG, "circuits discover: pair %d: every pair needs a corrupted prompt, or every "
                          "pair node means", i + 1);
        }
    int max_T = 1;
    for (int i = 0; i < n; i++) max_T = pairs[i].T > max_T ? pairs[i].T : max_T;
    eap_engine *e = NULL;
    pair_acts *a = calloc((size_t)n, sizeof *a);
    int *ranked = NULL;
    tp_status st = a ? eap_engine_new(m, max_T, &e) : TP_ERR_NOMEM;
    if (st == TP_OK) st = score_pairs(e, pairs, n, m->cfg.hidden_size, a, r);
    if (st == TP_OK) {
        size_t ne = (size_t)r->g.n_up * r->g.n_down;
        for (size_t k = 0; k < ne; k++) r->edge[k] /= n;
        for (int u = 0; u < r->g.n_up; u++) r->node[u] /= n;
        r->ld_clean /= n, r->ld_corr /= n;
        if (!(ranked = rank_edges(&r->g, r->edge, &r->n_edges))) st = TP_ERR_NOMEM;
    }
    if (st == TP_OK) st = curve(e, pairs, a, n, ranked, r);
    if (st == TP_OK) st = verify(e, pairs, a, n, r);
    for (int i = 0; a && i < n; i++) free(a[i].clean), free(a[i].corr);
    free(a), free(ranked);
    eap_engine_free(e);
    if (st != TP_OK) dc_result_free(r);
    return st;
}

/* One pass of the feature scores over the pairs, their blocks summed into sum. */
static tp_status feature_pass(eap_engine *e, const dc_pair *pairs, int n, int d, eap_feat_request *fr, double *sum)
{
    eap_feat_scores *fs = fr->out;
    memset(sum, 0, fs->size * sizeof *sum);
    for (int i = 0; i < n; i++) {
        pair_acts a = {0};
        eap_scores s = {0};
        size_t acts_n = (size_t)fs->g.n_up * pairs[i].T * d;
        tp_status st = (a.clean = malloc(acts_n * sizeof(double))) && (a.corr = malloc(acts_n * sizeof(double)))
                           ? score_pair_ext(e, &pairs[i], fs->g.n_up, d, &a, eap_features_extend, fr, &s)
                           : tp_err(TP_ERR_NOMEM, "circuits discover: node outputs");
        free(a.clean), free(a.corr);
        eap_scores_free(&s);
        TP_CHECK(st);
        for (size_t k = 0; k < fs->size; k++) sum[k] += fs->block[k];
    }
    return TP_OK;
}

tp_status dc_features(const tp_model *m, const dc_pair *pairs, int n, const eap_sae_set *saes, int top,
                      eap_feat_scores *out)
{
    eap_graph g = eap_graph_of(&m->cfg);
    TP_CHECK(eap_feat_scores_new(saes, &g, n > 1 ? 0 : top, out));
    int max_T = 1, d = m->cfg.hidden_size;
    for (int i = 0; i < n; i++) max_T = pairs[i].T > max_T ? pairs[i].T : max_T;
    eap_engine *e = NULL;
    double *sum = NULL;
    tp_status st = eap_engine_new(m, max_T, &e);
    eap_feat_request fr = {.mode = n > 1 ? EAP_FEAT_NODES_ONLY : EAP_FEAT_TOP, .top = top, .out = out};
    if (st == TP_OK && !(sum = tp_malloc((out->size ? out->size : 1) * sizeof *sum))) st = TP_ERR_NOMEM;
    if (st == TP_OK) st = feature_pass(e, pairs, n, d, &fr, sum);
    if (st == TP_OK && n > 1) {   /* the mean node scores pick the features; a second pass gives their edges */
        memcpy(out->block, sum, out->size * sizeof *sum);
        int64_t *all = tp_malloc((size_t)(out->n * (top > 0 ? top : 1) + 1) * sizeof *all);
        int *cnt = tp_calloc((size_t)out->n + 1, sizeof *cnt);
        if (!all || !cnt) st = TP_ERR_NOMEM;
        if (st == TP_OK) eap_feat_top_all(out, top, all, cnt);
        if (st == TP_OK) st = eap_feat_select_all(out, all, cnt, top);
        free(all), free(cnt);
        fr.mode = EAP_FEAT_GIVEN;
        double *grown = st == TP_OK ? realloc(sum, (out->size ? out->size : 1) * sizeof *sum) : NULL;
        if (st == TP_OK && !grown) st = TP_ERR_NOMEM;
        if (grown) sum = grown;
        if (st == TP_OK) st = feature_pass(e, pairs, n, d, &fr, sum);
    }
    if (st == TP_OK)
        for (size_t k = 0; k < out->size; k++) out->block[k] = sum[k] / n;
    free(sum);
    eap_engine_free(e);
    if (st != TP_OK) eap_feat_scores_free(out);
    return st;
}

void dc_result_free(dc_result *r)
{
    free(r->edge), free(r->node);
    r->edge = r->node = NULL;
}

static json_t *num_array(const double *x, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, circuits_num(x[i]));
    return a;
}

static json_t *int_array(const int *x, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(x[i]));
    return a;
}

json_t *dc_curve_json(const dc_result *r)
{
    int kept_i = r->kept >= 0 ? r->kept : DC_NK - 1;
    return json_pack("{s:s, s:o, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:b, s:f, s:i, s:i}",
        "evaluation", "node-level (MIB): C_k = the nodes touched by the top k% of edges by |mean EAP score| "
                      "(n_k = ceil(k/100 E), at least 1), logits always; every node outside C_k at its corrupted "
                      "output in the clean run; m averaged over the pairs; f(k) = (m(C_k) - m(empty))/(m(N) - "
                      "m(empty)); CPR = trapezoid area of f over k in [0, 1] (k = 0 included, f(0) = 0), CMD the "
                      "same of |1 - f| (Mueller et al. 2025)",
        "k_percent", num_array(DC_K_PCT, DC_NK), "total_edges", r->n_edges, "edges", int_array(r->edges_k, DC_NK),
        "nodes", int_array(r->nodes_k, DC_NK), "m", num_array(r->m_k, DC_NK), "f", num_array(r->f, DC_NK),
        "m_full", circuits_num(r->m_full), "m_empty", circuits_num(r->m_empty), "cpr", circuits_num(r->cpr), "cmd",
        circuits_num(r->cmd), "threshold", r->threshold, "reached", r->kept >= 0, "kept_k_percent",
        DC_K_PCT[kept_i], "kept_edges", r->edges_k[kept_i], "kept_nodes", r->nodes_k[kept_i]);
}

json_t *dc_verify_json(const dc_result *r)
{
    json_t *a = json_array();
    for (int j = 0; j < r->n_verify; j++) {
        char name[32];
        eap_up_name(&r->g, r->verify_node[j], name, sizeof name);
        json_array_append_new(a, json_pack("{s:s, s:o, s:o}", "node", name, "eap", circuits_num(r->verify_eap[j]),
                                           "exact", circuits_num(r->verify_exact[j])));
    }
    return a;
}

tp_status dc_graph(const dc_result *r, const eap_feat_scores *fs, cg_graph **out)
{
    eap_scores s = {.g = r->g, .ld_clean = r->ld_clean, .ld_corr = r->ld_corr, .edge = r->edge, .node = r->node};
    int top = r->edges_k[r->kept >= 0 ? r->kept : DC_NK - 1];
    TP_CHECK(attribute_graph(&s, top, out));
    double min_abs = INFINITY;   /* feature edges as strong as the weakest edge of the circuit */
    for (int i = 0; i < cg_num_edges(*out); i++) min_abs = fmin(min_abs, fabs(cg_edge_at(*out, i)->weight));
    tp_status st = fs && cg_num_edges(*out) ? attribute_add_features(*out, fs, 1.0, min_abs, 1) : TP_OK;
    if (st != TP_OK) cg_free(*out), *out = NULL;
    return st;
}
