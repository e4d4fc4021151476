/* metrics.c — scalar metrics of the logits and d metric / d logits (see metrics.h). */
#include "model/metrics.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Total rows, checking every length. */
static tp_status batch_rows(const int *lens, int nseq, size_t *rows)
{
    if (nseq < 1) return tp_err(TP_ERR_RANGE, "metric: %d sequences (at least 1)", nseq);
    *rows = 0;
    for (int b = 0; b < nseq; b++) {
        if (lens[b] < 1) return tp_err(TP_ERR_RANGE, "metric: sequence %d has %d tokens", b, lens[b]);
        *rows += (size_t)lens[b];
    }
    return TP_OK;
}

static tp_status check_token(const char *what, int b, int32_t tok, int V)
{
    if (tok < 0 || tok >= V)
        return tp_err(TP_ERR_RANGE, "metric: %s %d of sequence %d is outside the vocabulary [0, %d)", what, tok, b, V);
    return TP_OK;
}

/* The row sequence b (starting at row0) is read at: row0 + pos[b], or its last row. */
static tp_status seq_row(const int *lens, int b, const int *pos, size_t row0, size_t *row)
{
    int p = pos ? pos[b] : lens[b] - 1;
    if (p < 0 || p >= lens[b])
        return tp_err(TP_ERR_RANGE, "metric: position %d is outside sequence %d (%d tokens)", p, b, lens[b]);
    *row = row0 + (size_t)p;
    return TP_OK;
}

/* log Σ exp(row) in f64, and the row's max. */
static double log_sum_exp(const float *row, int V)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    return mx + log(sum);
}

/* grad[i] += scale * softmax(row)[i] */
static void add_softmax(float *grad, const float *row, int V, double lse, double scale)
{
    for (int i = 0; i < V; i++) grad[i] += (float)(scale * exp((double)row[i] - lse));
}

/* Validates the lengths and, where wanted, zeroes dlogits. */
static tp_status begin(const int *lens, int nseq, int V, float *dlogits)
{
    size_t total = 0;
    TP_CHECK(batch_rows(lens, nseq, &total));
    if (dlogits) memset(dlogits, 0, total * (size_t)V * sizeof *dlogits);
    return TP_OK;
}

tp_status metric_logit_diff(const float *logits, int V, const int *lens, int nseq, const int *pos,
                            const int32_t *target, const int32_t *distractor, double *value, float *dlogits)
{
    double sum = 0;
    size_t row0 = 0;
    TP_CHECK(begin(lens, nseq, V, dlogits));
    for (int b = 0; b < nseq; b++) {
        size_t row = 0;
        TP_CHECK(seq_row(lens, b, pos, row0, &row));
        row0 += (size_t)lens[b];
        TP_CHECK(check_token("target", b, target[b], V));
        TP_CHECK(check_token("distractor", b, distractor[b], V));
        const float *l = logits + row * (size_t)V;
        sum += (double)l[target[b]] - (double)l[distractor[b]];
        if (dlogits) {
            dlogits[row * (size_t)V + (size_t)target[b]] += (float)(1.0 / nseq);
            dlogits[row * (size_t)V + (size_t)distractor[b]] -= (float)(1.0 / nseq);
        }
    }
    *value = sum / nseq;
    return TP_OK;
}

tp_status metric_logprob(const float *logits, int V, const int *lens, int nseq, const int *pos,
                         const int32_t *token, double *value, float *dlogits)
{
    double sum = 0;
    size_t row0 = 0;
    TP_CHECK(begin(lens, nseq, V, dlogits));
    for (int b = 0; b < nseq; b++) {
        size_t row = 0;
        TP_CHECK(seq_row(lens, b, pos, row0, &row));
        row0 += (size_t)lens[b];
        TP_CHECK(check_token("token", b, token[b], V));
        const float *l = logits + row * (size_t)V;
        double lse = log_sum_exp(l, V);
        sum += (double)l[token[b]] - lse;
        if (dlogits) {
            float *g = dlogits + row * (size_t)V;
            add_softmax(g, l, V, lse, -1.0 / nseq);
            g[token[b]] += (float)(1.0 / nseq);
        }
    }
    *value = sum / nseq;
    return TP_OK;
}

tp_status metric_mean_loss(const float *logits, int V, const int *lens, int nseq, const int32_t *ids,
                           double *value, float *dlogits)
{
    TP_CHECK(begin(lens, nseq, V, dlogits));
    size_t n = 0, row0 = 0;
    for (int b = 0; b < nseq; b++) {
        n += (size_t)lens[b] - 1;
        for (int t = 1; t < lens[b]; t++) TP_CHECK(check_token("token", b, ids[row0 + (size_t)t], V));
        row0 += (size_t)lens[b];
    }
    if (n == 0) return tp_err(TP_ERR_RANGE, "metric: mean loss of %d sequences of one token (nothing to predict)", nseq);
    double sum = 0;
    row0 = 0;
    for (int b = 0; b < nseq; b++) {
        for (int t = 0; t + 1 < lens[b]; t++) {
            size_t row = row0 + (size_t)t;
            int32_t next = ids[row + 1];
            const float *l = logits + row * (size_t)V;
            double lse = log_sum_exp(l, V);
            sum += lse - (double)l[next];
            if (dlogits) {
                float *g = dlogits + row * (size_t)V;
                add_softmax(g, l, V, lse, 1.0 / (double)n);
                g[next] -= (float)(1.0 / (double)n);
            }
        }
        row0 += (size_t)lens[b];
    }
    *value = sum / (double)n;
    return TP_OK;
}
