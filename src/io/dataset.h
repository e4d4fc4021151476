/* dataset.h — the configured sample of the corpus as token sequences: what every
 * phase that runs the model over text starts from (capture, eval, later SAE
 * evaluation). Reads data.corpus, data.skip_malformed, data.num_samples, data.seed,
 * data.seq_len and data.packing; identical on every rank. */
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
void dataset_close(tp_dataset *d);

#endif
