/* trace.c — one prompt's attention patterns, their statistics and heat maps
 * (trace.h). */
#include "analysis/circuits/trace.h"

#include "analysis/circuits/head_scores.h"
#include "analysis/circuits/svg.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "dist/world.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -Σ_j p_j ln p_j over row[0..i] */
static double row_entropy(const float *row, int i)
{
    double h = 0;
    for (int j = 0; j <= i; j++)
        if (row[j] > 0) h -= (double)row[j] * log((double)row[j]);
    return h;
}

void trace_head_stats(const float *A, int T, trace_stats *out)
{
    double dist = 0, first = 0;
    for (int i = 1; i < T; i++) {
        const float *row = A + (size_t)i * T;
        first += row[0];
        for (int j = 0; j <= i; j++) dist += (double)row[j] * (i - j);
    }
    out->entropy = hs_entropy(A, T);
    out->mean_distance = T > 1 ? dist / (T - 1) : NAN;
    out->first_token = T > 1 ? first / (T - 1) : NAN;
}

typedef struct {
    int L, H, T;
    float *pattern;           /* [L][H][T][T] */
} trace_capture;

static tp_status on_pattern(const tp_hook_info *info, float *data, void *user)
{
    trace_capture *c = user;
    size_t n = (size_t)c->H * c->T * c->T;
    memcpy(c->pattern + (size_t)info->layer * n, data, n * sizeof *data);
    return TP_OK;
}

static tp_status capture(const circuits_ctx *cx, const trace_request *rq, trace_capture *c)
{
    const tp_model_config *mc = &cx->m->cfg;
    c->L = mc->num_layers, c->H = mc->num_heads, c->T = rq->T;
    c->pattern = tp_malloc((size_t)c->L * c->H * c->T * c->T * sizeof *c->pattern);
    if (!c->pattern) return TP_ERR_NOMEM;
    tp_hooks *hooks = NULL;
    tp_forward *f = NULL;
    tp_status st = hooks_new(c->L, &hooks);
    for (int l = 0; st == TP_OK && l < c->L; l++) {
        int any = 0;
        for (int h = 0; h < c->H; h++) any |= rq->select[l * c->H + h];
        if (any) st = hooks_add_reader(hooks, l, TP_HOOK_PATTERN, on_pattern, c);
    }
    if (st == TP_OK) st = forward_new(cx->m, 1, rq->T, &f);
    if (st == TP_OK) st = forward_run(f, rq->ids, 1, rq->T, hooks, TP_LOGITS_NONE, -1, NULL);
    forward_free(f);
    hooks_free(hooks);
    return st;
}

static json_t *head_json(const circuits_ctx *cx, const trace_request *rq, const float *A, int h)
{
    int T = rq->T, top = (int)cx->cs->trace_top;
    trace_stats s;
    trace_head_stats(A, T, &s);
    json_t *pat = json_array(), *ent = json_array(), *srcs = json_array();
    for (int i = 0; i < T; i++) {
        json_t *row = json_array();
        for (int j = 0; j < T; j++) json_array_append_new(row, json_real(A[(size_t)i * T + j]));
        json_array_append_new(pat, row);
        json_array_append_new(ent, circuits_num(row_entropy(A + (size_t)i * T, i)));
    }
    /* top sources by attention mass, largest first (ties: earlier position) */
    double *mass = tp_calloc((size_t)T, sizeof *mass);
    for (int i = 0; mass && i < T; i++)
        for (int j = 0; j <= i; j++) mass[j] += A[(size_t)i * T + j] / T;
    for (int k = 0; mass && k < top && k < T; k++) {
        int b = 0;
        for (int j = 1; j < T; j++) if (mass[j] > mass[b]) b = j;
        json_array_append_new(srcs, json_pack("{s:i, s:o, s:f}", "position", b, "token",
                                              circuits_text_json(cx, rq->ids + b, 1), "mass", mass[b]));
        mass[b] = -1;
    }
    free(mass);
    return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o, s:o}", "head", h, "entropy", circuits_num(s.entropy),
        "entropy_per_query", ent, "mean_attended_distance", circuits_num(s.mean_distance), "attention_to_first_token",
        circuits_num(s.first_token), "top_sources", srcs, "pattern", pat);
}

/* The labels of the figures: each token's text. */
static tp_status token_labels(const circuits_ctx *cx, const trace_request *rq, char ***out)
{
    char **lab = tp_calloc((size_t)rq->T, sizeof *lab);
    if (!lab) return TP_ERR_NOMEM;
    for (int i = 0; i < rq->T; i++) {
        json_t *t = circuits_text_json(cx, rq->ids + i, 1);
        lab[i] = strdup(json_string_value(t));
        json_decref(t);
        if (!lab[i]) return TP_ERR_NOMEM;
    }
    *out = lab;
    return TP_OK;
}

/* results/circuits/trace/<id>/layer_<L>.svg: the selected heads of layer L. */
static tp_status write_figure(const trace_request *rq, const trace_capture *c, int l, char **labels,
                              const char *path)
{
    const float *panels[1024];
    char names[1024][32];
    const char *titles[1024];
    int n = 0;
    for (int h = 0; h < c->H && n < 1024; h++) {
        if (!rq->select[l * c->H + h]) continue;
        panels[n] = c->pattern + ((size_t)l * c->H + h) * c->T * c->T;
        snprintf(names[n], sizeof names[n], "head %d", h);
        titles[n] = names[n];
        n++;
    }
    char title[256];
    snprintf(title, sizeof title, "layer %d attention (query rows, source columns): %.180s", l, rq->prompt);
    svg_heatmaps hm = {.title = title, .T = c->T, .labels = (const char *const *)labels, .n = n, .panels = panels,
                       .panel_titles = titles};
    return svg_write_heatmaps(path, &hm);
}

static json_t *definitions(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
        "pattern", "attn.hook_pattern: [query][source] softmax weights, 0 above the diagonal",
        "entropy", "mean over queries i >= 1 of -sum_j A[i,j] ln A[i,j] (nats); entropy_per_query lists every query",
        "mean_attended_distance", "mean over queries i >= 1 of sum_j A[i,j] (i - j), in positions",
        "attention_to_first_token", "mean over queries i >= 1 of A[i,0]",
        "top_sources", "the sources j with the largest attention mass sum_i A[i,j] / T",
        "queries", "query 0 sees only itself and is left out of the means");
}

/* Rank 0: the figures, then the JSON. */
static tp_status write_outputs(const circuits_ctx *cx, const trace_request *rq, const trace_capture *c,
                               const char *run_dir)
{
    char dir[TP_PATH_MAX], rel[TP_PATH_MAX], jrel[TP_PATH_MAX], path[TP_PATH_MAX], **labels = NULL;
    TP_CHECK(fs_path(rel, sizeof rel, "%s/%s", RUN_CIRCUITS_TRACE_DIR, rq->id));
    TP_CHECK(fs_path(jrel, sizeof jrel, "%s/%s.json", RUN_CIRCUITS_TRACE_DIR, rq->id));
    TP_CHECK(run_path(dir, sizeof dir, run_dir, rel));
    TP_CHECK(fs_mkdir_p(dir));
    tp_status st = token_labels(cx, rq, &labels);
    json_t *layers = json_array();
    for (int l = 0; st == TP_OK && l < c->L; l++) {
        json_t *heads = json_array();
        for (int h = 0; h < c->H; h++)
            if (rq->select[l * c->H + h])
                json_array_append_new(heads, head_json(cx, rq, c->pattern + ((size_t)l * c->H + h) * c->T * c->T, h));
        if (!json_array_size(heads)) { json_decref(heads); continue; }
        char file[TP_PATH_MAX];
        st = fs_path(file, sizeof file, "%s/layer_%d.svg", rel, l);
        if (st == TP_OK) st = run_path(path, sizeof path, run_dir, file);
        if (st == TP_OK) st = write_figure(rq, c, l, labels, path);
        json_array_append_new(layers, json_pack("{s:i, s:s, s:o}", "layer", l, "figure", file, "heads", heads));
    }
    for (int i = 0; labels && i < rq->T; i++) free(labels[i]);
    free(labels);
    json_t *doc = NULL;
    if (st == TP_OK) {
        json_t *prompts = json_pack("[{s:s, s:s, s:i}]", "source", "--prompt", "text", rq->prompt, "tokens", rq->T);
        doc = json_pack("{s:o, s:o, s:o, s:s, s:o, s:o, s:o}", "model", circuits_model_json(cx), "prompts", prompts,
            "settings", circuits_settings_json(cx->cs), "id", rq->id, "tokens", circuits_tokens_json(cx, rq->ids, rq->T),
            "layers", layers, "definitions", definitions());
        layers = NULL;
        st = doc ? circuits_write_json(run_dir, jrel, doc) : tp_err(TP_ERR_NOMEM, "circuits trace: cannot build the JSON");
    }
    json_decref(layers);
    json_decref(doc);
    return st;
}

tp_status trace_run(const circuits_ctx *cx, const trace_request *rq, const char *run_dir)
{
    tp_status st = TP_OK;
    if (dist_rank() == 0) {
        trace_capture c = {0};
        st = capture(cx, rq, &c);
        if (st == TP_OK) st = write_outputs(cx, rq, &c, run_dir);
        free(c.pattern);
    }
    return dist_agree(MPI_COMM_WORLD, st, "circuits trace");
}
