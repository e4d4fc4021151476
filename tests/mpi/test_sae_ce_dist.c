/* MPI: CE-loss recovered (analysis/sae/sae_ce.h) sharded over the ranks against the
 * same evaluation by one process (MPI_COMM_NULL), on models/olmo2-tiny over held-out
 * text, with a random TopK SAE spliced into blocks.2.hook_resid_post. Run by ctest
 * with 2 and 4 ranks; every rank checks its own copy.
 *
 * Tolerance 1e-9 relative: a batch is the same sequences on any number of ranks
 * (batches are formed over the whole list, ranks take whole batches), so the logits
 * are the same bits and only the order of the f64 sums differs (~1e-15). Counts are
 * exact. A failure on one rank must fail every rank, not hang them.
 */
#include "settings.h"
#include "tp_test.h"

#include "analysis/sae/sae.h"
#include "analysis/sae/sae_ce.h"
#include "core/config.h"
#include "dist/world.h"
#include "data/dataset.h"
#include "model/forward.h"
#include "model/model.h"
#include "model/model_io.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEQ_LEN = 32, BATCH = 2, LAYER = 2 };

static tp_config *cfg;
static tp_model *model;
static tp_tokenizer *tok;
static tp_forward *fwd;
static tp_dataset text;
static sae_model sae;

static void setup(void)
{
    cfg = tp_test_bundled_config();
    ck_assert(tp_config_set(cfg, "data.seq_len", "32", "test") == TP_OK);
    ck_assert_msg(model_io_open(&tp_test_settings_of(cfg)->model, &model, &tok) == TP_OK, "%s", tp_err_msg());
    ck_assert(forward_new(model, BATCH, SEQ_LEN, &fwd) == TP_OK);
    int64_t ex[] = {1, 2, 3, 5, 8, 13, 21, 34};
    ck_assert_msg(sae_ce_text_open(&tp_test_settings_of(cfg)->data, tok, model->cfg.eos_token_id, ex, 8, 5, 3, &text) == TP_OK, "%s",
                  tp_err_msg());
    const int64_t d = model->cfg.hidden_size;
    sae_config c = sae_config_default(SAE_TOPK, d, 4 * d);
    c.k = 24;
    ck_assert(sae_init(&sae, &c, 48) == TP_OK);
    ck_assert(sae_init_weights(&sae, 11) == TP_OK);
    sae.input_scale = 0.5;
}

static void teardown(void)
{
    sae_free(&sae);
    dataset_close(&text);
    forward_free(fwd);
    tokenizer_free(tok);
    model_close(model);
    tp_config_free(cfg);
}

static void close_rel(double got, double want, const char *what)
{
    ck_assert_msg(fabs(got - want) <= 1e-9 * fabs(want), "[rank %d] %s: %.17g ranks vs %.17g one process",
                  dist_rank(), what, got, want);
}

START_TEST(test_ranks_match_one_process)
{
    sae_ce_result one, all;
    ck_assert_msg(sae_ce_evaluate(fwd, &text.seqs, BATCH, LAYER, TP_HOOK_RESID_POST, &sae, 1, -1, MPI_COMM_NULL,
                                  &one) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg(sae_ce_evaluate(fwd, &text.seqs, BATCH, LAYER, TP_HOOK_RESID_POST, &sae, 1, -1, MPI_COMM_WORLD,
                                  &all) == TP_OK, "%s", tp_err_msg());
    close_rel(all.ce_clean, one.ce_clean, "ce_clean");
    close_rel(all.ce_zero, one.ce_zero, "ce_zero");
    close_rel(all.ce_sae, one.ce_sae, "ce_sae");
    close_rel(all.recovered, one.recovered, "recovered");
    close_rel(all.kl_sae, one.kl_sae, "kl_sae");
    close_rel(all.kl_zero, one.kl_zero, "kl_zero");
    ck_assert_int_eq(all.tokens, one.tokens);
    ck_assert_int_eq(all.sequences, one.sequences);
    ck_assert_int_eq(all.rows_replaced, one.rows_replaced);
    ck_assert(one.kl_sae > 0 && one.kl_zero > 0 && isfinite(one.recovered));
    /* Every rank holds the same result. */
    double mine[3] = {all.ce_sae, all.kl_sae, all.recovered}, lo[3];
    MPI_Allreduce(mine, lo, 3, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD);
    ck_assert(!memcmp(mine, lo, sizeof mine));
}
END_TEST

/* Rows each rank rewrites: the ranks share the work. */
static tp_status count_rows(void *user, const float *rows, int64_t n, int64_t d, float *out)
{
    *(int64_t *)user += n;
    memcpy(out, rows, (size_t)n * (size_t)d * sizeof *out);
    return TP_OK;
}

START_TEST(test_work_is_shared)
{
    int64_t mine = 0, total = 0, most = 0;
    sae_ce_result r;
    ck_assert(sae_ce_evaluate_with(fwd, &text.seqs, BATCH, LAYER, TP_HOOK_RESID_POST, count_rows, &mine, 0, -1,
                                   MPI_COMM_WORLD, &r) == TP_OK);
    MPI_Allreduce(&mine, &total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &most, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD);
    ck_assert_int_eq(total, r.rows_replaced);
    /* Balanced by tokens up to half a batch (BATCH·SEQ_LEN rows) on each side. */
    ck_assert_msg(most <= total / dist_size() + BATCH * SEQ_LEN, "[rank %d] busiest rank %lld of %lld rows",
                  dist_rank(), (long long)most, (long long)total);
    ck_assert(r.recovered == 1 && r.kl_sae == 0);
}
END_TEST

static tp_status fail_on_rank1(void *user, const float *rows, int64_t n, int64_t d, float *out)
{
    (void)user;
    if (dist_rank() == 1) return tp_err(TP_ERR_IO, "rank 1 fails on purpose");
    memcpy(out, rows, (size_t)n * (size_t)d * sizeof *out);
    return TP_OK;
}

START_TEST(test_failure_on_one_rank_fails_all)
{
    if (dist_size() < 2) return;   /* needs a rank 1 */
    sae_ce_result r;
    tp_status st = sae_ce_evaluate_with(fwd, &text.seqs, BATCH, LAYER, TP_HOOK_RESID_POST, fail_on_rank1, NULL, 1,
                                        -1, MPI_COMM_WORLD, &r);
    /* Rank 1 keeps its own error; the others learn that a rank failed (rank 1 has
     * work: the shares are contiguous and the text has many batches). */
    ck_assert_int_eq(st, dist_rank() == 1 ? TP_ERR_IO : TP_ERR_MPI);
}
END_TEST

int main(int argc, char **argv)
{
    dist_init(&argc, &argv);
    Suite *s = suite_create("sae_ce_mpi");
    TCase *tc = tcase_create("ranks");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 200);
    tcase_add_test(tc, test_ranks_match_one_process);
    tcase_add_test(tc, test_work_is_shared);
    tcase_add_test(tc, test_failure_on_one_rank_fails_all);
    suite_add_tcase(s, tc);
    int rc = tp_test_run_suite_mpi(s);
    dist_finalize();
    return rc;
}
