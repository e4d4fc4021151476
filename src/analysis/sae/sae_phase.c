#include "analysis/sae/sae_phase.h"

#include "analysis/hook_select.h"
#include "analysis/row_stream.h"
#include "analysis/sae/sae.h"
#include "analysis/sae/features_catalog.h"
#include "analysis/sae/sae_ce.h"
#include "analysis/sae/sae_export.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/mpi_check.h"
#include "dist/world.h"
#include "io/corpus.h"
#include "io/dataset.h"
#include "io/store_results.h"
#include "io/store.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/model_io.h"
#include "pipeline.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


typedef struct {
    char name[STORE_NAME_MAX];
    char dir[4200];
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

typedef struct {
    int64_t step, epoch, window, batch;
} position;

static void job_dir(const char *run_dir, const char *name, char *out, size_t n)
{
    int L = hook_select_layer(name);
    const char *point = L >= 0 ? strchr(name + 7, '.') + 1 : name;
    char sub[STORE_NAME_MAX + 32];
    if (L >= 0 && !strcmp(point, "hook_resid_post")) snprintf(sub, sizeof sub, "results/sae_layer_%d", L);
    else if (L >= 0) snprintf(sub, sizeof sub, "results/sae_layer_%d_%s", L, point);
    else snprintf(sub, sizeof sub, "results/sae_%s", name);
    for (char *p = sub + 8; *p; p++)
        if (*p == '.') *p = '_';
    fs_join(out, n, run_dir, sub);
}

static tp_status make_config(const tp_config *cfg, int64_t d, int64_t train_rows, int64_t total_steps, sae_config *out)
{
    sae_arch arch;
    TP_CHECK(sae_arch_parse(tp_config_str(cfg, "sae.architecture"), &arch));
    int64_t F = tp_config_int(cfg, "sae.hidden_dim");
    if (F == 0) F = tp_config_int(cfg, "sae.expansion") * d;
    sae_config c = sae_config_default(arch, d, F);
    if (arch != SAE_RELU) c.k = tp_config_int(cfg, "sae.k");
    int64_t aux = tp_config_int(cfg, "sae.aux_k");
    c.aux_k = arch == SAE_RELU ? 0 : (aux < F ? aux : F);
    c.l1_coef = tp_config_float(cfg, "sae.l1_coefficient");
    /* 1e-3: FVU 0.125 at L0 32 on the bundled model's middle layer in 450 steps of
     * 1024 rows, where the paper's 2e-4 (for millions of steps) is still at 0.6. */
    if (arch != SAE_RELU) c.lr = 1e-3;
    if (tp_config_float(cfg, "sae.learning_rate") > 0) c.lr = tp_config_float(cfg, "sae.learning_rate");
    c.total_steps = total_steps;
    int64_t dead = tp_config_int(cfg, "sae.dead_tokens");
    if (dead == 0) dead = 2 * train_rows < 10000000 ? 2 * train_rows : 10000000;
    c.dead_tokens = dead > 0 ? dead : 1;
    const char *b = tp_config_str(cfg, "sae.b_dec_init");
    if (!strcmp(b, "geometric_median")) c.b_dec_init = SAE_BDEC_GEOMETRIC_MEDIAN;
    else if (!strcmp(b, "mean")) c.b_dec_init = SAE_BDEC_MEAN;
    else if (!strcmp(b, "zero")) c.b_dec_init = SAE_BDEC_ZERO;
    tp_status st = sae_config_validate(&c);
    if (st != TP_OK) return tp_err(TP_ERR_CONFIG, "%s (%s)", tp_err_msg(), tp_config_origin(cfg, "sae.k"));
    *out = c;
    return TP_OK;
}

static void key_hash(const tp_config *cfg, char *buf, size_t n)
{
    /* the keys the phase's result depends on (pipeline.c): a checkpoint of another
     * configuration is not resumed */
    snprintf(buf, n, "%016llx", (unsigned long long)tp_config_hash_prefixes(cfg, pipeline_find("sae")->depends));
}

static void ckpt_path(const sae_job *j, int64_t step, char *out, size_t n)
{
    char file[64];
    snprintf(file, sizeof file, "checkpoint-%lld.safetensors", (long long)step);
    fs_join(out, n, j->dir, file);
}

/* Rank 0: every SAE's state at this step, then the JSON that names it (the commit
 * point), then the previous step's files go. */
static tp_status write_checkpoint(const tp_config *cfg, const char *run_dir, sae_job *jobs, int n, const position *p,
                                  int64_t prev_step)
{
    char path[4300], key[32];
    for (int i = 0; i < n; i++) {
        TP_CHECK(fs_mkdir_p(jobs[i].dir));
        ckpt_path(&jobs[i], p->step, path, sizeof path);
        TP_CHECK(sae_save(&jobs[i].m, path));
    }
    key_hash(cfg, key, sizeof key);
    json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:I}", "key", key, "step", (json_int_t)p->step, "epoch",
                          (json_int_t)p->epoch, "window", (json_int_t)p->window, "batch", (json_int_t)p->batch);
    char rdir[4200];
    TP_CHECK(fs_mkdir_p(fs_join(rdir, sizeof rdir, run_dir, "results")));
    tp_status st = fs_write_json(fs_join(path, sizeof path, rdir, "sae_checkpoint.json"), j);
    json_decref(j);
    TP_CHECK(st);
    if (prev_step >= 0 && prev_step != p->step)
        for (int i = 0; i < n; i++) {
            ckpt_path(&jobs[i], prev_step, path, sizeof path);
            unlink(path);
        }
    return TP_OK;
}

/* The checkpoint to resume from, if any matches this configuration (every rank reads it). */
static int read_checkpoint(const tp_config *cfg, const char *run_dir, position *p)
{
    char path[4300], key[32];
    fs_join(path, sizeof path, run_dir, "results/sae_checkpoint.json");
    json_t *j = json_load_file(path, 0, NULL);
    if (!j) return 0;
    key_hash(cfg, key, sizeof key);
    const char *k = json_string_value(json_object_get(j, "key"));
    int ok = k && !strcmp(k, key);
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
static tp_status evaluate_ce(const tp_config *cfg, const char *store_path, tp_model *model, tp_tokenizer *tok,
                             sae_job *jobs, int n, MPI_Comm comm)
{
    int64_t ndocs = tp_config_int(cfg, "sae.eval.num_samples"), nexcl = 0;
    if (ndocs == 0) return TP_OK;
    double t0 = tp_now();
    tp_forward *f = NULL;
    tp_dataset text = {0};
    int64_t *excl = NULL;
    tp_status st = store_dataset_length_serial(store_path, "doc_index", &nexcl);
    if (st == TP_OK) {
        excl = tp_malloc((size_t)(nexcl ? nexcl : 1) * sizeof *excl);
        st = !excl ? TP_ERR_NOMEM : nexcl ? store_read_i64_serial(store_path, "doc_index", 0, nexcl, excl) : TP_OK;
    }
    /* Documents the capture did not sample: text the SAE never saw. */
    if (st == TP_OK)
        st = sae_ce_text_open(cfg, tok, model->cfg.eos_token_id, excl, (size_t)nexcl, ndocs,
                              (uint64_t)tp_config_int(cfg, "data.seed") + 7919u, &text);
    int batch = (int)tp_config_int(cfg, "forward.batch_size");
    if (st == TP_OK) st = forward_new(model, batch, text.seq_len, &f);
    if ((st = dist_agree(comm, st, "sae CE evaluation")) != TP_OK) goto done;
    int skip_first = tp_config_bool(cfg, "capture.mask_first");
    int32_t bos = tp_config_bool(cfg, "capture.mask_bos") ? model->cfg.bos_token_id : -1;
    for (int i = 0; i < n; i++) {
        int L;
        tp_hook_point pt;
        st = hooks_parse_name(&model->cfg, jobs[i].name, &L, &pt);
        if ((st = dist_agree(comm, st, "sae CE evaluation")) != TP_OK) goto done;
        sae_ce_result r;
        if ((st = sae_ce_evaluate(f, &text.seqs, batch, L, pt, &jobs[i].m, skip_first, bos, comm, &r)) != TP_OK)
            goto done;
        if (jobs[i].eval) {
            json_object_set_new(jobs[i].eval, "ce", json_pack("{s:f, s:f, s:f, s:o, s:f, s:f, s:I, s:I}", "ce_clean",
                r.ce_clean, "ce_zero_ablation", r.ce_zero, "ce_sae", r.ce_sae, "ce_loss_recovered",
                isfinite(r.recovered) ? json_real(r.recovered) : json_null(), "kl_sae", r.kl_sae, "kl_zero_ablation",
                r.kl_zero, "tokens", (json_int_t)r.tokens, "documents", (json_int_t)text.ndocs));
            tp_log_info("sae: %s: CE clean %.4f, SAE %.4f, zero %.4f -> %.1f%% recovered, KL %.4f (%lld held-out tokens)",
                        jobs[i].name, r.ce_clean, r.ce_sae, r.ce_zero, 100 * r.recovered, r.kl_sae, (long long)r.tokens);
        }
    }
    tp_log_info("sae: CE evaluation on %zu held-out documents in %.1f s", text.ndocs, tp_now() - t0);
done:
    forward_free(f);
    dataset_close(&text);
    free(excl);
    return st;
}

/* Rank 0, after the parallel store is closed: results/features_catalog.json. */
/* model and tok may be NULL: no logit attribution and no token text then. */
static tp_status write_catalog(const tp_config *cfg, const char *run_dir, const char *store_path, const tp_model *model,
                               const tp_tokenizer *tok, sae_job *jobs, int n)
{
    double t0 = tp_now();
    corpus *corp = NULL;
    if (corpus_open(tp_config_str(cfg, "data.corpus"), tp_config_bool(cfg, "data.skip_malformed"), &corp) != TP_OK) {
        tp_log_warn("sae: features catalog without corpus domains: %s", tp_err_msg());
        corp = NULL;
    }
    json_t *saes = json_array();
    tp_status st = TP_OK;
    for (int i = 0; i < n && st == TP_OK; i++) {
        features_catalog_input in = {.sae = &jobs[i].m, .hook_name = jobs[i].name, .layer = jobs[i].layer,
                                     .rows = jobs[i].eval_x, .row_index = jobs[i].eval_rows, .n = jobs[i].n_eval,
                                     .store_path = store_path, .corpus = corp, .model = model, .tok = tok};
        features_catalog_default_options(&in.opt);
        in.opt.top_k = tp_config_int(cfg, "sae.catalog.top_k");
        in.opt.context_before = tp_config_int(cfg, "sae.catalog.context");
        in.opt.max_detailed = tp_config_int(cfg, "sae.catalog.max_detailed");
        in.opt.seed = (uint64_t)tp_config_int(cfg, "sae.seed");
        json_t *layer = NULL;
        st = features_catalog_build(&in, &layer);
        if (st == TP_OK) json_array_append_new(saes, layer);
    }
    if (st == TP_OK) {
        json_t *doc = features_catalog_document(saes);
        saes = NULL;
        char out[4300];
        st = fs_write_json_compact(fs_join(out, sizeof out, run_dir, "results/features_catalog.json"), doc);
        json_decref(doc);
        if (st == TP_OK) tp_log_info("sae: features catalog of %d SAE(s) -> %s (%.1f s)", n, out, tp_now() - t0);
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

tp_status sae_phase_run(const tp_config *cfg, const char *run_dir)
{
    if (tp_config_bool(cfg, "sae.skip")) {
        tp_log_info("sae: skipped (sae.skip)");
        return TP_OK;
    }
    MPI_Comm comm = MPI_COMM_WORLD;
    int rank = dist_rank(), size = dist_size();
    char path[4200];
    fs_join(path, sizeof path, run_dir, "activations.h5");
    tp_store *s = NULL;
    row_stream *rs = NULL;
    sae_job *jobs = NULL;
    tp_model *model = NULL;
    tp_tokenizer *tok = NULL;
    int n = 0, *acts = NULL;
    double t_start = tp_now();
    tp_status st = store_open_read(path, comm, &s);
    if (st != TP_OK) return st;
    int cap = store_num_acts(s) ? store_num_acts(s) : 1;
    acts = tp_malloc((size_t)cap * sizeof *acts);
    jobs = tp_calloc((size_t)cap, sizeof *jobs);
    if (!acts || !jobs) { st = TP_ERR_NOMEM; goto done; }
    TP_CHECK_GOTO(hook_select(cfg, "sae.hooks", s, path, acts, &n, cap), st, done);
    TP_CHECK_GOTO(hook_select_require_complete(s, path, "sae", acts, n), st, done);
    for (int i = 0; i < n; i++) {
        const store_act_spec *a = store_act(s, acts[i]);
        snprintf(jobs[i].name, sizeof jobs[i].name, "%s", a->name);
        jobs[i].act = acts[i], jobs[i].layer = hook_select_layer(a->name), jobs[i].d = a->cols;
        job_dir(run_dir, a->name, jobs[i].dir, sizeof jobs[i].dir);
    }

    row_stream_options ro = {.chunk_rows = tp_config_int(cfg, "sae.chunk_rows"),
                             .window_chunks = tp_config_int(cfg, "sae.window_chunks"),
                             .eval_fraction = tp_config_float(cfg, "sae.eval_fraction"),
                             .seed = (uint64_t)tp_config_int(cfg, "sae.seed")};
    TP_CHECK_GOTO(row_stream_open(s, comm, acts, n, &ro, &rs), st, done);
    const int64_t B = tp_config_int(cfg, "sae.batch_size"), E = tp_config_int(cfg, "sae.num_epochs");
    const int64_t W = row_stream_windows(rs), train_rows = row_stream_train_rows(rs);
    int64_t T = 0;
    for (int64_t e = 0; e < E; e++)
        for (int64_t w = 0; w < W; w++) T += (row_stream_window_rows(rs, e, w) + B - 1) / B;
    const int64_t local_max = (B + size - 1) / size + 1;
    tp_log_info("sae: %d SAE(s) on %s: %lld training rows, %lld held out, %lld epochs x %lld windows, %lld steps of "
                "%lld rows over %d rank(s)", n, path, (long long)train_rows, (long long)row_stream_eval_rows(rs),
                (long long)E, (long long)W, (long long)T, (long long)B, size);

    /* Models: from the checkpoint, or initialised on the first window's rows. */
    position pos = {0};
    int resume = read_checkpoint(cfg, run_dir, &pos);
    for (int i = 0; i < n && resume; i++) {
        char cp[4300];
        ckpt_path(&jobs[i], pos.step, cp, sizeof cp);
        if (access(cp, R_OK) != 0) resume = 0;
    }
    int all_resume = resume;
    MPI_CHECK_GOTO(MPI_Allreduce(&resume, &all_resume, 1, MPI_INT, MPI_MIN, comm), st, done);
    resume = all_resume;
    if (!resume) pos = (position){0};
    for (int i = 0; i < n; i++) {
        sae_config c;
        TP_CHECK_GOTO(make_config(cfg, jobs[i].d, train_rows, T, &c), st, done);
        tp_status lst;
        if (resume) {
            char cp[4300];
            ckpt_path(&jobs[i], pos.step, cp, sizeof cp);
            lst = sae_load(cp, local_max, &jobs[i].m);
        } else {
            lst = sae_init(&jobs[i].m, &c, local_max);
            if (lst == TP_OK) lst = sae_init_weights(&jobs[i].m, (uint64_t)tp_config_int(cfg, "sae.seed") + (uint64_t)i);
        }
        if (lst == TP_OK && resume && jobs[i].m.step != pos.step)
            lst = tp_err(TP_ERR_FORMAT, "sae: checkpoint of %s is at step %lld, results/sae_checkpoint.json says %lld",
                         jobs[i].name, (long long)jobs[i].m.step, (long long)pos.step);
        jobs[i].ready = lst == TP_OK || (resume && jobs[i].m.params);
        TP_CHECK_GOTO(dist_agree(comm, lst, "sae"), st, done);
        if (rank == 0) jobs[i].curve = json_array();
    }
    if (resume) {
        tp_log_info("sae: resuming at step %lld of %lld (epoch %lld, window %lld)", (long long)pos.step, (long long)T,
                    (long long)pos.epoch, (long long)pos.window);
    } else {
        int64_t m0;
        float *const *rows;
        TP_CHECK_GOTO(row_stream_read_window(rs, 0, 0, &m0, &rows, NULL), st, done);
        int64_t lo, hi;
        row_stream_share(m0, rank, size, &lo, &hi);
        for (int i = 0; i < n; i++) {
            const float *xs = rows[i] + lo * jobs[i].d;
            TP_CHECK_GOTO(sae_compute_input_scale(xs, hi - lo, jobs[i].d, comm, &jobs[i].m.input_scale), st, done);
            TP_CHECK_GOTO(sae_init_b_dec(&jobs[i].m, xs, hi - lo, comm, jobs[i].m.cfg.b_dec_init, 100), st, done);
        }
    }

    /* Training. */
    const int64_t ck_every = tp_config_int(cfg, "sae.checkpoint_every");
    const int64_t log_every = T / 200 > 1 ? T / 200 : 1;
    const char *fault = getenv("TP_FAULT_AFTER_STEPS"), *fault_rank_s = getenv("TP_FAULT_SAE_RANK");
    long fault_after = fault ? atol(fault) : -1;
    int fault_rank = fault_rank_s ? atoi(fault_rank_s) : 0;
    int64_t steps_here = 0, prev_ck = resume ? pos.step : -1;
    double rows_done = 0, t_train = tp_now();
    tp_progress prog;
    tp_progress_begin(&prog, "sae", "steps", (uint64_t)(T - pos.step));
    for (int64_t e = pos.epoch; e < E; e++) {
        for (int64_t w = (e == pos.epoch ? pos.window : 0); w < W; w++) {
            int64_t m;
            float *const *rows;
            TP_CHECK_GOTO(row_stream_read_window(rs, e, w, &m, &rows, NULL), st, done);
            int64_t nb = (m + B - 1) / B;
            for (int64_t b = (e == pos.epoch && w == pos.window ? pos.batch : 0); b < nb; b++) {
                int64_t b0 = b * B, bn = m - b0 < B ? m - b0 : B, lo, hi;
                row_stream_share(bn, rank, size, &lo, &hi);
                for (int i = 0; i < n; i++)
                    TP_CHECK_GOTO(sae_train_step(&jobs[i].m, rows[i] + (b0 + lo) * jobs[i].d, hi - lo, comm,
                                                 &jobs[i].last), st, done);
                rows_done += (double)bn;
                steps_here++;
                /* The position after this step: the next batch. */
                position next = {.step = jobs[0].m.step, .epoch = e, .window = w, .batch = b + 1};
                if (next.batch == nb) next.batch = 0, next.window = w + 1;
                if (next.window == W) next.window = 0, next.epoch = e + 1;
                if (rank == 0 && (next.step % log_every == 0 || next.step == T))
                    for (int i = 0; i < n; i++) {
                        const sae_metrics *mt = &jobs[i].last;
                        json_array_append_new(jobs[i].curve, json_pack("{s:I, s:f, s:f, s:f, s:f, s:f}", "step",
                            (json_int_t)mt->step, "loss", mt->loss, "fvu", mt->fvu, "l0", mt->l0, "dead_fraction",
                            mt->dead_frac, "lr", mt->lr));
                    }
                if ((ck_every > 0 && next.step % ck_every == 0) || next.step == T) {
                    tp_status cst = rank == 0 ? write_checkpoint(cfg, run_dir, jobs, n, &next, prev_ck) : TP_OK;
                    TP_CHECK_GOTO(dist_agree(comm, cst, "sae checkpoint"), st, done);
                    prev_ck = next.step;
                }
                double el = tp_now() - t_train;
                tp_progress_note(&prog, "%.0f rows/s; %s: loss %.4g, FVU %.3f, L0 %.1f, dead %.1f%%",
                                 el > 0 ? rows_done / el : 0.0, jobs[0].name, jobs[0].last.loss, jobs[0].last.fvu,
                                 jobs[0].last.l0, 100 * jobs[0].last.dead_frac);
                tp_progress_add(&prog, 1);
                if (fault_after >= 0 && steps_here >= fault_after && rank == fault_rank) {
                    tp_log_rank("sae: TP_FAULT_AFTER_STEPS=%ld reached, killing this rank", fault_after);
                    raise(SIGKILL);
                }
            }
        }
    }
    tp_progress_end(&prog);
    double train_s = tp_now() - t_train;

    /* Evaluation on the held-out rows. */
    for (int i = 0; i < n; i++)
        TP_CHECK_GOTO(evaluate_rows(rs, i, &jobs[i], tp_config_int(cfg, "sae.eval.rows"), comm), st, done);
    row_stream_close(rs);
    rs = NULL;
    st = store_close(s);
    s = NULL;
    if (st != TP_OK) goto done;
    /* The model and tokenizer, opened once: the CE evaluation needs them on every
     * rank; the catalog (rank 0) does without them if they cannot be opened. */
    {
        tp_status mst = model_io_open(cfg, &model, &tok);
        if (mst != TP_OK && tp_config_int(cfg, "sae.eval.num_samples") == 0) {
            tp_log_warn("sae: features catalog without logit attribution and token text: %s", tp_err_msg());
            model = NULL, tok = NULL, mst = TP_OK;
        }
        TP_CHECK_GOTO(dist_agree(comm, mst, "sae CE evaluation"), st, done);
    }
    TP_CHECK_GOTO(evaluate_ce(cfg, path, model, tok, jobs, n, comm), st, done);

    /* Rank 0 writes the exports and the summary. */
    tp_status w = TP_OK;
    if (rank == 0) {
        json_t *list = json_array();
        for (int i = 0; i < n && w == TP_OK; i++) {
            sae_job *j = &jobs[i];
            const sae_metrics *mt = &j->last;
            json_t *train = json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "steps", (json_int_t)j->m.step, "rows_per_step",
                                      (json_int_t)B, "loss", mt->loss, "fvu_last_batch", mt->fvu, "l0_last_batch", mt->l0,
                                      "dead_fraction", mt->dead_frac, "seconds", train_s);
            json_t *extra = json_pack("{s:O, s:O}", "training", train, "evaluation", j->eval);
            w = sae_export_saelens(&j->m, j->dir, j->name, tp_config_str(cfg, "model.path"), extra);
            json_decref(extra);
            json_array_append_new(list, json_pack("{s:s, s:i, s:s, s:s, s:I, s:I, s:I, s:o, s:O, s:o}", "hook", j->name,
                "layer", j->layer, "dir", j->dir, "architecture", sae_arch_name(j->m.cfg.arch), "d_in",
                (json_int_t)j->m.cfg.d_in, "d_sae", (json_int_t)j->m.cfg.d_sae, "k", (json_int_t)j->m.cfg.k,
                "training", train, "evaluation", j->eval, "curve", j->curve));
            j->curve = NULL;
        }
        if (w == TP_OK) {
            json_t *doc = json_pack("{s:s, s:i, s:I, s:I, s:I, s:f, s:o, s:o}", "store", path, "ranks", size,
                                    "train_rows", (json_int_t)train_rows, "epochs", (json_int_t)E, "steps", (json_int_t)T,
                                    "wall_s", tp_now() - t_start, "definitions", definitions(), "saes", list);
            char out[4300];
            w = fs_write_json(fs_join(out, sizeof out, run_dir, "results/sae_summary.json"), doc);
            json_decref(doc);
            if (w == TP_OK) tp_log_info("sae: %d SAE(s) -> %s", n, out);
        } else {
            json_decref(list);
        }
        if (w == TP_OK) w = write_catalog(cfg, run_dir, path, model, tok, jobs, n);
        for (int i = 0; i < n; i++)
            if (jobs[i].eval)
                tp_log_info("sae: %s: held-out FVU %.3f, L0 %.1f, dead %lld of %lld latents", jobs[i].name,
                            json_real_value(json_object_get(jobs[i].eval, "fvu")),
                            json_real_value(json_object_get(jobs[i].eval, "l0")),
                            (long long)json_integer_value(json_object_get(jobs[i].eval, "dead_latents")),
                            (long long)jobs[i].m.cfg.d_sae);
    }
    st = dist_agree(comm, w, "sae (writing results)");
done:
    row_stream_close(rs);
    if (s) store_close_after_error(s);
    for (int i = 0; jobs && i < n; i++) {
        if (jobs[i].ready) sae_free(&jobs[i].m);
        json_decref(jobs[i].curve);
        json_decref(jobs[i].eval);
        free(jobs[i].eval_x), free(jobs[i].eval_rows);
    }
    free(jobs), free(acts);
    tokenizer_free(tok);
    model_close(model);
    return st;
}
