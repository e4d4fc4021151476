/* Corpus reader: JSONL, text files, directories, globs; malformed lines are errors
 * naming file and line (or skipped and counted); deterministic sampling. */
#include "tp_test.h"

#include "io/corpus.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Paths live in caller-owned buffers of PATH_LEN bytes. */
#define PATH_LEN 512

static const char *path_in(char *out, const char *dir, const char *name)
{
    if (strlen(dir) + strlen(name) + 2 > PATH_LEN) abort();
    strcpy(out, dir);
    strcat(out, "/");
    strcat(out, name);
    return out;
}

static const char *make_dir(char *out, const char *name)
{
    path_in(out, tp_test_tmpdir(), name);
    mkdir(out, 0777);
    return out;
}

static void write_text(const char *path, const char *s)
{
    ck_assert_int_eq(tp_test_write_file(path, s, strlen(s)), 0);
}

START_TEST(test_jsonl_and_txt)
{
    char dbuf[PATH_LEN], p[PATH_LEN];
    const char *d = make_dir(dbuf, "good");
    write_text(path_in(p, d, "b.jsonl"),
               "{\"text\": \"second file\", \"domain\": \"code\"}\n");
    write_text(path_in(p, d, "a.jsonl"),
               "{\"text\": \"hello \\u00e9\\n world\", \"source\": \"s1\", \"domain\": \"prose\"}\n"
               "\n"
               "{\"text\": \"caf\\u00e9 \\ud83d\\ude00\"}\r\n");
    write_text(path_in(p, d, "c.txt"), "plain text file\nline two\n");
    write_text(path_in(p, d, "ignored.md"), "not a corpus file");
    corpus *c;
    ck_assert_msg(corpus_open(d, false, &c) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(corpus_count(c), 4);
    ck_assert_int_eq(corpus_num_files(c), 3);
    corpus_doc doc;
    ck_assert(corpus_read(c, 0, &doc) == TP_OK);   /* a.jsonl line 1 (sorted files) */
    ck_assert_str_eq(doc.text, "hello \xc3\xa9\n world");
    ck_assert_str_eq(doc.source, "s1");
    ck_assert_str_eq(doc.domain, "prose");
    corpus_doc_free(&doc);
    ck_assert(corpus_read(c, 1, &doc) == TP_OK);
    ck_assert_str_eq(doc.text, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    ck_assert_str_eq(doc.domain, "");
    corpus_doc_free(&doc);
    ck_assert(corpus_read(c, 3, &doc) == TP_OK);
    ck_assert_str_eq(doc.text, "plain text file\nline two\n");
    corpus_doc_free(&doc);
    char where[600];
    ck_assert_ptr_nonnull(strstr(corpus_where(c, 1, where, sizeof where), "a.jsonl:3"));
    ck_assert_int_eq(corpus_read(c, 4, &doc), TP_ERR_RANGE);
    corpus_close(c);

    /* A glob and a single file give the same documents. */
    char pat[600];
    snprintf(pat, sizeof pat, "%s/*.jsonl", d);
    ck_assert(corpus_open(pat, false, &c) == TP_OK);
    ck_assert_int_eq(corpus_count(c), 3);
    corpus_close(c);
    ck_assert(corpus_open(path_in(p, d, "b.jsonl"), false, &c) == TP_OK);
    ck_assert_int_eq(corpus_count(c), 1);
    corpus_close(c);
}
END_TEST

static void expect_error(const char *content, const char *name, tp_status want, const char *w1, const char *w2)
{
    char dbuf[PATH_LEN], fbuf[PATH_LEN];
    const char *d = make_dir(dbuf, name);
    const char *f = path_in(fbuf, d, "x.jsonl");
    ck_assert_int_eq(tp_test_write_file(f, content, strlen(content)), 0);
    corpus *c = NULL;
    ck_assert_int_eq(corpus_open(f, false, &c), want);
    const char *m = tp_err_msg();
    ck_assert_msg(strstr(m, f) && strstr(m, w1) && (!w2 || strstr(m, w2)), "message: %s", m);
    ck_assert_ptr_null(strchr(m, '\n'));
    /* Skipping: the good line survives, the bad one is counted. */
    ck_assert(corpus_open(f, true, &c) == TP_OK);
    ck_assert_int_eq(corpus_count(c), 1);
    ck_assert_int_eq(corpus_skipped(c), 1);
    corpus_close(c);
}

START_TEST(test_malformed)
{
    expect_error("{\"text\": \"ok\"}\n{\"text\": \"broken\"\n", "m1", TP_ERR_FORMAT, ":2:", "malformed JSON");
    expect_error("{\"text\": \"ok\"}\n{\"body\": \"x\"}\n", "m2", TP_ERR_FORMAT, ":2:", "\"text\"");
    expect_error("[1, 2]\n{\"text\": \"ok\"}\n", "m3", TP_ERR_FORMAT, ":1:", "not a JSON object");
    expect_error("{\"text\": \"ok\"}\n{\"text\": \"bad \xff byte\"}\n", "m4", TP_ERR_FORMAT, ":2:", "UTF-8");
    expect_error("{\"text\": \"ok\"}\n{\"text\": 5}\n", "m5", TP_ERR_FORMAT, ":2:", "\"text\"");
    expect_error("{\"text\": \"a\\u0000b\"}\n{\"text\": \"ok\"}\n", "m6", TP_ERR_FORMAT, ":1:", "NUL");
}
END_TEST

START_TEST(test_missing_and_empty)
{
    corpus *c;
    ck_assert_int_eq(corpus_open("/nonexistent/corpus.jsonl", false, &c), TP_ERR_IO);
    TP_ASSERT_ERR_HAS("/nonexistent/corpus.jsonl");
    char dbuf[PATH_LEN], p[PATH_LEN];
    const char *d = make_dir(dbuf, "empty");
    ck_assert_int_eq(corpus_open(d, false, &c), TP_ERR_IO);
    write_text(path_in(p, d, "e.jsonl"), "\n\n");
    ck_assert_int_eq(corpus_open(d, false, &c), TP_ERR_FORMAT);
    TP_ASSERT_ERR_HAS("no documents");
}
END_TEST

START_TEST(test_utf8)
{
    ck_assert_int_eq(utf8_first_invalid("abc", 3), -1);
    ck_assert_int_eq(utf8_first_invalid("\xe2\x82\xac ok", 6), -1);
    ck_assert_int_eq(utf8_first_invalid("ab\xc0\xaf", 4), 2);        /* overlong '/' */
    ck_assert_int_eq(utf8_first_invalid("a\xed\xa0\x80", 4), 1);      /* surrogate */
    ck_assert_int_eq(utf8_first_invalid("a\xf4\x90\x80\x80", 5), 1);  /* > U+10FFFF */
    ck_assert_int_eq(utf8_first_invalid("abc\xe2\x82", 5), 3);        /* truncated */
    ck_assert_int_eq(utf8_first_invalid("\x80", 1), 0);
}
END_TEST

START_TEST(test_sampling)
{
    char dbuf[PATH_LEN], p[PATH_LEN];
    const char *d = make_dir(dbuf, "sample");
    FILE *f = fopen(path_in(p, d, "s.jsonl"), "w");
    for (int i = 0; i < 1000; i++) fprintf(f, "{\"text\": \"doc %d\"}\n", i);
    fclose(f);
    corpus *c;
    ck_assert(corpus_open(d, false, &c) == TP_OK);
    size_t a[100], b[100], n1, n2;
    ck_assert(corpus_sample(c, 100, 7, a, &n1) == TP_OK);
    ck_assert(corpus_sample(c, 100, 7, b, &n2) == TP_OK);
    ck_assert_int_eq(n1, 100);
    ck_assert_int_eq(n2, 100);
    ck_assert_mem_eq(a, b, sizeof a);
    for (int i = 1; i < 100; i++) ck_assert_uint_lt(a[i - 1], a[i]);   /* sorted, distinct */
    ck_assert_uint_lt(a[99], 1000);
    ck_assert(corpus_sample(c, 100, 8, b, &n2) == TP_OK);
    ck_assert(memcmp(a, b, sizeof a) != 0);                             /* seed matters */
    /* Roughly uniform: the sample spreads over the whole range. */
    ck_assert_uint_lt(a[0], 100);
    ck_assert_uint_gt(a[99], 900);
    size_t all[1000];
    ck_assert(corpus_sample(c, 5000, 7, all, &n1) == TP_OK);
    ck_assert_int_eq(n1, 1000);
    uint64_t h1, h2;
    ck_assert(corpus_hash(c, &h1) == TP_OK);
    corpus_close(c);
    f = fopen(path_in(p, d, "s.jsonl"), "a");
    fprintf(f, "{\"text\": \"one more\"}\n");
    fclose(f);
    ck_assert(corpus_open(d, false, &c) == TP_OK);
    ck_assert(corpus_hash(c, &h2) == TP_OK);
    ck_assert(h1 != h2);
    corpus_close(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("corpus");
    TCase *tc = tcase_create("reader");
    tcase_add_test(tc, test_jsonl_and_txt);
    tcase_add_test(tc, test_malformed);
    tcase_add_test(tc, test_missing_and_empty);
    tcase_add_test(tc, test_utf8);
    tcase_add_test(tc, test_sampling);
    suite_add_tcase(s, tc);
    return tp_test_run_suite(s);
}
