#include "model/model_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

const char *model_arch_name(tp_arch a) { return a == TP_ARCH_OLMO2 ? "olmo2" : "llama"; }

const char *model_rope_type_name(tp_rope_type t)
{
    switch (t) {
    case TP_ROPE_DEFAULT: return "default";
    case TP_ROPE_LLAMA3: return "llama3";
    case TP_ROPE_LINEAR: return "linear";
    }
    return "?";
}

/* Reads an integer key; `required` decides whether absence is an error. */
static tp_status get_int(json_t *root, const char *path, const char *key, int required,
                         int dflt, int *out)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return tp_err(TP_ERR_FORMAT, "%s: missing key '%s'", path, key);
        *out = dflt;
        return TP_OK;
    }
    if (!json_is_integer(v))
        return tp_err(TP_ERR_FORMAT, "%s: key '%s' must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < -1 || x > 1000000000)
        return tp_err(TP_ERR_FORMAT, "%s: key '%s' = %lld out of range", path, key, (long long)x);
    *out = (int)x;
    return TP_OK;
}

static tp_status get_num(json_t *obj, const char *path, const char *key, int required,
                         double dflt, double *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        if (required) return tp_err(TP_ERR_FORMAT, "%s: missing key '%s'", path, key);
        *out = dflt;
        return TP_OK;
    }
    if (!json_is_number(v))
        return tp_err(TP_ERR_FORMAT, "%s: key '%s' must be a number", path, key);
    *out = json_number_value(v);
    if (!isfinite(*out))
        return tp_err(TP_ERR_FORMAT, "%s: key '%s' is not finite", path, key);
    return TP_OK;
}

/* An id key may be an integer, null, or a list (eos_token_id: [1, 2]); take the first. */
static int get_token_id(json_t *root, const char *key)
{
    json_t *v = json_object_get(root, key);
    if (json_is_array(v) && json_array_size(v) > 0) v = json_array_get(v, 0);
    return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

static tp_status parse_rope(json_t *root, const char *path, tp_model_config *c)
{
    /* transformers 5 writes rope_parameters {rope_type, rope_theta, ...}; 4.x writes
     * rope_theta at top level and rope_scaling {rope_type|type, factor, ...} or null. */
    json_t *params = json_object_get(root, "rope_parameters");
    json_t *scaling = json_object_get(root, "rope_scaling");
    json_t *src = json_is_object(params) ? params : (json_is_object(scaling) ? scaling : NULL);

    double theta = 10000.0;
    TP_CHECK(get_num(root, path, "rope_theta", 0, theta, &theta));
    if (json_is_object(params)) TP_CHECK(get_num(params, path, "rope_theta", 0, theta, &theta));
    c->rope_theta = theta;
    if (!(theta > 0)) return tp_err(TP_ERR_FORMAT, "%s: rope_theta must be > 0", path);

    c->rope_type = TP_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (!src) return TP_OK;
    json_t *t = json_object_get(src, "rope_type");
    if (!json_is_string(t)) t = json_object_get(src, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "default";
    if (strcmp(type, "default") == 0) return TP_OK;
    if (strcmp(type, "linear") == 0) {
        c->rope_type = TP_ROPE_LINEAR;
        TP_CHECK(get_num(src, path, "factor", 1, 1.0, &c->rope_factor));
        return TP_OK;
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_type = TP_ROPE_LLAMA3;
        TP_CHECK(get_num(src, path, "factor", 1, 1.0, &c->rope_factor));
        TP_CHECK(get_num(src, path, "low_freq_factor", 1, 1.0, &c->rope_low_freq_factor));
        TP_CHECK(get_num(src, path, "high_freq_factor", 1, 1.0, &c->rope_high_freq_factor));
        double omax = 0;
        TP_CHECK(get_num(src, path, "original_max_position_embeddings", 1, 0, &omax));
        c->rope_original_max_pos = (int)omax;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || omax <= 0)
            return tp_err(TP_ERR_FORMAT, "%s: llama3 rope parameters inconsistent", path);
        return TP_OK;
    }
    return tp_err(TP_ERR_UNSUPPORTED, "%s: rope type '%s' is not supported (default, linear, llama3)",
                  path, type);
}

static tp_status parse(json_t *root, const char *path, tp_model_config *c)
{
    if (!json_is_object(root)) return tp_err(TP_ERR_FORMAT, "%s: not a JSON object", path);
    memset(c, 0, sizeof *c);

    json_t *archs = json_object_get(root, "architectures");
    json_t *mt = json_object_get(root, "model_type");
    const char *arch = (json_is_array(archs) && json_is_string(json_array_get(archs, 0)))
                           ? json_string_value(json_array_get(archs, 0)) : "";
    const char *mtype = json_is_string(mt) ? json_string_value(mt) : "";
    snprintf(c->architecture, sizeof c->architecture, "%s", arch);
    snprintf(c->model_type, sizeof c->model_type, "%s", mtype);
    if (!strcmp(arch, "Olmo2ForCausalLM") || !strcmp(arch, "Olmo1124ForCausalLM") ||
        (!arch[0] && (!strcmp(mtype, "olmo2") || !strcmp(mtype, "olmo_1124"))))
        c->arch = TP_ARCH_OLMO2;
    else if (!strcmp(arch, "LlamaForCausalLM") || (!arch[0] && !strcmp(mtype, "llama")))
        c->arch = TP_ARCH_LLAMA;
    else
        return tp_err(TP_ERR_UNSUPPORTED,
                      "%s: architecture '%s' (model_type '%s') is not supported; "
                      "supported: Olmo2ForCausalLM, Olmo1124ForCausalLM, LlamaForCausalLM",
                      path, arch[0] ? arch : "(none)", mtype[0] ? mtype : "(none)");

    TP_CHECK(get_int(root, path, "vocab_size", 1, 0, &c->vocab_size));
    TP_CHECK(get_int(root, path, "hidden_size", 1, 0, &c->hidden_size));
    TP_CHECK(get_int(root, path, "intermediate_size", 1, 0, &c->intermediate_size));
    TP_CHECK(get_int(root, path, "num_hidden_layers", 1, 0, &c->num_layers));
    TP_CHECK(get_int(root, path, "num_attention_heads", 1, 0, &c->num_heads));
    TP_CHECK(get_int(root, path, "num_key_value_heads", 0, c->num_heads, &c->num_kv_heads));
    TP_CHECK(get_int(root, path, "max_position_embeddings", 0, 4096, &c->max_position_embeddings));
    int hd_default = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
    TP_CHECK(get_int(root, path, "head_dim", 0, hd_default, &c->head_dim));
    TP_CHECK(get_num(root, path, "rms_norm_eps", 0, 1e-6, &c->rms_norm_eps));
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    c->tie_word_embeddings = json_is_boolean(tie) ? json_is_true(tie) : 0;
    json_t *td = json_object_get(root, "torch_dtype");
    if (!json_is_string(td)) td = json_object_get(root, "dtype");
    if (json_is_string(td)) snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", json_string_value(td));
    c->bos_token_id = get_token_id(root, "bos_token_id");
    c->eos_token_id = get_token_id(root, "eos_token_id");
    c->pad_token_id = get_token_id(root, "pad_token_id");

    json_t *ab = json_object_get(root, "attention_bias");
    if (json_is_true(ab))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: attention_bias=true is not supported", path);
    json_t *mb = json_object_get(root, "mlp_bias");
    if (json_is_true(mb))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: mlp_bias=true is not supported", path);
    json_t *act = json_object_get(root, "hidden_act");
    if (json_is_string(act) && strcmp(json_string_value(act), "silu") != 0)
        return tp_err(TP_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu)", path,
                      json_string_value(act));

    if (c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1 ||
        c->num_layers < 1 || c->num_heads < 1 || c->num_kv_heads < 1 || c->head_dim < 1)
        return tp_err(TP_ERR_FORMAT, "%s: sizes must be positive", path);
    if (c->max_position_embeddings < 1)
        return tp_err(TP_ERR_FORMAT, "%s: max_position_embeddings = %d must be > 0", path, c->max_position_embeddings);
    if (c->num_heads % c->num_kv_heads)
        return tp_err(TP_ERR_FORMAT, "%s: num_attention_heads (%d) not a multiple of num_key_value_heads (%d)",
                      path, c->num_heads, c->num_kv_heads);
    if (c->head_dim % 2)
        return tp_err(TP_ERR_FORMAT, "%s: head_dim %d must be even for RoPE", path, c->head_dim);
    if (!(c->rms_norm_eps > 0))
        return tp_err(TP_ERR_FORMAT, "%s: rms_norm_eps must be > 0", path);
    return parse_rope(root, path, c);
}

tp_status model_config_load(const char *path, tp_model_config *out)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f) return tp_err(TP_ERR_IO, "%s: cannot open model config (no config.json?)", path);
        fclose(f);
        return tp_err(TP_ERR_FORMAT, "%s:%d: invalid JSON: %s", path, jerr.line, jerr.text);
    }
    tp_status st = parse(root, path, out);
    if (st == TP_OK) {
        /* The model's name for exports and reports: what transformers recorded, or
         * the directory config.json sits in. */
        const char *nm = json_string_value(json_object_get(root, "_name_or_path"));
        if (nm && *nm) {
            snprintf(out->name, sizeof out->name, "%s", nm);
        } else {
            char dir[sizeof out->name];
            snprintf(dir, sizeof dir, "%s", path);
            char *slash = strrchr(dir, '/');
            if (slash) *slash = '\0';
            else snprintf(dir, sizeof dir, ".");
            while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/') dir[strlen(dir) - 1] = '\0';
            const char *base = strrchr(dir, '/');
            snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : dir);
        }
    }
    json_decref(root);
    return st;
}
