/* svg.h — attention heat maps as self-contained SVG text (no library).
 *
 * One figure holds several square panels (one per head): panel p is a T x T
 * grid of cells, cell (i, j) shaded from white (0) to dark blue (1) by
 * panels[p][i*T + j], query tokens labelling the rows, source tokens the columns.
 * Labels are escaped for XML (& < > " ' as entities; control characters shown as
 * \n, \t or \xNN, which XML 1.0 cannot carry). Written atomically (fsutil.h).
 */
#ifndef TP_CIRCUITS_SVG_H
#define TP_CIRCUITS_SVG_H

#include "core/error.h"

#include <stddef.h>

typedef struct {
    const char *title;               /* above the grid */
    int T;                           /* tokens */
    const char *const *labels;       /* [T] token texts (UTF-8) */
    int n;                           /* panels */
    const float *const *panels;      /* [n] of [T*T] */
    const char *const *panel_titles; /* [n] */
} svg_heatmaps;

tp_status svg_write_heatmaps(const char *path, const svg_heatmaps *h);
/* s escaped for XML text and attributes into out (NUL-terminated, cut at a whole
 * character when it does not fit); returns the length written. */
size_t svg_escape(const char *s, char *out, size_t n);

#endif
