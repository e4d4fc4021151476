/* test_transparency.c — the transparency score's arithmetic (report/transparency.h)
 * on cases computed by hand in the comments. */
#include "tp_test.h"

#include "report/transparency.h"

#include <math.h>

#define EPS 1e-12

START_TEST(test_energy)
{
    ck_assert_double_eq_tol(transparency_feature_energy(10, 2.0), 40.0, EPS);   /* 10 · 2² */
    ck_assert_double_eq_tol(transparency_feature_energy(0, 2.0), 0.0, EPS);     /* dead */
    ck_assert_double_eq_tol(transparency_feature_energy(5, NAN), 0.0, EPS);     /* no mean */
}
END_TEST

START_TEST(test_nothing_measured)
{
    /* no SAEs, no heads covered, no geometry: every term 0, also with no layers at all */
    transparency_inputs in = {.n_layers = 2, .n_heads = 4};
    transparency_result r;
    transparency_compute(&in, &r);
    ck_assert_double_eq_tol(r.score, 0.0, EPS);
    ck_assert_int_eq(r.heads_total, 8);
    transparency_inputs none = {0};
    transparency_compute(&none, &r);
    ck_assert_double_eq_tol(r.score, 0.0, EPS);
    ck_assert(isfinite(r.layer_understanding));
}
END_TEST

START_TEST(test_geometry_only)
{
    /* 2 layers both labelled, nothing verified: U = mean(1/3, 1/3) = 1/3, S = 1/9 —
     * the bundled run without a verification */
    uint8_t typed[2] = {1, 1};
    transparency_inputs in = {.n_layers = 2, .n_heads = 4, .geometry_typed = typed};
    transparency_result r;
    transparency_compute(&in, &r);
    ck_assert_double_eq_tol(r.layer_understanding, 1.0 / 3, EPS);
    ck_assert_double_eq_tol(r.score, 1.0 / 9, EPS);
}
END_TEST

START_TEST(test_hand_case)
{
    /* 2 layers × 2 heads.
     * SAE A (layer 0, residual): ev 0.8, E_live 100, E_ver 50 → share 0.4; live 10, described 4
     * SAE B (layer 1, MLP out): ev 1.2 (clipped to 1), E_live 10, E_ver 6 → share 0.6 ≥ 0.5:
     *   MLP 1 explained by features; live 10, described 1
     * V = (0.4 + 0.6)/2 = 0.5; D = 5/20 = 0.25; F = 0.375
     * heads covered: L0H1 and L1H0 → Hc = 2/4 = 0.5; MLP 0 in a verified circuit, MLP 1 by
     * features → M = 1; C = 0.75
     * layer 0: g 1, s 0.4, c (1 head + MLP)/3 = 2/3 → u0 = (1 + 0.4 + 2/3)/3
     * layer 1: g 0, s 0.6, c (1 + 1)/3 = 2/3     → u1 = (0 + 0.6 + 2/3)/3
     * U = (u0 + u1)/2 = (1 + 1 + 4/3)/6 = 5/9
     * S = (0.375 + 0.75 + 5/9)/3 */
    transparency_sae saes[2] = {
        {.layer = 0, .mlp_point = 0, .explained_variance = 0.8, .energy_live = 100, .energy_verified = 50, .n_live = 10,
         .n_described = 4},
        {.layer = 1, .mlp_point = 1, .explained_variance = 1.2, .energy_live = 10, .energy_verified = 6, .n_live = 10,
         .n_described = 1},
    };
    uint8_t covered[4] = {0, 1, 1, 0}, mlp[2] = {1, 0}, typed[2] = {1, 0};
    transparency_inputs in = {.n_layers = 2, .n_heads = 2, .saes = saes, .n_saes = 2, .head_covered = covered,
                              .mlp_in_circuit = mlp, .geometry_typed = typed};
    transparency_result r;
    transparency_compute(&in, &r);
    ck_assert_double_eq_tol(transparency_sae_verified_share(&saes[0]), 0.4, EPS);
    ck_assert_double_eq_tol(transparency_sae_verified_share(&saes[1]), 0.6, EPS);
    ck_assert_double_eq_tol(r.variance_explained, 0.5, EPS);
    ck_assert_double_eq_tol(r.described_fraction, 0.25, EPS);
    ck_assert_double_eq_tol(r.feature_coverage, 0.375, EPS);
    ck_assert_int_eq(r.heads_covered, 2);
    ck_assert_double_eq_tol(r.heads_fraction, 0.5, EPS);
    ck_assert_int_eq(r.mlp_explained, 2);
    ck_assert_double_eq_tol(r.circuit_coverage, 0.75, EPS);
    double g, s, c;
    ck_assert_double_eq_tol(transparency_layer(&in, 0, &g, &s, &c), (1 + 0.4 + 2.0 / 3) / 3, EPS);
    ck_assert_double_eq_tol(g + s + c, 1 + 0.4 + 2.0 / 3, EPS);
    ck_assert_double_eq_tol(transparency_layer(&in, 1, NULL, NULL, NULL), (0.6 + 2.0 / 3) / 3, EPS);
    ck_assert_double_eq_tol(r.layer_understanding, 5.0 / 9, EPS);
    ck_assert_double_eq_tol(r.score, (0.375 + 0.75 + 5.0 / 9) / 3, EPS);
}
END_TEST

START_TEST(test_everything)
{
    /* every feature verified and described, every head and MLP covered, every layer
     * labelled, SAEs that reconstruct exactly: S = 1 */
    transparency_sae s = {.layer = 0, .explained_variance = 1, .energy_live = 3, .energy_verified = 3, .n_live = 7,
                          .n_described = 7};
    uint8_t covered[3] = {1, 1, 1}, mlp[1] = {1}, typed[1] = {1};
    transparency_inputs in = {.n_layers = 1, .n_heads = 3, .saes = &s, .n_saes = 1, .head_covered = covered,
                              .mlp_in_circuit = mlp, .geometry_typed = typed};
    transparency_result r;
    transparency_compute(&in, &r);
    ck_assert_double_eq_tol(r.score, 1.0, EPS);
}
END_TEST

START_TEST(test_bounds)
{
    /* described above live is capped; an MLP SAE below the bar does not explain its layer;
     * a residual SAE above it does not either (only MLP points count for M) */
    transparency_sae saes[2] = {
        {.layer = 0, .mlp_point = 1, .explained_variance = 0.5, .energy_live = 10, .energy_verified = 4.9, .n_live = 2,
         .n_described = 5},
        {.layer = 0, .mlp_point = 0, .explained_variance = 0.5, .energy_live = 10, .energy_verified = 10, .n_live = 2,
         .n_described = 0},
    };
    transparency_inputs in = {.n_layers = 1, .n_heads = 1, .saes = saes, .n_saes = 2};
    transparency_result r;
    transparency_compute(&in, &r);
    ck_assert_double_eq_tol(r.described_fraction, 0.5, EPS);   /* min(5, 2) / 4 */
    ck_assert_int_eq(r.mlp_explained, 0);
    /* V = (0.5 · 0.49 + 0.5 · 1)/2 */
    ck_assert_double_eq_tol(r.variance_explained, (0.245 + 0.5) / 2, EPS);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("transparency");
    TCase *tc = tcase_create("score");
    tcase_add_test(tc, test_energy);
    tcase_add_test(tc, test_nothing_measured);
    tcase_add_test(tc, test_geometry_only);
    tcase_add_test(tc, test_hand_case);
    tcase_add_test(tc, test_everything);
    tcase_add_test(tc, test_bounds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tp_test_run_suite(suite()); }
