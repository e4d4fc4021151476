#include "analysis/row_stream.h"

#include "analysis/geometry/knn.h"
#include "dist/world.h"

#include <stdlib.h>
#include <string.h>

struct row_stream {
    tp_store *s;
    MPI_Comm comm;
    int n_acts;
    int *acts;
    int64_t *d;
    row_stream_options opt;
    int64_t N, n_chunks, n_train, n_eval, train_rows, eval_rows;
    uint8_t *mask;          /* [N] */
    int64_t *train, *eval;  /* chunk indices, ascending */
    int64_t *order;         /* [n_train] this epoch's chunk order */
    int64_t order_epoch;
    float **win;            /* per act [W·C, d] */
    float *stage;           /* [C, max d] */
    int64_t *win_rows;      /* [W·C] */
    int64_t *perm;          /* [W·C] */
};

void row_stream_share(int64_t n, int rank, int size, int64_t *lo, int64_t *hi)
{
    *lo = n * rank / size;
    *hi = n * (rank + 1) / size;
}

void row_stream_close(row_stream *rs)
{
    if (!rs) return;
    for (int i = 0; rs->win && i < rs->n_acts; i++) free(rs->win[i]);
    free(rs->win), free(rs->acts), free(rs->d), free(rs->mask), free(rs->train), free(rs->eval), free(rs->order);
    free(rs->stage), free(rs->win_rows), free(rs->perm);
    free(rs);
}

int64_t row_stream_train_rows(const row_stream *rs) { return rs->train_rows; }
int64_t row_stream_eval_rows(const row_stream *rs) { return rs->eval_rows; }
int64_t row_stream_windows(const row_stream *rs)
{
    return (rs->n_train + rs->opt.window_chunks - 1) / rs->opt.window_chunks;
}

static int64_t chunk_unmasked(const row_stream *rs, int64_t c)
{
    int64_t r0 = c * rs->opt.chunk_rows, r1 = r0 + rs->opt.chunk_rows < rs->N ? r0 + rs->opt.chunk_rows : rs->N, n = 0;
    for (int64_t r = r0; r < r1; r++) n += rs->mask[r] != 0;
    return n;
}

tp_status row_stream_open(tp_store *s, MPI_Comm comm, const int *acts, int n_acts, const row_stream_options *opt,
                          row_stream **out)
{
    *out = NULL;
    tp_status st = TP_OK;
    if (n_acts < 1 || opt->chunk_rows < 1 || opt->window_chunks < 1 || !(opt->eval_fraction >= 0 && opt->eval_fraction <= 0.5))
        st = tp_err(TP_ERR_RANGE, "row stream: %d capture points, chunk of %lld rows, window of %lld chunks, "
                    "eval fraction %g", n_acts, (long long)opt->chunk_rows, (long long)opt->window_chunks,
                    opt->eval_fraction);
    TP_CHECK(dist_agree(comm, st, "row stream"));
    row_stream *rs = tp_calloc(1, sizeof *rs);
    if (rs) {
        rs->s = s, rs->comm = comm, rs->n_acts = n_acts, rs->opt = *opt, rs->order_epoch = -1;
        rs->N = store_rows(s);
        rs->n_chunks = (rs->N + opt->chunk_rows - 1) / opt->chunk_rows;
        rs->acts = tp_malloc((size_t)n_acts * sizeof *rs->acts);
        rs->d = tp_malloc((size_t)n_acts * sizeof *rs->d);
        rs->mask = tp_malloc((size_t)(rs->N ? rs->N : 1));
        rs->train = tp_malloc((size_t)(rs->n_chunks ? rs->n_chunks : 1) * sizeof *rs->train);
        rs->eval = tp_malloc((size_t)(rs->n_chunks ? rs->n_chunks : 1) * sizeof *rs->eval);
        rs->order = tp_malloc((size_t)(rs->n_chunks ? rs->n_chunks : 1) * sizeof *rs->order);
        rs->win = tp_calloc((size_t)n_acts, sizeof *rs->win);
    }
    st = rs && rs->acts && rs->d && rs->mask && rs->train && rs->eval && rs->order && rs->win ? TP_OK : TP_ERR_NOMEM;
    if ((st = dist_agree(comm, st, "row stream")) != TP_OK) goto fail;
    int64_t dmax = 0, wrows = opt->window_chunks * opt->chunk_rows;
    for (int i = 0; i < n_acts; i++) {
        rs->acts[i] = acts[i];
        rs->d[i] = store_act(s, acts[i])->cols;
        if (rs->d[i] > dmax) dmax = rs->d[i];
        rs->win[i] = tp_malloc((size_t)(wrows * rs->d[i]) * sizeof(float));
        if (!rs->win[i]) st = TP_ERR_NOMEM;
    }
    rs->stage = tp_malloc((size_t)(opt->chunk_rows * dmax) * sizeof *rs->stage);
    rs->win_rows = tp_malloc((size_t)wrows * sizeof *rs->win_rows);
    rs->perm = tp_malloc((size_t)wrows * sizeof *rs->perm);
    if (!rs->stage || !rs->win_rows || !rs->perm) st = TP_ERR_NOMEM;
    if ((st = dist_agree(comm, st, "row stream")) != TP_OK) goto fail;
    if ((st = store_read_u8(s, "mask", 0, rs->N, rs->mask)) != TP_OK) goto fail;

    /* Held-out chunks: a seeded sample (knn_sample_indices: ascending). */
    int64_t ne = 0;
    if (opt->eval_fraction > 0 && rs->n_chunks >= 2) {
        ne = (int64_t)(opt->eval_fraction * (double)rs->n_chunks + 0.5);
        if (ne < 1) ne = 1;
        if (ne > rs->n_chunks - 1) ne = rs->n_chunks - 1;
    }
    if (ne && (st = knn_sample_indices(rs->n_chunks, ne, opt->seed ^ 0x5eedE7A1ull, rs->eval)) != TP_OK) goto fail;
    rs->n_eval = ne;
    for (int64_t c = 0, e = 0; c < rs->n_chunks; c++) {
        if (e < ne && rs->eval[e] == c) {
            rs->eval_rows += chunk_unmasked(rs, c);
            e++;
        } else {
            rs->train[rs->n_train++] = c;
            rs->train_rows += chunk_unmasked(rs, c);
        }
    }
    if (rs->train_rows < 1) {
        st = tp_err(TP_ERR_RANGE, "row stream: no unmasked training rows in %lld rows", (long long)rs->N);
        goto fail;
    }
    *out = rs;
    return TP_OK;
fail:
    row_stream_close(rs);
    return st;
}

/* Reads chunk c of act i into the stage; returns its first row and count. */
static tp_status read_chunk(row_stream *rs, int i, int64_t c, int64_t *r0, int64_t *n)
{
    *r0 = c * rs->opt.chunk_rows;
    *n = *r0 + rs->opt.chunk_rows < rs->N ? rs->opt.chunk_rows : rs->N - *r0;
    return store_read_acts(rs->s, rs->acts[i], *r0, *n, rs->stage);
}

static void epoch_order(row_stream *rs, int64_t epoch)
{
    if (rs->order_epoch != epoch) {
        /* Fisher–Yates over the training chunks, seeded by (seed, epoch). */
        uint64_t state = rs->opt.seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1));
        memcpy(rs->order, rs->train, (size_t)rs->n_train * sizeof *rs->order);
        for (int64_t i = rs->n_train - 1; i > 0; i--) {
            int64_t j = (int64_t)knn_rng_below(&state, (uint64_t)i + 1), t = rs->order[i];
            rs->order[i] = rs->order[j], rs->order[j] = t;
        }
        rs->order_epoch = epoch;
    }
}

int64_t row_stream_window_rows(row_stream *rs, int64_t epoch, int64_t w)
{
    const int64_t W = rs->opt.window_chunks;
    epoch_order(rs, epoch);
    int64_t c0 = w * W, c1 = c0 + W < rs->n_train ? c0 + W : rs->n_train, m = 0;
    for (int64_t c = c0; c < c1; c++) m += chunk_unmasked(rs, rs->order[c]);
    return m;
}

tp_status row_stream_read_window(row_stream *rs, int64_t epoch, int64_t w, int64_t *n, float *const **rows,
                                 const int64_t **store_rows)
{
    const int64_t W = rs->opt.window_chunks;
    if (w < 0 || w >= row_stream_windows(rs) || epoch < 0)
        return tp_err(TP_ERR_RANGE, "row stream: window %lld of epoch %lld (of %lld windows)", (long long)w,
                      (long long)epoch, (long long)row_stream_windows(rs));
    epoch_order(rs, epoch);
    int64_t c0 = w * W, c1 = c0 + W < rs->n_train ? c0 + W : rs->n_train, m = 0;
    for (int64_t c = c0; c < c1; c++) m += chunk_unmasked(rs, rs->order[c]);
    /* Row k of the window in read order goes to position perm[k]. */
    uint64_t state = rs->opt.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1)) ^ (0x8CB92BA72F3D8DD7ull * (uint64_t)(w + 1));
    for (int64_t k = 0; k < m; k++) rs->perm[k] = k;
    for (int64_t k = m - 1; k > 0; k--) {
        int64_t j = (int64_t)knn_rng_below(&state, (uint64_t)k + 1), t = rs->perm[k];
        rs->perm[k] = rs->perm[j], rs->perm[j] = t;
    }
    for (int i = 0; i < rs->n_acts; i++) {
        int64_t k = 0, d = rs->d[i];
        for (int64_t c = c0; c < c1; c++) {
            int64_t r0, cn;
            TP_CHECK(read_chunk(rs, i, rs->order[c], &r0, &cn));
            for (int64_t r = 0; r < cn; r++) {
                if (!rs->mask[r0 + r]) continue;
                int64_t p = rs->perm[k++];
                memcpy(rs->win[i] + p * d, rs->stage + r * d, (size_t)d * sizeof(float));
                if (i == 0) rs->win_rows[p] = r0 + r;
            }
        }
    }
    *n = m;
    *rows = rs->win;
    if (store_rows) *store_rows = rs->win_rows;
    return TP_OK;
}

tp_status row_stream_read_eval(row_stream *rs, int act_i, int64_t max, float *out, int64_t *store_rows, int64_t *n)
{
    int64_t k = 0, d = rs->d[act_i];
    for (int64_t e = 0; e < rs->n_eval && k < max; e++) {
        int64_t r0, cn;
        TP_CHECK(read_chunk(rs, act_i, rs->eval[e], &r0, &cn));
        for (int64_t r = 0; r < cn && k < max; r++) {
            if (!rs->mask[r0 + r]) continue;
            memcpy(out + k * d, rs->stage + r * d, (size_t)d * sizeof(float));
            if (store_rows) store_rows[k] = r0 + r;
            k++;
        }
    }
    *n = k;
    return TP_OK;
}
