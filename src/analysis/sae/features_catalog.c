#include "analysis/sae/features_catalog.h"

#include "backend/backend.h"   /* be_gemm_f32 */
#include "core/dtype.h"
#include "io/store_results.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DOMAINS 64
#define CONTEXT_GAP 4096      /* needed rows closer than this are read in one span */
#define HL_OPEN "\xe2\x9f\xa6"   /* ⟦ U+27E6 */
#define HL_CLOSE "\xe2\x9f\xa7"  /* ⟧ U+27E7 */

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

/* ---- bounded heaps of (value, index) ------------------------------------------------
 * A min-heap of the `cap` best pairs: better = larger value, or the same value and a
 * smaller index. The root is the worst pair kept. */

static inline int pair_worse(float a1, int64_t i1, float a2, int64_t i2)
{
    return a1 < a2 || (a1 == a2 && i1 > i2);
}

static void heap_sift_down(float *a, int64_t *ix, int64_t n, int64_t p)
{
    for (;;) {
        int64_t l = 2 * p + 1, r = l + 1, w = p;
        if (l < n && pair_worse(a[l], ix[l], a[w], ix[w])) w = l;
        if (r < n && pair_worse(a[r], ix[r], a[w], ix[w])) w = r;
        if (w == p) return;
        float ta = a[p]; a[p] = a[w]; a[w] = ta;
        int64_t ti = ix[p]; ix[p] = ix[w]; ix[w] = ti;
        p = w;
    }
}

/* Offers (v, i) to the heap a/ix holding *n of at most cap pairs. */
static inline void heap_offer(float *a, int64_t *ix, int64_t *n, int64_t cap, float v, int64_t i)
{
    if (*n < cap) {
        int64_t c = (*n)++;
        a[c] = v, ix[c] = i;
        while (c > 0) {
            int64_t p = (c - 1) / 2;
            if (!pair_worse(a[c], ix[c], a[p], ix[p])) break;
            float ta = a[p]; a[p] = a[c]; a[c] = ta;
            int64_t ti = ix[p]; ix[p] = ix[c]; ix[c] = ti;
            c = p;
        }
    } else if (cap > 0 && pair_worse(a[0], ix[0], v, i)) {
        a[0] = v, ix[0] = i;
        heap_sift_down(a, ix, *n, 0);
    }
}

typedef struct { float a; int64_t i; } pair_t;

static int pair_cmp_desc(const void *x, const void *y)
{
    const pair_t *p = x, *q = y;
    if (p->a != q->a) return p->a > q->a ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

static int pair_cmp_asc(const void *x, const void *y)
{
    const pair_t *p = x, *q = y;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

/* Pairs of a heap, best first, into out. */
static int64_t heap_sorted(const float *a, const int64_t *ix, int64_t n, pair_t *out)
{
    for (int64_t j = 0; j < n; j++) out[j].a = a[j], out[j].i = ix[j];
    qsort(out, (size_t)n, sizeof *out, pair_cmp_desc);
    return n;
}

/* Random number of the c-th firing of feature f (counter-based: independent of how the
 * rows are blocked). splitmix64's finaliser. */
static inline uint64_t reservoir_hash(uint64_t seed, int64_t f, int64_t c)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ULL * (uint64_t)(f + 1) + 0xD1B54A32D192ED03ULL * (uint64_t)c;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ---- state --------------------------------------------------------------------------- */

typedef struct {
    const features_catalog_input *in;
    features_catalog_options o;
    int64_t F, d, n, N;        /* features, d_in, rows, store rows (0: no store) */
    /* domains */
    int nd;
    char *dom_name[MAX_DOMAINS];
    int64_t dom_rows[MAX_DOMAINS];
    uint8_t *row_dom;          /* [n] */
    /* scan */
    int64_t *fires;            /* [F] */
    double *sum;               /* [F] */
    float *mx;                 /* [F] */
    float *top_a, *top_thr;    /* [F·K], [F] */
    int64_t *top_r, *top_n;    /* [F·K] local rows, [F] */
    float *res_a;              /* [F·R] */
    int64_t *res_r;            /* [F·R] */
    double *mass;              /* [F·nd] */
    float *codes;              /* [B, F] */
    /* detail */
    int64_t n_det;
    int64_t *det;              /* [n_det] feature ids, increasing */
    int64_t *det_pos;          /* [F] position in det, −1 */
    int logits_ok;
    char logits_reason[160];
    int64_t mL, mR;            /* promoted/suppressed, read tokens per feature */
    float *pro_a, *sup_a, *read_a;      /* [n_det·mL], [n_det·mL], [n_det·mR] */
    int64_t *pro_t, *sup_t, *read_t;
    int64_t *pro_n, *sup_n, *read_n;    /* [n_det] */
    uint8_t *valid;            /* [V] token ids the tokenizer knows */
    /* contexts */
    int64_t nu;
    int64_t *u_row;            /* [nu] unique store rows, increasing */
    int32_t *u_tok;            /* [nu] */
    char **u_token, **u_ctx;   /* [nu] text (NULL without a tokenizer) */
    pair_t *tmp;               /* [max(K, R)] */
    store_serial *store;       /* the store, open once per build (NULL without one) */
    tp_backend *be;            /* the token-score products (backend_cpu(): host arrays) */
} cat_state;

static void state_free(cat_state *s)
{
    for (int i = 0; i < s->nd; i++) free(s->dom_name[i]);
    for (int64_t i = 0; i < s->nu; i++) {
        if (s->u_token) free(s->u_token[i]);
        if (s->u_ctx) free(s->u_ctx[i]);
    }
    free(s->u_token), free(s->u_ctx), free(s->u_row), free(s->u_tok);
    free(s->row_dom), free(s->fires), free(s->sum), free(s->mx), free(s->top_a), free(s->top_thr);
    free(s->top_r), free(s->top_n), free(s->res_a), free(s->res_r), free(s->mass), free(s->codes);
    free(s->det), free(s->det_pos);
    free(s->pro_a), free(s->sup_a), free(s->read_a), free(s->pro_t), free(s->sup_t), free(s->read_t);
    free(s->pro_n), free(s->sup_n), free(s->read_n), free(s->valid), free(s->tmp);
    store_serial_close(s->store);
}

static tp_status check_options(const features_catalog_input *in)
{
    const features_catalog_options *o = &in->opt;
    if (!in->sae || !in->sae->W_enc) return tp_err(TP_ERR_CONFIG, "features catalog: no SAE");
    if (in->n < 0 || (in->n > 0 && (!in->rows || !in->row_index)))
        return tp_err(TP_ERR_CONFIG, "features catalog: %lld rows without data", (long long)in->n);
    struct { const char *name; int64_t v, lo; } ints[] = {
        {"top_k", o->top_k, 0}, {"context_before", o->context_before, 0}, {"context_after", o->context_after, 0},
        {"n_quantiles", o->n_quantiles, 0}, {"reservoir", o->reservoir, 0}, {"n_logit_tokens", o->n_logit_tokens, 0},
        {"n_read_tokens", o->n_read_tokens, 0}, {"max_detailed", o->max_detailed, 0},
        {"block_rows", o->block_rows, 1}, {"feature_block", o->feature_block, 1}, {"vocab_block", o->vocab_block, 1},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (ints[i].v < ints[i].lo)
            return tp_err(TP_ERR_CONFIG, "features catalog: option %s = %lld must be >= %lld", ints[i].name,
                          (long long)ints[i].v, (long long)ints[i].lo);
    if (o->n_quantiles > 0 && o->reservoir < 1)
        return tp_err(TP_ERR_CONFIG, "features catalog: quantile samples need reservoir >= 1");
    if (!(o->dense_threshold <= 1))
        return tp_err(TP_ERR_CONFIG, "features catalog: dense_threshold %g is not a fraction", o->dense_threshold);
    return TP_OK;
}

/* ---- domains of the rows ---------------------------------------------------------------- */

static int domain_id(cat_state *s, const char *name)
{
    for (int k = 0; k < s->nd; k++)
        if (!strcmp(s->dom_name[k], name)) return k;
    if (s->nd == MAX_DOMAINS - 1 && strcmp(name, "(other)")) return domain_id(s, "(other)");
    char *c = strdup(name);
    if (!c) return -1;
    s->dom_name[s->nd] = c;
    return s->nd++;
}

static tp_status find_domains(cat_state *s)
{
    const features_catalog_input *in = s->in;
    TP_ALLOC(s->row_dom, s->n > 0 ? s->n : 1);
    if (!in->corpus || !in->store_path) {
        if (domain_id(s, "(unknown)") < 0) return tp_err(TP_ERR_NOMEM, "features catalog: domain names");
        s->dom_rows[0] = s->n;
        return TP_OK;
    }
    int64_t D = 0;
    TP_CHECK(store_serial_length(s->store, "doc_index", &D));
    int64_t *off = tp_malloc((size_t)(D + 1) * sizeof *off), *idx = tp_malloc((size_t)(D > 0 ? D : 1) * sizeof *idx);
    int *doc_dom = tp_malloc((size_t)(D > 0 ? D : 1) * sizeof *doc_dom);
    tp_status st = TP_OK;
    if (!off || !idx || !doc_dom) { st = TP_ERR_NOMEM; goto done; }
    TP_CHECK_GOTO(store_serial_read_i64(s->store, "doc_offsets", 0, D + 1, off), st, done);
    if (D > 0) TP_CHECK_GOTO(store_serial_read_i64(s->store, "doc_index", 0, D, idx), st, done);
    for (int64_t k = 0; k < D; k++) doc_dom[k] = -1;
    int unknown = -1;
    for (int64_t r = 0; r < s->n; r++) {
        int64_t row = in->row_index[r];
        /* Document: the last k with off[k] <= row. */
        int64_t lo = 0, hi = D;   /* answer in [lo, hi) */
        if (D == 0 || row < off[0] || row >= off[D]) lo = -1;
        else
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                if (off[mid] <= row) lo = mid;
                else hi = mid;
            }
        int dm;
        if (lo < 0) {
            if (unknown < 0) unknown = domain_id(s, "(unknown)");
            dm = unknown;
        } else {
            if (doc_dom[lo] < 0) {
                if (idx[lo] < 0 || (size_t)idx[lo] >= corpus_count(in->corpus)) {
                    st = tp_err(TP_ERR_RANGE,
                                "%s: /doc_index[%lld] = %lld is not a document of the corpus (%zu documents): "
                                "the store was made from another corpus",
                                in->store_path, (long long)lo, (long long)idx[lo], corpus_count(in->corpus));
                    goto done;
                }
                corpus_doc doc;
                TP_CHECK_GOTO(corpus_read(in->corpus, (size_t)idx[lo], &doc), st, done);
                doc_dom[lo] = domain_id(s, doc.domain[0] ? doc.domain : "(none)");
                corpus_doc_free(&doc);
            }
            dm = doc_dom[lo];
        }
        if (dm < 0) { st = tp_err(TP_ERR_NOMEM, "features catalog: domain names"); goto done; }
        s->row_dom[r] = (uint8_t)dm;
        s->dom_rows[dm]++;
    }
    if (s->nd == 0 && domain_id(s, "(unknown)") < 0) st = tp_err(TP_ERR_NOMEM, "features catalog: domain names");
done:
    free(off), free(idx), free(doc_dom);
    return st;
}

/* ---- the pass over the rows ------------------------------------------------------------- */

static tp_status scan_rows(cat_state *s)
{
    const features_catalog_input *in = s->in;
    const int64_t F = s->F, d = s->d, K = s->o.top_k, R = s->o.n_quantiles > 0 ? s->o.reservoir : 0, nd = s->nd;
    const int64_t B = s->o.block_rows < s->n ? s->o.block_rows : (s->n > 0 ? s->n : 1);
    TP_ALLOC(s->fires, F);
    TP_ALLOC(s->sum, F);
    TP_ALLOC(s->mx, F);
    TP_ALLOC(s->top_a, F * K + 1);
    TP_ALLOC(s->top_r, F * K + 1);
    TP_ALLOC(s->top_n, F);
    TP_ALLOC(s->top_thr, F);
    TP_ALLOC(s->res_a, F * R + 1);
    TP_ALLOC(s->res_r, F * R + 1);
    TP_ALLOC(s->mass, F * nd);
    TP_ALLOC(s->codes, B * F);
    /* top_thr: activations ≤ it cannot enter the heap. 0 while the heap has room (only
     * firing activations, > 0, are offered); the root's once full (an equal activation
     * comes from a later row, which loses the tie). K = 0: never. */
    for (int64_t i = 0; i < F; i++) s->top_thr[i] = K > 0 ? 0.0f : INFINITY;
    for (int64_t r0 = 0; r0 < s->n; r0 += B) {
        const int64_t nb = s->n - r0 < B ? s->n - r0 : B;
        TP_CHECK(sae_encode(in->sae, in->rows + (size_t)r0 * (size_t)d, nb, s->codes));
        for (int64_t b = 0; b < nb; b++) {
            const int64_t r = r0 + b;
            const float *restrict c = s->codes + (size_t)b * (size_t)F;
            double *restrict mass = s->mass + s->row_dom[r];
            for (int64_t i = 0; i < F; i++) {
                const float a = c[i];
                if (!(a > 0)) continue;
                const int64_t cnt = ++s->fires[i];
                s->sum[i] += a;
                if (a > s->mx[i]) s->mx[i] = a;
                mass[(size_t)i * (size_t)nd] += a;
                if (a > s->top_thr[i]) {
                    float *ha = s->top_a + (size_t)i * (size_t)K;
                    int64_t *hr = s->top_r + (size_t)i * (size_t)K;
                    heap_offer(ha, hr, &s->top_n[i], K, a, r);
                    if (s->top_n[i] == K) s->top_thr[i] = ha[0];
                }
                if (R > 0) {
                    int64_t slot = cnt - 1;
                    if (cnt > R) slot = (int64_t)(reservoir_hash(s->o.seed, i, cnt) % (uint64_t)cnt);
                    if (slot < R) {
                        s->res_a[(size_t)i * (size_t)R + (size_t)slot] = a;
                        s->res_r[(size_t)i * (size_t)R + (size_t)slot] = r;
                    }
                }
            }
        }
    }
    return TP_OK;
}

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

static tp_status choose_detailed(cat_state *s)
{
    int64_t live = 0;
    for (int64_t i = 0; i < s->F; i++) live += s->fires[i] > 0;
    mass_id *mi = tp_malloc((size_t)(live > 0 ? live : 1) * sizeof *mi);
    if (!mi) return TP_ERR_NOMEM;
    int64_t k = 0;
    for (int64_t i = 0; i < s->F; i++)
        if (s->fires[i] > 0) mi[k].m = s->sum[i], mi[k++].id = i;
    int64_t nd = live;
    if (s->o.max_detailed > 0 && live > s->o.max_detailed) {
        qsort(mi, (size_t)live, sizeof *mi, mass_id_cmp);
        nd = s->o.max_detailed;
    }
    s->det = tp_malloc((size_t)(nd > 0 ? nd : 1) * sizeof *s->det);
    s->det_pos = tp_malloc((size_t)s->F * sizeof *s->det_pos);
    if (!s->det || !s->det_pos) { free(mi); return TP_ERR_NOMEM; }
    for (int64_t j = 0; j < nd; j++) s->det[j] = mi[j].id;
    free(mi);
    qsort(s->det, (size_t)nd, sizeof *s->det, i64_cmp);
    s->n_det = nd;
    for (int64_t i = 0; i < s->F; i++) s->det_pos[i] = -1;
    for (int64_t j = 0; j < nd; j++) s->det_pos[s->det[j]] = j;
    return TP_OK;
}

/* ---- token scores: M · direction, blocked ------------------------------------------------
 * For the detailed features, dir_i = mult · src[i] ⊙ colscale (colscale NULL: 1),
 * score(t) = M[t] · dir_i over the token ids marked valid; keeps the m_top largest
 * (and, if bot_a, the m_top smallest, as the largest of −score). */
static tp_status token_scores(cat_state *s, const tp_mat *M, const float *src, float mult, const float *colscale,
                              int64_t m_top, float *top_a, int64_t *top_t, int64_t *top_n, float *bot_a,
                              int64_t *bot_t, int64_t *bot_n)
{
    const int64_t d = s->d, V = M->rows, nf = s->n_det;
    const int64_t Fb = s->o.feature_block < nf ? s->o.feature_block : (nf > 0 ? nf : 1);
    const int64_t Vb = s->o.vocab_block < V ? s->o.vocab_block : (V > 0 ? V : 1);
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
                float *ta = top_a + (size_t)q * (size_t)m_top;
                int64_t *tt = top_t + (size_t)q * (size_t)m_top;
                float *ba = bot_a ? bot_a + (size_t)q * (size_t)m_top : NULL;
                int64_t *bt = bot_a ? bot_t + (size_t)q * (size_t)m_top : NULL;
                for (int64_t v = 0; v < vb; v++) {
                    if (!s->valid[v0 + v]) continue;
                    const float x = srow[v];
                    heap_offer(ta, tt, &top_n[q], m_top, x, v0 + v);
                    if (ba) heap_offer(ba, bt, &bot_n[q], m_top, -x, v0 + v);
                }
            }
        }
    }
done:
    free(P), free(S), free(W);
    return st;
}

static tp_status logit_attribution(cat_state *s)
{
    const features_catalog_input *in = s->in;
    const tp_model *m = in->model;
    s->mL = s->o.n_logit_tokens, s->mR = s->o.n_read_tokens;
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
    TP_ALLOC(s->pro_a, nf * s->mL + 1);
    TP_ALLOC(s->pro_t, nf * s->mL + 1);
    TP_ALLOC(s->sup_a, nf * s->mL + 1);
    TP_ALLOC(s->sup_t, nf * s->mL + 1);
    TP_ALLOC(s->read_a, nf * s->mR + 1);
    TP_ALLOC(s->read_t, nf * s->mR + 1);
    TP_ALLOC(s->pro_n, nf + 1);
    TP_ALLOC(s->sup_n, nf + 1);
    TP_ALLOC(s->read_n, nf + 1);
    const double sc = in->sae->input_scale > 0 ? in->sae->input_scale : 1.0;
    const float *gamma = s->o.fold_final_norm ? m->final_norm : NULL;
    if (s->mL > 0)
        TP_CHECK(token_scores(s, &m->lm_head, in->sae->W_dec, (float)(1.0 / sc), gamma, s->mL, s->pro_a, s->pro_t,
                              s->pro_n, s->sup_a, s->sup_t, s->sup_n));
    if (s->mR > 0)
        TP_CHECK(token_scores(s, &m->embed, in->sae->W_enc, (float)sc, NULL, s->mR, s->read_a, s->read_t, s->read_n,
                              NULL, NULL, NULL));
    return TP_OK;
}

/* ---- contexts --------------------------------------------------------------------------- */

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

/* Quantile samples of detailed feature i into out (≤ n_quantiles pairs, ascending). */
static int64_t quantile_samples(cat_state *s, int64_t i, pair_t *out, double *levels)
{
    const int64_t R = s->o.reservoir, Q = s->o.n_quantiles;
    if (Q <= 0) return 0;
    int64_t r = s->fires[i] < R ? s->fires[i] : R;
    for (int64_t j = 0; j < r; j++)
        s->tmp[j].a = s->res_a[(size_t)i * (size_t)R + j], s->tmp[j].i = s->res_r[(size_t)i * (size_t)R + j];
    qsort(s->tmp, (size_t)r, sizeof *s->tmp, pair_cmp_asc);
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

static tp_status collect_contexts(cat_state *s)
{
    const features_catalog_input *in = s->in;
    if (!in->store_path || s->n_det == 0) return TP_OK;
    int64_t *rows = NULL, nr = 0, cap = 0;
    tp_status st = TP_OK;
    pair_t *q = tp_malloc((size_t)(s->o.n_quantiles + 1) * sizeof *q);
    double *lv = tp_malloc((size_t)(s->o.n_quantiles + 1) * sizeof *lv);
    if (!q || !lv) { st = TP_ERR_NOMEM; goto done; }
    for (int64_t j = 0; j < s->n_det && st == TP_OK; j++) {
        const int64_t i = s->det[j], K = s->o.top_k;
        for (int64_t t = 0; t < s->top_n[i] && st == TP_OK; t++)
            st = add_row(&rows, &nr, &cap, in->row_index[s->top_r[(size_t)i * (size_t)K + t]]);
        int64_t nq = quantile_samples(s, i, q, lv);
        for (int64_t t = 0; t < nq && st == TP_OK; t++) st = add_row(&rows, &nr, &cap, in->row_index[q[t].i]);
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
    const int64_t before = s->o.context_before, after = s->o.context_after;
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

static int64_t unique_of(const cat_state *s, int64_t row)
{
    int64_t lo = 0, hi = s->nu;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (s->u_row[mid] < row) lo = mid + 1;
        else hi = mid;
    }
    return lo < s->nu && s->u_row[lo] == row ? lo : -1;
}

/* ---- JSON --------------------------------------------------------------------------------- */

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* One context entry: row, activation, token and the highlighted context. */
static json_t *context_json(const cat_state *s, int64_t local, float a, int32_t *tok_out)
{
    const int64_t row = s->in->row_index[local];
    json_t *e = json_pack("{s:I, s:o}", "row", (json_int_t)row, "activation", jnum(a));
    int64_t u = unique_of(s, row);
    *tok_out = -1;
    if (u >= 0) {
        *tok_out = s->u_tok[u];
        json_object_set_new(e, "token_id", json_integer(s->u_tok[u]));
        if (s->u_token[u]) json_object_set_new(e, "token", json_string(s->u_token[u]));
        if (s->u_ctx[u]) json_object_set_new(e, "context", json_string(s->u_ctx[u]));
    }
    json_object_set_new(e, "domain", json_string(s->dom_name[s->row_dom[local]]));
    return e;
}

static json_t *token_list(const cat_state *s, const float *a, const int64_t *t, int64_t n, const char *key,
                          double sign)
{
    pair_t *p = s->tmp;
    json_t *arr = json_array();
    heap_sorted(a, t, n, p);
    for (int64_t k = 0; k < n; k++) {
        int32_t id = (int32_t)p[k].i;
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

static tp_status feature_detail(cat_state *s, int64_t i, json_t *f)
{
    const int64_t K = s->o.top_k, j = s->det_pos[i];
    json_object_set_new(f, "activation_mass", jnum(s->sum[i]));
    /* top contexts */
    pair_t *p = tp_malloc((size_t)(K + 1) * sizeof *p);
    int32_t *toks = tp_malloc((size_t)(K + 1) * sizeof *toks);
    int32_t *ut = tp_malloc((size_t)(K + 1) * sizeof *ut);
    double *w = tp_malloc((size_t)(K + s->nd + 1) * sizeof *w);
    if (!p || !toks || !ut || !w) { free(p), free(toks), free(ut), free(w); return TP_ERR_NOMEM; }
    int64_t nt = heap_sorted(s->top_a + (size_t)i * (size_t)K, s->top_r + (size_t)i * (size_t)K, s->top_n[i], p);
    json_t *tc = json_array();
    for (int64_t t = 0; t < nt; t++) json_array_append_new(tc, context_json(s, p[t].i, p[t].a, &toks[t]));
    json_object_set_new(f, "top_contexts", tc);
    /* quantile samples */
    if (s->o.n_quantiles > 0) {
        pair_t *q = tp_malloc((size_t)s->o.n_quantiles * sizeof *q);
        double *lv = tp_malloc((size_t)s->o.n_quantiles * sizeof *lv);
        if (!q || !lv) { free(q), free(lv), free(p), free(toks), free(ut), free(w); return TP_ERR_NOMEM; }
        int64_t nq = quantile_samples(s, i, q, lv);
        json_t *qs = json_array();
        for (int64_t t = 0; t < nq; t++) {
            int32_t dummy;
            json_t *e = context_json(s, q[t].i, q[t].a, &dummy);
            json_object_set_new(e, "quantile", json_real(lv[t]));
            json_array_append_new(qs, e);
        }
        json_object_set_new(f, "quantile_samples", qs);
        free(q), free(lv);
    }
    /* logit attribution */
    if (s->logits_ok) {
        if (s->mL > 0) {
            json_object_set_new(f, "promotes", token_list(s, s->pro_a + (size_t)j * (size_t)s->mL,
                                                           s->pro_t + (size_t)j * (size_t)s->mL, s->pro_n[j], "logit", 1));
            json_object_set_new(f, "suppresses", token_list(s, s->sup_a + (size_t)j * (size_t)s->mL,
                                                             s->sup_t + (size_t)j * (size_t)s->mL, s->sup_n[j], "logit", -1));
        }
        if (s->mR > 0)
            json_object_set_new(f, "reads", token_list(s, s->read_a + (size_t)j * (size_t)s->mR,
                                                        s->read_t + (size_t)j * (size_t)s->mR, s->read_n[j], "score", 1));
    }
    /* domain profile, largest fraction first */
    const double *mass = s->mass + (size_t)i * (size_t)s->nd;
    double tot = 0;
    for (int k = 0; k < s->nd; k++) tot += mass[k];
    json_t *dp = json_object();
    int used[MAX_DOMAINS] = {0};
    int top_dom = -1;
    for (int it = 0; it < s->nd; it++) {
        int b = -1;
        for (int k = 0; k < s->nd; k++)
            if (!used[k] && mass[k] > 0 && (b < 0 || mass[k] > mass[b])) b = k;
        if (b < 0) break;
        used[b] = 1;
        if (top_dom < 0) top_dom = b;
        json_object_set_new(dp, s->dom_name[b], json_real(mass[b] / tot));
    }
    json_object_set_new(f, "domain_profile", dp);
    json_object_set_new(f, "top_domain", top_dom >= 0 ? json_string(s->dom_name[top_dom]) : json_null());
    /* monosemanticity (header: definitions) */
    int64_t D = 0;
    for (int k = 0; k < s->nd; k++) D += s->dom_rows[k] > 0;
    for (int k = 0; k < s->nd; k++) w[k] = tot > 0 ? mass[k] / tot : 0;
    double dom_pur = D > 1 ? 1 - entropy(w, s->nd) / log((double)D) : NAN;
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
    free(p), free(toks), free(ut), free(w);
    return TP_OK;
}

static json_t *definitions(void)
{
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
        "activation", "the feature's code from sae_encode: in the SAE's scaled space, equal to the activation of the "
                      "SAELens export (results/sae_layer_<L>/) on the hook's raw activations",
        "density", "fires / rows: fraction of the evaluation rows where the activation is > 0",
        "mean_activation", "mean activation over the rows where the feature fires (null if it never does)",
        "activation_mass", "sum of the feature's activations over all rows",
        "dead_features", "features that fired on none of the evaluation rows",
        "dense_features", "features whose density is > dense_threshold",
        "top_contexts", "the top_k rows of largest activation (ties: the earlier row); context = up to context_before "
                        "tokens of the row's sequence, the activating token between \xe2\x9f\xa6 and \xe2\x9f\xa7, then "
                        "up to context_after tokens that follow it in the same sequence",
        "quantile_samples", "for levels q_j = (j + 1/2)/n_quantiles, the entry of ascending rank floor(q_j r) among a "
                            "uniform reservoir sample of r <= reservoir of the feature's firing rows (exact empirical "
                            "quantiles when the feature fired at most reservoir times); repeated ranks are dropped",
        "promotes", "logit(t) = W_U[t] . (gamma * w_i / s): direct effect on the logits of one unit of activation, "
                    "w_i = decoder row, s = input scale, gamma = the final norm's weight (1 if not folded); up to the "
                    "positive 1/rms of the final RMSNorm. The largest; suppresses: the smallest",
        "reads", "score(t) = W_E[t] . (s W_enc[i]): pre-activation the token's embedding alone would give (no biases)",
        "domain_profile", "activation mass per corpus domain / activation mass, largest first; top_domain: its first key",
        "monosemanticity", "score = max(token_purity, domain_purity); token_purity = 1 - H(p_tok)/ln k over the k top "
                           "contexts, p_tok = the activation-weighted distribution of their activating token ids (1 if "
                           "k = 1); domain_purity = 1 - H(domain_profile)/ln D, D = domains among the rows (null if "
                           "D <= 1); natural logs; 1 = one token or one domain");
}

static json_t *layer_json(cat_state *s, double dense_thr)
{
    const features_catalog_input *in = s->in;
    const sae_model *m = in->sae;
    json_t *L = json_object();
    json_object_set_new(L, "hook", json_string(in->hook_name ? in->hook_name : ""));
    json_object_set_new(L, "layer", json_integer(in->layer));
    json_object_set_new(L, "architecture", json_string(sae_arch_name(m->cfg.arch)));
    json_object_set_new(L, "d_in", json_integer(s->d));
    json_object_set_new(L, "d_sae", json_integer(s->F));
    json_object_set_new(L, "input_scale", jnum(m->input_scale));
    json_object_set_new(L, "rows", json_integer(s->n));
    json_object_set_new(L, "dense_threshold", jnum(dense_thr));
    json_t *doms = json_object();
    for (int k = 0; k < s->nd; k++) json_object_set_new(doms, s->dom_name[k], json_integer(s->dom_rows[k]));
    json_object_set_new(L, "domain_rows", doms);
    json_t *dead = json_array(), *dense = json_array();
    for (int64_t i = 0; i < s->F; i++) {
        if (s->fires[i] == 0) json_array_append_new(dead, json_integer(i));
        if (s->n > 0 && (double)s->fires[i] / (double)s->n > dense_thr) json_array_append_new(dense, json_integer(i));
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
    if (s->logits_ok) json_object_set_new(la, "fold_final_norm", json_boolean(s->o.fold_final_norm));
    else json_object_set_new(la, "reason", json_string(s->logits_reason));
    json_object_set_new(L, "logit_attribution", la);
    json_object_set_new(L, "options", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
        "top_k", (json_int_t)s->o.top_k, "context_before", (json_int_t)s->o.context_before,
        "context_after", (json_int_t)s->o.context_after, "n_quantiles", (json_int_t)s->o.n_quantiles,
        "reservoir", (json_int_t)s->o.reservoir, "n_logit_tokens", (json_int_t)s->o.n_logit_tokens,
        "n_read_tokens", (json_int_t)s->o.n_read_tokens, "max_detailed", (json_int_t)s->o.max_detailed,
        "seed", (json_int_t)s->o.seed));
    json_object_set_new(L, "definitions", definitions());
    return L;
}

tp_status features_catalog_build(const features_catalog_input *in, json_t **out_layer)
{
    *out_layer = NULL;
    TP_CHECK(check_options(in));
    cat_state s;
    memset(&s, 0, sizeof s);
    s.in = in;
    s.o = in->opt;
    s.be = backend_cpu();
    s.F = in->sae->cfg.d_sae, s.d = in->sae->cfg.d_in, s.n = in->n;
    tp_status st = TP_OK;
    json_t *L = NULL;
    if (in->store_path) {
        TP_CHECK_GOTO(store_serial_open(in->store_path, &s.store), st, done);
        TP_CHECK_GOTO(store_serial_length(s.store, "tokens", &s.N), st, done);
        for (int64_t r = 0; r < s.n; r++)
            if (in->row_index[r] < 0 || in->row_index[r] >= s.N) {
                st = tp_err(TP_ERR_RANGE, "features catalog: row %lld (store row %lld) is outside %s's %lld rows",
                            (long long)r, (long long)in->row_index[r], in->store_path, (long long)s.N);
                goto done;
            }
    }
    const int64_t R = s.o.n_quantiles > 0 ? s.o.reservoir : 0;
    s.tmp = tp_malloc((size_t)((s.o.top_k > R ? s.o.top_k : R) + s.o.n_logit_tokens + s.o.n_read_tokens + 1) *
                      sizeof *s.tmp);
    if (!s.tmp) { st = TP_ERR_NOMEM; goto done; }
    TP_CHECK_GOTO(find_domains(&s), st, done);
    TP_CHECK_GOTO(scan_rows(&s), st, done);
    TP_CHECK_GOTO(choose_detailed(&s), st, done);
    TP_CHECK_GOTO(logit_attribution(&s), st, done);
    TP_CHECK_GOTO(collect_contexts(&s), st, done);

    const double dense_thr = s.o.dense_threshold >= 0 ? s.o.dense_threshold : in->sae->cfg.dense_freq;
    L = layer_json(&s, dense_thr);
    json_t *feats = json_array();
    json_object_set_new(L, "features", feats);
    for (int64_t i = 0; i < s.F; i++) {
        const int64_t c = s.fires[i];
        json_t *f = json_pack("{s:I, s:I, s:o, s:o, s:o}", "id", (json_int_t)i, "fires", (json_int_t)c, "density",
                              json_real(s.n > 0 ? (double)c / (double)s.n : 0.0), "mean_activation",
                              c > 0 ? jnum(s.sum[i] / (double)c) : json_null(), "max_activation",
                              c > 0 ? jnum(s.mx[i]) : json_null());
        if (!f) { st = tp_err(TP_ERR_NOMEM, "features catalog: JSON"); goto done; }
        json_array_append_new(feats, f);
        if (s.det_pos[i] >= 0) TP_CHECK_GOTO(feature_detail(&s, i, f), st, done);
    }
done:
    state_free(&s);
    if (st != TP_OK) {
        json_decref(L);
        return st;
    }
    *out_layer = L;
    return TP_OK;
}

json_t *features_catalog_document(json_t *saes)
{
    if (!saes) return NULL;
    return json_pack("{s:s, s:o}", "schema", "transpolmo.features_catalog/1", "saes", saes);
}
