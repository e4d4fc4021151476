/* tokenizer.h — Hugging Face `tokenizer.json` byte-level BPE, encode and decode.
 *
 * What a file may hold (anything else is refused by name, TP_ERR_UNSUPPORTED):
 *   model          BPE: vocab, merges as "a b" strings or [a, b] pairs, ignore_merges,
 *                  unk_token/fuse_unk; byte_fallback false, no dropout, no subword
 *                  prefix/suffix
 *   normalizer     null
 *   pre_tokenizer  ByteLevel (add_prefix_space, use_regex), or a Sequence of Split
 *                  (Regex or String pattern, behaviour Removed or Isolated, invert)
 *                  ending in one ByteLevel — OLMo-2's dolma2 is Split(cl100k regex,
 *                  Removed, invert) + ByteLevel(use_regex false)
 *   post_processor null, ByteLevel (no effect on ids), TemplateProcessing (single)
 *   decoder        ByteLevel
 *   added_tokens   special and normal, matched on the raw text before the
 *                  pre-tokenizer (longest match first), with lstrip/rstrip/single_word
 * Split regexes run on PCRE2 (UTF + UCP, JIT); `tokenizers` runs them on Oniguruma.
 * tests/unit/test_tokenizer.c checks id equality with `tokenizers` on every golden
 * case under tests/data/tokenizers (docs/tokenizer.md).
 *
 * Encoding keeps a cache of pieces already merged, so calls on one tokenizer must not
 * run concurrently; load one per thread. Arrays returned are the caller's (free()).
 */
#ifndef TP_TOKENIZER_H
#define TP_TOKENIZER_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tp_tokenizer tp_tokenizer;

enum {
    /* Apply the post-processor's template (BOS/EOS), as tokenizers' add_special_tokens. */
    TOKENIZER_ADD_SPECIAL = 1u << 0,
    /* Replace invalid UTF-8 by U+FFFD (maximal subparts, as Python's errors="replace"
     * and Rust's from_utf8_lossy) instead of failing with the byte offset. */
    TOKENIZER_REPLACE_INVALID = 1u << 1,
    /* Decode: leave out added tokens marked special. */
    TOKENIZER_SKIP_SPECIAL = 1u << 2,
};

/* Reads a tokenizer.json; errors name the file and what in it is wrong or unsupported. */
tp_status tokenizer_load(const char *path, tp_tokenizer **out);
void tokenizer_free(tp_tokenizer *tok);

/* Text (UTF-8, `len` bytes, NULs allowed) -> *ids (malloc'd, *n of them). */
tp_status tokenizer_encode(tp_tokenizer *tok, const char *text, size_t len, unsigned flags,
                           int32_t **ids, size_t *n);
/* Ids -> *text (malloc'd, NUL-terminated, *len bytes without the NUL). Invalid UTF-8
 * that token bytes form is replaced by U+FFFD as `tokenizers` does; an id outside the
 * vocabulary is TP_ERR_RANGE naming its index. */
tp_status tokenizer_decode(const tp_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                           char **text, size_t *len);

/* Largest id + 1 (model vocabulary and added tokens; ids in between may be unused). */
int32_t tokenizer_vocab_size(const tp_tokenizer *tok);
/* The token's string as written in tokenizer.json (byte-level alphabet), NULL for an
 * unused id or one out of range. */
const char *tokenizer_id_to_token(const tp_tokenizer *tok, int32_t id);
/* Id of a token string (model vocabulary or added token), -1 if none. */
int32_t tokenizer_token_to_id(const tp_tokenizer *tok, const char *token);
/* 1 for an added token marked special, else 0. */
int tokenizer_is_special(const tp_tokenizer *tok, int32_t id);

#endif
