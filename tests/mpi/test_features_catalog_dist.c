/* MPI: the features catalog (analysis/sae/features_catalog.h) over rows split unevenly
 * over the ranks (tp_test_uneven_slice: at np 4 rank 2 has none), each rank adding its
 * share in pieces of varying size, against the same rows in one process
 * (features_catalog_build on MPI_COMM_SELF). Run by ctest at np 1, 2 and 4.
 *
 * The SAE is hand-made (ReLU, W_enc = the first F basis vectors, s = 2) so that the
 * codes are known: some features on the 1/64 grid with ties on purpose (the heaps'
 * tie rule), others with random f32 inputs, so that their f64 sums depend on the order
 * of the terms. Expected equality: everything exactly (counts, densities, maxima, the
 * top contexts and the quantile samples with their rows, tokens and text, dead and
 * dense lists, logit attribution) but the values that are f64 sums or made from them
 * (mean_activation, activation_mass, domain_profile, domain_purity, score), to 1e-12
 * relative: the sums hold ≤ 400 positive terms, whose reordering moves them by a few
 * ulps (~1e-15). A small reservoir (7) and a small merge block (3 features per round)
 * make the merge of the samples and of the rounds matter. A failure on one rank, in an
 * add or in rank 0's part of finish, fails every rank instead of hanging them.
 */
#include "tp_test.h"

#include "analysis/sae/features_catalog.h"
#include "dist/world.h"
#include "model/model.h"
#include "model/tokenizer.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D_IN 256   /* the bundled model's hidden size */
#define NF 12
#define NROWS 400
#define NDOM 3
#define TOK_T 42

static const char *const dom_names[NDOM] = {"code", "prose", "math"};
static char store[512];
static int32_t tokens[NROWS], positions[NROWS];
static float x[NROWS * D_IN];
static int64_t rows[NROWS];
static int32_t dom[NROWS];
static sae_model sae;
static tp_model *model;
static tp_tokenizer *tok;

static uint64_t rng = 4242;
static uint64_t rnext(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double urand(void) { return (double)(rnext() >> 11) * 0x1.0p-53; }

static void write_1d(hid_t f, const char *name, int64_t n, const int32_t *data)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(ds, 0);
    ck_assert_int_ge(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

/* The same data on every rank (same seed); the store written by rank 0. */
static void make_data(void)
{
    /* Store rows: sequences of 50 tokens; the catalog's rows are every row but those ≡ 2 mod 5
     * (as masked rows would be), so store rows and positions in the list differ. */
    int64_t N = 0;
    for (int64_t r = 0; r < NROWS * 5 / 4 + 1; r++) {
        if (r % 5 == 2) continue;
        if (N == NROWS) break;
        rows[N++] = r;
    }
    const int64_t S = rows[NROWS - 1] + 1;
    int32_t *T = malloc((size_t)S * sizeof *T), *P = malloc((size_t)S * sizeof *P);
    for (int64_t r = 0; r < S; r++) {
        P[r] = (int32_t)(r % 50);
        T[r] = r % 9 == 4 ? TOK_T : (int32_t)(100 + rnext() % 7000);
    }
    for (int64_t i = 0; i < NROWS; i++) {
        const int64_t r = rows[i];
        tokens[i] = T[r], positions[i] = P[r];
        dom[i] = (int32_t)((r / 50) % NDOM);
        float *v = x + i * D_IN;
        for (int j = 0; j < D_IN; j++) v[j] = (float)(urand() * 2 - 1);
        v[0] = (float)((int)(rnext() % 9) - 4) / 8.0f;             /* grid, many ties */
        v[1] = tokens[i] == TOK_T ? (float)(1 + r % 3) / 4.0f : -1;   /* one token, ties */
        v[2] = dom[i] == 1 ? (float)urand() : -1;                   /* one domain */
        v[3] = -2;                                                   /* dead */
        /* 4..11: random f32 on a random share of the rows */
        for (int j = 4; j < NF; j++) v[j] = urand() < 0.1 * (j - 3) ? (float)urand() : -(float)urand();
    }
    if (dist_rank() == 0) {
        snprintf(store, sizeof store, "%s/acts.h5", tp_test_tmpdir());
        hid_t h = H5Fcreate(store, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
        ck_assert_int_ge(h, 0);
        write_1d(h, "tokens", S, T);
        write_1d(h, "positions", S, P);
        ck_assert_int_ge(H5Fclose(h), 0);
    }
    MPI_Bcast(store, sizeof store, MPI_CHAR, 0, MPI_COMM_WORLD);
    free(T), free(P);
}

static void setup(void)
{
    static int ready;
    if (ready) return;
    make_data();
    sae_config cfg = sae_config_default(SAE_RELU, D_IN, NF);
    cfg.apply_b_dec_to_input = 0;
    cfg.dense_freq = 0.3;
    ck_assert_int_eq(sae_init(&sae, &cfg, 16), TP_OK);
    sae.input_scale = 2.0;
    for (int i = 0; i < NF; i++) {
        sae.W_enc[(size_t)i * D_IN + i] = 1.0f;
        for (int j = 0; j < D_IN; j++) sae.W_dec[(size_t)i * D_IN + j] = (float)(urand() * 2 - 1);
    }
    const char *src = getenv("TP_SOURCE_DIR");
    ck_assert_msg(src, "TP_SOURCE_DIR is not set");
    char dir[600], tp[700];
    snprintf(dir, sizeof dir, "%s/models/olmo2-tiny", src);
    ck_assert_int_eq(model_open(dir, TP_CONVERT_PER_MATRIX, &model), TP_OK);
    snprintf(tp, sizeof tp, "%s/tokenizer.json", dir);
    ck_assert_int_eq(tokenizer_load(tp, &tok), TP_OK);
    ready = 1;
}

static features_catalog_input input(void)
{
    setup();
    features_catalog_input in = {.sae = &sae, .hook_name = "blocks.1.hook_resid_post", .layer = 1,
                                 .domain_names = dom_names, .n_domains = NDOM, .store_path = store,
                                 .model = model, .tok = tok};
    features_catalog_default_options(&in.opt);
    in.opt.top_k = 6;
    in.opt.reservoir = 7;
    in.opt.n_quantiles = 4;
    in.opt.block_rows = 5;
    in.opt.max_detailed = 8;   /* of 11 live: the selection by mass is merged too */
    in.opt.merge_block = 3;    /* 12 features in 4 rounds */
    in.opt.n_logit_tokens = 3;
    in.opt.n_read_tokens = 3;
    in.opt.seed = 99;
    return in;
}

/* This rank's rows, added in pieces of 1..13 rows. */
static tp_status add_my_rows(features_catalog_acc *acc, const int32_t *domains)
{
    int64_t r0, n;
    tp_test_uneven_slice(NROWS, dist_rank(), dist_size(), &r0, &n);
    tp_status st = TP_OK;
    for (int64_t a = r0, k = 0; a < r0 + n && st == TP_OK; k++) {
        int64_t b = a + 1 + (a * 7 + k) % 13;
        if (b > r0 + n) b = r0 + n;
        st = features_catalog_add(acc, x + a * D_IN, rows + a, domains + a, b - a);
        a = b;
    }
    return st;
}

static const char *const summed[] = {"mean_activation", "activation_mass", "domain_profile", "domain_purity",
                                     "score", NULL};

/* got == want: reals exactly, but under a key of `summed` to 1e-12 relative. */
static void expect_same(const json_t *got, const json_t *want, const char *path, int tol)
{
    char sub[512];
    ck_assert_msg(json_typeof(got) == json_typeof(want) || (json_is_number(got) && json_is_number(want)),
                  "[rank %d] %s: type %d vs %d", dist_rank(), path, got ? (int)json_typeof(got) : -1,
                  (int)json_typeof(want));
    if (json_is_object(want)) {
        ck_assert_msg(json_object_size(got) == json_object_size(want), "%s: %zu keys vs %zu", path,
                      json_object_size(got), json_object_size(want));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)want, k, v) {
            snprintf(sub, sizeof sub, "%s.%s", path, k);
            int t = tol;
            for (int i = 0; summed[i]; i++) t |= !strcmp(k, summed[i]);
            json_t *g = json_object_get(got, k);
            ck_assert_msg(g, "%s: missing", sub);
            expect_same(g, v, sub, t);
        }
    } else if (json_is_array(want)) {
        ck_assert_msg(json_array_size(got) == json_array_size(want), "%s: %zu entries vs %zu", path,
                      json_array_size(got), json_array_size(want));
        for (size_t i = 0; i < json_array_size(want); i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            expect_same(json_array_get(got, i), json_array_get(want, i), sub, tol);
        }
    } else if (json_is_real(want) && tol) {
        double g = json_number_value(got), w = json_number_value(want);
        ck_assert_msg(fabs(g - w) <= 1e-12 * fabs(w), "%s: %.17g vs %.17g", path, g, w);
    } else {
        ck_assert_msg(json_equal(got, want), "[rank %d] %s differs", dist_rank(), path);
    }
}

START_TEST(test_ranks_match_one_process)
{
    features_catalog_input in = input();
    features_catalog_acc *acc = NULL;
    ck_assert_msg(features_catalog_begin(&in, &acc) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg(add_my_rows(acc, dom) == TP_OK, "%s", tp_err_msg());
    json_t *all = NULL;
    ck_assert_msg(features_catalog_finish(acc, MPI_COMM_WORLD, &all) == TP_OK, "%s", tp_err_msg());
    features_catalog_free(acc);
    if (dist_rank() != 0) {
        ck_assert_ptr_null(all);
        return;
    }
    json_t *one = NULL;
    ck_assert_msg(features_catalog_build(&in, x, rows, dom, NROWS, &one) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(json_integer_value(json_object_get(all, "rows")), NROWS);
    /* the data exercises what it should: a dead feature, a capped detail, sampled features */
    ck_assert_int_eq(json_integer_value(json_object_get(one, "n_dead")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(one, "detailed"), "count")), 8);
    ck_assert(json_is_true(json_object_get(json_object_get(one, "logit_attribution"), "computed")));
    int sampled = 0;
    size_t i;
    json_t *f;
    json_array_foreach(json_object_get(one, "features"), i, f) {
        sampled += json_integer_value(json_object_get(f, "fires")) > 7 && json_object_get(f, "quantile_samples");
        if (json_object_get(f, "top_contexts"))
            ck_assert_ptr_nonnull(json_object_get(json_array_get(json_object_get(f, "top_contexts"), 0), "context"));
    }
    ck_assert_int_ge(sampled, 6);
    expect_same(all, one, "layer", 0);
    json_decref(one);
    json_decref(all);
}
END_TEST

/* The number of ranks changes the f64 sums only in their last bits: the sums of the
 * grid-valued feature 0 are exact, so they are identical. */
START_TEST(test_exact_sums_are_identical)
{
    features_catalog_input in = input();
    features_catalog_acc *acc = NULL;
    ck_assert(features_catalog_begin(&in, &acc) == TP_OK);
    ck_assert(add_my_rows(acc, dom) == TP_OK);
    json_t *all = NULL;
    ck_assert(features_catalog_finish(acc, MPI_COMM_WORLD, &all) == TP_OK);
    features_catalog_free(acc);
    if (dist_rank() != 0) return;
    double mass = 0;
    int64_t fires = 0;
    for (int64_t r = 0; r < NROWS; r++)
        if (2.0 * x[r * D_IN] > 0) mass += 2.0 * x[r * D_IN], fires++;
    json_t *f0 = json_array_get(json_object_get(all, "features"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(f0, "fires")), fires);
    ck_assert_double_eq(json_real_value(json_object_get(f0, "activation_mass")), mass);
    ck_assert_double_eq(json_real_value(json_object_get(f0, "mean_activation")), mass / (double)fires);
    json_decref(all);
}
END_TEST

/* A bad domain index on the last rank: that rank's add fails; every rank's finish fails
 * (the last with its own error, the others "another rank failed"), none hangs. */
START_TEST(test_failed_add_fails_every_rank)
{
    features_catalog_input in = input();
    int32_t *bad = malloc(sizeof dom);
    memcpy(bad, dom, sizeof dom);
    const int last = dist_size() - 1;
    int64_t r0, n;
    tp_test_uneven_slice(NROWS, last, dist_size(), &r0, &n);
    bad[r0 + n / 2] = NDOM;
    features_catalog_acc *acc = NULL;
    ck_assert(features_catalog_begin(&in, &acc) == TP_OK);
    tp_status add = add_my_rows(acc, bad);
    ck_assert_int_eq(add, dist_rank() == last ? TP_ERR_RANGE : TP_OK);
    json_t *L = (json_t *)1;
    tp_status st = features_catalog_finish(acc, MPI_COMM_WORLD, &L);
    ck_assert_int_eq(st, dist_rank() == last ? TP_ERR_RANGE : TP_ERR_MPI);
    ck_assert_ptr_null(L);
    features_catalog_free(acc);
    free(bad);
}
END_TEST

/* Rank 0 fails after the merge (its store cannot be opened): every rank fails. */
START_TEST(test_rank0_failure_fails_every_rank)
{
    features_catalog_input in = input();
    in.store_path = "/nonexistent/acts.h5";
    features_catalog_acc *acc = NULL;
    ck_assert(features_catalog_begin(&in, &acc) == TP_OK);
    ck_assert(add_my_rows(acc, dom) == TP_OK);
    json_t *L = (json_t *)1;
    tp_status st = features_catalog_finish(acc, MPI_COMM_WORLD, &L);
    ck_assert_int_ne(st, TP_OK);
    if (dist_rank() != 0) ck_assert_int_eq(st, TP_ERR_MPI);
    ck_assert_ptr_null(L);
    features_catalog_free(acc);
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 2;
    Suite *s = suite_create("features_catalog_dist");
    TCase *tc = tcase_create("ranks");
    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, test_ranks_match_one_process);
    tcase_add_test(tc, test_exact_sums_are_identical);
    tcase_add_test(tc, test_failed_add_fails_every_rank);
    tcase_add_test(tc, test_rank0_failure_fails_every_rank);
    suite_add_tcase(s, tc);
    int rc = tp_test_run_suite_mpi(s);
    if (model) {
        sae_free(&sae);
        model_close(model);
        tokenizer_free(tok);
    }
    dist_finalize();
    return rc;
}
