/* weights.c — results/circuits/weight_circuits.json (weights.h). */
#include "analysis/circuits/weights.h"

#include "analysis/circuits/weight_circuits.h"
#include "core/log.h"
#include "dist/world.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOP_PAIRS 10

static const char *const mode_names[3] = {"q", "k", "v"};

typedef struct {
    wc_heads w;
    double *comp[3];          /* [L][H][L][H] */
    double *copy, *re, *im;   /* [L][H], [L][H][dh] x 2 */
    double *base_comp;        /* [n][3] */
    double *base_copy;        /* [n] */
    int n_base;
} weights_data;

static void data_free(weights_data *x)
{
    wc_heads_free(&x->w);
    for (int i = 0; i < 3; i++) free(x->comp[i]);
    free(x->copy), free(x->re), free(x->im), free(x->base_comp), free(x->base_copy);
}

static tp_status compute(const circuits_ctx *cx, weights_data *x)
{
    const tp_model_config *c = &cx->m->cfg;
    TP_CHECK(wc_fold(cx->m, &x->w));
    size_t LH = (size_t)x->w.L * x->w.H;
    x->n_base = (int)cx->cs->baseline_samples;
    for (int i = 0; i < 3; i++) x->comp[i] = tp_malloc(LH * LH * sizeof(double));
    x->copy = tp_malloc(LH * sizeof(double));
    x->re = tp_malloc(LH * (size_t)x->w.dh * sizeof(double)), x->im = tp_malloc(LH * (size_t)x->w.dh * sizeof(double));
    x->base_comp = tp_malloc((size_t)x->n_base * 3 * sizeof(double));
    x->base_copy = tp_malloc((size_t)x->n_base * sizeof(double));
    if (!x->comp[0] || !x->comp[1] || !x->comp[2] || !x->copy || !x->re || !x->im || !x->base_comp || !x->base_copy)
        return TP_ERR_NOMEM;
    TP_CHECK(wc_composition(&x->w, x->comp[0], x->comp[1], x->comp[2]));
    TP_CHECK(wc_copying(cx->m, &x->w, x->copy, x->re, x->im));
    TP_CHECK(wc_baseline_composition(x->w.d, x->w.dh, x->n_base, cx->cs->seed, x->base_comp));
    return wc_baseline_copying(x->w.d, x->w.dh, c->vocab_size, x->n_base, cx->cs->seed, x->base_copy);
}

/* {"mean", "std", "min", "max", "samples", "values"} of v[0], v[stride], ... */
static json_t *stats_json(const double *v, int n, int stride)
{
    double s = 0, ss = 0, lo = INFINITY, hi = -INFINITY;
    json_t *vals = json_array();
    for (int i = 0; i < n; i++) {
        double x = v[(size_t)i * stride];
        s += x, ss += x * x, lo = x < lo ? x : lo, hi = x > hi ? x : hi;
        json_array_append_new(vals, circuits_num(x));
    }
    double mean = s / n, var = n > 1 ? (ss - n * mean * mean) / (n - 1) : 0;
    return json_pack("{s:o, s:o, s:o, s:o, s:i, s:o}", "mean", circuits_num(mean), "std",
                     circuits_num(sqrt(var > 0 ? var : 0)), "min", circuits_num(lo), "max", circuits_num(hi),
                     "samples", n, "values", vals);
}

/* [L][H][L][H] nested arrays, as TransformerLens returns them. */
static json_t *grid4(const double *v, int L, int H)
{
    json_t *a = json_array();
    for (int l1 = 0; l1 < L; l1++) {
        json_t *b = json_array();
        for (int h1 = 0; h1 < H; h1++) {
            json_t *c = json_array();
            for (int l2 = 0; l2 < L; l2++) {
                json_t *d = json_array();
                for (int h2 = 0; h2 < H; h2++)
                    json_array_append_new(d, circuits_num(v[(((size_t)l1 * H + h1) * L + l2) * H + h2]));
                json_array_append_new(c, d);
            }
            json_array_append_new(b, c);
        }
        json_array_append_new(a, b);
    }
    return a;
}

/* The TOP_PAIRS largest scores of one mode, with their ratio to the baseline mean. */
static json_t *top_pairs(const double *v, int L, int H, double base_mean)
{
    size_t LH = (size_t)L * H, best[TOP_PAIRS];
    int nb = 0;
    for (size_t i = 0; i < LH * LH; i++) {
        if (!(v[i] > 0)) continue;
        int p = nb < TOP_PAIRS ? nb++ : TOP_PAIRS;
        if (p == TOP_PAIRS && v[i] <= v[best[TOP_PAIRS - 1]]) continue;
        if (p == TOP_PAIRS) p--;
        while (p > 0 && v[best[p - 1]] < v[i]) best[p] = best[p - 1], p--;
        best[p] = i;
    }
    json_t *a = json_array();
    for (int i = 0; i < nb; i++) {
        size_t from = best[i] / LH, to = best[i] % LH;
        json_array_append_new(a, json_pack("{s:i, s:i, s:i, s:i, s:f, s:o}", "from_layer", (int)(from / H), "from_head",
            (int)(from % H), "to_layer", (int)(to / H), "to_head", (int)(to % H), "score", v[best[i]],
            "ratio_to_baseline_mean", circuits_num(v[best[i]] / base_mean)));
    }
    return a;
}

static json_t *folding_json(const tp_model *m)
{
    if (m->cfg.arch == TP_ARCH_OLMO2)
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
            "q_norm", "RMSNorm over the whole q projection: its weight multiplies W_Q's columns (head h: entries "
            "h*d_head..); the RMS scale (one number per token) is ignored",
            "k_norm", "the same for W_K with k_norm's weight (over the kv heads' projection)",
            "post_attention_layernorm", "applied to the sum of the heads' outputs (o_proj): its weight multiplies "
            "W_O's columns; the RMS scale is ignored, as TransformerLens's fold_ln ignores LayerNorm scales",
            "input_norms", "none: OLMo-2 reads the residual stream unnormalised",
            "final_norm", "its weight multiplies W_U's rows (d_model side); the RMS scale is ignored",
            "rope", "left out: QK is the bilinear form at relative position 0, as TransformerLens's QK");
    return json_pack("{s:s, s:s, s:s, s:s}",
        "input_layernorm", "its weight multiplies the rows (d_model side) of W_Q, W_K and W_V; the RMS scale is "
        "ignored (TransformerLens fold_ln)",
        "o_proj", "no norm on the heads' outputs: W_O as stored",
        "final_norm", "its weight multiplies W_U's rows (d_model side); the RMS scale is ignored",
        "rope", "left out: QK is the bilinear form at relative position 0, as TransformerLens's QK");
}

static json_t *copying_json(const weights_data *x)
{
    int L = x->w.L, H = x->w.H, dh = x->w.dh;
    json_t *scores = json_array(), *eig = json_array();
    for (int l = 0; l < L; l++) {
        json_t *srow = json_array(), *erow = json_array();
        for (int h = 0; h < H; h++) {
            size_t i = (size_t)l * H + h;
            json_array_append_new(srow, circuits_num(x->copy[i]));
            json_t *e = json_array();
            for (int k = 0; k < dh; k++)
                json_array_append_new(e, json_pack("[o, o]", circuits_num(x->re[i * dh + k]),
                                                   circuits_num(x->im[i * dh + k])));
            json_array_append_new(erow, e);
        }
        json_array_append_new(scores, srow), json_array_append_new(eig, erow);
    }
    return json_pack("{s:s, s:o, s:o, s:o}", "definition",
        "sum(lambda) / sum(|lambda|) over the eigenvalues of W_E W_V W_O W_U [vocab, vocab] (Elhage et al. 2021), "
        "from the d_head nonzero ones: the eigenvalues of W_O (W_U W_E) W_V (LAPACK dgeev, f64)", "scores", scores,
        "eigenvalues", eig, "baseline", stats_json(x->base_copy, x->n_base, 1));
}

static json_t *report(const circuits_ctx *cx, const weights_data *x)
{
    int L = x->w.L, H = x->w.H;
    json_t *comp = json_pack("{s:s, s:s}", "definition",
        "TransformerLens all_composition_scores: ||L R||_F / (||L||_F ||R||_F) with L = OV of head [l1][h1] and R = "
        "QK (q), QK^T (k) or OV (v) of head [l2][h2]; indexed [l1][h1][l2][h2], 0 where l1 >= l2",
        "baseline_definition", "the same scores of two heads of independent standard Gaussian W_Q, W_K, W_V, W_O "
        "of the model's shapes (seeded by circuits.seed)");
    json_t *base = json_object(), *top = json_object();
    for (int m = 0; m < 3; m++) {
        json_object_set_new(comp, mode_names[m], grid4(x->comp[m], L, H));
        json_t *b = stats_json(x->base_comp + m, x->n_base, 3);
        json_object_set_new(top, mode_names[m],
                            top_pairs(x->comp[m], L, H, json_number_value(json_object_get(b, "mean"))));
        json_object_set_new(base, mode_names[m], b);
    }
    json_object_set_new(comp, "baseline", base);
    json_object_set_new(comp, "top", top);
    json_t *kv = json_array();
    for (int h = 0; h < H; h++) json_array_append_new(kv, json_integer(wc_kv_of(&x->w, h)));
    return json_pack("{s:o, s:[], s:o, s:i, s:i, s:i, s:o, s:o, s:o, s:o}", "model", circuits_model_json(cx),
        "prompts", "settings", circuits_settings_json(cx->cs), "n_layers", L, "n_heads", H, "n_kv_heads", x->w.K,
        "kv_head_of_head", kv, "folding", folding_json(cx->m), "composition", comp, "ov_copying", copying_json(x));
}

tp_status weights_run(const circuits_ctx *cx, const char *run_dir)
{
    tp_status st = TP_OK;
    if (dist_rank() == 0) {
        weights_data x = {0};
        json_t *doc = NULL;
        st = compute(cx, &x);
        if (st == TP_OK && !(doc = report(cx, &x))) st = tp_err(TP_ERR_NOMEM, "circuits weights: cannot build the JSON");
        if (st == TP_OK) st = circuits_write_json(run_dir, RUN_CIRCUITS_WEIGHTS_JSON, doc);
        json_decref(doc);
        data_free(&x);
    }
    return dist_agree(MPI_COMM_WORLD, st, "circuits weights");
}

void weights_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_CIRCUITS_WEIGHTS_JSON);
    json_t *q = json_array_get(json_object_get(json_object_get(json_object_get(j, "composition"), "top"), "q"), 0);
    json_t *s = json_object_get(json_object_get(j, "ov_copying"), "scores");
    if (!q || !s) { json_decref(j); return; }
    double best = -INFINITY;
    int bl = -1, bh = -1;
    size_t l, h;
    json_t *row, *v;
    json_array_foreach(s, l, row) {
        json_array_foreach(row, h, v) {
            if (json_is_number(v) && json_number_value(v) > best) best = json_number_value(v), bl = (int)l, bh = (int)h;
        }
    }
    snprintf(buf, n, "top Q-composition L%lldH%lld->L%lldH%lld %.2f | best OV copying L%dH%d %.2f",
             (long long)json_integer_value(json_object_get(q, "from_layer")),
             (long long)json_integer_value(json_object_get(q, "from_head")),
             (long long)json_integer_value(json_object_get(q, "to_layer")),
             (long long)json_integer_value(json_object_get(q, "to_head")), json_number_value(json_object_get(q, "score")),
             bl, bh, best);
    json_decref(j);
}
