/* dla.c — direct logit attribution of one prompt's last position (dla.h). */
#include "analysis/circuits/dla.h"

#include "core/fsutil.h"
#include "dist/world.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last position's row of every capture point the attribution reads. */
typedef struct {
    int L, d, qd;
    float *embed;             /* [d] */
    float *z;                 /* [L][H*dh] */
    float *o, *attn, *mlp;    /* [L][d]: attn.hook_out, hook_attn_out, hook_mlp_out */
    float *final;             /* [d] blocks.{L-1}.hook_resid_post */
} dla_capture;

static tp_status on_point(const tp_hook_info *info, float *data, void *user)
{
    dla_capture *c = user;
    int64_t T = info->shape[1], row = 1;
    for (int i = 2; i < info->ndim; i++) row *= info->shape[i];
    const float *last = data + (size_t)(T - 1) * (size_t)row;
    int l = info->layer;
    switch (info->point) {
    case TP_HOOK_EMBED: memcpy(c->embed, last, (size_t)c->d * sizeof *last); break;
    case TP_HOOK_Z: memcpy(c->z + (size_t)l * c->qd, last, (size_t)c->qd * sizeof *last); break;
    case TP_HOOK_ATTN_O: memcpy(c->o + (size_t)l * c->d, last, (size_t)c->d * sizeof *last); break;
    case TP_HOOK_ATTN_OUT: memcpy(c->attn + (size_t)l * c->d, last, (size_t)c->d * sizeof *last); break;
    case TP_HOOK_MLP_OUT: memcpy(c->mlp + (size_t)l * c->d, last, (size_t)c->d * sizeof *last); break;
    case TP_HOOK_RESID_POST: memcpy(c->final, last, (size_t)c->d * sizeof *last); break;
    default: return tp_err(TP_ERR_INTERNAL, "circuits dla: unexpected capture point %s", info->name);
    }
    return TP_OK;
}

static tp_status capture(const circuits_ctx *cx, const dla_request *rq, dla_capture *c, double *metric)
{
    const tp_model_config *mc = &cx->m->cfg;
    c->L = mc->num_layers, c->d = mc->hidden_size, c->qd = mc->num_heads * mc->head_dim;
    size_t Ld = (size_t)c->L * c->d;
    c->embed = tp_malloc((size_t)c->d * sizeof(float)), c->final = tp_malloc((size_t)c->d * sizeof(float));
    c->z = tp_malloc((size_t)c->L * c->qd * sizeof(float));
    c->o = tp_malloc(Ld * sizeof(float)), c->attn = tp_malloc(Ld * sizeof(float)), c->mlp = tp_malloc(Ld * sizeof(float));
    if (!c->embed || !c->final || !c->z || !c->o || !c->attn || !c->mlp) return TP_ERR_NOMEM;
    tp_hooks *hooks = NULL;
    tp_forward *f = NULL;
    const float *logits = NULL;
    tp_status st = hooks_new(c->L, &hooks);
    if (st == TP_OK) st = hooks_add_reader(hooks, -1, TP_HOOK_EMBED, on_point, c);
    const tp_hook_point pts[] = {TP_HOOK_Z, TP_HOOK_ATTN_O, TP_HOOK_ATTN_OUT, TP_HOOK_MLP_OUT};
    for (int l = 0; l < c->L; l++)
        for (size_t p = 0; st == TP_OK && p < sizeof pts / sizeof *pts; p++) st = hooks_add_reader(hooks, l, pts[p], on_point, c);
    if (st == TP_OK) st = hooks_add_reader(hooks, c->L - 1, TP_HOOK_RESID_POST, on_point, c);
    if (st == TP_OK) st = forward_new(cx->m, 1, rq->T, &f);
    if (st == TP_OK) st = forward_run(f, rq->ids, 1, rq->T, hooks, TP_LOGITS_LAST, -1, &logits);
    if (st == TP_OK) *metric = (double)logits[rq->target] - (rq->distractor >= 0 ? (double)logits[rq->distractor] : 0.0);
    forward_free(f);
    hooks_free(hooks);
    return st;
}

static void capture_free(dla_capture *c)
{
    free(c->embed), free(c->final), free(c->z), free(c->o), free(c->attn), free(c->mlp);
}

static double rms(const float *x, int d, double eps)
{
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)x[k] * x[k];
    return sqrt(s / d + eps);
}

static double dot(const float *x, const double *u, int d)
{
    double s = 0;
    for (int k = 0; k < d; k++) s += (double)x[k] * u[k];
    return s;
}

/* u = w_f ⊙ (W_U[target] - W_U[distractor]) / s_f */
static tp_status direction(const circuits_ctx *cx, const dla_request *rq, const dla_capture *c, dla_result *r, double *u)
{
    const tp_model *m = cx->m;
    int d = c->d;
    float *row = tp_malloc(2 * (size_t)d * sizeof *row);
    if (!row) return TP_ERR_NOMEM;
    size_t es = tp_dtype_size(m->lm_head.dtype);
    tp_convert_to_f32(m->lm_head.dtype, (const char *)m->lm_head.data + (size_t)rq->target * d * es, row, (size_t)d);
    memset(row + d, 0, (size_t)d * sizeof *row);
    if (rq->distractor >= 0)
        tp_convert_to_f32(m->lm_head.dtype, (const char *)m->lm_head.data + (size_t)rq->distractor * d * es, row + d,
                          (size_t)d);
    r->final_scale = rms(c->final, d, m->cfg.rms_norm_eps);
    for (int k = 0; k < d; k++) u[k] = (double)m->final_norm[k] * ((double)row[k] - row[d + k]) / r->final_scale;
    free(row);
    return TP_OK;
}

/* head[l][h] = z_h · (W_O,hᵀ v), v = u ⊙ w_1 / s_1 (OLMo-2) or u (Llama). */
static tp_status heads_of_layer(const circuits_ctx *cx, const dla_capture *c, int l, const double *u, double *v,
                                float *Wo, dla_result *r)
{
    const tp_model *m = cx->m;
    const tp_layer *ly = &m->layers[l];
    int d = c->d, qd = c->qd, dh = m->cfg.head_dim, olmo = m->cfg.arch == TP_ARCH_OLMO2;
    r->attn_scale[l] = olmo ? rms(c->o + (size_t)l * d, d, m->cfg.rms_norm_eps) : 1.0;
    for (int k = 0; k < d; k++) v[k] = olmo ? u[k] * ly->norm1[k] / r->attn_scale[l] : u[k];
    tp_convert_to_f32(ly->o.dtype, ly->o.data, Wo, (size_t)d * qd);   /* W_o [d, H*dh] */
    const float *z = c->z + (size_t)l * qd;
    r->heads_sum[l] = 0;
    for (int h = 0; h < r->H; h++) {
        double s = 0;
        for (int k = 0; k < d; k++) {
            const float *w = Wo + (size_t)k * qd + (size_t)h * dh, *zh = z + (size_t)h * dh;
            double t = 0;
            for (int a = 0; a < dh; a++) t += (double)w[a] * zh[a];
            s += t * v[k];
        }
        r->head[(size_t)l * r->H + h] = s;
        r->heads_sum[l] += s;
    }
    return TP_OK;
}

tp_status dla_compute(const circuits_ctx *cx, const dla_request *rq, dla_result *r)
{
    const tp_model_config *mc = &cx->m->cfg;
    memset(r, 0, sizeof *r);
    r->L = mc->num_layers, r->H = mc->num_heads;
    dla_capture c = {0};
    double *u = NULL, *v = NULL;
    float *Wo = NULL;
    tp_status st = capture(cx, rq, &c, &r->metric);
    r->head = tp_malloc((size_t)r->L * r->H * sizeof(double));
    r->attn = tp_malloc((size_t)r->L * sizeof(double)), r->mlp = tp_malloc((size_t)r->L * sizeof(double));
    r->heads_sum = tp_malloc((size_t)r->L * sizeof(double)), r->attn_scale = tp_malloc((size_t)r->L * sizeof(double));
    u = tp_malloc((size_t)c.d * sizeof *u), v = tp_malloc((size_t)c.d * sizeof *v);
    Wo = tp_malloc((size_t)c.d * c.qd * sizeof *Wo);
    if (st == TP_OK && (!r->head || !r->attn || !r->mlp || !r->heads_sum || !r->attn_scale || !u || !v || !Wo))
        st = TP_ERR_NOMEM;
    if (st == TP_OK) st = direction(cx, rq, &c, r, u);
    if (st == TP_OK) r->embed = dot(c.embed, u, c.d);
    for (int l = 0; st == TP_OK && l < r->L; l++) {
        r->attn[l] = dot(c.attn + (size_t)l * c.d, u, c.d);
        r->mlp[l] = dot(c.mlp + (size_t)l * c.d, u, c.d);
        st = heads_of_layer(cx, &c, l, u, v, Wo, r);
    }
    capture_free(&c);
    free(u), free(v), free(Wo);
    if (st != TP_OK) dla_result_free(r);
    return st;
}

void dla_result_free(dla_result *r)
{
    free(r->head), free(r->attn), free(r->mlp), free(r->heads_sum), free(r->attn_scale);
    r->head = r->attn = r->mlp = r->heads_sum = r->attn_scale = NULL;
}

/* Every piece, largest |value| first. */
static json_t *ranked(const dla_result *r)
{
    int n = 1 + r->L * (r->H + 1);
    json_t **items = tp_malloc((size_t)n * sizeof *items);
    double *val = tp_malloc((size_t)n * sizeof *val);
    json_t *a = json_array();
    if (!items || !val) { free(items), free(val); return a; }
    int k = 0;
    val[k] = r->embed;
    items[k++] = json_pack("{s:s, s:s, s:f}", "name", "embed", "kind", "embed", "value", r->embed);
    for (int l = 0; l < r->L; l++) {
        char name[32];
        for (int h = 0; h < r->H; h++) {
            snprintf(name, sizeof name, "L%dH%d", l, h);
            val[k] = r->head[(size_t)l * r->H + h];
            items[k] = json_pack("{s:s, s:s, s:i, s:i, s:f}", "name", name, "kind", "head", "layer", l, "head", h,
                                 "value", val[k]);
            k++;
        }
        snprintf(name, sizeof name, "L%d.mlp", l);
        val[k] = r->mlp[l];
        items[k] = json_pack("{s:s, s:s, s:i, s:f}", "name", name, "kind", "mlp", "layer", l, "value", val[k]);
        k++;
    }
    for (int i = 0; i < n; i++) {   /* selection by |value|, ties in the order above */
        int b = -1;
        for (int j = 0; j < n; j++)
            if (items[j] && (b < 0 || fabs(val[j]) > fabs(val[b]))) b = j;
        json_array_append_new(a, items[b]);
        items[b] = NULL;
    }
    free(items), free(val);
    return a;
}

static json_t *layers_json(const dla_result *r)
{
    json_t *a = json_array();
    for (int l = 0; l < r->L; l++) {
        json_t *heads = json_array();
        for (int h = 0; h < r->H; h++) json_array_append_new(heads, json_real(r->head[(size_t)l * r->H + h]));
        json_array_append_new(a, json_pack("{s:i, s:f, s:f, s:f, s:f, s:o}", "layer", l, "attn_out", r->attn[l],
            "heads_sum", r->heads_sum[l], "heads_minus_attn_out", r->heads_sum[l] - r->attn[l], "mlp_out", r->mlp[l],
            "heads", heads));
    }
    return a;
}

static json_t *metric_json(const dla_request *rq, const dla_result *r)
{
    double pieces = r->embed, heads = r->embed;
    for (int l = 0; l < r->L; l++) pieces += r->attn[l] + r->mlp[l], heads += r->heads_sum[l] + r->mlp[l];
    char def[256];
    snprintf(def, sizeof def, "logit(target)%s at the last position (%d)", rq->distractor >= 0 ? " - logit(distractor)" : "",
             rq->T - 1);
    return json_pack("{s:s, s:f, s:f, s:f, s:f}", "definition", def, "value", r->metric, "sum_of_pieces", pieces,
                     "sum_with_heads", heads, "error", pieces - r->metric);
}

static json_t *frozen_json(const circuits_ctx *cx, const dla_result *r)
{
    int olmo = cx->m->cfg.arch == TP_ARCH_OLMO2;
    json_t *s1 = json_array();
    for (int l = 0; olmo && l < r->L; l++) json_array_append_new(s1, json_real(r->attn_scale[l]));
    return json_pack("{s:f, s:o, s:s}", "final_norm_scale", r->final_scale, "post_attention_layernorm_scale",
        olmo ? s1 : (json_decref(s1), json_null()), "statement", olmo
        ? "the final norm's scale s_f = sqrt(mean(x^2) + eps) of the last position's final residual and each layer's "
          "post_attention_layernorm scale s_1 = sqrt(mean(o^2) + eps) of its o_proj output are frozen at their values "
          "on this prompt; with them frozen the pieces are linear and add up to the metric exactly (up to f32 "
          "rounding), and each layer's heads add up to its hook_attn_out"
        : "the final norm's scale s_f = sqrt(mean(x^2) + eps) of the last position's final residual is frozen at its "
          "value on this prompt; with it frozen the pieces add up to the metric exactly (up to f32 rounding)");
}

static json_t *token_json(const char *text, int32_t id)
{
    return id < 0 ? json_null() : json_pack("{s:s, s:i}", "text", text, "id", id);
}

tp_status dla_run(const circuits_ctx *cx, const dla_request *rq, const char *run_dir)
{
    tp_status st = TP_OK;
    if (dist_rank() == 0) {
        dla_result r;
        json_t *doc = NULL;
        char rel[TP_PATH_MAX];
        st = fs_path(rel, sizeof rel, "%s%s.json", RUN_CIRCUITS_DLA_PREFIX, rq->id);
        if (st == TP_OK) st = dla_compute(cx, rq, &r);
        if (st == TP_OK) {
            json_t *prompts = json_pack("[{s:s, s:s, s:i}]", "source", "--prompt", "text", rq->prompt, "tokens", rq->T);
            doc = json_pack("{s:o, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:f, s:o, s:o}", "model",
                circuits_model_json(cx), "prompts", prompts, "settings", circuits_settings_json(cx->cs), "id", rq->id,
                "target", token_json(rq->target_text, rq->target), "distractor",
                token_json(rq->distractor_text ? rq->distractor_text : "", rq->distractor), "tokens",
                circuits_tokens_json(cx, rq->ids, rq->T), "metric", metric_json(rq, &r), "frozen", frozen_json(cx, &r),
                "embed", r.embed, "layers", layers_json(&r), "components", ranked(&r));
            st = doc ? circuits_write_json(run_dir, rel, doc) : tp_err(TP_ERR_NOMEM, "circuits dla: cannot build the JSON");
            json_decref(doc);
            dla_result_free(&r);
        }
    }
    return dist_agree(MPI_COMM_WORLD, st, "circuits dla");
}
