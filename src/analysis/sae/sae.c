#include "analysis/sae/sae.h"

#include "backend/backend.h"        /* be_gemm_f32, be_gemv_f32, be_sae_* */
#include "backend/cpu/sae_ops.h"    /* sae_cpu_select_topk */
#include "core/rng.h"

#include "dist/grad_allreduce.h"   /* dist_grad_allreduce: MPI or NCCL */
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Where training runs (sae_use_backend): on a host-memory backend these are views of
 * the host buffers below and of sae_model's; on a device, buffers of its own (owned),
 * with the host's parameters and moments as the copy that checkpoints and exports
 * read (sae_sync_host). Every architecture trains here (batchtopk's selection on the
 * host: select_batch). */
typedef struct {
    float *params, *grad, *adam_m, *adam_v;   /* [P] */
    float *x;                                 /* [cap, d] the step's rows (device only) */
    float *u, *xt, *pre, *delta, *adelta;
    float *G, *dec_norm, *colsum;             /* relu's backward */
    int64_t *act_ptr, *aux_ptr;
    int32_t *act_idx, *aux_idx, *dead;
    float *act_val, *aux_val;
    size_t act_cap;      /* room in act_idx/act_val (owned: batchtopk grows it) */
    double *stats;
    float *bias_host;    /* [F] batchtopk, owned: b_enc brought to the host (host memory) */
    int owned;           /* allocated on the training backend */
    int fresh;           /* the device holds the host's parameters and moments */
    int host_stale;      /* the host's are behind the device's */
} sae_device;

struct sae_workspace {
    tp_backend *be;      /* the host-side dense products (backend_cpu(): inference) */
    tp_backend *tb;      /* training backend (every arch's step) */
    sae_device dev;
    float *u;            /* [cap, d] scaled rows s·x */
    float *xt;           /* [cap, d] encoder input x̃ (u − b_dec, or a copy of u) */
    float *pre;          /* [cap, F] pre-activations; relu: f in place */
    float *G;            /* [cap, F] relu backward: ∂L/∂pre */
    float *delta;        /* [cap, d] x̂ − u */
    float *adelta;       /* [cap, d] ê − e (AuxK) */
    /* active latents of topk/batchtopk, CSR over the local rows (positive only) */
    int64_t *act_ptr;    /* [cap + 1] */
    int32_t *act_idx;
    float *act_val;
    size_t act_cap;
    /* AuxK latents, CSR */
    int64_t *aux_ptr;    /* [cap + 1] */
    int32_t *aux_idx;    /* [cap · aux_k] */
    float *aux_val;
    int32_t *dead;       /* [F] dead latents before this step */
    int64_t n_dead, n_aux;   /* dead latents, AuxK latents a row (0: no AuxK term) */
    float *dec_norm;     /* [F] ‖w_i‖ (relu) */
    float *colsum;       /* [F] */
    float *heap_v;       /* [max(k, aux_k)] */
    int32_t *heap_i;
    double *stats;       /* [SAE_ST_HEAD + d + F] */
    size_t n_stats;
    int64_t n_local, n_global;
    double batch_threshold;
    int have_forward;
};

/* ---- config ----------------------------------------------------------------------- */

const char *sae_arch_name(sae_arch a)
{
    switch (a) {
    case SAE_RELU: return "relu";
    case SAE_TOPK: return "topk";
    case SAE_BATCHTOPK: return "batchtopk";
    }
    return "?";
}

tp_status sae_arch_parse(const char *s, sae_arch *out)
{
    for (int a = SAE_RELU; a <= SAE_BATCHTOPK; a++) {
        if (strcmp(s, sae_arch_name((sae_arch)a)) == 0) {
            *out = (sae_arch)a;
            return TP_OK;
        }
    }
    return tp_err(TP_ERR_CONFIG, "sae.architecture: '%s' is not one of relu, topk, batchtopk", s);
}

sae_config sae_config_default(sae_arch arch, int64_t d_in, int64_t d_sae)
{
    sae_config c = {
        .arch = arch, .d_in = d_in, .d_sae = d_sae, .k = 32, .aux_k = 512, .aux_coef = 1.0 / 32,
        .dead_tokens = 10000000, .l1_coef = 5.0, .l1_warmup_frac = 0.05, .lr = 2e-4,
        .lr_warmup_frac = 0, .lr_decay_frac = 0.2, .total_steps = 10000, .beta1 = 0.9, .beta2 = 0.999,
        .eps = 6.25e-10, .max_grad_norm = 1.0, .apply_b_dec_to_input = 1, .decoder_unit_norm = 1,
        .init_dec_norm = 1.0, .b_dec_init = SAE_BDEC_GEOMETRIC_MEDIAN, .threshold_lr = 0.01,
        .dense_freq = 0.1,
    };
    if (arch == SAE_RELU) {
        /* Anthropic, April 2024: free decoder norms (they sit in the penalty), small
         * initial decoder, b_dec not subtracted from the input, Adam ε 1e-8. */
        c.k = 0, c.aux_k = 0, c.lr = 5e-5, c.eps = 1e-8, c.apply_b_dec_to_input = 0;
        c.decoder_unit_norm = 0, c.init_dec_norm = 0.1, c.b_dec_init = SAE_BDEC_MEAN;
    }
    if (c.aux_k > d_sae) c.aux_k = d_sae;
    return c;
}

tp_status sae_config_validate(const sae_config *c)
{
#define BAD(...) return tp_err(TP_ERR_CONFIG, __VA_ARGS__)
    if ((unsigned)c->arch > SAE_BATCHTOPK) BAD("sae.architecture: invalid value %d", (int)c->arch);
    if (c->d_in < 1 || c->d_in > INT32_MAX) BAD("sae: d_in = %lld out of range", (long long)c->d_in);
    if (c->d_sae < 1 || c->d_sae > INT32_MAX) BAD("sae: d_sae = %lld out of range", (long long)c->d_sae);
    if (c->arch != SAE_RELU && (c->k < 1 || c->k > c->d_sae))
        BAD("sae.k = %lld: must be in [1, d_sae = %lld]", (long long)c->k, (long long)c->d_sae);
    if (c->aux_k < 0 || c->aux_k > c->d_sae)
        BAD("sae.aux_k = %lld: must be in [0, d_sae = %lld]", (long long)c->aux_k, (long long)c->d_sae);
    if (!(c->aux_coef >= 0)) BAD("sae.aux_coef = %g: must be ≥ 0", c->aux_coef);
    if (c->dead_tokens < 1) BAD("sae.dead_tokens = %lld: must be ≥ 1", (long long)c->dead_tokens);
    if (!(c->l1_coef >= 0)) BAD("sae.l1_coef = %g: must be ≥ 0", c->l1_coef);
    if (!(c->lr > 0)) BAD("sae.lr = %g: must be > 0", c->lr);
    if (!(c->l1_warmup_frac >= 0 && c->l1_warmup_frac <= 1)) BAD("sae.l1_warmup_frac = %g: must be in [0, 1]", c->l1_warmup_frac);
    if (!(c->lr_warmup_frac >= 0 && c->lr_warmup_frac <= 1)) BAD("sae.lr_warmup_frac = %g: must be in [0, 1]", c->lr_warmup_frac);
    if (!(c->lr_decay_frac >= 0 && c->lr_decay_frac <= 1)) BAD("sae.lr_decay_frac = %g: must be in [0, 1]", c->lr_decay_frac);
    if (c->total_steps < 1) BAD("sae.total_steps = %lld: must be ≥ 1", (long long)c->total_steps);
    if (!(c->beta1 >= 0 && c->beta1 < 1)) BAD("sae.beta1 = %g: must be in [0, 1)", c->beta1);
    if (!(c->beta2 >= 0 && c->beta2 < 1)) BAD("sae.beta2 = %g: must be in [0, 1)", c->beta2);
    if (!(c->eps > 0)) BAD("sae.eps = %g: must be > 0", c->eps);
    if (!(c->max_grad_norm >= 0)) BAD("sae.max_grad_norm = %g: must be ≥ 0", c->max_grad_norm);
    if (!(c->init_dec_norm > 0)) BAD("sae.init_dec_norm = %g: must be > 0", c->init_dec_norm);
    if (!(c->threshold_lr > 0 && c->threshold_lr <= 1)) BAD("sae.threshold_lr = %g: must be in (0, 1]", c->threshold_lr);
    if (!(c->dense_freq > 0 && c->dense_freq <= 1)) BAD("sae.dense_freq = %g: must be in (0, 1]", c->dense_freq);
    if ((unsigned)c->b_dec_init > SAE_BDEC_GEOMETRIC_MEDIAN) BAD("sae.b_dec_init: invalid value %d", (int)c->b_dec_init);
    if (c->apply_b_dec_to_input != 0 && c->apply_b_dec_to_input != 1) BAD("sae.apply_b_dec_to_input must be 0 or 1");
    if (c->decoder_unit_norm != 0 && c->decoder_unit_norm != 1) BAD("sae.decoder_unit_norm must be 0 or 1");
#undef BAD
    return TP_OK;
}

static int64_t round_half_up(double x) { return (int64_t)floor(x + 0.5); }

double sae_l1_coef_at(const sae_config *c, int64_t t)
{
    int64_t w = round_half_up(c->l1_warmup_frac * (double)c->total_steps);
    double f = w > 0 ? (double)(t + 1) / (double)w : 1.0;
    return c->l1_coef * (f < 1 ? f : 1);
}

double sae_lr_at(const sae_config *c, int64_t t)
{
    int64_t T = c->total_steps, wl = round_half_up(c->lr_warmup_frac * (double)T);
    int64_t dd = round_half_up(c->lr_decay_frac * (double)T);
    double up = wl > 0 ? (double)(t + 1) / (double)wl : 1.0;
    double down = dd > 0 ? (double)(T - t) / (double)dd : 1.0;
    if (up > 1) up = 1;
    if (down > 1) down = 1;
    if (down < 0) down = 0;
    return c->lr * up * down;
}

/* ---- allocation ------------------------------------------------------------------- */

/* The training side as views of the host buffers (a host-memory backend). */
static void device_views(sae_model *m, tp_backend *be)
{
    sae_workspace *w = m->ws;
    w->tb = be;
    w->dev = (sae_device){
        .params = m->params, .grad = m->grad, .adam_m = m->adam_m, .adam_v = m->adam_v, .u = w->u, .xt = w->xt,
        .pre = w->pre, .delta = w->delta, .adelta = w->adelta, .G = w->G, .dec_norm = w->dec_norm,
        .colsum = w->colsum, .act_ptr = w->act_ptr, .aux_ptr = w->aux_ptr,
        .act_idx = w->act_idx, .aux_idx = w->aux_idx, .dead = w->dead, .act_val = w->act_val,
        .aux_val = w->aux_val, .act_cap = w->act_cap, .stats = w->stats, .fresh = 1,
    };
}

static void device_free(sae_workspace *w)
{
    sae_device *D = &w->dev;
    if (D->owned) {
        void *bufs[] = {D->params,  D->grad,    D->adam_m,  D->adam_v,   D->x,       D->u,
                        D->xt,      D->pre,     D->delta,   D->adelta,   D->G,       D->dec_norm,
                        D->colsum,  D->act_ptr, D->aux_ptr, D->act_idx,  D->aux_idx, D->dead,
                        D->act_val, D->aux_val, D->stats};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) be_free(w->tb, bufs[i]);
    }
    free(D->bias_host);
    memset(D, 0, sizeof *D);
}

void sae_free(sae_model *m)
{
    if (!m) return;
    sae_workspace *w = m->ws;
    if (w) {
        device_free(w);
        free(w->u), free(w->xt), free(w->pre), free(w->G), free(w->delta), free(w->adelta);
        free(w->act_ptr), free(w->act_idx), free(w->act_val);
        free(w->aux_ptr), free(w->aux_idx), free(w->aux_val), free(w->dead);
        free(w->dec_norm), free(w->colsum), free(w->heap_v), free(w->heap_i), free(w->stats);
        free(w);
    }
    free(m->params), free(m->grad), free(m->adam_m), free(m->adam_v), free(m->since_fired);
    memset(m, 0, sizeof *m);
}

#define ALLOC_OR_FAIL(ptr, count)                                           \
    do {                                                                    \
        size_t alloc_n_ = (size_t)(count);                                  \
        (ptr) = tp_calloc(alloc_n_ > 0 ? alloc_n_ : 1, sizeof *(ptr));      \
        if (!(ptr)) goto nomem;                                             \
    } while (0)

tp_status sae_init(sae_model *m, const sae_config *cfg, int64_t max_rows)
{
    memset(m, 0, sizeof *m);
    TP_CHECK(sae_config_validate(cfg));
    if (max_rows < 1 || max_rows > INT32_MAX)
        return tp_err(TP_ERR_RANGE, "sae: max_rows = %lld: must be in [1, 2^31)", (long long)max_rows);
    const size_t d = (size_t)cfg->d_in, F = (size_t)cfg->d_sae, cap = (size_t)max_rows;
    size_t nf;
    if (__builtin_mul_overflow(cap, F, &nf) || nf > ((size_t)1 << 40))
        return tp_err(TP_ERR_RANGE, "sae: max_rows × d_sae = %lld × %lld too large", (long long)max_rows,
                      (long long)cfg->d_sae);
    m->cfg = *cfg;
    m->max_rows = max_rows;
    m->n_params = (int64_t)(2 * F * d + F + d);
    m->input_scale = 1.0;
    m->rng = 0x5ae5ae5ae5ae5ae5ULL;
    const size_t P = (size_t)m->n_params;
    ALLOC_OR_FAIL(m->params, P);
    ALLOC_OR_FAIL(m->grad, P);
    ALLOC_OR_FAIL(m->adam_m, P);
    ALLOC_OR_FAIL(m->adam_v, P);
    ALLOC_OR_FAIL(m->since_fired, F);
    m->W_enc = m->params;
    m->W_dec = m->params + F * d;
    m->b_enc = m->params + 2 * F * d;
    m->b_dec = m->params + 2 * F * d + F;

    sae_workspace *w;
    ALLOC_OR_FAIL(w, 1);
    m->ws = w;
    w->be = backend_cpu();
    ALLOC_OR_FAIL(w->u, cap * d);
    ALLOC_OR_FAIL(w->xt, cap * d);
    ALLOC_OR_FAIL(w->pre, cap * F);
    if (cfg->arch == SAE_RELU) ALLOC_OR_FAIL(w->G, cap * F);
    ALLOC_OR_FAIL(w->delta, cap * d);
    ALLOC_OR_FAIL(w->adelta, cap * d);
    if (cfg->arch != SAE_RELU) {
        w->act_cap = cap * (size_t)cfg->k;
        ALLOC_OR_FAIL(w->act_ptr, cap + 1);
        ALLOC_OR_FAIL(w->act_idx, w->act_cap);
        ALLOC_OR_FAIL(w->act_val, w->act_cap);
        ALLOC_OR_FAIL(w->aux_ptr, cap + 1);
        ALLOC_OR_FAIL(w->aux_idx, cap * (size_t)cfg->aux_k);
        ALLOC_OR_FAIL(w->aux_val, cap * (size_t)cfg->aux_k);
        size_t hk = (size_t)(cfg->k > cfg->aux_k ? cfg->k : cfg->aux_k);
        ALLOC_OR_FAIL(w->heap_v, hk);
        ALLOC_OR_FAIL(w->heap_i, hk);
    }
    ALLOC_OR_FAIL(w->dead, F);
    ALLOC_OR_FAIL(w->dec_norm, F);
    ALLOC_OR_FAIL(w->colsum, F);
    w->n_stats = SAE_ST_HEAD + d + F;
    ALLOC_OR_FAIL(w->stats, w->n_stats);
    device_views(m, backend_cpu());
    return TP_OK;
nomem:
    sae_free(m);
    return TP_ERR_NOMEM;
}

static tp_status device_alloc(tp_backend *be, void **p, size_t count, size_t size)
{
    return be_alloc(be, (count > 0 ? count : 1) * size, p);
}

tp_status sae_use_backend(sae_model *m, tp_backend *be)
{
    sae_workspace *w = m->ws;
    TP_CHECK(sae_sync_host(m));
    device_free(w);
    device_views(m, backend_cpu());
    if (be->host_memory) {
        w->tb = be;
        return TP_OK;
    }
    const sae_config *c = &m->cfg;
    const size_t d = (size_t)c->d_in, F = (size_t)c->d_sae, cap = (size_t)m->max_rows, P = (size_t)m->n_params;
    sae_device D = {.owned = 1};
    w->tb = be;
    tp_status st = TP_OK;
#define DEV_ALLOC(ptr, count)                                                         \
    if (st == TP_OK) st = device_alloc(be, (void **)&(ptr), (count), sizeof *(ptr))
    DEV_ALLOC(D.params, P);
    DEV_ALLOC(D.grad, P);
    DEV_ALLOC(D.adam_m, P);
    DEV_ALLOC(D.adam_v, P);
    DEV_ALLOC(D.x, cap * d);
    DEV_ALLOC(D.u, cap * d);
    DEV_ALLOC(D.xt, cap * d);
    DEV_ALLOC(D.pre, cap * F);
    DEV_ALLOC(D.delta, cap * d);
    DEV_ALLOC(D.adelta, cap * d);
    if (c->arch == SAE_RELU) {
        DEV_ALLOC(D.G, cap * F);
        DEV_ALLOC(D.dec_norm, F);
        DEV_ALLOC(D.colsum, F);
    }
    DEV_ALLOC(D.act_ptr, cap + 1);
    DEV_ALLOC(D.aux_ptr, cap + 1);
    D.act_cap = cap * (size_t)c->k;
    DEV_ALLOC(D.act_idx, D.act_cap);
    DEV_ALLOC(D.act_val, D.act_cap);
    DEV_ALLOC(D.aux_idx, cap * (size_t)c->aux_k);
    DEV_ALLOC(D.aux_val, cap * (size_t)c->aux_k);
    DEV_ALLOC(D.dead, F);
    DEV_ALLOC(D.stats, w->n_stats);
#undef DEV_ALLOC
    if (st == TP_OK && c->arch == SAE_BATCHTOPK && !(D.bias_host = tp_malloc(F * sizeof *D.bias_host)))
        st = TP_ERR_NOMEM;
    w->dev = D;   /* owned: device_free releases what was made */
    if (st != TP_OK) {
        device_free(w);
        device_views(m, backend_cpu());
        return tp_err(st, "sae: the %lld-parameter SAE and its workspace of %lld rows do not fit on %s",
                      (long long)m->n_params, (long long)m->max_rows, be->name);
    }
    return TP_OK;
}

/* Parameters and Adam moments between the host and the training backend's copies. */
static tp_status copy_state(const sae_model *m, int to_device)
{
    sae_workspace *w = m->ws;
    sae_device *D = &w->dev;
    float *host[3] = {m->params, m->adam_m, m->adam_v}, *dev[3] = {D->params, D->adam_m, D->adam_v};
    const size_t bytes = (size_t)m->n_params * sizeof(float);
    for (int i = 0; i < 3; i++)
        TP_CHECK(to_device ? be_upload(w->tb, dev[i], host[i], bytes) : be_download(w->tb, host[i], dev[i], bytes));
    return TP_OK;
}

tp_status sae_sync_host(const sae_model *m)
{
    sae_device *D = &m->ws->dev;
    if (!D->owned || !D->host_stale) return TP_OK;
    TP_CHECK(copy_state(m, 0));
    D->host_stale = 0;
    return TP_OK;
}

/* The device's parameters and moments from the host's, when the host changed them. */
static tp_status device_refresh(sae_model *m)
{
    sae_device *D = &m->ws->dev;
    if (D->fresh) return TP_OK;
    TP_CHECK(copy_state(m, 1));
    D->fresh = 1;
    return TP_OK;
}

/* The host is about to change the parameters: bring it up to date first, and have
 * the device take them before its next step. */
static tp_status host_will_change(sae_model *m)
{
    TP_CHECK(sae_sync_host(m));
    if (m->ws->dev.owned) m->ws->dev.fresh = 0;
    return TP_OK;
}

/* ---- random initialisation ------------------------------------------------------------ */

/* splitmix64 (Steele, Lea & Flood 2014) */
uint64_t sae_rng_next(sae_model *m) { return tp_splitmix64(&m->rng); }

static double rng_normal(sae_model *m)
{
    /* Box-Muller; u1 in (0, 1] keeps the log finite. */
    double u1 = ((double)(sae_rng_next(m) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(sae_rng_next(m) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

tp_status sae_init_weights(sae_model *m, uint64_t seed)
{
    const int64_t d = m->cfg.d_in, F = m->cfg.d_sae;
    TP_CHECK(host_will_change(m));
    m->rng = seed;
    double *row = tp_malloc((size_t)d * sizeof *row);
    if (!row) return TP_ERR_NOMEM;
    for (int64_t i = 0; i < F; i++) {
        double s = 0;
        do {
            s = 0;
            for (int64_t j = 0; j < d; j++) {
                row[j] = rng_normal(m);
                s += row[j] * row[j];
            }
        } while (s == 0);
        double f = m->cfg.init_dec_norm / sqrt(s);
        float *wd = m->W_dec + (size_t)i * (size_t)d, *we = m->W_enc + (size_t)i * (size_t)d;
        for (int64_t j = 0; j < d; j++) wd[j] = we[j] = (float)(row[j] * f);
    }
    free(row);
    memset(m->b_enc, 0, (size_t)F * sizeof(float));
    memset(m->b_dec, 0, (size_t)d * sizeof(float));
    memset(m->adam_m, 0, (size_t)m->n_params * sizeof(float));
    memset(m->adam_v, 0, (size_t)m->n_params * sizeof(float));
    memset(m->since_fired, 0, (size_t)F * sizeof(int64_t));
    m->step = 0;
    m->threshold = 0;
    return TP_OK;
}

/* ---- input scale and b_dec ------------------------------------------------------------ */

static tp_status sum_f64(MPI_Comm comm, double *buf, size_t n)
{
    if (comm == MPI_COMM_NULL) return TP_OK;
    return dist_allreduce_sum_f64(comm, buf, n);
}

tp_status sae_compute_input_scale(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm, double *scale)
{
    double acc[2] = {0, (double)n_local};
    for (int64_t n = 0; n < n_local; n++) {
        const float *x = rows + (size_t)n * (size_t)d;
        double s = 0;
        for (int64_t j = 0; j < d; j++) s += (double)x[j] * x[j];
        acc[0] += sqrt(s);
    }
    TP_CHECK(sum_f64(comm, acc, 2));
    if (!(acc[1] > 0 && acc[0] > 0))
        return tp_err(TP_ERR_RANGE, "sae: input scale from %.0f rows of mean norm 0", acc[1]);
    *scale = sqrt((double)d) / (acc[0] / acc[1]);
    return TP_OK;
}

tp_status sae_init_b_dec(sae_model *m, const float *rows, int64_t n_local, MPI_Comm comm, sae_bdec_init method,
                         int max_iter)
{
    const int64_t d = m->cfg.d_in;
    const double s = m->input_scale;
    TP_CHECK(host_will_change(m));
    if (method == SAE_BDEC_ZERO) {
        memset(m->b_dec, 0, (size_t)d * sizeof(float));
        return TP_OK;
    }
    double *acc = tp_calloc((size_t)d + 1, sizeof *acc), *y = tp_calloc((size_t)d, sizeof *y);
    tp_status st = acc && y ? TP_OK : TP_ERR_NOMEM;
    if (st != TP_OK) goto done;
    for (int64_t n = 0; n < n_local; n++)
        for (int64_t j = 0; j < d; j++) acc[j] += s * (double)rows[(size_t)n * (size_t)d + j];
    acc[d] = (double)n_local;
    if ((st = sum_f64(comm, acc, (size_t)d + 1)) != TP_OK) goto done;
    if (!(acc[d] > 0)) {
        st = tp_err(TP_ERR_RANGE, "sae: b_dec from an empty sample");
        goto done;
    }
    for (int64_t j = 0; j < d; j++) y[j] = acc[j] / acc[d];
    /* Weiszfeld (1937): the fixed point of y = Σ x_n/‖x_n − y‖ / Σ 1/‖x_n − y‖. */
    for (int it = 0; method == SAE_BDEC_GEOMETRIC_MEDIAN && it < max_iter; it++) {
        memset(acc, 0, ((size_t)d + 1) * sizeof *acc);
        for (int64_t n = 0; n < n_local; n++) {
            const float *x = rows + (size_t)n * (size_t)d;
            double r = 0;
            for (int64_t j = 0; j < d; j++) {
                double t = s * (double)x[j] - y[j];
                r += t * t;
            }
            r = sqrt(r);
            double wgt = 1.0 / (r > 1e-12 ? r : 1e-12);
            for (int64_t j = 0; j < d; j++) acc[j] += wgt * (s * (double)x[j]);
            acc[d] += wgt;
        }
        if ((st = sum_f64(comm, acc, (size_t)d + 1)) != TP_OK) goto done;
        double step = 0, ny = 0;
        for (int64_t j = 0; j < d; j++) {
            double v = acc[j] / acc[d];
            step += (v - y[j]) * (v - y[j]);
            ny += v * v;
            y[j] = v;
        }
        if (sqrt(step) <= 1e-7 * (sqrt(ny) + 1e-12)) break;
    }
    for (int64_t j = 0; j < d; j++) m->b_dec[j] = (float)y[j];
done:
    free(acc), free(y);
    return st;
}

/* ---- selection ------------------------------------------------------------------------ */

static tp_status allreduce_i64(MPI_Comm comm, int64_t *buf, int n, MPI_Op op)
{
    if (comm == MPI_COMM_NULL) return TP_OK;
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_INT64_T, op, comm));
    return TP_OK;
}

/* θ_b: the m_sel-th largest positive value of x[0..count) over all ranks (radix
 * select on the bits of positive floats, which order as the floats do), or the
 * smallest positive value when there are no more than m_sel of them (0 if none). */
static tp_status batch_threshold(const float *x, size_t count, int64_t m_sel, MPI_Comm comm, float *theta)
{
    uint32_t prefix = 0, mask = 0;
    int64_t remaining = m_sel, hist[256];
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 24 - 8 * pass;
        memset(hist, 0, sizeof hist);
        /* Branch-free: whether a value counts is data, not control flow. Positive
         * floats are exactly the bit patterns in [1, 0x7f800000] (+inf included). */
        for (size_t i = 0; i < count; i++) {
            uint32_t b;
            memcpy(&b, &x[i], sizeof b);
            hist[(b >> shift) & 255u] += (int64_t)((b - 1u < 0x7f800000u) & ((b & mask) == prefix));
        }
        TP_CHECK(allreduce_i64(comm, hist, 256, MPI_SUM));
        if (pass == 0) {
            int64_t total = 0;
            for (int b = 0; b < 256; b++) total += hist[b];
            if (total <= m_sel) {
                float lo = FLT_MAX;
                for (size_t i = 0; i < count; i++)
                    if (x[i] > 0 && x[i] < lo) lo = x[i];
                if (comm != MPI_COMM_NULL) MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_FLOAT, MPI_MIN, comm));
                *theta = total > 0 ? lo : 0.0f;
                return TP_OK;
            }
        }
        int b = 255;
        int64_t above = 0;
        while (b > 0 && above + hist[b] < remaining) above += hist[b--];
        remaining -= above;
        prefix |= (uint32_t)b << shift;
        mask |= 0xFFu << shift;
    }
    memcpy(theta, &prefix, sizeof *theta);
    return TP_OK;
}

static tp_status act_reserve(sae_workspace *w, size_t need)
{
    if (need <= w->act_cap) return TP_OK;
    size_t cap = w->act_cap * 2 > need ? w->act_cap * 2 : need;
    int32_t *ni = realloc(w->act_idx, cap * sizeof *ni);
    if (!ni) return tp_err(TP_ERR_NOMEM, "sae: out of memory for %zu active latents", cap);
    w->act_idx = ni;
    float *nv = realloc(w->act_val, cap * sizeof *nv);
    if (!nv) return tp_err(TP_ERR_NOMEM, "sae: out of memory for %zu active latents", cap);
    w->act_val = nv;
    w->act_cap = cap;
    if (!w->dev.owned)   /* the training side's views of the host lists */
        w->dev.act_idx = w->act_idx, w->dev.act_val = w->act_val, w->dev.act_cap = cap;
    return TP_OK;
}

/* Room for `need` active latents in the training backend's lists (owned: batchtopk's
 * selection can give a rank more than k per row). */
static tp_status dev_act_reserve(sae_workspace *w, size_t need)
{
    sae_device *D = &w->dev;
    if (need <= D->act_cap) return TP_OK;
    size_t cap = D->act_cap * 2 > need ? D->act_cap * 2 : need;
    be_free(w->tb, D->act_idx), be_free(w->tb, D->act_val);
    D->act_idx = NULL, D->act_val = NULL, D->act_cap = 0;
    if (device_alloc(w->tb, (void **)&D->act_idx, cap, sizeof *D->act_idx) != TP_OK ||
        device_alloc(w->tb, (void **)&D->act_val, cap, sizeof *D->act_val) != TP_OK)
        return tp_err(TP_ERR_NOMEM, "sae: no room on %s for %zu active latents", w->tb->name, cap);
    D->act_cap = cap;
    return TP_OK;
}

/* ---- forward -------------------------------------------------------------------------- */

/* u = s·x, x̃ = u − b_dec (or u), pre = x̃ W_encᵀ + b_enc, on the host buffers
 * (inference). */
static tp_status encode_block(const sae_model *m, const float *rows, int64_t n, float *pre)
{
    const int64_t d = m->cfg.d_in, F = m->cfg.d_sae;
    sae_workspace *w = m->ws;
    TP_CHECK(be_sae_encode_in(w->be, rows, n, d, (float)m->input_scale, m->b_dec, m->cfg.apply_b_dec_to_input,
                              w->u, w->xt, NULL, NULL));
    if (n == 0) return TP_OK;
    TP_CHECK(be_gemm_f32(w->be, TP_NO_TRANS, TP_TRANS, n, F, d, 1.0f, w->xt, d, m->W_enc, d, 0.0f, pre, F));
    for (int64_t r = 0; r < n; r++) {
        float *restrict p = pre + (size_t)r * (size_t)F;
        for (int64_t i = 0; i < F; i++) p[i] += m->b_enc[i];
    }
    return TP_OK;
}

/* batchtopk's codes: pre += b_enc, then every pre ≥ θ_b and > 0 into the CSR lists.
 * The selection runs on the host (its histograms are summed over the ranks): on a
 * device the pre-activations [n, F] come to the host and the lists go back (2·n·F·4
 * bytes a step over the bus), and the device's pre keeps no b_enc (the AuxK
 * selection adds it there). */
static tp_status select_batch(sae_model *m, int64_t n, int64_t n_global, MPI_Comm comm)
{
    const sae_config *c = &m->cfg;
    const int64_t d = c->d_in, F = c->d_sae;
    sae_workspace *w = m->ws;
    sae_device *D = &w->dev;
    const float *bias = m->b_enc;
    if (D->owned) {
        if (n > 0) TP_CHECK(be_download(w->tb, w->pre, D->pre, (size_t)n * (size_t)F * sizeof *w->pre));
        TP_CHECK(be_download(w->tb, D->bias_host, D->params + 2 * (size_t)F * (size_t)d,
                             (size_t)F * sizeof *D->bias_host));
        bias = D->bias_host;
    }
    for (int64_t r = 0; r < n; r++) {
        float *restrict p = w->pre + (size_t)r * (size_t)F;
        for (int64_t i = 0; i < F; i++) p[i] += bias[i];
    }
    size_t na = 0;
    float theta = 0;
    TP_CHECK(batch_threshold(w->pre, (size_t)n * (size_t)F, c->k * n_global, comm, &theta));
    w->batch_threshold = theta;
    w->act_ptr[0] = 0;
    for (int64_t r = 0; r < n; r++) {
        const float *restrict p = w->pre + (size_t)r * (size_t)F;
        for (int64_t i = 0; i < F; i++) {
            if (p[i] >= theta && p[i] > 0) {
                if (na == w->act_cap) TP_CHECK(act_reserve(w, na + 1));
                w->act_idx[na] = (int32_t)i, w->act_val[na++] = p[i];
            }
        }
        w->act_ptr[r + 1] = (int64_t)na;
    }
    if (D->owned) {
        TP_CHECK(dev_act_reserve(w, na));
        TP_CHECK(be_upload(w->tb, D->act_ptr, w->act_ptr, ((size_t)n + 1) * sizeof *w->act_ptr));
        if (na > 0) {
            TP_CHECK(be_upload(w->tb, D->act_idx, w->act_idx, na * sizeof *w->act_idx));
            TP_CHECK(be_upload(w->tb, D->act_val, w->act_val, na * sizeof *w->act_val));
        }
    }
    return TP_OK;
}

/* The start of every step on the training backend: the device takes the host's
 * changes, the rows and the zeroed stats (owned), then u = s·x, x̃ = u − b_dec (or u),
 * the stats Σu and Σ‖u‖², and pre = x̃ W_encᵀ (no b_enc yet). */
static tp_status forward_encode(sae_model *m, const float *rows, int64_t n)
{
    const int64_t d = m->cfg.d_in, F = m->cfg.d_sae;
    sae_workspace *w = m->ws;
    sae_device *D = &w->dev;
    tp_backend *be = w->tb;
    TP_CHECK(device_refresh(m));
    const float *x = rows;
    if (D->owned) {
        if (n > 0) TP_CHECK(be_upload(be, D->x, rows, (size_t)n * (size_t)d * sizeof(float)));
        TP_CHECK(be_upload(be, D->stats, w->stats, w->n_stats * sizeof *w->stats));
        x = D->x;
    }
    const float *W_enc = D->params, *b_dec = D->params + 2 * (size_t)F * (size_t)d + (size_t)F;
    TP_CHECK(be_sae_encode_in(be, x, n, d, (float)m->input_scale, b_dec, m->cfg.apply_b_dec_to_input, D->u, D->xt,
                              D->stats + SAE_ST_HEAD, D->stats + SAE_ST_SQNORM));
    if (n > 0) TP_CHECK(be_gemm_f32(be, TP_NO_TRANS, TP_TRANS, n, F, d, 1.0f, D->xt, d, W_enc, d, 0.0f, D->pre, F));
    return TP_OK;
}

/* relu on the training backend: f = max(pre + b_enc, 0) with the decoder norms and
 * the L1 and firing sums, delta = f·W_dec + b_dec − u and Σ delta². */
static tp_status forward_relu(sae_model *m, const float *rows, int64_t n)
{
    const int64_t d = m->cfg.d_in, F = m->cfg.d_sae;
    sae_workspace *w = m->ws;
    sae_device *D = &w->dev;
    tp_backend *be = w->tb;
    TP_CHECK(forward_encode(m, rows, n));
    double *ds = D->stats;
    const float *W_dec = D->params + (size_t)F * (size_t)d;
    const float *b_enc = W_dec + (size_t)F * (size_t)d, *b_dec = b_enc + F;
    TP_CHECK(be_sae_relu(be, D->pre, n, F, d, b_enc, W_dec, D->dec_norm, ds + SAE_ST_HEAD + d, ds + SAE_ST_ACTIVE,
                         ds + SAE_ST_L1));
    if (n > 0) {
        TP_CHECK(be_gemm_f32(be, TP_NO_TRANS, TP_NO_TRANS, n, d, F, 1.0f, D->pre, F, W_dec, d, 0.0f, D->delta, d));
        TP_CHECK(be_sae_residual(be, n, d, b_dec, D->u, D->delta, ds + SAE_ST_RECON));
    }
    if (D->owned) TP_CHECK(be_download(be, w->stats, ds, w->n_stats * sizeof *w->stats));
    return TP_OK;
}

/* topk / batchtopk on the training backend: encode, select, sparse decode (delta =
 * b_dec − u + Σ v·w_i), AuxK; the stats are summed in the backend's memory and
 * brought back to w->stats. */
static tp_status forward_sparse(sae_model *m, const float *rows, int64_t n, int64_t n_global, MPI_Comm comm)
{
    const sae_config *c = &m->cfg;
    const int64_t d = c->d_in, F = c->d_sae;
    sae_workspace *w = m->ws;
    sae_device *D = &w->dev;
    tp_backend *be = w->tb;
    double *st = w->stats;
    TP_CHECK(forward_encode(m, rows, n));
    double *ds = D->stats;
    const float *W_dec = D->params + (size_t)F * (size_t)d;
    const float *b_enc = W_dec + (size_t)F * (size_t)d, *b_dec = b_enc + F;
    /* pre += b_enc and the selection: per row (topk), over the batch (batchtopk) */
    if (c->arch == SAE_TOPK)
        TP_CHECK(be_sae_topk(be, D->pre, n, F, b_enc, NULL, F, c->k, D->act_ptr, D->act_idx, D->act_val));
    else
        TP_CHECK(select_batch(m, n, n_global, comm));
    /* the device's pre lacks b_enc after batchtopk's host selection */
    const float *aux_bias = c->arch == SAE_BATCHTOPK && D->owned ? b_enc : NULL;
    const tp_sae_codes codes = {D->act_ptr, D->act_idx, D->act_val};
    TP_CHECK(be_sae_decode(be, n, d, codes, W_dec, b_dec, D->u, D->delta, ds + SAE_ST_HEAD + d,
                           ds + SAE_ST_ACTIVE, ds + SAE_ST_RECON));

    /* AuxK: the aux_k largest pre-activations among the dead latents reconstruct
     * the error e = u − x̂ = −delta; adelta = ê − e = ê + delta. */
    w->n_dead = 0;
    for (int64_t i = 0; i < F; i++)
        if (m->since_fired[i] >= c->dead_tokens) w->dead[w->n_dead++] = (int32_t)i;
    w->n_aux = c->aux_k < w->n_dead ? c->aux_k : w->n_dead;
    if (w->n_aux > 0 && n > 0) {
        if (D->owned) TP_CHECK(be_upload(be, D->dead, w->dead, (size_t)w->n_dead * sizeof *w->dead));
        TP_CHECK(be_copy(be, D->adelta, D->delta, (size_t)n * (size_t)d * sizeof(float)));
        TP_CHECK(be_sae_topk(be, D->pre, n, F, aux_bias, D->dead, w->n_dead, w->n_aux, D->aux_ptr, D->aux_idx,
                             D->aux_val));
        const tp_sae_codes aux = {D->aux_ptr, D->aux_idx, D->aux_val};
        TP_CHECK(be_sae_decode(be, n, d, aux, W_dec, NULL, NULL, D->adelta, NULL, NULL, ds + SAE_ST_AUX));
    }
    if (D->owned) TP_CHECK(be_download(be, st, D->stats, w->n_stats * sizeof *st));
    return TP_OK;
}

tp_status sae_forward(sae_model *m, const float *rows, int64_t n_local, int64_t n_global, MPI_Comm comm)
{
    const sae_config *c = &m->cfg;
    const int64_t n = n_local;
    sae_workspace *w = m->ws;
    if (n_local < 0 || n_local > m->max_rows)
        return tp_err(TP_ERR_RANGE, "sae: %lld rows in a step, the workspace holds %lld", (long long)n_local,
                      (long long)m->max_rows);
    if (n_global < 1 || n_global < n_local)
        return tp_err(TP_ERR_RANGE, "sae: global batch of %lld rows with %lld local ones", (long long)n_global,
                      (long long)n_local);
    w->have_forward = 0;
    w->n_local = n, w->n_global = n_global;
    double *st = w->stats;
    memset(st, 0, w->n_stats * sizeof *st);
    st[SAE_ST_ROWS] = (double)n;
    if (c->arch == SAE_RELU)
        TP_CHECK(forward_relu(m, rows, n));
    else
        TP_CHECK(forward_sparse(m, rows, n, n_global, comm));
    w->have_forward = 1;
    return TP_OK;
}

double *sae_stats(sae_model *m, size_t *n)
{
    *n = m->ws->n_stats;
    return m->ws->stats;
}

/* ---- backward ------------------------------------------------------------------------- */

tp_status sae_backward(sae_model *m)
{
    const sae_config *c = &m->cfg;
    sae_workspace *w = m->ws;
    if (!w->have_forward) return tp_err(TP_ERR_INTERNAL, "sae_backward without a forward pass");
    const int64_t d = c->d_in, F = c->d_sae, n = w->n_local;
    const float cr = (float)(2.0 / (double)w->n_global);                  /* ∂recon/∂x̂ = cr·delta */
    if (c->arch != SAE_RELU) {
        const sae_device *D = &w->dev;
        const tp_sae_bwd a = {
            .n = n, .d = d, .F = F,
            .codes = {D->act_ptr, D->act_idx, D->act_val},
            .aux = {w->n_aux > 0 ? D->aux_ptr : NULL, D->aux_idx, D->aux_val},
            .delta = D->delta, .adelta = D->adelta, .xt = D->xt,
            .W_enc = D->params, .W_dec = D->params + (size_t)F * (size_t)d,
            .coef = cr, .aux_coef = (float)(2.0 * c->aux_coef / (double)w->n_global),
            .sub_b_dec = c->apply_b_dec_to_input, .grad = D->grad,
        };
        TP_CHECK(be_sae_sparse_bwd(w->tb, &a));
        w->have_forward = 0;
        return TP_OK;
    }
    /* relu: the dense products are gemms; ∂b_dec, the L1 terms and the mask in the ops */
    const sae_device *D = &w->dev;
    tp_backend *be = w->tb;
    const float *W_enc = D->params, *W_dec = D->params + (size_t)F * (size_t)d;
    float *gWe = D->grad, *gWd = D->grad + (size_t)F * (size_t)d, *gbe = gWd + (size_t)F * (size_t)d;
    const tp_sae_relu_bwd a = {
        .n = n, .d = d, .F = F, .f = D->pre, .delta = D->delta, .W_dec = W_dec, .dec_norm = D->dec_norm,
        .coef = cr, .l1_coef = (float)(sae_l1_coef_at(c, m->step) / (double)w->n_global), .G = D->G,
        .colsum = D->colsum, .grad = D->grad,
    };
    w->have_forward = 0;
    TP_CHECK(be_sae_relu_bwd_init(be, &a));
    if (n == 0) return TP_OK;
    /* ∂/∂W_dec = cr·fᵀ·delta (+ the L1 term), G = cr·delta·W_decᵀ (then masked) */
    TP_CHECK(be_gemm_f32(be, TP_TRANS, TP_NO_TRANS, F, d, n, cr, D->pre, F, D->delta, d, 0.0f, gWd, d));
    TP_CHECK(be_gemm_f32(be, TP_NO_TRANS, TP_TRANS, n, F, d, cr, D->delta, d, W_dec, d, 0.0f, D->G, F));
    TP_CHECK(be_sae_relu_bwd_pre(be, &a));
    TP_CHECK(be_gemm_f32(be, TP_TRANS, TP_NO_TRANS, F, d, n, 1.0f, D->G, F, D->xt, d, 0.0f, gWe, d));
    if (c->apply_b_dec_to_input)
        TP_CHECK(be_gemv_f32(be, TP_TRANS, F, d, -1.0f, W_enc, d, gbe, 1.0f, gbe + F));
    return TP_OK;
}

/* ---- optimiser step ------------------------------------------------------------------- */

void sae_metrics_from_stats(const sae_model *m, const double *st, sae_metrics *o)
{
    const sae_config *c = &m->cfg;
    const int64_t d = c->d_in, F = c->d_sae;
    const double N = st[SAE_ST_ROWS];
    memset(o, 0, sizeof *o);
    o->step = m->step;
    o->rows = (int64_t)N;
    o->lr = sae_lr_at(c, m->step);
    o->l1_coef = c->arch == SAE_RELU ? sae_l1_coef_at(c, m->step) : 0;
    o->recon = st[SAE_ST_RECON] / N;
    o->l1 = o->l1_coef * st[SAE_ST_L1] / N;
    o->aux = c->arch == SAE_RELU ? 0 : c->aux_coef * st[SAE_ST_AUX] / N;
    o->loss = o->recon + o->l1 + o->aux;
    double mu2 = 0;
    for (int64_t j = 0; j < d; j++) mu2 += st[SAE_ST_HEAD + j] * st[SAE_ST_HEAD + j];
    double var = st[SAE_ST_SQNORM] - mu2 / N;
    o->fvu = var > 0 ? st[SAE_ST_RECON] / var : NAN;
    o->l0 = st[SAE_ST_ACTIVE] / N;
    int64_t dense = 0, dead = 0;
    for (int64_t i = 0; i < F; i++) {
        dense += st[SAE_ST_HEAD + d + i] > c->dense_freq * N;
        dead += m->since_fired[i] >= c->dead_tokens;
    }
    o->dense_frac = (double)dense / (double)F;
    o->dead_frac = (double)dead / (double)F;
    o->threshold = m->threshold;
    o->batch_threshold = c->arch == SAE_BATCHTOPK ? m->ws->batch_threshold : 0;
}

tp_status sae_apply_step(sae_model *m, sae_metrics *out)
{
    const sae_config *c = &m->cfg;
    sae_workspace *w = m->ws;
    const int64_t d = c->d_in, F = c->d_sae;
    const size_t P = (size_t)m->n_params;
    const double *st = w->stats;
    if (st[SAE_ST_ROWS] != (double)w->n_global)
        return tp_err(TP_ERR_INTERNAL, "sae_apply_step: the stats hold %.0f rows, the batch has %lld (not summed "
                      "over the ranks?)", st[SAE_ST_ROWS], (long long)w->n_global);
    sae_metrics met;
    sae_metrics_from_stats(m, st, &met);
    if (!isfinite(met.loss))
        return tp_err(TP_ERR_RANGE, "sae: non-finite loss %g at step %lld", met.loss, (long long)m->step);

    /* 1–4 on the training backend: projection, clipping, Adam, unit decoder rows */
    {
        const double t1 = (double)(m->step + 1);
        const double bc1 = 1.0 - pow(c->beta1, t1), bc2s = sqrt(1.0 - pow(c->beta2, t1));
        sae_device *D = &w->dev;
        const tp_sae_adam a = {
            .P = (int64_t)P, .F = F, .d = d, .params = D->params, .grad = D->grad, .m = D->adam_m, .v = D->adam_v,
            .decoder_unit_norm = c->decoder_unit_norm, .max_grad_norm = c->max_grad_norm,
            .step_size = (float)(met.lr / bc1), .bc2 = (float)bc2s, .eps = (float)c->eps,
            .w1 = (float)(1.0 - c->beta1), .b2 = (float)c->beta2, .w2 = (float)(1.0 - c->beta2),
        };
        TP_CHECK(be_sae_adam(w->tb, &a, &met.grad_norm));
        if (D->owned) D->host_stale = 1;
    }
    /* 5. dead-latent counters */
    const double *fires = st + SAE_ST_HEAD + d;
    int64_t dead = 0;
    for (int64_t i = 0; i < F; i++) {
        m->since_fired[i] = fires[i] > 0 ? 0 : m->since_fired[i] + w->n_global;
        dead += m->since_fired[i] >= c->dead_tokens;
    }
    met.dead_frac = (double)dead / (double)F;
    /* 6. batchtopk's inference threshold */
    if (c->arch == SAE_BATCHTOPK) {
        m->threshold = m->step == 0 ? w->batch_threshold
                                    : (1 - c->threshold_lr) * m->threshold + c->threshold_lr * w->batch_threshold;
        met.threshold = m->threshold;
    }
    m->step++;
    met.step = m->step;
    if (out) *out = met;
    return TP_OK;
}

tp_status sae_train_step(sae_model *m, const float *rows, int64_t n_local, MPI_Comm comm, sae_metrics *out)
{
    int64_t n_global = n_local;
    tp_status st = n_local < 0 || n_local > m->max_rows
                       ? tp_err(TP_ERR_RANGE, "sae: %lld rows in a step, the workspace holds %lld",
                                (long long)n_local, (long long)m->max_rows)
                       : TP_OK;
    if (comm != MPI_COMM_NULL) {
        TP_CHECK(dist_agree(comm, st, "sae step"));
        TP_CHECK(allreduce_i64(comm, &n_global, 1, MPI_SUM));
    } else {
        TP_CHECK(st);
    }
    if (n_global < 1) return tp_err(TP_ERR_RANGE, "sae: a step over an empty batch");
    st = sae_forward(m, rows, n_local, n_global, comm);
    if (st == TP_OK) st = sae_backward(m);
    if (comm != MPI_COMM_NULL) {
        TP_CHECK(dist_agree(comm, st, "sae step"));
        /* MPI on CPU ranks, NCCL when the gradients are device memory */
        TP_CHECK(dist_grad_allreduce(comm, m->ws->tb, m->ws->dev.grad, (size_t)m->n_params));
        TP_CHECK(dist_allreduce_sum_f64(comm, m->ws->stats, m->ws->n_stats));
    } else {
        TP_CHECK(st);
    }
    return sae_apply_step(m, out);
}

/* ---- inference ------------------------------------------------------------------------ */

tp_status sae_encode(sae_model *m, const float *rows, int64_t n, float *codes)
{
    const sae_config *c = &m->cfg;
    const int64_t F = c->d_sae, d = c->d_in;
    sae_workspace *w = m->ws;
    TP_CHECK(sae_sync_host(m));
    w->have_forward = 0;
    for (int64_t r0 = 0; r0 < n; r0 += m->max_rows) {
        const int64_t nb = n - r0 < m->max_rows ? n - r0 : m->max_rows;
        float *out = codes + (size_t)r0 * (size_t)F;
        TP_CHECK(encode_block(m, rows + (size_t)r0 * (size_t)d, nb, out));
        for (int64_t r = 0; r < nb; r++) {
            float *restrict p = out + (size_t)r * (size_t)F;
            if (c->arch == SAE_RELU) {
                for (int64_t i = 0; i < F; i++) p[i] = p[i] > 0 ? p[i] : 0.0f;
            } else if (c->arch == SAE_BATCHTOPK) {
                const float th = (float)m->threshold;
                for (int64_t i = 0; i < F; i++) p[i] = p[i] > th && p[i] > 0 ? p[i] : 0.0f;
            } else {
                sae_cpu_select_topk(p, NULL, F, c->k, w->heap_v, w->heap_i);
                memset(p, 0, (size_t)F * sizeof *p);
                for (int64_t j = 0; j < c->k; j++)
                    if (w->heap_v[j] > 0) p[w->heap_i[j]] = w->heap_v[j];
            }
        }
    }
    return TP_OK;
}

tp_status sae_reconstruct(sae_model *m, const float *rows, int64_t n, float *recon)
{
    const int64_t F = m->cfg.d_sae, d = m->cfg.d_in;
    sae_workspace *w = m->ws;
    const float inv = (float)(1.0 / m->input_scale);
    for (int64_t r0 = 0; r0 < n; r0 += m->max_rows) {
        const int64_t nb = n - r0 < m->max_rows ? n - r0 : m->max_rows;
        TP_CHECK(sae_encode(m, rows + (size_t)r0 * (size_t)d, nb, w->pre));
        float *out = recon + (size_t)r0 * (size_t)d;
        TP_CHECK(be_gemm_f32(w->be, TP_NO_TRANS, TP_NO_TRANS, nb, d, F, 1.0f, w->pre, F, m->W_dec, d, 0.0f, out, d));
        for (int64_t r = 0; r < nb; r++)
            for (int64_t j = 0; j < d; j++) out[(size_t)r * (size_t)d + j] = (out[(size_t)r * (size_t)d + j] + m->b_dec[j]) * inv;
    }
    return TP_OK;
}
