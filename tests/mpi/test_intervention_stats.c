/* MPI: the statistics of mean and resample ablation (analysis/verify/intervention.h)
 * collected over sequences split unevenly over 1, 2 and 4 ranks equal what one process
 * reads sequence by sequence through its own reader hook: the mean of every row but
 * each sequence's first, and the bank = every stride-th such row in corpus order.
 *
 * Tolerance: the mean is an f64 sum of the same f32 values in another order, rounded
 * to f32 (1e-6 relative); the bank rows come from a varlen batch on one side and a
 * lone sequence on the other, which agree to GEMM blocking (~1e-7 relative,
 * test_forward), so 1e-5 of the target's largest value. Every rank checks its copy.
 */
#include "tp_test.h"

#include "analysis/verify/intervention.h"
#include "dist/world.h"
#include "model/model.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NSEQ = 11, MAXLEN = 23 };

typedef struct {
    int64_t cols, off, width;
    double *sum;
    float *rows;           /* every statistics row, in order */
    int64_t n;
} reader;

static tp_status read_rows(const tp_hook_info *info, float *data, void *user)
{
    reader *r = user;
    int64_t T = info->shape[0] * info->shape[1];
    for (int64_t t = 1; t < T; t++) {   /* one sequence per call: row t is position t */
        const float *v = data + (size_t)t * (size_t)r->cols + (size_t)r->off;
        for (int64_t k = 0; k < r->width; k++) r->sum[k] += v[k];
        memcpy(r->rows + (size_t)r->n * (size_t)r->width, v, (size_t)r->width * sizeof *v);
        r->n++;
    }
    return TP_OK;
}

START_TEST(test_statistics_any_ranks)
{
    tp_model *m;
    ck_assert_int_eq(model_open(tp_test_data("models/olmo2-gqa-bf16"), TP_CONVERT_PER_MATRIX, &m), TP_OK);
    const tp_model_config *c = &m->cfg;
    /* sequences of lengths 1..MAXLEN (one of length 1 gives no row), the same everywhere */
    tp_sequences s = {0};
    s.n_seqs = NSEQ;
    s.seq_start = calloc(NSEQ + 1, sizeof *s.seq_start);
    s.tokens = malloc((size_t)NSEQ * MAXLEN * sizeof *s.tokens);
    uint64_t st = 99;
    for (int i = 0; i < NSEQ; i++) {
        int len = i == 3 ? 1 : 2 + (int)((unsigned)(i * 7 + 5) % (MAXLEN - 1));
        for (int t = 0; t < len; t++) {
            st = st * 6364136223846793005ull + 1442695040888963407ull;
            s.tokens[s.seq_start[i] + (size_t)t] = (int32_t)((st >> 33) % (uint64_t)c->vocab_size);
        }
        s.seq_start[i + 1] = s.seq_start[i] + (size_t)len;
    }
    s.n_tokens = s.seq_start[NSEQ];

    iv_target *t = NULL;
    int n = 0;
    ck_assert_int_eq(iv_parse(c, "1.1", NULL, "0", "1:5", &t, &n), TP_OK);
    iv_set *set;
    ck_assert_int_eq(iv_new(m, t, n, IV_MEAN, 0, NULL, NULL, &set), TP_OK);
    tp_forward *f;
    ck_assert_int_eq(forward_new(m, 3, MAXLEN, &f), TP_OK);
    ck_assert_msg(iv_collect_statistics(set, f, &s, 3, 7) == TP_OK, "%s", tp_err_msg());

    /* the same rows read by one process, one sequence at a time */
    const tp_hook_point pts[] = {TP_HOOK_Z, TP_HOOK_MLP_OUT, TP_HOOK_MLP_POST};
    const int layers[] = {1, 0, 1};
    const int64_t cols[] = {(int64_t)c->num_heads * c->head_dim, c->hidden_size, c->intermediate_size};
    const int64_t offs[] = {c->head_dim, 0, 5}, widths[] = {c->head_dim, c->hidden_size, 1};
    for (int i = 0; i < n; i++) {
        reader r = {.cols = cols[i], .off = offs[i], .width = widths[i]};
        r.sum = calloc((size_t)r.width, sizeof *r.sum);
        r.rows = malloc((size_t)NSEQ * MAXLEN * (size_t)r.width * sizeof *r.rows);
        tp_hooks *h;
        ck_assert_int_eq(hooks_new(c->num_layers, &h), TP_OK);
        ck_assert_int_eq(hooks_add_reader(h, layers[i], pts[i], read_rows, &r), TP_OK);
        for (int q = 0; q < NSEQ; q++) {
            int len = (int)(s.seq_start[q + 1] - s.seq_start[q]);
            ck_assert_int_eq(forward_run_varlen(f, s.tokens + s.seq_start[q], &len, 1, h, TP_LOGITS_NONE, -1, NULL), TP_OK);
        }
        hooks_free(h);
        const float *mean, *bank;
        int64_t bank_rows;
        int w;
        iv_statistics(set, i, &mean, &bank, &bank_rows, &w);
        ck_assert_int_eq(w, (int)r.width);
        for (int k = 0; k < w; k++) {
            float want = (float)(r.sum[k] / (double)r.n);
            ck_assert_msg(fabsf(mean[k] - want) <= 1e-6f * fmaxf(1.0f, fabsf(want)), "target %d mean[%d] %g vs %g", i, k,
                          mean[k], want);
        }
        int64_t stride = (r.n + IV_BANK_ROWS - 1) / IV_BANK_ROWS;
        ck_assert_int_eq(bank_rows, (r.n + stride - 1) / stride);
        float mx = 0;   /* the scale of the target's values */
        for (int64_t k = 0; k < r.n * w; k++) mx = fmaxf(mx, fabsf(r.rows[k]));
        for (int64_t b = 0; b < bank_rows; b++) {
            const float *want = r.rows + (size_t)(b * stride) * (size_t)w, *got = bank + (size_t)b * (size_t)w;
            for (int k = 0; k < w; k++)
                ck_assert_msg(fabsf(got[k] - want[k]) <= 1e-5f * mx, "target %d bank row %lld [%d]: %g vs %g (scale %g)",
                              i, (long long)b, k, got[k], want[k], mx);
        }
        free(r.sum), free(r.rows);
    }
    forward_free(f);
    iv_free(set);
    free(t);
    sequences_free(&s);
    model_close(m);
}
END_TEST

int main(int argc, char **argv)
{
    if (dist_init(&argc, &argv) != TP_OK) return 1;
    Suite *s = suite_create("intervention_stats");
    TCase *tc = tcase_create("stats");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_statistics_any_ranks);
    suite_add_tcase(s, tc);
    int rc = tp_test_run_suite_mpi(s);
    dist_finalize();
    return rc;
}
