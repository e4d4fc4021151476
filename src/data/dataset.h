/* dataset.h — a sample of the corpus as token sequences: what every phase that runs
 * the model over text starts from (capture, eval, SAE evaluation). The sample is
 * described by a tp_data_spec (the config's data.* section, read by the caller);
 * identical on every rank.
 *
 * dataset_open_heldout() draws a different sample from the same corpus, cut the same
 * way (seq_len, packing): documents NOT in a given list (the documents an earlier
 * phase used, e.g. a store's /doc_index), for evaluation on held-out text.
 * Lives above model/ and io/: it reads the corpus and tokenizes. */
#ifndef TP_DATASET_H
#define TP_DATASET_H

#include "io/corpus.h"
#include "data/sequences.h"
#include "model/tokenizer.h"

/* Which documents, and how they are cut (data.* keys). */
typedef struct {
    const char *corpus;        /* file or directory (io/corpus.h) */
    bool skip_malformed;       /* skip (and count) malformed corpus lines */
    int64_t num_samples;       /* documents to draw (dataset_open) */
    uint64_t seed;             /* seed of the draw (dataset_open) */
    int seq_len;
    tp_packing packing;
    int64_t max_doc_tokens;    /* a longer document is cut (data/sequences.h); 0: no limit */
} tp_data_spec;

typedef struct {
    corpus *corpus;
    size_t *docs;          /* sampled corpus indices, increasing */
    size_t ndocs;
    tp_sequences seqs;
    int seq_len;
    tp_packing packing;
    uint64_t seed;
} tp_dataset;

/* eos_id joins documents under `pack` (< 0, none: pack is refused). An empty result
 * is an error naming `what`. */
tp_status dataset_open(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const char *what,
                       tp_dataset *out);
/* num_docs documents drawn uniformly without replacement, by `seed`, from the corpus
 * documents not in exclude[0..n_exclude) (corpus indices; order and duplicates do not
 * matter), in increasing order; all of them if fewer remain. Uses spec's corpus,
 * skip_malformed, seq_len and packing (not num_samples nor seed); out->seed = seed. The same (corpus, exclusion set, num_docs, seed) gives
 * the same sample everywhere. An exclude index outside the corpus (the list comes
 * from another corpus) is TP_ERR_FORMAT; no document left, or no tokens, an error
 * naming `what`. */
tp_status dataset_open_heldout(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const char *what,
                               const int64_t *exclude, size_t n_exclude, size_t num_docs, uint64_t seed,
                               tp_dataset *out);
/* The given documents (corpus indices, any order, no repeats) cut as spec says:
 * the text of documents chosen elsewhere (held-out documents of a store). */
tp_status dataset_open_list(const tp_data_spec *spec, tp_tokenizer *tok, int32_t eos_id, const char *what,
                            const int64_t *docs, size_t n, tp_dataset *out);
void dataset_close(tp_dataset *d);

/* Domains of the sample: doc_domain[i] (caller's [ndocs]) is the domain of the
 * sampled document docs[i], an index into *names (malloc'd, free with
 * dataset_free_domains; in order of first appearance; "(none)" for a document
 * without one). Reads every sampled document's record once. */
tp_status dataset_domains(const tp_dataset *d, int32_t *doc_domain, char ***names, int *n_names);
void dataset_free_domains(char **names, int n);

#endif
