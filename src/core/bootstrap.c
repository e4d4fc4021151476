#include "core/bootstrap.h"

#include "core/sample.h"

#include <math.h>
#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* NumPy's default ('linear') percentile of sorted v[0..n), q in [0, 1]. */
static double percentile_sorted(const double *v, size_t n, double q)
{
    double h = q * (double)(n - 1);
    size_t i = (size_t)floor(h);
    if (i + 1 >= n) return v[n - 1];
    return v[i] + (h - (double)i) * (v[i + 1] - v[i]);
}

tp_status tp_bootstrap_mean(const double *x, size_t n, int resamples, double level, uint64_t seed, tp_ci *out)
{
    if (resamples < 1 || !(level > 0 && level < 1))
        return tp_err(TP_ERR_RANGE, "bootstrap: %d resamples at level %g (need >= 1 and a level in (0, 1))",
                      resamples, level);
    *out = (tp_ci){.mean = NAN, .lo = NAN, .hi = NAN, .n = n, .resamples = resamples, .level = level};
    if (n == 0) return TP_OK;
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += x[i];
    out->mean = sum / (double)n;
    if (n == 1) {
        out->lo = out->hi = x[0];
        return TP_OK;
    }
    double *means = tp_malloc((size_t)resamples * sizeof *means);
    if (!means) return TP_ERR_NOMEM;
    uint64_t state = seed;
    for (int b = 0; b < resamples; b++) {
        double s = 0;
        for (size_t i = 0; i < n; i++) s += x[tp_rng_below(&state, n)];
        means[b] = s / (double)n;
    }
    qsort(means, (size_t)resamples, sizeof *means, cmp_double);
    out->lo = percentile_sorted(means, (size_t)resamples, (1 - level) / 2);
    out->hi = percentile_sorted(means, (size_t)resamples, 1 - (1 - level) / 2);
    free(means);
    return TP_OK;
}
