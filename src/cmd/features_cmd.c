#include "cmd/features_cmd.h"

#include "core/fsutil.h"
#include "core/log.h"
#include "dist/world.h"
#include "run_layout.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int has_layer, has_feature, dead;
    int64_t layer, feature, limit;    /* limit 0: all */
    const char *hook, *token, *domain;
    double density_min, density_max, domain_min;   /* domain_min < 0: top domain */
} query_filter;

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

static tp_status parse_filter(tp_cli *cli, query_filter *f, const char **catalog)
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
    f->dead = cli_take_flag(cli, "--dead");
    TP_CHECK(cli_reject_rest(cli));
    if (f->density_min > f->density_max)
        return tp_err(TP_ERR_CONFIG, "features query: --density-min %g is above --density-max %g", f->density_min,
                      f->density_max);
    if (f->domain_min >= 0 && !f->domain)
        return tp_err(TP_ERR_CONFIG, "features query: --domain-min needs --domain NAME");
    if (f->token && !*f->token) return tp_err(TP_ERR_CONFIG, "features query: --token is empty");
    return TP_OK;
}

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

static int list_has_token(const json_t *list, const char *want)
{
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e) {
        const char *t = json_string_value(json_object_get(e, "token"));
        if (t && token_matches(t, want)) return 1;
    }
    return 0;
}

static double num(const json_t *j, double dflt)
{
    return json_is_number(j) ? json_number_value(j) : dflt;
}

static const char *top_domain(const json_t *feat)
{
    const char *t = json_string_value(json_object_get(feat, "top_domain"));
    if (t) return t;
    const json_t *dp = json_object_get(feat, "domain_profile");
    const char *key, *best = NULL;
    json_t *v;
    double bv = -1;
    json_object_foreach((json_t *)dp, key, v) {
        if (num(v, -1) > bv) bv = num(v, -1), best = key;
    }
    return best;
}

static int feature_passes(const query_filter *f, const json_t *feat)
{
    if (f->has_feature && json_integer_value(json_object_get(feat, "id")) != f->feature) return 0;
    double dens = num(json_object_get(feat, "density"), NAN);
    if (!(dens >= f->density_min && dens <= f->density_max)) return 0;
    if (f->dead && dens != 0) return 0;
    if (f->token && !list_has_token(json_object_get(feat, "top_contexts"), f->token) &&
        !list_has_token(json_object_get(feat, "promotes"), f->token))
        return 0;
    if (f->domain) {
        if (f->domain_min >= 0) {
            if (!(num(json_object_get(json_object_get(feat, "domain_profile"), f->domain), 0) >= f->domain_min))
                return 0;
        } else {
            const char *t = top_domain(feat);
            if (!t || strcmp(t, f->domain)) return 0;
        }
    }
    return 1;
}

static tp_status load_catalog(const char *path, json_t **out)
{
    if (!fs_exists(path))
        return tp_err(TP_ERR_IO, "features query: %s: no features catalog (run `transpolmo sae` first, or give "
                                 "--catalog FILE)", path);
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

tp_status features_cmd_run(tp_cli *cli)
{
    const char *sub = cli_take_positional(cli);
    if (!sub) return tp_err(TP_ERR_CONFIG, "features: missing subcommand (query)");
    if (strcmp(sub, "query")) return tp_err(TP_ERR_CONFIG, "features: unknown subcommand '%s' (query)", sub);
    query_filter f;
    const char *catalog = NULL;
    TP_CHECK(parse_filter(cli, &f, &catalog));
    if (dist_rank() != 0) return TP_OK;
    char path[TP_PATH_MAX];
    if (!catalog) {
        TP_CHECK(run_path(path, sizeof path, cli->run_dir, RUN_FEATURES_CATALOG_JSON));
        catalog = path;
    }
    json_t *doc = NULL;
    TP_CHECK(load_catalog(catalog, &doc));
    size_t i, k;
    json_t *sae, *feat;
    int64_t printed = 0, matched_layer = 0;
    tp_status st = TP_OK;
    json_array_foreach(json_object_get(doc, "saes"), i, sae) {
        json_t *layer = json_object_get(sae, "layer"), *hook = json_object_get(sae, "hook");
        if (f.has_layer && (!json_is_integer(layer) || json_integer_value(layer) != f.layer)) continue;
        if (f.hook && (!json_is_string(hook) || strcmp(json_string_value(hook), f.hook))) continue;
        matched_layer++;
        json_array_foreach(json_object_get(sae, "features"), k, feat) {
            if (f.limit && printed >= f.limit) break;
            if (!json_is_object(feat) || !feature_passes(&f, feat)) continue;
            json_t *line = json_object();
            json_object_set(line, "layer", layer ? layer : json_null());
            json_object_set(line, "hook", hook ? hook : json_null());
            json_object_update(line, feat);
            char *txt = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
            json_decref(line);
            if (!txt) { st = tp_err(TP_ERR_NOMEM, "features query: JSON output"); break; }
            if (fputs(txt, stdout) == EOF || fputc('\n', stdout) == EOF)
                st = tp_err(TP_ERR_IO, "features query: writing to stdout failed");
            free(txt);
            if (st != TP_OK) break;
            printed++;
        }
        if (st != TP_OK) break;
    }
    json_decref(doc);
    if (st == TP_OK && (f.has_layer || f.hook) && matched_layer == 0) {
        char what[300];
        if (f.hook) snprintf(what, sizeof what, "hook '%s'", f.hook);
        else snprintf(what, sizeof what, "layer %lld", (long long)f.layer);
        st = tp_err(TP_ERR_RANGE, "features query: %s has no SAE for %s%s", catalog, what,
                    f.hook && f.has_layer ? " at that layer" : "");
    }
    if (st == TP_OK && fflush(stdout) != 0) st = tp_err(TP_ERR_IO, "features query: writing to stdout failed");
    if (st == TP_OK) tp_log_info("features query: %lld feature(s) matched", (long long)printed);
    return st;
}
