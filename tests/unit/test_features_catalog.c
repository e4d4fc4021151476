/* test_features_catalog.c — the features catalog (analysis/sae/features_catalog.h)
 * on a hand-made SAE whose codes are exact, the store's index datasets written for
 * the test (serial HDF5, store.h's layout), a domain per row given by the test (as the
 * SAE phase gives the store's), and the bundled models/olmo2-tiny (W_E, W_U, final
 * norm, tokenizer) or a hand-made BF16 model; then the file and its index
 * (io/features_index.h). One process, no MPI_Init (features_catalog_build runs on
 * MPI_COMM_SELF); tests/mpi/test_features_catalog_dist.c splits the rows over ranks.
 *
 * The SAE: W_enc = the first F basis vectors, b_dec = 0 (not applied), input scale
 * s = 2, so code_i(x) = max(2·x_i + b_i, 0). Inputs are multiples of 1/64 and the
 * biases small integers: every code is exact in f32 whatever the GEMM's order, so
 * fires, max, the top rows (with ties) and the quantile samples are compared exactly,
 * and sums (f64 on both sides, of exact terms in another order) to 1e-12 relative.
 * The codes are multiples of 1/32 below 2^10, so every f64 sum is exact in any order:
 * the catalog of any split of the rows into adds, in any order, is json_equal to one add.
 *
 * Logit attribution and reads are recomputed in f64 from the definitions
 * (W_U[t]·(γ ⊙ w_i)/s, W_E[t]·(s·e_i)). The catalog's SGEMM is f32 over d = 256
 * terms: ~1e-6 of Σ|terms|; bound: 1e-4 · max_t |score_t| of the feature. The set of
 * m tokens is checked up to that tolerance: every listed token's exact score is within
 * tol of the exact m-th best, and the list is sorted and m long.
 */
#include "analysis/sae/features_catalog.h"
#include "io/features_index.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tp_test.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define D_IN 256
#define NF 10
#define NDOC 4
#define TOK_T 42     /* the token feature 3 reads */

static const int64_t doc_len[NDOC] = {50, 70, 60, 80};
/* The store's domains: the documents' (doc_domain), and "delta" with no row at all. */
#define NDOM 4
static const char *const dom_names[NDOM] = {"alpha", "beta", "gamma", "delta"};
static const int32_t doc_domain[NDOC] = {2, 0, 1, 0};   /* gamma, alpha, beta, alpha */
static const float bias[NF] = {0, -1000, 8, 0, 0, 0, 0, 0, 0, 0};

static struct {
    int ready;
    char store[512], model_dir[512];
    int64_t N, n;
    int32_t *tokens, *positions;
    int64_t *row_doc;          /* [N] store document of each row */
    float *x;                  /* [n, d] */
    int64_t *rows;             /* [n] store rows */
    int32_t *dom;              /* [n] their domains (index into dom_names) */
    sae_model sae;
    tp_model *m;
    tp_tokenizer *tok;
} fx;

static uint64_t rng_state = 777;
static uint64_t rnext(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static double urand(void) { return (double)(rnext() >> 11) * 0x1.0p-53; }
static float grid_pos(void) { return (float)(1 + (int)(rnext() % 63)) / 64.0f; }   /* (0, 1) on the 1/64 grid */

static void write_1d(hid_t f, const char *name, hid_t ftype, hid_t mtype, int64_t n, const void *data)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t sp = H5Screate_simple(1, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(ds, 0);
    ck_assert_int_ge(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), 0);
    H5Dclose(ds);
    H5Sclose(sp);
}

static int row_domain_id(int64_t row) { return doc_domain[fx.row_doc[row]]; }
static const char *row_domain(int64_t row) { return dom_names[row_domain_id(row)]; }

static void setup_fixture(void)
{
    if (fx.ready) return;
    const char *src = getenv("TP_SOURCE_DIR");
    ck_assert_msg(src, "TP_SOURCE_DIR is not set");
    snprintf(fx.model_dir, sizeof fx.model_dir, "%s/models/olmo2-tiny", src);
    snprintf(fx.store, sizeof fx.store, "%s/acts.h5", tp_test_tmpdir());

    /* Store: one sequence per document. */
    fx.N = 0;
    for (int k = 0; k < NDOC; k++) fx.N += doc_len[k];
    fx.tokens = malloc((size_t)fx.N * sizeof *fx.tokens);
    fx.positions = malloc((size_t)fx.N * sizeof *fx.positions);
    fx.row_doc = malloc((size_t)fx.N * sizeof *fx.row_doc);
    uint8_t *mask = malloc((size_t)fx.N);
    int64_t off[NDOC + 1] = {0}, r = 0;
    for (int k = 0; k < NDOC; k++) {
        for (int64_t p = 0; p < doc_len[k]; p++, r++) {
            fx.positions[r] = (int32_t)p;
            fx.tokens[r] = r % 7 == 3 ? TOK_T : (int32_t)(100 + rnext() % 7900);
            fx.row_doc[r] = k;
            mask[r] = 1;
        }
        off[k + 1] = r;
    }
    /* The store's index datasets (store.h's names and types), written with serial
     * HDF5 so that the test needs no MPI (and runs under LeakSanitizer in CI). */
    hid_t h = H5Fcreate(fx.store, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    ck_assert_int_ge(h, 0);
    write_1d(h, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, fx.N, fx.tokens);
    write_1d(h, "positions", H5T_STD_I32LE, H5T_NATIVE_INT32, fx.N, fx.positions);
    write_1d(h, "mask", H5T_STD_U8LE, H5T_NATIVE_UINT8, fx.N, mask);
    write_1d(h, "doc_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, NDOC + 1, off);
    write_1d(h, "doc_domain", H5T_STD_I32LE, H5T_NATIVE_INT32, NDOC, doc_domain);
    ck_assert_int_ge(H5Fclose(h), 0);
    free(mask);

    /* Evaluation rows: every store row but those ≡ 1 mod 4. */
    fx.rows = malloc((size_t)fx.N * sizeof *fx.rows);
    fx.n = 0;
    for (int64_t q = 0; q < fx.N; q++)
        if (q % 4 != 1) fx.rows[fx.n++] = q;
    fx.x = calloc((size_t)(fx.n * D_IN), sizeof *fx.x);
    fx.dom = malloc((size_t)fx.n * sizeof *fx.dom);
    for (int64_t i = 0; i < fx.n; i++) {
        const int64_t row = fx.rows[i];
        fx.dom[i] = row_domain_id(row);
        float *x = fx.x + i * D_IN;
        for (int j = 0; j < D_IN; j++) x[j] = (float)((int)(rnext() % 129) - 64) / 64.0f;
        x[0] = urand() < 0.3 ? grid_pos() : -grid_pos();
        x[3] = fx.tokens[row] == TOK_T ? (float)(1 + row % 5) / 8.0f : -0.5f;     /* ties on purpose */
        x[4] = !strcmp(row_domain(row), "beta") ? grid_pos() : -1.0f;
        for (int j = 5; j < NF; j++) x[j] = urand() < 0.07 * (j - 4) ? grid_pos() : -grid_pos();
    }

    /* The SAE. */
    sae_config cfg = sae_config_default(SAE_RELU, D_IN, NF);
    cfg.apply_b_dec_to_input = 0;
    cfg.dense_freq = 0.5;
    ck_assert_int_eq(sae_init(&fx.sae, &cfg, 16), TP_OK);
    fx.sae.input_scale = 2.0;
    for (int i = 0; i < NF; i++) {
        fx.sae.W_enc[(size_t)i * D_IN + i] = 1.0f;
        fx.sae.b_enc[i] = bias[i];
        for (int j = 0; j < D_IN; j++)
            fx.sae.W_dec[(size_t)i * D_IN + j] =
                (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand()));
    }
    ck_assert_int_eq(model_open(fx.model_dir, TP_CONVERT_PER_MATRIX, &fx.m), TP_OK);
    char tp[600];
    snprintf(tp, sizeof tp, "%s/tokenizer.json", fx.model_dir);
    ck_assert_int_eq(tokenizer_load(tp, &fx.tok), TP_OK);
    fx.ready = 1;
}

static double code(int64_t i, int f) { double v = 2.0 * fx.x[i * D_IN + f] + bias[f]; return v > 0 ? v : 0; }

static features_catalog_input base_input(void)
{
    setup_fixture();
    features_catalog_input in = {.sae = &fx.sae, .hook_name = "blocks.1.hook_resid_post", .layer = 1,
                                 .domain_names = dom_names, .n_domains = NDOM, .store_path = fx.store,
                                 .model = fx.m, .tok = fx.tok};
    features_catalog_default_options(&in.opt);
    in.opt.top_k = 8;
    in.opt.reservoir = 1000;   /* ≥ n: quantile samples exact */
    in.opt.block_rows = 37;
    in.opt.max_detailed = 0;
    return in;
}

static json_t *build_rows(const features_catalog_input *in, const int64_t *rows, const int32_t *dom, int64_t n)
{
    json_t *L = NULL;
    tp_status st = features_catalog_build(in, fx.x, rows, dom, n, &L);
    ck_assert_msg(st == TP_OK, "features_catalog_build: %s", tp_err_msg());
    ck_assert_ptr_nonnull(L);
    return L;
}

static json_t *build(const features_catalog_input *in) { return build_rows(in, fx.rows, fx.dom, fx.n); }

static json_t *feature(json_t *L, int i)
{
    json_t *f = json_array_get(json_object_get(L, "features"), (size_t)i);
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(json_integer_value(json_object_get(f, "id")), i);
    return f;
}

static char *dec(const int32_t *ids, size_t n)
{
    char *t = NULL;
    size_t len = 0;
    if (n == 0) return strdup("");
    ck_assert_int_eq(tokenizer_decode(fx.tok, ids, n, TOKENIZER_REPLACE_INVALID, &t, &len), TP_OK);
    return t;
}

/* The documented context of a store row: ≤ before tokens of its sequence, ⟦token⟧,
 * ≤ after following tokens of the same sequence. */
static char *expected_context(int64_t row, int before, int after)
{
    int64_t nb = fx.positions[row] < before ? fx.positions[row] : before, na = 0;
    while (na < after && row + na + 1 < fx.N && fx.row_doc[row + na + 1] == fx.row_doc[row]) na++;
    char *a = dec(fx.tokens + row - nb, (size_t)nb), *b = dec(fx.tokens + row, 1), *c = dec(fx.tokens + row + 1, (size_t)na);
    size_t len = strlen(a) + strlen(b) + strlen(c) + 16;
    char *out = malloc(len);
    snprintf(out, len, "%s\xe2\x9f\xa6%s\xe2\x9f\xa7%s", a, b, c);
    free(a), free(b), free(c);
    return out;
}

typedef struct { double a; int64_t i; } ai;
static int ai_desc(const void *x, const void *y)
{
    const ai *p = x, *q = y;
    if (p->a != q->a) return p->a > q->a ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}
static int ai_asc(const void *x, const void *y)
{
    const ai *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

START_TEST(test_stats_contexts_domains)
{
    features_catalog_input in = base_input();
    json_t *L = build(&in);
    ck_assert_str_eq(json_string_value(json_object_get(L, "hook")), "blocks.1.hook_resid_post");
    ck_assert_int_eq(json_integer_value(json_object_get(L, "rows")), fx.n);
    ck_assert_int_eq(json_array_size(json_object_get(L, "features")), NF);
    /* dead: feature 1 only; dense (density > cfg.dense_freq = 0.5): feature 2 only */
    json_t *dead = json_object_get(L, "dead_features"), *dense = json_object_get(L, "dense_features");
    ck_assert_int_eq(json_array_size(dead), 1);
    ck_assert_int_eq(json_integer_value(json_array_get(dead, 0)), 1);
    ck_assert_int_eq(json_array_size(dense), 1);
    ck_assert_int_eq(json_integer_value(json_array_get(dense, 0)), 2);
    ck_assert_ptr_nonnull(json_object_get(L, "definitions"));
    /* domain rows */
    json_t *dr = json_object_get(L, "domain_rows");
    int64_t want_rows[3] = {0};   /* alpha, beta, gamma */
    const char *names[3] = {"alpha", "beta", "gamma"};
    for (int64_t i = 0; i < fx.n; i++)
        for (int k = 0; k < 3; k++) want_rows[k] += !strcmp(row_domain(fx.rows[i]), names[k]);
    for (int k = 0; k < 3; k++) ck_assert_int_eq(json_integer_value(json_object_get(dr, names[k])), want_rows[k]);
    /* every domain of the store is listed, one without rows too (and it does not count in D) */
    ck_assert_int_eq(json_object_size(dr), NDOM);
    ck_assert(json_is_integer(json_object_get(dr, "delta")));
    ck_assert_int_eq(json_integer_value(json_object_get(dr, "delta")), 0);

    ai *v = malloc((size_t)fx.n * sizeof *v);
    for (int f = 0; f < NF; f++) {
        json_t *j = feature(L, f);
        int64_t fires = 0, nv = 0;
        double sum = 0, mx = 0, mass[3] = {0};
        for (int64_t i = 0; i < fx.n; i++) {
            double a = code(i, f);
            if (a <= 0) continue;
            fires++, sum += a, mx = fmax(mx, a);
            for (int k = 0; k < 3; k++) mass[k] += !strcmp(row_domain(fx.rows[i]), names[k]) ? a : 0;
            v[nv].a = a, v[nv++].i = i;
        }
        ck_assert_int_eq(json_integer_value(json_object_get(j, "fires")), fires);
        ck_assert_double_eq_tol(json_real_value(json_object_get(j, "density")), (double)fires / (double)fx.n, 1e-15);
        if (fires == 0) {
            ck_assert(json_is_null(json_object_get(j, "mean_activation")));
            ck_assert_ptr_null(json_object_get(j, "top_contexts"));   /* dead: no detail */
            continue;
        }
        ck_assert_double_eq_tol(json_real_value(json_object_get(j, "mean_activation")), sum / (double)fires,
                                1e-12 * sum / (double)fires);
        ck_assert_double_eq(json_real_value(json_object_get(j, "max_activation")), mx);
        /* top contexts: the 8 largest, ties to the earlier row */
        qsort(v, (size_t)nv, sizeof *v, ai_desc);
        json_t *tc = json_object_get(j, "top_contexts");
        int64_t K = nv < 8 ? nv : 8;
        ck_assert_int_eq(json_array_size(tc), K);
        for (int64_t t = 0; t < K; t++) {
            json_t *e = json_array_get(tc, (size_t)t);
            int64_t row = fx.rows[v[t].i];
            ck_assert_int_eq(json_integer_value(json_object_get(e, "row")), row);
            ck_assert_double_eq(json_real_value(json_object_get(e, "activation")), v[t].a);
            ck_assert_int_eq(json_integer_value(json_object_get(e, "token_id")), fx.tokens[row]);
            ck_assert_str_eq(json_string_value(json_object_get(e, "domain")), row_domain(row));
            char *want = expected_context(row, 12, 4), *tk = dec(fx.tokens + row, 1);
            ck_assert_str_eq(json_string_value(json_object_get(e, "context")), want);
            ck_assert_str_eq(json_string_value(json_object_get(e, "token")), tk);
            free(want), free(tk);
        }
        /* quantile samples: exact ranks floor((j + ½)/5 · fires) of the ascending firings */
        qsort(v, (size_t)nv, sizeof *v, ai_asc);
        json_t *qs = json_object_get(j, "quantile_samples");
        int64_t last = -1;
        size_t qi = 0;
        for (int q = 0; q < 5; q++) {
            int64_t rank = (int64_t)floor((q + 0.5) / 5 * (double)nv);
            if (rank == last) continue;
            last = rank;
            json_t *e = json_array_get(qs, qi++);
            ck_assert_ptr_nonnull(e);
            ck_assert_double_eq(json_real_value(json_object_get(e, "quantile")), (q + 0.5) / 5);
            ck_assert_int_eq(json_integer_value(json_object_get(e, "row")), fx.rows[v[rank].i]);
            ck_assert_double_eq(json_real_value(json_object_get(e, "activation")), v[rank].a);
        }
        ck_assert_int_eq(json_array_size(qs), qi);
        /* domain profile */
        json_t *dp = json_object_get(j, "domain_profile");
        int best = 0;
        for (int k = 0; k < 3; k++) {
            json_t *x = json_object_get(dp, names[k]);
            if (mass[k] > 0) ck_assert_double_eq_tol(json_real_value(x), mass[k] / sum, 1e-12);
            else ck_assert_ptr_null(x);
            if (mass[k] > mass[best]) best = k;
        }
        ck_assert_str_eq(json_string_value(json_object_get(j, "top_domain")), names[best]);
        json_t *mono = json_object_get(j, "monosemanticity");
        double score = json_real_value(json_object_get(mono, "score"));
        ck_assert(score >= 0 && score <= 1 + 1e-12);
        /* domain purity from the definition */
        double h = 0, p;
        for (int k = 0; k < 3; k++)
            if ((p = mass[k] / sum) > 0) h -= p * log(p);
        ck_assert_double_eq_tol(json_real_value(json_object_get(mono, "domain_purity")), 1 - h / log(3.0), 1e-12);
    }
    free(v);
    if (getenv("TP_CATALOG_DUMP")) json_dump_file(L, getenv("TP_CATALOG_DUMP"), JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    /* feature 3 fires only on token 42: token purity 1; feature 4 only in beta: domain purity 1 */
    json_t *m3 = json_object_get(feature(L, 3), "monosemanticity"), *m4 = json_object_get(feature(L, 4), "monosemanticity");
    ck_assert_double_eq_tol(json_real_value(json_object_get(m3, "token_purity")), 1.0, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(m3, "score")), 1.0, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(m4, "domain_purity")), 1.0, 1e-12);
    ck_assert_str_eq(json_string_value(json_object_get(feature(L, 4), "top_domain")), "beta");
    /* the dense feature's top tokens are all different: token purity < 1 */
    ck_assert(json_real_value(json_object_get(json_object_get(feature(L, 2), "monosemanticity"), "token_purity")) < 0.99);
    json_decref(L);
}
END_TEST

/* Exact f64 score of token t for feature f. */
typedef double (*score_fn)(const void *ctx, int64_t t, int f);

typedef struct {
    const float *W;        /* [V, d] f32 (already widened) */
    const float *gamma;    /* NULL: 1 */
    double mult;
    int enc;               /* 1: reads (basis encoder), 0: decoder row */
} score_ctx;

static double score_of(const void *vctx, int64_t t, int f)
{
    const score_ctx *c = vctx;
    const float *w = c->W + t * D_IN;
    if (c->enc) return c->mult * w[f];
    double s = 0;
    for (int j = 0; j < D_IN; j++) s += (double)w[j] * (c->gamma ? c->gamma[j] : 1.0) * fx.sae.W_dec[(size_t)f * D_IN + j];
    return s * c->mult;
}

static int dbl_desc(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a > b ? -1 : a < b;
}

/* list = the m best tokens (sign +1: largest, −1: smallest) of score over valid ids. */
static void check_token_list(json_t *list, const char *key, const score_ctx *c, int64_t V, int f, int m, double sign)
{
    double *e = malloc((size_t)V * sizeof *e);
    int64_t nv = 0;
    double mx = 0;
    int32_t tv = tokenizer_vocab_size(fx.tok);
    for (int64_t t = 0; t < V; t++) {
        if (t >= tv || !tokenizer_id_to_token(fx.tok, (int32_t)t)) continue;
        double s = sign * score_of(c, t, f);
        e[nv++] = s;
        mx = fmax(mx, fabs(s));
    }
    qsort(e, (size_t)nv, sizeof *e, dbl_desc);
    const double tol = 1e-4 * mx;
    ck_assert_int_eq(json_array_size(list), m < nv ? m : nv);
    double prev = INFINITY;
    for (size_t k = 0; k < json_array_size(list); k++) {
        json_t *x = json_array_get(list, k);
        int64_t id = json_integer_value(json_object_get(x, "token_id"));
        double got = sign * json_real_value(json_object_get(x, key)), want = sign * score_of(c, id, f);
        ck_assert_msg(fabs(got - want) <= tol, "feature %d %s token %lld: %g vs exact %g", f, key, (long long)id,
                      sign * got, sign * want);
        ck_assert_msg(want >= e[m - 1] - tol, "feature %d %s: token %lld (%g) is not among the best %d (%g)", f, key,
                      (long long)id, want, m, e[m - 1]);
        ck_assert(got <= prev);
        prev = got;
        char *tk = dec(&(int32_t){(int32_t)id}, 1);
        ck_assert_str_eq(json_string_value(json_object_get(x, "token")), tk);
        free(tk);
    }
    free(e);
}

START_TEST(test_logits_bundled_model)
{
    features_catalog_input in = base_input();
    in.opt.n_logit_tokens = 7;
    in.opt.n_read_tokens = 5;
    in.opt.vocab_block = 1000;   /* 8192 = 8 full blocks + a partial one */
    in.opt.feature_block = 4;
    json_t *L = build(&in);
    ck_assert(json_is_true(json_object_get(json_object_get(L, "logit_attribution"), "computed")));
    const int64_t V = fx.m->lm_head.rows;
    ck_assert_int_eq(fx.m->lm_head.dtype, TP_DTYPE_F32);
    score_ctx up = {.W = fx.m->lm_head.data, .gamma = fx.m->final_norm, .mult = 1.0 / 2.0};
    score_ctx rd = {.W = fx.m->embed.data, .mult = 2.0, .enc = 1};
    for (int f = 0; f < NF; f++) {
        json_t *j = feature(L, f);
        if (f == 1) { ck_assert_ptr_null(json_object_get(j, "promotes")); continue; }
        check_token_list(json_object_get(j, "promotes"), "logit", &up, V, f, 7, 1);
        check_token_list(json_object_get(j, "suppresses"), "logit", &up, V, f, 7, -1);
        check_token_list(json_object_get(j, "reads"), "score", &rd, V, f, 5, 1);
    }
    json_decref(L);
    /* Without the final norm folded, the plain W_U · w_i / s. */
    in.opt.fold_final_norm = 0;
    L = build(&in);
    score_ctx plain = {.W = fx.m->lm_head.data, .gamma = NULL, .mult = 0.5};
    check_token_list(json_object_get(feature(L, 0), "promotes"), "logit", &plain, V, 0, 7, 1);
    json_decref(L);
}
END_TEST

START_TEST(test_logits_bf16_model)
{
    features_catalog_input in = base_input();
    /* A hand-made model: BF16 W_U and W_E [V = 300, 256], a random positive γ. */
    const int64_t V = 300;
    uint16_t *U = malloc((size_t)(V * D_IN) * 2), *E = malloc((size_t)(V * D_IN) * 2);
    float *Uf = malloc((size_t)(V * D_IN) * 4), *Ef = malloc((size_t)(V * D_IN) * 4), gamma[D_IN];
    for (int64_t k = 0; k < V * D_IN; k++) {
        U[k] = tp_f32_to_bf16((float)(urand() * 2 - 1)), Uf[k] = tp_bf16_to_f32(U[k]);
        E[k] = tp_f32_to_bf16((float)(urand() * 2 - 1)), Ef[k] = tp_bf16_to_f32(E[k]);
    }
    for (int j = 0; j < D_IN; j++) gamma[j] = (float)(0.5 + urand());
    tp_model m;
    memset(&m, 0, sizeof m);
    m.cfg.hidden_size = D_IN;
    m.cfg.vocab_size = (int)V;
    m.lm_head = (tp_mat){.name = "lm_head.weight", .data = U, .dtype = TP_DTYPE_BF16, .rows = V, .cols = D_IN};
    m.embed = (tp_mat){.name = "embed.weight", .data = E, .dtype = TP_DTYPE_BF16, .rows = V, .cols = D_IN};
    m.final_norm = gamma;
    in.model = &m;
    in.opt.n_logit_tokens = 6;
    in.opt.n_read_tokens = 4;
    in.opt.vocab_block = 7;     /* 300 = 42·7 + 6 */
    in.opt.feature_block = 3;
    json_t *L = build(&in);
    score_ctx up = {.W = Uf, .gamma = gamma, .mult = 0.5}, rd = {.W = Ef, .mult = 2.0, .enc = 1};
    for (int f = 0; f < NF; f++) {
        if (f == 1) continue;
        json_t *j = feature(L, f);
        check_token_list(json_object_get(j, "promotes"), "logit", &up, V, f, 6, 1);
        check_token_list(json_object_get(j, "suppresses"), "logit", &up, V, f, 6, -1);
        check_token_list(json_object_get(j, "reads"), "score", &rd, V, f, 4, 1);
    }
    json_decref(L);
    /* A model whose hidden size is not d_in: no logit attribution, and it says why. */
    m.cfg.hidden_size = 128;
    L = build(&in);
    json_t *la = json_object_get(L, "logit_attribution");
    ck_assert(json_is_false(json_object_get(la, "computed")));
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(la, "reason")), "hidden size"));
    ck_assert_ptr_null(json_object_get(feature(L, 0), "promotes"));
    ck_assert_ptr_nonnull(json_object_get(feature(L, 0), "top_contexts"));
    json_decref(L);
    free(U), free(E), free(Uf), free(Ef);
}
END_TEST

START_TEST(test_cap_blocks_and_options)
{
    features_catalog_input in = base_input();
    in.model = NULL;
    /* Detail for the 3 live features of largest activation mass only; density for all. */
    in.opt.max_detailed = 3;
    json_t *L = build(&in);
    double mass[NF] = {0};
    for (int64_t i = 0; i < fx.n; i++)
        for (int f = 0; f < NF; f++) mass[f] += code(i, f);
    int want[NF] = {0};
    for (int k = 0; k < 3; k++) {
        int b = -1;
        for (int f = 0; f < NF; f++)
            if (!want[f] && mass[f] > 0 && (b < 0 || mass[f] > mass[b])) b = f;
        want[b] = 1;
    }
    for (int f = 0; f < NF; f++) {
        json_t *j = feature(L, f);
        ck_assert_ptr_nonnull(json_object_get(j, "density"));
        ck_assert_int_eq(json_object_get(j, "top_contexts") != NULL, want[f]);
    }
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(L, "detailed"), "count")), 3);
    ck_assert(json_is_false(json_object_get(json_object_get(L, "logit_attribution"), "computed")));
    json_decref(L);

    /* The result does not depend on the block size, even with a small reservoir. */
    in.opt.max_detailed = 0;
    in.opt.reservoir = 4;
    in.opt.n_quantiles = 3;
    in.opt.block_rows = 1;
    json_t *a = build(&in);
    in.opt.block_rows = 1000;
    json_t *b = build(&in);
    ck_assert(json_equal(a, b));
    /* reservoir of 4: the samples are firing rows, in ascending activation */
    json_t *qs = json_object_get(feature(a, 0), "quantile_samples");
    ck_assert_int_ge(json_array_size(qs), 2);
    for (size_t k = 1; k < json_array_size(qs); k++)
        ck_assert(json_real_value(json_object_get(json_array_get(qs, k), "activation")) >=
                  json_real_value(json_object_get(json_array_get(qs, k - 1), "activation")));
    json_decref(a), json_decref(b);

    /* No domains: every row's domain is "(unknown)"; no tokenizer: ids only. */
    in.domain_names = NULL;
    in.n_domains = 0;
    in.tok = NULL;
    L = build_rows(&in, fx.rows, NULL, fx.n);
    json_t *dr = json_object_get(L, "domain_rows");
    ck_assert_int_eq(json_object_size(dr), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(dr, "(unknown)")), fx.n);
    json_t *e = json_array_get(json_object_get(feature(L, 0), "top_contexts"), 0);
    ck_assert_ptr_nonnull(json_object_get(e, "token_id"));
    ck_assert_ptr_null(json_object_get(e, "context"));
    ck_assert(json_is_null(json_object_get(json_object_get(feature(L, 0), "monosemanticity"), "domain_purity")));
    json_decref(L);
}
END_TEST

START_TEST(test_errors)
{
    features_catalog_input in = base_input();
    json_t *L = (json_t *)1;
    /* a row outside the store (checked against /tokens by rank 0 at finish) */
    int64_t *bad = malloc((size_t)fx.n * sizeof *bad);
    memcpy(bad, fx.rows, (size_t)fx.n * sizeof *bad);
    bad[5] = fx.N;
    ck_assert_int_eq(features_catalog_build(&in, fx.x, bad, fx.dom, fx.n, &L), TP_ERR_RANGE);
    ck_assert_ptr_null(L);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "outside"));
    bad[5] = -3;
    ck_assert_int_eq(features_catalog_build(&in, fx.x, bad, fx.dom, fx.n, &L), TP_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "-3"));
    free(bad);
    /* a domain index that is not one of the domains */
    int32_t *bd = malloc((size_t)fx.n * sizeof *bd);
    memcpy(bd, fx.dom, (size_t)fx.n * sizeof *bd);
    bd[7] = NDOM;
    ck_assert_int_eq(features_catalog_build(&in, fx.x, fx.rows, bd, fx.n, &L), TP_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "domain"));
    /* a failed add is kept: a later good add and finish report it */
    features_catalog_acc *acc = NULL;
    ck_assert_int_eq(features_catalog_begin(&in, &acc), TP_OK);
    ck_assert_int_eq(features_catalog_add(acc, fx.x, fx.rows, bd, fx.n), TP_ERR_RANGE);
    ck_assert_int_eq(features_catalog_add(acc, fx.x, fx.rows, fx.dom, fx.n), TP_ERR_RANGE);
    ck_assert_int_eq(features_catalog_finish(acc, MPI_COMM_SELF, &L), TP_ERR_RANGE);
    ck_assert_ptr_null(L);
    features_catalog_free(acc);
    free(bd);
    /* rows without their domains, duplicate or missing domain names */
    ck_assert_int_eq(features_catalog_build(&in, fx.x, fx.rows, NULL, fx.n, &L), TP_ERR_CONFIG);
    const char *dup[2] = {"alpha", "alpha"};
    in.domain_names = dup;
    in.n_domains = 2;
    ck_assert_int_eq(features_catalog_build(&in, fx.x, fx.rows, fx.dom, fx.n, &L), TP_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "twice"));
    in.domain_names = NULL;
    ck_assert_int_eq(features_catalog_build(&in, fx.x, fx.rows, fx.dom, fx.n, &L), TP_ERR_CONFIG);
    /* bad options */
    in = base_input();
    in.opt.top_k = -1;
    ck_assert_int_eq(features_catalog_build(&in, fx.x, fx.rows, fx.dom, fx.n, &L), TP_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "top_k"));
    in = base_input();
    in.opt.block_rows = 0;
    ck_assert_int_eq(features_catalog_build(&in, fx.x, fx.rows, fx.dom, fx.n, &L), TP_ERR_CONFIG);
    /* a store that does not exist */
    in = base_input();
    in.store_path = "/nonexistent/acts.h5";
    ck_assert_int_ne(features_catalog_build(&in, fx.x, fx.rows, fx.dom, fx.n, &L), TP_OK);
    ck_assert_ptr_null(L);
    /* no rows: every feature dead, nothing detailed */
    in = base_input();
    L = build_rows(&in, fx.rows, fx.dom, 0);
    ck_assert_int_eq(json_integer_value(json_object_get(L, "rows")), 0);
    ck_assert_int_eq(json_array_size(json_object_get(L, "dead_features")), NF);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(L, "detailed"), "count")), 0);
    /* the whole file */
    json_t *saes = json_array();
    json_array_append_new(saes, L);
    json_t *doc = features_catalog_document(json_pack("{s:i}", "rows", 0), saes);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "schema")), "transpolmo.features_catalog/2");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "coverage"), "rows")), 0);
    ck_assert_int_eq(json_array_size(json_object_get(doc, "saes")), 1);
    json_decref(doc);
    doc = features_catalog_document(NULL, json_array());
    ck_assert(json_is_null(json_object_get(doc, "coverage")));
    json_decref(doc);
}
END_TEST

/* The catalog of one add, against many adds of random sizes (empty ones too), in
 * order and in a shuffled order of the pieces, at several block sizes: identical. */
START_TEST(test_splits)
{
    features_catalog_input in = base_input();
    in.model = NULL;
    in.opt.reservoir = 5;    /* a real sample: most features fire more often */
    in.opt.n_quantiles = 3;
    json_t *one = build(&in);
    int64_t cut[64], nc = 0;
    for (int round = 0; round < 4; round++) {
        /* pieces [cut[k], cut[k+1]) of random sizes 0..40 */
        nc = 0;
        cut[nc++] = 0;
        while (cut[nc - 1] < fx.n && nc < 63) {
            int64_t next = cut[nc - 1] + (int64_t)(rnext() % 41);
            cut[nc++] = next < fx.n ? next : fx.n;
        }
        cut[nc - 1] = fx.n;
        int order[64];
        for (int k = 0; k + 1 < nc; k++) order[k] = k;
        if (round % 2)
            for (int k = nc - 2; k > 0; k--) {
                int j = (int)(rnext() % (uint64_t)(k + 1)), t = order[k];
                order[k] = order[j], order[j] = t;
            }
        in.opt.block_rows = round < 2 ? 7 : 300;
        features_catalog_acc *acc = NULL;
        ck_assert_int_eq(features_catalog_begin(&in, &acc), TP_OK);
        for (int k = 0; k + 1 < nc; k++) {
            const int64_t a = cut[order[k]], b = cut[order[k] + 1];
            ck_assert_msg(features_catalog_add(acc, fx.x + a * D_IN, fx.rows + a, fx.dom + a, b - a) == TP_OK, "%s",
                          tp_err_msg());
        }
        json_t *many = NULL;
        ck_assert_msg(features_catalog_finish(acc, MPI_COMM_SELF, &many) == TP_OK, "%s", tp_err_msg());
        features_catalog_free(acc);
        ck_assert_msg(json_equal(one, many), "round %d: %d pieces%s give another catalog", round, (int)nc - 1,
                      round % 2 ? " (shuffled)" : "");
        json_decref(many);
    }
    json_decref(one);
}
END_TEST

typedef struct { uint64_t key; int64_t i; } key_i;
static int key_i_cmp(const void *x, const void *y)
{
    const key_i *p = x, *q = y;
    if (p->key != q->key) return p->key < q->key ? -1 : 1;
    return fx.rows[p->i] < fx.rows[q->i] ? -1 : fx.rows[p->i] > fx.rows[q->i];
}

/* The sample is its definition: the R firings of smallest
 * features_catalog_sample_key(seed, feature, store row). With n_quantiles = R the
 * quantile samples are the whole sample (levels (j + ½)/R pick ranks j), ascending. */
START_TEST(test_sample_definition)
{
    const int R = 6;
    features_catalog_input in = base_input();
    in.model = NULL;
    in.opt.reservoir = R;
    in.opt.n_quantiles = R;
    for (int seed = 0; seed < 2; seed++) {
        in.opt.seed = 1234567u * (uint64_t)seed;
        json_t *L = build(&in);
        key_i *k = malloc((size_t)fx.n * sizeof *k);
        ai *want = malloc((size_t)R * sizeof *want);
        int checked = 0;
        for (int f = 0; f < NF; f++) {
            int64_t nk = 0;
            for (int64_t i = 0; i < fx.n; i++)
                if (code(i, f) > 0) k[nk].key = features_catalog_sample_key(in.opt.seed, f, fx.rows[i]), k[nk++].i = i;
            json_t *qs = json_object_get(feature(L, f), "quantile_samples");
            if (nk == 0) { ck_assert_ptr_null(qs); continue; }
            qsort(k, (size_t)nk, sizeof *k, key_i_cmp);
            int64_t r = nk < R ? nk : R;
            for (int64_t j = 0; j < r; j++) want[j].a = code(k[j].i, f), want[j].i = fx.rows[k[j].i];
            qsort(want, (size_t)r, sizeof *want, ai_asc);
            if (nk < R) continue;   /* fewer firings than levels: ranks repeat (test_stats_contexts_domains) */
            ck_assert_int_eq(json_array_size(qs), R);
            for (int64_t j = 0; j < R; j++) {
                json_t *e = json_array_get(qs, (size_t)j);
                ck_assert_int_eq(json_integer_value(json_object_get(e, "row")), want[j].i);
                ck_assert_double_eq(json_real_value(json_object_get(e, "activation")), want[j].a);
                ck_assert_double_eq(json_real_value(json_object_get(e, "quantile")), (j + 0.5) / R);
            }
            checked++;
        }
        ck_assert_int_ge(checked, 5);
        /* another seed gives another sample of the dense feature 2 */
        if (seed == 1) {
            json_t *L0 = NULL;
            in.opt.seed = 0;
            L0 = build(&in);
            ck_assert(!json_equal(json_object_get(feature(L0, 2), "quantile_samples"),
                                  json_object_get(feature(L, 2), "quantile_samples")));
            json_decref(L0);
        }
        free(k), free(want);
        json_decref(L);
    }
    /* the key: uniform enough that the sample is not the first or the last rows */
    int64_t lo = 0;
    for (int64_t row = 0; row < 1000; row++) lo += features_catalog_sample_key(0, 2, row) < (UINT64_MAX / 2);
    ck_assert_msg(lo > 440 && lo < 560, "%lld of 1000 keys below the middle", (long long)lo);
}
END_TEST

static char *slurp(const char *path, size_t *n) { return tp_test_read_file(path, n); }

/* j as the catalog file holds it (reals to 9 significant digits). */
static json_t *at_file_precision(const json_t *j)
{
    char *t = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9));
    json_t *r = json_loads(t, JSON_DECODE_ANY, NULL);
    free(t);
    return r;
}

/* The file is one JSON document, each feature on a line of its own; the index's
 * spans are those lines; its cells say what the feature says; a failed write
 * leaves the old pair; a changed catalog is stale. */
START_TEST(test_file_and_index)
{
    features_catalog_input in = base_input();
    in.model = NULL;
    in.opt.max_detailed = 4;
    json_t *saes = json_array();
    json_array_append_new(saes, build(&in));
    in.hook_name = "blocks.3.hook_mlp_out";
    in.layer = 3;
    json_array_append_new(saes, build_rows(&in, fx.rows, fx.dom, 0));   /* every feature dead */
    /* A hand-made feature whose text needs escaping in the index. */
    json_t *odd = json_array_get(json_object_get(json_array_get(saes, 0), "features"), 0);
    json_t *tc0 = json_array_get(json_object_get(odd, "top_contexts"), 0);
    json_object_set_new(tc0, "token", json_string("a\tb\\c"));
    json_object_set_new(tc0, "context", json_string("line 1\nline\t2 \\n ⟦x⟧\r"));
    json_t *doc = features_catalog_document(json_pack("{s:i}", "rows", (int)fx.n), saes);
    char path[600], index[600];
    snprintf(path, sizeof path, "%s/results/features_catalog.json", tp_test_tmpdir());
    snprintf(index, sizeof index, "%s/results/features_catalog.index.tsv", tp_test_tmpdir());
    ck_assert_msg(features_catalog_write(path, index, doc) == TP_OK, "%s", tp_err_msg());

    /* one JSON document, equal to the document at the file's precision */
    json_error_t e;
    json_t *back = json_load_file(path, 0, &e);
    ck_assert_msg(back, "%s:%d: %s", path, e.line, e.text);
    json_t *want = at_file_precision(doc);
    ck_assert(json_equal(back, want));
    /* each feature alone on a line, after the line "features":[ */
    size_t n;
    char *text = slurp(path, &n);
    int64_t feature_lines = 0, in_features = 0, sae_i = -1;
    size_t fi = 0;
    for (char *line = text, *nl; line < text + n; line = nl + 1) {
        nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        if (!strcmp(line, "\"features\":[")) { in_features = 1, sae_i++, fi = 0; continue; }
        if (in_features && !strcmp(line, "]")) { in_features = 0; continue; }
        if (!in_features) continue;
        size_t len = strlen(line);
        if (line[len - 1] == ',') line[--len] = '\0';
        json_t *f = json_loads(line, 0, &e);
        ck_assert_msg(f, "a feature line does not parse alone: %s", e.text);
        json_t *wf = json_array_get(json_object_get(json_array_get(json_object_get(want, "saes"), (size_t)sae_i),
                                                    "features"), fi++);
        ck_assert(json_equal(f, wf));
        json_decref(f);
        feature_lines++;
    }
    ck_assert_int_eq(feature_lines, 2 * NF);
    ck_assert_int_eq(sae_i, 1);
    free(text);

    /* the index: fresh, a row per feature, spans that are the feature lines */
    features_index x;
    ck_assert_msg(features_index_load(index, &x) == TP_OK, "%s", tp_err_msg());
    ck_assert(features_index_fresh(&x, path));
    ck_assert_str_eq(x.catalog_schema, "transpolmo.features_catalog/2");
    ck_assert_int_eq(x.n_rows, 2 * NF);
    ck_assert_int_eq(json_array_size(x.saes), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(json_array_get(x.saes, 0), "domain_rows"),
                                                        "delta")), 0);
    text = slurp(path, &n);
    FILE *cat = fopen(path, "rb");
    for (int64_t r = 0; r < x.n_rows; r++) {
        char **c = x.cell + r * FX_NCOLS;
        const int64_t off = atoll(c[FX_OFFSET]), len = atoll(c[FX_LENGTH]);
        ck_assert(off > 0 && off + len < (int64_t)n);
        ck_assert_int_eq(text[off - 1], '\n');                              /* starts a line */
        ck_assert(text[off + len] == '\n' || (text[off + len] == ',' && text[off + len + 1] == '\n'));
        json_t *f = NULL;
        ck_assert_msg(features_file_read_feature(cat, path, off, len, &f) == TP_OK, "%s", tp_err_msg());
        const int64_t s_i = atoll(c[FX_SAE]);
        json_t *L = json_array_get(json_object_get(want, "saes"), (size_t)s_i);
        ck_assert(json_equal(f, json_array_get(json_object_get(L, "features"), (size_t)(r % NF))));
        ck_assert_str_eq(c[FX_HOOK], json_string_value(json_object_get(L, "hook")));
        ck_assert_int_eq(atoll(c[FX_LAYER]), json_integer_value(json_object_get(L, "layer")));
        ck_assert_int_eq(atoll(c[FX_FEATURE]), json_integer_value(json_object_get(f, "id")));
        ck_assert_int_eq(atoll(c[FX_FIRES]), json_integer_value(json_object_get(f, "fires")));
        ck_assert_double_eq(strtod(c[FX_DENSITY], NULL), json_number_value(json_object_get(f, "density")));
        const int dead = json_integer_value(json_object_get(f, "fires")) == 0;
        ck_assert_str_eq(c[FX_DEAD], dead ? "1" : "0");
        if (dead) {
            ck_assert_str_eq(c[FX_MEAN], "");
            ck_assert_str_eq(c[FX_TOP_DOMAIN], "");
        } else {
            ck_assert_double_eq(strtod(c[FX_MAX], NULL), json_number_value(json_object_get(f, "max_activation")));
        }
        int dense = 0;
        size_t k;
        json_t *v;
        const json_int_t fid = json_integer_value(json_object_get(f, "id"));
        json_array_foreach(json_object_get(L, "dense_features"), k, v) dense |= json_integer_value(v) == fid;
        ck_assert_str_eq(c[FX_DENSE], dense ? "1" : "0");
        json_t *t0 = json_array_get(json_object_get(f, "top_contexts"), 0);
        if (t0) {
            ck_assert_str_eq(c[FX_TOP_TOKEN], json_string_value(json_object_get(t0, "token")));
            ck_assert_str_eq(c[FX_TOP_CONTEXT], json_string_value(json_object_get(t0, "context")));
            const char *td = json_string_value(json_object_get(f, "top_domain"));
            ck_assert_str_eq(c[FX_TOP_DOMAIN], td);
            ck_assert_double_eq(strtod(c[FX_TOP_DOMAIN_SHARE], NULL),
                                json_number_value(json_object_get(json_object_get(f, "domain_profile"), td)));
            json_t *dp = json_loads(c[FX_DOMAIN_PROFILE], 0, NULL);
            ck_assert(json_equal(dp, json_object_get(f, "domain_profile")));
            json_decref(dp);
            json_t *tt = json_loads(c[FX_TOKENS], 0, NULL);
            ck_assert(json_is_array(tt) && json_array_size(tt) >= 1);
            ck_assert_str_eq(json_string_value(json_array_get(tt, 0)), json_string_value(json_object_get(t0, "token")));
            json_decref(tt);
        } else {
            ck_assert_str_eq(c[FX_TOP_TOKEN], "");
        }
        json_decref(f);
    }
    fclose(cat);
    /* the escaped cells: the raw line holds no tab or newline of the text */
    char *raw = slurp(index, &n);
    ck_assert_ptr_nonnull(strstr(raw, "\tline 1\\nline\\t2 \\\\n ⟦x⟧\\r\t"));
    ck_assert_ptr_nonnull(strstr(raw, "\ta\\tb\\\\c\t"));
    ck_assert_str_eq(x.cell[FX_TOP_TOKEN], "a\tb\\c");
    /* the same table from the parsed catalog (the query's fallback), offsets aside */
    features_index y;
    ck_assert(features_index_from_doc(back, &y) == TP_OK);
    ck_assert_int_eq(y.n_rows, x.n_rows);
    for (int64_t r = 0; r < x.n_rows; r++)
        for (int c = 0; c < FX_OFFSET; c++) ck_assert_str_eq(y.cell[r * FX_NCOLS + c], x.cell[r * FX_NCOLS + c]);
    ck_assert(json_equal(y.saes, x.saes));
    features_index_free(&y);
    features_index_free(&x);

    /* a write that fails (the index's .tmp cannot be made) leaves the old pair */
    char *old_cat = slurp(path, &n), tmpdir[700];
    size_t n_old = n;
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp", index);
    ck_assert_int_eq(mkdir(tmpdir, 0700), 0);
    json_object_set_new(doc, "schema", json_string("changed"));
    ck_assert_int_ne(features_catalog_write(path, index, doc), TP_OK);
    char *now = slurp(path, &n);
    ck_assert(n == n_old && !memcmp(now, old_cat, n));
    ck_assert_ptr_null(strstr(now, "changed"));
    char *raw2 = slurp(index, &n);
    ck_assert_str_eq(raw2, raw);
    rmdir(tmpdir);
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp", path);
    ck_assert(access(tmpdir, F_OK) != 0);   /* no catalog .tmp left behind */
    ck_assert_int_eq(features_index_load(index, &x), TP_OK);
    ck_assert(features_index_fresh(&x, path));
    /* a catalog changed since: stale */
    FILE *f = fopen(path, "ab");
    fputc(' ', f);
    fclose(f);
    ck_assert(!features_index_fresh(&x, path));
    features_index_free(&x);
    /* not an index */
    tp_test_write_file(index, "sae\thook\n", 9);
    ck_assert_int_eq(features_index_load(index, &x), TP_ERR_FORMAT);
    free(old_cat), free(now), free(raw), free(raw2), free(text);
    json_decref(back), json_decref(want), json_decref(doc);
}
END_TEST

static Suite *catalog_suite(void)
{
    Suite *s = suite_create("features_catalog");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_stats_contexts_domains);
    tcase_add_test(tc, test_logits_bundled_model);
    tcase_add_test(tc, test_logits_bf16_model);
    tcase_add_test(tc, test_cap_blocks_and_options);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_splits);
    tcase_add_test(tc, test_sample_definition);
    tcase_add_test(tc, test_file_and_index);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* No fork: the fixture (model, tokenizer, store) is made once for every test. */
    int rc = tp_test_run_suite_nofork(catalog_suite());
    if (fx.ready) {
        sae_free(&fx.sae);
        model_close(fx.m);
        tokenizer_free(fx.tok);
        free(fx.tokens), free(fx.positions), free(fx.row_doc), free(fx.x), free(fx.rows), free(fx.dom);
    }
    return rc;
}
