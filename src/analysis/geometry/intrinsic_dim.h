/* intrinsic_dim.h — intrinsic dimension from nearest neighbours (phase 3): MLE and
 * TwoNN on a seeded sample of rows spread across ranks.
 *
 * The sample (tp_sample_indices: depends on n, size and seed only, so it is the
 * same for any number of ranks) is gathered to every rank and used as the queries;
 * their neighbours come from all rows (knn_distributed, the query itself excluded).
 * Every rank then computes the same estimates from the same replicated neighbours.
 *
 * MLE, Levina & Bickel 2005, with T_j the distance to the j-th neighbour:
 *     m_k(x) = (k − 1) / Σ_{j=1..k} log(T_k / T_j)        (k − 2 with unbiased)
 *   exactly as scikit-dimension's MLE (dnoise=None, sigma=0, neighborhood_based=True,
 *   integral_approximation="Haro"; its n_neighbors is our k, its unbiased ours).
 *   mle      = 1 / mean(1 / m_k)  MacKay & Ghahramani 2005 (skdim comb="mle")
 *   mle_mean = mean(m_k)          Levina & Bickel's average (skdim comb="mean")
 * TwoNN, Facco et al. 2017: μ = T_2 / T_1 for each sampled point; with N ratios,
 *   sort, keep the n_keep = ⌊N·(1 − discard)⌋ smallest, and fit y = d·x through
 *   the origin by least squares, x = log μ_(i), y = −log(1 − i/N), i.e.
 *   d = Σxy / Σx², as skdim's TwoNN (method="linear", default discard 0.1).
 * Duplicates: a sampled point whose nearest neighbour is at distance 0 has no
 *   defined μ or m_k. Both estimators drop it and count it (skdim's TwoNN does the
 *   same; skdim's MLE would give m_k = 0 there, and so a MacKay–Ghahramani
 *   estimate of 0 whatever the data). Fewer than 2 points left is TP_ERR_RANGE.
 * Cost: the sample (n_sample × d f32) is replicated on every rank.
 */
#ifndef TP_INTRINSIC_DIM_H
#define TP_INTRINSIC_DIM_H

#include "core/error.h"

#include <mpi.h>
#include <stdint.h>

typedef struct {
    int64_t sample;          /* rows to sample; 0 or ≥ n: every row */
    uint64_t seed;           /* sample seed */
    int64_t k;               /* MLE neighbours (≥ 2); skdim's default 20 */
    int unbiased;            /* MLE numerator k − 2 instead of k − 1 (needs k ≥ 3) */
    double twonn_discard;    /* fraction of the largest μ left out of the fit, [0, 1) */
} intrinsic_dim_options;

typedef struct {
    int64_t n;               /* rows over all ranks */
    int64_t n_sample;        /* sampled rows (queries) */
    int64_t k;
    int64_t *sample_index;   /* [n_sample] ascending global rows */
    double *mle_pointwise;   /* [n_sample] m_k(x); NaN for a dropped point */
    double mle;              /* MacKay–Ghahramani */
    double mle_mean;         /* Levina–Bickel */
    int64_t mle_dropped;
    double twonn;
    int64_t twonn_used;      /* ratios in the fit: n_keep */
    int64_t twonn_dropped;
} intrinsic_dim_result;

intrinsic_dim_options intrinsic_dim_options_default(void);

/* Collective. rows [n_local, d] f32, this rank's contiguous slice of the row order. */
tp_status intrinsic_dim_estimate(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                 const intrinsic_dim_options *opt, intrinsic_dim_result *out);
void intrinsic_dim_result_free(intrinsic_dim_result *r);

/* The estimators on neighbour distances already found: dist [nq, ld], ascending
 * along each row, self excluded. Local, no communication. pointwise may be NULL. */
tp_status intrinsic_dim_mle_from_knn(const double *dist, int64_t nq, int64_t ld, int64_t k, int unbiased,
                                     double *pointwise, double *mle, double *mle_mean, int64_t *dropped);
tp_status intrinsic_dim_twonn_from_knn(const double *dist, int64_t nq, int64_t ld, double discard,
                                       double *twonn, int64_t *used, int64_t *dropped);

#endif
