/* forward_internal.h — what the per-architecture block files share with forward.c.
 * Not for use outside src/model/. */
#ifndef TP_FORWARD_INTERNAL_H
#define TP_FORWARD_INTERNAL_H

#include "backend/cpu.h"
#include "model/forward.h"

struct tp_forward {
    const tp_model *m;
    int max_batch, max_seq;
    int64_t max_rows;          /* max_batch * max_seq */
    /* The current call: nseq sequences, sequence b at rows row0[b]..row0[b]+lens[b]-1
     * of every [rows, ...] buffer, positions pos0..pos0+lens[b]-1. forward_run and
     * forward_step have lens[b] = T for all b (B = nseq); varlen says the hooks see
     * [1, rows, ...] rather than [B, T, ...]. */
    int nseq, T, pos0, varlen;
    int64_t rows;
    int *lens;                 /* [max_rows] */
    int64_t *row0;             /* [max_rows + 1] */
    cpu_attn_seq *aseq;        /* [max_rows] attention work of the call */
    const tp_hooks *hooks;
    /* [rows] activations */
    float *x;                  /* residual stream [rows, d] */
    float *xn;                 /* normed input [rows, d] */
    float *q, *k, *v, *z;      /* [rows, H*dh] / [rows, K*dh] */
    float *ao;                 /* sub-block output [rows, d] */
    float *gate, *up;          /* [rows, F] */
    float *pattern;            /* [H, T, T] one sequence, only if a pattern hook asks */
    float *logits;             /* [rows or B, V] */
    size_t logits_elems;
    float *wtile;              /* f32 tile of a converted weight matrix (OpenBLAS path, on first use) */
    size_t wtile_elems;
    float *rope_cos, *rope_sin;  /* [max_seq, dh/2] */
    /* KV cache (forward_kv_enable): rotated keys and values of every layer,
     * [L][max_batch][max_seq][K*dh]; NULL when decoding is not used. */
    float *kcache, *vcache;
    size_t bytes;
};

/* y[n, W.rows] = x[n, W.cols] . W^T: backend/linear's kernel when the CPU has it,
 * otherwise OpenBLAS (bf16/f16 weights converted a tile at a time). */
tp_status fwd_linear(tp_forward *f, const tp_mat *W, const float *x, int64_t n, float *y);
/* The same for up to FWD_LINEAR_MAX matrices with the same input (q/k/v, gate/up):
 * one packed x for all of them. */
#define FWD_LINEAR_MAX 4
tp_status fwd_linear_n(tp_forward *f, const tp_mat *const *W, float *const *y, int nw,
                       const float *x, int64_t n);
/* Fires the callbacks on (L, pt) with the tensor's shape derived from the point. */
tp_status fwd_fire(tp_forward *f, int L, tp_hook_point pt, float *data);
/* Attention sub-block on `in` [rows, d]: q/k/v (+ q/k norm when the layer has one),
 * RoPE, causal softmax, o_proj into f->ao; fires q,k,v,rot_q,rot_k,pattern,z and
 * attn.hook_out. */
tp_status fwd_attention(tp_forward *f, int L, const float *in);
/* SwiGLU MLP on `in` [rows, d] into f->ao; fires mlp.hook_pre, hook_pre_linear,
 * hook_post and mlp.hook_out. */
tp_status fwd_mlp(tp_forward *f, int L, const float *in);

/* One decoder layer, per architecture (model/olmo2.c, model/llama.c). */
tp_status olmo2_block(tp_forward *f, int L);
tp_status llama_block(tp_forward *f, int L);

#endif
