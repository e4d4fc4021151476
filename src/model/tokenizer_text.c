/* tokenizer_text.c — from text to pieces: UTF-8 checks, added tokens, the Split
 * pre-tokenizers and ByteLevel, in `tokenizers`' order:
 *   1. added tokens (AddedVocabulary::extract_and_normalize): leftmost-longest matches
 *      of the non-normalized tokens on the raw text, then of the normalized ones on the
 *      gaps (there is no normalizer, so on the same bytes); lstrip/rstrip widen a match
 *      over Unicode white space, single_word drops one that touches a word character;
 *   2. each Split in turn on every piece (Pattern::find_matches, then the behaviour:
 *      Removed drops the delimiters, Isolated keeps them as pieces; invert swaps which
 *      parts are delimiters); empty pieces vanish;
 *   3. ByteLevel: a space before each piece that lacks one (add_prefix_space), the GPT-2
 *      regex split (use_regex), then BPE on the piece's bytes (tokenizer_bpe.c) — the
 *      byte -> character mapping is folded into the vocabulary when loading.
 */
#include "model/tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 ---------------------------------------------------------------------------- */

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the other 68
 * (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100..U+0143 in byte order. */
uint32_t tk_byte_to_char(uint8_t b)
{
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7F && b <= 0xA0) return 256u + 33 + (b - 0x7Fu);
    if (b == 0xAD) return 256u + 67;
    return b;
}

int tk_char_to_byte(uint32_t cp)
{
    if (cp < 256) return (cp <= 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) ? -1 : (int)cp;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 66) return (int)(cp - 256 - 33 + 0x7F);
    return cp == 256 + 67 ? 0xAD : -1;
}

int tk_utf8_next(const uint8_t *s, size_t len, uint32_t *cp)
{
    uint8_t c = s[0];
    if (c < 0x80 || len < 2) { *cp = c; return 1; }
    if (c < 0xE0) { *cp = (uint32_t)(c & 0x1F) << 6 | (s[1] & 0x3F); return 2; }
    if (c < 0xF0 || len < 4) {
        *cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        return 3;
    }
    *cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
          (s[3] & 0x3F);
    return 4;
}

size_t tk_utf8_put(uint32_t cp, uint8_t *o)
{
    if (cp < 0x80) { o[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) { o[0] = (uint8_t)(0xC0 | cp >> 6); o[1] = (uint8_t)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* Unicode's well-formed sequences (Table 3-7): the second byte's range depends on the
 * lead byte, which excludes overlongs, surrogates and code points past U+10FFFF. The
 * bytes of an invalid sequence that still fit the table form its "maximal subpart",
 * replaced by one U+FFFD (Python's errors="replace", Rust's from_utf8_lossy). */
size_t tk_utf8_valid_prefix(const uint8_t *s, size_t len, size_t *bad_len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            *bad_len = 1;
            return i;
        }
        size_t k = 1;
        for (; k <= need && i + k < len; k++) {
            uint8_t b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) break;
        }
        if (k <= need) {
            *bad_len = k;
            return i;
        }
        i += need + 1;
    }
    *bad_len = 0;
    return len;
}

tp_status tk_utf8_replace(const uint8_t *s, size_t len, uint8_t **out, size_t *out_len)
{
    /* Each invalid byte becomes at most 3 bytes (U+FFFD). */
    uint8_t *o = tp_malloc(len * 3 + 1);
    if (!o) return TP_ERR_NOMEM;
    size_t n = 0, i = 0;
    while (i < len) {
        size_t bad, ok = tk_utf8_valid_prefix(s + i, len - i, &bad);
        memcpy(o + n, s + i, ok);
        n += ok, i += ok;
        if (bad) {
            n += tk_utf8_put(0xFFFD, o + n);
            i += bad;
        }
    }
    *out = o, *out_len = n;
    return TP_OK;
}

/* Rust's char::is_whitespace: the Unicode White_Space property. */
static bool is_white_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
           c == 0x3000;
}

/* ---- added tokens ------------------------------------------------------------------------ */

tp_status tk_trie_add(tk_trie *t, const char *s, size_t len, int32_t token)
{
    if (!t->nodes) {
        t->cap = 64;
        t->nodes = tp_malloc(t->cap * sizeof *t->nodes);
        if (!t->nodes) return TP_ERR_NOMEM;
        memset(&t->nodes[0], 0, sizeof t->nodes[0]);
        t->nodes[0].token = -1;
        t->n = 1;
    }
    if (len == 0) return TP_OK;
    t->first[(uint8_t)s[0]] = true;
    int32_t node = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = (uint8_t)s[i];
        if (!t->nodes[node].next[b]) {
            if (t->n == t->cap) {
                tk_trie_node *nn = realloc(t->nodes, 2 * t->cap * sizeof *nn);
                if (!nn) return tp_err(TP_ERR_NOMEM, "out of memory for the added-token trie");
                t->nodes = nn, t->cap *= 2;
            }
            memset(&t->nodes[t->n], 0, sizeof t->nodes[0]);
            t->nodes[t->n].token = -1;
            t->nodes[node].next[b] = (int32_t)t->n++;
        }
        node = t->nodes[node].next[b];
    }
    /* The same content twice: the first listed wins, as tokenizers' trie keeps it. */
    if (t->nodes[node].token < 0) t->nodes[node].token = token;
    return TP_OK;
}

void tk_trie_free(tk_trie *t)
{
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

/* Longest token starting at s[0], or -1; *mlen its length. */
static int32_t trie_match(const tk_trie *t, const uint8_t *s, size_t len, size_t *mlen)
{
    int32_t node = 0, best = -1;
    for (size_t i = 0; i < len; i++) {
        node = t->nodes[node].next[s[i]];
        if (!node) break;
        if (t->nodes[node].token >= 0) best = t->nodes[node].token, *mlen = i + 1;
    }
    return best;
}

static bool regex_hits(pcre2_code *re, pcre2_match_data *md, const uint8_t *s, size_t len)
{
    return pcre2_match(re, s, len, 0, PCRE2_NO_UTF_CHECK, md, NULL) >= 0;
}

typedef tp_status (*piece_fn)(tp_tokenizer *tok, const uint8_t *s, size_t len, int level, tk_ids *out);

static tp_status pretokenize(tp_tokenizer *tok, const uint8_t *s, size_t len, int level, tk_ids *out);

/* Splits s on the tokens of trie t; gaps go to `gap` (with gap_level), tokens to out. */
static tp_status split_added(tp_tokenizer *tok, const tk_trie *t, const uint8_t *s, size_t len,
                             piece_fn gap, tk_ids *out)
{
    size_t done = 0;   /* start_offset: end of the last token taken */
    size_t i = 0;
    while (t->nodes && i < len) {
        if (!t->first[s[i]]) { i++; continue; }
        size_t mlen = 0;
        int32_t k = trie_match(t, s + i, len - i, &mlen);
        if (k < 0) { i++; continue; }
        const tk_added *a = &tok->added[k];
        size_t start = i, stop = i + mlen;
        i = stop;   /* the matcher resumes after the match, taken or not */
        if (start < done) continue;
        if (a->single_word) {
            bool left_ok = start == 0 || !regex_hits(tok->re_word_end, tok->md, s, start);
            bool right_ok = stop == len || !regex_hits(tok->re_word_start, tok->md, s + stop, len - stop);
            if (!left_ok || !right_ok) continue;
        }
        if (a->lstrip) {
            /* back over the white space before the match, not past the last token */
            size_t b = start;
            while (b > done) {
                size_t c = b - 1;
                while (c > done && (s[c] & 0xC0) == 0x80) c--;
                uint32_t cp;
                tk_utf8_next(s + c, b - c, &cp);
                if (!is_white_space(cp)) break;
                b = c;
            }
            start = b;
        }
        if (a->rstrip) {
            while (stop < len) {
                uint32_t cp;
                int l = tk_utf8_next(s + stop, len - stop, &cp);
                if (!is_white_space(cp)) break;
                stop += (size_t)l;
            }
        }
        if (start > done) TP_CHECK(gap(tok, s + done, start - done, 0, out));
        TP_CHECK(tk_ids_push(out, &a->id, 1));
        done = stop;
    }
    if (done < len) TP_CHECK(gap(tok, s + done, len - done, 0, out));
    return TP_OK;
}

static tp_status gap_normalized(tp_tokenizer *tok, const uint8_t *s, size_t len, int level, tk_ids *out)
{
    return split_added(tok, &tok->trie_norm, s, len, pretokenize, out);
}

/* ---- Split and ByteLevel ------------------------------------------------------------------ */

/* Calls fn on the pieces of s that regex `re` makes: matches flagged delimiters (or the
 * gaps, with invert); Removed drops the delimiters, Isolated keeps every piece. Empty
 * matches split a gap but make no piece; one right after a match is skipped (Rust). */
static tp_status split_regex(tp_tokenizer *tok, const tk_split *sp, const uint8_t *s, size_t len,
                             int level, tk_ids *out)
{
    size_t prev = 0, from = 0;
    size_t last_end = SIZE_MAX;
    bool keep_matches = sp->behavior == TK_SPLIT_ISOLATED || sp->invert;
    bool keep_gaps = sp->behavior == TK_SPLIT_ISOLATED || !sp->invert;
    while (from <= len) {
        int rc = pcre2_match(sp->re, s, len, from, PCRE2_NO_UTF_CHECK, tok->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return tp_err(TP_ERR_INTERNAL, "%s: Split regex failed at byte %zu: %s", tok->path, from, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->md);
        size_t ms = ov[0], me = ov[1];
        if (ms == me) {
            if (ms != last_end) {
                if (ms > prev && keep_gaps) TP_CHECK(pretokenize(tok, s + prev, ms - prev, level + 1, out));
                if (ms > prev) prev = ms;
                last_end = ms;
            }
            if (ms >= len) break;
            uint32_t cp;
            from = ms + (size_t)tk_utf8_next(s + ms, len - ms, &cp);
            continue;
        }
        if (ms > prev && keep_gaps) TP_CHECK(pretokenize(tok, s + prev, ms - prev, level + 1, out));
        if (keep_matches) TP_CHECK(pretokenize(tok, s + ms, me - ms, level + 1, out));
        prev = from = last_end = me;
    }
    if (prev < len && keep_gaps) TP_CHECK(pretokenize(tok, s + prev, len - prev, level + 1, out));
    return TP_OK;
}

static tp_status byte_level(tp_tokenizer *tok, const uint8_t *s, size_t len, tk_ids *out)
{
    if (tok->add_prefix_space && s[0] != ' ') {
        if (len + 1 > tok->scratch_cap) {
            size_t cap = (len + 1) * 2;
            uint8_t *b = realloc(tok->scratch, cap);
            if (!b) return tp_err(TP_ERR_NOMEM, "out of memory for a piece of %zu bytes", len);
            tok->scratch = b, tok->scratch_cap = cap;
        }
        /* The scratch buffer is reused by the next piece; copy out of it first. */
        tok->scratch[0] = ' ';
        memcpy(tok->scratch + 1, s, len);
        s = tok->scratch, len++;
    }
    if (!tok->bytelevel_re) return tk_bpe_piece(tok, s, len, out);
    size_t from = 0;
    while (from < len) {
        int rc = pcre2_match(tok->bytelevel_re, s, len, from, PCRE2_NO_UTF_CHECK, tok->md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(tok->md);
        /* The GPT-2 regex matches every character, so there are no gaps to keep. */
        if (ov[1] == ov[0]) break;
        TP_CHECK(tk_bpe_piece(tok, s + ov[0], ov[1] - ov[0], out));
        from = ov[1];
    }
    return TP_OK;
}

static tp_status pretokenize(tp_tokenizer *tok, const uint8_t *s, size_t len, int level, tk_ids *out)
{
    if (len == 0) return TP_OK;
    if (level < tok->n_splits) return split_regex(tok, &tok->splits[level], s, len, level, out);
    return byte_level(tok, s, len, out);
}

tp_status tk_encode_text(tp_tokenizer *tok, const uint8_t *text, size_t len, tk_ids *out)
{
    return split_added(tok, &tok->trie_raw, text, len, gap_normalized, out);
}
