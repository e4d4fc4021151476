/* circuits_cmd.c — the subcommands of `transpolmo circuits`: their options, checked
 * before any work (a usage error is TP_ERR_CONFIG: exit code 2, nothing written),
 * then the step that does the work (trace.h, heads.h, weights.h, dla.h). */
#include "analysis/circuits/attribute.h"
#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/circuits_phase.h"
#include "analysis/circuits/discover_run.h"
#include "analysis/circuits/dla.h"
#include "analysis/circuits/heads.h"
#include "analysis/circuits/trace.h"
#include "analysis/circuits/weights.h"
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The value of an option that takes one; "--opt" with nothing after it is an error. */
static tp_status take(tp_cli *cli, const char *name, const char **out)
{
    *out = cli_take_value(cli, name);
    if (*out) return TP_OK;
    for (int i = 0; i < cli->nrest; i++)
        if (!cli->rest_used[i] && !strcmp(cli->rest[i], name))
            return tp_err(TP_ERR_CONFIG, "circuits %s: %s needs a value", cli->subcommand, name);
    return TP_OK;
}

/* The id of an output: --name as given (letters, digits, '.', '_', '-'), else a
 * slug of the text and 8 hex digits of its FNV-1a hash. */
static tp_status output_id(const char *sub, const char *name, const char *text, char *id, size_t n)
{
    if (name) {
        size_t len = strlen(name);
        int ok = len > 0 && len <= 64 && name[0] != '.';
        for (size_t i = 0; ok && i < len; i++) ok = isalnum((unsigned char)name[i]) || strchr("._-", name[i]);
        if (!ok)
            return tp_err(TP_ERR_CONFIG, "circuits %s: --name '%s': use 1 to 64 letters, digits, '.', '_' or '-' (not "
                          "starting with '.')", sub, name);
        snprintf(id, n, "%s", name);
        return TP_OK;
    }
    uint64_t h = 14695981039346656037ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    char slug[32];
    size_t k = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p && k < 24; p++) {
        if (isalnum(*p)) slug[k++] = (char)tolower(*p);
        else if (k && slug[k - 1] != '_') slug[k++] = '_';
    }
    while (k && slug[k - 1] == '_') k--;
    slug[k] = '\0';
    snprintf(id, n, "%s%s%08llx", slug, k ? "-" : "", (unsigned long long)(h & 0xffffffffULL));
    return TP_OK;
}

/* The settings, the model and its tokenizer: what every subcommand starts from. */
static tp_status open_all(tp_cli *cli, circuits_settings *cs, circuits_ctx *cx)
{
    TP_CHECK(circuits_settings_read(cli->cfg, cs));
    return circuits_open(&cli->set, cs, cx);
}

/* --heads "1.3,2.0" (layer.head pairs), else every head of `layers` (all when unset). */
static tp_status select_heads(tp_cli *cli, const circuits_ctx *cx, const char *heads, uint8_t *sel)
{
    const tp_model_config *c = &cx->m->cfg;
    int L = c->num_layers, H = c->num_heads;
    if (!heads) {
        const tp_settings *s = &cli->set;
        if (model_validate_layers(cx->m, s->layers, s->n_layers, s->layers_origin) != TP_OK)
            return TP_ERR_CONFIG;   /* out of range: a usage error, its message kept */
        memset(sel, s->n_layers ? 0 : 1, (size_t)L * H);
        for (size_t i = 0; i < s->n_layers; i++) memset(sel + s->layers[i] * H, 1, (size_t)H);
        return TP_OK;
    }
    memset(sel, 0, (size_t)L * H);
    for (const char *p = heads;;) {
        char *end;
        errno = 0;
        long l = strtol(p, &end, 10), h = -1;
        if (end != p && *end == '.') {
            const char *q = end + 1;
            h = strtol(q, &end, 10);
            if (end == q) h = -1;
        }
        if (errno || h < 0 || l < 0 || (*end && *end != ','))
            return tp_err(TP_ERR_CONFIG, "circuits trace: --heads '%s': expected LAYER.HEAD pairs such as 1.3,2.0", heads);
        if (l >= L) return tp_err(TP_ERR_CONFIG, "circuits trace: --heads: layer %ld is out of range (%s has layers "
                                  "0..%d)", l, cx->m->dir, L - 1);
        if (h >= H) return tp_err(TP_ERR_CONFIG, "circuits trace: --heads: head %ld of layer %ld is out of range (%s "
                                  "has heads 0..%d)", h, l, cx->m->dir, H - 1);
        sel[l * H + h] = 1;
        if (!*end) break;
        p = end + 1;
    }
    return TP_OK;
}

tp_status circuits_trace_cmd(tp_cli *cli)
{
    const char *prompt, *heads, *name;
    TP_CHECK(take(cli, "--prompt", &prompt));
    TP_CHECK(take(cli, "--heads", &heads));
    TP_CHECK(take(cli, "--name", &name));
    TP_CHECK(cli_reject_rest(cli));
    if (!prompt) return tp_err(TP_ERR_CONFIG, "circuits trace: --prompt \"text\" is required");
    circuits_settings cs;
    circuits_ctx cx = {0};
    int32_t *ids = NULL;
    int T = 0;
    uint8_t *sel = NULL;
    char id[96];
    tp_status st = open_all(cli, &cs, &cx);
    if (st == TP_OK) {
        prompt_limits lim = circuits_limits(&cx, 1);
        st = prompts_encode(cx.tok, prompt, &lim, "circuits trace: --prompt", &ids, &T);
    }
    if (st == TP_OK && !(sel = tp_malloc((size_t)cx.m->cfg.num_layers * cx.m->cfg.num_heads))) st = TP_ERR_NOMEM;
    if (st == TP_OK) st = select_heads(cli, &cx, heads, sel);
    if (st == TP_OK) st = output_id("trace", name, prompt, id, sizeof id);
    if (st == TP_OK) {
        trace_request rq = {.prompt = prompt, .ids = ids, .T = T, .id = id, .select = sel};
        st = trace_run(&cx, &rq, cli->run_dir);
    }
    free(ids);
    free(sel);
    circuits_close(&cx);
    return st;
}

tp_status circuits_heads_cmd(tp_cli *cli)
{
    const char *file;
    TP_CHECK(take(cli, "--prompts", &file));
    TP_CHECK(cli_reject_rest(cli));
    circuits_settings cs;
    circuits_ctx cx = {0};
    tp_status st = open_all(cli, &cs, &cx);
    if (st == TP_OK) st = heads_run(&cx, file, cli->run_dir);
    circuits_close(&cx);
    return st;
}

tp_status circuits_weights_cmd(tp_cli *cli)
{
    TP_CHECK(cli_reject_rest(cli));
    circuits_settings cs;
    circuits_ctx cx = {0};
    tp_status st = open_all(cli, &cs, &cx);
    if (st == TP_OK) st = weights_run(&cx, cli->run_dir);
    circuits_close(&cx);
    return st;
}

/* A --target / --distractor text that must be one token (no BOS). */
static tp_status one_token(const circuits_ctx *cx, const char *sub, const char *opt, const char *text, int32_t *id)
{
    int32_t *ids = NULL;
    size_t n = 0;
    if (tokenizer_encode(cx->tok, text, strlen(text), 0, &ids, &n) != TP_OK) {
        tp_err_prefix("circuits %s: %s", sub, opt);
        return TP_ERR_CONFIG;
    }
    if (n == 1) {
        *id = ids[0];
        free(ids);
        return TP_OK;
    }
    char list[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < n && len < sizeof list - 64; i++) {
        json_t *t = circuits_text_json(cx, ids + i, 1);
        len += (size_t)snprintf(list + len, sizeof list - len, "%s'%s' (id %d)", i ? ", " : "", json_string_value(t),
                                ids[i]);
        json_decref(t);
    }
    free(ids);
    return tp_err(TP_ERR_CONFIG, "circuits %s: %s '%s' is %zu tokens, not one%s%s; give a single token (e.g. with "
                  "its leading space)", sub, opt, text, n, n ? ": " : "", list);
}

/* The request of `circuits dla` from its options (ids malloc'd). */
static tp_status dla_options(tp_cli *cli, const circuits_ctx *cx, dla_request *rq, int32_t **ids, char *id, size_t n)
{
    const char *prompt, *target, *distractor, *name;
    TP_CHECK(take(cli, "--prompt", &prompt));
    TP_CHECK(take(cli, "--target", &target));
    TP_CHECK(take(cli, "--distractor", &distractor));
    TP_CHECK(take(cli, "--name", &name));
    TP_CHECK(cli_reject_rest(cli));
    if (!prompt || !target)
        return tp_err(TP_ERR_CONFIG, "circuits dla: --prompt \"text\" and --target \" token\" are required");
    *rq = (dla_request){.prompt = prompt, .target_text = target, .distractor_text = distractor, .distractor = -1};
    TP_CHECK(one_token(cx, "dla", "--target", target, &rq->target));
    if (distractor) TP_CHECK(one_token(cx, "dla", "--distractor", distractor, &rq->distractor));
    if (rq->distractor == rq->target)
        return tp_err(TP_ERR_CONFIG, "circuits dla: --target and --distractor are the same token (id %d)", rq->target);
    prompt_limits lim = circuits_limits(cx, 1);
    TP_CHECK(prompts_encode(cx->tok, prompt, &lim, "circuits dla: --prompt", ids, &rq->T));
    rq->ids = *ids;
    char key[4096];
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s", prompt, target, distractor ? distractor : "");
    TP_CHECK(output_id("dla", name, key, id, n));
    return TP_OK;
}

tp_status circuits_dla_cmd(tp_cli *cli)
{
    circuits_settings cs;
    circuits_ctx cx = {0};
    dla_request rq;
    int32_t *ids = NULL;
    char id[96];
    tp_status st = open_all(cli, &cs, &cx);
    if (st == TP_OK) st = dla_options(cli, &cx, &rq, &ids, id, sizeof id);
    if (st == TP_OK) {
        rq.id = id;
        st = dla_run(&cx, &rq, cli->run_dir);
    }
    free(ids);
    circuits_close(&cx);
    return st;
}

/* An integer option in [lo, hi], def when absent. */
static tp_status take_int(tp_cli *cli, const char *name, long lo, long hi, long def, int *out)
{
    const char *v;
    TP_CHECK(take(cli, name, &v));
    *out = (int)def;
    if (!v) return TP_OK;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return tp_err(TP_ERR_CONFIG, "circuits %s: %s '%s': expected an integer in %ld..%ld", cli->subcommand, name, v,
                      lo, hi);
    *out = (int)x;
    return TP_OK;
}

/* "'The' (id 5), ' cat' (id 9), ..." of ids, at most n bytes. */
static void token_list(const circuits_ctx *cx, const int32_t *ids, int T, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < T && len + 64 < n; i++) {
        json_t *t = circuits_text_json(cx, ids + i, 1);
        len += (size_t)snprintf(buf + len, n - len, "%s'%s'", i ? ", " : "", json_string_value(t));
        json_decref(t);
    }
}

/* Clean and corrupted prompts of one pair: the same number of tokens. where: how the
 * messages name the prompts ("--clean" / "--corrupt" after it, e.g. "circuits patch"). */
static tp_status encode_pair(const circuits_ctx *cx, const char *where, const char *clean_opt, const char *corrupt_opt,
                             const char *clean, const char *corrupt, int32_t **a, int32_t **b, int *T)
{
    prompt_limits lim = circuits_limits(cx, 1);
    int Tb = 0;
    char what[1024];
    snprintf(what, sizeof what, "%s: %s", where, clean_opt);
    TP_CHECK(prompts_encode(cx->tok, clean, &lim, what, a, T));
    snprintf(what, sizeof what, "%s: %s", where, corrupt_opt);
    TP_CHECK(prompts_encode(cx->tok, corrupt, &lim, what, b, &Tb));
    if (Tb == *T) return TP_OK;
    char la[1024], lb[1024];
    token_list(cx, *a, *T, la, sizeof la);
    token_list(cx, *b, Tb, lb, sizeof lb);
    return tp_err(TP_ERR_CONFIG, "%s: %s is %d tokens [%s] but %s is %d [%s]; they must have the same length", where,
                  clean_opt, *T, la, corrupt_opt, Tb, lb);
}

/* The pairs of `circuits attribute`, owned (texts copied). */
typedef struct {
    attribute_pair *p;
    int n;
    char **text;            /* 4 per pair: clean, corrupt, target, distractor (may be NULL) */
} pair_list;

static void pair_list_free(pair_list *l)
{
    for (int i = 0; i < l->n; i++) {
        free((void *)l->p[i].clean), free((void *)l->p[i].corrupt);
        for (int k = 0; k < 4; k++) free(l->text[4 * i + k]);
    }
    free(l->p), free(l->text);
    memset(l, 0, sizeof *l);
}

/* Adds a pair: its texts copied, target/distractor as single tokens, both prompts
 * encoded to the same length. where names it in messages. */
static tp_status pair_add(const circuits_ctx *cx, pair_list *l, const char *where, const char *clean, const char *corrupt,
                          const char *target, const char *distractor)
{
    attribute_pair *gp = realloc(l->p, (size_t)(l->n + 1) * sizeof *gp);
    if (gp) l->p = gp;
    char **gt = gp ? realloc(l->text, (size_t)(l->n + 1) * 4 * sizeof *gt) : NULL;
    if (!gp || !gt) return TP_ERR_NOMEM;
    l->text = gt;
    attribute_pair *p = &l->p[l->n];
    char **t = &l->text[4 * l->n];
    memset(p, 0, sizeof *p);
    memset(t, 0, 4 * sizeof *t);
    l->n++;
    const char *src[4] = {clean, corrupt, target, distractor};
    for (int k = 0; k < 4; k++)
        if (src[k] && !(t[k] = strdup(src[k]))) return TP_ERR_NOMEM;
    *p = (attribute_pair){.clean_text = t[0], .corrupt_text = t[1], .target_text = t[2], .distractor_text = t[3],
                          .distractor = -1};
    char opt[1024];
    snprintf(opt, sizeof opt, "%s%s", where, where[0] == '-' ? "" : " \"target\"");
    const char *sub = "attribute";
    TP_CHECK(one_token(cx, sub, where[0] == '-' ? "--target" : opt, target, &p->target));
    if (distractor) {
        snprintf(opt, sizeof opt, "%s \"distractor\"", where);
        TP_CHECK(one_token(cx, sub, where[0] == '-' ? "--distractor" : opt, distractor, &p->distractor));
    }
    if (p->distractor == p->target)
        return tp_err(TP_ERR_CONFIG, "circuits attribute: %s: target and distractor are the same token (id %d)",
                      where[0] == '-' ? "--target, --distractor" : where, p->target);
    int32_t *a = NULL, *b = NULL;
    tp_status st;
    if (where[0] == '-') {
        st = encode_pair(cx, "circuits attribute", "--clean", "--corrupt", clean, corrupt, &a, &b, &p->T);
    } else {
        char w[1024];
        snprintf(w, sizeof w, "circuits attribute: %s", where);
        st = encode_pair(cx, w, "\"clean\"", "\"corrupt\"", clean, corrupt, &a, &b, &p->T);
    }
    p->clean = a, p->corrupt = b;
    return st;
}

/* --pairs FILE.jsonl: one {"clean", "corrupt", "target"?, "distractor"?} per non-blank
 * line; target / distractor default to --target / --distractor. */
static tp_status pairs_file(const circuits_ctx *cx, const char *path, const char *target, const char *distractor,
                            pair_list *l)
{
    FILE *f = fopen(path, "r");
    if (!f) return tp_err(TP_ERR_CONFIG, "circuits attribute: --pairs %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int no = 0;
    tp_status st = TP_OK;
    while (st == TP_OK && (len = getline(&line, &cap, f)) >= 0) {
        no++;
        size_t k = 0;
        while (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n') k++;
        if (!line[k]) continue;
        json_error_t je;
        json_t *o = json_loadb(line, (size_t)len, 0, &je);
        char where[TP_PATH_MAX + 32];
        snprintf(where, sizeof where, "%s line %d", path, no);
        const char *c = json_string_value(json_object_get(o, "clean")),
                   *r = json_string_value(json_object_get(o, "corrupt")),
                   *t = json_string_value(json_object_get(o, "target")),
                   *d = json_string_value(json_object_get(o, "distractor"));
        if (!o)
            st = tp_err(TP_ERR_CONFIG, "circuits attribute: %s: not JSON (%s)", where, je.text);
        else if (!c || !r)
            st = tp_err(TP_ERR_CONFIG, "circuits attribute: %s: needs string keys \"clean\" and \"corrupt\"", where);
        else if (!t && !target)
            st = tp_err(TP_ERR_CONFIG, "circuits attribute: %s: no \"target\" and no --target", where);
        else
            st = pair_add(cx, l, where, c, r, t ? t : target, d ? d : json_object_get(o, "distractor") ? NULL : distractor);
        json_decref(o);
    }
    if (st == TP_OK && ferror(f)) st = tp_err(TP_ERR_IO, "circuits attribute: --pairs %s: read error", path);
    if (st == TP_OK && l->n == 0) st = tp_err(TP_ERR_CONFIG, "circuits attribute: --pairs %s: no pairs", path);
    free(line);
    fclose(f);
    return st;
}

static tp_status attribute_options(tp_cli *cli, const circuits_ctx *cx, attribute_request *rq, pair_list *pl,
                                   char *id, size_t n)
{
    const char *clean, *corrupt, *target, *distractor, *name, *pairs;
    TP_CHECK(take(cli, "--clean", &clean));
    TP_CHECK(take(cli, "--corrupt", &corrupt));
    TP_CHECK(take(cli, "--pairs", &pairs));
    TP_CHECK(take(cli, "--target", &target));
    TP_CHECK(take(cli, "--distractor", &distractor));
    TP_CHECK(take(cli, "--name", &name));
    *rq = (attribute_request){.pairs_file = pairs};
    TP_CHECK(take_int(cli, "--ig-steps", 0, 1000, 0, &rq->ig_steps));
    TP_CHECK(take_int(cli, "--top", 1, 1000000, 30, &rq->top));
    TP_CHECK(take_int(cli, "--sae-features", 0, 100000, 8, &rq->sae_features));
    TP_CHECK(cli_reject_rest(cli));
    if (pairs && (clean || corrupt))
        return tp_err(TP_ERR_CONFIG, "circuits attribute: give --pairs FILE.jsonl or --clean/--corrupt, not both");
    if (!pairs && (!clean || !corrupt || !target))
        return tp_err(TP_ERR_CONFIG, "circuits attribute: --clean \"text\", --corrupt \"text\" and --target \" token\" "
                      "are required (or --pairs FILE.jsonl)");
    if (pairs) TP_CHECK(pairs_file(cx, pairs, target, distractor, pl));
    else TP_CHECK(pair_add(cx, pl, "--", clean, corrupt, target, distractor));
    rq->pairs = pl->p, rq->npairs = pl->n;
    /* the id: a hash of every pair and the settings that change the scores */
    size_t cap = 64, len = 0;
    for (int i = 0; i < pl->n; i++)
        for (int k = 0; k < 4; k++) cap += (pl->text[4 * i + k] ? strlen(pl->text[4 * i + k]) : 0) + 1;
    char *key = tp_malloc(cap);
    if (!key) return TP_ERR_NOMEM;
    for (int i = 0; i < pl->n; i++)
        for (int k = 0; k < 4; k++)
            len += (size_t)snprintf(key + len, cap - len, "%s%s", i || k ? "\x1f" : "",
                                    pl->text[4 * i + k] ? pl->text[4 * i + k] : "");
    snprintf(key + len, cap - len, "\x1f%d", rq->ig_steps);
    tp_status st = output_id("attribute", name, key, id, n);
    free(key);
    return st;
}

tp_status circuits_attribute_cmd(tp_cli *cli)
{
    circuits_settings cs;
    circuits_ctx cx = {0};
    attribute_request rq;
    pair_list pl = {0};
    char id[96];
    tp_status st = open_all(cli, &cs, &cx);
    if (st == TP_OK) st = attribute_options(cli, &cx, &rq, &pl, id, sizeof id);
    if (st == TP_OK) {
        rq.id = id;
        st = attribute_run(&cx, &rq, cli->run_dir);
    }
    pair_list_free(&pl);
    circuits_close(&cx);
    return st;
}

static tp_status discover_options(tp_cli *cli, const circuits_ctx *cx, discover_request *rq, int32_t **ids, char *id,
                                  size_t n)
{
    const char *prompt, *target, *distractor, *corruption, *name;
    TP_CHECK(take(cli, "--prompt", &prompt));
    TP_CHECK(take(cli, "--target", &target));
    TP_CHECK(take(cli, "--distractor", &distractor));
    TP_CHECK(take(cli, "--corruption", &corruption));
    TP_CHECK(take(cli, "--name", &name));
    TP_CHECK(cli_reject_rest(cli));
    if (!prompt) return tp_err(TP_ERR_CONFIG, "circuits discover: --prompt \"text\" is required");
    if (corruption && strcmp(corruption, "resample") && strcmp(corruption, "mean"))
        return tp_err(TP_ERR_CONFIG, "circuits discover: --corruption '%s': expected resample (corpus windows of the "
                      "prompt's length) or mean (node means over corpus rows)", corruption);
    *rq = (discover_request){.prompt = prompt, .target_text = target, .distractor_text = distractor, .target = -1,
                             .distractor = -1, .corruption = corruption};
    if (target) TP_CHECK(one_token(cx, "discover", "--target", target, &rq->target));
    if (distractor) TP_CHECK(one_token(cx, "discover", "--distractor", distractor, &rq->distractor));
    if (target && rq->distractor == rq->target)
        return tp_err(TP_ERR_CONFIG, "circuits discover: --target and --distractor are the same token (id %d)",
                      rq->target);
    prompt_limits lim = circuits_limits(cx, 1);
    TP_CHECK(prompts_encode(cx->tok, prompt, &lim, "circuits discover: --prompt", ids, &rq->T));
    rq->ids = *ids;
    char key[4096];
    snprintf(key, sizeof key, "%s\x1f%s\x1f%s\x1f%s", prompt, target ? target : "", distractor ? distractor : "",
             corruption ? corruption : "");
    return output_id("discover", name, key, id, n);
}

tp_status circuits_discover_cmd(tp_cli *cli)
{
    circuits_settings cs;
    circuits_ctx cx = {0};
    discover_request rq;
    int32_t *ids = NULL;
    char id[96];
    tp_status st = open_all(cli, &cs, &cx);
    if (st == TP_OK) st = discover_options(cli, &cx, &rq, &ids, id, sizeof id);
    if (st == TP_OK) {
        rq.id = id;
        st = discover_run(&cx, &rq, cli->run_dir);
    }
    free(ids);
    circuits_close(&cx);
    return st;
}
