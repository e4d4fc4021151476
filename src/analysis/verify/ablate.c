#include "analysis/verify/ablate.h"

#include "core/bootstrap.h"
#include "core/progress.h"
#include "dist/world.h"

#include <mpi.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* log softmax of one row of logits, in f64. */
static void log_softmax(const float *l, int64_t V, double *out)
{
    double mx = -INFINITY, z = 0;
    for (int64_t v = 0; v < V; v++) mx = fmax(mx, (double)l[v]);
    for (int64_t v = 0; v < V; v++) z += exp((double)l[v] - mx);
    double lz = mx + log(z);
    for (int64_t v = 0; v < V; v++) out[v] = (double)l[v] - lz;
}

/* The metrics of one prompt from its clean and intervened logits [T, V]. */
static void prompt_metrics(const float *clean, const float *inter, const int32_t *x, int64_t T, int64_t V,
                           const int32_t *chosen, int nchosen, double *lc, double *li, double *row)
{
    double ce_c = 0, ce_i = 0, kl = 0;
    for (int64_t t = 0; t < T; t++) {
        log_softmax(clean + (size_t)t * (size_t)V, V, lc);
        log_softmax(inter + (size_t)t * (size_t)V, V, li);
        double k = 0;
        for (int64_t v = 0; v < V; v++) k += exp(lc[v]) * (lc[v] - li[v]);
        kl += k;
        if (t < T - 1) ce_c -= lc[x[t + 1]], ce_i -= li[x[t + 1]];
    }
    /* lc, li now hold the last position's log-probabilities */
    row[ABLATE_CE_CLEAN] = ce_c / (double)(T - 1);
    row[ABLATE_CE_INTERVENED] = ce_i / (double)(T - 1);
    row[ABLATE_DELTA_CE] = row[ABLATE_CE_INTERVENED] - row[ABLATE_CE_CLEAN];
    row[ABLATE_KL] = kl / (double)T;
    row[ABLATE_TOKENS] = (double)T;
    const float *lastc = clean + (size_t)(T - 1) * (size_t)V, *lasti = inter + (size_t)(T - 1) * (size_t)V;
    for (int j = 0; j < nchosen; j++) {
        row[ABLATE_BASE_COLS + j] = (double)lasti[chosen[j]] - (double)lastc[chosen[j]];
        row[ABLATE_BASE_COLS + nchosen + j] = li[chosen[j]] - lc[chosen[j]];
    }
}

/* ablate_prompts, with progress lines from rank 0 when `progress`. */
static tp_status run_prompts(tp_forward *f, iv_set *s, const tp_sequences *prompts, size_t lo, size_t hi,
                             const int32_t *chosen, int nchosen, double *rows, bool progress)
{
    const tp_model_config *c = &forward_model(f)->cfg;
    int64_t V = c->vocab_size, Tmax = forward_max_seq(f);
    float *clean = tp_malloc((size_t)Tmax * (size_t)V * sizeof *clean);
    double *lc = tp_malloc((size_t)V * sizeof *lc), *li = tp_malloc((size_t)V * sizeof *li);
    tp_hooks *h = NULL;
    tp_status st = clean && lc && li ? hooks_new(c->num_layers, &h) : TP_ERR_NOMEM;
    if (st == TP_OK) st = iv_add_hooks(s, h);
    tp_progress prog;
    progress = progress && dist_rank() == 0;
    if (progress) tp_progress_begin(&prog, "ablate", "prompts", hi - lo);
    for (size_t g = lo; st == TP_OK && g < hi; g++) {
        const int32_t *x = prompts->tokens + prompts->seq_start[g];
        int T = (int)sequences_len(prompts, g);
        const float *logits = NULL;
        if (T < 2) {
            st = tp_err(TP_ERR_CONFIG, "ablate: prompt %zu has %d token(s); 2 are needed for a loss", g, T);
            break;
        }
        st = forward_run_varlen(f, x, &T, 1, NULL, TP_LOGITS_ALL, -1, &logits);
        if (st != TP_OK) break;
        memcpy(clean, logits, (size_t)T * (size_t)V * sizeof *clean);
        int64_t id = (int64_t)g;
        iv_set_batch(s, &id, 1);
        st = forward_run_varlen(f, x, &T, 1, h, TP_LOGITS_ALL, -1, &logits);
        if (st != TP_OK) break;
        prompt_metrics(clean, logits, x, T, V, chosen, nchosen, lc, li, rows + (g - lo) * (size_t)ablate_row_width(nchosen));
        if (progress) tp_progress_add(&prog, 1);
    }
    if (progress) tp_progress_end(&prog);
    hooks_free(h);
    free(clean), free(lc), free(li);
    return st;
}

tp_status ablate_prompts(tp_forward *f, iv_set *s, const tp_sequences *prompts, size_t lo, size_t hi,
                         const int32_t *chosen, int nchosen, double *rows)
{
    return run_prompts(f, s, prompts, lo, hi, chosen, nchosen, rows, true);
}

/* Rank 0 gets every prompt's row, in prompt order. Collective. */
static tp_status gather_rows(const double *mine, size_t nmine, int width, size_t total, double **all)
{
    int size = dist_size(), rank = dist_rank();
    int *counts = tp_calloc((size_t)size, sizeof *counts), *displs = tp_calloc((size_t)size, sizeof *displs);
    if (!counts || !displs) {
        free(counts), free(displs);
        return TP_ERR_NOMEM;
    }
    for (int r = 0; r < size; r++) {
        size_t lo = total * (size_t)r / (size_t)size, hi = total * (size_t)(r + 1) / (size_t)size;
        counts[r] = (int)((hi - lo) * (size_t)width), displs[r] = (int)(lo * (size_t)width);
    }
    *all = rank == 0 ? tp_malloc((total * (size_t)width + 1) * sizeof **all) : NULL;
    tp_status st = rank == 0 && !*all ? TP_ERR_NOMEM : TP_OK;
    st = dist_agree(MPI_COMM_WORLD, st, "ablate: gathering the prompts' effects");
    if (st == TP_OK &&
        MPI_Gatherv(mine, (int)(nmine * (size_t)width), MPI_DOUBLE, *all, counts, displs, MPI_DOUBLE, 0,
                    MPI_COMM_WORLD) != MPI_SUCCESS)
        st = tp_err(TP_ERR_MPI, "ablate: MPI_Gatherv of the prompts' effects failed");
    free(counts), free(displs);
    if (st != TP_OK) free(*all), *all = NULL;
    return st;
}

tp_status ablate_prompts_shared(const tp_model *m, iv_set *s, const tp_sequences *prompts, const int32_t *chosen,
                                int nchosen, bool progress, double **all)
{
    *all = NULL;
    size_t n = prompts->n_seqs, lo = n * (size_t)dist_rank() / (size_t)dist_size(),
           hi = n * (size_t)(dist_rank() + 1) / (size_t)dist_size();
    int maxT = 1, w = ablate_row_width(nchosen);
    for (size_t i = 0; i < n; i++)
        if ((int)sequences_len(prompts, i) > maxT) maxT = (int)sequences_len(prompts, i);
    tp_forward *f = NULL;
    double *mine = tp_calloc((hi - lo) * (size_t)w + 1, sizeof *mine);
    tp_status st = mine ? forward_new(m, 1, maxT, &f) : TP_ERR_NOMEM;
    if (st == TP_OK) st = run_prompts(f, s, prompts, lo, hi, chosen, nchosen, mine, progress);
    forward_free(f);
    st = dist_agree(MPI_COMM_WORLD, st, "ablate: the prompts");
    if (st == TP_OK) st = gather_rows(mine, hi - lo, w, n, all);
    free(mine);
    return st;
}

json_t *ablate_ci_json(const double *rows, size_t n, int width, int col, int resamples, uint64_t seed)
{
    double *x = tp_malloc((n + 1) * sizeof *x);
    if (!x) return NULL;
    for (size_t i = 0; i < n; i++) x[i] = rows[i * (size_t)width + (size_t)col];
    tp_ci ci;
    tp_status st = tp_bootstrap_mean(x, n, resamples, 0.95, seed, &ci);
    free(x);
    if (st != TP_OK) return NULL;
    json_t *num[3];
    const double v[3] = {ci.mean, ci.lo, ci.hi};
    for (int i = 0; i < 3; i++) num[i] = isfinite(v[i]) ? json_real(v[i]) : json_null();
    return json_pack("{s:o, s:o, s:o, s:I}", "mean", num[0], "ci95_low", num[1], "ci95_high", num[2], "n",
                     (json_int_t)ci.n);
}
