#include "model/lm_loss.h"

#include "core/progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* -log softmax(row)[target], f64 log-sum-exp. */
static double token_loss(const float *row, int V, int32_t target)
{
    double mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)row[i] - mx);
    return mx + log(sum) - (double)row[target];
}

tp_status lm_loss_sequences(tp_forward *f, const tp_sequences *seqs, int batch, const tp_hooks *hooks,
                            float *per_token, double *per_seq_sum, tp_loss_total *total)
{
    const tp_model *m = forward_model(f);
    int V = m->cfg.vocab_size;
    memset(total, 0, sizeof *total);
    size_t out_pos = 0;
    int32_t *buf = NULL;
    size_t buf_cap = 0;
    tp_progress prog;
    tp_progress_begin(&prog, "loss", "tokens", seqs->n_tokens);
    size_t i = 0;
    while (i < seqs->n_seqs) {
        /* A batch of consecutive sequences of the same length. */
        size_t T = sequences_len(seqs, i), j = i + 1;
        while (j < seqs->n_seqs && j - i < (size_t)batch && sequences_len(seqs, j) == T) j++;
        int B = (int)(j - i);
        if (T < 2) {
            for (size_t k = i; k < j; k++) if (per_seq_sum) per_seq_sum[k] = 0;
            i = j;
            continue;
        }
        if ((size_t)B * T > buf_cap) {
            buf_cap = (size_t)B * T;
            int32_t *nb = realloc(buf, buf_cap * sizeof *nb);
            if (!nb) { free(buf); return tp_err(TP_ERR_NOMEM, "out of memory"); }
            buf = nb;
        }
        memcpy(buf, seqs->tokens + seqs->seq_start[i], (size_t)B * T * sizeof *buf);
        const float *logits;
        tp_status st = forward_run(f, buf, B, (int)T, hooks, TP_LOGITS_ALL, -1, &logits);
        if (st != TP_OK) { free(buf); return st; }
        for (int b = 0; b < B; b++) {
            double seq_sum = 0;
            for (size_t t = 0; t + 1 < T; t++) {
                double l = token_loss(logits + ((size_t)b * T + t) * (size_t)V, V, buf[(size_t)b * T + t + 1]);
                seq_sum += l;
                if (per_token) per_token[out_pos++] = (float)l;
            }
            if (per_seq_sum) per_seq_sum[i + (size_t)b] = seq_sum;
            total->sum += seq_sum;
            total->count += T - 1;
        }
        tp_progress_add(&prog, (uint64_t)B * T);
        i = j;
    }
    tp_progress_end(&prog);
    free(buf);
    return TP_OK;
}
