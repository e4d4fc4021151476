#include "cmd/features_cmd.h"

#include "core/fsutil.h"
#include "core/log.h"
#include "dist/world.h"
#include "io/features_index.h"   /* the index: filters and sorts without parsing the catalog */
#include "run_layout.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 64
#define DEFAULT_FIELDS "hook,feature,density,fires,mean,max,top_domain,share,top_token,top_context"

typedef struct {
    int has_layer, has_feature, dead, json;
    int64_t layer, feature, limit;    /* limit 0: all */
    const char *hook, *token, *domain, *fields, *sort;
    double density_min, density_max, domain_min;   /* domain_min < 0: top domain */
} query_opts;

/* ---- options ---------------------------------------------------------------------------------- */

static tp_status parse_i64(const char *opt, const char *v, int64_t lo, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || !*v || *end || errno || x < lo)
        return tp_err(TP_ERR_CONFIG, "features query: %s '%s' is not an integer >= %lld", opt, v ? v : "",
                      (long long)lo);
    *out = x;
    return TP_OK;
}

static tp_status parse_frac(const char *opt, const char *v, double *out)
{
    char *end = NULL;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || errno || !(x >= 0 && x <= 1))
        return tp_err(TP_ERR_CONFIG, "features query: %s '%s' is not a number in [0, 1]", opt, v ? v : "");
    *out = x;
    return TP_OK;
}

/* The value of an option that takes one; "--opt" with nothing after it is an error. */
static tp_status take(tp_cli *cli, const char *name, const char **out)
{
    *out = cli_take_value(cli, name);
    if (*out) return TP_OK;
    /* cli_take_value leaves a trailing "--opt" without a value in `rest`. */
    for (int i = 0; i < cli->nrest; i++)
        if (!cli->rest_used[i] && !strcmp(cli->rest[i], name))
            return tp_err(TP_ERR_CONFIG, "features query: %s needs a value", name);
    return TP_OK;
}

static tp_status parse_opts(tp_cli *cli, query_opts *f, const char **catalog)
{
    memset(f, 0, sizeof *f);
    f->density_min = 0, f->density_max = 1, f->domain_min = -1;
    const char *v;
    TP_CHECK(take(cli, "--catalog", catalog));
    TP_CHECK(take(cli, "--layer", &v));
    if (v) {
        TP_CHECK(parse_i64("--layer", v, 0, &f->layer));
        f->has_layer = 1;
    }
    TP_CHECK(take(cli, "--feature", &v));
    if (v) {
        TP_CHECK(parse_i64("--feature", v, 0, &f->feature));
        f->has_feature = 1;
    }
    TP_CHECK(take(cli, "--limit", &v));
    if (v) TP_CHECK(parse_i64("--limit", v, 1, &f->limit));
    TP_CHECK(take(cli, "--density-min", &v));
    if (v) TP_CHECK(parse_frac("--density-min", v, &f->density_min));
    TP_CHECK(take(cli, "--density-max", &v));
    if (v) TP_CHECK(parse_frac("--density-max", v, &f->density_max));
    TP_CHECK(take(cli, "--domain-min", &v));
    if (v) TP_CHECK(parse_frac("--domain-min", v, &f->domain_min));
    TP_CHECK(take(cli, "--hook", &f->hook));
    TP_CHECK(take(cli, "--token", &f->token));
    TP_CHECK(take(cli, "--domain", &f->domain));
    TP_CHECK(take(cli, "--fields", &f->fields));
    TP_CHECK(take(cli, "--sort", &f->sort));
    f->dead = cli_take_flag(cli, "--dead");
    f->json = cli_take_flag(cli, "--json");
    TP_CHECK(cli_reject_rest(cli));
    if (f->density_min > f->density_max)
        return tp_err(TP_ERR_CONFIG, "features query: --density-min %g is above --density-max %g", f->density_min,
                      f->density_max);
    if (f->domain_min >= 0 && !f->domain)
        return tp_err(TP_ERR_CONFIG, "features query: --domain-min needs --domain NAME");
    if (f->token && !*f->token) return tp_err(TP_ERR_CONFIG, "features query: --token is empty");
    return TP_OK;
}

/* ---- fields: index columns or keys of the feature's JSON ---------------------------------------- */

typedef struct {
    char name[64];     /* as asked */
    int col;           /* FX_*, or −1: `path` in the feature's JSON */
    char path[64];     /* dotted keys, array positions as numbers (top_contexts.0.context) */
} field;

static const struct { const char *alias, *column; } aliases[] = {
    {"id", "feature"}, {"mean", "mean_activation"}, {"max", "max_activation"}, {"share", "top_domain_share"},
};
/* The keys a feature of the catalog can have (docs/features.md). */
static const char *const feature_keys[] = {"id", "fires", "density", "mean_activation", "max_activation",
    "activation_mass", "top_contexts", "quantile_samples", "promotes", "suppresses", "reads", "domain_profile",
    "top_domain", "monosemanticity", NULL};

static int col_is_number(int c)
{
    return c == FX_SAE || c == FX_LAYER || c == FX_FEATURE || c == FX_FIRES || c == FX_DENSITY || c == FX_MEAN ||
           c == FX_MAX || c == FX_DEAD || c == FX_DENSE || c == FX_TOP_DOMAIN_SHARE || c == FX_OFFSET ||
           c == FX_LENGTH;
}
static int col_is_real(int c) { return c == FX_DENSITY || c == FX_MEAN || c == FX_MAX || c == FX_TOP_DOMAIN_SHARE; }
static int col_is_json(int c) { return c == FX_TOKENS || c == FX_PROMOTES || c == FX_DOMAIN_PROFILE; }

static tp_status unknown_field(const char *opt, const char *name)
{
    char cols[1024] = "";
    size_t n = 0;
    for (int c = 0; c < FX_NCOLS && n < sizeof cols; c++)
        n += (size_t)snprintf(cols + n, sizeof cols - n, "%s%s", c ? ", " : "", features_index_columns[c]);
    char keys[512] = "";
    n = 0;
    for (int k = 0; feature_keys[k] && n < sizeof keys; k++)
        n += (size_t)snprintf(keys + n, sizeof keys - n, "%s%s", k ? ", " : "", feature_keys[k]);
    return tp_err(TP_ERR_CONFIG, "features query: %s: '%s' is neither a column of the index (%s; mean, max, share, "
                  "id) nor a key of a feature (%s; nested as monosemanticity.score)", opt, name, cols, keys);
}

static tp_status resolve_field(const char *opt, const char *name, size_t len, field *f)
{
    memset(f, 0, sizeof *f);
    if (len == 0) return tp_err(TP_ERR_CONFIG, "features query: %s has an empty field name", opt);
    if (len >= sizeof f->name) return tp_err(TP_ERR_CONFIG, "features query: %s: field name too long", opt);
    memcpy(f->name, name, len);
    const char *canon = f->name;
    for (size_t k = 0; k < sizeof aliases / sizeof *aliases; k++)
        if (!strcmp(canon, aliases[k].alias)) canon = aliases[k].column;
    f->col = -1;
    for (int c = 0; c < FX_NCOLS; c++)
        if (!strcmp(canon, features_index_columns[c])) f->col = c;
    if (f->col >= 0) return TP_OK;
    size_t head = strcspn(f->name, ".");
    for (int k = 0; feature_keys[k]; k++)
        if (strlen(feature_keys[k]) == head && !strncmp(f->name, feature_keys[k], head)) {
            snprintf(f->path, sizeof f->path, "%s", f->name);
            return TP_OK;
        }
    return unknown_field(opt, f->name);
}

static tp_status parse_fields(const char *list, field *out, int *n)
{
    *n = 0;
    for (const char *p = list;;) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, ",");
        size_t l = len;
        while (l && p[l - 1] == ' ') l--;
        if (*n == MAX_FIELDS) return tp_err(TP_ERR_CONFIG, "features query: more than %d --fields", MAX_FIELDS);
        TP_CHECK(resolve_field("--fields", p, l, &out[(*n)++]));
        if (!p[len]) break;
        p += len + 1;
    }
    return TP_OK;
}

/* ---- the table of features: the index, or the catalog when there is no fresh index ------------ */

typedef struct {
    features_index x;
    json_t *doc;            /* without a fresh index: the whole catalog */
    json_t **feat;          /* [n_rows]: the feature's object (borrowed from doc, or read by span and owned) */
    FILE *cat;              /* with the index: the catalog, for the spans */
    const char *cat_path;
    const char *source;     /* "index" or "catalog" */
} table;

static void table_free(table *t)
{
    if (t->feat && !t->doc)
        for (int64_t r = 0; r < t->x.n_rows; r++) json_decref(t->feat[r]);
    free(t->feat);
    if (t->cat) fclose(t->cat);
    json_decref(t->doc);
    features_index_free(&t->x);
}

static tp_status load_catalog(const char *path, json_t **out)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) return tp_err(TP_ERR_FORMAT, "features query: %s:%d:%d: %s", path, e.line, e.column, e.text);
    json_t *saes = json_object_get(j, "saes");
    size_t i;
    json_t *s;
    int ok = json_is_array(saes);
    json_array_foreach(ok ? saes : NULL, i, s) {
        if (!json_is_object(s) || !json_is_array(json_object_get(s, "features"))) ok = 0;
    }
    if (!ok) {
        json_decref(j);
        return tp_err(TP_ERR_FORMAT, "features query: %s: not a features catalog (expected {\"saes\": [{..., "
                                     "\"features\": [...]}]})", path);
    }
    *out = j;
    return TP_OK;
}

/* The index if it describes the catalog as it is; otherwise the catalog, parsed. */
static tp_status table_open(const char *cat_path, const char *index_path, table *t)
{
    memset(t, 0, sizeof *t);
    t->cat_path = cat_path;
    if (!fs_exists(cat_path))
        return tp_err(TP_ERR_IO, "features query: %s: no features catalog (run `transpolmo sae` first, or give "
                                 "--catalog FILE)", cat_path);
    if (fs_exists(index_path)) {
        tp_status st = features_index_load(index_path, &t->x);
        if (st == TP_OK && features_index_fresh(&t->x, cat_path) && (t->cat = fopen(cat_path, "rb"))) {
            t->feat = calloc((size_t)(t->x.n_rows > 0 ? t->x.n_rows : 1), sizeof *t->feat);
            if (!t->feat) return tp_err(TP_ERR_NOMEM, "features query: %lld features", (long long)t->x.n_rows);
            t->source = "index";
            return TP_OK;
        }
        if (st == TP_OK)
            tp_log_info("features query: %s is stale (the catalog changed since): reading the whole catalog",
                        index_path);
        else
            tp_log_info("features query: %s is not usable (%s): reading the whole catalog", index_path, tp_err_msg());
        tp_err_clear();
        features_index_free(&t->x);
    }
    TP_CHECK(load_catalog(cat_path, &t->doc));
    TP_CHECK(features_index_from_doc(t->doc, &t->x));
    t->feat = calloc((size_t)(t->x.n_rows > 0 ? t->x.n_rows : 1), sizeof *t->feat);
    if (!t->feat) return tp_err(TP_ERR_NOMEM, "features query: %lld features", (long long)t->x.n_rows);
    /* Rows are the object features in catalog order (features_index_from_doc). */
    int64_t r = 0;
    size_t i, k;
    json_t *L, *f;
    json_array_foreach(json_object_get(t->doc, "saes"), i, L) {
        json_array_foreach(json_object_get(L, "features"), k, f) {
            if (json_is_object(f) && r < t->x.n_rows) t->feat[r++] = f;
        }
    }
    t->source = "catalog";
    return TP_OK;
}

static const char *cell(const table *t, int64_t r, int c) { return t->x.cell[r * FX_NCOLS + c]; }

/* The feature's object (read from the catalog by its span on first use). */
static tp_status feature_of(table *t, int64_t r, json_t **out)
{
    if (!t->feat[r]) {
        json_t *f = NULL;
        TP_CHECK(features_file_read_feature(t->cat, t->cat_path, strtoll(cell(t, r, FX_OFFSET), NULL, 10),
                                            strtoll(cell(t, r, FX_LENGTH), NULL, 10), &f));
        json_t *id = json_object_get(f, "id");
        if (!json_is_integer(id) || json_integer_value(id) != strtoll(cell(t, r, FX_FEATURE), NULL, 10)) {
            json_decref(f);
            return tp_err(TP_ERR_FORMAT, "features query: the index says feature %s is at byte %s of %s, which holds "
                          "another; delete the index to read the catalog alone", cell(t, r, FX_FEATURE),
                          cell(t, r, FX_OFFSET), t->cat_path);
        }
        t->feat[r] = f;
    }
    *out = t->feat[r];
    return TP_OK;
}

static const json_t *json_path(const json_t *j, const char *path)
{
    char key[64];
    while (j && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key) return NULL;
        memcpy(key, path, n), key[n] = '\0';
        if (json_is_array(j)) {
            char *end;
            long k = strtol(key, &end, 10);
            j = *end || k < 0 ? NULL : json_array_get(j, (size_t)k);
        } else {
            j = json_object_get(j, key);
        }
        path += n + (path[n] == '.');
    }
    return j;
}

/* The field's value as JSON (new reference; null when absent). */
static tp_status field_value(table *t, const field *f, int64_t r, json_t **out)
{
    if (f->col < 0) {
        json_t *feat;
        TP_CHECK(feature_of(t, r, &feat));
        const json_t *v = json_path(feat, f->path);
        *out = v ? json_incref((json_t *)v) : json_null();
        return TP_OK;
    }
    const char *c = cell(t, r, f->col);
    if (!*c) *out = json_null();
    else if (col_is_real(f->col)) *out = json_real(strtod(c, NULL));
    else if (col_is_number(f->col)) *out = json_integer(strtoll(c, NULL, 10));
    else if (col_is_json(f->col)) *out = json_loads(c, 0, NULL);
    else *out = json_string(c);
    if (!*out) *out = json_null();
    return TP_OK;
}

/* ---- filters (on the index's cells alone) -------------------------------------------------------- */

/* a and b equal, or equal once leading and trailing whitespace is dropped from both
 * (" the" matches "the") when that leaves something. */
static int token_matches(const char *tok, const char *want)
{
    if (!strcmp(tok, want)) return 1;
    while (isspace((unsigned char)*tok)) tok++;
    while (isspace((unsigned char)*want)) want++;
    size_t a = strlen(tok), b = strlen(want);
    while (a && isspace((unsigned char)tok[a - 1])) a--;
    while (b && isspace((unsigned char)want[b - 1])) b--;
    return a > 0 && a == b && !memcmp(tok, want, a);
}

static int cell_has_token(const char *json_list, const char *want)
{
    if (!*json_list) return 0;
    json_t *l = json_loads(json_list, 0, NULL);
    size_t i;
    json_t *e;
    int hit = 0;
    json_array_foreach(l, i, e) {
        const char *t = json_string_value(e);
        if (t && token_matches(t, want)) hit = 1;
    }
    json_decref(l);
    return hit;
}

static int row_passes(const query_opts *o, const table *t, int64_t r, const char *selected)
{
    const int64_t sae = strtoll(cell(t, r, FX_SAE), NULL, 10);
    if (sae < 0 || sae >= (int64_t)json_array_size(t->x.saes) || !selected[sae]) return 0;
    const char *id = cell(t, r, FX_FEATURE), *dc = cell(t, r, FX_DENSITY);
    if (o->has_feature && (!*id || strtoll(id, NULL, 10) != o->feature)) return 0;
    double dens = *dc ? strtod(dc, NULL) : NAN;
    if (!(dens >= o->density_min && dens <= o->density_max)) return 0;
    if (o->dead && strcmp(cell(t, r, FX_DEAD), "1")) return 0;
    if (o->token && !cell_has_token(cell(t, r, FX_TOKENS), o->token) &&
        !cell_has_token(cell(t, r, FX_PROMOTES), o->token))
        return 0;
    if (o->domain) {
        if (o->domain_min >= 0) {
            const char *dp = cell(t, r, FX_DOMAIN_PROFILE);
            json_t *p = *dp ? json_loads(dp, 0, NULL) : NULL;
            json_t *v = json_object_get(p, o->domain);
            int ok = json_is_number(v) && json_number_value(v) >= o->domain_min;
            json_decref(p);
            if (!ok) return 0;
        } else if (strcmp(cell(t, r, FX_TOP_DOMAIN), o->domain)) {
            return 0;
        }
    }
    return 1;
}

/* ---- coverage: a query that cannot match says why ----------------------------------------------- */

/* Appends item to the ", "-separated list in buf unless it is there already. */
static void list_append(char *buf, size_t n, const char *item)
{
    const size_t l = strlen(buf), il = strlen(item);
    for (const char *p = buf; (p = strstr(p, item)); p++) {
        int start = p == buf || (p >= buf + 2 && p[-2] == ',' && p[-1] == ' ');
        int end = p[il] == '\0' || (p[il] == ',' && p[il + 1] == ' ');
        if (start && end) return;
    }
    if (l + il + 3 < n) snprintf(buf + l, n - l, "%s%s", l ? ", " : "", item);
}

static tp_status select_saes(const query_opts *o, const table *t, char *selected, int *n_selected)
{
    const json_t *saes = t->x.saes;
    char layers[512] = "", hooks[2048] = "", both[2048] = "";
    int any_layer = 0, any_hook = 0;
    *n_selected = 0;
    size_t i;
    json_t *s;
    json_array_foreach(saes, i, s) {
        const json_t *L = json_object_get(s, "layer");
        const char *h = json_string_value(json_object_get(s, "hook"));
        char num[32], pair[600];
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(L));
        list_append(layers, sizeof layers, json_is_integer(L) ? num : "?");
        list_append(hooks, sizeof hooks, h ? h : "?");
        snprintf(pair, sizeof pair, "%s at layer %s", h ? h : "?", json_is_integer(L) ? num : "?");
        list_append(both, sizeof both, pair);
        int lok = !o->has_layer || (json_is_integer(L) && json_integer_value(L) == o->layer);
        int hok = !o->hook || (h && !strcmp(h, o->hook));
        any_layer |= lok, any_hook |= hok;
        selected[i] = (char)(lok && hok);
        *n_selected += selected[i];
    }
    if (*n_selected > 0 || (!o->has_layer && !o->hook)) return TP_OK;
    if (!any_layer)
        return tp_err(TP_ERR_CONFIG, "features query: layer %lld is not among the catalog's layers (%s)",
                      (long long)o->layer, *layers ? layers : "the catalog has no SAE");
    if (!any_hook)
        return tp_err(TP_ERR_CONFIG, "features query: hook '%s' is not among the catalog's hooks (%s)", o->hook,
                      *hooks ? hooks : "the catalog has no SAE");
    return tp_err(TP_ERR_CONFIG, "features query: no SAE is on hook '%s' at layer %lld (the catalog's SAEs: %s)",
                  o->hook, (long long)o->layer, both);
}

static tp_status check_coverage(const query_opts *o, const table *t, const char *selected)
{
    size_t i;
    json_t *s;
    if (o->domain) {
        char doms[2048] = "";
        int known = 0, found = 0;
        json_array_foreach(t->x.saes, i, s) {
            const json_t *dr = json_object_get(s, "domain_rows");
            if (!selected[i] || !json_is_object(dr)) continue;
            known = 1;
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)dr, k, v) {
                list_append(doms, sizeof doms, k);
                found |= !strcmp(k, o->domain);
            }
        }
        if (known && !found)
            return tp_err(TP_ERR_CONFIG, "features query: domain '%s' is not among the catalog's domains (%s)",
                          o->domain, doms);
    }
    if (o->has_feature) {
        char ranges[1024] = "";
        int found = 0;
        json_array_foreach(t->x.saes, i, s) {
            if (!selected[i]) continue;
            const json_t *d = json_object_get(s, "d_sae");
            int64_t n = json_is_integer(d) ? json_integer_value(d) : json_integer_value(json_object_get(s, "features"));
            char r[128];
            snprintf(r, sizeof r, "0-%lld at layer %lld", (long long)(n - 1),
                     (long long)json_integer_value(json_object_get(s, "layer")));
            list_append(ranges, sizeof ranges, r);
            found |= o->feature < n;
        }
        if (!found)
            return tp_err(TP_ERR_CONFIG, "features query: feature %lld is beyond the features of the SAE(s) "
                          "queried (%s)", (long long)o->feature, *ranges ? ranges : "the catalog has no SAE");
    }
    return TP_OK;
}

/* ---- sorting ------------------------------------------------------------------------------------- */

typedef struct {
    int64_t row;
    int kind;          /* 0 number, 1 text, 2 null (last whatever the direction) */
    double num;
    char *text;
} sort_key;

static int g_desc;   /* qsort has no context argument */

static int sort_cmp(const void *x, const void *y)
{
    const sort_key *a = x, *b = y;
    int c = 0;
    if (a->kind != b->kind) c = a->kind < b->kind ? -1 : 1;   /* numbers, then text, then nulls */
    else if (a->kind == 0) c = (a->num > b->num) - (a->num < b->num);
    else if (a->kind == 1) c = strcmp(a->text, b->text);
    if (c && a->kind == b->kind && g_desc) c = -c;
    return c ? c : (a->row > b->row) - (a->row < b->row);   /* stable: catalog order */
}

static tp_status sort_rows(table *t, const char *spec, int64_t *rows, int64_t n)
{
    const char *colon = strrchr(spec, ':');
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    g_desc = 0;
    if (colon) {
        if (!strcmp(colon + 1, "desc")) g_desc = 1;
        else if (strcmp(colon + 1, "asc"))
            return tp_err(TP_ERR_CONFIG, "features query: --sort %s: the direction is asc or desc, not '%s'", spec,
                          colon + 1);
    }
    field f;
    TP_CHECK(resolve_field("--sort", spec, len, &f));
    sort_key *k = calloc((size_t)(n > 0 ? n : 1), sizeof *k);
    if (!k) return tp_err(TP_ERR_NOMEM, "features query: sorting %lld features", (long long)n);
    tp_status st = TP_OK;
    for (int64_t i = 0; i < n && st == TP_OK; i++) {
        json_t *v = NULL;
        k[i].row = rows[i];
        if ((st = field_value(t, &f, rows[i], &v)) != TP_OK) break;
        if (json_is_number(v)) k[i].kind = 0, k[i].num = json_number_value(v);
        else if (json_is_boolean(v)) k[i].kind = 0, k[i].num = json_is_true(v);
        else if (json_is_string(v)) k[i].kind = 1, k[i].text = strdup(json_string_value(v));
        else if (json_is_null(v)) k[i].kind = 2;
        else k[i].kind = 1, k[i].text = json_dumps(v, JSON_COMPACT);
        if (k[i].kind == 1 && !k[i].text) st = tp_err(TP_ERR_NOMEM, "features query: sorting");
        if (k[i].kind == 0 && isnan(k[i].num)) k[i].kind = 2;
        json_decref(v);
    }
    if (st == TP_OK) {
        qsort(k, (size_t)n, sizeof *k, sort_cmp);
        for (int64_t i = 0; i < n; i++) rows[i] = k[i].row;
    }
    for (int64_t i = 0; i < n; i++) free(k[i].text);
    free(k);
    return st;
}

/* ---- output -------------------------------------------------------------------------------------- */

static tp_status put_line(const char *s)
{
    if (fputs(s, stdout) == EOF || fputc('\n', stdout) == EOF)
        return tp_err(TP_ERR_IO, "features query: writing to stdout failed");
    return TP_OK;
}

static tp_status print_json(table *t, const field *fields, int nf, const int64_t *rows, int64_t n)
{
    tp_status st = TP_OK;
    for (int64_t i = 0; i < n && st == TP_OK; i++) {
        const int64_t r = rows[i];
        json_t *line = json_object();
        if (nf == 0) {
            json_t *feat, *sae = json_array_get(t->x.saes, (size_t)strtoll(cell(t, r, FX_SAE), NULL, 10));
            if ((st = feature_of(t, r, &feat)) != TP_OK) { json_decref(line); break; }
            json_t *layer = json_object_get(sae, "layer"), *hook = json_object_get(sae, "hook");
            json_object_set(line, "layer", layer ? layer : json_null());
            json_object_set(line, "hook", hook ? hook : json_null());
            json_object_update(line, feat);
        }
        for (int k = 0; k < nf && st == TP_OK; k++) {
            json_t *v = NULL;
            if ((st = field_value(t, &fields[k], r, &v)) == TP_OK) json_object_set_new(line, fields[k].name, v);
        }
        char *txt = st == TP_OK ? json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
        json_decref(line);
        if (st != TP_OK) break;
        if (!txt) { st = tp_err(TP_ERR_NOMEM, "features query: JSON output"); break; }
        st = put_line(txt);
        free(txt);
    }
    return st;
}

static size_t utf8_len(const char *s)
{
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* What a table shows of a value: control characters escaped, at most `max` characters. */
static char *display(const json_t *v, int col, size_t max)
{
    char num[64];
    const char *src = NULL;
    char *owned = NULL;
    if (!v || json_is_null(v)) src = "-";
    else if (json_is_integer(v)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v)), src = num;
    else if (json_is_real(v)) snprintf(num, sizeof num, "%.4g", json_real_value(v)), src = num;
    else if (json_is_string(v) && col != FX_TOP_TOKEN) src = json_string_value(v);
    else src = owned = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(4));   /* a token quoted */
    if (!src) src = "?";
    size_t n = strlen(src);
    char *out = malloc(2 * n + 8);
    if (!out) { free(owned); return NULL; }
    size_t w = 0, chars = 0;
    /* A long context keeps its highlighted token in view: at most max/2 characters
     * before ⟦, the cut marked with an ellipsis. */
    const char *hl = col == FX_TOP_CONTEXT && max ? strstr(src, "\xe2\x9f\xa6") : NULL;
    if (hl && utf8_len(src) > max) {
        size_t before = 0;
        for (const char *p = src; p < hl; p++) before += ((unsigned char)*p & 0xC0) != 0x80;
        if (before > max / 2) {
            for (size_t skip = before - max / 2 + 1; skip > 0; skip--)   /* + 1: the ellipsis */
                do src++; while (((unsigned char)*src & 0xC0) == 0x80);
            memcpy(out, "\xe2\x80\xa6", 3), w = 3, chars = 1;
        }
    }
    for (const char *p = src; *p; p++) {
        const unsigned char c = (unsigned char)*p;
        if ((c & 0xC0) != 0x80) {
            if (max && chars + 1 == max && utf8_len(p) > 1) {   /* room for the ellipsis only */
                memcpy(out + w, "\xe2\x80\xa6", 3), w += 3;
                break;
            }
            chars++;
        }
        if (c == '\n') out[w++] = '\\', out[w++] = 'n';
        else if (c == '\t') out[w++] = '\\', out[w++] = 't';
        else if (c == '\r') out[w++] = '\\', out[w++] = 'r';
        else if (c < 0x20) out[w++] = '?';
        else out[w++] = (char)c;
    }
    out[w] = '\0';
    free(owned);
    return out;
}

static size_t max_width(const field *f)
{
    if (f->col == FX_TOP_CONTEXT) return 60;
    if (f->col == FX_TOP_TOKEN) return 24;
    if (f->col == FX_HOOK) return 0;
    return 48;
}

static tp_status print_table(table *t, const field *fields, int nf, const int64_t *rows, int64_t n)
{
    char **cells = calloc((size_t)((n + 1) * nf), sizeof *cells);
    size_t width[MAX_FIELDS] = {0};
    int numeric[MAX_FIELDS];
    if (!cells) return tp_err(TP_ERR_NOMEM, "features query: the table");
    tp_status st = TP_OK;
    for (int k = 0; k < nf; k++) {
        cells[k] = strdup(fields[k].name);
        numeric[k] = 1;
    }
    for (int64_t i = 0; i < n && st == TP_OK; i++)
        for (int k = 0; k < nf && st == TP_OK; k++) {
            json_t *v = NULL;
            if ((st = field_value(t, &fields[k], rows[i], &v)) != TP_OK) break;
            if (!json_is_number(v) && !json_is_null(v)) numeric[k] = 0;
            cells[(i + 1) * nf + k] = display(v, fields[k].col, max_width(&fields[k]));
            json_decref(v);
        }
    for (int64_t i = 0; i <= n && st == TP_OK; i++)
        for (int k = 0; k < nf; k++) {
            if (!cells[i * nf + k]) { st = tp_err(TP_ERR_NOMEM, "features query: the table"); break; }
            size_t w = utf8_len(cells[i * nf + k]);
            if (w > width[k]) width[k] = w;
        }
    /* Columns two spaces apart; numbers right-aligned; no padding after the last. */
    size_t cap = 256;
    for (int k = 0; k < nf; k++) cap += 4 * width[k] + 2;
    char *line = malloc(cap);
    if (!line && st == TP_OK) st = tp_err(TP_ERR_NOMEM, "features query: the table");
    for (int64_t i = 0; i <= n && st == TP_OK; i++) {
        size_t w = 0;
        for (int k = 0; k < nf; k++) {
            const char *c = cells[i * nf + k];
            size_t pad = width[k] - utf8_len(c), len = strlen(c);
            if (k) line[w++] = ' ', line[w++] = ' ';
            if (numeric[k]) { memset(line + w, ' ', pad); w += pad; }
            memcpy(line + w, c, len), w += len;
            if (!numeric[k] && k + 1 < nf) { memset(line + w, ' ', pad); w += pad; }
        }
        line[w] = '\0';
        st = put_line(line);
    }
    free(line);
    for (int64_t i = 0; i < (n + 1) * nf; i++) free(cells[i]);
    free(cells);
    return st;
}

/* ---- the command --------------------------------------------------------------------------------- */

/* The index beside a catalog: <name without .json>.index.tsv. */
static tp_status index_path_of(const char *catalog, char *buf, size_t n)
{
    size_t l = strlen(catalog);
    if (l > 5 && !strcmp(catalog + l - 5, ".json")) return fs_path(buf, n, "%.*s.index.tsv", (int)(l - 5), catalog);
    return fs_path(buf, n, "%s.index.tsv", catalog);
}

static tp_status query(const query_opts *o, const char *catalog, const char *index_path)
{
    field fields[MAX_FIELDS];
    int nf = 0;
    if (o->fields || !o->json) TP_CHECK(parse_fields(o->fields ? o->fields : DEFAULT_FIELDS, fields, &nf));
    table t;
    tp_status st = table_open(catalog, index_path, &t);
    char *selected = NULL;
    int64_t *rows = NULL, n = 0;
    int n_sel = 0;
    if (st != TP_OK) goto done;
    selected = calloc(json_array_size(t.x.saes) + 1, 1);
    rows = malloc((size_t)(t.x.n_rows > 0 ? t.x.n_rows : 1) * sizeof *rows);
    if (!selected || !rows) { st = tp_err(TP_ERR_NOMEM, "features query"); goto done; }
    if ((st = select_saes(o, &t, selected, &n_sel)) != TP_OK) goto done;
    if ((st = check_coverage(o, &t, selected)) != TP_OK) goto done;
    if (o->sort) {   /* a bad --sort is an error even when nothing matches */
        field f;
        const char *colon = strrchr(o->sort, ':');
        if ((st = resolve_field("--sort", o->sort, colon ? (size_t)(colon - o->sort) : strlen(o->sort), &f)) != TP_OK)
            goto done;
    }
    for (int64_t r = 0; r < t.x.n_rows; r++)
        if (row_passes(o, &t, r, selected)) rows[n++] = r;
    const int64_t matched = n;
    if (n == 0) {
        tp_log_info("features query: no feature matches");
        goto done;
    }
    if (o->sort && (st = sort_rows(&t, o->sort, rows, n)) != TP_OK) goto done;
    if (o->limit && n > o->limit) n = o->limit;
    st = o->json ? print_json(&t, fields, nf, rows, n) : print_table(&t, fields, nf, rows, n);
    if (st == TP_OK && fflush(stdout) != 0) st = tp_err(TP_ERR_IO, "features query: writing to stdout failed");
    if (st == TP_OK) {
        if (n < matched)
            tp_log_info("features query: %lld feature(s) match, %lld shown (--limit); from the %s", (long long)matched,
                        (long long)n, t.source);
        else
            tp_log_info("features query: %lld feature(s) match; from the %s", (long long)matched, t.source);
    }
done:
    free(selected), free(rows);
    table_free(&t);
    return st;
}

tp_status features_cmd_run(tp_cli *cli)
{
    const char *sub = cli_take_positional(cli);
    if (!sub) return tp_err(TP_ERR_CONFIG, "features: missing subcommand (query)");
    if (strcmp(sub, "query")) return tp_err(TP_ERR_CONFIG, "features: unknown subcommand '%s' (query)", sub);
    query_opts o;
    const char *catalog = NULL;
    TP_CHECK(parse_opts(cli, &o, &catalog));
    if (dist_rank() != 0) return TP_OK;
    char path[TP_PATH_MAX], index[TP_PATH_MAX];
    if (!catalog) {
        TP_CHECK(run_path(path, sizeof path, cli->run_dir, RUN_FEATURES_CATALOG_JSON));
        TP_CHECK(run_path(index, sizeof index, cli->run_dir, RUN_FEATURES_INDEX));
        catalog = path;
    } else {
        TP_CHECK(index_path_of(catalog, index, sizeof index));
    }
    return query(&o, catalog, index);
}
