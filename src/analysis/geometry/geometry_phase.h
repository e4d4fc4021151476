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

#include "analysis/geometry/pca.h"
#include "analysis/hook_select.h"
#include "core/config.h"
#include "core/error.h"
#include "phase.h"

#include <stdint.h>

/* The geometry.* section, typed. */
typedef struct {
    hook_request hooks;                 /* geometry.hooks with `layers` */
    int64_t max_rows;                   /* geometry.max_rows (0: all) */
    uint64_t seed;                      /* geometry.seed */
    pca_method pca_method;              /* geometry.pca.method */
    pca_gram pca_gram;                  /* geometry.pca.gram */
    int64_t pca_components;             /* geometry.pca.components */
    const char *pca_components_origin;
    int64_t id_sample, id_k;            /* geometry.id.* */
    int64_t local_sample, local_k;      /* geometry.local.* */
    double local_var_threshold;
    int64_t kmeans_k;                   /* geometry.kmeans.* */
    int kmeans_max_iter;
    int64_t kmeans_init_sample, kmeans_silhouette_sample, kmeans_top_tokens;
    int kmeans_context;
    double massive_ratio;               /* geometry.norms.massive_ratio */
} geometry_settings;

extern const tp_cfg_section geometry_section;
extern const tp_phase geometry_phase;
tp_status geometry_settings_read(const tp_config *cfg, geometry_settings *out);
tp_status geometry_phase_run(const tp_config *cfg, const char *run_dir);

#endif
