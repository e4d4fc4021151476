/* model_device.c — the model's weights on a device backend (contract in model.h):
 * one device block holding every matrix in its stored dtype and the f32 norm vectors,
 * uploaded once, and a second tp_model view whose pointers point into it. The host
 * model is left as it is (the analyses read its weights on the host). */
#include "model/model.h"

#include "core/log.h"

#include <stdlib.h>

#define DEVICE_ALIGN 256   /* cudaMalloc's own alignment: every matrix starts on one */

static size_t align_up(size_t n) { return (n + DEVICE_ALIGN - 1) / DEVICE_ALIGN * DEVICE_ALIGN; }

static size_t mat_bytes(const tp_mat *w) { return (size_t)w->rows * (size_t)w->cols * tp_dtype_size(w->dtype); }

/* The matrices of the view in upload order; a tied lm_head is the embedding's. */
static int view_mats(tp_model *v, tp_mat **mats)
{
    int n = 0;
    mats[n++] = &v->embed;
    if (v->lm_head.data != v->embed.data) mats[n++] = &v->lm_head;
    return n;
}

tp_status model_upload(tp_model *m, tp_backend *be)
{
    const tp_model_config *c = &m->cfg;
    if (be->host_memory || m->on_device) return TP_OK;
    size_t d = (size_t)c->hidden_size, qd = (size_t)c->num_heads * (size_t)c->head_dim,
           kd = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    size_t norm_bytes = (d + (size_t)c->num_layers * (2 * d + qd + kd)) * sizeof(float);   /* as model_open sized it */

    tp_model *v = tp_malloc(sizeof *v);
    if (!v) return TP_ERR_NOMEM;
    *v = *m;
    v->st = NULL, v->norm_storage = NULL, v->upfront_storage = NULL, v->on_device = NULL;
    v->layers = tp_malloc((size_t)c->num_layers * sizeof *v->layers);
    if (!v->layers) {
        free(v);
        return TP_ERR_NOMEM;
    }
    for (int L = 0; L < c->num_layers; L++) v->layers[L] = m->layers[L];

    tp_mat *head[2];
    int nhead = view_mats(v, head);
    size_t total = align_up(norm_bytes);
    for (int i = 0; i < nhead; i++) total += align_up(mat_bytes(head[i]));
    for (int L = 0; L < c->num_layers; L++) {
        const tp_mat *lm[7];
        model_layer_mats(m, L, lm, NULL);
        for (int i = 0; i < 7; i++) total += align_up(mat_bytes(lm[i]));
    }

    void *block = NULL;
    tp_status st = be_alloc(be, total, &block);
    char *p = block;
    if (st == TP_OK) st = be_upload(be, p, m->norm_storage, norm_bytes);
    if (st == TP_OK) {
        /* every norm pointer moves by the same offset into the device copy */
        float *dn = (float *)p;
#define MOVE(ptr) ((ptr) ? dn + ((ptr) - m->norm_storage) : NULL)
        v->final_norm = MOVE(m->final_norm);
        for (int L = 0; L < c->num_layers; L++) {
            tp_layer *l = &v->layers[L];
            l->q_norm = MOVE(l->q_norm), l->k_norm = MOVE(l->k_norm);
            l->norm1 = MOVE(l->norm1), l->norm2 = MOVE(l->norm2);
        }
#undef MOVE
        p += align_up(norm_bytes);
    }
    for (int i = 0; i < nhead && st == TP_OK; i++) {
        st = be_upload(be, p, head[i]->data, mat_bytes(head[i]));
        head[i]->data = p;
        p += align_up(mat_bytes(head[i]));
    }
    if (st == TP_OK && nhead == 1) v->lm_head = v->embed;   /* tied */
    for (int L = 0; L < c->num_layers && st == TP_OK; L++) {
        tp_layer *l = &v->layers[L];
        tp_mat *lm[7] = {&l->q, &l->k, &l->v, &l->o, &l->gate, &l->up, &l->down};
        for (int i = 0; i < 7 && st == TP_OK; i++) {
            st = be_upload(be, p, lm[i]->data, mat_bytes(lm[i]));
            lm[i]->data = p;
            p += align_up(mat_bytes(lm[i]));
        }
    }
    if (st != TP_OK) {
        be_free(be, block);
        free(v->layers);
        free(v);
        return st;
    }
    m->on_device = v, m->device_be = be, m->device_block = block, m->device_bytes = total;
    tp_log_info("%s: weights uploaded to %s (%.2f GB)", m->dir, be->name, (double)total / 1e9);
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
    m->on_device = NULL, m->device_be = NULL, m->device_block = NULL, m->device_bytes = 0;
}
