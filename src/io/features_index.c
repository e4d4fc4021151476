#define _GNU_SOURCE   /* st_mtim */
#include "io/features_index.h"

#include "core/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const features_index_columns[FX_NCOLS] = {
    [FX_SAE] = "sae", [FX_HOOK] = "hook", [FX_LAYER] = "layer", [FX_FEATURE] = "feature", [FX_FIRES] = "fires",
    [FX_DENSITY] = "density", [FX_MEAN] = "mean_activation", [FX_MAX] = "max_activation", [FX_DEAD] = "dead",
    [FX_DENSE] = "dense", [FX_TOP_DOMAIN] = "top_domain", [FX_TOP_DOMAIN_SHARE] = "top_domain_share",
    [FX_TOP_TOKEN] = "top_token", [FX_TOP_CONTEXT] = "top_context", [FX_TOKENS] = "top_tokens",
    [FX_PROMOTES] = "promoted_tokens", [FX_DOMAIN_PROFILE] = "domain_profile", [FX_OFFSET] = "offset",
    [FX_LENGTH] = "length",
};

#define JSON_FLAGS (JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(9))

/* ---- a growing text buffer ------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 4096;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) { b->oom = 1; return; }
        b->p = q, b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A cell: the text with \ tab newline CR escaped. */
static void sb_cell(sbuf *b, const char *s)
{
    if (!s) return;
    for (const char *p = s; *p; p++) {
        switch (*p) {
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        default: sb_put(b, p, 1);
        }
    }
}

static void sb_json_cell(sbuf *b, const json_t *j)
{
    if (!j) return;
    char *t = json_dumps(j, JSON_FLAGS);
    if (!t) { b->oom = 1; return; }
    sb_cell(b, t);
    free(t);
}

static void sb_num_cell(sbuf *b, const json_t *j)
{
    if (json_is_integer(j)) sb_printf(b, "%lld", (long long)json_integer_value(j));
    else if (json_is_real(j) && isfinite(json_real_value(j))) sb_printf(b, "%.9g", json_real_value(j));
}

/* ---- what the index says of a feature ------------------------------------------------------ */

static const char *top_domain_of(const json_t *feat)
{
    const char *t = json_string_value(json_object_get(feat, "top_domain"));
    if (t) return t;
    const char *key, *best = NULL;
    json_t *v;
    double bv = -INFINITY;
    json_object_foreach((json_t *)json_object_get(feat, "domain_profile"), key, v) {
        if (json_is_number(v) && json_number_value(v) > bv) bv = json_number_value(v), best = key;
    }
    return best;
}

/* The distinct strings at key `key` of the objects of list, first occurrence first. */
static json_t *distinct_tokens(const json_t *list, const char *key)
{
    json_t *out = json_array();
    size_t i, k;
    json_t *e, *x;
    json_array_foreach(list, i, e) {
        const char *t = json_string_value(json_object_get(e, key));
        if (!t) continue;
        int seen = 0;
        json_array_foreach(out, k, x) seen |= !strcmp(json_string_value(x), t);
        if (!seen) json_array_append_new(out, json_string(t));
    }
    return out;
}

/* dense[id] for the ids of the layer's dense_features; NULL without the list. */
static char *dense_set(const json_t *layer, int64_t *n)
{
    const json_t *list = json_object_get(layer, "dense_features");
    *n = 0;
    if (!json_is_array(list)) return NULL;
    size_t i;
    json_t *v;
    int64_t mx = -1;
    json_array_foreach(list, i, v) if (json_integer_value(v) > mx) mx = json_integer_value(v);
    char *d = calloc((size_t)(mx + 2), 1);
    if (!d) return NULL;
    json_array_foreach(list, i, v) if (json_integer_value(v) >= 0) d[json_integer_value(v)] = 1;
    *n = mx + 1;
    return d;
}

static void index_line(sbuf *b, size_t sae_i, const json_t *layer, const json_t *feat, const char *dense,
                       int64_t n_dense, int has_dense, int64_t off, int64_t len)
{
    sb_printf(b, "%zu\t", sae_i);
    sb_cell(b, json_string_value(json_object_get(layer, "hook")));
    sb_put(b, "\t", 1);
    sb_num_cell(b, json_object_get(layer, "layer"));
    sb_put(b, "\t", 1);
    const json_t *id = json_object_get(feat, "id"), *fires = json_object_get(feat, "fires");
    const json_t *dens = json_object_get(feat, "density");
    sb_num_cell(b, id);
    sb_put(b, "\t", 1);
    sb_num_cell(b, fires);
    sb_put(b, "\t", 1);
    sb_num_cell(b, dens);
    sb_put(b, "\t", 1);
    sb_num_cell(b, json_object_get(feat, "mean_activation"));
    sb_put(b, "\t", 1);
    sb_num_cell(b, json_object_get(feat, "max_activation"));
    sb_put(b, "\t", 1);
    if (json_is_integer(fires)) sb_puts(b, json_integer_value(fires) == 0 ? "1" : "0");
    else if (json_is_number(dens)) sb_puts(b, json_number_value(dens) == 0 ? "1" : "0");
    sb_put(b, "\t", 1);
    if (has_dense) {
        int64_t v = json_is_integer(id) ? json_integer_value(id) : -1;
        sb_puts(b, v >= 0 && v < n_dense && dense[v] ? "1" : "0");
    }
    sb_put(b, "\t", 1);
    const char *td = top_domain_of(feat);
    const json_t *dp = json_object_get(feat, "domain_profile");
    sb_cell(b, td);
    sb_put(b, "\t", 1);
    if (td) sb_num_cell(b, json_object_get(dp, td));
    sb_put(b, "\t", 1);
    const json_t *tc = json_object_get(feat, "top_contexts"), *t0 = json_array_get(tc, 0);
    sb_cell(b, json_string_value(json_object_get(t0, "token")));
    sb_put(b, "\t", 1);
    sb_cell(b, json_string_value(json_object_get(t0, "context")));
    sb_put(b, "\t", 1);
    if (json_is_array(tc)) {
        json_t *t = distinct_tokens(tc, "token");
        sb_json_cell(b, t);
        json_decref(t);
    }
    sb_put(b, "\t", 1);
    const json_t *pr = json_object_get(feat, "promotes");
    if (json_is_array(pr)) {
        json_t *t = distinct_tokens(pr, "token");
        sb_json_cell(b, t);
        json_decref(t);
    }
    sb_put(b, "\t", 1);
    if (json_is_object(dp)) sb_json_cell(b, dp);
    sb_put(b, "\t", 1);
    if (off >= 0) sb_printf(b, "%lld\t%lld", (long long)off, (long long)len);
    else sb_put(b, "\t", 1);
    sb_put(b, "\n", 1);
}

static void index_header(sbuf *b, const json_t *doc, int64_t bytes, int64_t mtime_ns)
{
    json_t *meta = json_array();
    size_t i;
    json_t *L;
    json_array_foreach(json_object_get(doc, "saes"), i, L) {
        json_t *m = json_object();
        const char *keys[] = {"hook", "layer", "d_sae", "rows", "domain_rows"};
        for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
            json_t *v = json_object_get(L, keys[k]);
            if (v) json_object_set(m, keys[k], v);
        }
        json_object_set_new(m, "features", json_integer((json_int_t)json_array_size(json_object_get(L, "features"))));
        json_array_append_new(meta, m);
    }
    const char *schema = json_string_value(json_object_get(doc, "schema"));
    sb_printf(b, "# %s\tcatalog_bytes=%lld\tcatalog_mtime_ns=%lld\tcatalog_schema=", FEATURES_INDEX_SCHEMA,
              (long long)bytes, (long long)mtime_ns);
    sb_cell(b, schema ? schema : "");
    sb_puts(b, "\tsaes=");
    sb_json_cell(b, meta);
    json_decref(meta);
    sb_put(b, "\n", 1);
    for (int c = 0; c < FX_NCOLS; c++) {
        if (c) sb_put(b, "\t", 1);
        sb_puts(b, features_index_columns[c]);
    }
    sb_put(b, "\n", 1);
}

/* ---- writing ---------------------------------------------------------------------------------- */

typedef struct {
    FILE *f;
    const char *path;
    int64_t pos;
    tp_status st;
} out_t;

static void out_put(out_t *o, const char *s, size_t n)
{
    if (o->st != TP_OK || n == 0) return;
    if (fwrite(s, 1, n, o->f) != n)
        o->st = tp_err(TP_ERR_IO, "writing '%s' failed: %s", o->path, strerror(errno ? errno : EIO));
    o->pos += (int64_t)n;
}

static void out_puts(out_t *o, const char *s) { out_put(o, s, strlen(s)); }

static void out_json(out_t *o, const json_t *j)
{
    if (o->st != TP_OK) return;
    char *t = json_dumps(j, JSON_FLAGS);
    if (!t) { o->st = tp_err(TP_ERR_NOMEM, "serialising the features catalog '%s'", o->path); return; }
    out_puts(o, t);
    free(t);
}

static void out_key(out_t *o, const char *key)
{
    json_t *k = json_string(key);
    out_json(o, k);
    json_decref(k);
    out_put(o, ":", 1);
}

static void write_features(out_t *o, sbuf *ix, size_t sae_i, const json_t *layer, const json_t *feats)
{
    if (json_array_size(feats) == 0) { out_puts(o, "[]"); return; }
    int64_t n_dense;
    char *dense = dense_set(layer, &n_dense);
    int has_dense = json_is_array(json_object_get(layer, "dense_features"));
    if (has_dense && !dense) { o->st = tp_err(TP_ERR_NOMEM, "features index"); return; }
    out_put(o, "[", 1);
    size_t k;
    json_t *f;
    json_array_foreach(feats, k, f) {
        out_puts(o, k ? ",\n" : "\n");
        char *t = json_dumps(f, JSON_FLAGS);
        if (!t) { o->st = tp_err(TP_ERR_NOMEM, "serialising the features catalog '%s'", o->path); break; }
        const int64_t off = o->pos, len = (int64_t)strlen(t);
        out_put(o, t, (size_t)len);
        free(t);
        index_line(ix, sae_i, layer, f, dense, n_dense, has_dense, off, len);
    }
    out_puts(o, "\n]");
    free(dense);
}

static void write_layer(out_t *o, sbuf *ix, size_t sae_i, const json_t *layer)
{
    if (!json_is_object(layer)) { out_json(o, layer); return; }
    const char *key;
    json_t *v;
    int first = 1;
    out_put(o, "{", 1);
    json_object_foreach((json_t *)layer, key, v) {
        out_puts(o, first ? "\n" : ",\n");
        first = 0;
        out_key(o, key);
        if (!strcmp(key, "features") && json_is_array(v)) write_features(o, ix, sae_i, layer, v);
        else out_json(o, v);
    }
    out_puts(o, first ? "}" : "\n}");
}

static void write_doc(out_t *o, sbuf *ix, const json_t *doc)
{
    const char *key;
    json_t *v;
    int first = 1;
    out_put(o, "{", 1);
    json_object_foreach((json_t *)doc, key, v) {
        out_puts(o, first ? "\n" : ",\n");
        first = 0;
        out_key(o, key);
        if (!strcmp(key, "saes") && json_is_array(v)) {
            if (json_array_size(v) == 0) { out_puts(o, "[]"); continue; }
            out_put(o, "[", 1);
            size_t i;
            json_t *L;
            json_array_foreach(v, i, L) {
                out_puts(o, i ? ",\n" : "\n");
                write_layer(o, ix, i, L);
            }
            out_puts(o, "\n]");
        } else {
            out_json(o, v);
        }
    }
    out_puts(o, first ? "}\n" : "\n}\n");
}

tp_status features_file_write(const char *path, const char *index_path, const json_t *doc)
{
    if (!json_is_object(doc)) return tp_err(TP_ERR_INTERNAL, "features catalog '%s': not a JSON object", path);
    TP_CHECK(fs_mkdir_parent(path));
    TP_CHECK(fs_mkdir_parent(index_path));
    FILE *cf = NULL, *xf = NULL;
    TP_CHECK(fs_open_tmp(path, &cf));
    tp_status st = fs_open_tmp(index_path, &xf);
    if (st != TP_OK) { fs_abort(cf, path); return st; }
    sbuf body = {0}, head = {0};
    out_t o = {.f = cf, .path = path};
    write_doc(&o, &body, doc);
    st = o.st;
    /* Size and mtime of the finished catalog (a rename keeps both). */
    struct stat sb;
    if (st == TP_OK && (fflush(cf) != 0 || ferror(cf) || fstat(fileno(cf), &sb) != 0))
        st = tp_err(TP_ERR_IO, "writing '%s' failed: %s", path, strerror(errno ? errno : EIO));
    if (st == TP_OK) {
        index_header(&head, doc, (int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec);
        if (head.oom || body.oom) st = tp_err(TP_ERR_NOMEM, "features index '%s'", index_path);
    }
    if (st == TP_OK && (fwrite(head.p, 1, head.n, xf) != head.n || (body.n && fwrite(body.p, 1, body.n, xf) != body.n)))
        st = tp_err(TP_ERR_IO, "writing '%s' failed: %s", index_path, strerror(errno ? errno : EIO));
    free(body.p), free(head.p);
    if (st != TP_OK) {
        fs_abort(cf, path);
        fs_abort(xf, index_path);
        return st;
    }
    /* Both complete: the catalog first, then its index. */
    st = fs_commit(cf, path);
    if (st != TP_OK) {
        fs_abort(xf, index_path);
        return st;
    }
    return fs_commit(xf, index_path);
}

/* ---- reading ---------------------------------------------------------------------------------- */

void features_index_free(features_index *x)
{
    free(x->buf);
    free(x->cell);
    json_decref(x->saes);
    memset(x, 0, sizeof *x);
}

/* Unescapes s in place. */
static void unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '\\' && r[1]) {
            r++;
            *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
}

static tp_status bad(const char *what, int64_t line, const char *why)
{
    return tp_err(TP_ERR_FORMAT, "%s:%lld: %s", what, (long long)line, why);
}

/* Parses the index text (taking it: freed by features_index_free). */
static tp_status parse_index(char *text, size_t len, const char *what, features_index *x)
{
    memset(x, 0, sizeof *x);
    x->buf = text;
    x->catalog_bytes = x->catalog_mtime_ns = -1;
    int64_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    if (len > 0 && text[len - 1] != '\n') return bad(what, lines + 1, "the last line is cut (no newline)");
    char *p = text, *end = text + len;
    /* line 1 */
    char *nl = memchr(p, '\n', (size_t)(end - p));
    const size_t tag = strlen("# " FEATURES_INDEX_SCHEMA);
    if (!nl || (size_t)(nl - p) < tag || memcmp(p, "# " FEATURES_INDEX_SCHEMA, tag) ||
        (p[tag] != '\t' && p[tag] != '\n'))
        return bad(what, 1, "not a features index (expected '# " FEATURES_INDEX_SCHEMA "')");
    *nl = '\0';
    char *save = NULL;
    for (char *f = strtok_r(p + tag, "\t", &save); f; f = strtok_r(NULL, "\t", &save)) {
        char *eq = strchr(f, '=');
        if (!eq) continue;
        *eq = '\0';
        char *v = eq + 1;
        unescape(v);
        if (!strcmp(f, "catalog_bytes")) x->catalog_bytes = strtoll(v, NULL, 10);
        else if (!strcmp(f, "catalog_mtime_ns")) x->catalog_mtime_ns = strtoll(v, NULL, 10);
        else if (!strcmp(f, "catalog_schema")) snprintf(x->catalog_schema, sizeof x->catalog_schema, "%s", v);
        else if (!strcmp(f, "saes")) x->saes = json_loads(v, 0, NULL);
    }
    if (!json_is_array(x->saes)) return bad(what, 1, "no saes=[...] in the header");
    p = nl + 1;
    /* line 2: the columns */
    nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return bad(what, 2, "no column names");
    *nl = '\0';
    {
        char *q = p;
        for (int c = 0; c < FX_NCOLS; c++) {
            size_t n = strlen(features_index_columns[c]);
            if (strncmp(q, features_index_columns[c], n) || (q[n] != (c + 1 < FX_NCOLS ? '\t' : '\0')))
                return bad(what, 2, "the column names are not those of this version");
            q += n + (c + 1 < FX_NCOLS);
        }
    }
    p = nl + 1;
    const int64_t n = lines - 2;
    x->cell = calloc((size_t)(n > 0 ? n : 1) * FX_NCOLS, sizeof *x->cell);
    if (!x->cell) return tp_err(TP_ERR_NOMEM, "%s: %lld index lines", what, (long long)n);
    for (int64_t r = 0; r < n; r++) {
        nl = memchr(p, '\n', (size_t)(end - p));
        *nl = '\0';
        char **cell = x->cell + r * FX_NCOLS;
        int c = 0;
        for (char *q = p;; c++) {
            if (c == FX_NCOLS) return bad(what, r + 3, "more cells than columns");
            cell[c] = q;
            char *t = strchr(q, '\t');
            if (!t) break;
            *t = '\0';
            q = t + 1;
        }
        if (c + 1 != FX_NCOLS) return bad(what, r + 3, "fewer cells than columns");
        for (c = 0; c < FX_NCOLS; c++) unescape(cell[c]);
        p = nl + 1;
    }
    x->n_rows = n;
    return TP_OK;
}

tp_status features_index_load(const char *index_path, features_index *out)
{
    memset(out, 0, sizeof *out);
    FILE *f = fopen(index_path, "rb");
    if (!f) return tp_err(TP_ERR_IO, "cannot read '%s': %s", index_path, strerror(errno));
    sbuf b = {0};
    char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) sb_put(&b, chunk, n);
    int err = ferror(f);
    fclose(f);
    if (err || b.oom) {
        free(b.p);
        return tp_err(err ? TP_ERR_IO : TP_ERR_NOMEM, "cannot read '%s'", index_path);
    }
    if (!b.p) sb_put(&b, "", 0);
    if (!b.p) return tp_err(TP_ERR_NOMEM, "cannot read '%s'", index_path);
    tp_status st = parse_index(b.p, b.n, index_path, out);
    if (st != TP_OK) features_index_free(out);
    return st;
}

int features_index_fresh(const features_index *x, const char *catalog_path)
{
    struct stat sb;
    if (stat(catalog_path, &sb) != 0) return 0;
    return x->catalog_bytes == (int64_t)sb.st_size &&
           x->catalog_mtime_ns == (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
}

tp_status features_index_from_doc(const json_t *doc, features_index *out)
{
    memset(out, 0, sizeof *out);
    sbuf b = {0};
    index_header(&b, doc, -1, -1);
    size_t i, k;
    json_t *L, *f;
    json_array_foreach(json_object_get(doc, "saes"), i, L) {
        int64_t n_dense;
        char *dense = dense_set(L, &n_dense);
        int has_dense = json_is_array(json_object_get(L, "dense_features"));
        if (has_dense && !dense) b.oom = 1;
        json_array_foreach(json_object_get(L, "features"), k, f) {
            if (json_is_object(f)) index_line(&b, i, L, f, dense, n_dense, has_dense, -1, -1);
        }
        free(dense);
    }
    if (b.oom) {
        free(b.p);
        return tp_err(TP_ERR_NOMEM, "features index of a catalog");
    }
    tp_status st = parse_index(b.p, b.n, "features index (made from the catalog)", out);
    if (st != TP_OK) features_index_free(out);
    return st;
}

tp_status features_file_read_feature(FILE *catalog, const char *path, int64_t offset, int64_t length, json_t **out)
{
    *out = NULL;
    if (offset < 0 || length <= 0) return tp_err(TP_ERR_FORMAT, "%s: no span for a feature in its index", path);
    char *buf = malloc((size_t)length);
    if (!buf) return tp_err(TP_ERR_NOMEM, "%s: a feature of %lld bytes", path, (long long)length);
    tp_status st = TP_OK;
    if (fseeko(catalog, (off_t)offset, SEEK_SET) != 0 || fread(buf, 1, (size_t)length, catalog) != (size_t)length)
        st = tp_err(TP_ERR_IO, "%s: cannot read bytes %lld-%lld", path, (long long)offset,
                    (long long)(offset + length));
    if (st == TP_OK) {
        json_error_t e;
        *out = json_loadb(buf, (size_t)length, 0, &e);
        if (!json_is_object(*out)) {
            json_decref(*out);
            *out = NULL;
            st = tp_err(TP_ERR_FORMAT, "%s: bytes %lld-%lld are not a feature object (%s): the index does not match "
                        "the catalog; delete the index to read the catalog alone", path, (long long)offset,
                        (long long)(offset + length), e.text);
        }
    }
    free(buf);
    return st;
}
