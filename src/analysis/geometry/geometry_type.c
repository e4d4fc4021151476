/* geometry_type.c — the label of a capture point's geometry (geometry_type.h). */
#include "analysis/geometry/geometry_type.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Thresholds (judgement calls, stated in the JSON and docs/geometry.md). */
#define DIM_LOW 0.05        /* m / d at most this: low-dimensional */
#define DIM_HIGH 0.25       /* m / d at least this: high-dimensional */
#define SHAPE_FLAT 2.0      /* pca_id_90 / m at most this: flat */
#define SHAPE_CURVED 4.0    /* pca_id_90 / m at least this: curved */
#define ESTIMATORS_AGREE 2.0 /* max / min of MLE and TwoNN at most this */
#define RATIO_MARGIN 1.25   /* a ratio within this factor of a threshold is uncertain */
#define SHARE_MARGIN 0.05   /* a share or cosine within this of 0.5 is uncertain */
#define ANGLE_FLAT 10.0     /* degrees: median tangent angle below: flat */
#define ANGLE_CURVED 30.0   /* degrees: above: strongly curved */

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* Where x falls among the classes below lo, between, above hi, with margins. */
static const char *band(double x, double lo, double hi, const char *below, const char *mid, const char *above,
                        const char *below_mid, const char *mid_above)
{
    if (!isfinite(x)) return "unknown";
    if (x <= lo / RATIO_MARGIN) return below;
    if (x < lo * RATIO_MARGIN) return below_mid;
    if (x <= hi / RATIO_MARGIN) return mid;
    if (x < hi * RATIO_MARGIN) return mid_above;
    return above;
}

/* "yes" / "no" / "uncertain" for a share or cosine against 0.5. */
static const char *half(double x)
{
    if (!isfinite(x)) return "unknown";
    return x >= 0.5 + SHARE_MARGIN ? "yes" : x <= 0.5 - SHARE_MARGIN ? "no" : "uncertain";
}

static json_t *dimension(const geometry_type_inputs *in, double m, int agree, const char **cls)
{
    double r = m / in->d;
    *cls = !agree ? "uncertain" : band(r, DIM_LOW, DIM_HIGH, "low", "intermediate", "high", "low or intermediate",
                                       "intermediate or high");
    return json_pack("{s:s, s:o, s:o, s:b, s:{s:f, s:f}, s:f, s:f}", "class", *cls, "nonlinear_dimension", jnum(m),
                     "relative_to_d", jnum(r), "estimators_agree", agree, "thresholds", "low_at_most", DIM_LOW,
                     "high_at_least", DIM_HIGH, "margin_factor", RATIO_MARGIN, "agreement_factor", ESTIMATORS_AGREE);
}

static json_t *shape(const geometry_type_inputs *in, double m, const char **cls)
{
    double s = in->pca_id_90 / m;
    *cls = !isfinite(s) ? "unknown" : s <= SHAPE_FLAT ? "flat" : s >= SHAPE_CURVED ? "curved" : "uncertain";
    return json_pack("{s:s, s:o, s:{s:f, s:f}}", "class", *cls, "linear_over_nonlinear", jnum(s), "thresholds",
                     "flat_at_most", SHAPE_FLAT, "curved_at_least", SHAPE_CURVED);
}

static json_t *curvature(const geometry_type_inputs *in)
{
    const char *cls = band(in->angle_median, ANGLE_FLAT, ANGLE_CURVED, "flat", "moderate", "strong", "flat or moderate",
                           "moderate or strong");
    return json_pack("{s:s, s:o, s:o, s:o, s:{s:f, s:f}, s:f, s:s}", "class", cls, "median_tangent_angle_deg",
                     jnum(in->angle_median), "p10", jnum(in->angle_p10), "p90", jnum(in->angle_p90), "thresholds_deg",
                     "flat_at_most", ANGLE_FLAT, "strong_at_least", ANGLE_CURVED, "margin_factor", RATIO_MARGIN,
                     "role", "evidence only: the angle's spread over points is wide, so it does not set the label");
}

static json_t *modifier(const char *what, double value)
{
    return json_pack("{s:s, s:o, s:f, s:f}", "holds", half(value), what, jnum(value), "threshold", 0.5, "margin",
                     SHARE_MARGIN);
}

/* The main words from the two classes. */
static void main_words(const char *dim, const char *shp, char *buf, size_t n)
{
    const char *sw = !strcmp(shp, "flat") ? "linear subspace" : !strcmp(shp, "curved") ? "curved manifold"
                                                                                        : "manifold, flat or curved";
    const char *dw = !strcmp(dim, "low") ? "low-dimensional"
                   : !strcmp(dim, "intermediate") ? "intermediate-dimensional"
                   : !strcmp(dim, "high") ? "high-dimensional"
                   : !strcmp(dim, "low or intermediate") ? "low- or intermediate-dimensional"
                   : !strcmp(dim, "intermediate or high") ? "intermediate- or high-dimensional" : NULL;
    if (!dw) snprintf(buf, n, "%s of uncertain dimension (MLE and TwoNN disagree)", sw);
    else if (!strcmp(dim, "high") && !strcmp(shp, "flat")) snprintf(buf, n, "high-dimensional, spread out");
    else snprintf(buf, n, "%s %s", dw, sw);
}

static void add_modifier(char *buf, size_t n, const char *holds, const char *words)
{
    size_t len = strlen(buf);
    if (!strcmp(holds, "yes")) snprintf(buf + len, n - len, "; %s", words);
    else if (!strcmp(holds, "uncertain")) snprintf(buf + len, n - len, "; possibly %s", words);
}

json_t *geometry_type_classify(const geometry_type_inputs *in)
{
    double lo = fmin(in->mle, in->twonn), hi = fmax(in->mle, in->twonn), m = (in->mle + in->twonn) / 2;
    int agree = isfinite(lo) && lo > 0 && hi / lo <= ESTIMATORS_AGREE;
    const char *dc, *sc;
    json_t *attrs = json_object();
    json_object_set_new(attrs, "dimension", dimension(in, m, agree, &dc));
    json_object_set_new(attrs, "shape", shape(in, m, &sc));
    json_object_set_new(attrs, "curvature", curvature(in));
    json_object_set_new(attrs, "dominant_direction", modifier("explained_variance_ratio[0]", in->evr0));
    json_object_set_new(attrs, "anisotropy", modifier("mean_cosine", in->mean_cosine));
    json_object_set_new(attrs, "clusters", modifier("silhouette", in->silhouette));
    int uncertain = strcmp(dc, "low") && strcmp(dc, "intermediate") && strcmp(dc, "high");
    uncertain |= strcmp(sc, "flat") && strcmp(sc, "curved");
    char label[256], words[200];
    main_words(dc, sc, words, sizeof words);
    snprintf(label, sizeof label, "%s%s", uncertain ? "uncertain: " : "", words);
    add_modifier(label, sizeof label, half(in->evr0), "dominated by one direction");
    add_modifier(label, sizeof label, half(in->mean_cosine), "an anisotropic cone");
    add_modifier(label, sizeof label, half(in->silhouette), "clustered");
    json_t *inputs = json_pack("{s:f, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "d", in->d, "pca_id_90", jnum(in->pca_id_90),
                               "explained_variance_ratio[0]", jnum(in->evr0), "mle", jnum(in->mle), "twonn",
                               jnum(in->twonn), "median_tangent_angle_deg", jnum(in->angle_median), "silhouette",
                               jnum(in->silhouette), "mean_cosine", jnum(in->mean_cosine));
    return json_pack("{s:s, s:b, s:o, s:s, s:o}", "label", label, "uncertain", uncertain, "attributes", attrs, "how",
                     "dimension (nonlinear m = (MLE+TwoNN)/2 over d) and shape (pca_id_90 / m) name the layer; "
                     "dominant direction, anisotropy and clusters are added when they hold; a value near a threshold "
                     "makes its attribute uncertain (docs/geometry.md)", "inputs", inputs);
}
