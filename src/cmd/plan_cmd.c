/* plan_cmd.c — `transpolmo plan`: gathers the planner's inputs from the run's
 * configuration (the phases' own settings structs), the model's config.json (or the
 * built-in shapes) and the calibration file, then prints plan_model's estimate as a
 * table or JSON. */
#define _GNU_SOURCE   /* sysconf names, strcasestr */
#include "cmd/plan_cmd.h"
#include "cmd/plan_calib.h"
#include "cmd/plan_model.h"

#include "analysis/capture/capture_phase.h"
#include "analysis/geometry/geometry_phase.h"
#include "analysis/hook_select.h"
#include "analysis/row_stream.h"
#include "analysis/sae/sae_phase.h"
#include "core/dtype.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "data/dataset.h"
#include "dist/world.h"
#include "model/hooks.h"
#include "model/model_io.h"

#include <dirent.h>
#include <jansson.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GIB (1024.0 * 1024.0 * 1024.0)
#define MIB (1024.0 * 1024.0)

/* A positive integer option; absent: def. */
static tp_status opt_int(tp_cli *cli, const char *name, int64_t lo, int64_t def, int64_t *out)
{
    const char *v = cli_take_value(cli, name);
    *out = def;
    if (!v) return TP_OK;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return tp_err(TP_ERR_CONFIG, "plan: %s '%s': must be an integer >= %lld", name, v, (long long)lo);
    *out = x;
    return TP_OK;
}

static tp_status opt_num(tp_cli *cli, const char *name, double def, double *out)
{
    const char *v = cli_take_value(cli, name);
    *out = def;
    if (!v) return TP_OK;
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || !(x > 0) || !isfinite(x))
        return tp_err(TP_ERR_CONFIG, "plan: %s '%s': must be a positive number", name, v);
    *out = x;
    return TP_OK;
}

static double node_mem_gib(void)
{
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page / GIB : 0;
}

/* Bytes of the .safetensors files in dir, 0 if none. */
static double safetensors_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    double total = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors")) continue;
        char p[TP_PATH_MAX];
        struct stat sb;
        if (fs_join(p, sizeof p, dir, e->d_name) == TP_OK && stat(p, &sb) == 0) total += (double)sb.st_size;
    }
    if (d) closedir(d);
    return total;
}

/* The model's shapes: --model-config FILE or NAME, else <model.path>/config.json, else
 * the built-in shape whose name model.path contains. */
static tp_status load_shapes(const char *given, const char *model_dir, plan_input *in, char *origin, size_t on)
{
    char path[TP_PATH_MAX];
    if (given) {
        if (access(given, R_OK) == 0) {
            TP_CHECK(model_config_load(given, &in->mc));
            snprintf(origin, on, "%s", given);
        } else {
            tp_status st = plan_builtin_shape(given, &in->mc);
            if (st != TP_OK)
                return tp_err(TP_ERR_CONFIG, "plan: --model-config %s: no such file and no built-in shape of that name "
                              "(known: %s)", given, plan_builtin_names());
            snprintf(origin, on, "built-in shape of %s (docs/planning.md)", in->mc.name);
        }
    } else {
        TP_CHECK(fs_join(path, sizeof path, model_dir, "config.json"));
        if (access(path, R_OK) == 0) {
            TP_CHECK(model_config_load(path, &in->mc));
            snprintf(origin, on, "%s", path);
        } else {
            const char *base = strrchr(model_dir, '/');
            base = base ? base + 1 : model_dir;
            tp_status st = TP_ERR_CONFIG;
            static const char *const keys[] = {"1124-7B", "1124-13B", "0325-32B", "0425-1B"};
            static const char *const names[] = {"7b", "13b", "32b", "1b"};
            for (size_t i = 0; i < 4 && st != TP_OK; i++)
                if (strcasestr(base, keys[i])) st = plan_builtin_shape(names[i], &in->mc);
            if (st != TP_OK)
                return tp_err(TP_ERR_CONFIG, "plan: %s cannot be read and model.path names no built-in shape; give "
                              "--model-config FILE (a config.json) or one of %s", path, plan_builtin_names());
            snprintf(origin, on, "built-in shape of %s (%s absent; docs/planning.md)", in->mc.name, path);
        }
    }
    /* stored dtype: from the checkpoint's size when it is here, else config.json's */
    double elems = (double)in->mc.vocab_size * in->mc.hidden_size * (in->mc.tie_word_embeddings ? 1 : 2);
    double d = in->mc.hidden_size, qd = (double)in->mc.num_heads * in->mc.head_dim,
           kd = (double)in->mc.num_kv_heads * in->mc.head_dim;
    elems += in->mc.num_layers * (2 * d * qd + 2 * d * kd + 3 * d * in->mc.intermediate_size);
    double file = safetensors_bytes(model_dir);
    if (!given && file > 0) in->weight_bytes = file / elems > 3 ? 4 : 2;
    else in->weight_bytes = !strcmp(in->mc.torch_dtype, "float32") ? 4 : 2;
    return TP_OK;
}

/* capture.hooks x layers -> the points the store will hold (as capture_phase
 * resolves them). */
static tp_status resolve_points(const capture_settings *cs, const tp_settings *set, plan_input *in, char names[][64])
{
    const tp_model_config *c = &in->mc;
    in->n_points = 0;
    in->last_layer = -1;
    for (size_t i = 0; i < cs->n_hooks; i++) {
        const char *h = cs->hooks[i];
        int full = !strncmp(h, "blocks.", 7) || !strncmp(h, "model.", 6) || !strcmp(h, "hook_embed") ||
                   !strcmp(h, "ln_final.hook_normalized");
        int L;
        tp_hook_point pt;
        size_t nl = full ? 1 : set->n_layers ? set->n_layers : (size_t)c->num_layers;
        for (size_t k = 0; k < nl; k++) {
            if (full) TP_CHECK(hooks_parse_name(c, h, &L, &pt));
            else {
                char probe[96];
                snprintf(probe, sizeof probe, "blocks.0.%s", h);
                if (hooks_parse_name(c, probe, &L, &pt) != TP_OK)
                    return tp_err(TP_ERR_CONFIG, "capture.hooks: unknown capture point '%s' (see docs/hooks.md)", h);
                L = set->n_layers ? (int)set->layers[k] : (int)k;
                if (L < 0 || L >= c->num_layers)
                    return tp_err(TP_ERR_CONFIG, "layers (%s): layer %d, but the model has %d", set->layers_origin, L,
                                  c->num_layers);
            }
            char name[64];
            hooks_point_name(L, pt, name, sizeof name);
            int dup = 0;
            for (int q = 0; q < in->n_points; q++) dup |= !strcmp(names[q], name);
            if (dup) continue;
            if (in->n_points == PLAN_MAX_POINTS) return tp_err(TP_ERR_CONFIG, "capture.hooks: too many capture points");
            int64_t shape[4];
            int nd = hooks_point_shape(c, pt, 1, 1, shape);
            int q = in->n_points++;
            snprintf(names[q], 64, "%s", name);
            in->point_cols[q] = nd == 3 ? shape[2] : shape[2] * shape[3];
            int lay = pt >= TP_HOOK_LAYER_COUNT ? (pt == TP_HOOK_LN_FINAL ? c->num_layers - 1 : 0) : L;
            in->point_layer[q] = pt >= TP_HOOK_LAYER_COUNT ? -1 : L;
            if (lay > in->last_layer) in->last_layer = lay;
        }
    }
    if (!in->n_points) return tp_err(TP_ERR_CONFIG, "capture.hooks is empty: nothing to capture");
    return TP_OK;
}

/* geometry.hooks / sae.hooks against the points capture makes (hook_select.h's rule). */
static void select_points(const hook_request *req, const plan_input *in, char names[][64], bool *sel)
{
    for (int i = 0; i < in->n_points; i++) {
        int L = hook_select_layer(names[i]), layer_ok = L < 0 || !req->n_layers;
        for (size_t k = 0; !layer_ok && k < req->n_layers; k++) layer_ok = req->layers[k] == L;
        sel[i] = false;
        if (!req->n_names) { sel[i] = layer_ok; continue; }
        for (size_t h = 0; h < req->n_names && !sel[i]; h++) {
            const char *n = req->names[h];
            size_t ln = strlen(names[i]), lh = strlen(n);
            if (!strcmp(names[i], n)) sel[i] = true;
            else if (L >= 0 && layer_ok && ln > lh && names[i][ln - lh - 1] == '.' && !strcmp(names[i] + ln - lh, n))
                sel[i] = true;
        }
    }
}

/* The held-out documents the SAE phase will take (row_stream's rule, on each
 * document's rows less the first of each sequence, which capture masks): their
 * unmasked rows, and the tokens of the first sae.eval.num_samples of them in the
 * phase's round-robin order over the domains (the CE evaluation's text). Leaves the
 * fields at 0 (the model then uses eval_fraction) when the domains cannot be read. */
static void count_held_out(const tp_dataset *ds, const sae_settings *ss, plan_input *in)
{
    const tp_sequences *q = &ds->seqs;
    int64_t D = (int64_t)q->n_docs, *rows = tp_malloc((size_t)(D ? D : 1) * sizeof *rows);
    int32_t *dom = tp_malloc((size_t)(D ? D : 1) * sizeof *dom);
    uint8_t *held = tp_calloc((size_t)(D ? D : 1), 1);
    char **names = NULL;
    int nn = 0;
    if (!rows || !dom || !held || D != (int64_t)ds->ndocs || dataset_domains(ds, dom, &names, &nn) != TP_OK) {
        tp_err_clear();
        goto done;
    }
    for (int64_t k = 0; k < D; k++) {
        int64_t t = (int64_t)(q->doc_start[k + 1] - q->doc_start[k]);
        rows[k] = t - (t + ds->seq_len - 1) / ds->seq_len;
    }
    for (int d = 0; ss->eval_fraction > 0 && d < nn; d++)
        if (row_stream_hold_out_domain(rows, dom, D, d, ss->eval_fraction, ss->seed, held) != TP_OK) goto done;
    int64_t taken = 0;
    for (int64_t round = 0, added = 1; added; round++) {
        added = 0;
        for (int d = 0; d < nn; d++) {
            int64_t seen = 0;
            for (int64_t k = 0; k < D; k++) {
                if (!held[k] || dom[k] != d || seen++ != round) continue;
                if (taken++ < ss->eval_num_samples)
                    in->ce_tokens += (int64_t)(q->doc_start[k + 1] - q->doc_start[k]);
                added = 1;
                break;
            }
        }
    }
    for (int64_t k = 0; k < D; k++) in->eval_rows += held[k] ? rows[k] : 0;
done:
    dataset_free_domains(names, nn);
    free(rows), free(dom), free(held);
}

/* The sample's rows: counted by tokenizing it (the model's tokenizer, else the
 * bundled model's), else num_samples x seq_len. */
static void count_rows(const tp_settings *set, const sae_settings *ss, plan_input *in, int64_t rows_given, char *origin,
                       size_t on)
{
    in->seq_len = set->data.seq_len, in->batch = set->batch_size;
    if (rows_given > 0) {
        in->rows = rows_given, in->docs = set->data.num_samples;
        in->seqs = (rows_given + in->seq_len - 1) / in->seq_len;
        snprintf(origin, on, "--rows");
        return;
    }
    const char *dirs[] = {set->model.dir, "models/olmo2-tiny"};
    for (int i = 0; i < 2; i++) {
        tp_tokenizer *tok = NULL;
        if (model_io_open_tokenizer(dirs[i], &tok) != TP_OK) continue;
        tp_dataset ds;
        double t0 = tp_now();
        tp_status st = dataset_open(&set->data, tok, in->mc.eos_token_id, "plan", &ds);
        if (st == TP_OK) {
            in->rows = (int64_t)ds.seqs.n_tokens, in->seqs = (int64_t)ds.seqs.n_seqs, in->docs = (int64_t)ds.ndocs;
            in->tokenizer_vocab = tokenizer_vocab_size(tok);
            count_held_out(&ds, ss, in);
            snprintf(origin, on, "counted: %lld documents of %s tokenized with %s/tokenizer.json in %.1f s%s",
                     (long long)ds.ndocs, set->data.corpus, dirs[i], tp_now() - t0,
                     i ? " (not the model's own tokenizer: its counts may differ)" : "");
            dataset_close(&ds);
        }
        tokenizer_free(tok);
        if (st == TP_OK) return;
    }
    in->docs = set->data.num_samples, in->seqs = set->data.num_samples;
    in->rows = set->data.num_samples * in->seq_len;
    snprintf(origin, on, "assumed: data.num_samples x data.seq_len (the corpus or a tokenizer could not be read; "
                         "--rows N to give it)");
}

static void human_bytes(double b, char *out, size_t n)
{
    if (b >= GIB) snprintf(out, n, "%.1f GiB", b / GIB);
    else if (b >= MIB) snprintf(out, n, "%.0f MiB", b / MIB);
    else if (b > 0) snprintf(out, n, "%.0f KiB", b / 1024);
    else snprintf(out, n, "0");
}

static void human_time(double s, char *out, size_t n)
{
    if (s >= 3600) snprintf(out, n, "%.1f h", s / 3600);
    else if (s >= 60) snprintf(out, n, "%.1f min", s / 60);
    else snprintf(out, n, "%.1f s", s);
}

static void print_table(const plan_input *in, const plan_rates *rt, const plan_result *r, const char *cfg_path,
                        const char *shape_origin, const char *rows_origin)
{
    char w[32];
    human_bytes(r->weights_bytes, w, sizeof w);
    printf("plan: %s on %d rank(s), %d node(s), %d rank(s)/node, %.0f thread(s)/rank%s\n", cfg_path, in->ranks, in->nodes,
           r->ranks_per_node, r->threads_per_rank, in->gpus_per_rank ? ", GPUs (rough: built-in rates)" : "");
    printf("model: %s: d %d, %d layers, MLP %d, %d/%d heads, vocab %d, %s weights %s  [%s]\n", in->mc.name,
           in->mc.hidden_size, in->mc.num_layers, in->mc.intermediate_size, in->mc.num_heads, in->mc.num_kv_heads,
           in->mc.vocab_size, in->weight_bytes > 3 ? "f32" : "bf16", w, shape_origin);
    printf("rows: %lld tokens in %lld sequences of %lld documents  [%s]\n", (long long)in->rows, (long long)in->seqs,
           (long long)in->docs, rows_origin);
    printf("rates: %s\n\n", rt->source);
    printf("%-9s %10s %12s %12s %10s %10s  %s\n", "phase", "time", "peak RSS/rk", "(mmap shared)", "disk", "comm/rank",
           "what");
    for (int i = 0; i < PLAN_NPHASES; i++) {
        const plan_phase *p = &r->ph[i];
        char t[32], m[32], s[32], d[32], c[32];
        human_time(p->time_s, t, sizeof t);
        human_bytes(p->rss_bytes, m, sizeof m);
        human_bytes(p->shared_bytes, s, sizeof s);
        human_bytes(p->disk_bytes, d, sizeof d);
        human_bytes(p->comm_bytes, c, sizeof c);
        printf("%-9s %10s %12s %12s %10s %10s  %s%s%s\n", p->name, t, m, s, d, c, p->note, p->peak[0] ? "; peak: " : "",
               p->peak);
    }
    char t[32], b[32];
    human_time(r->total_time_s, t, sizeof t);
    human_bytes(r->rank_budget_bytes, b, sizeof b);
    printf("\ntotal %s; memory budget %s per rank (%s)\n", t, b,
           in->mem_per_rank_gib > 0 ? "--mem-per-rank" : "node memory / ranks per node");
    if (!r->fits) printf("WARNING: does not fit: %s\n", r->advice);
    else printf("fits: every phase's peak is within the budget (mmap'd weights counted once per node)\n");
}

static json_t *result_json(const plan_input *in, const plan_rates *rt, const plan_result *r, const char *cfg_path,
                           const char *shape_origin, const char *rows_origin)
{
    json_t *phases = json_array();
    for (int i = 0; i < PLAN_NPHASES; i++) {
        const plan_phase *p = &r->ph[i];
        json_array_append_new(phases, json_pack("{s:s, s:b, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:s, s:s}", "phase",
            p->name, "modelled", p->modelled, "time_s", p->time_s, "compute_s", p->compute_s, "io_s", p->io_s, "comm_s",
            p->comm_s, "peak_rss_bytes", p->rss_bytes, "shared_bytes", p->shared_bytes, "disk_bytes", p->disk_bytes,
            "comm_bytes_per_rank", p->comm_bytes, "peak", p->peak, "note", p->note));
    }
    return json_pack("{s:s, s:{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:f}, s:{s:I, s:I, s:I, s:s}, "
                     "s:{s:i, s:i, s:i, s:i, s:f, s:f}, s:{s:s, s:b}, s:o, s:f, s:b, s:s, s:I}",
        "config", cfg_path,
        "model", "name", in->mc.name, "shapes", shape_origin, "hidden", in->mc.hidden_size, "layers", in->mc.num_layers,
        "intermediate", in->mc.intermediate_size, "heads", in->mc.num_heads, "vocab", in->mc.vocab_size,
        "weight_bytes_per_param", in->weight_bytes, "checkpoint_bytes", r->weights_bytes,
        "data", "rows", (json_int_t)in->rows, "sequences", (json_int_t)in->seqs, "documents", (json_int_t)in->docs,
        "rows_origin", rows_origin,
        "machine", "ranks", in->ranks, "nodes", in->nodes, "ranks_per_node", r->ranks_per_node, "gpus_per_rank",
        in->gpus_per_rank, "threads_per_rank", r->threads_per_rank, "budget_bytes_per_rank", r->rank_budget_bytes,
        "rates", "source", rt->source, "calibrated", rt->calibrated,
        "phases", phases, "total_time_s", r->total_time_s, "fits", r->fits, "advice", r->advice,
        "sae_steps", (json_int_t)r->sae_steps);
}

static tp_status run_calibrate(tp_cli *cli, const char *cal_path)
{
    TP_CHECK(cli_reject_rest(cli));
    /* --out FILE names the calibration file here (the common --out is the run dir) */
    const char *origin = tp_config_origin(cli->cfg, "run.out_dir");
    char path[TP_PATH_MAX];
    if (cal_path) TP_CHECK(fs_path(path, sizeof path, "%s", cal_path));
    else if (origin && !strcmp(origin, "--out")) TP_CHECK(fs_path(path, sizeof path, "%s", cli->set.out_dir));
    else TP_CHECK(plan_calib_default_path(path, sizeof path));
    /* the HDF5 timing writes a scratch file beside the calibration file */
    char dir[TP_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0';
    else snprintf(dir, sizeof dir, ".");
    plan_rates r;
    TP_CHECK(plan_calibrate(dir, &r));
    if (dist_rank() != 0) return TP_OK;
    TP_CHECK(plan_calib_save(path, &r));
    tp_log_info("plan --calibrate: wrote %s (base RSS %.0f MiB)", path, r.base_rss_mib);
    return TP_OK;
}

tp_status plan_cmd_run(tp_cli *cli)
{
    bool calibrate = cli_take_flag(cli, "--calibrate"), json = cli_take_flag(cli, "--json");
    const char *cal_path = cli_take_value(cli, "--calibration");
    if (calibrate) return run_calibrate(cli, cal_path);
    const char *model_cfg = cli_take_value(cli, "--model-config");
    int64_t ranks, nodes, gpus, cores, rows;
    double mem, node_mem;
    TP_CHECK(opt_int(cli, "--ranks", 1, 0, &ranks));
    TP_CHECK(opt_int(cli, "--nodes", 1, 1, &nodes));
    TP_CHECK(opt_int(cli, "--gpus-per-rank", 0, 0, &gpus));
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    TP_CHECK(opt_int(cli, "--cores-per-node", 1, online > 0 ? online : 1, &cores));
    TP_CHECK(opt_int(cli, "--rows", 1, 0, &rows));
    TP_CHECK(opt_num(cli, "--mem-per-rank", 0, &mem));
    TP_CHECK(opt_num(cli, "--node-mem", node_mem_gib(), &node_mem));
    const char *pos = cli_take_positional(cli);
    TP_CHECK(cli_reject_rest(cli));
    if (pos) return tp_err(TP_ERR_CONFIG, "plan: '%s' is not a YAML config (CONFIG.yaml, or --config FILE)", pos);
    if (ranks == 0) return tp_err(TP_ERR_CONFIG, "plan: --ranks N is required (the MPI ranks the run will use)");
    if (nodes > ranks) return tp_err(TP_ERR_CONFIG, "plan: --nodes %lld > --ranks %lld", (long long)nodes, (long long)ranks);

    plan_rates rt;
    plan_rates_default(&rt);
    char path[TP_PATH_MAX];
    if (cal_path) {
        if (access(cal_path, R_OK) != 0)
            return tp_err(TP_ERR_CONFIG, "plan: --calibration %s: %s", cal_path, strerror(errno));
        TP_CHECK(fs_path(path, sizeof path, "%s", cal_path));
    } else TP_CHECK(plan_calib_default_path(path, sizeof path));
    int found;
    TP_CHECK(plan_calib_load(path, &rt, &found));

    static plan_input in;
    memset(&in, 0, sizeof in);
    const tp_settings *set = &cli->set;
    char shape_origin[2 * TP_PATH_MAX + 256], rows_origin[TP_PATH_MAX + 256];
    TP_CHECK(load_shapes(model_cfg, set->model.dir, &in, shape_origin, sizeof shape_origin));
    in.upfront = set->model.convert == TP_CONVERT_UPFRONT;
    capture_settings cs;
    geometry_settings gs;
    sae_settings ss;
    TP_CHECK(capture_settings_read(cli->cfg, &cs));
    TP_CHECK(geometry_settings_read(cli->cfg, &gs));
    TP_CHECK(sae_settings_read(cli->cfg, &ss));
    static char names[PLAN_MAX_POINTS][64];
    TP_CHECK(resolve_points(&cs, set, &in, names));
    in.store_dtype_bytes = (double)tp_dtype_size(cs.dtype);
    select_points(&gs.hooks, &in, names, in.point_geo);
    select_points(&ss.hooks, &in, names, in.point_sae);
    count_rows(set, &ss, &in, rows, rows_origin, sizeof rows_origin);
    in.geo_max_rows = gs.max_rows, in.geo_components = gs.pca_components, in.id_sample = gs.id_sample;
    in.id_k = gs.id_k, in.local_sample = gs.local_sample, in.local_k = gs.local_k, in.kmeans_k = gs.kmeans_k;
    in.kmeans_max_iter = gs.kmeans_max_iter, in.kmeans_init_sample = gs.kmeans_init_sample;
    in.sil_sample = gs.kmeans_silhouette_sample, in.pca_svd = gs.pca_method != PCA_METHOD_COV;
    in.sae_skip = ss.skip, in.sae_relu = ss.arch == SAE_RELU, in.sae_expansion = ss.expansion;
    in.sae_hidden = ss.hidden_dim, in.sae_k = ss.k, in.sae_aux_k = ss.arch == SAE_RELU ? 0 : ss.aux_k;
    in.sae_epochs = ss.num_epochs, in.sae_batch = ss.batch_size, in.chunk_rows = ss.chunk_rows;
    in.window_chunks = ss.window_chunks, in.sae_eval_docs = ss.eval_num_samples, in.catalog_top_k = ss.catalog_top_k;
    in.catalog_context = ss.catalog_context, in.catalog_max_detailed = ss.catalog_max_detailed;
    in.eval_fraction = ss.eval_fraction;
    in.ranks = (int)ranks, in.nodes = (int)nodes, in.gpus_per_rank = (int)gpus, in.cores_per_node = (int)cores;
    in.mem_per_rank_gib = mem, in.node_mem_gib = node_mem;

    static plan_result res;
    plan_estimate(&in, &rt, &res);
    if (dist_rank() != 0) return TP_OK;
    const char *cfg_path = tp_config_origin(cli->cfg, "model.path");
    if (!cfg_path) cfg_path = "(defaults)";
    char cfgname[TP_PATH_MAX];
    snprintf(cfgname, sizeof cfgname, "%s", cfg_path);
    char *colon = strrchr(cfgname, ':');
    if (colon) *colon = '\0';
    if (json) {
        json_t *j = result_json(&in, &rt, &res, cfgname, shape_origin, rows_origin);
        json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        printf("\n");
        json_decref(j);
    } else {
        print_table(&in, &rt, &res, cfgname, shape_origin, rows_origin);
    }
    fflush(stdout);
    if (!res.fits) tp_log_warn("plan: a rank will not fit in memory: %s", res.advice);
    return TP_OK;
}
