/* geometry_type.h — a label for the geometry of one capture point, as a stated
 * function of the estimates (docs/geometry.md, "geometry_type").
 *
 * Two main attributes, each from two estimates a reader can check:
 *   dimension  the nonlinear intrinsic dimension m = (MLE + TwoNN) / 2 relative to d:
 *              low if m/d <= 0.05, high if m/d >= 0.25, intermediate between; when the
 *              two estimators differ by more than a factor 2, uncertain.
 *   shape      s = pca_id_90 / m, how many more linear directions than intrinsic ones
 *              the points need: flat (near a linear subspace) if s <= 2, curved (a
 *              nonlinear manifold) if s >= 4, uncertain between.
 * and three modifiers: one dominant direction (explained_variance_ratio[0] >= 0.5),
 * an anisotropic cone (mean pair cosine >= 0.5), clusters (silhouette >= 0.5).
 * Every threshold has a margin: a value within a factor 1.25 of a ratio threshold,
 * or within 0.05 of a share/cosine threshold, is "uncertain" rather than on either
 * side, so a label never flips on a hair. The tangent-space angle between
 * neighbours is reported as the curvature evidence (median with p10/p90 and a
 * class), but does not decide the label: its spread over points is wide.
 */
#ifndef TP_GEOMETRY_TYPE_H
#define TP_GEOMETRY_TYPE_H

#include <jansson.h>

typedef struct {
    double d;                   /* columns */
    double pca_id_90;           /* components for 90 % of the variance */
    double evr0;                /* explained_variance_ratio[0] */
    double mle, twonn;          /* nonlinear intrinsic dimension estimates */
    double angle_median, angle_p10, angle_p90;   /* tangent angle between neighbours, degrees */
    double silhouette;          /* NaN when undefined */
    double mean_cosine;
} geometry_type_inputs;

/* {"label", "uncertain", "attributes": {dimension, shape, curvature, dominant_direction,
 *  anisotropy, clusters}, "how", "inputs"}; each attribute has its class, value,
 * thresholds and margin. */
json_t *geometry_type_classify(const geometry_type_inputs *in);

#endif
