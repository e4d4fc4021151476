#include "model/hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hook_cb {
    tp_hook_fn fn;
    void *user;
    bool edits;            /* may overwrite the tensor */
    bool device;           /* takes the backend's memory (hooks_add_device_reader) */
    struct hook_cb *next;
} hook_cb;

struct tp_hooks {
    int num_layers;
    hook_cb **slots;       /* (num_layers + 1) * TP_HOOK_POINT_COUNT; last row = global */
};

static const char *const suffixes[TP_HOOK_POINT_COUNT] = {
    [TP_HOOK_RESID_PRE] = "hook_resid_pre",
    [TP_HOOK_Q] = "attn.hook_q",
    [TP_HOOK_K] = "attn.hook_k",
    [TP_HOOK_V] = "attn.hook_v",
    [TP_HOOK_ROT_Q] = "attn.hook_rot_q",
    [TP_HOOK_ROT_K] = "attn.hook_rot_k",
    [TP_HOOK_PATTERN] = "attn.hook_pattern",
    [TP_HOOK_Z] = "attn.hook_z",
    [TP_HOOK_ATTN_O] = "attn.hook_out",
    [TP_HOOK_ATTN_OUT] = "hook_attn_out",
    [TP_HOOK_RESID_MID] = "hook_resid_mid",
    [TP_HOOK_MLP_PRE] = "mlp.hook_pre",
    [TP_HOOK_MLP_PRE_LINEAR] = "mlp.hook_pre_linear",
    [TP_HOOK_MLP_POST] = "mlp.hook_post",
    [TP_HOOK_MLP_O] = "mlp.hook_out",
    [TP_HOOK_MLP_OUT] = "hook_mlp_out",
    [TP_HOOK_RESID_POST] = "hook_resid_post",
    [TP_HOOK_EMBED] = "hook_embed",
    [TP_HOOK_LN_FINAL] = "ln_final.hook_normalized",
};

const char *hooks_point_suffix(tp_hook_point pt)
{
    return (pt >= 0 && pt < TP_HOOK_POINT_COUNT) ? suffixes[pt] : "?";
}

const char *hooks_point_name(int layer, tp_hook_point pt, char *buf, size_t n)
{
    if (pt >= TP_HOOK_LAYER_COUNT) snprintf(buf, n, "%s", suffixes[pt]);
    else snprintf(buf, n, "blocks.%d.%s", layer, suffixes[pt]);
    return buf;
}

int hooks_point_shape(const tp_model_config *c, tp_hook_point pt, int B, int T, int64_t shape[4])
{
    shape[0] = B, shape[1] = T;
    switch (pt) {
    case TP_HOOK_Q: case TP_HOOK_ROT_Q: case TP_HOOK_Z:
        shape[2] = c->num_heads, shape[3] = c->head_dim;
        return 4;
    case TP_HOOK_K: case TP_HOOK_ROT_K: case TP_HOOK_V:
        shape[2] = c->num_kv_heads, shape[3] = c->head_dim;
        return 4;
    case TP_HOOK_PATTERN:
        shape[1] = c->num_heads, shape[2] = T, shape[3] = T;
        return 4;
    case TP_HOOK_MLP_PRE: case TP_HOOK_MLP_PRE_LINEAR: case TP_HOOK_MLP_POST:
        shape[2] = c->intermediate_size;
        return 3;
    default:
        shape[2] = c->hidden_size;
        return 3;
    }
}

tp_status hooks_new(int num_layers, tp_hooks **out)
{
    tp_hooks *h = tp_calloc(1, sizeof *h);
    if (!h) return TP_ERR_NOMEM;
    h->num_layers = num_layers;
    h->slots = tp_calloc((size_t)(num_layers + 1) * TP_HOOK_POINT_COUNT, sizeof *h->slots);
    if (!h->slots) { free(h); return TP_ERR_NOMEM; }
    *out = h;
    return TP_OK;
}

void hooks_free(tp_hooks *h)
{
    if (!h) return;
    size_t n = (size_t)(h->num_layers + 1) * TP_HOOK_POINT_COUNT;
    for (size_t i = 0; i < n; i++) {
        for (hook_cb *c = h->slots[i]; c;) {
            hook_cb *next = c->next;
            free(c);
            c = next;
        }
    }
    free(h->slots);
    free(h);
}

static hook_cb **slot(const tp_hooks *h, int layer, tp_hook_point pt)
{
    int row = pt >= TP_HOOK_LAYER_COUNT ? h->num_layers : layer;
    return &h->slots[(size_t)row * TP_HOOK_POINT_COUNT + (size_t)pt];
}

static tp_status add_cb(tp_hooks *h, int layer, tp_hook_point pt, tp_hook_fn fn, void *user, bool edits,
                        bool device)
{
    if (pt < 0 || pt >= TP_HOOK_POINT_COUNT)
        return tp_err(TP_ERR_RANGE, "hook point %d out of range", (int)pt);
    if (pt < TP_HOOK_LAYER_COUNT && (layer < 0 || layer >= h->num_layers))
        return tp_err(TP_ERR_RANGE, "hook layer %d out of range [0, %d)", layer, h->num_layers);
    hook_cb *c = tp_calloc(1, sizeof *c);
    if (!c) return TP_ERR_NOMEM;
    c->fn = fn;
    c->user = user;
    c->edits = edits;
    c->device = device;
    hook_cb **p = slot(h, layer, pt);
    while (*p) p = &(*p)->next;
    *p = c;
    return TP_OK;
}

tp_status hooks_add(tp_hooks *h, int layer, tp_hook_point pt, tp_hook_fn fn, void *user)
{
    return add_cb(h, layer, pt, fn, user, true, false);
}

tp_status hooks_add_reader(tp_hooks *h, int layer, tp_hook_point pt, tp_hook_fn fn, void *user)
{
    return add_cb(h, layer, pt, fn, user, false, false);
}

tp_status hooks_add_device_reader(tp_hooks *h, int layer, tp_hook_point pt, tp_hook_fn fn, void *user)
{
    return add_cb(h, layer, pt, fn, user, false, true);
}

bool hooks_active(const tp_hooks *h, int layer, tp_hook_point pt)
{
    return h && *slot(h, layer, pt) != NULL;
}

bool hooks_point_host(const tp_hooks *h, int layer, tp_hook_point pt)
{
    if (!h) return false;
    for (const hook_cb *c = *slot(h, layer, pt); c; c = c->next)
        if (!c->device) return true;
    return false;
}

bool hooks_point_edits(const tp_hooks *h, int layer, tp_hook_point pt)
{
    if (!h) return false;
    for (const hook_cb *c = *slot(h, layer, pt); c; c = c->next)
        if (c->edits) return true;
    return false;
}

static tp_status fire_kind(const tp_hooks *h, const tp_hook_info *info, float *data, bool device)
{
    if (!h) return TP_OK;
    for (hook_cb *c = *slot(h, info->layer, info->point); c; c = c->next)
        if (c->device == device) TP_CHECK(c->fn(info, data, c->user));
    return TP_OK;
}

tp_status hooks_fire(const tp_hooks *h, const tp_hook_info *info, float *data)
{
    return fire_kind(h, info, data, false);
}

tp_status hooks_fire_device(const tp_hooks *h, const tp_hook_info *info, float *data)
{
    return fire_kind(h, info, data, true);
}

/* Hugging Face module paths after "model.layers.L." and the point they denote.
 * `arch` -1 = both architectures. */
typedef struct {
    const char *path;
    int arch;
    tp_hook_point pt;
} hf_alias;

static const hf_alias hf_aliases[] = {
    {"", -1, TP_HOOK_RESID_POST},
    {".input", -1, TP_HOOK_RESID_PRE},
    {".self_attn", -1, TP_HOOK_ATTN_O},
    {".self_attn.o_proj", -1, TP_HOOK_ATTN_O},
    {".self_attn.o_proj.input", -1, TP_HOOK_Z},
    {".self_attn.q_norm", TP_ARCH_OLMO2, TP_HOOK_Q},
    {".self_attn.k_norm", TP_ARCH_OLMO2, TP_HOOK_K},
    {".self_attn.q_proj", TP_ARCH_LLAMA, TP_HOOK_Q},
    {".self_attn.k_proj", TP_ARCH_LLAMA, TP_HOOK_K},
    {".self_attn.v_proj", -1, TP_HOOK_V},
    {".post_attention_layernorm", TP_ARCH_OLMO2, TP_HOOK_ATTN_OUT},
    {".mlp", -1, TP_HOOK_MLP_O},
    {".mlp.down_proj", -1, TP_HOOK_MLP_O},
    {".mlp.down_proj.input", -1, TP_HOOK_MLP_POST},
    {".mlp.gate_proj", -1, TP_HOOK_MLP_PRE},
    {".mlp.up_proj", -1, TP_HOOK_MLP_PRE_LINEAR},
    {".post_feedforward_layernorm", TP_ARCH_OLMO2, TP_HOOK_MLP_OUT},
};

/* Parses a decimal layer index at *s, advancing it; -1 if none. */
static long parse_layer(const char **s)
{
    const char *p = *s;
    if (*p < '0' || *p > '9') return -1;
    long v = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        if (v > 1000000) return -1;
        p++;
    }
    *s = p;
    return v;
}

static tp_status check_layer(const tp_model_config *cfg, const char *name, long layer)
{
    if (layer < 0 || layer >= cfg->num_layers)
        return tp_err(TP_ERR_RANGE, "hook '%s': layer %ld out of range (model has layers 0..%d)",
                      name, layer, cfg->num_layers - 1);
    return TP_OK;
}

tp_status hooks_parse_name(const tp_model_config *cfg, const char *name, int *layer,
                           tp_hook_point *pt)
{
    if (!strcmp(name, "hook_embed") || !strcmp(name, "model.embed_tokens")) {
        *layer = -1, *pt = TP_HOOK_EMBED;
        return TP_OK;
    }
    if (!strcmp(name, "ln_final.hook_normalized") || !strcmp(name, "model.norm")) {
        *layer = -1, *pt = TP_HOOK_LN_FINAL;
        return TP_OK;
    }
    const char *p = name;
    if (!strncmp(p, "blocks.", 7)) {
        p += 7;
        long L = parse_layer(&p);
        if (L < 0 || *p != '.')
            return tp_err(TP_ERR_CONFIG, "hook '%s': expected blocks.<layer>.<point>", name);
        p++;
        for (int i = 0; i < TP_HOOK_LAYER_COUNT; i++) {
            if (!strcmp(p, suffixes[i])) {
                TP_CHECK(check_layer(cfg, name, L));
                *layer = (int)L, *pt = (tp_hook_point)i;
                return TP_OK;
            }
        }
        return tp_err(TP_ERR_CONFIG, "hook '%s': unknown point '%s' (see docs/hooks.md)", name, p);
    }
    if (!strncmp(p, "model.layers.", 13)) {
        p += 13;
        long L = parse_layer(&p);
        if (L < 0) return tp_err(TP_ERR_CONFIG, "hook '%s': expected model.layers.<layer>...", name);
        for (size_t i = 0; i < sizeof hf_aliases / sizeof *hf_aliases; i++) {
            const hf_alias *a = &hf_aliases[i];
            if (strcmp(p, a->path) != 0) continue;
            if (a->arch >= 0 && a->arch != (int)cfg->arch)
                return tp_err(TP_ERR_CONFIG, "hook '%s': module '%s' does not exist in %s models",
                              name, a->path + 1, model_arch_name(cfg->arch));
            TP_CHECK(check_layer(cfg, name, L));
            *layer = (int)L, *pt = a->pt;
            return TP_OK;
        }
        return tp_err(TP_ERR_CONFIG, "hook '%s': unknown module path (see docs/hooks.md)", name);
    }
    return tp_err(TP_ERR_CONFIG, "hook '%s': unknown capture point (see docs/hooks.md)", name);
}

tp_status hooks_add_named(tp_hooks *h, const tp_model_config *cfg, const char *name,
                          tp_hook_fn fn, void *user)
{
    int layer;
    tp_hook_point pt;
    TP_CHECK(hooks_parse_name(cfg, name, &layer, &pt));
    return hooks_add(h, layer, pt, fn, user);
}
