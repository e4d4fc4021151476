/* figures.h — the report's figures, drawn with cairo into PNG bytes in memory.
 *
 * Line plots (linear or log axes, several series with a legend), horizontal bar
 * charts of signed values, histograms, and grids of heat maps. Each draws on a white
 * ARGB32 image surface of the size asked and writes it with
 * cairo_surface_write_to_png_stream into a fig_png the caller frees; the page embeds
 * it as a base64 data: URI (html.h). Labels are cleaned to valid UTF-8 first
 * (html_clean_utf8), so a token with invalid bytes cannot put cairo in an error
 * state. Non-finite values are left out of a plot (and of its axis range); a log
 * axis leaves out values ≤ 0. A figure with nothing to draw says so in its middle.
 */
#ifndef TP_REPORT_FIGURES_H
#define TP_REPORT_FIGURES_H

#include "core/error.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    unsigned char *data;
    size_t len;
} fig_png;

void fig_png_free(fig_png *p);

typedef struct {
    int width, height;          /* pixels */
    const char *title, *xlabel, *ylabel;   /* NULL: none */
    bool log_x, log_y;
} fig_axes;

typedef struct {
    const double *x;            /* NULL: 1, 2, ..., n */
    const double *y;
    int n;
    const char *label;          /* in the legend; NULL: none */
    bool markers;               /* a dot on each point */
} fig_series;

tp_status fig_line_plot(const fig_axes *ax, const fig_series *series, int nseries, fig_png *out);

/* One bar per value, from 0 to the value: positive blue, negative red, labels at
 * the left, values at the bar's end. */
tp_status fig_bar_chart(const fig_axes *ax, const char *const *labels, const double *values, int n, fig_png *out);

/* Counts of values in `bins` equal bins between their min and max (lo/hi when
 * lo < hi). log_y: counts on a log axis. */
tp_status fig_histogram(const fig_axes *ax, const double *values, size_t n, int bins, double lo, double hi,
                        fig_png *out);

typedef struct {
    const float *m;             /* [rows][cols], row-major */
    int rows, cols;
    const char *title;
} fig_heatmap_panel;

/* Panels in a grid of `cols` columns, each cell cell_px pixels (a panel of at most
 * 200 pixels: smaller cells when needed), from white (vmin) to dark blue (vmax);
 * NaN cells grey. The size follows from the panels (ax->width/height ignored). */
tp_status fig_heatmaps(const fig_axes *ax, const fig_heatmap_panel *panels, int n, int cols, int cell_px,
                       double vmin, double vmax, fig_png *out);

#endif
