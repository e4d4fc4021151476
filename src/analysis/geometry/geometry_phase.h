/* geometry_phase.h — phase 3: the geometry of the activation space, per capture point
 * (docs/geometry.md).
 *
 * Reads <run>/activations.h5: rows are split evenly over the ranks in store order,
 * masked rows (/mask = 0: first positions, BOS) are left out. Per capture point:
 *   - PCA (pca.h): cov streams every unmasked row through the f64 covariance and
 *     pdsyevd; svd factors the in-memory rows with pdgesvd;
 *   - on the in-memory rows (all unmasked rows, or a seeded sample of
 *     geometry.max_rows of them): norm statistics (norm_stats.h), intrinsic
 *     dimension by MLE and TwoNN (intrinsic_dim.h), local PCA and tangent-space
 *     rotation (local_geometry.h), k-means with silhouette and the tokens nearest
 *     each centre (kmeans.h);
 *   - a geometry_type label from a rule written out with its inputs.
 * Outputs: results/geometric_analysis.json (rank 0, atomic) and /pca/<hook>/ in the
 * store (store_results.h). Every sample depends on geometry.seed only, so the
 * results are the same for any number of ranks up to floating-point reassociation.
 */
#ifndef TP_GEOMETRY_PHASE_H
#define TP_GEOMETRY_PHASE_H

#include "core/config.h"
#include "core/error.h"

tp_status geometry_phase_run(const tp_config *cfg, const char *run_dir);

#endif
