/* norm_stats.h — activation norms, massive-activation coordinates and anisotropy
 * (phase 3).
 *
 * Rows are row-major f32 [n_local, d], each rank a contiguous slice (n_local may be
 * 0). Arithmetic in f64. Results are replicated on every rank.
 *
 * Norms. ‖x‖₂ of every row: mean, standard deviation (population, ddof 0), min, max
 *   and the percentiles NORM_PCTS (numpy's default linear interpolation, over all
 *   rows: the norms are gathered to every rank).
 * Massive activations (Sun et al. 2024, "Massive activations in large language
 *   models"): a few coordinates take values orders of magnitude above the rest.
 *   Per coordinate j: max_abs_j = max |x_ij|, mean_j, mean_abs_j = mean |x_ij|. The
 *   typical magnitude is typ = median over j of mean_abs_j; coordinate j is massive
 *   when max_abs_j ≥ massive_ratio · typ. They are listed by descending max_abs
 *   (at most max_list), with ratio = max_abs_j / typ; n_massive counts all.
 * Anisotropy (Ethayarajh 2019: the expected cosine similarity of two random rows).
 *   Exactly, over all ordered pairs i ≠ j of non-zero rows, with u = x/‖x‖:
 *     mean_cosine = (‖Σ u_i‖² − n) / (n (n − 1)).
 *   Also mean_cosine_centred, the same after subtracting the column means (near
 *   −1/(n − 1) when the rows have no shared direction beyond the mean), and
 *   mean_share = ‖μ‖² / mean ‖x‖², how much of the squared norm the common mean
 *   carries.
 * Collective; fails on every rank together.
 */
#ifndef TP_NORM_STATS_H
#define TP_NORM_STATS_H

#include "core/error.h"

#include <mpi.h>
#include <stdint.h>

#define NORM_NPCT 7
extern const double NORM_PCTS[NORM_NPCT];   /* 1, 5, 25, 50, 75, 95, 99 */

typedef struct {
    double massive_ratio;   /* > 0; default 100 */
    int64_t max_list;       /* massive coordinates listed at most; default 16 */
} norm_stats_options;

typedef struct {
    int64_t n, d;
    double norm_mean, norm_std, norm_min, norm_max;
    double norm_pct[NORM_NPCT];
    double typical_abs;             /* median over coordinates of mean |x_j| */
    int64_t n_massive, n_listed;
    int64_t *massive_dim;           /* [n_listed] */
    double *massive_max_abs, *massive_mean, *massive_ratio;
    double mean_cosine, mean_cosine_centred, mean_share;
    int64_t zero_rows;              /* rows of norm 0, left out of the cosines */
} norm_stats_result;

norm_stats_options norm_stats_options_default(void);
tp_status norm_stats_compute(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                             const norm_stats_options *opt, norm_stats_result *out);
void norm_stats_result_free(norm_stats_result *r);

#endif
