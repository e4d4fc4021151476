/* safetensors.c — open, validate and write safetensors checkpoints.
 *
 * Format (huggingface/safetensors): u64 little-endian header length N, N bytes of
 * JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {str: str}}, then the data section; offsets are relative to its start. Everything
 * the forward pass later trusts (dtype, shape, byte range) is checked here once.
 */
#include "io/safetensors.h"

#include "core/fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A header bigger than this is corruption, not a model: the largest real headers
 * (thousands of tensors) are a few MiB. The Rust reference uses 100 MB. */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)

#define ST_SINGLE_NAME "model.safetensors"
#define ST_INDEX_NAME "model.safetensors.index.json"

typedef struct {
    char *path;
    unsigned char *map; /* whole file, read-only */
    size_t size;
} st_map;

struct st_file {
    st_map *maps;
    size_t n_maps;
    st_tensor *tensors; /* sorted by name once opening is complete */
    size_t n_tensors, cap_tensors;
    size_t total_bytes;
};

/* ---- small helpers ----------------------------------------------------------- */

static char *path_join(const char *dir, const char *name)
{
    size_t ld = strlen(dir), ln = strlen(name);
    int slash = ld > 0 && dir[ld - 1] != '/';
    char *p = tp_malloc(ld + (size_t)slash + ln + 1);
    if (!p) return NULL;
    memcpy(p, dir, ld);
    if (slash) p[ld] = '/';
    memcpy(p + ld + (size_t)slash, name, ln + 1);
    return p;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = tp_malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* "[2, 3]" for messages; truncates silently, it is only for the reader. */
static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = 0;
    int w = snprintf(buf, cap, "[");
    used = w > 0 ? (size_t)w : 0;
    for (int d = 0; d < ndim && used < cap; d++) {
        w = snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
        if (w > 0) used += (size_t)w;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_key_tensor(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const st_tensor *)elem)->name);
}

/* ---- mapping ----------------------------------------------------------------- */

/* listed_in: the index that named this shard, for the message; NULL otherwise. */
static tp_status map_open(const char *path, const char *listed_in, st_map *m)
{
    m->path = dup_str(path);
    if (!m->path) return TP_ERR_NOMEM;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (listed_in)
            return tp_err(TP_ERR_IO, "%s: cannot open shard listed in %s: %s", path, listed_in,
                          strerror(errno));
        return tp_err(TP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return tp_err(TP_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return tp_err(TP_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        return tp_err(TP_ERR_FORMAT,
                      "%s: file is %zu bytes, shorter than the 8-byte header length — not a "
                      "safetensors file or truncated",
                      path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    /* The mapping keeps the file alive; the descriptor is no longer needed. */
    if (close(fd) != 0 && map != MAP_FAILED) {
        int e = errno;
        munmap(map, size);
        return tp_err(TP_ERR_IO, "%s: close failed: %s", path, strerror(e));
    }
    if (map == MAP_FAILED)
        return tp_err(TP_ERR_IO, "%s: mmap of %zu bytes failed: %s", path, size,
                      strerror(map_errno));
    m->map = map;
    m->size = size;
    return TP_OK;
}

/* ---- header parsing ------------------------------------------------------------ */

typedef struct {
    uint64_t begin, end;
    const char *name;
} byte_range;

static int cmp_range(const void *a, const void *b)
{
    const byte_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static tp_status push_tensor(st_file *f, st_tensor **slot)
{
    if (f->n_tensors == f->cap_tensors) {
        size_t cap = f->cap_tensors ? 2 * f->cap_tensors : 64;
        st_tensor *t = realloc(f->tensors, cap * sizeof *t);
        if (!t) return tp_err(TP_ERR_NOMEM, "out of memory for %zu tensor entries", cap);
        f->tensors = t;
        f->cap_tensors = cap;
    }
    *slot = &f->tensors[f->n_tensors];
    memset(*slot, 0, sizeof **slot);
    return TP_OK;
}

static tp_status json_int_value(const json_t *v, long long *out)
{
    if (!json_is_integer(v)) return TP_ERR_FORMAT;
    *out = (long long)json_integer_value(v);
    return TP_OK;
}

/* Validates one "name": {...} entry and fills t (name not yet set). */
static tp_status parse_entry(const st_map *m, const char *name, json_t *entry,
                             const unsigned char *data, uint64_t data_len, st_tensor *t,
                             byte_range *range)
{
    const char *path = m->path;
    if (!json_is_object(entry))
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': entry is not a JSON object", path, name);

    json_t *jd = json_object_get(entry, "dtype");
    if (!jd) return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': missing \"dtype\"", path, name);
    if (!json_is_string(jd))
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': \"dtype\" is not a string", path, name);
    int dt = tp_dtype_from_name(json_string_value(jd));
    if (dt < 0)
        return tp_err(TP_ERR_UNSUPPORTED, "%s: tensor '%s': unsupported dtype '%s'", path, name,
                      json_string_value(jd));
    t->dtype = (tp_dtype)dt;

    json_t *js = json_object_get(entry, "shape");
    if (!js) return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': missing \"shape\"", path, name);
    if (!json_is_array(js))
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': \"shape\" is not an array", path, name);
    size_t ndim = json_array_size(js);
    if (ndim > ST_MAX_DIMS)
        return tp_err(TP_ERR_UNSUPPORTED, "%s: tensor '%s': shape has %zu dims, more than %d",
                      path, name, ndim, ST_MAX_DIMS);
    t->ndim = (int)ndim;
    int64_t numel = 1;
    for (size_t d = 0; d < ndim; d++) {
        long long dim;
        if (json_int_value(json_array_get(js, d), &dim) != TP_OK)
            return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not an integer", path,
                          name, d);
        if (dim < 0)
            return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': negative dimension %lld in shape",
                          path, name, dim);
        t->shape[d] = dim;
        if (__builtin_mul_overflow(numel, (int64_t)dim, &numel))
            return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': shape element count overflows", path,
                          name);
    }
    t->numel = numel;
    size_t nbytes;
    if (__builtin_mul_overflow((size_t)numel, tp_dtype_size(t->dtype), &nbytes))
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': shape byte size overflows", path, name);

    json_t *jo = json_object_get(entry, "data_offsets");
    if (!jo) return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': missing \"data_offsets\"", path, name);
    long long begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        json_int_value(json_array_get(jo, 0), &begin) != TP_OK ||
        json_int_value(json_array_get(jo, 1), &end) != TP_OK)
        return tp_err(TP_ERR_FORMAT,
                      "%s: tensor '%s': \"data_offsets\" is not an array of two integers", path,
                      name);
    if (begin < 0 || end < 0)
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': negative data_offsets [%lld, %lld]", path,
                      name, begin, end);
    if (begin > end)
        return tp_err(TP_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] have begin > end",
                      path, name, begin, end);
    if ((uint64_t)(end - begin) != (uint64_t)nbytes) {
        char shape[160];
        format_shape(shape, sizeof shape, t->ndim, t->shape);
        return tp_err(TP_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets [%lld, %lld] span %lld bytes but shape %s "
                      "of %s needs %zu",
                      path, name, begin, end, end - begin, shape, tp_dtype_name(t->dtype), nbytes);
    }
    if ((uint64_t)end > data_len)
        return tp_err(TP_ERR_FORMAT,
                      "%s: tensor '%s': data_offsets [%lld, %lld] beyond the data section "
                      "(%llu bytes) — file truncated?",
                      path, name, begin, end, (unsigned long long)data_len);
    t->data = data + begin;
    t->nbytes = nbytes;
    t->file = path;
    range->begin = (uint64_t)begin;
    range->end = (uint64_t)end;
    return TP_OK;
}

static tp_status check_metadata(const char *path, json_t *md)
{
    const char *k;
    json_t *v;
    if (!json_is_object(md))
        return tp_err(TP_ERR_FORMAT, "%s: __metadata__ is not a JSON object", path);
    json_object_foreach(md, k, v) {
        if (!json_is_string(v))
            return tp_err(TP_ERR_FORMAT, "%s: __metadata__ value for '%s' is not a string", path, k);
    }
    return TP_OK;
}

/* Parses the header of one mapped file and appends its tensors to f. */
static tp_status parse_map(st_file *f, const st_map *m)
{
    const char *path = m->path;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | m->map[i]; /* little-endian, any host */
    uint64_t after_len = (uint64_t)m->size - 8;
    if (hlen == 0) return tp_err(TP_ERR_FORMAT, "%s: header length is 0", path);
    if (hlen > ST_MAX_HEADER_BYTES)
        return tp_err(TP_ERR_FORMAT,
                      "%s: header length %llu is over the %llu-byte limit — not a safetensors file?",
                      path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER_BYTES);
    if (hlen > after_len)
        return tp_err(TP_ERR_FORMAT,
                      "%s: header length %llu is larger than the %llu bytes that follow it — file "
                      "truncated?",
                      path, (unsigned long long)hlen, (unsigned long long)after_len);

    json_error_t jerr;
    json_t *root = json_loadb((const char *)m->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root) {
        if (json_error_code(&jerr) == json_error_duplicate_key)
            return tp_err(TP_ERR_FORMAT, "%s: header has a duplicate tensor name: %s", path,
                          jerr.text);
        return tp_err(TP_ERR_FORMAT, "%s: header is not valid JSON: %s (header byte %d)", path,
                      jerr.text, jerr.position);
    }
    tp_status st = TP_OK;
    byte_range *ranges = NULL;
    size_t n_ranges = 0;
    if (!json_is_object(root)) {
        st = tp_err(TP_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    ranges = tp_calloc(json_object_size(root), sizeof *ranges);
    if (!ranges) {
        st = TP_ERR_NOMEM;
        goto done;
    }
    const unsigned char *data = m->map + 8 + hlen;
    uint64_t data_len = after_len - hlen;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            TP_CHECK_GOTO(check_metadata(path, val), st, done);
            continue;
        }
        st_tensor *t = NULL;
        TP_CHECK_GOTO(push_tensor(f, &t), st, done);
        TP_CHECK_GOTO(parse_entry(m, key, val, data, data_len, t, &ranges[n_ranges]), st, done);
        t->name = dup_str(key);
        if (!t->name) {
            st = TP_ERR_NOMEM;
            goto done;
        }
        ranges[n_ranges].name = t->name;
        n_ranges++;
        f->n_tensors++;
        f->total_bytes += t->nbytes;
    }
    /* The tensors must tile the data section exactly, as the Rust reference
     * (safetensors/src/tensor.rs, Metadata::validate) requires: sorted by offsets, each
     * starts where the previous one ended, and the last ends at the end of the file.
     * A gap or a data section longer than the tensors means the header and the data
     * disagree (a header length 2 short shifts every tensor by 2 bytes). */
    if (n_ranges > 1) qsort(ranges, n_ranges, sizeof *ranges, cmp_range);
    uint64_t expect = 0;
    const byte_range *prev = NULL;
    for (size_t i = 0; i < n_ranges; i++) {
        const byte_range *r = &ranges[i];
        if (r->begin < expect) {
            st = tp_err(TP_ERR_FORMAT,
                        "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap in the data "
                        "section",
                        path, prev->name, (unsigned long long)prev->begin,
                        (unsigned long long)prev->end, r->name, (unsigned long long)r->begin,
                        (unsigned long long)r->end);
            goto done;
        }
        if (r->begin > expect) {
            st = tp_err(TP_ERR_FORMAT,
                        "%s: tensor '%s' starts at data byte %llu but the previous tensor ends at "
                        "%llu: the tensors do not tile the data section (gap of %llu bytes)",
                        path, r->name, (unsigned long long)r->begin, (unsigned long long)expect,
                        (unsigned long long)(r->begin - expect));
            goto done;
        }
        expect = r->end;
        prev = r;
    }
    if (expect != data_len) {
        st = tp_err(TP_ERR_FORMAT,
                    "%s: the tensors fill %llu bytes of the %llu-byte data section (header length "
                    "%llu): the header and the data disagree",
                    path, (unsigned long long)expect, (unsigned long long)data_len,
                    (unsigned long long)hlen);
        goto done;
    }
done:
    free(ranges);
    json_decref(root);
    return st;
}

/* Sorts by name for st_find and rejects a name seen twice (possible only across
 * shards; within a file the JSON parser already refused it). */
static tp_status sort_and_check(st_file *f)
{
    if (f->n_tensors > 1) qsort(f->tensors, f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
    for (size_t i = 1; i < f->n_tensors; i++) {
        const st_tensor *a = &f->tensors[i - 1], *b = &f->tensors[i];
        if (strcmp(a->name, b->name) == 0)
            return tp_err(TP_ERR_FORMAT, "tensor '%s' appears in both %s and %s", a->name, a->file,
                          b->file);
    }
    return TP_OK;
}

/* ---- open / close -------------------------------------------------------------- */

void st_close(st_file *f)
{
    if (!f) return;
    for (size_t i = 0; i < f->n_tensors; i++) free((char *)f->tensors[i].name);
    free(f->tensors);
    for (size_t i = 0; i < f->n_maps; i++) {
        if (f->maps[i].map) munmap(f->maps[i].map, f->maps[i].size);
        free(f->maps[i].path);
    }
    free(f->maps);
    free(f);
}

tp_status st_open_file(const char *path, st_file **out)
{
    *out = NULL;
    st_file *f = tp_calloc(1, sizeof *f);
    if (!f) return TP_ERR_NOMEM;
    tp_status st = TP_OK;
    f->maps = tp_calloc(1, sizeof *f->maps);
    if (!f->maps) {
        st = TP_ERR_NOMEM;
        goto fail;
    }
    f->n_maps = 1;
    TP_CHECK_GOTO(map_open(path, NULL, &f->maps[0]), st, fail);
    TP_CHECK_GOTO(parse_map(f, &f->maps[0]), st, fail);
    TP_CHECK_GOTO(sort_and_check(f), st, fail);
    *out = f;
    return TP_OK;
fail:
    st_close(f);
    return st;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Shard names come from a downloaded file: keep them inside the model directory. */
static int shard_name_ok(const char *s)
{
    return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static tp_status read_index(const char *index_path, json_t **root_out, json_t **map_out)
{
    FILE *fp = fopen(index_path, "rb");
    if (!fp) return tp_err(TP_ERR_IO, "%s: cannot open: %s", index_path, strerror(errno));
    json_error_t jerr;
    json_t *root = json_loadf(fp, JSON_REJECT_DUPLICATES, &jerr);
    int read_failed = ferror(fp);
    fclose(fp); /* read-only: nothing to lose on close */
    if (read_failed) {
        json_decref(root);
        return tp_err(TP_ERR_IO, "%s: read failed", index_path);
    }
    if (!root)
        return tp_err(TP_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", index_path,
                      jerr.text, jerr.line, jerr.column);
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!wm || !json_is_object(wm)) {
        json_decref(root);
        return tp_err(TP_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
    }
    if (json_object_size(wm) == 0) {
        json_decref(root);
        return tp_err(TP_ERR_FORMAT, "%s: \"weight_map\" is empty", index_path);
    }
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        if (!json_is_string(v) || !shard_name_ok(json_string_value(v))) {
            /* k belongs to root: report before releasing it. */
            tp_status st = tp_err(TP_ERR_FORMAT,
                                  "%s: weight_map entry for '%s' is not a plain shard file name",
                                  index_path, k);
            json_decref(root);
            return st;
        }
    }
    *root_out = root;
    *map_out = wm;
    return TP_OK;
}

/* Each distinct shard of a weight_map once, in a stable (sorted) order; the names
 * belong to wm. */
static tp_status index_shards(json_t *wm, const char ***out, size_t *n_out)
{
    const char **shards = tp_calloc(json_object_size(wm), sizeof *shards);
    if (!shards) return TP_ERR_NOMEM;
    size_t n = 0, n_unique = 0;
    const char *key;
    json_t *val;
    json_object_foreach(wm, key, val) shards[n++] = json_string_value(val);
    qsort(shards, n, sizeof *shards, cmp_cstr);
    for (size_t i = 0; i < n; i++)
        if (n_unique == 0 || strcmp(shards[n_unique - 1], shards[i]) != 0) shards[n_unique++] = shards[i];
    *out = shards;
    *n_out = n_unique;
    return TP_OK;
}

static tp_status open_index(const char *dir, const char *index_path, st_file **out)
{
    json_t *root = NULL, *wm = NULL;
    TP_CHECK(read_index(index_path, &root, &wm));
    tp_status st = TP_OK;
    st_file *f = NULL;
    const char **shards = NULL;
    size_t n_unique = 0;
    TP_CHECK_GOTO(index_shards(wm, &shards, &n_unique), st, done);
    const char *key;
    json_t *val;

    f = tp_calloc(1, sizeof *f);
    if (!f || !(f->maps = tp_calloc(n_unique, sizeof *f->maps))) {
        st = TP_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < n_unique; i++) {
        char *shard_path = path_join(dir, shards[i]);
        if (!shard_path) {
            st = TP_ERR_NOMEM;
            goto done;
        }
        f->n_maps = i + 1; /* so st_close frees this one even if opening fails */
        st = map_open(shard_path, index_path, &f->maps[i]);
        free(shard_path);
        if (st != TP_OK) goto done;
        TP_CHECK_GOTO(parse_map(f, &f->maps[i]), st, done);
    }
    TP_CHECK_GOTO(sort_and_check(f), st, done);

    /* The index must agree with what the shards hold. */
    json_object_foreach(wm, key, val) {
        const char *shard = json_string_value(val);
        const st_tensor *t = st_find(f, key);
        const char *slash = t ? strrchr(t->file, '/') : NULL;
        const char *held_in = slash ? slash + 1 : (t ? t->file : NULL);
        if (!t) {
            /* Name the shard by its full path: the file the user would inspect. */
            char *shard_path = path_join(dir, shard);
            st = tp_err(TP_ERR_FORMAT, "%s: tensor '%s' listed in %s is not in this shard",
                        shard_path ? shard_path : shard, key, index_path);
            free(shard_path);
            goto done;
        }
        if (strcmp(held_in, shard) != 0) {
            st = tp_err(TP_ERR_FORMAT, "%s: says tensor '%s' is in %s, but it is in %s", index_path,
                        key, shard, t->file);
            goto done;
        }
    }
    *out = f;
    f = NULL;
done:
    st_close(f);
    free(shards);
    json_decref(root);
    return st;
}

/* 1 if path exists, 0 if it does not, -1 (message set) if we cannot tell. */
static int file_exists(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) == 0) return 1;
    if (errno == ENOENT || errno == ENOTDIR) return 0;
    tp_err(TP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    return -1;
}

tp_status st_open_dir(const char *model_dir, st_file **out)
{
    *out = NULL;
    char *single = path_join(model_dir, ST_SINGLE_NAME);
    char *index = path_join(model_dir, ST_INDEX_NAME);
    tp_status st = TP_OK;
    if (!single || !index) {
        st = TP_ERR_NOMEM;
        goto done;
    }
    /* Prefer the single file when both exist, as transformers does. */
    int has_single = file_exists(single);
    if (has_single < 0) {
        st = TP_ERR_IO;
        goto done;
    }
    if (has_single) {
        st = st_open_file(single, out);
        goto done;
    }
    int has_index = file_exists(index);
    if (has_index < 0) {
        st = TP_ERR_IO;
        goto done;
    }
    if (!has_index) {
        struct stat sb;
        if (stat(model_dir, &sb) != 0)
            st = tp_err(TP_ERR_IO, "%s: cannot open model directory: %s", model_dir,
                        strerror(errno));
        else
            st = tp_err(TP_ERR_IO, "%s: has neither %s nor %s", model_dir, ST_SINGLE_NAME,
                        ST_INDEX_NAME);
        goto done;
    }
    st = open_index(model_dir, index, out);
done:
    free(single);
    free(index);
    return st;
}

/* The 8-byte length field plus the header it announces (capped at the file). */
static tp_status header_extent(const char *path, uint64_t *head)
{
    unsigned char le[8] = {0};
    FILE *fp = fopen(path, "rb");
    if (!fp) return tp_err(TP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t got = fread(le, 1, 8, fp);
    fclose(fp);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | le[i];
    if (got < 8 || hlen > ST_MAX_HEADER_BYTES) hlen = 0; /* st_open_* names the problem */
    *head = 8 + hlen;
    return TP_OK;
}

tp_status st_fingerprint_dir(const char *model_dir, fs_fingerprint *fp)
{
    fs_fingerprint_init(fp);
    char *single = path_join(model_dir, ST_SINGLE_NAME), *index = path_join(model_dir, ST_INDEX_NAME);
    json_t *root = NULL, *wm = NULL;
    const char **shards = NULL;
    tp_status st = single && index ? TP_OK : TP_ERR_NOMEM;
    int has_single = st == TP_OK ? file_exists(single) : -1;
    uint64_t head;
    if (has_single < 0) st = st == TP_OK ? TP_ERR_IO : st;
    if (st == TP_OK && has_single) {
        st = header_extent(single, &head);
        if (st == TP_OK) st = fs_fingerprint_add(fp, single, head);
        goto done;
    }
    TP_CHECK_GOTO(read_index(index, &root, &wm), st, done);
    size_t n = 0;
    TP_CHECK_GOTO(index_shards(wm, &shards, &n), st, done);
    for (size_t i = 0; st == TP_OK && i < n; i++) {
        char *p = path_join(model_dir, shards[i]);
        if (!p) st = TP_ERR_NOMEM;
        if (st == TP_OK) st = header_extent(p, &head);
        if (st == TP_OK) st = fs_fingerprint_add(fp, p, head);
        free(p);
    }
done:
    free(shards);
    json_decref(root);
    free(single);
    free(index);
    return st;
}

size_t st_count(const st_file *f) { return f ? f->n_tensors : 0; }

const st_tensor *st_at(const st_file *f, size_t i)
{
    return (f && i < f->n_tensors) ? &f->tensors[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    if (!f || !name || f->n_tensors == 0) return NULL;
    return bsearch(name, f->tensors, f->n_tensors, sizeof *f->tensors, cmp_key_tensor);
}

size_t st_total_bytes(const st_file *f) { return f ? f->total_bytes : 0; }

/* ---- finiteness ------------------------------------------------------------------ */

/* An element is Inf or NaN iff its exponent bits are all ones, whatever the format.
 * Each block is scanned without a branch in the loop (memcpy loads, so an unaligned
 * tensor is fine and the compiler vectorises the OR); only a block that holds a bad
 * element is scanned again to name its first index. */
#define ST_FINITE_BLOCK 4096

#define ST_SCAN_BLOCK(NAME, T, MASK)                                                     \
    static size_t scan_##NAME(const unsigned char *p, size_t n)                       \
    {                                                                              \
        for (size_t b = 0; b < n; b += ST_FINITE_BLOCK) {                          \
            size_t e = n - b < ST_FINITE_BLOCK ? n : b + ST_FINITE_BLOCK;          \
            T acc = 0;                                                             \
            for (size_t i = b; i < e; i++) {                                       \
                T w;                                                               \
                memcpy(&w, p + i * sizeof w, sizeof w);                            \
                acc |= (T)((w & (MASK)) == (MASK));                                \
            }                                                                      \
            if (!acc) continue;                                                    \
            for (size_t i = b; i < e; i++) {                                       \
                T w;                                                               \
                memcpy(&w, p + i * sizeof w, sizeof w);                            \
                if ((w & (MASK)) == (MASK)) return i;                              \
            }                                                                      \
        }                                                                          \
        return n;                                                                  \
    }
ST_SCAN_BLOCK(bf16, uint16_t, 0x7f80u)
ST_SCAN_BLOCK(f16, uint16_t, 0x7c00u)
ST_SCAN_BLOCK(f32, uint32_t, 0x7f800000u)
ST_SCAN_BLOCK(f64, uint64_t, 0x7ff0000000000000u)

tp_status st_check_finite(const st_tensor *t)
{
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel, bad;
    float v;
    switch (t->dtype) {
    case TP_DTYPE_F32: bad = scan_f32(p, n); break;
    case TP_DTYPE_F64: bad = scan_f64(p, n); break;
    case TP_DTYPE_BF16: bad = scan_bf16(p, n); break;
    case TP_DTYPE_F16: bad = scan_f16(p, n); break;
    default: return TP_OK; /* integers are always finite */
    }
    if (bad == n) return TP_OK;
    tp_convert_to_f32(t->dtype, p + bad * tp_dtype_size(t->dtype), &v, 1);
    return tp_err(TP_ERR_FORMAT,
                  "%s: tensor '%s' (%s) holds a non-finite value (%g at element %zu of %zu) — "
                  "corrupt weights, or bytes of another dtype",
                  t->file, t->name, tp_dtype_name(t->dtype), (double)v, bad, n);
}

/* ---- writing --------------------------------------------------------------------- */

static tp_status check_write_args(const char *path, const st_write_tensor *tensors, size_t n,
                                  size_t *nbytes)
{
    for (size_t i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        if (!t->name)
            return tp_err(TP_ERR_RANGE, "%s: tensor %zu has no name", path, i);
        if (strcmp(t->name, "__metadata__") == 0)
            return tp_err(TP_ERR_RANGE, "%s: '__metadata__' is reserved, not a tensor name", path);
        if ((unsigned)t->dtype >= TP_DTYPE_COUNT)
            return tp_err(TP_ERR_RANGE, "%s: tensor '%s': invalid dtype %d", path, t->name,
                          (int)t->dtype);
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS || (t->ndim > 0 && !t->shape))
            return tp_err(TP_ERR_RANGE, "%s: tensor '%s': invalid ndim %d", path, t->name, t->ndim);
        size_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || __builtin_mul_overflow(numel, (size_t)t->shape[d], &numel))
                return tp_err(TP_ERR_RANGE, "%s: tensor '%s': invalid shape[%d] = %lld", path,
                              t->name, d, (long long)t->shape[d]);
        }
        if (__builtin_mul_overflow(numel, tp_dtype_size(t->dtype), &nbytes[i]) ||
            nbytes[i] > (size_t)INT64_MAX)
            return tp_err(TP_ERR_RANGE, "%s: tensor '%s': too large", path, t->name);
        if (nbytes[i] > 0 && !t->data)
            return tp_err(TP_ERR_RANGE, "%s: tensor '%s': data is NULL", path, t->name);
    }
    /* A reader must reject duplicates, so never write them. */
    const char **names = tp_calloc(n ? n : 1, sizeof *names);
    if (!names) return TP_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, n, sizeof *names, cmp_cstr);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i - 1], names[i]) == 0) {
            tp_status st = tp_err(TP_ERR_RANGE, "%s: tensor name '%s' given twice", path, names[i]);
            free(names);
            return st;
        }
    }
    free(names);
    return TP_OK;
}

/* Builds the header JSON: __metadata__ first, then tensors in the order given with
 * keys dtype, shape, data_offsets — the layout the Rust reference serialises. */
static tp_status build_header(const char *path, const st_write_tensor *tensors, size_t n,
                              const size_t *nbytes, const char *const *metadata_kv, char **out)
{
    tp_status st = TP_OK;
    json_t *root = json_object();
    if (!root) return tp_err(TP_ERR_NOMEM, "%s: out of memory building the header", path);
    if (metadata_kv && metadata_kv[0]) {
        json_t *md = json_object();
        if (!md || json_object_set_new(root, "__metadata__", md) != 0) {
            st = tp_err(TP_ERR_NOMEM, "%s: out of memory building the header", path);
            goto done;
        }
        for (size_t i = 0; metadata_kv[i]; i += 2) {
            if (!metadata_kv[i + 1]) {
                st = tp_err(TP_ERR_RANGE, "%s: metadata key '%s' has no value", path,
                            metadata_kv[i]);
                goto done;
            }
            json_t *v = json_string(metadata_kv[i + 1]);
            if (!v || json_object_set_new(md, metadata_kv[i], v) != 0) {
                st = tp_err(TP_ERR_RANGE, "%s: metadata '%s' is not valid UTF-8", path,
                            metadata_kv[i]);
                goto done;
            }
        }
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        json_t *shape = json_array();
        json_t *offs = json_array();
        json_t *entry = json_object();
        int bad = !shape || !offs || !entry;
        for (int d = 0; !bad && d < t->ndim; d++)
            bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0;
        bad = bad || json_array_append_new(offs, json_integer((json_int_t)offset)) != 0 ||
              json_array_append_new(offs, json_integer((json_int_t)(offset + nbytes[i]))) != 0 ||
              json_object_set_new(entry, "dtype", json_string(tp_dtype_name(t->dtype))) != 0;
        if (bad) {
            json_decref(shape);
            json_decref(offs);
            json_decref(entry);
            st = tp_err(TP_ERR_NOMEM, "%s: out of memory building the header", path);
            goto done;
        }
        /* set_new takes the value's reference even when it fails. */
        int shape_failed = json_object_set_new(entry, "shape", shape) != 0;
        if (shape_failed) json_decref(offs);
        if (shape_failed || json_object_set_new(entry, "data_offsets", offs) != 0) {
            json_decref(entry);
            st = tp_err(TP_ERR_NOMEM, "%s: out of memory building the header", path);
            goto done;
        }
        if (json_object_set_new(root, t->name, entry) != 0) {
            st = tp_err(TP_ERR_RANGE, "%s: tensor name '%s' is not valid UTF-8", path, t->name);
            goto done;
        }
        offset += nbytes[i];
    }
    *out = json_dumps(root, JSON_COMPACT);
    if (!*out) st = tp_err(TP_ERR_NOMEM, "%s: out of memory serialising the header", path);
done:
    json_decref(root);
    return st;
}

static tp_status write_all(FILE *fp, const void *buf, size_t n, const char *path)
{
    if (n > 0 && fwrite(buf, 1, n, fp) != n)
        return tp_err(TP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return TP_OK;
}

tp_status st_write(const char *path, const st_write_tensor *tensors, size_t n,
                   const char *const *metadata_kv)
{
    if (n > 0 && !tensors) return tp_err(TP_ERR_RANGE, "%s: tensors is NULL", path);
    tp_status st = TP_OK;
    char *header = NULL;
    FILE *fp = NULL;
    size_t *nbytes = tp_calloc(n ? n : 1, sizeof *nbytes);
    if (!nbytes) return TP_ERR_NOMEM;
    TP_CHECK_GOTO(check_write_args(path, tensors, n, nbytes), st, done);
    TP_CHECK_GOTO(build_header(path, tensors, n, nbytes, metadata_kv, &header), st, done);

    /* Pad with spaces to a multiple of 8 (JSON ignores trailing whitespace), as the
     * reference writer does, so the data section starts 8-aligned. */
    size_t hlen = strlen(header);
    size_t pad = (8 - hlen % 8) % 8;
    uint64_t total = (uint64_t)(hlen + pad);
    unsigned char len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (unsigned char)(total >> (8 * i));
    static const char spaces[8] = "        ";

    /* path.tmp, then rename on success: a reader never sees a half-written file. */
    TP_CHECK_GOTO(fs_open_tmp(path, &fp), st, done);
    TP_CHECK_GOTO(write_all(fp, len_le, 8, path), st, done);
    TP_CHECK_GOTO(write_all(fp, header, hlen, path), st, done);
    TP_CHECK_GOTO(write_all(fp, spaces, pad, path), st, done);
    for (size_t i = 0; i < n; i++)
        TP_CHECK_GOTO(write_all(fp, tensors[i].data, nbytes[i], path), st, done);
    st = fs_commit(fp, path); /* flush, fsync, close, rename; removes the tmp on failure */
    fp = NULL;
done:
    if (fp) fs_abort(fp, path);
    free(header);
    free(nbytes);
    return st;
}
