/* library.c — the circuit library run (library.h). */
#include "analysis/circuits/library.h"

#include "analysis/circuits/attribute.h"
#include "analysis/circuits/discover.h"
#include "analysis/circuits/discover_run.h"
#include "analysis/circuits/library_task.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "dist/world.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *pairs_json(const lib_pairs *p)
{
    json_t *a = json_array();
    for (int i = 0; i < p->n; i++)
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:i}", "clean", p->text[4 * i], "corrupt",
            p->text[4 * i + 1], "target", p->text[4 * i + 2], "distractor", p->text[4 * i + 3], "tokens", p->p[i].T));
    return a;
}

/* The top k heads by |node score| and the top k edges by |score|. */
static void tops_json(const dc_result *r, int k, json_t **heads, json_t **edges)
{
    eap_scores s = {.g = r->g, .edge = r->edge, .node = r->node};
    json_t *nodes = attribute_nodes_json(&s, r->ld_clean - r->ld_corr), *all = attribute_edges_json(&s,
                                                                                                   r->ld_clean - r->ld_corr);
    *heads = json_array(), *edges = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(nodes, i, v) {
        if ((int)json_array_size(*heads) < k && json_string_value(json_object_get(v, "node"))[0] == 'a')
            json_array_append(*heads, v);
    }
    json_array_foreach(all, i, v) {
        if ((int)i < k) json_array_append(*edges, v);
    }
    json_decref(nodes), json_decref(all);
}

static json_t *entry_json(const circuits_ctx *cx, const lib_task *t, const lib_pairs *p, const dc_result *r)
{
    double diff = r->ld_clean - r->ld_corr, margin = cx->cs->library_margin;
    int can = diff >= margin;
    char why[256], src[160], graph[160];
    snprintf(why, sizeof why, "mean LD_clean - LD_corr = %.3g is below the margin %.3g: the model does not tell the "
             "target from the distractor on these prompts", diff, margin);
    snprintf(src, sizeof src, "%s", t->generator ? t->generator : "pairs");
    snprintf(graph, sizeof graph, "%s%s", RUN_CIRCUITS_LIBRARY_GRAPH, t->name);
    const char *base = strrchr(t->path, '/');
    json_t *heads, *edges;
    tops_json(r, 10, &heads, &edges);
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:o, s:o, s:o, s:o, s:f, s:b, s:o, s:s, s:o, s:o, s:o, s:o}",
        "name", t->name, "description", t->description ? t->description : "", "file", base ? base + 1 : t->path,
        "source", src, "prompts", p->n, "pairs", pairs_json(p), "ld_clean", circuits_num(r->ld_clean), "ld_corr",
        circuits_num(r->ld_corr), "ld_clean_minus_corr", circuits_num(diff), "margin", margin, "can_do", can, "why",
        can ? json_null() : json_string(why), "graph", graph, "faithfulness", dc_curve_json(r), "verification",
        dc_verify_json(r), "top_heads", heads, "top_edges", edges);
}

/* One task on this rank -> {"entry", "meta", "graph"} (appended to out). */
static tp_status run_task(const circuits_ctx *cx, const lib_task *t, const char *run_dir, json_t *out)
{
    lib_pairs p = {0};
    dc_result r = {0};
    cg_graph *cg = NULL;
    json_t *g = NULL, *features = NULL;
    eap_sae_set saes = {0};
    eap_feat_scores fs = {0};
    TP_CHECK(lib_task_pairs(cx, t, &p));
    tp_status st = dc_run(cx->m, p.p, p.n, cx->cs->faithfulness, &r);
    if (st == TP_OK) st = discover_features(cx, run_dir, p.p, p.n, r.ld_clean - r.ld_corr, &saes, &fs, &features);
    if (st == TP_OK) st = dc_graph(&r, fs.n ? &fs : NULL, &cg);
    if (st == TP_OK) st = cg_to_json(cg, &g);
    if (st == TP_OK) {
        json_t *entry = entry_json(cx, t, &p, &r), *meta = json_deep_copy(entry);
        json_object_set_new(meta, "model", circuits_model_json(cx));
        json_object_set(meta, "features", features);
        json_object_set_new(meta, "method", json_string("EAP scores averaged over the task's pairs; faithfulness by "
                                                        "exact node patching, m averaged over the pairs"));
        json_object_set_new(meta, "definitions", attribute_definitions_json(0));
        if (json_array_append_new(out, json_pack("{s:o, s:o, s:o}", "entry", entry, "meta", meta, "graph", g)))
            st = tp_err(TP_ERR_NOMEM, "circuits library: JSON");
        g = NULL;
    }
    json_decref(g), json_decref(features);
    cg_free(cg);
    eap_feat_scores_free(&fs);
    eap_sae_set_free(&saes);
    dc_result_free(&r);
    lib_pairs_free(&p);
    return st;
}

static cg_kind kind_of(const char *name)
{
    for (int k = CG_EMBED; k <= CG_LOGITS; k++)
        if (!strcmp(cg_kind_name((cg_kind)k), name)) return (cg_kind)k;
    return CG_EMBED;
}

/* A graph from its cg_to_json form (nodes in order, then edges). */
static tp_status graph_from_json(const json_t *j, cg_graph **out)
{
    json_t *nodes = json_object_get(j, "nodes"), *edges = json_object_get(j, "edges"), *v;
    size_t i;
    int id;
    TP_CHECK(cg_new(out));
    tp_status st = TP_OK;
    json_array_foreach(nodes, i, v) {
        json_t *h = json_object_get(v, "head"), *f = json_object_get(v, "feature"), *s = json_object_get(v, "score");
        if (st == TP_OK) st = cg_node_get(*out, kind_of(json_string_value(json_object_get(v, "kind"))),
                                          (int)json_integer_value(json_object_get(v, "layer")),
                                          h ? (int)json_integer_value(h) : f ? (int)json_integer_value(f) : -1,
                                          json_string_value(json_object_get(v, "hook")), &id);
        if (st == TP_OK) cg_node_at(*out, id)->score = json_is_number(s) ? json_number_value(s) : NAN;
    }
    json_array_foreach(edges, i, v) {
        int a = -1, b = -1;
        const char *src = json_string_value(json_object_get(v, "source")), *dst = json_string_value(json_object_get(v,
                                                                                                           "target"));
        for (int k = 0; k < cg_num_nodes(*out); k++) {
            if (src && !strcmp(cg_node_at(*out, k)->id, src)) a = k;
            if (dst && !strcmp(cg_node_at(*out, k)->id, dst)) b = k;
        }
        if (st == TP_OK) st = a >= 0 && b >= 0 ? cg_edge_add(*out, a, b, json_number_value(json_object_get(v, "weight")))
                                               : tp_err(TP_ERR_FORMAT, "circuits library: an edge of unknown nodes");
    }
    if (st != TP_OK) cg_free(*out), *out = NULL;
    return st;
}

/* Rank 0: every rank's tasks in rank order -> graph files and library.json. */
static tp_status write_library(const circuits_ctx *cx, char **all, const char *run_dir)
{
    char dir[TP_PATH_MAX];
    TP_CHECK(run_path(dir, sizeof dir, run_dir, RUN_CIRCUITS_DIR));
    TP_CHECK(fs_mkdir_p(dir));
    json_t *tasks = json_array();
    tp_status st = TP_OK;
    for (int r = 0; st == TP_OK && r < dist_size(); r++) {
        json_t *arr = json_loads(all[r], 0, NULL), *v;
        size_t i;
        if (!arr) st = tp_err(TP_ERR_FORMAT, "circuits library: rank %d's results do not parse", r);
        json_array_foreach(arr, i, v) {
            cg_graph *cg = NULL;
            json_t *e = json_object_get(v, "entry");
            if (st == TP_OK) st = graph_from_json(json_object_get(v, "graph"), &cg);
            if (st == TP_OK) st = cg_write(cg, json_object_get(v, "meta"), dir,
                                           json_string_value(json_object_get(e, "graph")));
            if (st == TP_OK) json_array_append(tasks, e);
            cg_free(cg);
        }
        json_decref(arr);
    }
    json_t *doc = json_pack("{s:o, s:o, s:s, s:s, s:f, s:o}", "model", circuits_model_json(cx), "settings",
        circuits_settings_json(cx->cs), "dir", cx->cs->library_dir, "definitions", "per task: EAP (Syed et al. 2023) edge and node scores "
        "averaged over its pairs; ld_* the mean over pairs of logit(target) - logit(distractor) at the last position; "
        "can_do = ld_clean_minus_corr >= margin; faithfulness node-level with m averaged over the pairs (discover.h)",
        "margin", cx->cs->library_margin, "tasks", tasks);
    if (st == TP_OK) st = circuits_write_json(run_dir, RUN_CIRCUITS_LIBRARY_JSON, doc);
    json_decref(doc);
    return st;
}

/* Every task file read and checked (on every rank: a bad file stops all of them). */
static tp_status load_tasks(const char *dir, lib_task **tasks, int *n)
{
    char **files = NULL;
    *tasks = NULL, *n = 0;
    TP_CHECK(lib_task_files(dir, &files, n));
    tp_status st = (*tasks = calloc((size_t)(*n ? *n : 1), sizeof **tasks)) ? TP_OK : TP_ERR_NOMEM;
    int loaded = 0;
    for (; st == TP_OK && loaded < *n; loaded++) st = lib_task_load(files[loaded], &(*tasks)[loaded]);
    for (int i = 0; st == TP_OK && i < *n; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp((*tasks)[i].name, (*tasks)[j].name))
                st = tp_err(TP_ERR_CONFIG, "%s: name '%s' is also the name of %s", files[i], (*tasks)[i].name,
                            files[j]);
    lib_task_files_free(files, *n);
    if (st != TP_OK) {
        for (int i = 0; *tasks && i < loaded; i++) lib_task_free(&(*tasks)[i]);
        free(*tasks), *tasks = NULL, *n = 0;
    }
    return st;
}

tp_status library_run(const circuits_ctx *cx, const char *run_dir)
{
    const char *dir = cx->cs->library_dir;
    lib_task *tasks = NULL;
    int n = 0, lo, hi;
    tp_status st = TP_OK;
    if (dir[0] && !fs_exists(dir)) {
        tp_log_warn("circuits library: circuits.library.dir '%s' does not exist: no tasks run", dir);
    } else if (dir[0]) st = dist_agree(MPI_COMM_WORLD, load_tasks(dir, &tasks, &n), "circuits library");
    if (st != TP_OK) return st;
    circuits_rank_share(n, dist_rank(), dist_size(), &lo, &hi);
    json_t *mine = json_array();
    for (int i = lo; st == TP_OK && i < hi; i++) {
        tp_log_info("circuits library: task %d/%d %s", i + 1, n, tasks[i].name);
        st = run_task(cx, &tasks[i], run_dir, mine);
    }
    for (int i = 0; i < n; i++) lib_task_free(&tasks[i]);
    free(tasks);
    char *text = st == TP_OK ? json_dumps(mine, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(mine);
    if (st == TP_OK && !text) st = tp_err(TP_ERR_NOMEM, "circuits library: JSON");
    st = dist_agree(MPI_COMM_WORLD, st, "circuits library");
    char **all = NULL;
    if (st == TP_OK) st = dist_gather_strings(text, &all);
    free(text);
    if (st == TP_OK && dist_rank() == 0) st = write_library(cx, all, run_dir);
    dist_free_strings(all);
    return dist_agree(MPI_COMM_WORLD, st, "circuits library");
}

void library_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_CIRCUITS_LIBRARY_JSON), *tasks = json_object_get(j, "tasks"), *v;
    size_t i, can = 0;
    buf[0] = '\0';
    if (!json_is_array(tasks)) { json_decref(j); return; }
    json_array_foreach(tasks, i, v) can += json_is_true(json_object_get(v, "can_do"));
    snprintf(buf, n, "library: %zu/%zu tasks done by the model", can, json_array_size(tasks));
    json_decref(j);
}
