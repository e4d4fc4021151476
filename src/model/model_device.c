/* model_device.c — the model's weights on a device backend (contract in model.h).
 *
 * Resident: one device block holds the f32 norm vectors and every matrix in its
 * stored dtype, uploaded once; a second tp_model, the view, points into it.
 * Streaming (the weights do not fit, or asked for): the block holds the norms, the
 * embedding and lm_head, and two layer slots; layer L's matrices in the view point
 * into slot L % 2, so consecutive layers (forward or backward) always use different
 * slots. model_weights_need(L, next) makes L resident (a copy only if the slot holds
 * another layer), makes the ops queued after it wait for that copy, then queues the
 * copy of `next` into the other slot: be_prefetch orders it after the work queued so
 * far (the layer that last read that slot) and runs it on the backend's copy lane, so
 * it overlaps layer L's compute.
 *
 * The host model is left as it is (the analyses read its weights on the host). */
#include "model/model.h"

#include "core/log.h"

#include <stdlib.h>

#define DEVICE_ALIGN 256   /* cudaMalloc's own alignment: every matrix starts on one */

static size_t align_up(size_t n) { return (n + DEVICE_ALIGN - 1) / DEVICE_ALIGN * DEVICE_ALIGN; }

static size_t mat_bytes(const tp_mat *w) { return (size_t)w->rows * (size_t)w->cols * tp_dtype_size(w->dtype); }

struct tp_weight_stream {
    char *slot[2];      /* [be] one layer's seven matrices each */
    size_t off[7];      /* offset of each matrix in a slot (model_layer_mats order) */
    int slot_layer[2];  /* the layer each slot holds, -1: none */
};

static void layer_mats_rw(tp_layer *l, tp_mat *out[7])
{
    tp_mat *all[7] = {&l->q, &l->k, &l->v, &l->o, &l->gate, &l->up, &l->down};
    for (int i = 0; i < 7; i++) out[i] = all[i];
}

static size_t layer_bytes(const tp_model *m, int L)
{
    const tp_mat *lm[7];
    model_layer_mats(m, L, lm, NULL);
    size_t n = 0;
    for (int i = 0; i < 7; i++) n += align_up(mat_bytes(lm[i]));
    return n;
}

static size_t norm_bytes(const tp_model_config *c)
{
    size_t d = (size_t)c->hidden_size, qd = (size_t)c->num_heads * (size_t)c->head_dim,
           kd = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    return (d + (size_t)c->num_layers * (2 * d + qd + kd)) * sizeof(float);   /* as model_open sized it */
}

/* Streaming needs every layer laid out like layer 0 (one slot layout for all). */
static tp_status check_uniform(const tp_model *m)
{
    const tp_mat *l0[7], *lm[7];
    model_layer_mats(m, 0, l0, NULL);
    for (int L = 1; L < m->cfg.num_layers; L++) {
        model_layer_mats(m, L, lm, NULL);
        for (int i = 0; i < 7; i++)
            if (lm[i]->dtype != l0[i]->dtype)
                return tp_err(TP_ERR_UNSUPPORTED, "%s: weight streaming needs one dtype per matrix kind, but %s is %s "
                              "and %s is %s", m->dir, lm[i]->name, tp_dtype_name(lm[i]->dtype), l0[i]->name,
                              tp_dtype_name(l0[i]->dtype));
    }
    return TP_OK;
}

/* The view: a copy of the model struct with its own layer array. */
static tp_model *view_new(const tp_model *m)
{
    tp_model *v = tp_malloc(sizeof *v);
    if (!v) return NULL;
    *v = *m;
    v->st = NULL, v->norm_storage = NULL, v->upfront_storage = NULL, v->on_device = NULL, v->stream = NULL;
    v->layers = tp_malloc((size_t)m->cfg.num_layers * sizeof *v->layers);
    if (!v->layers) {
        free(v);
        return NULL;
    }
    for (int L = 0; L < m->cfg.num_layers; L++) v->layers[L] = m->layers[L];
    return v;
}

static tp_status upload_mat(tp_backend *be, char **p, tp_mat *w)
{
    TP_CHECK(be_upload(be, *p, w->data, mat_bytes(w)));
    w->data = *p;
    *p += align_up(mat_bytes(w));
    return TP_OK;
}

/* Norms, embedding and lm_head (tied: one copy) from *p on, the view repointed. */
static tp_status upload_shared(const tp_model *m, tp_backend *be, tp_model *v, char **p)
{
    const tp_model_config *c = &m->cfg;
    TP_CHECK(be_upload(be, *p, m->norm_storage, norm_bytes(c)));
    float *dn = (float *)*p;
#define MOVE(ptr) ((ptr) ? dn + ((ptr) - m->norm_storage) : NULL)
    v->final_norm = MOVE(m->final_norm);
    for (int L = 0; L < c->num_layers; L++) {
        tp_layer *l = &v->layers[L];
        l->q_norm = MOVE(l->q_norm), l->k_norm = MOVE(l->k_norm);
        l->norm1 = MOVE(l->norm1), l->norm2 = MOVE(l->norm2);
    }
#undef MOVE
    *p += align_up(norm_bytes(c));
    int tied = m->lm_head.data == m->embed.data;
    TP_CHECK(upload_mat(be, p, &v->embed));
    if (tied) v->lm_head = v->embed;
    else TP_CHECK(upload_mat(be, p, &v->lm_head));
    return TP_OK;
}

static size_t shared_bytes(const tp_model *m)
{
    size_t n = align_up(norm_bytes(&m->cfg)) + align_up(mat_bytes(&m->embed));
    if (m->lm_head.data != m->embed.data) n += align_up(mat_bytes(&m->lm_head));
    return n;
}

static tp_status fill_resident(const tp_model *m, tp_backend *be, tp_model *v, char *p)
{
    TP_CHECK(upload_shared(m, be, v, &p));
    for (int L = 0; L < m->cfg.num_layers; L++) {
        tp_mat *lm[7];
        layer_mats_rw(&v->layers[L], lm);
        for (int i = 0; i < 7; i++) TP_CHECK(upload_mat(be, &p, lm[i]));
    }
    return TP_OK;
}

static tp_status fill_streaming(const tp_model *m, tp_backend *be, tp_model *v, char *p, struct tp_weight_stream *ws)
{
    TP_CHECK(upload_shared(m, be, v, &p));
    const tp_mat *l0[7];
    model_layer_mats(m, 0, l0, NULL);
    size_t off = 0;
    for (int i = 0; i < 7; i++) ws->off[i] = off, off += align_up(mat_bytes(l0[i]));
    ws->slot[0] = p, ws->slot[1] = p + off;
    ws->slot_layer[0] = ws->slot_layer[1] = -1;
    for (int L = 0; L < m->cfg.num_layers; L++) {
        tp_mat *lm[7];
        layer_mats_rw(&v->layers[L], lm);
        for (int i = 0; i < 7; i++) lm[i]->data = ws->slot[L % 2] + ws->off[i];
    }
    return TP_OK;
}

tp_status model_upload(tp_model *m, tp_backend *be, tp_upload_mode mode)
{
    if (be->host_memory || m->on_device) return TP_OK;
    const tp_model_config *c = &m->cfg;
    size_t resident = shared_bytes(m);
    for (int L = 0; L < c->num_layers; L++) resident += layer_bytes(m, L);
    size_t streaming = shared_bytes(m) + 2 * layer_bytes(m, 0);

    void *block = NULL;
    size_t total = resident;
    int stream = mode == TP_UPLOAD_STREAM;
    if (!stream) {
        tp_status st = be_alloc(be, resident, &block);
        if (st == TP_ERR_NOMEM && mode == TP_UPLOAD_AUTO && c->num_layers > 2) {
            tp_log_info("%s: %.2f GB of weights do not fit on %s: streaming the layers (two slots, %.2f GB)", m->dir,
                        (double)resident / 1e9, be->name, (double)streaming / 1e9);
            stream = 1;
        } else {
            TP_CHECK(st);
        }
    }
    struct tp_weight_stream *ws = NULL;
    if (stream) {
        TP_CHECK(check_uniform(m));
        if (!(ws = tp_calloc(1, sizeof *ws))) return TP_ERR_NOMEM;
        total = streaming;
        tp_status st = be_alloc(be, streaming, &block);
        if (st != TP_OK) {
            free(ws);
            return st;
        }
    }
    tp_model *v = view_new(m);
    tp_status st = v ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = stream ? fill_streaming(m, be, v, block, ws) : fill_resident(m, be, v, block);
    if (st != TP_OK) {
        be_free(be, block);
        if (v) free(v->layers);
        free(v), free(ws);
        return st;
    }
    m->on_device = v, m->device_be = be, m->device_block = block, m->device_bytes = total, m->stream = ws;
    tp_log_info("%s: weights on %s (%.2f GB%s)", m->dir, be->name, (double)total / 1e9,
                stream ? ", layers streamed through two slots" : "");
    return TP_OK;
}

/* Layer L into its slot, unless it is there already. */
static tp_status stream_fill(const tp_model *m, tp_backend *be, int L)
{
    struct tp_weight_stream *ws = m->stream;
    int s = L % 2;
    if (ws->slot_layer[s] == L) return TP_OK;
    const tp_mat *lm[7];
    model_layer_mats(m, L, lm, NULL);
    for (int i = 0; i < 7; i++) TP_CHECK(be_prefetch(be, ws->slot[s] + ws->off[i], lm[i]->data, mat_bytes(lm[i])));
    ws->slot_layer[s] = L;
    return TP_OK;
}

tp_status model_weights_need(const tp_model *m, tp_backend *be, int L, int next)
{
    if (!m->stream || be != m->device_be) return TP_OK;
    if (L < 0 || L >= m->cfg.num_layers || next == L || (next >= 0 && next % 2 == L % 2))
        return tp_err(TP_ERR_INTERNAL, "model_weights_need: layer %d then %d (two slots: consecutive layers only)",
                      L, next);
    TP_CHECK(stream_fill(m, be, L));
    TP_CHECK(be_prefetch_wait(be));
    if (next >= 0 && next < m->cfg.num_layers) TP_CHECK(stream_fill(m, be, next));
    return TP_OK;
}

const tp_model *model_weights(const tp_model *m, const tp_backend *be)
{
    if (be->host_memory) return m;
    return m->device_be == be ? m->on_device : NULL;
}

void model_device_free(tp_model *m)
{
    if (!m->on_device) return;
    be_free(m->device_be, m->device_block);
    free(m->on_device->layers);
    free(m->on_device);
    free(m->stream);
    m->on_device = NULL, m->device_be = NULL, m->device_block = NULL, m->device_bytes = 0, m->stream = NULL;
}
