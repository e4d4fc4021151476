/* MPI: data-parallel SAE training (sae_train_step over MPI_COMM_WORLD) against the
 * same SAE trained by one process on the whole global batch (MPI_COMM_NULL), for
 * relu, topk (with AuxK) and batchtopk (global threshold, with AuxK). Each rank
 * holds a contiguous, uneven slice of the 50 rows (with 4 ranks, rank 1 has none).
 * Run by ctest with 2 and 4 ranks; every rank checks its own copy.
 *
 * Tolerances. Both sides compute the same f32 sums, grouped differently: the
 * gradient is a sum of per-rank partial sums, the stats are f64 sums reassociated.
 *  - input scale relative 1e-12; the geometric median (f64, rounded to f32) 1e-6 of
 *    max|b_dec|: Weiszfeld stops at a relative step of 1e-7, and reassociated sums
 *    may stop it one iteration apart.
 *  - after 6 steps: parameters and Adam moments max|dp − one| / max|one| ≤ 1e-5
 *    (f32 reassociation, ~1e-7, lightly amplified by Adam's normalisation);
 *    per-step loss terms relative 1e-5; L0, dead and dense fractions, since_fired
 *    exact (the selections are the same).
 *  - the ranks' copies are bit-identical (one MPI_Allreduce result, one update).
 */
#include "tp_test.h"

#include "analysis/sae/sae.h"
#include "dist/world.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N = 50, D = 16, F = 48, STEPS = 6 };

static float X[N * D];
static int64_t row0, nrows;

static uint64_t rng_state = 777;
static double urand(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return (double)((z ^ (z >> 31)) >> 11) * 0x1.0p-53;
}
static double nrand(void) { return sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()); }

/* Sparse codes over 30 random directions plus an offset: the same on every rank. */
static void make_data(void)
{
    static double dirs[30 * D];
    for (int i = 0; i < 30 * D; i++) dirs[i] = nrand() / sqrt((double)D);
    for (int n = 0; n < N; n++) {
        for (int j = 0; j < D; j++) X[n * D + j] = (float)(0.05 * nrand() + (j % 4 == 0 ? 1.0 : 0.0));
        for (int a = 0; a < 3; a++) {
            int c = (int)(urand() * 30);
            double v = 1 + 2 * urand();
            for (int j = 0; j < D; j++) X[n * D + j] += (float)(v * dirs[c * D + j]);
        }
    }
}

/* Uneven slices: 2 ranks 30 + 20; P ≥ 3: rank 1 none, the rest split the rows. */
static void my_slice(void)
{
    const int r = dist_rank(), P = dist_size();
    if (P == 1) {
        row0 = 0, nrows = N;
    } else if (P == 2) {
        row0 = r == 0 ? 0 : 30, nrows = r == 0 ? 30 : 20;
    } else {
        int64_t others = P - 1, k = r == 0 ? 0 : r - 1;   /* index among the non-empty ranks */
        if (r == 1) {
            row0 = 0, nrows = 0;
            return;
        }
        row0 = N * k / others;
        nrows = N * (k + 1) / others - row0;
    }
}

static double rel_diff(const float *a, const float *b, size_t n)
{
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        s = fmax(s, fabs((double)b[i]));
        e = fmax(e, fabs((double)a[i] - (double)b[i]));
    }
    return s > 0 ? e / s : e;
}

static void rel_ok(const char *arch, int step, const char *what, double dp, double one, double tol)
{
    ck_assert_msg(fabs(dp - one) <= tol * fmax(fabs(one), 1e-30), "[rank %d] %s step %d: %s dp %.9g, one %.9g",
                  dist_rank(), arch, step, what, dp, one);
}

static void run_arch(sae_arch arch)
{
    const char *an = sae_arch_name(arch);
    sae_config c = sae_config_default(arch, D, F);
    c.k = 4, c.aux_k = arch == SAE_RELU ? 0 : 6, c.dead_tokens = N, c.total_steps = 8;
    c.lr = 1e-3, c.lr_warmup_frac = 0.25, c.l1_coef = 0.3, c.l1_warmup_frac = 0.5, c.max_grad_norm = 0.5;
    c.threshold_lr = 0.2;
    sae_model one, dp;
    ck_assert_int_eq(sae_init(&one, &c, N), TP_OK);
    ck_assert_int_eq(sae_init(&dp, &c, nrows > 0 ? nrows : 1), TP_OK);
    ck_assert_int_eq(sae_init_weights(&one, 42), TP_OK);
    ck_assert_int_eq(sae_init_weights(&dp, 42), TP_OK);
    const float *mine = X + row0 * D;

    ck_assert_int_eq(sae_compute_input_scale(X, N, D, MPI_COMM_NULL, &one.input_scale), TP_OK);
    ck_assert_int_eq(sae_compute_input_scale(mine, nrows, D, MPI_COMM_WORLD, &dp.input_scale), TP_OK);
    ck_assert_msg(fabs(dp.input_scale - one.input_scale) <= 1e-12 * one.input_scale, "input scale %.15g vs %.15g",
                  dp.input_scale, one.input_scale);
    ck_assert_int_eq(sae_init_b_dec(&one, X, N, MPI_COMM_NULL, SAE_BDEC_GEOMETRIC_MEDIAN, 100), TP_OK);
    ck_assert_int_eq(sae_init_b_dec(&dp, mine, nrows, MPI_COMM_WORLD, SAE_BDEC_GEOMETRIC_MEDIAN, 100), TP_OK);
    double e = rel_diff(dp.b_dec, one.b_dec, D);
    ck_assert_msg(e <= 1e-6, "[rank %d] b_dec (geometric median) differs by %.3g", dist_rank(), e);
    for (int i = 0; i < F; i += 4) one.since_fired[i] = dp.since_fired[i] = 5 * N;   /* dead from the start */

    for (int s = 0; s < STEPS; s++) {
        sae_metrics a, b;
        ck_assert_msg(sae_train_step(&one, X, N, MPI_COMM_NULL, &a) == TP_OK, "%s", tp_err_msg());
        ck_assert_msg(sae_train_step(&dp, mine, nrows, MPI_COMM_WORLD, &b) == TP_OK, "%s", tp_err_msg());
        ck_assert_int_eq(b.rows, N);
        rel_ok(an, s, "loss", b.loss, a.loss, 1e-5);
        rel_ok(an, s, "recon", b.recon, a.recon, 1e-5);
        rel_ok(an, s, "l1", b.l1, a.l1, 1e-5);
        rel_ok(an, s, "aux", b.aux, a.aux, 1e-5);
        rel_ok(an, s, "fvu", b.fvu, a.fvu, 1e-5);
        rel_ok(an, s, "grad_norm", b.grad_norm, a.grad_norm, 1e-5);
        rel_ok(an, s, "threshold", b.threshold, a.threshold, 1e-5);
        ck_assert(b.l0 == a.l0 && b.dead_frac == a.dead_frac && b.dense_frac == a.dense_frac);
        if (arch != SAE_RELU && s == 0) ck_assert_msg(a.aux > 0, "AuxK not exercised");
    }
    const size_t P = (size_t)one.n_params;
    e = rel_diff(dp.params, one.params, P);
    ck_assert_msg(e <= 1e-5, "[rank %d] %s: parameters differ by %.3g after %d steps", dist_rank(), an, e, STEPS);
    e = rel_diff(dp.adam_m, one.adam_m, P);
    ck_assert_msg(e <= 1e-5, "[rank %d] %s: Adam m differs by %.3g", dist_rank(), an, e);
    e = rel_diff(dp.adam_v, one.adam_v, P);
    ck_assert_msg(e <= 1e-5, "[rank %d] %s: Adam v differs by %.3g", dist_rank(), an, e);
    ck_assert(memcmp(dp.since_fired, one.since_fired, F * sizeof(int64_t)) == 0);
    ck_assert_int_eq(dp.step, STEPS);

    /* every rank holds the same bits */
    float *root = malloc(P * sizeof *root);
    ck_assert(root);
    memcpy(root, dp.params, P * sizeof *root);
    ck_assert_int_eq(MPI_Bcast(root, (int)P, MPI_FLOAT, 0, MPI_COMM_WORLD), MPI_SUCCESS);
    ck_assert_msg(memcmp(root, dp.params, P * sizeof *root) == 0, "[rank %d] %s: parameters differ from rank 0's",
                  dist_rank(), an);
    double th = dp.threshold;
    ck_assert_int_eq(MPI_Bcast(&th, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD), MPI_SUCCESS);
    ck_assert(th == dp.threshold);
    free(root);
    sae_free(&one);
    sae_free(&dp);
}

START_TEST(test_dp_relu) { run_arch(SAE_RELU); }
END_TEST
START_TEST(test_dp_topk) { run_arch(SAE_TOPK); }
END_TEST
START_TEST(test_dp_batchtopk) { run_arch(SAE_BATCHTOPK); }
END_TEST

/* A bad local batch on rank 0 fails every rank (no hang), naming the cause there. */
START_TEST(test_dp_error)
{
    sae_config c = sae_config_default(SAE_TOPK, D, F);
    c.k = 4;
    sae_model m;
    ck_assert_int_eq(sae_init(&m, &c, 8), TP_OK);
    ck_assert_int_eq(sae_init_weights(&m, 1), TP_OK);
    int64_t n = dist_rank() == 0 ? 9 : 2;
    tp_status st = sae_train_step(&m, X, n, MPI_COMM_WORLD, NULL);
    if (dist_rank() == 0) {
        ck_assert_int_eq(st, TP_ERR_RANGE);
    } else {
        ck_assert_int_eq(st, TP_ERR_MPI);
        ck_assert(strstr(tp_err_msg(), "another rank failed") != NULL);
    }
    /* and the model still works afterwards */
    ck_assert_int_eq(sae_train_step(&m, X, 2, MPI_COMM_WORLD, NULL), TP_OK);
    sae_free(&m);
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 2;
    make_data();
    my_slice();
    Suite *s = suite_create("sae_dp");
    TCase *tc = tcase_create("data_parallel");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_dp_relu);
    tcase_add_test(tc, test_dp_topk);
    tcase_add_test(tc, test_dp_batchtopk);
    tcase_add_test(tc, test_dp_error);
    suite_add_tcase(s, tc);
    int worst = tp_test_run_suite_mpi(s);
    dist_finalize();
    return worst;
}
