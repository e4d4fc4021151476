/* report_circuits.c — the heads, attention, circuits and verification sections of
 * the report. */
#include "report/report_page.h"
#include "run_layout.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TRACES 3       /* attention traces shown (names in order) */
#define MAX_OTHER_GRAPHS 6 /* discover / attribute graphs shown besides the library's */

static const char *const head_classes[] = {"previous_token", "duplicate_token", "induction", "bos", "self", "local"};
#define N_CLASSES (sizeof head_classes / sizeof *head_classes)

/* scores.<name>[l][h] (or the top-level [l][h] array `name`) as a number. */
static double head_score(const json_t *heads, const char *name, int l, int h)
{
    json_t *m = json_object_get(json_object_get(heads, "scores"), name);
    if (!m) m = json_object_get(heads, name);
    return report_num(json_array_get(json_array_get(m, (size_t)l), (size_t)h));
}

void report_section_heads(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "heads", "Attention heads");
    int L = (int)json_integer_value(json_object_get(r->heads, "n_layers")),
        H = (int)json_integer_value(json_object_get(r->heads, "n_heads"));
    if (report_section_missing(r, r->heads && L > 0 && H > 0, RUN_CIRCUITS_HEAD_SCORES_JSON, "transpolmo circuits")) return;
    json_t *classes = json_object_get(r->heads, "classes");
    html_printf(b, "<p>From <code>%s</code> (docs/circuits.md): TransformerLens <code>detect_head</code> scores "
                   "and ours, averaged over the prompts; a head gets a class when its score passes the threshold "
                   "and its null baseline by the margin.</p>\n<h3>Head-class grid</h3>\n"
                   "<table class=\"grid\"><thead><tr><th>layer \\ head</th>",
                RUN_CIRCUITS_HEAD_SCORES_JSON);
    for (int h = 0; h < H; h++) html_printf(b, "<th>%d</th>", h);
    html_raw(b, "</tr></thead><tbody>\n");
    for (int l = 0; l < L; l++) {
        html_printf(b, "<tr><th>%d</th>", l);
        for (int h = 0; h < H; h++) {
            char cls[256] = "";
            size_t w = 0, i;
            json_t *c;
            json_array_foreach(classes, i, c) {
                if (json_integer_value(json_object_get(c, "layer")) != l || json_integer_value(json_object_get(c, "head")) != h)
                    continue;
                const char *name = json_string_value(json_object_get(c, "class"));
                int k = snprintf(cls + w, sizeof cls - w, "%s%s", w ? " " : "", name ? name : "?");
                if (k > 0 && (size_t)k < sizeof cls - w) w += (size_t)k;
            }
            const char *first = cls;
            char firstc[64];
            size_t fl = strcspn(first, " ");
            snprintf(firstc, sizeof firstc, "%.*s", (int)(fl < 60 ? fl : 60), first);
            html_raw(b, "<td");
            if (cls[0]) {
                html_raw(b, " class=\"c-");
                html_text(b, firstc);
                html_raw(b, "\"");
            }
            html_raw(b, " title=\"");
            for (size_t k = 0; k < N_CLASSES; k++) {
                html_printf(b, "%s%s ", k ? "; " : "", head_classes[k]);
                report_num_text(r, head_score(r->heads, head_classes[k], l, h));
            }
            html_raw(b, "\">");
            for (char *p = cls; *p; p++) if (*p == '_') *p = '-';
            html_text(b, cls[0] ? cls : "·");
            html_raw(b, "</td>");
        }
        html_raw(b, "</tr>\n");
    }
    html_raw(b, "</tbody></table>\n<div class=\"figs\">\n");
    /* heat maps of the scores [L][H] */
    const char *names[N_CLASSES + 1];
    size_t np = 0;
    float *m = calloc((N_CLASSES + 1) * (size_t)L * (size_t)H, sizeof *m);
    fig_heatmap_panel panels[N_CLASSES + 1];
    for (size_t k = 0; m && k < N_CLASSES + 1; k++) {
        const char *name = k < N_CLASSES ? head_classes[k] : "induction_stripe";
        if (!json_object_get(json_object_get(r->heads, "scores"), name) && !json_object_get(r->heads, name)) continue;
        float *p = m + np * (size_t)L * (size_t)H;
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) p[l * H + h] = (float)head_score(r->heads, name, l, h);
        names[np] = name;
        panels[np] = (fig_heatmap_panel){p, L, H, names[np]};
        np++;
    }
    if (np) {
        fig_png png;
        fig_axes ax = {.title = "head scores (rows: layers, columns: heads)"};
        report_figure(r, fig_heatmaps(&ax, panels, (int)np, 4, 18, 0, 1, &png), &png, "head score heat maps");
    }
    free(m);
    html_raw(b, "</div>\n<h3>Head table</h3>\n<div class=\"filters\">text <input type=\"search\" data-table=\"head-table\" "
                "placeholder=\"class…\"> class <select data-table=\"head-table\" data-col=\"2\"><option value=\"\">all</option>");
    for (size_t k = 0; k < N_CLASSES; k++) html_printf(b, "<option>%s</option>", head_classes[k]);
    html_raw(b, "</select> <span data-count=\"head-table\"></span></div>\n<div class=\"scroll\"><table class=\"sortable\" "
                "id=\"head-table\"><thead><tr><th>layer</th><th>head</th><th>classes</th>");
    for (size_t k = 0; k < N_CLASSES; k++) html_printf(b, "<th>%s</th>", head_classes[k]);
    html_raw(b, "<th>induction stripe</th><th>entropy</th></tr></thead><tbody>\n");
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) {
            html_printf(b, "<tr><td class=\"n\" data-v=\"%d\">%d</td><td class=\"n\" data-v=\"%d\">%d</td><td>", l, l, h, h);
            size_t i, k = 0;
            json_t *c;
            json_array_foreach(classes, i, c)
                if (json_integer_value(json_object_get(c, "layer")) == l && json_integer_value(json_object_get(c, "head")) == h) {
                    if (k++) html_raw(b, " ");
                    html_text(b, json_string_value(json_object_get(c, "class")));
                }
            html_raw(b, "</td>");
            for (size_t j = 0; j < N_CLASSES; j++) report_num_cell(r, head_score(r->heads, head_classes[j], l, h));
            report_num_cell(r, head_score(r->heads, "induction_stripe", l, h));
            report_num_cell(r, head_score(r->heads, "entropy", l, h));
            html_raw(b, "</tr>\n");
        }
    html_raw(b, "</tbody></table></div>\n</section>\n");
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* File names in dir ending in suffix, sorted; NULL-free list of *n (caller frees). */
static char **list_dir(const char *dir, const char *suffix, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    size_t cap = 0;
    struct dirent *e;
    size_t ls = strlen(suffix);
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l <= ls || strcmp(e->d_name + l - ls, suffix)) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            char **p = realloc(names, cap * sizeof *p);
            if (!p) break;
            names = p;
        }
        if (!(names[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

static void free_list(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static void trace_figures(report_ctx *r, const json_t *t)
{
    html_buf *b = r->b;
    json_t *tokens = json_object_get(t, "tokens");
    html_raw(b, "<h3>");
    html_text(b, json_string_value(json_object_get(t, "id")));
    html_raw(b, "</h3>\n<p><span class=\"k\">tokens</span> ");
    size_t i;
    json_t *tok;
    json_array_foreach(tokens, i, tok) {
        char lab[64];
        report_token_label(json_string_value(json_object_get(tok, "text")), lab, sizeof lab);
        html_printf(b, "%s<code>%zu:", i ? " " : "", i);
        html_text(b, lab);
        html_raw(b, "</code>");
    }
    html_raw(b, "</p>\n<div class=\"figs\">\n");
    json_t *layer;
    json_array_foreach(json_object_get(t, "layers"), i, layer) {
        json_t *heads = json_object_get(layer, "heads");
        size_t nh = json_array_size(heads), T = json_array_size(tokens);
        if (!nh || !T) continue;
        float *m = calloc(nh * T * T, sizeof *m);
        fig_heatmap_panel *p = calloc(nh, sizeof *p);
        char (*titles)[32] = calloc(nh, sizeof *titles);
        if (!m || !p || !titles) { free(m), free(p), free(titles); continue; }
        size_t j;
        json_t *h;
        json_array_foreach(heads, j, h) {
            json_t *pat = json_object_get(h, "pattern");
            for (size_t q = 0; q < T; q++)
                for (size_t s = 0; s < T; s++)
                    m[(j * T + q) * T + s] = (float)report_num(json_array_get(json_array_get(pat, q), s));
            snprintf(titles[j], sizeof titles[j], "head %lld", (long long)json_integer_value(json_object_get(h, "head")));
            p[j] = (fig_heatmap_panel){m + j * T * T, (int)T, (int)T, titles[j]};
        }
        char title[64];
        snprintf(title, sizeof title, "layer %lld: attention (rows: queries, columns: sources)",
                 (long long)json_integer_value(json_object_get(layer, "layer")));
        fig_axes ax = {.title = title};
        fig_png png;
        report_figure(r, fig_heatmaps(&ax, p, (int)nh, nh < 4 ? (int)nh : 4, 8, 0, 1, &png), &png, title);
        free(m), free(p), free(titles);
    }
    html_raw(b, "</div>\n");
}

void report_section_attention(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "attention", "Attention heat maps");
    char dir[TP_PATH_MAX];
    size_t n = 0;
    char **names = run_path(dir, sizeof dir, r->run_dir, RUN_CIRCUITS_TRACE_DIR) == TP_OK ? list_dir(dir, ".json", &n) : NULL;
    if (!n) report_not_run(r, RUN_CIRCUITS_TRACE_DIR "/<id>.json", "transpolmo circuits trace --prompt \"...\"");
    else
        html_printf(b, "<p>From <code>%s/</code>: %zu trace(s), the first %d shown; A[i, j] from white (0) to dark "
                       "blue (1).</p>\n", RUN_CIRCUITS_TRACE_DIR, n, n < MAX_TRACES ? (int)n : MAX_TRACES);
    for (size_t i = 0; i < n && i < MAX_TRACES; i++) {
        char rel[TP_PATH_MAX];
        if (fs_path(rel, sizeof rel, RUN_CIRCUITS_TRACE_DIR "/%s", names[i]) != TP_OK) continue;
        json_t *t = run_load_json(r->run_dir, rel);
        if (t) trace_figures(r, t);
        json_decref(t);
    }
    free_list(names, n);
    html_raw(b, "</section>\n");
}

void report_section_circuits(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "circuits", "Circuits");
    json_t *tasks = json_object_get(r->library, "tasks");
    size_t nt = json_array_size(tasks), i;
    json_t *t;
    if (!r->library) report_not_run(r, RUN_CIRCUITS_LIBRARY_JSON, "transpolmo circuits");
    else {
        html_printf(b, "<p>The circuit library, <code>%s</code> (docs/circuits.md): per task, EAP over its pairs; "
                       "f(k) = (m(C_k) − m(∅)) / (m(N) − m(∅)) with the nodes of the top k %% of edges kept; the "
                       "circuit kept is the smallest k with f(k) ≥ the threshold.</p>\n",
                    RUN_CIRCUITS_LIBRARY_JSON);
        html_raw(b, "<table><thead><tr><th>task</th><th>description</th><th>pairs</th><th>LD clean / corrupt</th>"
                    "<th>can do</th><th>CPR</th><th>CMD</th><th>kept</th></tr></thead><tbody>\n");
        fig_series *fs = calloc(nt ? nt : 1, sizeof *fs);
        double **fx = calloc(nt ? nt : 1, sizeof *fx), **fy = calloc(nt ? nt : 1, sizeof *fy);
        json_array_foreach(tasks, i, t) {
            json_t *f = json_object_get(t, "faithfulness");
            html_raw(b, "<tr>");
            report_text_cell(r, json_string_value(json_object_get(t, "name")));
            report_text_cell(r, json_string_value(json_object_get(t, "description")));
            report_field_cell(r, t, "prompts");
            report_pair_cell(r, report_num(json_object_get(t, "ld_clean")), " / ", report_num(json_object_get(t, "ld_corr")));
            report_yes_no_cell(r, json_object_get(t, "can_do"));
            report_field_cell(r, f, "cpr");
            report_field_cell(r, f, "cmd");
            html_raw(b, "<td>");
            report_num_text(r, report_num(json_object_get(f, "kept_k_percent")));
            html_raw(b, " % (");
            report_num_text(r, report_num(json_object_get(f, "kept_edges")));
            html_raw(b, " edges)</td></tr>\n");
            json_t *k = json_object_get(f, "k_percent"), *fv = json_object_get(f, "f");
            size_t m = json_array_size(k);
            if (fs && fx && fy && m == json_array_size(fv) && (fx[i] = calloc(m + 1, sizeof **fx)) &&
                (fy[i] = calloc(m + 1, sizeof **fy))) {
                for (size_t j = 0; j < m; j++)
                    fx[i][j] = report_num(json_array_get(k, j)), fy[i][j] = report_num(json_array_get(fv, j));
                fs[i] = (fig_series){fx[i], fy[i], (int)m, json_string_value(json_object_get(t, "name")), true};
            }
        }
        html_raw(b, "</tbody></table>\n");
        if (nt && fs) {
            fig_axes ax = {.width = 600, .height = 320, .title = "faithfulness f(k) of the top k % of edges",
                           .xlabel = "k (% of edges, log)", .ylabel = "f(k)", .log_x = true};
            fig_png png;
            report_figure(r, fig_line_plot(&ax, fs, (int)nt, &png), &png, "faithfulness curves");
        }
        for (size_t j = 0; fx && fy && j < nt; j++) free(fx[j]), free(fy[j]);
        free(fs), free(fx), free(fy);
        json_array_foreach(tasks, i, t) {
            const char *g = json_string_value(json_object_get(t, "graph"));
            char rel[TP_PATH_MAX];
            if (!g || fs_path(rel, sizeof rel, RUN_CIRCUITS_DIR "/%s.svg", g) != TP_OK) continue;
            html_raw(b, "<h3>circuit: ");
            html_text(b, json_string_value(json_object_get(t, "name")));
            html_raw(b, "</h3>\n");
            report_inline_svg(r, rel);
        }
    }
    /* graphs of `circuits discover` / `attribute` (results/circuits/<id>.svg) */
    char dir[TP_PATH_MAX];
    size_t n = 0, shown = 0;
    char **names = run_path(dir, sizeof dir, r->run_dir, RUN_CIRCUITS_DIR) == TP_OK ? list_dir(dir, ".svg", &n) : NULL;
    for (size_t k = 0; k < n && shown < MAX_OTHER_GRAPHS; k++) {
        if (!strncmp(names[k], RUN_CIRCUITS_LIBRARY_GRAPH, strlen(RUN_CIRCUITS_LIBRARY_GRAPH))) continue;
        char rel[TP_PATH_MAX];
        if (fs_path(rel, sizeof rel, RUN_CIRCUITS_DIR "/%s", names[k]) != TP_OK) continue;
        if (!shown++) html_raw(b, "<h3>Other circuit graphs (circuits discover / attribute)</h3>\n");
        html_raw(b, "<p><code>");
        html_text(b, rel);
        html_raw(b, "</code></p>\n");
        report_inline_svg(r, rel);
    }
    free_list(names, n);
    html_raw(b, "</section>\n");
}

void report_section_verification(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "verification", "Verification");
    if (report_section_missing(r, r->verification != NULL, RUN_VERIFICATION_JSON, "transpolmo verify")) return;
    json_t *summary = json_object_get(r->verification, "summary");
    html_printf(b, "<p>From <code>%s</code>: each claim tested by intervention.</p>\n", RUN_VERIFICATION_JSON);
    if (summary) {
        html_raw(b, "<p><span class=\"k\">summary</span> ");
        report_value(r, summary, 0);
        html_raw(b, "</p>\n");
    }
    size_t i, j;
    json_t *layer, *it;
    html_raw(b, "<h3>Features</h3>\n<div class=\"filters\">text <input type=\"search\" data-table=\"verify-features\"> "
                "<span data-count=\"verify-features\"></span></div>\n<div class=\"scroll\"><table class=\"sortable\" "
                "id=\"verify-features\"><thead><tr><th>capture point</th><th>feature</th><th>verified</th><th>rule</th>"
                "<th>detection</th><th>simulation</th><th>ablation</th><th>steering</th></tr></thead><tbody>\n");
    json_array_foreach(json_object_get(r->verification, "features"), i, layer) {
        const char *hook = json_string_value(json_object_get(layer, "hook"));
        json_array_foreach(json_object_get(layer, "items"), j, it) {
            long long id = json_integer_value(json_object_get(it, "feature"));
            html_raw(b, "<tr><td>");
            html_text(b, hook);
            html_printf(b, "</td><td class=\"n\" data-v=\"%lld\"><a href=\"#card-%lld-", id, id);
            html_text(b, hook);
            html_printf(b, "\">%lld</a></td>", id);
            report_yes_no_cell(r, json_object_get(it, "verified"));
            json_t *d = json_object_get(it, "description");
            const char *cols[] = {"rule", "detection", "simulation"};
            for (int k = 0; k < 3; k++) {
                html_raw(b, "<td>");
                report_value(r, json_object_get(d, cols[k]), 0);
                html_raw(b, "</td>");
            }
            html_raw(b, "<td>");
            report_value(r, json_object_get(it, "ablation"), 0);
            html_raw(b, "</td><td>");
            report_value(r, json_object_get(it, "steering"), 0);
            html_raw(b, "</td></tr>\n");
        }
    }
    html_raw(b, "</tbody></table></div>\n<h3>Heads</h3>\n<table class=\"sortable\" id=\"verify-heads\"><thead><tr>"
                "<th>layer</th><th>head</th><th>class</th><th>verified</th><th>effect (mean)</th><th>95 % CI</th>"
                "<th>n</th></tr></thead><tbody>\n");
    json_array_foreach(json_object_get(r->verification, "heads"), i, it) {
        json_t *e = json_object_get(it, "effect");
        html_raw(b, "<tr>");
        report_field_cell(r, it, "layer");
        report_field_cell(r, it, "head");
        report_text_cell(r, json_string_value(json_object_get(it, "class")));
        report_yes_no_cell(r, json_object_get(it, "verified"));
        report_field_cell(r, e, "mean");
        report_pair_cell(r, report_num(json_object_get(e, "ci95_low")), " … ", report_num(json_object_get(e, "ci95_high")));
        report_field_cell(r, e, "n");
        html_raw(b, "</tr>\n");
    }
    html_raw(b, "</tbody></table>\n<h3>Circuits</h3>\n<table><thead><tr><th>task</th><th>verified</th>"
                "<th>faithfulness</th><th>completeness</th></tr></thead><tbody>\n");
    json_array_foreach(json_object_get(r->verification, "circuits"), i, it) {
        html_raw(b, "<tr>");
        report_text_cell(r, json_string_value(json_object_get(it, "task")));
        report_yes_no_cell(r, json_object_get(it, "verified"));
        html_raw(b, "<td>");
        report_value(r, json_object_get(it, "faithfulness"), 0);
        html_raw(b, "</td><td>");
        report_value(r, json_object_get(it, "completeness"), 0);
        html_raw(b, "</td></tr>\n");
    }
    html_raw(b, "</tbody></table>\n</section>\n");
}
