#include "analysis/row_stream.h"

#include "core/sample.h"
#include "core/rng.h"
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <stdlib.h>
#include <string.h>

struct row_stream {
    tp_store *s;
    MPI_Comm comm;
    int rank, size;
    int n_acts;
    int *acts;
    int64_t *d;
    row_stream_options opt;
    int64_t N, n_chunks, n_train, train_rows, eval_rows, all_rows;
    uint8_t *use;           /* [N] ROW_MASKED, ROW_TRAIN, ROW_EVAL */
    store_docs docs;
    row_stream_domain *dom; /* [docs.n_domains] */
    int64_t *held_docs, n_held_docs;   /* corpus indices of the held-out documents */
    int32_t *held_domain;              /* [n_held_docs] their domains */
    int64_t *train;         /* chunks holding training rows, ascending */
    int64_t *order;         /* [n_train] this epoch's chunk order */
    int64_t order_epoch;
    float **win;            /* per act [W·C, d] */
    float *stage;           /* [C, max d] */
    int64_t *win_rows;      /* [W·C] */
    int64_t *perm;          /* [W·C] */
};

enum { ROW_MASKED = 0, ROW_TRAIN = 1, ROW_EVAL = 2 };

void row_stream_share(int64_t n, int rank, int size, int64_t *lo, int64_t *hi)
{
    *lo = n * rank / size;
    *hi = n * (rank + 1) / size;
}

void row_stream_close(row_stream *rs)
{
    if (!rs) return;
    for (int i = 0; rs->win && i < rs->n_acts; i++) free(rs->win[i]);
    free(rs->win), free(rs->acts), free(rs->d), free(rs->use), free(rs->train), free(rs->order);
    free(rs->stage), free(rs->win_rows), free(rs->perm), free(rs->dom), free(rs->held_docs), free(rs->held_domain);
    store_docs_free(&rs->docs);
    free(rs);
}

int64_t row_stream_train_rows(const row_stream *rs) { return rs->train_rows; }
int64_t row_stream_eval_rows(const row_stream *rs) { return rs->eval_rows; }
int64_t row_stream_all_rows(const row_stream *rs) { return rs->all_rows; }
int64_t row_stream_windows(const row_stream *rs)
{
    return (rs->n_train + rs->opt.window_chunks - 1) / rs->opt.window_chunks;
}

const row_stream_domain *row_stream_domains(const row_stream *rs, int *n_domains)
{
    *n_domains = rs->docs.n_domains;
    return rs->dom;
}

/* The document holding a store row: the last one starting at or before it. */
static int64_t doc_of(const row_stream *rs, int64_t row)
{
    int64_t lo = 0, hi = rs->docs.n_docs;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (rs->docs.offsets[mid] <= row) lo = mid;
        else hi = mid;
    }
    return lo;
}

int row_stream_domain_of(const row_stream *rs, int64_t row) { return rs->docs.domain[doc_of(rs, row)]; }
int row_stream_is_held_out(const row_stream *rs, int64_t row) { return rs->use[row] == ROW_EVAL; }

const int64_t *row_stream_held_out_docs(const row_stream *rs, int64_t *n, const int32_t **domains)
{
    *n = rs->n_held_docs;
    if (domains) *domains = rs->held_domain;
    return rs->held_docs;
}

static int64_t chunk_train_rows(const row_stream *rs, int64_t c)
{
    int64_t r0 = c * rs->opt.chunk_rows, r1 = r0 + rs->opt.chunk_rows < rs->N ? r0 + rs->opt.chunk_rows : rs->N, n = 0;
    for (int64_t r = r0; r < r1; r++) n += rs->use[r] == ROW_TRAIN;
    return n;
}

/* Unmasked rows of document k. */
static int64_t doc_rows(const row_stream *rs, int64_t k)
{
    int64_t n = 0;
    for (int64_t r = rs->docs.offsets[k]; r < rs->docs.offsets[k + 1]; r++) n += rs->use[r] != ROW_MASKED;
    return n;
}

/* One domain's held-out documents: in a seeded order, each taken when it brings the
 * held-out rows nearer to the target (eval_fraction of the domain's rows); never
 * every document of the domain. held[k] = 1 for those taken. (row_stream.h) */
tp_status row_stream_hold_out_domain(const int64_t *doc_rows, const int32_t *doc_domain, int64_t n_docs, int dom,
                                     double eval_fraction, uint64_t seed, uint8_t *held)
{
    int64_t nd = 0, rows = 0;
    for (int64_t k = 0; k < n_docs; k++)
        if (doc_domain[k] == dom) nd++, rows += doc_rows[k];
    if (nd < 2) return TP_OK;
    int64_t *list = tp_malloc((size_t)nd * sizeof *list);
    if (!list) return TP_ERR_NOMEM;
    for (int64_t k = 0, j = 0; k < n_docs; k++)
        if (doc_domain[k] == dom) list[j++] = k;
    uint64_t state = seed ^ 0x5eedE7A1ull ^ (0x9E3779B97F4A7C15ull * (uint64_t)(dom + 1));
    for (int64_t i = nd - 1; i > 0; i--) {
        int64_t j = (int64_t)(tp_splitmix64(&state) % (uint64_t)(i + 1)), t = list[i];
        list[i] = list[j], list[j] = t;
    }
    double target = eval_fraction * (double)rows, held_rows = 0;
    int64_t taken = 0, smallest = -1;
    for (int64_t i = 0; i < nd && taken < nd - 1; i++) {
        double r = (double)doc_rows[list[i]];
        if (r > 0 && (smallest < 0 || r < (double)doc_rows[list[smallest]])) smallest = i;
        if (r == 0 || held_rows + r / 2 > target) continue;
        held[list[i]] = 1, held_rows += r, taken++;
    }
    /* Every domain with two documents or more is represented: when each of its
     * documents is longer than twice its share, the shortest is held out. */
    if (!taken && smallest >= 0) held[list[smallest]] = 1;
    free(list);
    return TP_OK;
}

/* The held-out documents of every domain, then each row's use and the counts. */
static tp_status hold_out(row_stream *rs)
{
    int64_t D = rs->docs.n_docs;
    uint8_t *held = tp_calloc((size_t)(D ? D : 1), 1);
    rs->dom = tp_calloc((size_t)(rs->docs.n_domains ? rs->docs.n_domains : 1), sizeof *rs->dom);
    rs->held_docs = tp_malloc((size_t)(D ? D : 1) * sizeof *rs->held_docs);
    rs->held_domain = tp_malloc((size_t)(D ? D : 1) * sizeof *rs->held_domain);
    if (!held || !rs->dom || !rs->held_docs || !rs->held_domain) { free(held); return TP_ERR_NOMEM; }
    int64_t *rows = tp_malloc((size_t)(D ? D : 1) * sizeof *rows);
    if (!rows) { free(held); return TP_ERR_NOMEM; }
    for (int64_t k = 0; k < D; k++) rows[k] = doc_rows(rs, k);
    tp_status st = TP_OK;
    for (int d = 0; st == TP_OK && rs->opt.eval_fraction > 0 && d < rs->docs.n_domains; d++)
        st = row_stream_hold_out_domain(rows, rs->docs.domain, D, d, rs->opt.eval_fraction, rs->opt.seed, held);
    free(rows);
    for (int d = 0; d < rs->docs.n_domains; d++) rs->dom[d].name = rs->docs.domain_names[d];
    for (int64_t k = 0; st == TP_OK && k < D; k++) {
        row_stream_domain *dm = &rs->dom[rs->docs.domain[k]];
        dm->docs++;
        if (held[k]) dm->docs_held_out++;
        for (int64_t r = rs->docs.offsets[k]; r < rs->docs.offsets[k + 1]; r++) {
            if (rs->use[r] == ROW_MASKED) continue;
            rs->use[r] = held[k] ? ROW_EVAL : ROW_TRAIN;
            if (held[k]) dm->eval_rows++, rs->eval_rows++;
            else dm->train_rows++, rs->train_rows++;
            rs->all_rows++;
        }
    }
    /* The held-out documents' corpus indices, round-robin over the domains (the
     * first of each domain, then the second, ...), so that any prefix of the list
     * is stratified too. */
    for (int64_t round = 0, added = 1; st == TP_OK && added; round++) {
        added = 0;
        for (int d = 0; d < rs->docs.n_domains; d++) {
            int64_t seen = 0;
            for (int64_t k = 0; k < D; k++) {
                if (!held[k] || rs->docs.domain[k] != d) continue;
                if (seen++ != round) continue;
                rs->held_domain[rs->n_held_docs] = d;
                rs->held_docs[rs->n_held_docs++] = rs->docs.index[k];
                added = 1;
                break;
            }
        }
    }
    free(held);
    return st;
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
        MPI_Comm_rank(comm, &rs->rank);
        MPI_Comm_size(comm, &rs->size);
        rs->N = store_rows(s);
        rs->n_chunks = (rs->N + opt->chunk_rows - 1) / opt->chunk_rows;
        rs->acts = tp_malloc((size_t)n_acts * sizeof *rs->acts);
        rs->d = tp_malloc((size_t)n_acts * sizeof *rs->d);
        rs->use = tp_malloc((size_t)(rs->N ? rs->N : 1));
        rs->train = tp_malloc((size_t)(rs->n_chunks ? rs->n_chunks : 1) * sizeof *rs->train);
        rs->order = tp_malloc((size_t)(rs->n_chunks ? rs->n_chunks : 1) * sizeof *rs->order);
        rs->win = tp_calloc((size_t)n_acts, sizeof *rs->win);
    }
    st = rs && rs->acts && rs->d && rs->use && rs->train && rs->order && rs->win ? TP_OK : TP_ERR_NOMEM;
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
    if ((st = store_read_u8(s, "mask", 0, rs->N, rs->use)) != TP_OK) goto fail;   /* 1 = unmasked, for now */
    if ((st = store_read_docs(s, &rs->docs)) != TP_OK) goto fail;
    if ((st = dist_agree(comm, hold_out(rs), "row stream")) != TP_OK) goto fail;
    for (int64_t c = 0; c < rs->n_chunks; c++)
        if (chunk_train_rows(rs, c)) rs->train[rs->n_train++] = c;
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
            int64_t j = (int64_t)tp_rng_below(&state, (uint64_t)i + 1), t = rs->order[i];
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
    for (int64_t c = c0; c < c1; c++) m += chunk_train_rows(rs, rs->order[c]);
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
    for (int64_t c = c0; c < c1; c++) m += chunk_train_rows(rs, rs->order[c]);
    /* Row k of the window in read order goes to position perm[k]. */
    uint64_t state = rs->opt.seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(epoch + 1)) ^ (0x8CB92BA72F3D8DD7ull * (uint64_t)(w + 1));
    for (int64_t k = 0; k < m; k++) rs->perm[k] = k;
    for (int64_t k = m - 1; k > 0; k--) {
        int64_t j = (int64_t)tp_rng_below(&state, (uint64_t)k + 1), t = rs->perm[k];
        rs->perm[k] = rs->perm[j], rs->perm[j] = t;
    }
    for (int i = 0; i < rs->n_acts; i++) {
        int64_t k = 0, d = rs->d[i];
        for (int64_t c = c0; c < c1; c++) {
            int64_t r0, cn;
            TP_CHECK(read_chunk(rs, i, rs->order[c], &r0, &cn));
            for (int64_t r = 0; r < cn; r++) {
                if (rs->use[r0 + r] != ROW_TRAIN) continue;
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

/* ---- passes over held-out or all rows ------------------------------------------ */

static int wanted(const row_stream *rs, int64_t row, int want)
{
    return want ? rs->use[row] == want : rs->use[row] != ROW_MASKED;
}

/* The next block of rows [*r0, *r1) of [from, end) that starts at a wanted row and
 * spans at most chunk_rows rows; 0 when none is left. */
static int next_block(const row_stream *rs, int want, int64_t from, int64_t end, int64_t *r0, int64_t *r1)
{
    while (from < end && !wanted(rs, from, want)) from++;
    if (from >= end) return 0;
    *r0 = from;
    *r1 = from + rs->opt.chunk_rows < end ? from + rs->opt.chunk_rows : end;
    return 1;
}

/* Rows [a, b) of this rank, those with use `want` (0: every unmasked row), block by
 * block to fn; every rank takes part in every round of reads. */
static tp_status run_pass(row_stream *rs, int act_i, int want, int64_t a, int64_t b, row_stream_block_fn fn,
                          void *user)
{
    int64_t nb = 0, rounds = 0, r0, r1, d = rs->d[act_i];
    for (int64_t pos = a; next_block(rs, want, pos, b, &r0, &r1); pos = r1) nb++;
    MPI_CHECK(MPI_Allreduce(&nb, &rounds, 1, MPI_INT64_T, MPI_MAX, rs->comm));
    float *pick = tp_malloc((size_t)(rs->opt.chunk_rows * d) * sizeof *pick);
    int64_t *rows = tp_malloc((size_t)rs->opt.chunk_rows * sizeof *rows);
    tp_status st = dist_agree(rs->comm, pick && rows ? TP_OK : TP_ERR_NOMEM, "row stream"), lst = TP_OK;
    int64_t pos = a;
    for (int64_t k = 0; st == TP_OK && k < rounds; k++) {
        int have = next_block(rs, want, pos, b, &r0, &r1);
        if (!have) r0 = r1 = 0;
        st = dist_agree(rs->comm, store_read_acts(rs->s, rs->acts[act_i], r0, r1 - r0, rs->stage), "row stream");
        int64_t m = 0;
        for (int64_t r = r0; st == TP_OK && r < r1; r++) {
            if (!wanted(rs, r, want)) continue;
            memcpy(pick + m * d, rs->stage + (r - r0) * d, (size_t)d * sizeof *pick);
            rows[m++] = r;
        }
        if (st == TP_OK && lst == TP_OK && m) lst = fn(user, pick, rows, m);
        if (have) pos = r1;
    }
    free(pick), free(rows);
    if (st != TP_OK) return st;
    return dist_agree(rs->comm, lst, "row stream pass");
}

/* The store rows [a, b) holding ordinals [lo, hi) of the rows with use `want`. */
static void ordinal_span(const row_stream *rs, int want, int64_t lo, int64_t hi, int64_t *a, int64_t *b)
{
    int64_t k = 0;
    *a = *b = rs->N;
    for (int64_t r = 0; r < rs->N; r++) {
        if (!wanted(rs, r, want)) continue;
        if (k == lo) *a = r;
        if (k == hi - 1) { *b = r + 1; break; }
        k++;
    }
    if (lo >= hi) *a = *b = 0;
}

tp_status row_stream_for_eval(row_stream *rs, int act_i, row_stream_block_fn fn, void *user)
{
    int64_t lo, hi, a, b;
    row_stream_share(rs->eval_rows, rs->rank, rs->size, &lo, &hi);
    ordinal_span(rs, ROW_EVAL, lo, hi, &a, &b);
    return run_pass(rs, act_i, ROW_EVAL, a, b, fn, user);
}

tp_status row_stream_for_all(row_stream *rs, int act_i, row_stream_block_fn fn, void *user)
{
    int64_t lo, hi, a, b;
    row_stream_share(rs->all_rows, rs->rank, rs->size, &lo, &hi);
    ordinal_span(rs, 0, lo, hi, &a, &b);
    return run_pass(rs, act_i, 0, a, b, fn, user);
}
