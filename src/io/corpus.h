/* corpus.h — text corpora: JSONL or plain-text files, a directory of them, or a glob.
 *
 * corpus_open() scans every file once, validating as it goes, and keeps only an
 * index (file, byte offset, length) per document, so memory is O(documents), not
 * O(text). JSONL: one object per line with a string "text" and optional "source"
 * and "domain"; blank lines are skipped. A .txt file is one document. A malformed
 * line (bad JSON, no "text", invalid UTF-8) is an error naming the file and line,
 * or — with skip_malformed — skipped and counted. Files are taken in sorted path
 * order, documents in file order: document i is the same on every rank.
 */
#ifndef TP_CORPUS_H
#define TP_CORPUS_H

#include "core/error.h"
#include "core/fsutil.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *text;           /* NUL-terminated, valid UTF-8; owned by the caller (corpus_doc_free) */
    size_t len;
    char *source, *domain; /* "" if absent */
} corpus_doc;

typedef struct corpus corpus;

tp_status corpus_open(const char *spec, bool skip_malformed, corpus **out);
void corpus_close(corpus *c);

size_t corpus_count(const corpus *c);
size_t corpus_skipped(const corpus *c);          /* malformed lines skipped */
size_t corpus_num_files(const corpus *c);
/* Reads document i (0 <= i < count). */
tp_status corpus_read(const corpus *c, size_t i, corpus_doc *doc);
void corpus_doc_free(corpus_doc *doc);
/* Where document i comes from ("file:line"), for messages. */
const char *corpus_where(const corpus *c, size_t i, char *buf, size_t n);

/* Deterministic sample of n distinct document indices by seed, in increasing order
 * (n >= count gives every document). idx must hold min(n, count) entries; *count
 * gets that number. The same (corpus, n, seed) gives the same sample everywhere. */
tp_status corpus_sample(const corpus *c, size_t n, uint64_t seed, size_t *idx, size_t *count);

/* 64-bit FNV-1a over every file's path-relative name and bytes (provenance). */
tp_status corpus_hash(const corpus *c, uint64_t *hash);
/* The fingerprint (fsutil.h: sizes, newest mtime, sampled blocks) of the files the
 * spec names, without reading their documents: what later phases check cheaply. */
tp_status corpus_fingerprint(const char *spec, fs_fingerprint *fp);

/* First invalid byte of s[0..n) as UTF-8 (overlong, surrogate, > U+10FFFF,
 * truncated), or -1 if valid. */
int64_t utf8_first_invalid(const char *s, size_t n);

#endif
