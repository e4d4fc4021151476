/* layers_bwd.h — the backward of the pieces of layers.h, and the backward's state.
 * Not for use outside src/model/.
 *
 * The state holds the forward it runs (its own tp_forward, whose f->tape points at
 * the tape below during backward_forward), the tape, and the gradient buffers of one
 * backward call, all allocated once by backward_new on the forward's backend for
 * max_batch * max_seq rows. The pieces mirror the forward's: the head (lm_head and
 * final norm), the attention sub-block, the SwiGLU MLP; each fires the gradient hooks
 * of the capture points it passes, in the reverse of the forward's order. A decoder
 * layer's backward is a builder beside its forward one (olmo2.c, llama.c).
 *
 * Gradient hooks get d(metric)/d(point) with the forward point's varlen shape
 * ([1, Σ lens, ...], the pattern [1, H, n_b, n_b] per sequence). A callback added with
 * hooks_add_reader reads the gradient buffer itself; one added with hooks_add (may
 * edit) gets a copy whose edits are dropped, so no callback changes the gradient of
 * another point (backward.h).
 */
#ifndef TP_MODEL_LAYERS_BWD_H
#define TP_MODEL_LAYERS_BWD_H

#include "model/backward.h"
#include "model/layers.h"

/* [be]: memory of the forward's backend; everything else is host memory. */
struct tp_backward {
    tp_forward *f;
    const tp_model *m;
    tp_backend *be;
    tp_tape tape;
    float *tape_block;         /* [be] every slot and the final norm's input, one allocation */
    float **pattern_store;     /* [num_layers] [be] edited-pattern storage, allocated on first use */
    int ready;                 /* a tape from a successful backward_forward */
    const tp_hooks *grad_hooks;   /* of the current backward_run */
    /* [be] gradients, [max_rows, ...] */
    float *g;                  /* d/d(residual stream) [rows, d] */
    float *t1, *t2;            /* [rows, d] */
    float *dq, *dk, *dv, *dz;  /* [rows, H*dh] / [rows, K*dh] / [rows, H*dh] */
    float *dgate, *dup;        /* [rows, F]: d mlp.hook_post, then d hook_pre / d hook_pre_linear */
    float *dlogits;            /* [rows, V] upload target (device backends only) */
    float *dpattern;           /* [H, max_seq, max_seq], only while a pattern gradient hook exists */
    float *stage;              /* host copy of a gradient for a callback that may edit (or a device) */
    size_t stage_elems;
    tp_attn_grad *agrad;       /* [max_rows] attention gradients per sequence */
    size_t bytes;              /* all of the above but the forward's own scratch */
};

/* Fires the gradient callbacks of (L, pt) on `data` [be] (the shape derived from the
 * point and the forward's varlen batch). */
tp_status bwd_fire(tp_backward *b, int L, tp_hook_point pt, float *data);
/* dx [rows, W[0].cols] = Σ_i dy_i · W_i through the backend's linear_bwd. */
tp_status bwd_linear_n(tp_backward *b, const tp_mat *const *W, const float *const *dy, int nw, float *dx);
/* From d(o_proj output) `d_o` [rows, d] to the gradient of the attention sub-block's
 * input `d_in` [rows, d] (written); fires attn.hook_out, z, pattern, rot_k, rot_q, v,
 * k, q (d_o is handed to the attn.hook_out callbacks, so not const). Uses b->dz,
 * dq, dk, dv. d_in may not alias d_o. */
tp_status bwd_attention(tp_backward *b, int L, float *d_o, float *d_in);
/* From d(down_proj output) `d_o` [rows, d] to d(MLP input) `d_in` [rows, d]
 * (written); fires mlp.hook_out, hook_post, hook_pre_linear, hook_pre. d_in may not
 * alias d_o. */
tp_status bwd_mlp(tp_backward *b, int L, float *d_o, float *d_in);
/* From dlogits (host, [rows, V]) to b->g = d(last layer's resid_post); fires
 * ln_final.hook_normalized. */
tp_status bwd_head(tp_backward *b, const float *dlogits);

/* One decoder layer backward: b->g holds d/d(resid_post of L) on entry and
 * d/d(resid_pre of L) on return. Beside each forward builder. */
typedef tp_status (*block_bwd_fn)(tp_backward *b, int L);
tp_status olmo2_block_bwd(tp_backward *b, int L);
tp_status llama_block_bwd(tp_backward *b, int L);

#endif
