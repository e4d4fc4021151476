/* bench_common.h — what the C benchmarks share: dying with a message (ending every
 * MPI rank when MPI is up), a monotonic clock and the median of a series of timings.
 * Define BENCH_NAME before including. */
#ifndef TP_BENCH_COMMON_H
#define TP_BENCH_COMMON_H

#include "core/error.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_rank = -1;   /* set once MPI is up: DIE then ends every rank */

#define DIE(...)                                                         \
    do {                                                                 \
        if (g_rank >= 0) fprintf(stderr, "[rank %d] ", g_rank);          \
        fprintf(stderr, "%s: ", BENCH_NAME);                             \
        fprintf(stderr, __VA_ARGS__);                                    \
        fprintf(stderr, "\n");                                           \
        if (g_rank >= 0) MPI_Abort(MPI_COMM_WORLD, 1);                   \
        exit(1);                                                         \
    } while (0)

#define CHECK(expr)                                                                      \
    do {                                                                                 \
        tp_status s_ = (expr);                                                           \
        if (s_ != TP_OK)                                                                 \
            DIE("%s:%d: %s failed: %s (%s)", __FILE__, __LINE__, #expr,                  \
                tp_status_name(s_), tp_err_msg());                                       \
    } while (0)

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n-1] (v is left as it is); NaN when n <= 0. */
static inline double median(const double *v, int n)
{
    if (n <= 0) return NAN;
    double *s = malloc((size_t)n * sizeof *s);
    if (!s) DIE("out of memory");
    memcpy(s, v, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
    double r = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return r;
}

#endif
