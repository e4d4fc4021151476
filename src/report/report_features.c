/* report_features.c — the features section of the report: a table of every live
 * feature of the catalog (sortable, filterable) and a card per chosen feature. */
#include "report/feature_sample.h"
#include "report/report_page.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TABLE_ROWS_PER_SAE 1500   /* live features listed per SAE, by activation mass */
#define CARDS_TOP_PER_SAE 6       /* cards of the features with the largest activation mass */
#define CARDS_MAX_PER_SAE 12      /* ... plus those in circuits or verified, up to this */
#define CONTEXTS_SHOWN 6

/* ⟦ and ⟧ (U+27E6, U+27E7), around the activating token in a catalog context */
static const char open_mark[] = "\xE2\x9F\xA6", close_mark[] = "\xE2\x9F\xA7";

/* A context with its activating token in <mark>; inline: newlines as ⏎ (tables). */
static void context_html(report_ctx *r, const char *ctx, int inline_)
{
    if (!ctx) { html_raw(r->b, "–"); return; }
    const char *o = strstr(ctx, open_mark), *c = o ? strstr(o + 3, close_mark) : NULL;
    const char *parts[3][2];
    int np = 0;
    if (o && c) {
        parts[0][0] = ctx, parts[0][1] = o;
        parts[1][0] = o + 3, parts[1][1] = c;
        parts[2][0] = c + 3, parts[2][1] = ctx + strlen(ctx);
        np = 3;
    } else {
        parts[0][0] = ctx, parts[0][1] = ctx + strlen(ctx);
        np = 1;
    }
    for (int i = 0; i < np; i++) {
        if (np == 3 && i == 1) html_raw(r->b, "<mark>");
        const char *p = parts[i][0], *end = parts[i][1];
        while (p < end) {
            const char *nl = inline_ ? memchr(p, '\n', (size_t)(end - p)) : NULL;
            const char *stop = nl ? nl : end;
            html_textn(r->b, p, (size_t)(stop - p));
            if (nl) html_raw(r->b, "\xE2\x8F\x8E"), p = nl + 1;   /* ⏎ */
            else p = stop;
        }
        if (np == 3 && i == 1) html_raw(r->b, "</mark>");
    }
}

typedef struct {
    double key;
    size_t idx;
} ranked;

static int by_key_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->key != y->key) return x->key > y->key ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Live features of a layer by activation mass (fires × mean where the catalog has
 * no mass), largest first. *n: how many. */
static ranked *rank_features(json_t *features, size_t *n)
{
    size_t m = json_array_size(features), k = 0;
    ranked *rk = calloc(m ? m : 1, sizeof *rk);
    if (!rk) { *n = 0; return NULL; }
    for (size_t i = 0; i < m; i++) {
        json_t *f = json_array_get(features, i);
        double fires = report_num(json_object_get(f, "fires"));
        if (!(fires > 0)) continue;
        double mass = report_num(json_object_get(f, "activation_mass"));
        if (!isfinite(mass)) mass = fires * report_num(json_object_get(f, "mean_activation"));
        rk[k++] = (ranked){isfinite(mass) ? mass : 0, i};
    }
    qsort(rk, k, sizeof *rk, by_key_desc);
    *n = k;
    return rk;
}

const json_t *report_feature_verification(report_ctx *r, const char *hook, int id)
{
    size_t i, j;
    json_t *layer, *item;
    json_array_foreach(json_object_get(r->verification, "features"), i, layer) {
        const char *h = json_string_value(json_object_get(layer, "hook"));
        if (!h || strcmp(h, hook)) continue;
        json_array_foreach(json_object_get(layer, "items"), j, item)
            if (json_integer_value(json_object_get(item, "feature")) == id) return item;
    }
    return NULL;
}

void report_feature_circuits(report_ctx *r, const char *hook, int id, char *out, size_t n)
{
    size_t w = 0;
    out[0] = '\0';
    const char *task;
    json_t *g;
    json_object_foreach(r->graphs, task, g) {
        size_t i;
        json_t *node;
        json_array_foreach(json_object_get(g, "nodes"), i, node) {
            const char *kind = json_string_value(json_object_get(node, "kind")),
                       *h = json_string_value(json_object_get(node, "hook"));
            if (!kind || strcmp(kind, "feature") || !h || strcmp(h, hook) ||
                json_integer_value(json_object_get(node, "feature")) != id)
                continue;
            int k = snprintf(out + w, n - w, "%s%s", w ? ", " : "", task);
            if (k > 0 && (size_t)k < n - w) w += (size_t)k;
            break;
        }
    }
}

static void feature_row(report_ctx *r, const char *hook, const json_t *f)
{
    html_buf *b = r->b;
    int id = (int)json_integer_value(json_object_get(f, "id"));
    json_t *top = json_array_get(json_object_get(f, "top_contexts"), 0);
    json_t *prof = json_object_get(f, "domain_profile");
    const char *dom = json_string_value(json_object_get(f, "top_domain"));
    double share = dom ? report_num(json_object_get(prof, dom)) : NAN;
    char circ[256];
    report_feature_circuits(r, hook, id, circ, sizeof circ);
    const json_t *v = report_feature_verification(r, hook, id);
    html_raw(b, "<tr>");
    report_text_cell(r, hook);
    html_printf(b, "<td class=\"n\" data-v=\"%d\">%d</td>", id, id);
    static const char *const nums[] = {"density", "fires", "mean_activation", "max_activation", "activation_mass"};
    for (size_t k = 0; k < sizeof nums / sizeof *nums; k++) report_field_cell(r, f, nums[k]);
    report_text_cell(r, dom ? dom : "");
    report_num_cell(r, share);
    report_num_cell(r, report_num(report_get(f, "monosemanticity.score")));
    char tok[64];
    const char *t = json_string_value(json_object_get(top, "token"));
    report_token_label(t ? t : "", tok, sizeof tok);
    html_raw(b, "<td>");
    if (t) html_text(b, tok);
    html_raw(b, "</td><td>");
    if (top) context_html(r, json_string_value(json_object_get(top, "context")), 1);
    html_raw(b, "</td>");
    report_text_cell(r, circ);
    report_yes_no_cell(r, v ? json_object_get(v, "verified") : NULL);
    html_raw(b, "</tr>\n");
}

static void token_list(report_ctx *r, const json_t *arr, const char *valkey)
{
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t) {
        char tok[64];
        report_token_label(json_string_value(json_object_get(t, "token")), tok, sizeof tok);
        if (i) html_raw(r->b, ", ");
        html_raw(r->b, "<code>");
        html_text(r->b, tok);
        html_raw(r->b, "</code> <span class=\"act\">");
        report_num_text(r, report_num(json_object_get(t, valkey)));
        html_raw(r->b, "</span>");
    }
}

static void contexts(report_ctx *r, const json_t *arr, int quantiles)
{
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c) {
        if (i == CONTEXTS_SHOWN && !quantiles) break;
        html_raw(r->b, "<span class=\"ctx\"><span class=\"act\">");
        if (quantiles) {
            html_raw(r->b, "q ");
            report_num_text(r, report_num(json_object_get(c, "quantile")));
            html_raw(r->b, " · ");
        }
        report_num_text(r, report_num(json_object_get(c, "activation")));
        html_raw(r->b, " · ");
        html_text(r->b, json_string_value(json_object_get(c, "domain")));
        html_raw(r->b, "</span>  ");
        context_html(r, json_string_value(json_object_get(c, "context")), 0);
        html_raw(r->b, "</span>\n");
    }
}

static void feature_card(report_ctx *r, const char *hook, const json_t *f, const feature_sample *smp, int si,
                         const char *smp_err)
{
    html_buf *b = r->b;
    int id = (int)json_integer_value(json_object_get(f, "id"));
    html_printf(b, "<div class=\"card\" id=\"card-%d-", id);
    html_text(b, hook);
    html_raw(b, "\"><h3>");
    html_text(b, hook);
    html_printf(b, " · feature %d</h3>\n<p>", id);
    static const char *const stats[][2] = {{"density", "density"}, {"fires", "fires"}, {"mean", "mean_activation"},
        {"max", "max_activation"}, {"monosemanticity", "monosemanticity.score"},
        {"token purity", "monosemanticity.token_purity"}, {"domain purity", "monosemanticity.domain_purity"}};
    for (size_t k = 0; k < sizeof stats / sizeof *stats; k++) {
        html_printf(b, "%s%s ", k ? " · " : "", stats[k][0]);
        report_num_text(r, report_num(report_get(f, stats[k][1])));
    }
    html_raw(b, " · top domain ");
    html_text(b, json_string_value(json_object_get(f, "top_domain")));
    html_raw(b, "</p>\n<div class=\"figs\">");
    char title[160];
    fig_png png;
    if (smp && si >= 0) {
        size_t m = smp->n_fired[si];
        double *v = malloc((m ? m : 1) * sizeof *v);
        double hi = report_num(json_object_get(f, "max_activation"));
        for (size_t k = 0; v && k < m; k++) v[k] = smp->fired[si][k], hi = fmax(hi, v[k]);
        snprintf(title, sizeof title, "activations > 0: %zu of %lld sampled rows", m, (long long)smp->rows);
        fig_axes ax = {.width = 380, .height = 220, .title = title, .xlabel = "activation", .ylabel = "rows",
                       .log_y = true};
        if (v) report_figure(r, fig_histogram(&ax, v, m, 30, 0, isfinite(hi) && hi > 0 ? hi : 1, &png), &png,
                             "activation histogram");
        free(v);
    } else {
        html_raw(b, "<p class=\"notrun\">activation histogram: ");
        html_text(b, smp_err ? smp_err : "not sampled");
        html_raw(b, "</p>");
    }
    json_t *pro = json_object_get(f, "promotes"), *sup = json_object_get(f, "suppresses");
    size_t np = json_array_size(pro), ns = json_array_size(sup), nb = 0;
    if (np > 8) np = 8;
    if (ns > 8) ns = 8;
    char (*lab)[64] = calloc(np + ns + 1, sizeof *lab);
    const char **labp = calloc(np + ns + 1, sizeof *labp);
    double *val = calloc(np + ns + 1, sizeof *val);
    if (lab && labp && val) {
        for (size_t k = 0; k < np + ns; k++) {
            json_t *t = k < np ? json_array_get(pro, k) : json_array_get(sup, ns - 1 - (k - np));
            report_token_label(json_string_value(json_object_get(t, "token")), lab[nb], sizeof lab[nb]);
            labp[nb] = lab[nb], val[nb++] = report_num(json_object_get(t, "logit"));
        }
        if (nb) {
            fig_axes ax = {.width = 380, .height = 50 + 16 * (int)nb, .title = "direct effect on the logits (top / bottom)"};
            report_figure(r, fig_bar_chart(&ax, labp, val, (int)nb, &png), &png, "top and bottom logits");
        } else {
            html_raw(b, "<p class=\"notrun\">logit attribution: not computed for this layer</p>");
        }
    }
    free(lab), free(labp), free(val);
    html_raw(b, "</div>\n<h4>top contexts</h4>\n");
    contexts(r, json_object_get(f, "top_contexts"), 0);
    html_raw(b, "<h4>quantile samples</h4>\n");
    contexts(r, json_object_get(f, "quantile_samples"), 1);
    html_raw(b, "<p><span class=\"k\">reads</span> ");
    token_list(r, json_object_get(f, "reads"), "score");
    html_raw(b, "</p>\n<p><span class=\"k\">domain profile</span> ");
    report_value(r, json_object_get(f, "domain_profile"), 1);
    html_raw(b, "</p>\n<p><span class=\"k\">causal effect</span> ");
    const json_t *v = report_feature_verification(r, hook, id);
    if (!r->verification) html_raw(b, "not run (<code>transpolmo verify</code>)");
    else if (!v) html_raw(b, "not among the verified features");
    else {
        html_raw(b, json_is_true(json_object_get(v, "verified")) ? "<span class=\"ok\">verified</span>"
                                                                  : "<span class=\"no\">not verified</span>");
        const char *keys[] = {"ablation", "steering", "description"};
        for (int k = 0; k < 3; k++) {
            json_t *x = json_object_get(v, keys[k]);
            if (!x) continue;
            html_printf(b, "<br><span class=\"k\">%s</span>: ", keys[k]);
            report_value(r, x, 0);
        }
    }
    char circ[256];
    report_feature_circuits(r, hook, id, circ, sizeof circ);
    html_raw(b, "</p>\n<p><span class=\"k\">circuit membership</span> ");
    if (!r->library) html_raw(b, "not run (<code>transpolmo circuits</code>)");
    else if (!circ[0]) html_raw(b, "in none of the library's circuit graphs");
    else {
        html_raw(b, "in the graph of ");
        html_text(b, circ);
    }
    html_raw(b, "</p></div>\n");
}

/* The cards of one SAE: the top features by mass, then those in a circuit graph or
 * verified, at most CARDS_MAX_PER_SAE. */
static void layer_cards(report_ctx *r, const json_t *layer, const ranked *rk, size_t nrk)
{
    const char *hook = json_string_value(json_object_get(layer, "hook"));
    json_t *features = json_object_get(layer, "features");
    int ids[CARDS_MAX_PER_SAE];
    size_t idx[CARDS_MAX_PER_SAE];
    int n = 0;
    for (size_t k = 0; k < nrk && n < CARDS_MAX_PER_SAE; k++) {
        json_t *f = json_array_get(features, rk[k].idx);
        if (!json_object_get(f, "top_contexts")) continue;   /* not detailed */
        int id = (int)json_integer_value(json_object_get(f, "id"));
        char circ[8];
        report_feature_circuits(r, hook, id, circ, sizeof circ);
        if (n < CARDS_TOP_PER_SAE || circ[0] || report_feature_verification(r, hook, id))
            ids[n] = id, idx[n++] = rk[k].idx;
    }
    if (!n) return;
    int64_t d = json_integer_value(json_object_get(layer, "d_in")), F = json_integer_value(json_object_get(layer, "d_sae"));
    /* about 2·10^9 multiply-adds of encoding at most, 256..4096 rows */
    int64_t rows = d > 0 && F > 0 ? (int64_t)(2e9 / ((double)d * (double)F)) : 4096;
    rows = rows < 256 ? 256 : rows > 4096 ? 4096 : rows;
    feature_sample smp;
    char err[512] = "";
    tp_status st = feature_sample_read(r->run_dir, hook, ids, n, rows, &smp);
    if (st != TP_OK) snprintf(err, sizeof err, "not available (%s)", tp_err_msg());
    html_raw(r->b, "<h3>");
    html_text(r->b, hook);
    html_printf(r->b, ": %d feature card(s)</h3>\n<div class=\"cards\">\n", n);
    for (int i = 0; i < n; i++)
        feature_card(r, hook, json_array_get(features, idx[i]), st == TP_OK ? &smp : NULL, i, err);
    html_raw(r->b, "</div>\n");
    if (st == TP_OK) feature_sample_free(&smp);
}

void report_section_features(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "features", "Features");
    json_t *saes = json_object_get(r->catalog, "saes");
    size_t n = json_array_size(saes);
    if (report_section_missing(r, n > 0, RUN_FEATURES_CATALOG_JSON, "transpolmo sae")) return;
    html_printf(b, "<p>From <code>%s</code> (docs/features.md): every live feature, up to %d per SAE by "
                   "activation mass. Click a header to sort; the boxes filter. The activating token of a context "
                   "is <mark>marked</mark>.</p>\n",
                RUN_FEATURES_CATALOG_JSON, TABLE_ROWS_PER_SAE);
    html_raw(b, "<div class=\"filters\">text <input type=\"search\" data-table=\"feature-table\" "
                "placeholder=\"token, context, domain…\"> capture point <select data-table=\"feature-table\" "
                "data-col=\"0\"><option value=\"\">all</option>");
    size_t i;
    json_t *layer;
    json_array_foreach(saes, i, layer) {
        html_raw(b, "<option>");
        html_text(b, json_string_value(json_object_get(layer, "hook")));
        html_raw(b, "</option>");
    }
    html_raw(b, "</select> density ≥ <input type=\"number\" step=\"any\" min=\"0\" max=\"1\" data-table=\"feature-table\" "
                "data-col=\"2\" data-kind=\"min\" style=\"width:7em\"> <span data-count=\"feature-table\"></span></div>\n"
                "<div class=\"scroll\"><table class=\"sortable\" id=\"feature-table\"><thead><tr><th>capture point</th>"
                "<th>feature</th><th>density</th><th>fires</th><th>mean</th><th>max</th><th>mass</th>"
                "<th>top domain</th><th>share</th><th>monosemanticity</th><th>top token</th><th>top context</th>"
                "<th>circuits</th><th>verified</th></tr></thead><tbody>\n");
    ranked **rks = calloc(n, sizeof *rks);
    size_t *nrk = calloc(n, sizeof *nrk);
    if (!rks || !nrk) {
        html_raw(b, "</tbody></table></div><p class=\"warn\">out of memory</p></section>\n");
        free(rks), free(nrk);
        return;
    }
    json_array_foreach(saes, i, layer) {
        const char *hook = json_string_value(json_object_get(layer, "hook"));
        json_t *features = json_object_get(layer, "features");
        rks[i] = rank_features(features, &nrk[i]);
        for (size_t k = 0; hook && k < nrk[i] && k < TABLE_ROWS_PER_SAE; k++)
            feature_row(r, hook, json_array_get(features, rks[i][k].idx));
    }
    html_raw(b, "</tbody></table></div>\n");
    json_array_foreach(saes, i, layer) {
        html_raw(b, "<p>");
        html_text(b, json_string_value(json_object_get(layer, "hook")));
        html_printf(b, ": %zu live of %lld features, %lld dead, %lld dense (density > ", nrk[i],
                    (long long)json_integer_value(json_object_get(layer, "d_sae")),
                    (long long)json_integer_value(json_object_get(layer, "n_dead")),
                    (long long)json_integer_value(json_object_get(layer, "n_dense")));
        report_num_text(r, report_num(json_object_get(layer, "dense_threshold")));
        html_raw(b, ")</p>\n");
    }
    html_printf(b, "<h3>Feature cards</h3>\n<p>Per SAE the %d features of largest activation mass, then those "
                   "in a circuit graph of the library or verified (at most %d). Histogram: the SAE export applied "
                   "to a sample of the store's unmasked rows; logits: W_U·(γ ⊙ decoder row), the direct effect of one "
                   "unit of activation; contexts: the largest activations, then quantile samples.</p>\n",
                CARDS_TOP_PER_SAE, CARDS_MAX_PER_SAE);
    json_array_foreach(saes, i, layer) if (rks[i]) layer_cards(r, layer, rks[i], nrk[i]);
    for (i = 0; i < n; i++) free(rks[i]);
    free(rks), free(nrk);
    html_raw(b, "</section>\n");
}
