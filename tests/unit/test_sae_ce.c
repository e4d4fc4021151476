/* CE-loss recovered (analysis/sae/sae_ce.h) on the bundled models/olmo2-tiny over
 * held-out text of the bundled corpus (heldout.jsonl).
 *
 *  - A ReLU SAE with F = 2d, W_enc = W_dec = [I; −I], zero biases and input scale 1
 *    reconstructs every row exactly (relu(x) − relu(−x) = x; every product is by 1
 *    or 0, so the f32 GEMMs are exact): through the production path the splice must
 *    give ce_sae == ce_clean, kl_sae == 0 and recovered == 1 exactly (same bits).
 *  - An all-zero SAE reconstructs 0: ce_sae == ce_zero, kl_sae == kl_zero,
 *    recovered == 0 exactly.
 *  - ce_clean equals lm_loss_sequences() on the same sequences to 1e-12 relative:
 *    both run the same batches (same logits bits) and the same f64 log-sum-exp; only
 *    the order of the f64 sums may differ.
 *  - The replaced rows are exactly the unmasked rows (skip_first, BOS), in order,
 *    with the clean activation (batch 1 on both sides: the same bits).
 *  - Held-out text avoids the excluded documents and is deterministic per seed.
 *  - A formula-defined ReLU SAE against PyTorch/transformers
 *    (tools/reference/make_golden_sae_ce.py → tests/data/golden/sae_ce/).
 */
#include "settings.h"
#include "tp_test.h"

#include "analysis/sae/sae.h"
#include "analysis/sae/sae_ce.h"
#include "core/config.h"
#include "data/dataset.h"
#include "io/npy.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/lm_loss.h"
#include "model/model.h"
#include "model/model_io.h"

#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEQ_LEN = 32, BATCH = 3, LAYER = 1 };

static tp_config *cfg;
static tp_model *model;
static tp_tokenizer *tok;
static tp_forward *fwd;
static tp_dataset text;          /* 6 held-out documents, split into sequences */

static void set(const char *k, const char *v)
{
    ck_assert_msg(tp_config_set(cfg, k, v, "test") == TP_OK, "%s: %s", k, tp_err_msg());
}

static void setup(void)
{
    cfg = tp_test_bundled_config();
    set("data.num_samples", "40");
    set("data.seq_len", "32");
    ck_assert_msg(model_io_open(&tp_test_settings_of(cfg)->model, &model, &tok) == TP_OK, "%s", tp_err_msg());
    ck_assert(forward_new(model, BATCH, SEQ_LEN, &fwd) == TP_OK);
    /* Held out from the configured sample, as the SAE phase will do. */
    tp_dataset cap;
    ck_assert_msg(dataset_open(&tp_test_settings_of(cfg)->data, tok, model->cfg.eos_token_id, "test", &cap) == TP_OK, "%s", tp_err_msg());
    int64_t *ex = malloc(cap.ndocs * sizeof *ex);
    for (size_t i = 0; i < cap.ndocs; i++) ex[i] = (int64_t)cap.docs[i];
    ck_assert_msg(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, model->cfg.eos_token_id, ex, cap.ndocs, 6, 99, &text) == TP_OK, "%s",
                  tp_err_msg());
    free(ex);
    dataset_close(&cap);
    ck_assert_uint_gt(text.seqs.n_seqs, (size_t)BATCH);
}

static void teardown(void)
{
    dataset_close(&text);
    forward_free(fwd);
    tokenizer_free(tok);
    model_close(model);
    tp_config_free(cfg);
}

/* ReLU SAE of width 2d: exact (pm_identity) or all zero. */
static void make_sae(sae_model *s, int pm_identity)
{
    const int64_t d = model->cfg.hidden_size;
    sae_config c = sae_config_default(SAE_RELU, d, 2 * d);
    ck_assert(sae_init(s, &c, 64) == TP_OK);
    memset(s->params, 0, (size_t)s->n_params * sizeof *s->params);
    s->input_scale = 1.0;
    if (pm_identity)
        for (int64_t j = 0; j < d; j++) {
            s->W_enc[(size_t)j * (size_t)d + (size_t)j] = 1, s->W_enc[(size_t)(d + j) * (size_t)d + (size_t)j] = -1;
            s->W_dec[(size_t)j * (size_t)d + (size_t)j] = 1, s->W_dec[(size_t)(d + j) * (size_t)d + (size_t)j] = -1;
        }
}

START_TEST(test_exact_sae_recovers_all)
{
    sae_model s;
    make_sae(&s, 1);
    sae_ce_result r;
    ck_assert_msg(sae_ce_evaluate(fwd, &text.seqs, BATCH, LAYER, TP_HOOK_RESID_POST, &s, 1, -1, MPI_COMM_NULL, &r) ==
                      TP_OK,
                  "%s", tp_err_msg());
    ck_assert_msg(r.ce_sae == r.ce_clean, "ce_sae %.17g vs ce_clean %.17g", r.ce_sae, r.ce_clean);
    ck_assert_msg(r.kl_sae == 0, "kl_sae %.3g", r.kl_sae);
    ck_assert_msg(r.recovered == 1, "recovered %.17g", r.recovered);
    /* Zero-ablating a middle layer's residual stream must hurt. */
    ck_assert_msg(r.ce_zero > r.ce_clean + 0.1, "ce_zero %g ce_clean %g", r.ce_zero, r.ce_clean);
    ck_assert_msg(r.kl_zero > 0.1, "kl_zero %g", r.kl_zero);
    size_t pred = 0;
    for (size_t i = 0; i < text.seqs.n_seqs; i++)
        pred += sequences_len(&text.seqs, i) > 1 ? sequences_len(&text.seqs, i) - 1 : 0;
    ck_assert_int_eq(r.tokens, (int64_t)pred);
    sae_free(&s);
}
END_TEST

START_TEST(test_zero_sae_recovers_nothing)
{
    sae_model s;
    make_sae(&s, 0);
    sae_ce_result r;
    ck_assert_msg(sae_ce_evaluate(fwd, &text.seqs, BATCH, LAYER, TP_HOOK_RESID_POST, &s, 1, -1, MPI_COMM_NULL, &r) ==
                      TP_OK,
                  "%s", tp_err_msg());
    ck_assert_msg(r.ce_sae == r.ce_zero, "ce_sae %.17g vs ce_zero %.17g", r.ce_sae, r.ce_zero);
    ck_assert_msg(r.kl_sae == r.kl_zero, "kl_sae %.17g vs kl_zero %.17g", r.kl_sae, r.kl_zero);
    ck_assert_msg(r.recovered == 0, "recovered %.17g", r.recovered);
    sae_free(&s);
}
END_TEST

START_TEST(test_random_sae_between)
{
    /* A random (untrained) TopK SAE on the MLP output of layer 2: finite numbers,
     * KL ≥ 0 up to rounding, and the splice differs from both ends. */
    const int64_t d = model->cfg.hidden_size;
    sae_config c = sae_config_default(SAE_TOPK, d, 4 * d);
    c.k = 16;
    sae_model s;
    ck_assert(sae_init(&s, &c, 64) == TP_OK);
    ck_assert(sae_init_weights(&s, 7) == TP_OK);
    s.input_scale = 1.0;
    sae_ce_result r;
    ck_assert_msg(sae_ce_evaluate(fwd, &text.seqs, BATCH, 2, TP_HOOK_MLP_OUT, &s, 1, -1, MPI_COMM_NULL, &r) == TP_OK,
                  "%s", tp_err_msg());
    ck_assert(isfinite(r.recovered) && isfinite(r.kl_sae) && isfinite(r.kl_zero));
    ck_assert(r.kl_sae > 0 && r.kl_zero > 0);
    ck_assert(r.ce_sae != r.ce_clean && r.ce_sae != r.ce_zero);
    ck_assert_double_eq_tol(r.recovered, (r.ce_zero - r.ce_sae) / (r.ce_zero - r.ce_clean), 1e-15);
    /* The width must match the point. */
    ck_assert_int_eq(sae_ce_evaluate(fwd, &text.seqs, BATCH, 2, TP_HOOK_MLP_POST, &s, 1, -1, MPI_COMM_NULL, &r),
                     TP_ERR_CONFIG);
    sae_free(&s);
}
END_TEST

START_TEST(test_clean_matches_lm_loss)
{
    sae_model s;
    make_sae(&s, 0);
    tp_loss_total tot;
    ck_assert(lm_loss_sequences(fwd, &text.seqs, BATCH, NULL, NULL, NULL, &tot) == TP_OK);
    sae_ce_result r;
    ck_assert(sae_ce_evaluate(fwd, &text.seqs, BATCH, 0, TP_HOOK_RESID_MID, &s, 0, -1, MPI_COMM_NULL, &r) == TP_OK);
    double want = tot.sum / (double)tot.count;
    ck_assert_int_eq(r.tokens, (int64_t)tot.count);
    ck_assert_msg(fabs(r.ce_clean - want) <= 1e-12 * want, "ce_clean %.17g vs lm_loss %.17g", r.ce_clean, want);
    sae_free(&s);
}
END_TEST

/* ---- the rows the splice rewrites ---- */

typedef struct {
    const float *acts;       /* clean activation of every token [n_tokens, d] */
    const tp_sequences *seqs;
    int skip_first;
    int32_t bos;
    size_t cursor;           /* next token to consider */
    int64_t d, got, bad;
} row_check;

static tp_status capture_fn(const tp_hook_info *info, float *data, void *user)
{
    float **dst = user;
    size_t n = (size_t)(info->shape[0] * info->shape[1] * info->shape[2]);
    memcpy(*dst, data, n * sizeof *data);
    *dst += n;
    return TP_OK;
}

/* Checks that the rows handed over are the unmasked tokens' clean rows, in order,
 * and writes them back unchanged (identity: recovered 1, KL 0). */
static tp_status check_rows_fn(void *user, const float *rows, int64_t n, int64_t d, float *out)
{
    row_check *c = user;
    if (d != c->d) return tp_err(TP_ERR_INTERNAL, "width %lld", (long long)d);
    for (int64_t r = 0; r < n; r++) {
        /* Advance to the next token the capture would keep (sequences of >= 2 tokens). */
        for (;;) {
            size_t s = 0;
            while (s + 1 < c->seqs->n_seqs + 1 && c->seqs->seq_start[s + 1] <= c->cursor) s++;
            size_t t = c->cursor - c->seqs->seq_start[s];
            int keep_orig = sequences_len(c->seqs, s) < 2 || (c->skip_first && t == 0) ||
                            (c->bos >= 0 && c->seqs->tokens[c->cursor] == c->bos);
            if (!keep_orig) break;
            c->cursor++;
        }
        if (memcmp(rows + (size_t)r * (size_t)d, c->acts + c->cursor * (size_t)d, (size_t)d * sizeof *rows)) c->bad++;
        c->cursor++, c->got++;
    }
    memcpy(out, rows, (size_t)n * (size_t)d * sizeof *out);
    return TP_OK;
}

START_TEST(test_replaced_rows_are_the_unmasked_ones)
{
    const tp_sequences *sq = &text.seqs;
    const int64_t d = model->cfg.hidden_size;
    /* A frequent token as "BOS", so that the BOS rule matters here. */
    int32_t bos = sq->tokens[sq->seq_start[0] + 1];
    float *acts = malloc(sq->n_tokens * (size_t)d * sizeof *acts), *cur = acts;
    tp_hooks *h;
    ck_assert(hooks_new(model->cfg.num_layers, &h) == TP_OK);
    ck_assert(hooks_add(h, LAYER, TP_HOOK_RESID_PRE, capture_fn, &cur) == TP_OK);
    for (size_t i = 0; i < sq->n_seqs; i++)
        ck_assert(forward_run(fwd, sq->tokens + sq->seq_start[i], 1, (int)sequences_len(sq, i), h, TP_LOGITS_NONE,
                              LAYER, NULL) == TP_OK);
    hooks_free(h);
    for (int skip = 0; skip < 2; skip++)
        for (int use_bos = 0; use_bos < 2; use_bos++) {
            row_check c = {.acts = acts, .seqs = sq, .skip_first = skip, .bos = use_bos ? bos : -1, .d = d};
            int64_t want = 0;
            for (size_t s = 0; s < sq->n_seqs; s++)
                for (size_t t = 0; sequences_len(sq, s) > 1 && t < sequences_len(sq, s); t++)
                    want += !((skip && t == 0) || (use_bos && sq->tokens[sq->seq_start[s] + t] == bos));
            sae_ce_result r;
            ck_assert_msg(sae_ce_evaluate_with(fwd, sq, 1, LAYER, TP_HOOK_RESID_PRE, check_rows_fn, &c, skip,
                                               use_bos ? bos : -1, MPI_COMM_NULL, &r) == TP_OK,
                          "%s", tp_err_msg());
            ck_assert_int_eq(c.bad, 0);
            ck_assert_int_eq(c.got, want);
            ck_assert_int_eq(r.rows_replaced, want);
            ck_assert_msg(r.recovered == 1 && r.kl_sae == 0, "identity: recovered %.17g kl %.3g", r.recovered,
                          r.kl_sae);
        }
    free(acts);
}
END_TEST

START_TEST(test_bad_arguments)
{
    sae_model s;
    make_sae(&s, 1);
    sae_ce_result r;
    ck_assert_int_eq(sae_ce_evaluate(fwd, &text.seqs, BATCH + 1, LAYER, TP_HOOK_RESID_POST, &s, 1, -1,
                                     MPI_COMM_NULL, &r), TP_ERR_CONFIG);
    ck_assert_int_eq(sae_ce_evaluate(fwd, &text.seqs, BATCH, 4, TP_HOOK_RESID_POST, &s, 1, -1, MPI_COMM_NULL, &r),
                     TP_ERR_CONFIG);
    ck_assert_int_eq(sae_ce_evaluate(fwd, &text.seqs, BATCH, 0, TP_HOOK_PATTERN, &s, 1, -1, MPI_COMM_NULL, &r),
                     TP_ERR_CONFIG);
    /* Global points take layer −1. */
    ck_assert_int_eq(sae_ce_evaluate(fwd, &text.seqs, BATCH, 0, TP_HOOK_EMBED, &s, 1, -1, MPI_COMM_NULL, &r),
                     TP_ERR_CONFIG);
    ck_assert_msg(sae_ce_evaluate(fwd, &text.seqs, BATCH, -1, TP_HOOK_EMBED, &s, 1, -1, MPI_COMM_NULL, &r) == TP_OK,
                  "%s", tp_err_msg());
    ck_assert(r.recovered == 1 && r.kl_sae == 0);
    sae_free(&s);
}
END_TEST

/* ---- against PyTorch ---- */

/* tools/reference/make_golden_sae_ce.py: the same SAE from its formula, spliced into
 * blocks.1.hook_resid_post (position 0 kept) in transformers' f32 eager forward.
 * Tolerances: both sides run the same f32 model with different summation orders
 * (OpenBLAS vs PyTorch GEMMs), which moves each logit by ~1e-7 relative; measured
 * differences are 2-4e-8 relative on the CEs and 2-3e-7 nats on the KLs (~5 nats).
 * We allow 1e-6 relative on the CEs and 1e-5 absolute on the KLs and on
 * `recovered` (a ratio of CE differences of ~0.5 and ~5.4 nats). Replacing
 * position 0 too (skip_first = 0) moves ce_zero by 9%. */
START_TEST(test_matches_pytorch)
{
    json_error_t je;
    json_t *ref = json_load_file(tp_test_data("golden/sae_ce/reference.json"), 0, &je);
    ck_assert_msg(ref, "%s", je.text);
    npy_array ids;
    ck_assert_msg(npy_read(tp_test_data("golden/sae_ce/input_ids.npy"), &ids) == TP_OK, "%s", tp_err_msg());
    ck_assert(ids.dtype == TP_DTYPE_I32 && ids.ndim == 2 && ids.shape[1] <= SEQ_LEN);
    const size_t n = (size_t)ids.shape[0], T = (size_t)ids.shape[1];
    size_t start[16], doc[16];
    ck_assert_uint_lt(n, 16);
    for (size_t i = 0; i <= n; i++) start[i] = i * T, doc[i] = i;
    tp_sequences sq = {.tokens = ids.data, .n_tokens = n * T, .n_seqs = n, .seq_start = start, .seq_doc = doc,
                       .n_docs = n, .doc_start = start};

    const int64_t d = model->cfg.hidden_size, F = 2 * d;
    sae_config c = sae_config_default(SAE_RELU, d, F);
    c.apply_b_dec_to_input = 1;
    sae_model s;
    ck_assert(sae_init(&s, &c, 64) == TP_OK);
    for (int64_t i = 0; i < F; i++) {
        for (int64_t j = 0; j < d; j++) {
            s.W_enc[(size_t)(i * d + j)] = (float)(0.15 * sin(0.37 * (double)i + 1.3 * (double)j + 0.1));
            s.W_dec[(size_t)(i * d + j)] = (float)(0.10 * cos(0.11 * (double)i + 0.7 * (double)j));
        }
        s.b_enc[i] = (float)(-0.05 * (double)(i % 7) / 7.0);
    }
    for (int64_t j = 0; j < d; j++) s.b_dec[j] = (float)(0.01 * sin((double)j));
    s.input_scale = json_number_value(json_object_get(ref, "input_scale"));

    sae_ce_result r;
    int layer = (int)json_integer_value(json_object_get(ref, "layer"));
    ck_assert_msg(sae_ce_evaluate(fwd, &sq, BATCH, layer, TP_HOOK_RESID_POST, &s, 1, -1, MPI_COMM_NULL, &r) == TP_OK,
                  "%s", tp_err_msg());
    ck_assert_int_eq(r.tokens, json_integer_value(json_object_get(ref, "tokens")));
#define REF(k) json_number_value(json_object_get(ref, k))
    const struct { const char *k; double got, tol; int rel; } cmp[] = {
        {"ce_clean", r.ce_clean, 1e-6, 1}, {"ce_zero", r.ce_zero, 1e-6, 1}, {"ce_sae", r.ce_sae, 1e-6, 1},
        {"kl_sae", r.kl_sae, 1e-5, 0},     {"kl_zero", r.kl_zero, 1e-5, 0}, {"recovered", r.recovered, 1e-5, 0}};
    for (size_t k = 0; k < sizeof cmp / sizeof *cmp; k++) {
        double want = REF(cmp[k].k), err = fabs(cmp[k].got - want) / (cmp[k].rel ? fabs(want) : 1.0);
        ck_assert_msg(err <= cmp[k].tol, "%s: %.10g vs PyTorch %.10g (error %.2g)", cmp[k].k, cmp[k].got, want, err);
    }
#undef REF
    sae_free(&s);
    npy_free(&ids);
    json_decref(ref);
}
END_TEST

/* ---- held-out text ---- */

static int has(const size_t *v, size_t n, size_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x) return 1;
    return 0;
}

START_TEST(test_heldout_excludes_and_is_deterministic)
{
    tp_dataset cap, a, b, c;
    int32_t eos = model->cfg.eos_token_id;
    ck_assert(dataset_open(&tp_test_settings_of(cfg)->data, tok, eos, "test", &cap) == TP_OK);
    ck_assert_uint_eq(cap.ndocs, 40);
    int64_t *ex = malloc(cap.ndocs * sizeof *ex);
    for (size_t i = 0; i < cap.ndocs; i++) ex[i] = (int64_t)cap.docs[cap.ndocs - 1 - i];   /* any order */
    ck_assert(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, eos, ex, cap.ndocs, 60, 5, &a) == TP_OK);
    ck_assert(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, eos, ex, cap.ndocs, 60, 5, &b) == TP_OK);
    ck_assert(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, eos, ex, cap.ndocs, 60, 6, &c) == TP_OK);
    ck_assert_uint_eq(a.ndocs, 60);
    ck_assert_uint_eq(b.ndocs, 60);
    ck_assert(!memcmp(a.docs, b.docs, a.ndocs * sizeof *a.docs));
    ck_assert(a.seqs.n_tokens == b.seqs.n_tokens &&
              !memcmp(a.seqs.tokens, b.seqs.tokens, a.seqs.n_tokens * sizeof *a.seqs.tokens));
    ck_assert(memcmp(a.docs, c.docs, a.ndocs * sizeof *a.docs));
    size_t spread = 0;
    for (size_t i = 0; i < a.ndocs; i++) {
        ck_assert(!has(cap.docs, cap.ndocs, a.docs[i]));
        if (i) ck_assert_uint_lt(a.docs[i - 1], a.docs[i]);
        spread += a.docs[i] >= 390;   /* 780 documents: the upper half is sampled too */
    }
    ck_assert_uint_gt(spread, 15);    /* binomial(60, ~1/2): mean 30, sd 3.9 */
    ck_assert_uint_lt(spread, 45);
    ck_assert_int_eq(a.seq_len, SEQ_LEN);
    dataset_close(&a), dataset_close(&b), dataset_close(&c);

    /* An index from another corpus, and nothing left. */
    int64_t bad = 780;
    ck_assert_int_eq(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, eos, &bad, 1, 5, 5, &a), TP_ERR_FORMAT);
    int64_t *all = malloc(780 * sizeof *all);
    for (int64_t i = 0; i < 780; i++) all[i] = i;
    ck_assert_int_eq(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, eos, all, 780, 5, 5, &a), TP_ERR_FORMAT);
    /* Asking for more than is left gives every remaining document: 0..9 here. */
    ck_assert(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, eos, all + 10, 770, 100, 5, &a) == TP_OK);
    ck_assert_uint_eq(a.ndocs, 10);
    for (size_t i = 0; i < 10; i++) ck_assert_uint_eq(a.docs[i], i);
    dataset_close(&a);
    ck_assert(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, eos, all + 1, 779, 5, 5, &a) == TP_OK);   /* only document 0 */
    ck_assert_uint_eq(a.ndocs, 1);
    ck_assert_uint_eq(a.docs[0], 0);
    dataset_close(&a);
    free(all);
    free(ex);
    dataset_close(&cap);
}
END_TEST

/* MPI_COMM_NULL throughout: no MPI call, so no MPI_Init, and the suite can fork
 * (and run under LeakSanitizer); tests/mpi/test_sae_ce_dist.c covers the ranks. */
int main(void)
{
    Suite *s = suite_create("sae_ce");
    TCase *tc = tcase_create("ce");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_exact_sae_recovers_all);
    tcase_add_test(tc, test_zero_sae_recovers_nothing);
    tcase_add_test(tc, test_random_sae_between);
    tcase_add_test(tc, test_clean_matches_lm_loss);
    tcase_add_test(tc, test_replaced_rows_are_the_unmasked_ones);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_matches_pytorch);
    tcase_add_test(tc, test_heldout_excludes_and_is_deterministic);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
