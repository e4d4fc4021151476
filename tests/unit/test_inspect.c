/* `transpolmo inspect`: singular-value spectra, effective and stable ranks against
 * NumPy (LAPACK gesdd in f64, tools/reference/make_golden_spectra.py), and the
 * parameter count against the checkpoint. Both sides decompose the same f64 copy
 * of the stored weights, so 1e-9 relative leaves room only for LAPACK's own
 * rounding; a wrong head slice (rows vs columns) is off by O(1). */
#include "tp_test.h"

#include "analysis/inspect/inspect_phase.h"
#include "core/config.h"
#include "dist/world.h"

#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

static const char *const models[] = {"olmo2-mha-f32", "olmo2-gqa-bf16", "olmo2-gqa-f16-sharded",
                                     "llama-gqa-tied"};

static void close_enough(double got, double want, double tol, const char *what)
{
    ck_assert_msg(fabs(got - want) <= tol * fabs(want) + 1e-12, "%s: %.12g vs numpy %.12g", what, got, want);
}

static void compare_spec(json_t *got, json_t *want, const char *what)
{
    json_t *gs = json_object_get(got, "singular_values"), *ws = json_object_get(want, "singular_values");
    ck_assert_msg(json_array_size(gs) == json_array_size(ws), "%s: %zu vs %zu values", what,
                  json_array_size(gs), json_array_size(ws));
    for (size_t i = 0; i < json_array_size(ws); i++)
        close_enough(json_number_value(json_array_get(gs, i)), json_number_value(json_array_get(ws, i)),
                     1e-9, what);
    close_enough(json_number_value(json_object_get(got, "effective_rank")),
                 json_number_value(json_object_get(want, "effective_rank")), 1e-9, what);
    close_enough(json_number_value(json_object_get(got, "stable_rank")),
                 json_number_value(json_object_get(want, "stable_rank")), 1e-9, what);
}

START_TEST(test_spectra_match_numpy)
{
    const char *name = models[_i];
    char rel[256];
    tp_config *cfg;
    ck_assert(tp_config_new(&cfg) == TP_OK);
    snprintf(rel, sizeof rel, "models/%s", name);
    ck_assert(tp_config_set(cfg, "model.path", tp_test_data(rel), "test") == TP_OK);
    json_t *doc = NULL;
    ck_assert_msg(inspect_build(cfg, &doc) == TP_OK, "%s", tp_err_msg());
    ck_assert_ptr_nonnull(doc);

    snprintf(rel, sizeof rel, "golden/%s/spectra.json", name);
    json_error_t je;
    json_t *gold = json_load_file(tp_test_data(rel), 0, &je);
    ck_assert_msg(gold, "%s", je.text);
    json_t *gl = json_object_get(gold, "layers"), *dl = json_object_get(doc, "layers");
    ck_assert_int_eq(json_array_size(gl), json_array_size(dl));
    for (size_t L = 0; L < json_array_size(gl); L++) {
        json_t *g = json_array_get(gl, L), *d = json_object_get(json_array_get(dl, L), "spectra");
        const char *keys[] = {"W_Q", "W_K", "W_V", "W_O"};
        for (int k = 0; k < 4; k++) {
            json_t *ga = json_object_get(g, keys[k]), *da = json_object_get(d, keys[k]);
            ck_assert_int_eq(json_array_size(ga), json_array_size(da));
            for (size_t h = 0; h < json_array_size(ga); h++) {
                char what[128];
                snprintf(what, sizeof what, "%s layer %zu %s head %zu", name, L, keys[k], h);
                compare_spec(json_array_get(da, h), json_array_get(ga, h), what);
            }
        }
        const char *mlp[] = {"mlp_gate_proj", "mlp_up_proj", "mlp_down_proj"};
        for (int k = 0; k < 3; k++)
            compare_spec(json_object_get(d, mlp[k]), json_object_get(g, mlp[k]), mlp[k]);
    }

    /* Parameter count = the elements the checkpoint stores (tied: no lm_head). */
    json_int_t total = json_integer_value(json_object_get(json_object_get(doc, "parameters"), "total"));
    json_t *by = json_object_get(json_object_get(doc, "checkpoint"), "parameters_by_dtype");
    json_int_t stored = 0;
    const char *k;
    json_t *v;
    json_object_foreach(by, k, v) stored += json_integer_value(v);
    ck_assert_int_eq(total, stored);
    json_decref(gold);
    json_decref(doc);
    tp_config_free(cfg);
}
END_TEST

int main(int argc, char **argv)
{
    dist_init(&argc, &argv);
    Suite *s = suite_create("inspect");
    TCase *tc = tcase_create("spectra");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_spectra_match_numpy, 0, 4);
    suite_add_tcase(s, tc);
    int rc = tp_test_run_suite_nofork(s);
    dist_finalize();
    return rc;
}
