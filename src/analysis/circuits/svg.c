/* svg.c — heat maps of attention patterns as SVG text (svg.h). */
#include "analysis/circuits/svg.h"

#include "core/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABEL_MAX 256     /* bytes of an escaped label */
#define MARGIN 8

size_t svg_escape(const char *s, char *out, size_t n)
{
    size_t o = 0;
    if (n == 0) return 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char piece[8];
        const char *rep = piece;
        switch (*p) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&apos;"; break;
        case '\n': rep = "\\n"; break;
        case '\t': rep = "\\t"; break;
        case '\r': rep = "\\r"; break;
        default:
            if (*p < 0x20 || *p == 0x7f) snprintf(piece, sizeof piece, "\\x%02x", *p);
            else piece[0] = (char)*p, piece[1] = '\0';
        }
        size_t l = strlen(rep);
        /* a multi-byte character is copied whole or not at all */
        size_t want = l;
        if (*p >= 0xC0) want = *p >= 0xF0 ? 4 : *p >= 0xE0 ? 3 : 2;
        if (o + want + 1 > n) break;
        memcpy(out + o, rep, l);
        o += l;
    }
    out[o] = '\0';
    return o;
}

/* #ffffff at 0 to #08306b at 1 (ColorBrewer Blues). */
static void shade(float w, char *buf, size_t n)
{
    double t = w < 0 ? 0 : w > 1 ? 1 : w;
    int r = (int)(255 - t * (255 - 8) + 0.5), g = (int)(255 - t * (255 - 48) + 0.5), b = (int)(255 - t * (255 - 107) + 0.5);
    snprintf(buf, n, "#%02x%02x%02x", r, g, b);
}

typedef struct {
    int cell, label_w, panel, cols, rows;
} layout;

static layout plan(const svg_heatmaps *h)
{
    layout g;
    g.cell = h->T <= 16 ? 22 : h->T <= 48 ? 12 : h->T <= 128 ? 6 : 3;
    g.label_w = h->T <= 128 ? 90 : 0;   /* no labels on grids too fine to read them */
    g.panel = g.label_w + h->T * g.cell + 2 * MARGIN;
    g.cols = h->n < 4 ? h->n : 4;
    g.rows = (h->n + g.cols - 1) / g.cols;
    return g;
}

static void write_panel(FILE *f, const svg_heatmaps *h, const layout *g, int p, char labels[][LABEL_MAX])
{
    int x0 = (p % g->cols) * g->panel + MARGIN, y0 = 40 + (p / g->cols) * (g->panel + 20) + MARGIN;
    int gx = x0 + g->label_w, gy = y0 + g->label_w + 16, T = h->T;
    char t[LABEL_MAX];
    svg_escape(h->panel_titles[p], t, sizeof t);
    fprintf(f, "<g><text x=\"%d\" y=\"%d\" font-weight=\"bold\">%s</text>\n", x0, y0 + 12, t);
    for (int i = 0; i < T && g->label_w; i++) {
        int c = gy + i * g->cell + g->cell / 2 + 4;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>\n", gx - 3, c, labels[i]);
        int cx = gx + i * g->cell + g->cell / 2 + 4;
        fprintf(f, "<text x=\"%d\" y=\"%d\" transform=\"rotate(-60 %d %d)\">%s</text>\n", cx, gy - 3, cx, gy - 3,
                labels[i]);
    }
    const float *A = h->panels[p];
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++) {
            char col[8];
            shade(A[(size_t)i * T + j], col, sizeof col);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"><title>%d-&gt;%d %.3f</title></rect>\n",
                    gx + j * g->cell, gy + i * g->cell, g->cell, g->cell, col, i, j, A[(size_t)i * T + j]);
        }
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/></g>\n", gx, gy,
            T * g->cell, T * g->cell);
}

tp_status svg_write_heatmaps(const char *path, const svg_heatmaps *h)
{
    layout g = plan(h);
    char (*labels)[LABEL_MAX] = tp_malloc((size_t)(h->T ? h->T : 1) * sizeof *labels);
    if (!labels) return TP_ERR_NOMEM;
    for (int i = 0; i < h->T; i++) {
        /* long tokens shortened to 40 bytes, at a character boundary */
        char raw[48];
        size_t len = strlen(h->labels[i]);
        if (len > 40) {
            len = 40;
            while (len > 0 && ((unsigned char)h->labels[i][len] & 0xC0) == 0x80) len--;
        }
        memcpy(raw, h->labels[i], len);
        raw[len] = '\0';
        svg_escape(raw, labels[i], LABEL_MAX);
    }
    FILE *f;
    tp_status st = fs_open_tmp(path, &f);
    if (st != TP_OK) { free(labels); return st; }
    int W = g.cols * g.panel + 2 * MARGIN, H = 40 + g.rows * (g.panel + 20) + 16 + 2 * MARGIN;
    char t[LABEL_MAX];
    svg_escape(h->title, t, sizeof t);
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
               "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%d\" y=\"24\" font-size=\"15\" "
               "font-weight=\"bold\">%s</text>\n", W, H, W, H, MARGIN, t);
    for (int p = 0; p < h->n; p++) write_panel(f, h, &g, p, labels);
    fprintf(f, "</svg>\n");
    free(labels);
    return fs_commit(f, path);
}
