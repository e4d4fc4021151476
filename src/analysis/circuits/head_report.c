/* head_report.c — rank 0: the per-prompt head records averaged in prompt order,
 * the classes with their thresholds, null baselines and examples, as
 * results/circuits/head_scores.json (heads.h, docs/circuits.md). */
#include "analysis/circuits/head_scores.h"
#include "analysis/circuits/heads.h"
#include "core/fsutil.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int L, H, k;
    double *mean;            /* [HS_SCORES][L][H] over every prompt */
    double *set_mean[2];     /* the same over text prompts (0) and synthetic ones (1) */
    int nset[2];
    double *null;            /* [HS_CLASSES][L][H] */
    double *set_null[2];     /* the same over text prompts (0) and synthetic ones (1) */
    double *stripe;          /* [L][H] over the synthetic prompts (NaN: none) */
    hs_example *ex;          /* [HS_CLASSES][L][H][k] */
} head_agg;

static void agg_free(head_agg *a)
{
    free(a->mean), free(a->set_mean[0]), free(a->set_mean[1]), free(a->null), free(a->stripe), free(a->ex);
    free(a->set_null[0]), free(a->set_null[1]);
}

static tp_status agg_alloc(head_agg *a, const head_records *r)
{
    size_t LH = (size_t)r->L * r->H;
    a->L = r->L, a->H = r->H, a->k = r->k;
    a->mean = tp_calloc(HS_SCORES * LH, sizeof(double));
    a->set_mean[0] = tp_calloc(HS_SCORES * LH, sizeof(double));
    a->set_mean[1] = tp_calloc(HS_SCORES * LH, sizeof(double));
    a->null = tp_calloc(HS_CLASSES * LH, sizeof(double));
    a->set_null[0] = tp_calloc(HS_CLASSES * LH, sizeof(double));
    a->set_null[1] = tp_calloc(HS_CLASSES * LH, sizeof(double));
    a->stripe = tp_calloc(LH, sizeof(double));
    a->ex = tp_malloc((HS_CLASSES * LH * (size_t)(r->k ? r->k : 1)) * sizeof *a->ex);
    if (!a->mean || !a->set_mean[0] || !a->set_mean[1] || !a->null || !a->set_null[0] || !a->set_null[1] || !a->stripe || !a->ex) return TP_ERR_NOMEM;
    for (size_t i = 0; i < HS_CLASSES * LH * (size_t)r->k; i++)
        a->ex[i] = (hs_example){.weight = -1, .prompt = -1, .query = -1, .source = -1};
    return TP_OK;
}

/* Sums in prompt order (the order of the set, whatever the ranks), then means. */
static void aggregate(const head_records *r, const prompt_set *ps, head_agg *a)
{
    size_t LH = (size_t)r->L * r->H;
    for (int p = 0; p < r->nprompts; p++) {
        const double *rec = r->all + (size_t)p * r->rec;
        int set = ps->p[p].synthetic_len > 0;
        a->nset[set]++;
        for (size_t i = 0; i < HS_SCORES * LH; i++) a->mean[i] += rec[i], a->set_mean[set][i] += rec[i];
        for (size_t i = 0; i < HS_CLASSES * LH; i++)
            a->null[i] += rec[HS_SCORES * LH + i], a->set_null[set][i] += rec[HS_SCORES * LH + i];
        for (size_t i = 0; set && i < LH; i++) a->stripe[i] += rec[(HS_SCORES + HS_CLASSES) * LH + i];
        for (int c = 0; c < HS_CLASSES; c++)
            for (int l = 0; l < r->L; l++)
                for (int h = 0; h < r->H; h++)
                    for (int s = 0; s < r->k; s++) {
                        const double *e = rec + hr_example(r, c, l, h, s);
                        hs_example x = {.weight = e[0], .prompt = (int)e[1], .query = (int)e[2], .source = (int)e[3]};
                        hs_example_insert(a->ex + ((size_t)(c * r->L + l) * r->H + h) * r->k, r->k, &x);
                    }
    }
    for (size_t i = 0; i < HS_SCORES * LH; i++) {
        a->mean[i] /= r->nprompts;
        for (int s = 0; s < 2; s++) a->set_mean[s][i] = a->nset[s] ? a->set_mean[s][i] / a->nset[s] : NAN;
    }
    for (size_t i = 0; i < HS_CLASSES * LH; i++) {
        a->null[i] /= r->nprompts;
        for (int s = 0; s < 2; s++) a->set_null[s][i] = a->nset[s] ? a->set_null[s][i] / a->nset[s] : NAN;
    }
    for (size_t i = 0; i < LH; i++) a->stripe[i] = a->nset[1] ? a->stripe[i] / a->nset[1] : NAN;
}

/* [[L][H]] of v (NaN as null). */
static json_t *grid(const double *v, int L, int H)
{
    json_t *rows = json_array();
    for (int l = 0; l < L; l++) {
        json_t *row = json_array();
        for (int h = 0; h < H; h++) json_array_append_new(row, circuits_num(v[(size_t)l * H + h]));
        json_array_append_new(rows, row);
    }
    return rows;
}

static json_t *scores_json(const double *v, int L, int H, int kinds)
{
    json_t *o = json_object();
    for (int c = 0; c < kinds; c++) json_object_set_new(o, hs_class_name(c), grid(v + (size_t)c * L * H, L, H));
    return o;
}

static json_t *example_json(const circuits_ctx *cx, const prompt_set *ps, const hs_example *e)
{
    const circuit_prompt *p = &ps->p[e->prompt];
    int from = e->query - 8 > 0 ? e->query - 8 : 0;
    return json_pack("{s:i, s:s, s:i, s:o, s:i, s:o, s:f, s:o}", "prompt", e->prompt, "prompt_source", p->source,
        "query_position", e->query, "query_token", circuits_text_json(cx, p->ids + e->query, 1), "source_position",
        e->source, "source_token", circuits_text_json(cx, p->ids + e->source, 1), "weight", e->weight,
        "context_before_query", circuits_text_json(cx, p->ids + from, e->query - from + 1));
}

/* The prompts a class is decided on: duplicate-token and induction on the synthetic
 * repeated prompts when there are any (their detection patterns are empty where no
 * token repeats, so text prompts only dilute them), every other class on all prompts. */
static int synthetic_basis(const head_agg *a, int c)
{
    return (c == HS_DUPLICATE_TOKEN || c == HS_INDUCTION) && a->nset[1] > 0;
}

static const double *class_scores(const head_agg *a, int c)
{
    return (synthetic_basis(a, c) ? a->set_mean[1] : a->mean) + (size_t)c * a->L * a->H;
}

static json_t *classes_json(const circuits_ctx *cx, const prompt_set *ps, const head_agg *a)
{
    const circuits_settings *cs = cx->cs;
    json_t *list = json_array();
    for (int l = 0; l < a->L; l++)
        for (int h = 0; h < a->H; h++)
            for (int c = 0; c < HS_CLASSES; c++) {
                size_t at = ((size_t)c * a->L + l) * a->H + h;
                int syn = synthetic_basis(a, c);
                double score = (syn ? a->set_mean[1] : a->mean)[at], null = (syn ? a->set_null[1] : a->null)[at];
                if (!(score >= cs->threshold[c] && score - null >= cs->null_margin)) continue;
                json_t *ex = json_array();
                const hs_example *top = a->ex + at * a->k;
                for (int s = 0; s < a->k && top[s].weight >= 0; s++)
                    json_array_append_new(ex, example_json(cx, ps, &top[s]));
                json_t *it = json_pack("{s:i, s:i, s:s, s:f, s:f, s:f, s:f, s:s, s:o}", "layer", l, "head", h, "class",
                    hs_class_name(c), "score", score, "threshold", cs->threshold[c], "null_baseline", null,
                    "null_margin", cs->null_margin, "basis", syn ? "synthetic" : "all", "examples", ex);
                if (c == HS_INDUCTION)
                    json_object_set_new(it, "induction_stripe", circuits_num(a->stripe[(size_t)l * a->H + h]));
                json_array_append_new(list, it);
            }
    return list;
}

/* The head with the largest score of each kind (the stripe too). */
static json_t *best_json(const head_agg *a)
{
    json_t *o = json_object();
    for (int c = 0; c <= HS_CLASSES; c++) {
        const double *v = c < HS_CLASSES ? class_scores(a, c) : a->stripe;
        int bl = -1, bh = -1;
        for (int l = 0; l < a->L; l++)
            for (int h = 0; h < a->H; h++)
                if (isfinite(v[(size_t)l * a->H + h]) && (bl < 0 || v[(size_t)l * a->H + h] > v[(size_t)bl * a->H + bh]))
                    bl = l, bh = h;
        json_object_set_new(o, c < HS_CLASSES ? hs_class_name(c) : "induction_stripe",
                            bl < 0 ? json_null() : json_pack("{s:i, s:i, s:f, s:s}", "layer", bl, "head", bh, "score",
                                                            v[(size_t)bl * a->H + bh], "basis",
                                                            c == HS_CLASSES || synthetic_basis(a, c) ? "synthetic" : "all"));
    }
    return o;
}

static json_t *definitions(int w)
{
    char local[160];
    snprintf(local, sizeof local, "D[i,j] = 1 for i-%d < j <= i: attention to the %d most recent positions", w, w);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
        "score", "TransformerLens head_detector with error_measure=\"mul\": sum(A*D)/sum(A) over the prompt's T x T "
        "pattern, no exclusions, averaged over prompts",
        "previous_token", "D[i,i-1] = 1 (TransformerLens get_previous_token_head_detection_pattern)",
        "duplicate_token", "D[i,j] = 1 for j < i with t[j] = t[i] (TransformerLens get_duplicate_token_head_detection_pattern)",
        "induction", "D[i,j] = 1 for 1 <= j <= i with t[j-1] = t[i] (TransformerLens get_induction_head_detection_pattern)",
        "bos", "D[i,0] = 1: attention to the first position (the BOS token when circuits.prepend_bos)",
        "self", "D[i,i] = 1: attention to the query's own position",
        "local", local,
        "entropy", "mean over queries i >= 1 of -sum_j A[i,j] ln A[i,j], nats (not a class)",
        "null_baseline", "the same score with each query row of A permuted over its causal window 0..i (seeded), mean "
        "over circuits.heads.null_shuffles shuffles and the prompts",
        "induction_stripe", "on the synthetic prompts [BOS, r1..rL, r1..rL]: mean of A[i, i+1-L] over i = L+1..2L",
        "class", "score >= threshold and score - null_baseline >= null_margin, both on the class's basis",
        "basis", "duplicate_token and induction: the mean over the synthetic repeated prompts when there are any (their "
                 "D is empty where no token repeats, so text prompts only dilute them); every other class: all prompts; "
                 "scores and null_baselines above are over all prompts, scores_by_set per set");
}

tp_status heads_report(const circuits_ctx *cx, const prompt_set *ps, const head_records *r, json_t **doc)
{
    head_agg a = {0};
    tp_status st = agg_alloc(&a, r);
    if (st != TP_OK) { agg_free(&a); return st; }
    aggregate(r, ps, &a);
    int L = r->L, H = r->H;
    json_t *by_set = json_object();
    const char *set_names[2] = {"text", "synthetic"};
    for (int s = 0; s < 2; s++)
        if (a.nset[s])
            json_object_set_new(by_set, set_names[s], json_pack("{s:i, s:o}", "prompts", a.nset[s], "scores",
                                                                scores_json(a.set_mean[s], L, H, HS_SCORES)));
    json_t *prompts = json_pack("{s:i, s:i, s:i, s:i, s:o}", "count", ps->n, "text", a.nset[0], "synthetic", a.nset[1],
        "synthetic_len", a.nset[1] ? (int)cx->cs->synthetic_len : 0, "items", circuits_prompts_json(cx, ps));
    *doc = json_pack("{s:o, s:o, s:o, s:i, s:i, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "model", circuits_model_json(cx),
        "prompts", prompts, "settings", circuits_settings_json(cx->cs), "n_layers", L, "n_heads", H, "scores",
        scores_json(a.mean, L, H, HS_SCORES), "classes", classes_json(cx, ps, &a), "null_baselines",
        scores_json(a.null, L, H, HS_CLASSES), "induction_stripe", a.nset[1] ? grid(a.stripe, L, H) : json_null(),
        "scores_by_set", by_set, "best", best_json(&a), "definitions", definitions((int)cx->cs->local_window));
    agg_free(&a);
    return *doc ? TP_OK : tp_err(TP_ERR_NOMEM, "circuits heads: cannot build the JSON");
}

void heads_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_CIRCUITS_HEAD_SCORES_JSON), *best = json_object_get(j, "best");
    if (!best) { json_decref(j); return; }
    size_t len = 0;
    const char *show[] = {"previous_token", "induction", "induction_stripe"};
    for (int i = 0; i < 3 && len < n; i++) {
        json_t *b = json_object_get(best, show[i]);
        if (!json_is_object(b)) continue;
        len += (size_t)snprintf(buf + len, n - len, "%sbest %s L%lldH%lld %.2f", len ? " | " : "", show[i],
                                (long long)json_integer_value(json_object_get(b, "layer")),
                                (long long)json_integer_value(json_object_get(b, "head")),
                                json_number_value(json_object_get(b, "score")));
    }
    if (len < n)
        snprintf(buf + len, n - len, " | %zu head label(s)", json_array_size(json_object_get(j, "classes")));
    json_decref(j);
}
