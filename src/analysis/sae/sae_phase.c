#include "analysis/sae/sae_phase.h"
#include "analysis/store_inputs.h"

#include "analysis/capture/capture_phase.h"
#include "analysis/hook_select.h"
#include "analysis/row_stream.h"
#include "analysis/sae/sae.h"
#include "analysis/sae/features_catalog.h"
#include "analysis/sae/sae_ce.h"
#include "analysis/sae/sae_export.h"
#include "core/fault.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/dataset.h"
#include "dist/mpi_check.h"
#include "dist/stop.h"
#include "dist/world.h"
#include "io/corpus.h"
#include "io/store_results.h"
#include "io/store.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/model_io.h"
#include "run_layout.h"
#include "settings.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char name[STORE_NAME_MAX];
    char dir[TP_PATH_MAX];     /* the SAELens export */
    char ckdir[TP_PATH_MAX];   /* its training checkpoints */
    int act, layer;
    int64_t d;
    sae_model m;
    bool ready;
    sae_metrics last;
    json_t *curve;          /* rank 0 */
    json_t *resumed_curve;  /* the curve up to the checkpoint resumed from (NULL: none) */
    json_t *eval;           /* rank 0 */
    features_catalog_input cat_in;   /* kept while the catalog accumulates */
    features_catalog_acc *cat;   /* the catalog pass over every row */
    json_t *catalog;        /* rank 0: the layer's catalog */
} sae_job;

/* Where training is: the next batch to take. */
typedef struct {
    int64_t step, epoch, window, batch;
} position;

typedef struct {
    tp_settings set;
    sae_settings ss;
    capture_settings cap;   /* the masking rule the store was made with (CE evaluation) */
    char key[32];           /* the phase's resume hash: a checkpoint of another configuration is not resumed */
    const char *run_dir;
    MPI_Comm comm;
    int rank, size;
    char path[TP_PATH_MAX]; /* the store */
    tp_store *s;
    row_stream *rs;
    sae_job *jobs;
    int n;
    tp_model *model;
    tp_tokenizer *tok;
    int64_t B, E, W, T, train_rows, local_max;
    const char **domain_names;   /* the store's domains, for the catalogs */
    position pos;
    int resume;
    double t_start, train_s;
} sae_run;

static tp_status make_config(const sae_settings *ss, int64_t d, int64_t train_rows, int64_t total_steps,
                             sae_config *out)
{
    int64_t F = ss->hidden_dim ? ss->hidden_dim : ss->expansion * d;
    sae_config c = sae_config_default(ss->arch, d, F);
    if (ss->arch != SAE_RELU) c.k = ss->k;
    c.aux_k = ss->arch == SAE_RELU ? 0 : (ss->aux_k < F ? ss->aux_k : F);
    c.l1_coef = ss->l1_coefficient;
    /* 1e-3: FVU 0.125 at L0 32 on the bundled model's middle layer in 450 steps of
     * 1024 rows, where the paper's 2e-4 (for millions of steps) is still at 0.6. */
    if (ss->arch != SAE_RELU) c.lr = 1e-3;
    if (ss->learning_rate > 0) c.lr = ss->learning_rate;
    c.total_steps = total_steps;
    int64_t dead = ss->dead_tokens;
    if (dead == 0) dead = 2 * train_rows < 10000000 ? 2 * train_rows : 10000000;
    c.dead_tokens = dead > 0 ? dead : 1;
    if (!ss->b_dec_auto) c.b_dec_init = ss->b_dec_init;
    tp_status st = sae_config_validate(&c);
    if (st != TP_OK) return tp_err(TP_ERR_CONFIG, "%s (%s)", tp_err_msg(), ss->k_origin);
    *out = c;
    return TP_OK;
}

static tp_status ckpt_path(const sae_job *j, int64_t step, char *out, size_t n)
{
    char file[64];
    snprintf(file, sizeof file, "checkpoint-%lld.safetensors", (long long)step);
    return fs_join(out, n, j->ckdir, file);
}

/* Every field of a step's metrics, and back (the checkpoint keeps the last step's). */
static json_t *metrics_json(const sae_metrics *m)
{
    return json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "step",
                     (json_int_t)m->step, "rows", (json_int_t)m->rows, "loss", m->loss, "recon", m->recon, "l1", m->l1,
                     "aux", m->aux, "fvu", m->fvu, "l0", m->l0, "dead_frac", m->dead_frac, "dense_frac", m->dense_frac,
                     "lr", m->lr, "l1_coef", m->l1_coef, "grad_norm", m->grad_norm, "threshold", m->threshold,
                     "batch_threshold", m->batch_threshold);
}

static void metrics_from_json(const json_t *o, sae_metrics *m)
{
#define NUM(k) json_number_value(json_object_get(o, k))
    *m = (sae_metrics){.step = json_integer_value(json_object_get(o, "step")),
                       .rows = json_integer_value(json_object_get(o, "rows")), .loss = NUM("loss"),
                       .recon = NUM("recon"), .l1 = NUM("l1"), .aux = NUM("aux"), .fvu = NUM("fvu"), .l0 = NUM("l0"),
                       .dead_frac = NUM("dead_frac"), .dense_frac = NUM("dense_frac"), .lr = NUM("lr"),
                       .l1_coef = NUM("l1_coef"), .grad_norm = NUM("grad_norm"), .threshold = NUM("threshold"),
                       .batch_threshold = NUM("batch_threshold")};
#undef NUM
}

/* Rank 0: every SAE's state at this step, then the JSON that names it (the commit
 * point), then the previous step's files go. */
static tp_status write_checkpoint(const sae_run *r, const position *p, int64_t prev_step)
{
    char path[TP_PATH_MAX];
    for (int i = 0; i < r->n; i++) {
        TP_CHECK(fs_mkdir_p(r->jobs[i].ckdir));
        TP_CHECK(ckpt_path(&r->jobs[i], p->step, path, sizeof path));
        TP_CHECK(sae_save(&r->jobs[i].m, path));
    }
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:o}", "key", r->key, "step", (json_int_t)p->step, "epoch",
                          (json_int_t)p->epoch, "window", (json_int_t)p->window, "batch", (json_int_t)p->batch, "jobs",
                          json_array());
    for (int i = 0; i < r->n; i++)   /* what the summary reports of training so far, so a resumed run reports it too */
        json_array_append_new(json_object_get(j, "jobs"), json_pack("{s:s, s:o, s:O}", "hook", r->jobs[i].name, "last",
                              metrics_json(&r->jobs[i].last), "curve", r->jobs[i].curve));
    tp_status st = run_path(path, sizeof path, r->run_dir, RUN_SAE_CHECKPOINT_JSON);
    if (st == TP_OK) st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, j);
    json_decref(j);
    TP_CHECK(st);
    for (int i = 0; prev_step >= 0 && prev_step != p->step && i < r->n; i++)
        if (ckpt_path(&r->jobs[i], prev_step, path, sizeof path) == TP_OK) unlink(path);
    return TP_OK;
}

/* An integer field of the checkpoint in [lo, hi], else TP_ERR_RANGE naming it. */
static tp_status ck_int(const json_t *o, const char *field, const char *key, int64_t lo, int64_t hi, int64_t *out)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) return tp_err(TP_ERR_FORMAT, "%s is %s", field, v ? "not an integer" : "missing");
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return tp_err(TP_ERR_RANGE, "%s = %lld is out of range (this run: %lld..%lld)", field, (long long)x,
                      (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return TP_OK;
}

/* Every key of o is a finite number (a metrics record or a curve point). */
static tp_status ck_numbers(const json_t *o, const char *field, const char *const *keys, int64_t max_step)
{
    if (!json_is_object(o)) return tp_err(TP_ERR_FORMAT, "%s is not an object", field);
    for (int k = 0; keys[k]; k++) {
        const json_t *v = json_object_get(o, keys[k]);
        if (!json_is_number(v) || !isfinite(json_number_value(v)))
            return tp_err(TP_ERR_FORMAT, "%s.%s is %s", field, keys[k], v ? "not a finite number" : "missing");
    }
    int64_t step;
    char f[96];
    snprintf(f, sizeof f, "%s.step", field);
    return ck_int(o, f, "step", 0, max_step, &step);
}

static int64_t ck_batches(const sae_ck_shape *sh, int64_t e, int64_t w)
{
    return (sh->window_rows(sh->user, e, w) + sh->batch - 1) / sh->batch;
}

/* The checkpoint's position and record against the run's real ranges: the position
 * is a batch that exists (0 ≤ epoch ≤ E, window < W, batch < the window's batches;
 * epoch E only as the end, window 0 batch 0), the step is the number of batches
 * before it, and every job names one of the run's hooks, once, with finite metrics
 * of steps up to it. A position taken on trust indexes rows that are not there
 * (batch −5: a read before the window's buffer). */
static tp_status checkpoint_check(const json_t *j, const sae_ck_shape *sh, const char *const *hooks, int n,
                                  sae_checkpoint *out, int *seen)
{
    TP_CHECK(ck_int(j, "epoch", "epoch", 0, sh->epochs, &out->epoch));
    TP_CHECK(ck_int(j, "window", "window", 0, out->epoch == sh->epochs ? 0 : sh->windows - 1, &out->window));
    int64_t nb = out->epoch == sh->epochs ? 1 : ck_batches(sh, out->epoch, out->window);
    TP_CHECK(ck_int(j, "batch", "batch", 0, nb - 1, &out->batch));
    int64_t before = 0;
    for (int64_t e = 0; e <= out->epoch && e < sh->epochs; e++)
        for (int64_t w = 0; w < (e == out->epoch ? out->window : sh->windows); w++) before += ck_batches(sh, e, w);
    before += out->epoch == sh->epochs ? 0 : out->batch;
    TP_CHECK(ck_int(j, "step", "step", before, before, &out->step));
    static const char *const last_keys[] = {"rows", "loss", "recon", "l1", "aux", "fvu", "l0", "dead_frac",
                                            "dense_frac", "lr", "l1_coef", "grad_norm", "threshold",
                                            "batch_threshold", NULL};
    static const char *const curve_keys[] = {"loss", "fvu", "l0", "dead_fraction", "lr", NULL};
    const json_t *jobs = json_object_get(j, "jobs"), *it;
    if (!jobs) return TP_OK;   /* older checkpoints have no record */
    if (!json_is_array(jobs)) return tp_err(TP_ERR_FORMAT, "jobs is not an array");
    size_t at;
    json_array_foreach(jobs, at, it) {
        char f[64];
        const char *hook = json_string_value(json_object_get(it, "hook"));
        int i = 0;
        while (hook && i < n && strcmp(hook, hooks[i])) i++;
        if (!hook || i == n)
            return tp_err(TP_ERR_RANGE, "jobs[%zu].hook %s%s%s is not one of this run's capture points", at,
                          hook ? "'" : "", hook ? hook : "(missing)", hook ? "'" : "");
        if (seen[i]++) return tp_err(TP_ERR_FORMAT, "jobs[%zu].hook '%s' is given twice", at, hook);
        snprintf(f, sizeof f, "jobs[%zu].last", at);
        TP_CHECK(ck_numbers(json_object_get(it, "last"), f, last_keys, out->step));
        const json_t *curve = json_object_get(it, "curve"), *pt;
        if (!json_is_array(curve)) return tp_err(TP_ERR_FORMAT, "jobs[%zu].curve is not an array", at);
        size_t c;
        json_array_foreach(curve, c, pt) {
            snprintf(f, sizeof f, "jobs[%zu].curve[%zu]", at, c);
            TP_CHECK(ck_numbers(pt, f, curve_keys, out->step));
        }
    }
    return TP_OK;
}

tp_status sae_checkpoint_read(const char *path, const char *key, const char *const *hooks, int n,
                              const sae_ck_shape *shape, sae_checkpoint *out)
{
    *out = (sae_checkpoint){.last = out->last, .curve = out->curve};
    if (access(path, F_OK) != 0) return TP_OK;
    out->present = true;
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j) return tp_err(TP_ERR_FORMAT, "%s is not a readable checkpoint (%s, line %d)", path, jerr.text, jerr.line);
    const char *k = json_string_value(json_object_get(j, "key"));
    tp_status st = TP_OK;
    if (!k || strcmp(k, key) != 0) {
        st = tp_err(TP_ERR_CONFIG, "%s was made with another configuration", path);
    } else {
        int *seen = tp_calloc(n > 0 ? (size_t)n : 1, sizeof *seen);
        st = seen ? checkpoint_check(j, shape, hooks, n, out, seen) : TP_ERR_NOMEM;
        free(seen);
        if (st != TP_OK) tp_err_prefix("%s does not fit this run", path);
    }
    const json_t *jobs = st == TP_OK ? json_object_get(j, "jobs") : NULL, *it;
    size_t at;
    json_array_foreach(jobs, at, it) {   /* the training record so far, checked above */
        const char *hook = json_string_value(json_object_get(it, "hook"));
        int i = 0;
        while (strcmp(hook, hooks[i])) i++;
        metrics_from_json(json_object_get(it, "last"), &out->last[i]);
        json_decref(out->curve[i]);
        out->curve[i] = json_incref(json_object_get(it, "curve"));
    }
    json_decref(j);
    return st;
}

static int64_t run_window_rows(void *user, int64_t e, int64_t w)
{
    return row_stream_window_rows(((sae_run *)user)->rs, e, w);
}

/* The checkpoint to resume from, if any matches this configuration (every rank reads
 * it). One that is there but unusable — not JSON, another configuration, a position
 * or record outside this run — is never resumed and never silently dropped: a
 * one-line warning names the file and the field, and training starts over (the
 * checkpoint is rewritten at the next checkpoint step). */
static int read_checkpoint(sae_run *r, position *p)
{
    char path[TP_PATH_MAX];
    if (run_path(path, sizeof path, r->run_dir, RUN_SAE_CHECKPOINT_JSON) != TP_OK) return 0;
    const char **hooks = tp_calloc((size_t)r->n, sizeof *hooks);
    sae_metrics *last = tp_calloc((size_t)r->n, sizeof *last);
    json_t **curve = tp_calloc((size_t)r->n, sizeof *curve);
    int ok = hooks && last && curve;
    for (int i = 0; ok && i < r->n; i++) hooks[i] = r->jobs[i].name;
    sae_ck_shape shape = {.epochs = r->E, .windows = r->W, .batch = r->B, .window_rows = run_window_rows, .user = r};
    sae_checkpoint ck = {.last = last, .curve = curve};
    if (ok && sae_checkpoint_read(path, r->key, hooks, r->n, &shape, &ck) != TP_OK) {
        tp_log_warn("sae: %s; training starts over", tp_err_msg());
        ok = 0;
    }
    tp_err_clear();
    ok = ok && ck.present;
    if (ok) *p = (position){.step = ck.step, .epoch = ck.epoch, .window = ck.window, .batch = ck.batch};
    for (int i = 0; curve && i < r->n; i++) {
        if (ok && curve[i]) {
            r->jobs[i].last = last[i];
            json_decref(r->jobs[i].resumed_curve);
            r->jobs[i].resumed_curve = curve[i];
        } else {
            json_decref(curve[i]);
        }
    }
    free(hooks), free(last), free(curve);
    return ok;
}

/* What the held-out pass sums over this rank's rows of one SAE. */
typedef struct {
    sae_job *j;
    float *rec, *codes;     /* [max_rows, d], [max_rows, F] */
    double *acc;            /* [3 + 2d + F]: Σ‖x − x̂‖², active latents, rows, Σx [d], Σx² [d], fires [F] */
} eval_acc;

static tp_status eval_block(void *user, const float *rows, const int64_t *store_rows, int64_t n)
{
    (void)store_rows;
    eval_acc *e = user;
    const int64_t d = e->j->d, F = e->j->m.cfg.d_sae, blk = e->j->m.max_rows;
    double *sum = e->acc + 3, *sq = sum + d, *fires = sq + d;
    for (int64_t r0 = 0; r0 < n; r0 += blk) {
        int64_t nb = n - r0 < blk ? n - r0 : blk;
        TP_CHECK(sae_reconstruct(&e->j->m, rows + r0 * d, nb, e->rec));
        TP_CHECK(sae_encode(&e->j->m, rows + r0 * d, nb, e->codes));
        for (int64_t r = 0; r < nb; r++) {
            const float *x = rows + (r0 + r) * d, *xr = e->rec + r * d, *cd = e->codes + r * F;
            for (int64_t k = 0; k < d; k++) {
                double v = x[k];
                e->acc[0] += (v - xr[k]) * (v - xr[k]);
                sum[k] += v, sq[k] += v * v;
            }
            for (int64_t i = 0; i < F; i++)
                if (cd[i] > 0) e->acc[1] += 1, fires[i] += 1;
        }
        e->acc[2] += (double)nb;
    }
    return TP_OK;
}

/* Held-out documents: FVU, explained variance and L0, each rank its share of the
 * rows, summed in f64 (Σ(x − mean)² = Σx² − (Σx)²/n per column). Collective. */
static tp_status evaluate_rows(sae_run *r, int act_i, sae_job *j)
{
    const int64_t d = j->d, F = j->m.cfg.d_sae, blk = j->m.max_rows;
    eval_acc e = {.j = j};
    e.rec = tp_malloc((size_t)(blk * d) * sizeof *e.rec);
    e.codes = tp_malloc((size_t)(blk * F) * sizeof *e.codes);
    e.acc = tp_calloc((size_t)(3 + 2 * d + F), sizeof *e.acc);
    tp_status st = dist_agree(r->comm, e.rec && e.codes && e.acc ? TP_OK : TP_ERR_NOMEM, "sae evaluation");
    if (st == TP_OK) st = row_stream_for_eval(r->rs, act_i, eval_block, &e);
    if (st == TP_OK) st = dist_allreduce_sum_f64(r->comm, e.acc, (size_t)(3 + 2 * d + F));
    int64_t n = st == TP_OK ? (int64_t)e.acc[2] : 0;
    if (st == TP_OK && n < 2)
        st = tp_err(TP_ERR_RANGE, "sae: %lld held-out rows for %s; raise sae.eval_fraction or capture more",
                    (long long)n, j->name);
    if (st == TP_OK && r->rank == 0) {
        double var = 0, *sum = e.acc + 3, *sq = sum + d, *fires = sq + d;
        for (int64_t k = 0; k < d; k++) var += sq[k] - sum[k] * sum[k] / (double)n;
        int64_t dead = 0, dense = 0;
        for (int64_t i = 0; i < F; i++) dead += fires[i] == 0, dense += fires[i] > 0.1 * (double)n;
        double fvu = e.acc[0] / var;
        j->eval = json_pack("{s:I, s:f, s:f, s:f, s:I, s:I}", "rows", (json_int_t)n, "fvu", fvu, "explained_variance",
                            1 - fvu, "l0", e.acc[1] / (double)n, "dead_latents_held_out", (json_int_t)dead,
                            "dense_latents_held_out", (json_int_t)dense);
    }
    free(e.rec), free(e.codes), free(e.acc);
    return st;
}

/* The catalog pass: this rank's share of every unmasked row to each SAE's catalog. */
typedef struct {
    sae_run *r;
    sae_job *j;
    int32_t *dom;           /* [chunk_rows] */
} catalog_pass;

static tp_status catalog_block(void *user, const float *rows, const int64_t *store_rows, int64_t n)
{
    catalog_pass *c = user;
    for (int64_t i = 0; i < n; i++) c->dom[i] = row_stream_domain_of(c->r->rs, store_rows[i]);
    return features_catalog_add(c->j->cat, rows, store_rows, c->dom, n);
}

/* CE-loss recovered and KL on the held-out documents (at most sae.eval.num_samples
 * of them, taken round-robin over the domains), every SAE spliced in at its point in
 * turn (sae_ce.h). Collective. */
static tp_status evaluate_ce(sae_run *r)
{
    int64_t nheld = 0;
    const int32_t *held_dom = NULL;
    const int64_t *held = row_stream_held_out_docs(r->rs, &nheld, &held_dom);
    int64_t ndocs = r->ss.eval_num_samples < nheld ? r->ss.eval_num_samples : nheld;
    if (ndocs == 0) return TP_OK;
    double t0 = tp_now();
    tp_forward *f = NULL;
    tp_dataset text = {0};
    tp_status st = dataset_open_list(&r->set.data, r->tok, r->model->cfg.eos_token_id, "sae CE evaluation", held,
                                     (size_t)ndocs, &text);
    int batch = r->set.batch_size;
    if (st == TP_OK) st = forward_new(r->model, batch, text.seq_len, &f);
    if ((st = dist_agree(r->comm, st, "sae CE evaluation")) != TP_OK) goto done;
    int nd;
    const row_stream_domain *dom = row_stream_domains(r->rs, &nd);
    json_t *by_domain = json_object();
    for (int64_t i = 0; i < ndocs; i++) {
        json_t *c = json_object_get(by_domain, dom[held_dom[i]].name);
        json_object_set_new(by_domain, dom[held_dom[i]].name, json_integer(c ? json_integer_value(c) + 1 : 1));
    }
    int32_t bos = r->cap.mask_bos ? r->model->cfg.bos_token_id : -1;
    for (int i = 0; i < r->n && st == TP_OK; i++) {
        sae_job *j = &r->jobs[i];
        int L;
        tp_hook_point pt;
        st = hooks_parse_name(&r->model->cfg, j->name, &L, &pt);
        if ((st = dist_agree(r->comm, st, "sae CE evaluation")) != TP_OK) break;
        sae_ce_result cr;
        if ((st = sae_ce_evaluate(f, &text.seqs, batch, L, pt, &j->m, r->cap.mask_first, bos, r->comm, &cr)) != TP_OK)
            break;
        if (!j->eval) continue;
        json_object_set_new(j->eval, "ce", json_pack("{s:f, s:f, s:f, s:o, s:f, s:f, s:I, s:I, s:O}", "ce_clean",
            cr.ce_clean, "ce_zero_ablation", cr.ce_zero, "ce_sae", cr.ce_sae, "ce_loss_recovered",
            isfinite(cr.recovered) ? json_real(cr.recovered) : json_null(), "kl_sae", cr.kl_sae, "kl_zero_ablation",
            cr.kl_zero, "tokens", (json_int_t)cr.tokens, "documents", (json_int_t)text.ndocs, "documents_by_domain",
            by_domain));
        tp_log_info("sae: %s: CE clean %.4f, SAE %.4f, zero %.4f -> %.1f%% recovered, KL %.4f (%lld held-out tokens)",
                    j->name, cr.ce_clean, cr.ce_sae, cr.ce_zero, 100 * cr.recovered, cr.kl_sae, (long long)cr.tokens);
    }
    json_decref(by_domain);
    if (st == TP_OK) tp_log_info("sae: CE evaluation on %zu held-out documents in %.1f s", text.ndocs, tp_now() - t0);
done:
    forward_free(f);
    dataset_close(&text);
    return st;
}

/* Every SAE's catalog over every unmasked row: begin, one pass per SAE (the store is
 * read by all ranks), before the store closes. */
static tp_status scan_catalogs(sae_run *r)
{
    int nd;
    const row_stream_domain *dom = row_stream_domains(r->rs, &nd);
    const char **names = tp_malloc((size_t)(nd ? nd : 1) * sizeof *names);
    catalog_pass pass = {.r = r, .dom = tp_malloc((size_t)r->ss.chunk_rows * sizeof *pass.dom)};
    tp_status st = dist_agree(r->comm, names && pass.dom ? TP_OK : TP_ERR_NOMEM, "sae features catalog");
    for (int k = 0; st == TP_OK && k < nd; k++) names[k] = dom[k].name;
    for (int i = 0; st == TP_OK && i < r->n; i++) {
        sae_job *j = &r->jobs[i];
        st = dist_agree(r->comm, sae_sync_host(&j->m), "sae features catalog");   /* it reads W_enc, W_dec */
        if (st != TP_OK) break;
        j->cat_in = (features_catalog_input){.sae = &j->m, .hook_name = j->name, .layer = j->layer,
                                             .domain_names = names, .n_domains = nd, .store_path = r->path,
                                             .model = r->model, .tok = r->tok};
        features_catalog_default_options(&j->cat_in.opt);
        j->cat_in.opt.top_k = r->ss.catalog_top_k;
        j->cat_in.opt.context_before = r->ss.catalog_context;
        j->cat_in.opt.max_detailed = r->ss.catalog_max_detailed;
        j->cat_in.opt.seed = r->ss.seed;
        st = dist_agree(r->comm, features_catalog_begin(&j->cat_in, &j->cat), "sae features catalog");
        pass.j = j;
        if (st == TP_OK) st = row_stream_for_all(r->rs, i, catalog_block, &pass);
    }
    r->domain_names = names;   /* the catalogs read them until they finish */
    free(pass.dom);
    return st;
}

/* After the store is closed: the catalogs merged on rank 0, which adds the detailed
 * entries (its serial reads of the store's tokens). Collective. */
static tp_status finish_catalogs(sae_run *r)
{
    double t0 = tp_now();
    for (int i = 0; i < r->n; i++) {
        sae_job *j = &r->jobs[i];
        TP_CHECK(features_catalog_finish(j->cat, r->comm, &j->catalog));
        features_catalog_free(j->cat);
        j->cat = NULL;
    }
    tp_log_info("sae: features catalogs of %d SAE(s) over %lld rows (%.1f s)", r->n,
                (long long)row_stream_all_rows(r->rs), tp_now() - t0);
    return TP_OK;
}

static json_t *definitions(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}",
        "fvu", "fraction of variance unexplained on held-out rows: sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (raw activations)",
        "explained_variance", "1 - fvu",
        "l0", "mean number of latents > 0 per held-out row",
        "dead_latents", "latents that fired on none of the held-out rows",
        "dense_latents", "latents that fired on more than 10 % of the held-out rows",
        "ce_loss_recovered", "on held-out documents (not in the capture sample): (CE_zero - CE_sae) / (CE_zero - CE_clean), "
        "next-token cross-entropy with the capture point zeroed (CE_zero) or replaced by the SAE reconstruction (CE_sae); "
        "rows the capture masks keep their activation; kl_* = mean KL(clean || spliced) over the same positions");
}

/* The store, the capture points to train on, one job per point. */
static tp_status open_jobs(sae_run *r)
{
    TP_CHECK(run_path(r->path, sizeof r->path, r->run_dir, RUN_STORE));
    TP_CHECK(store_open_read(r->path, r->comm, &r->s));
    TP_CHECK(store_inputs_check(r->s, r->path, r->comm));
    int cap = store_num_acts(r->s) ? store_num_acts(r->s) : 1;
    int *acts = tp_malloc((size_t)cap * sizeof *acts);
    if (!(r->jobs = tp_calloc((size_t)cap, sizeof *r->jobs)) || !acts) { free(acts); return TP_ERR_NOMEM; }
    tp_status st = hook_select(&r->ss.hooks, r->s, r->path, acts, &r->n, cap);
    if (st == TP_OK) st = hook_select_require_complete(r->s, r->path, "sae", acts, r->n);
    for (int i = 0; st == TP_OK && i < r->n; i++) {
        const store_act_spec *a = store_act(r->s, acts[i]);
        sae_job *j = &r->jobs[i];
        snprintf(j->name, sizeof j->name, "%s", a->name);
        j->act = acts[i], j->layer = hook_select_layer(a->name), j->d = a->cols;
        st = run_sae_dir(j->dir, sizeof j->dir, r->run_dir, a->name);
        if (st == TP_OK) st = run_sae_checkpoint_dir(j->ckdir, sizeof j->ckdir, r->run_dir, a->name);
    }
    if (st == TP_OK) {
        row_stream_options ro = {.chunk_rows = r->ss.chunk_rows, .window_chunks = r->ss.window_chunks,
                                 .eval_fraction = r->ss.eval_fraction, .seed = r->ss.seed};
        st = row_stream_open(r->s, r->comm, acts, r->n, &ro, &r->rs);
    }
    free(acts);
    return st;
}

/* Steps of the whole training: every window of every epoch in batches of B rows. */
static void count_steps(sae_run *r)
{
    r->B = r->ss.batch_size, r->E = r->ss.num_epochs;
    r->W = row_stream_windows(r->rs), r->train_rows = row_stream_train_rows(r->rs);
    r->T = 0;
    for (int64_t e = 0; e < r->E; e++)
        for (int64_t w = 0; w < r->W; w++) r->T += (row_stream_window_rows(r->rs, e, w) + r->B - 1) / r->B;
    r->local_max = (r->B + r->size - 1) / r->size + 1;
    tp_log_info("sae: %d SAE(s) on %s: %lld training rows, %lld held out, %lld epochs x %lld windows, %lld steps of "
                "%lld rows over %d rank(s)", r->n, r->path, (long long)r->train_rows,
                (long long)row_stream_eval_rows(r->rs), (long long)r->E, (long long)r->W, (long long)r->T,
                (long long)r->B, r->size);
}

/* Models: from the checkpoint when every rank can resume it, else new ones. */
static tp_status init_models(sae_run *r)
{
    int resume = read_checkpoint(r, &r->pos), all_resume;
    char cp[TP_PATH_MAX];
    for (int i = 0; i < r->n && resume; i++)
        if (ckpt_path(&r->jobs[i], r->pos.step, cp, sizeof cp) != TP_OK || access(cp, R_OK) != 0) {
            tp_log_warn("sae: %s names step %lld but %s cannot be read; training starts over",
                        RUN_SAE_CHECKPOINT_JSON, (long long)r->pos.step, cp);
            resume = 0;
        }
    MPI_CHECK(MPI_Allreduce(&resume, &all_resume, 1, MPI_INT, MPI_MIN, r->comm));
    r->resume = all_resume;
    if (!r->resume) r->pos = (position){0};
    for (int i = 0; i < r->n; i++) {
        sae_job *j = &r->jobs[i];
        sae_config c;
        TP_CHECK(make_config(&r->ss, j->d, r->train_rows, r->T, &c));
        tp_status lst;
        if (r->resume) {
            lst = ckpt_path(j, r->pos.step, cp, sizeof cp);
            if (lst == TP_OK) lst = sae_load(cp, r->local_max, &j->m);
        } else {
            lst = sae_init(&j->m, &c, r->local_max);
            if (lst == TP_OK) lst = sae_init_weights(&j->m, r->ss.seed + (uint64_t)i);
        }
        if (lst == TP_OK) lst = sae_use_backend(&j->m, backend_default());   /* --device cuda: training on the GPU */
        if (lst == TP_OK && r->resume && j->m.cfg.d_in != j->d)
            lst = tp_err(TP_ERR_FORMAT, "sae: %s: checkpoint is %lld wide, the store's %s is %lld", cp,
                         (long long)j->m.cfg.d_in, j->name, (long long)j->d);
        if (lst == TP_OK && r->resume && j->m.step != r->pos.step)
            lst = tp_err(TP_ERR_FORMAT, "sae: checkpoint of %s is at step %lld, %s says %lld", j->name,
                         (long long)j->m.step, RUN_SAE_CHECKPOINT_JSON, (long long)r->pos.step);
        j->ready = lst == TP_OK || (r->resume && j->m.params);
        TP_CHECK(dist_agree(r->comm, lst, "sae"));
        if (r->rank == 0) j->curve = r->resume && json_is_array(j->resumed_curve) ? json_deep_copy(j->resumed_curve)
                                                                                   : json_array();
        json_decref(j->resumed_curve), j->resumed_curve = NULL;
        if (!r->resume) j->last = (sae_metrics){0};
    }
    return TP_OK;
}

/* New models: input scale and decoder bias from the first window's rows. */
static tp_status init_from_data(sae_run *r)
{
    if (r->resume) {
        tp_log_info("sae: resuming at step %lld of %lld (epoch %lld, window %lld)", (long long)r->pos.step,
                    (long long)r->T, (long long)r->pos.epoch, (long long)r->pos.window);
        return TP_OK;
    }
    int64_t m0, lo, hi;
    float *const *rows;
    TP_CHECK(row_stream_read_window(r->rs, 0, 0, &m0, &rows, NULL));
    row_stream_share(m0, r->rank, r->size, &lo, &hi);
    for (int i = 0; i < r->n; i++) {
        sae_job *j = &r->jobs[i];
        const float *xs = rows[i] + lo * j->d;
        TP_CHECK(sae_compute_input_scale(xs, hi - lo, j->d, r->comm, &j->m.input_scale));
        TP_CHECK(sae_init_b_dec(&j->m, xs, hi - lo, r->comm, j->m.cfg.b_dec_init, 100));
    }
    return TP_OK;
}

/* After a step: the curve point, a checkpoint when due or when asked to stop
 * (SIGUSR1 on any rank, dist/stop.h: the checkpoint, then a clean stop), and the
 * fault point of the resume tests (TP_FAULT=sae.step@<n>). */
static tp_status after_step(sae_run *r, const position *next, int64_t *prev_ck)
{
    bool stop;
    TP_CHECK(dist_stop_agreed(r->comm, &stop));
    const int64_t log_every = r->T / 200 > 1 ? r->T / 200 : 1;
    if (r->rank == 0 && (next->step % log_every == 0 || next->step == r->T))
        for (int i = 0; i < r->n; i++) {
            const sae_metrics *mt = &r->jobs[i].last;
            json_array_append_new(r->jobs[i].curve, json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "step",
                (json_int_t)mt->step, "loss", mt->loss, "fvu", mt->fvu, "l0", mt->l0, "dead_fraction",
                mt->dead_frac, "lr", mt->lr));
        }
    if ((r->ss.checkpoint_every > 0 && next->step % r->ss.checkpoint_every == 0) || next->step == r->T || stop) {
        tp_status cst = r->rank == 0 ? write_checkpoint(r, next, *prev_ck) : TP_OK;
        TP_CHECK(dist_agree(r->comm, cst, "sae checkpoint"));
        *prev_ck = next->step;
    }
    if (stop) return dist_stop_error("sae", "at step %lld of %lld (checkpoint written)", (long long)next->step,
                                     (long long)r->T);
    return tp_fault("sae", "step");
}

/* Training from r->pos to the end: each rank takes its share of every global batch,
 * every SAE steps on it. */
static tp_status train(sae_run *r)
{
    int64_t prev_ck = r->resume ? r->pos.step : -1;
    double rows_done = 0, t_train = tp_now();
    tp_progress prog;
    tp_progress_begin(&prog, "sae", "steps", (uint64_t)(r->T - r->pos.step));
    for (int64_t e = r->pos.epoch; e < r->E; e++) {
        for (int64_t w = (e == r->pos.epoch ? r->pos.window : 0); w < r->W; w++) {
            int64_t m;
            float *const *rows;
            TP_CHECK(row_stream_read_window(r->rs, e, w, &m, &rows, NULL));
            int64_t nb = (m + r->B - 1) / r->B;
            for (int64_t b = (e == r->pos.epoch && w == r->pos.window ? r->pos.batch : 0); b < nb; b++) {
                int64_t b0 = b * r->B, bn = m - b0 < r->B ? m - b0 : r->B, lo, hi;
                row_stream_share(bn, r->rank, r->size, &lo, &hi);
                for (int i = 0; i < r->n; i++)
                    TP_CHECK(sae_train_step(&r->jobs[i].m, rows[i] + (b0 + lo) * r->jobs[i].d, hi - lo, r->comm,
                                            &r->jobs[i].last));
                rows_done += (double)bn;
                /* The position after this step: the next batch. */
                position next = {.step = r->jobs[0].m.step, .epoch = e, .window = w, .batch = b + 1};
                if (next.batch == nb) next.batch = 0, next.window = w + 1;
                if (next.window == r->W) next.window = 0, next.epoch = e + 1;
                TP_CHECK(after_step(r, &next, &prev_ck));
                const sae_job *j0 = &r->jobs[0];
                double el = tp_now() - t_train;
                tp_progress_note(&prog, "%.0f rows/s; %s: loss %.4g, FVU %.3f, L0 %.1f, dead %.1f%%",
                                 el > 0 ? rows_done / el : 0.0, j0->name, j0->last.loss, j0->last.fvu, j0->last.l0,
                                 100 * j0->last.dead_frac);
                tp_progress_add(&prog, 1);
            }
        }
    }
    tp_progress_end(&prog);
    r->train_s = tp_now() - t_train;
    return TP_OK;
}

/* Every SAE on the held-out rows, the catalogs over every row, then the parallel
 * store is closed (the stream's counts stay for the summary). */
static tp_status evaluate_held_out(sae_run *r)
{
    for (int i = 0; i < r->n; i++) TP_CHECK(evaluate_rows(r, i, &r->jobs[i]));
    TP_CHECK(scan_catalogs(r));
    tp_status st = store_close(r->s);
    r->s = NULL;
    return st;
}

/* The model and tokenizer, opened once: the CE evaluation needs them on every rank,
 * the catalogs' logit attribution and token text on rank 0 (which do without them
 * when the CE evaluation is off and they cannot be opened). */
static tp_status open_model(sae_run *r)
{
    tp_status mst = model_io_open(&r->set.model, &r->model, &r->tok);
    if (mst != TP_OK && r->ss.eval_num_samples == 0) {
        tp_log_warn("sae: features catalog without logit attribution and token text: %s", tp_err_msg());
        r->model = NULL, r->tok = NULL, mst = TP_OK;
    }
    return dist_agree(r->comm, mst, "sae CE evaluation");
}

/* What every number rests on: documents and rows per domain of the training set,
 * the held-out documents and the catalogs' rows. */
static json_t *coverage_json(const sae_run *r)
{
    int nd;
    const row_stream_domain *dom = row_stream_domains(r->rs, &nd);
    json_t *by = json_object();
    int64_t docs = 0, held = 0;
    for (int k = 0; k < nd; k++) {
        json_object_set_new(by, dom[k].name, json_pack("{s:I, s:I, s:I, s:I, s:I}", "documents", (json_int_t)dom[k].docs,
            "documents_held_out", (json_int_t)dom[k].docs_held_out, "training_rows", (json_int_t)dom[k].train_rows,
            "held_out_rows", (json_int_t)dom[k].eval_rows, "rows", (json_int_t)(dom[k].train_rows + dom[k].eval_rows)));
        docs += dom[k].docs, held += dom[k].docs_held_out;
    }
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:s, s:o}", "documents", (json_int_t)docs, "documents_held_out",
                     (json_int_t)held, "rows", (json_int_t)row_stream_all_rows(r->rs), "training_rows",
                     (json_int_t)row_stream_train_rows(r->rs), "held_out_rows", (json_int_t)row_stream_eval_rows(r->rs),
                     "eval_fraction", r->ss.eval_fraction, "how",
                     "unmasked rows; held out: whole documents, per domain the share sae.eval_fraction of its rows; "
                     "training on the other documents' rows; FVU, L0 and CE on the held-out documents; the features "
                     "catalog (density, dead, contexts, domains) over every row",
                     "by_domain", by);
}

/* The latents' densities of a catalog layer (for sparsity.safetensors). */
static tp_status catalog_density(const json_t *layer, int64_t F, double *out)
{
    json_t *feats = json_object_get(layer, "features");
    if ((int64_t)json_array_size(feats) != F)
        return tp_err(TP_ERR_INTERNAL, "sae: the catalog lists %zu features of %lld", json_array_size(feats), (long long)F);
    for (int64_t i = 0; i < F; i++) out[i] = json_number_value(json_object_get(json_array_get(feats, (size_t)i), "density"));
    return TP_OK;
}

/* Rank 0: one SAELens export per SAE, its entry of the summary. */
static tp_status export_job(sae_run *r, sae_job *j, json_t *list)
{
    const sae_metrics *mt = &j->last;
    json_t *train = json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "steps", (json_int_t)j->m.step, "rows_per_step",
                              (json_int_t)r->B, "loss", mt->loss, "fvu_last_batch", mt->fvu, "l0_last_batch", mt->l0,
                              "dead_fraction", mt->dead_frac, "seconds", r->train_s);
    /* Dead and dense over every row of the store (the catalog), beside the held-out figures. */
    json_object_set_new(j->eval, "dead_latents", json_integer(json_integer_value(json_object_get(j->catalog, "n_dead"))));
    json_object_set_new(j->eval, "dense_latents", json_integer(json_integer_value(json_object_get(j->catalog, "n_dense"))));
    json_object_set_new(j->eval, "dead_and_dense_over_rows", json_integer(json_integer_value(json_object_get(j->catalog, "rows"))));
    json_t *extra = json_pack("{s:O, s:O}", "training", train, "evaluation", j->eval);
    const char *model_name = r->model ? r->model->cfg.name : r->set.model.dir;
    tp_status st = sae_sync_host(&j->m);
    if (st == TP_OK) st = sae_export_saelens(&j->m, j->dir, j->name, model_name, extra);
    json_decref(extra);
    double *density = tp_malloc((size_t)j->m.cfg.d_sae * sizeof *density);
    if (st == TP_OK) st = density ? catalog_density(j->catalog, j->m.cfg.d_sae, density) : TP_ERR_NOMEM;
    if (st == TP_OK) st = sae_export_sparsity(j->dir, density, j->m.cfg.d_sae);
    free(density);
    json_array_append_new(list, json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:o, s:O, s:o}", "hook", j->name,
        "layer", j->layer, "dir", j->dir, "architecture", sae_arch_name(j->m.cfg.arch), "d_in",
        (json_int_t)j->m.cfg.d_in, "d_sae", (json_int_t)j->m.cfg.d_sae, "k", (json_int_t)j->m.cfg.k,
        "training", train, "evaluation", j->eval, "curve", j->curve));
    j->curve = NULL;
    return st;
}

/* Rank 0: results/features_catalog.json (and its index) from the finished layers. */
static tp_status write_catalog(sae_run *r)
{
    json_t *saes = json_array();
    for (int i = 0; i < r->n; i++) json_array_append(saes, r->jobs[i].catalog);
    json_t *doc = features_catalog_document(coverage_json(r), saes);
    char out[TP_PATH_MAX], index[TP_PATH_MAX];
    tp_status st = doc ? TP_OK : tp_err(TP_ERR_NOMEM, "sae: features catalog JSON");
    if (st == TP_OK) st = run_path(out, sizeof out, r->run_dir, RUN_FEATURES_CATALOG_JSON);
    if (st == TP_OK) st = run_path(index, sizeof index, r->run_dir, RUN_FEATURES_INDEX);
    if (st == TP_OK) st = features_catalog_write(out, index, doc);
    json_decref(doc);
    if (st == TP_OK) tp_log_info("sae: features catalog of %d SAE(s) -> %s", r->n, out);
    return st;
}

/* Rank 0: the exports, results/sae_summary.json, the features catalog. */
static tp_status write_outputs(sae_run *r)
{
    json_t *list = json_array();
    tp_status st = TP_OK;
    for (int i = 0; i < r->n && st == TP_OK; i++) st = export_job(r, &r->jobs[i], list);
    char out[TP_PATH_MAX];
    if (st == TP_OK) st = run_path(out, sizeof out, r->run_dir, RUN_SAE_SUMMARY_JSON);
    if (st != TP_OK) { json_decref(list); return st; }
    json_t *doc = json_pack("{s:s, s:i, s:I, s:I, s:I, s:f, s:o, s:o, s:o}", "store", r->path, "ranks", r->size,
                            "train_rows", (json_int_t)r->train_rows, "epochs", (json_int_t)r->E, "steps",
                            (json_int_t)r->T, "wall_s", tp_now() - r->t_start, "coverage", coverage_json(r),
                            "definitions", definitions(), "saes", list);
    st = fs_write_json(out, doc);
    json_decref(doc);
    TP_CHECK(st);
    tp_log_info("sae: %d SAE(s) -> %s", r->n, out);
    TP_CHECK(write_catalog(r));
    for (int i = 0; i < r->n; i++) {
        const sae_job *j = &r->jobs[i];
        if (j->eval)
            tp_log_info("sae: %s: held-out FVU %.3f, L0 %.1f; dead %lld of %lld latents over all %lld rows", j->name,
                        json_real_value(json_object_get(j->eval, "fvu")), json_real_value(json_object_get(j->eval, "l0")),
                        (long long)json_integer_value(json_object_get(j->eval, "dead_latents")),
                        (long long)j->m.cfg.d_sae, (long long)row_stream_all_rows(r->rs));
    }
    return TP_OK;
}

static void sae_run_free(sae_run *r)
{
    row_stream_close(r->rs);
    if (r->s) store_close_after_error(r->s);
    for (int i = 0; r->jobs && i < r->n; i++) {
        sae_job *j = &r->jobs[i];
        if (j->ready) sae_free(&j->m);
        json_decref(j->curve), json_decref(j->resumed_curve);
        json_decref(j->eval);
        json_decref(j->catalog);
        features_catalog_free(j->cat);
    }
    free(r->jobs);
    free(r->domain_names);
    tokenizer_free(r->tok);
    model_close(r->model);
}

tp_status sae_phase_run(const tp_config *cfg, const char *run_dir)
{
    sae_run r = {.run_dir = run_dir, .comm = MPI_COMM_WORLD, .rank = dist_rank(), .size = dist_size(),
                 .t_start = tp_now()};
    TP_CHECK(settings_read(cfg, &r.set));
    TP_CHECK(sae_settings_read(cfg, &r.ss));
    TP_CHECK(capture_settings_read(cfg, &r.cap));
    if (r.ss.skip) {
        tp_log_info("sae: skipped (sae.skip)");
        return TP_OK;
    }
    snprintf(r.key, sizeof r.key, "%016llx", (unsigned long long)phase_hash(&sae_phase, cfg));
    tp_status st;
    TP_CHECK_GOTO(open_jobs(&r), st, done);
    count_steps(&r);
    TP_CHECK_GOTO(init_models(&r), st, done);
    TP_CHECK_GOTO(init_from_data(&r), st, done);
    TP_CHECK_GOTO(train(&r), st, done);
    TP_CHECK_GOTO(open_model(&r), st, done);
    TP_CHECK_GOTO(evaluate_held_out(&r), st, done);
    TP_CHECK_GOTO(evaluate_ce(&r), st, done);
    TP_CHECK_GOTO(finish_catalogs(&r), st, done);
    st = dist_agree(r.comm, r.rank == 0 ? write_outputs(&r) : TP_OK, "sae (writing results)");
done:
    sae_run_free(&r);
    return st;
}

/* "4 SAEs (topk): held-out FVU 0.07-0.12, L0 32.0-32.0, CE loss recovered 95-99 %" */
static void sae_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_SAE_SUMMARY_JSON), *saes = j ? json_object_get(j, "saes") : NULL;
    size_t ns = json_array_size(saes);
    if (!ns) { json_decref(j); return; }
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (size_t i = 0; i < ns; i++) {
        json_t *ev = json_object_get(json_array_get(saes, i), "evaluation");
        double v[3] = {json_number_value(json_object_get(ev, "fvu")), json_number_value(json_object_get(ev, "l0")),
                       json_number_value(json_object_get(json_object_get(ev, "ce"), "ce_loss_recovered"))};
        for (int k = 0; k < 3; k++)
            if (json_object_get(ev, "ce") || k < 2) lo[k] = fmin(lo[k], v[k]), hi[k] = fmax(hi[k], v[k]);
    }
    int len = snprintf(buf, n, "%zu SAE(s) (%s): held-out FVU %.3f-%.3f, L0 %.1f-%.1f", ns,
                       json_string_value(json_object_get(json_array_get(saes, 0), "architecture")) ?: "?", lo[0], hi[0],
                       lo[1], hi[1]);
    if (isfinite(lo[2]) && len > 0 && (size_t)len < n)
        snprintf(buf + len, n - (size_t)len, ", CE loss recovered %.1f-%.1f %%", 100 * lo[2], 100 * hi[2]);
    json_decref(j);
}

static const char *const sae_outputs[] = {RUN_SAE_SUMMARY_JSON, NULL};
static const char *const sae_reads[] = {"layers", NULL};
static const tp_phase *const sae_needs[] = {&capture_phase, NULL};

static const char *const sae_faults[] = {"step", NULL};
const tp_phase sae_phase = {
    .name = "sae",
    .help = "phase 4: sparse autoencoders per capture point -> results/sae_layer_<L>/ (SAELens), sae_summary.json, "
            "features_catalog.json",
    .run = sae_phase_run,
    .outputs = sae_outputs,
    .config = &sae_section,
    .reads = sae_reads,
    .needs = sae_needs,
    .headline = sae_headline,
    .faults = sae_faults,
};
