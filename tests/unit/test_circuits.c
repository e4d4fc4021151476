/* test_circuits.c — phase 5 against TransformerLens 3.9 on the bundled model
 * (tests/data/golden/circuits/, tools/reference/make_golden_circuits.py) and against
 * brute force on small hand-made cases.
 *
 * Tolerances, and why:
 *   head scores      2e-5 absolute: a score is an average of attention weights, and our
 *                    f32 forward pass and transformers' eager f32 one differ by ~1e-6 per
 *                    weight (tests/unit/test_forward.c holds them to 1e-4 relative).
 *   composition      1e-9 absolute: both sides are float64 from the same f32 weights (TL
 *                    by SVD, ours by Gram traces): only f64 rounding separates them.
 *   copying          1e-5 absolute on the score, 1e-5 relative on |λ|: our W_U W_E sums
 *                    f32 products over blocks of 2048 vocabulary rows (~1e-7 relative).
 *   DLA              pieces 1e-4 absolute (f32 activations of two forward passes, then a
 *                    256-term dot product), the norm scales 1e-5 relative; the pieces add
 *                    up to the metric within 1e-4 (1 + |m|) and a layer's heads to its
 *                    hook_attn_out within 1e-5: exact with the scales frozen, up to f32.
 */
#include "tp_test.h"

#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/dla.h"
#include "analysis/circuits/head_scores.h"
#include "analysis/circuits/heads.h"
#include "analysis/circuits/svg.h"
#include "analysis/circuits/trace.h"
#include "analysis/circuits/weight_circuits.h"
#include "core/config.h"
#include "core/sample.h"
#include "dist/world.h"
#include "settings.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- golden files and the bundled model ---------------------------------------------------- */

static json_t *golden(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "golden/circuits/%s", name);
    json_error_t e;
    json_t *j = json_load_file(tp_test_data(rel), 0, &e);
    ck_assert_msg(j, "%s: %s (run tools/reference/make_golden_circuits.py)", rel, e.text);
    return j;
}

static double jnum(const json_t *j) { return json_number_value(j); }

static int32_t *jids(const json_t *a, int *n)
{
    *n = (int)json_array_size(a);
    int32_t *ids = malloc((size_t)*n * sizeof *ids);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return ids;
}

typedef struct {
    struct tp_config *cfg;
    circuits_settings cs;
    circuits_ctx cx;
} bundled;

static void bundled_open(bundled *b)
{
    b->cfg = tp_test_bundled_config();
    ck_assert_msg(circuits_settings_read(b->cfg, &b->cs) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg(circuits_open(tp_test_settings_of(b->cfg), &b->cs, &b->cx) == TP_OK, "%s", tp_err_msg());
}

static void bundled_close(bundled *b)
{
    circuits_close(&b->cx);
    tp_config_free(b->cfg);
}

/* ---- head scores ------------------------------------------------------------------------------ */

START_TEST(test_detection_patterns_as_transformer_lens_builds_them)
{
    /* t = a b c a b: duplicates (3,0) (4,1); induction: a token after an earlier copy of
     * the query's token: (3,1) (4,2); previous: (i, i-1). */
    const int32_t t[5] = {7, 8, 9, 7, 8};
    uint8_t D[25];
    hs_detection_pattern(HS_DUPLICATE_TOKEN, t, 5, 3, D);
    for (int k = 0; k < 25; k++) ck_assert_int_eq(D[k], k == 3 * 5 + 0 || k == 4 * 5 + 1);
    hs_detection_pattern(HS_INDUCTION, t, 5, 3, D);
    for (int k = 0; k < 25; k++) ck_assert_int_eq(D[k], k == 3 * 5 + 1 || k == 4 * 5 + 2);
    hs_detection_pattern(HS_PREVIOUS_TOKEN, t, 5, 3, D);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) ck_assert_int_eq(D[i * 5 + j], j == i - 1);
    hs_detection_pattern(HS_LOCAL, t, 5, 2, D);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) ck_assert_int_eq(D[i * 5 + j], j <= i && j >= i - 1);
    /* uniform causal attention: previous-token score = Σ_{i>=1} 1/(i+1) / T */
    float A[25] = {0};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j <= i; j++) A[i * 5 + j] = 1.0f / (float)(i + 1);
    hs_detection_pattern(HS_PREVIOUS_TOKEN, t, 5, 3, D);
    ck_assert_double_eq_tol(hs_score(A, D, 5), (1 / 2. + 1 / 3. + 1 / 4. + 1 / 5.) / 5, 1e-7);
    ck_assert_double_eq_tol(hs_entropy(A, 5), (log(2) + log(3) + log(4) + log(5)) / 4, 1e-7);
}
END_TEST

START_TEST(test_null_shuffle_permutes_each_causal_row)
{
    enum { T = 9 };
    float A[T * T] = {0}, S[T * T], S2[T * T];
    uint64_t st = 5;
    for (int i = 0; i < T; i++)
        for (int j = 0; j <= i; j++) A[i * T + j] = (float)tp_rng_unit(&st);
    hs_shuffle_causal(A, T, 42, S);
    hs_shuffle_causal(A, T, 42, S2);
    ck_assert_int_eq(memcmp(S, S2, sizeof S), 0);
    int moved = 0;
    for (int i = 0; i < T; i++) {
        double sa = 0, ss = 0;
        for (int j = 0; j < T; j++) {
            if (j > i) ck_assert_float_eq(S[i * T + j], 0.0f);
            sa += A[i * T + j], ss += S[i * T + j];
            moved += S[i * T + j] != A[i * T + j];
            int found = 0;   /* every shuffled entry is one of the row's */
            for (int k = 0; k <= i && j <= i; k++) found |= S[i * T + j] == A[i * T + k];
            ck_assert(j > i || found);
        }
        ck_assert_double_eq_tol(sa, ss, 1e-6);
    }
    ck_assert_int_gt(moved, T);
    hs_shuffle_causal(A, T, 43, S2);
    ck_assert_int_ne(memcmp(S, S2, sizeof S), 0);
}
END_TEST

START_TEST(test_examples_keep_the_heaviest_in_order)
{
    hs_example top[3];
    for (int s = 0; s < 3; s++) top[s] = (hs_example){.weight = -1};
    const double w[] = {0.2, 0.9, 0.5, 0.9, 0.1};
    for (int k = 0; k < 5; k++) {
        hs_example e = {.weight = w[k], .prompt = 5 - k, .query = 1, .source = 0};
        hs_example_insert(top, 3, &e);
    }
    /* 0.9 (prompt 2, then 4: smaller prompt first on a tie), 0.5 */
    ck_assert_double_eq(top[0].weight, 0.9);
    ck_assert_int_eq(top[0].prompt, 2);
    ck_assert_int_eq(top[1].prompt, 4);
    ck_assert_double_eq(top[2].weight, 0.5);
}
END_TEST

/* One golden score array [L][H] against a record's. */
static void check_scores(const head_records *r, const double *rec, int kind, const json_t *want, const char *what)
{
    for (int l = 0; l < r->L; l++)
        for (int h = 0; h < r->H; h++) {
            double g = jnum(json_array_get(json_array_get(want, (size_t)l), (size_t)h));
            double c = kind >= 0 ? rec[hr_score(r, kind, l, h)] : rec[hr_stripe(r, l, h)];
            ck_assert_msg(fabs(c - g) <= 2e-5, "%s L%dH%d: %.8f, TransformerLens %.8f", what, l, h, c, g);
        }
}

START_TEST(test_head_scores_match_transformer_lens)
{
    bundled b;
    bundled_open(&b);
    json_t *g = golden("heads.json");
    ck_assert_int_eq((int)jnum(json_object_get(g, "local_window")), (int)b.cs.local_window);
    prompt_set ps = {0};
    prompt_limits lim = circuits_limits(&b.cx, 2);
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(g, "prompts"), i, p) {
        int n, m;
        int32_t *want = jids(json_object_get(p, "tokens"), &n), *ids = NULL;
        /* our tokenizer and BOS give TransformerLens's to_tokens */
        ck_assert(prompts_encode(b.cx.tok, json_string_value(json_object_get(p, "text")), &lim, "golden", &ids, &m) ==
                  TP_OK);
        ck_assert_int_eq(m, n);
        ck_assert_int_eq(memcmp(ids, want, (size_t)n * sizeof *ids), 0);
        ck_assert(prompts_add_ids(&ps, ids, n, "golden", 0) == TP_OK);
        free(ids), free(want);
    }
    int L = (int)jnum(json_object_get(g, "synthetic_len"));
    json_array_foreach(json_object_get(g, "synthetic"), i, p) {
        int n;
        int32_t *ids = jids(json_object_get(p, "tokens"), &n);
        ck_assert(prompts_add_ids(&ps, ids, n, "golden synthetic", L) == TP_OK);
        free(ids);
    }
    head_records r;
    ck_assert_msg(heads_collect(&b.cx, &ps, &r) == TP_OK, "%s", tp_err_msg());
    json_t *all = json_array();
    json_array_extend(all, json_object_get(g, "prompts"));
    json_array_foreach(json_object_get(g, "synthetic"), i, p) json_array_append(all, p);
    json_array_foreach(all, i, p) {
        const double *rec = r.all + i * r.rec;
        json_t *s = json_object_get(p, "scores");
        for (int k = 0; k < HS_SCORES; k++) check_scores(&r, rec, k, json_object_get(s, hs_class_name(k)), hs_class_name(k));
        if (ps.p[i].synthetic_len) check_scores(&r, rec, -1, json_object_get(s, "stripe"), "induction stripe");
    }
    /* detect_head on the list of text prompts = the mean of their records */
    size_t ntext = json_array_size(json_object_get(g, "prompts"));
    for (int k = 0; k < HS_BOS; k++)
        for (int l = 0; l < r.L; l++)
            for (int h = 0; h < r.H; h++) {
                double mean = 0;
                for (size_t q = 0; q < ntext; q++) mean += r.all[q * r.rec + hr_score(&r, k, l, h)] / (double)ntext;
                json_t *w = json_object_get(json_object_get(g, "detect_head_mean"), hs_class_name(k));
                ck_assert_double_eq_tol(mean, jnum(json_array_get(json_array_get(w, (size_t)l), (size_t)h)), 2e-5);
            }
    json_decref(all);
    head_records_free(&r);
    prompt_set_free(&ps);
    json_decref(g);
    bundled_close(&b);
}
END_TEST

/* ---- weight circuits ---------------------------------------------------------------------------- */

START_TEST(test_composition_and_copying_match_transformer_lens)
{
    bundled b;
    bundled_open(&b);
    json_t *g = golden("weights.json");
    wc_heads w;
    ck_assert(wc_fold(b.cx.m, &w) == TP_OK);
    size_t LH = (size_t)w.L * w.H;
    double *c[3], *score = malloc(LH * sizeof *score);
    double *re = malloc(LH * w.dh * sizeof *re), *im = malloc(LH * w.dh * sizeof *im);
    for (int m = 0; m < 3; m++) c[m] = malloc(LH * LH * sizeof(double));
    ck_assert(wc_composition(&w, c[0], c[1], c[2]) == TP_OK);
    const char *modes[3] = {"q", "k", "v"};
    for (int m = 0; m < 3; m++) {
        json_t *want = json_object_get(json_object_get(g, "composition"), modes[m]);
        for (size_t a = 0; a < LH; a++)
            for (size_t bb = 0; bb < LH; bb++) {
                json_t *x = json_array_get(json_array_get(json_array_get(json_array_get(want, a / w.H), a % w.H),
                                                          bb / w.H), bb % w.H);
                ck_assert_msg(fabs(c[m][a * LH + bb] - jnum(x)) <= 1e-9, "%s-composition L%zuH%zu -> L%zuH%zu: %.12f vs %.12f",
                              modes[m], a / w.H, a % w.H, bb / w.H, bb % w.H, c[m][a * LH + bb], jnum(x));
            }
    }
    ck_assert(wc_copying(b.cx.m, &w, score, re, im) == TP_OK);
    for (size_t a = 0; a < LH; a++) {
        double want = jnum(json_array_get(json_array_get(json_object_get(g, "copying_score"), a / w.H), a % w.H));
        ck_assert_msg(fabs(score[a] - want) <= 1e-5, "copying L%zuH%zu: %.8f vs %.8f", a / w.H, a % w.H, score[a], want);
        double top = hypot(re[a * w.dh], im[a * w.dh]);
        for (int k = 0; k < w.dh; k++) {
            double gr = jnum(json_array_get(json_array_get(json_array_get(json_object_get(g, "eigenvalues_re"), a / w.H),
                                                           a % w.H), (size_t)k));
            double gi = jnum(json_array_get(json_array_get(json_array_get(json_object_get(g, "eigenvalues_im"), a / w.H),
                                                           a % w.H), (size_t)k));
            ck_assert_msg(fabs(hypot(re[a * w.dh + k], im[a * w.dh + k]) - hypot(gr, gi)) <= 1e-5 * top,
                          "|eigenvalue %d| of L%zuH%zu", k, a / w.H, a % w.H);
        }
    }
    /* numpy's eig of the full [vocab, vocab] circuit gives the same score */
    json_t *full = json_array_get(json_object_get(g, "full_eig"), 0);
    size_t fa = (size_t)jnum(json_object_get(full, "layer")) * w.H + (size_t)jnum(json_object_get(full, "head"));
    ck_assert_double_eq_tol(score[fa], jnum(json_object_get(full, "score")), 1e-5);
    for (int m = 0; m < 3; m++) free(c[m]);
    free(score), free(re), free(im);
    wc_heads_free(&w);
    json_decref(g);
    bundled_close(&b);
}
END_TEST

/* ‖A‖_F of a dense [n, n] matrix. */
static double frob(const double *A, int n)
{
    double s = 0;
    for (int i = 0; i < n * n; i++) s += A[i] * A[i];
    return sqrt(s);
}

/* C [d, d] = X [d, r] · Y [r, d] */
static void mul(const double *X, const double *Y, int d, int r, double *C)
{
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0;
            for (int k = 0; k < r; k++) s += X[i * r + k] * Y[k * d + j];
            C[i * d + j] = s;
        }
}

START_TEST(test_composition_equals_brute_force_with_gqa)
{
    /* 2 layers, 4 query heads sharing 2 kv heads, d = 7, dh = 3: the Gram route against
     * ‖L R‖ / (‖L‖ ‖R‖) of the dense d x d matrices */
    enum { L = 2, H = 4, K = 2, d = 7, dh = 3 };
    wc_heads w = {.L = L, .H = H, .K = K, .d = d, .dh = dh};
    w.Q = malloc(sizeof(double) * L * H * d * dh), w.O = malloc(sizeof(double) * L * H * d * dh);
    w.Kw = malloc(sizeof(double) * L * K * d * dh), w.Vw = malloc(sizeof(double) * L * K * d * dh);
    uint64_t s = 11;
    for (int i = 0; i < L * H * d * dh; i++) w.Q[i] = tp_rng_unit(&s) - 0.5, w.O[i] = tp_rng_unit(&s) - 0.5;
    for (int i = 0; i < L * K * d * dh; i++) w.Kw[i] = tp_rng_unit(&s) - 0.5, w.Vw[i] = tp_rng_unit(&s) - 0.5;
    double q[L * H * L * H], k[L * H * L * H], v[L * H * L * H];
    ck_assert(wc_composition(&w, q, k, v) == TP_OK);
    double OV1[d * d], QK[d * d], KQ[d * d], OV2[d * d], P[d * d], Kt[dh * d], Qt[dh * d];
    for (int h1 = 0; h1 < H; h1++)
        for (int h2 = 0; h2 < H; h2++) {
            int g1 = h1 / 2, g2 = h2 / 2;   /* query head h reads kv head h / (H/K) */
            const double *V1 = w.Vw + g1 * d * dh, *O1 = w.O + h1 * d * dh;
            const double *Q2 = w.Q + (H + h2) * d * dh, *K2 = w.Kw + (K + g2) * d * dh;
            const double *V2 = w.Vw + (K + g2) * d * dh, *O2 = w.O + (H + h2) * d * dh;
            for (int a = 0; a < d; a++)
                for (int c = 0; c < dh; c++) Kt[c * d + a] = K2[a * dh + c], Qt[c * d + a] = Q2[a * dh + c];
            mul(V1, O1, d, dh, OV1), mul(Q2, Kt, d, dh, QK), mul(K2, Qt, d, dh, KQ), mul(V2, O2, d, dh, OV2);
            const double *R[3] = {QK, KQ, OV2};
            const double *got[3] = {q, k, v};
            for (int m = 0; m < 3; m++) {
                double LR[d * d];
                for (int i = 0; i < d * d; i++) P[i] = R[m][i];
                for (int i = 0; i < d; i++)
                    for (int j = 0; j < d; j++) {
                        double t = 0;
                        for (int x = 0; x < d; x++) t += OV1[i * d + x] * P[x * d + j];
                        LR[i * d + j] = t;
                    }
                double want = frob(LR, d) / (frob(OV1, d) * frob(R[m], d));
                ck_assert_double_eq_tol(got[m][(0 * H + h1) * L * H + 1 * H + h2], want, 1e-12);
                ck_assert_double_eq(got[m][(1 * H + h1) * L * H + 0 * H + h2], 0.0);   /* l1 >= l2: masked */
            }
        }
    wc_heads_free(&w);
}
END_TEST

/* ---- DLA ---------------------------------------------------------------------------------------- */

START_TEST(test_dla_matches_transformer_lens_and_adds_up)
{
    bundled b;
    bundled_open(&b);
    json_t *g = golden("dla.json");
    int n;
    int32_t *ids = jids(json_object_get(g, "tokens"), &n);
    dla_request rq = {.prompt = "golden", .ids = ids, .T = n, .target = (int32_t)jnum(json_object_get(g, "target_id")),
                      .distractor = (int32_t)jnum(json_object_get(g, "distractor_id")), .id = "golden"};
    dla_result r;
    ck_assert_msg(dla_compute(&b.cx, &rq, &r) == TP_OK, "%s", tp_err_msg());
    double m = jnum(json_object_get(g, "metric"));
    ck_assert_double_eq_tol(r.metric, m, 1e-4);
    ck_assert_double_eq_tol(r.final_scale / jnum(json_object_get(g, "final_scale")), 1.0, 1e-5);
    ck_assert_double_eq_tol(r.embed, jnum(json_object_get(g, "embed")), 1e-4);
    double total = r.embed, heads = r.embed;
    for (int l = 0; l < r.L; l++) {
        ck_assert_double_eq_tol(r.attn[l], jnum(json_array_get(json_object_get(g, "attn_out"), (size_t)l)), 1e-4);
        ck_assert_double_eq_tol(r.mlp[l], jnum(json_array_get(json_object_get(g, "mlp_out"), (size_t)l)), 1e-4);
        ck_assert_double_eq_tol(r.attn_scale[l] / jnum(json_array_get(json_object_get(g, "attn_scale"), (size_t)l)), 1.0,
                                1e-5);
        for (int h = 0; h < r.H; h++)
            ck_assert_double_eq_tol(r.head[l * r.H + h],
                                    jnum(json_array_get(json_array_get(json_object_get(g, "heads"), (size_t)l), (size_t)h)),
                                    1e-4);
        /* the heads of a layer add up to its hook_attn_out */
        ck_assert_msg(fabs(r.heads_sum[l] - r.attn[l]) <= 1e-5, "layer %d: heads %.8f, attn_out %.8f", l, r.heads_sum[l],
                      r.attn[l]);
        total += r.attn[l] + r.mlp[l], heads += r.heads_sum[l] + r.mlp[l];
    }
    /* the pieces add up to the logit difference (frozen scales: exact up to f32) */
    ck_assert_msg(fabs(total - r.metric) <= 1e-4 * (1 + fabs(r.metric)), "pieces %.8f, metric %.8f", total, r.metric);
    ck_assert_msg(fabs(heads - r.metric) <= 1e-4 * (1 + fabs(r.metric)), "heads+mlps %.8f, metric %.8f", heads, r.metric);
    dla_result_free(&r);
    free(ids);
    json_decref(g);
    bundled_close(&b);
}
END_TEST

/* Llama (no norm after attention, tied embeddings) and BF16 OLMo-2: the pieces add up and
 * the weight scores are finite, from the small random models of tests/data/models. */
START_TEST(test_dla_adds_up_on_llama_and_bf16)
{
    const char *dirs[2] = {"models/llama-gqa-tied", "models/olmo2-gqa-bf16"};
    circuits_settings cs;
    memset(&cs, 0, sizeof cs);
    circuits_ctx cx = {.cs = &cs, .bos = -1};
    ck_assert_msg(model_open(tp_test_data(dirs[_i]), TP_CONVERT_PER_MATRIX, &cx.m) == TP_OK, "%s", tp_err_msg());
    const int32_t ids[6] = {1, 17, 5, 99, 17, 5};
    dla_request rq = {.prompt = "ids", .ids = ids, .T = 6, .target = 99, .distractor = 7, .id = "x"};
    dla_result r;
    ck_assert_msg(dla_compute(&cx, &rq, &r) == TP_OK, "%s", tp_err_msg());
    double total = r.embed;
    for (int l = 0; l < r.L; l++) {
        ck_assert_msg(fabs(r.heads_sum[l] - r.attn[l]) <= 1e-5 * (1 + fabs(r.attn[l])), "%s layer %d", dirs[_i], l);
        total += r.attn[l] + r.mlp[l];
        if (cx.m->cfg.arch == TP_ARCH_LLAMA) ck_assert_double_eq(r.attn_scale[l], 1.0);
    }
    ck_assert_msg(fabs(total - r.metric) <= 1e-4 * (1 + fabs(r.metric)), "%s: %.8f vs %.8f", dirs[_i], total, r.metric);
    dla_result_free(&r);
    wc_heads w;
    ck_assert(wc_fold(cx.m, &w) == TP_OK);
    size_t LH = (size_t)w.L * w.H;
    double *q = malloc(LH * LH * sizeof *q), *sc = malloc(LH * sizeof *sc);
    double *re = malloc(LH * w.dh * sizeof *re), *im = malloc(LH * w.dh * sizeof *im);
    ck_assert(wc_composition(&w, q, NULL, NULL) == TP_OK);
    ck_assert(wc_copying(cx.m, &w, sc, re, im) == TP_OK);
    for (size_t i = 0; i < LH; i++) ck_assert(isfinite(sc[i]) && fabs(sc[i]) <= 1 + 1e-12);
    for (size_t i = 0; i < LH * LH; i++) ck_assert(isfinite(q[i]) && q[i] >= 0 && q[i] <= 1 + 1e-12);
    free(q), free(sc), free(re), free(im);
    wc_heads_free(&w);
    model_close(cx.m);
}
END_TEST

/* ---- trace and SVG -------------------------------------------------------------------------------- */

START_TEST(test_trace_stats_by_hand)
{
    /* A = [[1], [.5 .5], [.2 .3 .5]] */
    const float A[9] = {1, 0, 0, .5f, .5f, 0, .2f, .3f, .5f};
    trace_stats s;
    trace_head_stats(A, 3, &s);
    double h1 = log(2), h2 = -(.2 * log(.2) + .3 * log(.3) + .5 * log(.5));
    ck_assert_double_eq_tol(s.entropy, (h1 + h2) / 2, 1e-6);
    ck_assert_double_eq_tol(s.mean_distance, (0.5 + (0.2 * 2 + 0.3)) / 2, 1e-6);
    ck_assert_double_eq_tol(s.first_token, (0.5 + 0.2) / 2, 1e-6);
}
END_TEST

START_TEST(test_svg_escapes_labels)
{
    char out[64];
    svg_escape("a<b>&\"c'\n\x01", out, sizeof out);
    ck_assert_str_eq(out, "a&lt;b&gt;&amp;&quot;c&apos;\\n\\x01");
    /* a two-byte character is copied whole or not at all */
    svg_escape("ab\xc3\xa9", out, 4);
    ck_assert_str_eq(out, "ab");
    svg_escape("ab\xc3\xa9", out, 5);
    ck_assert_str_eq(out, "ab\xc3\xa9");
    /* a figure is well-formed enough to hold its labels escaped */
    const float A[4] = {1, 0, .25f, .75f};
    const float *panels[1] = {A};
    const char *labels[2] = {"<s>", " & x"}, *titles[1] = {"head 0"};
    svg_heatmaps hm = {.title = "t <1>", .T = 2, .labels = labels, .n = 1, .panels = panels, .panel_titles = titles};
    const char *path = tp_test_tmp_path("fig.svg");
    ck_assert(svg_write_heatmaps(path, &hm) == TP_OK);
    FILE *f = fopen(path, "r");
    char buf[8192];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = '\0';
    ck_assert_ptr_nonnull(strstr(buf, "&lt;s&gt;"));
    ck_assert_ptr_nonnull(strstr(buf, " &amp; x"));
    ck_assert_ptr_null(strstr(buf, "<s>"));
    ck_assert_ptr_nonnull(strstr(buf, "</svg>"));
}
END_TEST

int main(int argc, char **argv)
{
    dist_init(&argc, &argv);
    Suite *s = suite_create("circuits");
    TCase *tc = tcase_create("circuits");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_detection_patterns_as_transformer_lens_builds_them);
    tcase_add_test(tc, test_null_shuffle_permutes_each_causal_row);
    tcase_add_test(tc, test_examples_keep_the_heaviest_in_order);
    tcase_add_test(tc, test_head_scores_match_transformer_lens);
    tcase_add_test(tc, test_composition_and_copying_match_transformer_lens);
    tcase_add_test(tc, test_composition_equals_brute_force_with_gqa);
    tcase_add_test(tc, test_dla_matches_transformer_lens_and_adds_up);
    tcase_add_loop_test(tc, test_dla_adds_up_on_llama_and_bf16, 0, 2);
    tcase_add_test(tc, test_trace_stats_by_hand);
    tcase_add_test(tc, test_svg_escapes_labels);
    suite_add_tcase(s, tc);
    int rc = tp_test_run_suite_nofork(s);
    dist_finalize();
    return rc;
}
