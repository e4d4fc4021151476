/* forward.c — the forward pass's driver: scratch on the model's backend, RoPE
 * tables, the KV cache, and the run over the layers (embedding, one decoder-layer
 * builder per layer from the table below, final norm and head). The shared layer
 * code is layers.c; the decoder layers are olmo2.c and llama.c. */
#include "model/layers.h"   /* struct tp_forward, fwd_embed, fwd_head, olmo2_block, llama_block */

#include "core/log.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The decoder-layer builder of each architecture. */
static const block_fn blocks[] = {
    [TP_ARCH_OLMO2] = olmo2_block,
    [TP_ARCH_LLAMA] = llama_block,
};

/* RoPE inverse frequencies exactly as transformers computes them, in f32:
 * inv_freq = 1 / theta^(2i/dh), then the rope_type's rescaling. */
static void rope_inv_freq(const tp_model_config *c, float *inv, int half)
{
    int dh = c->head_dim;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)dh;
        inv[i] = 1.0f / powf((float)c->rope_theta, e);
    }
    if (c->rope_type == TP_ROPE_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] /= (float)c->rope_factor;
    } else if (c->rope_type == TP_ROPE_LLAMA3) {
        /* transformers _compute_llama3_parameters (Llama 3.1 frequency smoothing) */
        float factor = (float)c->rope_factor, lo = (float)c->rope_low_freq_factor,
              hi = (float)c->rope_high_freq_factor, old = (float)c->rope_original_max_pos;
        float lo_wavelen = old / lo, hi_wavelen = old / hi;
        for (int i = 0; i < half; i++) {
            float wavelen = 2.0f * (float)M_PI / inv[i];
            float f = wavelen > lo_wavelen ? inv[i] / factor : inv[i];
            float smooth = (old / wavelen - lo) / (hi - lo);
            float smoothed = (1.0f - smooth) * f / factor + smooth * f;
            int medium = !(wavelen < hi_wavelen) && !(wavelen > lo_wavelen);
            inv[i] = medium ? smoothed : f;
        }
    }
}

/* The scratch of one call ([be] in layers.h on f->be, the rest on the host), sized
 * from the config for max_rows rows. */
static tp_status alloc_scratch(tp_forward *f)
{
    const tp_model_config *c = &f->m->cfg;
    size_t rows = (size_t)f->max_rows;
    size_t d = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t qd = (size_t)c->num_heads * (size_t)c->head_dim;
    size_t kd = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    size_t half = (size_t)c->head_dim / 2;
    struct { float **p; size_t n; } bufs[] = {
        {&f->x, rows * d}, {&f->xn, rows * d}, {&f->q, rows * qd}, {&f->k, rows * kd},
        {&f->v, rows * kd}, {&f->z, rows * qd}, {&f->ao, rows * d}, {&f->gate, rows * F},
        {&f->up, rows * F}, {&f->rope_cos, (size_t)f->max_seq * half},
        {&f->rope_sin, (size_t)f->max_seq * half},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
        TP_CHECK(fwd_alloc_f32(f, bufs[i].p, bufs[i].n));
    f->lens = tp_malloc(rows * sizeof *f->lens);
    f->off = tp_malloc(rows * sizeof *f->off);
    f->row0 = tp_malloc((rows + 1) * sizeof *f->row0);
    f->aseq = tp_malloc(rows * sizeof *f->aseq);
    f->pos_host = tp_malloc(rows * sizeof *f->pos_host);
    if (!f->lens || !f->off || !f->row0 || !f->aseq || !f->pos_host) return TP_ERR_NOMEM;
    f->bytes += rows * (sizeof *f->lens + sizeof *f->off + sizeof *f->row0 + sizeof *f->aseq + sizeof *f->pos_host);
    if (f->be->host_memory) return TP_OK;   /* the ops read the host arrays themselves */
    TP_CHECK(fwd_alloc_i32(f, &f->pos_dev, rows));
    return fwd_alloc_i32(f, &f->ids_dev, rows);
}

/* cos/sin of position * inv_freq with the product rounded to f32 first, as
 * transformers does (its angle is an f32 matmul); made on the host, then uploaded. */
static tp_status rope_tables(tp_forward *f)
{
    size_t half = (size_t)f->m->cfg.head_dim / 2, n = (size_t)f->max_seq * half;
    float *inv = tp_malloc(half * sizeof(float)), *cs = tp_malloc(n * sizeof(float)),
          *sn = tp_malloc(n * sizeof(float));
    tp_status st = inv && cs && sn ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) {
        rope_inv_freq(&f->m->cfg, inv, (int)half);
        for (int t = 0; t < f->max_seq; t++) {
            for (size_t i = 0; i < half; i++) {
                float ang = (float)t * inv[i];
                cs[(size_t)t * half + i] = cosf(ang);
                sn[(size_t)t * half + i] = sinf(ang);
            }
        }
        st = be_upload(f->be, f->rope_cos, cs, n * sizeof(float));
    }
    if (st == TP_OK) st = be_upload(f->be, f->rope_sin, sn, n * sizeof(float));
    free(inv), free(cs), free(sn);
    return st;
}

tp_status forward_new(const tp_model *m, int max_batch, int max_seq, tp_forward **out)
{
    const tp_model_config *c = &m->cfg;
    if (max_batch < 1 || max_seq < 1)
        return tp_err(TP_ERR_RANGE, "forward: batch %d and sequence length %d must be >= 1",
                      max_batch, max_seq);
    if ((size_t)c->arch >= sizeof blocks / sizeof *blocks || !blocks[c->arch])
        return tp_err(TP_ERR_UNSUPPORTED, "forward: no decoder layer for architecture %d", (int)c->arch);
    /* Positions past max_position_embeddings are outside what the model was trained
     * on: results there are not to be trusted. Said once per process. */
    static bool warned_positions;
    if (max_seq > c->max_position_embeddings && !warned_positions) {
        warned_positions = true;
        tp_log_warn("sequences of up to %d tokens (data.seq_len, or a prompt) exceed max_position_embeddings = %d of %s/config.json: "
                    "positions past it are beyond what the model was trained on", max_seq,
                    c->max_position_embeddings, m->dir);
    }
    if (!model_weights(m, backend_default()))
        return tp_err(TP_ERR_INTERNAL, "forward: the weights of %s are not on backend %s (model_open uploads them "
                      "to the default backend of that time)", m->dir, backend_default()->name);
    tp_forward *f = tp_calloc(1, sizeof *f);
    if (!f) return TP_ERR_NOMEM;
    f->m = m;
    f->be = backend_default();
    f->w = model_weights(m, f->be);
    f->max_batch = max_batch;
    f->max_seq = max_seq;
    f->max_rows = (int64_t)max_batch * max_seq;
    tp_status st = alloc_scratch(f);
    if (st == TP_OK) st = rope_tables(f);
    if (st != TP_OK) {
        forward_free(f);
        return st;
    }
    *out = f;
    return TP_OK;
}

void forward_free(tp_forward *f)
{
    if (!f) return;
    void *dev[] = {f->x, f->xn, f->q, f->k, f->v, f->z, f->ao, f->gate, f->up, f->pattern, f->logits,
                   f->rope_cos, f->rope_sin, f->kcache, f->vcache, f->pos_dev, f->ids_dev};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) be_free(f->be, dev[i]);
    void *host[] = {f->lens, f->off, f->row0, f->aseq, f->pos_host, f->logits_host, f->stage};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
    free(f);
}

size_t forward_scratch_bytes(const tp_forward *f) { return f->bytes; }
const tp_model *forward_model(const tp_forward *f) { return f->m; }
int forward_max_batch(const tp_forward *f) { return f->max_batch; }
int forward_max_seq(const tp_forward *f) { return f->max_seq; }

tp_status forward_kv_enable(tp_forward *f)
{
    if (f->kcache) return TP_OK;
    const tp_model_config *c = &f->m->cfg;
    size_t n = (size_t)c->num_layers * (size_t)f->max_batch * (size_t)f->max_seq *
               (size_t)c->num_kv_heads * (size_t)c->head_dim;
    TP_CHECK(fwd_alloc_f32(f, &f->kcache, n));
    return fwd_alloc_f32(f, &f->vcache, n);
}

/* The run: from the embeddings of `ids` (first == 0, resid NULL) or from `resid`
 * [f->rows, d] host memory entering layer `first` (forward_run_from). */
static tp_status forward_impl(tp_forward *f, const int32_t *ids, const float *resid, int first, int pos0,
                              const tp_hooks *hooks, tp_logits_mode mode, int last_layer,
                              const float **logits);

/* Equal lengths: B sequences of T tokens at positions pos0..pos0+T-1. */
static tp_status set_equal(tp_forward *f, int B, int T, int pos0)
{
    if (B < 1 || B > f->max_batch || T < 1 || pos0 < 0 || pos0 + T > f->max_seq)
        return tp_err(TP_ERR_RANGE, "forward: batch %d x positions %d..%d exceeds the allocated %d x %d",
                      B, pos0, pos0 + T - 1, f->max_batch, f->max_seq);
    f->nseq = B, f->T = T, f->varlen = 0, f->rows = (int64_t)B * T;
    for (int b = 0; b <= B; b++) {
        if (b < B) f->lens[b] = T, f->off[b] = pos0;
        f->row0[b] = (int64_t)b * T;
    }
    return TP_OK;
}

tp_status forward_run(tp_forward *f, const int32_t *ids, int B, int T, const tp_hooks *hooks,
                      tp_logits_mode mode, int last_layer, const float **logits)
{
    TP_CHECK(set_equal(f, B, T, 0));
    return forward_impl(f, ids, NULL, 0, 0, hooks, mode, last_layer, logits);
}

/* Variable lengths: nseq sequences of lens[b] tokens each at positions 0..lens[b]-1. */
static tp_status set_varlen(tp_forward *f, const int *lens, int nseq)
{
    if (nseq < 1 || nseq > f->max_rows)
        return tp_err(TP_ERR_RANGE, "forward: %d sequences (1..%lld allowed)", nseq, (long long)f->max_rows);
    if (f->kcache && nseq > f->max_batch)
        return tp_err(TP_ERR_RANGE, "forward: %d sequences exceed the KV cache's %d", nseq, f->max_batch);
    int64_t rows = 0;
    for (int b = 0; b < nseq; b++) {
        if (lens[b] < 1 || lens[b] > f->max_seq)
            return tp_err(TP_ERR_RANGE, "forward: sequence %d has %d tokens (1..%d allowed)", b, lens[b],
                          f->max_seq);
        f->lens[b] = lens[b], f->off[b] = 0;
        f->row0[b] = rows;
        rows += lens[b];
        if (rows > f->max_rows)
            return tp_err(TP_ERR_RANGE, "forward: %lld tokens in %d sequences exceed the allocated %d x %d",
                          (long long)rows, nseq, f->max_batch, f->max_seq);
    }
    f->row0[nseq] = rows;
    f->nseq = nseq, f->T = 0, f->varlen = 1, f->rows = rows;
    return TP_OK;
}

tp_status forward_run_varlen(tp_forward *f, const int32_t *ids, const int *lens, int nseq,
                             const tp_hooks *hooks, tp_logits_mode mode, int last_layer,
                             const float **logits)
{
    TP_CHECK(set_varlen(f, lens, nseq));
    return forward_impl(f, ids, NULL, 0, 0, hooks, mode, last_layer, logits);
}

/* Sequence b starts at position prefix->off[b]: the prefix's keys and values of the
 * positions below it go to the KV cache slot b of every layer the run computes. */
static tp_status set_prefix(tp_forward *f, int first_layer, const tp_forward_prefix *prefix, int *max_off)
{
    const tp_model_config *c = &f->m->cfg;
    size_t kd = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    *max_off = 0;
    if (!f->kcache) return tp_err(TP_ERR_INTERNAL, "forward_run_from with a prefix needs forward_kv_enable");
    for (int b = 0; b < f->nseq; b++) {
        int o = prefix->off[b];
        if (o < 0 || o > prefix->len || o + f->lens[b] > f->max_seq)
            return tp_err(TP_ERR_RANGE, "forward: sequence %d starts at position %d (prefix of %d, %d positions allowed)",
                          b, o, prefix->len, f->max_seq);
        f->off[b] = o;
        *max_off = o > *max_off ? o : *max_off;
        for (int L = first_layer; L < c->num_layers && o > 0; L++) {
            size_t base = ((size_t)L * f->max_batch + (size_t)b) * (size_t)f->max_seq * kd;
            size_t src = (size_t)L * (size_t)prefix->len * kd, bytes = (size_t)o * kd * sizeof(float);
            TP_CHECK(be_upload(f->be, f->kcache + base, prefix->k + src, bytes));
            TP_CHECK(be_upload(f->be, f->vcache + base, prefix->v + src, bytes));
        }
    }
    return TP_OK;
}

tp_status forward_run_from(tp_forward *f, int first_layer, const float *resid, const int *lens, int nseq,
                           const tp_forward_prefix *prefix, const tp_hooks *hooks, tp_logits_mode mode,
                           const float **logits)
{
    int nl = f->m->cfg.num_layers, max_off = 0;
    if (first_layer < 0 || first_layer >= nl)
        return tp_err(TP_ERR_RANGE, "forward: start layer %d out of range (model has layers 0..%d)",
                      first_layer, nl - 1);
    TP_CHECK(set_varlen(f, lens, nseq));
    if (prefix) TP_CHECK(set_prefix(f, first_layer, prefix, &max_off));
    return forward_impl(f, NULL, resid, first_layer, max_off, hooks, mode, -1, logits);
}

tp_status forward_step(tp_forward *f, const int32_t *ids, int B, int T, int pos0,
                       const tp_hooks *hooks, tp_logits_mode mode, const float **logits)
{
    if (pos0 > 0 && !f->kcache)
        return tp_err(TP_ERR_INTERNAL, "forward_step at position %d needs forward_kv_enable", pos0);
    TP_CHECK(set_equal(f, B, T, pos0));
    return forward_impl(f, ids, NULL, 0, pos0, hooks, mode, -1, logits);
}

/* Each row's position (the rope op reads them) and the call's ids (none from
 * forward_run_from), as the backend reads them: the host arrays themselves on a
 * host-memory backend, else uploaded. */
static tp_status inputs_to_backend(tp_forward *f, const int32_t *ids, const int32_t **be_ids)
{
    for (int s = 0; s < f->nseq; s++)
        for (int t = 0; t < f->lens[s]; t++) f->pos_host[f->row0[s] + t] = f->off[s] + t;
    if (f->be->host_memory) {
        f->pos = f->pos_host, *be_ids = ids;
        return TP_OK;
    }
    size_t bytes = (size_t)f->rows * sizeof(int32_t);
    TP_CHECK(be_upload(f->be, f->pos_dev, f->pos_host, bytes));
    if (ids) TP_CHECK(be_upload(f->be, f->ids_dev, ids, bytes));
    f->pos = f->pos_dev, *be_ids = f->ids_dev;
    return TP_OK;
}

/* Whether a callback watches layer L or what follows it (ln_final): then it must see
 * every row, and forward_run_from's final layer runs whole. */
static int layer_watched(const tp_hooks *hooks, int L)
{
    for (int pt = 0; pt < TP_HOOK_LAYER_COUNT; pt++)
        if (hooks_active(hooks, L, (tp_hook_point)pt)) return 1;
    return hooks_active(hooks, -1, TP_HOOK_LN_FINAL);
}

static tp_status forward_impl(tp_forward *f, const int32_t *ids, const float *resid, int first, int pos0,
                              const tp_hooks *hooks, tp_logits_mode mode, int last_layer,
                              const float **logits)
{
    const tp_model_config *c = &f->m->cfg;
    if (last_layer >= c->num_layers)
        return tp_err(TP_ERR_RANGE, "forward: layer %d out of range (model has %d layers)",
                      last_layer, c->num_layers);
    f->pos0 = pos0, f->hooks = hooks;
    int stop = (mode == TP_LOGITS_NONE && last_layer >= 0) ? last_layer : c->num_layers - 1;

    const int32_t *be_ids;
    TP_CHECK(inputs_to_backend(f, ids, &be_ids));
    if (resid) TP_CHECK(be_upload(f->be, f->x, resid, (size_t)f->rows * (size_t)c->hidden_size * sizeof(float)));
    else TP_CHECK(fwd_embed(f, be_ids));
    int trim = resid && mode == TP_LOGITS_LAST && !layer_watched(hooks, c->num_layers - 1);
    for (int L = first; L <= stop; L++) {
        TP_CHECK(model_weights_need(f->m, f->be, L, L < stop ? L + 1 : -1));
        f->last_only = trim && L == c->num_layers - 1;
        tp_status st = blocks[c->arch](f, L);
        f->last_only = 0;
        TP_CHECK(st);
    }
    if (stop < c->num_layers - 1) return TP_OK;
    return fwd_head(f, mode, logits);
}

double forward_flops(const tp_model_config *c, int B, int T, tp_logits_mode mode)
{
    double rows = (double)B * T, d = c->hidden_size, F = c->intermediate_size;
    double qd = (double)c->num_heads * c->head_dim, kd = (double)c->num_kv_heads * c->head_dim;
    double per_layer = 2.0 * rows * (d * qd + 2 * d * kd + qd * d + 3 * d * F)
                     + 2.0 * 2.0 * (double)B * c->num_heads * (double)T * T * c->head_dim;
    double head = mode == TP_LOGITS_ALL ? 2.0 * rows * d * c->vocab_size
                : mode == TP_LOGITS_LAST ? 2.0 * B * d * c->vocab_size : 0.0;
    return per_layer * c->num_layers + head;
}
