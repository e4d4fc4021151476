/* eap.c — EAP / EAP-IG edge and node scores, and exact node patching (eap.h). */
#include "analysis/circuits/eap.h"

#include "backend/backend.h"
#include "core/dtype.h"
#include "model/backward.h"
#include "model/forward.h"
#include "model/hooks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the graph ------------------------------------------------------------------------------ */

eap_graph eap_graph_of(const tp_model_config *c)
{
    int L = c->num_layers, H = c->num_heads;
    return (eap_graph){.L = L, .H = H, .n_up = 1 + L * (H + 1), .n_down = L * (H + 1) + 1};
}

void eap_up_node(const eap_graph *g, int u, int *layer, int *head)
{
    if (u == 0) { *layer = -1, *head = -1; return; }
    *layer = (u - 1) / (g->H + 1);
    int k = (u - 1) % (g->H + 1);
    *head = k < g->H ? k : -1;
}

void eap_down_node(const eap_graph *g, int v, int *layer, int *head)
{
    if (v == g->n_down - 1) { *layer = g->L, *head = -1; return; }
    *layer = v / (g->H + 1);
    int k = v % (g->H + 1);
    *head = k < g->H ? k : -1;
}

void eap_up_name(const eap_graph *g, int u, char *buf, size_t n)
{
    int l, h;
    eap_up_node(g, u, &l, &h);
    if (u == 0) snprintf(buf, n, "embed");
    else if (h >= 0) snprintf(buf, n, "a%d.h%d", l, h);
    else snprintf(buf, n, "m%d", l);
}

void eap_down_name(const eap_graph *g, int v, char *buf, size_t n)
{
    int l, h;
    eap_down_node(g, v, &l, &h);
    if (l == g->L) snprintf(buf, n, "logits");
    else if (h >= 0) snprintf(buf, n, "a%d.h%d", l, h);
    else snprintf(buf, n, "m%d", l);
}

int eap_edge_exists(const eap_graph *g, int u, int v)
{
    int lu, hu, lv, hv;
    eap_up_node(g, u, &lu, &hu);
    eap_down_node(g, v, &lv, &hv);
    if (u == 0 || lv > lu) return 1;
    return lv == lu && hu >= 0 && hv < 0;   /* a head of L into the MLP of L */
}

/* ---- the engine ------------------------------------------------------------------------------ */

struct eap_engine {
    const tp_model *m;
    eap_graph g;
    int max_T, T, d, qd, dh;
    tp_forward *f;
    tp_backward *b;
    float *Wo;                  /* [L][d][qd] o_proj, f32 */
    float *z, *o;               /* [L][T][qd], [L][T][d] of the current forward */
    float *emb, *mlp;           /* [T][d], [L][T][d] */
    float *dz, *dmid, *dpost;   /* gradients [L][T][qd], [L][T][d], [L][T][d] */
    float *dembed;              /* [T][d] */
    float *piece, *dx;          /* [T][d] scratch */
    float *dlogits;             /* [T][V] */
    /* node patching */
    const uint8_t *keep;
    const double *repl;
    /* EAP-IG */
    const double *emb_clean, *emb_corr;
    double alpha;
};

tp_status eap_engine_new(const tp_model *m, int max_T, eap_engine **out)
{
    const tp_model_config *c = &m->cfg;
    *out = NULL;
    eap_engine *e = tp_calloc(1, sizeof *e);
    if (!e) return TP_ERR_NOMEM;
    e->m = m, e->g = eap_graph_of(c), e->max_T = max_T;
    e->d = c->hidden_size, e->dh = c->head_dim, e->qd = c->num_heads * c->head_dim;
    size_t L = (size_t)c->num_layers, T = (size_t)max_T, d = (size_t)e->d, qd = (size_t)e->qd;
    tp_status st = forward_new(m, 1, max_T, &e->f);
    if (st == TP_OK) st = backward_new(m, 1, max_T, &e->b);
    struct { float **p; size_t n; } bufs[] = {
        {&e->Wo, L * d * qd}, {&e->z, L * T * qd}, {&e->o, L * T * d}, {&e->emb, T * d}, {&e->mlp, L * T * d},
        {&e->dz, L * T * qd}, {&e->dmid, L * T * d}, {&e->dpost, L * T * d}, {&e->dembed, T * d},
        {&e->piece, T * d}, {&e->dx, T * d}, {&e->dlogits, T * (size_t)c->vocab_size},
    };
    for (size_t i = 0; st == TP_OK && i < sizeof bufs / sizeof *bufs; i++)
        if (!(*bufs[i].p = tp_malloc(bufs[i].n * sizeof(float)))) st = TP_ERR_NOMEM;
    for (size_t l = 0; st == TP_OK && l < L; l++)
        tp_convert_to_f32(m->layers[l].o.dtype, m->layers[l].o.data, e->Wo + l * d * qd, d * qd);
    if (st != TP_OK) {
        eap_engine_free(e);
        return st;
    }
    *out = e;
    return TP_OK;
}

void eap_engine_free(eap_engine *e)
{
    if (!e) return;
    forward_free(e->f);
    backward_free(e->b);
    free(e->Wo), free(e->z), free(e->o), free(e->emb), free(e->mlp), free(e->dz), free(e->dmid), free(e->dpost);
    free(e->dembed), free(e->piece), free(e->dx), free(e->dlogits);
    free(e);
}

/* Head h's piece of layer l's hook_attn_out [T][d] into out, from z_l [T][qd] and, on
 * OLMo-2, o_l [T][d] (o_proj's output: post_attention_layernorm's scale, frozen). */
static tp_status head_piece(const eap_engine *e, int l, int h, const float *z_l, const float *o_l, float *out)
{
    const tp_model_config *c = &e->m->cfg;
    int T = e->T, d = e->d, qd = e->qd;
    const float *W = e->Wo + (size_t)l * d * qd + (size_t)h * e->dh;
    TP_CHECK(be_gemm_f32(backend_cpu(), TP_NO_TRANS, TP_TRANS, T, d, e->dh, 1.0f, z_l + (size_t)h * e->dh, qd, W, qd,
                         0.0f, out, d));
    if (c->arch != TP_ARCH_OLMO2) return TP_OK;
    const float *w1 = e->m->layers[l].norm1;
    for (int t = 0; t < T; t++) {
        const float *o = o_l + (size_t)t * d;
        double s = 0;
        for (int k = 0; k < d; k++) s += (double)o[k] * o[k];
        double inv = 1.0 / sqrt(s / d + c->rms_norm_eps);
        for (int k = 0; k < d; k++) out[(size_t)t * d + k] = (float)(w1[k] * inv * out[(size_t)t * d + k]);
    }
    return TP_OK;
}

/* ---- forward hooks: capture, patching, IG interpolation ---------------------------------------- */

static float *point_buffer(eap_engine *e, int l, tp_hook_point pt, size_t *n)
{
    size_t Td = (size_t)e->T * e->d, Tq = (size_t)e->T * e->qd;
    switch (pt) {
    case TP_HOOK_EMBED: *n = Td; return e->emb;
    case TP_HOOK_Z: *n = Tq; return e->z + (size_t)l * Tq;
    case TP_HOOK_ATTN_O: *n = Td; return e->o + (size_t)l * Td;
    case TP_HOOK_MLP_OUT: *n = Td; return e->mlp + (size_t)l * Td;
    default: *n = 0; return NULL;
    }
}

static tp_status on_capture(const tp_hook_info *info, float *data, void *user)
{
    eap_engine *e = user;
    size_t n;
    float *dst = point_buffer(e, info->layer, info->point, &n);
    if (!dst) return tp_err(TP_ERR_INTERNAL, "eap: unexpected capture point %s", info->name);
    memcpy(dst, data, n * sizeof *dst);
    return TP_OK;
}

static void replace_rows(float *data, const double *repl, size_t n)
{
    for (size_t i = 0; i < n; i++) data[i] = (float)repl[i];
}

/* hook_embed, hook_mlp_out: a node outside the kept set gets its replacement. */
static tp_status on_patch_whole(const tp_hook_info *info, float *data, void *user)
{
    eap_engine *e = user;
    size_t Td = (size_t)e->T * e->d;
    int u = info->point == TP_HOOK_EMBED ? 0 : 1 + info->layer * (e->g.H + 1) + e->g.H;
    if (!e->keep[u]) replace_rows(data, e->repl + (size_t)u * Td, Td);
    return on_capture(info, data, user);
}

/* hook_attn_out: += repl_h − a_h(current run) for every head outside the kept set. */
static tp_status on_patch_heads(const tp_hook_info *info, float *data, void *user)
{
    eap_engine *e = user;
    int l = info->layer;
    size_t Td = (size_t)e->T * e->d;
    for (int h = 0; h < e->g.H; h++) {
        int u = 1 + l * (e->g.H + 1) + h;
        if (e->keep[u]) continue;
        TP_CHECK(head_piece(e, l, h, e->z + (size_t)l * e->T * e->qd, e->o + (size_t)l * Td, e->piece));
        const double *r = e->repl + (size_t)u * Td;
        for (size_t i = 0; i < Td; i++) data[i] += (float)(r[i] - (double)e->piece[i]);
    }
    return TP_OK;
}

/* hook_embed on an EAP-IG step: corr + alpha (clean − corr). */
static tp_status on_interpolate(const tp_hook_info *info, float *data, void *user)
{
    (void)info;
    eap_engine *e = user;
    size_t Td = (size_t)e->T * e->d;
    for (size_t i = 0; i < Td; i++)
        data[i] = (float)(e->emb_corr[i] + e->alpha * (e->emb_clean[i] - e->emb_corr[i]));
    return TP_OK;
}

/* Hooks of a forward: capture (patching when e->keep is set). */
static tp_status forward_hooks(eap_engine *e, tp_hooks **out)
{
    int L = e->g.L, patch = e->keep != NULL;
    tp_hooks *h = NULL;
    TP_CHECK(hooks_new(L, &h));
    tp_status st = patch ? hooks_add(h, -1, TP_HOOK_EMBED, on_patch_whole, e)
                         : hooks_add_reader(h, -1, TP_HOOK_EMBED, on_capture, e);
    for (int l = 0; st == TP_OK && l < L; l++) {
        st = hooks_add_reader(h, l, TP_HOOK_Z, on_capture, e);
        if (st == TP_OK) st = hooks_add_reader(h, l, TP_HOOK_ATTN_O, on_capture, e);
        if (st == TP_OK && patch) st = hooks_add(h, l, TP_HOOK_ATTN_OUT, on_patch_heads, e);
        if (st == TP_OK)
            st = patch ? hooks_add(h, l, TP_HOOK_MLP_OUT, on_patch_whole, e)
                       : hooks_add_reader(h, l, TP_HOOK_MLP_OUT, on_capture, e);
    }
    if (st != TP_OK) hooks_free(h), h = NULL;
    *out = h;
    return st;
}

static tp_status check_T(const eap_engine *e, int T)
{
    if (T < 1 || T > e->max_T) return tp_err(TP_ERR_RANGE, "eap: %d tokens (the engine holds 1..%d)", T, e->max_T);
    return TP_OK;
}

static double metric_of(const float *logits, int32_t target, int32_t distractor)
{
    return (double)logits[target] - (distractor >= 0 ? (double)logits[distractor] : 0.0);
}

/* One forward of ids with the hooks of forward_hooks; *metric from the last logits. */
static tp_status run_forward(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                             double *metric)
{
    TP_CHECK(check_T(e, T));
    e->T = T;
    tp_hooks *h = NULL;
    const float *logits = NULL;
    TP_CHECK(forward_hooks(e, &h));
    tp_status st = forward_run(e->f, ids, 1, T, h, TP_LOGITS_LAST, -1, &logits);
    if (st == TP_OK) *metric = metric_of(logits, target, distractor);
    hooks_free(h);
    return st;
}

tp_status eap_node_outputs(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                           double *acts, double *metric)
{
    e->keep = NULL;
    TP_CHECK(run_forward(e, ids, T, target, distractor, metric));
    size_t Td = (size_t)T * e->d;
    for (size_t i = 0; i < Td; i++) acts[i] = e->emb[i];
    for (int l = 0; l < e->g.L; l++) {
        for (int h = 0; h <= e->g.H; h++) {
            double *a = acts + (size_t)(1 + l * (e->g.H + 1) + h) * Td;
            const float *src = e->mlp + (size_t)l * Td;
            if (h < e->g.H) {
                TP_CHECK(head_piece(e, l, h, e->z + (size_t)l * T * e->qd, e->o + (size_t)l * Td, e->piece));
                src = e->piece;
            }
            for (size_t i = 0; i < Td; i++) a[i] = src[i];
        }
    }
    return TP_OK;
}

tp_status eap_patch_metric(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                           const uint8_t *keep, const double *repl, double *metric)
{
    e->keep = keep, e->repl = repl;
    tp_status st = run_forward(e, ids, T, target, distractor, metric);
    e->keep = NULL, e->repl = NULL;
    return st;
}

/* ---- gradients ------------------------------------------------------------------------------------ */

static tp_status on_grad(const tp_hook_info *info, float *data, void *user)
{
    eap_engine *e = user;
    size_t Td = (size_t)e->T * e->d, Tq = (size_t)e->T * e->qd;
    int l = info->layer;
    switch (info->point) {
    case TP_HOOK_EMBED: memcpy(e->dembed, data, Td * sizeof *data); break;
    case TP_HOOK_Z: memcpy(e->dz + (size_t)l * Tq, data, Tq * sizeof *data); break;
    case TP_HOOK_RESID_MID: memcpy(e->dmid + (size_t)l * Td, data, Td * sizeof *data); break;
    case TP_HOOK_RESID_POST: memcpy(e->dpost + (size_t)l * Td, data, Td * sizeof *data); break;
    default: return tp_err(TP_ERR_INTERNAL, "eap: unexpected gradient point %s", info->name);
    }
    return TP_OK;
}

static tp_status grad_hooks(eap_engine *e, tp_hooks **out)
{
    tp_hooks *h = NULL;
    TP_CHECK(hooks_new(e->g.L, &h));
    tp_status st = hooks_add_reader(h, -1, TP_HOOK_EMBED, on_grad, e);
    const tp_hook_point pts[] = {TP_HOOK_Z, TP_HOOK_RESID_MID, TP_HOOK_RESID_POST};
    for (int l = 0; l < e->g.L; l++)
        for (size_t p = 0; st == TP_OK && p < sizeof pts / sizeof *pts; p++) st = hooks_add_reader(h, l, pts[p], on_grad, e);
    if (st != TP_OK) hooks_free(h), h = NULL;
    *out = h;
    return st;
}

/* One backward on ids (interpolated embeddings when e->emb_clean is set): adds
 * w · g_v to G [n_down][T d] and w · ∂m/∂a_u to Gn [1 + 2L][T d] (hook_embed, then
 * resid_mid and resid_post of each layer). */
static tp_status grad_step(eap_engine *e, const eap_pair *p, double w, double *G, double *Gn)
{
    int T = p->T, V = e->m->cfg.vocab_size, L = e->g.L;
    size_t Td = (size_t)T * e->d;
    tp_hooks *fh = NULL, *gh = NULL;
    const float *logits = NULL;
    tp_status st = TP_OK;
    if (e->emb_clean) {
        st = hooks_new(L, &fh);
        if (st == TP_OK) st = hooks_add(fh, -1, TP_HOOK_EMBED, on_interpolate, e);
    }
    if (st == TP_OK) st = grad_hooks(e, &gh);
    if (st == TP_OK) st = backward_forward(e->b, p->corrupt, &T, 1, fh, &logits);
    if (st == TP_OK) {   /* d m / d logits: +1 at the target, −1 at the distractor, last row */
        memset(e->dlogits, 0, (size_t)T * V * sizeof(float));
        e->dlogits[(size_t)(T - 1) * V + p->target] = 1.0f;
        if (p->distractor >= 0) e->dlogits[(size_t)(T - 1) * V + p->distractor] = -1.0f;
        st = backward_run(e->b, e->dlogits, gh);
    }
    hooks_free(fh), hooks_free(gh);
    TP_CHECK(st);
    for (size_t i = 0; i < Td; i++) Gn[i] += w * e->dembed[i];
    for (int l = 0; l < L; l++) {
        const float *mid = e->dmid + (size_t)l * Td, *post = e->dpost + (size_t)l * Td;
        double *gm = G + (size_t)(l * (e->g.H + 1) + e->g.H) * Td;
        for (size_t i = 0; i < Td; i++) {
            gm[i] += w * ((double)mid[i] - post[i]);
            Gn[(size_t)(1 + 2 * l) * Td + i] += w * mid[i];
            Gn[(size_t)(2 + 2 * l) * Td + i] += w * post[i];
        }
        for (int h = 0; h < e->g.H; h++) {
            TP_CHECK(backward_attention_head_input_grad(e->b, l, h, e->dz + (size_t)l * T * e->qd, e->dx));
            double *gh_ = G + (size_t)(l * (e->g.H + 1) + h) * Td;
            for (size_t i = 0; i < Td; i++) gh_[i] += w * e->dx[i];
        }
    }
    double *gl = G + (size_t)(e->g.n_down - 1) * Td;
    const float *last = e->dpost + (size_t)(L - 1) * Td;
    for (size_t i = 0; i < Td; i++) gl[i] += w * last[i];
    return TP_OK;
}

/* Which row of Gn is ∂m/∂a_u: hook_embed, resid_mid(l) for heads, resid_post(l) for m<l>. */
static int node_grad_row(const eap_graph *g, int u)
{
    int l, h;
    eap_up_node(g, u, &l, &h);
    return u == 0 ? 0 : h >= 0 ? 1 + 2 * l : 2 + 2 * l;
}

/* edge = Δ Gᵀ over the existing edges, node = Δ_u · Gn_row(u). */
static tp_status contract(const eap_graph *g, size_t Td, const double *D, const double *G, const double *Gn,
                          eap_scores *s)
{
    TP_CHECK(be_gemm_f64(backend_cpu(), TP_NO_TRANS, TP_TRANS, g->n_up, g->n_down, (int64_t)Td, 1.0, D, (int64_t)Td,
                         G, (int64_t)Td, 0.0, s->edge, g->n_down));
    for (int u = 0; u < g->n_up; u++) {
        for (int v = 0; v < g->n_down; v++)
            if (!eap_edge_exists(g, u, v)) s->edge[(size_t)u * g->n_down + v] = 0.0;
        const double *a = D + (size_t)u * Td, *b = Gn + (size_t)node_grad_row(g, u) * Td;
        double sum = 0;
        for (size_t i = 0; i < Td; i++) sum += a[i] * b[i];
        s->node[u] = sum;
    }
    return TP_OK;
}

tp_status eap_score_ext(eap_engine *e, const eap_pair *p, eap_extend_fn fn, void *user, eap_scores *s)
{
    const eap_graph *g = &e->g;
    memset(s, 0, sizeof *s);
    s->g = *g;
    TP_CHECK(check_T(e, p->T));
    size_t Td = (size_t)p->T * e->d;
    double *A = tp_malloc((size_t)g->n_up * Td * sizeof *A), *D = tp_malloc((size_t)g->n_up * Td * sizeof *D);
    double *G = tp_calloc((size_t)g->n_down * Td, sizeof *G), *Gn = tp_calloc((size_t)(1 + 2 * g->L) * Td, sizeof *Gn);
    double *emb_corr = p->ig_steps > 0 ? tp_malloc(Td * sizeof *emb_corr) : NULL;
    s->edge = tp_malloc((size_t)g->n_up * g->n_down * sizeof *s->edge);
    s->node = tp_malloc((size_t)g->n_up * sizeof *s->node);
    tp_status st = A && D && G && Gn && s->edge && s->node && (emb_corr || p->ig_steps <= 0) ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = eap_node_outputs(e, p->clean, p->T, p->target, p->distractor, A, &s->ld_clean);
    if (st == TP_OK) st = eap_node_outputs(e, p->corrupt, p->T, p->target, p->distractor, D, &s->ld_corr);
    for (size_t i = 0; st == TP_OK && i < (size_t)g->n_up * Td; i++) D[i] = A[i] - D[i];   /* Δa = clean − corr */
    int steps = p->ig_steps > 0 ? p->ig_steps : 1;
    if (st == TP_OK && p->ig_steps > 0) {   /* the embeddings: clean = A[0], corr = A[0] − D[0] */
        for (size_t i = 0; i < Td; i++) emb_corr[i] = A[i] - D[i];
        e->emb_clean = A, e->emb_corr = emb_corr;
    }
    for (int k = 1; st == TP_OK && k <= steps; k++) {
        e->alpha = (double)k / steps;
        st = grad_step(e, p, 1.0 / steps, G, Gn);
    }
    e->emb_clean = e->emb_corr = NULL;
    if (st == TP_OK) st = contract(g, Td, D, G, Gn, s);
    if (st == TP_OK && fn) {
        eap_state es = {.g = g, .T = p->T, .d = e->d, .ig_steps = p->ig_steps, .A = A, .D = D, .G = G, .Gn = Gn};
        st = fn(&es, user);
    }
    free(A), free(D), free(G), free(Gn), free(emb_corr);
    if (st != TP_OK) eap_scores_free(s);
    return st;
}

tp_status eap_score(eap_engine *e, const eap_pair *p, eap_scores *s) { return eap_score_ext(e, p, NULL, NULL, s); }

tp_status eap_score_against_ext(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                                const double *corr, double ld_corr, eap_extend_fn fn, void *user, eap_scores *s)
{
    const eap_graph *g = &e->g;
    memset(s, 0, sizeof *s);
    s->g = *g, s->ld_corr = ld_corr;
    TP_CHECK(check_T(e, T));
    size_t Td = (size_t)T * e->d, n = (size_t)g->n_up * Td;
    double *A = tp_malloc(n * sizeof *A), *D = tp_malloc(n * sizeof *D);
    double *G = tp_calloc((size_t)g->n_down * Td, sizeof *G), *Gn = tp_calloc((size_t)(1 + 2 * g->L) * Td, sizeof *Gn);
    s->edge = tp_malloc((size_t)g->n_up * g->n_down * sizeof *s->edge);
    s->node = tp_malloc((size_t)g->n_up * sizeof *s->node);
    tp_status st = A && D && G && Gn && s->edge && s->node ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = eap_node_outputs(e, ids, T, target, distractor, A, &s->ld_clean);
    for (size_t i = 0; st == TP_OK && i < n; i++) D[i] = A[i] - corr[i];   /* Δa = clean − corr */
    eap_pair p = {.clean = ids, .corrupt = ids, .T = T, .target = target, .distractor = distractor};
    if (st == TP_OK) st = grad_step(e, &p, 1.0, G, Gn);   /* the gradient forward runs p.corrupt: ids */
    if (st == TP_OK) st = contract(g, Td, D, G, Gn, s);
    if (st == TP_OK && fn) {
        eap_state es = {.g = g, .T = T, .d = e->d, .ig_steps = 0, .grad_on_clean = 1, .A = A, .D = D, .G = G, .Gn = Gn};
        st = fn(&es, user);
    }
    free(A), free(D), free(G), free(Gn);
    if (st != TP_OK) eap_scores_free(s);
    return st;
}

tp_status eap_score_against(eap_engine *e, const int32_t *ids, int T, int32_t target, int32_t distractor,
                            const double *corr, double ld_corr, eap_scores *s)
{
    return eap_score_against_ext(e, ids, T, target, distractor, corr, ld_corr, NULL, NULL, s);
}

void eap_scores_free(eap_scores *s)
{
    free(s->edge), free(s->node);
    s->edge = s->node = NULL;
}
