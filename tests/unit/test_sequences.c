/* Documents to sequences: split never crosses documents and keeps every token;
 * pack joins documents with EOS into full sequences and drops only the short tail.
 * Token ids come from the C tokenizer (itself checked against `tokenizers`). */
#include "tp_test.h"

#include "io/corpus.h"
#include "data/sequences.h"
#include "model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *docs_text[] = {
    "In the beginning God created the heaven and the earth.",
    "A fool and his money are soon parted.",
    "def main():\n    return 0\n",
    "ls - list directory contents",
};
#define NDOCS 4

static corpus *make_corpus(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/seq.jsonl", tp_test_tmpdir());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    for (int i = 0; i < NDOCS; i++) {
        fputs("{\"text\": \"", f);
        for (const char *p = docs_text[i]; *p; p++) {
            if (*p == '\n') fputs("\\n", f);
            else fputc(*p, f);
        }
        fputs("\"}\n", f);
    }
    fclose(f);
    corpus *c;
    ck_assert_msg(corpus_open(path, false, &c) == TP_OK, "%s", tp_err_msg());
    return c;
}

static tp_tokenizer *load_tok(void)
{
    tp_tokenizer *t;
    ck_assert_msg(tokenizer_load(tp_test_data("tokenizers/bpe-small/tokenizer.json"), &t) == TP_OK, "%s",
                  tp_err_msg());
    return t;
}

START_TEST(test_split)
{
    corpus *c = make_corpus();
    tp_tokenizer *tok = load_tok();
    size_t idx[NDOCS] = {0, 1, 2, 3};
    size_t per_doc[NDOCS], total = 0;
    for (int i = 0; i < NDOCS; i++) {
        int32_t *ids;
        ck_assert(tokenizer_encode(tok, docs_text[i], strlen(docs_text[i]), 0, &ids, &per_doc[i]) == TP_OK);
        total += per_doc[i];
        free(ids);
    }
    int L = 5;
    tp_sequences s;
    ck_assert(sequences_build(c, idx, NDOCS, tok, L, TP_PACK_SPLIT, 0, 0, &s) == TP_OK);
    ck_assert_uint_eq(s.n_tokens, total);
    size_t want_seqs = 0;
    for (int i = 0; i < NDOCS; i++) want_seqs += (per_doc[i] + L - 1) / L;
    ck_assert_uint_eq(s.n_seqs, want_seqs);
    size_t k = 0;
    for (int i = 0; i < NDOCS; i++) {
        size_t left = per_doc[i];
        while (left) {
            size_t len = left < (size_t)L ? left : (size_t)L;
            ck_assert_uint_eq(sequences_len(&s, k), len);
            ck_assert_uint_eq(s.seq_doc[k], (size_t)i);
            left -= len;
            k++;
        }
    }
    sequences_free(&s);
    /* A subset keeps the given documents only. */
    size_t sub[2] = {1, 3};
    ck_assert(sequences_build(c, sub, 2, tok, 1000, TP_PACK_SPLIT, 0, 0, &s) == TP_OK);
    ck_assert_uint_eq(s.n_seqs, 2);
    ck_assert_uint_eq(s.n_tokens, per_doc[1] + per_doc[3]);
    ck_assert_uint_eq(s.seq_doc[1], 3);
    sequences_free(&s);
    tokenizer_free(tok);
    corpus_close(c);
}
END_TEST

START_TEST(test_pack)
{
    corpus *c = make_corpus();
    tp_tokenizer *tok = load_tok();
    size_t idx[NDOCS] = {0, 1, 2, 3};
    int32_t eos = 7;
    /* Reference stream: every document's ids followed by EOS. */
    int32_t stream[4096];
    size_t n = 0;
    for (int i = 0; i < NDOCS; i++) {
        int32_t *ids;
        size_t m;
        ck_assert(tokenizer_encode(tok, docs_text[i], strlen(docs_text[i]), 0, &ids, &m) == TP_OK);
        memcpy(stream + n, ids, m * sizeof *ids);
        n += m;
        stream[n++] = eos;
        free(ids);
    }
    int L = 8;
    tp_sequences s;
    ck_assert(sequences_build(c, idx, NDOCS, tok, L, TP_PACK_PACK, eos, 0, &s) == TP_OK);
    ck_assert_uint_eq(s.n_seqs, n / L);
    ck_assert_uint_eq(s.n_tokens, (n / L) * L);
    ck_assert_mem_eq(s.tokens, stream, s.n_tokens * sizeof(int32_t));
    for (size_t i = 0; i < s.n_seqs; i++) ck_assert_uint_eq(sequences_len(&s, i), (size_t)L);
    ck_assert_uint_eq(s.seq_doc[0], 0);
    sequences_free(&s);
    ck_assert_int_eq(sequences_build(c, idx, NDOCS, tok, 1, TP_PACK_PACK, eos, 0, &s), TP_ERR_RANGE);
    tokenizer_free(tok);
    corpus_close(c);
}
END_TEST

/* data.max_doc_tokens: a longer document keeps its first max tokens, the prefix of
 * its full tokenization; shorter documents are untouched; n_cut counts the cut ones.
 * The byte cut (16 bytes a token) then keeps a long document's prefix too. */
START_TEST(test_max_doc_tokens)
{
    corpus *c = make_corpus();
    tp_tokenizer *tok = load_tok();
    size_t idx[NDOCS] = {0, 1, 2, 3};
    size_t per_doc[NDOCS];
    int32_t *full[NDOCS];
    for (int i = 0; i < NDOCS; i++)
        ck_assert(tokenizer_encode(tok, docs_text[i], strlen(docs_text[i]), 0, &full[i], &per_doc[i]) == TP_OK);
    for (size_t cap = 2; cap <= 8; cap += 3) {
        size_t want_cut = 0;
        for (int i = 0; i < NDOCS; i++) want_cut += per_doc[i] > cap || strlen(docs_text[i]) > 16 * cap;
        ck_assert_uint_gt(want_cut, 0);
        tp_sequences s;
        ck_assert(sequences_build(c, idx, NDOCS, tok, 1000, TP_PACK_SPLIT, 0, cap, &s) == TP_OK);
        ck_assert_uint_eq(s.n_cut, want_cut);
        for (int i = 0; i < NDOCS; i++) {
            size_t want = per_doc[i] < cap ? per_doc[i] : cap;
            ck_assert_uint_eq(s.doc_start[i + 1] - s.doc_start[i], want);
            ck_assert_int_eq(memcmp(s.tokens + s.doc_start[i], full[i], want * sizeof(int32_t)), 0);
        }
        sequences_free(&s);
    }
    for (int i = 0; i < NDOCS; i++) free(full[i]);
    tokenizer_free(tok);
    corpus_close(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sequences");
    TCase *tc = tcase_create("build");
    tcase_add_test(tc, test_split);
    tcase_add_test(tc, test_pack);
    tcase_add_test(tc, test_max_doc_tokens);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
