/* local_geometry.h — local PCA in k-neighbourhoods and how the local tangent spaces
 * turn between neighbours (phase 3).
 *
 * Rows are row-major f32 [n_local, d], each rank holding a contiguous slice of the
 * global row order (as knn.h). On a seeded sample of m rows (tp_sample_indices:
 * the same for any number of ranks):
 *
 * Neighbourhood. N(x) = x and its k nearest other rows (knn_distributed, exact).
 * Local PCA. Centre N(x) at its mean, eigenvalues λ_1 ≥ … ≥ λ_{k+1} of its
 *   (k+1) × (k+1) Gram matrix (the nonzero part of the local covariance spectrum,
 *   up to the common factor 1/k that does not change the ratios). Local intrinsic
 *   dimension ld(x) = smallest j with λ_1 + … + λ_j ≥ var_threshold · Σλ (the
 *   local analogue of the global intrinsic_dim_P). Local tangent space T(x) = the
 *   span of the top t(x) local principal directions.
 * Rotation (curvature proxy). y = x's nearest neighbour (the first of its k).
 *   With t = min(ld(x), ld(y)), the principal angles θ_1..θ_t between the top-t
 *   local directions at x and at y (cos θ_i = singular values of U_xᵀ U_y) and
 *   their mean θ(x) = (θ_1 + … + θ_t) / t. On a flat subspace the tangent spaces
 *   coincide and θ ≈ 0 (up to noise); on a curved manifold they turn with the
 *   distance between x and y; in isotropic noise with ld near k they are unrelated
 *   and θ approaches 90°. Also θ(x) / ‖x − y‖: the turn per unit distance.
 * Summaries over the sampled points: mean, median, 10th and 90th percentiles (numpy's
 *   default linear interpolation) of ld, θ (degrees) and θ/‖x − y‖, and the
 *   histogram of ld (counts of 1..k+1).
 * Duplicates: a point with a neighbour at distance 0 keeps it; a neighbourhood
 *   whose spectrum is all zero has ld = 0 and no angle (counted in `degenerate`).
 * Cost: each chunk of queries gathers its neighbourhoods (≤ chunk·2(k+1) rows) to
 *   every rank; the local PCAs of a chunk are split over the ranks and reduced.
 * Collective; fails on every rank together.
 */
#ifndef TP_LOCAL_GEOMETRY_H
#define TP_LOCAL_GEOMETRY_H

#include "core/error.h"

#include <mpi.h>
#include <stdint.h>

typedef struct {
    int64_t sample;          /* sampled points; 0 or ≥ n: every row */
    uint64_t seed;
    int64_t k;               /* neighbours per point (≥ 2) */
    double var_threshold;    /* (0, 1]: share of local variance for ld */
} local_geometry_options;

typedef struct {
    double mean, median, p10, p90;
} local_summary;

typedef struct {
    int64_t n, n_sample, k;
    int64_t *sample_index;   /* [n_sample] ascending global rows */
    int32_t *local_dim;      /* [n_sample] ld(x) */
    double *angle_deg;       /* [n_sample] θ(x) in degrees, NaN when undefined */
    double *nn_dist;         /* [n_sample] ‖x − y‖ */
    int64_t *dim_histogram;  /* [k + 2]: count of ld = 0..k+1 */
    int64_t degenerate;      /* points without an angle (ld 0 at x or y, or ‖x − y‖ = 0) */
    local_summary dim, angle, turn_per_dist;   /* turn: radians per unit distance */
} local_geometry_result;

local_geometry_options local_geometry_options_default(void);
tp_status local_geometry_estimate(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                  const local_geometry_options *opt, local_geometry_result *out);
void local_geometry_result_free(local_geometry_result *r);

/* Local PCA of one neighbourhood: pts [np, d] f64 (overwritten: centred). Fills
 * lambda [np] (descending, ≥ 0) and, when U is not NULL, the top `t_max` unit
 * directions U [t_max, d] (rows; those with λ = 0 are zero). Returns ld in *dim.
 * Local, no communication. */
tp_status local_pca(double *pts, int64_t np, int64_t d, double var_threshold, int64_t t_max, double *lambda,
                    double *U, int64_t *dim);
/* Mean principal angle (radians) between the row spaces of Ua [t, d] and Ub [t, d]
 * (orthonormal rows). */
tp_status local_mean_angle(const double *Ua, const double *Ub, int64_t t, int64_t d, double *theta);
/* Numpy's default percentile (linear interpolation) of v [n] (sorted in place);
 * NaN entries are left out. */
double local_percentile(double *v, int64_t n, double q);

#endif
