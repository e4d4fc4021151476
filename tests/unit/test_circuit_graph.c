/* test_circuit_graph.c — circuit graphs: node identity, edge accumulation, pruning to
 * what reaches the logits, JSON, DOT escaping and the SVG rendered by libgvc. */
#include "analysis/circuits/circuit_graph.h"
#include "core/fsutil.h"
#include "tp_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) n = 0;
    if (b) b[n] = '\0';
    fclose(f);
    return b;
}

/* embed -> a0.h1 -> m1 -> logits, embed -> logits, a0.h2 -> a1.h0 (a dead end). */
static cg_graph *sample(int *ids)
{
    cg_graph *g;
    ck_assert_int_eq(cg_new(&g), TP_OK);
    ck_assert_int_eq(cg_node_get(g, CG_EMBED, 99, 7, "x", &ids[0]), TP_OK);
    ck_assert_int_eq(cg_node_get(g, CG_HEAD, 0, 1, NULL, &ids[1]), TP_OK);
    ck_assert_int_eq(cg_node_get(g, CG_MLP, 1, 5, NULL, &ids[2]), TP_OK);
    ck_assert_int_eq(cg_node_get(g, CG_LOGITS, 2, 0, NULL, &ids[3]), TP_OK);
    ck_assert_int_eq(cg_node_get(g, CG_HEAD, 0, 2, NULL, &ids[4]), TP_OK);
    ck_assert_int_eq(cg_node_get(g, CG_HEAD, 1, 0, NULL, &ids[5]), TP_OK);
    ck_assert_int_eq(cg_edge_add(g, ids[0], ids[1], 0.5), TP_OK);
    ck_assert_int_eq(cg_edge_add(g, ids[1], ids[2], -0.75), TP_OK);
    ck_assert_int_eq(cg_edge_add(g, ids[2], ids[3], 1.0), TP_OK);
    ck_assert_int_eq(cg_edge_add(g, ids[0], ids[3], 0.01), TP_OK);
    ck_assert_int_eq(cg_edge_add(g, ids[4], ids[5], 2.0), TP_OK);
    return g;
}

START_TEST(test_nodes_and_edges)
{
    int ids[6];
    cg_graph *g = sample(ids);
    ck_assert_int_eq(cg_num_nodes(g), 6);
    ck_assert_str_eq(cg_node_at(g, ids[0])->id, "embed");
    ck_assert_int_eq(cg_node_at(g, ids[0])->layer, -1);   /* embed has no layer */
    ck_assert_int_eq(cg_node_at(g, ids[0])->index, -1);
    ck_assert_str_eq(cg_node_at(g, ids[1])->id, "a0.h1");
    ck_assert_str_eq(cg_node_at(g, ids[2])->id, "m1");
    ck_assert_int_eq(cg_node_at(g, ids[2])->index, -1);
    ck_assert_str_eq(cg_node_at(g, ids[3])->id, "logits");
    int again;
    ck_assert_int_eq(cg_node_get(g, CG_HEAD, 0, 1, NULL, &again), TP_OK);
    ck_assert_int_eq(again, ids[1]);
    ck_assert_int_eq(cg_node_get(g, CG_LOGITS, 7, 0, NULL, &again), TP_OK);   /* one logits node */
    ck_assert_int_eq(again, ids[3]);
    int f;
    ck_assert_int_eq(cg_node_get(g, CG_FEATURE, 2, 117, "blocks.2.hook_resid_post", &f), TP_OK);
    ck_assert_str_eq(cg_node_at(g, f)->id, "f2.blocks.2.hook_resid_post.117");
    ck_assert(isnan(cg_node_at(g, f)->score));
    /* a second edge u -> v adds to the first */
    ck_assert_int_eq(cg_edge_add(g, ids[0], ids[1], 0.25), TP_OK);
    ck_assert_int_eq(cg_num_edges(g), 5);
    ck_assert(fabs(cg_edge_at(g, 0)->weight - 0.75) < 1e-15);
    TP_ASSERT_FAILS(cg_edge_add(g, ids[1], ids[1], 1.0), TP_ERR_INTERNAL, "edge");
    TP_ASSERT_FAILS(cg_edge_add(g, ids[1], 99, 1.0), TP_ERR_INTERNAL, "edge");
    cg_free(g);
}
END_TEST

START_TEST(test_prune)
{
    int ids[6];
    cg_graph *g = sample(ids);
    /* |w| >= 0.1: embed->logits goes; the a0.h2 -> a1.h0 branch never reaches logits */
    ck_assert_int_eq(cg_prune(g, 0.1, 0), TP_OK);
    ck_assert_int_eq(cg_num_nodes(g), 4);
    ck_assert_int_eq(cg_num_edges(g), 3);
    for (int i = 0; i < cg_num_nodes(g); i++) ck_assert_str_ne(cg_node_at(g, i)->id, "a0.h2");
    cg_free(g);

    /* at most 1 edge: the largest |w| is a0.h2 -> a1.h0 (2.0), which reaches nothing,
     * so only logits is left */
    g = sample(ids);
    ck_assert_int_eq(cg_prune(g, 0, 1), TP_OK);
    ck_assert_int_eq(cg_num_edges(g), 0);
    ck_assert_int_eq(cg_num_nodes(g), 1);
    ck_assert_str_eq(cg_node_at(g, 0)->id, "logits");
    cg_free(g);

    /* at most 3 edges: 2.0 (dead end), 1.0 and -0.75 kept; m1 and a0.h1 reach logits */
    g = sample(ids);
    ck_assert_int_eq(cg_prune(g, 0, 3), TP_OK);
    ck_assert_int_eq(cg_num_edges(g), 2);
    ck_assert_int_eq(cg_num_nodes(g), 3);
    cg_free(g);
}
END_TEST

START_TEST(test_json)
{
    int ids[6];
    cg_graph *g = sample(ids);
    cg_node_at(g, ids[1])->score = 0.3;
    json_t *j;
    ck_assert_int_eq(cg_to_json(g, &j), TP_OK);
    json_t *nodes = json_object_get(j, "nodes"), *edges = json_object_get(j, "edges");
    ck_assert_int_eq(json_array_size(nodes), 6);
    ck_assert_int_eq(json_array_size(edges), 5);
    json_t *h = json_array_get(nodes, 1);
    ck_assert_str_eq(json_string_value(json_object_get(h, "kind")), "head");
    ck_assert_int_eq(json_integer_value(json_object_get(h, "head")), 1);
    ck_assert(fabs(json_real_value(json_object_get(h, "score")) - 0.3) < 1e-15);
    ck_assert(json_is_null(json_object_get(json_array_get(nodes, 0), "score")));
    /* edges by |weight|, largest first */
    double prev = INFINITY;
    for (size_t i = 0; i < json_array_size(edges); i++) {
        double w = fabs(json_real_value(json_object_get(json_array_get(edges, i), "weight")));
        ck_assert(w <= prev);
        prev = w;
    }
    json_t *e0 = json_array_get(edges, 0);
    ck_assert_str_eq(json_string_value(json_object_get(e0, "source")), "a0.h2");
    ck_assert_str_eq(json_string_value(json_object_get(e0, "target")), "a1.h0");
    json_decref(j);
    cg_free(g);
}
END_TEST

START_TEST(test_write)
{
    int ids[6];
    cg_graph *g = sample(ids);
    snprintf(cg_node_at(g, ids[2])->label, sizeof cg_node_at(g, ids[2])->label, "say \"hi\" \\ <b>");
    json_t *meta = json_pack("{s:s, s:[s], s:f}", "method", "EAP", "prompts", "The cat", "threshold", 0.1);
    const char *dir = tp_test_tmp_path("graphs");
    ck_assert_int_eq(cg_write(g, meta, dir, "toy"), TP_OK);
    ck_assert_int_eq((int)json_object_size(meta), 3);   /* meta untouched */

    char path[4200];
    snprintf(path, sizeof path, "%s/toy.json", dir);
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    ck_assert_msg(doc != NULL, "%s", err.text);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "method")), "EAP");
    ck_assert_int_eq(json_array_size(json_object_get(doc, "nodes")), 6);
    json_decref(doc);

    snprintf(path, sizeof path, "%s/toy.dot", dir);
    char *dot = slurp(path);
    ck_assert_ptr_nonnull(dot);
    ck_assert_ptr_nonnull(strstr(dot, "\"a0.h1\" -> \"m1\""));
    ck_assert_ptr_nonnull(strstr(dot, "say \\\"hi\\\" \\\\ <b>"));   /* quotes and backslash escaped */
    ck_assert_ptr_nonnull(strstr(dot, "#c0392b"));                 /* the negative edge is red */
    free(dot);

    snprintf(path, sizeof path, "%s/toy.svg", dir);
    char *svg = slurp(path);
    ck_assert_ptr_nonnull(svg);
    ck_assert_ptr_nonnull(strstr(svg, "<svg"));
    ck_assert_ptr_nonnull(strstr(svg, "a0.h1"));
    ck_assert_ptr_nonnull(strstr(svg, "&lt;b&gt;"));   /* the label reached the SVG, XML-escaped */
    free(svg);
    json_decref(meta);
    cg_free(g);
}
END_TEST

START_TEST(test_render_errors)
{
    TP_ASSERT_FAILS(cg_render_svg("digraph { a -> ", tp_test_tmp_path("bad.svg")), TP_ERR_FORMAT, "bad.svg");
    ck_assert(!fs_exists(tp_test_tmp_path("bad.svg")));
    cg_graph *g;
    ck_assert_int_eq(cg_new(&g), TP_OK);
    int id;
    char hook[200];
    memset(hook, 'x', sizeof hook - 1);
    hook[sizeof hook - 1] = '\0';
    TP_ASSERT_FAILS(cg_node_get(g, CG_FEATURE, 0, 1, hook, &id), TP_ERR_RANGE, "too long");
    /* no directory can be made under a file */
    ck_assert_int_eq(cg_node_get(g, CG_LOGITS, 1, 0, NULL, &id), TP_OK);
    FILE *f = fopen(tp_test_tmp_path("afile"), "w");
    fclose(f);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/sub", tp_test_tmp_path("afile"));
    ck_assert_int_ne(cg_write(g, NULL, dir, "x"), TP_OK);
    cg_free(g);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("circuit_graph");
    TCase *tc = tcase_create("graph");
    tcase_add_test(tc, test_nodes_and_edges);
    tcase_add_test(tc, test_prune);
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_write);
    tcase_add_test(tc, test_render_errors);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
