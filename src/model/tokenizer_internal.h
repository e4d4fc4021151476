/* tokenizer_internal.h — what tokenizer.c (loading, encode/decode driver),
 * tokenizer_bpe.c (hash tables, merge loop, piece cache) and tokenizer_text.c (UTF-8,
 * added tokens, Split, ByteLevel) share. Not for use outside src/model/tokenizer*.c. */
#ifndef TP_TOKENIZER_INTERNAL_H
#define TP_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"

#include <pcre2.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- hash tables -------------------------------------------------------------- */

/* Byte string -> int32, keys copied into the table's own blob. */
typedef struct {
    uint32_t hash, off, len;
    int32_t val;            /* -1: empty slot */
} tk_slot;

typedef struct {
    tk_slot *slots;
    size_t cap, count;      /* cap a power of two, count <= cap / 2 */
    uint8_t *blob;
    size_t blob_len, blob_cap;
} tk_strmap;

tp_status tk_strmap_init(tk_strmap *m, size_t expected);
void tk_strmap_free(tk_strmap *m);
void tk_strmap_clear(tk_strmap *m);
/* Inserts or overwrites. */
tp_status tk_strmap_put(tk_strmap *m, const void *key, size_t len, int32_t val);
int32_t tk_strmap_get(const tk_strmap *m, const void *key, size_t len);   /* -1 if absent */

/* Pair of ids -> (merge rank, merged id). */
typedef struct {
    uint64_t key;           /* UINT64_MAX: empty */
    int32_t rank, id;
} tk_pair_slot;

typedef struct {
    tk_pair_slot *slots;
    size_t cap, count;
} tk_pairmap;

tp_status tk_pairmap_init(tk_pairmap *m, size_t expected);
void tk_pairmap_free(tk_pairmap *m);
void tk_pairmap_put(tk_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
const tk_pair_slot *tk_pairmap_get(const tk_pairmap *m, int32_t a, int32_t b);

/* ---- growable id list ------------------------------------------------------------ */

typedef struct {
    int32_t *v;
    size_t n, cap;
} tk_ids;

tp_status tk_ids_push(tk_ids *a, const int32_t *ids, size_t n);

/* ---- the tokenizer ------------------------------------------------------------------ */

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
} tk_added;

/* Byte trie over added-token contents: leftmost-longest matching. */
typedef struct {
    int32_t next[256];      /* child node, 0 = none (node 0 is the root) */
    int32_t token;          /* index into tok->added of a token ending here, -1 if none */
} tk_trie_node;

typedef struct {
    tk_trie_node *nodes;
    size_t n, cap;
    bool first[256];        /* bytes that can start a token */
} tk_trie;

typedef enum { TK_SPLIT_REMOVED, TK_SPLIT_ISOLATED } tk_split_behavior;

typedef struct {
    pcre2_code *re;
    tk_split_behavior behavior;
    bool invert;
} tk_split;

#define TK_MAX_SPLITS 8

/* Workspace of one word's merge loop. */
typedef struct {
    int32_t id, prev, next, len;
} tk_symbol;

typedef struct {
    int32_t rank, pos, id;
} tk_merge;

struct tp_tokenizer {
    char *path;
    int32_t vocab_size;             /* max id + 1 */
    /* id -> token string as written (added-token content wins), offsets into str_blob */
    uint32_t *str_off, *str_len;    /* str_len UINT32_MAX: unused id */
    char *str_blob;
    uint8_t *special;               /* per id: added token marked special */
    /* id -> bytes it decodes to (ByteLevel decoder) */
    uint32_t *dec_off, *dec_len;
    uint8_t *dec_blob;
    tk_strmap model_vocab;          /* model vocabulary: string -> id */
    tk_strmap added_vocab;          /* added tokens: content -> id */

    /* BPE */
    tk_pairmap merges;
    int32_t byte_id[256];           /* id of each byte's ByteLevel character, -1 if none */
    bool ignore_merges;
    tk_strmap vocab_bytes;          /* raw bytes -> id, for ignore_merges */
    int32_t unk_id;                 /* -1: none */
    bool fuse_unk;

    /* added tokens: two passes as `tokenizers`: non-normalized ones on the raw text,
     * then normalized ones on what is left (no normalizer, so the same bytes) */
    tk_added *added;
    size_t n_added;
    tk_trie trie_raw, trie_norm;
    pcre2_code *re_word_start, *re_word_end;   /* single_word boundaries: ^\w, \w$ */

    /* pre-tokenizer: splits in order, then ByteLevel */
    tk_split splits[TK_MAX_SPLITS];
    int n_splits;
    bool add_prefix_space;
    pcre2_code *bytelevel_re;       /* GPT-2 regex when use_regex, else NULL */

    /* post-processor (TemplateProcessing, single sequence) */
    int32_t *tmpl_before, *tmpl_after;
    size_t n_before, n_after;

    /* encode scratch and cache: why encode is not reentrant */
    pcre2_match_data *md;
    tk_symbol *sym;
    tk_merge *heap;
    size_t sym_cap, heap_cap;
    uint8_t *scratch;               /* " " + piece for add_prefix_space */
    size_t scratch_cap;
    tk_strmap cache;                /* piece bytes -> offset into cache_ids */
    tk_ids cache_ids;               /* [n, id...] per cached piece */
};

/* ---- tokenizer_bpe.c ---------------------------------------------------------------- */

/* Appends the ids of one pre-tokenized piece (raw bytes, not byte-level characters). */
tp_status tk_bpe_piece(tp_tokenizer *tok, const uint8_t *piece, size_t len, tk_ids *out);

/* ---- tokenizer_text.c --------------------------------------------------------------- */

/* GPT-2's byte <-> character table of the ByteLevel pre-tokenizer and decoder. */
uint32_t tk_byte_to_char(uint8_t b);
int tk_char_to_byte(uint32_t cp);   /* -1 if cp is not in the alphabet */
/* Decodes one UTF-8 character of a valid string; returns its length. */
int tk_utf8_next(const uint8_t *s, size_t len, uint32_t *cp);
size_t tk_utf8_put(uint32_t cp, uint8_t *out);
/* Length of the valid UTF-8 prefix of s; *bad_len the bytes of the maximal invalid
 * subpart after it (0 at the end). */
size_t tk_utf8_valid_prefix(const uint8_t *s, size_t len, size_t *bad_len);
/* Replaces invalid UTF-8 by U+FFFD (one per maximal subpart); *out malloc'd. */
tp_status tk_utf8_replace(const uint8_t *s, size_t len, uint8_t **out, size_t *out_len);

tp_status tk_trie_add(tk_trie *t, const char *s, size_t len, int32_t token);
void tk_trie_free(tk_trie *t);

/* Encodes valid UTF-8 text without the post-processor: added tokens, pre-tokenizer, BPE. */
tp_status tk_encode_text(tp_tokenizer *tok, const uint8_t *text, size_t len, tk_ids *out);

#endif
