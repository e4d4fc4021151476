/* attribute.c — `circuits attribute`: EAP scores of one prompt pair, ranked, and the
 * pruned top-K circuit graph (attribute.h). */
#include "analysis/circuits/attribute.h"

#include "analysis/circuits/eap_features.h"
#include "core/fsutil.h"
#include "dist/world.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        eap_up_name(g, uv[ix[i]] / g->n_down, su, sizeof su);
        eap_down_name(g, uv[ix[i]] % g->n_down, sv, sizeof sv);
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
        eap_up_name(&s->g, ix[i], name, sizeof name);
        json_array_append_new(a, json_pack("{s:s, s:o, s:o}", "node", name, "score", circuits_num(s->node[ix[i]]),
                                           "normalized", norm_json(s->node[ix[i]], denom)));
    }
    free(ix);
    return a;
}

static cg_kind graph_kind(const eap_graph *g, int up, int k, int *layer, int *head)
{
    if (up) eap_up_node(g, k, layer, head);
    else eap_down_node(g, k, layer, head);
    cg_kind kind = up && k == 0 ? CG_EMBED : !up && *layer == g->L ? CG_LOGITS : *head >= 0 ? CG_HEAD : CG_MLP;
    if (kind == CG_EMBED) *layer = -1;
    return kind;
}

static tp_status graph_node(cg_graph *cg, const eap_graph *g, int up, int k, int *id)
{
    int l, h;
    cg_kind kind = graph_kind(g, up, k, &l, &h);
    return cg_node_get(cg, kind, l, h, NULL, id);
}

/* Edge k of feature i of point p (k < n_up: in from upstream k, else out to downstream
 * k − n_up), 0 where there is none; its other end's graph node in *kind, *l, *h. */
static double feature_edge(const eap_feat_scores *fs, const eap_feat_point *p, int i, int k, cg_kind *kind, int *l,
                           int *h)
{
    const eap_graph *g = &fs->g;
    int up = k < g->n_up, x = up ? k : k - g->n_up;
    *kind = graph_kind(g, up, x, l, h);
    return up ? fs->block[p->in + (size_t)x * p->nsel + i] : fs->block[p->out + (size_t)i * g->n_down + x];
}

tp_status attribute_add_features(cg_graph *cg, const eap_feat_scores *fs, double scale, double min_abs,
                                 int only_present)
{
    const eap_graph *g = &fs->g;
    for (int pi = 0; pi < fs->n; pi++) {
        const eap_sae *es = &fs->saes->s[pi];
        const eap_feat_point *p = &fs->p[pi];
        for (int i = 0; i < p->nsel; i++) {
            int f = -1, o, l, h;
            cg_kind kind;
            for (int k = 0; k < g->n_up + g->n_down; k++) {
                double w = feature_edge(fs, p, i, k, &kind, &l, &h) / scale;
                if (w == 0 || fabs(w) < min_abs) continue;   /* not on the point's side, or too small */
                if (only_present) {
                    if ((o = cg_node_find(cg, kind, l, h, NULL)) < 0) continue;
                } else {
                    TP_CHECK(cg_node_get(cg, kind, l, h, NULL, &o));
                }
                if (f < 0) {   /* the feature's node, made with its first edge */
                    TP_CHECK(cg_node_get(cg, CG_FEATURE, es->layer, (int)p->sel[i], es->hook, &f));
                    cg_node_at(cg, f)->score = fs->block[p->node + p->sel[i]] / scale;
                }
                TP_CHECK(k < g->n_up ? cg_edge_add(cg, o, f, w) : cg_edge_add(cg, f, o, w));
            }
        }
    }
    return TP_OK;
}

static tp_status build_graph(const eap_scores *s, const eap_feat_scores *fs, double scale, int top, cg_graph **out)
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
    if (st == TP_OK && fs) st = attribute_add_features(cg, fs, scale, 0.0, 0);
    if (st == TP_OK) st = cg_prune(cg, 0.0, top);
    if (st != TP_OK) cg_free(cg), cg = NULL;
    *out = cg;
    return st;
}

tp_status attribute_graph(const eap_scores *s, int top, cg_graph **out) { return build_graph(s, NULL, 1, top, out); }

static json_t *text_pair_json(const circuits_ctx *cx, const attribute_pair *p)
{
    return json_pack("{s:{s:s, s:i, s:o}, s:{s:s, s:i, s:o}}", "clean", "text", p->clean_text, "tokens", p->T, "ids",
                     circuits_tokens_json(cx, p->clean, p->T), "corrupt", "text", p->corrupt_text, "tokens", p->T,
                     "ids", circuits_tokens_json(cx, p->corrupt, p->T));
}

static json_t *token_json(const char *text, int32_t id)
{
    return id < 0 ? json_null() : json_pack("{s:s, s:i}", "text", text ? text : "", "id", id);
}

/* Per-pair results kept on rank 0 for the JSON. */
typedef struct {
    double ld_clean, ld_corr;
} pair_metric;

/* "prompts": one pair as before; several: the file and every pair with its metric. */
static json_t *prompts_json(const circuits_ctx *cx, const attribute_request *rq, const pair_metric *pm)
{
    if (rq->npairs == 1 && !rq->pairs_file) return text_pair_json(cx, &rq->pairs[0]);
    json_t *a = json_array();
    for (int i = 0; i < rq->npairs; i++) {
        const attribute_pair *p = &rq->pairs[i];
        json_t *o = text_pair_json(cx, p);
        json_object_set_new(o, "target", token_json(p->target_text, p->target));
        json_object_set_new(o, "distractor", token_json(p->distractor_text, p->distractor));
        json_object_set_new(o, "ld_clean", circuits_num(pm[i].ld_clean));
        json_object_set_new(o, "ld_corr", circuits_num(pm[i].ld_corr));
        json_array_append_new(a, o);
    }
    return json_pack("{s:o, s:i, s:o}", "file", rq->pairs_file ? json_string(rq->pairs_file) : json_null(), "n_pairs",
                     rq->npairs, "pairs", a);
}

/* The target (distractor) shared by every pair, else null. */
static json_t *common_token(const attribute_request *rq, int distractor)
{
    const attribute_pair *a = &rq->pairs[0];
    for (int i = 1; i < rq->npairs; i++)
        if ((distractor ? rq->pairs[i].distractor : rq->pairs[i].target) != (distractor ? a->distractor : a->target))
            return json_null();
    return distractor ? token_json(a->distractor_text, a->distractor) : token_json(a->target_text, a->target);
}

/* The metadata both files share (s: the mean scores). */
static json_t *meta_json(const circuits_ctx *cx, const attribute_request *rq, const eap_scores *s, const pair_metric *pm)
{
    double diff = s->ld_clean - s->ld_corr;
    return json_pack("{s:o, s:o, s:s, s:s, s:i, s:i, s:i, s:s, s:o, s:o, s:o, s:{s:o, s:o, s:o}, s:o}", "model",
        circuits_model_json(cx), "settings", circuits_settings_json(cx->cs), "id", rq->id, "method",
        rq->ig_steps > 0 ? "EAP-IG" : "EAP", "ig_steps", rq->ig_steps, "top", rq->top, "n_pairs", rq->npairs,
        "aggregation", "every score, LD_clean and LD_corr: the mean over the pairs of each pair's value; normalized = "
                       "mean score / (mean LD_clean - mean LD_corr)",
        "prompts", prompts_json(cx, rq, pm), "target", common_token(rq, 0), "distractor", common_token(rq, 1),
        "metric", "ld_clean", circuits_num(s->ld_clean), "ld_corr", circuits_num(s->ld_corr), "ld_clean_minus_corr",
        circuits_num(diff), "definitions", attribute_definitions_json(rq->ig_steps));
}

json_t *attribute_features_definitions_json(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
        "points", "a run's SAE at a residual-stream point P (hook_resid_pre/mid/post of a layer; other points are not "
                  "used) re-expresses the stream there: x_P = sum_f act_f(x_P) d_f + b_dec + error; x_P = the sum of "
                  "the outputs of the nodes upstream of P",
        "node", "score(f) = sum_pos (act_f^clean - act_f^corr) (d_f . dm/dx_P)",
        "out_edge", "f -> v (v downstream of P) = sum_pos (act_f^clean - act_f^corr) (d_f . g_v)",
        "in_edge", "u -> f (u upstream of P) = sum_pos (d_f . dm/dx_P) 1[f active] (W_enc[:, f] . (a_u^clean - "
                   "a_u^corr)) (Marks et al. 2024: grad_f m . grad_u f . delta u), the "
                   "activity where the gradients were taken: the corrupted run (EAP), or the mean over x_P^corr + "
                   "(k/M)(x_P^clean - x_P^corr), k = 1..M (EAP-IG)",
        "totals", "point_total = sum_pos dm/dx_P . (x_P^clean - x_P^corr): all that flows through P; features_total "
                  "= sum over every feature of score(f); the difference is the SAE error's share",
        "kept", "the top features per point by |score| become nodes of the graph beside the components (u -> f -> v "
                "runs beside u -> v); the SAE error is not a node");
}

static tp_status write_all(const circuits_ctx *cx, const attribute_request *rq, const eap_scores *s,
                           const eap_feat_scores *fs, const pair_metric *pm, const char *run_dir)
{
    char rel[TP_PATH_MAX], dir[TP_PATH_MAX];
    double diff = s->ld_clean - s->ld_corr;
    cg_graph *cg = NULL;
    json_t *meta = meta_json(cx, rq, s, pm), *doc = json_deep_copy(meta);
    if (!meta || !doc) { json_decref(meta), json_decref(doc); return tp_err(TP_ERR_NOMEM, "circuits attribute: JSON"); }
    json_object_set_new(doc, "graph", json_pack("{s:s}", "files", rq->id));
    json_object_set_new(doc, "nodes", attribute_nodes_json(s, diff));
    json_object_set_new(doc, "edges", attribute_edges_json(s, diff));
    if (fs) {
        json_t *f = eap_feat_json(fs, rq->npairs, diff);
        json_object_set_new(f, "per_point", json_integer(rq->sae_features));
        json_object_set_new(f, "definitions", attribute_features_definitions_json());
        json_object_set_new(doc, "features", f);
    } else {
        json_object_set_new(doc, "features", json_null());
    }
    tp_status st = fs_path(rel, sizeof rel, "%s%s.json", RUN_CIRCUITS_ATTRIBUTE_PREFIX, rq->id);
    if (st == TP_OK) st = run_path(dir, sizeof dir, run_dir, RUN_CIRCUITS_DIR);
    if (st == TP_OK) st = build_graph(s, fs, rq->npairs, rq->top, &cg);
    if (st == TP_OK) st = cg_write(cg, meta, dir, rq->id);
    if (st == TP_OK) st = circuits_write_json(run_dir, rel, doc);   /* last: its presence says all are complete */
    cg_free(cg);
    json_decref(meta), json_decref(doc);
    return st;
}

/* ---- the pairs over the ranks -------------------------------------------------------------------- */

/* One pair's message: status, LD_clean, LD_corr, edges, nodes, the feature block. */
typedef struct {
    eap_graph g;
    size_t n_edge, fsize, len;
} message;

static message message_of(const eap_graph *g, const eap_feat_scores *fs)
{
    message m = {.g = *g, .n_edge = (size_t)g->n_up * g->n_down, .fsize = fs ? fs->size : 0};
    m.len = 3 + m.n_edge + (size_t)g->n_up + m.fsize;
    return m;
}

static tp_status score_pair(eap_engine *e, const attribute_request *rq, int i, eap_feat_request *fr, const message *mg,
                            double *buf)
{
    const attribute_pair *p = &rq->pairs[i];
    eap_pair ep = {.clean = p->clean, .corrupt = p->corrupt, .T = p->T, .target = p->target,
                   .distractor = p->distractor, .ig_steps = rq->ig_steps};
    eap_scores s = {0};
    TP_CHECK(eap_score_ext(e, &ep, fr ? eap_features_extend : NULL, fr, &s));
    buf[1] = s.ld_clean, buf[2] = s.ld_corr;
    memcpy(buf + 3, s.edge, mg->n_edge * sizeof *buf);
    memcpy(buf + 3 + mg->n_edge, s.node, (size_t)mg->g.n_up * sizeof *buf);
    if (fr) memcpy(buf + 3 + mg->n_edge + mg->g.n_up, fr->out->block, mg->fsize * sizeof *buf);
    eap_scores_free(&s);
    return TP_OK;
}

/* Every pair once: rank i mod np computes pair i; rank 0 adds them in order into sum
 * (3 + edges + nodes + feature block, zeroed here) and keeps each pair's metric. */
static tp_status all_pairs(const circuits_ctx *cx, const attribute_request *rq, eap_feat_request *fr, double *sum,
                           pair_metric *pm)
{
    int rank = dist_rank(), np = dist_size(), max_T = 1;
    for (int i = 0; i < rq->npairs; i++) max_T = rq->pairs[i].T > max_T ? rq->pairs[i].T : max_T;
    eap_engine *e = NULL;
    eap_graph g = eap_graph_of(&cx->m->cfg);
    message mg = message_of(&g, fr ? fr->out : NULL);
    double *buf = tp_malloc(mg.len * sizeof *buf);
    tp_status st = buf ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = eap_engine_new(cx->m, max_T, &e);
    if (rank == 0) memset(sum, 0, mg.len * sizeof *sum);
    for (int i = 0; i < rq->npairs; i++) {
        int owner = i % np;
        if (owner == rank && buf) {
            if (st == TP_OK) st = score_pair(e, rq, i, fr, &mg, buf);
            buf[0] = st == TP_OK ? 0.0 : 1.0;   /* after a failure: every later message says so too */
            if (rank != 0 && MPI_Send(buf, (int)mg.len, MPI_DOUBLE, 0, i & 0x7fff, MPI_COMM_WORLD) != MPI_SUCCESS)
                st = tp_err(TP_ERR_MPI, "circuits attribute: sending pair %d", i + 1);
        } else if (rank == 0 && buf) {
            if (MPI_Recv(buf, (int)mg.len, MPI_DOUBLE, owner, i & 0x7fff, MPI_COMM_WORLD, MPI_STATUS_IGNORE) !=
                MPI_SUCCESS)
                buf[0] = 1.0;
        }
        if (rank != 0 || !buf) continue;
        if (buf[0] != 0.0 && st == TP_OK)
            st = tp_err(TP_ERR_MPI, "circuits attribute: rank %d failed on pair %d", owner, i + 1);
        if (st != TP_OK) continue;
        pm[i] = (pair_metric){buf[1], buf[2]};
        for (size_t k = 1; k < mg.len; k++) sum[k] += buf[k];
    }
    eap_engine_free(e);
    free(buf);
    return dist_agree(MPI_COMM_WORLD, st, "circuits attribute");
}

/* Which features each point keeps over several pairs: pass 1 (node scores only) summed
 * on rank 0, the top per point broadcast, then set as every rank's selection. */
static tp_status pick_features(const circuits_ctx *cx, const attribute_request *rq, eap_feat_scores *fs)
{
    eap_feat_request fr = {.mode = EAP_FEAT_NODES_ONLY, .top = 0, .out = fs};
    tp_status st = eap_feat_select_all(fs, NULL, NULL, 0);   /* node scores only */
    eap_graph g = eap_graph_of(&cx->m->cfg);
    message mg = message_of(&g, fs);
    int top = rq->sae_features, *n = tp_calloc((size_t)fs->n + 1, sizeof *n);
    double *sum = tp_malloc(mg.len * sizeof *sum);
    pair_metric *pm = tp_calloc((size_t)rq->npairs, sizeof *pm);
    int64_t *sel = tp_calloc((size_t)fs->n * top + 1, sizeof *sel);
    if (st == TP_OK && !(sum && pm && n && sel)) st = TP_ERR_NOMEM;
    st = dist_agree(MPI_COMM_WORLD, st, "circuits attribute");
    if (st == TP_OK) st = all_pairs(cx, rq, &fr, sum, pm);
    if (st == TP_OK && dist_rank() == 0) {
        memcpy(fs->block, sum + 3 + mg.n_edge + g.n_up, fs->size * sizeof *fs->block);
        eap_feat_top_all(fs, top, sel, n);
    }
    if (st == TP_OK && (MPI_Bcast(n, fs->n, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS ||
                        MPI_Bcast(sel, fs->n * top, MPI_INT64_T, 0, MPI_COMM_WORLD) != MPI_SUCCESS))
        st = tp_err(TP_ERR_MPI, "circuits attribute: broadcasting the features");
    if (st == TP_OK) st = eap_feat_select_all(fs, sel, n, top);
    free(sel), free(sum), free(pm), free(n);
    return dist_agree(MPI_COMM_WORLD, st, "circuits attribute");
}

tp_status attribute_run(const circuits_ctx *cx, const attribute_request *rq, const char *run_dir)
{
    eap_sae_set saes = {0};
    eap_feat_scores fs = {0};
    eap_graph g = eap_graph_of(&cx->m->cfg);
    int use_f = 0;
    tp_status st = TP_OK;
    if (rq->sae_features > 0) {
        st = eap_sae_set_open(run_dir, &cx->m->cfg, &saes);
        use_f = st == TP_OK && saes.n > 0;
        if (use_f) st = eap_feat_scores_new(&saes, &g, rq->sae_features, &fs);
    }
    st = dist_agree(MPI_COMM_WORLD, st, "circuits attribute");
    if (st == TP_OK && use_f && rq->npairs > 1) st = pick_features(cx, rq, &fs);
    eap_feat_request fr = {.mode = rq->npairs > 1 ? EAP_FEAT_GIVEN : EAP_FEAT_TOP, .top = rq->sae_features, .out = &fs};
    message mg = message_of(&g, use_f ? &fs : NULL);
    double *sum = NULL;
    pair_metric *pm = NULL;
    if (st == TP_OK) {
        sum = tp_malloc(mg.len * sizeof *sum), pm = tp_calloc((size_t)rq->npairs, sizeof *pm);
        if (!sum || !pm) st = TP_ERR_NOMEM;
    }
    st = dist_agree(MPI_COMM_WORLD, st, "circuits attribute");
    if (st == TP_OK) st = all_pairs(cx, rq, use_f ? &fr : NULL, sum, pm);
    if (st == TP_OK && dist_rank() == 0) {
        eap_scores s = {.g = g, .ld_clean = sum[1] / rq->npairs, .ld_corr = sum[2] / rq->npairs,
                        .edge = sum + 3, .node = sum + 3 + mg.n_edge};
        for (size_t k = 0; k < mg.n_edge + (size_t)g.n_up; k++) sum[3 + k] /= rq->npairs;
        if (use_f) memcpy(fs.block, sum + 3 + mg.n_edge + g.n_up, fs.size * sizeof *fs.block);
        st = write_all(cx, rq, &s, use_f ? &fs : NULL, pm, run_dir);
    }
    free(sum), free(pm);
    eap_feat_scores_free(&fs);
    eap_sae_set_free(&saes);
    return dist_agree(MPI_COMM_WORLD, st, "circuits attribute");
}
