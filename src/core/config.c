/* config.c — the schema assembled from sections, parsing of YAML files and --set text, and the
 * writers (effective YAML, hash, Markdown schema).
 *
 * Every value, default included, is parsed from text by the same code, so a
 * default that breaks its own range is caught by tp_config_new. A file is applied
 * to a copy of the config and committed only when the whole file is valid.
 */
#include "core/config.h"

#include "core/text.h"
#include "core/yaml_limit.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* ---- schema ----------------------------------------------------------------- */

#define KEY_MAX 64      /* longest declared key, checked by schema_check */
#define WHERE_MAX 4352  /* "PATH:LINE" with PATH up to PATH_MAX */

/* ---- values ----------------------------------------------------------------- */

typedef struct {
    char *str;          /* TP_CFG_STRING */
    int64_t num;        /* TP_CFG_INT */
    double real;        /* TP_CFG_FLOAT */
    bool flag;          /* TP_CFG_BOOL */
    int64_t *ints;      /* TP_CFG_INT_LIST */
    char **strs;        /* TP_CFG_STRING_LIST */
    size_t len;         /* list length */
    char *origin;
} cfg_value;

/* The schema flattened from its sections (keys[i] describes v[i]). */
struct tp_config {
    size_t n;
    const tp_cfg_key **keys;
    cfg_value *v;
};

static void value_clear(cfg_value *v)
{
    free(v->str);
    free(v->ints);
    for (size_t i = 0; v->strs && i < v->len; i++) free(v->strs[i]);
    free(v->strs);
    free(v->origin);
    memset(v, 0, sizeof *v);
}

static char *str_dup(const char *s)
{
    size_t n = strlen(s);
    char *d = tp_malloc(n + 1);
    if (d) memcpy(d, s, n + 1);
    return d;
}

static char *str_dup_n(const char *s, size_t n)
{
    char *d = tp_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static int key_index(const tp_config *c, const char *key)
{
    for (size_t i = 0; key && i < c->n; i++)
        if (strcmp(c->keys[i]->key, key) == 0) return (int)i;
    return -1;
}

/* True when `name` is a proper dotted prefix of some key ("data" for "data.seed"). */
static bool is_section(const tp_config *c, const char *name, size_t n)
{
    for (size_t i = 0; i < c->n; i++)
        if (strncmp(c->keys[i]->key, name, n) == 0 && c->keys[i]->key[n] == '.') return true;
    return false;
}

/* ---- describing what a key expects ----------------------------------------- */

/* Shortest "%g" that reads back as the same double, so 0.1 prints as 0.1. */
static void fmt_double(double x, char *buf, size_t n)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

static void fmt_range(const tp_cfg_key *k, char *buf, size_t n)
{
    char lo[32], hi[32];
    fmt_double(k->lo, lo, sizeof lo);
    fmt_double(k->hi, hi, sizeof hi);
    bool has_lo = !isinf(k->lo), has_hi = !isinf(k->hi);
    if (has_lo && has_hi)
        snprintf(buf, n, "in %c%s, %s]", k->lo_open ? '(' : '[', lo, hi);
    else if (has_lo)
        snprintf(buf, n, "%s %s", k->lo_open ? ">" : ">=", lo);
    else if (has_hi)
        snprintf(buf, n, "<= %s", hi);
    else
        buf[0] = '\0';
}

static void fmt_expected(const tp_cfg_key *k, char *buf, size_t n)
{
    char range[96];
    fmt_range(k, range, sizeof range);
    const char *sep = range[0] ? " " : "";
    switch (k->type) {
    case TP_CFG_STRING:
        if (k->allowed) snprintf(buf, n, "one of %s", k->allowed);
        else snprintf(buf, n, "a string");
        return;
    case TP_CFG_INT: snprintf(buf, n, "an integer%s%s", sep, range); return;
    case TP_CFG_FLOAT: snprintf(buf, n, "a number%s%s", sep, range); return;
    case TP_CFG_BOOL: snprintf(buf, n, "a boolean (true/false, yes/no, on/off)"); return;
    case TP_CFG_INT_LIST: snprintf(buf, n, "a list of integers%s%s", sep, range); return;
    case TP_CFG_STRING_LIST: snprintf(buf, n, "a list of strings"); return;
    }
    snprintf(buf, n, "?");
}

static const char *type_name(tp_cfg_type t)
{
    switch (t) {
    case TP_CFG_STRING: return "string";
    case TP_CFG_INT: return "int";
    case TP_CFG_FLOAT: return "float";
    case TP_CFG_BOOL: return "bool";
    case TP_CFG_INT_LIST: return "int list";
    case TP_CFG_STRING_LIST: return "string list";
    }
    return "?";
}

/* "...: KEY: expected X, got 'TEXT'"; long user text is cut so the line stays readable. */
static tp_status err_value(const tp_cfg_key *k, const char *where, const char *text)
{
    char exp[160];
    fmt_expected(k, exp, sizeof exp);
    int len = (int)strlen(text);
    if (len > 80)
        return tp_err(TP_ERR_CONFIG, "%s: %s: expected %s, got '%.80s...'", where, k->key, exp, text);
    return tp_err(TP_ERR_CONFIG, "%s: %s: expected %s, got '%s'", where, k->key, exp, text);
}

/* Same, for a YAML node of the wrong shape ("a mapping", "a list"). */
static tp_status err_shape(const tp_cfg_key *k, const char *where, const char *shape)
{
    char exp[160];
    fmt_expected(k, exp, sizeof exp);
    return tp_err(TP_ERR_CONFIG, "%s: %s: expected %s, got %s", where, k->key, exp, shape);
}

static tp_status err_unknown_key(const tp_config *c, const char *where, const char *key)
{
    /* Candidates are keys and section names, so "dta: {...}" suggests "data". The
     * distance must also be below the typed length: "x" should not suggest "log". */
    size_t n = strlen(key), best_d = 4, best_len = 0;
    const char *best = NULL;
    for (size_t i = 0; i < c->n; i++) {
        const char *cand = c->keys[i]->key;
        for (const char *p = cand; ; p++) {
            if (*p == '.' || *p == '\0') {
                size_t d = tp_edit_distance(key, n, cand, (size_t)(p - cand));
                if (d < best_d && d < n) { best_d = d; best = cand; best_len = (size_t)(p - cand); }
            }
            if (*p == '\0') break;
        }
    }
    if (best)
        return tp_err(TP_ERR_CONFIG, "%s: unknown key '%.200s' (did you mean '%.*s'?)", where,
                      key, (int)best_len, best);
    return tp_err(TP_ERR_CONFIG, "%s: unknown key '%.200s'", where, key);
}

static tp_status err_section(const char *where, const char *name, const char *got)
{
    return tp_err(TP_ERR_CONFIG, "%s: '%s' is a section, not a key: expected a mapping of its keys, got %s",
                  where, name, got);
}

/* ---- parsing text ----------------------------------------------------------- */

static bool in_range(const tp_cfg_key *k, double x)
{
    bool lo_ok = isinf(k->lo) || (k->lo_open ? x > k->lo : x >= k->lo);
    bool hi_ok = isinf(k->hi) || x <= k->hi;
    return lo_ok && hi_ok;
}

/* strtoll/strtod skip leading blanks and stop at junk; config values must be exact. */
static bool parse_int(const char *s, int64_t *out)
{
    if (!*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0') return false;
    *out = (int64_t)v;
    return true;
}

static bool parse_float(const char *s, double *out)
{
    if (!*s || isspace((unsigned char)*s)) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v)) return false;
    *out = v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = true; return true; }
        if (strcasecmp(s, no[i]) == 0) { *out = false; return true; }
    }
    return false;
}

static bool is_allowed(const char *allowed, const char *s)
{
    size_t n = strlen(s);
    for (const char *p = allowed; ; ) {
        size_t len = strcspn(p, "|");
        if (len == n && strncmp(p, s, n) == 0) return true;
        if (p[len] == '\0') return false;
        p += len + 1;
    }
}

/* Sizes a list value for n items. */
static tp_status list_alloc(const tp_cfg_key *k, size_t n, cfg_value *v)
{
    v->len = 0;
    if (n == 0) return TP_OK;
    if (k->type == TP_CFG_INT_LIST) {
        TP_ALLOC(v->ints, n);
    } else {
        TP_ALLOC(v->strs, n);
    }
    v->len = n;
    return TP_OK;
}

/* Parses item `idx` of a list key; `shown` is the text echoed in an error. */
static tp_status item_parse(const tp_cfg_key *k, const char *text, const char *shown, const char *where,
                            cfg_value *v, size_t idx)
{
    if (k->type == TP_CFG_INT_LIST) {
        int64_t x;
        if (!parse_int(text, &x) || !in_range(k, (double)x)) return err_value(k, where, shown);
        v->ints[idx] = x;
        return TP_OK;
    }
    v->strs[idx] = str_dup(text);
    return v->strs[idx] ? TP_OK : TP_ERR_NOMEM;
}

/* "0,6,11" (or "[0, 6, 11]") into a list; blank text is the empty list. */
static tp_status list_from_text(const tp_cfg_key *k, const char *text, const char *where, cfg_value *v)
{
    const char *b = text, *e = text + strlen(text);
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    if (e - b >= 2 && *b == '[' && e[-1] == ']') { b++; e--; }
    while (b < e && isspace((unsigned char)*b)) b++;
    while (e > b && isspace((unsigned char)e[-1])) e--;
    if (b == e) return list_alloc(k, 0, v);

    size_t n = 1;
    for (const char *p = b; p < e; p++) n += (*p == ',');
    TP_CHECK(list_alloc(k, n, v));
    size_t idx = 0;
    for (const char *p = b; idx < n; idx++) {
        const char *q = memchr(p, ',', (size_t)(e - p));
        if (!q) q = e;
        const char *ib = p, *ie = q;
        while (ib < ie && isspace((unsigned char)*ib)) ib++;
        while (ie > ib && isspace((unsigned char)ie[-1])) ie--;
        /* "0,,6" is a typo, not a list with an empty item. */
        if (ib == ie) return err_value(k, where, text);
        char *item = str_dup_n(ib, (size_t)(ie - ib));
        if (!item) return TP_ERR_NOMEM;
        tp_status st = item_parse(k, item, text, where, v, idx);
        free(item);
        if (st != TP_OK) return st;
        p = q + 1;
    }
    return TP_OK;
}

/* Parses text for key k into v (zeroed first); on failure v holds nothing to keep
 * but must still be cleared by the caller. */
static tp_status value_from_text(const tp_cfg_key *k, const char *text, const char *where, cfg_value *v)
{
    memset(v, 0, sizeof *v);
    switch (k->type) {
    case TP_CFG_STRING:
        if (k->allowed && !is_allowed(k->allowed, text)) return err_value(k, where, text);
        v->str = str_dup(text);
        return v->str ? TP_OK : TP_ERR_NOMEM;
    case TP_CFG_INT:
        if (!parse_int(text, &v->num) || !in_range(k, (double)v->num)) return err_value(k, where, text);
        return TP_OK;
    case TP_CFG_FLOAT:
        if (!parse_float(text, &v->real) || !in_range(k, v->real)) return err_value(k, where, text);
        return TP_OK;
    case TP_CFG_BOOL:
        if (!parse_bool(text, &v->flag)) return err_value(k, where, text);
        return TP_OK;
    case TP_CFG_INT_LIST:
    case TP_CFG_STRING_LIST:
        return list_from_text(k, text, where, v);
    }
    return tp_err(TP_ERR_INTERNAL, "%s: key type %d unknown", k->key, (int)k->type);
}

/* Replaces value `idx` with `nv` (taking ownership) and records its origin. */
static tp_status value_commit(tp_config *c, size_t idx, cfg_value *nv, const char *origin)
{
    nv->origin = str_dup(origin);
    if (!nv->origin) { value_clear(nv); return TP_ERR_NOMEM; }
    value_clear(&c->v[idx]);
    c->v[idx] = *nv;
    memset(nv, 0, sizeof *nv);
    return TP_OK;
}

static tp_status value_copy(const tp_cfg_key *k, const cfg_value *src, cfg_value *dst)
{
    memset(dst, 0, sizeof *dst);
    dst->num = src->num;
    dst->real = src->real;
    dst->flag = src->flag;
    tp_status st = TP_ERR_NOMEM;
    if (src->str && !(dst->str = str_dup(src->str))) goto fail;
    if (src->origin && !(dst->origin = str_dup(src->origin))) goto fail;
    if (src->len) {
        TP_CHECK_GOTO(list_alloc(k, src->len, dst), st, fail);
        if (k->type == TP_CFG_INT_LIST) {
            memcpy(dst->ints, src->ints, src->len * sizeof src->ints[0]);
        } else {
            for (size_t i = 0; i < src->len; i++)
                if (!(dst->strs[i] = str_dup(src->strs[i]))) goto fail;
        }
    }
    return TP_OK;
fail:
    value_clear(dst);
    return st;
}

/* ---- lifetime ------------------------------------------------------------------ */

/* Catches schema mistakes (a key outside its section, a key that is also a
 * section, a key declared twice, a default outside its range) the first time a
 * config is made, not when a user trips on them. */
static tp_status schema_check(const tp_config *c, const tp_cfg_section *const *sections, size_t nsec)
{
    if (c->n > TP_CFG_MAX_KEYS)
        return tp_err(TP_ERR_INTERNAL, "config schema: %zu keys, at most %d", c->n, TP_CFG_MAX_KEYS);
    size_t i = 0;
    for (size_t s = 0; s < nsec; s++) {
        size_t nl = strlen(sections[s]->name);
        for (size_t j = 0; j < sections[s]->n; j++, i++) {
            const char *key = c->keys[i]->key;
            if (strncmp(key, sections[s]->name, nl) != 0 || (key[nl] != '.' && key[nl] != '\0'))
                return tp_err(TP_ERR_INTERNAL, "config schema: key '%s' is not in its section '%s'", key,
                              sections[s]->name);
            if (strlen(key) >= KEY_MAX)
                return tp_err(TP_ERR_INTERNAL, "config schema: key '%s' longer than %d", key, KEY_MAX - 1);
            if (is_section(c, key, strlen(key)))
                return tp_err(TP_ERR_INTERNAL, "config schema: '%s' is both a key and a section", key);
            if (key_index(c, key) != (int)i)
                return tp_err(TP_ERR_INTERNAL, "config schema: key '%s' declared twice", key);
        }
    }
    return TP_OK;
}

void tp_config_free(tp_config *c)
{
    if (!c) return;
    for (size_t i = 0; c->v && i < c->n; i++) value_clear(&c->v[i]);
    free(c->v);
    free(c->keys);
    free(c);
}

/* An empty config over the same (or a new) flattened schema. */
static tp_status config_alloc(size_t n, const tp_cfg_key *const *keys, tp_config **out)
{
    tp_config *c;
    TP_ALLOC(c, 1);
    c->n = n;
    c->keys = tp_calloc(n ? n : 1, sizeof *c->keys);
    c->v = tp_calloc(n ? n : 1, sizeof *c->v);
    if (!c->keys || !c->v) { tp_config_free(c); return TP_ERR_NOMEM; }
    if (keys) memcpy(c->keys, keys, n * sizeof *c->keys);
    *out = c;
    return TP_OK;
}

tp_status tp_config_new_schema(const tp_cfg_section *const *sections, size_t nsec, tp_config **out)
{
    *out = NULL;
    size_t n = 0;
    for (size_t s = 0; s < nsec; s++) n += sections[s]->n;
    tp_config *c;
    TP_CHECK(config_alloc(n, NULL, &c));
    for (size_t s = 0, i = 0; s < nsec; s++)
        for (size_t j = 0; j < sections[s]->n; j++) c->keys[i++] = &sections[s]->keys[j];
    tp_status st = schema_check(c, sections, nsec);
    for (size_t i = 0; st == TP_OK && i < n; i++) {
        cfg_value nv;
        st = value_from_text(c->keys[i], c->keys[i]->def, "config schema default", &nv);
        if (st == TP_OK) st = value_commit(c, i, &nv, "default");
        if (st != TP_OK) value_clear(&nv);
        if (st == TP_ERR_CONFIG) st = TP_ERR_INTERNAL;
    }
    if (st != TP_OK) { tp_config_free(c); return st; }
    *out = c;
    return TP_OK;
}

tp_status tp_config_new(tp_config **out)
{
    size_t n = 0;
    const tp_cfg_section *const *sections = tp_config_app_schema(&n);
    return tp_config_new_schema(sections, n, out);
}

static tp_status config_clone(const tp_config *c, tp_config **out)
{
    tp_config *d;
    TP_CHECK(config_alloc(c->n, c->keys, &d));
    for (size_t i = 0; i < c->n; i++) {
        tp_status st = value_copy(c->keys[i], &c->v[i], &d->v[i]);
        if (st != TP_OK) { tp_config_free(d); return st; }
    }
    *out = d;
    return TP_OK;
}

/* ---- setting from text --------------------------------------------------------- */

tp_status tp_config_set(tp_config *c, const char *key, const char *value, const char *origin)
{
    if (!origin) origin = "--set";
    if (!c || !key || !value)
        return tp_err(TP_ERR_INTERNAL, "%s: tp_config_set called with a NULL argument", origin);
    int idx = key_index(c, key);
    if (idx < 0) {
        if (is_section(c, key, strlen(key))) return err_section(origin, key, "a single value");
        return err_unknown_key(c, origin, key);
    }
    cfg_value nv;
    tp_status st = value_from_text(c->keys[idx], value, origin, &nv);
    if (st == TP_OK) st = value_commit(c, (size_t)idx, &nv, origin);
    if (st != TP_OK) value_clear(&nv);
    return st;
}

tp_status tp_config_set_kv(tp_config *c, const char *kv)
{
    if (!kv) return tp_err(TP_ERR_INTERNAL, "--set: NULL argument");
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return tp_err(TP_ERR_CONFIG, "--set: expected key=value, got '%.200s'", kv);
    char *key = str_dup_n(kv, (size_t)(eq - kv));
    if (!key) return TP_ERR_NOMEM;
    tp_status st = tp_config_set(c, key, eq + 1, "--set");
    free(key);
    return st;
}

/* ---- YAML files ---------------------------------------------------------------- */

typedef struct {
    tp_config *c;           /* the staged copy */
    yaml_document_t *doc;
    const char *path;
    int *set_line;          /* [c->n] line where this file set each key, 0 if not yet */
} yaml_walk;

static int node_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static const char *node_shape(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE: return "a mapping";
    case YAML_SEQUENCE_NODE: return "a list";
    default: return "a scalar";
    }
}

/* An unquoted empty, ~ or null scalar (or an explicit !!null). */
static bool node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE) return false;
    if (n->tag && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0) return true;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
    const char *s = (const char *)n->data.scalar.value;
    return !*s || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

/* The scalar's text; a "\0" escape would silently cut a C string, so it is refused. */
static tp_status node_text(const yaml_walk *w, const yaml_node_t *n, const char *what, const char **out)
{
    const char *s = (const char *)n->data.scalar.value;
    if (strlen(s) != n->data.scalar.length)
        return tp_err(TP_ERR_CONFIG, "%s:%d: %s: contains a NUL character", w->path, node_line(n), what);
    *out = s;
    return TP_OK;
}

static tp_status walk_mapping(yaml_walk *w, yaml_node_t *map, const char *prefix);

/* A YAML sequence for a list key: every item a scalar, each error at its own line. */
static tp_status list_from_sequence(yaml_walk *w, const tp_cfg_key *k, yaml_node_t *seq, cfg_value *v)
{
    yaml_node_item_t *b = seq->data.sequence.items.start, *e = seq->data.sequence.items.top;
    TP_CHECK(list_alloc(k, (size_t)(e - b), v));
    for (yaml_node_item_t *it = b; it < e; it++) {
        yaml_node_t *item = yaml_document_get_node(w->doc, *it);
        char where[WHERE_MAX];
        snprintf(where, sizeof where, "%s:%d", w->path, node_line(item));
        if (item->type != YAML_SCALAR_NODE) return err_shape(k, where, node_shape(item));
        const char *text = NULL;
        TP_CHECK(node_text(w, item, k->key, &text));
        TP_CHECK(item_parse(k, text, text, where, v, (size_t)(it - b)));
    }
    return TP_OK;
}

/* Applies one "key: value" pair whose full dotted key is `key`, written at `line`. */
static tp_status walk_pair(yaml_walk *w, const char *key, int line, yaml_node_t *val)
{
    char where[WHERE_MAX];
    snprintf(where, sizeof where, "%s:%d", w->path, line);
    int idx = key_index(w->c, key);
    if (idx < 0) {
        if (!is_section(w->c, key, strlen(key))) return err_unknown_key(w->c, where, key);
        if (val->type == YAML_MAPPING_NODE) return walk_mapping(w, val, key);
        /* "data:" with every key under it commented out is no change. */
        if (node_is_null(val)) return TP_OK;
        if (val->type == YAML_SCALAR_NODE) {
            char got[128];
            snprintf(got, sizeof got, "'%.80s'", (const char *)val->data.scalar.value);
            return err_section(where, key, got);
        }
        return err_section(where, key, node_shape(val));
    }

    const tp_cfg_key *k = w->c->keys[idx];
    if (w->set_line[idx])
        return tp_err(TP_ERR_CONFIG, "%s: %s: set twice in this file (first at line %d)", where, key,
                      w->set_line[idx]);
    bool is_list = k->type == TP_CFG_INT_LIST || k->type == TP_CFG_STRING_LIST;
    cfg_value nv;
    memset(&nv, 0, sizeof nv);
    tp_status st;
    if (val->type == YAML_MAPPING_NODE) {
        return err_shape(k, where, "a mapping");
    } else if (val->type == YAML_SEQUENCE_NODE) {
        if (!is_list) return err_shape(k, where, "a list");
        st = list_from_sequence(w, k, val, &nv);
    } else if (node_is_null(val) && (k->type == TP_CFG_STRING || is_list)) {
        st = value_from_text(k, "", where, &nv);
    } else {
        char vwhere[WHERE_MAX];
        snprintf(vwhere, sizeof vwhere, "%s:%d", w->path, node_line(val));
        const char *text = NULL;
        st = node_text(w, val, key, &text);
        if (st == TP_OK) st = value_from_text(k, text, vwhere, &nv);
    }
    if (st == TP_OK) st = value_commit(w->c, (size_t)idx, &nv, where);
    if (st != TP_OK) {
        value_clear(&nv);
        return st;
    }
    w->set_line[idx] = line;
    return TP_OK;
}

static tp_status walk_mapping(yaml_walk *w, yaml_node_t *map, const char *prefix)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(w->doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(w->doc, p->value);
        if (kn->type != YAML_SCALAR_NODE)
            return tp_err(TP_ERR_CONFIG, "%s:%d: expected a key name, got %s as a key", w->path,
                          node_line(kn), node_shape(kn));
        const char *name = NULL;
        TP_CHECK(node_text(w, kn, "key", &name));
        /* Anything longer than KEY_MAX cannot be a declared key; report it as unknown. */
        char full[2 * KEY_MAX];
        int n = prefix[0] ? snprintf(full, sizeof full, "%s.%s", prefix, name)
                          : snprintf(full, sizeof full, "%s", name);
        if (n < 0 || (size_t)n >= sizeof full) {
            char where[WHERE_MAX];
            snprintf(where, sizeof where, "%s:%d", w->path, node_line(kn));
            return err_unknown_key(w->c, where, name);
        }
        TP_CHECK(walk_pair(w, full, node_line(kn), vn));
    }
    return TP_OK;
}

static tp_status yaml_error(const yaml_parser_t *ps, const char *path, const char *text, size_t n)
{
    if (ps->error == YAML_MEMORY_ERROR)
        return tp_err(TP_ERR_NOMEM, "%s: out of memory parsing YAML", path);
    const char *problem = ps->problem ? ps->problem : "unknown problem";
    if (ps->error == YAML_READER_ERROR) {
        /* Reader errors (bad UTF-8, control characters) carry a byte offset, not a mark. */
        int line = 1;
        for (size_t i = 0; i < ps->problem_offset && i < n; i++) line += text[i] == '\n';
        return tp_err(TP_ERR_CONFIG, "%s:%d: YAML error: %s", path, line, problem);
    }
    int line = (int)ps->problem_mark.line + 1;
    if (ps->context)
        return tp_err(TP_ERR_CONFIG, "%s:%d: YAML syntax error: %s (%s at line %d)", path, line,
                      problem, ps->context, (int)ps->context_mark.line + 1);
    return tp_err(TP_ERR_CONFIG, "%s:%d: YAML syntax error: %s", path, line, problem);
}

/* Reads the whole file: libyaml's file reader reports I/O errors as YAML errors. */
static tp_status read_whole(const char *path, char **out, size_t *out_n)
{
    enum { MAX_BYTES = 16 << 20 };  /* a config, not a data file */
    FILE *f = fopen(path, "rb");
    if (!f) return tp_err(TP_ERR_IO, "cannot open config '%s': %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = tp_malloc(cap);
    if (!buf) { fclose(f); return TP_ERR_NOMEM; }
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (ferror(f)) {
            int e = errno;
            free(buf);
            fclose(f);
            return tp_err(TP_ERR_IO, "cannot read config '%s': %s", path, strerror(e));
        }
        if (feof(f)) break;
        if (cap >= MAX_BYTES) {
            free(buf);
            fclose(f);
            return tp_err(TP_ERR_IO, "config '%s' is larger than %d bytes", path, MAX_BYTES);
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            fclose(f);
            return tp_err(TP_ERR_NOMEM, "out of memory reading config '%s'", path);
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    *out = buf;
    *out_n = n;
    return TP_OK;
}

/* Parses the text into staged: one document whose root is a mapping, or nothing. */
static tp_status yaml_apply(tp_config *staged, const char *path, const char *text, size_t n)
{
    TP_CHECK(yaml_check_depth(path, text, n));
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return tp_err(TP_ERR_NOMEM, "%s: cannot create YAML parser", path);
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, n);

    yaml_document_t doc;
    if (!yaml_parser_load(&ps, &doc)) {
        tp_status st = yaml_error(&ps, path, text, n);
        yaml_parser_delete(&ps);
        return st;
    }
    tp_status st = TP_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !node_is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            st = tp_err(TP_ERR_CONFIG, "%s:%d: expected a mapping of keys at the top level, got %s",
                        path, node_line(root), node_shape(root));
        } else {
            yaml_walk w = {.c = staged, .doc = &doc, .path = path};
            w.set_line = tp_calloc(staged->n ? staged->n : 1, sizeof *w.set_line);
            st = w.set_line ? walk_mapping(&w, root, "") : TP_ERR_NOMEM;
            free(w.set_line);
        }
    }
    yaml_document_delete(&doc);

    /* A second document ("---") would be silently ignored; refuse it instead. */
    if (st == TP_OK) {
        if (!yaml_parser_load(&ps, &doc)) {
            st = yaml_error(&ps, path, text, n);
        } else {
            yaml_node_t *extra = yaml_document_get_root_node(&doc);
            if (extra)
                st = tp_err(TP_ERR_CONFIG, "%s:%d: a config file holds one YAML document, found a second",
                            path, node_line(extra));
            yaml_document_delete(&doc);
        }
    }
    yaml_parser_delete(&ps);
    return st;
}

tp_status tp_config_load_file(tp_config *c, const char *path)
{
    if (!c || !path) return tp_err(TP_ERR_INTERNAL, "tp_config_load_file called with a NULL argument");
    char *text = NULL;
    size_t n = 0;
    TP_CHECK(read_whole(path, &text, &n));
    tp_config *staged = NULL;
    tp_status st = config_clone(c, &staged);
    if (st == TP_OK) st = yaml_apply(staged, path, text, n);
    free(text);
    if (st == TP_OK) {
        /* Commit: the caller's handle keeps its address, the old values go. */
        tp_config old = *c;
        *c = *staged;
        *staged = old;
    }
    tp_config_free(staged);
    return st;
}

/* ---- getters ------------------------------------------------------------------- */

static const cfg_value *get_checked(const tp_config *c, const char *key, tp_cfg_type type, const char *fn)
{
    int idx = c ? key_index(c, key) : -1;
    if (idx < 0) {
        fprintf(stderr, "%s: config key '%s' is not declared in the schema\n", fn, key ? key : "(null)");
        abort();
    }
    if (c->keys[idx]->type != type) {
        fprintf(stderr, "%s: config key '%s' has type %s, not %s\n", fn, key, type_name(c->keys[idx]->type),
                type_name(type));
        abort();
    }
    return &c->v[idx];
}

const char *tp_config_str(const tp_config *c, const char *key)
{
    return get_checked(c, key, TP_CFG_STRING, __func__)->str;
}

int64_t tp_config_int(const tp_config *c, const char *key)
{
    return get_checked(c, key, TP_CFG_INT, __func__)->num;
}

double tp_config_float(const tp_config *c, const char *key)
{
    return get_checked(c, key, TP_CFG_FLOAT, __func__)->real;
}

bool tp_config_bool(const tp_config *c, const char *key)
{
    return get_checked(c, key, TP_CFG_BOOL, __func__)->flag;
}

size_t tp_config_int_list(const tp_config *c, const char *key, const int64_t **items)
{
    const cfg_value *v = get_checked(c, key, TP_CFG_INT_LIST, __func__);
    *items = v->ints;
    return v->len;
}

size_t tp_config_str_list(const tp_config *c, const char *key, const char *const **items)
{
    const cfg_value *v = get_checked(c, key, TP_CFG_STRING_LIST, __func__);
    *items = (const char *const *)v->strs;
    return v->len;
}

const char *tp_config_origin(const tp_config *c, const char *key)
{
    int idx = c ? key_index(c, key) : -1;
    if (idx < 0) {
        fprintf(stderr, "%s: config key '%s' is not declared in the schema\n", __func__,
                key ? key : "(null)");
        abort();
    }
    return c->v[idx].origin;
}

/* ---- writers ------------------------------------------------------------------- */

/* Output goes either to a file or into an FNV-1a hash, so the YAML writer and the
 * hash render values with the same code. */
typedef struct {
    FILE *f;
    uint64_t hash;
    bool failed;
} sink;

#define FNV_OFFSET 14695981039346656037ULL  /* FNV-1a 64 parameters (Fowler/Noll/Vo) */
#define FNV_PRIME 1099511628211ULL

static void sink_put(sink *s, const char *p, size_t n)
{
    if (s->f) {
        if (fwrite(p, 1, n, s->f) != n) s->failed = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        s->hash ^= (unsigned char)p[i];
        s->hash *= FNV_PRIME;
    }
}

static void sink_str(sink *s, const char *str) { sink_put(s, str, strlen(str)); }

/* A YAML double-quoted scalar: safe for any text (colons, '#', quotes, newlines). */
static void sink_quoted(sink *s, const char *str)
{
    sink_put(s, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sink_put(s, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(esc, sizeof esc, "\\x%02x", *p);
            sink_put(s, esc, 4);
        } else {
            sink_put(s, (const char *)p, 1);
        }
    }
    sink_put(s, "\"", 1);
}

static void sink_value(sink *s, const tp_cfg_key *k, const cfg_value *v)
{
    char buf[64];
    switch (k->type) {
    case TP_CFG_STRING:
        sink_quoted(s, v->str);
        return;
    case TP_CFG_INT:
        snprintf(buf, sizeof buf, "%" PRId64, v->num);
        sink_str(s, buf);
        return;
    case TP_CFG_FLOAT:
        fmt_double(v->real, buf, sizeof buf);
        /* "10.0", not "10", so the file shows the key is a float. */
        if (!strpbrk(buf, ".eEn")) strcat(buf, ".0");
        sink_str(s, buf);
        return;
    case TP_CFG_BOOL:
        sink_str(s, v->flag ? "true" : "false");
        return;
    case TP_CFG_INT_LIST:
    case TP_CFG_STRING_LIST:
        sink_put(s, "[", 1);
        for (size_t i = 0; i < v->len; i++) {
            if (i) sink_put(s, ", ", 2);
            if (k->type == TP_CFG_INT_LIST) {
                snprintf(buf, sizeof buf, "%" PRId64, v->ints[i]);
                sink_str(s, buf);
            } else {
                sink_quoted(s, v->strs[i]);
            }
        }
        sink_put(s, "]", 1);
        return;
    }
}

/* Writes the keys under `prefix` (plen bytes, ending in '.' or empty), one nested
 * mapping per section, in schema order of each section's first key. */
static void write_level(sink *s, const tp_config *c, const char *prefix, size_t plen, int depth)
{
    for (size_t i = 0; i < c->n; i++) {
        const char *key = c->keys[i]->key;
        if (strncmp(key, prefix, plen) != 0) continue;
        const char *seg = key + plen;
        size_t slen = strcspn(seg, ".");
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strncmp(c->keys[j]->key, prefix, plen) == 0 &&
                   strncmp(c->keys[j]->key + plen, seg, slen) == 0 &&
                   (c->keys[j]->key[plen + slen] == '.' || c->keys[j]->key[plen + slen] == '\0');
        if (seen) continue;
        for (int d = 0; d < depth; d++) sink_put(s, "  ", 2);
        sink_put(s, seg, slen);
        if (seg[slen] == '.') {
            sink_put(s, ":\n", 2);
            write_level(s, c, key, plen + slen + 1, depth + 1);
            continue;
        }
        sink_put(s, ": ", 2);
        sink_value(s, c->keys[i], &c->v[i]);
        /* The origin is a comment; a newline in a file name must not end it. */
        sink_put(s, "  # ", 4);
        for (const char *o = c->v[i].origin; *o; o++)
            sink_put(s, (*o == '\n' || *o == '\r') ? " " : o, 1);
        sink_put(s, "\n", 1);
    }
}

tp_status tp_config_write_yaml(const tp_config *c, FILE *f)
{
    sink s = {.f = f};
    char head[128];
    snprintf(head, sizeof head, "# TranspOLMo effective configuration (hash %016" PRIx64 ")\n",
             tp_config_hash(c));
    sink_str(&s, head);
    write_level(&s, c, "", 0, 0);
    if (fflush(f) != 0) s.failed = true;
    if (s.failed || ferror(f)) return tp_err(TP_ERR_IO, "cannot write config YAML: %s", strerror(errno));
    return TP_OK;
}

typedef struct {
    const tp_cfg_key *k;
    size_t idx;
} key_ref;

static int cmp_key_ref(const void *a, const void *b)
{
    return strcmp(((const key_ref *)a)->k->key, ((const key_ref *)b)->k->key);
}

static int key_selected(const char *key, const char *const *prefixes)
{
    if (!prefixes) return 1;
    for (const char *const *p = prefixes; *p; p++)
        if (!strncmp(key, *p, strlen(*p))) return 1;
    return 0;
}

uint64_t tp_config_hash_prefixes(const tp_config *c, const char *const *prefixes)
{
    /* Sorted by key, so reordering the schema keeps old hashes valid. */
    key_ref order[TP_CFG_MAX_KEYS];   /* schema_check bounds c->n */
    for (size_t i = 0; i < c->n; i++) order[i] = (key_ref){c->keys[i], i};
    qsort(order, c->n, sizeof *order, cmp_key_ref);
    sink s = {.hash = FNV_OFFSET};
    for (size_t n = 0; n < c->n; n++) {
        const tp_cfg_key *k = order[n].k;
        if (!key_selected(k->key, prefixes)) continue;
        sink_str(&s, k->key);
        sink_put(&s, "=", 1);
        sink_value(&s, k, &c->v[order[n].idx]);
        sink_put(&s, "\n", 1);
    }
    return s.hash;
}

uint64_t tp_config_hash(const tp_config *c) { return tp_config_hash_prefixes(c, NULL); }

/* Markdown table cells: '|' would end the cell, "<run.name>" would be read as an
 * HTML tag and '*' as emphasis. */
static void md_cell(FILE *f, const char *text)
{
    for (const char *p = text; *p; p++) {
        if (*p == '<') fputs("&lt;", f);
        else if (*p == '>') fputs("&gt;", f);
        else if (*p == '|' || *p == '*') fprintf(f, "\\%c", *p);
        else fputc(*p, f);
    }
}

void tp_config_write_schema_md(FILE *f)
{
    size_t nsec = 0;
    const tp_cfg_section *const *sections = tp_config_app_schema(&nsec);
    fprintf(f, "| key | type | default | allowed | help |\n");
    fprintf(f, "|---|---|---|---|---|\n");
    for (size_t sec = 0; sec < nsec; sec++)
    for (size_t i = 0; i < sections[sec]->n; i++) {
        const tp_cfg_key *k = &sections[sec]->keys[i];
        fprintf(f, "| `%s` | %s | `", k->key, type_name(k->type));
        cfg_value v;
        sink s = {.f = f};
        if (value_from_text(k, k->def, "default", &v) == TP_OK) sink_value(&s, k, &v);
        else md_cell(f, k->def);
        value_clear(&v);
        fprintf(f, "` | ");
        if (k->allowed) {
            for (const char *p = k->allowed; ; ) {
                size_t len = strcspn(p, "|");
                fprintf(f, "%s`%.*s`", p == k->allowed ? "" : ", ", (int)len, p);
                if (p[len] == '\0') break;
                p += len + 1;
            }
        } else if (k->type == TP_CFG_BOOL) {
            fprintf(f, "true/false, yes/no, on/off");
        } else {
            char range[96];
            fmt_range(k, range, sizeof range);
            md_cell(f, range);
        }
        fprintf(f, " | ");
        md_cell(f, k->help);
        fprintf(f, " |\n");
    }
}
