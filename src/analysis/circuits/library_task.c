/* library_task.c — reading a circuit-library task file and making its prompt pairs
 * (library_task.h). */
#include "analysis/circuits/library_task.h"

#include "core/sample.h"
#include "core/yaml_limit.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_yaml(const char *s)
{
    size_t n = strlen(s);
    return s[0] != '.' && ((n > 5 && !strcmp(s + n - 5, ".yaml")) || (n > 4 && !strcmp(s + n - 4, ".yml")));
}

tp_status lib_task_files(const char *dir, char ***files, int *n)
{
    *files = NULL, *n = 0;
    DIR *d = opendir(dir);
    if (!d) return tp_err(TP_ERR_CONFIG, "circuits library: circuits.library.dir '%s': %s", dir, strerror(errno));
    int cap = 0;
    tp_status st = TP_OK;
    for (struct dirent *e; st == TP_OK && (e = readdir(d));) {
        if (!is_yaml(e->d_name)) continue;
        if (*n == cap) {
            char **g = realloc(*files, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *g);
            if (!g) { st = TP_ERR_NOMEM; break; }
            *files = g;
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        if (!((*files)[*n] = malloc(len))) { st = TP_ERR_NOMEM; break; }
        snprintf((*files)[(*n)++], len, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (st == TP_OK && *n) qsort(*files, (size_t)*n, sizeof **files, cmp_str);
    if (st != TP_OK) lib_task_files_free(*files, *n), *files = NULL, *n = 0;
    return st;
}

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

uint64_t lib_tasks_hash(const char *dir)
{
    uint64_t h = fnv_bytes(14695981039346656037ULL, dir, strlen(dir) + 1);
    char **files = NULL;
    int n = 0;
    if (lib_task_files(dir, &files, &n) != TP_OK) {
        tp_err_clear();
        return fnv_bytes(h, "unreadable", 10);
    }
    for (int i = 0; i < n; i++) {
        const char *base = strrchr(files[i], '/');
        base = base ? base + 1 : files[i];
        h = fnv_bytes(h, base, strlen(base) + 1);
        FILE *f = fopen(files[i], "rb");
        if (!f) { h = fnv_bytes(h, "unreadable", 10); continue; }
        char buf[4096];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, f)) > 0) h = fnv_bytes(h, buf, k);
        if (ferror(f)) h = fnv_bytes(h, "unreadable", 10);
        fclose(f);
    }
    lib_task_files_free(files, n);
    return h;
}

void lib_task_files_free(char **files, int n)
{
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
}

static int line_of(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

/* A scalar value, copied; an error naming file:line and key otherwise. */
static tp_status scalar(const lib_task *t, const yaml_node_t *v, const char *key, char **out)
{
    if (v->type != YAML_SCALAR_NODE)
        return tp_err(TP_ERR_CONFIG, "%s:%d: %s: expected a text value", t->path, line_of(v), key);
    free(*out);
    if (!(*out = strdup((const char *)v->data.scalar.value))) return TP_ERR_NOMEM;
    return TP_OK;
}

static tp_status integer(const lib_task *t, const yaml_node_t *v, const char *key, long lo, long hi, long *out)
{
    char *s = NULL, *end;
    TP_CHECK(scalar(t, v, key, &s));
    errno = 0;
    long x = strtol(s, &end, 10);
    int ok = !errno && end != s && !*end && x >= lo && x <= hi;
    free(s);
    if (!ok) return tp_err(TP_ERR_CONFIG, "%s:%d: %s: expected an integer in %ld..%ld", t->path, line_of(v), key, lo, hi);
    *out = x;
    return TP_OK;
}

/* One item of `pairs:`: a mapping of clean, corrupt, target, distractor. */
static tp_status read_pair(lib_task *t, yaml_document_t *doc, yaml_node_t *m, lib_text_pair *p)
{
    if (m->type != YAML_MAPPING_NODE)
        return tp_err(TP_ERR_CONFIG, "%s:%d: pairs: each item is a mapping {clean, corrupt, target, distractor}",
                      t->path, line_of(m));
    for (yaml_node_pair_t *kv = m->data.mapping.pairs.start; kv < m->data.mapping.pairs.top; kv++) {
        yaml_node_t *k = yaml_document_get_node(doc, kv->key), *v = yaml_document_get_node(doc, kv->value);
        const char *key = k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
        char **dst = !strcmp(key, "clean") ? &p->clean : !strcmp(key, "corrupt") ? &p->corrupt
                   : !strcmp(key, "target") ? &p->target : !strcmp(key, "distractor") ? &p->distractor : NULL;
        if (!dst) return tp_err(TP_ERR_CONFIG, "%s:%d: unknown key 'pairs.%s' (a pair has clean, corrupt, target, "
                                "distractor)", t->path, line_of(k), key);
        TP_CHECK(scalar(t, v, key, dst));
    }
    if (!p->clean || !p->corrupt || !p->target)
        return tp_err(TP_ERR_CONFIG, "%s:%d: pairs: clean, corrupt and target are required", t->path, line_of(m));
    return TP_OK;
}

static tp_status read_pairs(lib_task *t, yaml_document_t *doc, yaml_node_t *seq)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return tp_err(TP_ERR_CONFIG, "%s:%d: pairs: expected a list", t->path, line_of(seq));
    int n = (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (!(t->pairs = calloc((size_t)(n ? n : 1), sizeof *t->pairs))) return TP_ERR_NOMEM;
    t->n_text = n;   /* zeroed: lib_task_free frees whatever an error left */
    for (int i = 0; i < n; i++)
        TP_CHECK(read_pair(t, doc, yaml_document_get_node(doc, seq->data.sequence.items.start[i]), &t->pairs[i]));
    return TP_OK;
}

static tp_status read_key(lib_task *t, yaml_document_t *doc, const char *key, yaml_node_t *k, yaml_node_t *v)
{
    long x;
    if (!strcmp(key, "name")) return scalar(t, v, key, &t->name);
    if (!strcmp(key, "description")) return scalar(t, v, key, &t->description);
    if (!strcmp(key, "generator")) return scalar(t, v, key, &t->generator);
    if (!strcmp(key, "pairs")) return read_pairs(t, doc, v);
    if (!strcmp(key, "n")) { TP_CHECK(integer(t, v, key, 1, 1000, &x)); t->n = (int)x; return TP_OK; }
    if (!strcmp(key, "length")) { TP_CHECK(integer(t, v, key, 1, 100000, &x)); t->length = (int)x; return TP_OK; }
    if (!strcmp(key, "seed")) {
        TP_CHECK(integer(t, v, key, 0, 2147483647L, &x));
        t->seed = (uint64_t)x, t->has_seed = 1;
        return TP_OK;
    }
    return tp_err(TP_ERR_CONFIG, "%s:%d: unknown key '%s' (a task has name, description, generator, n, length, seed, "
                  "pairs)", t->path, line_of(k), key);
}

/* The whole-task checks after every key is read. */
static tp_status check_task(const lib_task *t)
{
    if (!t->name) return tp_err(TP_ERR_CONFIG, "%s: 'name' is required", t->path);
    for (const char *c = t->name; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return tp_err(TP_ERR_CONFIG, "%s: name '%s': use letters, digits, '_' or '-'", t->path, t->name);
    if (t->generator && strcmp(t->generator, "repeat_random") && strcmp(t->generator, "corpus"))
        return tp_err(TP_ERR_CONFIG, "%s: generator '%s': expected repeat_random or corpus", t->path, t->generator);
    if (!t->generator == !t->n_text)
        return tp_err(TP_ERR_CONFIG, "%s: give either 'pairs' or a 'generator' (one of them)", t->path);
    if (t->generator && t->length < 2)
        return tp_err(TP_ERR_CONFIG, "%s: generator %s needs 'length' (at least 2)", t->path, t->generator);
    return TP_OK;
}

static tp_status parse_doc(lib_task *t, yaml_document_t *doc)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root || root->type != YAML_MAPPING_NODE) return tp_err(TP_ERR_CONFIG, "%s: expected a mapping of keys", t->path);
    for (yaml_node_pair_t *kv = root->data.mapping.pairs.start; kv < root->data.mapping.pairs.top; kv++) {
        yaml_node_t *k = yaml_document_get_node(doc, kv->key), *v = yaml_document_get_node(doc, kv->value);
        if (k->type != YAML_SCALAR_NODE) return tp_err(TP_ERR_CONFIG, "%s:%d: a key must be text", t->path, line_of(k));
        TP_CHECK(read_key(t, doc, (const char *)k->data.scalar.value, k, v));
    }
    return check_task(t);
}

tp_status lib_task_load(const char *path, lib_task *t)
{
    memset(t, 0, sizeof *t);
    snprintf(t->path, sizeof t->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return tp_err(TP_ERR_CONFIG, "%s: %s", path, strerror(errno));
    yaml_parser_t parser;
    yaml_document_t doc;
    tp_status st = TP_OK;
    st = yaml_check_depth_file(path, f);
    if (st != TP_OK) { fclose(f); return st; }
    if (!yaml_parser_initialize(&parser)) { fclose(f); return TP_ERR_NOMEM; }
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc))
        st = tp_err(TP_ERR_CONFIG, "%s:%d: %s", path, (int)parser.problem_mark.line + 1,
                    parser.problem ? parser.problem : "YAML error");
    else {
        st = parse_doc(t, &doc);
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    if (st != TP_OK) lib_task_free(t);
    return st;
}

void lib_task_free(lib_task *t)
{
    for (int i = 0; t->pairs && i < t->n_text; i++)
        free(t->pairs[i].clean), free(t->pairs[i].corrupt), free(t->pairs[i].target), free(t->pairs[i].distractor);
    free(t->pairs), free(t->name), free(t->description), free(t->generator);
    t->pairs = NULL, t->name = t->description = t->generator = NULL, t->n_text = 0;
}

/* ---- pairs ---------------------------------------------------------------------------------- */

/* Room for n pairs. */
static tp_status pairs_alloc(lib_pairs *out, int n)
{
    memset(out, 0, sizeof *out);
    out->p = calloc((size_t)n, sizeof *out->p);
    out->ids = calloc((size_t)n * 2, sizeof *out->ids);
    out->text = calloc((size_t)n * 4, sizeof *out->text);
    return out->p && out->ids && out->text ? TP_OK : TP_ERR_NOMEM;
}

void lib_pairs_free(lib_pairs *p)
{
    for (int i = 0; p->ids && i < 2 * p->n; i++) free(p->ids[i]);
    for (int i = 0; p->text && i < 4 * p->n; i++) free(p->text[i]);
    free(p->p), free(p->ids), free(p->text);
    memset(p, 0, sizeof *p);
}

/* Pair i from ids (copied) and texts (decoded when NULL). */
static tp_status pair_set(const circuits_ctx *cx, lib_pairs *out, const int32_t *clean, const int32_t *corr, int T,
                          int32_t target, int32_t distractor)
{
    int i = out->n;
    const int32_t *src[2] = {clean, corr};
    for (int k = 0; k < 2; k++) {
        if (!(out->ids[2 * i + k] = malloc((size_t)T * sizeof(int32_t)))) return TP_ERR_NOMEM;
        memcpy(out->ids[2 * i + k], src[k], (size_t)T * sizeof(int32_t));
    }
    out->n++;
    const int32_t *tx[4][2] = {{clean, NULL}, {corr, NULL}, {&target, NULL}, {&distractor, NULL}};
    int len[4] = {T, T, 1, distractor >= 0};
    for (int k = 0; k < 4; k++) {
        json_t *j = circuits_text_json(cx, tx[k][0], len[k]);
        out->text[4 * i + k] = strdup(j ? json_string_value(j) : "");
        json_decref(j);
        if (!out->text[4 * i + k]) return TP_ERR_NOMEM;
    }
    out->p[i] = (dc_pair){.clean = out->ids[2 * i], .corrupt = out->ids[2 * i + 1], .T = T, .target = target,
                          .distractor = distractor};
    return TP_OK;
}

static tp_status one_token(const circuits_ctx *cx, const lib_task *t, int i, const char *what, const char *text,
                           int32_t *id)
{
    int32_t *ids = NULL;
    size_t n = 0;
    TP_CHECK(tokenizer_encode(cx->tok, text, strlen(text), 0, &ids, &n));
    *id = n == 1 ? ids[0] : -1;
    free(ids);
    if (n != 1) return tp_err(TP_ERR_CONFIG, "%s: pair %d: %s '%s' is %zu tokens, not one", t->path, i + 1, what,
                              text, n);
    return TP_OK;
}

static tp_status explicit_pairs(const circuits_ctx *cx, const lib_task *t, lib_pairs *out)
{
    prompt_limits lim = circuits_limits(cx, 1);
    TP_CHECK(pairs_alloc(out, t->n_text));
    tp_status st = TP_OK;
    for (int i = 0; st == TP_OK && i < t->n_text; i++) {
        const lib_text_pair *q = &t->pairs[i];
        int32_t *a = NULL, *b = NULL, tg = -1, ds = -1;
        int Ta = 0, Tb = 0;
        char what[600];
        snprintf(what, sizeof what, "%s: pair %d: clean", t->path, i + 1);
        st = prompts_encode(cx->tok, q->clean, &lim, what, &a, &Ta);
        snprintf(what, sizeof what, "%s: pair %d: corrupt", t->path, i + 1);
        if (st == TP_OK) st = prompts_encode(cx->tok, q->corrupt, &lim, what, &b, &Tb);
        if (st == TP_OK && Ta != Tb)
            st = tp_err(TP_ERR_CONFIG, "%s: pair %d: clean '%s' is %d tokens but corrupt '%s' is %d; they must have the "
                        "same length", t->path, i + 1, q->clean, Ta, q->corrupt, Tb);
        if (st == TP_OK) st = one_token(cx, t, i, "target", q->target, &tg);
        if (st == TP_OK && q->distractor) st = one_token(cx, t, i, "distractor", q->distractor, &ds);
        if (st == TP_OK && tg == ds) st = tp_err(TP_ERR_CONFIG, "%s: pair %d: target and distractor are the same "
                                                 "token", t->path, i + 1);
        if (st == TP_OK) st = pair_set(cx, out, a, b, Ta, tg, ds);
        free(a), free(b);
    }
    return st;
}

/* repeat_random (library_task.h): 3n synthetic [BOS, r, r] drawn, used two by two. */
static tp_status repeat_pairs(const circuits_ctx *cx, const lib_task *t, int n, lib_pairs *out)
{
    if (cx->bos < 0) return tp_err(TP_ERR_CONFIG, "%s: repeat_random needs a BOS (or EOS) token", t->path);
    prompt_limits lim = circuits_limits(cx, 1);
    lim.bos = cx->bos;
    prompt_set ps = {0};
    int L = t->length;
    tp_status st = pairs_alloc(out, n);
    if (st == TP_OK) st = prompts_add_synthetic(&ps, cx->tok, 3 * n, L, cx->m->cfg.vocab_size,
                                                t->has_seed ? t->seed : cx->cs->seed, &lim);
    for (int i = 0; st == TP_OK && out->n < n && i + 1 < ps.n; i += 2) {
        const int32_t *c = ps.p[i].ids, *r = ps.p[i + 1].ids;   /* [BOS, x1..xL, x1..xL] */
        if (c[L] != r[L]) st = pair_set(cx, out, c, r, 2 * L, c[L], r[L]);
        else i--;   /* same last token: try the next prompt as the corrupt one */
    }
    prompt_set_free(&ps);
    if (st == TP_OK && out->n < n) st = tp_err(TP_ERR_CONFIG, "%s: could not draw %d pairs", t->path, n);
    return st;
}

/* corpus (library_task.h): windows of length + 1 tokens after the BOS, seeded order. */
static tp_status corpus_pairs(const circuits_ctx *cx, const lib_task *t, int n, lib_pairs *out)
{
    prompt_limits lim = circuits_limits(cx, 1);
    prompt_set ps = {0};
    int b = lim.bos >= 0 ? 1 : 0, len = t->length, nw = 0;
    uint64_t rng = (t->has_seed ? t->seed : cx->cs->seed) ^ 0x636f72707573ULL;   /* "corpus" */
    tp_status st = pairs_alloc(out, n);
    if (st == TP_OK) st = prompts_add_heldout(&ps, cx->tok, &cx->set->data, cx->m->cfg.eos_token_id,
                                              cx->cs->discover_docs, rng, &lim);
    for (int i = 0; i < ps.n; i++) nw += ps.p[i].n >= b + len + 1 ? (ps.p[i].n - b - 1) / len : 0;
    int *w = malloc((size_t)(nw ? nw : 1) * 2 * sizeof *w), k = 0;
    int32_t *buf = malloc((size_t)(b + len) * 2 * sizeof *buf);
    if (st == TP_OK && (!w || !buf)) st = TP_ERR_NOMEM;
    for (int i = 0; st == TP_OK && i < ps.n; i++)
        for (int o = 0; b + o + len + 1 <= ps.p[i].n; o += len) w[2 * k] = i, w[2 * k + 1] = o, k++;
    for (int i = k - 1; st == TP_OK && i > 0; i--) {
        int j = (int)tp_rng_below(&rng, (uint64_t)i + 1), a0 = w[2 * i], a1 = w[2 * i + 1];
        w[2 * i] = w[2 * j], w[2 * i + 1] = w[2 * j + 1], w[2 * j] = a0, w[2 * j + 1] = a1;
    }
    for (int i = 0; st == TP_OK && out->n < n && i + 1 < k; i += 2) {
        const int32_t *x = ps.p[w[2 * i]].ids + b + w[2 * i + 1], *y = ps.p[w[2 * i + 2]].ids + b + w[2 * i + 3];
        if (x[len] == y[len]) { i--; continue; }
        for (int j = 0; j < b; j++) buf[j] = buf[b + len + j] = ps.p[0].ids[0];
        memcpy(buf + b, x, (size_t)len * sizeof *buf);
        memcpy(buf + 2 * b + len, y, (size_t)len * sizeof *buf);
        st = pair_set(cx, out, buf, buf + b + len, b + len, x[len], y[len]);
    }
    free(w), free(buf);
    prompt_set_free(&ps);
    if (st == TP_OK && out->n < n)
        st = tp_err(TP_ERR_CONFIG, "%s: only %d of %d corpus pairs of %d tokens (raise circuits.discover.corpus_docs or "
                    "data.seq_len)", t->path, out->n, n, len);
    return st;
}

tp_status lib_task_pairs(const circuits_ctx *cx, const lib_task *t, lib_pairs *out)
{
    int n = t->n ? t->n : (int)cx->cs->library_pairs;
    tp_status st = !t->generator ? explicit_pairs(cx, t, out)
                 : !strcmp(t->generator, "repeat_random") ? repeat_pairs(cx, t, n, out) : corpus_pairs(cx, t, n, out);
    if (st != TP_OK) lib_pairs_free(out);
    return st;
}
