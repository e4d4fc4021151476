/* report_html.c — the HTML report: driver, page frame, shared helpers, and the
 * score, geometry and SAE sections (report_html.h). */
#include "report/report_html.h"

#include "core/fsutil.h"
#include "core/log.h"
#include "report/report_page.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- shared helpers (report_page.h) ------------------------------------------ */

void report_figure(report_ctx *r, tp_status drawn, fig_png *png, const char *alt)
{
    if (drawn != TP_OK) {
        r->n_failed_figures++;
        html_raw(r->b, "<p class=\"warn\">figure not drawn: ");
        html_text(r->b, tp_err_msg());
        html_raw(r->b, "</p>\n");
        tp_log_warn("report: figure '%s' not drawn: %s", alt, tp_err_msg());
        fig_png_free(png);
        return;
    }
    r->n_figures++;
    html_raw(r->b, "<img class=\"fig\" alt=\"");
    html_text(r->b, alt);
    html_raw(r->b, "\" src=\"data:image/png;base64,");
    html_base64(r->b, png->data, png->len);
    html_raw(r->b, "\">\n");
    fig_png_free(png);
}

void report_section_open(report_ctx *r, const char *id, const char *title)
{
    html_printf(r->b, "<section id=\"%s\"><h2>", id);
    html_text(r->b, title);
    html_raw(r->b, "</h2>\n");
}

int report_section_missing(report_ctx *r, int present, const char *what, const char *command)
{
    if (present) return 0;
    report_not_run(r, what, command);
    html_raw(r->b, "</section>\n");
    return 1;
}

void report_text_cell(report_ctx *r, const char *s)
{
    html_raw(r->b, "<td>");
    html_text(r->b, s);
    html_raw(r->b, "</td>");
}

void report_field_cell(report_ctx *r, const json_t *obj, const char *key)
{
    report_num_cell(r, report_num(json_object_get(obj, key)));
}

void report_pair_cell(report_ctx *r, double a, const char *sep, double b)
{
    html_raw(r->b, "<td class=\"n\">");
    report_num_text(r, a);
    html_raw(r->b, sep);
    report_num_text(r, b);
    html_raw(r->b, "</td>");
}

void report_yes_no_cell(report_ctx *r, const json_t *v)
{
    if (!json_is_boolean(v)) html_raw(r->b, "<td>–</td>");
    else if (json_is_true(v)) html_raw(r->b, "<td data-v=\"1\"><span class=\"ok\">yes</span></td>");
    else html_raw(r->b, "<td data-v=\"0\"><span class=\"no\">no</span></td>");
}

void report_not_run(report_ctx *r, const char *what, const char *command)
{
    char path[TP_PATH_MAX];
    if (run_path(path, sizeof path, r->run_dir, what) == TP_OK && fs_exists(path)) {
        /* there, but not JSON of the shape its docs give: say so, not "not run" */
        html_raw(r->b, "<p class=\"warn\">could not read ");
        html_text(r->b, what);
        html_raw(r->b, " (not JSON, or not of the shape its documentation gives)</p>\n");
        tp_log_warn("report: %s is there but could not be read; its section says so", path);
        return;
    }
    html_raw(r->b, "<p class=\"notrun\">not run: no ");
    html_text(r->b, what);
    html_raw(r->b, " in this run directory");
    if (command) {
        html_raw(r->b, " (<code>");
        html_text(r->b, command);
        html_raw(r->b, "</code> makes it)");
    }
    html_raw(r->b, ".</p>\n");
}

double report_num(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

json_t *report_get(const json_t *obj, const char *dotted)
{
    char key[128];
    const char *p = dotted;
    json_t *cur = (json_t *)obj;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof key) return NULL;
        memcpy(key, p, n), key[n] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        p = dot ? dot + 1 : p + n;
    }
    return cur;
}

void report_num_text(report_ctx *r, double v)
{
    if (isfinite(v)) html_printf(r->b, "%.4g", v);
    else html_raw(r->b, "–");
}

void report_num_cell(report_ctx *r, double v)
{
    if (isfinite(v)) html_printf(r->b, "<td class=\"n\" data-v=\"%.9g\">%.4g</td>", v, v);
    else html_raw(r->b, "<td class=\"n\" data-v=\"\">–</td>");
}

void report_value(report_ctx *r, const json_t *v, int depth)
{
    if (!v || json_is_null(v)) { html_raw(r->b, "–"); return; }
    if (json_is_boolean(v)) { html_raw(r->b, json_is_true(v) ? "yes" : "no"); return; }
    if (json_is_number(v)) { report_num_text(r, json_number_value(v)); return; }
    if (json_is_string(v)) { html_text(r->b, json_string_value(v)); return; }
    if (depth >= 3) { html_raw(r->b, "…"); return; }
    int k = 0;
    if (json_is_array(v)) {
        size_t i;
        json_t *x;
        html_raw(r->b, "[");
        json_array_foreach(v, i, x) {
            if (k++ == 8) { html_printf(r->b, ", … (%zu)", json_array_size(v)); break; }
            if (i) html_raw(r->b, ", ");
            report_value(r, x, depth + 1);
        }
        html_raw(r->b, "]");
        return;
    }
    const char *key;
    json_t *x;
    json_object_foreach((json_t *)v, key, x) {
        if (k++ == 8) { html_raw(r->b, "; …"); break; }
        if (k > 1) html_raw(r->b, "; ");
        html_raw(r->b, "<span class=\"k\">");
        html_text(r->b, key);
        html_raw(r->b, "</span>: ");
        report_value(r, x, depth + 1);
    }
}

void report_token_label(const char *tok, char *out, size_t n)
{
    size_t w = 0;
    if (n < 8) { if (n) out[0] = '\0'; return; }
    out[w++] = '"';
    for (const char *p = tok ? tok : ""; *p && w + 6 < n && w < 26; p++) {
        if (*p == '\n') out[w++] = '\\', out[w++] = 'n';
        else if (*p == '\t') out[w++] = '\\', out[w++] = 't';
        else if (*p == '"') out[w++] = '\\', out[w++] = '"';
        else out[w++] = *p;
    }
    /* cut at a character boundary: drop a trailing partial UTF-8 sequence */
    size_t end = w;
    while (end > 1 && ((unsigned char)out[end - 1] & 0xC0) == 0x80) end--;
    if (end > 1 && (unsigned char)out[end - 1] >= 0xC0) {
        unsigned c = (unsigned char)out[end - 1];
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
        if (w - (end - 1) < need) w = end - 1;
    }
    out[w++] = '"';
    out[w] = '\0';
}

void report_inline_svg(report_ctx *r, const char *path_in_run)
{
    char path[TP_PATH_MAX];
    FILE *f = NULL;
    char *s = NULL;
    long n = -1;
    if (run_path(path, sizeof path, r->run_dir, path_in_run) == TP_OK && (f = fopen(path, "rb"))) {
        if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 && (s = malloc((size_t)n + 1))
            && fread(s, 1, (size_t)n, f) == (size_t)n)
            s[n] = '\0';
        else n = -1;
        fclose(f);
    }
    const char *start = n >= 0 ? strstr(s, "<svg") : NULL;
    if (!start) {
        html_raw(r->b, "<p class=\"warn\">graph not readable: ");
        html_text(r->b, path_in_run);
        html_raw(r->b, "</p>\n");
        free(s);
        return;
    }
    /* ids (and references to them) prefixed: several graphs on one page */
    int k = r->next_svg++;
    html_raw(r->b, "<div class=\"svgwrap\">");
    const char *p = start;
    static const char *const refs[] = {" id=\"", "url(#", "href=\"#"};
    for (;;) {
        const char *best = NULL;
        size_t blen = 0;
        for (int i = 0; i < 3; i++) {
            const char *q = strstr(p, refs[i]);
            if (q && (!best || q < best)) best = q, blen = strlen(refs[i]);
        }
        if (!best) { html_raw(r->b, p); break; }
        html_rawn(r->b, p, (size_t)(best - p) + blen);
        html_printf(r->b, "g%d_", k);
        p = best + blen;
    }
    html_raw(r->b, "</div>\n");
    free(s);
}

/* ---- the page frame ---------------------------------------------------------- */

static const char page_css[] =
    "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}"
    "main{max-width:1280px;margin:0 auto;padding:0 24px 48px}"
    "header{background:#24324a;color:#fff;padding:18px 24px}header h1{margin:0;font-size:22px}"
    "header p{margin:4px 0 0;color:#cfd8e6;font-size:13px}"
    "nav{background:#e9edf3;padding:8px 24px;font-size:13px;position:sticky;top:0;z-index:2}"
    "nav a{margin-right:14px;color:#24324a}"
    "section{background:#fff;border:1px solid #dde2ea;border-radius:6px;margin:18px 0;padding:4px 18px 14px}"
    "h2{font-size:19px;border-bottom:1px solid #e4e7ec;padding-bottom:6px}h3{font-size:15px;margin:16px 0 6px}"
    "table{border-collapse:collapse;font-size:12px;margin:6px 0}th,td{border:1px solid #e1e4ea;padding:3px 6px;"
    "vertical-align:top}th{background:#f1f3f7;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "table.sortable th{cursor:pointer;user-select:none}table.sortable th[data-dir=asc]::after{content:' \\25B2'}"
    "table.sortable th[data-dir=desc]::after{content:' \\25BC'}"
    ".scroll{max-height:520px;overflow:auto;border:1px solid #e1e4ea}.scroll table{margin:0}.scroll td{max-width:380px}"
    ".scroll thead th{position:sticky;top:0}"
    "img.fig{max-width:100%;margin:4px 8px 4px 0;border:1px solid #eee}"
    ".figs{display:flex;flex-wrap:wrap;align-items:flex-start}"
    ".notrun{color:#8a5a00;background:#fff6e0;padding:6px 10px;border-radius:4px}.warn{color:#a00}"
    ".cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}"
    ".card{border:1px solid #d5dbe5;border-radius:6px;padding:8px 12px;background:#fcfdff}"
    ".card h3{margin-top:4px}.card img.fig{max-width:48%}"
    ".ctx{font-family:'DejaVu Sans Mono',monospace;font-size:11.5px;white-space:pre-wrap;word-break:break-all;"
    "background:#f6f7f9;padding:1px 4px;display:block;margin:1px 0}"
    "mark{background:#ffd54a;padding:0 1px;border-radius:2px}.act{color:#555;font-size:11px}"
    ".k{color:#555}.ok{color:#17703a;font-weight:bold}.no{color:#a32020;font-weight:bold}"
    ".score{font-size:44px;font-weight:bold;color:#24324a}.svgwrap{overflow:auto;max-height:640px;"
    "border:1px solid #eee;margin:6px 0}.svgwrap svg{max-width:none}"
    ".grid td{width:56px;height:30px;font-size:10.5px;text-align:center}.grid th{text-align:center}"
    ".filters{margin:6px 0;font-size:13px}.filters input,.filters select{margin-right:10px}"
    ".c-previous_token{background:#cfe3ff}.c-duplicate_token{background:#ffe0b3}.c-induction{background:#ffc9c9}"
    ".c-bos{background:#e0e0e0}.c-self{background:#d9f2d0}.c-local{background:#eadcff}";

/* Sorting (click a header; numbers by data-v), filtering (a text box over the row's
 * text, selects on a column, a minimum on a numeric column), and a self-test run
 * when the page is opened as report.html#selftest (tests/cli/test_report.sh). */
static const char page_js[] =
    "(function(){'use strict';\n"
    "var errs=[];window.addEventListener('error',function(e){errs.push(String(e.message));"
    "document.body.setAttribute('data-errors',errs.join(' | '));});\n"
    "function val(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent.trim();"
    "if(v!==''&&isFinite(Number(v)))return Number(v);return v.toLowerCase();}\n"
    "function cmp(x,y){var nx=typeof x==='number',ny=typeof y==='number';if(x===''&&y!=='')return 1;"
    "if(y===''&&x!=='')return -1;if(nx!==ny)return nx?-1:1;return x<y?-1:x>y?1:0;}\n"
    "function sortBy(t,col,dir){var tb=t.tBodies[0],rows=Array.prototype.slice.call(tb.rows);"
    "rows.sort(function(a,b){var x=val(a.cells[col]),y=val(b.cells[col]);if(x===''||y==='')return cmp(x,y);"
    "return dir*cmp(x,y);});rows.forEach(function(r){tb.appendChild(r);});"
    "var ths=t.tHead.rows[0].cells;for(var i=0;i<ths.length;i++)ths[i].removeAttribute('data-dir');"
    "ths[col].setAttribute('data-dir',dir>0?'asc':'desc');}\n"
    "function filter(t){var id=t.id,ctl=document.querySelectorAll('[data-table=\"'+id+'\"]'),shown=0,"
    "rows=t.tBodies[0].rows;for(var i=0;i<rows.length;i++){var r=rows[i],ok=true;"
    "for(var j=0;j<ctl.length&&ok;j++){var c=ctl[j],v=c.value,col=c.getAttribute('data-col');if(v==='')continue;"
    "if(c.getAttribute('data-kind')==='min'){var x=val(r.cells[+col]);ok=typeof x==='number'&&x>=Number(v);}"
    "else if(col!==null){ok=(' '+r.cells[+col].textContent+' ').indexOf(' '+v+' ')>=0;}"
    "else ok=r.textContent.toLowerCase().indexOf(v.toLowerCase())>=0;}"
    "r.style.display=ok?'':'none';if(ok)shown++;}"
    "var cnt=document.querySelector('[data-count=\"'+id+'\"]');if(cnt)cnt.textContent=shown+' of '+rows.length+' rows';"
    "return shown;}\n"
    "var tables=document.querySelectorAll('table.sortable');\n"
    "Array.prototype.forEach.call(tables,function(t){var ths=t.tHead.rows[0].cells;"
    "Array.prototype.forEach.call(ths,function(th,i){th.addEventListener('click',function(){"
    "sortBy(t,i,th.getAttribute('data-dir')==='asc'?-1:1);});});filter(t);});\n"
    "Array.prototype.forEach.call(document.querySelectorAll('[data-table]'),function(c){"
    "var t=document.getElementById(c.getAttribute('data-table'));if(!t)return;"
    "c.addEventListener(c.tagName==='SELECT'?'change':'input',function(){filter(t);});});\n"
    "if(location.hash==='#selftest'){var res='ok';try{"
    "Array.prototype.forEach.call(tables,function(t){if(!t.tBodies[0].rows.length)return;"
    "var ths=t.tHead.rows[0].cells,col=-1;for(var i=0;i<ths.length&&col<0;i++)"
    "if(typeof val(t.tBodies[0].rows[0].cells[i])==='number')col=i;if(col<0)return;"
    "sortBy(t,col,-1);var rows=t.tBodies[0].rows;for(var k=1;k<rows.length;k++){var a=val(rows[k-1].cells[col]),"
    "b=val(rows[k].cells[col]);if(typeof a==='number'&&typeof b==='number'&&a<b)throw new Error('sort '+t.id);}"
    "var box=document.querySelector('input[data-table=\"'+t.id+'\"]:not([data-col])');if(box){"
    "box.value='\\u0000no such text\\u0000';if(filter(t)!==0)throw new Error('filter '+t.id);"
    "box.value='';if(filter(t)!==rows.length)throw new Error('unfilter '+t.id);}});"
    "}catch(e){res='fail: '+e.message;}document.body.setAttribute('data-selftest',res);}\n"
    "document.body.setAttribute('data-script','done');\n"
    "})();\n";

static void page_begin(report_ctx *r)
{
    html_buf *b = r->b;
    html_raw(b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>TranspOLMo report: ");
    const char *name = json_string_value(report_get(r->arch, "model.name"));
    if (!name) name = json_string_value(report_get(r->heads, "model.name"));
    html_text(b, name ? name : r->run_dir);
    html_raw(b, "</title>\n<link rel=\"icon\" href=\"data:,\">\n<style>");
    html_raw(b, page_css);
    html_raw(b, "</style>\n</head>\n<body>\n<header><h1>TranspOLMo report");
    if (name) {
        html_raw(b, ": ");
        html_text(b, name);
    }
    html_raw(b, "</h1><p>run directory <code>");
    html_text(b, r->run_dir);
    char when[64];
    time_t now = time(NULL);
    struct tm tmv;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime_r(&now, &tmv));
    html_printf(b, "</code> · written %s by transpolmo %s</p></header>\n", when, TP_VERSION);
    html_raw(b, "<nav><a href=\"#score\">score</a><a href=\"#geometry\">geometry</a><a href=\"#sae\">SAE quality</a>"
                "<a href=\"#features\">features</a><a href=\"#heads\">heads</a><a href=\"#attention\">attention</a>"
                "<a href=\"#circuits\">circuits</a><a href=\"#verification\">verification</a></nav>\n<main>\n");
}

static void page_end(report_ctx *r)
{
    html_raw(r->b, "</main>\n<script>\n");
    html_raw(r->b, page_js);
    html_raw(r->b, "</script>\n</body>\n</html>\n");
}

/* ---- score ------------------------------------------------------------------- */

static void section_score(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "score", "Transparency score");
    json_t *t = report_get(r->summary, "transparency");
    if (!t) report_not_run(r, RUN_DOCS_SUMMARY_JSON, "transpolmo document");
    else {
        html_raw(b, "<p><span class=\"score\">");
        report_num_text(r, report_num(json_object_get(t, "score")));
        html_raw(b, "</span></p>\n");
        json_t *prof = json_object_get(t, "profile");
        if (json_is_object(prof) && json_object_size(prof)) {
            /* the numeric entries as bars, every entry in a table */
            size_t n = json_object_size(prof), k = 0;
            const char **labels = calloc(n, sizeof *labels);
            double *vals = calloc(n, sizeof *vals);
            const char *key;
            json_t *v;
            html_raw(b, "<div class=\"figs\"><table><tr><th>profile</th><th>value</th></tr>\n");
            json_object_foreach(prof, key, v) {
                html_raw(b, "<tr><td>");
                html_text(b, key);
                html_raw(b, "</td><td>");
                json_t *num = json_is_object(v) ? json_object_get(v, "score") : v;
                report_value(r, v, 0);
                html_raw(b, "</td></tr>\n");
                if (labels && vals && json_is_number(num)) labels[k] = key, vals[k++] = json_number_value(num);
            }
            html_raw(b, "</table>\n");
            if (k) {
                fig_axes ax = {.width = 520, .height = 40 + 22 * (int)k, .title = "score profile"};
                fig_png png;
                tp_status st = fig_bar_chart(&ax, labels, vals, (int)k, &png);
                report_figure(r, st, &png, "score profile");
            }
            html_raw(b, "</div>\n");
            free(labels), free(vals);
        }
    }
    html_raw(b, "</section>\n");
}

/* ---- geometry ---------------------------------------------------------------- */

static void section_geometry(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "geometry", "Geometry of the activations");
    json_t *layers = json_object_get(r->geometry, "layers");
    size_t nl = json_array_size(layers);
    if (report_section_missing(r, nl > 0, RUN_GEOMETRY_JSON, "transpolmo geometry")) return;
    html_printf(b, "<p>From <code>%s</code>: %zu capture point(s), %lld unmasked rows. PCA spectrum: the "
                   "covariance eigenvalues, descending; intrinsic dimension: MLE (Levina–Bickel, MacKay–"
                   "Ghahramani), TwoNN (Facco et al.), the PCA components that explain 90 %% of the variance and "
                   "the participation ratio (docs/geometry.md).</p>\n",
                RUN_GEOMETRY_JSON, nl, (long long)json_integer_value(json_object_get(r->geometry, "rows_unmasked")));
    fig_series *spec = calloc(nl, sizeof *spec), *cum = calloc(nl, sizeof *cum);
    double *cumv = NULL, *lx = calloc(nl, sizeof *lx), *id[4];
    char (*names)[96] = calloc(nl, sizeof *names);
    for (int k = 0; k < 4; k++) id[k] = calloc(nl, sizeof *id[k]);
    size_t total = 0;
    json_t *L;
    size_t i;
    json_array_foreach(layers, i, L) total += json_array_size(report_get(L, "pca.spectrum"));
    cumv = calloc(total ? total : 1, sizeof *cumv);
    double **specv = calloc(nl, sizeof *specv);
    if (!spec || !cum || !cumv || !lx || !names || !specv || !id[0] || !id[1] || !id[2] || !id[3]) {
        html_raw(b, "<p class=\"warn\">out of memory</p>");
        goto done;
    }
    size_t off = 0;
    json_array_foreach(layers, i, L) {
        json_t *sp = report_get(L, "pca.spectrum");
        size_t d = json_array_size(sp);
        specv[i] = calloc(d ? d : 1, sizeof **specv);
        double sum = 0, acc = 0;
        for (size_t j = 0; specv[i] && j < d; j++) specv[i][j] = report_num(json_array_get(sp, j)), sum += specv[i][j];
        for (size_t j = 0; specv[i] && j < d; j++) acc += specv[i][j], cumv[off + j] = sum > 0 ? acc / sum : NAN;
        const char *hook = json_string_value(json_object_get(L, "hook"));
        snprintf(names[i], sizeof names[i], "%s", hook ? hook : "?");
        spec[i] = (fig_series){.y = specv[i], .n = specv[i] ? (int)d : 0, .label = names[i]};
        cum[i] = (fig_series){.y = cumv + off, .n = (int)d, .label = names[i]};
        off += d;
        lx[i] = report_num(json_object_get(L, "layer"));
        id[0][i] = report_num(report_get(L, "intrinsic_dimension.mle"));
        id[1][i] = report_num(report_get(L, "intrinsic_dimension.twonn"));
        id[2][i] = report_num(report_get(L, "pca.intrinsic_dim_90pct_var"));
        id[3][i] = report_num(report_get(L, "pca.participation_ratio"));
    }
    html_raw(b, "<div class=\"figs\">\n");
    fig_png png;
    fig_axes ax = {.width = 600, .height = 340, .title = "PCA spectrum per capture point", .xlabel = "component",
                   .ylabel = "eigenvalue", .log_x = true, .log_y = true};
    report_figure(r, fig_line_plot(&ax, spec, (int)nl, &png), &png, "PCA spectra");
    fig_axes ax2 = {.width = 600, .height = 340, .title = "cumulative explained variance", .xlabel = "components",
                    .ylabel = "share of variance", .log_x = true};
    report_figure(r, fig_line_plot(&ax2, cum, (int)nl, &png), &png, "cumulative explained variance");
    fig_series ids[4] = {{.x = lx, .y = id[0], .n = (int)nl, .label = "MLE", .markers = true},
                         {.x = lx, .y = id[1], .n = (int)nl, .label = "TwoNN", .markers = true},
                         {.x = lx, .y = id[2], .n = (int)nl, .label = "PCA 90 % variance", .markers = true},
                         {.x = lx, .y = id[3], .n = (int)nl, .label = "participation ratio", .markers = true}};
    fig_axes ax3 = {.width = 600, .height = 340, .title = "intrinsic dimension per layer", .xlabel = "layer",
                    .ylabel = "dimension", .log_y = true};
    report_figure(r, fig_line_plot(&ax3, ids, 4, &png), &png, "intrinsic dimension per layer");
    html_raw(b, "</div>\n<table><thead><tr><th>capture point</th><th>d</th><th>geometry</th><th>MLE</th><th>TwoNN</th>"
                "<th>PCA 90/95/99 %</th><th>participation ratio</th><th>effective rank</th><th>mean cosine</th>"
                "<th>silhouette</th></tr></thead><tbody>\n");
    json_array_foreach(layers, i, L) {
        html_raw(b, "<tr>");
        report_text_cell(r, names[i]);
        report_field_cell(r, L, "d");
        report_text_cell(r, json_string_value(report_get(L, "geometry_type.label")));
        report_num_cell(r, id[0][i]);
        report_num_cell(r, id[1][i]);
        html_raw(b, "<td class=\"n\">");
        report_num_text(r, id[2][i]);
        html_raw(b, " / ");
        report_num_text(r, report_num(report_get(L, "pca.intrinsic_dim_95pct_var")));
        html_raw(b, " / ");
        report_num_text(r, report_num(report_get(L, "pca.intrinsic_dim_99pct_var")));
        html_raw(b, "</td>");
        report_num_cell(r, id[3][i]);
        report_num_cell(r, report_num(report_get(L, "pca.effective_rank")));
        report_num_cell(r, report_num(report_get(L, "norms.mean_cosine")));
        report_num_cell(r, report_num(report_get(L, "clusters.silhouette")));
        html_raw(b, "</tr>\n");
    }
    html_raw(b, "</tbody></table>\n");
done:
    for (size_t k = 0; specv && k < nl; k++) free(specv[k]);
    free(specv), free(spec), free(cum), free(cumv), free(lx), free(names);
    for (int k = 0; k < 4; k++) free(id[k]);
    html_raw(b, "</section>\n");
}

/* ---- SAE quality ------------------------------------------------------------- */

static void section_sae(report_ctx *r)
{
    html_buf *b = r->b;
    report_section_open(r, "sae", "Sparse autoencoders: quality");
    json_t *saes = json_object_get(r->sae, "saes");
    size_t n = json_array_size(saes);
    if (report_section_missing(r, n > 0, RUN_SAE_SUMMARY_JSON, "transpolmo sae")) return;
    html_printf(b, "<p>From <code>%s</code>, on held-out documents: FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖², L0 = active "
                   "latents per row, CE-loss recovered = (CE<sub>zero</sub> − CE<sub>SAE</sub>) / (CE<sub>zero</sub> − "
                   "CE<sub>clean</sub>) with the capture point replaced by the reconstruction (docs/sae.md).</p>\n",
                RUN_SAE_SUMMARY_JSON);
    html_raw(b, "<table><thead><tr><th>capture point</th><th>architecture</th><th>d_sae</th><th>FVU</th><th>L0</th>"
                "<th>dead</th><th>dense</th><th>CE recovered</th><th>CE clean / SAE / zero</th><th>KL(clean‖SAE)</th>"
                "<th>held-out rows</th></tr></thead><tbody>\n");
    const char **labels = calloc(n, sizeof *labels);
    double *fvu = calloc(n, sizeof *fvu), *ce = calloc(n, sizeof *ce), *l0 = calloc(n, sizeof *l0);
    fig_series *curves = calloc(n, sizeof *curves);
    double **cy = calloc(n, sizeof *cy), **cx = calloc(n, sizeof *cx);
    if (!labels || !fvu || !ce || !l0 || !curves || !cy || !cx) {
        html_raw(b, "</tbody></table><p class=\"warn\">out of memory</p>");
        goto done;
    }
    size_t i;
    json_t *s;
    json_array_foreach(saes, i, s) {
        json_t *ev = json_object_get(s, "evaluation");
        labels[i] = json_string_value(json_object_get(s, "hook"));
        fvu[i] = report_num(json_object_get(ev, "fvu"));
        l0[i] = report_num(json_object_get(ev, "l0"));
        ce[i] = report_num(report_get(ev, "ce.ce_loss_recovered"));
        html_raw(b, "<tr>");
        report_text_cell(r, labels[i]);
        report_text_cell(r, json_string_value(json_object_get(s, "architecture")));
        report_field_cell(r, s, "d_sae");
        report_num_cell(r, fvu[i]);
        report_num_cell(r, l0[i]);
        report_field_cell(r, ev, "dead_latents");
        report_field_cell(r, ev, "dense_latents");
        report_num_cell(r, ce[i]);
        html_raw(b, "<td class=\"n\">");
        static const char *const ces[] = {"ce.ce_clean", "ce.ce_sae", "ce.ce_zero_ablation"};
        for (int k = 0; k < 3; k++) {
            if (k) html_raw(b, " / ");
            report_num_text(r, report_num(report_get(ev, ces[k])));
        }
        html_raw(b, "</td>");
        report_num_cell(r, report_num(report_get(ev, "ce.kl_sae")));
        report_field_cell(r, ev, "rows");
        html_raw(b, "</tr>\n");
        json_t *curve = json_object_get(s, "curve");
        size_t m = json_array_size(curve);
        cx[i] = calloc(m ? m : 1, sizeof **cx), cy[i] = calloc(m ? m : 1, sizeof **cy);
        if (!cx[i] || !cy[i]) m = 0;
        for (size_t j = 0; j < m; j++) {
            json_t *pt = json_array_get(curve, j);
            cx[i][j] = report_num(json_object_get(pt, "step")), cy[i][j] = report_num(json_object_get(pt, "fvu"));
        }
        curves[i] = (fig_series){.x = cx[i], .y = cy[i], .n = (int)m, .label = labels[i]};
    }
    html_raw(b, "</tbody></table>\n<div class=\"figs\">\n");
    int h = 60 + 26 * (int)n;
    fig_png png;
    fig_axes a1 = {.width = 420, .height = h, .title = "held-out FVU (lower is better)"};
    report_figure(r, fig_bar_chart(&a1, labels, fvu, (int)n, &png), &png, "FVU per SAE");
    fig_axes a2 = {.width = 420, .height = h, .title = "CE-loss recovered (1 = the model's own loss)"};
    report_figure(r, fig_bar_chart(&a2, labels, ce, (int)n, &png), &png, "CE-loss recovered per SAE");
    fig_axes a3 = {.width = 420, .height = h, .title = "L0 (active latents per row)"};
    report_figure(r, fig_bar_chart(&a3, labels, l0, (int)n, &png), &png, "L0 per SAE");
    fig_axes a4 = {.width = 600, .height = 320, .title = "training: FVU of the batch per step", .xlabel = "step",
                   .ylabel = "FVU", .log_y = true};
    report_figure(r, fig_line_plot(&a4, curves, (int)n, &png), &png, "SAE training curves");
    html_raw(b, "</div>\n");
done:
    for (size_t k = 0; cx && cy && k < n; k++) free(cx[k]), free(cy[k]);
    free(labels), free(fvu), free(ce), free(l0), free(curves), free(cx), free(cy);
    html_raw(b, "</section>\n");
}

/* ---- driver -------------------------------------------------------------------- */

tp_status report_html_write(const char *run_dir, const char *out_path)
{
    char path[TP_PATH_MAX];
    if (out_path && out_path[0]) TP_CHECK(fs_path(path, sizeof path, "%s", out_path));
    else TP_CHECK(run_path(path, sizeof path, run_dir, RUN_DOCS_REPORT_HTML));
    html_buf b;
    html_init(&b);
    report_ctx r = {.run_dir = run_dir, .b = &b};
    r.arch = run_load_json(run_dir, RUN_ARCHITECTURE_JSON);
    r.geometry = run_load_json(run_dir, RUN_GEOMETRY_JSON);
    r.sae = run_load_json(run_dir, RUN_SAE_SUMMARY_JSON);
    r.catalog = run_load_json(run_dir, RUN_FEATURES_CATALOG_JSON);
    r.heads = run_load_json(run_dir, RUN_CIRCUITS_HEAD_SCORES_JSON);
    r.library = run_load_json(run_dir, RUN_CIRCUITS_LIBRARY_JSON);
    r.verification = run_load_json(run_dir, RUN_VERIFICATION_JSON);
    r.summary = run_load_json(run_dir, RUN_DOCS_SUMMARY_JSON);
    r.graphs = json_object();
    size_t ti;
    json_t *task;
    json_array_foreach(json_object_get(r.library, "tasks"), ti, task) {
        const char *g = json_string_value(json_object_get(task, "graph")), *tn = json_string_value(json_object_get(task, "name"));
        char rel[TP_PATH_MAX];
        if (!g || !tn || fs_path(rel, sizeof rel, RUN_CIRCUITS_DIR "/%s.json", g) != TP_OK) continue;
        json_t *gj = run_load_json(run_dir, rel);
        if (gj && r.graphs) json_object_set_new(r.graphs, tn, gj);
        else json_decref(gj);
    }
    page_begin(&r);
    section_score(&r);
    section_geometry(&r);
    section_sae(&r);
    report_section_features(&r);
    report_section_heads(&r);
    report_section_attention(&r);
    report_section_circuits(&r);
    report_section_verification(&r);
    page_end(&r);
    json_t *all[] = {r.arch, r.geometry, r.sae, r.catalog, r.heads, r.library, r.verification, r.summary, r.graphs};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) json_decref(all[i]);
    tp_status st = html_status(&b);
    if (st == TP_OK) st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_atomic(path, b.data, b.len);
    if (st == TP_OK)
        tp_log_info("report: wrote %s (%.1f MiB, %d figures%s)", path, b.len / 1048576.0, r.n_figures,
                    r.n_failed_figures ? ", some not drawn: see the page" : "");
    html_free(&b);
    return st;
}
