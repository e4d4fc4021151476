/* test_discover.c — circuit discovery (analysis/circuits/discover.h) and the library's
 * task files (library_task.h) on the bundled model.
 *
 * Checks, and their tolerances:
 *   endpoints      f(0) = 0 and f(100 %) = 1 exactly (by construction: the same runs);
 *                  m(N) = mean LD_clean and m(∅) = mean LD_corr: 1e-4 (f32 forwards, the
 *                  residual re-added from patched pieces).
 *   areas          CPR / CMD against a trapezoid written here: 1e-12 (same sums, f64).
 *   verification   the table against exact patching done here with eap.h: 1e-9 (the same
 *                  deterministic forward passes).
 *   pairs          two pairs of different lengths averaged: mean LD over the pairs = the mean
 *                  of the single-pair runs: 1e-9.
 *   mean ablation  LD_corr = the clean run with every node at its mean, and the
 *                  verification = LD_clean − m(the node alone at its mean), done here: 1e-9;
 *                  pairs mixing both corruptions refused.
 *   task files     an unknown key, a missing name: TP_ERR_CONFIG naming the file and key.
 */
#include "tp_test.h"

#include "analysis/circuits/discover.h"
#include "analysis/circuits/library_task.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static tp_model *bundled(void)
{
    char dir[4096];
    const char *src = getenv("TP_SOURCE_DIR");
    ck_assert_msg(src, "TP_SOURCE_DIR is not set (run under ctest)");
    snprintf(dir, sizeof dir, "%s/models/olmo2-tiny", src);
    tp_model *m = NULL;
    ck_assert_msg(model_open(dir, TP_CONVERT_PER_MATRIX, &m) == TP_OK, "%s", tp_err_msg());
    return m;
}

/* "(1, 2" / "[1, 2" after BOS 0 (target ')' 10, distractor ']' 62), and a longer pair. */
static const int32_t A_CLEAN[] = {0, 9, 18, 13, 222, 19}, A_CORR[] = {0, 60, 18, 13, 222, 19};
static const int32_t B_CLEAN[] = {0, 2055, 705, 346, 3456, 649, 13, 306, 66}, B_CORR[] = {0, 2055, 705, 418, 3456, 649,
                                                                                       13, 898, 66};

static void pairs_of(dc_pair *p)
{
    p[0] = (dc_pair){.clean = A_CLEAN, .corrupt = A_CORR, .T = 6, .target = 10, .distractor = 62};
    p[1] = (dc_pair){.clean = B_CLEAN, .corrupt = B_CORR, .T = 9, .target = 3, .distractor = 8};
}

START_TEST(test_curve_endpoints_and_areas)
{
    tp_model *m = bundled();
    dc_pair p[2];
    pairs_of(p);
    dc_result r;
    ck_assert_msg(dc_run(m, p, 2, 0.8, &r) == TP_OK, "%s", tp_err_msg());
    ck_assert(r.f[0] == 0.0 && r.f[DC_NK - 1] == 1.0);
    ck_assert_msg(fabs(r.m_full - r.ld_clean) < 1e-4, "m(N) %g vs LD_clean %g", r.m_full, r.ld_clean);
    ck_assert_msg(fabs(r.m_empty - r.ld_corr) < 1e-4, "m(0) %g vs LD_corr %g", r.m_empty, r.ld_corr);
    double a = 0, b = 0;
    for (int i = 0; i + 1 < DC_NK; i++) {
        double w = (DC_K_PCT[i + 1] - DC_K_PCT[i]) / 100;
        a += w * 0.5 * (r.f[i] + r.f[i + 1]);
        b += w * 0.5 * (fabs(1 - r.f[i]) + fabs(1 - r.f[i + 1]));
    }
    ck_assert_msg(fabs(a - r.cpr) < 1e-12 && fabs(b - r.cmd) < 1e-12, "CPR %g/%g CMD %g/%g", r.cpr, a, r.cmd, b);
    for (int i = 1; i < DC_NK; i++) ck_assert(r.edges_k[i] >= r.edges_k[i - 1] && r.nodes_k[i] >= r.nodes_k[i - 1]);
    ck_assert_int_eq(r.edges_k[DC_NK - 1], r.n_edges);
    ck_assert(r.kept < 0 || r.f[r.kept] >= 0.8);
    for (int i = 1; r.kept > 0 && i < r.kept; i++) ck_assert(r.f[i] < 0.8);
    dc_result_free(&r);
    model_close(m);
}
END_TEST

START_TEST(test_verification_is_exact_patching)
{
    tp_model *m = bundled();
    dc_pair p[2];
    pairs_of(p);
    dc_result r;
    ck_assert(dc_run(m, p, 2, 0.8, &r) == TP_OK);
    ck_assert_int_eq(r.n_verify, DC_NVERIFY);
    eap_engine *e = NULL;
    ck_assert(eap_engine_new(m, 9, &e) == TP_OK);
    size_t per = (size_t)r.g.n_up * 9 * m->cfg.hidden_size;
    double *clean = malloc(per * sizeof *clean), *corr = malloc(per * sizeof *corr), mc, md;
    uint8_t *keep = malloc((size_t)r.g.n_up);
    ck_assert(clean && corr && keep);
    for (int j = 0; j < r.n_verify; j++) {
        double s = 0;
        for (int i = 0; i < 2; i++) {
            ck_assert(eap_node_outputs(e, p[i].clean, p[i].T, p[i].target, p[i].distractor, clean, &mc) == TP_OK);
            ck_assert(eap_node_outputs(e, p[i].corrupt, p[i].T, p[i].target, p[i].distractor, corr, &md) == TP_OK);
            memset(keep, 1, (size_t)r.g.n_up);
            keep[r.verify_node[j]] = 0;
            ck_assert(eap_patch_metric(e, p[i].corrupt, p[i].T, p[i].target, p[i].distractor, keep, clean, &mc) == TP_OK);
            s += (mc - md) / 2;
        }
        ck_assert_msg(fabs(s - r.verify_exact[j]) < 1e-9, "node %d: %g vs %g", r.verify_node[j], s, r.verify_exact[j]);
        ck_assert(r.verify_eap[j] == r.node[r.verify_node[j]]);
        if (j) ck_assert(fabs(r.verify_eap[j]) <= fabs(r.verify_eap[j - 1]));
    }
    free(clean), free(corr), free(keep);
    eap_engine_free(e);
    dc_result_free(&r);
    model_close(m);
}
END_TEST

START_TEST(test_pairs_of_different_lengths_average)
{
    tp_model *m = bundled();
    dc_pair p[2];
    pairs_of(p);
    dc_result both, one, two;
    ck_assert(dc_run(m, p, 2, 0.8, &both) == TP_OK);
    ck_assert(dc_run(m, p, 1, 0.8, &one) == TP_OK);
    ck_assert(dc_run(m, p + 1, 1, 0.8, &two) == TP_OK);
    ck_assert(fabs(both.ld_clean - (one.ld_clean + two.ld_clean) / 2) < 1e-9);
    ck_assert(fabs(both.ld_corr - (one.ld_corr + two.ld_corr) / 2) < 1e-9);
    ck_assert(fabs(both.node[0] - (one.node[0] + two.node[0]) / 2) < 1e-9);
    dc_result_free(&both), dc_result_free(&one), dc_result_free(&two);
    model_close(m);
}
END_TEST

START_TEST(test_area_and_edge_counts)
{
    double x[] = {0, 0.5, 1}, f[] = {0, 1, 1}, cpr, cmd;
    dc_area(x, f, 3, &cpr, &cmd);
    ck_assert(fabs(cpr - 0.75) < 1e-15 && fabs(cmd - 0.25) < 1e-15);
    ck_assert_int_eq(dc_edges_at(0, 591), 0);
    ck_assert_int_eq(dc_edges_at(1, 591), 1);    /* 0.1 % of 591 = 0.591 -> 1 */
    ck_assert_int_eq(dc_edges_at(4, 591), 6);    /* 1 % -> ceil(5.91) */
    ck_assert_int_eq(dc_edges_at(DC_NK - 1, 591), 591);
}
END_TEST

START_TEST(test_mean_ablation)
{
    tp_model *m = bundled();
    dc_pair p[2];
    pairs_of(p);
    eap_graph g = eap_graph_of(&m->cfg);
    int T = 6, d = m->cfg.hidden_size;
    size_t per = (size_t)g.n_up * T * d;
    double *acts = malloc(per * sizeof *acts), *mean = calloc((size_t)g.n_up * d, sizeof *mean);
    double *rep = malloc(per * sizeof *rep), md, m0, m1;
    uint8_t *keep = calloc((size_t)g.n_up, 1);
    ck_assert(acts && mean && rep && keep);
    eap_engine *e = NULL;
    ck_assert(eap_engine_new(m, T, &e) == TP_OK);
    /* "means": the corrupted prompt's node outputs averaged over its positions */
    ck_assert(eap_node_outputs(e, A_CORR, T, 10, 62, acts, &md) == TP_OK);
    for (int u = 0; u < g.n_up; u++)
        for (int t = 0; t < T; t++)
            for (int k = 0; k < d; k++) mean[(size_t)u * d + k] += acts[((size_t)u * T + t) * d + k] / T;
    for (int u = 0; u < g.n_up; u++)
        for (int t = 0; t < T; t++) memcpy(rep + ((size_t)u * T + t) * d, mean + (size_t)u * d, (size_t)d * sizeof *rep);
    dc_pair q = {.clean = A_CLEAN, .corrupt = NULL, .T = T, .target = 10, .distractor = 62, .mean = mean};
    dc_result r;
    ck_assert_msg(dc_run(m, &q, 1, 0.8, &r) == TP_OK, "%s", tp_err_msg());
    ck_assert(r.mean_mode && r.f[0] == 0.0 && r.f[DC_NK - 1] == 1.0);
    ck_assert(eap_patch_metric(e, A_CLEAN, T, 10, 62, keep, rep, &m0) == TP_OK);   /* every node at its mean */
    ck_assert_msg(fabs(m0 - r.ld_corr) < 1e-9, "%g vs %g", m0, r.ld_corr);
    memset(keep, 1, (size_t)g.n_up);
    keep[r.verify_node[0]] = 0;
    ck_assert(eap_patch_metric(e, A_CLEAN, T, 10, 62, keep, rep, &m1) == TP_OK);
    ck_assert_msg(fabs((r.ld_clean - m1) - r.verify_exact[0]) < 1e-9, "%g vs %g", r.ld_clean - m1, r.verify_exact[0]);
    dc_pair mixed[2] = {p[0], q};
    dc_result bad;
    ck_assert(dc_run(m, mixed, 2, 0.8, &bad) == TP_ERR_CONFIG);
    dc_result_free(&r);
    eap_engine_free(e);
    free(acts), free(mean), free(rep), free(keep);
    model_close(m);
}
END_TEST

static tp_status load_text(const char *text, lib_task *t, char *path, size_t n)
{
    snprintf(path, n, "/tmp/test_discover_%d.yaml", (int)getpid());
    FILE *f = fopen(path, "w");
    ck_assert(f && fputs(text, f) >= 0 && fclose(f) == 0);
    tp_status st = lib_task_load(path, t);
    remove(path);
    return st;
}

START_TEST(test_task_files)
{
    lib_task t;
    char path[128];
    ck_assert(load_text("name: ok\ngenerator: repeat_random\nlength: 5\nn: 2\n", &t, path, sizeof path) == TP_OK);
    ck_assert_str_eq(t.name, "ok");
    ck_assert(t.length == 5 && t.n == 2 && !t.has_seed);
    lib_task_free(&t);
    ck_assert(load_text("name: ok\npairs:\n  - {clean: a, corrupt: b, target: c}\n", &t, path, sizeof path) == TP_OK);
    ck_assert(t.n_text == 1 && !t.pairs[0].distractor);
    lib_task_free(&t);
    ck_assert(load_text("name: bad\ngenrator: corpus\nlength: 4\n", &t, path, sizeof path) == TP_ERR_CONFIG);
    ck_assert_msg(strstr(tp_err_msg(), path) && strstr(tp_err_msg(), "'genrator'"), "%s", tp_err_msg());
    ck_assert(load_text("name: bad\npairs:\n  - {clean: a, corupt: b, target: c}\n", &t, path, sizeof path) ==
              TP_ERR_CONFIG);
    ck_assert_msg(strstr(tp_err_msg(), "'pairs.corupt'"), "%s", tp_err_msg());
    ck_assert(load_text("generator: corpus\nlength: 4\n", &t, path, sizeof path) == TP_ERR_CONFIG);
    ck_assert(load_text("name: x\n", &t, path, sizeof path) == TP_ERR_CONFIG);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("discover");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_area_and_edge_counts);
    tcase_add_test(tc, test_task_files);
    tcase_add_test(tc, test_curve_endpoints_and_areas);
    tcase_add_test(tc, test_verification_is_exact_patching);
    tcase_add_test(tc, test_pairs_of_different_lengths_average);
    tcase_add_test(tc, test_mean_ablation);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
