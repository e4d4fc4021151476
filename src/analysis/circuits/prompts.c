/* prompts.c — prompts from the command line, a file, the held-out corpus, or
 * synthetic repeated sequences (prompts.h). */
#include "analysis/circuits/prompts.h"

#include "core/log.h"
#include "core/rng.h"
#include "core/sample.h"
#include "io/corpus.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tp_status push(prompt_set *ps, int32_t *ids, int n, const char *source, int synthetic_len)
{
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 16;
        circuit_prompt *p = realloc(ps->p, (size_t)cap * sizeof *p);
        if (!p) {
            free(ids);
            return tp_err(TP_ERR_NOMEM, "circuits: out of memory for %d prompts", cap);
        }
        ps->p = p, ps->cap = cap;
    }
    circuit_prompt *q = &ps->p[ps->n++];
    memset(q, 0, sizeof *q);
    q->ids = ids, q->n = n, q->synthetic_len = synthetic_len;
    snprintf(q->source, sizeof q->source, "%s", source);
    if (n > ps->max_len) ps->max_len = n;
    return TP_OK;
}

/* ids (malloc'd) = [bos] + tokens, checked against the limits. */
static tp_status with_bos(const int32_t *tok_ids, size_t n, const prompt_limits *lim, const char *what, int32_t **ids,
                          int *len)
{
    size_t total = n + (lim->bos >= 0);
    if (n < (size_t)lim->min_tokens)
        return tp_err(TP_ERR_CONFIG, "%s: the prompt has %zu token(s); at least %d needed", what, n, lim->min_tokens);
    if (total > (size_t)lim->context)
        return tp_err(TP_ERR_CONFIG, "%s: the prompt has %zu tokens%s, more than the model's context of %d", what,
                      total, lim->bos >= 0 ? " with BOS" : "", lim->context);
    int32_t *out = tp_malloc(total * sizeof *out);
    if (!out) return TP_ERR_NOMEM;
    size_t o = 0;
    if (lim->bos >= 0) out[o++] = lim->bos;
    memcpy(out + o, tok_ids, n * sizeof *out);
    *ids = out, *len = (int)total;
    return TP_OK;
}

tp_status prompts_encode(tp_tokenizer *tok, const char *text, const prompt_limits *lim, const char *what,
                         int32_t **ids, int *n)
{
    int32_t *raw = NULL;
    size_t nraw = 0;
    tp_status st = tokenizer_encode(tok, text, strlen(text), 0, &raw, &nraw);
    if (st != TP_OK) {
        tp_err_prefix("%s", what);
        return st == TP_ERR_NOMEM ? st : TP_ERR_CONFIG;
    }
    st = with_bos(raw, nraw, lim, what, ids, n);
    free(raw);
    return st;
}

/* The prompt of one line of a .jsonl file: its "text" string. */
static tp_status jsonl_text(const char *line, const char *where, json_t **doc, const char **text)
{
    json_error_t e;
    *doc = json_loads(line, 0, &e);
    if (!*doc) return tp_err(TP_ERR_CONFIG, "%s: not JSON (%s)", where, e.text);
    json_t *t = json_object_get(*doc, "text");
    if (!json_is_string(t))
        return tp_err(TP_ERR_CONFIG, "%s: expected an object with a string \"text\" (the prompt)", where);
    *text = json_string_value(t);
    return TP_OK;
}

static tp_status add_line(prompt_set *ps, tp_tokenizer *tok, char *line, int jsonl, const char *where,
                          const prompt_limits *lim)
{
    json_t *doc = NULL;
    const char *text = line;
    tp_status st = jsonl ? jsonl_text(line, where, &doc, &text) : TP_OK;
    int32_t *ids = NULL;
    int n = 0;
    if (st == TP_OK) st = prompts_encode(tok, text, lim, where, &ids, &n);
    if (st == TP_OK) st = push(ps, ids, n, where, 0);
    json_decref(doc);
    return st;
}

tp_status prompts_add_file(prompt_set *ps, tp_tokenizer *tok, const char *path, const prompt_limits *lim)
{
    size_t len = strlen(path);
    int jsonl = len > 6 && !strcmp(path + len - 6, ".jsonl");
    if (!jsonl && !(len > 4 && !strcmp(path + len - 4, ".txt")))
        return tp_err(TP_ERR_CONFIG, "%s: a prompts file is .txt (one prompt per line) or .jsonl (one {\"text\": ...} "
                      "per line)", path);
    FILE *f = fopen(path, "r");
    if (!f) return tp_err(TP_ERR_CONFIG, "%s: cannot open the prompts file", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0, before = ps->n;
    tp_status st = TP_OK;
    while (st == TP_OK && (got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
        if ((size_t)got != strlen(line)) {
            st = tp_err(TP_ERR_CONFIG, "%s:%d: a NUL byte in the line", path, lineno);
            break;
        }
        if (strspn(line, " \t") == (size_t)got) continue;
        char where[160];
        snprintf(where, sizeof where, "%.140s:%d", path, lineno);
        st = add_line(ps, tok, line, jsonl, where, lim);
    }
    if (st == TP_OK && ferror(f)) st = tp_err(TP_ERR_IO, "%s: read error", path);
    free(line);
    fclose(f);
    if (st == TP_OK && ps->n == before) st = tp_err(TP_ERR_CONFIG, "%s: the prompts file has no prompts", path);
    return st;
}

/* The corpus indices of the run's sample (what the held-out documents avoid). */
static tp_status run_sample(const tp_data_spec *spec, int64_t **docs, size_t *n, size_t *corpus_docs)
{
    corpus *c = NULL;
    TP_CHECK(corpus_open(spec->corpus, spec->skip_malformed, &c));
    size_t want = (size_t)spec->num_samples, have = corpus_count(c), k = want < have ? want : have;
    *corpus_docs = have;
    size_t *idx = tp_malloc((k ? k : 1) * sizeof *idx);
    *docs = tp_malloc((k ? k : 1) * sizeof **docs);
    tp_status st = idx && *docs ? corpus_sample(c, want, spec->seed, idx, n) : TP_ERR_NOMEM;
    for (size_t i = 0; st == TP_OK && i < *n; i++) (*docs)[i] = (int64_t)idx[i];
    free(idx);
    corpus_close(c);
    return st;
}

tp_status prompts_add_heldout(prompt_set *ps, tp_tokenizer *tok, const tp_data_spec *spec, int32_t eos, int64_t docs,
                              uint64_t seed, const prompt_limits *lim)
{
    int64_t *exclude = NULL;
    size_t nex = 0, ndocs = 0;
    tp_dataset ds = {0};
    tp_status st = run_sample(spec, &exclude, &nex, &ndocs);
    if (st == TP_OK && nex >= ndocs) {
        /* the run's sample is the whole corpus: nothing is held out */
        tp_log_warn("circuits heads: data.num_samples = %lld takes every document of %s: no held-out document "
                    "to use as a prompt", (long long)spec->num_samples, spec->corpus);
        free(exclude);
        return TP_OK;
    }
    if (st == TP_OK)
        st = dataset_open_heldout(spec, tok, eos, "circuits heads (held-out documents)", exclude, nex, (size_t)docs,
                                  seed, &ds);
    const tp_sequences *s = &ds.seqs;
    size_t last_doc = (size_t)-1;
    for (size_t i = 0; st == TP_OK && i < s->n_seqs; i++) {
        /* one prompt per document: its first sequence with at least the tokens asked */
        size_t n = sequences_len(s, i);
        if (s->seq_doc[i] == last_doc || n < (size_t)lim->min_tokens) continue;
        last_doc = s->seq_doc[i];
        char where[160], src[180];
        corpus_where(ds.corpus, s->seq_doc[i], where, sizeof where);
        snprintf(src, sizeof src, "corpus %s", where);
        int32_t *ids = NULL;
        int len = 0;
        st = with_bos(s->tokens + s->seq_start[i], n, lim, src, &ids, &len);
        if (st == TP_OK) st = push(ps, ids, len, src, 0);
    }
    dataset_close(&ds);
    free(exclude);
    return st;
}

tp_status prompts_add_synthetic(prompt_set *ps, tp_tokenizer *tok, int count, int L, int vocab, uint64_t seed,
                                const prompt_limits *lim)
{
    if (count == 0) return TP_OK;
    if (lim->bos < 0) return tp_err(TP_ERR_INTERNAL, "synthetic prompts need a BOS token");
    if (2 * L + 1 > lim->context)
        return tp_err(TP_ERR_CONFIG, "circuits.heads.synthetic_len = %d: a synthetic prompt has %d tokens, more than "
                      "the model's context of %d", L, 2 * L + 1, lim->context);
    int32_t top = tokenizer_vocab_size(tok) < vocab ? tokenizer_vocab_size(tok) : vocab;
    uint64_t state = seed ^ 0x73796E7468657469ull;   /* "synthetic" */
    for (int k = 0; k < count; k++) {
        int32_t *ids = tp_malloc((size_t)(2 * L + 1) * sizeof *ids);
        if (!ids) return TP_ERR_NOMEM;
        ids[0] = lim->bos;
        for (int i = 1; i <= L; i++) {
            int32_t r;
            do r = (int32_t)tp_rng_below(&state, (uint64_t)top);
            while (tokenizer_is_special(tok, r) || !tokenizer_id_to_token(tok, r));
            ids[i] = ids[i + L] = r;
        }
        char src[32];
        snprintf(src, sizeof src, "synthetic %d", k);
        TP_CHECK(push(ps, ids, 2 * L + 1, src, L));
    }
    return TP_OK;
}

tp_status prompts_add_ids(prompt_set *ps, const int32_t *ids, int n, const char *source, int synthetic_len)
{
    int32_t *copy = tp_malloc((size_t)(n > 0 ? n : 1) * sizeof *copy);
    if (!copy) return TP_ERR_NOMEM;
    memcpy(copy, ids, (size_t)n * sizeof *copy);
    return push(ps, copy, n, source, synthetic_len);
}

void prompt_set_free(prompt_set *ps)
{
    for (int i = 0; ps->p && i < ps->n; i++) free(ps->p[i].ids);
    free(ps->p);
    memset(ps, 0, sizeof *ps);
}
