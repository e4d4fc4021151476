/* Parity of the C tokenizer with Hugging Face `tokenizers`.
 *
 * Golden data: tools/reference/make_golden_tokenizer.py, one directory per tokenizer
 * under tests/data/tokenizers (every one that has a golden.json is tested):
 *   cl100k-dolma2  OLMo-2's dolma2 structure over the real cl100k_base ranks
 *   bpe-small      8k byte-level BPE trained on the corpus, dolma2's structure
 *   bpe-gpt2       ByteLevel(add_prefix_space, use_regex), TemplateProcessing,
 *                  ignore_merges, lstrip / normalized added tokens
 *   bpe-isolated   Split(String) + Split(Isolated) + ByteLevel, rstrip/single_word
 * Ids must be equal, not close: there is no tolerance in tokenization. Decoding must
 * give tokenizers' text byte for byte, including U+FFFD where tokens cut characters.
 */
#include "tp_test.h"

#include "model/tokenizer.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TOKENIZERS 16

static char names[MAX_TOKENIZERS][256];
static int n_names;

static void find_tokenizers(void)
{
    DIR *d = opendir(tp_test_data("tokenizers"));
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) && n_names < MAX_TOKENIZERS) {
        char rel[512];
        snprintf(rel, sizeof rel, "tokenizers/%s/golden.json", e->d_name);
        FILE *f = e->d_name[0] != '.' ? fopen(tp_test_data(rel), "r") : NULL;
        if (!f) continue;
        fclose(f);
        snprintf(names[n_names++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    /* readdir order is arbitrary; sort so loop indices name the same tokenizer. */
    for (int i = 1; i < n_names; i++)
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[256];
            memcpy(t, names[j], sizeof t);
            memcpy(names[j], names[j - 1], sizeof t);
            memcpy(names[j - 1], t, sizeof t);
        }
}

static json_t *load_golden(const char *name)
{
    char rel[512];
    snprintf(rel, sizeof rel, "tokenizers/%s/golden.json", name);
    json_error_t err;
    json_t *g = json_load_file(tp_test_data(rel), JSON_ALLOW_NUL, &err);
    ck_assert_msg(g != NULL, "%s: %s", rel, err.text);
    return g;
}

static tp_tokenizer *load_tokenizer(const char *name, const json_t *g)
{
    const char *ref = json_string_value(json_object_get(g, "tokenizer"));
    char path[4096];
    if (!strncmp(ref, "@repo/", 6)) {
        const char *src = getenv("TP_SOURCE_DIR");
        snprintf(path, sizeof path, "%s/%s", src ? src : ".", ref + 6);
    } else {
        char rel[512];
        snprintf(rel, sizeof rel, "tokenizers/%s/%s", name, ref);
        snprintf(path, sizeof path, "%s", tp_test_data(rel));
    }
    tp_tokenizer *tok;
    ck_assert_msg(tokenizer_load(path, &tok) == TP_OK, "%s", tp_err_msg());
    return tok;
}

static void expect_ids(const char *what, const char *name, const json_t *want, const int32_t *got, size_t n)
{
    size_t m = json_array_size(want);
    size_t first = 0;
    while (first < n && first < m && json_integer_value(json_array_get(want, first)) == got[first]) first++;
    ck_assert_msg(n == m && first == n, "%s %s: %zu ids, want %zu; first difference at %zu (got %d, want %lld)",
                  what, name, n, m, first, first < n ? got[first] : -1,
                  first < m ? (long long)json_integer_value(json_array_get(want, first)) : -1LL);
}

static void expect_text(const char *what, const char *name, const json_t *want, const char *got, size_t len)
{
    size_t wl = json_string_length(want);
    ck_assert_msg(wl == len && !memcmp(json_string_value(want), got, len), "%s %s: got '%.*s' (%zu bytes), want '%s'",
                  what, name, (int)len, got, len, json_string_value(want));
}

static int32_t *ids_of(const json_t *a, size_t *n)
{
    *n = json_array_size(a);
    int32_t *v = malloc((*n + 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return v;
}

START_TEST(test_encode_parity)
{
    ck_assert_msg(n_names >= 2, "expected the golden tokenizers under %s", tp_test_data("tokenizers"));
    const char *name = names[_i];
    json_t *g = load_golden(name);
    tp_tokenizer *tok = load_tokenizer(name, g);
    ck_assert_int_eq(tokenizer_vocab_size(tok), json_integer_value(json_object_get(g, "max_id")) + 1);
    const json_t *cases = json_object_get(g, "encode");
    size_t n_ids = 0, round_trips = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i);
        const char *cname = json_string_value(json_object_get(c, "name"));
        const json_t *text = json_object_get(c, "text");
        int32_t *ids;
        size_t n;
        ck_assert_msg(tokenizer_encode(tok, json_string_value(text), json_string_length(text), TOKENIZER_ADD_SPECIAL,
                                       &ids, &n) == TP_OK, "%s: %s", cname, tp_err_msg());
        expect_ids("encode", cname, json_object_get(c, "ids"), ids, n);
        n_ids += n;
        char *out;
        size_t len;
        ck_assert(tokenizer_decode(tok, ids, n, 0, &out, &len) == TP_OK);
        expect_text("decode", cname, json_object_get(c, "decoded"), out, len);
        /* Round trip wherever tokenizers itself gives the text back. */
        if (len == json_string_length(text) && !memcmp(out, json_string_value(text), len)) round_trips++;
        free(out);
        ck_assert(tokenizer_decode(tok, ids, n, TOKENIZER_SKIP_SPECIAL, &out, &len) == TP_OK);
        expect_text("decode skip_special", cname, json_object_get(c, "decoded_skip_special"), out, len);
        free(out);
        free(ids);
        ck_assert(tokenizer_encode(tok, json_string_value(text), json_string_length(text), 0, &ids, &n) == TP_OK);
        expect_ids("encode no special", cname, json_object_get(c, "ids_no_special"), ids, n);
        free(ids);
    }
    ck_assert_int_eq(round_trips, json_integer_value(json_object_get(g, "round_trip_cases")));
    printf("tokenizer %s: %zu cases, %zu ids equal to tokenizers, %zu exact round trips\n", name,
           json_array_size(cases), n_ids, round_trips);
    tokenizer_free(tok);
    json_decref(g);
}
END_TEST

START_TEST(test_decode_and_vocab)
{
    const char *name = names[_i];
    json_t *g = load_golden(name);
    tp_tokenizer *tok = load_tokenizer(name, g);
    const json_t *cases = json_object_get(g, "decode");
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i);
        size_t n;
        int32_t *ids = ids_of(json_object_get(c, "ids"), &n);
        char *out, label[32];
        size_t len;
        snprintf(label, sizeof label, "#%zu", i);
        ck_assert_msg(tokenizer_decode(tok, ids, n, 0, &out, &len) == TP_OK, "%s", tp_err_msg());
        expect_text("decode", label, json_object_get(c, "text"), out, len);
        ck_assert_int_eq(out[len], '\0');
        free(out);
        free(ids);
    }
    const json_t *tokens = json_object_get(g, "tokens");
    for (size_t i = 0; i < json_array_size(tokens); i++) {
        const json_t *t = json_array_get(tokens, i);
        int32_t id = (int32_t)json_integer_value(json_array_get(t, 0));
        const char *s = json_string_value(json_array_get(t, 1));
        ck_assert_msg(tokenizer_id_to_token(tok, id) && !strcmp(tokenizer_id_to_token(tok, id), s),
                      "%s: id %d is '%s', want '%s'", name, id, tokenizer_id_to_token(tok, id), s);
        ck_assert_int_eq(tokenizer_token_to_id(tok, s), id);
    }
    ck_assert_ptr_null(tokenizer_id_to_token(tok, -1));
    ck_assert_ptr_null(tokenizer_id_to_token(tok, tokenizer_vocab_size(tok)));
    ck_assert_int_eq(tokenizer_token_to_id(tok, "no such token \x01"), -1);
    /* An id outside the vocabulary is an error naming its index. */
    int32_t bad[3] = {1, 2, tokenizer_vocab_size(tok)};
    char *out;
    size_t len;
    ck_assert_int_eq(tokenizer_decode(tok, bad, 3, 0, &out, &len), TP_ERR_RANGE);
    TP_ASSERT_ERR_HAS("index 2");
    tokenizer_free(tok);
    json_decref(g);
}
END_TEST

static uint8_t *unhex(const char *h, size_t *n)
{
    *n = strlen(h) / 2;
    uint8_t *b = malloc(*n + 1);
    for (size_t i = 0; i < *n; i++) sscanf(h + 2 * i, "%2hhx", &b[i]);
    return b;
}

START_TEST(test_invalid_utf8)
{
    const char *name = names[_i];
    json_t *g = load_golden(name);
    tp_tokenizer *tok = load_tokenizer(name, g);
    const json_t *cases = json_object_get(g, "encode_invalid");
    ck_assert_int_ge(json_array_size(cases), 5);
    for (size_t i = 0; i < json_array_size(cases); i++) {
        const json_t *c = json_array_get(cases, i);
        const char *cname = json_string_value(json_object_get(c, "name"));
        size_t len;
        uint8_t *raw = unhex(json_string_value(json_object_get(c, "hex")), &len);
        int32_t *ids;
        size_t n;
        ck_assert_int_eq(tokenizer_encode(tok, (char *)raw, len, TOKENIZER_ADD_SPECIAL, &ids, &n), TP_ERR_FORMAT);
        char want[64];
        snprintf(want, sizeof want, "byte offset %lld ", (long long)json_integer_value(json_object_get(c, "error_offset")));
        ck_assert_msg(strstr(tp_err_msg(), want), "%s: message '%s' lacks '%s'", cname, tp_err_msg(), want);
        ck_assert_msg(tokenizer_encode(tok, (char *)raw, len, TOKENIZER_ADD_SPECIAL | TOKENIZER_REPLACE_INVALID, &ids,
                                       &n) == TP_OK, "%s", tp_err_msg());
        expect_ids("replace", cname, json_object_get(c, "ids_replaced"), ids, n);
        free(ids);
        free(raw);
    }
    tokenizer_free(tok);
    json_decref(g);
}
END_TEST

/* One 200k-byte piece (a single \p{L}+ match) through the merge loop: with the heap
 * this is milliseconds; a rescan per merge would be ~10^10 steps. */
START_TEST(test_long_word_is_fast)
{
    tp_tokenizer *tok;
    ck_assert_msg(tokenizer_load(tp_test_data("tokenizers/cl100k-dolma2/tokenizer.json"), &tok) == TP_OK, "%s",
                  tp_err_msg());
    size_t len = 200000;
    char *text = malloc(len);
    for (size_t i = 0; i < len; i++) text[i] = "abcdefghij"[(i * 7 + i / 13) % 10];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int32_t *ids;
    size_t n;
    ck_assert(tokenizer_encode(tok, text, len, 0, &ids, &n) == TP_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    ck_assert_msg(s < 2.0, "200k-byte word took %.2f s", s);
    ck_assert_int_gt(n, len / 8);
    char *out;
    size_t out_len;
    ck_assert(tokenizer_decode(tok, ids, n, 0, &out, &out_len) == TP_OK);
    ck_assert(out_len == len && !memcmp(out, text, len));
    free(out);
    free(ids);
    free(text);
    tokenizer_free(tok);
}
END_TEST

/* A minimal valid tokenizer.json, and one with a piece replaced. */
#define PT "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"
static const char *const BASE =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[],\"normalizer\":null,"
    "\"pre_tokenizer\":" PT ","
    "\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
    "\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\xc4\xa0\":3},\"merges\":[\"a b\"]}}";

static tp_status load_variant(const char *from, const char *to, tp_tokenizer **tok)
{
    char doc[4096], path[512];
    const char *at = strstr(BASE, from);
    ck_assert_msg(at != NULL, "'%s' not in the base tokenizer", from);
    snprintf(doc, sizeof doc, "%.*s%s%s", (int)(at - BASE), BASE, to, at + strlen(from));
    snprintf(path, sizeof path, "%s/variant.json", tp_test_tmpdir());
    ck_assert_int_eq(tp_test_write_file(path, doc, strlen(doc)), 0);
    return tokenizer_load(path, tok);
}

START_TEST(test_unsupported_refused_by_name)
{
    tp_tokenizer *tok;
    ck_assert_msg(load_variant("", "", &tok) == TP_OK, "%s", tp_err_msg());
    int32_t *ids;
    size_t n;
    /* "c" has no vocabulary entry and there is no unk_token: dropped, as tokenizers does. */
    ck_assert(tokenizer_encode(tok, "ab ab c", 7, 0, &ids, &n) == TP_OK);
    ck_assert_int_eq(n, 4);
    ck_assert(ids[0] == 2 && ids[1] == 3 && ids[2] == 2 && ids[3] == 3);
    free(ids);
    tokenizer_free(tok);

    struct { const char *from, *to, *word; tp_status st; } bad[] = {
        {"\"type\":\"BPE\"", "\"type\":\"WordPiece\"", "model 'WordPiece'", TP_ERR_UNSUPPORTED},
        {"\"normalizer\":null", "\"normalizer\":{\"type\":\"NFC\"}", "normalizer 'NFC'", TP_ERR_UNSUPPORTED},
        {"\"normalizer\":null", "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"}]}",
         "normalizer 'Lowercase'", TP_ERR_UNSUPPORTED},
        {PT, "{\"type\":\"Metaspace\",\"add_prefix_space\":false}",
         "pre_tokenizer 'Metaspace'", TP_ERR_UNSUPPORTED},
        {PT, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Whitespace\"}," PT "]}",
         "pre-tokenizer 'Whitespace'", TP_ERR_UNSUPPORTED},
        {PT, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s\"},"
         "\"behavior\":\"MergedWithNext\",\"invert\":false}," PT "]}", "Split behavior 'MergedWithNext'", TP_ERR_UNSUPPORTED},
        {PT, "{\"type\":\"Sequence\",\"pretokenizers\":[" PT ",{\"type\":\"Split\",\"pattern\":{\"String\":\"x\"},"
         "\"behavior\":\"Isolated\"}]}", "then one ByteLevel", TP_ERR_UNSUPPORTED},
        {PT, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\"},"
         "\"behavior\":\"Isolated\"}," PT "]}", "Split regex does not compile", TP_ERR_UNSUPPORTED},
        {"\"decoder\":{\"type\":\"ByteLevel\"}", "\"decoder\":{\"type\":\"WordPiece\"}", "decoder 'WordPiece'",
         TP_ERR_UNSUPPORTED},
        {"\"post_processor\":null", "\"post_processor\":{\"type\":\"BertProcessing\"}", "post_processor 'BertProcessing'",
         TP_ERR_UNSUPPORTED},
        {"\"type\":\"BPE\",", "\"type\":\"BPE\",\"byte_fallback\":true,", "byte_fallback", TP_ERR_UNSUPPORTED},
        {"\"truncation\":null", "\"truncation\":{\"max_length\":8}", "truncation", TP_ERR_UNSUPPORTED},
        {"[\"a b\"]", "[\"a c\"]", "merges[0] 'a c'", TP_ERR_FORMAT},
        {"[\"a b\"]", "[\"a b\",[\"a\",\"b\",\"c\"]]", "merges[1]", TP_ERR_FORMAT},
        {"\"merges\"", "\"merges\",", "not valid JSON", TP_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tok = NULL;
        tp_status st = load_variant(bad[i].from, bad[i].to, &tok);
        ck_assert_msg(st == bad[i].st, "case %zu: status %s, message '%s'", i, tp_status_name(st), tp_err_msg());
        ck_assert_ptr_null(tok);
        ck_assert_msg(strstr(tp_err_msg(), bad[i].word) && strstr(tp_err_msg(), "variant.json"),
                      "case %zu: message '%s' lacks '%s' or the file name", i, tp_err_msg(), bad[i].word);
    }
    ck_assert_int_eq(tokenizer_load("/nonexistent/tokenizer.json", &tok), TP_ERR_IO);
    TP_ASSERT_ERR_HAS("/nonexistent/tokenizer.json");
}
END_TEST

int main(void)
{
    find_tokenizers();
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("parity");
    tcase_set_timeout(tc, 120);
    int n = n_names > 0 ? n_names : 1;   /* with none found, the first test fails saying so */
    tcase_add_loop_test(tc, test_encode_parity, 0, n);
    tcase_add_loop_test(tc, test_decode_and_vocab, 0, n_names);
    tcase_add_loop_test(tc, test_invalid_utf8, 0, n_names);
    tcase_add_test(tc, test_long_word_is_fast);
    tcase_add_test(tc, test_unsupported_refused_by_name);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
