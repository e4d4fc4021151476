/* patch.c — the patching engine (see patch.h): the clean and corrupted runs kept
 * per layer, patched runs restarted at the patched layer in batches of cells, the
 * batches shared over the MPI ranks, the metrics. */
#include "analysis/circuits/patch.h"

#include "core/progress.h"
#include "core/rng.h"
#include "dist/world.h"
#include "model/forward.h"
#include "model/hooks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Patched rows per forward call when the caller does not say: large enough for the
 * GEMMs to run at full speed, small enough that the scratch of a 7B model stays
 * within a few GB ([rows, F] for the MLP). */
#define PATCH_BATCH_ROWS 4096

static const char *const sweep_names[PATCH_NSWEEPS] = {"resid_pre", "attn_out", "mlp_out", "z"};
static const tp_hook_point sweep_points[PATCH_NSWEEPS] = {TP_HOOK_RESID_PRE, TP_HOOK_ATTN_OUT,
                                                          TP_HOOK_MLP_OUT, TP_HOOK_Z};

const char *patch_sweep_name(patch_sweep s)
{
    return s >= 0 && s < PATCH_NSWEEPS ? sweep_names[s] : "?";
}

tp_status patch_parse_sweeps(const char *text, unsigned *mask)
{
    *mask = 0;
    const char *p = text;
    while (*p) {
        size_t n = strcspn(p, ",");
        int found = -1;
        for (int s = 0; s < PATCH_NSWEEPS; s++)
            if (strlen(sweep_names[s]) == n && !strncmp(p, sweep_names[s], n)) found = s;
        if (found < 0)
            return tp_err(TP_ERR_CONFIG, "--sweep: unknown sweep '%.*s' (resid_pre, attn_out, mlp_out, z)", (int)n, p);
        *mask |= 1u << found;
        p += n;
        if (*p == ',') p++;
    }
    if (!*mask) return tp_err(TP_ERR_CONFIG, "--sweep: no sweep named (resid_pre, attn_out, mlp_out, z)");
    return TP_OK;
}

/* ---- noise ------------------------------------------------------------------------ */

tp_status patch_embedding_std(const tp_model *m, double *std)
{
    const tp_mat *E = &m->embed;
    size_t d = (size_t)E->cols, esz = tp_dtype_size(E->dtype);
    float *row = tp_malloc(d * sizeof(float));
    if (!row) return TP_ERR_NOMEM;
    double sum = 0, ss = 0, n = (double)E->rows * (double)d;
    /* Two passes (mean, then squared deviations): no cancellation. */
    for (int pass = 0; pass < 2; pass++) {
        double mean = sum / n;
        for (int64_t r = 0; r < E->rows; r++) {
            tp_convert_to_f32(E->dtype, (const char *)E->data + (size_t)r * d * esz, row, d);
            for (size_t i = 0; i < d; i++) {
                if (pass == 0) sum += row[i];
                else ss += (row[i] - mean) * (row[i] - mean);
            }
        }
    }
    free(row);
    *std = sqrt(ss / (n - 1.0));
    return TP_OK;
}

void patch_gaussian(uint64_t seed, double std, float *out, size_t n)
{
    uint64_t st = seed;
    for (size_t i = 0; i < n; i += 2) {
        /* Box–Muller on two 53-bit uniforms, u1 in (0, 1] so the log is finite. */
        double u1 = (double)((tp_splitmix64(&st) >> 11) + 1) * 0x1.0p-53;
        double u2 = (double)(tp_splitmix64(&st) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1)), a = 2.0 * M_PI * u2;
        out[i] = (float)(std * r * cos(a));
        if (i + 1 < n) out[i + 1] = (float)(std * r * sin(a));
    }
}

/* ---- the engine's state ------------------------------------------------------------ */

typedef struct patch_ctx patch_ctx;

/* Where a cache hook copies one point: [T, n / T] of sequence 0 per layer. */
typedef struct {
    tp_hook_point pt;
    float *dst;                         /* [nl][n] */
    size_t n;
} cache_slot;

/* The corrupted run's points the patched runs start from: resid_pre (the input of the
 * patched layer) and the rotated keys and values (the unchanged positions before a
 * patched one, attended to from the KV cache). */
enum { CORR_RESID, CORR_K, CORR_V, CORR_NPOINTS };

struct patch_ctx {
    const tp_model *m;
    const patch_spec *spec;
    tp_forward *f;
    int T, nl, H, dh, V;
    size_t d, kd, width[PATCH_NSWEEPS]; /* row widths: hidden, keys, each sweep's point */
    int nsrc;                           /* corrupted runs: 1, or the noise samples */
    float *clean[PATCH_NSWEEPS];        /* [nl][T][width] of the clean run */
    float *corr[CORR_NPOINTS];          /* [nl][T][d or kd] of the current corrupted run */
    float *input;                       /* [cpb][T][d] */
    int *lens, *off;                    /* [cpb] of the batch running */
    int cpb;
    double *raw[PATCH_NSWEEPS];         /* [nsrc][nlayers][ncols] value of each patched run */
    int ncols[PATCH_NSWEEPS];
    double v_clean, *v_corr;            /* v_corr [nsrc] */
    int cur_sample;                     /* noise sample of the corrupted run being made */
    patch_sweep cur_sweep;              /* the batch the patch hook serves */
    int cur_layer, cur_col0;
    tp_progress prog;
    double t0, cpu0;                    /* wall and CPU seconds when the clean run was done */
};

/* LD = logit(target) − logit(distractor), or p(target) when there is no distractor. */
static double run_value(const patch_spec *s, const float *lg, int V)
{
    if (s->distractor >= 0) return (double)lg[s->target] - (double)lg[s->distractor];
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = lg[i] > mx ? lg[i] : mx;
    for (int i = 0; i < V; i++) sum += exp((double)lg[i] - mx);
    return exp((double)lg[s->target] - mx) / sum;
}

/* Everything in a spec comes from the user (prompts, options): a problem is a
 * configuration error (exit code 2), said in one line. */
static tp_status check_spec(const tp_model *m, const patch_spec *s)
{
    const tp_model_config *c = &m->cfg;
    if (s->T < 1 || s->T > c->max_position_embeddings)
        return tp_err(TP_ERR_CONFIG, "circuits patch: the prompts have %d tokens; the model's context is %d",
                      s->T, c->max_position_embeddings);
    for (int t = 0; t < s->T; t++)
        for (int k = 0; k < 2; k++) {
            const int32_t *ids = k ? s->corrupt : s->clean;
            if (ids && (ids[t] < 0 || ids[t] >= c->vocab_size))
                return tp_err(TP_ERR_CONFIG, "circuits patch: token id %d at position %d is outside the vocabulary (0..%d)",
                              ids[t], t, c->vocab_size - 1);
        }
    if (s->target < 0 || s->target >= c->vocab_size || s->distractor >= c->vocab_size)
        return tp_err(TP_ERR_CONFIG, "circuits patch: target %d / distractor %d outside the vocabulary (0..%d)",
                      s->target, s->distractor, c->vocab_size - 1);
    if (s->target == s->distractor)
        return tp_err(TP_ERR_CONFIG, "circuits patch: target and distractor are the same token (%d)", s->target);
    if (!s->corrupt && (s->nsamples < 1 || !s->noise || s->nnoise < 1 || s->distractor >= 0))
        return tp_err(TP_ERR_CONFIG, "circuits patch: causal tracing needs noise samples and noised positions, no distractor");
    for (int i = 0; !s->corrupt && i < s->nnoise; i++)
        if (s->noise_pos[i] < 0 || s->noise_pos[i] >= s->T || (i && s->noise_pos[i] <= s->noise_pos[i - 1]))
            return tp_err(TP_ERR_CONFIG, "circuits patch: noised position %d out of range (ascending, 0..%d)",
                          s->noise_pos[i], s->T - 1);
    if (s->nlayers < 1) return tp_err(TP_ERR_CONFIG, "circuits patch: no layer to sweep");
    for (int i = 0; i < s->nlayers; i++)
        if (s->layers[i] < 0 || s->layers[i] >= c->num_layers || (i && s->layers[i] <= s->layers[i - 1]))
            return tp_err(TP_ERR_CONFIG, "circuits patch: layer %d out of range (ascending, model has layers 0..%d)",
                          s->layers[i], c->num_layers - 1);
    if (!(s->sweeps & ((1u << PATCH_NSWEEPS) - 1))) return tp_err(TP_ERR_CONFIG, "circuits patch: no sweep asked for");
    if (s->cells_per_batch < 0) return tp_err(TP_ERR_CONFIG, "circuits patch: cells per batch must be >= 0");
    return TP_OK;
}

static void ctx_free(patch_ctx *c)
{
    forward_free(c->f);
    for (int s = 0; s < PATCH_NSWEEPS; s++) free(c->clean[s]), free(c->raw[s]);
    for (int i = 0; i < CORR_NPOINTS; i++) free(c->corr[i]);
    free(c->input), free(c->lens), free(c->off), free(c->v_corr);
}

/* Sizes, buffers and the forward state. */
static tp_status ctx_init(patch_ctx *c, const tp_model *m, const patch_spec *s)
{
    const tp_model_config *mc = &m->cfg;
    c->m = m, c->spec = s, c->T = s->T, c->nl = mc->num_layers, c->H = mc->num_heads;
    c->dh = mc->head_dim, c->V = mc->vocab_size, c->d = (size_t)mc->hidden_size;
    c->kd = (size_t)mc->num_kv_heads * (size_t)mc->head_dim;
    c->nsrc = s->corrupt ? 1 : s->nsamples;
    int maxcols = 1;
    for (int k = 0; k < PATCH_NSWEEPS; k++) {
        c->width[k] = k == PATCH_Z ? (size_t)c->H * (size_t)c->dh : c->d;
        c->ncols[k] = k == PATCH_Z ? c->H : c->T;
        size_t n = (size_t)c->nl * (size_t)c->T * c->width[k];
        if (!(s->sweeps & (1u << k))) continue;
        if (!(c->clean[k] = tp_malloc(n * sizeof(float)))) return TP_ERR_NOMEM;
        if (c->ncols[k] > maxcols) maxcols = c->ncols[k];
        size_t cells = (size_t)c->nsrc * (size_t)s->nlayers * (size_t)c->ncols[k];
        if (!(c->raw[k] = tp_calloc(cells, sizeof(double)))) return TP_ERR_NOMEM;
    }
    c->cpb = s->cells_per_batch > 0 ? s->cells_per_batch : PATCH_BATCH_ROWS / c->T;
    if (c->cpb < 1) c->cpb = 1;
    if (c->cpb > maxcols) c->cpb = maxcols;
    size_t ld = (size_t)c->T * c->d, lk = (size_t)c->T * c->kd;
    c->corr[CORR_RESID] = tp_malloc((size_t)c->nl * ld * sizeof(float));
    c->corr[CORR_K] = tp_malloc((size_t)c->nl * lk * sizeof(float));
    c->corr[CORR_V] = tp_malloc((size_t)c->nl * lk * sizeof(float));
    c->input = tp_malloc((size_t)c->cpb * ld * sizeof(float));
    c->lens = tp_malloc((size_t)c->cpb * sizeof(int));
    c->off = tp_malloc((size_t)c->cpb * sizeof(int));
    c->v_corr = tp_calloc((size_t)c->nsrc, sizeof(double));
    if (!c->corr[CORR_RESID] || !c->corr[CORR_K] || !c->corr[CORR_V] || !c->input || !c->lens || !c->off || !c->v_corr)
        return TP_ERR_NOMEM;
    TP_CHECK(forward_new(m, c->cpb, c->T, &c->f));
    return forward_kv_enable(c->f);   /* where the unchanged positions' keys and values wait */
}

/* ---- the clean and corrupted runs, kept per layer ---------------------------------- */

static tp_status cache_cb(const tp_hook_info *info, float *data, void *user)
{
    const cache_slot *slot = user;
    memcpy(slot->dst + (size_t)info->layer * slot->n, data, slot->n * sizeof(float));
    return TP_OK;
}

/* Adds the current sample's noise to the embeddings of the noised rows. */
static tp_status noise_cb(const tp_hook_info *info, float *data, void *user)
{
    const patch_ctx *c = user;
    const patch_spec *s = c->spec;
    const float *nz = s->noise + (size_t)c->cur_sample * (size_t)s->nnoise * c->d;
    for (int i = 0; i < s->nnoise; i++) {
        float *row = data + (size_t)s->noise_pos[i] * c->d;
        for (size_t j = 0; j < c->d; j++) row[j] += nz[(size_t)i * c->d + j];
    }
    return TP_OK;
}

/* One prompt, one sequence: keeps the points of `slots` at every layer and returns
 * its value. ids: the clean or the corrupted prompt; noisy adds noise. */
static tp_status cached_run(patch_ctx *c, const int32_t *ids, int noisy, cache_slot *slots, int nslots,
                            double *value)
{
    tp_hooks *h = NULL;
    TP_CHECK(hooks_new(c->nl, &h));
    tp_status st = TP_OK;
    for (int i = 0; i < nslots && st == TP_OK; i++)
        for (int L = 0; L < c->nl && st == TP_OK; L++) st = hooks_add_reader(h, L, slots[i].pt, cache_cb, &slots[i]);
    if (st == TP_OK && noisy) st = hooks_add(h, -1, TP_HOOK_EMBED, noise_cb, c);
    const float *logits = NULL;
    if (st == TP_OK) st = forward_run(c->f, ids, 1, c->T, h, TP_LOGITS_LAST, -1, &logits);
    if (st == TP_OK) *value = run_value(c->spec, logits, c->V);
    hooks_free(h);
    return st;
}

/* ---- patched runs -------------------------------------------------------------------- */

/* Writes the clean activation into each cell's rows. Cell b is the sequence of
 * positions off[b] .. T-1; a per-position cell patches position cur_col0 + b (its
 * first row, or nothing when the sequence starts after it), a z cell head cur_col0 + b
 * at each of its positions. */
static tp_status patch_cb(const tp_hook_info *info, float *data, void *user)
{
    const patch_ctx *c = user;
    size_t w = c->width[c->cur_sweep], T = (size_t)c->T, row = 0, dh = (size_t)c->dh;
    const float *src = c->clean[c->cur_sweep] + (size_t)c->cur_layer * T * w;
    for (int b = 0; b < info->nseq; row += (size_t)info->seq_lens[b], b++) {
        size_t col = (size_t)(c->cur_col0 + b), off = (size_t)c->off[b], n = (size_t)info->seq_lens[b];
        float *seq = data + row * w;
        if (c->cur_sweep != PATCH_Z) {
            if (col >= off) memcpy(seq + (col - off) * w, src + col * w, w * sizeof(float));
            continue;
        }
        for (size_t t = 0; t < n; t++)
            memcpy(seq + t * w + col * dh, src + (off + t) * w + col * dh, dh * sizeof(float));
    }
    return TP_OK;
}

/* Where cell b starts. Attention is causal, so a patch at position p cannot change
 * the positions before it: a per-position cell runs p..T-1, attending to the
 * corrupted keys and values before p. At the final layer only the last position
 * reaches the logits and a patch after attention (attn_out, mlp_out, z) reaches no
 * other position, so those cells run position T-1 alone (an attn_out/mlp_out cell at
 * p < T-1 then measures the corrupted run, as it must). */
static int cell_start(const patch_ctx *c, patch_sweep k, int L, int col)
{
    if (k != PATCH_RESID_PRE && L == c->nl - 1) return c->T - 1;
    return k == PATCH_Z ? 0 : col;
}

/* The batch's input: per cell the corrupted residual stream entering layer L from
 * the cell's start; resid_pre cells get the clean row at their position. */
static void batch_input(patch_ctx *c, patch_sweep k, int L, int col0, int n)
{
    size_t ld = (size_t)c->T * c->d;
    const float *corr = c->corr[CORR_RESID] + (size_t)L * ld;
    float *in = c->input;
    for (int b = 0; b < n; b++) {
        int p = cell_start(c, k, L, col0 + b);
        c->off[b] = p, c->lens[b] = c->T - p;
        memcpy(in, corr + (size_t)p * c->d, (size_t)c->lens[b] * c->d * sizeof(float));
        if (k == PATCH_RESID_PRE) memcpy(in, c->clean[k] + (size_t)L * ld + (size_t)p * c->d, c->d * sizeof(float));
        in += (size_t)c->lens[b] * c->d;
    }
}

/* Cells col0..col0+n-1 of sweep k at layer index li for corrupted run src, run from
 * that layer as one batch (resid_pre patched in the input, the others by patch_cb). */
static tp_status run_batch(patch_ctx *c, int src, patch_sweep k, int li, int col0, int n)
{
    int L = c->spec->layers[li];
    batch_input(c, k, L, col0, n);
    tp_hooks *h = NULL;
    if (k != PATCH_RESID_PRE) {
        TP_CHECK(hooks_new(c->nl, &h));
        c->cur_sweep = k, c->cur_layer = L, c->cur_col0 = col0;
        tp_status st = hooks_add(h, L, sweep_points[k], patch_cb, c);
        if (st != TP_OK) { hooks_free(h); return st; }
    }
    const tp_forward_prefix prefix = {.off = c->off, .k = c->corr[CORR_K], .v = c->corr[CORR_V], .len = c->T};
    const float *logits = NULL;
    tp_status st = forward_run_from(c->f, L, c->input, c->lens, n, &prefix, h, TP_LOGITS_LAST, &logits);
    hooks_free(h);
    TP_CHECK(st);
    double *out = c->raw[k] + ((size_t)src * (size_t)c->spec->nlayers + (size_t)li) * (size_t)c->ncols[k];
    for (int b = 0; b < n; b++) out[col0 + b] = run_value(c->spec, logits + (size_t)b * c->V, c->V);
    tp_progress_add(&c->prog, (uint64_t)n);
    return TP_OK;
}

/* Every batch of corrupted run src, in a fixed order; batch number *next goes to rank
 * *next % size. count_only: only counts this rank's cells into *cells. */
static tp_status sweep_batches(patch_ctx *c, int src, int64_t *next, int count_only, int64_t *cells)
{
    int rank = dist_rank(), size = dist_size();
    for (int k = 0; k < PATCH_NSWEEPS; k++) {
        if (!(c->spec->sweeps & (1u << k))) continue;
        for (int li = 0; li < c->spec->nlayers; li++)
            for (int col0 = 0; col0 < c->ncols[k]; col0 += c->cpb) {
                int n = c->ncols[k] - col0 < c->cpb ? c->ncols[k] - col0 : c->cpb;
                if ((*next)++ % size != rank) continue;
                *cells += n;
                if (!count_only) TP_CHECK(run_batch(c, src, (patch_sweep)k, li, col0, n));
            }
    }
    return TP_OK;
}

/* The clean run, then per corrupted run its cache and this rank's batches. */
static tp_status run_all(patch_ctx *c)
{
    const patch_spec *s = c->spec;
    size_t T = (size_t)c->T;
    cache_slot clean[PATCH_NSWEEPS], corr[CORR_NPOINTS] = {
        {TP_HOOK_RESID_PRE, c->corr[CORR_RESID], T * c->d}, {TP_HOOK_ROT_K, c->corr[CORR_K], T * c->kd},
        {TP_HOOK_V, c->corr[CORR_V], T * c->kd}};
    int nclean = 0;
    for (int k = 0; k < PATCH_NSWEEPS; k++)
        if (s->sweeps & (1u << k)) clean[nclean++] = (cache_slot){sweep_points[k], c->clean[k], T * c->width[k]};
    TP_CHECK(cached_run(c, s->clean, 0, clean, nclean, &c->v_clean));
    c->t0 = tp_now(), c->cpu0 = (double)clock() / CLOCKS_PER_SEC;
    int64_t next = 0, mine = 0;
    for (int src = 0; src < c->nsrc; src++) TP_CHECK(sweep_batches(c, src, &next, 1, &mine));
    tp_progress_begin(&c->prog, "patch", "cells", (uint64_t)mine);
    next = 0, mine = 0;
    for (int src = 0; src < c->nsrc; src++) {
        c->cur_sample = src;
        TP_CHECK(cached_run(c, s->corrupt ? s->corrupt : s->clean, !s->corrupt, corr, CORR_NPOINTS, &c->v_corr[src]));
        TP_CHECK(sweep_batches(c, src, &next, 0, &mine));
    }
    tp_progress_end(&c->prog);
    return TP_OK;
}

/* ---- metrics ------------------------------------------------------------------------ */

/* Every rank's values on every rank (each cell was computed by one rank, the others
 * hold 0, so the sum is exact), then the metrics in a fixed order. */
static tp_status finish(patch_ctx *c, patch_result *r)
{
    const patch_spec *s = c->spec;
    r->nlayers = s->nlayers, r->nsamples = s->corrupt ? 0 : c->nsrc, r->cells_per_batch = c->cpb;
    r->v_clean = c->v_clean;
    double corr = 0;
    for (int i = 0; i < c->nsrc; i++) corr += c->v_corr[i];
    r->v_corr = corr / c->nsrc;
    if (!s->corrupt) {
        if (!(r->v_corr_sample = tp_malloc((size_t)c->nsrc * sizeof(double)))) return TP_ERR_NOMEM;
        memcpy(r->v_corr_sample, c->v_corr, (size_t)c->nsrc * sizeof(double));
    }
    double den = r->v_clean - r->v_corr;
    if (s->corrupt && !(fabs(den) > 0))
        return tp_err(TP_ERR_CONFIG, "circuits patch: clean and corrupted prompts give the same logit difference (%.6g): "
                      "the normalized metric is undefined; choose prompts that the model answers differently", r->v_clean);
    for (int k = 0; k < PATCH_NSWEEPS; k++) {
        r->ncols[k] = c->ncols[k];
        size_t n = (size_t)s->nlayers * (size_t)c->ncols[k];
        if (c->raw[k]) TP_CHECK(dist_allreduce_sum_f64(MPI_COMM_WORLD, c->raw[k], n * (size_t)c->nsrc));
    }
    for (int k = 0; k < PATCH_NSWEEPS; k++) {
        if (!c->raw[k]) continue;
        size_t n = (size_t)s->nlayers * (size_t)c->ncols[k];
        r->metric[k] = tp_malloc(n * sizeof(double));
        if (!s->corrupt) r->prob[k] = tp_malloc(n * sizeof(double));
        if (!r->metric[k] || (!s->corrupt && !r->prob[k])) return TP_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            double v = 0;
            for (int src = 0; src < c->nsrc; src++) v += c->raw[k][(size_t)src * n + i];
            v /= c->nsrc;
            if (r->prob[k]) r->prob[k][i] = v;
            /* tracing with p_clean = p_corr: no normalized value (null in the JSON) */
            r->metric[k][i] = fabs(den) > 0 ? (v - r->v_corr) / den : NAN;
        }
        r->cells += (int64_t)n * c->nsrc;
    }
    return TP_OK;
}

tp_status patch_run(const tp_model *m, const patch_spec *spec, patch_result *out)
{
    memset(out, 0, sizeof *out);
    TP_CHECK(check_spec(m, spec));
    patch_ctx c = {0};
    tp_status st = ctx_init(&c, m, spec);
    if (st == TP_OK) st = run_all(&c);
    double secs = tp_now() - c.t0, cpu = (double)clock() / CLOCKS_PER_SEC - c.cpu0;
    st = dist_agree(MPI_COMM_WORLD, st, "patch");
    if (st == TP_OK) st = finish(&c, out);
    ctx_free(&c);
    if (st != TP_OK) patch_result_free(out);
    else out->seconds = secs, out->cpu_seconds = cpu;
    return st;
}

void patch_result_free(patch_result *r)
{
    if (!r) return;
    for (int k = 0; k < PATCH_NSWEEPS; k++) free(r->metric[k]), free(r->prob[k]);
    free(r->v_corr_sample);
    memset(r, 0, sizeof *r);
}
