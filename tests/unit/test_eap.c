/* test_eap.c — edge attribution patching (analysis/circuits/eap.h) and the per-head
 * input gradient of the backward pass (backward_attention_head_input_grad).
 *
 * Checks, and their tolerances:
 *   head input VJPs   Σ_h g_h(L) = ∂m/∂resid_pre(L) − ∂m/∂resid_mid(L) (the attention
 *                     branch; linear in d hook_z): 1e-5 relative to max|∂m/∂resid_pre|, f32
 *                     sums in another order. OLMo-2 MHA, OLMo-2 GQA + QK-norm (bf16), Llama
 *                     GQA (input_layernorm in the VJP).
 *   node = Σ edges    score(u) = Σ_v score(u→v): two f64 contractions of the same f32
 *                     gradients (the MLP input gradient being resid_mid − resid_post): 1e-9
 *                     relative; the f32 gradients the two sides read are the same, but the
 *                     MLP's is a difference of two: 1e-5 relative to Σ_v |score(u→v)|.
 *   linear regime     the EAP node score of a head, an MLP and the embedding vs the exact
 *                     effect of patching a_corr + ε Δa into the corrupted run, by a central
 *                     difference at ε = 1e-2 (O(ε²) truncation, f32 forward noise 1e-6/ε):
 *                     2e-3 (1 + |score|).
 *   endpoints         node patching with every node kept gives LD_clean, with none kept on the
 *                     clean input LD_corr: 1e-4 (f32 forward, residual sums re-added).
 *   golden            EAP and EAP-IG (3 steps) edge and node scores of the bundled model vs
 *                     torch autograd (tools/reference/make_golden_eap.py): 1e-5 absolute +
 *                     1e-4 relative (scores are ~0.1; measured ≤ 2e-7 apart): f32 forwards
 *                     and backwards of two implementations (~1e-6 relative per activation)
 *                     summed in f64 over T·d = 3.3k terms.
 */
#include "tp_test.h"

#include "analysis/circuits/eap.h"
#include "model/backward.h"
#include "model/hooks.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static tp_model *open_model(const char *rel)
{
    tp_model *m = NULL;
    const char *path = tp_test_data(rel);
    ck_assert_msg(model_open(path, TP_CONVERT_PER_MATRIX, &m) == TP_OK, "%s: %s", path, tp_err_msg());
    return m;
}

/* ---- per-head input gradients -------------------------------------------------------------- */

typedef struct {
    int T, d, qd;
    float *dz, *dpre, *dmid;   /* layer L only */
    int L;
} grads;

static tp_status on_grad(const tp_hook_info *info, float *data, void *user)
{
    grads *g = user;
    if (info->layer != g->L) return TP_OK;
    size_t Td = (size_t)g->T * g->d;
    if (info->point == TP_HOOK_Z) memcpy(g->dz, data, (size_t)g->T * g->qd * sizeof *data);
    if (info->point == TP_HOOK_RESID_PRE) memcpy(g->dpre, data, Td * sizeof *data);
    if (info->point == TP_HOOK_RESID_MID) memcpy(g->dmid, data, Td * sizeof *data);
    return TP_OK;
}

static void check_head_sum(const char *rel)
{
    tp_model *m = open_model(rel);
    const tp_model_config *c = &m->cfg;
    int T = 6, V = c->vocab_size;
    int32_t ids[6] = {1, 5, 9, 2, 7, 3};
    for (int l = 0; l < c->num_layers; l++) {
        grads g = {.T = T, .d = c->hidden_size, .qd = c->num_heads * c->head_dim, .L = l};
        size_t Td = (size_t)T * g.d;
        g.dz = malloc((size_t)T * g.qd * sizeof(float)), g.dpre = malloc(Td * sizeof(float));
        g.dmid = malloc(Td * sizeof(float));
        float *dx = malloc(Td * sizeof(float)), *sum = calloc(Td, sizeof(float));
        float *dlogits = calloc((size_t)T * V, sizeof(float));
        dlogits[(size_t)(T - 1) * V + 4] = 1, dlogits[(size_t)(T - 1) * V + 2] = -1;
        tp_backward *b = NULL;
        tp_hooks *h = NULL;
        const float *logits;
        ck_assert(backward_new(m, 1, T, &b) == TP_OK);
        ck_assert(hooks_new(c->num_layers, &h) == TP_OK);
        tp_hook_point pts[] = {TP_HOOK_Z, TP_HOOK_RESID_PRE, TP_HOOK_RESID_MID};
        for (int p = 0; p < 3; p++) ck_assert(hooks_add_reader(h, l, pts[p], on_grad, &g) == TP_OK);
        ck_assert_msg(backward_forward(b, ids, &T, 1, NULL, &logits) == TP_OK, "%s", tp_err_msg());
        ck_assert_msg(backward_run(b, dlogits, h) == TP_OK, "%s", tp_err_msg());
        for (int hd = 0; hd < c->num_heads; hd++) {
            ck_assert_msg(backward_attention_head_input_grad(b, l, hd, g.dz, dx) == TP_OK, "%s", tp_err_msg());
            for (size_t i = 0; i < Td; i++) sum[i] += dx[i];
        }
        double scale = 0, err = 0;
        for (size_t i = 0; i < Td; i++) {
            scale = fmax(scale, fabs(g.dpre[i]));
            err = fmax(err, fabs((double)sum[i] - ((double)g.dpre[i] - g.dmid[i])));
        }
        ck_assert_msg(scale > 0, "%s layer %d: zero gradient", rel, l);
        ck_assert_msg(err <= 1e-5 * scale, "%s layer %d: Σ_h head input grads off by %g (scale %g)", rel, l, err, scale);
        ck_assert(backward_attention_head_input_grad(b, l, c->num_heads, g.dz, dx) != TP_OK);
        tp_err_clear();
        backward_free(b), hooks_free(h);
        free(g.dz), free(g.dpre), free(g.dmid), free(dx), free(sum), free(dlogits);
    }
    model_close(m);
}

START_TEST(test_head_input_grads_add_up_to_the_attention_branch)
{
    check_head_sum("models/olmo2-mha-f32");
    check_head_sum("models/olmo2-gqa-bf16");
    check_head_sum("models/llama-gqa-tied");
}
END_TEST

/* ---- EAP on random models ------------------------------------------------------------------ */

static void check_linear_regime(const char *rel)
{
    tp_model *m = open_model(rel);
    int32_t clean[7] = {1, 5, 9, 2, 7, 3, 8}, corr[7] = {1, 6, 4, 2, 11, 3, 8};
    int T = 7;
    eap_engine *e = NULL;
    ck_assert(eap_engine_new(m, T, &e) == TP_OK);
    eap_pair p = {.clean = clean, .corrupt = corr, .T = T, .target = 4, .distractor = 2};
    eap_scores s;
    ck_assert_msg(eap_score(e, &p, &s) == TP_OK, "%s", tp_err_msg());
    const eap_graph *g = &s.g;
    size_t Td = (size_t)T * m->cfg.hidden_size, nu = (size_t)g->n_up;
    /* node score = Σ of its edges */
    for (int u = 0; u < g->n_up; u++) {
        double sum = 0, mag = 0;
        for (int v = 0; v < g->n_down; v++) sum += s.edge[(size_t)u * g->n_down + v], mag += fabs(s.edge[(size_t)u * g->n_down + v]);
        ck_assert_msg(fabs(sum - s.node[u]) <= 1e-5 * (1e-3 + mag), "%s node %d: %g vs Σ edges %g", rel, u, s.node[u], sum);
    }
    double *Ac = malloc(nu * Td * sizeof *Ac), *Ak = malloc(nu * Td * sizeof *Ak), *R = malloc(nu * Td * sizeof *R);
    uint8_t *keep = malloc(nu);
    double ldc, ldk, mv;
    ck_assert(eap_node_outputs(e, clean, T, 4, 2, Ac, &ldc) == TP_OK);
    ck_assert(eap_node_outputs(e, corr, T, 4, 2, Ak, &ldk) == TP_OK);
    ck_assert(fabs(ldc - s.ld_clean) < 1e-6 && fabs(ldk - s.ld_corr) < 1e-6);
    memset(keep, 1, nu);
    ck_assert(eap_patch_metric(e, clean, T, 4, 2, keep, Ak, &mv) == TP_OK);
    ck_assert_msg(fabs(mv - ldc) < 1e-4, "%s: all kept %g vs clean %g", rel, mv, ldc);
    memset(keep, 0, nu);
    ck_assert(eap_patch_metric(e, clean, T, 4, 2, keep, Ak, &mv) == TP_OK);
    ck_assert_msg(fabs(mv - ldk) < 1e-4, "%s: none kept %g vs corrupted %g", rel, mv, ldk);
    int nodes[] = {0, 1, 1 + g->H, g->n_up - 2, g->n_up - 1};   /* embed, a0.h0, m0, last head, last MLP */
    double eps = 1e-2;
    for (size_t k = 0; k < sizeof nodes / sizeof *nodes; k++) {
        int u = nodes[k];
        double mp, mm;
        memset(keep, 1, nu);
        keep[u] = 0;
        memcpy(R, Ak, nu * Td * sizeof *R);
        for (size_t i = 0; i < Td; i++) R[(size_t)u * Td + i] = Ak[(size_t)u * Td + i] + eps * (Ac[(size_t)u * Td + i] - Ak[(size_t)u * Td + i]);
        ck_assert(eap_patch_metric(e, corr, T, 4, 2, keep, R, &mp) == TP_OK);
        for (size_t i = 0; i < Td; i++) R[(size_t)u * Td + i] = Ak[(size_t)u * Td + i] - eps * (Ac[(size_t)u * Td + i] - Ak[(size_t)u * Td + i]);
        ck_assert(eap_patch_metric(e, corr, T, 4, 2, keep, R, &mm) == TP_OK);
        double fd = (mp - mm) / (2 * eps);
        ck_assert_msg(fabs(fd - s.node[u]) <= 2e-3 * (1 + fabs(s.node[u])), "%s node %d: EAP %g vs patching %g", rel, u,
                      s.node[u], fd);
    }
    free(Ac), free(Ak), free(R), free(keep);
    eap_scores_free(&s);
    eap_engine_free(e);
    model_close(m);
}

START_TEST(test_node_scores_match_exact_patching_in_the_linear_regime)
{
    check_linear_regime("models/olmo2-mha-f32");
    check_linear_regime("models/olmo2-gqa-bf16");
    check_linear_regime("models/llama-gqa-tied");
}
END_TEST

START_TEST(test_edges_only_run_downstream)
{
    tp_model_config c = {.num_layers = 2, .num_heads = 2};
    eap_graph g = eap_graph_of(&c);
    ck_assert_int_eq(g.n_up, 7);
    ck_assert_int_eq(g.n_down, 7);
    ck_assert(eap_edge_exists(&g, 0, 0));       /* embed -> a0.h0 */
    ck_assert(eap_edge_exists(&g, 1, 2));       /* a0.h0 -> m0 */
    ck_assert(!eap_edge_exists(&g, 1, 1));      /* a0.h0 -> a0.h1: same layer */
    ck_assert(!eap_edge_exists(&g, 3, 2));      /* m0 -> m0 */
    ck_assert(eap_edge_exists(&g, 3, 3));       /* m0 -> a1.h0 */
    ck_assert(!eap_edge_exists(&g, 4, 3));      /* a1.h0 -> a1.h0 */
    ck_assert(eap_edge_exists(&g, 6, 6));       /* m1 -> logits */
}
END_TEST

/* ---- golden: torch autograd on the bundled model ------------------------------------------- */

static int32_t *jids(const json_t *a, int *n)
{
    *n = (int)json_array_size(a);
    int32_t *ids = malloc((size_t)*n * sizeof *ids);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return ids;
}

static void check_golden_case(eap_engine *e, const json_t *c)
{
    int T, T2;
    int32_t *clean = jids(json_object_get(c, "clean"), &T), *corr = jids(json_object_get(c, "corrupt"), &T2);
    ck_assert_int_eq(T, T2);
    eap_pair p = {.clean = clean, .corrupt = corr, .T = T,
                  .target = (int32_t)json_integer_value(json_object_get(c, "target")),
                  .distractor = (int32_t)json_integer_value(json_object_get(c, "distractor")),
                  .ig_steps = (int)json_integer_value(json_object_get(c, "ig_steps"))};
    eap_scores s;
    ck_assert_msg(eap_score(e, &p, &s) == TP_OK, "%s", tp_err_msg());
    ck_assert(fabs(s.ld_clean - json_number_value(json_object_get(c, "ld_clean"))) < 1e-3);
    ck_assert(fabs(s.ld_corr - json_number_value(json_object_get(c, "ld_corr"))) < 1e-3);
    const json_t *edges = json_object_get(c, "edges"), *nodes = json_object_get(c, "nodes");
    ck_assert_int_eq((int)json_array_size(edges), s.g.n_up);
    for (int u = 0; u < s.g.n_up; u++) {
        const json_t *row = json_array_get(edges, (size_t)u);
        ck_assert_int_eq((int)json_array_size(row), s.g.n_down);
        for (int v = 0; v < s.g.n_down; v++) {
            double ref = json_number_value(json_array_get(row, (size_t)v)), got = s.edge[(size_t)u * s.g.n_down + v];
            double err = fabs(got - ref) / (1e-5 + 1e-4 * fabs(ref));
            ck_assert_msg(err <= 1, "ig %d edge %d->%d: %g vs torch %g", p.ig_steps, u, v, got, ref);
        }
        double ref = json_number_value(json_array_get(nodes, (size_t)u));
        ck_assert_msg(fabs(s.node[u] - ref) <= 1e-5 + 1e-4 * fabs(ref), "ig %d node %d: %g vs torch %g", p.ig_steps, u,
                      s.node[u], ref);
    }
    eap_scores_free(&s);
    free(clean), free(corr);
}

START_TEST(test_eap_matches_torch_autograd_on_the_bundled_model)
{
    json_error_t je;
    json_t *doc = json_load_file(tp_test_data("golden/circuits/eap.json"), 0, &je);
    ck_assert_msg(doc, "golden/circuits/eap.json: %s (tools/reference/make_golden_eap.py)", je.text);
    char dir[4096];
    const char *src = getenv("TP_SOURCE_DIR");
    ck_assert_msg(src, "TP_SOURCE_DIR is not set (run under ctest)");
    snprintf(dir, sizeof dir, "%s/models/olmo2-tiny", src);
    tp_model *m = NULL;
    ck_assert_msg(model_open(dir, TP_CONVERT_PER_MATRIX, &m) == TP_OK, "%s", tp_err_msg());
    const json_t *cases = json_object_get(doc, "cases");
    int maxT = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        int n = (int)json_array_size(json_object_get(json_array_get(cases, i), "clean"));
        maxT = n > maxT ? n : maxT;
    }
    eap_engine *e = NULL;
    ck_assert(eap_engine_new(m, maxT, &e) == TP_OK);
    ck_assert(json_array_size(cases) >= 2);
    for (size_t i = 0; i < json_array_size(cases); i++) check_golden_case(e, json_array_get(cases, i));
    eap_engine_free(e);
    model_close(m);
    json_decref(doc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("eap");
    TCase *tc = tcase_create("eap");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_edges_only_run_downstream);
    tcase_add_test(tc, test_head_input_grads_add_up_to_the_attention_branch);
    tcase_add_test(tc, test_node_scores_match_exact_patching_in_the_linear_regime);
    tcase_add_test(tc, test_eap_matches_torch_autograd_on_the_bundled_model);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
