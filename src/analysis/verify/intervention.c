/* intervention.c — ablations and steering as hook callbacks (intervention.h). */
#include "analysis/verify/intervention.h"

#include "analysis/sae/sae_export.h"
#include "core/fsutil.h"
#include "core/rng.h"
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One hooked point and the targets read or edited there. */
typedef struct {
    int layer;
    tp_hook_point pt;
    int64_t cols;
    int *tids;
    int ntids;
    int sae;                   /* index into s->saes of the features here, -1 if none */
    struct iv_set *owner;      /* the callback's context is the point; this is its set */
} iv_point;

struct iv_set {
    const tp_model *m;
    iv_target *t;
    int n;
    iv_mode mode;
    double alpha;
    int *width;                /* [n] values per row of each target (head dh, mlp d, 1) */
    int *point;                /* [n] its iv_point */
    iv_point *pts;
    int npts;
    saelens_sae *saes;
    int nsae;
    /* statistics */
    double **sum;              /* [n][width] */
    float **mean;              /* [n][width] */
    float **bank;              /* [n][bank_rows * width] */
    int64_t bank_rows, stride, stat_rows, stat_seqs;
    int64_t *prefix;           /* global first statistics row of each sequence (collecting) */
    uint64_t seed;
    bool have_stats, collecting;
    /* the current call */
    int64_t *seq_ids;
    int nseq_ids, cap_ids;
    float *codes, *recon;
    size_t codes_cap, recon_cap;
};

const char *iv_mode_name(iv_mode m)
{
    static const char *names[] = {"zero", "mean", "resample", "steer"};
    return (unsigned)m < 4 ? names[m] : "?";
}

tp_status iv_mode_parse(const char *text, iv_mode *out)
{
    for (int m = IV_ZERO; m <= IV_RESAMPLE; m++)
        if (!strcmp(text, iv_mode_name((iv_mode)m))) {
            *out = (iv_mode)m;
            return TP_OK;
        }
    return tp_err(TP_ERR_CONFIG, "--mode: expected zero, mean or resample, got '%s'", text);
}

/* ---- parsing -------------------------------------------------------------------- */

static tp_status parse_int(const char *s, const char *end, const char *what, const char *item, int lo, int hi, int *out)
{
    char buf[32];
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof buf) return tp_err(TP_ERR_CONFIG, "%s: '%s' is not of the form the option takes", what, item);
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *e;
    errno = 0;
    long v = strtol(buf, &e, 10);
    if (*e || errno) return tp_err(TP_ERR_CONFIG, "%s: '%s': '%s' is not an integer", what, item, buf);
    if (v < lo || v > hi)
        return tp_err(TP_ERR_CONFIG, "%s: '%s': %ld is out of range (the model has %d..%d)", what, item, v, lo, hi);
    *out = (int)v;
    return TP_OK;
}

static tp_status push(iv_target **t, int *n, iv_target x)
{
    iv_target *p = realloc(*t, (size_t)(*n + 1) * sizeof *p);
    if (!p) return tp_err(TP_ERR_NOMEM, "interventions: out of memory");
    p[(*n)++] = x;
    *t = p;
    return TP_OK;
}

/* One item of a list: "L.H", "L", "L:I" or "HOOK:ID". */
static tp_status parse_item(const tp_model_config *c, iv_kind kind, const char *item, iv_target *x)
{
    static const char *opt[] = {"--heads", "--mlp", "--neurons", "--features"};
    const char *what = opt[kind], *end = item + strlen(item);
    *x = (iv_target){.kind = kind, .index = -1};
    if (kind == IV_MLP) return parse_int(item, end, what, item, 0, c->num_layers - 1, &x->layer);
    const char *sep = kind == IV_HEAD ? strchr(item, '.') : strrchr(item, ':');
    if (!sep)
        return tp_err(TP_ERR_CONFIG, "%s: '%s' should read %s", what, item,
                      kind == IV_HEAD ? "LAYER.HEAD" : kind == IV_NEURON ? "LAYER:INDEX" : "HOOK:FEATURE");
    if (kind == IV_FEATURE) {
        char hook[96];
        size_t n = (size_t)(sep - item);
        if (n == 0 || n >= sizeof hook) return tp_err(TP_ERR_CONFIG, "%s: '%s' has no capture point", what, item);
        memcpy(hook, item, n);
        hook[n] = '\0';
        tp_hook_point pt;
        TP_CHECK(hooks_parse_name(c, hook, &x->layer, &pt));
        hooks_point_name(x->layer, pt, x->hook, sizeof x->hook);
        return parse_int(sep + 1, end, what, item, 0, INT_MAX - 1, &x->index);   /* checked against the SAE */
    }
    TP_CHECK(parse_int(item, sep, what, item, 0, c->num_layers - 1, &x->layer));
    int hi = kind == IV_HEAD ? c->num_heads - 1 : c->intermediate_size - 1;
    return parse_int(sep + 1, end, what, item, 0, hi, &x->index);
}

tp_status iv_parse(const tp_model_config *c, const char *heads, const char *features, const char *mlps,
                   const char *neurons, iv_target **targets, int *n)
{
    const char *lists[] = {heads, mlps, neurons, features};
    const iv_kind kinds[] = {IV_HEAD, IV_MLP, IV_NEURON, IV_FEATURE};
    for (int k = 0; k < 4; k++) {
        if (!lists[k]) continue;
        char *copy = strdup(lists[k]), *save = NULL;
        if (!copy) return TP_ERR_NOMEM;
        tp_status st = TP_OK;
        int before = *n;
        for (char *tok = strtok_r(copy, ",", &save); tok && st == TP_OK; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ') tok++;
            iv_target x;
            st = parse_item(c, kinds[k], tok, &x);
            if (st == TP_OK) st = push(targets, n, x);
        }
        free(copy);
        TP_CHECK(st);
        if (*n == before) return tp_err(TP_ERR_CONFIG, "an intervention list is empty ('%s')", lists[k]);
    }
    return TP_OK;
}

/* ---- the set ---------------------------------------------------------------------- */

static tp_hook_point target_point(const iv_target *t, const tp_model_config *c, int *layer)
{
    *layer = t->layer;
    if (t->kind == IV_HEAD) return TP_HOOK_Z;
    if (t->kind == IV_MLP) return TP_HOOK_MLP_OUT;
    if (t->kind == IV_NEURON) return TP_HOOK_MLP_POST;
    tp_hook_point pt = TP_HOOK_RESID_POST;
    hooks_parse_name(c, t->hook, layer, &pt);   /* parsed once by iv_parse */
    return pt;
}

static tp_status load_sae(iv_set *s, iv_point *p, const iv_target *t, iv_sae_dir_fn dir_of, void *user)
{
    char dir[TP_PATH_MAX];
    TP_CHECK(dir_of(dir, sizeof dir, t->hook, user));
    saelens_sae *grown = realloc(s->saes, (size_t)(s->nsae + 1) * sizeof *grown);
    if (!grown) return TP_ERR_NOMEM;
    s->saes = grown;
    memset(&s->saes[s->nsae], 0, sizeof *s->saes);
    if (!fs_exists(dir))
        return tp_err(TP_ERR_IO, "--features: no SAE for %s at %s (run `transpolmo sae` on that capture point first)",
                      t->hook, dir);
    TP_CHECK(saelens_load(dir, &s->saes[s->nsae]));
    p->sae = s->nsae++;
    if (s->saes[p->sae].d_in != p->cols)
        return tp_err(TP_ERR_FORMAT, "%s: the SAE reads %lld values per row, %s has %lld", dir,
                      (long long)s->saes[p->sae].d_in, t->hook, (long long)p->cols);
    return TP_OK;
}

/* The point of target i (added when new), its width and its SAE. */
static tp_status place_target(iv_set *s, int i, iv_sae_dir_fn dir_of, void *user)
{
    const tp_model_config *c = &s->m->cfg;
    const iv_target *t = &s->t[i];
    int layer;
    tp_hook_point pt = target_point(t, c, &layer);
    int p = 0;
    while (p < s->npts && !(s->pts[p].layer == layer && s->pts[p].pt == pt)) p++;
    if (p == s->npts) {
        iv_point *grown = realloc(s->pts, (size_t)(s->npts + 1) * sizeof *grown);
        if (!grown) return TP_ERR_NOMEM;
        s->pts = grown;
        int64_t shape[4];
        int nd = hooks_point_shape(c, pt, 1, 1, shape);
        int64_t cols = 1;
        for (int k = 2; k < nd; k++) cols *= shape[k];
        s->pts[p] = (iv_point){.layer = layer, .pt = pt, .cols = cols, .sae = -1};
        s->npts++;
        if (t->kind == IV_FEATURE) TP_CHECK(load_sae(s, &s->pts[p], t, dir_of, user));
    }
    iv_point *P = &s->pts[p];
    int *ids = realloc(P->tids, (size_t)(P->ntids + 1) * sizeof *ids);
    if (!ids) return TP_ERR_NOMEM;
    P->tids = ids;
    P->tids[P->ntids++] = i;
    s->point[i] = p;
    s->width[i] = t->kind == IV_HEAD ? c->head_dim : t->kind == IV_MLP ? c->hidden_size : 1;
    if (t->kind == IV_FEATURE && t->index >= s->saes[P->sae].d_sae)
        return tp_err(TP_ERR_CONFIG, "--features: %s:%d: the SAE at %s has %lld features", t->hook, t->index, t->hook,
                      (long long)s->saes[P->sae].d_sae);
    return TP_OK;
}

tp_status iv_new(const tp_model *m, const iv_target *targets, int n, iv_mode mode, double alpha,
                 iv_sae_dir_fn sae_dir_of, void *user, iv_set **out)
{
    if (n < 1) return tp_err(TP_ERR_CONFIG, "no intervention given (--heads, --features, --mlp or --neurons)");
    iv_set *s = tp_calloc(1, sizeof *s);
    if (!s) return TP_ERR_NOMEM;
    s->m = m, s->n = n, s->mode = mode, s->alpha = alpha;
    s->t = tp_malloc((size_t)n * sizeof *s->t);
    s->width = tp_calloc((size_t)n, sizeof *s->width);
    s->point = tp_calloc((size_t)n, sizeof *s->point);
    s->sum = tp_calloc((size_t)n, sizeof *s->sum);
    s->mean = tp_calloc((size_t)n, sizeof *s->mean);
    s->bank = tp_calloc((size_t)n, sizeof *s->bank);
    tp_status st = s->t && s->width && s->point && s->sum && s->mean && s->bank ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) memcpy(s->t, targets, (size_t)n * sizeof *s->t);
    for (int i = 0; st == TP_OK && i < n; i++) st = place_target(s, i, sae_dir_of, user);
    if (st != TP_OK) {
        iv_free(s);
        return st;
    }
    *out = s;
    return TP_OK;
}

void iv_free(iv_set *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++) {
        if (s->sum) free(s->sum[i]);
        if (s->mean) free(s->mean[i]);
        if (s->bank) free(s->bank[i]);
    }
    for (int p = 0; p < s->npts; p++) free(s->pts[p].tids);
    for (int k = 0; k < s->nsae; k++) saelens_free(&s->saes[k]);
    free(s->saes), free(s->pts), free(s->t), free(s->width), free(s->point), free(s->sum), free(s->mean);
    free(s->bank), free(s->prefix), free(s->seq_ids), free(s->codes), free(s->recon);
    free(s);
}

bool iv_needs_statistics(const iv_set *s) { return s->mode == IV_MEAN || s->mode == IV_RESAMPLE; }

void iv_set_batch(iv_set *s, const int64_t *seq_ids, int nseq)
{
    if (nseq > s->cap_ids) {
        int64_t *p = realloc(s->seq_ids, (size_t)nseq * sizeof *p);
        if (!p) { s->nseq_ids = 0; return; }   /* the hook reports the missing batch */
        s->seq_ids = p, s->cap_ids = nseq;
    }
    memcpy(s->seq_ids, seq_ids, (size_t)nseq * sizeof *seq_ids);
    s->nseq_ids = nseq;
}

/* ---- the callback --------------------------------------------------------------------- */

static tp_status grow_f32(float **p, size_t *cap, size_t n)
{
    if (n <= *cap) return TP_OK;
    free(*p);
    *p = tp_malloc(n * sizeof **p);
    *cap = *p ? n : 0;
    return *p ? TP_OK : TP_ERR_NOMEM;
}

/* Codes of every row at a point with features (before any edit). */
static tp_status point_codes(iv_set *s, const iv_point *P, const float *x, int64_t rows)
{
    const saelens_sae *sae = &s->saes[P->sae];
    TP_CHECK(grow_f32(&s->codes, &s->codes_cap, (size_t)rows * (size_t)sae->d_sae));
    TP_CHECK(grow_f32(&s->recon, &s->recon_cap, (size_t)rows * (size_t)sae->d_in));
    return saelens_reconstruct(sae, x, rows, s->recon, s->codes);
}

/* The target's value at row r: a pointer into x (width values), or for a feature its
 * activation in *a. */
static float *target_value(const iv_set *s, int i, const iv_point *P, float *x, int64_t r, float *a)
{
    const iv_target *t = &s->t[i];
    float *row = x + (size_t)r * (size_t)P->cols;
    switch (t->kind) {
    case IV_HEAD: return row + (size_t)t->index * (size_t)s->m->cfg.head_dim;
    case IV_MLP: return row;
    case IV_NEURON: return row + t->index;
    case IV_FEATURE: *a = s->codes[(size_t)r * (size_t)s->saes[P->sae].d_sae + (size_t)t->index]; return NULL;
    }
    return NULL;
}

/* The statistics row resample takes for (sequence g, position pos). */
static int64_t resample_row(const iv_set *s, int64_t g, int64_t pos)
{
    uint64_t st = s->seed ^ ((uint64_t)g * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)pos << 32);
    return (int64_t)(tp_splitmix64(&st) % (uint64_t)s->bank_rows);
}

static void edit_row(iv_set *s, int i, const iv_point *P, float *x, int64_t r, int64_t g, int64_t pos)
{
    int w = s->width[i];
    float a = 0, *v = target_value(s, i, P, x, r, &a);
    const float *rep = s->mode == IV_MEAN ? s->mean[i]
                     : s->mode == IV_RESAMPLE ? s->bank[i] + (size_t)resample_row(s, g, pos) * (size_t)w : NULL;
    if (v) {   /* a slice of the point */
        for (int k = 0; k < w; k++) v[k] = s->mode == IV_ZERO ? 0.0f : s->mode == IV_STEER ? v[k] * (float)s->alpha : rep[k];
        return;
    }
    const saelens_sae *sae = &s->saes[P->sae];
    float delta = s->mode == IV_ZERO ? -a : s->mode == IV_STEER ? (float)s->alpha : rep[0] - a;
    const float *wd = sae->W_dec + (size_t)s->t[i].index * (size_t)sae->d_in;
    float *row = x + (size_t)r * (size_t)P->cols;
    for (int64_t k = 0; k < P->cols; k++) row[k] += delta * wd[k];
}

/* Collecting: sums over every row but each sequence's first, and the bank slots. */
static void collect_row(iv_set *s, int i, const iv_point *P, float *x, int64_t r, int64_t g, int64_t pos)
{
    if (pos == 0) return;
    int w = s->width[i];
    float a = 0, *v = target_value(s, i, P, x, r, &a);
    const float *val = v ? v : &a;
    for (int k = 0; k < w; k++) s->sum[i][k] += val[k];
    int64_t idx = s->prefix[g] + pos - 1;
    if (idx % s->stride == 0 && idx / s->stride < s->bank_rows)
        memcpy(s->bank[i] + (size_t)(idx / s->stride) * (size_t)w, val, (size_t)w * sizeof *val);
}

static tp_status iv_hook(const tp_hook_info *info, float *data, void *user)
{
    const iv_point *P = user;
    iv_set *s = P->owner;
    if (s->nseq_ids != info->nseq)
        return tp_err(TP_ERR_INTERNAL, "interventions: %s fired for %d sequences, %d named by iv_set_batch",
                      info->name, info->nseq, s->nseq_ids);
    int64_t rows = info->shape[0] * info->shape[1];
    if (P->sae >= 0) TP_CHECK(point_codes(s, P, data, rows));
    int64_t r = 0;
    for (int b = 0; b < info->nseq; b++)
        for (int64_t pos = 0; pos < info->seq_lens[b]; pos++, r++)
            for (int j = 0; j < P->ntids; j++) {
                if (s->collecting) collect_row(s, P->tids[j], P, data, r, s->seq_ids[b], pos);
                else edit_row(s, P->tids[j], P, data, r, s->seq_ids[b], pos);
            }
    return TP_OK;
}

/* One callback per point; its context is the point (the points are fixed by iv_new). */
static tp_status add_point_hooks(iv_set *s, tp_hooks *h, bool readers)
{
    for (int p = 0; p < s->npts; p++) {
        s->pts[p].owner = s;
        TP_CHECK(readers ? hooks_add_reader(h, s->pts[p].layer, s->pts[p].pt, iv_hook, &s->pts[p])
                         : hooks_add(h, s->pts[p].layer, s->pts[p].pt, iv_hook, &s->pts[p]));
    }
    return TP_OK;
}

tp_status iv_add_hooks(iv_set *s, tp_hooks *h)
{
    if (iv_needs_statistics(s) && !s->have_stats)
        return tp_err(TP_ERR_INTERNAL, "interventions: mode %s needs iv_collect_statistics first", iv_mode_name(s->mode));
    return add_point_hooks(s, h, false);
}

/* ---- statistics ---------------------------------------------------------------------- */

/* Global statistics-row numbering: sequence g's rows (positions 1..len-1) start at
 * prefix[g]; every stride-th row is a bank row. */
static tp_status stat_layout(iv_set *s, const tp_sequences *seqs)
{
    free(s->prefix);
    s->prefix = tp_malloc((seqs->n_seqs + 1) * sizeof *s->prefix);
    if (!s->prefix) return TP_ERR_NOMEM;
    int64_t total = 0;
    for (size_t g = 0; g < seqs->n_seqs; g++) {
        s->prefix[g] = total;
        size_t len = sequences_len(seqs, g);
        total += len > 1 ? (int64_t)len - 1 : 0;
    }
    s->prefix[seqs->n_seqs] = total;
    if (total == 0) return tp_err(TP_ERR_CONFIG, "interventions: the statistics sequences have no row past a first position");
    s->stride = (total + IV_BANK_ROWS - 1) / IV_BANK_ROWS;
    s->bank_rows = (total + s->stride - 1) / s->stride;
    s->stat_rows = total, s->stat_seqs = (int64_t)seqs->n_seqs;
    for (int i = 0; i < s->n; i++) {
        free(s->sum[i]), free(s->bank[i]), free(s->mean[i]);
        s->sum[i] = tp_calloc((size_t)s->width[i], sizeof **s->sum);
        s->mean[i] = tp_calloc((size_t)s->width[i], sizeof **s->mean);
        s->bank[i] = tp_calloc((size_t)(s->bank_rows * s->width[i]), sizeof **s->bank);
        if (!s->sum[i] || !s->mean[i] || !s->bank[i]) return TP_ERR_NOMEM;
    }
    return TP_OK;
}

static int last_layer_of(const iv_set *s)
{
    int L = 0;
    for (int p = 0; p < s->npts; p++)
        if (s->pts[p].layer > L) L = s->pts[p].layer;
    return L;
}

/* This rank's share [lo, hi) of the sequences, `batch` at a time, through the readers. */
static tp_status collect_share(iv_set *s, tp_forward *f, const tp_sequences *seqs, int batch, const tp_hooks *h)
{
    size_t lo = seqs->n_seqs * (size_t)dist_rank() / (size_t)dist_size();
    size_t hi = seqs->n_seqs * (size_t)(dist_rank() + 1) / (size_t)dist_size();
    int64_t ids_seq[4096];
    int lens[4096];
    if (batch > 4096) batch = 4096;
    for (size_t b0 = lo; b0 < hi; b0 += (size_t)batch) {
        int nb = (int)(hi - b0 < (size_t)batch ? hi - b0 : (size_t)batch);
        for (int j = 0; j < nb; j++) ids_seq[j] = (int64_t)(b0 + (size_t)j), lens[j] = (int)sequences_len(seqs, b0 + (size_t)j);
        iv_set_batch(s, ids_seq, nb);
        TP_CHECK(forward_run_varlen(f, seqs->tokens + seqs->seq_start[b0], lens, nb, h, TP_LOGITS_NONE,
                                    last_layer_of(s), NULL));
    }
    return TP_OK;
}

tp_status iv_collect_statistics(iv_set *s, tp_forward *f, const tp_sequences *seqs, int batch, uint64_t seed)
{
    s->seed = seed;
    tp_hooks *h = NULL;
    tp_status st = stat_layout(s, seqs);
    if (st == TP_OK) st = hooks_new(s->m->cfg.num_layers, &h);
    if (st == TP_OK) st = add_point_hooks(s, h, true);
    s->collecting = true;
    if (st == TP_OK) st = collect_share(s, f, seqs, batch, h);
    s->collecting = false;
    hooks_free(h);
    TP_CHECK(dist_agree(MPI_COMM_WORLD, st, "interventions: statistics"));
    for (int i = 0; i < s->n; i++) {
        TP_CHECK(dist_allreduce_sum_f64(MPI_COMM_WORLD, s->sum[i], (size_t)s->width[i]));
        /* each bank slot was written by one rank, the others hold 0: the sum is exact */
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, s->bank[i], (int)(s->bank_rows * s->width[i]), MPI_FLOAT, MPI_SUM,
                                MPI_COMM_WORLD));
        for (int k = 0; k < s->width[i]; k++) s->mean[i][k] = (float)(s->sum[i][k] / (double)s->stat_rows);
    }
    s->have_stats = true;
    return TP_OK;
}

static bool same_target(const iv_target *a, const iv_target *b)
{
    return a->kind == b->kind && a->layer == b->layer && a->index == b->index && !strcmp(a->hook, b->hook);
}

tp_status iv_share_statistics(iv_set *dst, const iv_set *src)
{
    if (!src->have_stats) return tp_err(TP_ERR_INTERNAL, "interventions: the source set has no statistics");
    int *from = tp_malloc(((size_t)dst->n + 1) * sizeof *from);
    if (!from) return TP_ERR_NOMEM;
    for (int i = 0; i < dst->n; i++) {
        from[i] = -1;
        for (int j = 0; j < src->n && from[i] < 0; j++)
            if (same_target(&dst->t[i], &src->t[j])) from[i] = j;
        if (from[i] < 0) {
            free(from);
            return tp_err(TP_ERR_INTERNAL, "interventions: target %d of the set has no statistics in the source set", i);
        }
    }
    dst->bank_rows = src->bank_rows, dst->stride = src->stride, dst->stat_rows = src->stat_rows;
    dst->stat_seqs = src->stat_seqs, dst->seed = src->seed;
    tp_status st = TP_OK;
    for (int i = 0; st == TP_OK && i < dst->n; i++) {
        int j = from[i];
        size_t w = (size_t)dst->width[i];
        free(dst->sum[i]), free(dst->bank[i]), free(dst->mean[i]);
        dst->sum[i] = tp_malloc(w * sizeof **dst->sum);
        dst->mean[i] = tp_malloc(w * sizeof **dst->mean);
        dst->bank[i] = tp_malloc((size_t)src->bank_rows * w * sizeof **dst->bank);
        if (!dst->sum[i] || !dst->mean[i] || !dst->bank[i]) {
            st = TP_ERR_NOMEM;
            break;
        }
        memcpy(dst->sum[i], src->sum[j], w * sizeof **dst->sum);
        memcpy(dst->mean[i], src->mean[j], w * sizeof **dst->mean);
        memcpy(dst->bank[i], src->bank[j], (size_t)src->bank_rows * w * sizeof **dst->bank);
    }
    free(from);
    if (st == TP_OK) dst->have_stats = true;
    return st;
}

void iv_statistics(const iv_set *s, int i, const float **mean, const float **bank, int64_t *bank_rows, int *width)
{
    *mean = s->mean[i], *bank = s->bank[i], *bank_rows = s->bank_rows, *width = s->width[i];
}

/* ---- description ---------------------------------------------------------------------- */

static json_t *target_json(const iv_target *t)
{
    static const char *kinds[] = {"head", "mlp", "neuron", "feature"};
    json_t *o = json_pack("{s:s, s:i}", "kind", kinds[t->kind], "layer", t->layer);
    if (t->kind == IV_HEAD) json_object_set_new(o, "head", json_integer(t->index));
    if (t->kind == IV_NEURON) json_object_set_new(o, "neuron", json_integer(t->index));
    if (t->kind == IV_FEATURE) {
        json_object_set_new(o, "hook", json_string(t->hook));
        json_object_set_new(o, "feature", json_integer(t->index));
    }
    return o;
}

json_t *iv_describe(const iv_set *s)
{
    json_t *targets = json_array();
    for (int i = 0; i < s->n; i++) json_array_append_new(targets, target_json(&s->t[i]));
    json_t *o = json_pack("{s:s, s:o}", "mode", iv_mode_name(s->mode), "targets", targets);
    if (s->mode == IV_STEER) json_object_set_new(o, "alpha", json_real(s->alpha));
    if (s->have_stats)
        json_object_set_new(o, "statistics",
                            json_pack("{s:I, s:I, s:I, s:I, s:s}", "sequences", (json_int_t)s->stat_seqs, "rows",
                                      (json_int_t)s->stat_rows, "resample_bank_rows", (json_int_t)s->bank_rows,
                                      "seed", (json_int_t)s->seed, "rows_used",
                                      "every position but the first of each statistics sequence (the clean model); "
                                      "the resample bank is every stride-th of them in corpus order"));
    return o;
}
