#include "model/model.h"

#include "core/fsutil.h"

#include "core/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Loader state: the set of tensors consumed, so unused ones can be reported. */
typedef struct {
    tp_model *m;
    const st_tensor **used;
    size_t n_used, cap_used;
    size_t norm_fill;
    int probe;      /* check shapes only: record nothing as used */
} loader;

static tp_status note_used(loader *ld, const st_tensor *t)
{
    if (ld->n_used == ld->cap_used) {
        size_t cap = ld->cap_used ? 2 * ld->cap_used : 64;
        const st_tensor **p = realloc(ld->used, cap * sizeof *p);
        if (!p) return tp_err(TP_ERR_NOMEM, "out of memory");
        ld->used = p, ld->cap_used = cap;
    }
    ld->used[ld->n_used++] = t;
    return TP_OK;
}

static tp_status find_tensor(loader *ld, const char *name, int ndim, int64_t d0, int64_t d1,
                             const st_tensor **out)
{
    const tp_model *m = ld->m;
    const st_tensor *t = st_find(m->st, name);
    if (!t)
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s' missing from the checkpoint", m->dir, name);
    if (!tp_dtype_is_float(t->dtype) || t->dtype == TP_DTYPE_F64)
        return tp_err(TP_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s; weights must be F32, BF16 or F16",
                      t->file, name, tp_dtype_name(t->dtype));
    int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok) {
        char got[96] = "", want[64];
        for (int i = 0; i < t->ndim; i++) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        }
        if (ndim == 1) snprintf(want, sizeof want, "%lld", (long long)d0);
        else snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s' has shape [%s] but config.json implies [%s]",
                      t->file, name, got, want);
    }
    if (!ld->probe) {
        /* Once per tensor, here at the border: a NaN weight (or F32 bytes labelled
         * F16) would otherwise come out as NaN logits with exit 0. */
        TP_CHECK(st_check_finite(t));
        TP_CHECK(note_used(ld, t));
    }
    *out = t;
    return TP_OK;
}

/* config.json's sizes decide the allocations in model_open: check them against the
 * checkpoint's tensors first (embedding, first and last layer), so a wrong size is
 * reported as the mismatch it is, not as running out of memory. */
static tp_status check_sizes(loader *ld)
{
    const tp_model_config *c = &ld->m->cfg;
    int64_t d = c->hidden_size, F = c->intermediate_size;
    int64_t qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    const st_tensor *t;
    char n[256];
    ld->probe = 1;
    tp_status st = find_tensor(ld, "model.embed_tokens.weight", 2, c->vocab_size, d, &t);
    int layers[2] = {0, c->num_layers - 1};
    for (int i = 0; i < 2 && st == TP_OK; i++) {
        snprintf(n, sizeof n, "model.layers.%d.self_attn.q_proj.weight", layers[i]);
        if (!st_find(ld->m->st, n)) {
            st = tp_err(TP_ERR_FORMAT, "%s/config.json: num_hidden_layers = %d but the checkpoint has no '%s'",
                        ld->m->dir, c->num_layers, n);
            break;
        }
        st = find_tensor(ld, n, 2, qd, d, &t);
        snprintf(n, sizeof n, "model.layers.%d.self_attn.k_proj.weight", layers[i]);
        if (st == TP_OK) st = find_tensor(ld, n, 2, kd, d, &t);
        snprintf(n, sizeof n, "model.layers.%d.mlp.gate_proj.weight", layers[i]);
        if (st == TP_OK) st = find_tensor(ld, n, 2, F, d, &t);
    }
    ld->probe = 0;
    return st;
}

static tp_status load_mat(loader *ld, const char *name, int64_t rows, int64_t cols, tp_mat *out)
{
    const st_tensor *t;
    TP_CHECK(find_tensor(ld, name, 2, rows, cols, &t));
    out->name = t->name;
    out->data = t->data;
    out->dtype = t->dtype;
    out->rows = rows;
    out->cols = cols;
    ld->m->n_params += rows * cols;
    return TP_OK;
}

static tp_status load_norm(loader *ld, const char *name, int64_t n, const float **out)
{
    const st_tensor *t;
    TP_CHECK(find_tensor(ld, name, 1, n, 0, &t));
    float *dst = ld->m->norm_storage + ld->norm_fill;
    tp_convert_to_f32(t->dtype, t->data, dst, (size_t)n);
    ld->norm_fill += (size_t)n;
    ld->m->n_params += n;
    *out = dst;
    return TP_OK;
}

static tp_status load_layer(loader *ld, int L)
{
    tp_model *m = ld->m;
    const tp_model_config *c = &m->cfg;
    tp_layer *l = &m->layers[L];
    int64_t d = c->hidden_size, F = c->intermediate_size;
    int64_t qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    char n[256];
#define NAME(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", L, suffix), n)
    TP_CHECK(load_mat(ld, NAME("self_attn.q_proj.weight"), qd, d, &l->q));
    TP_CHECK(load_mat(ld, NAME("self_attn.k_proj.weight"), kd, d, &l->k));
    TP_CHECK(load_mat(ld, NAME("self_attn.v_proj.weight"), kd, d, &l->v));
    TP_CHECK(load_mat(ld, NAME("self_attn.o_proj.weight"), d, qd, &l->o));
    TP_CHECK(load_mat(ld, NAME("mlp.gate_proj.weight"), F, d, &l->gate));
    TP_CHECK(load_mat(ld, NAME("mlp.up_proj.weight"), F, d, &l->up));
    TP_CHECK(load_mat(ld, NAME("mlp.down_proj.weight"), d, F, &l->down));
    if (c->arch == TP_ARCH_OLMO2) {
        TP_CHECK(load_norm(ld, NAME("self_attn.q_norm.weight"), qd, &l->q_norm));
        TP_CHECK(load_norm(ld, NAME("self_attn.k_norm.weight"), kd, &l->k_norm));
        TP_CHECK(load_norm(ld, NAME("post_attention_layernorm.weight"), d, &l->norm1));
        TP_CHECK(load_norm(ld, NAME("post_feedforward_layernorm.weight"), d, &l->norm2));
    } else {
        TP_CHECK(load_norm(ld, NAME("input_layernorm.weight"), d, &l->norm1));
        TP_CHECK(load_norm(ld, NAME("post_attention_layernorm.weight"), d, &l->norm2));
    }
#undef NAME
    return TP_OK;
}

int model_layer_mats(const tp_model *m, int L, const tp_mat **mats, const char **kinds)
{
    const tp_layer *l = &m->layers[L];
    const tp_mat *all[7] = {&l->q, &l->k, &l->v, &l->o, &l->gate, &l->up, &l->down};
    static const char *const names[7] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                         "gate_proj", "up_proj", "down_proj"};
    for (int i = 0; i < 7; i++) {
        mats[i] = all[i];
        if (kinds) kinds[i] = names[i];
    }
    return 7;
}

static void report_unused(loader *ld)
{
    const tp_model *m = ld->m;
    size_t n = st_count(m->st), extra = 0;
    char list[512] = "";
    for (size_t i = 0; i < n; i++) {
        const st_tensor *t = st_at(m->st, i);
        int used = 0;
        for (size_t j = 0; j < ld->n_used && !used; j++) used = ld->used[j] == t;
        /* A tied checkpoint may still carry lm_head.weight; that is expected. */
        if (used || (m->cfg.tie_word_embeddings && !strcmp(t->name, "lm_head.weight"))) continue;
        if (extra++ < 4) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", extra > 1 ? ", " : "", t->name);
        }
    }
    if (extra)
        tp_log_warn("%s: %zu tensor(s) in the checkpoint are not used: %s%s", m->dir, extra, list,
                    extra > 4 ? ", ..." : "");
}

/* Drops the mmap'ed pages of a converted matrix from memory: nothing reads them
 * again, and keeping them would hold both copies resident. Only whole pages inside
 * the range; failure is harmless (the pages just stay). */
static void release_pages(const void *data, size_t bytes)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)data + page - 1) & ~(page - 1), hi = ((uintptr_t)data + bytes) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Converts every non-f32 matrix once into one f32 block and repoints the views. */
static tp_status convert_upfront(tp_model *m)
{
    const tp_model_config *c = &m->cfg;
    tp_mat *mats[2 + 7 * 1024];
    size_t n = 0;
    mats[n++] = &m->embed;
    if (!c->tie_word_embeddings) mats[n++] = &m->lm_head;
    if (c->num_layers > 1024) return tp_err(TP_ERR_UNSUPPORTED, "more than 1024 layers");
    for (int L = 0; L < c->num_layers; L++) {
        tp_layer *l = &m->layers[L];
        tp_mat *lm[7] = {&l->q, &l->k, &l->v, &l->o, &l->gate, &l->up, &l->down};
        for (int i = 0; i < 7; i++) mats[n++] = lm[i];
    }
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (mats[i]->dtype != TP_DTYPE_F32) total += (size_t)(mats[i]->rows * mats[i]->cols);
    if (!total) return TP_OK;
    m->upfront_storage = tp_malloc(total * sizeof(float));
    if (!m->upfront_storage) return TP_ERR_NOMEM;
    m->upfront_bytes = total * sizeof(float);
    float *p = m->upfront_storage;
    for (size_t i = 0; i < n; i++) {
        tp_mat *w = mats[i];
        if (w->dtype == TP_DTYPE_F32) continue;
        size_t cnt = (size_t)(w->rows * w->cols);
        tp_convert_to_f32(w->dtype, w->data, p, cnt);
        release_pages(w->data, cnt * tp_dtype_size(w->dtype));
        w->data = p;
        w->dtype = TP_DTYPE_F32;
        p += cnt;
    }
    if (c->tie_word_embeddings) m->lm_head = m->embed;
    return TP_OK;
}

tp_status model_open(const char *dir, tp_convert_mode convert, tp_model **out)
{
    tp_status st = TP_OK;
    loader ld = {0};
    tp_model *m = tp_calloc(1, sizeof *m);
    if (!m) return TP_ERR_NOMEM;
    ld.m = m;
    m->convert = convert;
    char path[TP_PATH_MAX];
    TP_CHECK_GOTO(fs_path(m->dir, sizeof m->dir, "%s", dir), st, fail);
    TP_CHECK_GOTO(fs_join(path, sizeof path, dir, "config.json"), st, fail);
    TP_CHECK_GOTO(model_config_load(path, &m->cfg), st, fail);
    const tp_model_config *c = &m->cfg;
    TP_CHECK_GOTO(st_open_dir(dir, &m->st), st, fail);
    TP_CHECK_GOTO(check_sizes(&ld), st, fail);

    int64_t d = c->hidden_size;
    int64_t qd = (int64_t)c->num_heads * c->head_dim, kd = (int64_t)c->num_kv_heads * c->head_dim;
    size_t norm_total = (size_t)d + (size_t)c->num_layers * (size_t)(2 * d + qd + kd);
    m->norm_storage = tp_calloc(norm_total, sizeof(float));
    m->layers = tp_calloc((size_t)c->num_layers, sizeof *m->layers);
    if (!m->norm_storage || !m->layers) { st = TP_ERR_NOMEM; goto fail; }

    TP_CHECK_GOTO(load_mat(&ld, "model.embed_tokens.weight", c->vocab_size, d, &m->embed), st, fail);
    for (int L = 0; L < c->num_layers; L++) TP_CHECK_GOTO(load_layer(&ld, L), st, fail);
    TP_CHECK_GOTO(load_norm(&ld, "model.norm.weight", d, &m->final_norm), st, fail);
    if (c->tie_word_embeddings) {
        m->lm_head = m->embed;
    } else {
        TP_CHECK_GOTO(load_mat(&ld, "lm_head.weight", c->vocab_size, d, &m->lm_head), st, fail);
    }
    m->weight_dtype = m->layers[0].gate.dtype;
    report_unused(&ld);
    if (convert == TP_CONVERT_UPFRONT) TP_CHECK_GOTO(convert_upfront(m), st, fail);
    TP_CHECK_GOTO(model_upload(m, backend_default(), TP_UPLOAD_AUTO), st, fail);
    free(ld.used);
    *out = m;
    return TP_OK;
fail:
    free(ld.used);
    model_close(m);
    return st;
}

void model_close(tp_model *m)
{
    if (!m) return;
    model_device_free(m);
    st_close(m->st);
    free(m->norm_storage);
    free(m->layers);
    free(m->upfront_storage);
    free(m);
}

tp_status model_validate_layers(const tp_model *m, const int64_t *layers, size_t n, const char *origin)
{
    for (size_t i = 0; i < n; i++)
        if (layers[i] < 0 || layers[i] >= m->cfg.num_layers)
            return tp_err(TP_ERR_RANGE, "%s: layers: layer %lld out of range (%s has layers 0..%d)",
                          origin, (long long)layers[i], m->dir, m->cfg.num_layers - 1);
    return TP_OK;
}
