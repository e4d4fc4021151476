/* sae_io.c — SAE checkpoints as one safetensors file (sae.h: sae_save, sae_load).
 *
 * Tensors: W_enc, W_dec [F, d], b_enc [F], b_dec [d] (F32, sae.h's layout),
 * adam_m, adam_v [P] (F32), since_fired [F] (I64), state_i64 [2] = {step, RNG state
 * bits}, state_f64 [2] = {input scale, batchtopk θ}, config_json (U8, the config
 * as a JSON object). Metadata: format = "transpolmo-sae-checkpoint", version = "1".
 */
#include "analysis/sae/sae.h"

#include "io/safetensors.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define SAE_CKPT_FORMAT "transpolmo-sae-checkpoint"

static char *config_to_json(const sae_config *c)
{
    json_t *o = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:f, s:I, s:f, s:f, s:f, s:f, s:f, s:I, s:f, s:f, s:f, s:f, s:i, s:i, s:f, "
        "s:i, s:f, s:f}",
        "architecture", sae_arch_name(c->arch), "d_in", (json_int_t)c->d_in, "d_sae", (json_int_t)c->d_sae, "k",
        (json_int_t)c->k, "aux_k", (json_int_t)c->aux_k, "aux_coef", c->aux_coef, "dead_tokens",
        (json_int_t)c->dead_tokens, "l1_coef", c->l1_coef, "l1_warmup_frac", c->l1_warmup_frac, "lr", c->lr,
        "lr_warmup_frac", c->lr_warmup_frac, "lr_decay_frac", c->lr_decay_frac, "total_steps",
        (json_int_t)c->total_steps, "beta1", c->beta1, "beta2", c->beta2, "eps", c->eps, "max_grad_norm",
        c->max_grad_norm, "apply_b_dec_to_input", c->apply_b_dec_to_input, "decoder_unit_norm",
        c->decoder_unit_norm, "init_dec_norm", c->init_dec_norm, "b_dec_init", (int)c->b_dec_init,
        "threshold_lr", c->threshold_lr, "dense_freq", c->dense_freq);
    if (!o) return NULL;
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    return s;
}

static tp_status config_from_json(const char *path, const char *text, size_t len, sae_config *c)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    if (!o) return tp_err(TP_ERR_FORMAT, "%s: config_json: %s", path, je.text);
    const char *arch = NULL;
    json_int_t d_in, d_sae, k, aux_k, dead, total;
    int apply, unit, bdec;
    int rc = json_unpack_ex(o, &je, JSON_STRICT,
                            "{s:s, s:I, s:I, s:I, s:I, s:F, s:I, s:F, s:F, s:F, s:F, s:F, s:I, s:F, s:F, s:F, s:F, "
                            "s:i, s:i, s:F, s:i, s:F, s:F}",
                            "architecture", &arch, "d_in", &d_in, "d_sae", &d_sae, "k", &k, "aux_k", &aux_k,
                            "aux_coef", &c->aux_coef, "dead_tokens", &dead, "l1_coef", &c->l1_coef,
                            "l1_warmup_frac", &c->l1_warmup_frac, "lr", &c->lr, "lr_warmup_frac",
                            &c->lr_warmup_frac, "lr_decay_frac", &c->lr_decay_frac, "total_steps", &total,
                            "beta1", &c->beta1, "beta2", &c->beta2, "eps", &c->eps, "max_grad_norm",
                            &c->max_grad_norm, "apply_b_dec_to_input", &apply, "decoder_unit_norm", &unit,
                            "init_dec_norm", &c->init_dec_norm, "b_dec_init", &bdec, "threshold_lr",
                            &c->threshold_lr, "dense_freq", &c->dense_freq);
    tp_status st = TP_OK;
    if (rc != 0) {
        st = tp_err(TP_ERR_FORMAT, "%s: config_json: %s", path, je.text);
    } else if ((st = sae_arch_parse(arch, &c->arch)) != TP_OK) {
        tp_err_prefix("%s", path);
    } else {
        c->d_in = d_in, c->d_sae = d_sae, c->k = k, c->aux_k = aux_k, c->dead_tokens = dead;
        c->total_steps = total, c->apply_b_dec_to_input = apply, c->decoder_unit_norm = unit;
        c->b_dec_init = (sae_bdec_init)bdec;
        if ((st = sae_config_validate(c)) != TP_OK) tp_err_prefix("%s", path);
    }
    json_decref(o);
    return st;
}

tp_status sae_save(const sae_model *m, const char *path)
{
    TP_CHECK(sae_sync_host(m));
    const int64_t d = m->cfg.d_in, F = m->cfg.d_sae, P = m->n_params;
    char *cfg = config_to_json(&m->cfg);
    if (!cfg) return tp_err(TP_ERR_NOMEM, "%s: out of memory serialising the SAE config", path);
    int64_t si[2] = {m->step, 0};
    memcpy(&si[1], &m->rng, sizeof m->rng);
    double sf[2] = {m->input_scale, m->threshold};
    int64_t sh_fd[2] = {F, d}, sh_f[1] = {F}, sh_d[1] = {d}, sh_p[1] = {P}, sh_2[1] = {2};
    int64_t sh_c[1] = {(int64_t)strlen(cfg)};
    const st_write_tensor t[] = {
        {"W_enc", TP_DTYPE_F32, 2, sh_fd, m->W_enc},
        {"W_dec", TP_DTYPE_F32, 2, sh_fd, m->W_dec},
        {"b_enc", TP_DTYPE_F32, 1, sh_f, m->b_enc},
        {"b_dec", TP_DTYPE_F32, 1, sh_d, m->b_dec},
        {"adam_m", TP_DTYPE_F32, 1, sh_p, m->adam_m},
        {"adam_v", TP_DTYPE_F32, 1, sh_p, m->adam_v},
        {"since_fired", TP_DTYPE_I64, 1, sh_f, m->since_fired},
        {"state_i64", TP_DTYPE_I64, 1, sh_2, si},
        {"state_f64", TP_DTYPE_F64, 1, sh_2, sf},
        {"config_json", TP_DTYPE_U8, 1, sh_c, cfg},
    };
    const char *meta[] = {"format", SAE_CKPT_FORMAT, "version", "1", NULL};
    tp_status st = st_write(path, t, sizeof t / sizeof t[0], meta);
    free(cfg);
    return st;
}

/* The tensor `name` with dtype dt and the given shape, or a one-line error. */
static tp_status want(const st_file *f, const char *path, const char *name, tp_dtype dt, int ndim,
                      const int64_t *shape, const st_tensor **out)
{
    const st_tensor *t = st_find(f, name);
    if (!t) return tp_err(TP_ERR_FORMAT, "%s: SAE checkpoint has no tensor '%s'", path, name);
    int ok = t->dtype == dt && t->ndim == ndim;
    for (int i = 0; ok && shape && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok)
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s' is %s with %d dims, expected %s of another shape", path, name,
                      tp_dtype_name(t->dtype), t->ndim, tp_dtype_name(dt));
    TP_CHECK(st_check_finite(t));   /* a NaN weight or Adam moment would poison every later step */
    *out = t;
    return TP_OK;
}

tp_status sae_load(const char *path, int64_t max_rows, sae_model *m)
{
    memset(m, 0, sizeof *m);
    st_file *f = NULL;
    TP_CHECK(st_open_file(path, &f));
    tp_status st = TP_OK;
    const st_tensor *tc, *t;
    sae_config cfg;
    memset(&cfg, 0, sizeof cfg);
    TP_CHECK_GOTO(want(f, path, "config_json", TP_DTYPE_U8, 1, NULL, &tc), st, done);
    TP_CHECK_GOTO(config_from_json(path, tc->data, tc->nbytes, &cfg), st, done);
    TP_CHECK_GOTO(sae_init(m, &cfg, max_rows), st, done);
    {
        const int64_t d = cfg.d_in, F = cfg.d_sae, P = m->n_params;
        const int64_t sh_fd[2] = {F, d}, sh_f[1] = {F}, sh_d[1] = {d}, sh_p[1] = {P}, sh_2[1] = {2};
        struct { const char *name; tp_dtype dt; int ndim; const int64_t *shape; void *dst; } items[] = {
            {"W_enc", TP_DTYPE_F32, 2, sh_fd, m->W_enc},     {"W_dec", TP_DTYPE_F32, 2, sh_fd, m->W_dec},
            {"b_enc", TP_DTYPE_F32, 1, sh_f, m->b_enc},      {"b_dec", TP_DTYPE_F32, 1, sh_d, m->b_dec},
            {"adam_m", TP_DTYPE_F32, 1, sh_p, m->adam_m},    {"adam_v", TP_DTYPE_F32, 1, sh_p, m->adam_v},
            {"since_fired", TP_DTYPE_I64, 1, sh_f, m->since_fired},
        };
        for (size_t i = 0; i < sizeof items / sizeof items[0]; i++) {
            TP_CHECK_GOTO(want(f, path, items[i].name, items[i].dt, items[i].ndim, items[i].shape, &t), st, done);
            memcpy(items[i].dst, t->data, t->nbytes);
        }
        int64_t si[2];
        double sf[2];
        TP_CHECK_GOTO(want(f, path, "state_i64", TP_DTYPE_I64, 1, sh_2, &t), st, done);
        memcpy(si, t->data, sizeof si);
        TP_CHECK_GOTO(want(f, path, "state_f64", TP_DTYPE_F64, 1, sh_2, &t), st, done);
        memcpy(sf, t->data, sizeof sf);
        if (si[0] < 0 || !(sf[0] > 0)) {
            st = tp_err(TP_ERR_FORMAT, "%s: SAE state has step %lld and input scale %g", path, (long long)si[0], sf[0]);
            goto done;
        }
        m->step = si[0];
        memcpy(&m->rng, &si[1], sizeof m->rng);
        m->input_scale = sf[0], m->threshold = sf[1];
    }
done:
    st_close(f);
    if (st != TP_OK) sae_free(m);
    return st;
}
