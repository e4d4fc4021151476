#include "data/dataset.h"

#include "core/rng.h"

#include <stdlib.h>
#include <string.h>

/* The corpus and how it is cut: shared by every sample of it. */
static tp_status dataset_open_corpus(const tp_data_spec *spec, tp_dataset *out)
{
    memset(out, 0, sizeof *out);
    tp_status st = corpus_open(spec->corpus, spec->skip_malformed, &out->corpus);
    if (st != TP_OK) return st;
    out->seq_len = spec->seq_len;
    out->packing = spec->packing;
    return TP_OK;
}

/* out->docs[0..ndocs) chosen: their token sequences. */
static tp_status dataset_build(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const char *what,
                               tp_dataset *out)
{
    if (out->packing == TP_PACK_PACK && eos_id < 0)
        return tp_err(TP_ERR_CONFIG, "%s: data.packing 'pack' joins documents with the EOS token, but the model's "
                      "config.json has no eos_token_id (use data.packing: split)", what);
    TP_CHECK(sequences_build(out->corpus, out->docs, out->ndocs, tok, out->seq_len, out->packing, eos_id,
                             spec->max_doc_tokens > 0 ? (size_t)spec->max_doc_tokens : 0, &out->seqs));
    if (!out->seqs.n_tokens)
        return tp_err(TP_ERR_FORMAT, "%s: the %zu sampled documents of '%s' give no tokens", what, out->ndocs,
                      spec->corpus);
    return TP_OK;
}

tp_status dataset_open(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const char *what,
                       tp_dataset *out)
{
    tp_status st = dataset_open_corpus(spec, out);
    if (st != TP_OK) return st;
    size_t want = (size_t)spec->num_samples, have = corpus_count(out->corpus);
    out->seed = spec->seed;
    out->docs = tp_malloc((want < have ? want : have) * sizeof *out->docs);
    if (!out->docs) st = TP_ERR_NOMEM;
    if (st == TP_OK) st = corpus_sample(out->corpus, want, out->seed, out->docs, &out->ndocs);
    if (st == TP_OK) st = dataset_build(spec, tok, eos_id, what, out);
    if (st != TP_OK) dataset_close(out);
    return st;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

tp_status dataset_open_heldout(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const char *what,
                               const int64_t *exclude, size_t n_exclude, size_t num_docs, uint64_t seed,
                               tp_dataset *out)
{
    tp_status st = dataset_open_corpus(spec, out);
    if (st != TP_OK) return st;
    out->seed = seed;
    const size_t D = corpus_count(out->corpus);
    /* The candidates: every document not excluded, in corpus order. */
    unsigned char *gone = tp_calloc(D ? D : 1, 1);
    size_t *cand = NULL, M = 0;
    if (!gone) st = TP_ERR_NOMEM;
    for (size_t i = 0; st == TP_OK && i < n_exclude; i++) {
        if (exclude[i] < 0 || (uint64_t)exclude[i] >= D)
            st = tp_err(TP_ERR_FORMAT,
                        "%s: excluded document %lld is outside the corpus '%s' (%zu documents): "
                        "was the sample drawn from another corpus?",
                        what, (long long)exclude[i], spec->corpus, D);
        else
            gone[exclude[i]] = 1;
    }
    if (st == TP_OK && !(cand = tp_malloc((D ? D : 1) * sizeof *cand))) st = TP_ERR_NOMEM;
    if (st == TP_OK) {
        for (size_t i = 0; i < D; i++)
            if (!gone[i]) cand[M++] = i;
        if (!M)
            st = tp_err(TP_ERR_FORMAT, "%s: no document of '%s' is left outside the %zu excluded ones", what,
                        spec->corpus, n_exclude);
    }
    if (st == TP_OK) {
        /* Partial Fisher-Yates: cand[0..n) becomes a uniform sample of n candidates.
         * The modulo bias (M / 2^64) is negligible. A constant distinct from
         * corpus_sample's keeps the two streams apart for equal seeds. */
        size_t n = num_docs < M ? num_docs : M;
        uint64_t s = seed ^ 0x68656C646F757421ull;   /* "heldout!" */
        for (size_t j = 0; j < n; j++) {
            size_t k = j + (size_t)(tp_splitmix64(&s) % (uint64_t)(M - j));
            size_t t = cand[j];
            cand[j] = cand[k], cand[k] = t;
        }
        qsort(cand, n, sizeof *cand, cmp_size);
        out->docs = cand, out->ndocs = n, cand = NULL;
        st = dataset_build(spec, tok, eos_id, what, out);
    }
    free(gone);
    free(cand);
    if (st != TP_OK) dataset_close(out);
    return st;
}

tp_status dataset_open_list(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const char *what,
                            const int64_t *docs, size_t n, tp_dataset *out)
{
    tp_status st = dataset_open_corpus(spec, out);
    if (st != TP_OK) return st;
    out->docs = tp_malloc((n ? n : 1) * sizeof *out->docs);
    if (!out->docs) st = TP_ERR_NOMEM;
    for (size_t i = 0; st == TP_OK && i < n; i++) {
        if (docs[i] < 0 || (size_t)docs[i] >= corpus_count(out->corpus))
            st = tp_err(TP_ERR_FORMAT, "%s: document %lld is outside the corpus '%s' (%zu documents): was the store "
                        "made from another corpus?", what, (long long)docs[i], spec->corpus, corpus_count(out->corpus));
        else
            out->docs[i] = (size_t)docs[i];
    }
    if (st == TP_OK) {
        qsort(out->docs, n, sizeof *out->docs, cmp_size);
        out->ndocs = n;
        if (!n) st = tp_err(TP_ERR_RANGE, "%s: no documents given", what);
    }
    if (st == TP_OK) st = dataset_build(spec, tok, eos_id, what, out);
    if (st != TP_OK) dataset_close(out);
    return st;
}

void dataset_close(tp_dataset *d)
{
    sequences_free(&d->seqs);
    free(d->docs);
    corpus_close(d->corpus);
    memset(d, 0, sizeof *d);
}

void dataset_free_domains(char **names, int n)
{
    for (int i = 0; names && i < n; i++) free(names[i]);
    free(names);
}

static int find_name(char *const *names, int n, const char *name)
{
    for (int k = 0; k < n; k++)
        if (!strcmp(names[k], name)) return k;
    return -1;
}

tp_status dataset_domains(const tp_dataset *d, int32_t *doc_domain, char ***names, int *n_names)
{
    char **list = NULL;
    int n = 0, cap = 0;
    tp_status st = TP_OK;
    for (size_t i = 0; st == TP_OK && i < d->ndocs; i++) {
        corpus_doc doc;
        if ((st = corpus_read(d->corpus, d->docs[i], &doc)) != TP_OK) break;
        const char *name = doc.domain[0] ? doc.domain : "(none)";
        int k = find_name(list, n, name);
        if (k < 0) {
            if (n == cap) {
                char **g = realloc(list, (size_t)(cap ? 2 * cap : 8) * sizeof *g);
                if (!g) st = tp_err(TP_ERR_NOMEM, "out of memory for the corpus' domain names");
                else list = g, cap = cap ? 2 * cap : 8;
            }
            if (st == TP_OK && !(list[n] = strdup(name))) st = tp_err(TP_ERR_NOMEM, "out of memory");
            if (st == TP_OK) k = n++;
        }
        doc_domain[i] = k;
        corpus_doc_free(&doc);
    }
    if (st != TP_OK) { dataset_free_domains(list, n); return st; }
    *names = list, *n_names = n;
    return TP_OK;
}
