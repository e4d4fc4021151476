#include "analysis/sae/sae_phase.h"

#include "analysis/capture/capture_phase.h"
#include "analysis/hook_select.h"
#include "analysis/row_stream.h"
#include "analysis/sae/sae.h"
#include "analysis/sae/features_catalog.h"
#include "analysis/sae/sae_ce.h"
#include "analysis/sae/sae_export.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/dataset.h"
#include "dist/mpi_check.h"
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
    char dir[TP_PATH_MAX];
    int act, layer;
    int64_t d;
    sae_model m;
    bool ready;
    sae_metrics last;
    json_t *curve;          /* rank 0 */
    json_t *eval;           /* rank 0 */
    float *eval_x;          /* rank 0: the held-out rows [n_eval, d] for the catalog */
    int64_t *eval_rows;     /* their store rows */
    int64_t n_eval;
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
    return fs_join(out, n, j->dir, file);
}

/* Rank 0: every SAE's state at this step, then the JSON that names it (the commit
 * point), then the previous step's files go. */
static tp_status write_checkpoint(const sae_run *r, const position *p, int64_t prev_step)
{
    char path[TP_PATH_MAX];
    for (int i = 0; i < r->n; i++) {
        TP_CHECK(fs_mkdir_p(r->jobs[i].dir));
        TP_CHECK(ckpt_path(&r->jobs[i], p->step, path, sizeof path));
        TP_CHECK(sae_save(&r->jobs[i].m, path));
    }
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I}", "key", r->key, "step", (json_int_t)p->step, "epoch",
                          (json_int_t)p->epoch, "window", (json_int_t)p->window, "batch", (json_int_t)p->batch);
    tp_status st = run_path(path, sizeof path, r->run_dir, RUN_SAE_CHECKPOINT_JSON);
    if (st == TP_OK) st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, j);
    json_decref(j);
    TP_CHECK(st);
    for (int i = 0; prev_step >= 0 && prev_step != p->step && i < r->n; i++)
        if (ckpt_path(&r->jobs[i], prev_step, path, sizeof path) == TP_OK) unlink(path);
    return TP_OK;
}

/* The checkpoint to resume from, if any matches this configuration (every rank reads it). */
static int read_checkpoint(const sae_run *r, position *p)
{
    char path[TP_PATH_MAX];
    if (run_path(path, sizeof path, r->run_dir, RUN_SAE_CHECKPOINT_JSON) != TP_OK) return 0;
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return 0;
    const char *k = json_string_value(json_object_get(j, "key"));
    int ok = k && !strcmp(k, r->key);
    if (ok) {
        p->step = json_integer_value(json_object_get(j, "step"));
        p->epoch = json_integer_value(json_object_get(j, "epoch"));
        p->window = json_integer_value(json_object_get(j, "window"));
        p->batch = json_integer_value(json_object_get(j, "batch"));
    } else {
        tp_log_warn("sae: %s was made with another configuration; training starts over", path);
    }
    json_decref(j);
    return ok;
}

/* Held-out rows: FVU, explained variance, L0, dead and dense latents. Collective. */
static tp_status evaluate_rows(row_stream *rs, int act_i, sae_job *j, int64_t max_rows, MPI_Comm comm)
{
    int rank = dist_rank(), size = dist_size();
    const int64_t d = j->d, F = j->m.cfg.d_sae, blk = j->m.max_rows;
    int64_t total = row_stream_eval_rows(rs) < max_rows ? row_stream_eval_rows(rs) : max_rows, n = 0;
    float *x = tp_malloc((size_t)((total ? total : 1) * d) * sizeof *x);
    int64_t *xrows = tp_malloc((size_t)(total ? total : 1) * sizeof *xrows);
    float *rec = tp_malloc((size_t)(blk * d) * sizeof *rec), *codes = tp_malloc((size_t)(blk * F) * sizeof *codes);
    double *acc = tp_calloc((size_t)(4 + F), sizeof *acc), *mean = tp_calloc((size_t)d, sizeof *mean);
    tp_status st = x && xrows && rec && codes && acc && mean ? TP_OK : TP_ERR_NOMEM;
    if ((st = dist_agree(comm, st, "sae evaluation")) != TP_OK) goto done;
    if ((st = row_stream_read_eval(rs, act_i, total, x, xrows, &n)) != TP_OK) goto done;
    if (n < 2) {
        st = tp_err(TP_ERR_RANGE, "sae: %lld held-out rows for %s; raise sae.eval_fraction or capture more", (long long)n,
                    j->name);
        goto done;
    }
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < d; c++) mean[c] += x[r * d + c];
    for (int64_t c = 0; c < d; c++) mean[c] /= (double)n;
    int64_t lo, hi;
    row_stream_share(n, rank, size, &lo, &hi);
    tp_status lst = TP_OK;
    for (int64_t r0 = lo; r0 < hi && lst == TP_OK; r0 += blk) {
        int64_t nb = hi - r0 < blk ? hi - r0 : blk;
        lst = sae_reconstruct(&j->m, x + r0 * d, nb, rec);
        if (lst == TP_OK) lst = sae_encode(&j->m, x + r0 * d, nb, codes);
        for (int64_t r = 0; lst == TP_OK && r < nb; r++) {
            const float *xr = x + (r0 + r) * d, *rr = rec + r * d;
            double e = 0, v = 0;
            for (int64_t c = 0; c < d; c++) {
                e += ((double)xr[c] - rr[c]) * ((double)xr[c] - rr[c]);
                v += ((double)xr[c] - mean[c]) * ((double)xr[c] - mean[c]);
            }
            acc[0] += e, acc[1] += v;
            for (int64_t i = 0; i < F; i++)
                if (codes[r * F + i] > 0) acc[2] += 1, acc[4 + i] += 1;
        }
    }
    if ((st = dist_agree(comm, lst, "sae evaluation")) != TP_OK) goto done;
    if ((st = dist_allreduce_sum_f64(comm, acc, (size_t)(4 + F))) != TP_OK) goto done;
    if (rank == 0) {
        int64_t dead = 0, dense = 0;
        for (int64_t i = 0; i < F; i++) dead += acc[4 + i] == 0, dense += acc[4 + i] > 0.1 * (double)n;
        double fvu = acc[0] / acc[1];
        j->eval = json_pack("{s:I, s:f, s:f, s:f, s:I, s:f, s:I, s:f}", "rows", (json_int_t)n, "fvu", fvu,
                            "explained_variance", 1 - fvu, "l0", acc[2] / (double)n, "dead_latents", (json_int_t)dead,
                            "dead_fraction", (double)dead / (double)F, "dense_latents", (json_int_t)dense,
                            "dense_fraction", (double)dense / (double)F);
        j->eval_x = x, j->eval_rows = xrows, j->n_eval = n;   /* kept for the catalog */
        x = NULL, xrows = NULL;
    }
done:
    free(x), free(xrows), free(rec), free(codes), free(acc), free(mean);
    return st;
}

/* CE-loss recovered and KL on held-out text, every SAE spliced in at its point in
 * turn (sae_ce.h). Collective; after the parallel store is closed. */
static tp_status evaluate_ce(sae_run *r)
{
    int64_t ndocs = r->ss.eval_num_samples, nexcl = 0;
    if (ndocs == 0) return TP_OK;
    double t0 = tp_now();
    tp_forward *f = NULL;
    tp_dataset text = {0};
    int64_t *excl = NULL;
    tp_status st = store_dataset_length_serial(r->path, "doc_index", &nexcl);
    if (st == TP_OK) {
        excl = tp_malloc((size_t)(nexcl ? nexcl : 1) * sizeof *excl);
        st = !excl ? TP_ERR_NOMEM : nexcl ? store_read_i64_serial(r->path, "doc_index", 0, nexcl, excl) : TP_OK;
    }
    /* Documents the capture did not sample: text the SAE never saw. */
    if (st == TP_OK)
        st = sae_ce_text_open(&r->set.data, r->tok, r->model->cfg.eos_token_id, excl, (size_t)nexcl, ndocs,
                              r->set.data.seed + 7919u, &text);
    int batch = r->set.batch_size;
    if (st == TP_OK) st = forward_new(r->model, batch, text.seq_len, &f);
    if ((st = dist_agree(r->comm, st, "sae CE evaluation")) != TP_OK) goto done;
    int32_t bos = r->cap.mask_bos ? r->model->cfg.bos_token_id : -1;
    for (int i = 0; i < r->n; i++) {
        sae_job *j = &r->jobs[i];
        int L;
        tp_hook_point pt;
        st = hooks_parse_name(&r->model->cfg, j->name, &L, &pt);
        if ((st = dist_agree(r->comm, st, "sae CE evaluation")) != TP_OK) goto done;
        sae_ce_result cr;
        if ((st = sae_ce_evaluate(f, &text.seqs, batch, L, pt, &j->m, r->cap.mask_first, bos, r->comm, &cr)) != TP_OK)
            goto done;
        if (!j->eval) continue;
        json_object_set_new(j->eval, "ce", json_pack("{s:f, s:f, s:f, s:o, s:f, s:f, s:I, s:I}", "ce_clean",
            cr.ce_clean, "ce_zero_ablation", cr.ce_zero, "ce_sae", cr.ce_sae, "ce_loss_recovered",
            isfinite(cr.recovered) ? json_real(cr.recovered) : json_null(), "kl_sae", cr.kl_sae, "kl_zero_ablation",
            cr.kl_zero, "tokens", (json_int_t)cr.tokens, "documents", (json_int_t)text.ndocs));
        tp_log_info("sae: %s: CE clean %.4f, SAE %.4f, zero %.4f -> %.1f%% recovered, KL %.4f (%lld held-out tokens)",
                    j->name, cr.ce_clean, cr.ce_sae, cr.ce_zero, 100 * cr.recovered, cr.kl_sae, (long long)cr.tokens);
    }
    tp_log_info("sae: CE evaluation on %zu held-out documents in %.1f s", text.ndocs, tp_now() - t0);
done:
    forward_free(f);
    dataset_close(&text);
    free(excl);
    return st;
}

/* Rank 0, after the parallel store is closed: results/features_catalog.json. The
 * model and tokenizer may be NULL: no logit attribution and no token text then. */
static tp_status write_catalog(sae_run *r)
{
    double t0 = tp_now();
    corpus *corp = NULL;
    if (corpus_open(r->set.data.corpus, r->set.data.skip_malformed, &corp) != TP_OK) {
        tp_log_warn("sae: features catalog without corpus domains: %s", tp_err_msg());
        corp = NULL;
    }
    json_t *saes = json_array();
    tp_status st = TP_OK;
    for (int i = 0; i < r->n && st == TP_OK; i++) {
        sae_job *j = &r->jobs[i];
        features_catalog_input in = {.sae = &j->m, .hook_name = j->name, .layer = j->layer, .rows = j->eval_x,
                                     .row_index = j->eval_rows, .n = j->n_eval, .store_path = r->path,
                                     .corpus = corp, .model = r->model, .tok = r->tok};
        features_catalog_default_options(&in.opt);
        in.opt.top_k = r->ss.catalog_top_k;
        in.opt.context_before = r->ss.catalog_context;
        in.opt.max_detailed = r->ss.catalog_max_detailed;
        in.opt.seed = r->ss.seed;
        json_t *layer = NULL;
        st = features_catalog_build(&in, &layer);
        if (st == TP_OK) json_array_append_new(saes, layer);
    }
    char out[TP_PATH_MAX];
    if (st == TP_OK) st = run_path(out, sizeof out, r->run_dir, RUN_FEATURES_CATALOG_JSON);
    if (st == TP_OK) {
        json_t *doc = features_catalog_document(saes);
        saes = NULL;
        st = fs_write_json_compact(out, doc);
        json_decref(doc);
        if (st == TP_OK) tp_log_info("sae: features catalog of %d SAE(s) -> %s (%.1f s)", r->n, out, tp_now() - t0);
    }
    json_decref(saes);
    corpus_close(corp);
    return st;
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
        if (ckpt_path(&r->jobs[i], r->pos.step, cp, sizeof cp) != TP_OK || access(cp, R_OK) != 0) resume = 0;
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
        if (lst == TP_OK && r->resume && j->m.step != r->pos.step)
            lst = tp_err(TP_ERR_FORMAT, "sae: checkpoint of %s is at step %lld, %s says %lld", j->name,
                         (long long)j->m.step, RUN_SAE_CHECKPOINT_JSON, (long long)r->pos.step);
        j->ready = lst == TP_OK || (r->resume && j->m.params);
        TP_CHECK(dist_agree(r->comm, lst, "sae"));
        if (r->rank == 0) j->curve = json_array();
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

/* After a step: the curve point, a checkpoint when due, and the fault injection of
 * the resume tests (TP_FAULT_AFTER_STEPS on rank TP_FAULT_SAE_RANK). */
static tp_status after_step(sae_run *r, const position *next, int64_t *prev_ck, int64_t steps_here)
{
    const int64_t log_every = r->T / 200 > 1 ? r->T / 200 : 1;
    if (r->rank == 0 && (next->step % log_every == 0 || next->step == r->T))
        for (int i = 0; i < r->n; i++) {
            const sae_metrics *mt = &r->jobs[i].last;
            json_array_append_new(r->jobs[i].curve, json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "step",
                (json_int_t)mt->step, "loss", mt->loss, "fvu", mt->fvu, "l0", mt->l0, "dead_fraction",
                mt->dead_frac, "lr", mt->lr));
        }
    if ((r->ss.checkpoint_every > 0 && next->step % r->ss.checkpoint_every == 0) || next->step == r->T) {
        tp_status cst = r->rank == 0 ? write_checkpoint(r, next, *prev_ck) : TP_OK;
        TP_CHECK(dist_agree(r->comm, cst, "sae checkpoint"));
        *prev_ck = next->step;
    }
    const char *fault = getenv("TP_FAULT_AFTER_STEPS"), *fault_rank = getenv("TP_FAULT_SAE_RANK");
    if (fault && steps_here >= atol(fault) && r->rank == (fault_rank ? atoi(fault_rank) : 0)) {
        tp_log_rank("sae: TP_FAULT_AFTER_STEPS=%s reached, killing this rank", fault);
        raise(SIGKILL);
    }
    return TP_OK;
}

/* Training from r->pos to the end: each rank takes its share of every global batch,
 * every SAE steps on it. */
static tp_status train(sae_run *r)
{
    int64_t steps_here = 0, prev_ck = r->resume ? r->pos.step : -1;
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
                TP_CHECK(after_step(r, &next, &prev_ck, ++steps_here));
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

/* Every SAE on the held-out rows, then the parallel store is closed. */
static tp_status evaluate_held_out(sae_run *r)
{
    for (int i = 0; i < r->n; i++) TP_CHECK(evaluate_rows(r->rs, i, &r->jobs[i], r->ss.eval_rows, r->comm));
    row_stream_close(r->rs);
    r->rs = NULL;
    tp_status st = store_close(r->s);
    r->s = NULL;
    return st;
}

/* The model and tokenizer, opened once: the CE evaluation needs them on every rank;
 * the catalog (rank 0) does without them if they cannot be opened. */
static tp_status open_model(sae_run *r)
{
    tp_status mst = model_io_open(&r->set.model, &r->model, &r->tok);
    if (mst != TP_OK && r->ss.eval_num_samples == 0) {
        tp_log_warn("sae: features catalog without logit attribution and token text: %s", tp_err_msg());
        r->model = NULL, r->tok = NULL, mst = TP_OK;
    }
    return dist_agree(r->comm, mst, "sae CE evaluation");
}

/* Rank 0: one SAELens export per SAE, its entry of the summary. */
static tp_status export_job(const sae_run *r, sae_job *j, json_t *list)
{
    const sae_metrics *mt = &j->last;
    json_t *train = json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "steps", (json_int_t)j->m.step, "rows_per_step",
                              (json_int_t)r->B, "loss", mt->loss, "fvu_last_batch", mt->fvu, "l0_last_batch", mt->l0,
                              "dead_fraction", mt->dead_frac, "seconds", r->train_s);
    json_t *extra = json_pack("{s:O, s:O}", "training", train, "evaluation", j->eval);
    tp_status st = sae_export_saelens(&j->m, j->dir, j->name, r->set.model.dir, extra);
    json_decref(extra);
    json_array_append_new(list, json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:o, s:O, s:o}", "hook", j->name,
        "layer", j->layer, "dir", j->dir, "architecture", sae_arch_name(j->m.cfg.arch), "d_in",
        (json_int_t)j->m.cfg.d_in, "d_sae", (json_int_t)j->m.cfg.d_sae, "k", (json_int_t)j->m.cfg.k,
        "training", train, "evaluation", j->eval, "curve", j->curve));
    j->curve = NULL;
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
    json_t *doc = json_pack("{s:s, s:i, s:I, s:I, s:I, s:f, s:o, s:o}", "store", r->path, "ranks", r->size,
                            "train_rows", (json_int_t)r->train_rows, "epochs", (json_int_t)r->E, "steps",
                            (json_int_t)r->T, "wall_s", tp_now() - r->t_start, "definitions", definitions(),
                            "saes", list);
    st = fs_write_json(out, doc);
    json_decref(doc);
    TP_CHECK(st);
    tp_log_info("sae: %d SAE(s) -> %s", r->n, out);
    TP_CHECK(write_catalog(r));
    for (int i = 0; i < r->n; i++) {
        const sae_job *j = &r->jobs[i];
        if (j->eval)
            tp_log_info("sae: %s: held-out FVU %.3f, L0 %.1f, dead %lld of %lld latents", j->name,
                        json_real_value(json_object_get(j->eval, "fvu")), json_real_value(json_object_get(j->eval, "l0")),
                        (long long)json_integer_value(json_object_get(j->eval, "dead_latents")),
                        (long long)j->m.cfg.d_sae);
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
        json_decref(j->curve);
        json_decref(j->eval);
        free(j->eval_x), free(j->eval_rows);
    }
    free(r->jobs);
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
    TP_CHECK_GOTO(evaluate_held_out(&r), st, done);
    TP_CHECK_GOTO(open_model(&r), st, done);
    TP_CHECK_GOTO(evaluate_ce(&r), st, done);
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
};
