/* layers.h — the pieces every decoder layer is built from, and the forward pass's
 * run state they work on. Not for use outside src/model/.
 *
 * The state (llama2.c's RunState) holds the scratch of one forward call, allocated
 * once by forward_new on the backend the model runs on (f->be, backend_default() at
 * that time); every op goes through the backend's table (backend/backend.h). The
 * pieces: the q/k/v–attention–o_proj sub-block, the SwiGLU MLP, the embedding and
 * the final norm + head, each firing the capture points it computes (model/hooks.h).
 * A decoder layer is a ~20-line builder on top of them, one file per architecture
 * (olmo2.c, llama.c), picked by forward.c from a table indexed by architecture.
 *
 * Hooks: on a host-memory backend a callback gets the buffer itself; on a device
 * backend fwd_fire downloads the point into a host staging buffer only when the point
 * has a callback, and uploads it back only when a callback may edit it.
 */
#ifndef TP_MODEL_LAYERS_H
#define TP_MODEL_LAYERS_H

#include "backend/backend.h"
#include "model/forward.h"

/* The tape (llm.c's ActivationTensors): what the backward of each decoder layer reads,
 * saved by the forward as the next op consumed it, i.e. after any hook edited it (so
 * the backward differentiates the run that happened; model/backward.h). Only
 * model/backward.c sets f->tape, for its own forward; a plain forward has NULL and
 * saves nothing. Per layer and slot a [rows, width] buffer, NULL where the
 * architecture's backward does not read that slot (olmo2_tape_slots, llama_tape_slots). */
typedef enum {
    TAPE_RESID_PRE = 0,   /* Llama: input_layernorm's input  [d] */
    TAPE_Q_PROJ,          /* OLMo-2: q_proj's output = q_norm's input [H*dh] */
    TAPE_K_PROJ,          /* OLMo-2: k_proj's output = k_norm's input [K*dh] */
    TAPE_ROT_Q,           /* attention's inputs: q, k after RoPE, v [H*dh], [K*dh], [K*dh] */
    TAPE_ROT_K,
    TAPE_V,
    TAPE_ATTN_O,          /* OLMo-2: o_proj's output = post_attention_layernorm's input [d] */
    TAPE_RESID_MID,       /* Llama: post_attention_layernorm's input [d] */
    TAPE_GATE,            /* silu_mul's inputs [F] */
    TAPE_UP,
    TAPE_MLP_O,           /* OLMo-2: down_proj's output = post_feedforward_layernorm's input [d] */
    TAPE_SLOTS
} tp_tape_slot;

typedef struct {
    float *(*slot)[TAPE_SLOTS];  /* [num_layers][TAPE_SLOTS] [be] */
    float *final;                /* [be] [rows, d] the final norm's input */
    /* [num_layers] [be] the pattern of every sequence after an editing attn.hook_pattern
     * callback, [H, n_b, n_b] one after another; NULL for layers without one. */
    float **pattern;
} tp_tape;

/* [be]: memory of f->be; everything else is host memory. */
struct tp_forward {
    const tp_model *m;
    /* The weights as f->be reads them (model_weights): m itself on the CPU, the
     * uploaded device view on a GPU. Every op reads its weights from here; m stays
     * for the config and for host-side readers. */
    const tp_model *w;
    tp_backend *be;
    int max_batch, max_seq;
    int64_t max_rows;          /* max_batch * max_seq */
    /* The current call: nseq sequences, sequence b at rows row0[b]..row0[b]+lens[b]-1
     * of every [rows, ...] buffer, positions off[b]..off[b]+lens[b]-1 (attending to the
     * KV cache's positions below off[b]). forward_run and forward_step have lens[b] = T
     * and off[b] = pos0 for all b (B = nseq); forward_run_from with a prefix, its own
     * off[b] and pos0 = their largest. varlen says the hooks see [1, rows, ...] rather
     * than [B, T, ...]. */
    int nseq, T, pos0, varlen;
    int64_t rows;
    /* Set by forward_run_from in TP_LOGITS_LAST for its final layer when no callback
     * watches that layer or ln_final: fwd_attention makes keys and values for every
     * row, then attends for each sequence's last row only and leaves rows = nseq (one
     * row, the last, per sequence) for the rest of the layer and the head. */
    int last_only;
    int *lens;                 /* [max_rows] */
    int *off;                  /* [max_rows] */
    int64_t *row0;             /* [max_rows + 1] */
    int32_t *pos_host;         /* [max_rows] position of each row of the call */
    const int32_t *pos;        /* [be] the same, as the rope op reads it */
    int32_t *pos_dev, *ids_dev; /* [be] [max_rows] upload targets (device backends only) */
    tp_attn_seq *aseq;         /* [max_rows] attention work of the call */
    const tp_hooks *hooks;
    /* [be] [rows] activations */
    float *x;                  /* residual stream [rows, d] */
    float *xn;                 /* normed input [rows, d] */
    float *q, *k, *v, *z;      /* [rows, H*dh] / [rows, K*dh] */
    float *ao;                 /* sub-block output [rows, d] */
    float *gate, *up;          /* [rows, F] */
    float *pattern;            /* [be] [H, T, T] one sequence, only if a pattern hook asks */
    float *logits;             /* [be] [rows or B, V] */
    size_t logits_elems;
    float *logits_host;        /* host copy of the logits (device backends only) */
    float *stage;              /* host copy of a hook point (device backends only) */
    size_t stage_elems;
    float *rope_cos, *rope_sin;  /* [be] [max_seq, dh/2] */
    /* [be] KV cache (forward_kv_enable): rotated keys and values of every layer,
     * [L][max_batch][max_seq][K*dh]; NULL when decoding is not used. */
    float *kcache, *vcache;
    size_t bytes;
    tp_tape *tape;             /* NULL but in model/backward.c's forward */
};

/* Saves `src` [f->rows, width] into the tape's (L, slot) (L = -1: the final norm's
 * input), when there is a tape and it keeps that slot; a NULL test otherwise. */
tp_status fwd_tape_copy(tp_forward *f, float *dst, const float *src, int64_t width);
static inline tp_status fwd_tape_save(tp_forward *f, int L, tp_tape_slot slot, const float *src, int64_t width)
{
    if (!f->tape) return TP_OK;
    float *dst = L < 0 ? f->tape->final : f->tape->slot[L][slot];
    return dst ? fwd_tape_copy(f, dst, src, width) : TP_OK;
}

/* *p = n elements of f->be memory (NULL for 0), counted in f->bytes. */
tp_status fwd_alloc_f32(tp_forward *f, float **p, size_t n);
tp_status fwd_alloc_i32(tp_forward *f, int32_t **p, size_t n);

/* y[n, W.rows] = x[n, W.cols] · Wᵀ through the backend's `linear`. */
tp_status fwd_linear(tp_forward *f, const tp_mat *W, const float *x, int64_t n, float *y);
/* The same for up to FWD_LINEAR_MAX matrices with the same input (q/k/v, gate/up):
 * one `linear` call, so the CPU packs x once for all of them. */
#define FWD_LINEAR_MAX 4
tp_status fwd_linear_n(tp_forward *f, const tp_mat *const *W, float *const *y, int nw,
                       const float *x, int64_t n);
/* Fires the callbacks on (L, pt) with the tensor's shape derived from the point. */
tp_status fwd_fire(tp_forward *f, int L, tp_hook_point pt, float *data);
/* f->x = the embeddings of the call's ids ([be], f->rows of them); fires hook_embed. */
tp_status fwd_embed(tp_forward *f, const int32_t *ids);
/* Attention sub-block on `in` [rows, d]: q/k/v (+ q/k norm when the layer has one),
 * RoPE, causal softmax, o_proj into f->ao; fires q,k,v,rot_q,rot_k,pattern,z and
 * attn.hook_out. With f->last_only, f->rows may be smaller afterwards: a block reads
 * it again after this call. */
tp_status fwd_attention(tp_forward *f, int L, const float *in);
/* SwiGLU MLP on `in` [rows, d] into f->ao; fires mlp.hook_pre, hook_pre_linear,
 * hook_post and mlp.hook_out. */
tp_status fwd_mlp(tp_forward *f, int L, const float *in);
/* Final norm of f->x (fires ln_final.hook_normalized), then the logits `mode` asks
 * for into host memory (*logits, may be NULL; NULL for TP_LOGITS_NONE). */
tp_status fwd_head(tp_forward *f, tp_logits_mode mode, const float **logits);

/* One decoder layer on f->x, per architecture (model/olmo2.c, model/llama.c). */
typedef tp_status (*block_fn)(tp_forward *f, int L);
tp_status olmo2_block(tp_forward *f, int L);
tp_status llama_block(tp_forward *f, int L);
/* The tape slots each architecture's backward reads (bit s = tp_tape_slot s). */
extern const unsigned olmo2_tape_slots, llama_tape_slots;

#endif
