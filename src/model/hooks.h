/* hooks.h — named capture points of the forward pass and the callbacks on them.
 *
 * Points use TransformerLens names (`blocks.6.hook_resid_post`); Hugging Face module
 * paths (`model.layers.6.mlp`) are accepted as aliases (docs/hooks.md lists every
 * point and alias with the exact tensor it denotes). A callback sees the tensor in
 * row-major f32 with its shape and may overwrite it in place: the forward pass
 * continues from what the callback leaves. Points with no callback cost nothing.
 * A callback added with hooks_add_reader promises not to write: on a device
 * backend the forward pass then copies the point to the host for it but not back
 * (hooks_point_edits); hooks_add keeps the conservative "may edit".
 * A callback added with hooks_add_device_reader gets the tensor where the forward
 * pass keeps it, in the memory of its backend (device memory on a device backend:
 * no host copy is made for it), and only reads it, through the backend (capture
 * queues be_download_async into its own pinned buffers). Device readers of a point
 * are called before its other callbacks.
 *
 * Shapes (B sequences, T positions, H heads, K kv heads, dh head dim, F MLP width):
 *   [B,T,d]   hook_embed, hook_resid_*, hook_attn_out, hook_mlp_out, attn.hook_out,
 *             mlp.hook_out, ln_final.hook_normalized
 *   [B,T,H,dh] attn.hook_q, attn.hook_rot_q, attn.hook_z   ([B,T,K,dh] for k, v, rot_k)
 *   [B,T,F]   mlp.hook_pre, mlp.hook_pre_linear, mlp.hook_post
 *   [1,H,T,T] attn.hook_pattern — one call per sequence, info->seq says which, so
 *             the whole [B,H,T,T] tensor never exists at once.
 * forward_run_varlen (sequences of different lengths, no padding) delivers the same
 * points as [1,N,...] with N = Σ lengths: the rows of sequence 0, then those of
 * sequence 1, ...; info->nseq and info->seq_lens give the split (always set, also for
 * forward_run, where every length is T and [B,T,...] is the same memory as [1,B*T,...]).
 * The pattern is then [1,H,n_b,n_b] for sequence b = info->seq.
 */
#ifndef TP_HOOKS_H
#define TP_HOOKS_H

#include "core/error.h"
#include "model/model_config.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    /* per layer */
    TP_HOOK_RESID_PRE = 0,
    TP_HOOK_Q,
    TP_HOOK_K,
    TP_HOOK_V,
    TP_HOOK_ROT_Q,
    TP_HOOK_ROT_K,
    TP_HOOK_PATTERN,
    TP_HOOK_Z,
    TP_HOOK_ATTN_O,       /* attn.hook_out: o_proj output */
    TP_HOOK_ATTN_OUT,     /* hook_attn_out: added to the residual */
    TP_HOOK_RESID_MID,
    TP_HOOK_MLP_PRE,
    TP_HOOK_MLP_PRE_LINEAR,
    TP_HOOK_MLP_POST,
    TP_HOOK_MLP_O,        /* mlp.hook_out: down_proj output */
    TP_HOOK_MLP_OUT,      /* hook_mlp_out: added to the residual */
    TP_HOOK_RESID_POST,
    TP_HOOK_LAYER_COUNT,
    /* global (layer = -1) */
    TP_HOOK_EMBED = TP_HOOK_LAYER_COUNT,
    TP_HOOK_LN_FINAL,
    TP_HOOK_POINT_COUNT
} tp_hook_point;

typedef struct {
    int layer;               /* -1 for global points */
    tp_hook_point point;
    const char *name;        /* canonical name, e.g. "blocks.3.attn.hook_z" */
    int ndim;
    int64_t shape[4];
    int seq;                 /* first sequence of the batch this call covers */
    int nseq;                /* sequences in the forward call */
    const int *seq_lens;     /* [nseq] their lengths: rows are grouped by sequence */
} tp_hook_info;

typedef tp_status (*tp_hook_fn)(const tp_hook_info *info, float *data, void *user);

typedef struct tp_hooks tp_hooks;

tp_status hooks_new(int num_layers, tp_hooks **out);
void hooks_free(tp_hooks *h);
/* Adds a callback on (layer, point); several may share a point (called in order).
 * It may overwrite the tensor. */
tp_status hooks_add(tp_hooks *h, int layer, tp_hook_point pt, tp_hook_fn fn, void *user);
/* The same for a callback that only reads the tensor (capture, statistics). */
tp_status hooks_add_reader(tp_hooks *h, int layer, tp_hook_point pt, tp_hook_fn fn, void *user);
/* A reader that takes the tensor in the backend's memory (above). */
tp_status hooks_add_device_reader(tp_hooks *h, int layer, tp_hook_point pt, tp_hook_fn fn, void *user);
/* Parses a name (canonical or alias) and adds the callback. */
tp_status hooks_add_named(tp_hooks *h, const tp_model_config *cfg, const char *name,
                          tp_hook_fn fn, void *user);
bool hooks_active(const tp_hooks *h, int layer, tp_hook_point pt);   /* h may be NULL */
/* Whether a callback on (layer, pt) may overwrite the tensor (one added with
 * hooks_add rather than hooks_add_reader). h may be NULL. */
bool hooks_point_edits(const tp_hooks *h, int layer, tp_hook_point pt);
/* Whether a callback on (layer, pt) wants the tensor in host memory (any but a device
 * reader). h may be NULL. */
bool hooks_point_host(const tp_hooks *h, int layer, tp_hook_point pt);
/* Calls every callback on (layer, pt) but the device readers, in order, with `data`
 * in host memory; stops at the first failure. */
tp_status hooks_fire(const tp_hooks *h, const tp_hook_info *info, float *data);
/* Calls the device readers on (layer, pt), in order, with `data` in the backend's
 * memory. */
tp_status hooks_fire_device(const tp_hooks *h, const tp_hook_info *info, float *data);

/* Resolves a name to (layer, point). Accepts canonical TransformerLens names, the
 * and the Hugging Face module paths listed in docs/hooks.md. An architecture-specific alias that does not apply (q_norm on
 * Llama) or a layer >= num_layers is an error naming the hook and the valid range. */
tp_status hooks_parse_name(const tp_model_config *cfg, const char *name, int *layer,
                           tp_hook_point *pt);
/* Full shape of a point over B sequences of T tokens (pattern: [B,H,T,T]); returns
 * ndim. */
int hooks_point_shape(const tp_model_config *cfg, tp_hook_point pt, int B, int T, int64_t shape[4]);
/* Canonical name into buf ("blocks.3.hook_resid_post", "hook_embed"). */
const char *hooks_point_name(int layer, tp_hook_point pt, char *buf, size_t n);
/* Suffix after "blocks.L." ("hook_resid_post", "attn.hook_z"), or the global name. */
const char *hooks_point_suffix(tp_hook_point pt);

#endif
