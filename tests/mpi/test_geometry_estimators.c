/* MPI: distributed kNN, intrinsic dimension (MLE, TwoNN), k-means and silhouette
 * against a brute-force single-rank search and against scikit-dimension /
 * scikit-learn goldens made by tools/reference/make_golden_geometry.py.
 * Each rank takes a contiguous, uneven slice of the rows (weights 1, 2, 3, ...;
 * with 4 ranks, rank 2 has none). Run by ctest with 2 and 4 ranks; every rank
 * checks its replicated results (and its own slice of the k-means labels).
 *
 * Tolerances. The data are f32; the C code and the references both work on the
 * same values in f64.
 *  - kNN vs brute force: indices exact; distances 1e-6 relative (as asked; they are
 *    in fact the same f64 sums, since every neighbour's distance is recomputed
 *    exactly, so the logged error is 0).
 *  - MLE, TwoNN: relative 1e-9. On the sampled set both sides use the exact
 *    neighbours and differ only in summation order (~1e-15). On the full set skdim
 *    found its own neighbours with sklearn, whose ‖a‖² + ‖b‖² − 2a·b distances differ
 *    from the exact ones by up to 6e-13 relative (recorded in reference.json); the
 *    estimators are sums of logs of distance ratios, so they move by about as much.
 *    1e-9 leaves three orders of margin and still catches any change of neighbour,
 *    k, numerator or discard count (each moves the estimate by > 1e-4).
 *  - k-means: labels and iteration counts exact (the golden script refuses data with
 *    any point within 1e-6 relative of two centres at any iteration); inertia
 *    relative 1e-9 (asked: 1e-6; both are f64 sums of 300 squared distances);
 *    centres 1e-9 absolute (means of ~100 rows of magnitude ≤ 25 in f64).
 *  - silhouette: 1e-9 absolute (f64 means of square roots of dgemm-form distances;
 *    sklearn uses the same form, offsets are ≤ 25 so cancellation costs ≤ 1e-13).
 */
#include "tp_test.h"

#include "analysis/geometry/intrinsic_dim.h"
#include "analysis/geometry/kmeans.h"
#include "analysis/geometry/knn.h"
#include "dist/world.h"
#include "io/npy.h"

#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixture --------------------------------------------------------------------- */

static npy_array XM, XB, INIT_FIXED, INIT_EMPTY;
static json_t *REF;

#define REQUIRE(cond, ...)                                                         \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "[rank %d] test_geometry_estimators fixture: ", dist_rank()); \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            return false;                                                          \
        }                                                                          \
    } while (0)

static bool golden_load(void)
{
    REQUIRE(npy_read_f32(tp_test_data("golden/geometry/manifold.npy"), &XM) == TP_OK, "%s", tp_err_msg());
    REQUIRE(npy_read_f32(tp_test_data("golden/geometry/blobs.npy"), &XB) == TP_OK, "%s", tp_err_msg());
    REQUIRE(npy_read(tp_test_data("golden/geometry/kmeans_init_fixed.npy"), &INIT_FIXED) == TP_OK, "%s", tp_err_msg());
    REQUIRE(npy_read(tp_test_data("golden/geometry/kmeans_init_empty.npy"), &INIT_EMPTY) == TP_OK, "%s", tp_err_msg());
    json_error_t je;
    REF = json_load_file(tp_test_data("golden/geometry/reference.json"), 0, &je);
    REQUIRE(REF, "reference.json: %s", je.text);
    REQUIRE(XM.ndim == 2 && XB.ndim == 2, "data are not 2-D");
    REQUIRE(INIT_FIXED.dtype == TP_DTYPE_F64 && INIT_FIXED.shape[1] == XB.shape[1], "kmeans_init_fixed.npy: shape");
    REQUIRE(INIT_EMPTY.dtype == TP_DTYPE_F64 && INIT_EMPTY.shape[1] == XB.shape[1], "kmeans_init_empty.npy: shape");
    return true;
}

static void golden_free(void)
{
    npy_free(&XM), npy_free(&XB), npy_free(&INIT_FIXED), npy_free(&INIT_EMPTY);
    json_decref(REF);
}

/* JSON path "a.b.c" → number (NaN if missing). */
static json_t *jget(const char *path)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    json_t *j = REF;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save))
        j = json_object_get(j, tok);
    ck_assert_msg(j != NULL, "reference.json has no %s", path);
    return j;
}
static double jnum(const char *path) { return json_number_value(jget(path)); }

/* Uneven contiguous slice of n rows: weights 1, 2, 3, ... with rank 2 empty when
 * there are at least 4 ranks (a rank with no rows must still take part). */
static void my_slice(int64_t n, int64_t *row0, int64_t *rows)
{
    tp_test_uneven_slice(n, dist_rank(), dist_size(), row0, rows);
}

static double relerr(double a, double b) { return fabs(a - b) / fabs(b); }

/* ---- brute force ---------------------------------------------------------------- */

typedef struct {
    double d2;
    int64_t idx;
} pair;

static int cmp_pair(const void *a, const void *b)
{
    const pair *x = a, *y = b;
    if (x->d2 != y->d2) return x->d2 < y->d2 ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static void brute_knn(const float *q, int64_t nq, const float *ref, int64_t n, int64_t d, int64_t k,
                      const int64_t *self, double *dist, int64_t *idx)
{
    pair *all = malloc((size_t)n * sizeof *all);
    for (int64_t i = 0; i < nq; i++) {
        int64_t c = 0;
        for (int64_t r = 0; r < n; r++) {
            if (self && self[i] == r) continue;
            double s = 0;
            for (int64_t j = 0; j < d; j++) {
                double t = (double)q[i * d + j] - (double)ref[r * d + j];
                s += t * t;
            }
            all[c++] = (pair){s, r};
        }
        qsort(all, (size_t)c, sizeof *all, cmp_pair);
        for (int64_t j = 0; j < k; j++) dist[i * k + j] = sqrt(all[j].d2), idx[i * k + j] = all[j].idx;
    }
    free(all);
}

/* Distributed kNN of queries against ref split over the ranks vs brute force. */
static void knn_check(const char *what, const float *q, int64_t nq, const float *ref, int64_t n, int64_t d,
                      int64_t k, const int64_t *self)
{
    int64_t row0, rows;
    my_slice(n, &row0, &rows);
    double *dist = malloc((size_t)(nq * k) * sizeof *dist), *bd = malloc((size_t)(nq * k) * sizeof *bd);
    int64_t *idx = malloc((size_t)(nq * k) * sizeof *idx), *bi = malloc((size_t)(nq * k) * sizeof *bi);
    tp_status st = knn_distributed(q, nq, d, ref + row0 * d, rows, row0, k, self, MPI_COMM_WORLD, dist, idx);
    ck_assert_msg(st == TP_OK, "%s: %s", what, tp_err_msg());
    brute_knn(q, nq, ref, n, d, k, self, bd, bi);
    double worst = 0;
    for (int64_t i = 0; i < nq * k; i++) {
        ck_assert_msg(idx[i] == bi[i], "%s: query %lld neighbour %lld: row %lld, brute force %lld", what,
                      (long long)(i / k), (long long)(i % k), (long long)idx[i], (long long)bi[i]);
        double e = bd[i] == 0 ? fabs(dist[i]) : relerr(dist[i], bd[i]);
        ck_assert_msg(e <= 1e-6, "%s: distance %lld: %.17g vs %.17g", what, (long long)i, dist[i], bd[i]);
        worst = fmax(worst, e);
    }
    if (dist_rank() == 0)
        fprintf(stderr, "knn %-34s np=%d nq=%lld k=%lld: indices equal, distances max rel err %.1e\n", what,
                dist_size(), (long long)nq, (long long)k, worst);
    free(dist), free(bd), free(idx), free(bi);
}

static int64_t *json_i64_array(json_t *a, int64_t *n)
{
    *n = (int64_t)json_array_size(a);
    int64_t *v = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *v);
    for (int64_t i = 0; i < *n; i++) v[i] = json_integer_value(json_array_get(a, (size_t)i));
    return v;
}

/* ---- tests ----------------------------------------------------------------------- */

/* The C sampler reproduces the Python one bit for bit (the goldens depend on it). */
START_TEST(test_sampler)
{
    const char *keys[2][3] = {{"intrinsic_dim.sample.indices", "intrinsic_dim.sample.size", "intrinsic_dim.sample.seed"},
                              {"silhouette.sample.indices", "silhouette.sample.size", "silhouette.sample.seed"}};
    const int64_t n[2] = {XM.shape[0], XB.shape[0]};
    for (int s = 0; s < 2; s++) {
        int64_t m;
        int64_t *want = json_i64_array(jget(keys[s][0]), &m);
        ck_assert_int_eq(m, (int64_t)jnum(keys[s][1]));
        int64_t *got = malloc((size_t)m * sizeof *got);
        ck_assert(tp_sample_indices(n[s], m, (uint64_t)jnum(keys[s][2]), got) == TP_OK);
        for (int64_t i = 0; i < m; i++) ck_assert_int_eq(got[i], want[i]);
        free(want), free(got);
    }
    /* m ≥ n: every row; m = 0: none; samples are distinct and ascending */
    int64_t all[10], part[999];
    ck_assert(tp_sample_indices(10, 25, 3, all) == TP_OK);
    for (int i = 0; i < 10; i++) ck_assert_int_eq(all[i], i);
    ck_assert(tp_sample_indices(10, 0, 3, all) == TP_OK);
    ck_assert(tp_sample_indices(1000, 999, 42, part) == TP_OK);
    for (int i = 1; i < 999; i++) ck_assert(part[i] > part[i - 1]);
    ck_assert(part[0] >= 0 && part[998] < 1000);
}
END_TEST

START_TEST(test_knn_exact)
{
    const int64_t n = XM.shape[0], d = XM.shape[1];
    const float *x = XM.data;
    /* sampled rows as queries, themselves excluded (what intrinsic_dim does) */
    int64_t m;
    int64_t *s = json_i64_array(jget("intrinsic_dim.sample.indices"), &m);
    float *q = malloc((size_t)(m * d) * sizeof *q);
    for (int64_t i = 0; i < m; i++) memcpy(q + i * d, x + s[i] * d, (size_t)d * sizeof *q);
    knn_check("sampled rows, self excluded", q, m, x, n, d, 20, s);
    /* points that are not rows, nothing excluded */
    for (int64_t i = 0; i < 37; i++)
        for (int64_t j = 0; j < d; j++) q[i * d + j] = x[(i * 11 % n) * d + j] + 0.05f * (float)((i + j) % 7 - 3);
    knn_check("new points", q, 37, x, n, d, 5, NULL);
    /* every other row (k = n − 1 of a small set: lists padded on small slices) */
    int64_t self[30];
    for (int64_t i = 0; i < 30; i++) self[i] = i;
    knn_check("k = n - 1", x, 30, x, 30, d, 29, self);
    /* exact duplicates and a large common offset: rows 0..99 twice, +1000 on column 0;
     * the duplicate at distance 0 comes first, ties broken by global row */
    float *dup = malloc((size_t)(200 * d) * sizeof *dup);
    int64_t dself[200];
    for (int64_t i = 0; i < 200; i++) {
        memcpy(dup + i * d, x + (i % 100) * d, (size_t)d * sizeof *dup);
        dup[i * d] += 1000.0f;
        dself[i] = i;
    }
    knn_check("duplicates + offset 1000", dup, 200, dup, 200, d, 3, dself);
    knn_check("duplicates, self kept", dup, 200, dup, 200, d, 4, NULL);
    free(dup), free(q), free(s);
}
END_TEST

static void id_check(const char *what, int64_t sample, uint64_t seed, int64_t k, int unbiased, const char *prefix,
                     const char *suffix)
{
    const int64_t n = XM.shape[0], d = XM.shape[1];
    int64_t row0, rows;
    my_slice(n, &row0, &rows);
    intrinsic_dim_options o = intrinsic_dim_options_default();
    o.sample = sample, o.seed = seed, o.k = k, o.unbiased = unbiased;
    intrinsic_dim_result r;
    tp_status st = intrinsic_dim_estimate((const float *)XM.data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r);
    ck_assert_msg(st == TP_OK, "%s: %s", what, tp_err_msg());
    char key[128];
    snprintf(key, sizeof key, "%s.mle_%s", prefix, suffix);
    double mle = jnum(key);
    snprintf(key, sizeof key, "%s.mle_mean_%s", prefix, suffix);
    double mean = jnum(key);
    snprintf(key, sizeof key, "%s.twonn", prefix);
    double twonn = jnum(key);
    double e[3] = {relerr(r.mle, mle), relerr(r.mle_mean, mean), relerr(r.twonn, twonn)};
    ck_assert_msg(e[0] <= 1e-9, "%s: MLE %.17g vs skdim %.17g", what, r.mle, mle);
    ck_assert_msg(e[1] <= 1e-9, "%s: MLE mean %.17g vs skdim %.17g", what, r.mle_mean, mean);
    ck_assert_msg(e[2] <= 1e-9, "%s: TwoNN %.17g vs skdim %.17g", what, r.twonn, twonn);
    ck_assert_int_eq(r.n, n);
    ck_assert_int_eq(r.mle_dropped, 0);
    ck_assert_int_eq(r.twonn_dropped, 0);
    ck_assert_int_eq(r.twonn_used, (int64_t)((double)r.n_sample * 0.9));
    if (dist_rank() == 0)
        fprintf(stderr, "intrinsic dim %-24s np=%d  MLE %.6f (rel %.1e)  mean %.6f (rel %.1e)  TwoNN %.6f (rel %.1e)\n",
                what, dist_size(), r.mle, e[0], r.mle_mean, e[1], r.twonn, e[2]);
    intrinsic_dim_result_free(&r);
}

START_TEST(test_intrinsic_dim_full)
{
    id_check("all rows, k=20", 0, 0, 20, 0, "intrinsic_dim.full", "k20");
    id_check("all rows, k=10 unbiased", 0, 0, 10, 1, "intrinsic_dim.full", "k10_unbiased");
}
END_TEST

START_TEST(test_intrinsic_dim_sampled)
{
    int64_t m = (int64_t)jnum("intrinsic_dim.sample.size");
    uint64_t seed = (uint64_t)jnum("intrinsic_dim.sample.seed");
    id_check("sample, k=20", m, seed, 20, 0, "intrinsic_dim.sample", "k20");
    id_check("sample, k=10 unbiased", m, seed, 10, 1, "intrinsic_dim.sample", "k10_unbiased");
    /* the sample indices are the golden ones */
    int64_t row0, rows, n = XM.shape[0], d = XM.shape[1], mm;
    my_slice(n, &row0, &rows);
    intrinsic_dim_options o = intrinsic_dim_options_default();
    o.sample = m, o.seed = seed;
    intrinsic_dim_result r;
    ck_assert(intrinsic_dim_estimate((const float *)XM.data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r) == TP_OK);
    int64_t *want = json_i64_array(jget("intrinsic_dim.sample.indices"), &mm);
    ck_assert_int_eq(r.n_sample, mm);
    for (int64_t i = 0; i < mm; i++) ck_assert_int_eq(r.sample_index[i], want[i]);
    free(want);
    intrinsic_dim_result_free(&r);
}
END_TEST

/* A duplicated row has no defined ratio: both estimators drop the pair and say so. */
START_TEST(test_intrinsic_dim_duplicates)
{
    const int64_t n = XM.shape[0] + 1, d = XM.shape[1];
    float *x = malloc((size_t)(n * d) * sizeof *x);
    memcpy(x, XM.data, (size_t)((n - 1) * d) * sizeof *x);
    memcpy(x + (n - 1) * d, x + 5 * d, (size_t)d * sizeof *x);
    int64_t row0, rows;
    my_slice(n, &row0, &rows);
    intrinsic_dim_options o = intrinsic_dim_options_default();
    o.sample = 0;
    intrinsic_dim_result r;
    ck_assert_msg(intrinsic_dim_estimate(x + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(r.mle_dropped, 2);
    ck_assert_int_eq(r.twonn_dropped, 2);
    ck_assert(isnan(r.mle_pointwise[5]) && isnan(r.mle_pointwise[n - 1]) && isfinite(r.mle_pointwise[6]));
    ck_assert(isfinite(r.mle) && isfinite(r.twonn));
    ck_assert_int_eq(r.twonn_used, (int64_t)((double)(n - 2) * 0.9));
    intrinsic_dim_result_free(&r);
    free(x);
}
END_TEST

static void kmeans_check(const char *what, const npy_array *init, const char *prefix)
{
    const int64_t n = XB.shape[0], d = XB.shape[1], k = init->shape[0];
    int64_t row0, rows;
    my_slice(n, &row0, &rows);
    kmeans_options o = kmeans_options_default();
    o.k = k;
    o.init = init->data;
    kmeans_result r;
    tp_status st = kmeans_fit_distributed((const float *)XB.data + row0 * d, rows, d, MPI_COMM_WORLD, &o, &r);
    ck_assert_msg(st == TP_OK, "%s: %s", what, tp_err_msg());
    char key[128];
    snprintf(key, sizeof key, "%s.labels", prefix);
    int64_t nl;
    int64_t *labels = json_i64_array(jget(key), &nl);
    ck_assert_int_eq(nl, n);
    ck_assert_int_eq(r.n_local, rows);
    for (int64_t i = 0; i < rows; i++)
        ck_assert_msg(r.assign[i] == labels[row0 + i], "%s: row %lld in cluster %d, sklearn %lld", what,
                      (long long)(row0 + i), (int)r.assign[i], (long long)labels[row0 + i]);
    snprintf(key, sizeof key, "%s.n_iter", prefix);
    ck_assert_int_eq(r.iterations, (int)jnum(key));
    ck_assert(r.converged);
    snprintf(key, sizeof key, "%s.relocations", prefix);
    ck_assert_int_eq(r.relocated, (int64_t)jnum(key));
    snprintf(key, sizeof key, "%s.inertia", prefix);
    double inertia = jnum(key), ei = relerr(r.inertia, inertia), ec = 0;
    ck_assert_msg(ei <= 1e-9, "%s: inertia %.17g vs sklearn %.17g", what, r.inertia, inertia);
    snprintf(key, sizeof key, "%s.sizes", prefix);
    json_t *sizes = jget(key);
    snprintf(key, sizeof key, "%s.centres", prefix);
    json_t *centres = jget(key);
    for (int64_t q = 0; q < k; q++) {
        ck_assert_int_eq(r.sizes[q], json_integer_value(json_array_get(sizes, (size_t)q)));
        for (int64_t j = 0; j < d; j++) {
            double want = json_number_value(json_array_get(json_array_get(centres, (size_t)q), (size_t)j));
            ec = fmax(ec, fabs(r.centres[q * d + j] - want));
        }
    }
    ck_assert_msg(ec <= 1e-9, "%s: centres differ by %.3e", what, ec);
    if (dist_rank() == 0)
        fprintf(stderr, "kmeans %-22s np=%d  labels equal, %d iterations, inertia %.6f (rel %.1e), centres %.1e\n",
                what, dist_size(), r.iterations, r.inertia, ei, ec);
    free(labels);
    kmeans_result_free(&r);
}

START_TEST(test_kmeans_fixed_init) { kmeans_check("fixed init", &INIT_FIXED, "kmeans_fixed"); }
END_TEST

START_TEST(test_kmeans_empty_cluster) { kmeans_check("empty cluster at it 1", &INIT_EMPTY, "kmeans_empty"); }
END_TEST

/* k-means++: centres are sampled rows, the same on every rank; on three separated
 * blobs Lloyd from there reaches sklearn's partition. */
START_TEST(test_kmeans_plusplus)
{
    const int64_t n = XB.shape[0], d = XB.shape[1], k = 3;
    int64_t row0, rows;
    my_slice(n, &row0, &rows);
    const float *mine = (const float *)XB.data + row0 * d;
    double c[3 * 8];
    ck_assert(d == 8);
    ck_assert_msg(kmeans_init_plusplus(mine, rows, d, k, 100, 5, MPI_COMM_WORLD, c) == TP_OK, "%s", tp_err_msg());
    for (int64_t q = 0; q < k; q++) {
        bool found = false;
        for (int64_t i = 0; i < n && !found; i++) {
            found = true;
            for (int64_t j = 0; j < d; j++) found = found && c[q * d + j] == (double)((const float *)XB.data)[i * d + j];
        }
        ck_assert_msg(found, "k-means++ centre %lld is not a row", (long long)q);
    }
    double cmax[24], cmin[24];
    MPI_Allreduce(c, cmax, 24, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(c, cmin, 24, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    ck_assert(memcmp(cmax, cmin, sizeof c) == 0);

    kmeans_options o = kmeans_options_default();
    o.k = k, o.seed = 5, o.init_sample = 100;
    kmeans_result r;
    ck_assert_msg(kmeans_fit_distributed(mine, rows, d, MPI_COMM_WORLD, &o, &r) == TP_OK, "%s", tp_err_msg());
    ck_assert(r.converged);
    ck_assert(memcmp(r.centres, c, sizeof c) != 0);   /* Lloyd moved them */
    double e = relerr(r.inertia, jnum("kmeans_fixed.inertia"));
    ck_assert_msg(e <= 1e-9, "k-means++ then Lloyd: inertia %.17g", r.inertia);
    int64_t s[3] = {r.sizes[0], r.sizes[1], r.sizes[2]}, want[3];
    for (int q = 0; q < 3; q++) want[q] = json_integer_value(json_array_get(jget("kmeans_fixed.sizes"), (size_t)q));
    for (int a = 0; a < 3; a++) {   /* same sizes up to a relabelling */
        int hits = 0;
        for (int b = 0; b < 3; b++) hits += s[a] == want[b];
        ck_assert(hits >= 1);
    }
    if (dist_rank() == 0)
        fprintf(stderr, "kmeans k-means++ init        np=%d  %d iterations, inertia %.6f (rel %.1e to fixed init)\n",
                dist_size(), r.iterations, r.inertia, e);
    kmeans_result_free(&r);
}
END_TEST

static double silhouette_of(const int64_t *labels_all, int64_t k, int64_t sample, uint64_t seed, tp_status *st)
{
    const int64_t n = XB.shape[0], d = XB.shape[1];
    int64_t row0, rows;
    my_slice(n, &row0, &rows);
    int32_t *lab = malloc((size_t)(rows > 0 ? rows : 1) * sizeof *lab);
    for (int64_t i = 0; i < rows; i++) lab[i] = (int32_t)labels_all[row0 + i];
    double s = NAN;
    *st = kmeans_silhouette_distributed((const float *)XB.data + row0 * d, lab, rows, d, k, sample, seed,
                                        MPI_COMM_WORLD, &s);
    free(lab);
    return s;
}

START_TEST(test_silhouette)
{
    int64_t n;
    int64_t *labels = json_i64_array(jget("kmeans_fixed.labels"), &n);
    tp_status st;
    struct {
        const char *what;
        int64_t k, sample;
        uint64_t seed;
        const char *key;
    } cases[3] = {
        {"all rows", 3, 0, 0, "silhouette.full"},
        {"sample", 3, (int64_t)jnum("silhouette.sample.size"), (uint64_t)jnum("silhouette.sample.seed"),
         "silhouette.sample.score"},
        {"singleton cluster", 4, 0, 0, "silhouette.singleton_row0_in_cluster3"},
    };
    for (int c = 0; c < 3; c++) {
        if (c == 2) labels[0] = 3;
        double s = silhouette_of(labels, cases[c].k, cases[c].sample, cases[c].seed, &st);
        ck_assert_msg(st == TP_OK, "%s: %s", cases[c].what, tp_err_msg());
        double want = jnum(cases[c].key), e = fabs(s - want);
        ck_assert_msg(e <= 1e-9, "silhouette %s: %.17g vs sklearn %.17g", cases[c].what, s, want);
        if (dist_rank() == 0)
            fprintf(stderr, "silhouette %-20s np=%d  %.9f (abs err %.1e)\n", cases[c].what, dist_size(), s, e);
    }
    /* one label only: undefined, refused as sklearn does */
    for (int64_t i = 0; i < n; i++) labels[i] = 1;
    silhouette_of(labels, 3, 0, 0, &st);
    ck_assert(st == TP_ERR_RANGE);
    ck_assert_msg(strstr(tp_err_msg(), "1 distinct labels") != NULL, "%s", tp_err_msg());
    labels[7] = 5;   /* out of range on whichever rank holds row 7 */
    silhouette_of(labels, 3, 0, 0, &st);
    ck_assert(st != TP_OK);
    free(labels);
}
END_TEST

START_TEST(test_errors)
{
    const int64_t n = XM.shape[0], d = XM.shape[1];
    int64_t row0, rows;
    my_slice(n, &row0, &rows);
    const float *mine = (const float *)XM.data + row0 * d;
    double dist[8];
    int64_t idx[8], self = 0;
    /* k larger than the rows there are (one excluded) */
    ck_assert(knn_distributed(XM.data, 1, d, dist_rank() == 0 ? XM.data : NULL, dist_rank() == 0 ? 4 : 0, 0, 4, &self,
                              MPI_COMM_WORLD, dist, idx) == TP_ERR_RANGE);
    ck_assert_msg(strstr(tp_err_msg(), "only 3 rows") != NULL, "%s", tp_err_msg());
    ck_assert(knn_distributed(XM.data, 1, d, mine, rows, row0, 0, NULL, MPI_COMM_WORLD, dist, idx) == TP_ERR_RANGE);
    /* a bad argument on one rank only fails every rank, without a hang */
    if (dist_size() > 1) {
        tp_status st = knn_distributed(XM.data, 1, d, dist_rank() == 1 ? NULL : mine, rows > 0 ? rows : 1, row0, 2,
                                       NULL, MPI_COMM_WORLD, dist, idx);
        ck_assert(st != TP_OK);
        if (dist_rank() == 1) ck_assert_msg(strstr(tp_err_msg(), "NULL") != NULL, "%s", tp_err_msg());
        else ck_assert_msg(strstr(tp_err_msg(), "another rank") != NULL, "%s", tp_err_msg());
        st = knn_distributed(XM.data, 1, d, mine, rows, row0, dist_rank() == 1 ? 3 : 2, NULL, MPI_COMM_WORLD, dist,
                             idx);
        ck_assert(st == TP_ERR_RANGE && strstr(tp_err_msg(), "disagree") != NULL);
    }
    /* intrinsic dim and k-means refuse too few rows */
    intrinsic_dim_options io = intrinsic_dim_options_default();
    intrinsic_dim_result ir;
    io.k = 1;
    ck_assert(intrinsic_dim_estimate(mine, rows, d, MPI_COMM_WORLD, &io, &ir) == TP_ERR_RANGE);
    io.k = 20;
    ck_assert(intrinsic_dim_estimate(mine, dist_rank() == 0 ? 20 : 0, d, MPI_COMM_WORLD, &io, &ir) == TP_ERR_RANGE);
    ck_assert_msg(strstr(tp_err_msg(), "20 rows in all") != NULL, "%s", tp_err_msg());
    kmeans_options ko = kmeans_options_default();
    kmeans_result kr;
    ko.k = 5;
    ck_assert(kmeans_fit_distributed(mine, dist_rank() == 0 ? 4 : 0, d, MPI_COMM_WORLD, &ko, &kr) == TP_ERR_RANGE);
    ko.k = 0;
    ck_assert(kmeans_fit_distributed(mine, rows, d, MPI_COMM_WORLD, &ko, &kr) == TP_ERR_RANGE);
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 2;
    int ok = golden_load(), all_ok = ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (!all_ok) {
        golden_free();
        dist_finalize();
        return 1;
    }
    Suite *s = suite_create("geometry_estimators");
    TCase *tc = tcase_create("distributed");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sampler);
    tcase_add_test(tc, test_knn_exact);
    tcase_add_test(tc, test_intrinsic_dim_full);
    tcase_add_test(tc, test_intrinsic_dim_sampled);
    tcase_add_test(tc, test_intrinsic_dim_duplicates);
    tcase_add_test(tc, test_kmeans_fixed_init);
    tcase_add_test(tc, test_kmeans_empty_cluster);
    tcase_add_test(tc, test_kmeans_plusplus);
    tcase_add_test(tc, test_silhouette);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    int worst = tp_test_run_suite_mpi(s);
    golden_free();
    dist_finalize();
    return worst;
}
