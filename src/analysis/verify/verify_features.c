/* verify_features.c — features ablated, steered and described (verify_features.h). */
#include "analysis/verify/verify_features.h"
#include "analysis/store_inputs.h"

#include "analysis/sae/sae_export.h"
#include "analysis/verify/ablate.h"
#include "analysis/verify/describe.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "core/rng.h"
#include "dist/world.h"
#include "io/store.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One window of the store: rows [start, start + n) of one sequence. */
typedef struct {
    int64_t row, start;
    int n;
    int32_t *tokens;
    int32_t prev, domain;
    float *acts;              /* [nsel][n]: the selected features' activations (one for a feature's own windows) */
} vwin;

typedef struct {
    tp_store *store;
    store_docs docs;
    int act;                  /* the hook's dataset in the store */
    int64_t N;
    saelens_sae sae;
    const int64_t *sel;       /* selected feature ids */
    int nsel;
} sae_src;

static void wins_free(vwin *w, int n)
{
    for (int i = 0; w && i < n; i++) free(w[i].tokens), free(w[i].acts);
    free(w);
}

/* The window of anchor `row` with the activations of features ids[0..nid). */
static tp_status window_read(const verify_ctx *vx, sae_src *s, int64_t row, const int64_t *ids, int nid, vwin *w)
{
    int64_t before = vx->vs->context_before, after = vx->vs->context_after;
    int64_t lo = row - before - 1 < 0 ? 0 : row - before - 1, hi = row + after + 1 > s->N ? s->N : row + after + 1;
    int64_t m = hi - lo, d = s->sae.d_in, F = s->sae.d_sae;
    int32_t *tok = tp_malloc((size_t)m * sizeof *tok), *pos = tp_malloc((size_t)m * sizeof *pos),
            *doc = tp_malloc((size_t)m * sizeof *doc);
    tp_status st = tok && pos && doc ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK) st = store_read_i32(s->store, "tokens", lo, m, tok);
    if (st == TP_OK) st = store_read_i32(s->store, "positions", lo, m, pos);
    if (st == TP_OK) st = store_read_i32(s->store, "row_doc", lo, m, doc);
    float *x = NULL, *recon = NULL, *codes = NULL;
    if (st == TP_OK) {
        int64_t r = row - lo, a = r, b = r;
        while (a - 1 >= 0 && row - (lo + a - 1) <= before && pos[a - 1] == pos[r] - (r - (a - 1)) && doc[a - 1] == doc[r]) a--;
        while (b + 1 < m && b + 1 - r <= after && pos[b + 1] == pos[r] + (b + 1 - r) && doc[b + 1] == doc[r]) b++;
        w->row = row, w->start = lo + a, w->n = (int)(b - a + 1);
        w->prev = a - 1 >= 0 && pos[a - 1] == pos[a] - 1 && doc[a - 1] == doc[a] ? tok[a - 1] : -1;
        w->domain = doc[r] >= 0 && doc[r] < s->docs.n_docs ? s->docs.domain[doc[r]] : -1;
        w->tokens = tp_malloc((size_t)w->n * sizeof *w->tokens);
        w->acts = tp_malloc(((size_t)w->n * (size_t)nid + 1) * sizeof *w->acts);
        x = tp_malloc((size_t)w->n * (size_t)d * sizeof *x);
        recon = tp_malloc((size_t)w->n * (size_t)d * sizeof *recon);
        codes = tp_malloc((size_t)w->n * (size_t)F * sizeof *codes);
        if (!w->tokens || !w->acts || !x || !recon || !codes) st = TP_ERR_NOMEM;
        if (st == TP_OK) memcpy(w->tokens, tok + a, (size_t)w->n * sizeof *tok);
    }
    if (st == TP_OK) st = store_read_acts(s->store, s->act, w->start, w->n, x);
    if (st == TP_OK) st = saelens_reconstruct(&s->sae, x, w->n, recon, codes);
    for (int k = 0; st == TP_OK && k < nid; k++)
        for (int t = 0; t < w->n; t++) w->acts[(size_t)k * (size_t)w->n + (size_t)t] = codes[(size_t)t * (size_t)F + (size_t)ids[k]];
    free(tok), free(pos), free(doc), free(x), free(recon), free(codes);
    return st;
}

/* verify.features.random_contexts unmasked anchors drawn uniformly (seeded). */
static tp_status random_windows(const verify_ctx *vx, sae_src *s, uint64_t salt, vwin **out, int *n)
{
    int R = vx->vs->random_contexts;
    *n = 0;
    *out = tp_calloc((size_t)R + 1, sizeof **out);
    if (!*out) return TP_ERR_NOMEM;
    uint64_t state = vx->vs->seed * 0x9e3779b97f4a7c15ULL + salt;
    tp_status st = TP_OK;
    for (int tries = 0; st == TP_OK && *n < R && tries < 100 * R; tries++) {
        int64_t row = (int64_t)(tp_splitmix64(&state) % (uint64_t)s->N);
        uint8_t mask = 0;
        st = store_read_u8(s->store, "mask", row, 1, &mask);
        if (st == TP_OK && mask) st = window_read(vx, s, row, s->sel, s->nsel, &(*out)[(*n)++]);
    }
    return st;
}

/* The windows of a feature's catalog contexts (rows from `key`: top_contexts or
 * quantile_samples, at most max). */
static tp_status context_windows(const verify_ctx *vx, sae_src *s, const json_t *feat, const char *key, int max, int64_t id,
                                 vwin **out, int *n)
{
    const json_t *arr = json_object_get(feat, key);
    size_t k = json_array_size(arr);
    if ((int)k > max) k = (size_t)max;
    *n = 0;
    *out = tp_calloc(k + 1, sizeof **out);
    if (!*out) return TP_ERR_NOMEM;
    tp_status st = TP_OK;
    for (size_t i = 0; st == TP_OK && i < k; i++) {
        json_int_t row = json_integer_value(json_object_get(json_array_get(arr, i), "row"));
        if (row < 0 || row >= s->N)
            return tp_err(TP_ERR_FORMAT, "verify: %s: a %s row %lld is outside the store's %lld rows", RUN_FEATURES_CATALOG_JSON,
                          key, (long long)row, (long long)s->N);
        st = window_read(vx, s, row, &id, 1, &(*out)[(*n)++]);
    }
    return st;
}

/* Windows as ablation prompts (those of at least 2 tokens). */
static tp_status windows_seqs(const vwin *w, int n, tp_sequences *out)
{
    tp_status st = TP_OK;
    for (int i = 0; st == TP_OK && i < n; i++)
        if (w[i].n >= 2) st = sequences_append(out, w[i].tokens, (size_t)w[i].n, (size_t)w[i].start);
    return st;
}

/* ---- the description ------------------------------------------------------------------- */

static char *token_text(const verify_ctx *vx, int32_t id)
{
    char *text = NULL;
    size_t len;
    if (id < 0 || tokenizer_decode(vx->cx->tok, &id, 1, 0, &text, &len) != TP_OK) return strdup(id < 0 ? "<start>" : "?");
    return text;
}

/* The rule in words and its top keys. */
static json_t *rule_json(const verify_ctx *vx, const sae_src *s, const desc_rule *r, char *words, size_t nw)
{
    int *order = tp_malloc(((size_t)r->n + 1) * sizeof *order);
    json_t *keys = json_array();
    if (!order) return keys;
    desc_rule_order(r, order);
    size_t u = (size_t)snprintf(words, nw, "%s in {", desc_kind_name(r->kind));
    for (int i = 0; i < r->n && i < 8; i++) {
        const desc_entry *e = &r->e[order[i]];
        char label[256];
        if (r->kind == DESC_DOMAIN) {
            snprintf(label, sizeof label, "%s", e->key >= 0 && e->key < s->docs.n_domains ? s->docs.domain_names[e->key] : "?");
        } else if (r->kind == DESC_TOKEN) {
            char *t = token_text(vx, (int32_t)e->key);
            snprintf(label, sizeof label, "'%s'", t ? t : "?");
            free(t);
        } else {
            int32_t a, b;
            desc_bigram_tokens(e->key, &a, &b);
            char *ta = token_text(vx, a), *tb = token_text(vx, b);
            snprintf(label, sizeof label, "'%s'+'%s'", ta ? ta : "?", tb ? tb : "?");
            free(ta), free(tb);
        }
        if (u < nw) u += (size_t)snprintf(words + u, nw - u, "%s%s", i ? ", " : "", label);
        json_array_append_new(keys, json_pack("{s:s, s:I, s:I, s:f, s:f}", "key", label, "count", (json_int_t)e->count,
                                              "fires", (json_int_t)e->fires, "precision",
                                              (double)e->fires / (double)e->count, "predicted_activation", e->pred));
    }
    if (u < nw) snprintf(words + u, nw - u, "%s}", r->n > 8 ? ", ..." : "");
    if (r->n == 0) snprintf(words, nw, "never fires (no %s reaches the precision)", desc_kind_name(r->kind));
    free(order);
    return keys;
}

/* Splits the feature's windows into train and held out and scores the rule. */
static tp_status describe_feature(const verify_ctx *vx, const sae_src *s, int k, const vwin *top, int ntop, const vwin *q,
                                  int nq, const vwin *rnd, int nrnd, json_t **out)
{
    int nall = ntop + nq + nrnd, ntr = 0, nte = 0;
    desc_window *tr = tp_calloc((size_t)nall + 1, sizeof *tr), *te = tp_calloc((size_t)nall + 1, sizeof *te);
    if (!tr || !te) {
        free(tr), free(te);
        return TP_ERR_NOMEM;
    }
    int held[3] = {0, 0, 0};
    for (int src = 0; src < 3; src++) {
        const vwin *w = src == 0 ? top : src == 1 ? q : rnd;
        int n = src == 0 ? ntop : src == 1 ? nq : nrnd;
        for (int i = 0; i < n; i++) {
            desc_window d = {.tokens = w[i].tokens, .n = w[i].n, .prev = w[i].prev, .domain = w[i].domain,
                             .acts = src == 2 ? w[i].acts + (size_t)k * (size_t)w[i].n : w[i].acts};
            bool train = src == 2 ? i < n / 2 : i % 2 == 0;
            if (train) tr[ntr++] = d;
            else te[nte++] = d, held[src]++;
        }
    }
    desc_rule r;
    desc_detection det;
    desc_simulation sim;
    tp_status st = desc_choose(tr, ntr, vx->vs->min_precision, &r);
    if (st == TP_OK) st = desc_detect(&r, te, nte, &det);
    if (st == TP_OK) st = desc_simulate(&r, te, nte, &sim);
    if (st == TP_OK) {
        char words[1024];
        json_t *keys = rule_json(vx, s, &r, words, sizeof words);
        bool pass = det.f1 >= vx->vs->min_f1 && isfinite(sim.correlation) && sim.correlation >= vx->vs->min_correlation;
        *out = json_pack("{s:s, s:s, s:o, s:{s:f, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I}, s:{s:o, s:I}, s:b, s:{s:i, s:i, s:i, s:i}}",
            "rule", words, "kind", desc_kind_name(r.kind), "keys", keys, "detection", "accuracy", det.accuracy, "f1",
            det.f1, "precision", det.precision, "recall", det.recall, "n", (json_int_t)det.n, "tp", (json_int_t)det.tp,
            "fp", (json_int_t)det.fp, "tn", (json_int_t)det.tn, "fn", (json_int_t)det.fn, "simulation", "correlation",
            isfinite(sim.correlation) ? json_real(sim.correlation) : json_null(), "n", (json_int_t)sim.n, "passes", pass,
            "held_out", "top", held[0], "quantile", held[1], "random", held[2], "train_windows", ntr);
    }
    desc_rule_free(&r);
    free(tr), free(te);
    return st;
}

/* ---- ablation and steering ------------------------------------------------------------- */

static tp_status sae_dir_of(char *buf, size_t n, const char *hook, void *user)
{
    return run_sae_dir(buf, n, (const char *)user, hook);
}

/* Rows (rank 0) of the feature under mode on the prompts. */
static tp_status feature_rows(verify_ctx *vx, const iv_target *t, iv_mode mode, double alpha, const tp_sequences *prompts,
                              const int32_t *chosen, int nchosen, double **rows)
{
    iv_set *s = NULL;
    tp_status st = iv_new(vx->cx->m, t, 1, mode, alpha, sae_dir_of, (void *)vx->run_dir, &s);
    if (st == TP_OK) st = ablate_prompts_shared(vx->cx->m, s, prompts, chosen, nchosen, false, rows);
    iv_free(s);
    return st;
}

static json_t *ablation_json(const verify_ctx *vx, const double *top, size_t ntop, const double *rnd, size_t nrnd, bool *pass)
{
    int w = ablate_row_width(0);
    json_t *kt = ablate_ci_json(top, ntop, w, ABLATE_KL, vx->vs->bootstrap, vx->vs->seed + 21),
           *kr = ablate_ci_json(rnd, nrnd, w, ABLATE_KL, vx->vs->bootstrap, vx->vs->seed + 22);
    double km, rm, hi;
    verify_ci_get(kt, &km, NULL, NULL);
    verify_ci_get(kr, &rm, NULL, &hi);
    *pass = isfinite(km) && isfinite(hi) && km > hi;
    return json_pack("{s:s, s:{s:o, s:o}, s:{s:o, s:o}, s:b}", "mode", "zero", "top_contexts", "delta_ce",
                     ablate_ci_json(top, ntop, w, ABLATE_DELTA_CE, vx->vs->bootstrap, vx->vs->seed + 23), "kl", kt,
                     "random_contexts", "delta_ce",
                     ablate_ci_json(rnd, nrnd, w, ABLATE_DELTA_CE, vx->vs->bootstrap, vx->vs->seed + 24), "kl", kr,
                     "passes", *pass);
}

/* Steering of the feature on the random windows; JSON null without promotes. */
static tp_status steering(verify_ctx *vx, const iv_target *t, const json_t *feat, const tp_sequences *rnd, json_t **out,
                          bool *pass)
{
    const json_t *prom = json_object_get(feat, "promotes");
    int k = (int)json_array_size(prom);
    if (k > vx->vs->promoted) k = vx->vs->promoted;
    *pass = false;
    if (k == 0) {
        *out = json_null();
        return TP_OK;
    }
    int32_t chosen[1000];
    json_t *toks = json_array();
    for (int j = 0; j < k; j++) {
        const json_t *p = json_array_get(prom, (size_t)j);
        chosen[j] = (int32_t)json_integer_value(json_object_get(p, "token_id"));
        json_array_append_new(toks, json_pack("{s:i, s:O}", "id", chosen[j], "text", json_object_get(p, "token")));
    }
    double alpha = vx->vs->steer * json_number_value(json_object_get(feat, "max_activation"));
    double *rows = NULL;
    tp_status st = feature_rows(vx, t, IV_STEER, alpha, rnd, chosen, k, &rows);
    if (st == TP_OK && dist_rank() == 0) {
        size_t n = rnd->n_seqs;
        int w = ablate_row_width(k);
        double *lp = tp_malloc((n + 1) * sizeof *lp), *lg = tp_malloc((n + 1) * sizeof *lg);
        if (!lp || !lg) st = TP_ERR_NOMEM;
        for (size_t i = 0; st == TP_OK && i < n; i++) {
            lp[i] = lg[i] = 0;
            for (int j = 0; j < k; j++)
                lg[i] += rows[i * (size_t)w + ABLATE_BASE_COLS + (size_t)j] / k,
                    lp[i] += rows[i * (size_t)w + ABLATE_BASE_COLS + (size_t)(k + j)] / k;
        }
        if (st == TP_OK) {
            json_t *dlp = verify_ci(vx->vs, lp, n, 31);
            double mean, lo;
            verify_ci_get(dlp, &mean, &lo, NULL);
            *pass = isfinite(lo) && lo > 0;
            *out = json_pack("{s:f, s:o, s:o, s:o, s:b}", "alpha", alpha, "tokens", json_incref(toks), "delta_logprob",
                             dlp, "delta_logit", verify_ci(vx->vs, lg, n, 32), "passes", *pass);
        }
        free(lp), free(lg);
    }
    json_decref(toks);
    free(rows);
    return st;
}

/* ---- one SAE ------------------------------------------------------------------------------------ */

static int cmp_mass(const void *a, const void *b)
{
    const json_t *x = *(const json_t *const *)a, *y = *(const json_t *const *)b;
    double mx = json_number_value(json_object_get(x, "activation_mass")), my = json_number_value(json_object_get(y, "activation_mass"));
    if (mx != my) return mx > my ? -1 : 1;
    json_int_t ix = json_integer_value(json_object_get(x, "id")), iy = json_integer_value(json_object_get(y, "id"));
    return (ix > iy) - (ix < iy);
}

/* The selected features of a catalog layer (borrowed), *n of them. */
static tp_status select_features(const verify_ctx *vx, const json_t *layer, const json_t ***sel, int *n)
{
    const json_t *feats = json_object_get(layer, "features");
    size_t total = json_array_size(feats), k = 0;
    *sel = tp_malloc((total + 1) * sizeof **sel);
    if (!*sel) return TP_ERR_NOMEM;
    for (size_t i = 0; i < total; i++) {
        const json_t *f = json_array_get(feats, i);
        if (json_array_size(json_object_get(f, "top_contexts")) > 0 && json_is_number(json_object_get(f, "activation_mass")))
            (*sel)[k++] = f;
    }
    qsort(*sel, k, sizeof **sel, cmp_mass);
    *n = (int)k < vx->vs->features_per_sae ? (int)k : vx->vs->features_per_sae;
    return TP_OK;
}

static tp_status verify_item(verify_ctx *vx, sae_src *s, const char *hook, int layer, int k, const json_t *feat,
                             const vwin *rnd, int nrnd, const tp_sequences *rnd_seqs, json_t **item, bool *verified,
                             bool *described)
{
    int64_t id = (int64_t)json_integer_value(json_object_get(feat, "id"));
    vwin *top = NULL, *q = NULL;
    int ntop = 0, nq = 0;
    tp_sequences top_seqs = {0};
    double *rt = NULL, *rr = NULL;
    json_t *desc = NULL, *steer = NULL;
    bool steer_pass = false;
    iv_target t = {.kind = IV_FEATURE, .layer = layer, .index = (int)id};
    snprintf(t.hook, sizeof t.hook, "%s", hook);
    tp_status st = context_windows(vx, s, feat, "top_contexts", vx->vs->contexts, id, &top, &ntop);
    if (st == TP_OK) st = context_windows(vx, s, feat, "quantile_samples", 1 << 20, id, &q, &nq);
    if (st == TP_OK) st = windows_seqs(top, ntop, &top_seqs);
    if (st == TP_OK && top_seqs.n_seqs == 0)
        st = tp_err(TP_ERR_CONFIG, "verify: feature %lld of %s: no top context of 2 tokens", (long long)id, hook);
    if (st == TP_OK) st = describe_feature(vx, s, k, top, ntop, q, nq, rnd, nrnd, &desc);
    if (st == TP_OK) st = feature_rows(vx, &t, IV_ZERO, 0, &top_seqs, NULL, 0, &rt);
    if (st == TP_OK) st = feature_rows(vx, &t, IV_ZERO, 0, rnd_seqs, NULL, 0, &rr);
    if (st == TP_OK) st = steering(vx, &t, feat, rnd_seqs, &steer, &steer_pass);
    if (st == TP_OK && dist_rank() == 0) {
        bool abl_pass;
        json_t *abl = ablation_json(vx, rt, top_seqs.n_seqs, rr, rnd_seqs->n_seqs, &abl_pass);
        *verified = abl_pass && (json_is_null(steer) || steer_pass);
        *described = json_is_true(json_object_get(desc, "passes"));
        *item = json_pack("{s:I, s:O, s:O, s:O, s:b, s:o, s:o, s:o}", "feature", (json_int_t)id, "max_activation",
                          json_object_get(feat, "max_activation"), "activation_mass", json_object_get(feat, "activation_mass"),
                          "density", json_object_get(feat, "density"), "verified", *verified, "description", desc,
                          "ablation", abl, "steering", steer ? steer : json_null());
        desc = steer = NULL;
    }
    json_decref(desc), json_decref(steer);
    free(rt), free(rr);
    sequences_free(&top_seqs);
    wins_free(top, ntop), wins_free(q, nq);
    return st;
}

static const char *const FEATURE_CRITERION =
    "verified: ablation.passes (zero ablation: mean KL on the top contexts > ci95_high of the KL on random contexts) "
    "and steering.passes (ci95_low of the mean change of the promoted tokens' log-probabilities > 0; steering null "
    "when the catalog has no promoted tokens). described: description.detection.f1 >= verify.describe.min_f1 and "
    "description.simulation.correlation >= verify.describe.min_correlation on held-out windows";

/* The catalog is read back: everything of it that indexes an array later (the layer,
 * each selected feature's id, its promoted token ids) is checked here against the
 * SAE, the model and the store, with one line naming the file and the field. The
 * context rows are checked where they are read (context_windows). */
static tp_status catalog_check(const verify_ctx *vx, const sae_src *s, const json_t *layer_json, int index,
                               const json_t *const *sel, int nsel)
{
    char file[TP_PATH_MAX];
    TP_CHECK(run_path(file, sizeof file, vx->run_dir, RUN_FEATURES_CATALOG_JSON));
    const tp_model_config *c = &vx->cx->m->cfg;
    const json_t *jl = json_object_get(layer_json, "layer");
    if (!json_is_integer(jl) || json_integer_value(jl) < -1 || json_integer_value(jl) >= c->num_layers)
        return tp_err(TP_ERR_FORMAT, "verify: %s: saes[%d].layer is not a layer of the model (-1..%d)", file, index,
                      c->num_layers - 1);
    for (int k = 0; k < nsel; k++) {
        const json_t *jid = json_object_get(sel[k], "id");
        if (!json_is_integer(jid) || json_integer_value(jid) < 0 || json_integer_value(jid) >= s->sae.d_sae)
            return tp_err(TP_ERR_FORMAT, "verify: %s: saes[%d]: feature id %lld%s is not one of the SAE's %lld latents",
                          file, index, (long long)json_integer_value(jid), json_is_integer(jid) ? "" : " (missing)",
                          (long long)s->sae.d_sae);
        if (!json_is_number(json_object_get(sel[k], "max_activation")) ||
            !isfinite(json_number_value(json_object_get(sel[k], "max_activation"))))
            return tp_err(TP_ERR_FORMAT, "verify: %s: saes[%d]: feature %lld: max_activation is not a finite number",
                          file, index, (long long)json_integer_value(jid));
        const json_t *prom = json_object_get(sel[k], "promotes"), *p;
        if (prom && !json_is_array(prom))
            return tp_err(TP_ERR_FORMAT, "verify: %s: saes[%d]: feature %lld: promotes is not an array", file, index,
                          (long long)json_integer_value(jid));
        size_t j;
        json_array_foreach(prom, j, p) {
            const json_t *t = json_object_get(p, "token_id");
            if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= c->vocab_size)
                return tp_err(TP_ERR_FORMAT,
                              "verify: %s: saes[%d]: feature %lld: promotes[%zu].token_id is not a token id of the "
                              "model (0..%d)", file, index, (long long)json_integer_value(jid), j, c->vocab_size - 1);
        }
    }
    return TP_OK;
}

static tp_status verify_sae(verify_ctx *vx, const json_t *layer_json, int index, json_t *arr)
{
    const char *hook = json_string_value(json_object_get(layer_json, "hook"));
    int layer = (int)json_integer_value(json_object_get(layer_json, "layer"));
    char dir[TP_PATH_MAX], store_path[TP_PATH_MAX], what[160];
    snprintf(what, sizeof what, "features of %s", hook ? hook : "?");
    if (!hook) return tp_err(TP_ERR_FORMAT, "verify: %s: an SAE without \"hook\"", RUN_FEATURES_CATALOG_JSON);
    TP_CHECK(run_sae_dir(dir, sizeof dir, vx->run_dir, hook));
    TP_CHECK(run_path(store_path, sizeof store_path, vx->run_dir, RUN_STORE));
    const json_t **sel = NULL;
    int nsel = 0;
    TP_CHECK(select_features(vx, layer_json, &sel, &nsel));
    sae_src s = {0};
    int64_t *ids = tp_malloc(((size_t)nsel + 1) * sizeof *ids);
    for (int k = 0; ids && k < nsel; k++) ids[k] = (int64_t)json_integer_value(json_object_get(sel[k], "id"));
    s.sel = ids, s.nsel = nsel;
    tp_status st = ids ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && !fs_exists(dir)) {
        verify_skip(vx, what, "its SAE folder %s is missing", dir);
        goto done;
    }
    if (st == TP_OK && !fs_exists(store_path)) {
        verify_skip(vx, what, "the activation store %s is missing (the contexts are read from it)", store_path);
        goto done;
    }
    if (st == TP_OK) st = saelens_load(dir, &s.sae);
    if (st == TP_OK) st = store_open_read(store_path, MPI_COMM_WORLD, &s.store);
    if (st == TP_OK) st = store_inputs_check(s.store, store_path, MPI_COMM_WORLD);
    if (st == TP_OK) st = store_read_docs(s.store, &s.docs);
    if (st == TP_OK) {
        s.act = store_find_act(s.store, hook);
        s.N = store_rows(s.store);
        if (s.act < 0) st = tp_err(TP_ERR_CONFIG, "verify: %s has no /acts/%s: the SAE's hook was not captured", store_path, hook);
    }
    if (st == TP_OK) st = catalog_check(vx, &s, layer_json, index, sel, nsel);
    vwin *rnd = NULL;
    int nrnd = 0;
    tp_sequences rnd_seqs = {0};
    if (st == TP_OK) st = random_windows(vx, &s, (uint64_t)index + 1, &rnd, &nrnd);
    if (st == TP_OK) st = windows_seqs(rnd, nrnd, &rnd_seqs);
    int nver = 0, ndesc = 0;
    json_t *items = json_array();
    tp_progress prog;
    if (dist_rank() == 0) tp_progress_begin(&prog, "verify features", "features", (uint64_t)nsel);
    tp_log_info("verify: %s: %d features, %d random contexts", hook, nsel, nrnd);
    for (int k = 0; st == TP_OK && k < nsel; k++) {
        json_t *item = NULL;
        bool ver = false, des = false;
        st = verify_item(vx, &s, hook, layer, k, sel[k], rnd, nrnd, &rnd_seqs, &item, &ver, &des);
        if (st == TP_OK && item) json_array_append_new(items, item), nver += ver, ndesc += des;
        if (dist_rank() == 0) tp_progress_add(&prog, 1);
    }
    if (dist_rank() == 0) tp_progress_end(&prog);
    if (st == TP_OK && dist_rank() == 0) {
        json_t *rows = json_array();
        for (int i = 0; i < nrnd; i++) json_array_append_new(rows, json_integer(rnd[i].row));
        size_t rl = strlen(vx->run_dir);   /* the folder relative to the run: the same JSON for a copied run */
        const char *rel = !strncmp(dir, vx->run_dir, rl) && dir[rl] == '/' ? dir + rl + 1 : dir;
        json_array_append_new(arr, json_pack("{s:s, s:i, s:s, s:i, s:i, s:i, s:s, s:{s:i, s:o}, s:O}", "hook", hook,
            "layer", layer, "sae_dir", rel, "tested", nsel, "verified", nver, "described", ndesc, "criterion",
            FEATURE_CRITERION, "random_contexts", "count", nrnd, "rows", rows, "items", items));
    }
    json_decref(items);
    wins_free(rnd, nrnd);
    sequences_free(&rnd_seqs);
done:
    if (s.store) {
        tp_status cs = store_close(s.store);
        if (st == TP_OK) st = cs;
    }
    store_docs_free(&s.docs);
    saelens_free(&s.sae);
    free(ids);
    free(sel);
    return st;
}

tp_status verify_features(verify_ctx *vx, json_t **out)
{
    *out = NULL;
    json_t *arr = json_array();
    json_t *cat = run_load_json(vx->run_dir, RUN_FEATURES_CATALOG_JSON), *saes = json_object_get(cat, "saes");
    tp_status st = TP_OK;
    if (!cat) {
        verify_skip(vx, "features", "%s/%s is missing: run `transpolmo sae` first (or --skip-sae to verify only heads "
                    "and circuits)", vx->run_dir, RUN_FEATURES_CATALOG_JSON);
    } else if (!json_is_array(saes)) {
        json_decref(cat), json_decref(arr);
        return tp_err(TP_ERR_FORMAT, "verify: %s/%s: no \"saes\" array", vx->run_dir, RUN_FEATURES_CATALOG_JSON);
    } else if (vx->vs->features_per_sae == 0) {
        verify_skip(vx, "features", "verify.features.per_sae is 0");
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(saes, i, v) {
            if (st == TP_OK) st = verify_sae(vx, v, (int)i, arr);
        }
    }
    if (st == TP_OK && dist_rank() == 0) *out = json_incref(arr);
    json_decref(arr);
    json_decref(cat);
    return st;
}
