#include "analysis/inspect/inspect_phase.h"

#include "analysis/inspect/weight_spectra.h"
#include "core/fault.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/world.h"
#include "model/model.h"
#include "run_layout.h"
#include "settings.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *spectrum_json(const tp_spectrum *s)
{
    json_t *sv = json_array();
    for (int i = 0; i < s->n; i++) json_array_append_new(sv, json_real(s->sv[i]));
    return json_pack("{s:f, s:f, s:f, s:f, s:o}", "frobenius", s->frobenius, "spectral_norm",
                     s->spectral, "effective_rank", s->effective_rank, "stable_rank",
                     s->stable_rank, "singular_values", sv);
}

static json_t *vec_stats(const float *v, int64_t n)
{
    double sum = 0, sq = 0, mn = INFINITY, mx = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        sum += v[i];
        sq += (double)v[i] * v[i];
        mn = v[i] < mn ? v[i] : mn;
        mx = v[i] > mx ? v[i] : mx;
    }
    double mean = sum / (double)n;
    double var = sq / (double)n - mean * mean;
    return json_pack("{s:I, s:f, s:f, s:f, s:f}", "size", (json_int_t)n, "mean", mean, "std",
                     var > 0 ? sqrt(var) : 0.0, "min", mn, "max", mx);
}

/* Per-head spectra of a projection: heads are row blocks (W_Q, W_K, W_V) or, for
 * W_O, column blocks. */
static tp_status head_spectra(const tp_mat *W, int heads, int dh, int by_cols, json_t *arr)
{
    for (int h = 0; h < heads; h++) {
        tp_spectrum s;
        if (by_cols) TP_CHECK(spectrum_of_block(W, 0, W->rows, (int64_t)h * dh, dh, &s));
        else TP_CHECK(spectrum_of_block(W, (int64_t)h * dh, dh, 0, W->cols, &s));
        json_t *j = spectrum_json(&s);
        json_object_set_new(j, "head", json_integer(h));
        json_array_append_new(arr, j);
        spectrum_free(&s);
    }
    return TP_OK;
}

static tp_status layer_json(const tp_model *m, int L, int spectra, json_t **out)
{
    const tp_model_config *c = &m->cfg;
    const tp_layer *l = &m->layers[L];
    const tp_mat *mats[7];
    const char *kinds[7];
    int n = model_layer_mats(m, L, mats, kinds);
    json_t *norms = json_object(), *nw = json_object();
    for (int i = 0; i < n; i++) json_object_set_new(norms, kinds[i], json_real(mat_frobenius(mats[i])));
    int64_t d = c->hidden_size;
    if (c->arch == TP_ARCH_OLMO2) {
        json_object_set_new(nw, "q_norm", vec_stats(l->q_norm, (int64_t)c->num_heads * c->head_dim));
        json_object_set_new(nw, "k_norm", vec_stats(l->k_norm, (int64_t)c->num_kv_heads * c->head_dim));
        json_object_set_new(nw, "post_attention_layernorm", vec_stats(l->norm1, d));
        json_object_set_new(nw, "post_feedforward_layernorm", vec_stats(l->norm2, d));
    } else {
        json_object_set_new(nw, "input_layernorm", vec_stats(l->norm1, d));
        json_object_set_new(nw, "post_attention_layernorm", vec_stats(l->norm2, d));
    }
    json_t *j = json_pack("{s:i, s:o, s:o}", "layer", L, "weight_frobenius_norms", norms,
                          "norm_weights", nw);
    if (spectra) {
        json_t *sp = json_object();
        const struct { const char *key; const tp_mat *w; int heads, by_cols; } per_head[] = {
            {"W_Q", &l->q, c->num_heads, 0}, {"W_K", &l->k, c->num_kv_heads, 0},
            {"W_V", &l->v, c->num_kv_heads, 0}, {"W_O", &l->o, c->num_heads, 1},
        };
        for (size_t i = 0; i < 4; i++) {
            json_t *arr = json_array();
            json_object_set_new(sp, per_head[i].key, arr);
            tp_status st = head_spectra(per_head[i].w, per_head[i].heads, c->head_dim, per_head[i].by_cols, arr);
            if (st != TP_OK) { json_decref(j); json_decref(sp); return st; }
        }
        const tp_mat *mlp[3] = {&l->gate, &l->up, &l->down};
        const char *mlp_names[3] = {"mlp_gate_proj", "mlp_up_proj", "mlp_down_proj"};
        for (int i = 0; i < 3; i++) {
            tp_spectrum s;
            tp_status st = spectrum_of_block(mlp[i], 0, mlp[i]->rows, 0, mlp[i]->cols, &s);
            if (st != TP_OK) { json_decref(j); json_decref(sp); return st; }
            json_object_set_new(sp, mlp_names[i], spectrum_json(&s));
            spectrum_free(&s);
        }
        json_object_set_new(j, "spectra", sp);
    }
    *out = j;
    return TP_OK;
}

static json_t *config_json(const tp_model_config *c)
{
    json_t *rope = json_pack("{s:s, s:f}", "type", model_rope_type_name(c->rope_type), "theta", c->rope_theta);
    if (c->rope_type != TP_ROPE_DEFAULT) json_object_set_new(rope, "factor", json_real(c->rope_factor));
    if (c->rope_type == TP_ROPE_LLAMA3) {
        json_object_set_new(rope, "low_freq_factor", json_real(c->rope_low_freq_factor));
        json_object_set_new(rope, "high_freq_factor", json_real(c->rope_high_freq_factor));
        json_object_set_new(rope, "original_max_position_embeddings", json_integer(c->rope_original_max_pos));
    }
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, s:o}",
                     "vocab_size", c->vocab_size, "hidden_size", c->hidden_size,
                     "intermediate_size", c->intermediate_size, "num_layers", c->num_layers,
                     "num_attention_heads", c->num_heads, "num_key_value_heads", c->num_kv_heads,
                     "head_dim", c->head_dim, "max_position_embeddings", c->max_position_embeddings,
                     "rms_norm_eps", c->rms_norm_eps, "tie_word_embeddings", c->tie_word_embeddings,
                     "rope", rope);
}

static json_t *params_json(const tp_model *m)
{
    const tp_model_config *c = &m->cfg;
    int64_t d = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    int64_t qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    int64_t attn = d * qd + 2 * d * kd + qd * d, mlp = 3 * d * F;
    int64_t norms = c->arch == TP_ARCH_OLMO2 ? qd + kd + 2 * d : 2 * d;
    int64_t per_layer = attn + mlp + norms;
    int64_t embed = V * d, head = c->tie_word_embeddings ? 0 : V * d;
    int64_t total = embed + head + per_layer * c->num_layers + d;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "total", (json_int_t)total,
                     "embedding", (json_int_t)embed, "lm_head", (json_int_t)head,
                     "attention_per_layer", (json_int_t)attn, "mlp_per_layer", (json_int_t)mlp,
                     "norms_per_layer", (json_int_t)norms, "per_layer", (json_int_t)per_layer,
                     "final_norm", (json_int_t)d);
}

static json_t *tensors_json(const tp_model *m)
{
    json_t *arr = json_array();
    json_t *by_dtype = json_object();
    for (size_t i = 0; i < st_count(m->st); i++) {
        const st_tensor *t = st_at(m->st, i);
        json_t *shape = json_array();
        for (int k = 0; k < t->ndim; k++) json_array_append_new(shape, json_integer(t->shape[k]));
        json_array_append_new(arr, json_pack("{s:s, s:s, s:o}", "name", t->name, "dtype",
                                             tp_dtype_name(t->dtype), "shape", shape));
        json_t *cnt = json_object_get(by_dtype, tp_dtype_name(t->dtype));
        json_object_set_new(by_dtype, tp_dtype_name(t->dtype),
                            json_integer((cnt ? json_integer_value(cnt) : 0) + t->numel));
    }
    return json_pack("{s:o, s:o, s:I}", "parameters_by_dtype", by_dtype, "tensors", arr,
                     "bytes_on_disk", (json_int_t)st_total_bytes(m->st));
}

static const tp_cfg_key inspect_keys[] = {
    {"inspect.spectra", TP_CFG_BOOL, "true", TP_CFG_ANY, NULL, "singular-value spectra of weight matrices in architecture.json"},
};
static const tp_cfg_section inspect_section = TP_CFG_SECTION("inspect", inspect_keys);

/* Layers round-robin over ranks; each rank serialises its layers, rank 0 gets them
 * all in order (the others get NULL). */
static tp_status gather_layers(const tp_model *m, int spectra, json_t **out)
{
    const tp_model_config *c = &m->cfg;
    int rank = dist_rank(), size = dist_size();
    *out = NULL;
    json_t *mine = json_array();
    tp_progress prog;
    tp_progress_begin(&prog, "inspect", "layers", (uint64_t)c->num_layers);
    tp_status st = TP_OK;
    for (int L = rank; L < c->num_layers && st == TP_OK; L += size) {
        json_t *lj = NULL;
        st = layer_json(m, L, spectra, &lj);
        if (st == TP_OK) json_array_append_new(mine, lj);
        if (st == TP_OK) st = tp_fault("inspect", "layer");
        tp_progress_add(&prog, (uint64_t)size);
    }
    tp_progress_end(&prog);
    if (st != TP_OK) { json_decref(mine); return st; }
    char *text = json_dumps(mine, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(mine);
    char **all = NULL;
    st = text ? dist_gather_strings(text, &all) : tp_err(TP_ERR_NOMEM, "cannot serialise layers");
    free(text);
    if (st != TP_OK || rank != 0) return st;

    json_t *layers = json_array();
    for (int L = 0; L < c->num_layers; L++) json_array_append_new(layers, json_null());
    for (int r = 0; r < size; r++) {
        json_error_t e;
        json_t *part = json_loads(all[r], 0, &e);
        size_t i;
        json_t *lj;
        json_array_foreach(part, i, lj) {
            int L = (int)json_integer_value(json_object_get(lj, "layer"));
            json_array_set(layers, (size_t)L, lj);
        }
        json_decref(part);
    }
    dist_free_strings(all);
    *out = layers;
    return TP_OK;
}

tp_status inspect_build(const tp_config *cfg, json_t **doc)
{
    *doc = NULL;
    tp_settings s;
    TP_CHECK(settings_read(cfg, &s));
    const char *dir = s.model.dir;
    int spectra = tp_config_bool(cfg, "inspect.spectra");
    tp_model *m = NULL;
    TP_CHECK(model_open(dir, TP_CONVERT_PER_MATRIX, &m));
    const tp_model_config *c = &m->cfg;
    json_t *layers = NULL;
    tp_status st = model_validate_layers(m, s.layers, s.n_layers, s.layers_origin);
    if (st == TP_OK) st = gather_layers(m, spectra, &layers);
    if (st != TP_OK || !layers) { model_close(m); return st; }

    json_t *out = json_object();
    json_object_set_new(out, "model", json_pack("{s:s, s:s, s:s, s:s}", "path", dir, "architecture",
                                               c->architecture, "model_type", c->model_type,
                                               "family", model_arch_name(c->arch)));
    json_object_set_new(out, "config", config_json(c));
    json_object_set_new(out, "parameters", params_json(m));
    json_object_set_new(out, "checkpoint", tensors_json(m));
    json_object_set_new(out, "embedding_frobenius_norm", json_real(mat_frobenius(&m->embed)));
    if (!c->tie_word_embeddings)
        json_object_set_new(out, "lm_head_frobenius_norm", json_real(mat_frobenius(&m->lm_head)));
    json_object_set_new(out, "final_norm_weights", vec_stats(m->final_norm, c->hidden_size));
    json_object_set_new(out, "definitions", json_pack("{s:s, s:s, s:s}",
        "effective_rank", "exp(entropy of s_i / sum s), Roy & Vetterli 2007",
        "stable_rank", "||W||_F^2 / s_max^2",
        "per_head", "W_Q/W_K/W_V: the head's rows of the projection ([head_dim, hidden]); W_O: the head's columns of o_proj ([hidden, head_dim])"));
    json_object_set_new(out, "layers", layers);
    model_close(m);
    *doc = out;
    return TP_OK;
}

tp_status inspect_phase_run(const tp_config *cfg, const char *run_dir)
{
    json_t *doc = NULL;
    TP_CHECK(inspect_build(cfg, &doc));
    if (!doc) return TP_OK;   /* not rank 0 */
    char path[TP_PATH_MAX];
    tp_status st = run_path(path, sizeof path, run_dir, RUN_ARCHITECTURE_JSON);
    if (st == TP_OK) st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, doc);
    json_decref(doc);
    if (st == TP_OK) tp_log_info("inspect: wrote %s", path);
    return st;
}

static void inspect_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_ARCHITECTURE_JSON);
    if (!j) return;
    json_t *cfg = json_object_get(j, "config");
    snprintf(buf, n, "%s, %d layers, d = %d, %.1f M parameters", json_string_value(json_object_get(
                 json_object_get(j, "model"), "architecture")) ?: "?",
             (int)json_integer_value(json_object_get(cfg, "num_layers")),
             (int)json_integer_value(json_object_get(cfg, "hidden_size")),
             (double)json_integer_value(json_object_get(json_object_get(j, "parameters"), "total")) / 1e6);
    json_decref(j);
}

static const char *const inspect_outputs[] = {RUN_ARCHITECTURE_JSON, NULL};
static const char *const inspect_reads[] = {"model.", NULL};

static const char *const inspect_faults[] = {"layer", NULL};
const tp_phase inspect_phase = {
    .name = "inspect",
    .help = "phase 1: architecture, parameter counts, weight spectra -> results/architecture.json",
    .run = inspect_phase_run,
    .outputs = inspect_outputs,
    .config = &inspect_section,
    .reads = inspect_reads,
    .needs = NULL,
    .headline = inspect_headline,
    .faults = inspect_faults,
};
