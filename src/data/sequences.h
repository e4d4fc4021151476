/* sequences.h — corpus documents to token sequences of a given length (above model/:
 * it tokenizes).
 *
 * split: each document is tokenized and cut into pieces of at most seq_len tokens;
 *        a sequence never spans two documents (positions restart at 0 per piece).
 * pack:  documents are tokenized, joined with the EOS token after each, and cut into
 *        sequences of exactly seq_len (the tail shorter than seq_len is dropped).
 * Sequences are in document order; seq_doc names the (first) document of each.
 *
 * A document longer than max_doc_tokens (0: no limit) is cut to its first
 * max_doc_tokens tokens, so one huge document cannot make a small sample slow: its
 * text is first cut to SEQ_DOC_BYTES_PER_TOKEN * max_doc_tokens bytes (at a UTF-8
 * character boundary) so the tokenizer never sees the rest, then its tokens to
 * max_doc_tokens. A document of very long tokens may thus keep fewer. The cut
 * depends on the document alone (not on ranks or the sample), and is logged.
 */
#ifndef TP_SEQUENCES_H
#define TP_SEQUENCES_H

#include "core/error.h"
#include "io/corpus.h"
#include "model/tokenizer.h"

#include <stddef.h>
#include <stdint.h>

typedef enum { TP_PACK_SPLIT = 0, TP_PACK_PACK } tp_packing;

#define SEQ_DOC_BYTES_PER_TOKEN 16

typedef struct {
    int32_t *tokens;          /* all sequences back to back */
    size_t n_tokens;
    size_t n_seqs;
    size_t *seq_start;        /* [n_seqs + 1] offsets into tokens */
    size_t *seq_doc;          /* [n_seqs] corpus index of the sequence's first document */
    size_t n_docs;            /* documents given (including ones with no tokens) */
    size_t *doc_start;        /* [n_docs + 1] first token of each document (n_tokens past the end) */
    size_t n_cut;             /* documents cut to max_doc_tokens */
} tp_sequences;

/* Tokenizes docs[0..ndocs) of the corpus. eos_id is used by pack (and ignored by
 * split). A document that tokenizes to nothing is skipped. Errors from the corpus or
 * the tokenizer (invalid UTF-8 ...) name the document's file and line. */
tp_status sequences_build(const corpus *c, const size_t *docs, size_t ndocs, tp_tokenizer *tok,
                          int seq_len, tp_packing packing, int32_t eos_id, size_t max_doc_tokens,
                          tp_sequences *out);
void sequences_free(tp_sequences *s);
/* Appends one sequence ids[0..n) whose first document is `doc` (seq_start and seq_doc
 * grow; doc_start is left as it is: a set of prompts made elsewhere). */
tp_status sequences_append(tp_sequences *s, const int32_t *ids, size_t n, size_t doc);
static inline size_t sequences_len(const tp_sequences *s, size_t i)
{
    return s->seq_start[i + 1] - s->seq_start[i];
}

#endif
