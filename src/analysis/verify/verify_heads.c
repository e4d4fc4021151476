/* verify_heads.c — head classes and library circuits under ablation (verify_heads.h). */
#include "analysis/verify/verify_heads.h"

#include "analysis/circuits/head_scores.h"
#include "analysis/circuits/library_task.h"
#include "analysis/verify/ablate.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/world.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INDUCTION_TASK "induction: mean next-token cross-entropy on repeated random-token sequences"

/* ---- shared ------------------------------------------------------------------------- */

/* Per prompt ΔCE (rank 0: out[n]) of the heads `heads` ablated together under mode. */
static tp_status heads_ablate(verify_ctx *vx, const iv_target *heads, int nh, iv_mode mode, const tp_sequences *prompts,
                              const int32_t *chosen, int nchosen, double **rows)
{
    iv_set *s = NULL;
    tp_status st = verify_intervention(vx, heads, nh, mode, 0, &s);
    if (st == TP_OK) st = ablate_prompts_shared(vx->cx->m, s, prompts, chosen, nchosen, false, rows);
    iv_free(s);
    return st;
}

/* ---- head classes ------------------------------------------------------------------------ */

static bool class_has_task(const char *c) { return !strcmp(c, "induction") || !strcmp(c, "previous_token"); }

/* Does head (l, h) have class c in the classes array? */
static bool head_has_class(const json_t *classes, int l, int h, const char *c)
{
    size_t i;
    json_t *v;
    json_array_foreach(classes, i, v) {
        if (json_integer_value(json_object_get(v, "layer")) == l && json_integer_value(json_object_get(v, "head")) == h &&
            !strcmp(json_string_value(json_object_get(v, "class")), c))
            return true;
    }
    return false;
}

/* The heads to test: head_scores' classes with a task, plus the heads whose induction
 * stripe reaches the induction threshold (class induction, source "induction_stripe").
 * [{layer, head, class, source, score}] */
static json_t *tested_heads(const verify_ctx *vx, const json_t *hs)
{
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(hs, "classes"), i, v) {
        const char *c = json_string_value(json_object_get(v, "class"));
        if (c && class_has_task(c))
            json_array_append_new(out, json_pack("{s:O, s:O, s:s, s:s, s:O}", "layer", json_object_get(v, "layer"), "head",
                                                 json_object_get(v, "head"), "class", c, "source", "classes",
                                                 "score", json_object_get(v, "score")));
    }
    const json_t *stripe = json_object_get(hs, "induction_stripe");
    double th = vx->cx->cs->threshold[HS_INDUCTION];
    for (size_t l = 0; l < json_array_size(stripe); l++)
        for (size_t h = 0; h < json_array_size(json_array_get(stripe, l)); h++) {
            const json_t *x = json_array_get(json_array_get(stripe, l), h);
            if (!json_is_number(x) || json_number_value(x) < th || head_has_class(out, (int)l, (int)h, "induction"))
                continue;
            json_array_append_new(out, json_pack("{s:i, s:i, s:s, s:s, s:f}", "layer", (int)l, "head", (int)h, "class",
                                                 "induction", "source", "induction_stripe", "score", json_number_value(x)));
        }
    return out;
}

/* Skipped classes: one entry per class without a task, naming its heads. */
static void skip_classes(verify_ctx *vx, const json_t *classes)
{
    static const char *const other[] = {"duplicate_token", "bos", "self", "local"};
    for (size_t k = 0; k < sizeof other / sizeof *other; k++) {
        char heads[512] = "";
        size_t i;
        json_t *v;
        json_array_foreach(classes, i, v) {
            if (strcmp(json_string_value(json_object_get(v, "class")), other[k])) continue;
            size_t u = strlen(heads);
            if (u < sizeof heads - 16)
                snprintf(heads + u, sizeof heads - u, "%sL%dH%d", u ? " " : "", (int)json_integer_value(json_object_get(v, "layer")),
                         (int)json_integer_value(json_object_get(v, "head")));
        }
        if (!heads[0]) continue;
        char what[600];
        snprintf(what, sizeof what, "heads of class %s (%s)", other[k], heads);
        verify_skip(vx, what, "no task of verify defines the class %s", other[k]);
    }
}

/* The induction task's prompts as sequences. */
static tp_status induction_prompts(const verify_ctx *vx, tp_sequences *out)
{
    prompt_set ps = {0};
    prompt_limits lim = circuits_limits(vx->cx, 2);
    tp_status st = prompts_add_synthetic(&ps, vx->cx->tok, vx->vs->head_prompts, vx->vs->head_length,
                                         vx->cx->m->cfg.vocab_size, vx->vs->seed, &lim);
    for (int i = 0; st == TP_OK && i < ps.n; i++) st = sequences_append(out, ps.p[i].ids, (size_t)ps.p[i].n, (size_t)i);
    prompt_set_free(&ps);
    return st;
}

/* One head of a class: effect, baseline, difference (verify_heads.h). rank 0. */
static json_t *head_entry(const verify_ctx *vx, const json_t *classes, int l, int h, const char *cls, double *const *dce,
                          int H, size_t P, const double *clean)
{
    double *e = tp_malloc(P * sizeof *e), *b = tp_malloc(P * sizeof *b), *d = tp_malloc(P * sizeof *d);
    json_t *base_heads = json_array();
    int nb = 0;
    for (int g = 0; g < H; g++)
        if (g != h && !head_has_class(classes, l, g, cls)) {
            json_array_append_new(base_heads, json_pack("{s:i, s:i}", "layer", l, "head", g));
            nb++;
        }
    json_t *o = NULL;
    if (e && b && d) {
        for (size_t p = 0; p < P; p++) {
            double s = 0;
            for (int g = 0; g < H; g++)
                if (g != h && !head_has_class(classes, l, g, cls)) s += dce[g][p];
            e[p] = dce[h][p];
            b[p] = nb ? s / nb : NAN;
            d[p] = e[p] - b[p];
        }
        uint64_t salt = (uint64_t)(l * 1000 + h);
        json_t *diff = verify_ci(vx->vs, d, P, salt + 2);
        double dm, dlo;
        verify_ci_get(diff, &dm, &dlo, NULL);
        bool ok = nb > 0 && isfinite(dlo) && dlo > 0;
        o = json_pack("{s:i, s:i, s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:s}", "layer", l, "head", h, "class",
                      cls, "task", INDUCTION_TASK, "mode", iv_mode_name(vx->vs->head_mode), "verified", ok, "effect",
                      verify_ci(vx->vs, e, P, salt), "baseline", nb ? verify_ci(vx->vs, b, P, salt + 1) : json_null(),
                      "difference", diff, "baseline_heads", json_incref(base_heads), "clean_loss",
                      verify_ci(vx->vs, clean, P, 0), "criterion",
                      "difference.ci95_low > 0: ablating the head raises the task loss more than ablating the other "
                      "heads of its layer (without its class) does, per prompt");
    }
    json_decref(base_heads);
    free(e), free(b), free(d);
    return o;
}

/* head_scores.json is read back: the heads that will be ablated and indexed (classes
 * with a task, the induction stripe) must be heads of the model. */
static tp_status head_scores_check(const verify_ctx *vx, const json_t *hs)
{
    const tp_model_config *c = &vx->cx->m->cfg;
    size_t i;
    const json_t *v;
    json_array_foreach(json_object_get(hs, "classes"), i, v) {
        const char *cls = json_string_value(json_object_get(v, "class"));
        if (!cls || !class_has_task(cls)) continue;
        const json_t *l = json_object_get(v, "layer"), *h = json_object_get(v, "head");
        if (!json_is_integer(l) || json_integer_value(l) < 0 || json_integer_value(l) >= c->num_layers ||
            !json_is_integer(h) || json_integer_value(h) < 0 || json_integer_value(h) >= c->num_heads)
            return tp_err(TP_ERR_FORMAT, "verify: %s/%s: classes[%zu] (%s) is not a head of the model (layers 0..%d, "
                          "heads 0..%d)", vx->run_dir, RUN_CIRCUITS_HEAD_SCORES_JSON, i, cls, c->num_layers - 1,
                          c->num_heads - 1);
    }
    const json_t *stripe = json_object_get(hs, "induction_stripe");
    if (json_array_size(stripe) > (size_t)c->num_layers)
        return tp_err(TP_ERR_FORMAT, "verify: %s/%s: induction_stripe has %zu layers, the model %d", vx->run_dir,
                      RUN_CIRCUITS_HEAD_SCORES_JSON, json_array_size(stripe), c->num_layers);
    json_array_foreach(stripe, i, v) {
        if (json_array_size(v) > (size_t)c->num_heads)
            return tp_err(TP_ERR_FORMAT, "verify: %s/%s: induction_stripe[%zu] has %zu heads, the model %d",
                          vx->run_dir, RUN_CIRCUITS_HEAD_SCORES_JSON, i, json_array_size(v), c->num_heads);
    }
    return TP_OK;
}

tp_status verify_heads(verify_ctx *vx, json_t **out)
{
    *out = NULL;
    json_t *hs = run_load_json(vx->run_dir, RUN_CIRCUITS_HEAD_SCORES_JSON);
    json_t *classes = json_object_get(hs, "classes");
    if (!json_is_array(classes)) {
        json_decref(hs);
        return tp_err(TP_ERR_CONFIG, "verify: %s/%s: missing or without \"classes\"; run `transpolmo circuits` first",
                      vx->run_dir, RUN_CIRCUITS_HEAD_SCORES_JSON);
    }
    tp_status cst = head_scores_check(vx, hs);
    if (cst != TP_OK) {
        json_decref(hs);
        return cst;
    }
    skip_classes(vx, classes);
    json_t *tested = tested_heads(vx, hs);
    const tp_model_config *c = &vx->cx->m->cfg;
    int L = c->num_layers, H = c->num_heads;
    bool *layer_used = tp_calloc((size_t)L + 1, sizeof *layer_used);
    double **dce = tp_calloc((size_t)H + 1, sizeof *dce);
    tp_sequences prompts = {0};
    tp_status st = layer_used && dce ? induction_prompts(vx, &prompts) : TP_ERR_NOMEM;
    size_t i, P = prompts.n_seqs;
    json_t *v;
    json_array_foreach(tested, i, v) {
        int l = (int)json_integer_value(json_object_get(v, "layer"));
        if (l >= 0 && l < L) layer_used[l] = true;
    }
    json_t *arr = json_array();
    double *clean = NULL;
    int w = ablate_row_width(0), nused = 0;
    for (int l = 0; l < L; l++) nused += layer_used[l];
    tp_progress prog;
    if (dist_rank() == 0) tp_progress_begin(&prog, "verify heads", "heads", (uint64_t)(nused * H));
    for (int l = 0; st == TP_OK && l < L; l++) {
        if (!layer_used[l]) continue;
        tp_log_info("verify: heads of layer %d ablated (%s) on %zu induction prompts", l,
                    iv_mode_name(vx->vs->head_mode), P);
        for (int h = 0; st == TP_OK && h < H; h++) {
            iv_target t = {.kind = IV_HEAD, .layer = l, .index = h};
            double *rows = NULL;
            st = heads_ablate(vx, &t, 1, vx->vs->head_mode, &prompts, NULL, 0, &rows);
            if (st == TP_OK && dist_rank() == 0) {
                dce[h] = tp_malloc((P + 1) * sizeof **dce);
                if (!clean) clean = tp_malloc((P + 1) * sizeof *clean);
                if (!dce[h] || !clean) st = TP_ERR_NOMEM;
                for (size_t p = 0; st == TP_OK && p < P; p++)
                    dce[h][p] = rows[p * (size_t)w + ABLATE_DELTA_CE], clean[p] = rows[p * (size_t)w + ABLATE_CE_CLEAN];
            }
            free(rows);
            if (dist_rank() == 0) tp_progress_add(&prog, 1);
        }
        json_array_foreach(tested, i, v) {
            const char *cls = json_string_value(json_object_get(v, "class"));
            if (st != TP_OK || dist_rank() != 0 || json_integer_value(json_object_get(v, "layer")) != l) continue;
            json_t *e = head_entry(vx, tested, l, (int)json_integer_value(json_object_get(v, "head")), cls, dce, H, P,
                                   clean);
            if (!e) st = TP_ERR_NOMEM;
            else {
                json_object_set(e, "source", json_object_get(v, "source"));
                json_object_set(e, "class_score", json_object_get(v, "score"));
                json_array_append_new(arr, e);
            }
        }
        for (int h = 0; h < H; h++) free(dce[h]), dce[h] = NULL;
    }
    if (dist_rank() == 0) tp_progress_end(&prog);
    if (st == TP_OK && dist_rank() == 0) *out = json_incref(arr);
    json_decref(arr);
    free(clean), free(dce), free(layer_used);
    sequences_free(&prompts);
    json_decref(tested);
    json_decref(hs);
    return st;
}

/* ---- circuits ------------------------------------------------------------------------------- */

typedef struct {
    lib_pairs pairs;
    tp_sequences clean;          /* the clean prompts */
    int32_t *chosen;             /* distinct targets and distractors */
    int nchosen;
    int *tcol, *dcol;            /* [pairs] their columns in chosen (−1: no distractor) */
    double *ld;                  /* [pairs] clean LD */
    double ld_mean;
} circuit_task;

static int chosen_col(circuit_task *ct, int32_t id)
{
    for (int j = 0; j < ct->nchosen; j++)
        if (ct->chosen[j] == id) return j;
    ct->chosen[ct->nchosen] = id;
    return ct->nchosen++;
}

static tp_status task_prepare(verify_ctx *vx, circuit_task *ct)
{
    int n = ct->pairs.n;
    ct->chosen = tp_malloc((size_t)(2 * n + 1) * sizeof *ct->chosen);
    ct->tcol = tp_malloc((size_t)(n + 1) * sizeof *ct->tcol);
    ct->dcol = tp_malloc((size_t)(n + 1) * sizeof *ct->dcol);
    ct->ld = tp_malloc((size_t)(n + 1) * sizeof *ct->ld);
    if (!ct->chosen || !ct->tcol || !ct->dcol || !ct->ld) return TP_ERR_NOMEM;
    int maxT = 1;
    tp_status st = TP_OK;
    for (int i = 0; st == TP_OK && i < n; i++) {
        const dc_pair *p = &ct->pairs.p[i];
        ct->tcol[i] = chosen_col(ct, p->target);
        ct->dcol[i] = p->distractor >= 0 ? chosen_col(ct, p->distractor) : -1;
        st = sequences_append(&ct->clean, p->clean, (size_t)p->T, (size_t)i);
        if (p->T > maxT) maxT = p->T;
    }
    tp_forward *f = NULL;
    if (st == TP_OK) st = forward_new(vx->cx->m, 1, maxT, &f);
    ct->ld_mean = 0;
    for (int i = 0; st == TP_OK && i < n; i++) {
        const dc_pair *p = &ct->pairs.p[i];
        const float *logits;
        int T = p->T;
        st = forward_run_varlen(f, p->clean, &T, 1, NULL, TP_LOGITS_LAST, -1, &logits);
        if (st != TP_OK) break;
        ct->ld[i] = (double)logits[p->target] - (p->distractor >= 0 ? (double)logits[p->distractor] : 0.0);
        ct->ld_mean += ct->ld[i] / n;
    }
    forward_free(f);
    return st;
}

static void task_free(circuit_task *ct)
{
    lib_pairs_free(&ct->pairs);
    sequences_free(&ct->clean);
    free(ct->chosen), free(ct->tcol), free(ct->dcol), free(ct->ld);
}

/* LD_i(S) per pair from the rows of an ablation of S (rank 0). */
static void ablated_ld(const circuit_task *ct, const double *rows, double *out)
{
    int w = ablate_row_width(ct->nchosen);
    for (int i = 0; i < ct->pairs.n; i++) {
        const double *r = rows + (size_t)i * (size_t)w + ABLATE_BASE_COLS;
        out[i] = ct->ld[i] + r[ct->tcol[i]] - (ct->dcol[i] >= 0 ? r[ct->dcol[i]] : 0.0);
    }
}

/* The heads of a task's kept circuit (kind "head" nodes of library_<name>.json). */
static tp_status circuit_heads(const verify_ctx *vx, const char *graph, iv_target **heads, int *n)
{
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s.json", RUN_CIRCUITS_DIR, graph);
    json_t *g = run_load_json(vx->run_dir, rel), *nodes = json_object_get(g, "nodes");
    *n = 0;
    *heads = tp_malloc((json_array_size(nodes) + 1) * sizeof **heads);
    if (!*heads) {
        json_decref(g);
        return TP_ERR_NOMEM;
    }
    size_t i;
    json_t *v;
    json_array_foreach(nodes, i, v) {
        if (strcmp(json_string_value(json_object_get(v, "kind")) ? json_string_value(json_object_get(v, "kind")) : "",
                   "head"))
            continue;
        (*heads)[(*n)++] = (iv_target){.kind = IV_HEAD, .layer = (int)json_integer_value(json_object_get(v, "layer")),
                                       .index = (int)json_integer_value(json_object_get(v, "head"))};
    }
    bool ok = g != NULL;
    json_decref(g);
    return ok ? TP_OK : tp_err(TP_ERR_CONFIG, "verify: %s/%s: missing or unreadable", vx->run_dir, rel);
}

/* Every head of the model not in heads[0..n). */
static tp_status complement_heads(const tp_model_config *c, const iv_target *heads, int n, iv_target **out, int *nout)
{
    *out = tp_malloc((size_t)(c->num_layers * c->num_heads + 1) * sizeof **out);
    if (!*out) return TP_ERR_NOMEM;
    *nout = 0;
    for (int l = 0; l < c->num_layers; l++)
        for (int h = 0; h < c->num_heads; h++) {
            bool in = false;
            for (int k = 0; k < n && !in; k++) in = heads[k].layer == l && heads[k].index == h;
            if (!in) (*out)[(*nout)++] = (iv_target){.kind = IV_HEAD, .layer = l, .index = h};
        }
    return TP_OK;
}

/* Faithfulness and completeness of one task under one mode, plus each head's effect
 * (rank 0 appends to by_mode; others only take part). */
static tp_status task_mode(verify_ctx *vx, circuit_task *ct, const iv_target *C, int nc, const iv_target *Cbar, int ncb,
                           iv_mode mode, json_t *heads_json, json_t *by_mode)
{
    int n = ct->pairs.n;
    double *rows = NULL, *ld = tp_malloc((size_t)(n + 1) * sizeof *ld), *x = tp_malloc((size_t)(n + 1) * sizeof *x);
    if (!ld || !x) {
        free(ld), free(x);
        return TP_ERR_NOMEM;
    }
    json_t *faith = NULL, *comp = NULL;
    tp_status st = heads_ablate(vx, Cbar, ncb, mode, &ct->clean, ct->chosen, ct->nchosen, &rows);
    if (st == TP_OK && dist_rank() == 0) {
        ablated_ld(ct, rows, ld);
        for (int i = 0; i < n; i++) x[i] = ld[i] / ct->ld_mean;
        faith = json_pack("{s:o, s:o}", "estimate", verify_ci(vx->vs, x, (size_t)n, 11), "ld_ablated",
                          verify_ci(vx->vs, ld, (size_t)n, 12));
    }
    free(rows), rows = NULL;
    if (st == TP_OK) st = heads_ablate(vx, C, nc, mode, &ct->clean, ct->chosen, ct->nchosen, &rows);
    if (st == TP_OK && dist_rank() == 0) {
        ablated_ld(ct, rows, ld);
        for (int i = 0; i < n; i++) x[i] = 1.0 - ld[i] / ct->ld_mean;
        comp = json_pack("{s:o, s:o}", "estimate", verify_ci(vx->vs, x, (size_t)n, 13), "ld_ablated",
                         verify_ci(vx->vs, ld, (size_t)n, 14));
    }
    free(rows), rows = NULL;
    for (int k = 0; st == TP_OK && k < nc; k++) {
        st = heads_ablate(vx, &C[k], 1, mode, &ct->clean, ct->chosen, ct->nchosen, &rows);
        if (st == TP_OK && dist_rank() == 0) {
            ablated_ld(ct, rows, ld);
            for (int i = 0; i < n; i++) x[i] = (ct->ld[i] - ld[i]) / ct->ld_mean;
            json_object_set_new(json_array_get(heads_json, (size_t)k), iv_mode_name(mode),
                                verify_ci(vx->vs, x, (size_t)n, 100 + (uint64_t)k));
        }
        free(rows), rows = NULL;
    }
    if (st == TP_OK && dist_rank() == 0)
        json_object_set_new(by_mode, iv_mode_name(mode), json_pack("{s:o, s:o}", "faithfulness", faith, "completeness", comp));
    else
        json_decref(faith), json_decref(comp);
    free(ld), free(x);
    return st;
}

/* One library task -> its entry (rank 0), or a skip. */
static tp_status verify_task(verify_ctx *vx, const json_t *task, json_t *arr)
{
    const char *name = json_string_value(json_object_get(task, "name")),
               *file = json_string_value(json_object_get(task, "file")),
               *graph = json_string_value(json_object_get(task, "graph"));
    bool can_do = json_is_true(json_object_get(task, "can_do"));
    if (!name || !file || !graph) return tp_err(TP_ERR_FORMAT, "verify: %s: a task without name, file or graph", RUN_CIRCUITS_LIBRARY_JSON);
    char path[TP_PATH_MAX], what[160];
    snprintf(what, sizeof what, "circuit %s", name);
    if (snprintf(path, sizeof path, "%s/%s", vx->cx->cs->library_dir, file) >= (int)sizeof path)
        return tp_err(TP_ERR_CONFIG, "verify: the path of task file %s is too long", file);
    lib_task t = {0};
    circuit_task ct = {0};
    iv_target *C = NULL, *Cbar = NULL;
    int nc = 0, ncb = 0;
    tp_status st = lib_task_load(path, &t);
    if (st != TP_OK) {
        verify_skip(vx, what, "its task file %s cannot be read (%s)", path, tp_err_msg());
        return TP_OK;
    }
    if (t.generator) t.n = vx->vs->circuit_pairs;
    st = lib_task_pairs(vx->cx, &t, &ct.pairs);
    if (st == TP_OK) st = task_prepare(vx, &ct);
    if (st == TP_OK) st = circuit_heads(vx, graph, &C, &nc);
    if (st == TP_OK && nc == 0) {
        verify_skip(vx, what, "its kept circuit (%s.json) has no head", graph);
        goto done;
    }
    if (st == TP_OK) st = complement_heads(&vx->cx->m->cfg, C, nc, &Cbar, &ncb);
    if (st == TP_OK) tp_log_info("verify: circuit %s: %d heads, %d in the complement, %d pairs", name, nc, ncb, ct.pairs.n);
    json_t *heads = json_array(), *by_mode = json_object();
    for (int k = 0; k < nc; k++) json_array_append_new(heads, json_pack("{s:i, s:i}", "layer", C[k].layer, "head", C[k].index));
    for (int m = IV_ZERO; st == TP_OK && m <= IV_RESAMPLE; m++) st = task_mode(vx, &ct, C, nc, Cbar, ncb, (iv_mode)m, heads, by_mode);
    if (st == TP_OK && dist_rank() == 0) {
        json_t *sel = json_object_get(by_mode, iv_mode_name(vx->vs->circuit_mode));
        json_t *f = json_object_get(json_object_get(sel, "faithfulness"), "estimate"),
               *c = json_object_get(json_object_get(sel, "completeness"), "estimate");
        double fm, cm;
        verify_ci_get(f, &fm, NULL, NULL);
        verify_ci_get(c, &cm, NULL, NULL);
        bool ok = can_do && fm >= vx->vs->min_faithfulness && cm >= vx->vs->min_completeness;
        json_t *lds = json_array();
        for (int i = 0; i < ct.pairs.n; i++) json_array_append_new(lds, json_real(ct.ld[i]));
        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:b, s:b, s:s, s:O, s:O, s:o, s:{s:i, s:O, s:O}, s:o, s:{s:o, s:f, s:I}, s:s}", "task", name,
            "graph", graph, "can_do", can_do, "verified", ok, "mode", iv_mode_name(vx->vs->circuit_mode),
            "faithfulness", f, "completeness", c, "heads", heads, "complement", "heads", ncb, "faithfulness",
            json_object_get(json_object_get(sel, "faithfulness"), "ld_ablated"), "completeness",
            json_object_get(json_object_get(sel, "completeness"), "ld_ablated"), "by_mode", by_mode, "clean",
            "ld", lds, "ld_mean", ct.ld_mean, "pairs", (json_int_t)ct.pairs.n, "criterion",
            "can_do, and under `mode` faithfulness.mean >= verify.circuits.faithfulness and completeness.mean >= "
            "verify.circuits.completeness"));
    } else {
        json_decref(heads), json_decref(by_mode);
    }
done:
    free(C), free(Cbar);
    task_free(&ct);
    lib_task_free(&t);
    return st;
}

tp_status verify_circuits(verify_ctx *vx, json_t **out)
{
    *out = NULL;
    json_t *lib = run_load_json(vx->run_dir, RUN_CIRCUITS_LIBRARY_JSON), *tasks = json_object_get(lib, "tasks");
    json_t *arr = json_array();
    tp_status st = TP_OK;
    if (!json_is_array(tasks)) {
        verify_skip(vx, "circuits", "%s is missing or has no tasks (circuits.library.dir empty, or `transpolmo "
                    "circuits` not run)", RUN_CIRCUITS_LIBRARY_JSON);
    } else if (!vx->cx->cs->library_dir[0]) {
        verify_skip(vx, "circuits", "circuits.library.dir is empty: the task files that make the prompts are unknown");
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(tasks, i, v) {
            if (st == TP_OK) st = verify_task(vx, v, arr);
        }
    }
    if (st == TP_OK && dist_rank() == 0) *out = json_incref(arr);
    json_decref(arr);
    json_decref(lib);
    return st;
}
