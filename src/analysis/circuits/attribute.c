/* attribute.c — `circuits attribute`: EAP scores of one prompt pair, ranked, and the
 * pruned top-K circuit graph (attribute.h). */
#include "analysis/circuits/attribute.h"

#include "core/fsutil.h"
#include "dist/world.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void attribute_up_name(const eap_graph *g, int u, char *buf, size_t n)
{
    int l, h;
    eap_up_node(g, u, &l, &h);
    if (u == 0) snprintf(buf, n, "embed");
    else if (h >= 0) snprintf(buf, n, "a%d.h%d", l, h);
    else snprintf(buf, n, "m%d", l);
}

void attribute_down_name(const eap_graph *g, int v, char *buf, size_t n)
{
    int l, h;
    eap_down_node(g, v, &l, &h);
    if (l == g->L) snprintf(buf, n, "logits");
    else if (h >= 0) snprintf(buf, n, "a%d.h%d", l, h);
    else snprintf(buf, n, "m%d", l);
}

json_t *attribute_definitions_json(int ig_steps)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
        "metric", "m = logit(target) - logit(distractor) at the last position (logit(target) without a distractor); "
                  "normalized = score / (LD_clean - LD_corr)",
        "upstream", "a_u per position: embed = hook_embed; head = its o_proj slice z_h W_O,h^T, on OLMo-2 times "
                    "post_attention_layernorm's weight over its RMS scale frozen at the run's own value (as circuits "
                    "dla; a layer's heads add up to hook_attn_out); mlp = hook_mlp_out",
        "downstream", "g_v = dm/d(v's input) per position: head = dm/d resid_pre(L) along that head alone (the "
                      "attention VJP with d hook_z masked to its columns; QK-norm and GQA exact); mlp = dm/d "
                      "resid_mid(L) - dm/d resid_post(L); logits = dm/d resid_post(last layer)",
        "edge", ig_steps > 0
            ? "EAP-IG (inputs, Hanna et al. 2024): score(u->v) = sum_pos mean_k g_v(k) . (a_u^clean - a_u^corr), "
              "g_v(k) on the run with embeddings corr + (k/M)(clean - corr), k = 1..M"
            : "EAP (Syed et al. 2023): score(u->v) = sum_pos g_v . (a_u^clean - a_u^corr), g_v on the corrupted run",
        "node", "attribution patching (Nanda): score(u) = sum_pos dm/da_u . (a_u^clean - a_u^corr) = sum_v score(u->v)",
        "edges_exist", "u -> v when u is upstream of v: embed -> every node; heads of layer L -> m<L> and every node of "
                       "later layers and logits; m<L> -> every node of later layers and logits");
}

static json_t *norm_json(double x, double denom) { return circuits_num(denom != 0 ? x / denom : NAN); }

/* Indices of items [0, n) by |val| descending, ties in order. */
static int *rank_abs(const double *val, int n)
{
    int *ix = tp_malloc((size_t)(n ? n : 1) * sizeof *ix);
    if (!ix) return NULL;
    for (int i = 0; i < n; i++) ix[i] = i;
    for (int i = 1; i < n; i++) {   /* insertion sort: stable, n ≤ a few thousand */
        int k = ix[i], j = i;
        while (j > 0 && fabs(val[ix[j - 1]]) < fabs(val[k])) ix[j] = ix[j - 1], j--;
        ix[j] = k;
    }
    return ix;
}

json_t *attribute_edges_json(const eap_scores *s, double denom)
{
    const eap_graph *g = &s->g;
    int n = 0;
    double *val = tp_malloc((size_t)g->n_up * g->n_down * sizeof *val);
    int *uv = tp_malloc((size_t)g->n_up * g->n_down * sizeof *uv);
    json_t *a = json_array();
    for (int u = 0; val && uv && u < g->n_up; u++)
        for (int v = 0; v < g->n_down; v++)
            if (eap_edge_exists(g, u, v)) val[n] = s->edge[(size_t)u * g->n_down + v], uv[n++] = u * g->n_down + v;
    int *ix = val && uv ? rank_abs(val, n) : NULL;
    for (int i = 0; ix && i < n; i++) {
        char su[32], sv[32];
        attribute_up_name(g, uv[ix[i]] / g->n_down, su, sizeof su);
        attribute_down_name(g, uv[ix[i]] % g->n_down, sv, sizeof sv);
        json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:o}", "source", su, "target", sv, "score",
                                           circuits_num(val[ix[i]]), "normalized", norm_json(val[ix[i]], denom)));
    }
    free(val), free(uv), free(ix);
    return a;
}

json_t *attribute_nodes_json(const eap_scores *s, double denom)
{
    int *ix = rank_abs(s->node, s->g.n_up);
    json_t *a = json_array();
    for (int i = 0; ix && i < s->g.n_up; i++) {
        char name[32];
        attribute_up_name(&s->g, ix[i], name, sizeof name);
        json_array_append_new(a, json_pack("{s:s, s:o, s:o}", "node", name, "score", circuits_num(s->node[ix[i]]),
                                           "normalized", norm_json(s->node[ix[i]], denom)));
    }
    free(ix);
    return a;
}

static tp_status graph_node(cg_graph *cg, const eap_graph *g, int up, int k, int *id)
{
    int l, h;
    if (up) eap_up_node(g, k, &l, &h);
    else eap_down_node(g, k, &l, &h);
    cg_kind kind = up && k == 0 ? CG_EMBED : !up && l == g->L ? CG_LOGITS : h >= 0 ? CG_HEAD : CG_MLP;
    return cg_node_get(cg, kind, kind == CG_EMBED ? -1 : l, h, NULL, id);
}

tp_status attribute_graph(const eap_scores *s, int top, cg_graph **out)
{
    const eap_graph *g = &s->g;
    cg_graph *cg = NULL;
    TP_CHECK(cg_new(&cg));
    tp_status st = TP_OK;
    for (int u = 0; st == TP_OK && u < g->n_up; u++)
        for (int v = 0; st == TP_OK && v < g->n_down; v++) {
            int a, b;
            if (!eap_edge_exists(g, u, v)) continue;
            st = graph_node(cg, g, 1, u, &a);
            if (st == TP_OK) st = graph_node(cg, g, 0, v, &b);
            if (st == TP_OK) st = cg_edge_add(cg, a, b, s->edge[(size_t)u * g->n_down + v]);
        }
    for (int u = 0; st == TP_OK && u < g->n_up; u++) {
        int a;
        st = graph_node(cg, g, 1, u, &a);
        if (st == TP_OK) cg_node_at(cg, a)->score = s->node[u];
    }
    if (st == TP_OK) st = cg_prune(cg, 0.0, top);
    if (st != TP_OK) cg_free(cg), cg = NULL;
    *out = cg;
    return st;
}

static json_t *pair_json(const circuits_ctx *cx, const attribute_request *rq)
{
    return json_pack("{s:{s:s, s:i, s:o}, s:{s:s, s:i, s:o}}", "clean", "text", rq->clean_text, "tokens", rq->T,
                     "ids", circuits_tokens_json(cx, rq->clean, rq->T), "corrupt", "text", rq->corrupt_text, "tokens",
                     rq->T, "ids", circuits_tokens_json(cx, rq->corrupt, rq->T));
}

static json_t *token_json(const char *text, int32_t id)
{
    return id < 0 ? json_null() : json_pack("{s:s, s:i}", "text", text, "id", id);
}

/* The metadata both files share. */
static json_t *meta_json(const circuits_ctx *cx, const attribute_request *rq, const eap_scores *s)
{
    double diff = s->ld_clean - s->ld_corr;
    return json_pack("{s:o, s:o, s:s, s:s, s:i, s:i, s:o, s:o, s:o, s:{s:o, s:o, s:o}, s:o}", "model",
        circuits_model_json(cx), "settings", circuits_settings_json(cx->cs), "id", rq->id, "method",
        rq->ig_steps > 0 ? "EAP-IG" : "EAP", "ig_steps", rq->ig_steps, "top", rq->top, "prompts", pair_json(cx, rq),
        "target", token_json(rq->target_text, rq->target), "distractor",
        token_json(rq->distractor_text ? rq->distractor_text : "", rq->distractor), "metric", "ld_clean",
        circuits_num(s->ld_clean), "ld_corr", circuits_num(s->ld_corr), "ld_clean_minus_corr", circuits_num(diff),
        "definitions", attribute_definitions_json(rq->ig_steps));
}

static tp_status write_all(const circuits_ctx *cx, const attribute_request *rq, const eap_scores *s, const char *run_dir)
{
    char rel[TP_PATH_MAX], dir[TP_PATH_MAX];
    double diff = s->ld_clean - s->ld_corr;
    cg_graph *cg = NULL;
    json_t *meta = meta_json(cx, rq, s), *doc = json_deep_copy(meta);
    if (!meta || !doc) { json_decref(meta), json_decref(doc); return tp_err(TP_ERR_NOMEM, "circuits attribute: JSON"); }
    json_object_set_new(doc, "graph", json_pack("{s:s}", "files", rq->id));
    json_object_set_new(doc, "nodes", attribute_nodes_json(s, diff));
    json_object_set_new(doc, "edges", attribute_edges_json(s, diff));
    tp_status st = fs_path(rel, sizeof rel, "%s%s.json", RUN_CIRCUITS_ATTRIBUTE_PREFIX, rq->id);
    if (st == TP_OK) st = run_path(dir, sizeof dir, run_dir, RUN_CIRCUITS_DIR);
    if (st == TP_OK) st = attribute_graph(s, rq->top, &cg);
    if (st == TP_OK) st = cg_write(cg, meta, dir, rq->id);
    if (st == TP_OK) st = circuits_write_json(run_dir, rel, doc);   /* last: its presence says all are complete */
    cg_free(cg);
    json_decref(meta), json_decref(doc);
    return st;
}

tp_status attribute_run(const circuits_ctx *cx, const attribute_request *rq, const char *run_dir)
{
    tp_status st = TP_OK;
    if (dist_rank() == 0) {
        eap_engine *e = NULL;
        eap_scores s = {0};
        eap_pair p = {.clean = rq->clean, .corrupt = rq->corrupt, .T = rq->T, .target = rq->target,
                      .distractor = rq->distractor, .ig_steps = rq->ig_steps};
        st = eap_engine_new(cx->m, rq->T, &e);
        if (st == TP_OK) st = eap_score(e, &p, &s);
        if (st == TP_OK) st = write_all(cx, rq, &s, run_dir);
        eap_scores_free(&s);
        eap_engine_free(e);
    }
    return dist_agree(MPI_COMM_WORLD, st, "circuits attribute");
}
