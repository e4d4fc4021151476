/* dataset.h — the configured sample of the corpus as token sequences: what every
 * phase that runs the model over text starts from (capture, eval, later SAE
 * evaluation). Reads data.corpus, data.skip_malformed, data.num_samples, data.seed,
 * data.seq_len and data.packing; identical on every rank.
 *
 * dataset_open_heldout() draws a different sample from the same corpus, cut the same
 * way (data.seq_len, data.packing): documents NOT in a given list (the documents an
 * earlier phase used, e.g. a store's /doc_index), for evaluation on held-out text. */
#ifndef TP_DATASET_H
#define TP_DATASET_H

#include "core/config.h"
#include "io/corpus.h"
#include "io/sequences.h"
#include "model/tokenizer.h"

typedef struct {
    corpus *corpus;
    size_t *docs;          /* sampled corpus indices, increasing */
    size_t ndocs;
    tp_sequences seqs;
    int seq_len;
    tp_packing packing;
    uint64_t seed;
} tp_dataset;

/* eos_id joins documents under `pack`. An empty result is an error naming `what`. */
tp_status dataset_open(const tp_config *cfg, tp_tokenizer *tok, int32_t eos_id, const char *what,
                       tp_dataset *out);
/* num_docs documents drawn uniformly without replacement, by `seed`, from the corpus
 * documents not in exclude[0..n_exclude) (corpus indices; order and duplicates do not
 * matter), in increasing order; all of them if fewer remain. Reads data.corpus,
 * data.skip_malformed, data.seq_len and data.packing (not data.num_samples nor
 * data.seed); out->seed = seed. The same (corpus, exclusion set, num_docs, seed) gives
 * the same sample everywhere. An exclude index outside the corpus (the list comes
 * from another corpus) is TP_ERR_FORMAT; no document left, or no tokens, an error
 * naming `what`. */
tp_status dataset_open_heldout(const tp_config *cfg, tp_tokenizer *tok, int32_t eos_id, const char *what,
                               const int64_t *exclude, size_t n_exclude, size_t num_docs, uint64_t seed,
                               tp_dataset *out);
void dataset_close(tp_dataset *d);

#endif
