#include "io/corpus.h"

#include "core/fsutil.h"

#include "core/rng.h"

#include <errno.h>
#include <glob.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    uint32_t file;
    int64_t line;         /* 1-based for JSONL, 0 for a .txt document */
    uint64_t offset;      /* byte offset of the line / file start */
    uint64_t length;
} doc_ref;

struct corpus {
    char **files;
    size_t nfiles;
    doc_ref *docs;
    size_t ndocs, cap;
    size_t skipped;
};

int64_t utf8_first_invalid(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return (int64_t)i;
        if (i + len > n) return (int64_t)i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return (int64_t)i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return (int64_t)i;
        i += len;
    }
    return -1;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static int is_corpus_file(const char *p)
{
    return ends_with(p, ".jsonl") || ends_with(p, ".txt");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static tp_status add_file(corpus *c, const char *path)
{
    char **f = realloc(c->files, (c->nfiles + 1) * sizeof *f);
    if (!f) return tp_err(TP_ERR_NOMEM, "out of memory");
    c->files = f;
    c->files[c->nfiles] = strdup(path);
    if (!c->files[c->nfiles]) return tp_err(TP_ERR_NOMEM, "out of memory");
    c->nfiles++;
    return TP_OK;
}

static tp_status add_doc(corpus *c, uint32_t file, int64_t line, uint64_t off, uint64_t len)
{
    if (c->ndocs == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 1024;
        doc_ref *d = realloc(c->docs, cap * sizeof *d);
        if (!d) return tp_err(TP_ERR_NOMEM, "out of memory indexing the corpus");
        c->docs = d, c->cap = cap;
    }
    c->docs[c->ndocs++] = (doc_ref){file, line, off, len};
    return TP_OK;
}

/* Validates one JSONL line; on success *text/len point into the decoded object. */
static tp_status parse_line(const char *line, size_t n, const char *file, int64_t lineno,
                            json_t **obj_out)
{
    json_error_t je;
    json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o) {
        /* jansson reports invalid UTF-8 as such; name the byte when we can. */
        int64_t bad = utf8_first_invalid(line, n);
        if (bad >= 0)
            return tp_err(TP_ERR_FORMAT, "%s:%lld: invalid UTF-8 at byte %lld of the line", file,
                          (long long)lineno, (long long)bad);
        return tp_err(TP_ERR_FORMAT, "%s:%lld: malformed JSON: %s (column %d)", file, (long long)lineno,
                      je.text, je.column);
    }
    json_t *t = json_object_get(o, "text");
    const char *bad_field = NULL;
    if (!json_is_object(o)) bad_field = "line is not a JSON object";
    else if (!json_is_string(t)) bad_field = "no string field \"text\"";
    else if (json_object_get(o, "source") && !json_is_string(json_object_get(o, "source")))
        bad_field = "\"source\" is not a string";
    else if (json_object_get(o, "domain") && !json_is_string(json_object_get(o, "domain")))
        bad_field = "\"domain\" is not a string";
    else if (memchr(json_string_value(t), '\0', json_string_length(t)))
        bad_field = "\"text\" contains a NUL character";
    if (bad_field) {
        json_decref(o);
        return tp_err(TP_ERR_FORMAT, "%s:%lld: %s", file, (long long)lineno, bad_field);
    }
    *obj_out = o;
    return TP_OK;
}

static tp_status scan_file(corpus *c, uint32_t fi, bool skip_malformed)
{
    const char *path = c->files[fi];
    FILE *f = fopen(path, "rb");
    if (!f) return tp_err(TP_ERR_IO, "cannot open corpus file '%s': %s", path, strerror(errno));
    tp_status st = TP_OK;
    if (ends_with(path, ".txt")) {
        /* One document per text file. */
        struct stat sb;
        if (fstat(fileno(f), &sb) != 0) st = tp_err(TP_ERR_IO, "%s: %s", path, strerror(errno));
        char *buf = st == TP_OK ? malloc((size_t)sb.st_size + 1) : NULL;
        if (st == TP_OK && !buf) st = tp_err(TP_ERR_NOMEM, "out of memory reading '%s'", path);
        if (st == TP_OK && fread(buf, 1, (size_t)sb.st_size, f) != (size_t)sb.st_size)
            st = tp_err(TP_ERR_IO, "reading '%s' failed", path);
        if (st == TP_OK) {
            int64_t bad = utf8_first_invalid(buf, (size_t)sb.st_size);
            if (bad >= 0) {
                if (skip_malformed) c->skipped++;
                else st = tp_err(TP_ERR_FORMAT, "%s: invalid UTF-8 at byte %lld", path, (long long)bad);
            } else if (sb.st_size > 0) {
                st = add_doc(c, fi, 0, 0, (uint64_t)sb.st_size);
            }
        }
        free(buf);
        fclose(f);
        return st;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int64_t lineno = 0;
    uint64_t off = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        uint64_t this_off = off;
        off += (uint64_t)n;
        size_t len = (size_t)n;
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        size_t k = 0;
        while (k < len && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == len) continue;   /* blank line */
        json_t *o = NULL;
        tp_status ps = parse_line(line, len, path, lineno, &o);
        if (ps != TP_OK) {
            if (skip_malformed) { c->skipped++; continue; }
            st = ps;
            break;
        }
        json_decref(o);
        st = add_doc(c, fi, lineno, this_off, len);
        if (st != TP_OK) break;
    }
    if (st == TP_OK && ferror(f)) st = tp_err(TP_ERR_IO, "reading '%s' failed: %s", path, strerror(errno));
    free(line);
    fclose(f);
    return st;
}

static tp_status collect_files(corpus *c, const char *spec)
{
    struct stat sb;
    if (stat(spec, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(spec);
        if (!d) return tp_err(TP_ERR_IO, "cannot open corpus directory '%s': %s", spec, strerror(errno));
        struct dirent *e;
        tp_status st = TP_OK;
        while (st == TP_OK && (e = readdir(d))) {
            if (e->d_name[0] == '.' || !is_corpus_file(e->d_name)) continue;
            char p[TP_PATH_MAX];
            st = fs_join(p, sizeof p, spec, e->d_name);
            if (st == TP_OK) st = add_file(c, p);
        }
        closedir(d);
        TP_CHECK(st);
        if (!c->nfiles) return tp_err(TP_ERR_IO, "corpus directory '%s' has no .jsonl or .txt files", spec);
    } else if (strpbrk(spec, "*?[")) {
        glob_t g;
        int rc = glob(spec, 0, NULL, &g);
        if (rc == GLOB_NOMATCH) return tp_err(TP_ERR_IO, "corpus pattern '%s' matches no file", spec);
        if (rc != 0) return tp_err(TP_ERR_IO, "corpus pattern '%s': glob failed", spec);
        tp_status st = TP_OK;
        for (size_t i = 0; i < g.gl_pathc && st == TP_OK; i++) st = add_file(c, g.gl_pathv[i]);
        globfree(&g);
        TP_CHECK(st);
    } else {
        if (stat(spec, &sb) != 0) return tp_err(TP_ERR_IO, "corpus '%s': %s", spec, strerror(errno));
        if (!is_corpus_file(spec))
            return tp_err(TP_ERR_FORMAT, "corpus file '%s': expected a .jsonl or .txt file", spec);
        TP_CHECK(add_file(c, spec));
    }
    qsort(c->files, c->nfiles, sizeof *c->files, cmp_str);
    return TP_OK;
}

tp_status corpus_open(const char *spec, bool skip_malformed, corpus **out)
{
    corpus *c = tp_calloc(1, sizeof *c);
    if (!c) return TP_ERR_NOMEM;
    tp_status st = collect_files(c, spec);
    for (size_t i = 0; st == TP_OK && i < c->nfiles; i++) st = scan_file(c, (uint32_t)i, skip_malformed);
    if (st == TP_OK && c->ndocs == 0)
        st = tp_err(TP_ERR_FORMAT, "corpus '%s' has no documents", spec);
    if (st != TP_OK) { corpus_close(c); return st; }
    *out = c;
    return TP_OK;
}

void corpus_close(corpus *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->nfiles; i++) free(c->files[i]);
    free(c->files);
    free(c->docs);
    free(c);
}

size_t corpus_count(const corpus *c) { return c->ndocs; }
size_t corpus_skipped(const corpus *c) { return c->skipped; }
size_t corpus_num_files(const corpus *c) { return c->nfiles; }

const char *corpus_where(const corpus *c, size_t i, char *buf, size_t n)
{
    const doc_ref *d = &c->docs[i];
    if (d->line) snprintf(buf, n, "%s:%lld", c->files[d->file], (long long)d->line);
    else snprintf(buf, n, "%s", c->files[d->file]);
    return buf;
}

static char *dup_or_empty(json_t *v)
{
    return strdup(json_is_string(v) ? json_string_value(v) : "");
}

tp_status corpus_read(const corpus *c, size_t i, corpus_doc *doc)
{
    memset(doc, 0, sizeof *doc);
    if (i >= c->ndocs) return tp_err(TP_ERR_RANGE, "document %zu out of range [0, %zu)", i, c->ndocs);
    const doc_ref *d = &c->docs[i];
    const char *path = c->files[d->file];
    FILE *f = fopen(path, "rb");
    if (!f) return tp_err(TP_ERR_IO, "cannot open corpus file '%s': %s", path, strerror(errno));
    char *buf = malloc(d->length + 1);
    tp_status st = TP_OK;
    if (!buf) st = tp_err(TP_ERR_NOMEM, "out of memory");
    else if (fseeko(f, (off_t)d->offset, SEEK_SET) != 0 || fread(buf, 1, d->length, f) != d->length)
        st = tp_err(TP_ERR_IO, "%s: cannot read document at byte %llu (file changed since it was indexed?)",
                    path, (unsigned long long)d->offset);
    fclose(f);
    if (st != TP_OK) { free(buf); return st; }
    buf[d->length] = '\0';
    if (!d->line) {
        doc->text = buf, doc->len = d->length;
        doc->source = strdup(path), doc->domain = strdup("");
    } else {
        json_t *o = NULL;
        st = parse_line(buf, d->length, path, d->line, &o);
        free(buf);
        if (st != TP_OK) return st;
        json_t *t = json_object_get(o, "text");
        doc->len = json_string_length(t);
        doc->text = malloc(doc->len + 1);
        if (doc->text) {
            memcpy(doc->text, json_string_value(t), doc->len);
            doc->text[doc->len] = '\0';
        }
        doc->source = dup_or_empty(json_object_get(o, "source"));
        doc->domain = dup_or_empty(json_object_get(o, "domain"));
        json_decref(o);
    }
    if (!doc->text || !doc->source || !doc->domain) {
        corpus_doc_free(doc);
        return tp_err(TP_ERR_NOMEM, "out of memory");
    }
    return TP_OK;
}

void corpus_doc_free(corpus_doc *doc)
{
    free(doc->text);
    free(doc->source);
    free(doc->domain);
    memset(doc, 0, sizeof *doc);
}


static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

tp_status corpus_sample(const corpus *c, size_t n, uint64_t seed, size_t *idx, size_t *count)
{
    size_t D = c->ndocs;
    if (n >= D) {
        for (size_t i = 0; i < D; i++) idx[i] = i;
        *count = D;
        return TP_OK;
    }
    /* Floyd's algorithm (Bentley & Floyd 1987): n distinct draws, each O(1) with an
     * open-addressing set of the indices drawn so far. */
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    size_t *set = malloc(cap * sizeof *set);
    if (!set) return tp_err(TP_ERR_NOMEM, "out of memory sampling %zu documents", n);
    for (size_t k = 0; k < cap; k++) set[k] = SIZE_MAX;
    uint64_t s = seed ^ 0x7472616E73706F6Cull;   /* "transpol" */
    size_t m = 0;
    for (size_t j = D - n; j < D; j++) {
        size_t t = (size_t)(tp_splitmix64(&s) % (uint64_t)(j + 1));
        size_t pick = t;
        for (int pass = 0; pass < 2; pass++) {
            size_t h = (size_t)((pick * 0x9E3779B97F4A7C15ull) & (cap - 1));
            while (set[h] != SIZE_MAX && set[h] != pick) h = (h + 1) & (cap - 1);
            if (set[h] == SIZE_MAX) { set[h] = pick; break; }
            pick = j;   /* t was drawn before: take j, which cannot have been */
        }
        idx[m++] = pick;
    }
    free(set);
    qsort(idx, m, sizeof *idx, cmp_size);
    *count = m;
    return TP_OK;
}

tp_status corpus_hash(const corpus *c, uint64_t *hash)
{
    uint64_t h = 0xcbf29ce484222325ull;
    unsigned char buf[1 << 16];
    for (size_t i = 0; i < c->nfiles; i++) {
        const char *base = strrchr(c->files[i], '/');
        base = base ? base + 1 : c->files[i];
        for (const char *p = base; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
        FILE *f = fopen(c->files[i], "rb");
        if (!f) return tp_err(TP_ERR_IO, "cannot open corpus file '%s': %s", c->files[i], strerror(errno));
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            for (size_t k = 0; k < n; k++) h = (h ^ buf[k]) * 0x100000001b3ull;
        int bad = ferror(f);
        fclose(f);
        if (bad) return tp_err(TP_ERR_IO, "reading '%s' failed", c->files[i]);
    }
    *hash = h;
    return TP_OK;
}

tp_status corpus_fingerprint(const char *spec, fs_fingerprint *fp)
{
    fs_fingerprint_init(fp);
    corpus c = {0};
    tp_status st = collect_files(&c, spec);
    for (size_t i = 0; st == TP_OK && i < c.nfiles; i++) st = fs_fingerprint_add(fp, c.files[i], 0);
    for (size_t i = 0; i < c.nfiles; i++) free(c.files[i]);
    free(c.files);
    return st;
}
