#include "io/dataset.h"

#include <stdlib.h>
#include <string.h>

tp_status dataset_open(const tp_config *cfg, tp_tokenizer *tok, int32_t eos_id, const char *what,
                       tp_dataset *out)
{
    memset(out, 0, sizeof *out);
    tp_status st = corpus_open(tp_config_str(cfg, "data.corpus"), tp_config_bool(cfg, "data.skip_malformed"),
                               &out->corpus);
    if (st != TP_OK) return st;
    size_t want = (size_t)tp_config_int(cfg, "data.num_samples"), have = corpus_count(out->corpus);
    out->seed = (uint64_t)tp_config_int(cfg, "data.seed");
    out->seq_len = (int)tp_config_int(cfg, "data.seq_len");
    out->packing = !strcmp(tp_config_str(cfg, "data.packing"), "pack") ? TP_PACK_PACK : TP_PACK_SPLIT;
    out->docs = tp_malloc((want < have ? want : have) * sizeof *out->docs);
    if (!out->docs) st = TP_ERR_NOMEM;
    if (st == TP_OK) st = corpus_sample(out->corpus, want, out->seed, out->docs, &out->ndocs);
    if (st == TP_OK)
        st = sequences_build(out->corpus, out->docs, out->ndocs, tok, out->seq_len, out->packing, eos_id, &out->seqs);
    if (st == TP_OK && !out->seqs.n_tokens)
        st = tp_err(TP_ERR_FORMAT, "%s: the %zu sampled documents of '%s' give no tokens", what, out->ndocs,
                    tp_config_str(cfg, "data.corpus"));
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
