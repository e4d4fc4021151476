/* test_backward.c — the backward pass (model/backward.h) and the metrics
 * (model/metrics.h).
 *
 * Golden gradients: tools/reference/make_golden_grad.py (torch autograd through HF
 * transformers, float32, eager attention) on seven models — the four test models
 * (OLMo-2 MHA F32, OLMo-2 GQA BF16, OLMo-2 GQA F16 sharded, Llama GQA tied), the bundled
 * olmo2-tiny and two random configs with odd sizes (OLMo-2 d 30, 3:1 GQA, dh 10; Llama
 * d 36, 3:1 GQA, dh 6) — on a varlen batch of two sequences of different lengths, for
 * three metrics (logit difference, log-prob, mean loss). Every point the golden lists is
 * compared with max|c − ref| / max|ref| <= 1e-4: both sides are f32 and differ by
 * summation order; the reference itself is within 2.5e-6 of float64 autograd on the same
 * weights (its MANIFEST), while a wrong term (a norm weight left out, a residual branch
 * dropped, a head mapped to the wrong kv head) moves a gradient by 1e-2 or more. Metric
 * values agree to 1e-5 of max(|ref|, 1) (f64 from f32 logits that agree to ~1e-6).
 *
 * Directional finite differences, independent of any golden: the metric along a
 * direction u at a point, (m(x + εu) − m(x − εu)) / 2ε, by a forward hook that adds
 * ±εu, against <∇m, u> from a gradient hook (see check_direction for ε and the
 * tolerance). Also: the tape forward's logits are forward_run_varlen's bit for bit,
 * gradient hooks cannot change any gradient, a second backward on one tape gives the
 * same bits, an editing pattern hook's pattern is what the backward uses, and the
 * metrics' d/dlogits against f64 central differences.
 */
#include "tp_test.h"

#include "io/npy.h"
#include "model/backward.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/metrics.h"
#include "model/model.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL_TOL 1e-4
#define VALUE_TOL 1e-5

typedef struct {
    const char *name;    /* tests/data/golden/grad/<name> */
    const char *model;   /* under tests/data, or NULL: $TP_SOURCE_DIR/models/<name> */
} golden_model;

static const golden_model gmodels[] = {
    {"olmo2-mha-f32", "models/olmo2-mha-f32"},
    {"olmo2-gqa-bf16", "models/olmo2-gqa-bf16"},
    {"olmo2-gqa-f16-sharded", "models/olmo2-gqa-f16-sharded"},
    {"llama-gqa-tied", "models/llama-gqa-tied"},
    {"olmo2-tiny", NULL},
    {"olmo2-odd", "golden/grad/olmo2-odd/model"},
    {"llama-odd", "golden/grad/llama-odd/model"},
};
#define NGMODELS (sizeof gmodels / sizeof *gmodels)

static tp_model *open_golden_model(const golden_model *g)
{
    char path[4096];
    if (g->model) {
        snprintf(path, sizeof path, "%s", tp_test_data(g->model));
    } else {
        const char *src = getenv("TP_SOURCE_DIR");
        ck_assert_msg(src != NULL, "TP_SOURCE_DIR is not set");
        snprintf(path, sizeof path, "%s/models/%s", src, g->name);
    }
    tp_model *m = NULL;
    ck_assert_msg(model_open(path, TP_CONVERT_PER_MATRIX, &m) == TP_OK, "%s: %s", path, tp_err_msg());
    return m;
}

/* An int32 .npy under golden/grad/<model>/ into a fresh array of *n ints. */
static int32_t *read_i32(const char *model, const char *file, int64_t *n)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/grad/%s/%s", model, file);
    npy_array a;
    ck_assert_msg(npy_read(tp_test_data(rel), &a) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(a.dtype, TP_DTYPE_I32);
    int32_t *out = malloc((size_t)a.numel * sizeof *out);
    memcpy(out, a.data, (size_t)a.numel * sizeof *out);
    *n = a.numel;
    npy_free(&a);
    return out;
}

static json_t *read_json(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/grad/%s/metrics.json", model);
    json_error_t e;
    json_t *j = json_load_file(tp_test_data(rel), 0, &e);
    ck_assert_msg(j != NULL, "%s: %s", rel, e.text);
    return j;
}

/* A batch: the golden's ids and lens, or made up by a test. */
typedef struct {
    int32_t *ids;
    int lens[2];
    int nseq;
    int64_t rows;
} batch;

static batch golden_batch(const char *model)
{
    batch b = {0};
    int64_t n, nl;
    b.ids = read_i32(model, "input_ids.npy", &n);
    int32_t *lens = read_i32(model, "lens.npy", &nl);
    ck_assert_int_eq(nl, 2);
    b.nseq = 2, b.lens[0] = lens[0], b.lens[1] = lens[1], b.rows = n;
    ck_assert_int_eq(lens[0] + lens[1], n);
    free(lens);
    return b;
}

/* ---- metrics --------------------------------------------------------------------- */

typedef enum { M_LOGIT_DIFF = 0, M_LOGPROB, M_MEAN_LOSS, M_COUNT } metric_kind;
static const char *const metric_names[M_COUNT] = {"logit_diff", "logprob", "mean_loss"};

typedef struct {
    metric_kind kind;
    int32_t target[2], distractor[2], token[2];
    int pos[2];
    int has_pos;
} metric;

static metric metric_from_json(metric_kind k, json_t *mj)
{
    metric m = {.kind = k};
    for (int b = 0; b < 2; b++) {
        if (k == M_LOGIT_DIFF) {
            m.target[b] = (int32_t)json_integer_value(json_array_get(json_object_get(mj, "target"), (size_t)b));
            m.distractor[b] = (int32_t)json_integer_value(json_array_get(json_object_get(mj, "distractor"), (size_t)b));
        }
        if (k == M_LOGPROB) {
            m.token[b] = (int32_t)json_integer_value(json_array_get(json_object_get(mj, "token"), (size_t)b));
            m.pos[b] = (int)json_integer_value(json_array_get(json_object_get(mj, "pos"), (size_t)b));
            m.has_pos = 1;
        }
    }
    return m;
}

static tp_status metric_eval(const metric *m, const batch *b, const float *logits, int V, double *value,
                             float *dlogits)
{
    switch (m->kind) {
    case M_LOGIT_DIFF:
        return metric_logit_diff(logits, V, b->lens, b->nseq, m->has_pos ? m->pos : NULL, m->target, m->distractor,
                                 value, dlogits);
    case M_LOGPROB:
        return metric_logprob(logits, V, b->lens, b->nseq, m->has_pos ? m->pos : NULL, m->token, value, dlogits);
    default:
        return metric_mean_loss(logits, V, b->lens, b->nseq, b->ids, value, dlogits);
    }
}

/* ---- gradient capture --------------------------------------------------------------- */

/* One point's gradient; the pattern keeps one buffer per sequence. */
typedef struct {
    int layer;
    tp_hook_point pt;
    float *data[2];
    size_t n[2];
    int seen;
} gcap;

static tp_status grab(const tp_hook_info *info, float *data, void *user)
{
    gcap *c = user;
    int s = info->point == TP_HOOK_PATTERN ? info->seq : 0;
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    free(c->data[s]);
    c->data[s] = malloc(n * sizeof(float));
    memcpy(c->data[s], data, n * sizeof(float));
    c->n[s] = n;
    c->seen++;
    return TP_OK;
}

static void gcap_clear(gcap *c)
{
    free(c->data[0]), free(c->data[1]);
    memset(c, 0, sizeof *c);
}

static size_t gsize(const tp_model_config *c, tp_hook_point pt, int64_t rows)
{
    int64_t shape[4];
    int nd = hooks_point_shape(c, pt, 1, (int)rows, shape);
    size_t n = 1;
    for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
    return n;
}

/* ---- golden parity ----------------------------------------------------------------- */

static void compare_golden(const char *model, const char *metric_name, const char *point, int seq,
                           const float *got, size_t n)
{
    char rel[512];
    if (seq >= 0) snprintf(rel, sizeof rel, "golden/grad/%s/%s/%s.seq%d.npy", model, metric_name, point, seq);
    else snprintf(rel, sizeof rel, "golden/grad/%s/%s/%s.npy", model, metric_name, point);
    npy_array ref;
    ck_assert_msg(npy_read_f32(tp_test_data(rel), &ref) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg((size_t)ref.numel == n, "%s: %zu values, golden has %lld", rel, n, (long long)ref.numel);
    double e = tp_test_rel_err(got, ref.data, n);
    ck_assert_msg(e <= REL_TOL, "%s: relative error %.3g > %.0e", rel, e, REL_TOL);
    npy_free(&ref);
}

static void check_golden(const golden_model *g)
{
    tp_model *m = open_golden_model(g);
    const tp_model_config *c = &m->cfg;
    batch bt = golden_batch(g->name);
    json_t *j = read_json(g->name);
    json_t *metrics = json_object_get(j, "metrics");
    tp_backward *b;
    int max_len = bt.lens[0] > bt.lens[1] ? bt.lens[0] : bt.lens[1];
    ck_assert_msg(backward_new(m, 2, max_len, &b) == TP_OK, "%s", tp_err_msg());
    const float *logits;
    ck_assert_msg(backward_forward(b, bt.ids, bt.lens, 2, NULL, &logits) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(backward_rows(b), bt.rows);
    float *dl = malloc((size_t)bt.rows * c->vocab_size * sizeof *dl);
    for (int k = 0; k < M_COUNT; k++) {
        json_t *mj = json_object_get(metrics, metric_names[k]);
        ck_assert_ptr_nonnull(mj);
        metric me = metric_from_json((metric_kind)k, mj);
        double v, ref = json_real_value(json_object_get(mj, "value"));
        ck_assert_msg(metric_eval(&me, &bt, logits, c->vocab_size, &v, dl) == TP_OK, "%s", tp_err_msg());
        ck_assert_msg(fabs(v - ref) <= VALUE_TOL * fmax(fabs(ref), 1.0), "%s %s: value %.9g, golden %.9g", g->name,
                      metric_names[k], v, ref);

        json_t *pts = json_object_get(mj, "points");
        size_t np = json_array_size(pts);
        ck_assert_uint_gt(np, 0);
        gcap *caps = calloc(np, sizeof *caps);
        tp_hooks *gh;
        ck_assert(hooks_new(c->num_layers, &gh) == TP_OK);
        for (size_t i = 0; i < np; i++) {
            const char *pn = json_string_value(json_array_get(pts, i));
            ck_assert_msg(hooks_parse_name(c, pn, &caps[i].layer, &caps[i].pt) == TP_OK, "%s", tp_err_msg());
            ck_assert(hooks_add_reader(gh, caps[i].layer, caps[i].pt, grab, &caps[i]) == TP_OK);
        }
        ck_assert_msg(backward_run(b, dl, gh) == TP_OK, "%s", tp_err_msg());
        for (size_t i = 0; i < np; i++) {
            const char *pn = json_string_value(json_array_get(pts, i));
            if (caps[i].pt == TP_HOOK_PATTERN) {
                ck_assert_int_eq(caps[i].seen, 2);
                for (int s = 0; s < 2; s++) compare_golden(g->name, metric_names[k], pn, s, caps[i].data[s], caps[i].n[s]);
            } else {
                ck_assert_int_eq(caps[i].seen, 1);
                ck_assert_uint_eq(caps[i].n[0], gsize(c, caps[i].pt, bt.rows));
                compare_golden(g->name, metric_names[k], pn, -1, caps[i].data[0], caps[i].n[0]);
            }
            gcap_clear(&caps[i]);
        }
        hooks_free(gh);
        free(caps);
    }
    free(dl);
    json_decref(j);
    free(bt.ids);
    backward_free(b);
    model_close(m);
}

START_TEST(test_golden)
{
    check_golden(&gmodels[_i]);
}
END_TEST

/* ---- a batch of the tests' own -------------------------------------------------------- */

/* Two sequences of 11 and 6 tokens (11 > 8: two of the attention kernel's row blocks),
 * ids from a fixed LCG. */
static batch own_batch(int vocab)
{
    batch b = {.nseq = 2, .lens = {11, 6}, .rows = 17};
    b.ids = malloc(17 * sizeof *b.ids);
    uint32_t x = 12345;
    for (int i = 0; i < 17; i++) {
        x = x * 1664525u + 1013904223u;
        b.ids[i] = (int32_t)((x >> 8) % (uint32_t)vocab);
    }
    return b;
}

static metric own_metric(metric_kind k, const batch *b, int vocab)
{
    metric m = {.kind = k};
    for (int s = 0; s < b->nseq; s++) {
        m.target[s] = (int32_t)((7 + 13 * s) % vocab), m.distractor[s] = (int32_t)((3 + 5 * s) % vocab);
        m.pos[s] = b->lens[s] - 3;
        m.token[s] = b->ids[(s ? b->lens[0] : 0) + m.pos[s] + 1];
    }
    m.has_pos = k == M_LOGPROB;
    return m;
}

/* ---- directional finite differences ---------------------------------------------------- */

/* A forward callback adding eps * u to its point (the pattern: sequence info->seq's
 * block of u). */
typedef struct {
    const float *u;
    double eps;
    const int *lens;
    int H;
} shift;

static tp_status add_shift(const tp_hook_info *info, float *data, void *user)
{
    const shift *s = user;
    size_t n = 1, off = 0;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    if (info->point == TP_HOOK_PATTERN)
        for (int b = 0; b < info->seq; b++) off += (size_t)s->H * (size_t)s->lens[b] * (size_t)s->lens[b];
    for (size_t i = 0; i < n; i++) data[i] += (float)(s->eps * s->u[off + i]);
    return TP_OK;
}

/* A pattern edit for the edited-pattern test: halves every entry. */
static tp_status halve(const tp_hook_info *info, float *data, void *user)
{
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    for (size_t i = 0; i < n; i++) data[i] *= 0.5f;
    (void)user;
    return TP_OK;
}

/* The point's values (forward) or gradient (backward), all sequences in one array. */
typedef struct {
    float *v;
    const int *lens;
    int H;
} flat;

static tp_status grab_flat(const tp_hook_info *info, float *data, void *user)
{
    flat *f = user;
    size_t n = 1, off = 0;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    if (info->point == TP_HOOK_PATTERN)
        for (int b = 0; b < info->seq; b++) off += (size_t)f->H * (size_t)f->lens[b] * (size_t)f->lens[b];
    memcpy(f->v + off, data, n * sizeof(float));
    return TP_OK;
}

/* Elements of a point over the batch (the pattern: Σ H n_b²). */
static size_t point_elems(const tp_model_config *c, tp_hook_point pt, const batch *b)
{
    if (pt != TP_HOOK_PATTERN) return gsize(c, pt, b->rows);
    size_t n = 0;
    for (int s = 0; s < b->nseq; s++) n += (size_t)c->num_heads * (size_t)b->lens[s] * (size_t)b->lens[s];
    return n;
}

static double metric_at(tp_backward *bw, const batch *bt, const metric *me, int V, const tp_hooks *fh, float *dl)
{
    const float *logits;
    ck_assert_msg(backward_forward(bw, bt->ids, bt->lens, bt->nseq, fh, &logits) == TP_OK, "%s", tp_err_msg());
    double v;
    ck_assert_msg(metric_eval(me, bt, logits, V, &v, dl) == TP_OK, "%s", tp_err_msg());
    return v;
}

/* The derivative of the metric along u at (layer, pt) by central differences against
 * <gradient, u>. u is half a random direction and half the gradient's, scaled to the
 * point's own norm, so ε is a relative step and <g, u> is no near-cancellation. On
 * the pattern only causal entries move (the forward's PV reads some masked entries of
 * an edited pattern, autograd all of them; they agree on the causal ones).
 * ε = 1e-3 balances the two errors of the difference: the metric comes from an f32
 * forward, whose noise (~1e-7 of the logits) is ~1e-4 of ε·<g, u> here (a smaller ε
 * does no better: 2.2e-4 worst at 3e-4), and the truncation error grows as ε² (1.8e-3
 * worst at ε = 3e-3, 2.2e-4 at 1e-3, over the 63 checks below). Tolerance 2e-3
 * relative, ~10x the worst seen; a gradient off by a factor or a term is off by far
 * more. TP_TEST_VERBOSE=1 prints each check. With halve0, a forward hook halves layer 0's pattern in every run (the
 * backward must then use the edited pattern, not recompute it). */
static void check_direction(tp_backward *bw, const tp_model *m, const batch *bt, const metric *me, int layer,
                            tp_hook_point pt, int halve0, const char *what)
{
    const tp_model_config *c = &m->cfg;
    int V = c->vocab_size;
    size_t n = point_elems(c, pt, bt);
    float *g = calloc(n, sizeof *g), *x = calloc(n, sizeof *x), *u = calloc(n, sizeof *u);
    float *dl = malloc((size_t)bt->rows * V * sizeof *dl);
    flat fx = {x, bt->lens, c->num_heads}, fg = {g, bt->lens, c->num_heads};

    tp_hooks *fh, *gh;
    ck_assert(hooks_new(c->num_layers, &fh) == TP_OK);
    ck_assert(hooks_new(c->num_layers, &gh) == TP_OK);
    if (halve0) ck_assert(hooks_add(fh, 0, TP_HOOK_PATTERN, halve, NULL) == TP_OK);
    ck_assert(hooks_add_reader(fh, layer, pt, grab_flat, &fx) == TP_OK);
    ck_assert(hooks_add_reader(gh, layer, pt, grab_flat, &fg) == TP_OK);
    (void)metric_at(bw, bt, me, V, fh, dl);
    ck_assert_msg(backward_run(bw, dl, gh) == TP_OK, "%s", tp_err_msg());

    /* u: a random direction on the entries that may move, plus the gradient's there */
    uint32_t r = 777;
    for (size_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        u[i] = (float)((double)(r >> 8) / (double)(1u << 24) - 0.5);
    }
    float *gm = malloc(n * sizeof *gm);
    memcpy(gm, g, n * sizeof *gm);
    if (pt == TP_HOOK_PATTERN) {
        size_t off = 0;
        for (int s = 0; s < bt->nseq; s++) {
            int T = bt->lens[s];
            for (int h = 0; h < c->num_heads; h++)
                for (int i = 0; i < T; i++)
                    for (int j = i + 1; j < T; j++) u[off + ((size_t)h * T + i) * T + j] = gm[off + ((size_t)h * T + i) * T + j] = 0;
            off += (size_t)c->num_heads * T * T;
        }
    }
    double nx = 0, ng = 0, nr = 0, an = 0;
    for (size_t i = 0; i < n; i++) nx += (double)x[i] * x[i], ng += (double)gm[i] * gm[i], nr += (double)u[i] * u[i];
    ck_assert_msg(ng > 0 && nx > 0, "%s: zero gradient or activation", what);
    for (size_t i = 0; i < n; i++) {
        u[i] = (float)((u[i] / sqrt(nr) + gm[i] / sqrt(ng)) * sqrt(nx) / 2);
        an += (double)g[i] * u[i];
    }

    const double eps = 1e-3;
    double mv[2];
    for (int k = 0; k < 2; k++) {
        shift sh = {u, k ? -eps : eps, bt->lens, c->num_heads};
        tp_hooks *ph;
        ck_assert(hooks_new(c->num_layers, &ph) == TP_OK);
        if (halve0) ck_assert(hooks_add(ph, 0, TP_HOOK_PATTERN, halve, NULL) == TP_OK);
        ck_assert(hooks_add(ph, layer, pt, add_shift, &sh) == TP_OK);
        mv[k] = metric_at(bw, bt, me, V, ph, NULL);
        hooks_free(ph);
    }
    double fd = (mv[0] - mv[1]) / (2 * eps), rel = fabs(fd - an) / fabs(an);
    if (getenv("TP_TEST_VERBOSE")) fprintf(stderr, "%s: fd %.9g grad %.9g rel %.2g\n", what, fd, an, rel);
    ck_assert_msg(rel <= 2e-3, "%s: finite difference %.9g, gradient %.9g (relative %.2g)", what, fd, an, rel);
    hooks_free(fh), hooks_free(gh);
    free(g), free(gm), free(x), free(u), free(dl);
}

/* Points checked by finite differences, each with one of the three metrics in turn. */
static const struct {
    int layer;            /* -2: the last layer */
    tp_hook_point pt;
} fd_points[] = {
    {-1, TP_HOOK_EMBED}, {0, TP_HOOK_Q}, {0, TP_HOOK_K}, {0, TP_HOOK_V}, {1, TP_HOOK_ROT_Q}, {0, TP_HOOK_ROT_K},
    {0, TP_HOOK_PATTERN}, {1, TP_HOOK_PATTERN}, {1, TP_HOOK_Z}, {0, TP_HOOK_ATTN_O}, {0, TP_HOOK_ATTN_OUT},
    {1, TP_HOOK_RESID_MID}, {0, TP_HOOK_MLP_PRE}, {1, TP_HOOK_MLP_PRE_LINEAR}, {0, TP_HOOK_MLP_POST},
    {1, TP_HOOK_MLP_O}, {0, TP_HOOK_MLP_OUT}, {-2, TP_HOOK_RESID_POST}, {-1, TP_HOOK_LN_FINAL},
};

/* OLMo-2 MHA, Llama GQA tied, OLMo-2 odd sizes (3:1 GQA, dh 10). */
static const int fd_models[] = {0, 3, 5};

START_TEST(test_finite_differences)
{
    const golden_model *gm = &gmodels[fd_models[_i]];
    tp_model *m = open_golden_model(gm);
    const tp_model_config *c = &m->cfg;
    batch bt = own_batch(c->vocab_size);
    tp_backward *bw;
    ck_assert_msg(backward_new(m, 2, 11, &bw) == TP_OK, "%s", tp_err_msg());
    for (size_t i = 0; i < sizeof fd_points / sizeof *fd_points; i++) {
        int L = fd_points[i].layer == -2 ? c->num_layers - 1 : fd_points[i].layer;
        metric me = own_metric((metric_kind)(i % M_COUNT), &bt, c->vocab_size);
        char what[160], pn[96];
        snprintf(what, sizeof what, "%s %s %s", gm->name, hooks_point_name(L, fd_points[i].pt, pn, sizeof pn),
                 metric_names[me.kind]);
        check_direction(bw, m, &bt, &me, L, fd_points[i].pt, 0, what);
    }
    backward_free(bw);
    model_close(m);
    free(bt.ids);
}
END_TEST

/* An editing pattern hook (layer 0's pattern halved): the backward uses the edited
 * pattern, so d/dv (z = P_edited V) and d/dpattern are exact, checked by finite
 * differences with the edit active; recomputing the softmax instead would double dv. */
START_TEST(test_edited_pattern)
{
    tp_model *m = open_golden_model(&gmodels[_i == 0 ? 0 : 3]);
    const tp_model_config *c = &m->cfg;
    batch bt = own_batch(c->vocab_size);
    tp_backward *bw;
    ck_assert_msg(backward_new(m, 2, 11, &bw) == TP_OK, "%s", tp_err_msg());
    metric me = own_metric(M_LOGIT_DIFF, &bt, c->vocab_size);
    check_direction(bw, m, &bt, &me, 0, TP_HOOK_V, 1, "halved pattern: blocks.0.attn.hook_v");
    check_direction(bw, m, &bt, &me, 0, TP_HOOK_PATTERN, 1, "halved pattern: blocks.0.attn.hook_pattern");
    check_direction(bw, m, &bt, &me, 1, TP_HOOK_RESID_PRE, 1, "halved pattern: blocks.1.hook_resid_pre");
    backward_free(bw);
    model_close(m);
    free(bt.ids);
}
END_TEST

/* ---- the tape forward, gradient hooks, a second backward --------------------------------- */

/* Readers on every point of the model, one gcap each (globals at index num_layers). */
typedef struct {
    int nL;
    gcap cap[64][TP_HOOK_POINT_COUNT];
} all_caps;

static void add_all_readers(tp_hooks *h, all_caps *ac, int nL)
{
    ac->nL = nL;
    for (int L = -1; L < nL; L++) {
        int first = L < 0 ? TP_HOOK_LAYER_COUNT : 0, last = L < 0 ? TP_HOOK_POINT_COUNT : TP_HOOK_LAYER_COUNT;
        for (int p = first; p < last; p++) {
            gcap *c = &ac->cap[L < 0 ? nL : L][p];
            c->layer = L, c->pt = (tp_hook_point)p;
            ck_assert(hooks_add_reader(h, L, (tp_hook_point)p, grab, c) == TP_OK);
        }
    }
}

static void clear_all(all_caps *ac)
{
    for (int L = 0; L <= ac->nL; L++)
        for (int p = 0; p < TP_HOOK_POINT_COUNT; p++) gcap_clear(&ac->cap[L][p]);
}

/* A gradient callback that may edit, and does: NaN over everything it is given. */
static tp_status scribble(const tp_hook_info *info, float *data, void *user)
{
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    for (size_t i = 0; i < n; i++) data[i] = NAN;
    (*(int *)user)++;
    return TP_OK;
}

/* backward_forward's logits are forward_run_varlen's, bit for bit; the gradient hooks
 * cannot change any gradient (callbacks that overwrite theirs with NaN, readers after
 * them on other points and before them on theirs see the first run's bits); a second
 * backward on one tape gives the same bits; every point fires once (the pattern once
 * per sequence) and points that are one tensor get one gradient. */
START_TEST(test_tape_and_hooks)
{
    tp_model *m = open_golden_model(&gmodels[_i == 0 ? 1 : 3]);
    const tp_model_config *c = &m->cfg;
    int V = c->vocab_size, nL = c->num_layers;
    batch bt = own_batch(V);
    tp_backward *bw;
    ck_assert_msg(backward_new(m, 2, 11, &bw) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(backward_rows(bw), 0);
    ck_assert_uint_gt(backward_scratch_bytes(bw), (size_t)17 * c->hidden_size * sizeof(float));
    const float *logits;
    ck_assert_msg(backward_forward(bw, bt.ids, bt.lens, 2, NULL, &logits) == TP_OK, "%s", tp_err_msg());
    tp_forward *f;
    ck_assert(forward_new(m, 2, 11, &f) == TP_OK);
    const float *plain;
    ck_assert(forward_run_varlen(f, bt.ids, bt.lens, 2, NULL, TP_LOGITS_ALL, -1, &plain) == TP_OK);
    ck_assert_mem_eq(logits, plain, (size_t)bt.rows * V * sizeof(float));
    forward_free(f);

    float *dl = malloc((size_t)bt.rows * V * sizeof *dl);
    metric me = own_metric(M_MEAN_LOSS, &bt, V);
    double v;
    ck_assert(metric_eval(&me, &bt, logits, V, &v, dl) == TP_OK);

    all_caps *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    tp_hooks *ha, *hb;
    ck_assert(hooks_new(nL, &ha) == TP_OK);
    ck_assert(hooks_new(nL, &hb) == TP_OK);
    add_all_readers(ha, a, nL);
    ck_assert_msg(backward_run(bw, dl, ha) == TP_OK, "%s", tp_err_msg());
    /* the second run: readers everywhere, and scribblers after the readers of 5 points */
    add_all_readers(hb, b, nL);
    int scribbled = 0;
    const struct { int L; tp_hook_point pt; } sc[] = {{0, TP_HOOK_RESID_MID}, {nL - 1, TP_HOOK_MLP_POST},
        {1, TP_HOOK_Z}, {-1, TP_HOOK_LN_FINAL}, {0, TP_HOOK_PATTERN}};
    for (size_t i = 0; i < sizeof sc / sizeof *sc; i++)
        ck_assert(hooks_add(hb, sc[i].L, sc[i].pt, scribble, &scribbled) == TP_OK);
    ck_assert_msg(backward_run(bw, dl, hb) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(scribbled, 4 + 2);   /* the pattern once per sequence */
    for (int L = 0; L <= nL; L++)
        for (int p = 0; p < TP_HOOK_POINT_COUNT; p++) {
            gcap *x = &a->cap[L][p], *y = &b->cap[L][p];
            if (L == nL && p < TP_HOOK_LAYER_COUNT) continue;
            if (L < nL && p >= TP_HOOK_LAYER_COUNT) continue;
            int times = p == TP_HOOK_PATTERN ? 2 : 1;
            ck_assert_int_eq(x->seen, times);
            ck_assert_int_eq(y->seen, times);
            for (int s = 0; s < times; s++) {
                ck_assert_uint_eq(x->n[s], y->n[s]);
                ck_assert_msg(memcmp(x->data[s], y->data[s], x->n[s] * sizeof(float)) == 0,
                              "layer %d point %s changed by a gradient hook", L, hooks_point_suffix((tp_hook_point)p));
            }
        }
    /* one tensor, one gradient */
    size_t nd = gsize(c, TP_HOOK_EMBED, bt.rows) * sizeof(float);
    ck_assert_mem_eq(a->cap[nL][TP_HOOK_EMBED].data[0], a->cap[0][TP_HOOK_RESID_PRE].data[0], nd);
    for (int L = 0; L + 1 < nL; L++)
        ck_assert_mem_eq(a->cap[L][TP_HOOK_RESID_POST].data[0], a->cap[L + 1][TP_HOOK_RESID_PRE].data[0], nd);
    if (c->arch == TP_ARCH_LLAMA)
        for (int L = 0; L < nL; L++) {
            ck_assert_mem_eq(a->cap[L][TP_HOOK_ATTN_OUT].data[0], a->cap[L][TP_HOOK_ATTN_O].data[0], nd);
            ck_assert_mem_eq(a->cap[L][TP_HOOK_MLP_OUT].data[0], a->cap[L][TP_HOOK_MLP_O].data[0], nd);
        }
    clear_all(a), clear_all(b);
    free(a), free(b);
    hooks_free(ha), hooks_free(hb);
    free(dl);
    backward_free(bw);
    model_close(m);
    free(bt.ids);
}
END_TEST

START_TEST(test_errors)
{
    tp_model *m = open_golden_model(&gmodels[0]);
    int V = m->cfg.vocab_size;
    batch bt = own_batch(V);
    tp_backward *bw;
    ck_assert(backward_new(m, 2, 11, &bw) == TP_OK);
    float *dl = calloc((size_t)bt.rows * V, sizeof *dl);
    TP_ASSERT_FAILS(backward_run(bw, dl, NULL), TP_ERR_INTERNAL, "call backward_forward first");
    const float *logits;
    int too_long[2] = {12, 3};
    TP_ASSERT_FAILS(backward_forward(bw, bt.ids, too_long, 2, NULL, &logits), TP_ERR_RANGE, "sequence 0 has 12 tokens");
    TP_ASSERT_FAILS(backward_run(bw, dl, NULL), TP_ERR_INTERNAL, "no tape");
    ck_assert(backward_forward(bw, bt.ids, bt.lens, 2, NULL, &logits) == TP_OK);
    ck_assert_int_eq(backward_rows(bw), bt.rows);
    ck_assert_msg(backward_run(bw, dl, NULL) == TP_OK, "%s", tp_err_msg());
    TP_ASSERT_FAILS(backward_run(bw, NULL, NULL), TP_ERR_INTERNAL, "dlogits is NULL");

    double v;
    int32_t tok[2] = {0, V}, ok[2] = {0, 1};
    int pos[2] = {0, 6};
    TP_ASSERT_FAILS(metric_logit_diff(logits, V, bt.lens, 2, NULL, ok, tok, &v, dl), TP_ERR_RANGE,
                    "distractor 160 of sequence 1");
    TP_ASSERT_FAILS(metric_logprob(logits, V, bt.lens, 2, pos, ok, &v, dl), TP_ERR_RANGE,
                    "position 6 is outside sequence 1 (6 tokens)");
    int ones[2] = {1, 1};
    TP_ASSERT_FAILS(metric_mean_loss(logits, V, ones, 2, bt.ids, &v, dl), TP_ERR_RANGE, "nothing to predict");
    int zero[2] = {3, 0};
    TP_ASSERT_FAILS(metric_mean_loss(logits, V, zero, 2, bt.ids, &v, dl), TP_ERR_RANGE, "sequence 1 has 0 tokens");
    free(dl);
    backward_free(bw);
    model_close(m);
    free(bt.ids);
}
END_TEST

/* ---- metrics against f64 finite differences ---------------------------------------------- */

typedef struct {
    const metric *me;
    const batch *bt;
    int V;
    double *logits;
} mref;

static double lse64(const double *row, int V)
{
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) mx = row[i] > mx ? row[i] : mx;
    for (int i = 0; i < V; i++) s += exp(row[i] - mx);
    return mx + log(s);
}

/* The metrics written again from their definitions (metrics.h), in f64. */
static double mref_value(const mref *r)
{
    const batch *b = r->bt;
    double sum = 0;
    size_t row0 = 0, n = 0;
    for (int s = 0; s < b->nseq; s++) {
        int p = r->me->has_pos ? r->me->pos[s] : b->lens[s] - 1;
        const double *l = r->logits + (row0 + (size_t)p) * r->V;
        if (r->me->kind == M_LOGIT_DIFF) sum += l[r->me->target[s]] - l[r->me->distractor[s]];
        if (r->me->kind == M_LOGPROB) sum += l[r->me->token[s]] - lse64(l, r->V);
        if (r->me->kind == M_MEAN_LOSS)
            for (int t = 0; t + 1 < b->lens[s]; t++, n++) {
                const double *lt = r->logits + (row0 + (size_t)t) * r->V;
                sum += lse64(lt, r->V) - lt[b->ids[row0 + (size_t)t + 1]];
            }
        row0 += (size_t)b->lens[s];
    }
    return r->me->kind == M_MEAN_LOSS ? sum / (double)n : sum / b->nseq;
}

/* d metric / d logits of metrics.c against central differences of the f64 definitions
 * (step 1e-6: truncation ~1e-12 for these smooth functions of logits ~1), every entry
 * of [rows, V], including the zeros where a metric does not look. Tolerance: 1e-6 of
 * the largest entry (f32 rounding of values ≤ 1/nseq). */
START_TEST(test_metric_gradients)
{
    batch bt = own_batch(23);
    int V = 23;
    size_t n = (size_t)bt.rows * V;
    float *lf = malloc(n * sizeof *lf), *dl = malloc(n * sizeof *dl);
    double *l64 = malloc(n * sizeof *l64), *ref = malloc(n * sizeof *ref);
    uint32_t r = 99;
    for (size_t i = 0; i < n; i++) {
        r = r * 1664525u + 1013904223u;
        lf[i] = (float)(6.0 * ((double)(r >> 8) / (double)(1u << 24) - 0.5));
        l64[i] = lf[i];
    }
    for (int k = 0; k < M_COUNT; k++) {
        metric me = own_metric((metric_kind)k, &bt, V);
        mref mr = {&me, &bt, V, l64};
        double v;
        ck_assert(metric_eval(&me, &bt, lf, V, &v, dl) == TP_OK);
        double want = mref_value(&mr);
        ck_assert_msg(fabs(v - want) <= 1e-12 * fmax(1, fabs(want)), "%s: %.15g vs %.15g", metric_names[k], v, want);
        double mx = 0;
        for (size_t i = 0; i < n; i++) {
            double x0 = l64[i];
            l64[i] = x0 + 1e-6;
            double p = mref_value(&mr);
            l64[i] = x0 - 1e-6;
            double q = mref_value(&mr);
            l64[i] = x0;
            ref[i] = (p - q) / 2e-6;
            mx = fmax(mx, fabs(ref[i]));
        }
        for (size_t i = 0; i < n; i++)
            ck_assert_msg(fabs(dl[i] - ref[i]) <= 1e-6 * mx, "%s: d/dlogits[%zu] %.9g, difference %.9g",
                          metric_names[k], i, dl[i], ref[i]);
    }
    free(lf), free(dl), free(l64), free(ref), free(bt.ids);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backward");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_golden, 0, (int)NGMODELS);
    suite_add_tcase(s, tc);
    TCase *tf = tcase_create("finite differences");
    tcase_set_timeout(tf, 300);
    tcase_add_loop_test(tf, test_finite_differences, 0, (int)(sizeof fd_models / sizeof *fd_models));
    tcase_add_loop_test(tf, test_edited_pattern, 0, 2);
    suite_add_tcase(s, tf);
    TCase *tt = tcase_create("tape, hooks, metrics");
    tcase_set_timeout(tt, 120);
    tcase_add_loop_test(tt, test_tape_and_hooks, 0, 2);
    tcase_add_test(tt, test_errors);
    tcase_add_test(tt, test_metric_gradients);
    suite_add_tcase(s, tt);
    return tp_test_run_suite(s);
}
