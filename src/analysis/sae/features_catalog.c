#include "analysis/sae/features_catalog.h"

#include "backend/backend.h"   /* be_gemm_f32 */
#include "core/dtype.h"
#include "dist/mpi_check.h"
#include "dist/world.h"        /* dist_agree */
#include "io/features_index.h" /* the file and its index */
#include "io/store_results.h"  /* store_serial_*: the contexts */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONTEXT_GAP 4096      /* needed rows closer than this are read in one span */
#define MERGE_BYTES (32 << 20) /* what rank 0 receives per round of the merge */
#define HL_OPEN "\xe2\x9f\xa6"   /* ⟦ U+27E6 */
#define HL_CLOSE "\xe2\x9f\xa7"  /* ⟧ U+27E7 */
#define UNKNOWN_DOMAIN "(unknown)"

void features_catalog_default_options(features_catalog_options *o)
{
    memset(o, 0, sizeof *o);
    o->top_k = 20;
    o->context_before = 12;
    o->context_after = 4;
    o->n_quantiles = 5;
    o->reservoir = 64;
    o->n_logit_tokens = 10;
    o->n_read_tokens = 10;
    o->dense_threshold = -1;
    o->max_detailed = 4096;
    o->fold_final_norm = 1;
    o->seed = 0;
    o->block_rows = 256;
    o->feature_block = 512;
    o->vocab_block = 2048;
}

static inline uint64_t mix64(uint64_t z)   /* splitmix64's finaliser */
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

uint64_t features_catalog_sample_key(uint64_t seed, int64_t feature, int64_t store_row)
{
    uint64_t z = mix64(seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(feature + 1));
    return mix64(z ^ (0xD1B54A32D192ED03ULL * (uint64_t)(store_row + 1)));
}

/* ---- bounded heaps -----------------------------------------------------------------------
 * An entry is a firing (activation a, store row, its domain) or, for the token scores,
 * (score a, token id as `row`). */
typedef struct {
    float a;
    int32_t dom;
    int64_t row;
} entry;

/* Top heaps: a min-heap of the `cap` best entries, better = larger a, or the same a and
 * a lower row. The root is the worst entry kept. */
static inline int top_worse(const entry *x, const entry *y)
{
    return x->a < y->a || (x->a == y->a && x->row > y->row);
}

static void top_sift_down(entry *h, int64_t n, int64_t p)
{
    for (;;) {
        int64_t l = 2 * p + 1, r = l + 1, w = p;
        if (l < n && top_worse(&h[l], &h[w])) w = l;
        if (r < n && top_worse(&h[r], &h[w])) w = r;
        if (w == p) return;
        entry t = h[p]; h[p] = h[w]; h[w] = t;
        p = w;
    }
}

static void top_offer(entry *h, int64_t *n, int64_t cap, entry e)
{
    if (*n < cap) {
        int64_t c = (*n)++;
        h[c] = e;
        while (c > 0) {
            int64_t p = (c - 1) / 2;
            if (!top_worse(&h[c], &h[p])) break;
            entry t = h[p]; h[p] = h[c]; h[c] = t;
            c = p;
        }
    } else if (cap > 0 && top_worse(&h[0], &e)) {
        h[0] = e;
        top_sift_down(h, *n, 0);
    }
}

/* Sample heaps of feature f: a max-heap by (key(row), row) of the `cap` smallest; the
 * root is the largest kept. Keys are recomputed from the row (an entry stays 16 bytes;
 * a firing replaces the root rarely, with probability cap / firings so far). */
typedef struct {
    uint64_t seed;
    int64_t f;
} sample_ctx;

static inline int key_less(const sample_ctx *c, const entry *x, const entry *y)
{
    const uint64_t kx = features_catalog_sample_key(c->seed, c->f, x->row);
    const uint64_t ky = features_catalog_sample_key(c->seed, c->f, y->row);
    return kx < ky || (kx == ky && x->row < y->row);
}

static void sample_offer(const sample_ctx *c, entry *h, int64_t *n, int64_t cap, entry e)
{
    if (*n < cap) {
        int64_t k = (*n)++;
        h[k] = e;
        while (k > 0) {
            int64_t p = (k - 1) / 2;
            if (!key_less(c, &h[p], &h[k])) break;
            entry t = h[p]; h[p] = h[k]; h[k] = t;
            k = p;
        }
    } else if (cap > 0 && key_less(c, &e, &h[0])) {
        h[0] = e;
        for (int64_t p = 0;;) {
            int64_t l = 2 * p + 1, r = l + 1, w = p;
            if (l < *n && key_less(c, &h[w], &h[l])) w = l;
            if (r < *n && key_less(c, &h[w], &h[r])) w = r;
            if (w == p) break;
            entry t = h[p]; h[p] = h[w]; h[w] = t;
            p = w;
        }
    }
}

static int entry_cmp_desc(const void *x, const void *y)
{
    const entry *p = x, *q = y;
    if (p->a != q->a) return p->a > q->a ? -1 : 1;
    return p->row < q->row ? -1 : p->row > q->row;
}

static int entry_cmp_asc(const void *x, const void *y)
{
    const entry *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return p->row < q->row ? -1 : p->row > q->row;
}

/* ---- state --------------------------------------------------------------------------------- */

struct features_catalog_acc {
    const features_catalog_input *in;
    features_catalog_options o;
    int64_t F, d, K, R, B;     /* features, d_in, top_k, sample size (0 without quantiles), rows per encode */
    int nd;                    /* domains (1, "(unknown)", when the input has none) */
    tp_status status;          /* the first failed add */
    int finished;
    /* what the adds accumulate; merged by finish */
    int64_t rows, max_row;     /* rows added, largest store row (−1: none) */
    int64_t *dom_rows;         /* [nd] */
    int64_t *fires;            /* [F] */
    double *sum;               /* [F] */
    float *mx;                 /* [F] */
    double *mass;              /* [F·nd] */
    entry *top;                /* [F·K] heaps */
    int64_t *top_n;            /* [F] */
    float *top_thr;            /* [F] an activation below it cannot enter the heap */
    entry *smp;                /* [F·R] sample heaps */
    int64_t *smp_n;            /* [F] */
    uint64_t *smp_thr;         /* [F] a key above it cannot enter the sample */
    float *codes;              /* [B, F] */
};

/* What rank 0 makes from the merged statistics. */
typedef struct {
    features_catalog_acc *a;
    const features_catalog_input *in;
    int64_t F, d, N;           /* N: store rows (0 without a store) */
    /* detail */
    int64_t n_det;
    int64_t *det;              /* [n_det] feature ids, increasing */
    int64_t *det_pos;          /* [F] position in det, −1 */
    int logits_ok;
    char logits_reason[160];
    int64_t mL, mR;            /* promoted/suppressed, read tokens per feature */
    entry *pro, *sup, *rd;     /* [n_det·mL], [n_det·mL], [n_det·mR] heaps of (score, token) */
    int64_t *pro_n, *sup_n, *rd_n;   /* [n_det] */
    uint8_t *valid;            /* [V] token ids the tokenizer knows */
    /* contexts */
    int64_t nu;
    int64_t *u_row;            /* [nu] unique store rows, increasing */
    int32_t *u_tok;            /* [nu] */
    char **u_token, **u_ctx;   /* [nu] text (NULL without a tokenizer) */
    entry *tmp;                /* [max(K, R, mL, mR) + 1] */
    store_serial *store;
    tp_backend *be;            /* the token-score products (backend_cpu(): host arrays) */
} detail_state;

void features_catalog_free(features_catalog_acc *a)
{
    if (!a) return;
    free(a->dom_rows), free(a->fires), free(a->sum), free(a->mx), free(a->mass);
    free(a->top), free(a->top_n), free(a->top_thr), free(a->smp), free(a->smp_n), free(a->smp_thr);
    free(a->codes);
    free(a);
}

static void detail_free(detail_state *s)
{
    for (int64_t i = 0; i < s->nu; i++) {
        if (s->u_token) free(s->u_token[i]);
        if (s->u_ctx) free(s->u_ctx[i]);
    }
    free(s->u_token), free(s->u_ctx), free(s->u_row), free(s->u_tok);
    free(s->det), free(s->det_pos), free(s->pro), free(s->sup), free(s->rd);
    free(s->pro_n), free(s->sup_n), free(s->rd_n), free(s->valid), free(s->tmp);
    store_serial_close(s->store);
}

static tp_status check_input(const features_catalog_input *in)
{
    const features_catalog_options *o = &in->opt;
    if (!in->sae || !in->sae->W_enc) return tp_err(TP_ERR_CONFIG, "features catalog: no SAE");
    struct { const char *name; int64_t v, lo; } ints[] = {
        {"top_k", o->top_k, 0}, {"context_before", o->context_before, 0}, {"context_after", o->context_after, 0},
        {"n_quantiles", o->n_quantiles, 0}, {"reservoir", o->reservoir, 0}, {"n_logit_tokens", o->n_logit_tokens, 0},
        {"n_read_tokens", o->n_read_tokens, 0}, {"max_detailed", o->max_detailed, 0},
        {"block_rows", o->block_rows, 1}, {"feature_block", o->feature_block, 1}, {"vocab_block", o->vocab_block, 1},
        {"merge_block", o->merge_block, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].v < ints[i].lo)
            return tp_err(TP_ERR_CONFIG, "features catalog: option %s = %lld must be >= %lld", ints[i].name,
                          (long long)ints[i].v, (long long)ints[i].lo);
    if (o->n_quantiles > 0 && o->reservoir < 1)
        return tp_err(TP_ERR_CONFIG, "features catalog: quantile samples need reservoir >= 1");
    if (!(o->dense_threshold <= 1))
        return tp_err(TP_ERR_CONFIG, "features catalog: dense_threshold %g is not a fraction", o->dense_threshold);
    if (in->n_domains < 0 || (in->n_domains > 0 && !in->domain_names))
        return tp_err(TP_ERR_CONFIG, "features catalog: %d domains without names", in->n_domains);
    for (int k = 0; k < in->n_domains; k++) {
        if (!in->domain_names[k]) return tp_err(TP_ERR_CONFIG, "features catalog: domain %d has no name", k);
        for (int q = 0; q < k; q++)
            if (!strcmp(in->domain_names[q], in->domain_names[k]))
                return tp_err(TP_ERR_CONFIG, "features catalog: domain '%s' is listed twice (%d and %d)",
                              in->domain_names[k], q, k);
    }
    return TP_OK;
}

static tp_status acc_alloc(features_catalog_acc *a)
{
    const int64_t F = a->F, K = a->K, R = a->R;
    TP_ALLOC(a->dom_rows, a->nd);
    TP_ALLOC(a->fires, F);
    TP_ALLOC(a->sum, F);
    TP_ALLOC(a->mx, F);
    TP_ALLOC(a->mass, F * a->nd);
    TP_ALLOC(a->top, F * K + 1);
    TP_ALLOC(a->top_n, F);
    TP_ALLOC(a->top_thr, F);
    TP_ALLOC(a->smp, F * R + 1);
    TP_ALLOC(a->smp_n, F);
    TP_ALLOC(a->smp_thr, F);
    TP_ALLOC(a->codes, a->B * F);
    /* top_thr: 0 while the heap has room (only firings, > 0, are offered), then the
     * root's activation (an equal one may still win on its row: top_offer decides).
     * K = 0: never. smp_thr likewise: every key while the sample has room. */
    for (int64_t i = 0; i < F; i++) {
        a->top_thr[i] = K > 0 ? 0.0f : INFINITY;
        a->smp_thr[i] = UINT64_MAX;
    }
    return TP_OK;
}

tp_status features_catalog_begin(const features_catalog_input *in, features_catalog_acc **out)
{
    *out = NULL;
    TP_CHECK(check_input(in));
    features_catalog_acc *a = tp_calloc(1, sizeof *a);
    if (!a) return TP_ERR_NOMEM;
    a->in = in;
    a->o = in->opt;
    a->F = in->sae->cfg.d_sae, a->d = in->sae->cfg.d_in;
    a->K = a->o.top_k;
    a->R = a->o.n_quantiles > 0 ? a->o.reservoir : 0;
    a->B = a->o.block_rows < in->sae->max_rows ? a->o.block_rows : in->sae->max_rows;
    if (a->B < 1) a->B = 1;
    a->nd = in->n_domains > 0 ? in->n_domains : 1;
    a->max_row = -1;
    tp_status st = acc_alloc(a);
    if (st != TP_OK) {
        features_catalog_free(a);
        return tp_err(TP_ERR_NOMEM, "features catalog: accumulators of %lld features x (%lld + %lld) entries",
                      (long long)a->F, (long long)a->K, (long long)a->R);
    }
    *out = a;
    return TP_OK;
}

/* ---- the pass over the rows ------------------------------------------------------------------ */

static tp_status check_rows(const features_catalog_acc *a, const float *rows, const int64_t *store_rows,
                            const int32_t *domains, int64_t n)
{
    if (n < 0 || (n > 0 && (!rows || !store_rows)))
        return tp_err(TP_ERR_CONFIG, "features catalog: %lld rows without data", (long long)n);
    if (n > 0 && a->in->n_domains > 0 && !domains)
        return tp_err(TP_ERR_CONFIG, "features catalog: rows without their domains (%d domains)", a->in->n_domains);
    for (int64_t r = 0; r < n; r++) {
        if (store_rows[r] < 0)
            return tp_err(TP_ERR_RANGE, "features catalog: row %lld has store row %lld", (long long)r,
                          (long long)store_rows[r]);
        if (domains && a->in->n_domains > 0 && (domains[r] < 0 || domains[r] >= a->in->n_domains))
            return tp_err(TP_ERR_RANGE, "features catalog: store row %lld has domain %d, not one of the %d domains",
                          (long long)store_rows[r], domains[r], a->in->n_domains);
    }
    return TP_OK;
}

static void accumulate_block(features_catalog_acc *a, const int64_t *store_rows, const int32_t *domains, int64_t nb)
{
    const int64_t F = a->F, K = a->K, R = a->R, nd = a->nd;
    const uint64_t seed = a->o.seed;
    for (int64_t b = 0; b < nb; b++) {
        const int64_t row = store_rows[b];
        const int32_t dm = a->in->n_domains > 0 ? domains[b] : 0;
        const float *restrict c = a->codes + (size_t)b * (size_t)F;
        double *restrict mass = a->mass + dm;
        a->rows++;
        a->dom_rows[dm]++;
        if (row > a->max_row) a->max_row = row;
        for (int64_t i = 0; i < F; i++) {
            const float v = c[i];
            if (!(v > 0)) continue;
            a->fires[i]++;
            a->sum[i] += v;
            if (v > a->mx[i]) a->mx[i] = v;
            mass[(size_t)i * (size_t)nd] += v;
            const entry e = {.a = v, .dom = dm, .row = row};
            if (v >= a->top_thr[i]) {
                entry *h = a->top + (size_t)i * (size_t)K;
                top_offer(h, &a->top_n[i], K, e);
                if (a->top_n[i] == K) a->top_thr[i] = h[0].a;
            }
            if (R > 0 && features_catalog_sample_key(seed, i, row) <= a->smp_thr[i]) {
                entry *h = a->smp + (size_t)i * (size_t)R;
                const sample_ctx sc = {seed, i};
                sample_offer(&sc, h, &a->smp_n[i], R, e);
                if (a->smp_n[i] == R) a->smp_thr[i] = features_catalog_sample_key(seed, i, h[0].row);
            }
        }
    }
}

tp_status features_catalog_add(features_catalog_acc *a, const float *rows, const int64_t *store_rows,
                               const int32_t *domains, int64_t n)
{
    if (a->status != TP_OK) return a->status;
    if (a->finished) return a->status = tp_err(TP_ERR_INTERNAL, "features catalog: add after finish");
    tp_status st = check_rows(a, rows, store_rows, domains, n);
    for (int64_t r0 = 0; st == TP_OK && r0 < n; r0 += a->B) {
        const int64_t nb = n - r0 < a->B ? n - r0 : a->B;
        st = sae_encode(a->in->sae, rows + (size_t)r0 * (size_t)a->d, nb, a->codes);
        if (st == TP_OK) accumulate_block(a, store_rows + r0, domains ? domains + r0 : NULL, nb);
    }
    return a->status = st;
}

/* ---- the merge ------------------------------------------------------------------------------- */

/* In-place reduction to rank 0 in chunks that fit MPI's int counts. */
static tp_status reduce_to_root(void *buf, size_t n, size_t esz, MPI_Datatype type, MPI_Op op, int rank, MPI_Comm comm)
{
    const size_t chunk = (size_t)1 << 28;
    for (size_t off = 0; off < n; off += chunk) {
        int cnt = (int)(n - off < chunk ? n - off : chunk);
        char *p = (char *)buf + off * esz;
        MPI_CHECK(MPI_Reduce(rank == 0 ? MPI_IN_PLACE : p, p, cnt, type, op, 0, comm));
    }
    return TP_OK;
}

static tp_status merge_sums(features_catalog_acc *a, int rank, MPI_Comm comm)
{
    const size_t F = (size_t)a->F, nd = (size_t)a->nd;
    TP_CHECK(reduce_to_root(&a->rows, 1, sizeof a->rows, MPI_INT64_T, MPI_SUM, rank, comm));
    TP_CHECK(reduce_to_root(&a->max_row, 1, sizeof a->max_row, MPI_INT64_T, MPI_MAX, rank, comm));
    TP_CHECK(reduce_to_root(a->dom_rows, nd, sizeof *a->dom_rows, MPI_INT64_T, MPI_SUM, rank, comm));
    TP_CHECK(reduce_to_root(a->fires, F, sizeof *a->fires, MPI_INT64_T, MPI_SUM, rank, comm));
    TP_CHECK(reduce_to_root(a->sum, F, sizeof *a->sum, MPI_DOUBLE, MPI_SUM, rank, comm));
    TP_CHECK(reduce_to_root(a->mx, F, sizeof *a->mx, MPI_FLOAT, MPI_MAX, rank, comm));
    TP_CHECK(reduce_to_root(a->mass, F * nd, sizeof *a->mass, MPI_DOUBLE, MPI_SUM, rank, comm));
    return TP_OK;
}

/* The heaps and samples of every rank, features [f0, f0 + fb) at a time, offered to
 * rank 0's own (which then hold the top_k / the smallest keys of the union). */
static tp_status merge_heaps(features_catalog_acc *a, int rank, int size, MPI_Comm comm)
{
    const int64_t K = a->K, R = a->R, per = (K + R) * (int64_t)sizeof(entry) + 2 * (int64_t)sizeof(int64_t);
    int64_t fb_max = a->o.merge_block > 0 ? a->o.merge_block : MERGE_BYTES / (per * size);
    if (fb_max < 1) fb_max = 1;
    if (fb_max > a->F) fb_max = a->F > 0 ? a->F : 1;
    entry *rt = NULL, *rs = NULL;
    int64_t *rtn = NULL, *rsn = NULL;
    tp_status st = TP_OK;
    if (rank == 0) {
        rt = tp_malloc((size_t)(size * fb_max * K + 1) * sizeof *rt);
        rs = tp_malloc((size_t)(size * fb_max * R + 1) * sizeof *rs);
        rtn = tp_malloc((size_t)(size * fb_max) * sizeof *rtn);
        rsn = tp_malloc((size_t)(size * fb_max) * sizeof *rsn);
        if (!rt || !rs || !rtn || !rsn) st = tp_err(TP_ERR_NOMEM, "features catalog: merge buffers");
    }
    st = dist_agree(comm, st, "features catalog merge");
    for (int64_t f0 = 0; st == TP_OK && f0 < a->F; f0 += fb_max) {
        const int64_t fb = a->F - f0 < fb_max ? a->F - f0 : fb_max;
        MPI_CHECK_GOTO(MPI_Gather(a->top_n + f0, (int)fb, MPI_INT64_T, rtn, (int)fb, MPI_INT64_T, 0, comm), st, done);
        MPI_CHECK_GOTO(MPI_Gather(a->smp_n + f0, (int)fb, MPI_INT64_T, rsn, (int)fb, MPI_INT64_T, 0, comm), st, done);
        const int tb = (int)(fb * K * (int64_t)sizeof(entry)), sb = (int)(fb * R * (int64_t)sizeof(entry));
        MPI_CHECK_GOTO(MPI_Gather(a->top + f0 * K, tb, MPI_BYTE, rt, tb, MPI_BYTE, 0, comm), st, done);
        MPI_CHECK_GOTO(MPI_Gather(a->smp + f0 * R, sb, MPI_BYTE, rs, sb, MPI_BYTE, 0, comm), st, done);
        if (rank != 0) continue;
        for (int r = 1; r < size; r++)
            for (int64_t j = 0; j < fb; j++) {
                const int64_t i = f0 + j;
                const entry *t = rt + ((size_t)r * (size_t)fb + (size_t)j) * (size_t)K;
                for (int64_t q = 0; q < rtn[(size_t)r * (size_t)fb + (size_t)j]; q++)
                    top_offer(a->top + i * K, &a->top_n[i], K, t[q]);
                const entry *s = rs + ((size_t)r * (size_t)fb + (size_t)j) * (size_t)R;
                const sample_ctx sc = {a->o.seed, i};
                for (int64_t q = 0; q < rsn[(size_t)r * (size_t)fb + (size_t)j]; q++)
                    sample_offer(&sc, a->smp + i * R, &a->smp_n[i], R, s[q]);
            }
    }
done:
    free(rt), free(rs), free(rtn), free(rsn);
    return st;
}

/* ---- detail: which features ------------------------------------------------------------------ */

typedef struct { double m; int64_t id; } mass_id;

static int mass_id_cmp(const void *x, const void *y)
{
    const mass_id *p = x, *q = y;
    if (p->m != q->m) return p->m > q->m ? -1 : 1;
    return p->id < q->id ? -1 : p->id > q->id;
}

static int i64_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

static tp_status choose_detailed(detail_state *s)
{
    const features_catalog_acc *a = s->a;
    int64_t live = 0;
    for (int64_t i = 0; i < s->F; i++) live += a->fires[i] > 0;
    mass_id *mi = tp_malloc((size_t)(live > 0 ? live : 1) * sizeof *mi);
    if (!mi) return TP_ERR_NOMEM;
    int64_t k = 0;
    for (int64_t i = 0; i < s->F; i++)
        if (a->fires[i] > 0) mi[k].m = a->sum[i], mi[k++].id = i;
    int64_t nd = live;
    if (a->o.max_detailed > 0 && live > a->o.max_detailed) {
        qsort(mi, (size_t)live, sizeof *mi, mass_id_cmp);
        nd = a->o.max_detailed;
    }
    s->det = tp_malloc((size_t)(nd > 0 ? nd : 1) * sizeof *s->det);
    s->det_pos = tp_malloc((size_t)(s->F > 0 ? s->F : 1) * sizeof *s->det_pos);
    if (!s->det || !s->det_pos) { free(mi); return TP_ERR_NOMEM; }
    for (int64_t j = 0; j < nd; j++) s->det[j] = mi[j].id;
    free(mi);
    qsort(s->det, (size_t)nd, sizeof *s->det, i64_cmp);
    s->n_det = nd;
    for (int64_t i = 0; i < s->F; i++) s->det_pos[i] = -1;
    for (int64_t j = 0; j < nd; j++) s->det_pos[s->det[j]] = j;
    return TP_OK;
}

/* ---- token scores: M · direction, blocked ------------------------------------------------------
 * For the detailed features, dir_i = mult · src[i] ⊙ colscale (colscale NULL: 1),
 * score(t) = M[t] · dir_i over the token ids marked valid; keeps the m_top largest
 * (and, if bot, the m_top smallest, as the largest of −score). */
static tp_status token_scores(detail_state *s, const tp_mat *M, const float *src, float mult, const float *colscale,
                              int64_t m_top, entry *top, int64_t *top_n, entry *bot, int64_t *bot_n)
{
    const int64_t d = s->d, V = M->rows, nf = s->n_det;
    const int64_t Fb = s->a->o.feature_block < nf ? s->a->o.feature_block : (nf > 0 ? nf : 1);
    const int64_t Vb = s->a->o.vocab_block < V ? s->a->o.vocab_block : (V > 0 ? V : 1);
    float *P = tp_malloc((size_t)(Fb * d) * sizeof *P), *S = tp_malloc((size_t)(Fb * Vb) * sizeof *S);
    float *W = M->dtype == TP_DTYPE_F32 ? NULL : tp_malloc((size_t)(Vb * d) * sizeof *W);
    if (!P || !S || (M->dtype != TP_DTYPE_F32 && !W)) { free(P), free(S), free(W); return TP_ERR_NOMEM; }
    const size_t esz = tp_dtype_size(M->dtype);
    tp_status st = TP_OK;
    for (int64_t f0 = 0; f0 < nf; f0 += Fb) {
        const int64_t fb = nf - f0 < Fb ? nf - f0 : Fb;
        for (int64_t j = 0; j < fb; j++) {
            const float *w = src + (size_t)s->det[f0 + j] * (size_t)d;
            float *p = P + (size_t)j * (size_t)d;
            for (int64_t c = 0; c < d; c++) p[c] = mult * w[c] * (colscale ? colscale[c] : 1.0f);
        }
        for (int64_t v0 = 0; v0 < V; v0 += Vb) {
            const int64_t vb = V - v0 < Vb ? V - v0 : Vb;
            const void *rows = (const char *)M->data + (size_t)v0 * (size_t)d * esz;
            const float *Wv = rows;
            if (W) {
                tp_convert_to_f32(M->dtype, rows, W, (size_t)(vb * d));
                Wv = W;
            }
            if ((st = be_gemm_f32(s->be, TP_NO_TRANS, TP_TRANS, fb, vb, d, 1.0f, P, d, Wv, d, 0.0f, S, vb)) != TP_OK)
                goto done;
            for (int64_t j = 0; j < fb; j++) {
                const int64_t q = f0 + j;
                const float *srow = S + (size_t)j * (size_t)vb;
                entry *ht = top + (size_t)q * (size_t)m_top, *hb = bot ? bot + (size_t)q * (size_t)m_top : NULL;
                for (int64_t v = 0; v < vb; v++) {
                    if (!s->valid[v0 + v]) continue;
                    const float x = srow[v];
                    top_offer(ht, &top_n[q], m_top, (entry){.a = x, .row = v0 + v});
                    if (hb) top_offer(hb, &bot_n[q], m_top, (entry){.a = -x, .row = v0 + v});
                }
            }
        }
    }
done:
    free(P), free(S), free(W);
    return st;
}

static tp_status logit_attribution(detail_state *s)
{
    const features_catalog_input *in = s->in;
    const tp_model *m = in->model;
    s->mL = s->a->o.n_logit_tokens, s->mR = s->a->o.n_read_tokens;
    if (!m) {
        snprintf(s->logits_reason, sizeof s->logits_reason, "no model given");
        return TP_OK;
    }
    if (s->d != m->cfg.hidden_size) {
        snprintf(s->logits_reason, sizeof s->logits_reason,
                 "d_in %lld is not the model's hidden size %d: the hook is not in the residual stream's space",
                 (long long)s->d, m->cfg.hidden_size);
        return TP_OK;
    }
    if (m->lm_head.cols != s->d || m->embed.cols != s->d) {
        snprintf(s->logits_reason, sizeof s->logits_reason, "embedding or unembedding is not [V, %lld]",
                 (long long)s->d);
        return TP_OK;
    }
    s->logits_ok = 1;
    const int64_t V = m->lm_head.rows > m->embed.rows ? m->lm_head.rows : m->embed.rows, nf = s->n_det;
    TP_ALLOC(s->valid, V);
    int32_t tv = in->tok ? tokenizer_vocab_size(in->tok) : 0;
    for (int64_t v = 0; v < V; v++)
        s->valid[v] = !in->tok || (v < tv && tokenizer_id_to_token(in->tok, (int32_t)v) != NULL);
    TP_ALLOC(s->pro, nf * s->mL + 1);
    TP_ALLOC(s->sup, nf * s->mL + 1);
    TP_ALLOC(s->rd, nf * s->mR + 1);
    TP_ALLOC(s->pro_n, nf + 1);
    TP_ALLOC(s->sup_n, nf + 1);
    TP_ALLOC(s->rd_n, nf + 1);
    const double sc = in->sae->input_scale > 0 ? in->sae->input_scale : 1.0;
    const float *gamma = s->a->o.fold_final_norm ? m->final_norm : NULL;
    if (s->mL > 0)
        TP_CHECK(token_scores(s, &m->lm_head, in->sae->W_dec, (float)(1.0 / sc), gamma, s->mL, s->pro, s->pro_n,
                              s->sup, s->sup_n));
    if (s->mR > 0)
        TP_CHECK(token_scores(s, &m->embed, in->sae->W_enc, (float)sc, NULL, s->mR, s->rd, s->rd_n, NULL, NULL));
    return TP_OK;
}

/* ---- contexts ------------------------------------------------------------------------------ */

static char *decode_ids(const tp_tokenizer *tok, const int32_t *ids, size_t n)
{
    char *txt = NULL;
    size_t len = 0;
    if (n == 0) return strdup("");
    if (tokenizer_decode(tok, ids, n, TOKENIZER_REPLACE_INVALID, &txt, &len) != TP_OK) {
        free(txt);
        tp_err_clear();
        return strdup("\xef\xbf\xbd");   /* U+FFFD: an id the tokenizer does not know */
    }
    return txt;
}

static tp_status add_row(int64_t **rows, int64_t *n, int64_t *cap, int64_t row)
{
    if (*n == *cap) {
        int64_t c = *cap ? 2 * *cap : 1024;
        int64_t *p = realloc(*rows, (size_t)c * sizeof *p);
        if (!p) return tp_err(TP_ERR_NOMEM, "features catalog: %lld context rows", (long long)c);
        *rows = p, *cap = c;
    }
    (*rows)[(*n)++] = row;
    return TP_OK;
}

/* Feature i's top entries, best first, into out; returns how many. */
static int64_t top_sorted(const detail_state *s, int64_t i, entry *out)
{
    const int64_t K = s->a->K, n = s->a->top_n[i];
    memcpy(out, s->a->top + (size_t)i * (size_t)K, (size_t)n * sizeof *out);
    qsort(out, (size_t)n, sizeof *out, entry_cmp_desc);
    return n;
}

/* Quantile samples of detailed feature i into out (≤ n_quantiles entries, ascending). */
static int64_t quantile_samples(detail_state *s, int64_t i, entry *out, double *levels)
{
    const int64_t R = s->a->R, Q = s->a->o.n_quantiles, r = s->a->smp_n[i];
    if (Q <= 0 || R <= 0) return 0;
    memcpy(s->tmp, s->a->smp + (size_t)i * (size_t)R, (size_t)r * sizeof *s->tmp);
    qsort(s->tmp, (size_t)r, sizeof *s->tmp, entry_cmp_asc);
    int64_t k = 0, last = -1;
    for (int64_t j = 0; j < Q && r > 0; j++) {
        double q = ((double)j + 0.5) / (double)Q;
        int64_t rank = (int64_t)floor(q * (double)r);
        if (rank >= r) rank = r - 1;
        if (rank == last) continue;   /* fewer firings than levels: no repeats */
        last = rank;
        out[k] = s->tmp[rank];
        levels[k++] = q;
    }
    return k;
}

/* The token ids and text of the rows that the detailed entries show. */
static tp_status collect_contexts(detail_state *s)
{
    const features_catalog_input *in = s->in;
    if (!s->store || s->n_det == 0) return TP_OK;
    int64_t *rows = NULL, nr = 0, cap = 0;
    tp_status st = TP_OK;
    const int64_t Q = s->a->o.n_quantiles;
    entry *q = tp_malloc((size_t)(Q + 1) * sizeof *q);
    double *lv = tp_malloc((size_t)(Q + 1) * sizeof *lv);
    if (!q || !lv) { st = TP_ERR_NOMEM; goto done; }
    for (int64_t j = 0; j < s->n_det && st == TP_OK; j++) {
        const int64_t i = s->det[j], K = s->a->K;
        for (int64_t t = 0; t < s->a->top_n[i] && st == TP_OK; t++)
            st = add_row(&rows, &nr, &cap, s->a->top[(size_t)i * (size_t)K + (size_t)t].row);
        int64_t nq = quantile_samples(s, i, q, lv);
        for (int64_t t = 0; t < nq && st == TP_OK; t++) st = add_row(&rows, &nr, &cap, q[t].row);
    }
    if (st != TP_OK || nr == 0) goto done;
    qsort(rows, (size_t)nr, sizeof *rows, i64_cmp);
    int64_t nu = 0;
    for (int64_t k = 0; k < nr; k++)
        if (nu == 0 || rows[k] != rows[nu - 1]) rows[nu++] = rows[k];
    s->u_row = rows, rows = NULL;
    s->u_tok = tp_malloc((size_t)nu * sizeof *s->u_tok);
    s->u_token = tp_calloc((size_t)nu, sizeof *s->u_token);
    s->u_ctx = tp_calloc((size_t)nu, sizeof *s->u_ctx);
    if (!s->u_tok || !s->u_token || !s->u_ctx) { st = TP_ERR_NOMEM; goto done; }
    s->nu = nu;
    const int64_t before = s->a->o.context_before, after = s->a->o.context_after;
    for (int64_t g0 = 0; g0 < nu && st == TP_OK;) {
        int64_t g1 = g0 + 1;
        while (g1 < nu && s->u_row[g1] - s->u_row[g1 - 1] <= CONTEXT_GAP) g1++;
        int64_t lo = s->u_row[g0] - before, hi = s->u_row[g1 - 1] + after + 1;
        if (lo < 0) lo = 0;
        if (hi > s->N) hi = s->N;
        int32_t *T = tp_malloc((size_t)(hi - lo) * sizeof *T), *P = tp_malloc((size_t)(hi - lo) * sizeof *P);
        if (!T || !P) st = TP_ERR_NOMEM;
        if (st == TP_OK) st = store_serial_read_i32(s->store, "tokens", lo, hi - lo, T);
        if (st == TP_OK) st = store_serial_read_i32(s->store, "positions", lo, hi - lo, P);
        for (int64_t u = g0; u < g1 && st == TP_OK; u++) {
            const int64_t o = s->u_row[u] - lo;
            const int32_t pos = P[o];
            int64_t nb = pos < before ? pos : before;
            if (nb > o) nb = o;
            if (nb < 0) nb = 0;
            int64_t na = 0;
            while (na < after && o + na + 1 < hi - lo && P[o + na + 1] == pos + na + 1) na++;
            s->u_tok[u] = T[o];
            if (!in->tok) continue;
            char *pre = decode_ids(in->tok, T + o - nb, (size_t)nb), *tk = decode_ids(in->tok, T + o, 1);
            char *post = decode_ids(in->tok, T + o + 1, (size_t)na);
            if (pre && tk && post) {
                size_t len = strlen(pre) + strlen(tk) + strlen(post) + sizeof HL_OPEN + sizeof HL_CLOSE;
                char *c = malloc(len);
                if (c) snprintf(c, len, "%s" HL_OPEN "%s" HL_CLOSE "%s", pre, tk, post);
                s->u_ctx[u] = c;
                s->u_token[u] = tk, tk = NULL;
            }
            if (!s->u_ctx[u]) st = tp_err(TP_ERR_NOMEM, "features catalog: context text");
            free(pre), free(tk), free(post);
        }
        free(T), free(P);
        g0 = g1;
    }
done:
    free(rows), free(q), free(lv);
    return st;
}

static int64_t unique_of(const detail_state *s, int64_t row)
{
    int64_t lo = 0, hi = s->nu;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s->u_row[mid] < row) lo = mid + 1;
        else hi = mid;
    }
    return lo < s->nu && s->u_row[lo] == row ? lo : -1;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static const char *domain_name(const detail_state *s, int k)
{
    return s->in->n_domains > 0 ? s->in->domain_names[k] : UNKNOWN_DOMAIN;
}

/* One context entry: row, activation, token and the highlighted context, domain. */
static json_t *context_json(const detail_state *s, const entry *e, int32_t *tok_out)
{
    json_t *j = json_pack("{s:I, s:o}", "row", (json_int_t)e->row, "activation", jnum(e->a));
    int64_t u = unique_of(s, e->row);
    *tok_out = -1;
    if (u >= 0) {
        *tok_out = s->u_tok[u];
        json_object_set_new(j, "token_id", json_integer(s->u_tok[u]));
        if (s->u_token[u]) json_object_set_new(j, "token", json_string(s->u_token[u]));
        if (s->u_ctx[u]) json_object_set_new(j, "context", json_string(s->u_ctx[u]));
    }
    json_object_set_new(j, "domain", json_string(domain_name(s, e->dom)));
    return j;
}

static json_t *token_list(const detail_state *s, const entry *h, int64_t n, const char *key, double sign)
{
    entry *p = s->tmp;
    memcpy(p, h, (size_t)n * sizeof *p);
    qsort(p, (size_t)n, sizeof *p, entry_cmp_desc);
    json_t *arr = json_array();
    for (int64_t k = 0; k < n; k++) {
        int32_t id = (int32_t)p[k].row;
        json_t *e = json_pack("{s:i}", "token_id", id);
        if (s->in->tok) {
            char *txt = decode_ids(s->in->tok, &id, 1);
            if (txt) json_object_set_new(e, "token", json_string(txt));
            free(txt);
        }
        json_object_set_new(e, key, jnum(sign * p[k].a));
        json_array_append_new(arr, e);
    }
    return arr;
}

static double entropy(const double *p, int64_t n)
{
    double h = 0;
    for (int64_t k = 0; k < n; k++)
        if (p[k] > 0) h -= p[k] * log(p[k]);
    return h;
}

/* domain_profile (largest share first, ties: the earlier domain), top_domain and the
 * domain purity of feature i; w [nd] scratch. */
static double domain_json(const detail_state *s, int64_t i, json_t *f, double *w, char *used)
{
    const int nd = s->a->nd;
    const double *mass = s->a->mass + (size_t)i * (size_t)nd;
    double tot = 0;
    for (int k = 0; k < nd; k++) tot += mass[k];
    json_t *dp = json_object();
    for (int k = 0; k < nd; k++) used[k] = 0;
    int top_dom = -1;
    for (int it = 0; it < nd; it++) {
        int b = -1;
        for (int k = 0; k < nd; k++)
            if (!used[k] && mass[k] > 0 && (b < 0 || mass[k] > mass[b])) b = k;
        if (b < 0) break;
        used[b] = 1;
        if (top_dom < 0) top_dom = b;
        json_object_set_new(dp, domain_name(s, b), json_real(mass[b] / tot));
    }
    json_object_set_new(f, "domain_profile", dp);
    json_object_set_new(f, "top_domain", top_dom >= 0 ? json_string(domain_name(s, top_dom)) : json_null());
    int64_t D = 0;
    for (int k = 0; k < nd; k++) D += s->a->dom_rows[k] > 0;
    for (int k = 0; k < nd; k++) w[k] = tot > 0 ? mass[k] / tot : 0;
    return D > 1 ? 1 - entropy(w, nd) / log((double)D) : NAN;
}

static tp_status feature_detail(detail_state *s, int64_t i, json_t *f)
{
    const int64_t K = s->a->K, j = s->det_pos[i], Q = s->a->o.n_quantiles, nd = s->a->nd;
    json_object_set_new(f, "activation_mass", jnum(s->a->sum[i]));
    entry *p = tp_malloc((size_t)(K + 1) * sizeof *p), *q = tp_malloc((size_t)(Q + 1) * sizeof *q);
    int32_t *toks = tp_malloc((size_t)(K + 1) * sizeof *toks), *ut = tp_malloc((size_t)(K + 1) * sizeof *ut);
    double *w = tp_malloc((size_t)(K + nd + 1) * sizeof *w), *lv = tp_malloc((size_t)(Q + 1) * sizeof *lv);
    char *used = tp_malloc((size_t)nd);
    tp_status st = p && q && toks && ut && w && lv && used ? TP_OK : TP_ERR_NOMEM;
    if (st != TP_OK) goto done;
    /* top contexts */
    int64_t nt = top_sorted(s, i, p);
    json_t *tc = json_array();
    for (int64_t t = 0; t < nt; t++) json_array_append_new(tc, context_json(s, &p[t], &toks[t]));
    json_object_set_new(f, "top_contexts", tc);
    /* quantile samples */
    if (Q > 0) {
        int64_t nq = quantile_samples(s, i, q, lv);
        json_t *qs = json_array();
        for (int64_t t = 0; t < nq; t++) {
            int32_t dummy;
            json_t *e = context_json(s, &q[t], &dummy);
            json_object_set_new(e, "quantile", json_real(lv[t]));
            json_array_append_new(qs, e);
        }
        json_object_set_new(f, "quantile_samples", qs);
    }
    /* logit attribution */
    if (s->logits_ok) {
        if (s->mL > 0) {
            const size_t o = (size_t)j * (size_t)s->mL;
            json_object_set_new(f, "promotes", token_list(s, s->pro + o, s->pro_n[j], "logit", 1));
            json_object_set_new(f, "suppresses", token_list(s, s->sup + o, s->sup_n[j], "logit", -1));
        }
        if (s->mR > 0)
            json_object_set_new(f, "reads", token_list(s, s->rd + (size_t)j * (size_t)s->mR, s->rd_n[j], "score", 1));
    }
    double dom_pur = domain_json(s, i, f, w, used);
    /* monosemanticity (header: definitions) */
    double tok_pur = NAN;
    if (nt == 1) tok_pur = 1;
    else if (nt > 1) {
        /* Distinct tokens (first occurrence order) with their share of the activation. */
        double at = 0;
        for (int64_t t = 0; t < nt; t++) at += p[t].a;
        int64_t nw = 0;
        for (int64_t t = 0; t < nt; t++) {
            int64_t k = 0;
            while (k < nw && ut[k] != toks[t]) k++;
            if (k == nw) ut[nw] = toks[t], w[nw++] = 0;
            w[k] += p[t].a / at;
        }
        tok_pur = 1 - entropy(w, nw) / log((double)nt);
    }
    double score = isnan(dom_pur) ? tok_pur : isnan(tok_pur) ? dom_pur : fmax(tok_pur, dom_pur);
    json_object_set_new(f, "monosemanticity", json_pack("{s:o, s:o, s:o}", "score", jnum(score), "token_purity",
                                                         jnum(tok_pur), "domain_purity", jnum(dom_pur)));
done:
    free(p), free(q), free(toks), free(ut), free(w), free(lv), free(used);
    return st;
}

static json_t *definitions(void)
{
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
        "activation", "the feature's code from sae_encode: in the SAE's scaled space, equal to the activation of the "
                      "SAELens export (results/sae_layer_<L>/) on the hook's raw activations",
        "rows", "every row scanned: each rank scans its share of the store's unmasked rows, the counts are summed",
        "density", "fires / rows: fraction of the rows scanned where the activation is > 0",
        "mean_activation", "mean activation over the rows where the feature fires (null if it never does)",
        "activation_mass", "sum of the feature's activations over all rows",
        "dead_features", "features that fired on none of the rows",
        "dense_features", "features whose density is > dense_threshold",
        "top_contexts", "the top_k rows of largest activation (ties: the lower store row); context = up to "
                        "context_before tokens of the row's sequence, the activating token between \xe2\x9f\xa6 and "
                        "\xe2\x9f\xa7, then up to context_after tokens that follow it in the same sequence",
        "quantile_samples", "for levels q_j = (j + 1/2)/n_quantiles, the entry of ascending rank floor(q_j r) in a "
                            "uniform sample of r <= reservoir of the feature's firings: those with the smallest "
                            "hash(seed, feature, store row), the same for any split of the rows over ranks (exact "
                            "empirical quantiles when the feature fired at most reservoir times); repeated ranks are "
                            "dropped",
        "promotes", "logit(t) = W_U[t] . (gamma * w_i / s): direct effect on the logits of one unit of activation, "
                    "w_i = decoder row, s = input scale, gamma = the final norm's weight (1 if not folded); up to the "
                    "positive 1/rms of the final RMSNorm. The largest; suppresses: the smallest",
        "reads", "score(t) = W_E[t] . (s W_enc[i]): pre-activation the token's embedding alone would give (no biases)",
        "domain_profile", "activation mass per domain of the store (the row's document's domain) / activation mass, "
                          "largest first; top_domain: its first key",
        "monosemanticity", "score = max(token_purity, domain_purity); token_purity = 1 - H(p_tok)/ln k over the k top "
                           "contexts, p_tok = the activation-weighted distribution of their activating token ids (1 if "
                           "k = 1); domain_purity = 1 - H(domain_profile)/ln D, D = domains among the rows (null if "
                           "D <= 1); natural logs; 1 = one token or one domain");
}

static json_t *layer_json(const detail_state *s, double dense_thr)
{
    const features_catalog_acc *a = s->a;
    const features_catalog_input *in = s->in;
    const sae_model *m = in->sae;
    json_t *L = json_object();
    json_object_set_new(L, "hook", json_string(in->hook_name ? in->hook_name : ""));
    json_object_set_new(L, "layer", json_integer(in->layer));
    json_object_set_new(L, "architecture", json_string(sae_arch_name(m->cfg.arch)));
    json_object_set_new(L, "d_in", json_integer(s->d));
    json_object_set_new(L, "d_sae", json_integer(s->F));
    json_object_set_new(L, "input_scale", jnum(m->input_scale));
    json_object_set_new(L, "rows", json_integer(a->rows));
    json_object_set_new(L, "dense_threshold", jnum(dense_thr));
    json_t *doms = json_object();
    for (int k = 0; k < a->nd; k++) json_object_set_new(doms, domain_name(s, k), json_integer(a->dom_rows[k]));
    json_object_set_new(L, "domain_rows", doms);
    json_t *dead = json_array(), *dense = json_array();
    for (int64_t i = 0; i < s->F; i++) {
        if (a->fires[i] == 0) json_array_append_new(dead, json_integer(i));
        if (a->rows > 0 && (double)a->fires[i] / (double)a->rows > dense_thr)
            json_array_append_new(dense, json_integer(i));
    }
    json_object_set_new(L, "n_dead", json_integer((json_int_t)json_array_size(dead)));
    json_object_set_new(L, "dead_features", dead);
    json_object_set_new(L, "n_dense", json_integer((json_int_t)json_array_size(dense)));
    json_object_set_new(L, "dense_features", dense);
    int64_t live = s->F - (int64_t)json_array_size(dead);
    char sel[160];
    if (s->n_det == live) snprintf(sel, sizeof sel, "every live feature");
    else snprintf(sel, sizeof sel, "the %lld live features (of %lld) with the largest activation mass",
                  (long long)s->n_det, (long long)live);
    json_object_set_new(L, "detailed", json_pack("{s:I, s:s}", "count", (json_int_t)s->n_det, "selection", sel));
    json_t *la = json_pack("{s:b}", "computed", s->logits_ok);
    if (s->logits_ok) json_object_set_new(la, "fold_final_norm", json_boolean(a->o.fold_final_norm));
    else json_object_set_new(la, "reason", json_string(s->logits_reason));
    json_object_set_new(L, "logit_attribution", la);
    json_object_set_new(L, "options", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "top_k", (json_int_t)a->o.top_k, "context_before", (json_int_t)a->o.context_before,
        "context_after", (json_int_t)a->o.context_after, "n_quantiles", (json_int_t)a->o.n_quantiles,
        "reservoir", (json_int_t)a->o.reservoir, "n_logit_tokens", (json_int_t)a->o.n_logit_tokens,
        "n_read_tokens", (json_int_t)a->o.n_read_tokens, "max_detailed", (json_int_t)a->o.max_detailed,
        "seed", (json_int_t)a->o.seed));
    json_object_set_new(L, "definitions", definitions());
    return L;
}

/* Rank 0, after the merge: everything that needs the whole picture. */
static tp_status build_layer(features_catalog_acc *a, json_t **out)
{
    detail_state s;
    memset(&s, 0, sizeof s);
    s.a = a, s.in = a->in, s.F = a->F, s.d = a->d;
    s.be = backend_cpu();
    tp_status st = TP_OK;
    json_t *L = NULL;
    if (a->in->store_path) {
        TP_CHECK_GOTO(store_serial_open(a->in->store_path, &s.store), st, done);
        TP_CHECK_GOTO(store_serial_length(s.store, "tokens", &s.N), st, done);
        if (a->max_row >= s.N) {
            st = tp_err(TP_ERR_RANGE, "features catalog: store row %lld is outside %s's %lld rows",
                        (long long)a->max_row, a->in->store_path, (long long)s.N);
            goto done;
        }
    }
    int64_t nt = a->K > a->R ? a->K : a->R;
    if (a->o.n_logit_tokens > nt) nt = a->o.n_logit_tokens;
    if (a->o.n_read_tokens > nt) nt = a->o.n_read_tokens;
    s.tmp = tp_malloc((size_t)(nt + 1) * sizeof *s.tmp);
    if (!s.tmp) { st = TP_ERR_NOMEM; goto done; }
    TP_CHECK_GOTO(choose_detailed(&s), st, done);
    TP_CHECK_GOTO(logit_attribution(&s), st, done);
    TP_CHECK_GOTO(collect_contexts(&s), st, done);

    const double dense_thr = a->o.dense_threshold >= 0 ? a->o.dense_threshold : a->in->sae->cfg.dense_freq;
    L = layer_json(&s, dense_thr);
    json_t *feats = json_array();
    json_object_set_new(L, "features", feats);
    for (int64_t i = 0; i < s.F; i++) {
        const int64_t c = a->fires[i];
        json_t *f = json_pack("{s:I, s:I, s:o, s:o, s:o}", "id", (json_int_t)i, "fires", (json_int_t)c, "density",
                              json_real(a->rows > 0 ? (double)c / (double)a->rows : 0.0), "mean_activation",
                              c > 0 ? jnum(a->sum[i] / (double)c) : json_null(), "max_activation",
                              c > 0 ? jnum(a->mx[i]) : json_null());
        if (!f) { st = tp_err(TP_ERR_NOMEM, "features catalog: JSON"); goto done; }
        json_array_append_new(feats, f);
        if (s.det_pos[i] >= 0) TP_CHECK_GOTO(feature_detail(&s, i, f), st, done);
    }
done:
    detail_free(&s);
    if (st != TP_OK) {
        json_decref(L);
        return st;
    }
    *out = L;
    return TP_OK;
}

tp_status features_catalog_finish(features_catalog_acc *a, MPI_Comm comm, json_t **out_layer)
{
    *out_layer = NULL;
    /* MPI_COMM_SELF needs no MPI: one process, no communication (the unit tests run
     * without MPI_Init). */
    int inited = 0, rank = 0, size = 1;
    MPI_Initialized(&inited);
    if (inited) {
        MPI_CHECK(MPI_Comm_rank(comm, &rank));
        MPI_CHECK(MPI_Comm_size(comm, &size));
    } else if (comm != MPI_COMM_SELF) {
        return tp_err(TP_ERR_MPI, "features catalog: finish over a communicator before MPI_Init");
    }
    tp_status st = a->finished ? tp_err(TP_ERR_INTERNAL, "features catalog: finished twice") : a->status;
    a->finished = 1;
    if (size > 1) {
        st = dist_agree(comm, st, "features catalog");
        if (st == TP_OK) st = merge_sums(a, rank, comm);
        if (st == TP_OK) st = merge_heaps(a, rank, size, comm);
    }
    json_t *L = NULL;
    if (st == TP_OK && rank == 0) st = build_layer(a, &L);
    if (size > 1) st = dist_agree(comm, st, "features catalog");
    if (st != TP_OK) {
        json_decref(L);
        return st;
    }
    *out_layer = L;
    return TP_OK;
}

tp_status features_catalog_build(const features_catalog_input *in, const float *rows, const int64_t *store_rows,
                                 const int32_t *domains, int64_t n, json_t **out_layer)
{
    *out_layer = NULL;
    features_catalog_acc *a = NULL;
    TP_CHECK(features_catalog_begin(in, &a));
    tp_status st = features_catalog_add(a, rows, store_rows, domains, n);
    if (st == TP_OK) st = features_catalog_finish(a, MPI_COMM_SELF, out_layer);
    features_catalog_free(a);
    return st;
}

json_t *features_catalog_document(json_t *coverage, json_t *saes)
{
    if (!saes) {
        json_decref(coverage);
        return NULL;
    }
    return json_pack("{s:s, s:o, s:o}", "schema", FEATURES_CATALOG_SCHEMA, "coverage",
                     coverage ? coverage : json_null(), "saes", saes);
}

tp_status features_catalog_write(const char *path, const char *index_path, const json_t *doc)
{
    return features_file_write(path, index_path, doc);
}
