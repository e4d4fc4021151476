/* patch_cmd.c — `transpolmo circuits patch`: the options, the prompts as tokens
 * (equal lengths, one-token target and distractor), the noise of causal tracing, the
 * engine (patch.c) and results/circuits/patch_<name>.json (docs/patching.md). */
#include "analysis/circuits/patch.h"

#include "core/log.h"
#include "dist/world.h"
#include "io/npy.h"
#include "model/model_io.h"
#include "model/tokenizer.h"
#include "run_layout.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATCH_DEFAULT_SEEDS 10
#define PATCH_NOISE_SCALE 3.0   /* ROME: noise std = 3 × the embedding std */

typedef struct {
    const char *clean, *corrupt, *noise_tokens, *target, *distractor, *sweep, *name;
    const char *noise_file;
    int seeds, cells_per_batch;
    long long seed;
    double scale;
} patch_opts;

/* What the command works on, freed in one place. */
typedef struct {
    tp_model *m;
    tp_tokenizer *tok;
    int32_t *clean, *corrupt;
    size_t nclean, ncorrupt;
    int32_t target, distractor;
    int *layers, nlayers;
    int *noise_pos, nnoise;
    float *noise;
    int nsamples;
    double emb_std;
    char name[128];
    int name_given;
} patch_job;

/* ---- options -------------------------------------------------------------------------- */

static tp_status parse_int(const char *opt, const char *text, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno || v < lo || v > hi)
        return tp_err(TP_ERR_CONFIG, "%s: expected an integer in [%lld, %lld], got '%s'", opt, lo, hi, text);
    *out = v;
    return TP_OK;
}

static tp_status read_opts(tp_cli *cli, patch_opts *o)
{
    *o = (patch_opts){0};
    o->clean = cli_take_value(cli, "--clean");
    o->corrupt = cli_take_value(cli, "--corrupt");
    o->noise_tokens = cli_take_value(cli, "--corrupt-noise");
    o->target = cli_take_value(cli, "--target");
    o->distractor = cli_take_value(cli, "--distractor");
    o->sweep = cli_take_value(cli, "--sweep");
    o->name = cli_take_value(cli, "--name");
    o->noise_file = cli_take_value(cli, "--noise-file");
    const char *seeds = cli_take_value(cli, "--seeds"), *seed = cli_take_value(cli, "--seed");
    const char *scale = cli_take_value(cli, "--noise-scale"), *cpb = cli_take_value(cli, "--cells-per-batch");
    TP_CHECK(cli_reject_rest(cli));
    long long v = PATCH_DEFAULT_SEEDS;
    if (seeds) TP_CHECK(parse_int("--seeds", seeds, 1, 100000, &v));
    o->seeds = (int)v;
    v = 0;
    if (cpb) TP_CHECK(parse_int("--cells-per-batch", cpb, 0, 1 << 20, &v));
    o->cells_per_batch = (int)v;
    o->seed = 0;
    if (seed) TP_CHECK(parse_int("--seed", seed, 0, INT64_MAX, &o->seed));
    o->scale = PATCH_NOISE_SCALE;
    if (scale) {
        char *end;
        o->scale = strtod(scale, &end);
        if (end == scale || *end || !(o->scale > 0) || !isfinite(o->scale))
            return tp_err(TP_ERR_CONFIG, "--noise-scale: expected a positive number, got '%s'", scale);
    }
    if (!o->clean || !o->target) return tp_err(TP_ERR_CONFIG, "circuits patch: --clean and --target are required");
    if ((o->corrupt != NULL) == (o->noise_tokens != NULL))
        return tp_err(TP_ERR_CONFIG, "circuits patch: give exactly one of --corrupt PROMPT and --corrupt-noise TOKENS");
    if (o->corrupt && !o->distractor)
        return tp_err(TP_ERR_CONFIG, "circuits patch: --corrupt needs --distractor (the metric is logit(target) - logit(distractor))");
    if (o->noise_tokens && o->distractor)
        return tp_err(TP_ERR_CONFIG, "circuits patch: --distractor is for --corrupt; causal tracing measures p(target)");
    if (o->noise_file && (seeds || seed || scale))
        return tp_err(TP_ERR_CONFIG, "circuits patch: --noise-file gives the noise itself; --seeds, --seed and --noise-scale "
                      "do not apply to it");
    if (o->corrupt && (seeds || seed || scale || o->noise_file))
        return tp_err(TP_ERR_CONFIG, "circuits patch: --seeds, --seed, --noise-scale and --noise-file go with --corrupt-noise");
    return TP_OK;
}

/* ---- tokens ----------------------------------------------------------------------------- */

/* The tokens as text, one string each, as a JSON array (jansson escapes them). */
static json_t *token_texts(const tp_tokenizer *tok, const int32_t *ids, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) {
        char *text = NULL;
        size_t len = 0;
        json_t *s = tokenizer_decode(tok, &ids[i], 1, 0, &text, &len) == TP_OK ? json_stringn(text, len) : NULL;
        free(text);
        if (!s || json_array_append_new(a, s)) { json_decref(a); return NULL; }
    }
    return a;
}

/* The tokens for an error message: ["When"," Mary",...] (the first 48). */
static void tokens_line(const tp_tokenizer *tok, const int32_t *ids, size_t n, char *buf, size_t cap)
{
    json_t *a = token_texts(tok, ids, n > 48 ? 48 : n);
    char *s = a ? json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    snprintf(buf, cap, "%s%s", s ? s : "?", n > 48 ? "..." : "");
    free(s);
    json_decref(a);
}

static tp_status encode(patch_job *j, const char *what, const char *text, int32_t **ids, size_t *n)
{
    TP_CHECK(tokenizer_encode(j->tok, text, strlen(text), 0, ids, n));
    if (*n == 0) return tp_err(TP_ERR_CONFIG, "circuits patch: %s '%.80s' has no tokens", what, text);
    return TP_OK;
}

/* A target or distractor: its text must be exactly one token. */
static tp_status one_token(patch_job *j, const char *opt, const char *text, int32_t *id)
{
    int32_t *ids = NULL;
    size_t n = 0;
    tp_status st = tokenizer_encode(j->tok, text, strlen(text), 0, &ids, &n);
    if (st == TP_OK && n != 1) {
        char line[2048];
        tokens_line(j->tok, ids, n, line, sizeof line);
        st = tp_err(TP_ERR_CONFIG, "circuits patch: %s '%s' is %zu tokens %s, not one%s%s%s", opt, text, n, line,
                    text[0] == ' ' ? "" : " (a leading space is part of a word's token: try ' ",
                    text[0] == ' ' ? "" : text, text[0] == ' ' ? "" : "')");
    }
    if (st == TP_OK) *id = ids[0];
    free(ids);
    return st;
}

static tp_status encode_prompts(patch_job *j, const patch_opts *o)
{
    TP_CHECK(encode(j, "--clean", o->clean, &j->clean, &j->nclean));
    if (o->corrupt) {
        TP_CHECK(encode(j, "--corrupt", o->corrupt, &j->corrupt, &j->ncorrupt));
        if (j->ncorrupt != j->nclean) {
            char a[2048], b[2048];
            tokens_line(j->tok, j->clean, j->nclean, a, sizeof a);
            tokens_line(j->tok, j->corrupt, j->ncorrupt, b, sizeof b);
            return tp_err(TP_ERR_CONFIG, "circuits patch: clean and corrupt prompts must have the same number of tokens: "
                          "clean has %zu %s, corrupt has %zu %s", j->nclean, a, j->ncorrupt, b);
        }
    }
    int ctx = j->m->cfg.max_position_embeddings;
    if (j->nclean > (size_t)ctx)
        return tp_err(TP_ERR_CONFIG, "circuits patch: the prompt has %zu tokens, more than the model's context of %d",
                      j->nclean, ctx);
    TP_CHECK(one_token(j, "--target", o->target, &j->target));
    j->distractor = -1;
    if (o->distractor) TP_CHECK(one_token(j, "--distractor", o->distractor, &j->distractor));
    if (j->target == j->distractor)
        return tp_err(TP_ERR_CONFIG, "circuits patch: --target and --distractor are the same token");
    return TP_OK;
}

/* ---- the noised tokens of causal tracing --------------------------------------------------- */

/* Bytes of the prompt each token stands for: one per character of its byte-level
 * string (the byte-level alphabet maps each byte to one character); added tokens
 * stand for their text. */
static size_t token_bytes(const tp_tokenizer *tok, int32_t id)
{
    const char *s = tokenizer_id_to_token(tok, id);
    if (!s) return 0;
    if (tokenizer_is_special(tok, id)) return strlen(s);
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) n += (*p & 0xC0) != 0x80;
    return n;
}

/* TOKENS as a substring: the tokens whose bytes overlap its first occurrence. */
static tp_status noise_substring(patch_job *j, const char *prompt, const char *sub)
{
    const char *at = *sub ? strstr(prompt, sub) : NULL;
    if (!at)
        return tp_err(TP_ERR_CONFIG, "--corrupt-noise: '%s' is neither token positions (like 2 or 1,3 or 2-4) nor a "
                      "substring of the clean prompt", sub);
    size_t a = (size_t)(at - prompt), b = a + strlen(sub), off = 0;
    j->noise_pos = tp_malloc(j->nclean * sizeof(int));
    if (!j->noise_pos) return TP_ERR_NOMEM;
    for (size_t t = 0; t < j->nclean; t++) {
        size_t len = token_bytes(j->tok, j->clean[t]);
        if (off < b && off + len > a) j->noise_pos[j->nnoise++] = (int)t;
        off += len;
    }
    if (off != strlen(prompt) || j->nnoise == 0)
        return tp_err(TP_ERR_CONFIG, "--corrupt-noise: cannot map '%s' to the prompt's tokens; give token positions "
                      "instead (like 1,2 or 1-3)", sub);
    return TP_OK;
}

/* TOKENS as positions: "3", "1,4", "2-5", "0,2-3". */
static tp_status noise_positions(patch_job *j, const char *spec)
{
    int T = (int)j->nclean;
    char *mark = tp_calloc((size_t)T, 1);
    if (!mark) return TP_ERR_NOMEM;
    tp_status st = TP_OK;
    for (const char *p = spec; *p && st == TP_OK;) {
        char *end, *end2;
        long lo = strtol(p, &end, 10), hi = lo;
        if (*end == '-') {
            hi = strtol(end + 1, &end2, 10);
            end = end2 == end + 1 ? end : end2;
        }
        if (end == p || (*end && *end != ',') || (*end == ',' && !end[1]) || hi < lo)
            st = tp_err(TP_ERR_CONFIG, "--corrupt-noise: '%s': expected positions like 2, 1,3 or 2-4", spec);
        else if (lo < 0 || hi >= T)
            st = tp_err(TP_ERR_CONFIG, "--corrupt-noise: position %ld out of range: the prompt has %d tokens (0..%d)",
                        lo < 0 || lo >= T ? lo : hi, T, T - 1);
        for (long t = lo; st == TP_OK && t <= hi; t++) mark[t] = 1;
        p = *end == ',' ? end + 1 : end;
    }
    j->noise_pos = st == TP_OK ? tp_malloc((size_t)T * sizeof(int)) : NULL;
    if (st == TP_OK && !j->noise_pos) st = TP_ERR_NOMEM;
    for (int t = 0; st == TP_OK && t < T; t++)
        if (mark[t]) j->noise_pos[j->nnoise++] = t;
    free(mark);
    return st;
}

/* TOKENS: positions when made only of digits, ',' and '-'; else (or after "text:") a
 * substring of the clean prompt. */
static tp_status noise_tokens(patch_job *j, const patch_opts *o)
{
    const char *spec = o->noise_tokens;
    if (!strncmp(spec, "text:", 5)) return noise_substring(j, o->clean, spec + 5);
    if (*spec && strspn(spec, "0123456789,-") == strlen(spec) && spec[0] >= '0' && spec[0] <= '9')
        return noise_positions(j, spec);
    return noise_substring(j, o->clean, spec);
}

/* The noise: --noise-file [S, n, d] (or [n, d]) as given, else S samples of
 * scale × std × N(0, 1), sample s from seed + s. */
static tp_status make_noise(patch_job *j, const patch_opts *o)
{
    size_t d = (size_t)j->m->cfg.hidden_size, per = (size_t)j->nnoise * d;
    TP_CHECK(patch_embedding_std(j->m, &j->emb_std));
    if (!o->noise_file) {
        j->nsamples = o->seeds;
        if (!(j->noise = tp_malloc((size_t)j->nsamples * per * sizeof(float)))) return TP_ERR_NOMEM;
        for (int s = 0; s < j->nsamples; s++)
            patch_gaussian((uint64_t)o->seed + (uint64_t)s, o->scale * j->emb_std, j->noise + (size_t)s * per, per);
        return TP_OK;
    }
    npy_array a;
    TP_CHECK(npy_read_f32(o->noise_file, &a));
    int ok = (a.ndim == 3 || a.ndim == 2) && a.shape[a.ndim - 1] == (int64_t)d &&
             a.shape[a.ndim - 2] == j->nnoise && a.numel > 0;
    if (!ok) {
        npy_free(&a);
        return tp_err(TP_ERR_CONFIG, "%s: noise must be f32 [samples, %d, %zu] (the noised tokens, the hidden size)",
                      o->noise_file, j->nnoise, d);
    }
    j->nsamples = a.ndim == 3 ? (int)a.shape[0] : 1;
    j->noise = a.data;   /* npy_free would free() it: the job owns it now */
    return TP_OK;
}

/* ---- layers and the name --------------------------------------------------------------------- */

/* The `layers` setting (all when empty), ascending, each once. */
static tp_status sweep_layers(patch_job *j, const tp_settings *set)
{
    int nl = j->m->cfg.num_layers;
    char *mark = tp_calloc((size_t)nl, 1);
    j->layers = tp_malloc((size_t)nl * sizeof(int));
    if (!mark || !j->layers) { free(mark); return TP_ERR_NOMEM; }
    for (size_t i = 0; i < set->n_layers; i++) {
        if (set->layers[i] < 0 || set->layers[i] >= nl) {
            free(mark);
            return tp_err(TP_ERR_CONFIG, "%s: layer %lld out of range (the model has layers 0..%d)",
                          set->layers_origin, (long long)set->layers[i], nl - 1);
        }
        mark[set->layers[i]] = 1;
    }
    for (int L = 0; L < nl; L++)
        if (set->n_layers == 0 || mark[L]) j->layers[j->nlayers++] = L;
    free(mark);
    return TP_OK;
}

static uint32_t fnv1a(uint32_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); ; p++) {
        h = (h ^ *p) * 16777619u;   /* the terminating NUL too: "ab","c" differs from "a","bc" */
        if (!*p) return h;
    }
}

/* --name as given ([A-Za-z0-9._-]), or the clean prompt's first words in lower case
 * joined by '_' (at most 40 characters) + '_' + 8 hex digits of FNV-1a over every
 * prompt option, so two different sweeps never share a file. */
static tp_status job_name(patch_job *j, const patch_opts *o)
{
    if (o->name) {
        size_t n = strlen(o->name);
        if (n == 0 || n > 100 || strspn(o->name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n)
            return tp_err(TP_ERR_CONFIG, "--name '%s': use 1 to 100 letters, digits, '.', '_' or '-'", o->name);
        snprintf(j->name, sizeof j->name, "%s", o->name);
        j->name_given = 1;
        return TP_OK;
    }
    size_t k = 0;
    for (const char *p = o->clean; *p && k < 40; p++) {
        char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) j->name[k++] = c;
        else if (c >= 'A' && c <= 'Z') j->name[k++] = (char)(c - 'A' + 'a');
        else if (k && j->name[k - 1] != '_') j->name[k++] = '_';
    }
    while (k && j->name[k - 1] == '_') k--;
    const char *parts[] = {o->clean, o->corrupt, o->noise_tokens, o->target, o->distractor, o->sweep};
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) h = fnv1a(h, parts[i]);
    snprintf(j->name + k, sizeof j->name - k, "%s%08x", k ? "_" : "", h);
    return TP_OK;
}

/* ---- the JSON ----------------------------------------------------------------------------------- */

static json_t *jnum(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *int_array(const int32_t *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

/* [nlayers][ncols] of v. */
static json_t *grid(const double *v, int rows, int cols)
{
    json_t *a = json_array();
    for (int r = 0; a && r < rows; r++) {
        json_t *row = json_array();
        for (int c = 0; row && c < cols; c++) json_array_append_new(row, jnum(v[(size_t)r * cols + c]));
        json_array_append_new(a, row);
    }
    return a;
}

static json_t *token_obj(const patch_job *j, const char *text, int32_t id)
{
    return json_pack("{s:s, s:i}", "text", text, "id", (json_int_t)id);
}

static json_t *sweeps_obj(const patch_result *r, double *const *vals)
{
    json_t *o = json_object();
    for (int k = 0; o && k < PATCH_NSWEEPS; k++)
        if (vals[k]) json_object_set_new(o, patch_sweep_name((patch_sweep)k), grid(vals[k], r->nlayers, r->ncols[k]));
    return o;
}

static json_t *settings_obj(const patch_job *j, const patch_result *r, unsigned mask)
{
    json_t *sw = json_array(), *ax = json_object(), *layers = json_array();
    for (int k = 0; k < PATCH_NSWEEPS; k++) {
        if (!(mask & (1u << k))) continue;
        json_array_append_new(sw, json_string(patch_sweep_name((patch_sweep)k)));
        json_object_set_new(ax, patch_sweep_name((patch_sweep)k), json_pack("[s,s]", "layer", k == PATCH_Z ? "head" : "pos"));
    }
    for (int i = 0; i < j->nlayers; i++) json_array_append_new(layers, json_integer(j->layers[i]));
    return json_pack("{s:o, s:o, s:o, s:i, s:i, s:i, s:I, s:s, s:s}", "sweeps", sw, "axes", ax, "layers", layers,
                     "positions", (int)j->nclean, "heads", j->m->cfg.num_heads, "cells_per_batch", r->cells_per_batch,
                     "cells", (json_int_t)r->cells, "metric_position", "last",
                     "caching", "clean run kept per layer; each patched run restarts at the patched layer from the "
                     "corrupted residual stream, the cells of one layer batched into one forward");
}

static json_t *patching_json(const patch_job *j, const patch_opts *o, const patch_result *r, unsigned mask)
{
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:{s:o, s:o}, s:{s:o, s:o}, s:o, s:o, s:s, s:o, s:o, s:o, s:o}",
        "method", "activation_patching", "model", j->m->dir, "name", j->name, "name_from",
        j->name_given ? "--name" : "prompts", "prompts", "clean", o->clean, "corrupt", o->corrupt, "tokens", "clean",
        token_texts(j->tok, j->clean, j->nclean), "corrupt", token_texts(j->tok, j->corrupt, j->ncorrupt),
        "token_ids", "clean", int_array(j->clean, j->nclean), "corrupt", int_array(j->corrupt, j->ncorrupt),
        "target", token_obj(j, o->target, j->target), "distractor", token_obj(j, o->distractor, j->distractor),
        "metric", "(LD_patched - LD_corr) / (LD_clean - LD_corr), LD = logit(target) - logit(distractor) at the last position",
        "LD_clean", jnum(r->v_clean), "LD_corr", jnum(r->v_corr), "sweeps", sweeps_obj(r, r->metric),
        "settings", settings_obj(j, r, mask));
}

static json_t *noise_obj(const patch_job *j, const patch_opts *o)
{
    json_t *pos = json_array();
    for (int i = 0; i < j->nnoise; i++) json_array_append_new(pos, json_integer(j->noise_pos[i]));
    char src[TP_PATH_MAX + 16];
    snprintf(src, sizeof src, "%s%s", o->noise_file ? "file " : "gaussian: splitmix64(seed + sample), Box-Muller",
             o->noise_file ? o->noise_file : "");
    /* From a file the noise is what it is: no seed, scale or std of ours. */
    int f = o->noise_file != NULL;
    return json_pack("{s:s, s:o, s:f, s:o, s:o, s:i, s:o, s:s}", "tokens", o->noise_tokens, "positions", pos,
                     "embedding_std", j->emb_std, "scale", f ? json_null() : json_real(o->scale),
                     "std", f ? json_null() : json_real(o->scale * j->emb_std), "samples", j->nsamples,
                     "seed", f ? json_null() : json_integer((json_int_t)o->seed), "source", src);
}

static json_t *tracing_json(const patch_job *j, const patch_opts *o, const patch_result *r, unsigned mask)
{
    json_t *per = json_array();
    for (int s = 0; s < r->nsamples; s++) json_array_append_new(per, jnum(r->v_corr_sample[s]));
    return json_pack(
        "{s:s, s:s, s:s, s:s, s:{s:s}, s:{s:o}, s:{s:o}, s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:o}",
        "method", "causal_tracing", "model", j->m->dir, "name", j->name, "name_from",
        j->name_given ? "--name" : "prompts", "prompts", "clean", o->clean, "tokens", "clean",
        token_texts(j->tok, j->clean, j->nclean), "token_ids", "clean", int_array(j->clean, j->nclean),
        "target", token_obj(j, o->target, j->target), "noise", noise_obj(j, o),
        "metric", "p(target) at the last position (softmax of the logits), averaged over the noise samples; "
                  "normalized: (p_patched - p_corr) / (p_clean - p_corr) of the averages",
        "p_clean", jnum(r->v_clean), "p_corr", jnum(r->v_corr), "p_corr_per_sample", per,
        "sweeps", sweeps_obj(r, r->prob), "sweeps_normalized", sweeps_obj(r, r->metric),
        "settings", settings_obj(j, r, mask));
}

/* ---- the command ------------------------------------------------------------------------------------ */

/* Rank 0: the JSON, written whole or not at all, and one line per sweep. */
static tp_status write_result(const tp_cli *cli, const patch_job *j, const patch_opts *o, const patch_result *r,
                              unsigned mask)
{
    char rel[256], path[TP_PATH_MAX];
    snprintf(rel, sizeof rel, "%s%s.json", RUN_CIRCUITS_PATCH_PREFIX, j->name);
    TP_CHECK(run_path(path, sizeof path, cli->run_dir, rel));
    json_t *doc = o->corrupt ? patching_json(j, o, r, mask) : tracing_json(j, o, r, mask);
    if (!doc) return tp_err(TP_ERR_NOMEM, "circuits patch: cannot build the JSON of %s", path);
    tp_status st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, doc);
    json_decref(doc);
    TP_CHECK(st);
    tp_log_info("circuits patch: %s %.4g, %s %.4g", o->corrupt ? "LD_clean" : "p_clean", r->v_clean,
                o->corrupt ? "LD_corr" : "p_corr", r->v_corr);
    for (int k = 0; k < PATCH_NSWEEPS; k++) {
        if (!r->metric[k]) continue;
        size_t n = (size_t)r->nlayers * (size_t)r->ncols[k], best = 0;
        for (size_t i = 1; i < n; i++) if (r->metric[k][i] > r->metric[k][best]) best = i;
        tp_log_info("circuits patch: %-9s max %.3f at layer %d %s %zu", patch_sweep_name((patch_sweep)k),
                    r->metric[k][best], j->layers[best / (size_t)r->ncols[k]], k == PATCH_Z ? "head" : "pos",
                    best % (size_t)r->ncols[k]);
    }
    tp_log_info("circuits patch: %lld cells in %.3f s (CPU %.3f s on rank 0, %d per batch)", (long long)r->cells,
                r->seconds, r->cpu_seconds, r->cells_per_batch);
    tp_log_info("circuits patch: wrote %s (name from %s)", path, j->name_given ? "--name" : "the prompts");
    return TP_OK;
}

static tp_status run_job(tp_cli *cli, patch_job *j, const patch_opts *o)
{
    TP_CHECK(model_io_open(&cli->set.model, &j->m, &j->tok));
    TP_CHECK(encode_prompts(j, o));
    TP_CHECK(sweep_layers(j, &cli->set));
    TP_CHECK(job_name(j, o));
    unsigned mask = 0;
    TP_CHECK(patch_parse_sweeps(o->sweep ? o->sweep : o->corrupt ? "resid_pre,attn_out,mlp_out,z"
                                                                  : "resid_pre,attn_out,mlp_out", &mask));
    if (o->noise_tokens) {
        TP_CHECK(noise_tokens(j, o));
        TP_CHECK(make_noise(j, o));
    }
    patch_spec spec = {.T = (int)j->nclean, .clean = j->clean, .corrupt = j->corrupt, .nsamples = j->nsamples,
                       .noise = j->noise, .noise_pos = j->noise_pos, .nnoise = j->nnoise, .target = j->target,
                       .distractor = j->distractor, .sweeps = mask, .layers = j->layers, .nlayers = j->nlayers,
                       .cells_per_batch = o->cells_per_batch};
    patch_result r;
    TP_CHECK(patch_run(j->m, &spec, &r));
    tp_status st = dist_rank() == 0 ? write_result(cli, j, o, &r, mask) : TP_OK;
    patch_result_free(&r);
    return dist_agree(MPI_COMM_WORLD, st, "circuits patch: writing the result");
}

tp_status circuits_patch_cmd(tp_cli *cli)
{
    patch_opts o;
    TP_CHECK(read_opts(cli, &o));
    patch_job j = {0};
    tp_status st = run_job(cli, &j, &o);
    free(j.clean), free(j.corrupt), free(j.layers), free(j.noise_pos), free(j.noise);
    tokenizer_free(j.tok);
    model_close(j.m);
    return st;
}
