/* kmeans.h — distributed k-means (Lloyd) and the silhouette score (phase 3).
 *
 * Rows are row-major f32 [n_local, d], each rank holding a contiguous slice of the
 * global row order (n_local may be 0). Arithmetic is f64 throughout.
 *
 * Init. Either fixed centres (opt.init, [k, d]; rank 0's copy is broadcast) or
 *   greedy k-means++ (Arthur & Vassilvitskii 2007, with scikit-learn's 2 + ⌊ln k⌋
 *   candidates per step, keeping the one that lowers the potential most) run on
 *   rank 0 over a seeded sample of rows (tp_sample_indices: the same sample for
 *   any number of ranks) and broadcast.
 * Lloyd. Each iteration assigns every local row to its nearest centre (‖c‖² − 2x·c
 *   by dgemm on rows shifted by the mean of the initial centres; the first centre
 *   wins a tie), sums rows (f64) and counts per cluster, reduces both with one
 *   MPI_Allreduce, and moves each centre to the mean of its rows. It stops when no
 *   row changes cluster (scikit-learn's "strict convergence"; tol is not used, as
 *   with sklearn's tol=0) or after max_iter; then, as sklearn does, rows are
 *   assigned once more to the final centres. The result is that of
 *   sklearn.cluster.KMeans(init=<same>, n_init=1, algorithm="lloyd", tol=0) up to
 *   f64 rounding: the same labels unless a row is within rounding of two centres.
 * Empty clusters, as sklearn's _relocate_empty_clusters_dense: when a cluster gets
 *   no rows, the row farthest from its own (old) centre, over all ranks, is moved
 *   into it (its row leaves its old cluster's sum and count); several empty
 *   clusters take the farthest rows in descending order of distance (ties: lower
 *   global row; sklearn's order among several is argpartition's). If every row sits
 *   on its centre, the empty cluster keeps its centre (sklearn moves it to the data mean).
 * Outputs: centres [k, d], sizes [k], inertia Σ‖x − c(x)‖² over all rows,
 *   assignment of the local rows (replicated except assign).
 *
 * Silhouette (Rousseeuw 1987, sklearn.metrics.silhouette_score): on a seeded sample
 *   of m rows (0 or ≥ n: all), for each sampled x with a = mean distance to the other
 *   sampled rows of its cluster and b = the smallest mean distance to the sampled
 *   rows of another cluster, s = (b − a) / max(a, b), 0 for a point alone in its
 *   cluster in the sample; the score is the mean of s. Distances among the sample
 *   only, as silhouette_score(X[sample], labels[sample]). The sample is gathered to
 *   every rank and the rows of the m × m distance matrix are split over the ranks.
 *
 * Calls that take a communicator are collective and fail on every rank together.
 */
#ifndef TP_KMEANS_H
#define TP_KMEANS_H

#include "core/error.h"

#include <mpi.h>
#include <stdint.h>

typedef struct {
    int64_t k;              /* clusters */
    int max_iter;           /* Lloyd iterations at most; sklearn's default 300 */
    uint64_t seed;          /* k-means++ sample and draws */
    int64_t init_sample;    /* rows sampled for k-means++; 0 or ≥ n: every row */
    const double *init;     /* [k, d] fixed initial centres, or NULL for k-means++ */
} kmeans_options;

typedef struct {
    int64_t n, d, k, n_local;
    int iterations;         /* Lloyd iterations run (sklearn's n_iter_) */
    int converged;          /* the assignment stopped changing before max_iter */
    int64_t relocated;      /* empty clusters re-seeded, over all iterations */
    double *centres;        /* [k, d] */
    int64_t *sizes;         /* [k] rows per cluster */
    double inertia;
    int32_t *assign;        /* [n_local] cluster of each local row */
} kmeans_result;

kmeans_options kmeans_options_default(void);

tp_status kmeans_fit_distributed(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                 const kmeans_options *opt, kmeans_result *out);
void kmeans_result_free(kmeans_result *r);

/* k-means++ centres [k, d] (replicated) from a sample of `sample` rows. */
tp_status kmeans_init_plusplus(const float *rows, int64_t n_local, int64_t d, int64_t k, int64_t sample,
                               uint64_t seed, MPI_Comm comm, double *centres);

/* labels [n_local] in [0, k). Fails (TP_ERR_RANGE) unless the sample holds between
 * 2 and m − 1 distinct labels, as sklearn does. */
tp_status kmeans_silhouette_distributed(const float *rows, const int32_t *labels, int64_t n_local, int64_t d,
                                        int64_t k, int64_t sample, uint64_t seed, MPI_Comm comm, double *score);

#endif
