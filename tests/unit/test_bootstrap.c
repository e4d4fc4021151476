/* test_bootstrap.c — percentile bootstrap intervals of a mean (core/bootstrap.h): the
 * interval of a large normal sample is mean ± 1.96·s/√n (the normal-theory interval
 * the bootstrap approximates, within 10 % of its half-width), the same seed gives the
 * same interval, and the edge cases. */
#include "core/bootstrap.h"
#include "core/sample.h"
#include "tp_test.h"

#include <math.h>
#include <stdlib.h>

START_TEST(test_normal_theory)
{
    enum { N = 400 };
    double x[N], sum = 0, ss = 0;
    uint64_t st = 5;
    for (int i = 0; i < N; i += 2) {   /* Box–Muller */
        double u = tp_rng_unit(&st), v = tp_rng_unit(&st), r = sqrt(-2 * log(1 - u));
        x[i] = 3 + 2 * r * cos(2 * M_PI * v), x[i + 1] = 3 + 2 * r * sin(2 * M_PI * v);
    }
    for (int i = 0; i < N; i++) sum += x[i];
    double mean = sum / N;
    for (int i = 0; i < N; i++) ss += (x[i] - mean) * (x[i] - mean);
    double half = 1.96 * sqrt(ss / (N - 1)) / sqrt((double)N);
    tp_ci ci;
    ck_assert_int_eq(tp_bootstrap_mean(x, N, 4000, 0.95, 11, &ci), TP_OK);
    ck_assert(fabs(ci.mean - mean) < 1e-12);
    ck_assert_msg(fabs((ci.hi - ci.lo) / 2 - half) < 0.1 * half, "half-width %g vs %g", (ci.hi - ci.lo) / 2, half);
    ck_assert(ci.lo < mean && mean < ci.hi);
    ck_assert_int_eq((int)ci.n, N);
    tp_ci again;
    ck_assert_int_eq(tp_bootstrap_mean(x, N, 4000, 0.95, 11, &again), TP_OK);
    ck_assert(again.lo == ci.lo && again.hi == ci.hi);
    tp_ci other;   /* another seed: another interval, about as wide */
    ck_assert_int_eq(tp_bootstrap_mean(x, N, 4000, 0.95, 12, &other), TP_OK);
    ck_assert(other.lo != ci.lo);
    /* a 50 % interval is narrower */
    tp_ci narrow;
    ck_assert_int_eq(tp_bootstrap_mean(x, N, 4000, 0.5, 11, &narrow), TP_OK);
    ck_assert(narrow.hi - narrow.lo < 0.5 * (ci.hi - ci.lo));
}
END_TEST

START_TEST(test_edges)
{
    tp_ci ci;
    double one = 2.5, same[5] = {1, 1, 1, 1, 1};
    ck_assert_int_eq(tp_bootstrap_mean(&one, 1, 100, 0.95, 1, &ci), TP_OK);
    ck_assert(ci.mean == 2.5 && ci.lo == 2.5 && ci.hi == 2.5);
    ck_assert_int_eq(tp_bootstrap_mean(same, 5, 100, 0.95, 1, &ci), TP_OK);
    ck_assert(ci.lo == 1 && ci.hi == 1);
    ck_assert_int_eq(tp_bootstrap_mean(NULL, 0, 100, 0.95, 1, &ci), TP_OK);
    ck_assert(isnan(ci.mean) && isnan(ci.lo) && ci.n == 0);
    TP_ASSERT_FAILS(tp_bootstrap_mean(same, 5, 0, 0.95, 1, &ci), TP_ERR_RANGE, "resamples");
    TP_ASSERT_FAILS(tp_bootstrap_mean(same, 5, 10, 1.0, 1, &ci), TP_ERR_RANGE, "level");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bootstrap");
    TCase *tc = tcase_create("ci");
    tcase_add_test(tc, test_normal_theory);
    tcase_add_test(tc, test_edges);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
