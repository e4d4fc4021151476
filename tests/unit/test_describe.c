/* test_describe.c — the rule explainer of verify (analysis/verify/describe.h):
 * the detection scores against scikit-learn (accuracy_score, precision_score,
 * recall_score, f1_score, zero_division=0) and the simulation score against NumPy's
 * corrcoef on seeded cases (tools/reference/make_golden_describe.py →
 * tests/data/golden/describe/golden.json; both within 1e-12: the same f64 sums up to
 * their order), and rules fitted on hand-made activations: which keys they keep,
 * their predicted activations, the kind desc_choose picks, the window-level detection
 * and token-level simulation they score. */
#include "analysis/verify/describe.h"
#include "tp_test.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>

static json_t *golden(void)
{
    json_error_t e;
    json_t *g = json_load_file(tp_test_data("golden/describe/golden.json"), 0, &e);
    ck_assert_msg(g != NULL, "golden: %s", e.text);
    return g;
}

START_TEST(test_binary_scores_match_sklearn)
{
    json_t *g = golden(), *v;
    size_t i;
    json_array_foreach(json_object_get(g, "binary"), i, v) {
        json_t *t = json_object_get(v, "truth"), *p = json_object_get(v, "pred");
        size_t n = json_array_size(t);
        uint8_t *tt = malloc(n + 1), *pp = malloc(n + 1);
        for (size_t k = 0; k < n; k++)
            tt[k] = (uint8_t)json_integer_value(json_array_get(t, k)), pp[k] = (uint8_t)json_integer_value(json_array_get(p, k));
        desc_detection d;
        desc_binary_scores(pp, tt, (int64_t)n, &d);
        ck_assert_int_eq(d.n, (int64_t)n);
        ck_assert_int_eq(d.tp + d.fp + d.tn + d.fn, (int64_t)n);
        const char *k[4] = {"accuracy", "precision", "recall", "f1"};
        double got[4] = {d.accuracy, d.precision, d.recall, d.f1};
        for (int j = 0; j < 4; j++)
            ck_assert_msg(fabs(got[j] - json_number_value(json_object_get(v, k[j]))) < 1e-12, "case %zu %s: %.17g vs %.17g",
                          i, k[j], got[j], json_number_value(json_object_get(v, k[j])));
        free(tt), free(pp);
    }
    json_decref(g);
}
END_TEST

START_TEST(test_pearson_matches_numpy)
{
    json_t *g = golden(), *v;
    size_t i;
    json_array_foreach(json_object_get(g, "correlation"), i, v) {
        json_t *x = json_object_get(v, "x"), *y = json_object_get(v, "y");
        size_t n = json_array_size(x);
        double *xx = malloc(n * sizeof *xx), *yy = malloc(n * sizeof *yy);
        for (size_t k = 0; k < n; k++)
            xx[k] = json_number_value(json_array_get(x, k)), yy[k] = json_number_value(json_array_get(y, k));
        double r = desc_pearson(xx, yy, (int64_t)n), want = json_number_value(json_object_get(v, "r"));
        ck_assert_msg(fabs(r - want) < 1e-12, "case %zu: %.17g vs %.17g", i, r, want);
        free(xx), free(yy);
    }
    json_decref(g);
    double c[3] = {1, 1, 1}, d[3] = {1, 2, 3};
    ck_assert(isnan(desc_pearson(c, d, 3)));   /* a constant: NumPy's nan */
    ck_assert(isnan(desc_pearson(d, d, 1)));
}
END_TEST

/* Token rule: 5 always fires (2.0), 7 fires half the time (1.0), 3 once in four. */
START_TEST(test_token_rule)
{
    int32_t t1[4] = {5, 7, 3, 1}, t2[4] = {7, 3, 5, 3}, t3[4] = {3, 1, 1, 1};
    float a1[4] = {2, 1, 0.5f, 0}, a2[4] = {0, 0, 2, 0}, a3[4] = {0, 0, 0, 0};
    desc_window w[3] = {{t1, a1, 4, -1, 0}, {t2, a2, 4, 8, 0}, {t3, a3, 4, -1, 1}};
    desc_rule r;
    ck_assert_int_eq(desc_fit(w, 3, DESC_TOKEN, 0.5, &r), TP_OK);
    ck_assert_int_eq(r.n, 2);
    ck_assert_int_eq(r.e[0].key, 5);
    ck_assert_int_eq(r.e[1].key, 7);
    ck_assert(fabs(r.e[0].pred - 2.0) < 1e-12 && r.e[0].count == 2 && r.e[0].fires == 2);
    ck_assert(fabs(r.e[1].pred - 0.5) < 1e-12 && r.e[1].count == 2 && r.e[1].fires == 1);
    ck_assert(desc_lookup(&r, &w[0], 2) == NULL);   /* token 3: precision 1/4 < 0.5 */
    ck_assert(desc_lookup(&r, &w[1], 0) == &r.e[1]);
    int order[2];
    desc_rule_order(&r, order);
    ck_assert(order[0] == 0 && order[1] == 1);      /* mass 4 before 1 */
    /* detection: windows 1 and 2 fire and hold 5 or 7; window 3 neither */
    desc_detection d;
    ck_assert_int_eq(desc_detect(&r, w, 3, &d), TP_OK);
    ck_assert(d.tp == 2 && d.tn == 1 && d.fp == 0 && d.fn == 0 && d.f1 == 1.0 && d.accuracy == 1.0);
    /* simulation by hand: predictions p and truths a over the 12 positions */
    double p[12] = {2, .5, 0, 0, .5, 0, 2, 0, 0, 0, 0, 0}, a[12] = {2, 1, .5, 0, 0, 0, 2, 0, 0, 0, 0, 0};
    desc_simulation s;
    ck_assert_int_eq(desc_simulate(&r, w, 3, &s), TP_OK);
    ck_assert_int_eq(s.n, 12);
    ck_assert(fabs(s.correlation - desc_pearson(p, a, 12)) < 1e-15);
    desc_rule_free(&r);
    /* a stricter precision keeps 5 alone */
    ck_assert_int_eq(desc_fit(w, 3, DESC_TOKEN, 0.9, &r), TP_OK);
    ck_assert(r.n == 1 && r.e[0].key == 5);
    desc_rule_free(&r);
}
END_TEST

/* Fires on 9 after 4 only; 9 after 1 (and at a window start after prev 1) does not:
 * the token rule cannot say it (9 fires 2 times in 5), the bigram rule can. */
START_TEST(test_bigram_chosen)
{
    int32_t t1[3] = {4, 9, 2}, t2[3] = {1, 9, 2}, t3[2] = {9, 9}, t4[3] = {2, 4, 9}, t5[2] = {2, 2};
    float a1[3] = {0, 3, 0}, a2[3] = {0, 0, 0}, a3[2] = {0, 0}, a4[3] = {0, 0, 1}, a5[2] = {0, 0};
    desc_window w[5] = {{t1, a1, 3, -1, 0}, {t2, a2, 3, -1, 0}, {t3, a3, 2, 1, 0}, {t4, a4, 3, -1, 0}, {t5, a5, 2, -1, 0}};
    desc_rule tok, r;
    ck_assert_int_eq(desc_fit(w, 5, DESC_TOKEN, 0.5, &tok), TP_OK);
    ck_assert_int_eq(tok.n, 0);
    desc_rule_free(&tok);
    ck_assert_int_eq(desc_choose(w, 5, 0.5, &r), TP_OK);
    ck_assert_int_eq(r.kind, DESC_BIGRAM);
    ck_assert_int_eq(r.n, 1);
    int32_t first, second;
    desc_bigram_tokens(r.e[0].key, &first, &second);
    ck_assert(first == 4 && second == 9 && fabs(r.e[0].pred - 2.0) < 1e-12);
    ck_assert(desc_key(DESC_BIGRAM, &w[2], 0) != r.e[0].key);   /* the window's prev (1) counts */
    desc_bigram_tokens(desc_key(DESC_BIGRAM, &w[0], 0), &first, &second);
    ck_assert(first == -1 && second == 4);                     /* a sequence start */
    desc_detection d;
    ck_assert_int_eq(desc_detect(&r, w, 5, &d), TP_OK);
    ck_assert(d.tp == 2 && d.tn == 3 && d.f1 == 1.0);
    desc_rule_free(&r);
}
END_TEST

/* Fires on every token of domain 2 and nowhere else: the domain rule. A rule that
 * never fires scores F1 0 and an undefined correlation. */
START_TEST(test_domain_rule_and_empty)
{
    int32_t t1[2] = {1, 2}, t2[2] = {1, 2}, t3[2] = {3, 4};
    float a1[2] = {1, 1}, a2[2] = {0, 0}, a3[2] = {1, 3};
    desc_window w[3] = {{t1, a1, 2, -1, 2}, {t2, a2, 2, -1, 0}, {t3, a3, 2, -1, 2}};
    desc_rule r;
    ck_assert_int_eq(desc_choose(w, 3, 0.5, &r), TP_OK);
    ck_assert_int_eq(r.kind, DESC_DOMAIN);
    ck_assert(r.n == 1 && r.e[0].key == 2 && fabs(r.e[0].pred - 1.5) < 1e-12);
    desc_rule_free(&r);
    float z[2] = {0, 0};
    desc_window none[2] = {{t1, z, 2, -1, 0}, {t3, z, 2, -1, 1}};
    ck_assert_int_eq(desc_fit(none, 2, DESC_TOKEN, 0.5, &r), TP_OK);
    ck_assert_int_eq(r.n, 0);
    desc_detection d;
    desc_simulation s;
    ck_assert_int_eq(desc_detect(&r, w, 3, &d), TP_OK);
    ck_assert(d.f1 == 0 && d.precision == 0 && d.recall == 0 && d.fn == 2 && d.tn == 1);
    ck_assert_int_eq(desc_simulate(&r, w, 3, &s), TP_OK);
    ck_assert(isnan(s.correlation) && s.n == 6);
    desc_rule_free(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("describe");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_binary_scores_match_sklearn);
    tcase_add_test(tc, test_pearson_matches_numpy);
    tcase_add_test(tc, test_token_rule);
    tcase_add_test(tc, test_bigram_chosen);
    tcase_add_test(tc, test_domain_rule_and_empty);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
