/* forward.c — the architecture-independent parts of the forward pass: scratch,
 * embedding, RoPE, attention, MLP, final norm and head. The decoder layers
 * themselves live in olmo2.c and llama.c. */
#include "model/forward_internal.h"

#include "backend/cpu.h"
#include "backend/linear.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Largest f32 tile of a converted matrix: 4 Mi floats (16 MiB). Big enough that the
 * GEMM on it runs at full speed, small enough to cost nothing next to the mmap. */
#define WTILE_MAX_ELEMS ((size_t)4 << 20)

static size_t tile_rows(const tp_mat *w)
{
    size_t r = WTILE_MAX_ELEMS / (size_t)w->cols;
    if (r < 1) r = 1;
    return r < (size_t)w->rows ? r : (size_t)w->rows;
}

static void note_tile(size_t *need, const tp_mat *w)
{
    if (w->dtype == TP_DTYPE_F32) return;
    size_t e = tile_rows(w) * (size_t)w->cols;
    if (e > *need) *need = e;
}

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

tp_status forward_new(const tp_model *m, int max_batch, int max_seq, tp_forward **out)
{
    const tp_model_config *c = &m->cfg;
    if (max_batch < 1 || max_seq < 1)
        return tp_err(TP_ERR_RANGE, "forward: batch %d and sequence length %d must be >= 1",
                      max_batch, max_seq);
    tp_forward *f = tp_calloc(1, sizeof *f);
    if (!f) return TP_ERR_NOMEM;
    f->m = m;
    f->max_batch = max_batch;
    f->max_seq = max_seq;
    size_t rows = (size_t)max_batch * (size_t)max_seq;
    f->max_rows = (int64_t)rows;
    size_t d = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t qd = (size_t)c->num_heads * (size_t)c->head_dim;
    size_t kd = (size_t)c->num_kv_heads * (size_t)c->head_dim;
    size_t half = (size_t)c->head_dim / 2;

    size_t wt = 0;
    note_tile(&wt, &m->embed);
    note_tile(&wt, &m->lm_head);
    for (int L = 0; L < c->num_layers; L++) {
        const tp_mat *mats[7];
        int n = model_layer_mats(m, L, mats, NULL);
        for (int i = 0; i < n; i++) note_tile(&wt, mats[i]);
    }
    f->wtile_elems = wt;

    struct { float **p; size_t n; } bufs[] = {
        {&f->x, rows * d}, {&f->xn, rows * d}, {&f->q, rows * qd}, {&f->k, rows * kd},
        {&f->v, rows * kd}, {&f->z, rows * qd}, {&f->ao, rows * d}, {&f->gate, rows * F},
        {&f->up, rows * F}, {&f->rope_cos, (size_t)max_seq * half},
        {&f->rope_sin, (size_t)max_seq * half},
    };
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) {
        if (!bufs[i].n) continue;
        *bufs[i].p = tp_malloc(bufs[i].n * sizeof(float));
        if (!*bufs[i].p) { forward_free(f); return TP_ERR_NOMEM; }
        f->bytes += bufs[i].n * sizeof(float);
    }
    f->lens = tp_malloc(rows * sizeof *f->lens);
    f->row0 = tp_malloc((rows + 1) * sizeof *f->row0);
    f->aseq = tp_malloc(rows * sizeof *f->aseq);
    if (!f->lens || !f->row0 || !f->aseq) { forward_free(f); return TP_ERR_NOMEM; }
    f->bytes += rows * (sizeof *f->lens + sizeof *f->row0 + sizeof *f->aseq);

    /* cos/sin of position * inv_freq with the product rounded to f32 first, as
     * transformers does (its angle is an f32 matmul). */
    float *inv = tp_malloc(half * sizeof(float));
    if (!inv) { forward_free(f); return TP_ERR_NOMEM; }
    rope_inv_freq(c, inv, (int)half);
    for (int t = 0; t < max_seq; t++) {
        for (size_t i = 0; i < half; i++) {
            float ang = (float)t * inv[i];
            f->rope_cos[(size_t)t * half + i] = cosf(ang);
            f->rope_sin[(size_t)t * half + i] = sinf(ang);
        }
    }
    free(inv);
    *out = f;
    return TP_OK;
}

void forward_free(tp_forward *f)
{
    if (!f) return;
    float *bufs[] = {f->x, f->xn, f->q, f->k, f->v, f->z, f->ao, f->gate, f->up,
                     f->pattern, f->logits, f->wtile, f->rope_cos, f->rope_sin,
                     f->kcache, f->vcache};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) free(bufs[i]);
    free(f->lens);
    free(f->row0);
    free(f->aseq);
    free(f);
}

size_t forward_scratch_bytes(const tp_forward *f) { return f->bytes; }
const tp_model *forward_model(const tp_forward *f) { return f->m; }
int forward_max_batch(const tp_forward *f) { return f->max_batch; }
int forward_max_seq(const tp_forward *f) { return f->max_seq; }

/* BF16/F16 -> f32 conversion of a weight tile, split over the kernel threads (it is
 * memory-bound; one thread leaves the other core idle between GEMMs). */
#define CONVERT_BLOCK ((size_t)1 << 18)

typedef struct {
    tp_dtype dt;
    const char *src;
    float *dst;
    size_t n;
} convert_job;

static void convert_task(void *arg, int64_t t, int thread)
{
    const convert_job *j = arg;
    size_t i0 = (size_t)t * CONVERT_BLOCK, n = j->n - i0 < CONVERT_BLOCK ? j->n - i0 : CONVERT_BLOCK;
    tp_convert_to_f32(j->dt, j->src + i0 * tp_dtype_size(j->dt), j->dst + i0, n);
    (void)thread;
}

/* OpenBLAS path: f32 weights straight from the mapping, others converted a tile of
 * rows at a time into f->wtile (allocated on first use). */
static tp_status linear_blas(tp_forward *f, const tp_mat *W, const float *x, int64_t n, float *y)
{
    if (W->dtype == TP_DTYPE_F32) {
        cpu_gemm_nt(n, W->rows, W->cols, 1.0f, x, W->cols, (const float *)W->data, W->cols,
                    0.0f, y, W->rows);
        return TP_OK;
    }
    if (!f->wtile) {
        f->wtile = tp_malloc(f->wtile_elems * sizeof(float));
        if (!f->wtile) return TP_ERR_NOMEM;
        f->bytes += f->wtile_elems * sizeof(float);
    }
    size_t R = tile_rows(W), esz = tp_dtype_size(W->dtype);
    for (int64_t r0 = 0; r0 < W->rows; r0 += (int64_t)R) {
        int64_t r = W->rows - r0 < (int64_t)R ? W->rows - r0 : (int64_t)R;
        const char *src = (const char *)W->data + (size_t)r0 * (size_t)W->cols * esz;
        convert_job cj = {W->dtype, src, f->wtile, (size_t)(r * W->cols)};
        cpu_parallel_for((int64_t)((cj.n + CONVERT_BLOCK - 1) / CONVERT_BLOCK), convert_task, &cj);
        cpu_gemm_nt(n, r, W->cols, 1.0f, x, W->cols, f->wtile, W->cols, 0.0f, y + r0, W->rows);
    }
    return TP_OK;
}

/* Below this many rows an f32 product is a matrix-vector one (a decoding step), where
 * OpenBLAS's GEMV beats packing the weights for a 12-row kernel. */
#define LINEAR_MIN_ROWS 4

tp_status fwd_linear_n(tp_forward *f, const tp_mat *const *W, float *const *y, int nw,
                       const float *x, int64_t n)
{
    cpu_linear_out o[FWD_LINEAR_MAX];
    int use = nw <= FWD_LINEAR_MAX && cpu_linear_supported(), all_f32 = 1;
    for (int i = 0; use && i < nw; i++) {
        tp_dtype dt = W[i]->dtype;
        use = W[i]->cols == W[0]->cols &&
              (dt == TP_DTYPE_F32 || dt == TP_DTYPE_BF16 || dt == TP_DTYPE_F16);
        all_f32 &= dt == TP_DTYPE_F32;
        o[i] = (cpu_linear_out){W[i]->data, W[i]->rows, W[i]->cols,
                                dt == TP_DTYPE_BF16 ? CPU_W_BF16 : dt == TP_DTYPE_F16 ? CPU_W_F16 : CPU_W_F32,
                                y[i], W[i]->rows};
    }
    if (use && (n >= LINEAR_MIN_ROWS || !all_f32))
        return cpu_linear(n, W[0]->cols, x, W[0]->cols, o, nw) ? TP_ERR_NOMEM : TP_OK;
    for (int i = 0; i < nw; i++) TP_CHECK(linear_blas(f, W[i], x, n, y[i]));
    return TP_OK;
}

tp_status fwd_linear(tp_forward *f, const tp_mat *W, const float *x, int64_t n, float *y)
{
    return fwd_linear_n(f, &W, &y, 1, x, n);
}

tp_status fwd_fire(tp_forward *f, int L, tp_hook_point pt, float *data)
{
    if (!hooks_active(f->hooks, L, pt)) return TP_OK;
    if (pt == TP_HOOK_PATTERN) return tp_err(TP_ERR_INTERNAL, "pattern hook fired through fwd_fire");
    char name[96];
    tp_hook_info info = {.layer = L, .point = pt, .seq = 0, .nseq = f->nseq, .seq_lens = f->lens};
    info.name = hooks_point_name(L, pt, name, sizeof name);
    info.ndim = f->varlen ? hooks_point_shape(&f->m->cfg, pt, 1, (int)f->rows, info.shape)
                          : hooks_point_shape(&f->m->cfg, pt, f->nseq, f->T, info.shape);
    return hooks_fire(f->hooks, &info, data);
}

/* In-place RoPE on x [rows, nh*dh] (rotate_half convention: pairs (i, i+dh/2)). */
static void apply_rope(const tp_forward *f, float *x, int nh)
{
    const tp_model_config *c = &f->m->cfg;
    int dh = c->head_dim, half = dh / 2;
    for (int s = 0; s < f->nseq; s++) {
        for (int t = 0; t < f->lens[s]; t++) {
            int64_t r = f->row0[s] + t;
            int pos = f->pos0 + t;
            const float *cs = f->rope_cos + (size_t)pos * half, *sn = f->rope_sin + (size_t)pos * half;
            for (int h = 0; h < nh; h++) {
                float *v = x + (size_t)r * nh * dh + (size_t)h * dh;
                for (int i = 0; i < half; i++) {
                    float a = v[i], b = v[i + half];
                    v[i] = a * cs[i] - b * sn[i];
                    v[i + half] = b * cs[i] + a * sn[i];
                }
            }
        }
    }
}

tp_status fwd_attention(tp_forward *f, int L, const float *in)
{
    const tp_model *m = f->m;
    const tp_model_config *c = &m->cfg;
    const tp_layer *l = &m->layers[L];
    int64_t rows = f->rows;
    int H = c->num_heads, K = c->num_kv_heads, dh = c->head_dim;
    int64_t qd = (int64_t)H * dh, kd = (int64_t)K * dh;
    float eps = (float)c->rms_norm_eps;

    {
        const tp_mat *W[3] = {&l->q, &l->k, &l->v};
        float *y[3] = {f->q, f->k, f->v};
        TP_CHECK(fwd_linear_n(f, W, y, 3, in, rows));
    }
    if (l->q_norm) cpu_rmsnorm(f->q, f->q, l->q_norm, rows, qd, eps);
    if (l->k_norm) cpu_rmsnorm(f->k, f->k, l->k_norm, rows, kd, eps);
    TP_CHECK(fwd_fire(f, L, TP_HOOK_Q, f->q));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_K, f->k));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_V, f->v));
    apply_rope(f, f->q, H);
    apply_rope(f, f->k, K);
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ROT_Q, f->q));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_ROT_K, f->k));

    int want_pattern = hooks_active(f->hooks, L, TP_HOOK_PATTERN);
    if (want_pattern && f->pos0 > 0)
        return tp_err(TP_ERR_UNSUPPORTED, "attn.hook_pattern is not delivered while decoding with a KV cache");
    if (want_pattern && !f->pattern) {
        /* Only when asked: [H, T, T] for one sequence, kept for later runs. */
        size_t n = (size_t)H * (size_t)f->max_seq * (size_t)f->max_seq;
        f->pattern = tp_malloc(n * sizeof(float));
        if (!f->pattern) return TP_ERR_NOMEM;
        f->bytes += n * sizeof(float);
    }
    const cpu_attn_shape shape = {.H = H, .K = K, .dh = dh, .ldq = qd, .ldk = kd, .ldz = qd,
                                  .scale = 1.0f / sqrtf((float)dh)};
    for (int b = 0; b < f->nseq; b++) {
        int64_t r0 = f->row0[b], T = f->lens[b];
        const float *kb = f->k + (size_t)r0 * kd, *vb = f->v + (size_t)r0 * kd;
        if (f->kcache) {
            /* Append this call's rotated keys and values, then attend over the cache. */
            size_t base = ((size_t)L * f->max_batch + (size_t)b) * (size_t)f->max_seq * (size_t)kd;
            memcpy(f->kcache + base + (size_t)f->pos0 * kd, kb, (size_t)T * kd * sizeof(float));
            memcpy(f->vcache + base + (size_t)f->pos0 * kd, vb, (size_t)T * kd * sizeof(float));
            kb = f->kcache + base;
            vb = f->vcache + base;
        }
        f->aseq[b] = (cpu_attn_seq){.q = f->q + (size_t)r0 * qd, .k = kb, .v = vb,
                                    .z = f->z + (size_t)r0 * qd, .p = NULL, .nq = T, .off = f->pos0};
    }
    if (!want_pattern) {
        if (cpu_attention(&shape, f->aseq, f->nseq, CPU_ATTN_FUSED)) return TP_ERR_NOMEM;
    } else {
        /* Per sequence: the pattern of every head, the callbacks (which may edit it),
         * then z from the pattern as it is now. */
        for (int b = 0; b < f->nseq; b++) {
            int64_t T = f->lens[b];
            f->aseq[b].p = f->pattern;
            if (cpu_attention(&shape, &f->aseq[b], 1, CPU_ATTN_PATTERN)) return TP_ERR_NOMEM;
            char name[96];
            tp_hook_info info = {.layer = L, .point = TP_HOOK_PATTERN, .ndim = 4, .seq = b,
                                 .nseq = f->nseq, .seq_lens = f->lens, .shape = {1, H, T, T}};
            info.name = hooks_point_name(L, TP_HOOK_PATTERN, name, sizeof name);
            TP_CHECK(hooks_fire(f->hooks, &info, f->pattern));
            if (cpu_attention(&shape, &f->aseq[b], 1, CPU_ATTN_PV)) return TP_ERR_NOMEM;
        }
    }
    TP_CHECK(fwd_fire(f, L, TP_HOOK_Z, f->z));
    TP_CHECK(fwd_linear(f, &l->o, f->z, rows, f->ao));
    return fwd_fire(f, L, TP_HOOK_ATTN_O, f->ao);
}

tp_status fwd_mlp(tp_forward *f, int L, const float *in)
{
    const tp_layer *l = &f->m->layers[L];
    int64_t rows = f->rows, F = f->m->cfg.intermediate_size;
    const tp_mat *W[2] = {&l->gate, &l->up};
    float *y[2] = {f->gate, f->up};
    TP_CHECK(fwd_linear_n(f, W, y, 2, in, rows));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_PRE, f->gate));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_PRE_LINEAR, f->up));
    cpu_silu_mul(f->gate, f->up, (size_t)(rows * F));
    TP_CHECK(fwd_fire(f, L, TP_HOOK_MLP_POST, f->gate));
    TP_CHECK(fwd_linear(f, &l->down, f->gate, rows, f->ao));
    return fwd_fire(f, L, TP_HOOK_MLP_O, f->ao);
}

static tp_status embed_tokens(tp_forward *f, const int32_t *ids, int64_t rows)
{
    const tp_mat *E = &f->m->embed;
    size_t d = (size_t)E->cols, esz = tp_dtype_size(E->dtype);
    for (int64_t r = 0; r < rows; r++) {
        int32_t id = ids[r];
        if (id < 0 || id >= E->rows)
            return tp_err(TP_ERR_RANGE, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                          id, (long long)r, (long long)E->rows);
        tp_convert_to_f32(E->dtype, (const char *)E->data + (size_t)id * d * esz,
                          f->x + (size_t)r * d, d);
    }
    return TP_OK;
}

static tp_status ensure_logits(tp_forward *f, size_t rows)
{
    /* Grown to the largest request seen: [B, V] for next-token logits costs far less
     * than [B*T, V] at a 100k vocabulary. */
    size_t n = rows * (size_t)f->m->cfg.vocab_size;
    if (n <= f->logits_elems) return TP_OK;
    free(f->logits);
    f->bytes -= f->logits_elems * sizeof(float);
    f->logits_elems = 0;
    f->logits = tp_malloc(n * sizeof(float));
    if (!f->logits) return TP_ERR_NOMEM;
    f->logits_elems = n;
    f->bytes += n * sizeof(float);
    return TP_OK;
}

tp_status forward_kv_enable(tp_forward *f)
{
    if (f->kcache) return TP_OK;
    const tp_model_config *c = &f->m->cfg;
    size_t n = (size_t)c->num_layers * (size_t)f->max_batch * (size_t)f->max_seq *
               (size_t)c->num_kv_heads * (size_t)c->head_dim;
    f->kcache = tp_malloc(n * sizeof(float));
    f->vcache = tp_malloc(n * sizeof(float));
    if (!f->kcache || !f->vcache) return TP_ERR_NOMEM;
    f->bytes += 2 * n * sizeof(float);
    return TP_OK;
}

static tp_status forward_impl(tp_forward *f, const int32_t *ids, int pos0, const tp_hooks *hooks,
                              tp_logits_mode mode, int last_layer, const float **logits);

/* Equal lengths: B sequences of T tokens at positions pos0..pos0+T-1. */
static tp_status set_equal(tp_forward *f, int B, int T, int pos0)
{
    if (B < 1 || B > f->max_batch || T < 1 || pos0 < 0 || pos0 + T > f->max_seq)
        return tp_err(TP_ERR_RANGE, "forward: batch %d x positions %d..%d exceeds the allocated %d x %d",
                      B, pos0, pos0 + T - 1, f->max_batch, f->max_seq);
    f->nseq = B, f->T = T, f->varlen = 0, f->rows = (int64_t)B * T;
    for (int b = 0; b <= B; b++) {
        if (b < B) f->lens[b] = T;
        f->row0[b] = (int64_t)b * T;
    }
    return TP_OK;
}

tp_status forward_run(tp_forward *f, const int32_t *ids, int B, int T, const tp_hooks *hooks,
                      tp_logits_mode mode, int last_layer, const float **logits)
{
    TP_CHECK(set_equal(f, B, T, 0));
    return forward_impl(f, ids, 0, hooks, mode, last_layer, logits);
}

tp_status forward_run_varlen(tp_forward *f, const int32_t *ids, const int *lens, int nseq,
                             const tp_hooks *hooks, tp_logits_mode mode, int last_layer,
                             const float **logits)
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
        f->lens[b] = lens[b];
        f->row0[b] = rows;
        rows += lens[b];
        if (rows > f->max_rows)
            return tp_err(TP_ERR_RANGE, "forward: %lld tokens in %d sequences exceed the allocated %d x %d",
                          (long long)rows, nseq, f->max_batch, f->max_seq);
    }
    f->row0[nseq] = rows;
    f->nseq = nseq, f->T = 0, f->varlen = 1, f->rows = rows;
    return forward_impl(f, ids, 0, hooks, mode, last_layer, logits);
}

tp_status forward_step(tp_forward *f, const int32_t *ids, int B, int T, int pos0,
                       const tp_hooks *hooks, tp_logits_mode mode, const float **logits)
{
    if (pos0 > 0 && !f->kcache)
        return tp_err(TP_ERR_INTERNAL, "forward_step at position %d needs forward_kv_enable", pos0);
    TP_CHECK(set_equal(f, B, T, pos0));
    return forward_impl(f, ids, pos0, hooks, mode, -1, logits);
}

static tp_status forward_impl(tp_forward *f, const int32_t *ids, int pos0, const tp_hooks *hooks,
                              tp_logits_mode mode, int last_layer, const float **logits)
{
    const tp_model *m = f->m;
    const tp_model_config *c = &m->cfg;
    if (last_layer >= c->num_layers)
        return tp_err(TP_ERR_RANGE, "forward: layer %d out of range (model has %d layers)",
                      last_layer, c->num_layers);
    f->pos0 = pos0, f->hooks = hooks;
    int64_t rows = f->rows, d = c->hidden_size;
    int B = f->nseq;
    int stop = (mode == TP_LOGITS_NONE && last_layer >= 0) ? last_layer : c->num_layers - 1;

    TP_CHECK(embed_tokens(f, ids, rows));
    TP_CHECK(fwd_fire(f, -1, TP_HOOK_EMBED, f->x));
    for (int L = 0; L <= stop; L++) {
        tp_status st = c->arch == TP_ARCH_OLMO2 ? olmo2_block(f, L) : llama_block(f, L);
        if (st != TP_OK) return st;
    }
    if (stop < c->num_layers - 1) return TP_OK;

    cpu_rmsnorm(f->xn, f->x, m->final_norm, rows, d, (float)c->rms_norm_eps);
    TP_CHECK(fwd_fire(f, -1, TP_HOOK_LN_FINAL, f->xn));
    if (mode == TP_LOGITS_NONE) {
        if (logits) *logits = NULL;
        return TP_OK;
    }
    TP_CHECK(ensure_logits(f, mode == TP_LOGITS_ALL ? (size_t)rows : (size_t)B));
    if (mode == TP_LOGITS_ALL) {
        TP_CHECK(fwd_linear(f, &m->lm_head, f->xn, rows, f->logits));
    } else {
        /* Gather each sequence's last position (row >= b, so moving up is safe), then
         * one GEMM over B rows. */
        for (int b = 0; b < B; b++)
            memmove(f->xn + (size_t)b * d, f->xn + (size_t)(f->row0[b] + f->lens[b] - 1) * d,
                    (size_t)d * sizeof(float));
        TP_CHECK(fwd_linear(f, &m->lm_head, f->xn, B, f->logits));
    }
    if (logits) *logits = f->logits;
    return TP_OK;
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
