/* query_cmd.c — `transpolmo query` (query_cmd.h). */
#include "cmd/query_cmd.h"

#include "core/fsutil.h"
#include "core/log.h"
#include "dist/world.h"
#include "run_layout.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLS 8

typedef struct {
    const char *subject, *token, *domain, *hook, *cls, *task, *geometry, *doc;
    int has_layer, verified, json;
    int64_t layer, limit;
} query_opts;

static tp_status take(tp_cli *cli, const char *name, const char **out)
{
    *out = cli_take_value(cli, name);
    if (*out) return TP_OK;
    for (int i = 0; i < cli->nrest; i++)
        if (!cli->rest_used[i] && !strcmp(cli->rest[i], name)) return tp_err(TP_ERR_CONFIG, "query: %s needs a value", name);
    return TP_OK;
}

static tp_status parse_int(const char *opt, const char *v, int64_t lo, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo)
        return tp_err(TP_ERR_CONFIG, "query: %s '%s' is not an integer >= %lld", opt, v, (long long)lo);
    *out = x;
    return TP_OK;
}

/* Options a subject does not take are errors, not silently ignored filters. */
static tp_status only(const query_opts *o, const char *opt, const void *given, const char *subjects)
{
    if (given && !strstr(subjects, o->subject))
        return tp_err(TP_ERR_CONFIG, "query %s: %s is a filter of %s only", o->subject, opt, subjects);
    return TP_OK;
}

static tp_status parse_opts(tp_cli *cli, query_opts *o)
{
    memset(o, 0, sizeof *o);
    o->subject = cli_take_positional(cli);
    static const char *const subjects = "features, heads, circuits, layers";
    if (!o->subject) return tp_err(TP_ERR_CONFIG, "query: missing subject (%s)", subjects);
    if (strcmp(o->subject, "features") && strcmp(o->subject, "heads") && strcmp(o->subject, "circuits") &&
        strcmp(o->subject, "layers"))
        return tp_err(TP_ERR_CONFIG, "query: unknown subject '%s' (%s)", o->subject, subjects);
    const char *v;
    TP_CHECK(take(cli, "--layer", &v));
    if (v) {
        TP_CHECK(parse_int("--layer", v, 0, &o->layer));
        o->has_layer = 1;
    }
    TP_CHECK(take(cli, "--limit", &v));
    if (v) TP_CHECK(parse_int("--limit", v, 1, &o->limit));
    TP_CHECK(take(cli, "--token", &o->token));
    TP_CHECK(take(cli, "--domain", &o->domain));
    TP_CHECK(take(cli, "--hook", &o->hook));
    TP_CHECK(take(cli, "--class", &o->cls));
    TP_CHECK(take(cli, "--task", &o->task));
    TP_CHECK(take(cli, "--geometry", &o->geometry));
    TP_CHECK(take(cli, "--doc", &o->doc));
    o->verified = cli_take_flag(cli, "--verified");
    o->json = cli_take_flag(cli, "--json");
    TP_CHECK(cli_reject_rest(cli));
    TP_CHECK(only(o, "--token", o->token, "features"));
    TP_CHECK(only(o, "--domain", o->domain, "features"));
    TP_CHECK(only(o, "--hook", o->hook, "features"));
    TP_CHECK(only(o, "--class", o->cls, "heads"));
    TP_CHECK(only(o, "--task", o->task, "circuits"));
    TP_CHECK(only(o, "--geometry", o->geometry, "layers"));
    TP_CHECK(only(o, "--layer", o->has_layer ? "" : NULL, "features, heads, layers"));
    TP_CHECK(only(o, "--verified", o->verified ? "" : NULL, "features, heads, circuits"));
    if (o->token && !*o->token) return tp_err(TP_ERR_CONFIG, "query: --token is empty");
    return TP_OK;
}

/* ---- output: a table or JSON lines ----------------------------------------------------------- */

typedef struct {
    int ncols;
    const char *head[MAX_COLS];
    char **cells;     /* [rows][ncols] */
    size_t rows, cap;
    json_t *json;     /* the matching entries, for --json */
} result;

static tp_status add_row(result *r, json_t *entry, const char *const *cells)
{
    if (r->rows == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 64;
        char **c = realloc(r->cells, cap * (size_t)r->ncols * sizeof *c);
        if (!c) return tp_err(TP_ERR_NOMEM, "query: the table");
        r->cells = c, r->cap = cap;
    }
    for (int k = 0; k < r->ncols; k++) {
        char *s = strdup(cells[k] ? cells[k] : "");
        for (char *p = s; p && *p; p++)
            if (*p == '\n' || *p == '\t' || *p == '\r') *p = ' ';
        r->cells[r->rows * (size_t)r->ncols + (size_t)k] = s;
    }
    r->rows++;
    json_array_append(r->json, entry);
    return TP_OK;
}

static tp_status print_result(const result *r, const query_opts *o)
{
    size_t n = o->limit && (size_t)o->limit < r->rows ? (size_t)o->limit : r->rows;
    if (o->json) {
        for (size_t i = 0; i < n; i++) {
            char *s = json_dumps(json_array_get(r->json, i), JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
            if (!s) return tp_err(TP_ERR_NOMEM, "query: JSON");
            int bad = printf("%s\n", s) < 0;
            free(s);
            if (bad) return tp_err(TP_ERR_IO, "query: writing to stdout failed");
        }
        return fflush(stdout) ? tp_err(TP_ERR_IO, "query: writing to stdout failed") : TP_OK;
    }
    size_t w[MAX_COLS];
    for (int k = 0; k < r->ncols; k++) {
        w[k] = strlen(r->head[k]);
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(r->cells[i * (size_t)r->ncols + (size_t)k]);
            if (l > w[k]) w[k] = l;
        }
    }
    for (size_t i = 0; i <= n; i++)
        for (int k = 0; k < r->ncols; k++) {
            const char *c = i ? r->cells[(i - 1) * (size_t)r->ncols + (size_t)k] : r->head[k];
            if (k + 1 < r->ncols) printf("%-*s  ", (int)w[k], c);
            else printf("%s\n", c);
        }
    return fflush(stdout) ? tp_err(TP_ERR_IO, "query: writing to stdout failed") : TP_OK;
}

static void result_free(result *r)
{
    for (size_t i = 0; i < r->rows * (size_t)r->ncols; i++) free(r->cells[i]);
    free(r->cells);
    json_decref(r->json);
}

static const char *fmt(char *buf, size_t n, const json_t *v, const char *f)
{
    if (json_is_number(v)) snprintf(buf, n, f, json_number_value(v));
    else if (json_is_true(v)) snprintf(buf, n, "yes");
    else if (json_is_false(v)) snprintf(buf, n, "no");
    else if (json_is_string(v)) snprintf(buf, n, "%s", json_string_value(v));
    else snprintf(buf, n, "-");
    return buf;
}

static const char *verdict(const json_t *v) { return json_is_true(v) ? "yes" : json_is_false(v) ? "no" : "untested"; }

static int layer_ok(const query_opts *o, const json_t *e)
{
    return !o->has_layer || json_integer_value(json_object_get(e, "layer")) == o->layer;
}

static int verified_ok(const query_opts *o, const json_t *e)
{
    return !o->verified || json_is_true(json_object_get(e, "verified"));
}

/* The model's layer count, for --layer's range. */
static tp_status check_layer(const query_opts *o, const json_t *doc)
{
    json_int_t L = json_integer_value(json_object_get(json_object_get(json_object_get(doc, "architecture"), "config"),
                                                      "num_layers"));
    if (o->has_layer && L > 0 && o->layer >= L)
        return tp_err(TP_ERR_CONFIG, "query: --layer %lld is out of range (the model has layers 0..%lld)",
                      (long long)o->layer, (long long)L - 1);
    return TP_OK;
}

/* ---- subjects -------------------------------------------------------------------------------- */

/* A top token of the feature contains token, or its verified description's rule does. */
static int token_match(const json_t *f, const char *token)
{
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(f, "top_tokens"), i, t) {
        const char *s = json_string_value(json_object_get(t, "token"));
        if (s && strstr(s, token)) return 1;
    }
    /* a verified description's rule names its tokens; the catalog's summary would match its own words */
    const json_t *d = json_object_get(f, "description");
    const char *rule = json_string_value(json_object_get(d, "rule"));
    return rule && strstr(rule, token);
}

static tp_status features(const json_t *doc, const query_opts *o, result *r)
{
    static const char *const head[] = {"hook", "feature", "density", "top_domain", "verified", "description"};
    r->ncols = 6;
    memcpy(r->head, head, sizeof head);
    const json_t *saes = json_object_get(json_object_get(doc, "features"), "saes");
    if (o->hook) {
        size_t i;
        json_t *s;
        int found = 0;
        json_array_foreach(saes, i, s) found |= !strcmp(json_string_value(json_object_get(s, "hook")) ?: "", o->hook);
        if (!found) return tp_err(TP_ERR_CONFIG, "query features: no SAE at '%s' in the documentation", o->hook);
    }
    size_t i, k;
    json_t *s, *f;
    json_array_foreach(saes, i, s) {
        const char *hook = json_string_value(json_object_get(s, "hook")) ?: "";
        if ((o->hook && strcmp(hook, o->hook)) || !layer_ok(o, s)) continue;
        json_array_foreach(json_object_get(s, "features"), k, f) {
            const char *dom = json_string_value(json_object_get(f, "top_domain"));
            if (o->domain && (!dom || strcmp(dom, o->domain))) continue;
            if (o->token && !token_match(f, o->token)) continue;
            if (!verified_ok(o, f)) continue;
            char id[32], dens[32];
            snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(f, "id")));
            const char *cells[] = {hook, id, fmt(dens, sizeof dens, json_object_get(f, "density"), "%.4f"), dom ? dom : "-",
                                   verdict(json_object_get(f, "verified")),
                                   json_string_value(json_object_get(json_object_get(f, "description"), "text"))};
            json_t *e = json_pack("{s:s, s:O}", "hook", hook, "layer", json_object_get(s, "layer"));
            json_object_update(e, f);
            tp_status st = add_row(r, e, cells);
            json_decref(e);
            TP_CHECK(st);
        }
    }
    return TP_OK;
}

static tp_status heads(const json_t *doc, const query_opts *o, result *r)
{
    static const char *const head[] = {"head", "class", "score", "null_baseline", "verified"};
    r->ncols = 5;
    memcpy(r->head, head, sizeof head);
    const json_t *h = json_object_get(doc, "heads"), *by = json_object_get(h, "by_class"),
                 *thr = json_object_get(h, "thresholds");
    if (o->cls && !json_object_get(by, o->cls) && !json_object_get(thr, o->cls)) {
        char known[512] = "";
        size_t n = 0;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)(thr ? thr : by), k, v) n += (size_t)snprintf(known + n, n < sizeof known ? sizeof known - n : 0, "%s%s", n ? ", " : "", k);
        return tp_err(TP_ERR_CONFIG, "query heads: unknown class '%s' (classes: %s)", o->cls, known[0] ? known : "none");
    }
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(h, "classes"), i, c) {
        if ((o->cls && strcmp(json_string_value(json_object_get(c, "class")) ?: "", o->cls)) || !layer_ok(o, c) ||
            !verified_ok(o, c))
            continue;
        char sc[32], nb[32];
        const char *cells[] = {json_string_value(json_object_get(c, "name")), json_string_value(json_object_get(c, "class")),
                               fmt(sc, sizeof sc, json_object_get(c, "score"), "%.3f"),
                               fmt(nb, sizeof nb, json_object_get(c, "null_baseline"), "%.3f"),
                               verdict(json_object_get(c, "verified"))};
        TP_CHECK(add_row(r, c, cells));
    }
    return TP_OK;
}

static tp_status circuits(const json_t *doc, const query_opts *o, result *r)
{
    static const char *const head[] = {"task", "can_do", "ld_clean", "ld_corr", "kept_nodes", "cpr", "verified", "heads"};
    r->ncols = 8;
    memcpy(r->head, head, sizeof head);
    const json_t *tasks = json_object_get(json_object_get(doc, "circuits"), "tasks");
    size_t i;
    json_t *t;
    if (o->task) {
        char known[512] = "";
        size_t n = 0;
        int found = 0;
        json_array_foreach(tasks, i, t) {
            const char *name = json_string_value(json_object_get(t, "task")) ?: "";
            found |= !strcmp(name, o->task);
            n += (size_t)snprintf(known + n, n < sizeof known ? sizeof known - n : 0, "%s%s", n ? ", " : "", name);
        }
        if (!found)
            return tp_err(TP_ERR_CONFIG, "query circuits: unknown task '%s' (tasks: %s)", o->task, known[0] ? known : "none");
    }
    json_array_foreach(tasks, i, t) {
        if ((o->task && strcmp(json_string_value(json_object_get(t, "task")) ?: "", o->task)) || !verified_ok(o, t)) continue;
        char a[32], b[32], c[32], d[32], hl[1024] = "";
        size_t n = 0, k;
        json_t *x;
        json_array_foreach(json_object_get(t, "heads"), k, x)
            n += (size_t)snprintf(hl + n, n < sizeof hl ? sizeof hl - n : 0, "%s%s", k ? "," : "", json_string_value(x));
        const json_t *fa = json_object_get(t, "faithfulness");
        const char *cells[] = {json_string_value(json_object_get(t, "task")), verdict(json_object_get(t, "can_do")),
                               fmt(a, sizeof a, json_object_get(t, "ld_clean"), "%.2f"),
                               fmt(b, sizeof b, json_object_get(t, "ld_corr"), "%.2f"),
                               fmt(c, sizeof c, json_object_get(fa, "kept_nodes"), "%g"),
                               fmt(d, sizeof d, json_object_get(fa, "cpr"), "%.3f"), verdict(json_object_get(t, "verified")), hl};
        TP_CHECK(add_row(r, t, cells));
    }
    return TP_OK;
}

static tp_status layers(const json_t *doc, const query_opts *o, result *r)
{
    static const char *const head[] = {"hook", "layer", "label", "pca_dim_90", "mle", "twonn", "mean_cosine"};
    r->ncols = 7;
    memcpy(r->head, head, sizeof head);
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(json_object_get(doc, "geometry"), "layers"), i, l) {
        const char *label = json_string_value(json_object_get(l, "label"));
        if ((o->geometry && (!label || !strstr(label, o->geometry))) || !layer_ok(o, l)) continue;
        char ly[16], p[32], m[32], t[32], c[32];
        const char *cells[] = {json_string_value(json_object_get(l, "hook")), fmt(ly, sizeof ly, json_object_get(l, "layer"), "%g"),
                               label ? label : "-", fmt(p, sizeof p, json_object_get(l, "pca_dim_90"), "%g"),
                               fmt(m, sizeof m, json_object_get(l, "mle"), "%.1f"),
                               fmt(t, sizeof t, json_object_get(l, "twonn"), "%.1f"),
                               fmt(c, sizeof c, json_object_get(l, "mean_cosine"), "%.3f")};
        TP_CHECK(add_row(r, l, cells));
    }
    return TP_OK;
}

tp_status query_cmd_run(tp_cli *cli)
{
    query_opts o;
    TP_CHECK(parse_opts(cli, &o));
    if (dist_rank() != 0) return TP_OK;
    char path[TP_PATH_MAX];
    if (o.doc) TP_CHECK(fs_path(path, sizeof path, "%s", o.doc));
    else TP_CHECK(run_path(path, sizeof path, cli->run_dir, RUN_DOCS_JSON));
    if (!fs_exists(path))
        return tp_err(TP_ERR_IO, "query: no documentation at %s (make it with `transpolmo document --out %s`)", path,
                      cli->run_dir);
    json_error_t e;
    json_t *doc = json_load_file(path, 0, &e);
    if (!doc) return tp_err(TP_ERR_FORMAT, "query: %s: line %d: %s", path, e.line, e.text);
    result r = {.json = json_array()};
    tp_status st = check_layer(&o, doc);
    if (st == TP_OK) {
        if (!strcmp(o.subject, "features")) st = features(doc, &o, &r);
        else if (!strcmp(o.subject, "heads")) st = heads(doc, &o, &r);
        else if (!strcmp(o.subject, "circuits")) st = circuits(doc, &o, &r);
        else st = layers(doc, &o, &r);
    }
    if (st == TP_OK && r.rows == 0) tp_log_info("query %s: nothing matches", o.subject);
    else if (st == TP_OK) {
        st = print_result(&r, &o);
        if (st == TP_OK)
            tp_log_info("query %s: %zu match(es)%s; from %s", o.subject, r.rows,
                        o.limit && (size_t)o.limit < r.rows ? " (--limit)" : "", path);
    }
    result_free(&r);
    json_decref(doc);
    return st;
}
