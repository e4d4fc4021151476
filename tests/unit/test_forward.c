/* Parity of the C forward pass with Hugging Face transformers.
 *
 * Golden data: tools/reference/make_golden.py (transformers, float32, eager
 * attention) on four tiny random models: OLMo-2 MHA (F32), OLMo-2 GQA (BF16),
 * OLMo-2 GQA (F16, sharded) and Llama GQA with tied embeddings and llama3 RoPE.
 * Every capture point of every layer and the logits must agree to a relative error
 * max|c - ref| / max|ref| <= 1e-4: both sides compute in f32, so what is left is
 * summation order (~1e-6 here); a wrong norm weight or RoPE frequency moves the
 * logits by 5e-2 or more (checked when the goldens were made).
 *
 * bf16 compute (forward.bf16_compute, AVX512-BF16 only): the GEMMs of a BF16
 * checkpoint take X rounded to bf16 (as a Hugging Face bf16 model does), so against
 * these f32 goldens the BF16 model errs by the rounding of X, not by summation order:
 * BF16_COMPUTE_TOL = 2e-2, ~3x the worst seen (7.4e-3, the logits; the capture points
 * 1e-3..7e-3; bf16's unit roundoff is 3.9e-3); a wrong index or a dropped term moves
 * them by far more. The other models keep the f32 kernel and REL_TOL (seen: <= 1.4e-6).
 */
#include "tp_test.h"

#include "backend/cpu/cpu.h"      /* cpu_exp, cpu_silu_mul */
#include "backend/cpu/linear.h"   /* cpu_linear_enable, cpu_linear_bf16_enable, cpu_linear_bf16_supported */
#include "io/npy.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/model.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL_TOL 1e-4
#define BF16_COMPUTE_TOL 2e-2

static double rel_tol = REL_TOL, worst_err; /* the tolerance check_model applies; its worst error */

static const char *const models[] = {"olmo2-mha-f32", "olmo2-gqa-bf16", "olmo2-gqa-f16-sharded",
                                     "llama-gqa-tied"};
#define NMODELS (sizeof models / sizeof *models)

typedef struct {
    float *data;
    size_t n;
    int seen;
} capture;

typedef struct {
    int num_layers;
    capture cap[64][TP_HOOK_POINT_COUNT];   /* row num_layers = global points */
} captures;

static tp_status capture_cb(const tp_hook_info *info, float *data, void *user)
{
    capture *c = user;
    size_t per = 1;
    for (int i = 1; i < info->ndim; i++) per *= (size_t)info->shape[i];
    memcpy(c->data + (size_t)info->seq * per, data, (size_t)info->shape[0] * per * sizeof(float));
    c->seen++;
    return TP_OK;
}

static int32_t *load_ids(const char *model, int *B, int *T)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s/input_ids.npy", model);
    npy_array a;
    ck_assert_msg(npy_read(tp_test_data(rel), &a) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(a.ndim, 2);
    *B = (int)a.shape[0], *T = (int)a.shape[1];
    int32_t *ids = malloc((size_t)a.numel * sizeof *ids);
    for (int64_t i = 0; i < a.numel; i++)
        ids[i] = (int32_t)(a.dtype == TP_DTYPE_I64 ? ((int64_t *)a.data)[i] : ((int32_t *)a.data)[i]);
    npy_free(&a);
    return ids;
}

static void compare_npy(const char *model, const char *name, const float *got, size_t n)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s/%s.npy", model, name);
    npy_array ref;
    ck_assert_msg(npy_read_f32(tp_test_data(rel), &ref) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg((size_t)ref.numel == n, "%s %s: %zu values, golden has %lld", model, name, n,
                  (long long)ref.numel);
    double e = tp_test_rel_err(got, ref.data, n);
    ck_assert_msg(e <= rel_tol, "%s %s: relative error %.3g > %.0e", model, name, e, rel_tol);
    if (e > worst_err) worst_err = e;
    if (getenv("TP_FORWARD_VERBOSE")) printf("%s %s: %.3g\n", model, name, e);
    npy_free(&ref);
}

static tp_model *open_model(const char *name, tp_convert_mode mode)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", name);
    tp_model *m = NULL;
    ck_assert_msg(model_open(tp_test_data(rel), mode, &m) == TP_OK, "%s", tp_err_msg());
    return m;
}

static void check_model(const char *name, tp_convert_mode mode)
{
    tp_model *m = open_model(name, mode);
    const tp_model_config *c = &m->cfg;
    int B, T;
    int32_t *ids = load_ids(name, &B, &T);
    tp_hooks *h;
    ck_assert(hooks_new(c->num_layers, &h) == TP_OK);
    captures *cs = calloc(1, sizeof *cs);
    ck_assert_int_le(c->num_layers, 63);
    for (int L = -1; L < c->num_layers; L++) {
        int first = L < 0 ? TP_HOOK_LAYER_COUNT : 0, last = L < 0 ? TP_HOOK_POINT_COUNT : TP_HOOK_LAYER_COUNT;
        for (int p = first; p < last; p++) {
            int64_t shape[4];
            int nd = hooks_point_shape(c, (tp_hook_point)p, B, T, shape);
            size_t n = 1;
            for (int i = 0; i < nd; i++) n *= (size_t)shape[i];
            capture *cap = &cs->cap[L < 0 ? c->num_layers : L][p];
            cap->data = calloc(n, sizeof(float));
            cap->n = n;
            ck_assert(hooks_add(h, L, (tp_hook_point)p, capture_cb, cap) == TP_OK);
        }
    }
    tp_forward *f;
    ck_assert_msg(forward_new(m, B, T, &f) == TP_OK, "%s", tp_err_msg());
    const float *logits;
    ck_assert_msg(forward_run(f, ids, B, T, h, TP_LOGITS_ALL, -1, &logits) == TP_OK, "%s", tp_err_msg());
    compare_npy(name, "logits", logits, (size_t)B * T * c->vocab_size);
    for (int L = -1; L < c->num_layers; L++) {
        int first = L < 0 ? TP_HOOK_LAYER_COUNT : 0, last = L < 0 ? TP_HOOK_POINT_COUNT : TP_HOOK_LAYER_COUNT;
        for (int p = first; p < last; p++) {
            capture *cap = &cs->cap[L < 0 ? c->num_layers : L][p];
            char pn[96];
            hooks_point_name(L, (tp_hook_point)p, pn, sizeof pn);
            /* The pattern is delivered once per sequence, everything else once. */
            ck_assert_int_eq(cap->seen, p == TP_HOOK_PATTERN ? B : 1);
            compare_npy(name, pn, cap->data, cap->n);
            free(cap->data);
        }
    }
    free(cs);
    forward_free(f);
    hooks_free(h);
    model_close(m);
    free(ids);
}

START_TEST(test_parity_per_matrix)
{
    check_model(models[_i], TP_CONVERT_PER_MATRIX);
}
END_TEST

START_TEST(test_parity_upfront)
{
    check_model(models[_i], TP_CONVERT_UPFRONT);
}
END_TEST

/* The reference edit: at layer `layer`'s output, position `position` of every
 * sequence, h = h * scale + shift. */
typedef struct {
    float scale, shift;
    int position;
} edit_spec;

static tp_status edit_cb(const tp_hook_info *info, float *data, void *user)
{
    const edit_spec *e = user;
    int64_t B = info->shape[0], T = info->shape[1], d = info->shape[2];
    for (int64_t b = 0; b < B; b++) {
        float *row = data + ((size_t)b * T + (size_t)e->position) * (size_t)d;
        for (int64_t i = 0; i < d; i++) row[i] = row[i] * e->scale + e->shift;
    }
    return TP_OK;
}

START_TEST(test_edit_resid_post)
{
    const char *name = models[_i];
    char rel[256];
    snprintf(rel, sizeof rel, "golden/%s/edit.json", name);
    json_error_t je;
    json_t *spec = json_load_file(tp_test_data(rel), 0, &je);
    ck_assert_ptr_nonnull(spec);
    edit_spec e = {(float)json_number_value(json_object_get(spec, "scale")),
                   (float)json_number_value(json_object_get(spec, "shift")),
                   (int)json_integer_value(json_object_get(spec, "position"))};
    int layer = (int)json_integer_value(json_object_get(spec, "layer"));
    char hook[96];
    snprintf(hook, sizeof hook, "blocks.%d.%s", layer, json_string_value(json_object_get(spec, "hook")));
    json_decref(spec);

    tp_model *m = open_model(name, TP_CONVERT_PER_MATRIX);
    int B, T;
    int32_t *ids = load_ids(name, &B, &T);
    tp_hooks *h;
    ck_assert(hooks_new(m->cfg.num_layers, &h) == TP_OK);
    ck_assert_msg(hooks_add_named(h, &m->cfg, hook, edit_cb, &e) == TP_OK, "%s", tp_err_msg());
    tp_forward *f;
    ck_assert(forward_new(m, B, T, &f) == TP_OK);
    const float *logits;
    ck_assert(forward_run(f, ids, B, T, h, TP_LOGITS_ALL, -1, &logits) == TP_OK);
    compare_npy(name, "logits_edit", logits, (size_t)B * T * m->cfg.vocab_size);
    /* And the edit really mattered: without it the logits are the clean ones. */
    ck_assert(forward_run(f, ids, B, T, NULL, TP_LOGITS_ALL, -1, &logits) == TP_OK);
    compare_npy(name, "logits", logits, (size_t)B * T * m->cfg.vocab_size);
    forward_free(f);
    hooks_free(h);
    model_close(m);
    free(ids);
}
END_TEST

/* Each sequence's result does not depend on the batch it is in, and LAST/NONE
 * modes agree with ALL. */
START_TEST(test_batch_and_modes)
{
    const char *name = models[_i];
    tp_model *m = open_model(name, TP_CONVERT_PER_MATRIX);
    const tp_model_config *c = &m->cfg;
    int B, T;
    int32_t *ids = load_ids(name, &B, &T);
    tp_forward *f;
    ck_assert(forward_new(m, B, T, &f) == TP_OK);
    const float *all;
    ck_assert(forward_run(f, ids, B, T, NULL, TP_LOGITS_ALL, -1, &all) == TP_OK);
    size_t V = (size_t)c->vocab_size;
    float *keep = malloc((size_t)B * T * V * sizeof(float));
    memcpy(keep, all, (size_t)B * T * V * sizeof(float));
    const float *last;
    ck_assert(forward_run(f, ids, B, T, NULL, TP_LOGITS_LAST, -1, &last) == TP_OK);
    for (int b = 0; b < B; b++)
        ck_assert_double_le(tp_test_rel_err(last + (size_t)b * V, keep + ((size_t)b * T + T - 1) * V, V), 1e-6);
    const float *one;
    ck_assert(forward_run(f, ids + T, 1, T, NULL, TP_LOGITS_ALL, -1, &one) == TP_OK);
    ck_assert_double_le(tp_test_rel_err(one, keep + (size_t)T * V, (size_t)T * V), 1e-6);
    free(keep);
    forward_free(f);
    model_close(m);
    free(ids);
}
END_TEST

/* Decoding with the KV cache gives the logits of a full recomputation: a prefix of
 * 5 tokens, then one token per step. */
START_TEST(test_kv_cache_matches_full)
{
    const char *name = models[_i];
    tp_model *m = open_model(name, TP_CONVERT_PER_MATRIX);
    size_t V = (size_t)m->cfg.vocab_size;
    int B, T;
    int32_t *ids = load_ids(name, &B, &T);
    tp_forward *full, *dec;
    ck_assert(forward_new(m, B, T, &full) == TP_OK);
    ck_assert(forward_new(m, B, T, &dec) == TP_OK);
    ck_assert(forward_kv_enable(dec) == TP_OK);
    const float *ref;
    ck_assert(forward_run(full, ids, B, T, NULL, TP_LOGITS_ALL, -1, &ref) == TP_OK);
    int prefix = 5;
    int32_t *step = malloc((size_t)B * T * sizeof *step);
    for (int b = 0; b < B; b++) memcpy(step + (size_t)b * prefix, ids + (size_t)b * T, (size_t)prefix * sizeof *step);
    const float *lg;
    ck_assert_msg(forward_step(dec, step, B, prefix, 0, NULL, TP_LOGITS_LAST, &lg) == TP_OK, "%s", tp_err_msg());
    for (int t = prefix - 1; t < T; t++) {
        if (t >= prefix) {
            for (int b = 0; b < B; b++) step[b] = ids[(size_t)b * T + t];
            ck_assert_msg(forward_step(dec, step, B, 1, t, NULL, TP_LOGITS_LAST, &lg) == TP_OK, "%s", tp_err_msg());
        }
        for (int b = 0; b < B; b++)
            ck_assert_msg(tp_test_rel_err(lg + (size_t)b * V, ref + ((size_t)b * T + t) * V, V) <= 1e-5,
                          "%s: position %d of sequence %d differs with the KV cache", name, t, b);
    }
    free(step);
    free(ids);
    forward_free(full);
    forward_free(dec);
    model_close(m);
}
END_TEST

/* Varlen: sequences of different lengths packed without padding. Prefixes of the
 * golden sequences (causal attention makes a prefix's rows the golden's first rows),
 * a length-1 sequence among them; every point except the pattern arrives once as
 * [1, N, ...], the pattern once per sequence as [1, H, n, n]. Checked against the
 * goldens (1e-4, as above); against each sequence run alone (2e-6: attention, norms,
 * RoPE and the MLP's element-wise part do the same arithmetic per row, but OpenBLAS
 * picks its GEMM kernel and blocking by the row count, which moves the logits by up
 * to ~1e-6 of their max); and with equal lengths against forward_run, bit for bit. */
typedef struct {
    float *data;
    size_t n;
    int seen;
    int64_t shape[4];
    int ndim;
    float **pat;    /* per-sequence patterns */
} vcapture;

static tp_status vcapture_cb(const tp_hook_info *info, float *data, void *user)
{
    vcapture *c = user;
    size_t n = 1;
    for (int i = 0; i < info->ndim; i++) n *= (size_t)info->shape[i];
    if (info->point == TP_HOOK_PATTERN) {
        c->pat[info->seq] = malloc(n * sizeof(float));
        memcpy(c->pat[info->seq], data, n * sizeof(float));
    } else {
        ck_assert_int_eq(info->shape[0], 1);
        c->data = malloc(n * sizeof(float));
        memcpy(c->data, data, n * sizeof(float));
        c->n = n;
    }
    memcpy(c->shape, info->shape, sizeof c->shape);
    c->ndim = info->ndim;
    c->seen++;
    return TP_OK;
}

START_TEST(test_varlen)
{
    const char *name = models[_i];
    tp_model *m = open_model(name, TP_CONVERT_PER_MATRIX);
    const tp_model_config *c = &m->cfg;
    size_t V = (size_t)c->vocab_size;
    int B, T;
    int32_t *ids = load_ids(name, &B, &T);
    ck_assert_int_ge(B, 2);
    ck_assert_int_ge(T, 8);
    /* Sequence s is a prefix of golden sequence src[s]. */
    int nseq = B + 1, lens[16], src[16], N = 0;
    ck_assert_int_le(nseq, 16);
    for (int s = 0; s < B; s++) src[s] = s, lens[s] = T - (5 * s) % (T - 1);
    src[B] = 1, lens[B] = 1;
    for (int s = 0; s < nseq; s++) N += lens[s];
    ck_assert_int_le(N, B * T);
    int32_t *packed = malloc((size_t)N * sizeof *packed);
    for (int s = 0, r = 0; s < nseq; r += lens[s], s++)
        memcpy(packed + r, ids + (size_t)src[s] * T, (size_t)lens[s] * sizeof *packed);

    tp_hooks *h;
    ck_assert(hooks_new(c->num_layers, &h) == TP_OK);
    int np = (c->num_layers + 1) * TP_HOOK_POINT_COUNT;
    vcapture *cs = calloc((size_t)np, sizeof *cs);
    float *pat[16] = {0};
    for (int L = -1; L < c->num_layers; L++) {
        int first = L < 0 ? TP_HOOK_LAYER_COUNT : 0, last = L < 0 ? TP_HOOK_POINT_COUNT : TP_HOOK_LAYER_COUNT;
        for (int p = first; p < last; p++) {
            vcapture *cap = &cs[(L < 0 ? c->num_layers : L) * TP_HOOK_POINT_COUNT + p];
            if (p == TP_HOOK_PATTERN) cap->pat = pat;
            if (p == TP_HOOK_PATTERN && L != 0) continue;   /* one layer is enough */
            ck_assert(hooks_add(h, L, (tp_hook_point)p, vcapture_cb, cap) == TP_OK);
        }
    }
    tp_forward *f;
    ck_assert(forward_new(m, B, T, &f) == TP_OK);
    const float *lg;
    ck_assert_msg(forward_run_varlen(f, packed, lens, nseq, h, TP_LOGITS_ALL, -1, &lg) == TP_OK, "%s",
                  tp_err_msg());
    float *logits = malloc((size_t)N * V * sizeof(float));
    memcpy(logits, lg, (size_t)N * V * sizeof(float));

    /* Against the goldens, sequence by sequence. */
    for (int L = -1; L < c->num_layers; L++) {
        int first = L < 0 ? TP_HOOK_LAYER_COUNT : 0, last = L < 0 ? TP_HOOK_POINT_COUNT : TP_HOOK_LAYER_COUNT;
        for (int p = first; p < last; p++) {
            vcapture *cap = &cs[(L < 0 ? c->num_layers : L) * TP_HOOK_POINT_COUNT + p];
            if (p == TP_HOOK_PATTERN && L != 0) continue;
            char pn[96], rel[256];
            hooks_point_name(L, (tp_hook_point)p, pn, sizeof pn);
            snprintf(rel, sizeof rel, "golden/%s/%s.npy", name, pn);
            npy_array ref;
            ck_assert_msg(npy_read_f32(tp_test_data(rel), &ref) == TP_OK, "%s", tp_err_msg());
            const float *rd = ref.data;
            if (p == TP_HOOK_PATTERN) {
                ck_assert_int_eq(cap->seen, nseq);
                int H = c->num_heads;
                for (int s = 0; s < nseq; s++) {
                    int n = lens[s];
                    float *want = malloc((size_t)H * n * n * sizeof(float));
                    for (int hh = 0; hh < H; hh++)
                        for (int i = 0; i < n; i++)
                            memcpy(want + ((size_t)hh * n + i) * n,
                                   rd + (((size_t)src[s] * H + hh) * T + i) * T, (size_t)n * sizeof(float));
                    double e = tp_test_rel_err(pat[s], want, (size_t)H * n * n);
                    ck_assert_msg(e <= REL_TOL, "%s %s seq %d: relative error %.3g", name, pn, s, e);
                    free(want);
                    free(pat[s]);
                }
            } else {
                ck_assert_int_eq(cap->seen, 1);
                ck_assert_int_eq(cap->shape[1], N);
                size_t per = cap->n / (size_t)N;
                for (int s = 0, r = 0; s < nseq; r += lens[s], s++) {
                    double e = tp_test_rel_err(cap->data + (size_t)r * per, rd + (size_t)src[s] * T * per,
                                       (size_t)lens[s] * per);
                    ck_assert_msg(e <= REL_TOL, "%s %s seq %d: relative error %.3g", name, pn, s, e);
                }
                free(cap->data);
            }
            npy_free(&ref);
        }
    }
    /* Against each sequence alone, and LAST = the last row of ALL. */
    float *keep = malloc((size_t)B * T * V * sizeof(float));   /* N <= B*T */
    memcpy(keep, logits, (size_t)N * V * sizeof(float));
    for (int s = 0, r = 0; s < nseq; r += lens[s], s++) {
        const float *one;
        ck_assert(forward_run(f, ids + (size_t)src[s] * T, 1, lens[s], NULL, TP_LOGITS_ALL, -1, &one) == TP_OK);
        double e = tp_test_rel_err(keep + (size_t)r * V, one, (size_t)lens[s] * V);
        ck_assert_msg(e <= 2e-6, "%s seq %d: varlen vs alone %.3g", name, s, e);
    }
    ck_assert(forward_run_varlen(f, packed, lens, nseq, NULL, TP_LOGITS_LAST, -1, &lg) == TP_OK);
    for (int s = 0, r = 0; s < nseq; r += lens[s], s++)
        ck_assert_double_le(tp_test_rel_err(lg + (size_t)s * V, keep + (size_t)(r + lens[s] - 1) * V, V), 1e-6);
    int eq[16];
    for (int b = 0; b < B; b++) eq[b] = T;
    ck_assert(forward_run_varlen(f, ids, eq, B, NULL, TP_LOGITS_ALL, -1, &lg) == TP_OK);
    memcpy(keep, lg, (size_t)B * T * V * sizeof(float));
    ck_assert(forward_run(f, ids, B, T, NULL, TP_LOGITS_ALL, -1, &lg) == TP_OK);
    ck_assert_msg(!memcmp(keep, lg, (size_t)B * T * V * sizeof(float)), "%s: varlen with equal lengths != forward_run",
                  name);
    /* Sizes beyond the allocation are refused. */
    int big[2] = {T + 1, 1};
    ck_assert_int_eq(forward_run_varlen(f, packed, big, 2, NULL, TP_LOGITS_LAST, -1, NULL), TP_ERR_RANGE);
    int zero[1] = {0};
    ck_assert_int_eq(forward_run_varlen(f, packed, zero, 1, NULL, TP_LOGITS_LAST, -1, NULL), TP_ERR_RANGE);
    free(keep);
    free(logits);
    free(cs);
    free(packed);
    forward_free(f);
    hooks_free(h);
    model_close(m);
    free(ids);
}
END_TEST

/* The vectorised exp of silu and softmax: within 2 ulp of the correctly rounded
 * exp over [-104, 89] (normal results; denormal ones within 2 units of 2^-149),
 * inf above the f32 range, NaN stays NaN; silu(g)*u within 4 ulp of the double
 * formula. */
/* Check records the location of every assertion that passes (a malloc, a strdup and a
 * write each): the 8M per-value checks below cost seconds natively and minutes under
 * valgrind (valgrind.test_forward), so they call Check only for a value that fails. */
#define CHECK_EACH(expr, ...)                           \
    do {                                                \
        if (!(expr)) ck_assert_msg(expr, __VA_ARGS__);  \
    } while (0)

static int64_t ordered(float x)
{
    int32_t i;
    memcpy(&i, &x, sizeof i);
    return i < 0 ? (int64_t)INT32_MIN - i : i;
}

START_TEST(test_exp)
{
    size_t n = (size_t)1 << 22;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *u = malloc(n * sizeof(float));
    uint32_t rng = 12345;
    for (size_t i = 0; i < n; i++) {
        rng = rng * 1664525u + 1013904223u;
        x[i] = i % 2 ? -104.0f + 193.0f * (float)((double)i / (double)n)
                     : (float)((double)(rng >> 8) / (double)(1u << 24) * 193.0 - 104.0);
    }
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 88.72f, x[3] = 89.5f, x[4] = -110.0f, x[5] = NAN, x[6] = INFINITY,
    x[7] = -INFINITY, x[8] = 1e-8f;
    cpu_exp(y, x, n);
    int64_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        double ref = exp((double)x[i]);
        float r = (float)ref;
        if (isnan(x[i])) { CHECK_EACH(isnan(y[i]), "exp(NaN) = %.9g, want NaN", y[i]); continue; }
        if (isinf(r)) { CHECK_EACH(isinf(y[i]) && y[i] > 0, "exp(%.9g) = %.9g, want inf", x[i], y[i]); continue; }
        if (r < 1.17549435e-38f) {
            CHECK_EACH(fabs((double)y[i] - ref) <= 2 * 1.4012984643e-45, "exp(%.9g) = %.9g", x[i], y[i]);
            continue;
        }
        int64_t d = llabs(ordered(y[i]) - ordered(r));
        if (d > worst) worst = d;
        CHECK_EACH(d <= 2, "exp(%.9g) = %.9g, correctly rounded %.9g (%lld ulp)", x[i], y[i], r, (long long)d);
    }
    /* silu(g) * u against the double formula, over g in [-90, 90]. */
    for (size_t i = 0; i < n; i++) {
        x[i] = -90.0f + 180.0f * (float)((double)i / (double)n);
        u[i] = 0.5f + (float)(i % 7);
        y[i] = x[i];
    }
    cpu_silu_mul(y, u, n);
    for (size_t i = 0; i < n; i++) {
        double g = x[i], ref = g / (1.0 + exp(-g)) * u[i];
        float r = (float)ref;
        if (fabs(ref) < 1e-30) {
            CHECK_EACH(fabs((double)y[i]) < 1e-29, "silu(%.9g)*%.9g = %.9g, want ~0", x[i], u[i], y[i]);
            continue;
        }
        CHECK_EACH(llabs(ordered(y[i]) - ordered(r)) <= 4, "silu(%.9g)*%.9g = %.9g, want %.9g", x[i], u[i], y[i], r);
    }
    free(x);
    free(y);
    free(u);
}
END_TEST

START_TEST(test_bad_token_and_sizes)
{
    tp_model *m = open_model(models[0], TP_CONVERT_PER_MATRIX);
    tp_forward *f;
    ck_assert(forward_new(m, 1, 4, &f) == TP_OK);
    int32_t ids[4] = {1, 2, m->cfg.vocab_size, 3};
    ck_assert_int_eq(forward_run(f, ids, 1, 4, NULL, TP_LOGITS_LAST, -1, NULL), TP_ERR_RANGE);
    TP_ASSERT_ERR_HAS("outside the vocabulary");
    ck_assert_int_eq(forward_run(f, ids, 1, 5, NULL, TP_LOGITS_LAST, -1, NULL), TP_ERR_RANGE);
    ck_assert_int_eq(forward_run(f, ids, 1, 4, NULL, TP_LOGITS_NONE, 99, NULL), TP_ERR_RANGE);
    forward_free(f);
    model_close(m);
}
END_TEST

START_TEST(test_hook_names)
{
    tp_model *m = open_model(models[0], TP_CONVERT_PER_MATRIX);
    tp_model *l = open_model(models[3], TP_CONVERT_PER_MATRIX);
    int L;
    tp_hook_point pt;
    struct { const char *name; int layer; tp_hook_point pt; } ok[] = {
        {"blocks.1.hook_resid_post", 1, TP_HOOK_RESID_POST},
        {"blocks.0.attn.hook_pattern", 0, TP_HOOK_PATTERN},
        {"model.layers.1", 1, TP_HOOK_RESID_POST},
        {"model.layers.0.mlp", 0, TP_HOOK_MLP_O},
        {"model.layers.0.mlp.down_proj.input", 0, TP_HOOK_MLP_POST},
        {"model.layers.1.self_attn", 1, TP_HOOK_ATTN_O},
        {"model.layers.1.self_attn.q_norm", 1, TP_HOOK_Q},
        {"model.layers.0.post_feedforward_layernorm", 0, TP_HOOK_MLP_OUT},
        {"hook_embed", -1, TP_HOOK_EMBED},
        {"model.norm", -1, TP_HOOK_LN_FINAL},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        ck_assert_msg(hooks_parse_name(&m->cfg, ok[i].name, &L, &pt) == TP_OK, "%s", tp_err_msg());
        ck_assert_int_eq(L, ok[i].layer);
        ck_assert_int_eq(pt, ok[i].pt);
        char buf[96];
        if (L >= 0) {   /* canonical names round-trip */
            hooks_point_name(L, pt, buf, sizeof buf);
            int L2;
            tp_hook_point pt2;
            ck_assert(hooks_parse_name(&m->cfg, buf, &L2, &pt2) == TP_OK);
            ck_assert(L2 == L && pt2 == pt);
        }
    }
    ck_assert_int_eq(hooks_parse_name(&m->cfg, "blocks.2.hook_resid_post", &L, &pt), TP_ERR_RANGE);
    TP_ASSERT_ERR_HAS("layers 0..1");
    ck_assert_int_eq(hooks_parse_name(&m->cfg, "blocks.0.hook_nope", &L, &pt), TP_ERR_CONFIG);
    ck_assert_int_eq(hooks_parse_name(&m->cfg, "model.layers.0.input_layernorm", &L, &pt), TP_ERR_CONFIG);
    ck_assert_int_eq(hooks_parse_name(&l->cfg, "model.layers.0.self_attn.q_norm", &L, &pt), TP_ERR_CONFIG);
    TP_ASSERT_ERR_HAS("llama");
    ck_assert_int_eq(hooks_parse_name(&l->cfg, "model.layers.0.self_attn.q_proj", &L, &pt), TP_OK);
    model_close(m);
    model_close(l);
}
END_TEST

/* forward.bf16_compute on: the BF16 model within BF16_COMPUTE_TOL of the f32 goldens
 * (and farther than REL_TOL: the bf16 kernel did run); F32, F16 models unchanged. */
START_TEST(test_parity_bf16_compute)
{
    if (!cpu_linear_bf16_supported()) {
        printf("skipped: this CPU has no AVX512-BF16: forward.bf16_compute does not apply\n");
        return;
    }
    cpu_linear_bf16_enable(1);
    int bf16 = !strcmp(models[_i], "olmo2-gqa-bf16");
    rel_tol = bf16 ? BF16_COMPUTE_TOL : REL_TOL;
    check_model(models[_i], TP_CONVERT_PER_MATRIX);
    printf("%s, bf16 compute: worst relative error %.3g\n", models[_i], worst_err);
    if (bf16) ck_assert_msg(worst_err > REL_TOL, "bf16 compute on the BF16 model within %.0e: did it run?", REL_TOL);
    cpu_linear_bf16_enable(0);
}
END_TEST

/* The OpenBLAS path (forward.gemm: openblas, and CPUs without AVX-512) must stay
 * correct too: the parity tests again with backend/linear's kernel off. Checked
 * fixtures run in each test's own (forked) process. */
static void gemm_openblas(void) { cpu_linear_enable(0); }
static void gemm_auto(void) { cpu_linear_enable(1); }

int main(void)
{
    Suite *s = suite_create("forward");
    TCase *tb = tcase_create("parity_openblas");
    tcase_set_timeout(tb, 120);
    tcase_add_checked_fixture(tb, gemm_openblas, gemm_auto);
    tcase_add_loop_test(tb, test_parity_per_matrix, 0, NMODELS);
    tcase_add_loop_test(tb, test_varlen, 0, NMODELS);
    suite_add_tcase(s, tb);
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_parity_per_matrix, 0, NMODELS);
    tcase_add_loop_test(tc, test_parity_upfront, 0, NMODELS);
    tcase_add_loop_test(tc, test_edit_resid_post, 0, NMODELS);
    tcase_add_loop_test(tc, test_batch_and_modes, 0, NMODELS);
    tcase_add_loop_test(tc, test_kv_cache_matches_full, 0, NMODELS);
    tcase_add_loop_test(tc, test_varlen, 0, NMODELS);
    tcase_add_test(tc, test_exp);
    tcase_add_test(tc, test_bad_token_and_sizes);
    tcase_add_test(tc, test_hook_names);
    tcase_add_loop_test(tc, test_parity_bf16_compute, 0, NMODELS);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
