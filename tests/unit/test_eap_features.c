/* SAE features as EAP nodes (eap_features.h) on random OLMo-2 and Llama models with
 * random SAEs at hook_resid_pre, hook_resid_mid and hook_resid_post:
 *   - a feature's out-edges add up to its node score (the g_v downstream of the point
 *     add up to ∂m/∂x_P);
 *   - for an SAE whose features are active everywhere (act linear in x) the in-edges
 *     add up to the node score too;
 *   - the node score equals the exact effect of moving the stream at the point by
 *     ε Δact_f d_f in the corrupted run (central difference: the EAP derivative);
 *   - top selection keeps the largest |node| and the JSON ranks them.
 */
#include "tp_test.h"

#include "analysis/circuits/eap.h"
#include "analysis/circuits/eap_features.h"

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

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double unif(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* A ReLU ("standard") SAE of width F on d; b_enc = bias (large: active everywhere). */
static void random_sae(eap_sae *es, int d, int F, double bias, int layer, tp_hook_point pt)
{
    memset(es, 0, sizeof *es);
    saelens_sae *s = &es->sae;
    snprintf(s->architecture, sizeof s->architecture, "standard");
    s->d_in = d, s->d_sae = F, s->apply_b_dec_to_input = 1;
    s->W_enc = malloc((size_t)d * F * sizeof(float)), s->W_dec = malloc((size_t)F * d * sizeof(float));
    s->b_enc = malloc((size_t)F * sizeof(float)), s->b_dec = malloc((size_t)d * sizeof(float));
    for (int i = 0; i < d * F; i++) s->W_enc[i] = (float)((unif() - 0.5) * 0.6), s->W_dec[i] = (float)((unif() - 0.5) * 0.6);
    for (int i = 0; i < F; i++) s->b_enc[i] = (float)(bias + (unif() - 0.5) * 0.2);
    for (int i = 0; i < d; i++) s->b_dec[i] = (float)((unif() - 0.5) * 0.2);
    es->layer = layer, es->pt = pt;
    hooks_point_name(layer, pt, es->hook, sizeof es->hook);
}

/* The node entering the stream exactly at the point (its output shifts x_P alone). */
static int entering_node(const eap_graph *g, const eap_sae *es)
{
    if (es->pt == TP_HOOK_RESID_PRE) return es->layer == 0 ? 0 : 1 + (es->layer - 1) * (g->H + 1) + g->H;
    if (es->pt == TP_HOOK_RESID_MID) return 1 + es->layer * (g->H + 1);         /* head 0 of the layer */
    return 1 + es->layer * (g->H + 1) + g->H;                                    /* the layer's MLP */
}

static void check_point(const char *rel, int layer, tp_hook_point pt, double bias)
{
    tp_model *m = open_model(rel);
    int32_t clean[7] = {1, 5, 9, 2, 7, 3, 8}, corr[7] = {1, 6, 4, 2, 11, 3, 8};
    int T = 7, d = m->cfg.hidden_size, F = 12;
    eap_engine *e = NULL;
    ck_assert(eap_engine_new(m, T, &e) == TP_OK);
    eap_sae es;
    random_sae(&es, d, F, bias, layer, pt);
    eap_sae_set set = {.n = 1, .s = &es};
    eap_graph g = eap_graph_of(&m->cfg);
    eap_feat_scores fs;
    ck_assert(eap_feat_scores_new(&set, &g, F, &fs) == TP_OK);
    eap_feat_request fr = {.mode = EAP_FEAT_TOP, .top = F, .out = &fs};
    eap_pair p = {.clean = clean, .corrupt = corr, .T = T, .target = 4, .distractor = 2};
    eap_scores s;
    ck_assert_msg(eap_score_ext(e, &p, eap_features_extend, &fr, &s) == TP_OK, "%s", tp_err_msg());
    const eap_feat_point *fp = &fs.p[0];
    const double *B = fs.block;
    ck_assert_int_eq(fp->nsel, F);
    for (int i = 1; i < F; i++)   /* ranked by |node| */
        ck_assert(fabs(B[fp->node + fp->sel[i - 1]]) >= fabs(B[fp->node + fp->sel[i]]));
    for (int i = 0; i < F; i++) {
        double node = B[fp->node + fp->sel[i]], so = 0, mo = 0, si = 0, mi = 0;
        for (int v = 0; v < g.n_down; v++) so += B[fp->out + (size_t)i * g.n_down + v], mo += fabs(B[fp->out + (size_t)i * g.n_down + v]);
        for (int u = 0; u < g.n_up; u++) si += B[fp->in + (size_t)u * F + i], mi += fabs(B[fp->in + (size_t)u * F + i]);
        ck_assert_msg(fabs(so - node) <= 1e-5 * (1e-3 + mo), "%s %s f%lld: node %g vs Σ out %g", rel, es.hook,
                      (long long)fp->sel[i], node, so);
        if (bias > 10)   /* every feature active at every position of both runs (checked below) */
            ck_assert_msg(fabs(si - node) <= 1e-4 * (1e-3 + mi), "%s %s f%lld: node %g vs Σ in %g", rel, es.hook,
                          (long long)fp->sel[i], node, si);
    }
    /* the node score is the derivative of m along Δact_f d_f at the point, on the corrupted run */
    size_t Td = (size_t)T * d, nu = (size_t)g.n_up;
    double *Ac = malloc(nu * Td * sizeof *Ac), *Ak = malloc(nu * Td * sizeof *Ak), *R = malloc(nu * Td * sizeof *R);
    float *xc = calloc(Td, sizeof *xc), *xk = calloc(Td, sizeof *xk), *rec = malloc(Td * sizeof *rec);
    float *cc = malloc((size_t)T * F * sizeof *cc), *ck = malloc((size_t)T * F * sizeof *ck);
    uint8_t *keep = malloc(nu);
    double ldc, ldk;
    ck_assert(eap_node_outputs(e, clean, T, 4, 2, Ac, &ldc) == TP_OK);
    ck_assert(eap_node_outputs(e, corr, T, 4, 2, Ak, &ldk) == TP_OK);
    int up = entering_node(&g, &es);
    for (int u = 0; u < g.n_up; u++) {   /* x_P = Σ of the outputs upstream of the point */
        int l, h;
        eap_up_node(&g, u, &l, &h);
        int in = u == 0 || l < layer || (l == layer && (pt == TP_HOOK_RESID_POST || (pt == TP_HOOK_RESID_MID && h >= 0)));
        for (size_t k = 0; in && k < Td; k++) xc[k] += (float)Ac[(size_t)u * Td + k], xk[k] += (float)Ak[(size_t)u * Td + k];
    }
    ck_assert(saelens_reconstruct(&es.sae, xc, T, rec, cc) == TP_OK);
    ck_assert(saelens_reconstruct(&es.sae, xk, T, rec, ck) == TP_OK);
    for (int k = 0; bias > 10 && k < T * F; k++)
        ck_assert_msg(cc[k] > 0 && ck[k] > 0, "%s %s: bias %g leaves a feature inactive", rel, es.hook, bias);
    double eps = 1e-2;
    for (int i = 0; i < 3; i++) {
        int64_t f = fp->sel[i];
        double mv[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            memset(keep, 1, nu);
            keep[up] = 0;
            memcpy(R, Ak, nu * Td * sizeof *R);
            for (int t = 0; t < T; t++)
                for (int k = 0; k < d; k++)
                    R[(size_t)up * Td + (size_t)t * d + k] += (sgn ? -eps : eps) *
                        ((double)cc[(size_t)t * F + f] - ck[(size_t)t * F + f]) * es.sae.W_dec[(size_t)f * d + k];
            ck_assert(eap_patch_metric(e, corr, T, 4, 2, keep, R, &mv[sgn]) == TP_OK);
        }
        double fd = (mv[0] - mv[1]) / (2 * eps), node = B[fp->node + f];
        ck_assert_msg(fabs(fd - node) <= 2e-3 * (1 + fabs(node)), "%s %s f%lld: EAP %g vs patching %g", rel, es.hook,
                      (long long)f, node, fd);
    }
    json_t *j = eap_feat_json(&fs, 1.0, s.ld_clean - s.ld_corr);
    json_t *nodes = json_object_get(j, "nodes");
    ck_assert_int_eq((int)json_array_size(nodes), F);
    char name[192];
    eap_feat_name(&fs, 0, 0, name, sizeof name);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(nodes, 0), "node")), name);
    json_decref(j);
    free(Ac), free(Ak), free(R), free(xc), free(xk), free(rec), free(cc), free(ck), free(keep);
    eap_scores_free(&s);
    eap_feat_scores_free(&fs);
    saelens_free(&es.sae);
    eap_engine_free(e);
    model_close(m);
}

START_TEST(test_feature_scores_at_every_residual_point)
{
    const char *models[] = {"models/olmo2-mha-f32", "models/olmo2-gqa-bf16", "models/llama-gqa-tied"};
    for (int k = 0; k < 3; k++) {
        check_point(models[k], 0, TP_HOOK_RESID_PRE, 0.05);
        check_point(models[k], 1, TP_HOOK_RESID_MID, 0.05);
        check_point(models[k], 0, TP_HOOK_RESID_POST, 0.05);
        check_point(models[k], 1, TP_HOOK_RESID_PRE, 40);   /* active everywhere: in-edges add up */
        check_point(models[k], 0, TP_HOOK_RESID_MID, 40);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("eap_features");
    TCase *tc = tcase_create("eap_features");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_feature_scores_at_every_residual_point);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
