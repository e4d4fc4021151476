/* SAE export in the SAELens layout: the folded weights, read back by saelens_load
 * and run by SAELens' own inference rule (saelens_reconstruct), give the
 * reconstruction of the trained model (sae_reconstruct) for relu, topk and
 * batchtopk; cfg.json carries the keys SAELens reads; a broken export is an error
 * naming the file. */
#include "tp_test.h"

#include "analysis/sae/sae.h"
#include "analysis/sae/sae_export.h"
#include "core/fsutil.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 24, F = 96, N = 200 };

static void make_rows(float *x, uint64_t seed)
{
    /* a few directions with sparse coefficients, an offset and noise */
    uint64_t s = seed;
    for (int i = 0; i < N * D; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.1f + (i % D == 3 ? 5.0f : 0.0f);
    }
    for (int r = 0; r < N; r++)
        for (int k = 0; k < 3; k++) x[r * D + (r * 7 + k * 5) % D] += (float)(1 + (r + k) % 4);
}

static void train(sae_model *m, sae_arch arch, const float *x)
{
    sae_config c = sae_config_default(arch, D, F);
    c.k = 6, c.aux_k = 16, c.total_steps = 8, c.lr = 3e-3, c.l1_coef = 0.05;
    ck_assert_msg(sae_init(m, &c, N) == TP_OK, "%s", tp_err_msg());
    ck_assert(sae_init_weights(m, 7) == TP_OK);
    ck_assert(sae_compute_input_scale(x, N, D, MPI_COMM_NULL, &m->input_scale) == TP_OK);
    ck_assert(sae_init_b_dec(m, x, N, MPI_COMM_NULL, c.b_dec_init, 50) == TP_OK);
    for (int t = 0; t < 8; t++) ck_assert_msg(sae_train_step(m, x, N, MPI_COMM_NULL, NULL) == TP_OK, "%s", tp_err_msg());
}

START_TEST(test_roundtrip)
{
    static const sae_arch archs[] = {SAE_RELU, SAE_TOPK, SAE_BATCHTOPK};
    static const char *const names[] = {"standard", "topk", "jumprelu"};
    float *x = malloc(N * D * sizeof *x), *r1 = malloc(N * D * sizeof *r1), *r2 = malloc(N * D * sizeof *r2);
    float *c1 = malloc(N * F * sizeof *c1), *c2 = malloc(N * F * sizeof *c2);
    make_rows(x, 11 + (uint64_t)_i);
    sae_model m;
    train(&m, archs[_i], x);
    char dir[512];
    snprintf(dir, sizeof dir, "%s/sae_%d", tp_test_tmpdir(), _i);
    json_t *extra = json_pack("{s:s}", "note", "test");
    ck_assert_msg(sae_export_saelens(&m, dir, "blocks.1.hook_resid_post", "test-model", extra) == TP_OK, "%s",
                  tp_err_msg());
    json_decref(extra);

    char path[600];
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    ck_assert(cfg != NULL);
    ck_assert_str_eq(json_string_value(json_object_get(cfg, "architecture")), names[_i]);
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "d_in")), D);
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "d_sae")), F);
    ck_assert_str_eq(json_string_value(json_object_get(cfg, "dtype")), "float32");
    ck_assert_str_eq(json_string_value(json_object_get(cfg, "normalize_activations")), "none");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(cfg, "metadata"), "hook_name")),
                     "blocks.1.hook_resid_post");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(cfg, "metadata"), "model_name")), "test-model");
    if (archs[_i] == SAE_TOPK) ck_assert_int_eq(json_integer_value(json_object_get(cfg, "k")), 6);
    json_decref(cfg);

    saelens_sae s;
    ck_assert_msg(saelens_load(dir, &s) == TP_OK, "%s", tp_err_msg());
    ck_assert(sae_reconstruct(&m, x, N, r1) == TP_OK && sae_encode(&m, x, N, c1) == TP_OK);
    ck_assert(saelens_reconstruct(&s, x, N, r2, c2) == TP_OK);
    double num = 0, den = 0;
    int64_t active_diff = 0, active = 0;
    for (int i = 0; i < N * D; i++) num += (r1[i] - r2[i]) * (double)(r1[i] - r2[i]), den += (double)r1[i] * r1[i];
    for (int i = 0; i < N * F; i++) active_diff += (c1[i] > 0) != (c2[i] > 0), active += c1[i] > 0;
    /* Same activation pattern; reconstruction equal up to f32 rounding of the folding. */
    ck_assert_msg(active_diff == 0, "%s: %lld of %lld activations differ", names[_i], (long long)active_diff,
                  (long long)active);
    ck_assert_msg(sqrt(num / den) < 1e-5, "%s: relative reconstruction difference %.3g", names[_i], sqrt(num / den));
    /* ... and the reconstruction is a real one, not the bias alone */
    double fvu_num = 0, fvu_den = 0, mean[D] = {0};
    for (int r = 0; r < N; r++)
        for (int j = 0; j < D; j++) mean[j] += x[r * D + j] / (double)N;
    for (int i = 0; i < N * D; i++) fvu_num += (x[i] - r2[i]) * (double)(x[i] - r2[i]),
                                     fvu_den += (x[i] - mean[i % D]) * (x[i] - mean[i % D]);
    ck_assert_msg(fvu_num / fvu_den < 0.9, "%s: FVU %.3f after training", names[_i], fvu_num / fvu_den);
    saelens_free(&s);
    sae_free(&m);
    free(x), free(r1), free(r2), free(c1), free(c2);
}
END_TEST

START_TEST(test_bad_export)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/bad", tp_test_tmpdir());
    ck_assert(fs_mkdir_p(dir) == TP_OK);
    saelens_sae s;
    ck_assert(saelens_load(dir, &s) != TP_OK);   /* no cfg.json */
    TP_ASSERT_ERR_HAS("cfg.json");
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    const char *cfg = "{\"architecture\": \"gated\", \"d_in\": 4, \"d_sae\": 8}";
    ck_assert(tp_test_write_file(path, cfg, strlen(cfg)) == 0);
    ck_assert(saelens_load(dir, &s) == TP_ERR_FORMAT);
    TP_ASSERT_ERR_HAS("architecture");
    cfg = "{\"architecture\": \"standard\", \"d_in\": 4, \"d_sae\": 8, \"normalize_activations\": \"none\"}";
    ck_assert(tp_test_write_file(path, cfg, strlen(cfg)) == 0);
    ck_assert(saelens_load(dir, &s) != TP_OK);   /* no weights */
    TP_ASSERT_ERR_HAS("sae_weights.safetensors");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sae_export");
    TCase *tc = tcase_create("export");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_roundtrip, 0, 3);
    tcase_add_test(tc, test_bad_export);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
