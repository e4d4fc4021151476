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

int main(void)
{
    Suite *s = suite_create("backward");
    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_golden, 0, (int)NGMODELS);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
