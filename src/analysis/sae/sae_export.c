#include "analysis/sae/sae_export.h"

#include "backend/backend.h"   /* be_gemv_f32 */
#include "core/fsutil.h"
#include "io/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *export_arch(sae_arch a)
{
    return a == SAE_RELU ? "standard" : a == SAE_TOPK ? "topk" : "jumprelu";
}

tp_status sae_export_saelens(const sae_model *m, const char *dir, const char *hook_name, const char *model_name,
                             json_t *extra)
{
    const int64_t d = m->cfg.d_in, F = m->cfg.d_sae;
    const double s = m->input_scale;
    TP_CHECK(fs_mkdir_p(dir));
    float *We = tp_malloc((size_t)(d * F) * sizeof *We), *Wd = tp_malloc((size_t)(d * F) * sizeof *Wd);
    float *bd = tp_malloc((size_t)d * sizeof *bd), *th = tp_malloc((size_t)F * sizeof *th);
    tp_status st = We && Wd && bd && th ? TP_OK : TP_ERR_NOMEM;
    if (st != TP_OK) goto done;
    for (int64_t i = 0; i < F; i++)
        for (int64_t j = 0; j < d; j++) {
            We[j * F + i] = (float)(s * (double)m->W_enc[i * d + j]);
            Wd[i * d + j] = (float)((double)m->W_dec[i * d + j] / s);
        }
    for (int64_t j = 0; j < d; j++) bd[j] = (float)((double)m->b_dec[j] / s);
    for (int64_t i = 0; i < F; i++) th[i] = (float)m->threshold;
    int64_t sh_df[2] = {d, F}, sh_fd[2] = {F, d}, sh_f[1] = {F}, sh_d[1] = {d};
    st_write_tensor t[] = {
        {"W_enc", TP_DTYPE_F32, 2, sh_df, We}, {"b_enc", TP_DTYPE_F32, 1, sh_f, m->b_enc},
        {"W_dec", TP_DTYPE_F32, 2, sh_fd, Wd}, {"b_dec", TP_DTYPE_F32, 1, sh_d, bd},
        {"threshold", TP_DTYPE_F32, 1, sh_f, th},
    };
    char path[TP_PATH_MAX];
    st = fs_join(path, sizeof path, dir, "sae_weights.safetensors");
    if (st == TP_OK) st = st_write(path, t, m->cfg.arch == SAE_BATCHTOPK ? 5 : 4, NULL);
    if (st != TP_OK) goto done;
    json_t *meta = json_pack("{s:s, s:s, s:s}", "hook_name", hook_name, "model_name", model_name, "exported_by",
                             "TranspOLMo " TP_VERSION);
    json_t *cfg = json_pack("{s:s, s:I, s:I, s:s, s:s, s:b, s:s, s:o}", "architecture", export_arch(m->cfg.arch),
                            "d_in", (json_int_t)d, "d_sae", (json_int_t)F, "dtype", "float32", "device", "cpu",
                            "apply_b_dec_to_input", m->cfg.apply_b_dec_to_input, "normalize_activations", "none",
                            "metadata", meta);
    if (m->cfg.arch == SAE_TOPK) json_object_set_new(cfg, "k", json_integer((json_int_t)m->cfg.k));
    json_t *ours = json_pack("{s:s, s:f, s:f, s:I, s:s}", "architecture", sae_arch_name(m->cfg.arch), "input_scale",
                             s, "threshold", m->threshold, "steps", (json_int_t)m->step, "folding",
                             "W_enc = s*W_enc_scaled^T, W_dec = W_dec_scaled/s, b_dec = b_dec_scaled/s: raw activations in");
    if (m->cfg.arch == SAE_BATCHTOPK) json_object_set_new(ours, "k", json_integer((json_int_t)m->cfg.k));
    if (extra) json_object_update(ours, extra);
    json_object_set_new(cfg, "transpolmo", ours);
    st = fs_join(path, sizeof path, dir, "cfg.json");
    if (st == TP_OK) st = fs_write_json(path, cfg);
    json_decref(cfg);
done:
    free(We), free(Wd), free(bd), free(th);
    return st;
}

void saelens_free(saelens_sae *s)
{
    free(s->W_enc), free(s->b_enc), free(s->W_dec), free(s->b_dec), free(s->threshold);
    memset(s, 0, sizeof *s);
}

static tp_status copy_tensor(const st_file *f, const char *path, const char *name, int ndim, const int64_t *shape,
                             float **out)
{
    const st_tensor *t = st_find(f, name);
    if (!t) return tp_err(TP_ERR_FORMAT, "%s: no tensor %s", path, name);
    int ok = t->ndim == ndim && t->dtype == TP_DTYPE_F32;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok)
        return tp_err(TP_ERR_FORMAT, "%s: %s is not f32 of shape [%lld%s%lld]", path, name, (long long)shape[0],
                      ndim == 2 ? ", " : "", ndim == 2 ? (long long)shape[1] : 0LL);
    *out = tp_malloc(t->nbytes);
    if (!*out) return TP_ERR_NOMEM;
    memcpy(*out, t->data, t->nbytes);
    return TP_OK;
}

tp_status saelens_load(const char *dir, saelens_sae *out)
{
    memset(out, 0, sizeof *out);
    char path[TP_PATH_MAX];
    json_error_t je;
    TP_CHECK(fs_join(path, sizeof path, dir, "cfg.json"));
    json_t *cfg = json_load_file(path, 0, &je);
    if (!cfg) return tp_err(TP_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    const char *arch = json_string_value(json_object_get(cfg, "architecture"));
    json_t *jd = json_object_get(cfg, "d_in"), *jf = json_object_get(cfg, "d_sae");
    tp_status st = TP_OK;
    if (!arch || (strcmp(arch, "standard") && strcmp(arch, "topk") && strcmp(arch, "jumprelu")) ||
        !json_is_integer(jd) || !json_is_integer(jf) || json_integer_value(jd) < 1 || json_integer_value(jf) < 1)
        st = tp_err(TP_ERR_FORMAT, "%s: needs architecture standard|topk|jumprelu and positive integers d_in, d_sae", path);
    else {
        snprintf(out->architecture, sizeof out->architecture, "%s", arch);
        out->d_in = json_integer_value(jd), out->d_sae = json_integer_value(jf);
        out->k = json_integer_value(json_object_get(cfg, "k"));
        out->apply_b_dec_to_input = json_is_true(json_object_get(cfg, "apply_b_dec_to_input"));
        const char *h = json_string_value(json_object_get(json_object_get(cfg, "metadata"), "hook_name"));
        snprintf(out->hook_name, sizeof out->hook_name, "%s", h ? h : "");
        const char *norm = json_string_value(json_object_get(cfg, "normalize_activations"));
        if (norm && strcmp(norm, "none"))
            st = tp_err(TP_ERR_UNSUPPORTED, "%s: normalize_activations '%s' (only 'none' is read)", path, norm);
        if (!strcmp(arch, "topk") && out->k < 1) st = tp_err(TP_ERR_FORMAT, "%s: topk without k >= 1", path);
    }
    json_decref(cfg);
    TP_CHECK(st);
    st_file *f = NULL;
    TP_CHECK(fs_join(path, sizeof path, dir, "sae_weights.safetensors"));
    TP_CHECK(st_open_file(path, &f));
    int64_t d = out->d_in, F = out->d_sae, df[2] = {d, F}, fd[2] = {F, d}, sf[1] = {F}, sd[1] = {d};
    st = copy_tensor(f, path, "W_enc", 2, df, &out->W_enc);
    if (st == TP_OK) st = copy_tensor(f, path, "b_enc", 1, sf, &out->b_enc);
    if (st == TP_OK) st = copy_tensor(f, path, "W_dec", 2, fd, &out->W_dec);
    if (st == TP_OK) st = copy_tensor(f, path, "b_dec", 1, sd, &out->b_dec);
    if (st == TP_OK && !strcmp(out->architecture, "jumprelu")) st = copy_tensor(f, path, "threshold", 1, sf, &out->threshold);
    st_close(f);
    if (st != TP_OK) saelens_free(out);
    return st;
}

tp_status saelens_reconstruct(const saelens_sae *s, const float *rows, int64_t n, float *recon, float *codes)
{
    const int64_t d = s->d_in, F = s->d_sae;
    float *xin = tp_malloc((size_t)d * sizeof *xin), *pre = tp_malloc((size_t)F * sizeof *pre),
          *sel = tp_malloc((size_t)F * sizeof *sel);
    if (!xin || !pre || !sel) { free(xin), free(pre), free(sel); return TP_ERR_NOMEM; }
    int topk = !strcmp(s->architecture, "topk"), jump = !strcmp(s->architecture, "jumprelu");
    tp_backend *be = backend_cpu();   /* the SAE's arrays are host memory */
    tp_status st = TP_OK;
    for (int64_t r = 0; r < n && st == TP_OK; r++) {
        for (int64_t j = 0; j < d; j++) xin[j] = rows[r * d + j] - (s->apply_b_dec_to_input ? s->b_dec[j] : 0.0f);
        memcpy(pre, s->b_enc, (size_t)F * sizeof *pre);
        if ((st = be_gemv_f32(be, TP_TRANS, d, F, 1.0f, s->W_enc, F, xin, 1.0f, pre)) != TP_OK) break;
        if (topk) {
            /* SAELens TopK: the k largest pre-activations (ties: lower index), then ReLU */
            int64_t k = s->k < F ? s->k : F, above = 0;
            memcpy(sel, pre, (size_t)F * sizeof *sel);
            for (int64_t a = 0; a < k; a++) {   /* partial selection sort: k is small */
                int64_t best = a;
                for (int64_t b = a + 1; b < F; b++)
                    if (sel[b] > sel[best]) best = b;
                float t = sel[a];
                sel[a] = sel[best], sel[best] = t;
            }
            float kth = sel[k - 1];
            for (int64_t i = 0; i < F; i++) above += pre[i] > kth;
            int64_t ties_left = k - above;
            for (int64_t i = 0; i < F; i++) {
                int in = pre[i] > kth || (pre[i] == kth && ties_left-- > 0);
                pre[i] = in && pre[i] > 0 ? pre[i] : 0.0f;
            }
        } else {
            for (int64_t i = 0; i < F; i++)
                pre[i] = jump ? (pre[i] > s->threshold[i] ? pre[i] : 0.0f) : (pre[i] > 0 ? pre[i] : 0.0f);
        }
        if (codes) memcpy(codes + r * F, pre, (size_t)F * sizeof *pre);
        memcpy(recon + r * d, s->b_dec, (size_t)d * sizeof *recon);
        st = be_gemv_f32(be, TP_TRANS, F, d, 1.0f, s->W_dec, d, pre, 1.0f, recon + r * d);
    }
    free(xin), free(pre), free(sel);
    return st;
}

tp_status sae_export_sparsity(const char *dir, const double *density, int64_t F)
{
    float *v = tp_malloc((size_t)(F ? F : 1) * sizeof *v);
    if (!v) return TP_ERR_NOMEM;
    for (int64_t i = 0; i < F; i++) v[i] = (float)log10(density[i] + 1e-10);   /* SAELens adds 1e-10 too */
    int64_t sh[1] = {F};
    st_write_tensor t[] = {{"sparsity", TP_DTYPE_F32, 1, sh, v}};
    char path[TP_PATH_MAX];
    tp_status st = fs_join(path, sizeof path, dir, "sparsity.safetensors");
    if (st == TP_OK) st = st_write(path, t, 1, NULL);
    free(v);
    return st;
}
