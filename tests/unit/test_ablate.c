/* test_ablate.c — interventions against PyTorch hooks on the bundled model
 * (tests/data/golden/ablate, tools/reference/make_golden_ablate.py): zero and steered
 * heads, a zeroed MLP, zeroed neurons, zeroed and steered SAE features; and the
 * parsing of the target lists with their errors. */
#include "analysis/verify/ablate.h"
#include "core/fsutil.h"
#include "dist/world.h"
#include "model/model.h"
#include "tp_test.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The C forward pass agrees with transformers to ~1e-5 relative on logits (test_forward);
 * the metrics are sums of log-probabilities over <= 20 positions, so 1e-4 absolute plus
 * 1e-3 relative covers f32 rounding and nothing structural. */
#define ABS_TOL 1e-4
#define REL_TOL 1e-3

static tp_model *g_model;
static json_t *g_golden;

static tp_status golden_sae_dir(char *buf, size_t n, const char *hook, void *user)
{
    (void)user;
    ck_assert_str_eq(hook, "blocks.2.hook_resid_post");
    return fs_path(buf, n, "%s", tp_test_data("golden/ablate/sae"));
}

static void setup(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/olmo2-tiny", getenv("TP_SOURCE_DIR"));
    ck_assert_int_eq(model_open(path, TP_CONVERT_PER_MATRIX, &g_model), TP_OK);
    json_error_t e;
    g_golden = json_load_file(tp_test_data("golden/ablate/golden.json"), 0, &e);
    ck_assert_msg(g_golden != NULL, "%s", e.text);
}

static void teardown(void)
{
    model_close(g_model);
    json_decref(g_golden);
}

static tp_sequences golden_prompts(int *maxT)
{
    tp_sequences s = {0};
    json_t *ps = json_object_get(g_golden, "prompt_ids");
    size_t n = json_array_size(ps), tot = 0;
    for (size_t i = 0; i < n; i++) tot += json_array_size(json_array_get(ps, i));
    s.tokens = malloc(tot * sizeof *s.tokens);
    s.seq_start = malloc((n + 1) * sizeof *s.seq_start);
    s.n_seqs = n, s.n_tokens = tot, s.seq_start[0] = 0, *maxT = 0;
    for (size_t i = 0, k = 0; i < n; i++) {
        json_t *p = json_array_get(ps, i);
        for (size_t j = 0; j < json_array_size(p); j++) s.tokens[k++] = (int32_t)json_integer_value(json_array_get(p, j));
        s.seq_start[i + 1] = k;
        if ((int)json_array_size(p) > *maxT) *maxT = (int)json_array_size(p);
    }
    return s;
}

static const char *opt(json_t *c, const char *key)
{
    return json_string_value(json_object_get(c, key));   /* NULL for JSON null */
}

static void close_to(double c, double ref, const char *what, const char *cs, size_t p)
{
    ck_assert_msg(fabs(c - ref) <= ABS_TOL + REL_TOL * fabs(ref), "%s prompt %zu %s: C %.8g, PyTorch %.8g", cs, p, what,
                  c, ref);
}

static void check_case(const char *name)
{
    json_t *c = json_object_get(json_object_get(g_golden, "cases"), name);
    ck_assert_ptr_nonnull(c);
    iv_target *t = NULL;
    int n = 0;
    ck_assert_int_eq(iv_parse(&g_model->cfg, opt(c, "heads"), opt(c, "features"), opt(c, "mlp"), opt(c, "neurons"), &t, &n),
                     TP_OK);
    iv_mode mode = IV_STEER;
    if (strcmp(opt(c, "mode"), "steer")) ck_assert_int_eq(iv_mode_parse(opt(c, "mode"), &mode), TP_OK);
    iv_set *s = NULL;
    ck_assert_msg(iv_new(g_model, t, n, mode, json_number_value(json_object_get(c, "alpha")), golden_sae_dir, NULL, &s) ==
                      TP_OK, "%s", tp_err_msg());
    int maxT;
    tp_sequences ps = golden_prompts(&maxT);
    json_t *ch = json_object_get(g_golden, "chosen_ids");
    int nch = (int)json_array_size(ch);
    int32_t chosen[8];
    for (int j = 0; j < nch; j++) chosen[j] = (int32_t)json_integer_value(json_array_get(ch, j));
    tp_forward *f;
    ck_assert_int_eq(forward_new(g_model, 1, maxT, &f), TP_OK);
    int w = ablate_row_width(nch);
    double *rows = calloc(ps.n_seqs * (size_t)w, sizeof *rows);
    ck_assert_msg(ablate_prompts(f, s, &ps, 0, ps.n_seqs, chosen, nch, rows) == TP_OK, "%s", tp_err_msg());
    json_t *per = json_object_get(c, "per_prompt");
    for (size_t p = 0; p < ps.n_seqs; p++) {
        json_t *g = json_array_get(per, p);
        double *r = rows + p * (size_t)w;
        close_to(r[ABLATE_CE_CLEAN], json_real_value(json_object_get(g, "ce_clean")), "ce_clean", name, p);
        close_to(r[ABLATE_CE_INTERVENED], json_real_value(json_object_get(g, "ce_intervened")), "ce_intervened", name, p);
        close_to(r[ABLATE_DELTA_CE], json_real_value(json_object_get(g, "delta_ce")), "delta_ce", name, p);
        close_to(r[ABLATE_KL], json_real_value(json_object_get(g, "kl")), "kl", name, p);
        ck_assert_int_eq((int)r[ABLATE_TOKENS], (int)json_integer_value(json_object_get(g, "tokens")));
        for (int j = 0; j < nch; j++) {
            close_to(r[ABLATE_BASE_COLS + j], json_real_value(json_array_get(json_object_get(g, "delta_logit"), j)),
                     "delta_logit", name, p);
            close_to(r[ABLATE_BASE_COLS + nch + j],
                     json_real_value(json_array_get(json_object_get(g, "delta_logprob"), j)), "delta_logprob", name, p);
        }
        /* the intervention did something the metrics can see */
        ck_assert_msg(r[ABLATE_KL] > 1e-5, "%s prompt %zu: KL %g", name, p, r[ABLATE_KL]);
    }
    free(rows);
    forward_free(f);
    sequences_free(&ps);
    iv_free(s);
    free(t);
}

START_TEST(test_heads_zero) { check_case("heads_zero"); }
END_TEST
START_TEST(test_heads_steer) { check_case("heads_steer"); }
END_TEST
START_TEST(test_mlp_zero) { check_case("mlp_zero"); }
END_TEST
START_TEST(test_neurons_zero) { check_case("neurons_zero"); }
END_TEST
START_TEST(test_feature_zero) { check_case("feature_zero"); }
END_TEST
START_TEST(test_feature_steer) { check_case("feature_steer"); }
END_TEST

START_TEST(test_parse_errors)
{
    iv_target *t = NULL;
    int n = 0;
    const tp_model_config *c = &g_model->cfg;
    TP_ASSERT_FAILS(iv_parse(c, "1.8", NULL, NULL, NULL, &t, &n), TP_ERR_CONFIG, "'1.8': 8 is out of range");
    TP_ASSERT_FAILS(iv_parse(c, "4.0", NULL, NULL, NULL, &t, &n), TP_ERR_CONFIG, "--heads");
    TP_ASSERT_FAILS(iv_parse(c, "13", NULL, NULL, NULL, &t, &n), TP_ERR_CONFIG, "LAYER.HEAD");
    TP_ASSERT_FAILS(iv_parse(c, NULL, NULL, "x", NULL, &t, &n), TP_ERR_CONFIG, "not an integer");
    TP_ASSERT_FAILS(iv_parse(c, NULL, NULL, NULL, "1:768", &t, &n), TP_ERR_CONFIG, "--neurons");
    TP_ASSERT_FAILS(iv_parse(c, NULL, "blocks.9.hook_resid_post:3", NULL, NULL, &t, &n), TP_ERR_RANGE, "blocks.9");
    TP_ASSERT_FAILS(iv_parse(c, NULL, NULL, ",", NULL, &t, &n), TP_ERR_CONFIG, "empty");
    free(t);
    t = NULL, n = 0;
    ck_assert_int_eq(iv_parse(c, "0.1, 3.7", "blocks.2.hook_resid_post:70", "2", "1:0", &t, &n), TP_OK);
    ck_assert_int_eq(n, 5);
    ck_assert_int_eq(t[1].layer, 3);
    ck_assert_int_eq(t[1].index, 7);
    ck_assert_int_eq(t[2].kind, IV_MLP);
    ck_assert_int_eq(t[4].kind, IV_FEATURE);
    ck_assert_str_eq(t[4].hook, "blocks.2.hook_resid_post");
    iv_set *s = NULL;
    /* feature 70 is past the golden SAE's 64 */
    TP_ASSERT_FAILS(iv_new(g_model, t, n, IV_ZERO, 0, golden_sae_dir, NULL, &s), TP_ERR_CONFIG, "has 64 features");
    free(t);
    TP_ASSERT_FAILS(iv_mode_parse("mean-ish", &(iv_mode){0}), TP_ERR_CONFIG, "zero, mean or resample");
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 1;
    Suite *s = suite_create("ablate");
    TCase *tc = tcase_create("golden");
    tcase_add_unchecked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_heads_zero);
    tcase_add_test(tc, test_heads_steer);
    tcase_add_test(tc, test_mlp_zero);
    tcase_add_test(tc, test_neurons_zero);
    tcase_add_test(tc, test_feature_zero);
    tcase_add_test(tc, test_feature_steer);
    tcase_add_test(tc, test_parse_errors);
    suite_add_tcase(s, tc);
    int rc = tp_test_run_suite_nofork(s);
    dist_finalize();
    return rc;
}
