/* sync_file_range (Linux) starts the store's writeback early; see flush_point below. */
#define _GNU_SOURCE
#include "analysis/capture/capture_phase.h"

#include "model/model_io.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/mpi_check.h"
#include "dist/world.h"
#include "io/corpus.h"
#include "io/dataset.h"
#include "io/sequences.h"
#include "io/store.h"
#include "model/forward.h"
#include "model/hooks.h"

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_POINTS 512
/* Rows written by all ranks between two flush points (a flush makes the rows written
 * since the last one durable, then their units are marked complete): 512 MiB, a few
 * seconds of work at the speeds in BENCHMARKS.md, is what a killed run can lose. */
#define FLUSH_BYTES ((double)(512 << 20))

typedef struct {
    int layer;
    tp_hook_point pt;
    char name[STORE_NAME_MAX];
    int64_t cols;
    float *buf;            /* rows of the current unit */
} point;

/* The unit runs unpadded (forward_run_varlen): the tensor is [rows of the unit, cols]
 * in store order already, so it is one copy. */
static tp_status capture_cb(const tp_hook_info *info, float *data, void *user)
{
    point *p = user;
    memcpy(p->buf, data, (size_t)info->shape[1] * (size_t)p->cols * sizeof(float));
    return TP_OK;
}

static int64_t point_cols(const tp_model_config *c, tp_hook_point pt)
{
    int64_t shape[4];
    int nd = hooks_point_shape(c, pt, 1, 1, shape);
    return nd == 3 ? shape[2] : shape[2] * shape[3];
}

static tp_status add_point(point *pts, int *n, const tp_model_config *c, int layer, tp_hook_point pt)
{
    char name[STORE_NAME_MAX];
    hooks_point_name(layer, pt, name, sizeof name);
    for (int i = 0; i < *n; i++)
        if (!strcmp(pts[i].name, name)) return TP_OK;   /* listed twice (alias): once */
    if (pt == TP_HOOK_PATTERN)
        return tp_err(TP_ERR_CONFIG, "capture.hooks: %s is [heads, T, T] per sequence, not a row per token; "
                      "it cannot go into the activation store", name);
    if (*n == MAX_POINTS) return tp_err(TP_ERR_CONFIG, "capture.hooks: more than %d capture points", MAX_POINTS);
    point *p = &pts[(*n)++];
    memset(p, 0, sizeof *p);
    p->layer = layer, p->pt = pt, p->cols = point_cols(c, pt);
    snprintf(p->name, sizeof p->name, "%s", name);
    return TP_OK;
}

/* capture.hooks x layers -> concrete points, in config order. */
static tp_status resolve_points(const tp_config *cfg, const tp_model *m, point *pts, int *n)
{
    const tp_model_config *c = &m->cfg;
    const char *const *hooks;
    size_t nh = tp_config_str_list(cfg, "capture.hooks", &hooks);
    const int64_t *sel;
    size_t nsel = tp_config_int_list(cfg, "layers", &sel);
    TP_CHECK(model_validate_layers(m, sel, nsel, tp_config_origin(cfg, "layers")));
    if (!nh) return tp_err(TP_ERR_CONFIG, "capture.hooks is empty: nothing to capture");
    *n = 0;
    for (size_t i = 0; i < nh; i++) {
        const char *h = hooks[i];
        int is_full = !strncmp(h, "blocks.", 7) || !strncmp(h, "model.", 6) || !strcmp(h, "hook_embed") ||
                      !strcmp(h, "ln_final.hook_normalized");
        if (is_full) {
            int L;
            tp_hook_point pt;
            TP_CHECK(hooks_parse_name(c, h, &L, &pt));
            TP_CHECK(add_point(pts, n, c, L, pt));
            continue;
        }
        /* A per-layer point: at every selected layer (all when none are). */
        char probe[STORE_NAME_MAX];
        snprintf(probe, sizeof probe, "blocks.0.%s", h);
        int L0;
        tp_hook_point pt;
        if (hooks_parse_name(c, probe, &L0, &pt) != TP_OK)
            return tp_err(TP_ERR_CONFIG, "capture.hooks: unknown capture point '%s' (see docs/hooks.md)", h);
        size_t nl = nsel ? nsel : (size_t)c->num_layers;
        for (size_t k = 0; k < nl; k++) TP_CHECK(add_point(pts, n, c, nsel ? (int)sel[k] : (int)k, pt));
    }
    return TP_OK;
}

static uint64_t fnv_file(const char *path, int *ok)
{
    uint64_t h = 0xcbf29ce484222325ull;
    FILE *f = fopen(path, "rb");
    *ok = f != NULL;
    if (!f) return 0;
    int ch;
    while ((ch = fgetc(f)) != EOF) h = (h ^ (unsigned char)ch) * 0x100000001b3ull;
    fclose(f);
    return h;
}

typedef struct {
    double compute_s, io_s, wait_s;
    int64_t tokens, bytes, units;
} capture_stats;

tp_status capture_phase_run(const tp_config *cfg, const char *run_dir)
{
    int rank = dist_rank(), size = dist_size();
    tp_status st;
    tp_model *m = NULL;
    tp_tokenizer *tok = NULL;
    tp_dataset data = {0};
    tp_forward *f = NULL;
    tp_hooks *hooks = NULL;
    tp_store *store = NULL;
    point *pts = NULL;
    int npts = 0;
    int32_t *ids = NULL, *tokens = NULL, *positions = NULL;
    int *lens = NULL;
    int wb_fd = -1;
    uint8_t *mask = NULL, *done = NULL;
    int64_t *doc_off = NULL, *doc_idx = NULL, *units_row0 = NULL, *my_units = NULL;
    store_act_spec *specs = NULL;
    capture_stats cs = {0};
    double t_start = tp_now();

    TP_CHECK_GOTO(model_io_open(cfg, &m, &tok), st, done);
    const tp_model_config *mc = &m->cfg;
    pts = tp_calloc(MAX_POINTS, sizeof *pts);
    if (!pts) { st = TP_ERR_NOMEM; goto done; }
    TP_CHECK_GOTO(resolve_points(cfg, m, pts, &npts), st, done);

    /* The sample and its sequences: identical on every rank. */
    TP_CHECK_GOTO(dataset_open(cfg, tok, mc->eos_token_id, "capture", &data), st, done);
    const tp_sequences seqs = data.seqs;
    corpus *c = data.corpus;
    const size_t *docs = data.docs;
    size_t ndocs = data.ndocs;
    int seq_len = data.seq_len;
    uint64_t seed = data.seed;
    const char *corpus_spec = tp_config_str(cfg, "data.corpus");
    const char *packing_s = tp_config_str(cfg, "data.packing");
    size_t want = (size_t)tp_config_int(cfg, "data.num_samples");

    /* Units of `batch` sequences; contiguous runs of units per rank, balanced by tokens. */
    int batch = (int)tp_config_int(cfg, "forward.batch_size");
    int64_t n_units = (int64_t)((seqs.n_seqs + (size_t)batch - 1) / (size_t)batch);
    units_row0 = tp_malloc((size_t)(n_units + 1) * sizeof *units_row0);
    if (!units_row0) { st = TP_ERR_NOMEM; goto done; }
    for (int64_t u = 0; u <= n_units; u++) {
        size_t s0 = (size_t)u * (size_t)batch;
        units_row0[u] = (int64_t)(s0 < seqs.n_seqs ? seqs.seq_start[s0] : seqs.n_tokens);
    }
    /* Rank r owns units [cut(r), cut(r+1)), cut(r) being the unit boundary nearest
     * to row r*N/size, so ranks get equal shares of rows up to half a unit. */
    int64_t N = (int64_t)seqs.n_tokens, u_lo = 0, u_hi = 0;
    for (int side = 0; side < 2; side++) {
        int r = rank + side;
        int64_t cut = r >= size ? n_units : 0;
        if (r > 0 && r < size) {
            int64_t target = (int64_t)(((double)N * r) / size), best = INT64_MAX;
            for (int64_t u = 0; u <= n_units; u++) {
                int64_t dist = units_row0[u] > target ? units_row0[u] - target : target - units_row0[u];
                if (dist < best) best = dist, cut = u;
            }
        }
        if (side == 0) u_lo = cut;
        else u_hi = cut;
    }
    if (u_hi < u_lo) u_hi = u_lo;
    int64_t my_n = u_hi - u_lo, max_n = 0;
    MPI_CHECK(MPI_Allreduce(&my_n, &max_n, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));

    /* Store layout and provenance. */
    const char *dtype_s = tp_config_str(cfg, "capture.dtype");
    tp_dtype sdt = !strcmp(dtype_s, "f16") ? TP_DTYPE_F16 : !strcmp(dtype_s, "bf16") ? TP_DTYPE_BF16 : TP_DTYPE_F32;
    specs = tp_calloc((size_t)npts, sizeof *specs);
    if (!specs) { st = TP_ERR_NOMEM; goto done; }
    size_t hooks_len = 1;
    for (int i = 0; i < npts; i++) {
        snprintf(specs[i].name, sizeof specs[i].name, "%s", pts[i].name);
        specs[i].cols = pts[i].cols;
        specs[i].dtype = sdt;
        hooks_len += strlen(pts[i].name) + 1;
    }
    char *hook_list = tp_calloc(hooks_len, 1);
    if (!hook_list) { st = TP_ERR_NOMEM; goto done; }
    for (int i = 0; i < npts; i++) {
        if (i) strcat(hook_list, ",");
        strcat(hook_list, pts[i].name);
    }
    char path[4200], mhash[32], thash[32], chash[32], seed_s[32], ns[32], sl[32];
    int ok1, ok2;
    fs_join(path, sizeof path, tp_config_str(cfg, "model.path"), "config.json");
    snprintf(mhash, sizeof mhash, "%016llx", (unsigned long long)fnv_file(path, &ok1));
    fs_join(path, sizeof path, tp_config_str(cfg, "model.path"), "tokenizer.json");
    snprintf(thash, sizeof thash, "%016llx", (unsigned long long)fnv_file(path, &ok2));
    uint64_t ch = 0;
    TP_CHECK_GOTO(corpus_hash(c, &ch), st, done_free_list);
    snprintf(chash, sizeof chash, "%016llx", (unsigned long long)ch);
    snprintf(seed_s, sizeof seed_s, "%llu", (unsigned long long)seed);
    snprintf(ns, sizeof ns, "%zu", want);
    snprintf(sl, sizeof sl, "%d", seq_len);
    const char *mask_s = tp_config_bool(cfg, "capture.mask_first")
                             ? (tp_config_bool(cfg, "capture.mask_bos") ? "first,bos" : "first")
                             : (tp_config_bool(cfg, "capture.mask_bos") ? "bos" : "none");
    char batch_s[32];
    snprintf(batch_s, sizeof batch_s, "%d", batch);
    const char *prov[] = {
        "transpolmo_version", TP_VERSION, "model_path", tp_config_str(cfg, "model.path"),
        "model_config_hash", mhash, "tokenizer_hash", thash, "corpus", corpus_spec, "corpus_hash", chash,
        "sampling_seed", seed_s, "num_samples", ns, "seq_len", sl, "packing", packing_s,
        "unit_sequences", batch_s, "hooks", hook_list, "dtype", dtype_s, "mask", mask_s, NULL};
    store_layout layout = {.n_rows = N, .n_docs = (int64_t)ndocs, .n_units = n_units, .acts = specs,
                      .n_acts = npts, .provenance = prov};
    char store_path[4200];
    fs_join(store_path, sizeof store_path, run_dir, "activations.h5");
    TP_CHECK_GOTO(fs_mkdir_p(run_dir), st, done_free_list);
    bool created = false;
    TP_CHECK_GOTO(store_open_write(store_path, MPI_COMM_WORLD, &layout, &created, &store), st, done_free_list);

    /* Index datasets: each rank writes its rows (written again on resume: cheap,
     * and identical). */
    int64_t my_r0 = units_row0[u_lo], my_r1 = units_row0[u_hi];
    size_t my_rows = (size_t)(my_r1 - my_r0);
    tokens = tp_malloc((my_rows ? my_rows : 1) * sizeof *tokens);
    positions = tp_malloc((my_rows ? my_rows : 1) * sizeof *positions);
    mask = tp_malloc(my_rows ? my_rows : 1);
    if (!tokens || !positions || !mask) { st = TP_ERR_NOMEM; goto done_free_list; }
    int mask_first = tp_config_bool(cfg, "capture.mask_first"), mask_bos = tp_config_bool(cfg, "capture.mask_bos");
    for (size_t s = (size_t)u_lo * (size_t)batch; s < seqs.n_seqs && (int64_t)seqs.seq_start[s] < my_r1; s++) {
        for (size_t t = 0; t < sequences_len(&seqs, s); t++) {
            size_t row = seqs.seq_start[s] + t - (size_t)my_r0;
            int32_t id = seqs.tokens[seqs.seq_start[s] + t];
            tokens[row] = id;
            positions[row] = (int32_t)t;
            mask[row] = !((mask_first && t == 0) || (mask_bos && mc->bos_token_id >= 0 && id == mc->bos_token_id));
        }
    }
    TP_CHECK_GOTO(store_write_index(store, my_r0, (int64_t)my_rows, tokens, positions, mask), st, done_free_list);
    doc_off = tp_malloc((ndocs + 1) * sizeof *doc_off);
    doc_idx = tp_malloc((ndocs ? ndocs : 1) * sizeof *doc_idx);
    if (!doc_off || !doc_idx) { st = TP_ERR_NOMEM; goto done_free_list; }
    for (size_t i = 0; i <= ndocs; i++) doc_off[i] = (int64_t)seqs.doc_start[i];
    for (size_t i = 0; i < ndocs; i++) doc_idx[i] = (int64_t)docs[i];
    TP_CHECK_GOTO(store_write_docs(store, doc_off, doc_idx, rank == 0), st, done_free_list);

    done = tp_malloc((size_t)(n_units ? n_units : 1));
    if (!done) { st = TP_ERR_NOMEM; goto done_free_list; }
    TP_CHECK_GOTO(store_read_units(store, done), st, done_free_list);
    int64_t already = 0, todo_mine = 0;
    for (int64_t u = 0; u < n_units; u++) already += done[u];
    for (int64_t u = u_lo; u < u_hi; u++) todo_mine += !done[u];
    if (already) tp_log_info("capture: resuming %s: %lld of %lld units already complete", store_path,
                             (long long)already, (long long)n_units);

    /* Forward state and capture buffers sized for one unit. */
    int last_layer = -1;
    for (int i = 0; i < npts; i++) {
        int L = pts[i].pt >= TP_HOOK_LAYER_COUNT ? (pts[i].pt == TP_HOOK_LN_FINAL ? mc->num_layers - 1 : 0) : pts[i].layer;
        if (L > last_layer) last_layer = L;
    }
    TP_CHECK_GOTO(forward_new(m, batch, seq_len, &f), st, done_free_list);
    TP_CHECK_GOTO(hooks_new(mc->num_layers, &hooks), st, done_free_list);
    for (int i = 0; i < npts; i++) {
        pts[i].buf = tp_malloc((size_t)batch * (size_t)seq_len * (size_t)pts[i].cols * sizeof(float));
        if (!pts[i].buf) { st = TP_ERR_NOMEM; goto done_free_list; }
        TP_CHECK_GOTO(hooks_add(hooks, pts[i].layer, pts[i].pt, capture_cb, &pts[i]), st, done_free_list);
    }
    ids = tp_malloc((size_t)batch * (size_t)seq_len * sizeof *ids);
    lens = tp_malloc((size_t)batch * sizeof *lens);
    my_units = tp_malloc((size_t)(my_n ? my_n : 1) * sizeof *my_units);
    if (!ids || !lens || !my_units) { st = TP_ERR_NOMEM; goto done_free_list; }

    const char *fault = getenv("TP_FAULT_AFTER_UNITS");
    long fault_after = fault ? atol(fault) : -1;
    const char *fault_rank_s = getenv("TP_FAULT_CAPTURE_RANK");
    int fault_rank = fault_rank_s ? atoi(fault_rank_s) : 0;
    int64_t my_done = 0, npend = 0;
    /* Flush points: the first and the last round and every flush_every rounds, the
     * same rounds on every rank (computed from global sizes, no communication). */
    double row_bytes = 0;
    for (int i = 0; i < npts; i++) row_bytes += (double)pts[i].cols * (double)tp_dtype_size(sdt);
    double round_bytes = n_units ? (double)N / (double)n_units * row_bytes * size : 1.0;
    int64_t flush_every = round_bytes > 0 && FLUSH_BYTES / round_bytes > 1 ? (int64_t)(FLUSH_BYTES / round_bytes) : 1;
    /* Ask the kernel to start writing the store back while we compute, so that the
     * flush points find little left to write (Linux; elsewhere the flush does it). */
#ifdef __linux__
    wb_fd = open(store_path, O_RDONLY | O_CLOEXEC);
#endif
    tp_progress prog;
    uint64_t todo_rows = 0;
    for (int64_t u = 0; u < n_units; u++) if (!done[u]) todo_rows += (uint64_t)(units_row0[u + 1] - units_row0[u]);
    tp_progress_begin(&prog, "capture", "rows", todo_rows);
    for (int64_t k = 0; k < max_n; k++) {
        int64_t u = u_lo + k;
        int have = u < u_hi && !done[u];
        int64_t r0 = have ? units_row0[u] : 0, nrows = have ? units_row0[u + 1] - units_row0[u] : 0;
        if (have) {
            double t0 = tp_now();
            /* The unit's sequences back to back, no padding: their tokens are
             * already contiguous in the sequence table. */
            size_t seq0 = (size_t)u * (size_t)batch;
            size_t nseq = seqs.n_seqs - seq0 < (size_t)batch ? seqs.n_seqs - seq0 : (size_t)batch;
            for (size_t b = 0; b < nseq; b++) lens[b] = (int)sequences_len(&seqs, seq0 + b);
            memcpy(ids, seqs.tokens + seqs.seq_start[seq0], (size_t)nrows * sizeof *ids);
            TP_CHECK_GOTO(forward_run_varlen(f, ids, lens, (int)nseq, hooks, TP_LOGITS_NONE, last_layer, NULL), st,
                          done_free_list);
            cs.compute_s += tp_now() - t0;
        }
        /* Each rank writes its rows as soon as it has them (independent writes), so
         * ranks meet only at flush points. */
        double t1 = tp_now();
        for (int i = 0; have && i < npts; i++)
            TP_CHECK_GOTO(store_write_acts(store, i, r0, nrows, pts[i].buf), st, done_free_list);
        if (have) my_units[npend++] = u;
#ifdef __linux__
        if (wb_fd >= 0) (void)sync_file_range(wb_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
        if (k == 0 || k == max_n - 1 || k % flush_every == 0) {
            /* Waiting for the other ranks to get here is load imbalance, not I/O. */
            cs.io_s += tp_now() - t1;
            double tw = tp_now();
            if (size > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
            cs.wait_s += tp_now() - tw;
            t1 = tp_now();
            /* Rows durable first, then the marks of their units (store_mark_units
             * writes the marks and flushes again): a unit is never marked complete
             * before its rows are on disk, even across a power loss. */
            TP_CHECK_GOTO(store_flush(store), st, done_free_list);
            TP_CHECK_GOTO(store_mark_units(store, my_units, (int)npend), st, done_free_list);
            npend = 0;
        }
        cs.io_s += tp_now() - t1;
        if (have) {
            cs.units++, cs.tokens += nrows;
            for (int i = 0; i < npts; i++)
                cs.bytes += nrows * pts[i].cols * (int64_t)tp_dtype_size(specs[i].dtype);
            my_done++;
            if (fault_after >= 0 && my_done >= fault_after && rank == fault_rank) {
                /* Fault injection for the resume tests: die like a killed process. */
                tp_log_rank("capture: TP_FAULT_AFTER_UNITS=%ld reached, killing this rank", fault_after);
                raise(SIGKILL);
            }
        }
        /* Progress over all ranks' rows is approximated by rank 0's share. */
        tp_progress_add(&prog, (uint64_t)nrows * (uint64_t)size);
    }
    tp_progress_end(&prog);

    TP_CHECK_GOTO(store_read_units(store, done), st, done_free_list);
    for (int64_t u = 0; u < n_units; u++)
        if (!done[u]) { st = tp_err(TP_ERR_INTERNAL, "capture: unit %lld not complete after the pass", (long long)u); goto done_free_list; }
    TP_CHECK_GOTO(store_mark_complete(store), st, done_free_list);
    tp_status cst = store_close(store);
    store = NULL;
    TP_CHECK_GOTO(cst, st, done_free_list);

    /* Summary: per-rank figures gathered on rank 0. */
    /* io_s: writes, flushes and unit marks; wait_s: waiting for the other ranks
     * before them (load imbalance). io_share = io / (compute + io + wait). */
    double mine[6] = {cs.compute_s, cs.io_s, (double)cs.tokens, (double)cs.bytes, (double)cs.units, cs.wait_s},
           *all = NULL;
    if (rank == 0) all = tp_malloc((size_t)size * 6 * sizeof *all);
    MPI_CHECK(MPI_Gather(mine, 6, MPI_DOUBLE, all, 6, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    if (rank == 0) {
        double wall = tp_now() - t_start, rows_run = 0, bytes = 0, io = 0, comp = 0, wait = 0;
        json_t *per = json_array();
        for (int r = 0; r < size; r++) {
            double *a = all + 6 * r;
            comp += a[0], io += a[1], rows_run += a[2], bytes += a[3], wait += a[5];
            json_array_append_new(per, json_pack("{s:i, s:f, s:f, s:f, s:I, s:I, s:f}", "rank", r, "compute_s", a[0],
                                                 "io_s", a[1], "wait_s", a[5], "rows", (json_int_t)a[2],
                                                 "units", (json_int_t)a[4],
                                                 "rows_per_s", a[0] + a[1] + a[5] > 0 ? a[2] / (a[0] + a[1] + a[5]) : 0.0));
        }
        double busy = comp + io + wait;
        json_t *sum = json_pack("{s:s, s:I, s:I, s:I, s:I, s:i, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o}",
            "store", store_path, "rows", (json_int_t)N, "documents", (json_int_t)ndocs, "sequences",
            (json_int_t)seqs.n_seqs, "units", (json_int_t)n_units, "ranks", size, "hooks", hook_list,
            "wall_s", wall, "rows_this_run", rows_run, "rows_per_s", wall > 0 ? rows_run / wall : 0.0,
            "bytes_written", bytes, "write_mib_per_s", io > 0 ? bytes / io / (1 << 20) : 0.0,
            "io_share", busy > 0 ? io / busy : 0.0, "wait_share", busy > 0 ? wait / busy : 0.0, "per_rank", per);
        char rdir[4200], spath[4300];
        fs_join(rdir, sizeof rdir, run_dir, "results");
        st = fs_mkdir_p(rdir);
        if (st == TP_OK) st = fs_write_json(fs_join(spath, sizeof spath, rdir, "capture_summary.json"), sum);
        json_decref(sum);
        tp_log_info("capture: %lld rows x %d points -> %s in %.1f s (%.0f rows/s, %.1f MiB written, I/O %.0f%%, "
                    "waiting for other ranks %.0f%%)",
                    (long long)N, npts, store_path, wall, wall > 0 ? rows_run / wall : 0.0, bytes / (1 << 20),
                    busy > 0 ? 100 * io / busy : 0.0, busy > 0 ? 100 * wait / busy : 0.0);
        free(all);
        if (st != TP_OK) goto done_free_list;
    }
    st = TP_OK;
done_free_list:
    free(hook_list);
done:
    if (wb_fd >= 0) close(wb_fd);
    if (store) {
        if (st == TP_OK) st = store_close(store);
        else store_close_after_error(store);
    }
    for (int i = 0; pts && i < npts; i++) free(pts[i].buf);
    free(pts);
    free(specs);
    free(ids);
    free(lens);
    free(tokens);
    free(positions);
    free(mask);
    free(done);
    free(doc_off);
    free(doc_idx);
    free(units_row0);
    free(my_units);
    hooks_free(hooks);
    forward_free(f);
    dataset_close(&data);
    tokenizer_free(tok);
    model_close(m);
    return st;
}
