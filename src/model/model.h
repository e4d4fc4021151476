/* model.h — a loaded model: validated config, weights as views into the mmap.
 *
 * model_open() reads config.json, maps the safetensors (single file or shards),
 * checks that every tensor the architecture needs is there with the shape the
 * config implies and a float dtype (F32, BF16, F16), and reports tensors it does
 * not use. Matrices stay in their stored dtype in the mmap; with
 * `conversion = upfront` BF16/F16 matrices are converted to f32 once at load
 * (faster per token, f32-sized memory). Norm vectors are always converted (small).
 */
#ifndef TP_MODEL_H
#define TP_MODEL_H

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/model_config.h"

#include <stdint.h>

/* A weight matrix as nn.Linear stores it: [rows = out, cols = in], row-major. */
typedef struct {
    const char *name;
    const void *data;
    tp_dtype dtype;
    int64_t rows, cols;
} tp_mat;

typedef struct {
    tp_mat q, k, v, o, gate, up, down;
    const float *q_norm, *k_norm;   /* OLMo-2 only: [H*dh], [K*dh] */
    /* OLMo-2: post_attention_layernorm, post_feedforward_layernorm (applied to the
     * sub-block outputs). Llama: input_layernorm, post_attention_layernorm (applied
     * to the sub-block inputs). */
    const float *norm1, *norm2;
} tp_layer;

typedef enum { TP_CONVERT_PER_MATRIX = 0, TP_CONVERT_UPFRONT } tp_convert_mode;

typedef struct tp_model tp_model;
struct tp_weight_stream;   /* model_device.c */

struct tp_model {
    char dir[4096];            /* TP_PATH_MAX (core/fsutil.h) */
    tp_model_config cfg;
    st_file *st;
    tp_mat embed, lm_head;
    const float *final_norm;
    tp_layer *layers;
    float *norm_storage;      /* all norm vectors, f32 */
    float *upfront_storage;   /* f32 copies when converted up front, else NULL */
    size_t upfront_bytes;
    int64_t n_params;
    tp_dtype weight_dtype;    /* dtype of the largest matrix as stored */
    tp_convert_mode convert;
    /* On a device backend (model_upload): the weights as that backend reads them, a
     * view of this model whose matrix and norm pointers point into one device block.
     * NULL on the CPU. */
    tp_model *on_device;
    tp_backend *device_be;
    void *device_block;
    size_t device_bytes;
    struct tp_weight_stream *stream;   /* layer streaming state, NULL when resident */
};

/* Opens the model; when backend_default() is a device backend (main chose one with
 * --device), its weights are uploaded to it once here (model_upload). */
tp_status model_open(const char *dir, tp_convert_mode convert, tp_model **out);
void model_close(tp_model *m);

/* model_device.c. Puts the weights on `be` (a no-op on a host-memory backend or when
 * done already), matrices in their stored dtype (BF16 stays BF16), norms in f32:
 *   RESIDENT: everything, once, in one block (TP_ERR_NOMEM when it does not fit);
 *   STREAM: norms, embedding and lm_head once, and two layer slots that
 *     model_weights_need fills layer by layer (prefetching the next while one runs);
 *   AUTO: RESIDENT, or STREAM when that does not fit (model_open's choice). */
typedef enum { TP_UPLOAD_AUTO = 0, TP_UPLOAD_RESIDENT, TP_UPLOAD_STREAM } tp_upload_mode;
tp_status model_upload(tp_model *m, tp_backend *be, tp_upload_mode mode);
/* Before the ops of layer L are queued on be: makes L's weights resident there (and
 * the ops queued after this call wait for their copy), then starts copying layer
 * `next` (-1: none; it must be L ± 1) into the other slot, overlapping L's compute.
 * A no-op unless m streams its layers on be. */
tp_status model_weights_need(const tp_model *m, tp_backend *be, int L, int next);
/* The weights as `be` reads them: m itself on a host-memory backend, the uploaded
 * view on the device backend it was uploaded to, else NULL. Only the pointers
 * differ; a device view's pointers are not to be read on the host. */
const tp_model *model_weights(const tp_model *m, const tp_backend *be);
/* Frees the device copy (model_close does). */
void model_device_free(tp_model *m);

/* Checks a user's layer list (config key `layers`) against the model; the error
 * names where the list came from. */
tp_status model_validate_layers(const tp_model *m, const int64_t *layers, size_t n, const char *origin);

/* The matrices of layer L in a fixed order, for reports (q,k,v,o,gate,up,down). */
int model_layer_mats(const tp_model *m, int L, const tp_mat **mats, const char **kinds);

#endif
