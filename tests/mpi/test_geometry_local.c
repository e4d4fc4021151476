/* MPI: local geometry (local PCA in k-neighbourhoods, tangent-space angles) and
 * norm statistics against tools/reference/make_golden_local.py (numpy SVD, scipy
 * subspace_angles, numpy percentiles, an explicit cosine matrix). Each rank takes an
 * uneven contiguous slice (weights 1, 2, 3, ...; rank 2 empty with 4 ranks).
 *
 * Tolerances. Both sides work on the same f32 values in f64.
 *  - local dimensions, the histogram and the sample: exact (the golden script refuses
 *    data where a cumulative share is within 1e-9 of the threshold);
 *  - angles: 1e-7 degrees absolute. The C code gets the bases from the Gram matrix
 *    (dsyevd), the reference from an SVD and scipy; both take small angles from the
 *    sines (acos near 1 alone would be off by ~5e-7 degrees); the smallest relative gap between
 *    the t-th and (t+1)-th local eigenvalues is 1.6 % (recorded in the JSON), so the
 *    bases agree to ~1e-12 and 1e-7 leaves a wide margin yet catches any change of
 *    t, neighbour or definition (each moves angles by > 0.01 degree);
 *  - nearest-neighbour distances and the turn per distance: 1e-9 relative;
 *  - norm statistics: 1e-9 relative (f64 sums in a different order), cosines 1e-12
 *    absolute, the massive coordinates exactly.
 */
#include "tp_test.h"

#include "analysis/geometry/local_geometry.h"
#include "analysis/geometry/norm_stats.h"
#include "dist/world.h"
#include "io/npy.h"

#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static npy_array DATA[3];
static const char *const NAMES[3] = {"manifold", "plane", "massive"};
static json_t *REF;

static bool golden_load(void)
{
    char rel[128];
    for (int i = 0; i < 3; i++) {
        snprintf(rel, sizeof rel, "golden/geometry/%s.npy", NAMES[i]);
        if (npy_read_f32(tp_test_data(rel), &DATA[i]) != TP_OK || DATA[i].ndim != 2) {
            fprintf(stderr, "[rank %d] %s: %s\n", dist_rank(), rel, tp_err_msg());
            return false;
        }
    }
    json_error_t je;
    REF = json_load_file(tp_test_data("golden/geometry/local_reference.json"), 0, &je);
    if (!REF) fprintf(stderr, "local_reference.json: %s\n", je.text);
    return REF != NULL;
}

static const npy_array *data_named(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (!strcmp(NAMES[i], name)) return &DATA[i];
    ck_abort_msg("no data set %s", name);
    return NULL;
}

static void my_slice(int64_t n, int64_t *row0, int64_t *rows)
{
    tp_test_uneven_slice(n, dist_rank(), dist_size(), row0, rows);
}

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    ck_assert_msg(v && json_is_number(v), "local_reference.json: no number %s", key);
    return json_number_value(v);
}

static void close_rel(double got, double want, double tol, const char *what)
{
    ck_assert_msg(fabs(got - want) <= tol * fabs(want) || (got == want),
                  "%s: %.17g vs reference %.17g (rel %.3g > %.1g)", what, got, want, fabs(got - want) / fabs(want), tol);
}

static void close_abs(double got, double want, double tol, const char *what)
{
    ck_assert_msg(fabs(got - want) <= tol, "%s: %.17g vs reference %.17g (abs %.3g > %.1g)", what, got, want,
                  fabs(got - want), tol);
}

static void check_summary(const local_summary *s, json_t *ref, double tol, int rel, const char *what)
{
    const char *keys[] = {"mean", "median", "p10", "p90"};
    double got[] = {s->mean, s->median, s->p10, s->p90};
    char name[128];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", what, keys[i]);
        if (rel) close_rel(got[i], num(ref, keys[i]), tol, name);
        else close_abs(got[i], num(ref, keys[i]), tol, name);
    }
}

START_TEST(test_local_geometry)
{
    json_t *c = json_array_get(json_object_get(REF, "local"), (size_t)_i);
    const npy_array *x = data_named(json_string_value(json_object_get(c, "data")));
    int64_t n = x->shape[0], d = x->shape[1], row0, rows;
    my_slice(n, &row0, &rows);
    local_geometry_options o = local_geometry_options_default();
    o.k = (int64_t)num(c, "k"), o.sample = (int64_t)num(c, "sample"), o.seed = (uint64_t)num(c, "seed");
    o.var_threshold = num(c, "var_threshold");
    local_geometry_result r;
    tp_status st = local_geometry_estimate((const float *)x->data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r);
    ck_assert_msg(st == TP_OK, "%s", tp_err_msg());
    int64_t m = (int64_t)num(c, "n_sample");
    ck_assert_int_eq(r.n_sample, m);
    json_t *si = json_object_get(c, "sample_index"), *ld = json_object_get(c, "local_dim"),
           *ang = json_object_get(c, "angle_deg"), *nn = json_object_get(c, "nn_dist"),
           *hist = json_object_get(c, "dim_histogram");
    for (int64_t i = 0; i < m; i++) {
        ck_assert_int_eq(r.sample_index[i], json_integer_value(json_array_get(si, (size_t)i)));
        ck_assert_msg(r.local_dim[i] == json_integer_value(json_array_get(ld, (size_t)i)),
                      "point %lld: local dim %d vs reference %lld", (long long)i, r.local_dim[i],
                      (long long)json_integer_value(json_array_get(ld, (size_t)i)));
        close_abs(r.angle_deg[i], json_number_value(json_array_get(ang, (size_t)i)), 1e-7, "angle_deg");
        close_rel(r.nn_dist[i], json_number_value(json_array_get(nn, (size_t)i)), 1e-9, "nn_dist");
    }
    for (int64_t i = 0; i <= o.k + 1; i++)
        ck_assert_int_eq(r.dim_histogram[i], json_integer_value(json_array_get(hist, (size_t)i)));
    ck_assert_int_eq(r.degenerate, 0);
    check_summary(&r.dim, json_object_get(c, "dim"), 1e-12, 1, "local_dim");
    check_summary(&r.angle, json_object_get(c, "angle"), 1e-7, 0, "angle_deg");
    check_summary(&r.turn_per_dist, json_object_get(c, "turn_per_dist"), 1e-8, 1, "turn_per_dist");
    local_geometry_result_free(&r);
}
END_TEST

START_TEST(test_norm_stats)
{
    const char *name = _i == 0 ? "massive" : "manifold";
    json_t *c = json_object_get(json_object_get(REF, "norms"), name);
    const npy_array *x = data_named(name);
    int64_t n = x->shape[0], d = x->shape[1], row0, rows;
    my_slice(n, &row0, &rows);
    norm_stats_options o = norm_stats_options_default();
    o.massive_ratio = num(c, "massive_ratio");
    norm_stats_result r;
    tp_status st = norm_stats_compute((const float *)x->data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r);
    ck_assert_msg(st == TP_OK, "%s", tp_err_msg());
    close_rel(r.norm_mean, num(c, "norm_mean"), 1e-9, "norm_mean");
    close_rel(r.norm_std, num(c, "norm_std"), 1e-9, "norm_std");
    close_abs(r.norm_min, num(c, "norm_min"), 1e-12, "norm_min");
    close_rel(r.norm_max, num(c, "norm_max"), 1e-9, "norm_max");
    json_t *pct = json_object_get(c, "norm_pct");
    for (int p = 0; p < NORM_NPCT; p++)
        close_rel(r.norm_pct[p], json_number_value(json_array_get(pct, (size_t)p)), 1e-9, "norm percentile");
    close_rel(r.typical_abs, num(c, "typical_abs"), 1e-9, "typical_abs");
    json_t *md = json_object_get(c, "massive_dims");
    ck_assert_int_eq(r.n_massive, (int64_t)json_array_size(md));
    for (int64_t i = 0; i < r.n_listed; i++) {
        ck_assert_int_eq(r.massive_dim[i], json_integer_value(json_array_get(md, (size_t)i)));
        close_rel(r.massive_max_abs[i], json_number_value(json_array_get(json_object_get(c, "massive_max_abs"), (size_t)i)),
                  1e-12, "massive max_abs");
        close_rel(r.massive_mean[i], json_number_value(json_array_get(json_object_get(c, "massive_mean"), (size_t)i)),
                  1e-9, "massive mean");
    }
    close_abs(r.mean_cosine, num(c, "mean_cosine"), 1e-12, "mean_cosine");
    close_abs(r.mean_cosine_centred, num(c, "mean_cosine_centred"), 1e-12, "mean_cosine_centred");
    close_rel(r.mean_share, num(c, "mean_share"), 1e-9, "mean_share");
    ck_assert_int_eq(r.zero_rows, (int64_t)num(c, "zero_rows"));
    norm_stats_result_free(&r);
}
END_TEST

/* The pieces on their own: a flat neighbourhood has angle 0 with itself, a
 * rotated one the rotation angle; percentiles as numpy's. */
START_TEST(test_pieces)
{
    double pts[4 * 3] = {0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 2, 0}, lam[4], U[4 * 3];
    int64_t dim = -1;
    ck_assert(local_pca(pts, 4, 3, 0.99, 4, lam, U, &dim) == TP_OK);
    ck_assert_int_eq(dim, 2);
    ck_assert(fabs(lam[2]) < 1e-12 && lam[0] > lam[1] && lam[1] > 0);
    double a[2 * 3] = {1, 0, 0, 0, 1, 0}, b[2 * 3] = {1, 0, 0, 0, cos(0.3), sin(0.3)}, th = -1;
    ck_assert(local_mean_angle(a, a, 2, 3, &th) == TP_OK && fabs(th) < 1e-7);
    ck_assert(local_mean_angle(a, b, 2, 3, &th) == TP_OK && fabs(th - 0.15) < 1e-12);
    double v[] = {3, NAN, 1, 2, 10};
    ck_assert(fabs(local_percentile(v, 5, 50) - 2.5) < 1e-15);   /* numpy: [1,2,3,10] -> 2.5 */
    double w[] = {3, 1, 2, 10};
    ck_assert(fabs(local_percentile(w, 4, 10) - 1.3) < 1e-12);
}
END_TEST

START_TEST(test_errors)
{
    const npy_array *x = &DATA[0];
    int64_t n = x->shape[0], d = x->shape[1], row0, rows;
    my_slice(n, &row0, &rows);
    local_geometry_options o = local_geometry_options_default();
    local_geometry_result r;
    o.k = 1;
    ck_assert(local_geometry_estimate((const float *)x->data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r) == TP_ERR_RANGE);
    o.k = 10, o.var_threshold = 1.5;
    ck_assert(local_geometry_estimate((const float *)x->data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r) == TP_ERR_RANGE);
    o.var_threshold = 0.9, o.k = 500;   /* more neighbours than rows */
    ck_assert(local_geometry_estimate((const float *)x->data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r) != TP_OK);
    norm_stats_options no = norm_stats_options_default();
    norm_stats_result nr;
    no.massive_ratio = 0;
    ck_assert(norm_stats_compute((const float *)x->data + row0 * d, rows, d, MPI_COMM_WORLD, &no, &nr) == TP_ERR_RANGE);
    no.massive_ratio = 100;
    ck_assert(norm_stats_compute((const float *)x->data, dist_rank() == 0 ? 1 : 0, d, MPI_COMM_WORLD, &no, &nr) ==
              TP_ERR_RANGE);
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 2;
    int ok = golden_load(), all_ok = ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    int worst = 1;
    if (all_ok) {
        Suite *s = suite_create("geometry_local");
        TCase *tc = tcase_create("distributed");
        tcase_set_timeout(tc, 120);
        tcase_add_loop_test(tc, test_local_geometry, 0, (int)json_array_size(json_object_get(REF, "local")));
        tcase_add_loop_test(tc, test_norm_stats, 0, 2);
        tcase_add_test(tc, test_pieces);
        tcase_add_test(tc, test_errors);
        suite_add_tcase(s, tc);
        worst = tp_test_run_suite_mpi(s);
    }
    for (int i = 0; i < 3; i++) npy_free(&DATA[i]);
    json_decref(REF);
    dist_finalize();
    return worst;
}
