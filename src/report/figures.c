/* figures.c — cairo drawing of the report's figures (figures.h). */
#include "report/figures.h"

#include "report/html.h"

#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FONT "DejaVu Sans"

/* Tableau 10: distinct colours for series. */
static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

void fig_png_free(fig_png *p)
{
    free(p->data);
    p->data = NULL, p->len = 0;
}

typedef struct {
    cairo_surface_t *surface;
    cairo_t *cr;
    int w, h;
} canvas;

static tp_status canvas_begin(canvas *c, int w, int h)
{
    if (w < 16 || h < 16 || w > 16384 || h > 16384)
        return tp_err(TP_ERR_RANGE, "figure: size %dx%d outside 16..16384 pixels", w, h);
    c->w = w, c->h = h;
    c->surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
    c->cr = cairo_create(c->surface);
    if (cairo_status(c->cr) != CAIRO_STATUS_SUCCESS) {
        tp_status st = tp_err(TP_ERR_NOMEM, "figure: cairo: %s", cairo_status_to_string(cairo_status(c->cr)));
        cairo_destroy(c->cr), cairo_surface_destroy(c->surface);
        return st;
    }
    cairo_set_source_rgb(c->cr, 1, 1, 1);
    cairo_paint(c->cr);
    cairo_select_font_face(c->cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(c->cr, 11);
    cairo_set_line_width(c->cr, 1);
    return TP_OK;
}

static cairo_status_t png_append(void *closure, const unsigned char *data, unsigned int n)
{
    fig_png *p = closure;
    unsigned char *q = realloc(p->data, p->len + n);
    if (!q) return CAIRO_STATUS_NO_MEMORY;
    memcpy(q + p->len, data, n);
    p->data = q, p->len += n;
    return CAIRO_STATUS_SUCCESS;
}

static tp_status canvas_end(canvas *c, fig_png *out)
{
    out->data = NULL, out->len = 0;
    cairo_status_t s = cairo_status(c->cr);
    cairo_destroy(c->cr);
    cairo_surface_flush(c->surface);
    if (s == CAIRO_STATUS_SUCCESS) s = cairo_surface_write_to_png_stream(c->surface, png_append, out);
    cairo_surface_destroy(c->surface);
    if (s != CAIRO_STATUS_SUCCESS) {
        fig_png_free(out);
        return tp_err(TP_ERR_INTERNAL, "figure: cairo: %s", cairo_status_to_string(s));
    }
    return TP_OK;
}

/* Text at (x, y): ax = 0 left, 0.5 centre, 1 right of x; y is the middle of the
 * text's height. rotate: read bottom to top. */
static void text_at(cairo_t *cr, double x, double y, const char *s, double ax, int rotate)
{
    if (!s || !s[0]) return;
    char clean[256];
    html_clean_utf8(s, strlen(s), clean, sizeof clean);
    cairo_text_extents_t e;
    cairo_text_extents(cr, clean, &e);
    cairo_save(cr);
    cairo_translate(cr, x, y);
    if (rotate) cairo_rotate(cr, -M_PI / 2);
    cairo_move_to(cr, -ax * e.x_advance, -(e.y_bearing + e.height / 2));
    cairo_show_text(cr, clean);
    cairo_restore(cr);
}

static double text_width(cairo_t *cr, const char *s)
{
    char clean[256];
    html_clean_utf8(s, strlen(s), clean, sizeof clean);
    cairo_text_extents_t e;
    cairo_text_extents(cr, clean, &e);
    return e.x_advance;
}

static void fmt_num(char *buf, size_t n, double v)
{
    if (v == 0) snprintf(buf, n, "0");
    else snprintf(buf, n, "%.3g", v);
}

/* An axis: data range [lo, hi] (log10 of it on a log axis) mapped to pixels [p0, p1]. */
typedef struct {
    double lo, hi, p0, p1;
    bool log;
    bool integer;   /* the data are whole numbers (layers, steps): no ticks between them */
} axis;

static double axis_map(const axis *a, double v)
{
    double t = a->log ? log10(v) : v;
    return a->p0 + (t - a->lo) / (a->hi - a->lo) * (a->p1 - a->p0);
}

static int usable(double v, bool log) { return isfinite(v) && (!log || v > 0); }

static void axis_fit(axis *a, double lo, double hi, bool log, bool pad)
{
    a->log = log, a->integer = false;
    if (log) lo = log10(lo), hi = log10(hi);
    if (!(hi > lo)) lo -= 0.5, hi += 0.5;
    if (pad) {
        double m = 0.04 * (hi - lo);
        lo -= m, hi += m;
    }
    a->lo = lo, a->hi = hi;
}

/* Ticks at 1, 2 or 5 times a power of ten, about five of them (integer powers on a
 * log axis); returns how many were written. */
static int axis_ticks(const axis *a, double *t, int max)
{
    int n = 0;
    if (a->log) {
        double step = ceil((a->hi - a->lo) / 6);
        if (step < 1) step = 1;
        for (double k = ceil(a->lo / step) * step; k <= a->hi + 1e-9 && n < max; k += step) t[n++] = pow(10, k);
        if (n == 0) t[n++] = pow(10, (a->lo + a->hi) / 2);
        return n;
    }
    double raw = (a->hi - a->lo) / 5, mag = pow(10, floor(log10(raw))), f = raw / mag;
    double step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
    if (a->integer && step < 1) step = 1;
    for (double v = ceil(a->lo / step) * step; v <= a->hi + 1e-9 * step && n < max; v += step)
        t[n++] = fabs(v) < 1e-12 * step ? 0 : v;
    return n;
}

typedef struct {
    axis x, y;
    double left, top, right, bottom;   /* plot area in pixels */
} frame;

/* Title, axis labels, frame box, ticks and grid. */
static void draw_frame(cairo_t *cr, const fig_axes *ax, const frame *f, bool x_ticks)
{
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (ax->title) {
        cairo_set_font_size(cr, 12);
        text_at(cr, (f->left + f->right) / 2, 12, ax->title, 0.5, 0);
        cairo_set_font_size(cr, 11);
    }
    if (ax->xlabel) text_at(cr, (f->left + f->right) / 2, f->bottom + 28, ax->xlabel, 0.5, 0);
    if (ax->ylabel) text_at(cr, 10, (f->top + f->bottom) / 2, ax->ylabel, 0.5, 1);
    double t[32];
    char buf[32];
    cairo_set_font_size(cr, 10);
    int n = axis_ticks(&f->y, t, 32);
    for (int i = 0; i < n; i++) {
        double y = axis_map(&f->y, t[i]);
        if (y < f->top - 0.5 || y > f->bottom + 0.5) continue;
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->left, floor(y) + 0.5), cairo_line_to(cr, f->right, floor(y) + 0.5), cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        fmt_num(buf, sizeof buf, t[i]);
        text_at(cr, f->left - 4, y, buf, 1, 0);
    }
    if (x_ticks) {
        n = axis_ticks(&f->x, t, 32);
        for (int i = 0; i < n; i++) {
            double x = axis_map(&f->x, t[i]);
            if (x < f->left - 0.5 || x > f->right + 0.5) continue;
            cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
            cairo_move_to(cr, floor(x) + 0.5, f->top), cairo_line_to(cr, floor(x) + 0.5, f->bottom), cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            fmt_num(buf, sizeof buf, t[i]);
            text_at(cr, x, f->bottom + 10, buf, 0.5, 0);
        }
    }
    cairo_set_font_size(cr, 11);
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_rectangle(cr, floor(f->left) + 0.5, floor(f->top) + 0.5, floor(f->right - f->left), floor(f->bottom - f->top));
    cairo_stroke(cr);
}

static void nothing_to_draw(cairo_t *cr, int w, int h)
{
    cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
    text_at(cr, w / 2.0, h / 2.0, "(no data)", 0.5, 0);
}

static void frame_margins(frame *f, const fig_axes *ax, int w, int h)
{
    f->left = ax->ylabel ? 64 : 50, f->right = w - 12;
    f->top = ax->title ? 26 : 10, f->bottom = h - (ax->xlabel ? 40 : 24);
}

tp_status fig_line_plot(const fig_axes *ax, const fig_series *series, int nseries, fig_png *out)
{
    canvas c;
    TP_CHECK(canvas_begin(&c, ax->width, ax->height));
    cairo_t *cr = c.cr;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    bool whole = true;
    for (int s = 0; s < nseries; s++)
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x ? series[s].x[i] : i + 1, y = series[s].y[i];
            if (!usable(x, ax->log_x) || !usable(y, ax->log_y)) continue;
            xlo = fmin(xlo, x), xhi = fmax(xhi, x), ylo = fmin(ylo, y), yhi = fmax(yhi, y);
            whole = whole && x == floor(x);
        }
    frame f;
    frame_margins(&f, ax, c.w, c.h);
    if (!(xlo <= xhi)) {
        nothing_to_draw(cr, c.w, c.h);
        return canvas_end(&c, out);
    }
    axis_fit(&f.x, xlo, xhi, ax->log_x, false);
    f.x.integer = whole && !ax->log_x;
    axis_fit(&f.y, ylo, yhi, ax->log_y, true);
    f.x.p0 = f.left + 4, f.x.p1 = f.right - 4, f.y.p0 = f.bottom, f.y.p1 = f.top;
    draw_frame(cr, ax, &f, true);
    cairo_save(cr);
    cairo_rectangle(cr, f.left, f.top, f.right - f.left, f.bottom - f.top);
    cairo_clip(cr);
    cairo_set_line_width(cr, 1.5);
    for (int s = 0; s < nseries; s++) {
        const double *col = palette[s % 10];
        cairo_set_source_rgb(cr, col[0], col[1], col[2]);
        int pen = 0;
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x ? series[s].x[i] : i + 1, y = series[s].y[i];
            if (!usable(x, ax->log_x) || !usable(y, ax->log_y)) { pen = 0; continue; }
            double px = axis_map(&f.x, x), py = axis_map(&f.y, y);
            if (pen) cairo_line_to(cr, px, py);
            else cairo_move_to(cr, px, py);
            pen = 1;
        }
        cairo_stroke(cr);
        if (series[s].markers)
            for (int i = 0; i < series[s].n; i++) {
                double x = series[s].x ? series[s].x[i] : i + 1, y = series[s].y[i];
                if (!usable(x, ax->log_x) || !usable(y, ax->log_y)) continue;
                cairo_arc(cr, axis_map(&f.x, x), axis_map(&f.y, y), 3, 0, 2 * M_PI);
                cairo_fill(cr);
            }
    }
    cairo_restore(cr);
    /* legend, top right inside the plot */
    double lw = 0;
    int nl = 0;
    for (int s = 0; s < nseries; s++)
        if (series[s].label) lw = fmax(lw, text_width(cr, series[s].label)), nl++;
    if (nl) {
        double x0 = f.right - lw - 34, y0 = f.top + 6;
        cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
        cairo_rectangle(cr, x0 - 4, y0 - 2, lw + 34, 15 * nl + 4);
        cairo_fill(cr);
        int k = 0;
        for (int s = 0; s < nseries; s++) {
            if (!series[s].label) continue;
            const double *col = palette[s % 10];
            double y = y0 + 7 + 15 * k++;
            cairo_set_source_rgb(cr, col[0], col[1], col[2]);
            cairo_set_line_width(cr, 2.5);
            cairo_move_to(cr, x0, y), cairo_line_to(cr, x0 + 20, y), cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0, 0, 0);
            text_at(cr, x0 + 26, y, series[s].label, 0, 0);
        }
    }
    return canvas_end(&c, out);
}

tp_status fig_bar_chart(const fig_axes *ax, const char *const *labels, const double *values, int n, fig_png *out)
{
    canvas c;
    TP_CHECK(canvas_begin(&c, ax->width, ax->height));
    cairo_t *cr = c.cr;
    double lo = 0, hi = 0, lw = 0;
    int any = 0;
    cairo_set_font_size(cr, 10);
    for (int i = 0; i < n; i++) {
        if (labels && labels[i]) lw = fmax(lw, text_width(cr, labels[i]));
        if (!isfinite(values[i])) continue;
        lo = fmin(lo, values[i]), hi = fmax(hi, values[i]), any = 1;
    }
    frame f;
    frame_margins(&f, ax, c.w, c.h);
    f.left = fmin(8 + lw + 6, c.w * 0.45);
    f.bottom = c.h - (ax->xlabel ? 40 : 22);
    if (!any || n == 0) {
        nothing_to_draw(cr, c.w, c.h);
        return canvas_end(&c, out);
    }
    if (hi == lo) hi = lo + 1;
    double pad = 0.18 * (hi - lo);   /* room for the value at the bar's end */
    f.x.log = false, f.x.integer = false, f.x.lo = lo < 0 ? lo - pad : 0, f.x.hi = hi > 0 ? hi + pad : 0;
    f.x.p0 = f.left, f.x.p1 = f.right;
    f.y = (axis){0, 1, f.bottom, f.top, false, false};
    /* x grid and ticks only (the y axis is the bars) */
    double t[32];
    char buf[32];
    int nt = axis_ticks(&f.x, t, 32);
    for (int i = 0; i < nt; i++) {
        double x = axis_map(&f.x, t[i]);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, floor(x) + 0.5, f.top), cairo_line_to(cr, floor(x) + 0.5, f.bottom), cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        fmt_num(buf, sizeof buf, t[i]);
        text_at(cr, x, f.bottom + 10, buf, 0.5, 0);
    }
    double slot = (f.bottom - f.top) / n, x0 = axis_map(&f.x, 0);
    for (int i = 0; i < n; i++) {
        double yc = f.top + slot * (i + 0.5), bh = fmax(1, slot * 0.7);
        cairo_set_source_rgb(cr, 0, 0, 0);
        if (labels && labels[i]) text_at(cr, f.left - 6, yc, labels[i], 1, 0);
        if (!isfinite(values[i])) { text_at(cr, x0 + 4, yc, "n/a", 0, 0); continue; }
        double x1 = axis_map(&f.x, values[i]);
        if (values[i] >= 0) cairo_set_source_rgb(cr, 0.20, 0.45, 0.75);
        else cairo_set_source_rgb(cr, 0.80, 0.25, 0.22);
        cairo_rectangle(cr, fmin(x0, x1), yc - bh / 2, fabs(x1 - x0), bh);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        fmt_num(buf, sizeof buf, values[i]);
        text_at(cr, values[i] >= 0 ? x1 + 3 : x1 - 3, yc, buf, values[i] >= 0 ? 0 : 1, 0);
    }
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_move_to(cr, floor(x0) + 0.5, f.top), cairo_line_to(cr, floor(x0) + 0.5, f.bottom), cairo_stroke(cr);
    cairo_set_font_size(cr, 11);
    cairo_set_source_rgb(cr, 0, 0, 0);
    if (ax->title) {
        cairo_set_font_size(cr, 12);
        text_at(cr, c.w / 2.0, 12, ax->title, 0.5, 0);
        cairo_set_font_size(cr, 11);
    }
    if (ax->xlabel) text_at(cr, (f.left + f.right) / 2, f.bottom + 28, ax->xlabel, 0.5, 0);
    return canvas_end(&c, out);
}

tp_status fig_histogram(const fig_axes *ax, const double *values, size_t n, int bins, double lo, double hi,
                        fig_png *out)
{
    if (bins < 1 || bins > 4096) return tp_err(TP_ERR_RANGE, "figure: %d histogram bins (1..4096)", bins);
    canvas c;
    TP_CHECK(canvas_begin(&c, ax->width, ax->height));
    cairo_t *cr = c.cr;
    if (!(lo < hi)) {
        lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < n; i++)
            if (isfinite(values[i])) lo = fmin(lo, values[i]), hi = fmax(hi, values[i]);
        if (lo == hi) lo -= 0.5, hi += 0.5;
    }
    frame f;
    frame_margins(&f, ax, c.w, c.h);
    double *count = calloc((size_t)bins, sizeof *count);
    if (!count) {
        cairo_destroy(cr), cairo_surface_destroy(c.surface);
        return tp_err(TP_ERR_NOMEM, "figure: out of memory");
    }
    double cmax = 0;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(values[i]) || values[i] < lo || values[i] > hi) continue;
        int b = (int)((values[i] - lo) / (hi - lo) * bins);
        if (b >= bins) b = bins - 1;
        count[b]++, used++;
    }
    for (int b = 0; b < bins; b++) cmax = fmax(cmax, count[b]);
    if (!used) {
        free(count);
        nothing_to_draw(cr, c.w, c.h);
        return canvas_end(&c, out);
    }
    f.x = (axis){lo, hi, f.left, f.right, false, false};
    if (ax->log_y) axis_fit(&f.y, 1, fmax(cmax * 1.6, 10), true, false), f.y.lo = 0;
    else f.y = (axis){0, cmax * 1.08, 0, 0, false, true};
    f.y.p0 = f.bottom, f.y.p1 = f.top;
    draw_frame(cr, ax, &f, true);
    cairo_set_source_rgb(cr, 0.20, 0.45, 0.75);
    double bw = (f.right - f.left) / bins;
    for (int b = 0; b < bins; b++) {
        if (count[b] <= 0) continue;
        double y = axis_map(&f.y, count[b]);
        cairo_rectangle(cr, f.left + b * bw, y, fmax(1, bw - (bw > 3 ? 1 : 0)), f.bottom - y);
    }
    cairo_fill(cr);
    free(count);
    return canvas_end(&c, out);
}

/* White (0) to dark blue (1), as the trace SVGs (svg.h). */
static void blues(double t, double rgb[3])
{
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    rgb[0] = 1 - t * (1 - 0.03), rgb[1] = 1 - t * (1 - 0.19), rgb[2] = 1 - t * (1 - 0.42);
}

tp_status fig_heatmaps(const fig_axes *ax, const fig_heatmap_panel *panels, int n, int cols, int cell_px,
                       double vmin, double vmax, fig_png *out)
{
    if (n < 1 || cols < 1) return tp_err(TP_ERR_RANGE, "figure: %d heat maps in %d columns", n, cols);
    if (cols > n) cols = n;
    int maxr = 1, maxc = 1;
    for (int i = 0; i < n; i++) {
        if (panels[i].rows > maxr) maxr = panels[i].rows;
        if (panels[i].cols > maxc) maxc = panels[i].cols;
    }
    double cell = cell_px > 0 ? cell_px : 8;
    int big = maxr > maxc ? maxr : maxc;
    if (cell * big > 200) cell = 200.0 / big;
    int pw = (int)ceil(cell * maxc), ph = (int)ceil(cell * maxr), gap = 14, title_h = ax->title ? 24 : 4;
    int rows = (n + cols - 1) / cols;
    int w = cols * (pw + gap) + gap, h = title_h + rows * (ph + gap + 14) + 22;
    if (w < 120) w = 120;
    canvas c;
    TP_CHECK(canvas_begin(&c, w, h));
    cairo_t *cr = c.cr;
    if (ax->title) {
        cairo_set_source_rgb(cr, 0, 0, 0);
        cairo_set_font_size(cr, 12);
        text_at(cr, w / 2.0, 12, ax->title, 0.5, 0);
    }
    cairo_set_font_size(cr, 10);
    double span = vmax > vmin ? vmax - vmin : 1, rgb[3];
    for (int i = 0; i < n; i++) {
        const fig_heatmap_panel *p = &panels[i];
        double x0 = gap + (i % cols) * (pw + gap), y0 = title_h + (i / cols) * (ph + gap + 14) + 14;
        cairo_set_source_rgb(cr, 0, 0, 0);
        if (p->title) text_at(cr, x0 + pw / 2.0, y0 - 7, p->title, 0.5, 0);
        for (int r = 0; r < p->rows; r++)
            for (int k = 0; k < p->cols; k++) {
                double v = p->m[(size_t)r * p->cols + k];
                if (isnan(v)) rgb[0] = rgb[1] = rgb[2] = 0.8;
                else blues((v - vmin) / span, rgb);
                cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
                cairo_rectangle(cr, x0 + k * cell, y0 + r * cell, cell, cell);
                cairo_fill(cr);
            }
        cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
        cairo_rectangle(cr, floor(x0) - 0.5, floor(y0) - 0.5, ceil(p->cols * cell) + 1, ceil(p->rows * cell) + 1);
        cairo_stroke(cr);
    }
    /* the colour scale */
    double bx = gap, by = h - 16, bw = fmin(160, w - 2 * gap - 80);
    for (int i = 0; i < 64; i++) {
        blues(i / 63.0, rgb);
        cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);
        cairo_rectangle(cr, bx + 30 + bw * i / 64, by - 5, bw / 64 + 0.5, 10);
        cairo_fill(cr);
    }
    char buf[32];
    cairo_set_source_rgb(cr, 0, 0, 0);
    fmt_num(buf, sizeof buf, vmin);
    text_at(cr, bx + 26, by, buf, 1, 0);
    fmt_num(buf, sizeof buf, vmax);
    text_at(cr, bx + 34 + bw, by, buf, 0, 0);
    return canvas_end(&c, out);
}
