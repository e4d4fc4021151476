/* bootstrap.h — percentile bootstrap confidence intervals of a mean (Efron 1979;
 * Efron & Tibshirani 1993, ch. 13).
 *
 * The n values are the independent units (prompts, contexts); B resamples of n
 * values drawn with replacement by a seeded splitmix64 (core/sample.h), the mean of
 * each, and the interval [q_(α/2), q_(1−α/2)] of those means with linear
 * interpolation between order statistics (NumPy's default percentile). The same
 * (values, B, seed) give the same interval everywhere. n = 1 gives [x, x]; n = 0 is
 * NaN for all three. */
#ifndef TP_BOOTSTRAP_H
#define TP_BOOTSTRAP_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double mean, lo, hi;     /* the sample mean and the interval */
    size_t n;                /* units */
    int resamples;
    double level;            /* 0.95 */
} tp_ci;

tp_status tp_bootstrap_mean(const double *x, size_t n, int resamples, double level, uint64_t seed, tp_ci *out);

#endif
