/* backward.c — the backward pass's driver (see backward.h): the tape and gradient
 * buffers, sized once from the config; the tape forward (forward_run_varlen with
 * f->tape set); the run from the logits down through one decoder-layer backward per
 * layer from the table below to the embedding. The shared pieces are layers_bwd.c;
 * the decoder layers' backward sits beside their forward in olmo2.c and llama.c. */
#include "model/layers_bwd.h"   /* struct tp_backward, tp_tape, bwd_*, olmo2/llama_block_bwd */

#include <stdlib.h>
#include <string.h>

/* Each architecture's decoder-layer backward and the tape slots it reads. */
static const struct {
    block_bwd_fn run;
    const unsigned *slots;
} archs[] = {
    [TP_ARCH_OLMO2] = {olmo2_block_bwd, &olmo2_tape_slots},
    [TP_ARCH_LLAMA] = {llama_block_bwd, &llama_tape_slots},
};

/* Floats per row of a tape slot. */
static size_t slot_width(const tp_model_config *c, tp_tape_slot s)
{
    size_t d = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t qd = (size_t)c->num_heads * (size_t)c->head_dim, kd = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    switch (s) {
    case TAPE_Q_PROJ: case TAPE_ROT_Q: return qd;
    case TAPE_K_PROJ: case TAPE_ROT_K: case TAPE_V: return kd;
    case TAPE_GATE: case TAPE_UP: return F;
    default: return d;   /* resid_pre, resid_mid, o_proj and down_proj outputs */
    }
}

static tp_status alloc_f32(tp_backward *b, float **p, size_t n)
{
    void *v = NULL;
    TP_CHECK(be_alloc(b->be, n * sizeof(float), &v));
    *p = v;
    b->bytes += n * sizeof(float);
    return TP_OK;
}

/* The tape in one block: the slots the architecture reads, per layer, and the final
 * norm's input, each [max_rows, width]. */
static tp_status alloc_tape(tp_backward *b)
{
    const tp_model_config *c = &b->m->cfg;
    size_t rows = (size_t)b->f->max_rows, nL = (size_t)c->num_layers;
    unsigned mask = *archs[c->arch].slots;
    if (!(b->tape.slot = tp_calloc(nL, sizeof *b->tape.slot)) ||
        !(b->tape.pattern = tp_calloc(nL, sizeof *b->tape.pattern)) ||
        !(b->pattern_store = tp_calloc(nL, sizeof *b->pattern_store)))
        return TP_ERR_NOMEM;
    size_t per_layer = 0;
    for (int s = 0; s < TAPE_SLOTS; s++)
        if (mask >> s & 1u) per_layer += rows * slot_width(c, (tp_tape_slot)s);
    TP_CHECK(alloc_f32(b, &b->tape_block, per_layer * nL + rows * (size_t)c->hidden_size));
    float *p = b->tape_block;
    for (size_t L = 0; L < nL; L++)
        for (int s = 0; s < TAPE_SLOTS; s++) {
            if (!(mask >> s & 1u)) continue;
            b->tape.slot[L][s] = p;
            p += rows * slot_width(c, (tp_tape_slot)s);
        }
    b->tape.final = p;
    return TP_OK;
}

static tp_status alloc_grads(tp_backward *b)
{
    const tp_model_config *c = &b->m->cfg;
    size_t rows = (size_t)b->f->max_rows;
    size_t d = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t qd = (size_t)c->num_heads * (size_t)c->head_dim, kd = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    struct { float **p; size_t n; } bufs[] = {
        {&b->g, rows * d}, {&b->t1, rows * d}, {&b->t2, rows * d}, {&b->dq, rows * qd}, {&b->dz, rows * qd},
        {&b->dk, rows * kd}, {&b->dv, rows * kd}, {&b->dgate, rows * F}, {&b->dup, rows * F},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) TP_CHECK(alloc_f32(b, bufs[i].p, bufs[i].n));
    if (!b->be->host_memory) TP_CHECK(alloc_f32(b, &b->dlogits, rows * (size_t)c->vocab_size));
    if (!(b->agrad = tp_calloc(rows, sizeof *b->agrad))) return TP_ERR_NOMEM;
    b->bytes += rows * sizeof *b->agrad;
    return TP_OK;
}

/* The ops a backward calls, checked once so a backend without them fails here, naming
 * the first one missing, rather than after a forward. */
static tp_status check_ops(const tp_backend *be)
{
    const struct { const char *name; int set; } ops[] = {
        {"linear_bwd", be->iface.linear_bwd != NULL}, {"rmsnorm_bwd", be->iface.rmsnorm_bwd != NULL},
        {"rope_bwd", be->iface.rope_bwd != NULL}, {"attention_bwd", be->iface.attention_bwd != NULL},
        {"silu_mul_bwd", be->iface.silu_mul_bwd != NULL},
    };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++)
        if (!ops[i].set) return backend_unsupported(be, ops[i].name);
    return TP_OK;
}

tp_status backward_new(const tp_model *m, int max_batch, int max_seq, tp_backward **out)
{
    const tp_model_config *c = &m->cfg;
    *out = NULL;
    if ((size_t)c->arch >= sizeof archs / sizeof *archs || !archs[c->arch].run)
        return tp_err(TP_ERR_UNSUPPORTED, "backward: no decoder-layer backward for architecture %d", (int)c->arch);
    tp_backward *b = tp_calloc(1, sizeof *b);
    if (!b) return TP_ERR_NOMEM;
    b->m = m;
    tp_status st = forward_new(m, max_batch, max_seq, &b->f);
    if (st == TP_OK) {
        b->be = b->f->be;
        st = check_ops(b->be);
    }
    if (st == TP_OK) st = alloc_tape(b);
    if (st == TP_OK) st = alloc_grads(b);
    if (st != TP_OK) {
        backward_free(b);
        return st;
    }
    *out = b;
    return TP_OK;
}

void backward_free(tp_backward *b)
{
    if (!b) return;
    if (b->be) {
        void *dev[] = {b->tape_block, b->g, b->t1, b->t2, b->dq, b->dk, b->dv, b->dz, b->dgate, b->dup,
                       b->dlogits, b->dpattern};
        for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) be_free(b->be, dev[i]);
        for (int L = 0; b->pattern_store && L < b->m->cfg.num_layers; L++) be_free(b->be, b->pattern_store[L]);
    }
    free(b->tape.slot), free(b->tape.pattern), free(b->pattern_store);
    free(b->stage), free(b->agrad);
    forward_free(b->f);
    free(b);
}

int64_t backward_rows(const tp_backward *b) { return b->ready ? b->f->rows : 0; }
size_t backward_scratch_bytes(const tp_backward *b) { return b->bytes + forward_scratch_bytes(b->f); }

/* Layers whose pattern an editing callback may change keep it for this call: every
 * sequence's [H, n, n] one after another, at most H · max_rows · max_seq floats. */
static tp_status plan_patterns(tp_backward *b, const tp_hooks *hooks)
{
    const tp_model_config *c = &b->m->cfg;
    size_t n = (size_t)c->num_heads * (size_t)b->f->max_rows * (size_t)b->f->max_seq;
    for (int L = 0; L < c->num_layers; L++) {
        b->tape.pattern[L] = NULL;
        if (!hooks_point_edits(hooks, L, TP_HOOK_PATTERN)) continue;
        if (!b->pattern_store[L]) TP_CHECK(alloc_f32(b, &b->pattern_store[L], n));
        b->tape.pattern[L] = b->pattern_store[L];
    }
    return TP_OK;
}

tp_status backward_forward(tp_backward *b, const int32_t *ids, const int *lens, int nseq, const tp_hooks *hooks,
                           const float **logits)
{
    b->ready = 0;
    TP_CHECK(plan_patterns(b, hooks));
    b->f->tape = &b->tape;
    tp_status st = forward_run_varlen(b->f, ids, lens, nseq, hooks, TP_LOGITS_ALL, -1, logits);
    b->f->tape = NULL;
    TP_CHECK(st);
    b->ready = 1;
    return TP_OK;
}

tp_status backward_run(tp_backward *b, const float *dlogits, const tp_hooks *grad_hooks)
{
    if (!b->ready)
        return tp_err(TP_ERR_INTERNAL, "backward_run: no tape (call backward_forward first, and check that it succeeded)");
    if (!dlogits) return tp_err(TP_ERR_INTERNAL, "backward_run: dlogits is NULL");
    const tp_model_config *c = &b->m->cfg;
    b->grad_hooks = grad_hooks;
    tp_status st = bwd_head(b, dlogits);
    for (int L = c->num_layers - 1; st == TP_OK && L >= 0; L--) {
        st = model_weights_need(b->m, b->be, L, L - 1);
        if (st == TP_OK) st = archs[c->arch].run(b, L);
    }
    if (st == TP_OK) st = bwd_fire(b, -1, TP_HOOK_EMBED, b->g);
    b->grad_hooks = NULL;
    return st;
}
