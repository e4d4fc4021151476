/* tokenizer.c — reading tokenizer.json, and the encode/decode drivers.
 *
 * Loading checks every component once (types, fields, merges that name tokens the
 * vocabulary lacks) and refuses what it does not implement by name, so encoding can
 * trust the tables. The ByteLevel byte -> character mapping is folded in here: BPE
 * works on raw bytes (byte_id[], merges by id), and each id carries the bytes it
 * decodes to, so neither direction builds byte-level strings at run time.
 */
#include "model/tokenizer_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ids index arrays sized max id + 1: a vocabulary past this is a corrupt file. */
#define TK_MAX_ID (1 << 24)

/* GPT-2's pre-tokenizer regex (ByteLevel use_regex), as in tokenizers' byte_level.rs. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static const char *type_of(const json_t *o)
{
    const json_t *t = json_object_get(o, "type");
    return json_is_string(t) ? json_string_value(t) : "(no type)";
}

static bool get_bool(const json_t *o, const char *key, bool dflt)
{
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* An empty or absent string field. */
static bool str_empty(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

/* `tokenizers` runs its regexes on Oniguruma, whose Unicode classes differ from PCRE2's
 * (UCP) in a few characters: onig's \s is exactly White_Space (PCRE2 adds U+180E),
 * \w is letters, marks, decimal digits and connectors (PCRE2: letters, all numbers,
 * '_'), and \h is a hex digit (PCRE2: horizontal space). Each is spelled out as an
 * explicit set. A negated one inside a bracket class has no spelling, so it is refused. */
static const struct {
    char esc;
    const char *set;
} ONIG_CLASSES[] = {
    {'s', "\\t\\n\\x0b\\f\\r\\x20\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"},
    {'w', "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"},
    {'h', "0-9a-fA-F"},
};

static tp_status onig_to_pcre2(const tp_tokenizer *tok, const char *p, size_t len, char **out, size_t *out_len)
{
    size_t cap = len * 8 + 256, n = 0;
    char *o = tp_malloc(cap);
    if (!o) return TP_ERR_NOMEM;
    int in_class = 0;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (n + 160 > cap) {
            cap *= 2;
            char *no = realloc(o, cap);
            if (!no) { free(o); return tp_err(TP_ERR_NOMEM, "out of memory translating a regex"); }
            o = no;
        }
        if (c == '\\' && i + 1 < len) {
            char e = p[i + 1];
            const char *set = NULL;
            for (size_t k = 0; k < sizeof ONIG_CLASSES / sizeof *ONIG_CLASSES; k++)
                if (e == ONIG_CLASSES[k].esc || e == ONIG_CLASSES[k].esc - 32) set = ONIG_CLASSES[k].set;
            bool negated = e >= 'A' && e <= 'Z';
            if (set && in_class && negated) {
                free(o);
                return tp_err(TP_ERR_UNSUPPORTED, "%s: regex uses \\%c inside a bracket class (no PCRE2 equivalent "
                              "of Oniguruma's)", tok->path, e);
            }
            if (set) {
                n += (size_t)sprintf(o + n, in_class ? "%s" : negated ? "[^%s]" : "[%s]", set);
            } else {
                o[n++] = c, o[n++] = e;
            }
            i++;
            continue;
        }
        if (c == '[') {
            /* "[:alpha:]" inside a class is a POSIX class, not a nested one. */
            if (in_class && i + 1 < len && p[i + 1] == ':') {
                const char *end = strstr(p + i + 2, ":]");
                if (end && (size_t)(end - p) < len) {
                    size_t k = (size_t)(end - p) + 2 - i;
                    memcpy(o + n, p + i, k);
                    n += k, i += k - 1;
                    continue;
                }
            }
            in_class++;
            o[n++] = c;
            /* A ']' right after '[' or '[^' is a literal. */
            if (i + 1 < len && p[i + 1] == '^') o[n++] = p[++i];
            if (i + 1 < len && p[i + 1] == ']') o[n++] = p[++i];
            continue;
        }
        if (c == ']' && in_class) in_class--;
        o[n++] = c;
    }
    *out = o, *out_len = n;
    return TP_OK;
}

static tp_status compile_regex(const tp_tokenizer *tok, const char *pattern, size_t len, uint32_t extra,
                               const char *what, pcre2_code **out)
{
    char *onig = NULL;
    if (!(extra & PCRE2_LITERAL)) {
        TP_CHECK(onig_to_pcre2(tok, pattern, len, &onig, &len));
        pattern = onig;
    }
    tp_status st = TP_OK;
    int code;
    PCRE2_SIZE at;
    /* UCP makes \s, \w, \d Unicode-aware as in Oniguruma; PCRE2 refuses it with LITERAL. */
    uint32_t opts = PCRE2_UTF | (extra & PCRE2_LITERAL ? 0 : PCRE2_UCP) | extra;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &code, &at, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        st = tp_err(TP_ERR_UNSUPPORTED, "%s: %s regex does not compile (PCRE2, at offset %zu of '%.*s'): %s",
                    tok->path, what, (size_t)at, (int)len, pattern, (char *)msg);
    } else {
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* falls back to the interpreter if JIT is absent */
        *out = re;
    }
    free(onig);
    return st;
}

/* ---- components ---------------------------------------------------------------------- */

static tp_status load_split(tp_tokenizer *tok, const json_t *p)
{
    if (tok->n_splits == TK_MAX_SPLITS)
        return tp_err(TP_ERR_UNSUPPORTED, "%s: more than %d Split pre-tokenizers", tok->path, TK_MAX_SPLITS);
    tk_split *sp = &tok->splits[tok->n_splits];
    const char *beh = json_string_value(json_object_get(p, "behavior"));
    if (!beh) return tp_err(TP_ERR_FORMAT, "%s: Split pre-tokenizer without a behavior", tok->path);
    if (!strcmp(beh, "Removed")) sp->behavior = TK_SPLIT_REMOVED;
    else if (!strcmp(beh, "Isolated")) sp->behavior = TK_SPLIT_ISOLATED;
    else
        return tp_err(TP_ERR_UNSUPPORTED, "%s: Split behavior '%s' is not supported (Removed, Isolated)",
                      tok->path, beh);
    sp->invert = get_bool(p, "invert", false);
    const json_t *pat = json_object_get(p, "pattern");
    const json_t *re = json_object_get(pat, "Regex"), *lit = json_object_get(pat, "String");
    if (json_is_string(re))
        TP_CHECK(compile_regex(tok, json_string_value(re), json_string_length(re), 0, "Split", &sp->re));
    else if (json_is_string(lit))
        TP_CHECK(compile_regex(tok, json_string_value(lit), json_string_length(lit), PCRE2_LITERAL, "Split",
                               &sp->re));
    else
        return tp_err(TP_ERR_FORMAT, "%s: Split pattern is neither {\"Regex\": ...} nor {\"String\": ...}",
                      tok->path);
    tok->n_splits++;
    return TP_OK;
}

static tp_status load_byte_level(tp_tokenizer *tok, const json_t *p)
{
    tok->add_prefix_space = get_bool(p, "add_prefix_space", true);
    if (get_bool(p, "use_regex", true))
        TP_CHECK(compile_regex(tok, GPT2_PATTERN, sizeof GPT2_PATTERN - 1, 0, "ByteLevel", &tok->bytelevel_re));
    return TP_OK;
}

/* ByteLevel, or Sequence[Split..., ByteLevel]: BPE here runs on bytes, so the last
 * step must be the one ByteLevel. */
static tp_status load_pre_tokenizer(tp_tokenizer *tok, const json_t *p)
{
    if (!json_is_object(p))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: pre_tokenizer null is not supported (a ByteLevel one is needed)",
                      tok->path);
    const char *t = type_of(p);
    if (!strcmp(t, "ByteLevel")) return load_byte_level(tok, p);
    if (strcmp(t, "Sequence"))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: pre_tokenizer '%s' is not supported (ByteLevel, Sequence of Split "
                      "and ByteLevel)", tok->path, t);
    const json_t *list = json_object_get(p, "pretokenizers");
    size_t n = json_array_size(list);
    if (n == 0) return tp_err(TP_ERR_FORMAT, "%s: empty pre_tokenizer Sequence", tok->path);
    for (size_t i = 0; i < n; i++) {
        const json_t *q = json_array_get(list, i);
        const char *qt = type_of(q);
        if (!strcmp(qt, "Split") && i + 1 < n) TP_CHECK(load_split(tok, q));
        else if (!strcmp(qt, "ByteLevel") && i + 1 == n) TP_CHECK(load_byte_level(tok, q));
        else if (!strcmp(qt, "Split") || !strcmp(qt, "ByteLevel"))
            return tp_err(TP_ERR_UNSUPPORTED, "%s: pre_tokenizer Sequence must be Split... then one ByteLevel, "
                          "found %s at position %zu", tok->path, qt, i);
        else
            return tp_err(TP_ERR_UNSUPPORTED, "%s: pre-tokenizer '%s' is not supported (Split, ByteLevel)",
                          tok->path, qt);
    }
    return TP_OK;
}

static tp_status template_ids(tp_tokenizer *tok, const json_t *special, const char *name, tk_ids *out)
{
    const json_t *ids = json_object_get(json_object_get(special, name), "ids");
    if (!json_is_array(ids) || json_array_size(ids) == 0)
        return tp_err(TP_ERR_FORMAT, "%s: TemplateProcessing special token '%s' has no ids", tok->path, name);
    for (size_t i = 0; i < json_array_size(ids); i++) {
        json_int_t v = json_integer_value(json_array_get(ids, i));
        if (v < 0 || v >= tok->vocab_size)
            return tp_err(TP_ERR_FORMAT, "%s: TemplateProcessing id %lld of '%s' is outside the vocabulary",
                          tok->path, (long long)v, name);
        int32_t id = (int32_t)v;
        TP_CHECK(tk_ids_push(out, &id, 1));
    }
    return TP_OK;
}

static tp_status load_template(tp_tokenizer *tok, const json_t *p)
{
    const json_t *single = json_object_get(p, "single"), *special = json_object_get(p, "special_tokens");
    tk_ids before = {0}, after = {0};
    bool seen_a = false;
    tp_status st = TP_OK;
    for (size_t i = 0; i < json_array_size(single) && st == TP_OK; i++) {
        const json_t *item = json_array_get(single, i);
        const json_t *sp = json_object_get(item, "SpecialToken"), *seq = json_object_get(item, "Sequence");
        if (sp) {
            const char *name = json_string_value(json_object_get(sp, "id"));
            st = name ? template_ids(tok, special, name, seen_a ? &after : &before)
                      : tp_err(TP_ERR_FORMAT, "%s: TemplateProcessing SpecialToken without an id", tok->path);
        } else if (seq && !seen_a) {
            seen_a = true;
        } else {
            st = tp_err(TP_ERR_UNSUPPORTED, "%s: TemplateProcessing single template item %zu is not supported",
                        tok->path, i);
        }
    }
    if (st == TP_OK && !seen_a) st = tp_err(TP_ERR_FORMAT, "%s: TemplateProcessing single template lacks $A", tok->path);
    if (st != TP_OK) {
        free(before.v);
        free(after.v);
        return st;
    }
    tok->tmpl_before = before.v, tok->n_before = before.n;
    tok->tmpl_after = after.v, tok->n_after = after.n;
    return TP_OK;
}

static tp_status load_post_processor(tp_tokenizer *tok, const json_t *p)
{
    if (!p || json_is_null(p)) return TP_OK;
    const char *t = type_of(p);
    if (!strcmp(t, "ByteLevel")) return TP_OK;   /* offsets only */
    if (!strcmp(t, "TemplateProcessing")) {
        if (tok->tmpl_before || tok->tmpl_after)
            return tp_err(TP_ERR_UNSUPPORTED, "%s: two TemplateProcessing post-processors", tok->path);
        return load_template(tok, p);
    }
    if (!strcmp(t, "Sequence")) {
        const json_t *list = json_object_get(p, "processors");
        for (size_t i = 0; i < json_array_size(list); i++) TP_CHECK(load_post_processor(tok, json_array_get(list, i)));
        return TP_OK;
    }
    return tp_err(TP_ERR_UNSUPPORTED, "%s: post_processor '%s' is not supported (ByteLevel, TemplateProcessing)",
                  tok->path, t);
}

/* ---- vocabulary --------------------------------------------------------------------------- */

/* Token string -> raw bytes when every character is in the ByteLevel alphabet. */
static bool bytes_of_token(const char *s, size_t len, uint8_t *out, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        i += (size_t)tk_utf8_next((const uint8_t *)s + i, len - i, &cp);
        int b = tk_char_to_byte(cp);
        if (b < 0) return false;
        out[(*n)++] = (uint8_t)b;
    }
    return true;
}

static tp_status set_string(tp_tokenizer *tok, size_t *blob_len, int32_t id, const char *s, size_t len)
{
    memcpy(tok->str_blob + *blob_len, s, len);
    tok->str_blob[*blob_len + len] = '\0';
    tok->str_off[id] = (uint32_t)*blob_len;
    tok->str_len[id] = (uint32_t)len;
    *blob_len += len + 1;
    return TP_OK;
}

static tp_status load_vocab(tp_tokenizer *tok, const json_t *vocab, const json_t *added)
{
    /* Sizes first: the largest id decides the arrays. */
    int32_t max_id = -1;
    size_t bytes = 0;
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= TK_MAX_ID) {
            /* Show the value as written ("5" as a string is not 0). */
            char *shown = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
            tp_status st = tp_err(TP_ERR_FORMAT, "%s: vocab entry '%s' has id %s (need an integer in [0, %d))",
                                  tok->path, key, shown ? shown : "?", TK_MAX_ID);
            free(shown);
            return st;
        }
        if (id > max_id) max_id = (int32_t)id;
        bytes += strlen(key) + 1;
    }
    for (size_t i = 0; i < json_array_size(added); i++) {
        const json_t *a = json_array_get(added, i);
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        const json_t *c = json_object_get(a, "content");
        if (!json_is_string(c) || id < 0 || id >= TK_MAX_ID)
            return tp_err(TP_ERR_FORMAT, "%s: added_tokens[%zu] needs a string content and an id in [0, %d)",
                          tok->path, i, TK_MAX_ID);
        if (id > max_id) max_id = (int32_t)id;
        bytes += json_string_length(c) + 1;
    }
    if (max_id < 0) return tp_err(TP_ERR_FORMAT, "%s: empty vocabulary", tok->path);
    tok->vocab_size = max_id + 1;
    size_t V = (size_t)tok->vocab_size;
    TP_ALLOC(tok->str_off, V);
    TP_ALLOC(tok->str_len, V);
    TP_ALLOC(tok->special, V);
    TP_ALLOC(tok->str_blob, bytes + 1);
    for (size_t i = 0; i < V; i++) tok->str_len[i] = UINT32_MAX;

    size_t blob = 0;
    TP_CHECK(tk_strmap_init(&tok->model_vocab, json_object_size(vocab)));
    json_object_foreach((json_t *)vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        size_t len = strlen(key);
        if (tok->str_len[id] != UINT32_MAX)
            return tp_err(TP_ERR_FORMAT, "%s: vocab id %d is given to two tokens", tok->path, id);
        TP_CHECK(set_string(tok, &blob, id, key, len));
        TP_CHECK(tk_strmap_put(&tok->model_vocab, key, len, id));
    }

    /* Added tokens: their content is the id's string (it wins over the model's). */
    tok->n_added = json_array_size(added);
    TP_ALLOC(tok->added, tok->n_added + 1);
    TP_CHECK(tk_strmap_init(&tok->added_vocab, tok->n_added));
    for (size_t i = 0; i < tok->n_added; i++) {
        const json_t *a = json_array_get(added, i);
        const json_t *c = json_object_get(a, "content");
        tk_added *t = &tok->added[i];
        t->len = json_string_length(c);
        t->content = tok->str_blob + blob;
        t->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        t->special = get_bool(a, "special", false);
        t->normalized = get_bool(a, "normalized", !t->special);
        t->lstrip = get_bool(a, "lstrip", false);
        t->rstrip = get_bool(a, "rstrip", false);
        t->single_word = get_bool(a, "single_word", false);
        if (t->len == 0) return tp_err(TP_ERR_FORMAT, "%s: added_tokens[%zu] is empty", tok->path, i);
        TP_CHECK(set_string(tok, &blob, t->id, json_string_value(c), t->len));
        tok->special[t->id] = t->special;
        TP_CHECK(tk_strmap_put(&tok->added_vocab, t->content, t->len, t->id));
        TP_CHECK(tk_trie_add(t->normalized ? &tok->trie_norm : &tok->trie_raw, t->content, t->len, (int32_t)i));
    }
    TP_CHECK(tk_trie_add(&tok->trie_raw, "", 0, -1));   /* make both tries non-empty roots */
    TP_CHECK(tk_trie_add(&tok->trie_norm, "", 0, -1));

    /* What each id decodes to: ByteLevel maps each character back to its byte when
     * all of the token's characters are in the alphabet, else keeps the token's UTF-8. */
    TP_ALLOC(tok->dec_off, V);
    TP_ALLOC(tok->dec_len, V);
    TP_ALLOC(tok->dec_blob, blob + 1);
    size_t dn = 0;
    for (size_t id = 0; id < V; id++) {
        if (tok->str_len[id] == UINT32_MAX) continue;
        const char *s = tok->str_blob + tok->str_off[id];
        size_t len = tok->str_len[id], n;
        tok->dec_off[id] = (uint32_t)dn;
        if (!bytes_of_token(s, len, tok->dec_blob + dn, &n)) {
            memcpy(tok->dec_blob + dn, s, len);
            n = len;
        }
        tok->dec_len[id] = (uint32_t)n;
        dn += n;
    }
    return TP_OK;
}

static tp_status load_model(tp_tokenizer *tok, const json_t *m)
{
    if (!json_is_object(m)) return tp_err(TP_ERR_FORMAT, "%s: no model", tok->path);
    const char *t = json_string_value(json_object_get(m, "type"));
    if (t && strcmp(t, "BPE"))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: model '%s' is not supported (BPE)", tok->path, t);
    const json_t *merges = json_object_get(m, "merges"), *vocab = json_object_get(m, "vocab");
    if (!json_is_object(vocab) || !json_is_array(merges))
        return tp_err(TP_ERR_FORMAT, "%s: BPE model needs a vocab object and a merges array", tok->path);
    if (get_bool(m, "byte_fallback", false))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: BPE byte_fallback is not supported", tok->path);
    const json_t *drop = json_object_get(m, "dropout");
    if (drop && !json_is_null(drop) && json_number_value(drop) != 0.0)
        return tp_err(TP_ERR_UNSUPPORTED, "%s: BPE dropout is not supported", tok->path);
    if (!str_empty(m, "continuing_subword_prefix") || !str_empty(m, "end_of_word_suffix"))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: BPE continuing_subword_prefix/end_of_word_suffix are not supported",
                      tok->path);
    tok->ignore_merges = get_bool(m, "ignore_merges", false);
    tok->fuse_unk = get_bool(m, "fuse_unk", false);
    tok->unk_id = -1;
    const char *unk = json_string_value(json_object_get(m, "unk_token"));
    if (unk) {
        tok->unk_id = tk_strmap_get(&tok->model_vocab, unk, strlen(unk));
        if (tok->unk_id < 0) return tp_err(TP_ERR_FORMAT, "%s: unk_token '%s' is not in the vocabulary", tok->path, unk);
    }

    for (int b = 0; b < 256; b++) {
        uint8_t c[4];
        size_t n = tk_utf8_put(tk_byte_to_char((uint8_t)b), c);
        tok->byte_id[b] = tk_strmap_get(&tok->model_vocab, c, n);
    }

    size_t nm = json_array_size(merges);
    TP_CHECK(tk_pairmap_init(&tok->merges, nm));
    char *buf = NULL;
    size_t buf_cap = 0;
    tp_status st = TP_OK;
    for (size_t i = 0; i < nm && st == TP_OK; i++) {
        const json_t *e = json_array_get(merges, i);
        const char *a, *b;
        size_t la, lb;
        if (json_is_string(e)) {
            /* "a b": tokenizers splits on the space; byte-level tokens hold none. */
            a = json_string_value(e);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) {
                st = tp_err(TP_ERR_FORMAT, "%s: merges[%zu] '%s' is not two tokens separated by a space",
                            tok->path, i, a);
                break;
            }
            la = (size_t)(sp - a), b = sp + 1, lb = strlen(b);
        } else if (json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
                   json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0)), la = json_string_length(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1)), lb = json_string_length(json_array_get(e, 1));
        } else {
            st = tp_err(TP_ERR_FORMAT, "%s: merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", tok->path, i);
            break;
        }
        if (la + lb > buf_cap) {
            buf_cap = 2 * (la + lb);
            char *nb = realloc(buf, buf_cap);
            if (!nb) { st = tp_err(TP_ERR_NOMEM, "out of memory reading merges"); break; }
            buf = nb;
        }
        memcpy(buf, a, la);
        memcpy(buf + la, b, lb);
        int32_t ia = tk_strmap_get(&tok->model_vocab, a, la), ib = tk_strmap_get(&tok->model_vocab, b, lb);
        int32_t ic = tk_strmap_get(&tok->model_vocab, buf, la + lb);
        if (ia < 0 || ib < 0 || ic < 0)
            st = tp_err(TP_ERR_FORMAT, "%s: merges[%zu] '%.*s %.*s' names a token missing from the vocabulary",
                        tok->path, i, (int)la, a, (int)lb, b);
        else
            tk_pairmap_put(&tok->merges, ia, ib, (int32_t)i, ic);
    }
    free(buf);
    TP_CHECK(st);

    if (tok->ignore_merges) {
        /* Whole pieces found in the vocabulary skip the merges; pieces are raw bytes. */
        TP_CHECK(tk_strmap_init(&tok->vocab_bytes, json_object_size(vocab)));
        const char *key;
        const json_t *val;
        uint8_t *tmp = tp_malloc(4096);
        if (!tmp) return TP_ERR_NOMEM;
        json_object_foreach((json_t *)vocab, key, val) {
            size_t len = strlen(key), n;
            if (len > 4096 || !bytes_of_token(key, len, tmp, &n)) continue;
            st = tk_strmap_put(&tok->vocab_bytes, tmp, n, (int32_t)json_integer_value(val));
            if (st != TP_OK) break;
        }
        free(tmp);
        TP_CHECK(st);
    }
    return TP_OK;
}

static tp_status load_all(tp_tokenizer *tok, const json_t *root)
{
    if (!json_is_object(root)) return tp_err(TP_ERR_FORMAT, "%s: not a JSON object", tok->path);
    static const char *const off[] = {"truncation", "padding"};
    for (int i = 0; i < 2; i++) {
        const json_t *v = json_object_get(root, off[i]);
        if (v && !json_is_null(v))
            return tp_err(TP_ERR_UNSUPPORTED, "%s: %s is set; not supported (set it to null)", tok->path, off[i]);
    }
    const json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const json_t *list = json_object_get(norm, "normalizers");
        if (strcmp(type_of(norm), "Sequence") || json_array_size(list) != 0)
            return tp_err(TP_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported (null)", tok->path,
                          !strcmp(type_of(norm), "Sequence") && json_array_size(list)
                              ? type_of(json_array_get(list, 0)) : type_of(norm));
    }
    const json_t *dec = json_object_get(root, "decoder");
    if (!json_is_object(dec) || strcmp(type_of(dec), "ByteLevel"))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: decoder '%s' is not supported (ByteLevel)", tok->path,
                      json_is_object(dec) ? type_of(dec) : "null");
    const json_t *model = json_object_get(root, "model");
    const char *mt = json_string_value(json_object_get(model, "type"));
    if (mt && strcmp(mt, "BPE"))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: model '%s' is not supported (BPE)", tok->path, mt);
    const json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added) && !json_is_null(added))
        return tp_err(TP_ERR_FORMAT, "%s: added_tokens is not an array", tok->path);
    TP_CHECK(load_vocab(tok, json_object_get(model, "vocab"), added));
    TP_CHECK(load_model(tok, model));
    TP_CHECK(load_pre_tokenizer(tok, json_object_get(root, "pre_tokenizer")));
    TP_CHECK(load_post_processor(tok, json_object_get(root, "post_processor")));
    for (size_t i = 0; i < tok->n_added; i++) {
        if (tok->added[i].single_word && !tok->re_word_start) {
            TP_CHECK(compile_regex(tok, "^\\w", 3, 0, "single_word", &tok->re_word_start));
            TP_CHECK(compile_regex(tok, "\\w\\z", 4, 0, "single_word", &tok->re_word_end));
        }
    }
    tok->md = pcre2_match_data_create(4, NULL);
    if (!tok->md) return tp_err(TP_ERR_NOMEM, "out of memory for PCRE2 match data");
    return tk_strmap_init(&tok->cache, 1024);
}

tp_status tokenizer_load(const char *path, tp_tokenizer **out)
{
    *out = NULL;
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f) return tp_err(TP_ERR_IO, "%s: cannot open tokenizer", path);
        fclose(f);
        return tp_err(TP_ERR_FORMAT, "%s:%d:%d: not valid JSON: %s", path, jerr.line, jerr.column, jerr.text);
    }
    tp_tokenizer *tok = tp_calloc(1, sizeof *tok);
    if (!tok) { json_decref(root); return TP_ERR_NOMEM; }
    tok->path = strdup(path);
    tp_status st = tok->path ? load_all(tok, root) : tp_err(TP_ERR_NOMEM, "out of memory");
    json_decref(root);
    if (st != TP_OK) {
        tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return TP_OK;
}

void tokenizer_free(tp_tokenizer *tok)
{
    if (!tok) return;
    free(tok->path);
    free(tok->str_off);
    free(tok->str_len);
    free(tok->str_blob);
    free(tok->special);
    free(tok->dec_off);
    free(tok->dec_len);
    free(tok->dec_blob);
    tk_strmap_free(&tok->model_vocab);
    tk_strmap_free(&tok->added_vocab);
    tk_pairmap_free(&tok->merges);
    tk_strmap_free(&tok->vocab_bytes);
    free(tok->added);
    tk_trie_free(&tok->trie_raw);
    tk_trie_free(&tok->trie_norm);
    pcre2_code_free(tok->re_word_start);
    pcre2_code_free(tok->re_word_end);
    for (int i = 0; i < tok->n_splits; i++) pcre2_code_free(tok->splits[i].re);
    pcre2_code_free(tok->bytelevel_re);
    free(tok->tmpl_before);
    free(tok->tmpl_after);
    pcre2_match_data_free(tok->md);
    free(tok->sym);
    free(tok->heap);
    free(tok->scratch);
    tk_strmap_free(&tok->cache);
    free(tok->cache_ids.v);
    free(tok);
}

/* ---- encode / decode -------------------------------------------------------------------- */

tp_status tokenizer_encode(tp_tokenizer *tok, const char *text, size_t len, unsigned flags,
                           int32_t **ids, size_t *n)
{
    *ids = NULL, *n = 0;
    const uint8_t *s = (const uint8_t *)text;
    uint8_t *fixed = NULL;
    size_t bad, ok = tk_utf8_valid_prefix(s, len, &bad);
    if (ok < len) {
        if (!(flags & TOKENIZER_REPLACE_INVALID))
            return tp_err(TP_ERR_FORMAT, "invalid UTF-8 at byte offset %zu (0x%02x)", ok, s[ok]);
        TP_CHECK(tk_utf8_replace(s, len, &fixed, &len));
        s = fixed;
    }
    tk_ids out = {0};
    tp_status st = TP_OK;
    if (flags & TOKENIZER_ADD_SPECIAL) st = tk_ids_push(&out, tok->tmpl_before, tok->n_before);
    if (st == TP_OK) st = tk_encode_text(tok, s, len, &out);
    if (st == TP_OK && (flags & TOKENIZER_ADD_SPECIAL)) st = tk_ids_push(&out, tok->tmpl_after, tok->n_after);
    free(fixed);
    if (st != TP_OK) {
        free(out.v);
        return st;
    }
    if (!out.v) {
        out.v = tp_malloc(sizeof *out.v);   /* an empty result is still an array to free */
        if (!out.v) return TP_ERR_NOMEM;
    }
    *ids = out.v, *n = out.n;
    return TP_OK;
}

tp_status tokenizer_decode(const tp_tokenizer *tok, const int32_t *ids, size_t n, unsigned flags,
                           char **text, size_t *len)
{
    *text = NULL, *len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= tok->vocab_size || tok->str_len[id] == UINT32_MAX)
            return tp_err(TP_ERR_RANGE, "token id %d at index %zu is not in the vocabulary (%d ids)", id, i,
                          tok->vocab_size);
        total += tok->dec_len[id];
    }
    uint8_t *raw = tp_malloc(total + 1);
    if (!raw) return TP_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if ((flags & TOKENIZER_SKIP_SPECIAL) && tok->special[ids[i]]) continue;
        memcpy(raw + k, tok->dec_blob + tok->dec_off[ids[i]], tok->dec_len[ids[i]]);
        k += tok->dec_len[ids[i]];
    }
    size_t bad;
    if (tk_utf8_valid_prefix(raw, k, &bad) == k) {
        raw[k] = '\0';
        *text = (char *)raw, *len = k;
        return TP_OK;
    }
    uint8_t *fixed;
    size_t m;
    tp_status st = tk_utf8_replace(raw, k, &fixed, &m);
    free(raw);
    TP_CHECK(st);
    fixed[m] = '\0';
    *text = (char *)fixed, *len = m;
    return TP_OK;
}

int32_t tokenizer_vocab_size(const tp_tokenizer *tok) { return tok->vocab_size; }

const char *tokenizer_id_to_token(const tp_tokenizer *tok, int32_t id)
{
    if (id < 0 || id >= tok->vocab_size || tok->str_len[id] == UINT32_MAX) return NULL;
    return tok->str_blob + tok->str_off[id];
}

int32_t tokenizer_token_to_id(const tp_tokenizer *tok, const char *token)
{
    size_t len = strlen(token);
    int32_t id = tk_strmap_get(&tok->added_vocab, token, len);
    return id >= 0 ? id : tk_strmap_get(&tok->model_vocab, token, len);
}

int tokenizer_is_special(const tp_tokenizer *tok, int32_t id)
{
    return id >= 0 && id < tok->vocab_size && tok->special[id];
}
