/* eap_features.c — SAE features as nodes of the EAP graph (eap_features.h). */
#include "analysis/circuits/eap_features.h"

#include "backend/backend.h"
#include "core/fsutil.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the run's SAEs --------------------------------------------------------------------------- */

tp_status eap_sae_set_open(const char *run_dir, const tp_model_config *c, eap_sae_set *out)
{
    memset(out, 0, sizeof *out);
    const tp_hook_point pts[] = {TP_HOOK_RESID_PRE, TP_HOOK_RESID_MID, TP_HOOK_RESID_POST};
    tp_status st = TP_OK;
    for (int l = 0; st == TP_OK && l < c->num_layers; l++)
        for (size_t k = 0; st == TP_OK && k < sizeof pts / sizeof *pts; k++) {
            char hook[96], dir[TP_PATH_MAX], cfg[TP_PATH_MAX];
            hooks_point_name(l, pts[k], hook, sizeof hook);
            st = run_sae_dir(dir, sizeof dir, run_dir, hook);
            if (st == TP_OK) st = fs_join(cfg, sizeof cfg, dir, "cfg.json");
            if (st != TP_OK || !fs_exists(cfg)) continue;
            eap_sae *grown = realloc(out->s, (size_t)(out->n + 1) * sizeof *grown);
            if (!grown) { st = TP_ERR_NOMEM; break; }
            out->s = grown;
            eap_sae *s = &out->s[out->n];
            memset(s, 0, sizeof *s);
            st = saelens_load(dir, &s->sae);
            if (st != TP_OK) { saelens_free(&s->sae); break; }
            out->n++;
            snprintf(s->hook, sizeof s->hook, "%s", hook);
            const char *rel = dir + strlen(run_dir);
            while (*rel == '/') rel++;
            snprintf(s->dir, sizeof s->dir, "%s", rel);
            s->layer = l, s->pt = pts[k];
            if (s->sae.d_in != c->hidden_size)
                st = tp_err(TP_ERR_FORMAT, "%s: the SAE reads %lld values per row, %s has %d", dir,
                            (long long)s->sae.d_in, hook, c->hidden_size);
        }
    if (st != TP_OK) eap_sae_set_free(out);
    return st;
}

void eap_sae_set_free(eap_sae_set *s)
{
    for (int i = 0; i < s->n; i++) saelens_free(&s->s[i].sae);
    free(s->s);
    memset(s, 0, sizeof *s);
}

/* ---- where a point sits in the graph ------------------------------------------------------------ */

/* Whether upstream u writes into the stream at P. */
static int up_of_point(const eap_graph *g, const eap_sae *s, int u)
{
    int l, h;
    eap_up_node(g, u, &l, &h);
    if (u == 0 || l < s->layer) return 1;
    if (l > s->layer) return 0;
    return s->pt == TP_HOOK_RESID_POST || (s->pt == TP_HOOK_RESID_MID && h >= 0);
}

/* Whether downstream v reads the stream at P (after it). */
static int down_of_point(const eap_graph *g, const eap_sae *s, int v)
{
    int l, h;
    eap_down_node(g, v, &l, &h);
    if (l > s->layer) return 1;
    if (l < s->layer) return 0;
    return s->pt == TP_HOOK_RESID_PRE || (s->pt == TP_HOOK_RESID_MID && h < 0);
}

/* The row of eap_state.Gn that is ∂m/∂x_P. */
static int grad_row(const eap_sae *s)
{
    switch (s->pt) {
    case TP_HOOK_RESID_PRE: return s->layer == 0 ? 0 : 2 + 2 * (s->layer - 1);
    case TP_HOOK_RESID_MID: return 1 + 2 * s->layer;
    default: return 2 + 2 * s->layer;
    }
}

/* ---- the scores ---------------------------------------------------------------------------------- */

static void layout(eap_feat_scores *s)
{
    size_t o = 0;
    for (int i = 0; i < s->n; i++) {
        eap_feat_point *p = &s->p[i];
        size_t k = (size_t)p->nsel;
        p->node = o, o += (size_t)p->F;
        p->total = o, o += 1;
        p->in = o, o += (size_t)s->g.n_up * k;
        p->out = o, o += k * (size_t)s->g.n_down;
        p->act_clean = o, o += k;
        p->act_corr = o, o += k;
    }
    s->size = o;
}

static tp_status realloc_block(eap_feat_scores *s)
{
    layout(s);
    free(s->block);
    s->block = tp_calloc(s->size ? s->size : 1, sizeof *s->block);
    return s->block ? TP_OK : TP_ERR_NOMEM;
}

tp_status eap_feat_scores_new(const eap_sae_set *saes, const eap_graph *g, int top, eap_feat_scores *out)
{
    memset(out, 0, sizeof *out);
    out->saes = saes, out->g = *g, out->n = saes->n;
    out->p = tp_calloc((size_t)(saes->n ? saes->n : 1), sizeof *out->p);
    if (!out->p) return TP_ERR_NOMEM;
    for (int i = 0; i < saes->n; i++) {
        eap_feat_point *p = &out->p[i];
        p->F = saes->s[i].sae.d_sae;
        p->nsel = top < 0 ? 0 : (int)(top < p->F ? top : p->F);
        p->sel = tp_calloc((size_t)(p->nsel ? p->nsel : 1), sizeof *p->sel);
        if (!p->sel) { eap_feat_scores_free(out); return TP_ERR_NOMEM; }
    }
    tp_status st = realloc_block(out);
    if (st != TP_OK) eap_feat_scores_free(out);
    return st;
}

void eap_feat_scores_free(eap_feat_scores *s)
{
    for (int i = 0; s->p && i < s->n; i++) free(s->p[i].sel);
    free(s->p), free(s->block);
    memset(s, 0, sizeof *s);
}

int eap_feat_top(const eap_feat_scores *s, int pi, int n, int64_t *sel)
{
    const eap_feat_point *p = &s->p[pi];
    const double *node = s->block + p->node;
    int k = 0;
    if (n > p->F) n = (int)p->F;
    for (int64_t f = 0; f < p->F; f++) {   /* a sorted insert into the top n */
        double a = fabs(node[f]);
        if (k == n && !(a > fabs(node[sel[k - 1]]))) continue;
        int j = k < n ? k++ : n - 1;
        while (j > 0 && fabs(node[sel[j - 1]]) < a) sel[j] = sel[j - 1], j--;
        sel[j] = f;
    }
    return k;
}

void eap_feat_top_all(const eap_feat_scores *s, int top, int64_t *sel, int *cnt)
{
    for (int p = 0; p < s->n; p++) cnt[p] = eap_feat_top(s, p, top, sel + (size_t)p * top);
}

tp_status eap_feat_select_all(eap_feat_scores *s, const int64_t *sel, const int *cnt, int top)
{
    for (int p = 0; p < s->n; p++) {
        int k = sel ? cnt[p] : 0;
        int64_t *grown = realloc(s->p[p].sel, (size_t)(k ? k : 1) * sizeof *grown);
        if (!grown) return TP_ERR_NOMEM;
        s->p[p].sel = grown;
        if (k) memcpy(grown, sel + (size_t)p * top, (size_t)k * sizeof *grown);
        s->p[p].nsel = k;
    }
    return realloc_block(s);
}

void eap_feat_add(eap_feat_scores *dst, const double *src)
{
    for (size_t i = 0; i < dst->size; i++) dst->block[i] += src[i];
}

/* act_f [T][F] of rows x [T][d] (SAELens' rule), and when mask is set += w·1[active]. */
static tp_status encode(const saelens_sae *sae, const float *x, int T, float *recon, float *codes, double w,
                        double *mask)
{
    TP_CHECK(saelens_reconstruct(sae, x, T, recon, codes));
    if (mask)
        for (size_t i = 0; i < (size_t)T * sae->d_sae; i++) mask[i] += codes[i] != 0.0f ? w : 0.0;
    return TP_OK;
}

/* One point: the stream on both runs, Δact, the activity mask, then the scores. */
static tp_status point_scores(const eap_state *st, const eap_sae *es, eap_feat_scores *fs, int pi, eap_feat_mode mode)
{
    const eap_graph *g = st->g;
    const saelens_sae *sae = &es->sae;
    int T = st->T, d = st->d;
    int64_t F = sae->d_sae;
    size_t Td = (size_t)T * d, TF = (size_t)T * F;
    tp_backend *be = backend_cpu();
    float *xc = tp_calloc(Td, sizeof *xc), *xr = tp_calloc(Td, sizeof *xr), *xs = tp_malloc(Td * sizeof *xs);
    float *rec = tp_malloc(Td * sizeof *rec), *cc = tp_malloc(TF * sizeof *cc), *cr = tp_malloc(TF * sizeof *cr);
    float *cs = tp_malloc(TF * sizeof *cs);
    double *mask = tp_calloc(TF, sizeof *mask), *dx = tp_calloc(Td, sizeof *dx), *gdec = tp_malloc(TF * sizeof *gdec);
    double *Wdec = tp_malloc((size_t)F * d * sizeof *Wdec);
    tp_status rc = xc && xr && xs && rec && cc && cr && cs && mask && dx && gdec && Wdec ? TP_OK : TP_ERR_NOMEM;
    double *xcd = rc == TP_OK ? tp_calloc(Td, sizeof *xcd) : NULL;
    if (rc == TP_OK && !xcd) rc = TP_ERR_NOMEM;
    /* x_P on both runs, summed in f64 over the upstream outputs */
    for (int u = 0; rc == TP_OK && u < g->n_up; u++) {
        if (!up_of_point(g, es, u)) continue;
        const double *a = st->A + (size_t)u * Td, *D = st->D + (size_t)u * Td;
        for (size_t i = 0; i < Td; i++) xcd[i] += a[i], dx[i] += D[i];
    }
    for (size_t i = 0; rc == TP_OK && i < Td; i++) xc[i] = (float)xcd[i], xr[i] = (float)(xcd[i] - dx[i]);
    if (rc == TP_OK) rc = encode(sae, xc, T, rec, cc, st->grad_on_clean ? 1.0 : 0.0, st->grad_on_clean ? mask : NULL);
    if (rc == TP_OK) rc = encode(sae, xr, T, rec, cr, 0, NULL);
    if (rc == TP_OK && !st->grad_on_clean) {
        int M = st->ig_steps > 0 ? st->ig_steps : 1;
        for (int k = 1; rc == TP_OK && k <= M; k++) {   /* EAP: k = M is the corrupted run itself */
            double a = st->ig_steps > 0 ? (double)k / M : 0.0;
            for (size_t i = 0; i < Td; i++) xs[i] = (float)(xcd[i] - dx[i] + a * dx[i]);
            rc = encode(sae, xs, T, rec, cs, 1.0 / M, mask);
        }
    }
    for (int64_t f = 0; rc == TP_OK && f < F; f++)
        for (int k = 0; k < d; k++) Wdec[(size_t)f * d + k] = sae->W_dec[(size_t)f * d + k];
    eap_feat_point *p = &fs->p[pi];
    double *B = fs->block;
    /* node(f) = Σ_t Δact_f(t) (d_f · g_P(t)): gdec = g_P Wdecᵀ [T][F] */
    const double *gP = st->Gn + (size_t)grad_row(es) * Td;
    if (rc == TP_OK)
        rc = be_gemm_f64(be, TP_NO_TRANS, TP_TRANS, T, F, d, 1.0, gP, d, Wdec, d, 0.0, gdec, F);
    if (rc == TP_OK) {
        double total = 0;
        for (size_t i = 0; i < Td; i++) total += gP[i] * dx[i];
        B[p->total] = total;
        for (int64_t f = 0; f < F; f++) {
            double sum = 0;
            for (int t = 0; t < T; t++)
                sum += ((double)cc[(size_t)t * F + f] - cr[(size_t)t * F + f]) * gdec[(size_t)t * F + f];
            B[p->node + f] = sum;
        }
    }
    if (rc == TP_OK && mode == EAP_FEAT_TOP) eap_feat_top(fs, pi, p->nsel, p->sel);   /* the slots exist: nsel = min(top, F) */
    int ns = p->nsel;
    for (int i = 0; rc == TP_OK && i < ns; i++) {
        int64_t f = p->sel[i];
        double ac = 0, ar = 0;
        for (int t = 0; t < T; t++) ac += cc[(size_t)t * F + f], ar += cr[(size_t)t * F + f];
        B[p->act_clean + i] = ac, B[p->act_corr + i] = ar;
        const double *dvec = Wdec + (size_t)f * d;
        /* f -> v */
        for (int v = 0; v < g->n_down; v++) {
            if (!down_of_point(g, es, v)) continue;
            const double *G = st->G + (size_t)v * Td;
            double sum = 0;
            for (int t = 0; t < T; t++) {
                double da = (double)cc[(size_t)t * F + f] - cr[(size_t)t * F + f];
                if (da == 0) continue;
                double dot = 0;
                for (int k = 0; k < d; k++) dot += dvec[k] * G[(size_t)t * d + k];
                sum += da * dot;
            }
            B[p->out + (size_t)i * g->n_down + v] = sum;
        }
        /* u -> f: Σ_t (d_f · g_P(t)) mask_f(t) (W_enc[:, f] · Δa_u(t)); SAELens' W_enc is [d, F] */
        for (int u = 0; u < g->n_up; u++) {
            if (!up_of_point(g, es, u)) continue;
            const double *D = st->D + (size_t)u * Td;
            double sum = 0;
            for (int t = 0; t < T; t++) {
                double mk = mask[(size_t)t * F + f] * gdec[(size_t)t * F + f];
                if (mk == 0) continue;
                double dot = 0;
                for (int k = 0; k < d; k++) dot += (double)sae->W_enc[(size_t)k * F + f] * D[(size_t)t * d + k];
                sum += mk * dot;
            }
            B[p->in + (size_t)u * ns + i] = sum;
        }
    }
    free(xc), free(xr), free(xs), free(rec), free(cc), free(cr), free(cs), free(mask), free(dx), free(gdec), free(Wdec), free(xcd);
    return rc;
}

tp_status eap_features_extend(const eap_state *st, void *user)
{
    eap_feat_request *rq = user;
    eap_feat_scores *fs = rq->out;
    memset(fs->block, 0, fs->size * sizeof *fs->block);
    for (int i = 0; i < fs->n; i++) {
        if (rq->mode == EAP_FEAT_NODES_ONLY && fs->p[i].nsel)
            return tp_err(TP_ERR_INTERNAL, "eap features: node scores only, but point %d has a selection", i);
        TP_CHECK(point_scores(st, &fs->saes->s[i], fs, i, rq->mode));
    }
    return TP_OK;
}

/* ---- names and JSON --------------------------------------------------------------------------------- */

void eap_feat_name(const eap_feat_scores *s, int p, int i, char *buf, size_t n)
{
    const eap_sae *es = &s->saes->s[p];
    snprintf(buf, n, "f%d.%s.%lld", es->layer, es->hook, (long long)s->p[p].sel[i]);
}

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

typedef struct {
    double val;
    size_t ord;
    json_t *item;
} ranked;

static int by_abs_desc(const void *a, const void *b)
{
    const ranked *p = a, *q = b;
    double x = fabs(p->val), y = fabs(q->val);
    if (x != y) return x < y ? 1 : -1;
    return p->ord < q->ord ? -1 : p->ord > q->ord;
}

/* Appends items to arr by |val| descending, ties in the order made. */
static void append_ranked(json_t *arr, ranked *r, size_t n)
{
    qsort(r, n, sizeof *r, by_abs_desc);
    for (size_t i = 0; i < n; i++) json_array_append_new(arr, r[i].item);
}

static ranked edge_item(const char *src, const char *dst, double w, double denom, size_t ord)
{
    return (ranked){w, ord, json_pack("{s:s, s:s, s:o, s:o}", "source", src, "target", dst, "score", num(w),
                                      "normalized", num(denom != 0 ? w / denom : NAN))};
}

json_t *eap_feat_json(const eap_feat_scores *s, double scale, double denom)
{
    const eap_graph *g = &s->g;
    json_t *saes = json_array(), *nodes = json_array(), *edges = json_array();
    size_t cap = 1;
    for (int pi = 0; pi < s->n; pi++) cap += (size_t)s->p[pi].nsel * (size_t)(g->n_up + g->n_down + 1);
    ranked *rn = tp_malloc(cap * sizeof *rn), *re = tp_malloc(cap * sizeof *re);
    size_t nn = 0, ne = 0;
    for (int pi = 0; rn && re && pi < s->n; pi++) {
        const eap_sae *es = &s->saes->s[pi];
        const eap_feat_point *p = &s->p[pi];
        const double *B = s->block;
        double sum = 0;
        for (int64_t f = 0; f < p->F; f++) sum += B[p->node + f];
        json_array_append_new(saes, json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:o, s:i}", "hook", es->hook, "dir",
            es->dir, "architecture", es->sae.architecture, "d_sae", (json_int_t)p->F, "layer", (json_int_t)es->layer,
            "point_total", num(B[p->total] / scale), "features_total", num(sum / scale), "features_kept", p->nsel));
        for (int i = 0; i < p->nsel; i++) {
            char name[192], other[32];
            eap_feat_name(s, pi, i, name, sizeof name);
            double x = B[p->node + p->sel[i]] / scale;
            rn[nn] = (ranked){x, nn, json_pack("{s:s, s:s, s:I, s:o, s:o, s:o, s:o}", "node", name, "hook", es->hook,
                "feature", (json_int_t)p->sel[i], "score", num(x), "normalized", num(denom != 0 ? x / denom : NAN),
                "act_clean", num(B[p->act_clean + i] / scale), "act_corr", num(B[p->act_corr + i] / scale))};
            nn++;
            for (int u = 0; u < g->n_up; u++) {
                if (!up_of_point(g, es, u)) continue;
                eap_up_name(g, u, other, sizeof other);
                re[ne] = edge_item(other, name, B[p->in + (size_t)u * p->nsel + i] / scale, denom, ne);
                ne++;
            }
            for (int v = 0; v < g->n_down; v++) {
                if (!down_of_point(g, es, v)) continue;
                eap_down_name(g, v, other, sizeof other);
                re[ne] = edge_item(name, other, B[p->out + (size_t)i * g->n_down + v] / scale, denom, ne);
                ne++;
            }
        }
    }
    if (rn && re) append_ranked(nodes, rn, nn), append_ranked(edges, re, ne);
    free(rn), free(re);
    return json_pack("{s:o, s:o, s:o}", "saes", saes, "nodes", nodes, "edges", edges);
}
