/* backward.h — gradients of a scalar metric of the logits with respect to every
 * capture point, in f32, by a tape-based backward pass (llm.c style).
 *
 *   tp_backward *b;  backward_new(m, max_batch, max_seq, &b);
 *   backward_forward(b, ids, lens, nseq, hooks, &logits);     // saves the tape
 *   metric_logit_diff(logits, V, lens, nseq, NULL, T, D, &value, dlogits);   // metrics.h
 *   backward_run(b, dlogits, grad_hooks);                      // fires d value / d point
 *
 * backward_forward is forward_run_varlen with TP_LOGITS_ALL (the same ops in the same
 * order, so the same logits bit for bit; forward hooks fire and may edit) that also
 * saves, per layer, what that layer's backward reads (model/layers.h tp_tape: the
 * inputs of the norms, of attention and of silu, as the ops consumed them). The tape
 * is allocated once by backward_new, sized from the config for max_batch * max_seq
 * rows: per layer and row
 *   OLMo-2: 2·H·dh + 3·K·dh + 2·d + 2·F floats   (q/k projections, rot_q/rot_k/v,
 *           o_proj and down_proj outputs, gate and up)
 *   Llama:  H·dh + 2·K·dh + 2·d + 2·F floats     (resid_pre, resid_mid, rot_q/rot_k/v,
 *           gate and up)
 * plus d per row for the final norm's input, and the backward's own gradient
 * buffers (3·d + 2·H·dh + 2·K·dh + 2·F per row). Attention patterns are not kept: the
 * backward recomputes them per head with the forward's own code (backend.h
 * attention_bwd). backward_scratch_bytes() says what it all took.
 *
 * backward_run(dlogits [Σ lens, V], host memory) backpropagates from the logits of
 * the last backward_forward to the embedding output and calls the callbacks of
 * `grad_hooks` (the tp_hooks of hooks.h, the same (layer, point) names and shapes as
 * the forward's varlen run: [1, Σ lens, ...], attn.hook_pattern [1, H, n_b, n_b] per
 * sequence) with d(metric)/d(point) at every point: hook_embed, blocks.L.hook_resid_pre
 * / resid_mid / resid_post, hook_attn_out, hook_mlp_out, attn.hook_q / k / v / rot_q /
 * rot_k / pattern / z / out, mlp.hook_pre / pre_linear / post / out,
 * ln_final.hook_normalized. Each is the gradient of the metric with respect to that
 * tensor as autograd defines it with retain_grad() on it (tools/reference/
 * make_golden_grad.py): with respect to the pattern every entry, the masked ones too
 * (z = pattern @ V reads them); for points that are one tensor (resid_post L and
 * resid_pre L+1, hook_embed and blocks.0.hook_resid_pre, Llama's hook_attn_out and
 * attn.hook_out) the same values.
 *
 * Gradient hooks are read-only: a callback added with hooks_add_reader reads the
 * gradient in place; one added with hooks_add gets a copy whose edits are dropped
 * (later callbacks on the same point see them; no other point does). So no gradient
 * hook changes any gradient.
 *
 * Forward hooks that edit. The tape holds the values after every edit, so each
 * Jacobian is taken where the edited run was; the edit's own Jacobian counts as the
 * identity (straight-through: as if the callback added a constant). Gradients at
 * points downstream of an edit are therefore exact, and for additive edits (steering,
 * the finite-difference tests' perturbations) so are those upstream; for a
 * replacement (patching a clean value in) the true derivative upstream of the patched
 * entries is 0, which a caller gets by ignoring them. An editing attn.hook_pattern
 * callback makes backward_forward keep that layer's edited patterns (H · max_seq ·
 * max_batch·max_seq floats, allocated on first use): dv and d/dpattern use the edited
 * pattern, the softmax Jacobian the recomputed one.
 *
 * Needs a backend with the _bwd ops (the CPU's; elsewhere the first one missing is
 * TP_ERR_UNSUPPORTED naming it). Not thread-safe; one backward per tp_backward at a
 * time. Weight gradients are not computed.
 */
#ifndef TP_BACKWARD_H
#define TP_BACKWARD_H

#include "core/error.h"
#include "model/hooks.h"
#include "model/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tp_backward tp_backward;

tp_status backward_new(const tp_model *m, int max_batch, int max_seq, tp_backward **out);
void backward_free(tp_backward *b);

/* The forward of forward_run_varlen (same limits: each lens[b] <= max_seq, Σ lens <=
 * max_batch * max_seq) with logits of every row, saving the tape. *logits [Σ lens, V]
 * host memory, valid until the next backward_forward. A failure leaves no tape
 * (backward_run then fails until a forward succeeds). */
tp_status backward_forward(tp_backward *b, const int32_t *ids, const int *lens, int nseq, const tp_hooks *hooks,
                           const float **logits);

/* Backpropagates dlogits [Σ lens, V] (host memory, the rows of the last
 * backward_forward) and fires grad_hooks (may be NULL: then it only checks that the
 * pass runs). May be called several times on one tape (several metrics). */
tp_status backward_run(tp_backward *b, const float *dlogits, const tp_hooks *grad_hooks);

/* The gradient of the metric with respect to layer L's input (resid_pre) along head
 * h alone: the attention sub-block's VJP from the saved tape with the upstream
 * gradient dz (host, [Σ lens, H·dh], d metric / d attn.hook_z of layer L, as a
 * backward_run delivers it) masked to head h's columns, i.e. the path through z_h
 * only. QK-norm (which mixes the heads' q and k) and GQA (a shared k/v head) are
 * differentiated exactly; on Llama input_layernorm's backward is included. Writes dx
 * (host, [Σ lens, d]). Summed over the heads of L it is the attention branch's part
 * of d/d resid_pre(L). Fires no hook; clobbers the gradient buffers of the last
 * backward_run (the tape stays), so call it after backward_run returns. */
tp_status backward_attention_head_input_grad(tp_backward *b, int L, int h, const float *dz, float *dx);

/* Rows (Σ lens) of the last backward_forward, 0 before one succeeded. */
int64_t backward_rows(const tp_backward *b);
/* Bytes of the tape, gradient buffers and the forward's own scratch. */
size_t backward_scratch_bytes(const tp_backward *b);

#endif
