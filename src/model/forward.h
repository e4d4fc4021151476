/* forward.h — the forward pass over a batch of token sequences, in f32.
 *
 * forward_new() allocates every scratch buffer once, on the backend the model runs on
 * (backend_default() at that time: the CPU unless main chose another), sized for
 * max_batch sequences of at most max_seq tokens (max_batch * max_seq rows);
 * forward_run() runs B sequences of T tokens each (positions 0..T-1),
 * forward_run_varlen() sequences of different lengths packed one after another with
 * no padding, forward_run_from() the same starting at a given layer from a given
 * residual stream (activation patching), firing the callbacks registered in `hooks` at each capture point
 * (model/hooks.h). Every GEMM, norm and the MLP run once over all the rows of the
 * call; attention runs per sequence at its own length (model/layers.c, the backend's
 * attention op). On the CPU, GEMMs go to TranspOLMo's kernel or BLAS; BF16/F16
 * weights are converted to f32 per tile of rows just before their BLAS GEMM unless the
 * model converted them up front. A sequence's result does not depend on the other
 * sequences of the call beyond GEMM blocking (~1e-7 relative; tests/unit/test_forward.c).
 * Logits are handed out in host memory.
 */
#ifndef TP_FORWARD_H
#define TP_FORWARD_H

#include "core/error.h"
#include "model/hooks.h"
#include "model/model.h"

#include <stdint.h>

typedef enum {
    TP_LOGITS_NONE = 0,   /* stop after the last layer needed (capture) */
    TP_LOGITS_LAST,       /* [B, V]: next-token logits of each sequence */
    TP_LOGITS_ALL         /* [B*T, V] */
} tp_logits_mode;

typedef struct tp_forward tp_forward;

tp_status forward_new(const tp_model *m, int max_batch, int max_seq, tp_forward **out);
void forward_free(tp_forward *f);

/* ids: [B, T] row-major, each in [0, vocab). *logits (may be NULL for NONE) points
 * into the state and is valid until the next run. With TP_LOGITS_NONE the pass stops
 * after `last_layer` (-1 = run every layer). */
tp_status forward_run(tp_forward *f, const int32_t *ids, int B, int T, const tp_hooks *hooks,
                      tp_logits_mode mode, int last_layer, const float **logits);

/* Variable-length batch: nseq sequences, sequence b has lens[b] tokens (positions
 * 0..lens[b]-1); ids holds them one after another, Σ lens ids in all. Needs each
 * lens[b] <= max_seq and Σ lens <= max_batch * max_seq (nseq may exceed max_batch).
 * Hooks see [1, Σ lens, ...] tensors (the rows of sequence b follow those of b-1;
 * info->nseq / info->seq_lens give the split) and attn.hook_pattern as
 * [1, H, lens[b], lens[b]] per sequence. TP_LOGITS_LAST: [nseq, V]; ALL: [Σ lens, V].
 * With equal lengths it computes what forward_run computes; only the hook shapes
 * differ. */
tp_status forward_run_varlen(tp_forward *f, const int32_t *ids, const int *lens, int nseq,
                             const tp_hooks *hooks, tp_logits_mode mode, int last_layer,
                             const float **logits);

/* Starts a run at layer first_layer from a given residual stream: resid [Σ lens, d]
 * (host memory) is what enters that layer (its blocks.<first_layer>.hook_resid_pre),
 * sequences packed as in forward_run_varlen. Layers first_layer.. and the head run as
 * in a full pass, so with resid taken from a full pass the result is that pass's (up
 * to GEMM blocking, as between batches: ~1e-7 relative with OpenBLAS, bit for bit with
 * TranspOLMo's AVX-512 kernel, whose rows do not depend on each other). Hooks below
 * first_layer and hook_embed do not fire. Activation patching uses it to rerun only
 * the layers above a patched one, many patched copies in one call. With
 * TP_LOGITS_LAST and no callback on the final layer or ln_final, that layer makes keys
 * and values for every row but everything after them for each sequence's last row
 * only (nothing else reaches the logits).
 *
 * prefix (may be NULL: every sequence starts at position 0): sequence b holds
 * positions off[b]..off[b]+lens[b]-1 and attends to the keys and values that k and v
 * give for positions 0..off[b]-1 — a shared prefix, e.g. the unchanged start of the
 * prompt, so a patch at position p reruns positions p.. only (causal attention: the
 * rows before p cannot change). Needs forward_kv_enable (the prefix goes to the KV
 * cache of each layer from first_layer) and nseq <= max_batch. The KV cache of layers
 * below first_layer is left as it was. */
typedef struct {
    const int *off;          /* [nseq] first position of each sequence, <= len */
    const float *k, *v;      /* [num_layers][len][K*dh] host: attn.hook_rot_k and attn.hook_v */
    int len;
} tp_forward_prefix;
tp_status forward_run_from(tp_forward *f, int first_layer, const float *resid, const int *lens, int nseq,
                           const tp_forward_prefix *prefix, const tp_hooks *hooks, tp_logits_mode mode,
                           const float **logits);

/* Greedy decoding support: allocates a KV cache for max_batch x max_seq positions
 * of every layer. Afterwards forward_step() can continue sequences. */
tp_status forward_kv_enable(tp_forward *f);
/* Runs T new tokens per sequence at positions pos0..pos0+T-1 (pos0 > 0 needs the KV
 * cache filled by earlier calls for positions < pos0). forward_run(...) is
 * forward_step(..., pos0 = 0, ...). The pattern hook is only delivered when
 * pos0 == 0. */
tp_status forward_step(tp_forward *f, const int32_t *ids, int B, int T, int pos0,
                       const tp_hooks *hooks, tp_logits_mode mode, const float **logits);

size_t forward_scratch_bytes(const tp_forward *f);
const tp_model *forward_model(const tp_forward *f);
int forward_max_batch(const tp_forward *f);
int forward_max_seq(const tp_forward *f);
/* Multiply-adds x2 of one pass (GEMMs and attention), for benchmarks. */
double forward_flops(const tp_model_config *c, int B, int T, tp_logits_mode mode);

#endif
