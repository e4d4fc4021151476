/* sync_file_range (Linux) starts the store's writeback early; see run_units below. */
#define _GNU_SOURCE
#include "analysis/capture/capture_phase.h"
#include "analysis/store_inputs.h"

#include "backend/backend.h"

#include "core/fault.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/dataset.h"
#include "data/sequences.h"
#include "dist/mpi_check.h"
#include "dist/stop.h"
#include "dist/world.h"
#include "io/corpus.h"
#include "io/store.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/model_io.h"
#include "run_layout.h"
#include "settings.h"

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- settings ----------------------------------------------------------------- */

static const tp_cfg_key capture_keys[] = {
    {"capture.hooks", TP_CFG_STRING_LIST, "hook_resid_post,hook_mlp_out", TP_CFG_ANY, NULL, "capture points: a per-layer point (hook_resid_post, mlp.hook_post, ...) is taken at every selected layer; a full name (blocks.3.attn.hook_z, model.layers.3.mlp) as is (docs/hooks.md)"},
    {"capture.dtype", TP_CFG_STRING, "f32", TP_CFG_ANY, "f32|f16|bf16", "storage dtype of /acts/* in activations.h5 (computed in f32, rounded to nearest even)"},
    {"capture.mask_first", TP_CFG_BOOL, "true", TP_CFG_ANY, NULL, "mark the first position of every sequence (the attention sink) as masked in /mask"},
    {"capture.mask_bos", TP_CFG_BOOL, "true", TP_CFG_ANY, NULL, "mark rows holding the model's BOS token as masked in /mask"},
};
static const tp_cfg_section capture_section = TP_CFG_SECTION("capture", capture_keys);

tp_status capture_settings_read(const tp_config *cfg, capture_settings *out)
{
    memset(out, 0, sizeof *out);
    out->n_hooks = tp_config_str_list(cfg, "capture.hooks", &out->hooks);
    const char *dt = tp_config_str(cfg, "capture.dtype");
    out->dtype_name = dt;
    out->dtype = !strcmp(dt, "f16") ? TP_DTYPE_F16 : !strcmp(dt, "bf16") ? TP_DTYPE_BF16 : TP_DTYPE_F32;
    out->mask_first = tp_config_bool(cfg, "capture.mask_first");
    out->mask_bos = tp_config_bool(cfg, "capture.mask_bos");
    return TP_OK;
}

/* ---- the run's state ------------------------------------------------------------ */

#define MAX_POINTS 512
/* Rows written by all ranks between two flush points (a flush makes the rows written
 * since the last one durable, then their units are marked complete): 512 MiB, a few
 * seconds of work at the speeds in BENCHMARKS.md, is what a killed run can lose. */
#define FLUSH_BYTES ((double)(512 << 20))

/* Sets of capture buffers: a device backend alternates two (double buffering), a
 * host-memory one writes each unit as soon as it is computed and needs one. */
#define MAX_SETS 2

struct capture_run;

typedef struct {
    int layer;
    tp_hook_point pt;
    char name[STORE_NAME_MAX];
    int64_t cols;
    float *buf[MAX_SETS];  /* rows of a unit, pinned host memory of the run's backend */
    struct capture_run *run;
} point;

/* A unit computed into buffer set `set`, not yet written (have: there is one). */
typedef struct {
    bool have;
    int set;
    int64_t u, r0, nrows;
} unit_batch;

typedef struct {
    double compute_s, io_s, wait_s;
    int64_t tokens, bytes, units;
} capture_stats;

typedef struct capture_run {
    /* inputs */
    tp_settings set;
    capture_settings cs;
    const char *run_dir;
    int rank, size;
    tp_model *m;
    tp_tokenizer *tok;
    tp_dataset data;
    point *pts;
    int npts;
    char *hook_list;           /* "a,b,c": the points in store order */
    /* work units: units_row0[u] is unit u's first row; this rank owns [u_lo, u_hi) */
    int64_t n_units, *units_row0, u_lo, u_hi, my_n, max_n;
    /* the descriptive tables of the store */
    int32_t *doc_domain;       /* [ndocs] */
    char **domains;
    int n_domains;
    int64_t *vocab_off;        /* [V + 1] */
    uint8_t *vocab_bytes;
    /* the store */
    char store_path[TP_PATH_MAX];
    store_act_spec *specs;
    tp_store *store;
    uint8_t *done;             /* [n_units] complete before this run */
    /* the forward pass */
    tp_forward *f;
    tp_backend *be;            /* the forward's: its hooks' tensors are this backend's memory */
    int nsets, cur;            /* buffer sets (1 or 2) and the one the forward fills now */
    tp_hooks *hooks;
    int last_layer;
    int32_t *ids;
    int *lens;
    int64_t *my_units;         /* units written since the last flush point */
    int wb_fd;
    capture_stats st;
    double t_start;
} capture_run;

/* The unit runs unpadded (forward_run_varlen): the tensor is [rows of the unit, cols]
 * in store order already, so it is one copy into the current set, queued on a device
 * (a memcpy done on return on the CPU) and waited for in write_unit. */
static tp_status capture_cb(const tp_hook_info *info, float *data, void *user)
{
    point *p = user;
    struct capture_run *r = p->run;
    return be_download_async(r->be, p->buf[r->cur], data, (size_t)info->shape[1] * (size_t)p->cols * sizeof(float),
                             r->cur);
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
static tp_status resolve_points(capture_run *r)
{
    const tp_model_config *c = &r->m->cfg;
    const tp_settings *s = &r->set;
    TP_CHECK(model_validate_layers(r->m, s->layers, s->n_layers, s->layers_origin));
    if (!r->cs.n_hooks) return tp_err(TP_ERR_CONFIG, "capture.hooks is empty: nothing to capture");
    r->npts = 0;
    for (size_t i = 0; i < r->cs.n_hooks; i++) {
        const char *h = r->cs.hooks[i];
        int is_full = !strncmp(h, "blocks.", 7) || !strncmp(h, "model.", 6) || !strcmp(h, "hook_embed") ||
                      !strcmp(h, "ln_final.hook_normalized");
        int L;
        tp_hook_point pt;
        if (is_full) {
            TP_CHECK(hooks_parse_name(c, h, &L, &pt));
            TP_CHECK(add_point(r->pts, &r->npts, c, L, pt));
            continue;
        }
        /* A per-layer point: at every selected layer (all when none are). */
        char probe[STORE_NAME_MAX];
        snprintf(probe, sizeof probe, "blocks.0.%s", h);
        if (hooks_parse_name(c, probe, &L, &pt) != TP_OK)
            return tp_err(TP_ERR_CONFIG, "capture.hooks: unknown capture point '%s' (see docs/hooks.md)", h);
        size_t nl = s->n_layers ? s->n_layers : (size_t)c->num_layers;
        for (size_t k = 0; k < nl; k++)
            TP_CHECK(add_point(r->pts, &r->npts, c, s->n_layers ? (int)s->layers[k] : (int)k, pt));
    }
    size_t len = 1;
    for (int i = 0; i < r->npts; i++) len += strlen(r->pts[i].name) + 1;
    if (!(r->hook_list = tp_calloc(len, 1))) return TP_ERR_NOMEM;
    for (int i = 0; i < r->npts; i++) {
        if (i) strcat(r->hook_list, ",");
        strcat(r->hook_list, r->pts[i].name);
    }
    return TP_OK;
}

/* ---- steps ---------------------------------------------------------------------- */

/* The model, the capture points and the sample's sequences: identical on every rank. */
static tp_status open_inputs(capture_run *r, const tp_config *cfg)
{
    TP_CHECK(settings_read(cfg, &r->set));
    TP_CHECK(capture_settings_read(cfg, &r->cs));
    TP_CHECK(model_io_open(&r->set.model, &r->m, &r->tok));
    if (!(r->pts = tp_calloc(MAX_POINTS, sizeof *r->pts))) return TP_ERR_NOMEM;
    TP_CHECK(resolve_points(r));
    return dataset_open(&r->set.data, r->tok, r->m->cfg.eos_token_id, "capture", &r->data);
}

/* Units of forward.batch_size sequences; contiguous runs of units per rank, balanced
 * by tokens. Rank r owns units [cut(r), cut(r+1)), cut(r) being the unit boundary
 * nearest to row r*N/size, so ranks get equal shares of rows up to half a unit. */
/* The first unit of rank q (n_units for q = size): the unit start nearest q/size
 * of the rows. Every rank can compute every rank's share. */
static int64_t unit_cut(const capture_run *r, int q)
{
    int64_t N = (int64_t)r->data.seqs.n_tokens, cut = q >= r->size ? r->n_units : 0;
    if (q > 0 && q < r->size) {
        int64_t target = (int64_t)(((double)N * q) / r->size), best = INT64_MAX;
        for (int64_t u = 0; u <= r->n_units; u++) {
            int64_t dist = r->units_row0[u] > target ? r->units_row0[u] - target : target - r->units_row0[u];
            if (dist < best) best = dist, cut = u;
        }
    }
    return cut;
}

/* Rows every rank computes in round k (units done before, on resume, not counted):
 * the progress of all ranks, known without asking them. */
static uint64_t round_rows(const capture_run *r, const int64_t *lo, const int64_t *hi, int64_t k)
{
    uint64_t rows = 0;
    for (int q = 0; q < r->size; q++) {
        int64_t u = lo[q] + k;
        if (u < hi[q] && !r->done[u]) rows += (uint64_t)(r->units_row0[u + 1] - r->units_row0[u]);
    }
    return rows;
}

static tp_status plan_units(capture_run *r)
{
    const tp_sequences *seqs = &r->data.seqs;
    int batch = r->set.batch_size;
    r->n_units = (int64_t)((seqs->n_seqs + (size_t)batch - 1) / (size_t)batch);
    if (!(r->units_row0 = tp_malloc((size_t)(r->n_units + 1) * sizeof *r->units_row0))) return TP_ERR_NOMEM;
    for (int64_t u = 0; u <= r->n_units; u++) {
        size_t s0 = (size_t)u * (size_t)batch;
        r->units_row0[u] = (int64_t)(s0 < seqs->n_seqs ? seqs->seq_start[s0] : seqs->n_tokens);
    }
    r->u_lo = unit_cut(r, r->rank);
    r->u_hi = unit_cut(r, r->rank + 1);
    if (r->u_hi < r->u_lo) r->u_hi = r->u_lo;
    r->my_n = r->u_hi - r->u_lo;
    MPI_CHECK(MPI_Allreduce(&r->my_n, &r->max_n, 1, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
    return TP_OK;
}

static uint64_t fnv_file(const char *path)
{
    uint64_t h = 0xcbf29ce484222325ull;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ch;
    while ((ch = fgetc(f)) != EOF) h = (h ^ (unsigned char)ch) * 0x100000001b3ull;
    fclose(f);
    return h;
}

/* Hash of <model dir>/<file> as 16 hex digits. */
static tp_status hash_model_file(const char *dir, const char *file, char out[32])
{
    char path[TP_PATH_MAX];
    TP_CHECK(fs_join(path, sizeof path, dir, file));
    snprintf(out, 32, "%016llx", (unsigned long long)fnv_file(path));
    return TP_OK;
}

/* What the store carries so that a row can be read without rejoining by hand: the
 * domain of every sampled document and the text of every token id. */
static tp_status build_tables(capture_run *r)
{
    if (!(r->doc_domain = tp_malloc((r->data.ndocs ? r->data.ndocs : 1) * sizeof *r->doc_domain))) return TP_ERR_NOMEM;
    TP_CHECK(dataset_domains(&r->data, r->doc_domain, &r->domains, &r->n_domains));
    int64_t V = r->m->cfg.vocab_size, cap = 16 * V + 16, used = 0;
    r->vocab_off = tp_malloc((size_t)(V + 1) * sizeof *r->vocab_off);
    r->vocab_bytes = tp_malloc((size_t)cap);
    if (!r->vocab_off || !r->vocab_bytes) return TP_ERR_NOMEM;
    for (int64_t t = 0; t < V; t++) {
        r->vocab_off[t] = used;
        int32_t id = (int32_t)t;
        char *text = NULL;
        size_t len = 0;
        /* An id the tokenizer does not know (embedding rows padded past its vocab)
         * has no text. */
        if (tokenizer_decode(r->tok, &id, 1, 0, &text, &len) != TP_OK) len = 0;
        if (used + (int64_t)len > cap) {
            uint8_t *g = realloc(r->vocab_bytes, (size_t)(2 * cap + (int64_t)len));
            if (!g) { free(text); return tp_err(TP_ERR_NOMEM, "out of memory for the token texts"); }
            r->vocab_bytes = g, cap = 2 * cap + (int64_t)len;
        }
        if (len) memcpy(r->vocab_bytes + used, text, len);
        used += (int64_t)len;
        free(text);
    }
    r->vocab_off[V] = used;
    return TP_OK;
}

/* The width of /domain_names: the longest name and its NUL. */
static int64_t name_len_of(const capture_run *r)
{
    int64_t len = 1;
    for (int i = 0; i < r->n_domains; i++)
        if ((int64_t)strlen(r->domains[i]) + 1 > len) len = (int64_t)strlen(r->domains[i]) + 1;
    return len;
}

/* Creates the store, or reopens it after checking its layout and provenance. */
static tp_status open_store(capture_run *r)
{
    TP_CHECK(build_tables(r));
    if (!(r->specs = tp_calloc((size_t)r->npts, sizeof *r->specs))) return TP_ERR_NOMEM;
    for (int i = 0; i < r->npts; i++) {
        snprintf(r->specs[i].name, sizeof r->specs[i].name, "%s", r->pts[i].name);
        r->specs[i].cols = r->pts[i].cols;
        r->specs[i].dtype = r->cs.dtype;
    }
    char mhash[32], thash[32], chash[32];
    TP_CHECK(hash_model_file(r->set.model.dir, "config.json", mhash));
    TP_CHECK(hash_model_file(r->set.model.dir, "tokenizer.json", thash));
    uint64_t ch = 0;
    TP_CHECK(corpus_hash(r->data.corpus, &ch));
    snprintf(chash, sizeof chash, "%016llx", (unsigned long long)ch);
    const char *mask_s = r->cs.mask_first ? (r->cs.mask_bos ? "first,bos" : "first") : (r->cs.mask_bos ? "bos" : "none");
    store_prov prov[] = {
        {"transpolmo_version", TP_VERSION, 0}, {"model_path", r->set.model.dir, 0}, {"model_config_hash", mhash, 0},
        {"tokenizer_hash", thash, 0}, {"corpus", r->set.data.corpus, 0}, {"corpus_hash", chash, 0},
        {"sampling_seed", NULL, (int64_t)r->data.seed}, {"num_samples", NULL, r->set.data.num_samples},
        {"seq_len", NULL, r->data.seq_len}, {"packing", r->set.data.packing == TP_PACK_PACK ? "pack" : "split", 0},
        {"unit_sequences", NULL, r->set.batch_size}, {"hooks", r->hook_list, 0}, {"dtype", r->cs.dtype_name, 0},
        {"mask", mask_s, 0}, {"max_doc_tokens", NULL, r->set.data.max_doc_tokens},
        {"documents_cut", NULL, (int64_t)r->data.seqs.n_cut}, {0}, {0}, {0}, {0}, {0}, {0}};
    /* The weights and the corpus files, cheaply (store_inputs.h): later phases check them too. */
    store_inputs in;
    TP_CHECK(store_inputs_compute(r->set.model.dir, r->set.data.corpus, &in));
    store_inputs_provenance(&in, prov + sizeof prov / sizeof *prov - STORE_INPUTS_N);
    int64_t name_len = name_len_of(r), V = r->m->cfg.vocab_size;
    store_layout layout = {.n_rows = (int64_t)r->data.seqs.n_tokens, .n_docs = (int64_t)r->data.ndocs,
                           .n_units = r->n_units, .acts = r->specs, .n_acts = r->npts, .provenance = prov,
                           .n_provenance = (int)(sizeof prov / sizeof *prov), .n_domains = r->n_domains,
                           .domain_name_len = name_len, .n_vocab = V, .n_vocab_bytes = r->vocab_off[V]};
    TP_CHECK(run_path(r->store_path, sizeof r->store_path, r->run_dir, RUN_STORE));
    TP_CHECK(fs_mkdir_p(r->run_dir));
    bool created = false;
    return store_open_write(r->store_path, MPI_COMM_WORLD, &layout, &created, &r->store);
}

/* Index datasets: each rank writes its rows (written again on resume: cheap, and
 * identical); rank 0 the document tables. */
static tp_status write_index(capture_run *r)
{
    const tp_sequences *seqs = &r->data.seqs;
    const tp_model_config *mc = &r->m->cfg;
    int64_t my_r0 = r->units_row0[r->u_lo], my_r1 = r->units_row0[r->u_hi];
    size_t my_rows = (size_t)(my_r1 - my_r0), ndocs = r->data.ndocs;
    int32_t *tokens = tp_malloc((my_rows ? my_rows : 1) * sizeof *tokens);
    int32_t *positions = tp_malloc((my_rows ? my_rows : 1) * sizeof *positions);
    int32_t *row_doc = tp_malloc((my_rows ? my_rows : 1) * sizeof *row_doc);
    uint8_t *mask = tp_malloc(my_rows ? my_rows : 1);
    int64_t *doc_off = tp_malloc((ndocs + 1) * sizeof *doc_off);
    int64_t *doc_idx = tp_malloc((ndocs ? ndocs : 1) * sizeof *doc_idx);
    tp_status st = tokens && positions && row_doc && mask && doc_off && doc_idx ? TP_OK : TP_ERR_NOMEM;
    for (size_t s = (size_t)r->u_lo * (size_t)r->set.batch_size;
         st == TP_OK && s < seqs->n_seqs && (int64_t)seqs->seq_start[s] < my_r1; s++) {
        for (size_t t = 0; t < sequences_len(seqs, s); t++) {
            size_t row = seqs->seq_start[s] + t - (size_t)my_r0;
            int32_t id = seqs->tokens[seqs->seq_start[s] + t];
            tokens[row] = id;
            positions[row] = (int32_t)t;
            mask[row] = !((r->cs.mask_first && t == 0) ||
                          (r->cs.mask_bos && mc->bos_token_id >= 0 && id == mc->bos_token_id));
        }
    }
    /* The document of each row: the last one starting at or before it (documents
     * that gave no tokens start where the next one does). */
    for (size_t row = 0, dcur = 0; st == TP_OK && row < my_rows; row++) {
        size_t g = (size_t)my_r0 + row;
        if (row == 0) {
            size_t lo = 0, hi = ndocs;   /* largest d with doc_start[d] <= g */
            while (hi - lo > 1) {
                size_t mid = (lo + hi) / 2;
                if (seqs->doc_start[mid] <= g) lo = mid; else hi = mid;
            }
            dcur = lo;
        }
        while (dcur + 1 < ndocs && seqs->doc_start[dcur + 1] <= g) dcur++;
        row_doc[row] = (int32_t)dcur;
    }
    if (st == TP_OK) st = store_write_index(r->store, my_r0, (int64_t)my_rows, tokens, positions, mask, row_doc);
    for (size_t i = 0; st == TP_OK && i <= ndocs; i++) doc_off[i] = (int64_t)seqs->doc_start[i];
    for (size_t i = 0; st == TP_OK && i < ndocs; i++) doc_idx[i] = (int64_t)r->data.docs[i];
    if (st == TP_OK) st = store_write_docs(r->store, doc_off, doc_idx, r->doc_domain, r->rank == 0);
    if (st == TP_OK)
        st = store_write_tables(r->store, (const char *const *)r->domains, r->n_domains, name_len_of(r), r->vocab_off,
                                r->m->cfg.vocab_size, r->vocab_bytes, r->rank == 0);
    free(tokens), free(positions), free(row_doc), free(mask), free(doc_off), free(doc_idx);
    return st;
}

/* The forward state, the hooks and the buffers of one unit; which units are done. */
static tp_status prepare_forward(capture_run *r)
{
    const tp_model_config *mc = &r->m->cfg;
    int batch = r->set.batch_size, seq_len = r->data.seq_len;
    if (!(r->done = tp_malloc((size_t)(r->n_units ? r->n_units : 1)))) return TP_ERR_NOMEM;
    TP_CHECK(store_read_units(r->store, r->done));
    int64_t already = 0;
    for (int64_t u = 0; u < r->n_units; u++) already += r->done[u];
    if (already) tp_log_info("capture: resuming %s: %lld of %lld units already complete", r->store_path,
                             (long long)already, (long long)r->n_units);
    r->last_layer = -1;
    for (int i = 0; i < r->npts; i++) {
        const point *p = &r->pts[i];
        int L = p->pt >= TP_HOOK_LAYER_COUNT ? (p->pt == TP_HOOK_LN_FINAL ? mc->num_layers - 1 : 0) : p->layer;
        if (L > r->last_layer) r->last_layer = L;
    }
    TP_CHECK(forward_new(r->m, batch, seq_len, &r->f));
    r->be = backend_default();   /* forward_new's backend */
    r->nsets = r->be->host_memory ? 1 : 2;
    TP_CHECK(hooks_new(mc->num_layers, &r->hooks));
    for (int i = 0; i < r->npts; i++) {
        point *p = &r->pts[i];
        p->run = r;
        for (int s = 0; s < r->nsets; s++)
            TP_CHECK(be_host_alloc(r->be, (size_t)batch * (size_t)seq_len * (size_t)p->cols * sizeof(float),
                                   (void **)&p->buf[s]));
        TP_CHECK(hooks_add_device_reader(r->hooks, p->layer, p->pt, capture_cb, p));
    }
    r->ids = tp_malloc((size_t)batch * (size_t)seq_len * sizeof *r->ids);
    r->lens = tp_malloc((size_t)batch * sizeof *r->lens);
    r->my_units = tp_malloc((size_t)(r->my_n ? r->my_n : 1) * sizeof *r->my_units);
    return r->ids && r->lens && r->my_units ? TP_OK : TP_ERR_NOMEM;
}

/* Forward pass of unit u: its sequences back to back, no padding (their tokens are
 * already contiguous in the sequence table). */
static tp_status compute_unit(capture_run *r, int64_t u, int64_t nrows)
{
    const tp_sequences *seqs = &r->data.seqs;
    double t0 = tp_now();
    size_t seq0 = (size_t)u * (size_t)r->set.batch_size;
    size_t nseq = seqs->n_seqs - seq0 < (size_t)r->set.batch_size ? seqs->n_seqs - seq0 : (size_t)r->set.batch_size;
    for (size_t b = 0; b < nseq; b++) r->lens[b] = (int)sequences_len(seqs, seq0 + b);
    memcpy(r->ids, seqs->tokens + seqs->seq_start[seq0], (size_t)nrows * sizeof *r->ids);
    TP_CHECK(forward_run_varlen(r->f, r->ids, r->lens, (int)nseq, r->hooks, TP_LOGITS_NONE, r->last_layer, NULL));
    r->st.compute_s += tp_now() - t0;
    return TP_OK;
}

/* Rows durable first, then the marks of their units (store_mark_units writes the
 * marks and flushes again): a unit is never marked complete before its rows are on
 * disk, even across a power loss. Waiting for the other ranks to get here is load
 * imbalance, not I/O. */
static tp_status flush_point(capture_run *r, int64_t *npend)
{
    double tw = tp_now();
    if (r->size > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
    r->st.wait_s += tp_now() - tw;
    double t1 = tp_now();
    TP_CHECK(store_flush(r->store));
    TP_CHECK(store_mark_units(r->store, r->my_units, (int)*npend));
    *npend = 0;
    r->st.io_s += tp_now() - t1;
    return TP_OK;
}

/* Writes unit b's rows from its buffer set, once the set's copies are done (on a
 * device: once the GPU has finished b's forward pass, which counts as compute). */
static tp_status write_unit(capture_run *r, const unit_batch *b, int64_t *npend)
{
    double t0 = tp_now();
    TP_CHECK(be_wait(r->be, b->set));
    double t1 = tp_now();
    r->st.compute_s += t1 - t0;
    for (int i = 0; i < r->npts; i++) TP_CHECK(store_write_acts(r->store, i, b->r0, b->nrows, r->pts[i].buf[b->set]));
    r->my_units[(*npend)++] = b->u;
    r->st.io_s += tp_now() - t1;
    return TP_OK;
}

/* Rounds: each rank computes and writes its next unit (independent writes, so ranks
 * meet only at flush points: the first and the last round and every flush_every
 * rounds, the same rounds on every rank, computed from global sizes).
 *
 * On a device backend (two buffer sets) a unit is written one round late: round k
 * queues unit k's forward pass and its downloads into set k % 2, then writes unit
 * k−1 from the other set while the GPU computes. The writes keep their order, and a
 * flush point writes the round's own unit before flushing, so what is on disk and
 * marked at every flush point (and the file) is the same as with one set. */
static tp_status run_units(capture_run *r)
{
    double row_bytes = 0, N = (double)r->data.seqs.n_tokens;
    for (int i = 0; i < r->npts; i++) row_bytes += (double)r->pts[i].cols * (double)tp_dtype_size(r->cs.dtype);
    double round_bytes = r->n_units ? N / (double)r->n_units * row_bytes * r->size : 1.0;
    int64_t flush_every = round_bytes > 0 && FLUSH_BYTES / round_bytes > 1 ? (int64_t)(FLUSH_BYTES / round_bytes) : 1;
    /* Ask the kernel to start writing the store back while we compute, so that the
     * flush points find little left to write (Linux; elsewhere the flush does it). */
#ifdef __linux__
    r->wb_fd = open(r->store_path, O_RDONLY | O_CLOEXEC);
#endif
    uint64_t todo_rows = 0;
    for (int64_t u = 0; u < r->n_units; u++)
        if (!r->done[u]) todo_rows += (uint64_t)(r->units_row0[u + 1] - r->units_row0[u]);
    /* Every rank's share, for progress over all ranks (rank 0 prints it). */
    int64_t *lo = tp_malloc((size_t)r->size * sizeof *lo), *hi = tp_malloc((size_t)r->size * sizeof *hi);
    if (!lo || !hi) { free(lo); free(hi); return TP_ERR_NOMEM; }
    for (int q = 0; q < r->size; q++) {
        lo[q] = unit_cut(r, q), hi[q] = unit_cut(r, q + 1);
        if (hi[q] < lo[q]) hi[q] = lo[q];
    }
    tp_status st = TP_OK;
    tp_progress prog;
    tp_progress_begin(&prog, "capture", "rows", todo_rows);
    int64_t npend = 0;
    unit_batch pend = {0};
    for (int64_t k = 0; k < r->max_n; k++) {
        int64_t u = r->u_lo + k;
        unit_batch cur = {.have = u < r->u_hi && !r->done[u], .set = (int)(k % r->nsets), .u = u};
        if (cur.have) cur.r0 = r->units_row0[u], cur.nrows = r->units_row0[u + 1] - r->units_row0[u];
        r->cur = cur.set;
        if (cur.have) TP_CHECK_GOTO(compute_unit(r, u, cur.nrows), st, out);
        bool flush = k == 0 || k == r->max_n - 1 || k % flush_every == 0;
        unit_batch wrote[2];
        int nw = 0;
        if (pend.have) {   /* last round's unit (two sets), while this one computes */
            TP_CHECK_GOTO(write_unit(r, &pend, &npend), st, out);
            wrote[nw++] = pend;
        }
        pend = cur;
        if (pend.have && (r->nsets == 1 || flush)) {
            TP_CHECK_GOTO(write_unit(r, &pend, &npend), st, out);
            wrote[nw++] = pend;
            pend.have = false;
        }
        double t1 = tp_now();
#ifdef __linux__
        if (r->wb_fd >= 0) (void)sync_file_range(r->wb_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
        r->st.io_s += tp_now() - t1;
        if (flush) {
            TP_CHECK_GOTO(flush_point(r, &npend), st, out);
            /* Every unit so far is on disk and marked: a safe point to stop at
             * (SIGUSR1 on any rank, dist/stop.h); the rerun does the rest. */
            bool stop;
            TP_CHECK_GOTO(dist_stop_agreed(MPI_COMM_WORLD, &stop), st, out);
            if (stop && k < r->max_n - 1) {
                st = dist_stop_error("capture", "after round %lld of %lld (its units written and marked)",
                                     (long long)k + 1, (long long)r->max_n);
                goto out;
            }
        }
        for (int j = 0; j < nw; j++) {
            r->st.units++, r->st.tokens += wrote[j].nrows;
            for (int i = 0; i < r->npts; i++)
                r->st.bytes += wrote[j].nrows * r->pts[i].cols * (int64_t)tp_dtype_size(r->cs.dtype);
            /* a unit written (not yet flushed): the resume tests stop a rank here */
            TP_CHECK_GOTO(tp_fault("capture", "unit"), st, out);
        }
        /* All ranks' rows of this round: rank 0's share times the ranks overcounts
         * when rank 0's units are larger or (on resume) fewer of them were done. */
        tp_progress_add(&prog, round_rows(r, lo, hi, k));
    }
    /* the last round is a flush point, which writes its unit */
    if (pend.have) st = tp_err(TP_ERR_INTERNAL, "capture: unit %lld computed but not written", (long long)pend.u);
    tp_progress_end(&prog);
out:
    free(lo);
    free(hi);
    return st;
}

/* Every unit complete: the datasets are marked complete and the store closed. */
static tp_status finish_store(capture_run *r)
{
    TP_CHECK(store_read_units(r->store, r->done));
    for (int64_t u = 0; u < r->n_units; u++)
        if (!r->done[u]) return tp_err(TP_ERR_INTERNAL, "capture: unit %lld not complete after the pass", (long long)u);
    TP_CHECK(store_mark_complete(r->store));
    tp_status st = store_close(r->store);
    r->store = NULL;
    return st;
}

/* results/capture_summary.json: per-rank figures gathered on rank 0. io_s: writes,
 * flushes and unit marks; wait_s: waiting for the other ranks before them (load
 * imbalance). io_share = io / (compute + io + wait). */
static tp_status write_summary(capture_run *r)
{
    const capture_stats *cs = &r->st;
    double mine[6] = {cs->compute_s, cs->io_s, (double)cs->tokens, (double)cs->bytes, (double)cs->units, cs->wait_s},
           *all = NULL;
    tp_status st = r->rank != 0 || (all = tp_malloc((size_t)r->size * 6 * sizeof *all)) ? TP_OK : TP_ERR_NOMEM;
    TP_CHECK(dist_agree(MPI_COMM_WORLD, st, "capture summary"));
    MPI_CHECK_GOTO(MPI_Gather(mine, 6, MPI_DOUBLE, all, 6, MPI_DOUBLE, 0, MPI_COMM_WORLD), st, done);
    if (r->rank != 0) return TP_OK;
    double wall = tp_now() - r->t_start, rows_run = 0, bytes = 0, io = 0, comp = 0, wait = 0;
    json_t *per = json_array();
    for (int q = 0; q < r->size; q++) {
        double *a = all + 6 * q;
        comp += a[0], io += a[1], rows_run += a[2], bytes += a[3], wait += a[5];
        json_array_append_new(per, json_pack("{s:i, s:f, s:f, s:f, s:I, s:I, s:f}", "rank", q, "compute_s", a[0],
                                             "io_s", a[1], "wait_s", a[5], "rows", (json_int_t)a[2], "units",
                                             (json_int_t)a[4],
                                             "rows_per_s", a[0] + a[1] + a[5] > 0 ? a[2] / (a[0] + a[1] + a[5]) : 0.0));
    }
    double busy = comp + io + wait, N = (double)r->data.seqs.n_tokens;
    json_t *sum = json_pack("{s:s, s:I, s:I, s:I, s:I, s:i, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o}",
        "store", r->store_path, "rows", (json_int_t)N, "documents", (json_int_t)r->data.ndocs, "sequences",
        (json_int_t)r->data.seqs.n_seqs, "units", (json_int_t)r->n_units, "ranks", r->size, "hooks", r->hook_list,
        "wall_s", wall, "rows_this_run", rows_run, "rows_per_s", wall > 0 ? rows_run / wall : 0.0,
        "bytes_written", bytes, "write_mib_per_s", io > 0 ? bytes / io / (1 << 20) : 0.0,
        "io_share", busy > 0 ? io / busy : 0.0, "wait_share", busy > 0 ? wait / busy : 0.0, "per_rank", per);
    char path[TP_PATH_MAX];
    st = run_path(path, sizeof path, r->run_dir, RUN_CAPTURE_SUMMARY_JSON);
    if (st == TP_OK) st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, sum);
    json_decref(sum);
    if (st == TP_OK)
        tp_log_info("capture: %lld rows x %d points -> %s in %.1f s (%.0f rows/s, %.1f MiB written, I/O %.0f%%, "
                    "waiting for other ranks %.0f%%)", (long long)N, r->npts, r->store_path, wall,
                    wall > 0 ? rows_run / wall : 0.0, bytes / (1 << 20), busy > 0 ? 100 * io / busy : 0.0,
                    busy > 0 ? 100 * wait / busy : 0.0);
done:
    free(all);
    return st;
}

static void capture_run_free(capture_run *r, tp_status st)
{
    if (r->wb_fd >= 0) close(r->wb_fd);
    if (r->store) {
        if (st == TP_OK) (void)store_close(r->store);
        else store_close_after_error(r->store);
    }
    /* Copies still queued after a failure must not land in freed buffers (the
     * failure's message stays the one reported). */
    if (r->be && st != TP_OK) {
        char saved[2048];
        snprintf(saved, sizeof saved, "%s", tp_err_msg());
        (void)be_sync(r->be);
        tp_err_restore(saved);
    }
    for (int i = 0; r->pts && i < r->npts; i++)
        for (int s = 0; s < r->nsets; s++) be_host_free(r->be, r->pts[i].buf[s]);
    free(r->pts), free(r->hook_list), free(r->specs), free(r->ids), free(r->lens), free(r->done);
    free(r->units_row0), free(r->my_units), free(r->doc_domain), free(r->vocab_off), free(r->vocab_bytes);
    dataset_free_domains(r->domains, r->n_domains);
    hooks_free(r->hooks);
    forward_free(r->f);
    dataset_close(&r->data);
    tokenizer_free(r->tok);
    model_close(r->m);
}

tp_status capture_phase_run(const tp_config *cfg, const char *run_dir)
{
    capture_run r = {.run_dir = run_dir, .rank = dist_rank(), .size = dist_size(), .wb_fd = -1, .t_start = tp_now()};
    tp_status st;
    TP_CHECK_GOTO(open_inputs(&r, cfg), st, done);
    TP_CHECK_GOTO(plan_units(&r), st, done);
    TP_CHECK_GOTO(open_store(&r), st, done);
    TP_CHECK_GOTO(write_index(&r), st, done);
    TP_CHECK_GOTO(prepare_forward(&r), st, done);
    TP_CHECK_GOTO(run_units(&r), st, done);
    TP_CHECK_GOTO(finish_store(&r), st, done);
    st = write_summary(&r);
done:
    capture_run_free(&r, st);
    return st;
}

static void capture_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *j = run_load_json(run_dir, RUN_CAPTURE_SUMMARY_JSON);
    if (!j) return;
    const char *hooks = json_string_value(json_object_get(j, "hooks"));
    int points = hooks && *hooks ? 1 : 0;
    for (const char *p = hooks; p && *p; p++) points += *p == ',';
    snprintf(buf, n, "%lld rows of %lld documents x %d capture points (%.0f MiB) in %s",
             (long long)json_integer_value(json_object_get(j, "rows")),
             (long long)json_integer_value(json_object_get(j, "documents")), points,
             json_number_value(json_object_get(j, "bytes_written")) / (1 << 20), RUN_STORE);
    json_decref(j);
}

static const char *const capture_outputs[] = {RUN_STORE, RUN_CAPTURE_SUMMARY_JSON, NULL};
static const char *const capture_reads[] = {"model.", "data.", "layers", "forward.batch_size", "forward.gemm", "forward.bf16_compute", NULL};

static const char *const capture_faults[] = {"unit", NULL};
const tp_phase capture_phase = {
    .name = "capture",
    .help = "phase 2: activations at the capture points -> activations.h5 (resumes if killed)",
    .run = capture_phase_run,
    .outputs = capture_outputs,
    .config = &capture_section,
    .reads = capture_reads,
    .needs = NULL,
    .headline = capture_headline,
    .faults = capture_faults,
};
