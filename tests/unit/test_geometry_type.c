/* test_geometry_type.c — the geometry label is a stated function of the estimates,
 * with margins (analysis/geometry/geometry_type.h). */
#include "tp_test.h"

#include "analysis/geometry/geometry_type.h"

#include <math.h>
#include <string.h>

static geometry_type_inputs base(void)
{
    /* blocks.0.hook_resid_post of the bundled model's default run */
    return (geometry_type_inputs){.d = 256, .pca_id_90 = 54, .evr0 = 0.072, .mle = 4.7, .twonn = 4.8,
                                  .angle_median = 21.6, .angle_p10 = 3.3, .angle_p90 = 45.3, .silhouette = 0.09,
                                  .mean_cosine = 0.16};
}

static void expect(const geometry_type_inputs *in, const char *label, int uncertain)
{
    json_t *j = geometry_type_classify(in);
    ck_assert_str_eq(json_string_value(json_object_get(j, "label")), label);
    ck_assert_int_eq(json_is_true(json_object_get(j, "uncertain")), uncertain);
    json_decref(j);
}

static const char *attr_class(const geometry_type_inputs *in, const char *attr, const char *field)
{
    static char buf[64];
    json_t *j = geometry_type_classify(in);
    snprintf(buf, sizeof buf, "%s", json_string_value(json_object_get(json_object_get(json_object_get(j, "attributes"), attr), field)));
    json_decref(j);
    return buf;
}

START_TEST(test_low_dimensional_curved)
{
    /* MLE and TwoNN ~5 in d = 256 while PCA needs 54 directions: the complaint of the
     * issue was that this read "high-dimensional, spread out". */
    geometry_type_inputs in = base();
    expect(&in, "low-dimensional curved manifold", 0);
    /* the tangent angle on either side of 30 degrees does not flip the label */
    in.angle_median = 29.8;
    expect(&in, "low-dimensional curved manifold", 0);
    in.angle_median = 31.0;
    expect(&in, "low-dimensional curved manifold", 0);
    ck_assert_str_eq(attr_class(&in, "curvature", "class"), "moderate or strong");
}
END_TEST

START_TEST(test_flat_and_high)
{
    geometry_type_inputs in = base();
    in.pca_id_90 = 9, in.mle = 10, in.twonn = 10;   /* a 10-dimensional linear subspace */
    expect(&in, "low-dimensional linear subspace", 0);
    in.pca_id_90 = 200, in.mle = 120, in.twonn = 140; /* isotropic in most of d */
    expect(&in, "high-dimensional, spread out", 0);
    in.pca_id_90 = 40, in.mle = 30, in.twonn = 32;   /* m/d = 0.12 */
    expect(&in, "intermediate-dimensional linear subspace", 0);
}
END_TEST

START_TEST(test_margins_make_uncertain)
{
    geometry_type_inputs in = base();
    in.mle = in.twonn = 0.05 * 256;                  /* m/d on the low threshold */
    in.pca_id_90 = 80;
    expect(&in, "uncertain: low- or intermediate-dimensional curved manifold", 1);
    in = base();
    in.pca_id_90 = 3 * 4.75;                         /* linear/nonlinear = 3: between flat and curved */
    expect(&in, "uncertain: low-dimensional manifold, flat or curved", 1);
    in = base();
    in.mle = 2, in.twonn = 6;                        /* the estimators disagree by 3x */
    expect(&in, "uncertain: curved manifold of uncertain dimension (MLE and TwoNN disagree)", 1);
    ck_assert_str_eq(attr_class(&in, "dimension", "class"), "uncertain");
}
END_TEST

START_TEST(test_modifiers)
{
    geometry_type_inputs in = base();
    in.evr0 = 0.7, in.mean_cosine = 0.62, in.silhouette = 0.52;
    expect(&in, "low-dimensional curved manifold; dominated by one direction; an anisotropic cone; possibly clustered", 0);
    in.silhouette = NAN;
    expect(&in, "low-dimensional curved manifold; dominated by one direction; an anisotropic cone", 0);
    ck_assert_str_eq(attr_class(&in, "clusters", "holds"), "unknown");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("geometry_type");
    TCase *tc = tcase_create("label");
    tcase_add_test(tc, test_low_dimensional_curved);
    tcase_add_test(tc, test_flat_and_high);
    tcase_add_test(tc, test_margins_make_uncertain);
    tcase_add_test(tc, test_modifiers);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
