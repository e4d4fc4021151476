#include "analysis/inspect/weight_spectra.h"

#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void spectrum_free(tp_spectrum *s)
{
    free(s->sv);
    memset(s, 0, sizeof *s);
}

void spectrum_ranks(tp_spectrum *s)
{
    double sum = 0, fro2 = 0;
    for (int i = 0; i < s->n; i++) {
        sum += s->sv[i];
        fro2 += s->sv[i] * s->sv[i];
    }
    s->spectral = s->n ? s->sv[0] : 0;
    s->frobenius = sqrt(fro2);
    s->stable_rank = s->spectral > 0 ? fro2 / (s->spectral * s->spectral) : 0;
    double h = 0;
    for (int i = 0; i < s->n && sum > 0; i++) {
        double p = s->sv[i] / sum;
        if (p > 0) h -= p * log(p);
    }
    s->effective_rank = sum > 0 ? exp(h) : 0;
}

tp_status spectrum_of_block(const tp_mat *W, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                            tp_spectrum *out)
{
    memset(out, 0, sizeof *out);
    if (r0 < 0 || c0 < 0 || nr < 1 || nc < 1 || r0 + nr > W->rows || c0 + nc > W->cols)
        return tp_err(TP_ERR_RANGE, "spectrum: block out of range of '%s'", W->name);
    size_t esz = tp_dtype_size(W->dtype);
    double *a = tp_malloc((size_t)nr * (size_t)nc * sizeof(double));
    float *row = tp_malloc((size_t)nc * sizeof(float));
    int n = (int)(nr < nc ? nr : nc);
    out->sv = tp_malloc((size_t)n * sizeof(double));
    if (!a || !row || !out->sv) {
        free(a), free(row), spectrum_free(out);
        return TP_ERR_NOMEM;
    }
    for (int64_t r = 0; r < nr; r++) {
        const char *src = (const char *)W->data + ((size_t)(r0 + r) * (size_t)W->cols + (size_t)c0) * esz;
        tp_convert_to_f32(W->dtype, src, row, (size_t)nc);
        for (int64_t c = 0; c < nc; c++) a[(size_t)r * nc + c] = row[c];
    }
    free(row);
    /* The row-major [nr, nc] block read as column-major is its transpose: same
     * singular values, and no row-major workspace copy inside LAPACKE. */
    lapack_int info = LAPACKE_dgesdd(LAPACK_COL_MAJOR, 'N', (lapack_int)nc, (lapack_int)nr, a,
                                     (lapack_int)nc, out->sv, NULL, 1, NULL, 1);
    free(a);
    if (info != 0) {
        spectrum_free(out);
        return tp_err(TP_ERR_INTERNAL, "dgesdd failed on '%s' (info %d)", W->name, (int)info);
    }
    out->n = n;
    spectrum_ranks(out);
    return TP_OK;
}

double mat_frobenius(const tp_mat *W)
{
    size_t cols = (size_t)W->cols, esz = tp_dtype_size(W->dtype);
    float *row = malloc(cols * sizeof(float));
    if (!row) return NAN;
    double s = 0;
    for (int64_t r = 0; r < W->rows; r++) {
        tp_convert_to_f32(W->dtype, (const char *)W->data + (size_t)r * cols * esz, row, cols);
        for (size_t c = 0; c < cols; c++) s += (double)row[c] * row[c];
    }
    free(row);
    return sqrt(s);
}
