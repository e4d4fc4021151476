/* knn.h — exact k nearest neighbours over rows spread across ranks, and the seeded
 * row samples that the geometry estimators (intrinsic_dim.h, kmeans.h) query with.
 *
 * Rows are row-major f32 [n_local, d], each rank holding a contiguous slice of the
 * global row order (rank r's rows start where rank r − 1's end; n_local may be 0).
 *
 * knn_distributed: queries [nq, d] are replicated on every rank; each rank searches
 * its own slice of the reference set and the per-rank candidate lists are merged by
 * an MPI_Allreduce whose operator keeps the k best of two sorted lists (a tree
 * merge: every rank sends nq·k pairs whatever the number of ranks).
 *   Distances. ‖q − r‖² = ‖q‖² + ‖r‖² − 2 q·r with q·r from dgemm on f64 blocks of
 *   rows shifted by the first query (so large common offsets, like the huge-mean
 *   channels of residual streams, do not cancel), clamped at 0. That value only
 *   screens: any row whose screened distance is within the dgemm rounding bound
 *   (Higham, γ_{d+2}·(‖q‖² + ‖r‖²)) of the current k-th best is recomputed exactly
 *   as Σ_j (q_j − r_j)² in f64 and ranked by that. The neighbours are therefore the
 *   exact ones: the same indices and distances as a brute-force loop, for any
 *   number of ranks.
 *   Order: ascending (distance², global index); ties go to the lower global index.
 *   Self exclusion: self_index[i] ≥ 0 names the global reference row that query i
 *   must not return (the query itself when queries are sampled reference rows);
 *   self_index NULL, or an entry < 0, excludes nothing.
 *   Output: out_dist [nq, k] Euclidean distances (f64), out_idx [nq, k] global rows.
 *   Fails (TP_ERR_RANGE) if some query has fewer than k rows to choose from.
 *
 * Samples. tp_sample_indices (core/sample.h) picks m distinct rows of n with
 * Floyd's algorithm driven by splitmix64 (tools/reference/make_golden_geometry.py
 * has the same code), ascending; m ≥ n gives every row. It depends on (n, m, seed)
 * only, so the sample is the same for any number of ranks. knn_gather_rows brings
 * the sampled rows to every rank (root < 0) or to one, in sample order.
 *
 * Calls that take a communicator are collective and fail on every rank together (a
 * rank whose own input is bad reports it; the others say that another rank failed).
 */
#ifndef TP_KNN_H
#define TP_KNN_H

#include "core/error.h"
#include "core/sample.h"

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#define KNN_MAX_K 1024      /* candidate lists are merged in place, k pairs each */

tp_status knn_distributed(const float *queries, int64_t nq, int64_t d, const float *ref_local,
                          int64_t n_local, int64_t ref_row0, int64_t k, const int64_t *self_index,
                          MPI_Comm comm, double *out_dist, int64_t *out_idx);

/* This rank's first global row (exclusive scan of n_local) and the global count. */
tp_status knn_row_offset(int64_t n_local, MPI_Comm comm, int64_t *row0, int64_t *n_total);

/* Rows of `row_bytes` bytes each: idx [m] ascending global rows; this rank holds rows
 * [row0, row0 + n_local). out [m, row_bytes] on every rank (root < 0) or on root
 * only (other ranks may pass NULL). */
tp_status knn_gather_rows(const void *rows_local, int64_t n_local, int64_t row0, size_t row_bytes,
                          const int64_t *idx, int64_t m, int root, MPI_Comm comm, void *out);

/* First position in the ascending idx[0..m) whose value is >= v (binary search). */
int64_t knn_lower_bound(const int64_t *idx, int64_t m, int64_t v);

#endif
