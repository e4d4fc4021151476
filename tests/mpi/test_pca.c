/* MPI: distributed PCA (cov: f64 Gram + pdsyevd; svd: pdgeqrf + dgesdd of R, pdgesvd when n < d) against NumPy/LAPACK
 * goldens made by tools/reference/make_golden_pca.py, and the BLACS grid helpers.
 * Each rank takes a contiguous, uneven slice of the 600 × 48 rows (with 4 ranks,
 * rank 2 has none). Run by ctest with 2 and 4 ranks: default grids 1×2 and 2×2;
 * other shapes (1×P, P×1, and a 1×1 grid that leaves ranks outside it) are built
 * explicitly. Every rank checks its replicated result.
 *
 * Tolerances. The data are f32 but both sides work on the same values in f64
 * (C accumulates in f64, the reference upcasts), so what is left is rounding in
 * f64: summation order of the Gram matrix and LAPACK vs ScaLAPACK.
 *  - eigenvalues, cov: relative 1e-9 each. Backward-stable eigensolvers err by
 *    ~ d·eps·λ_max in absolute terms; λ_max/λ_min ≈ 3e4 here, so the smallest
 *    eigenvalue may move by ~1e-10 relative; 1e-9 leaves a margin.
 *  - eigenvalues, svd: relative 1e-8 (s² doubles the relative error of s, and the
 *    golden's svd uses another LAPACK driver, gesdd).
 *  - components: 1e-7 per entry after the shared sign convention. An eigenvector
 *    moves by ~ eps·λ_max / gap; the smallest gap is 8 % of ~1e-3, so ~1e-11.
 *  - summary: intrinsic dimensions exact (the golden script refuses data whose
 *    cumulative ratio lies within 1e-6 of a threshold); ratios, participation
 *    ratio, effective rank and total variance relative 1e-9 (1e-8 for svd): they
 *    are smooth functions of the eigenvalues, dominated by the large ones.
 *  - mean: relative 1e-12 to max |μ| (f64 sums of 600 values in another order).
 * gram = f32 (the products in f32 blocks, summed in f64 about a shift): an f32
 * product errs by ~eps32·‖Y‖² ≈ 6e-8·λ_max in absolute terms, whatever the mean.
 *  - golden rows: eigenvalues relative 3e-3 (λ_max/λ_min ≈ 3e4, so ~2e-3 on the
 *    smallest; measured 1e-4 to 6e-4 at np 1, 2, 4), summary numbers the same;
 *    the top 10 components 1e-6 per entry (well separated; measured ≤ 1.5e-7).
 *  - rows with a large mean (test_cov_f32_large_mean, λ_max/λ_min ≈ 7e2): against
 *    the f64 Gram, eigenvalues relative 2e-5 (6e-8 · 7e2 = 4e-5 at worst; measured
 *    2e-6 to 3.4e-6), components 1e-6, mean 1e-12; the naive f32 XᵀX − nμμᵀ errs
 *    by more than 100 × 2e-5 (measured 3e3: nothing left).
 */
#include "tp_test.h"

#include "analysis/geometry/pca.h"
#include "dist/blacs.h"
#include "dist/world.h"
#include "io/npy.h"

#include <cblas.h>
#include <jansson.h>
#include <lapacke.h>
#include <math.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixture --------------------------------------------------------------------- */

typedef struct {
    int64_t n, d;
    float *x;                    /* [n, d] all rows (every rank loads the file) */
    double *mean, *lam_eigh, *lam_svd, *ratio;
    double *comp_eigh, *comp_svd;   /* [d, d] rows = components */
    int64_t dim90, dim95, dim99;
    double pr, erank, total;
} golden;

static golden G;
static npy_array X, CE, CS;
static int64_t my_row0, my_rows;   /* this rank's slice */

/* The fixture loads before Check runs a test, so it cannot use ck_assert. */
#define REQUIRE(cond, ...)                                                         \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "[rank %d] test_pca fixture: ", dist_rank());          \
            fprintf(stderr, __VA_ARGS__);                                          \
            fputc('\n', stderr);                                                   \
            return false;                                                          \
        }                                                                          \
    } while (0)

static double *json_vec(json_t *root, const char *key, int64_t n)
{
    json_t *a = json_object_get(root, key);
    if (!json_is_array(a) || (int64_t)json_array_size(a) != n) return NULL;
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return NULL;
    for (int64_t i = 0; i < n; i++) v[i] = json_number_value(json_array_get(a, (size_t)i));
    return v;
}

static bool golden_load(void)
{
    REQUIRE(npy_read_f32(tp_test_data("golden/pca/x.npy"), &X) == TP_OK, "%s", tp_err_msg());
    REQUIRE(npy_read(tp_test_data("golden/pca/components_eigh.npy"), &CE) == TP_OK, "%s", tp_err_msg());
    REQUIRE(npy_read(tp_test_data("golden/pca/components_svd.npy"), &CS) == TP_OK, "%s", tp_err_msg());
    json_error_t je;
    json_t *r = json_load_file(tp_test_data("golden/pca/reference.json"), 0, &je);
    REQUIRE(r, "reference.json: %s", je.text);
    REQUIRE(X.ndim == 2, "x.npy is not 2-D");
    G.n = X.shape[0];
    G.d = X.shape[1];
    REQUIRE(json_integer_value(json_object_get(r, "n")) == G.n && json_integer_value(json_object_get(r, "d")) == G.d,
            "reference.json: n, d differ from x.npy");
    REQUIRE(CE.dtype == TP_DTYPE_F64 && CE.shape[0] == G.d && CE.shape[1] == G.d, "components_eigh.npy: shape");
    REQUIRE(CS.dtype == TP_DTYPE_F64 && CS.shape[0] == G.d && CS.shape[1] == G.d, "components_svd.npy: shape");
    G.x = X.data;
    G.comp_eigh = CE.data;
    G.comp_svd = CS.data;
    G.mean = json_vec(r, "mean", G.d);
    G.lam_eigh = json_vec(r, "eigenvalues_eigh", G.d);
    G.lam_svd = json_vec(r, "eigenvalues_svd", G.d);
    G.ratio = json_vec(r, "explained_variance_ratio", G.d);
    G.dim90 = json_integer_value(json_object_get(r, "intrinsic_dim_90pct_var"));
    G.dim95 = json_integer_value(json_object_get(r, "intrinsic_dim_95pct_var"));
    G.dim99 = json_integer_value(json_object_get(r, "intrinsic_dim_99pct_var"));
    G.pr = json_number_value(json_object_get(r, "participation_ratio"));
    G.erank = json_number_value(json_object_get(r, "effective_rank"));
    G.total = json_number_value(json_object_get(r, "total_variance"));
    json_decref(r);
    REQUIRE(G.mean && G.lam_eigh && G.lam_svd && G.ratio, "reference.json: a vector is missing or not of length d");

    /* Uneven contiguous slices (rank 2 empty with 4 ranks). */
    tp_test_uneven_slice(G.n, dist_rank(), dist_size(), &my_row0, &my_rows);
    return true;
}

static void golden_free(void)
{
    npy_free(&X), npy_free(&CE), npy_free(&CS);
    free(G.mean), free(G.lam_eigh), free(G.lam_svd), free(G.ratio);
}

static const float *my_x(void) { return G.x + (size_t)my_row0 * (size_t)G.d; }

/* ---- comparison ------------------------------------------------------------------ */

typedef struct {
    double lam, comp, summary, mean;
} errs;

static double relerr(double a, double b) { return fabs(a - b) / fabs(b); }

/* The tolerances of the header: eigenvalues (relative), components (per entry),
 * summary numbers (relative); the mean's 1e-12 is the same for all. */
typedef struct {
    double lam, comp, sum;
} tols;
static const tols TOL_COV = {1e-9, 1e-7, 1e-9}, TOL_SVD = {1e-8, 1e-7, 1e-8};
static const tols TOL_F32 = {3e-3, 1e-6, 3e-3}, TOL_F32_LM = {2e-5, 1e-6, 2e-5};

/* Checks r against the golden (cov → eigh reference, svd → svd reference) to t;
 * returns the largest errors for the log line. */
static errs check_result_tol(const pca_result *r, pca_method m, int64_t k, tols t)
{
    const double tol_lam = t.lam, tol_sum = t.sum;
    const double *lam = m == PCA_METHOD_COV ? G.lam_eigh : G.lam_svd;
    const double *comp = m == PCA_METHOD_COV ? G.comp_eigh : G.comp_svd;
    const int64_t d = G.d;
    errs e = {0};
    ck_assert_int_eq(r->method, m);
    ck_assert_int_eq(r->n, G.n);
    ck_assert_int_eq(r->d, d);
    ck_assert_int_eq(r->k, k);
    double mu_max = 0;
    for (int64_t j = 0; j < d; j++) mu_max = fmax(mu_max, fabs(G.mean[j]));
    for (int64_t j = 0; j < d; j++) e.mean = fmax(e.mean, fabs(r->mean[j] - G.mean[j]) / mu_max);
    ck_assert_msg(e.mean <= 1e-12, "mean: relative error %.3e", e.mean);
    for (int64_t i = 0; i < d; i++) {
        double ei = relerr(r->eigenvalues[i], lam[i]);
        ck_assert_msg(ei <= tol_lam, "eigenvalue %lld: %.17g vs %.17g (rel %.3e)", (long long)i,
                      r->eigenvalues[i], lam[i], ei);
        e.lam = fmax(e.lam, ei);
    }
    for (int64_t c = 0; c < k; c++)
        for (int64_t j = 0; j < d; j++) {
            double ec = fabs(r->components[c * d + j] - comp[c * d + j]);
            ck_assert_msg(ec <= t.comp, "component %lld entry %lld: %.17g vs %.17g", (long long)c, (long long)j,
                          r->components[c * d + j], comp[c * d + j]);
            e.comp = fmax(e.comp, ec);
        }
    for (int64_t i = 0; i < d; i++) {
        double ei = relerr(r->explained_variance_ratio[i], G.ratio[i]);
        ck_assert_msg(ei <= tol_sum, "explained variance ratio %lld: rel %.3e", (long long)i, ei);
        e.summary = fmax(e.summary, ei);
    }
    ck_assert_int_eq(r->intrinsic_dim_90, G.dim90);
    ck_assert_int_eq(r->intrinsic_dim_95, G.dim95);
    ck_assert_int_eq(r->intrinsic_dim_99, G.dim99);
    double es[3] = {relerr(r->participation_ratio, G.pr), relerr(r->effective_rank, G.erank),
                    relerr(r->total_variance, G.total)};
    ck_assert_msg(es[0] <= tol_sum, "participation ratio %.17g vs %.17g", r->participation_ratio, G.pr);
    ck_assert_msg(es[1] <= tol_sum, "effective rank %.17g vs %.17g", r->effective_rank, G.erank);
    ck_assert_msg(es[2] <= tol_sum, "total variance %.17g vs %.17g", r->total_variance, G.total);
    for (int i = 0; i < 3; i++) e.summary = fmax(e.summary, es[i]);
    return e;
}

static errs check_result(const pca_result *r, pca_method m, int64_t k)
{
    return check_result_tol(r, m, k, m == PCA_METHOD_COV ? TOL_COV : TOL_SVD);
}

static void log_errs(const char *what, const errs *e)
{
    if (dist_rank() == 0)
        fprintf(stderr, "pca %-28s np=%d  eigenvalues %.1e  components %.1e  summary %.1e  mean %.1e\n",
                what, dist_size(), e->lam, e->comp, e->summary, e->mean);
}

static void fit_and_check(const char *what, pca_method m, int64_t k, int nb, const blacs_grid *grid)
{
    pca_options o = pca_options_default();
    o.method = m;
    o.k = k;
    o.nb = nb;
    o.grid = grid;
    pca_result r;
    tp_status st = pca_fit_distributed(my_x(), my_rows, G.d, MPI_COMM_WORLD, &o, &r);
    ck_assert_msg(st == TP_OK, "%s: %s", what, tp_err_msg());
    errs e = check_result(&r, m, k);
    log_errs(what, &e);
    pca_result_free(&r);
}

/* ---- tests ----------------------------------------------------------------------- */

START_TEST(test_grid_shape)
{
    static const int n[] = {1, 2, 3, 4, 5, 6, 8, 9, 12, 16, 7};
    static const int want_r[] = {1, 1, 1, 2, 1, 2, 2, 3, 3, 4, 1};
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) {
        int pr, pc;
        blacs_grid_shape(n[i], &pr, &pc);
        ck_assert_int_eq(pr, want_r[i]);
        ck_assert_int_eq(pr * pc, n[i]);
    }
    blacs_grid g;
    ck_assert_msg(blacs_grid_init(MPI_COMM_WORLD, 0, &g) == TP_OK, "%s", tp_err_msg());
    int pr, pc;
    blacs_grid_shape(dist_size(), &pr, &pc);
    ck_assert_int_eq(g.nprow, pr);
    ck_assert_int_eq(g.npcol, pc);
    ck_assert_int_eq(g.nb, BLACS_DEFAULT_NB);
    ck_assert(g.in_grid);
    blacs_grid_free(&g);
    /* A grid that does not fit is refused on every rank. */
    ck_assert(blacs_grid_init_shape(MPI_COMM_WORLD, 2, dist_size(), 8, &g) == TP_ERR_RANGE);
    ck_assert(strstr(tp_err_msg(), "does not fit") != NULL);
}
END_TEST

/* scatter of a replicated matrix and gather back give it exactly, for several
 * grid shapes, a block size that does not divide the sizes, and sub-matrices. */
START_TEST(test_blacs_scatter_gather)
{
    const int m = 37, n = 23, nb = 4, size = dist_size();
    double *full = malloc((size_t)m * n * sizeof *full), *back = malloc((size_t)m * n * sizeof *back);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) full[(size_t)j * m + i] = 1000.0 * i + j + 0.25;
    const int shapes[][2] = {{0, 0}, {1, size}, {size, 1}, {1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        blacs_grid g;
        tp_status st = shapes[s][0] ? blacs_grid_init_shape(MPI_COMM_WORLD, shapes[s][0], shapes[s][1], nb, &g)
                                    : blacs_grid_init(MPI_COMM_WORLD, nb, &g);
        ck_assert_msg(st == TP_OK, "%s", tp_err_msg());
        blacs_matrix A;
        ck_assert(blacs_matrix_init(&g, m, n, &A) == TP_OK);
        /* Every element is on exactly one rank. */
        long mine = (long)A.mloc * A.nloc, all = 0;
        MPI_Allreduce(&mine, &all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
        ck_assert_int_eq(all, (long)m * n);
        double *loc = malloc(blacs_matrix_local_size(&A) * sizeof *loc);
        blacs_scatter_replicated(&g, &A, full, loc);
        ck_assert(blacs_gather_replicated(&g, &A, loc, 0, m, 0, n, back) == TP_OK);
        ck_assert(memcmp(back, full, (size_t)m * n * sizeof *full) == 0);
        ck_assert(blacs_gather_replicated(&g, &A, loc, 5, 9, 3, 11, back) == TP_OK);
        for (int j = 0; j < 11; j++)
            for (int i = 0; i < 9; i++) ck_assert(back[(size_t)j * 9 + i] == full[(size_t)(j + 3) * m + i + 5]);
        ck_assert(blacs_gather_replicated(&g, &A, loc, 30, 9, 0, 1, back) == TP_ERR_RANGE);
        free(loc);
        blacs_grid_free(&g);
    }
    free(full), free(back);
}
END_TEST

START_TEST(test_cov_default_grid)
{
    /* nb = 8: the 48 × 48 covariance spans 6 × 6 blocks, spread over the grid. */
    fit_and_check("cov nb=8 k=d", PCA_METHOD_COV, G.d, 8, NULL);
    /* Default nb = 64: one block, all on process (0, 0); k < d. */
    fit_and_check("cov nb=64 k=10", PCA_METHOD_COV, 10, 0, NULL);
}
END_TEST

START_TEST(test_svd_default_grid)
{
    fit_and_check("svd nb=8 k=d", PCA_METHOD_SVD, G.d, 8, NULL);
    fit_and_check("svd nb=64 k=5", PCA_METHOD_SVD, 5, 0, NULL);
}
END_TEST

/* Fewer rows than columns (up to 40 < d = 48): the svd method takes pdgesvd instead of
 * the QR path; checked against the cov method (f64 Gram + pdsyevd) on the same rows,
 * top 5 eigenvalues and components. */
START_TEST(test_svd_wide)
{
    const int size = dist_size(), rank = dist_rank();
    int64_t take = 40 / size + (rank < 40 % size ? 1 : 0);
    if (take > my_rows) take = my_rows;
    pca_options o = pca_options_default();
    o.k = 5;
    o.nb = 8;
    pca_result rc, rs;
    o.method = PCA_METHOD_COV;
    ck_assert_msg(pca_fit_distributed(my_x(), take, G.d, MPI_COMM_WORLD, &o, &rc) == TP_OK, "%s", tp_err_msg());
    o.method = PCA_METHOD_SVD;
    ck_assert_msg(pca_fit_distributed(my_x(), take, G.d, MPI_COMM_WORLD, &o, &rs) == TP_OK, "%s", tp_err_msg());
    ck_assert(rs.n == rc.n && rs.n < G.d && rs.n >= 10);   /* a rank may hold fewer rows than its share */
    double el = 0, ec = 0;
    for (int i = 0; i < 5; i++) {
        el = fmax(el, relerr(rs.eigenvalues[i], rc.eigenvalues[i]));
        for (int64_t j = 0; j < G.d; j++) ec = fmax(ec, fabs(rs.components[i * G.d + j] - rc.components[i * G.d + j]));
    }
    ck_assert_msg(el <= 1e-8 && ec <= 1e-6, "n < d: svd vs cov: eigenvalues rel %.3e, components %.3e", el, ec);
    if (rank == 0) fprintf(stderr, "pca svd n=%lld < d (pdgesvd) vs cov  np=%d  eigenvalues %.1e  components %.1e\n", (long long)rs.n, size, el, ec);
    pca_result_free(&rc);
    pca_result_free(&rs);
}
END_TEST

/* Non-default shapes: 1×P and P×1 (1×4 with 4 ranks), and 1×1, which leaves
 * every rank but 0 outside the grid. */
START_TEST(test_other_grids)
{
    const int size = dist_size();
    const int shapes[][2] = {{1, size}, {size, 1}, {1, 1}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        blacs_grid g;
        ck_assert_msg(blacs_grid_init_shape(MPI_COMM_WORLD, shapes[s][0], shapes[s][1], 8, &g) == TP_OK, "%s",
                      tp_err_msg());
        ck_assert(g.in_grid == (dist_rank() < shapes[s][0] * shapes[s][1]));
        char what[64];
        snprintf(what, sizeof what, "cov grid %dx%d", shapes[s][0], shapes[s][1]);
        fit_and_check(what, PCA_METHOD_COV, G.d, 8, &g);
        snprintf(what, sizeof what, "svd grid %dx%d", shapes[s][0], shapes[s][1]);
        fit_and_check(what, PCA_METHOD_SVD, G.d, 8, &g);
        blacs_grid_free(&g);
    }
}
END_TEST

/* Streaming: rows added a few at a time (7, spanning calls and the f64 row
 * blocks) give the same result as one call. */
START_TEST(test_accum_streaming)
{
    pca_accum *acc = NULL;
    ck_assert(pca_accum_init(G.d, PCA_GRAM_F64, &acc) == TP_OK);
    for (int64_t r = 0; r < my_rows; r += 7) {
        int64_t nb = my_rows - r < 7 ? my_rows - r : 7;
        ck_assert(pca_accum_add(acc, my_x() + (size_t)r * G.d, nb) == TP_OK);
    }
    ck_assert(pca_accum_add(acc, NULL, 0) == TP_OK);
    pca_options o = pca_options_default();
    o.k = 12;
    o.nb = 16;
    pca_result r;
    ck_assert_msg(pca_accum_finish(acc, MPI_COMM_WORLD, &o, &r) == TP_OK, "%s", tp_err_msg());
    pca_accum_free(acc);
    errs e = check_result(&r, PCA_METHOD_COV, 12);
    log_errs("cov streamed 7 rows/call", &e);
    pca_result_free(&r);
}
END_TEST

/* ---- f32 Gram products ------------------------------------------------------------ */

/* The golden rows with gram = f32. */
START_TEST(test_cov_f32_golden)
{
    pca_options o = pca_options_default();
    o.gram = PCA_GRAM_F32;
    o.k = 10;
    o.nb = 8;
    pca_result r;
    ck_assert_msg(pca_fit_distributed(my_x(), my_rows, G.d, MPI_COMM_WORLD, &o, &r) == TP_OK, "%s", tp_err_msg());
    errs e = check_result_tol(&r, PCA_METHOD_COV, 10, TOL_F32);
    log_errs("cov gram=f32 nb=8 k=10", &e);
    pca_result_free(&r);
}
END_TEST

/* Rows with a large common mean (4000 + 100 j, 4·10⁴ times the smallest standard
 * deviation), a shared factor and a spread of scales, made here from a counter-
 * based generator so that every rank can make any row. Enough rows that every
 * rank, at 2 or 4 ranks, runs several ssyrk blocks and several f64 folds. */
#define LM_D 24
#define LM_N (9 * PCA_F32_SUM_ROWS + PCA_F32_BLOCK_ROWS / 2 + 5)

static double lm_uniform(uint64_t i)
{
    uint64_t z = i * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;   /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}

static double lm_normal(uint64_t i)   /* Box–Muller on two uniforms */
{
    return sqrt(-2 * log(lm_uniform(2 * i))) * cos(6.283185307179586 * lm_uniform(2 * i + 1));
}

static float *lm_rows(int64_t r0, int64_t n)
{
    float *x = malloc((size_t)(n ? n : 1) * LM_D * sizeof *x);
    ck_assert(x);
    for (int64_t r = 0; r < n; r++) {
        uint64_t row = (uint64_t)(r0 + r) * (LM_D + 1);
        double common = 0.5 * lm_normal(row + LM_D);
        for (int j = 0; j < LM_D; j++)
            x[r * LM_D + j] = (float)(4000.0 + 100.0 * j + common + (0.1 + 0.9 * pow(0.8, j)) * lm_normal(row + j));
    }
    return x;
}

/* Eigenvalues (descending) of (XᵀX − n μμᵀ) / (n − 1) with XᵀX in f32 on the raw rows:
 * the Gram product of scikit-learn's covariance_eigh (the subtraction here in f64,
 * which only helps it). */
static void lm_naive_f32(const float *x, int64_t n, double *lam)
{
    float *g = calloc(LM_D * LM_D, sizeof *g);
    double *c = malloc(LM_D * LM_D * sizeof *c), mu[LM_D] = {0}, w[LM_D];
    ck_assert(g && c);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, LM_D, (int)n, 1.0f, x, LM_D, 0.0f, g, LM_D);
    for (int64_t r = 0; r < n; r++)
        for (int j = 0; j < LM_D; j++) mu[j] += x[r * LM_D + j];
    for (int j = 0; j < LM_D; j++) mu[j] /= (double)n;
    for (int i = 0; i < LM_D; i++)
        for (int j = i; j < LM_D; j++)
            c[i * LM_D + j] = c[j * LM_D + i] = ((double)g[i * LM_D + j] - (double)n * mu[i] * mu[j]) / (double)(n - 1);
    ck_assert(LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'N', 'U', LM_D, c, LM_D, w) == 0);
    for (int i = 0; i < LM_D; i++) lam[i] = w[LM_D - 1 - i];
    free(g), free(c);
}

/* gram = f32 against gram = f64 on those rows (the f64 path meets the goldens to
 * 1e-9 above), at 2 and 4 ranks (ctest): within TOL_F32_LM whatever the rank count;
 * the naive f32 product misses by far more; and rows streamed 7 at a time give the
 * same bits as one call, since the blocks follow the rows, not the calls. */
START_TEST(test_cov_f32_large_mean)
{
    int64_t r0, n;
    tp_test_uneven_slice(LM_N, dist_rank(), dist_size(), &r0, &n);
    float *x = lm_rows(r0, n);
    pca_options o = pca_options_default();
    o.k = 4;
    pca_result r64, r32, rs;
    ck_assert_msg(pca_fit_distributed(x, n, LM_D, MPI_COMM_WORLD, &o, &r64) == TP_OK, "%s", tp_err_msg());
    o.gram = PCA_GRAM_F32;
    ck_assert_msg(pca_fit_distributed(x, n, LM_D, MPI_COMM_WORLD, &o, &r32) == TP_OK, "%s", tp_err_msg());
    pca_accum *acc = NULL;
    ck_assert(pca_accum_init(LM_D, PCA_GRAM_F32, &acc) == TP_OK);
    for (int64_t r = 0; r < n; r += 7)
        ck_assert(pca_accum_add(acc, x + (size_t)r * LM_D, n - r < 7 ? n - r : 7) == TP_OK);
    ck_assert_msg(pca_accum_finish(acc, MPI_COMM_WORLD, &o, &rs) == TP_OK, "%s", tp_err_msg());
    pca_accum_free(acc);
    ck_assert(!memcmp(rs.eigenvalues, r32.eigenvalues, LM_D * sizeof(double)));
    ck_assert(!memcmp(rs.components, r32.components, (size_t)o.k * LM_D * sizeof(double)));

    double e_rel = 0, e_comp = 0, e_mean = 0, e_naive = 0, lam_naive[LM_D];
    for (int i = 0; i < LM_D; i++) e_rel = fmax(e_rel, relerr(r32.eigenvalues[i], r64.eigenvalues[i]));
    for (int64_t i = 0; i < o.k * LM_D; i++) e_comp = fmax(e_comp, fabs(r32.components[i] - r64.components[i]));
    for (int j = 0; j < LM_D; j++) e_mean = fmax(e_mean, relerr(r32.mean[j], r64.mean[j]));
    float *all = lm_rows(0, LM_N);
    lm_naive_f32(all, LM_N, lam_naive);
    free(all);
    for (int i = 0; i < LM_D; i++) e_naive = fmax(e_naive, relerr(lam_naive[i], r64.eigenvalues[i]));
    if (dist_rank() == 0)
        fprintf(stderr, "pca gram=f32 large mean  np=%d  eigenvalues %.1e (naive f32 XtX %.1e)  components %.1e  mean %.1e\n",
                dist_size(), e_rel, e_naive, e_comp, e_mean);
    ck_assert_msg(e_rel <= TOL_F32_LM.lam, "f32 eigenvalues: rel %.3e", e_rel);
    ck_assert_msg(e_comp <= TOL_F32_LM.comp, "f32 components: %.3e", e_comp);
    ck_assert_msg(e_mean <= 1e-12, "f32 mean: rel %.3e", e_mean);
    ck_assert_msg(e_naive > 100 * TOL_F32_LM.lam, "naive f32 eigenvalues: rel %.3e: the rows are too easy", e_naive);
    pca_result_free(&r64), pca_result_free(&r32), pca_result_free(&rs);
    free(x);
}
END_TEST

START_TEST(test_errors)
{
    pca_options o = pca_options_default();
    pca_result r;
    /* k > d */
    o.k = G.d + 1;
    ck_assert(pca_fit_distributed(my_x(), my_rows, G.d, MPI_COMM_WORLD, &o, &r) == TP_ERR_RANGE);
    ck_assert(strstr(tp_err_msg(), "k = 49") != NULL);
    /* d = 0 */
    o.k = 0;
    ck_assert(pca_fit_distributed(my_x(), my_rows, 0, MPI_COMM_WORLD, &o, &r) == TP_ERR_RANGE);
    ck_assert(strstr(tp_err_msg(), "d = 0") != NULL);
    pca_accum *acc = NULL;
    ck_assert(pca_accum_init(0, PCA_GRAM_F64, &acc) == TP_ERR_RANGE);
    /* fewer than 2 rows in all: one row on rank 0, none elsewhere, both methods */
    for (int m = 0; m < 2; m++) {
        o.method = (pca_method)m;
        o.k = 1;
        ck_assert(pca_fit_distributed(my_x(), dist_rank() == 0 ? 1 : 0, G.d, MPI_COMM_WORLD, &o, &r) ==
                  TP_ERR_RANGE);
        ck_assert_msg(strstr(tp_err_msg(), "1 rows in all") != NULL, "%s", tp_err_msg());
    }
    /* a bad argument on one rank only fails every rank, without a hang */
    for (int m = 0; m < 2 && dist_size() > 1; m++) {
        o.method = (pca_method)m;
        tp_status st = pca_fit_distributed(dist_rank() == 1 ? NULL : my_x(), my_rows > 0 ? my_rows : 1, G.d,
                                           MPI_COMM_WORLD, &o, &r);
        ck_assert(st != TP_OK);
        if (dist_rank() == 1) ck_assert_msg(strstr(tp_err_msg(), "NULL") != NULL, "%s", tp_err_msg());
        else ck_assert_msg(strstr(tp_err_msg(), "another rank") != NULL, "%s", tp_err_msg());
    }
    /* method names */
    pca_method pm;
    ck_assert(pca_method_parse("svd", &pm) == TP_OK && pm == PCA_METHOD_SVD);
    ck_assert(pca_method_parse("cov", &pm) == TP_OK && pm == PCA_METHOD_COV);
    ck_assert(pca_method_parse("eig", &pm) == TP_ERR_CONFIG);
    ck_assert(strstr(tp_err_msg(), "'eig'") != NULL);
}
END_TEST

/* The summary numbers on a spectrum known by hand. */
START_TEST(test_summarise)
{
    /* ratios 0.55 0.32 0.09 0.035 0.005: cumulative 0.55 0.87 0.96 0.995 1 */
    double lam[5] = {55, 32, 9, 3.5, 0.5}, ratio[5];
    pca_result r = {.d = 5, .eigenvalues = lam, .explained_variance_ratio = ratio};
    pca_summarise(&r);
    ck_assert_double_eq_tol(r.total_variance, 100, 1e-13);
    ck_assert_int_eq(r.intrinsic_dim_90, 3);
    ck_assert_int_eq(r.intrinsic_dim_95, 3);
    ck_assert_int_eq(r.intrinsic_dim_99, 4);
    ck_assert_double_eq_tol(r.participation_ratio, 1e4 / (3025 + 1024 + 81 + 12.25 + 0.25), 1e-13);
    double h = 0;
    for (int i = 0; i < 5; i++) h -= lam[i] / 100 * log(lam[i] / 100);
    ck_assert_double_eq_tol(r.effective_rank, exp(h), 1e-13);
    /* A negative (rounding) eigenvalue counts as 0 in PR and effective rank. */
    double neg[3] = {2, 2, -1e-17};
    r.d = 3;
    r.eigenvalues = neg;
    pca_summarise(&r);
    ck_assert_double_eq_tol(r.participation_ratio, 2, 1e-14);
    ck_assert_double_eq_tol(r.effective_rank, 2, 1e-14);
    /* Equal eigenvalues: participation ratio and effective rank are the count. */
    double flat[4] = {2, 2, 2, 2};
    r.d = 4;
    r.eigenvalues = flat;
    pca_summarise(&r);
    ck_assert_double_eq_tol(r.participation_ratio, 4, 1e-14);
    ck_assert_double_eq_tol(r.effective_rank, 4, 1e-14);
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
    Suite *s = suite_create("pca");
    TCase *tc = tcase_create("distributed");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_grid_shape);
    tcase_add_test(tc, test_blacs_scatter_gather);
    tcase_add_test(tc, test_summarise);
    tcase_add_test(tc, test_cov_default_grid);
    tcase_add_test(tc, test_svd_default_grid);
    tcase_add_test(tc, test_svd_wide);
    tcase_add_test(tc, test_other_grids);
    tcase_add_test(tc, test_accum_streaming);
    tcase_add_test(tc, test_cov_f32_golden);
    tcase_add_test(tc, test_cov_f32_large_mean);
    tcase_add_test(tc, test_errors);
    suite_add_tcase(s, tc);
    int worst = tp_test_run_suite_mpi(s);
    golden_free();
    dist_finalize();
    return worst;
}
