/* report_page.h — what the sections of the HTML report share (report_html.c is the
 * driver; report_features.c and report_circuits.c write their sections). Internal to
 * src/report/.
 */
#ifndef TP_REPORT_PAGE_H
#define TP_REPORT_PAGE_H

#include "report/figures.h"
#include "report/html.h"

#include <jansson.h>

typedef struct {
    const char *run_dir;
    html_buf *b;
    /* the run's results; NULL when absent or unreadable */
    json_t *arch, *geometry, *sae, *catalog, *heads, *library, *verification, *summary;
    json_t *graphs;            /* {task: its circuit graph's JSON} of the library's tasks */
    int n_figures, n_failed_figures;
    int next_svg;              /* prefix of the ids of the next inline SVG */
} report_ctx;

/* <img> of a figure as a base64 data: URI (a failed figure: a line saying why, and
 * the page goes on). Frees the PNG. */
void report_figure(report_ctx *r, tp_status drawn, fig_png *png, const char *alt);
/* <section id="id"><h2>title</h2>. */
void report_section_open(report_ctx *r, const char *id, const char *title);
/* When !present: the "not run" line (report_not_run) and </section>; returns !present. */
int report_section_missing(report_ctx *r, int present, const char *what, const char *command);
/* Table cells: escaped text; obj.key as a number (report_num_cell); "a sep b" of two
 * numbers; a JSON boolean as a green yes / red no ("–" when not a boolean). */
void report_text_cell(report_ctx *r, const char *s);
void report_field_cell(report_ctx *r, const json_t *obj, const char *key);
void report_pair_cell(report_ctx *r, double a, const char *sep, double b);
void report_yes_no_cell(report_ctx *r, const json_t *v);
/* "not run" paragraph: what is missing and the command that makes it. */
void report_not_run(report_ctx *r, const char *what, const char *command);
/* A number from a JSON value (NaN when not a number). */
double report_num(const json_t *v);
/* obj.a.b.c (NULL when any step is missing). */
json_t *report_get(const json_t *obj, const char *dotted);
/* A number as text: %.4g, "–" for NaN; with a data-v attribute for sorting when
 * cell is set (<td data-v="…">…</td>). */
void report_num_text(report_ctx *r, double v);
void report_num_cell(report_ctx *r, double v);
/* Any JSON value compactly: numbers %.4g, strings escaped, objects "k: v; …" (3
 * levels, 8 items each). */
void report_value(report_ctx *r, const json_t *v, int depth);
/* A token for a label: quoted like JSON ("\n" visible), at most 24 bytes of it. */
void report_token_label(const char *tok, char *out, size_t n);
/* An SVG file of the run inlined (its ids prefixed so several share a page); a
 * paragraph saying so when it cannot be read. */
void report_inline_svg(report_ctx *r, const char *path_in_run);
/* The library's tasks whose circuit graphs hold feature `id` of `hook` as a node
 * (comma-separated into out; "" when none). */
void report_feature_circuits(report_ctx *r, const char *hook, int id, char *out, size_t n);
/* The verification item of a feature (NULL when none). */
const json_t *report_feature_verification(report_ctx *r, const char *hook, int id);

void report_section_features(report_ctx *r);
void report_section_heads(report_ctx *r);
void report_section_attention(report_ctx *r);
void report_section_circuits(report_ctx *r);
void report_section_verification(report_ctx *r);

#endif
