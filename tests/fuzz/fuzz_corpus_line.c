/* fuzz_corpus_line — a JSONL corpus file (corpus_open, strict and skipping malformed
 * lines), every document read back, the corpus hash; and the UTF-8 check on the raw
 * bytes. */
#include "fuzz.h"
#include "io/corpus.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)utf8_first_invalid((const char *)data, size);
    const char *path = fuzz_write_file("corpus.jsonl", data, size);
    for (int skip = 0; skip < 2; skip++) {
        corpus *c = NULL;
        if (corpus_open(path, skip, &c) != TP_OK) continue;
        for (size_t i = 0; i < corpus_count(c); i++) {
            corpus_doc doc = {0};
            if (corpus_read(c, i, &doc) == TP_OK) {
                if (strlen(doc.text) > doc.len || utf8_first_invalid(doc.text, doc.len) >= 0) abort();
                corpus_doc_free(&doc);
            }
            char where[256];
            (void)corpus_where(c, i, where, sizeof where);
        }
        uint64_t h;
        (void)corpus_hash(c, &h);
        size_t idx[4], got = 0;
        (void)corpus_sample(c, 4, 1, idx, &got);
        corpus_close(c);
    }
    tp_err_clear();
    return 0;
}
