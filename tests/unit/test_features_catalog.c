/* test_features_catalog.c — the features catalog (analysis/sae/features_catalog.h)
 * on a hand-made SAE whose codes are exact, the store's index datasets written for
 * the test (serial HDF5, store.h's layout), a JSONL corpus with domains, and the bundled
 * models/olmo2-tiny (W_E, W_U, final norm, tokenizer) or a hand-made BF16 model.
 *
 * The SAE: W_enc = the first F basis vectors, b_dec = 0 (not applied), input scale
 * s = 2, so code_i(x) = max(2·x_i + b_i, 0). Inputs are multiples of 1/64 and the
 * biases small integers: every code is exact in f32 whatever the GEMM's order, so
 * fires, max, the top rows (with ties) and the quantile samples are compared exactly,
 * and sums (f64 on both sides, of exact terms in another order) to 1e-12 relative.
 *
 * Logit attribution and reads are recomputed in f64 from the definitions
 * (W_U[t]·(γ ⊙ w_i)/s, W_E[t]·(s·e_i)). The catalog's SGEMM is f32 over d = 256
 * terms: ~1e-6 of Σ|terms|; bound: 1e-4 · max_t |score_t| of the feature. The set of
 * m tokens is checked up to that tolerance: every listed token's exact score is within
 * tol of the exact m-th best, and the list is sorted and m long.
 */
#include "analysis/sae/features_catalog.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "tp_test.h"

#include <hdf5.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define D_IN 256
#define NF 10
#define NDOC 4
#define TOK_T 42     /* the token feature 3 reads */

static const int64_t doc_len[NDOC] = {50, 70, 60, 80};
static const int64_t doc_corpus[NDOC] = {3, 0, 1, 2};              /* /doc_index */
static const char *corpus_dom[4] = {"alpha", "beta", "alpha", "gamma"};   /* corpus documents' domains */
static const float bias[NF] = {0, -1000, 8, 0, 0, 0, 0, 0, 0, 0};

static struct {
    int ready;
    char store[512], corpus_path[512], model_dir[512];
    int64_t N, n;
    int32_t *tokens, *positions;
    int64_t *row_doc;          /* [N] store document of each row */
    float *x;                  /* [n, d] */
    int64_t *rows;             /* [n] */
    sae_model sae;
    corpus *c;
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

static const char *row_domain(int64_t row) { return corpus_dom[doc_corpus[fx.row_doc[row]]]; }

static void setup_fixture(void)
{
    if (fx.ready) return;
    const char *src = getenv("TP_SOURCE_DIR");
    ck_assert_msg(src, "TP_SOURCE_DIR is not set");
    snprintf(fx.model_dir, sizeof fx.model_dir, "%s/models/olmo2-tiny", src);
    snprintf(fx.store, sizeof fx.store, "%s/acts.h5", tp_test_tmpdir());
    snprintf(fx.corpus_path, sizeof fx.corpus_path, "%s/corpus.jsonl", tp_test_tmpdir());

    /* Corpus: 4 documents with domains. */
    FILE *f = fopen(fx.corpus_path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < 4; i++) fprintf(f, "{\"text\": \"document %d\", \"domain\": \"%s\"}\n", i, corpus_dom[i]);
    fclose(f);
    ck_assert_int_eq(corpus_open(fx.corpus_path, false, &fx.c), TP_OK);

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
    write_1d(h, "doc_index", H5T_STD_I64LE, H5T_NATIVE_INT64, NDOC, doc_corpus);
    ck_assert_int_ge(H5Fclose(h), 0);
    free(mask);

    /* Evaluation rows: every store row but those ≡ 1 mod 4. */
    fx.rows = malloc((size_t)fx.N * sizeof *fx.rows);
    fx.n = 0;
    for (int64_t q = 0; q < fx.N; q++)
        if (q % 4 != 1) fx.rows[fx.n++] = q;
    fx.x = calloc((size_t)(fx.n * D_IN), sizeof *fx.x);
    for (int64_t i = 0; i < fx.n; i++) {
        const int64_t row = fx.rows[i];
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
    features_catalog_input in = {.sae = &fx.sae, .hook_name = "blocks.1.hook_resid_post", .layer = 1, .rows = fx.x,
                                 .row_index = fx.rows, .n = fx.n, .store_path = fx.store, .corpus = fx.c,
                                 .model = fx.m, .tok = fx.tok};
    features_catalog_default_options(&in.opt);
    in.opt.top_k = 8;
    in.opt.reservoir = 1000;   /* ≥ n: quantile samples exact */
    in.opt.block_rows = 37;
    in.opt.max_detailed = 0;
    return in;
}

static json_t *build(const features_catalog_input *in)
{
    json_t *L = NULL;
    tp_status st = features_catalog_build(in, &L);
    ck_assert_msg(st == TP_OK, "features_catalog_build: %s", tp_err_msg());
    ck_assert_ptr_nonnull(L);
    return L;
}

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

    /* No corpus: every row's domain is "(unknown)"; no tokenizer: ids only. */
    in.corpus = NULL;
    in.tok = NULL;
    L = build(&in);
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
    /* a row outside the store */
    int64_t *bad = malloc((size_t)fx.n * sizeof *bad);
    memcpy(bad, fx.rows, (size_t)fx.n * sizeof *bad);
    bad[5] = fx.N;
    in.row_index = bad;
    ck_assert_int_eq(features_catalog_build(&in, &L), TP_ERR_RANGE);
    ck_assert_ptr_null(L);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "outside"));
    free(bad);
    /* bad options */
    in = base_input();
    in.opt.top_k = -1;
    ck_assert_int_eq(features_catalog_build(&in, &L), TP_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "top_k"));
    in = base_input();
    in.opt.block_rows = 0;
    ck_assert_int_eq(features_catalog_build(&in, &L), TP_ERR_CONFIG);
    /* a store that does not exist */
    in = base_input();
    in.store_path = "/nonexistent/acts.h5";
    ck_assert_int_ne(features_catalog_build(&in, &L), TP_OK);
    /* a corpus the store's /doc_index does not fit */
    corpus *small = NULL;
    char p[600];
    snprintf(p, sizeof p, "%s/small.jsonl", tp_test_tmpdir());
    FILE *f = fopen(p, "w");
    fputs("{\"text\": \"one\", \"domain\": \"x\"}\n", f);
    fclose(f);
    ck_assert_int_eq(corpus_open(p, false, &small), TP_OK);
    in = base_input();
    in.corpus = small;
    ck_assert_int_eq(features_catalog_build(&in, &L), TP_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(tp_err_msg(), "another corpus"));
    corpus_close(small);
    /* no rows: every feature dead, nothing detailed */
    in = base_input();
    in.n = 0;
    L = build(&in);
    ck_assert_int_eq(json_array_size(json_object_get(L, "dead_features")), NF);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(L, "detailed"), "count")), 0);
    /* the whole file */
    json_t *saes = json_array();
    json_array_append_new(saes, L);
    json_t *doc = features_catalog_document(saes);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "schema")), "transpolmo.features_catalog/1");
    ck_assert_int_eq(json_array_size(json_object_get(doc, "saes")), 1);
    json_decref(doc);
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
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* No fork: the fixture (model, tokenizer, store) is made once for every test. */
    int rc = tp_test_run_suite_nofork(catalog_suite());
    if (fx.ready) {
        sae_free(&fx.sae);
        corpus_close(fx.c);
        model_close(fx.m);
        tokenizer_free(fx.tok);
        free(fx.tokens), free(fx.positions), free(fx.row_doc), free(fx.x), free(fx.rows);
    }
    return rc;
}
