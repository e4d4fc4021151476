/* ablate_cmd.c — `transpolmo ablate`: the effect of ablating or steering heads, MLPs,
 * neurons or SAE features on the model's predictions, with bootstrap intervals
 * (analysis/verify/intervention.h, ablate.h). Prompts are split over the ranks;
 * rank 0 gathers the per-prompt effects and writes results/ablations/<name>.json. */
#include "cmd/ablate_cmd.h"

#include "analysis/verify/ablate.h"
#include "analysis/verify/intervention.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "data/dataset.h"
#include "dist/mpi_check.h"
#include "dist/world.h"
#include "model/model_io.h"
#include "run_layout.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *heads, *features, *mlps, *neurons, *mode, *steer, *prompts, *tokens, *token_ids, *name;
    int64_t max_prompts, stat_docs, resamples;
    uint64_t seed;
} ablate_args;

typedef struct {
    tp_sequences seqs;         /* the prompts, one sequence each */
    char source[TP_PATH_MAX];  /* the file, or the corpus */
    int64_t *docs;             /* corpus prompts: their documents (excluded from statistics) */
    size_t ndocs;
} prompt_set;

static tp_status take_int(tp_cli *cli, const char *name, int64_t dflt, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v = cli_take_value(cli, name);
    *out = dflt;
    if (!v) return TP_OK;
    char *end;
    long long x = strtoll(v, &end, 10);
    if (*end || end == v || x < lo || x > hi)
        return tp_err(TP_ERR_CONFIG, "ablate: %s expects an integer in [%lld, %lld], got '%s'", name, (long long)lo,
                      (long long)hi, v);
    *out = x;
    return TP_OK;
}

static tp_status parse_args(tp_cli *cli, ablate_args *a)
{
    *a = (ablate_args){0};
    a->heads = cli_take_value(cli, "--heads");
    a->features = cli_take_value(cli, "--features");
    a->mlps = cli_take_value(cli, "--mlp");
    a->neurons = cli_take_value(cli, "--neurons");
    a->mode = cli_take_value(cli, "--mode");
    a->steer = cli_take_value(cli, "--steer");
    a->prompts = cli_take_value(cli, "--prompts");
    a->tokens = cli_take_value(cli, "--tokens");
    a->token_ids = cli_take_value(cli, "--token-ids");
    a->name = cli_take_value(cli, "--name");
    int64_t seed;
    TP_CHECK(take_int(cli, "--max-prompts", 256, 1, 1 << 24, &a->max_prompts));
    TP_CHECK(take_int(cli, "--stat-docs", 64, 1, 1 << 24, &a->stat_docs));
    TP_CHECK(take_int(cli, "--bootstrap", 1000, 1, 1000000, &a->resamples));
    TP_CHECK(take_int(cli, "--seed", 0, 0, INT64_MAX, &seed));
    a->seed = (uint64_t)seed;
    TP_CHECK(cli_reject_rest(cli));
    if (a->steer && a->mode)
        return tp_err(TP_ERR_CONFIG, "ablate: give --mode or --steer ALPHA, not both");
    return TP_OK;
}

/* ---- prompts ------------------------------------------------------------------------- */

/* The text of one line: a .jsonl object's "text" (or "prompt"), else the line. */
static tp_status line_text(const char *path, size_t lineno, char *line, bool jsonl, json_t **holder, const char **text)
{
    *holder = NULL;
    *text = line;
    if (!jsonl) return TP_OK;
    json_error_t e;
    json_t *o = json_loads(line, 0, &e);
    json_t *t = json_is_object(o) ? json_object_get(o, "text") : NULL;
    if (!t && json_is_object(o)) t = json_object_get(o, "prompt");
    if (!json_is_string(t)) {
        json_decref(o);
        return tp_err(TP_ERR_FORMAT, "%s:%zu: expected a JSON object with a \"text\" (or \"prompt\") string", path,
                      lineno);
    }
    *holder = o;
    *text = json_string_value(t);
    return TP_OK;
}

static tp_status read_prompt_file(const char *path, tp_tokenizer *tok, int max_len, int64_t max_prompts,
                                  tp_sequences *out)
{
    FILE *f = fopen(path, "r");
    if (!f) return tp_err(TP_ERR_IO, "ablate: cannot open prompts file '%s': %s", path, strerror(errno));
    size_t n = strlen(path);
    bool jsonl = n > 6 && !strcmp(path + n - 6, ".jsonl");
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    tp_status st = TP_OK;
    while (st == TP_OK && (int64_t)out->n_seqs < max_prompts && getline(&line, &cap, f) > 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        const char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (!*p) continue;
        json_t *holder;
        const char *text;
        st = line_text(path, lineno, line, jsonl, &holder, &text);
        int32_t *ids = NULL;
        size_t k = 0;
        if (st == TP_OK) st = tokenizer_encode(tok, text, strlen(text), 0, &ids, &k);
        if (st == TP_OK && k < 2)
            st = tp_err(TP_ERR_CONFIG, "%s:%zu: the prompt has %zu token(s); 2 are needed for a loss", path, lineno, k);
        if (st == TP_OK && max_len > 0 && k > (size_t)max_len)
            st = tp_err(TP_ERR_CONFIG, "%s:%zu: the prompt has %zu tokens, more than the model's context (%d)", path,
                        lineno, k, max_len);
        if (st == TP_OK) st = sequences_append(out, ids, k, lineno);
        free(ids);
        json_decref(holder);
    }
    free(line);
    if (ferror(f) && st == TP_OK) st = tp_err(TP_ERR_IO, "ablate: reading '%s' failed", path);
    fclose(f);
    if (st == TP_OK && out->n_seqs == 0) st = tp_err(TP_ERR_CONFIG, "ablate: '%s' holds no prompt", path);
    return st;
}

/* No --prompts: the first max_prompts sequences of the run's corpus sample (data.*). */
static tp_status corpus_prompts(const tp_settings *set, tp_tokenizer *tok, int32_t eos, int64_t max_prompts,
                                prompt_set *ps)
{
    tp_dataset d = {0};
    TP_CHECK(dataset_open(&set->data, tok, eos, "ablate prompts", &d));
    tp_status st = TP_OK;
    for (size_t i = 0; st == TP_OK && i < d.seqs.n_seqs && (int64_t)ps->seqs.n_seqs < max_prompts; i++)
        if (sequences_len(&d.seqs, i) >= 2)
            st = sequences_append(&ps->seqs, d.seqs.tokens + d.seqs.seq_start[i], sequences_len(&d.seqs, i),
                               d.seqs.seq_doc[i]);
    ps->docs = st == TP_OK ? tp_malloc((ps->seqs.n_seqs + 1) * sizeof *ps->docs) : NULL;
    if (st == TP_OK && !ps->docs) st = TP_ERR_NOMEM;
    for (size_t i = 0; st == TP_OK && i < ps->seqs.n_seqs; i++) {
        size_t doc = ps->seqs.seq_doc[i];
        if (!ps->ndocs || ps->docs[ps->ndocs - 1] != (int64_t)doc) ps->docs[ps->ndocs++] = (int64_t)doc;
    }
    if (st == TP_OK) snprintf(ps->source, sizeof ps->source, "corpus %s (data.*: seed %llu)", set->data.corpus,
                              (unsigned long long)set->data.seed);
    dataset_close(&d);
    if (st == TP_OK && ps->seqs.n_seqs == 0) st = tp_err(TP_ERR_CONFIG, "ablate: the corpus sample has no sequence of 2 tokens");
    return st;
}

/* ---- chosen tokens ----------------------------------------------------------------------- */

static tp_status chosen_tokens(tp_tokenizer *tok, const tp_model_config *c, const ablate_args *a, int32_t **out, int *n)
{
    *n = 0;
    if (a->token_ids) {
        size_t k;
        TP_CHECK(model_io_parse_ids(a->token_ids, out, &k));
        *n = (int)k;
        for (int j = 0; j < *n; j++)
            if ((*out)[j] < 0 || (*out)[j] >= c->vocab_size)
                return tp_err(TP_ERR_RANGE, "ablate: --token-ids: %d is outside the vocabulary [0, %d)", (*out)[j],
                              c->vocab_size);
    }
    if (!a->tokens) return TP_OK;
    char *copy = strdup(a->tokens), *save = NULL;
    if (!copy) return TP_ERR_NOMEM;
    tp_status st = TP_OK;
    for (char *t = strtok_r(copy, "|", &save); t && st == TP_OK; t = strtok_r(NULL, "|", &save)) {
        int32_t *ids = NULL;
        size_t k = 0;
        st = tokenizer_encode(tok, t, strlen(t), 0, &ids, &k);
        if (st == TP_OK && k != 1) {
            char shown[256] = "";
            for (size_t i = 0; i < k && strlen(shown) < 200; i++)
                snprintf(shown + strlen(shown), sizeof shown - strlen(shown), "%s%d", i ? "," : "", ids[i]);
            st = tp_err(TP_ERR_CONFIG, "ablate: --tokens: '%s' is %zu tokens (%s), not one; give one token or --token-ids",
                        t, k, shown);
        }
        int32_t *grown = st == TP_OK ? realloc(*out, (size_t)(*n + 1) * sizeof *grown) : NULL;
        if (st == TP_OK && !grown) st = TP_ERR_NOMEM;
        if (st == TP_OK) *out = grown, (*out)[(*n)++] = ids[0];
        free(ids);
    }
    free(copy);
    return st;
}

/* ---- statistics, the run, the gather ---------------------------------------------- */

static tp_status sae_dir_of(char *buf, size_t n, const char *hook, void *user)
{
    return run_sae_dir(buf, n, (const char *)user, hook);
}

/* Mean/resample statistics on corpus documents that are not prompts. */
static tp_status collect_statistics(const tp_settings *set, const tp_model *m, tp_tokenizer *tok, iv_set *s,
                                    const prompt_set *ps, const ablate_args *a)
{
    tp_dataset d = {0};
    tp_forward *f = NULL;
    tp_status st = dataset_open_heldout(&set->data, tok, m->cfg.eos_token_id, "ablate statistics", ps->docs, ps->ndocs,
                                        (size_t)a->stat_docs, a->seed, &d);
    if (st == TP_OK) st = forward_new(m, set->batch_size, d.seq_len, &f);
    if (st == TP_OK) {
        tp_log_info("ablate: statistics over %zu corpus documents (%zu sequences), none of them a prompt", d.ndocs,
                    d.seqs.n_seqs);
        st = iv_collect_statistics(s, f, &d.seqs, set->batch_size, a->seed);
    }
    forward_free(f);
    dataset_close(&d);
    return st;
}

/* ---- the JSON ----------------------------------------------------------------------- */

static json_t *ci_json(const double *rows, size_t n, int width, int col, const ablate_args *a)
{
    return ablate_ci_json(rows, n, width, col, (int)a->resamples, a->seed + (uint64_t)col);
}

static json_t *chosen_json(tp_tokenizer *tok, const double *rows, size_t n, int width, const int32_t *chosen,
                           int nchosen, const ablate_args *a)
{
    json_t *arr = json_array();
    for (int j = 0; j < nchosen; j++) {
        char *text = NULL;
        size_t len;
        if (tokenizer_decode(tok, &chosen[j], 1, 0, &text, &len) != TP_OK) text = NULL;
        json_array_append_new(arr, json_pack("{s:i, s:s, s:o, s:o}", "id", chosen[j], "text", text ? text : "",
                                             "delta_logit", ci_json(rows, n, width, ABLATE_BASE_COLS + j, a),
                                             "delta_logprob",
                                             ci_json(rows, n, width, ABLATE_BASE_COLS + nchosen + j, a)));
        free(text);
    }
    return arr;
}

static json_t *result_json(const tp_cli *cli, iv_set *s, const prompt_set *ps, tp_tokenizer *tok, const double *rows,
                           const int32_t *chosen, int nchosen, const ablate_args *a)
{
    size_t n = ps->seqs.n_seqs;
    int w = ablate_row_width(nchosen);
    json_t *per = json_array();
    for (size_t i = 0; i < n; i++) {
        const double *r = rows + i * (size_t)w;
        json_array_append_new(per, json_pack("{s:I, s:I, s:f, s:f, s:f}", "prompt", (json_int_t)i, "tokens",
                                             (json_int_t)r[ABLATE_TOKENS], "ce_clean", r[ABLATE_CE_CLEAN],
                                             "ce_intervened", r[ABLATE_CE_INTERVENED], "kl", r[ABLATE_KL]));
    }
    json_t *metrics = json_pack("{s:o, s:o, s:o, s:o, s:o}", "ce_clean", ci_json(rows, n, w, ABLATE_CE_CLEAN, a),
                                "ce_intervened", ci_json(rows, n, w, ABLATE_CE_INTERVENED, a), "delta_ce",
                                ci_json(rows, n, w, ABLATE_DELTA_CE, a), "kl_clean_intervened",
                                ci_json(rows, n, w, ABLATE_KL, a), "chosen_tokens",
                                chosen_json(tok, rows, n, w, chosen, nchosen, a));
    return json_pack("{s:s, s:{s:s, s:I, s:I}, s:o, s:o, s:{s:I, s:f, s:I, s:s}, s:{s:s, s:s, s:s, s:s}, s:o}",
                     "model", cli->set.model.dir, "prompts", "source", ps->source, "count", (json_int_t)n, "tokens",
                     (json_int_t)ps->seqs.n_tokens, "intervention", iv_describe(s), "metrics", metrics, "bootstrap",
                     "resamples", (json_int_t)a->resamples, "level", 0.95, "seed", (json_int_t)a->seed, "unit",
                     "prompt (percentile bootstrap of the mean over prompts)", "definitions", "ce",
                     "mean next-token cross-entropy (nats) over the prompt's predicted positions", "delta_ce",
                     "ce_intervened - ce_clean per prompt", "kl_clean_intervened",
                     "KL(softmax clean || softmax intervened) per position, averaged over every position of the prompt",
                     "delta_logit", "intervened - clean logit of the token at the prompt's last position",
                     "per_prompt", per);
}

/* results/ablations/<name>.json: --name, or the targets and mode. */
static tp_status output_path(const tp_cli *cli, const ablate_args *a, char *path, size_t n)
{
    char name[160];
    if (a->name) snprintf(name, sizeof name, "%s", a->name);
    else
        snprintf(name, sizeof name, "%s%s%s%s%s%s%s%s_%s", a->heads ? "heads_" : "", a->heads ? a->heads : "",
                 a->mlps ? "_mlp_" : "", a->mlps ? a->mlps : "", a->neurons ? "_neurons_" : "",
                 a->neurons ? a->neurons : "", a->features ? "_features_" : "", a->features ? a->features : "",
                 a->steer ? "steer" : a->mode ? a->mode : "zero");
    for (char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-') *p = '_';
    char rel[256];
    snprintf(rel, sizeof rel, "%s/%s.json", RUN_ABLATIONS_DIR, name[0] == '_' ? name + 1 : name);
    return run_path(path, n, cli->run_dir, rel);
}

/* ---- the command ----------------------------------------------------------------------- */

static tp_status write_result(const tp_cli *cli, iv_set *s, const prompt_set *ps, tp_tokenizer *tok, const double *rows,
                              const int32_t *chosen, int nchosen, const ablate_args *a)
{
    char path[TP_PATH_MAX];
    TP_CHECK(output_path(cli, a, path, sizeof path));
    json_t *doc = result_json(cli, s, ps, tok, rows, chosen, nchosen, a);
    if (!doc) return tp_err(TP_ERR_NOMEM, "ablate: building %s failed", path);
    tp_status st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, doc);
    if (st == TP_OK) {
        json_t *d = json_object_get(json_object_get(doc, "metrics"), "delta_ce");
        printf("delta CE %+.4f nats [%+.4f, %+.4f] (95%% CI over %zu prompts), KL %.4f -> %s\n",
               json_real_value(json_object_get(d, "mean")), json_real_value(json_object_get(d, "ci95_low")),
               json_real_value(json_object_get(d, "ci95_high")), ps->seqs.n_seqs,
               json_real_value(json_object_get(json_object_get(json_object_get(doc, "metrics"), "kl_clean_intervened"),
                                               "mean")),
               path);
    }
    json_decref(doc);
    return st;
}

static tp_status open_interventions(const tp_cli *cli, const tp_model *m, const ablate_args *a, iv_set **s)
{
    iv_target *t = NULL;
    int n = 0;
    iv_mode mode = IV_ZERO;
    double alpha = 0;
    tp_status st = a->mode ? iv_mode_parse(a->mode, &mode) : TP_OK;
    if (st == TP_OK && a->steer) {
        char *end;
        alpha = strtod(a->steer, &end);
        mode = IV_STEER;
        if (*end || end == a->steer) st = tp_err(TP_ERR_CONFIG, "ablate: --steer expects a number, got '%s'", a->steer);
    }
    if (st == TP_OK) st = iv_parse(&m->cfg, a->heads, a->features, a->mlps, a->neurons, &t, &n);
    if (st == TP_OK) st = iv_new(m, t, n, mode, alpha, sae_dir_of, (void *)cli->run_dir, s);
    free(t);
    return st;
}

tp_status ablate_cmd_run(tp_cli *cli)
{
    ablate_args a;
    TP_CHECK(parse_args(cli, &a));
    const tp_settings *set = &cli->set;
    tp_model *m = NULL;
    tp_tokenizer *tok = NULL;
    iv_set *s = NULL;
    prompt_set ps = {0};
    int32_t *chosen = NULL;
    int nchosen = 0;
    double *rows = NULL;
    tp_status st = model_io_open(&set->model, &m, &tok);
    if (st == TP_OK) st = open_interventions(cli, m, &a, &s);
    if (st == TP_OK) st = chosen_tokens(tok, &m->cfg, &a, &chosen, &nchosen);
    if (st == TP_OK && a.prompts) {
        snprintf(ps.source, sizeof ps.source, "%s", a.prompts);
        st = read_prompt_file(a.prompts, tok, m->cfg.max_position_embeddings, a.max_prompts, &ps.seqs);
    } else if (st == TP_OK) {
        st = corpus_prompts(set, tok, m->cfg.eos_token_id, a.max_prompts, &ps);
    }
    if (st == TP_OK && iv_needs_statistics(s)) st = collect_statistics(set, m, tok, s, &ps, &a);
    if (st == TP_OK) {
        tp_log_info("ablate: %zu prompts (%s), %d rank(s)", ps.seqs.n_seqs, ps.source, dist_size());
        st = ablate_prompts_shared(m, s, &ps.seqs, chosen, nchosen, true, &rows);
    }
    if (st == TP_OK && dist_rank() == 0) st = write_result(cli, s, &ps, tok, rows, chosen, nchosen, &a);
    free(rows), free(chosen), free(ps.docs);
    sequences_free(&ps.seqs);
    iv_free(s);
    tokenizer_free(tok);
    model_close(m);
    return st;
}
