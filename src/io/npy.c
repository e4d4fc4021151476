/* npy.c — read and write NumPy .npy files.
 *
 * Layout (numpy/lib/format.py): "\x93NUMPY", major, minor, header length (u16 for
 * 1.x, u32 for 2.x/3.x), then a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and a final '\n', then the raw array data. Only the tiny
 * subset of Python literal syntax numpy writes is parsed.
 */
#include "io/npy.h"

#include "core/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* numpy itself refuses headers over 10000 bytes by default (max_header_size);
 * anything near this limit is a corrupt length field, not a real header. */
#define NPY_MAX_HEADER_BYTES (1u << 20)
/* numpy aligns the data to 64 bytes (ARRAY_ALIGN) so it can be mmap'ed and
 * loaded with aligned vector loads. */
#define NPY_ALIGN 64

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* dtype code without the byte-order character: "f4" etc. */
static const struct {
    const char *code;
    tp_dtype dtype;
} npy_types[] = {
    {"f4", TP_DTYPE_F32}, {"f8", TP_DTYPE_F64}, {"f2", TP_DTYPE_F16}, {"i8", TP_DTYPE_I64},
    {"i4", TP_DTYPE_I32}, {"i2", TP_DTYPE_I16}, {"i1", TP_DTYPE_I8},  {"u1", TP_DTYPE_U8},
    {"b1", TP_DTYPE_BOOL},
};

static int npy_code_of(tp_dtype t, const char **code)
{
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (npy_types[i].dtype == t) {
            *code = npy_types[i].code;
            return 1;
        }
    return 0;
}

void npy_free(npy_array *a)
{
    if (!a) return;
    free(a->data);
    a->data = NULL;
}

/* "(2, 3)" for messages, as numpy prints a shape. */
static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = 0;
    int w = snprintf(buf, cap, "(");
    used = w > 0 ? (size_t)w : 0;
    for (int d = 0; d < ndim && used < cap; d++) {
        w = snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "", (long long)shape[d]);
        if (w > 0) used += (size_t)w;
    }
    if (used < cap) snprintf(buf + used, cap - used, ndim == 1 ? ",)" : ")");
}

/* ---- header dict parser -------------------------------------------------------- */

typedef struct {
    const char *p, *end;
    const char *path;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes (numpy never writes any); copied to buf. */
static tp_status parse_string(cursor *c, char *buf, size_t cap, const char *what)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return tp_err(TP_ERR_FORMAT, "%s: npy header: expected a quoted string for %s", c->path,
                      what);
    char q = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != q && *c->p != '\\') c->p++;
    if (c->p >= c->end || *c->p != q)
        return tp_err(TP_ERR_FORMAT, "%s: npy header: unterminated or escaped string for %s",
                      c->path, what);
    size_t n = (size_t)(c->p - start);
    c->p++;
    if (n >= cap)
        return tp_err(TP_ERR_FORMAT, "%s: npy header: %s string too long", c->path, what);
    memcpy(buf, start, n);
    buf[n] = '\0';
    return TP_OK;
}

static tp_status parse_bool(cursor *c, int *out)
{
    skip_ws(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
        c->p += 4;
        *out = 1;
        return TP_OK;
    }
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        *out = 0;
        return TP_OK;
    }
    return tp_err(TP_ERR_FORMAT, "%s: npy header: fortran_order is not True or False", c->path);
}

/* (), (n,), (n, m, ...); Python 2 files may write 3L. */
static tp_status parse_shape(cursor *c, int *ndim, int64_t *shape)
{
    if (!accept(c, '('))
        return tp_err(TP_ERR_FORMAT, "%s: npy header: shape is not a tuple", c->path);
    *ndim = 0;
    for (;;) {
        if (accept(c, ')')) return TP_OK;
        skip_ws(c);
        if (c->p >= c->end || *c->p < '0' || *c->p > '9')
            return tp_err(TP_ERR_FORMAT, "%s: npy header: shape entry is not a non-negative integer",
                          c->path);
        int64_t v = 0;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
            if (__builtin_mul_overflow(v, (int64_t)10, &v) ||
                __builtin_add_overflow(v, (int64_t)(*c->p - '0'), &v))
                return tp_err(TP_ERR_FORMAT, "%s: npy header: shape entry overflows", c->path);
            c->p++;
        }
        if (c->p < c->end && *c->p == 'L') c->p++;
        if (*ndim == NPY_MAX_DIMS)
            return tp_err(TP_ERR_UNSUPPORTED, "%s: array has more than %d dimensions", c->path,
                          NPY_MAX_DIMS);
        shape[(*ndim)++] = v;
        if (accept(c, ',')) continue;
        if (accept(c, ')')) return TP_OK;
        return tp_err(TP_ERR_FORMAT, "%s: npy header: malformed shape tuple", c->path);
    }
}

/* Maps a descr such as '<f4' to a dtype; big-endian and exotic types are refused. */
static tp_status parse_descr(const char *path, const char *descr, tp_dtype *out)
{
    char order = descr[0];
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return tp_err(TP_ERR_UNSUPPORTED, "%s: unsupported dtype '%s'", path, descr);
    const char *code = descr + 1;
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++) {
        if (strcmp(code, npy_types[i].code) != 0) continue;
        tp_dtype t = npy_types[i].dtype;
        int one_byte = tp_dtype_size(t) == 1;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        int native_little = 0;
#else
        int native_little = 1;
#endif
        int little = order == '<' || (order == '=' && native_little);
        if (!one_byte && order == '>')
            return tp_err(TP_ERR_UNSUPPORTED,
                          "%s: big-endian dtype '%s' (save it little-endian: a.astype('<%s'))",
                          path, descr, code);
        if (!one_byte && !little)
            return tp_err(TP_ERR_UNSUPPORTED, "%s: unsupported dtype '%s'", path, descr);
        *out = t;
        return TP_OK;
    }
    return tp_err(TP_ERR_UNSUPPORTED, "%s: unsupported dtype '%s'", path, descr);
}

static tp_status parse_header(const char *path, const char *text, size_t len, npy_array *a)
{
    cursor c = {text, text + len, path};
    int have_descr = 0, have_order = 0, have_shape = 0, fortran = 0;
    char descr[64] = "";
    if (!accept(&c, '{'))
        return tp_err(TP_ERR_FORMAT, "%s: npy header is not a dict", path);
    for (;;) {
        if (accept(&c, '}')) break;
        char key[32];
        TP_CHECK(parse_string(&c, key, sizeof key, "a key"));
        if (!accept(&c, ':'))
            return tp_err(TP_ERR_FORMAT, "%s: npy header: expected ':' after '%s'", path, key);
        if (strcmp(key, "descr") == 0) {
            skip_ws(&c);
            if (c.p < c.end && *c.p == '[')
                return tp_err(TP_ERR_UNSUPPORTED, "%s: structured dtypes are not supported", path);
            TP_CHECK(parse_string(&c, descr, sizeof descr, "descr"));
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0) {
            TP_CHECK(parse_bool(&c, &fortran));
            have_order = 1;
        } else if (strcmp(key, "shape") == 0) {
            TP_CHECK(parse_shape(&c, &a->ndim, a->shape));
            have_shape = 1;
        } else {
            return tp_err(TP_ERR_FORMAT, "%s: npy header has unexpected key '%s'", path, key);
        }
        if (accept(&c, ',')) continue;
        if (accept(&c, '}')) break;
        return tp_err(TP_ERR_FORMAT, "%s: npy header: expected ',' or '}' after '%s'", path, key);
    }
    skip_ws(&c);
    if (c.p != c.end)
        return tp_err(TP_ERR_FORMAT, "%s: npy header has text after the dict", path);
    if (!have_descr || !have_order || !have_shape)
        return tp_err(TP_ERR_FORMAT, "%s: npy header lacks '%s'", path,
                      !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    TP_CHECK(parse_descr(path, descr, &a->dtype));
    /* numpy writes True only for arrays that are F- but not C-contiguous, i.e. a
     * real transposition we would read wrongly. */
    if (fortran)
        return tp_err(TP_ERR_UNSUPPORTED,
                      "%s: Fortran-order array (fortran_order True); save it C-contiguous "
                      "(np.ascontiguousarray)",
                      path);
    int64_t numel = 1;
    for (int d = 0; d < a->ndim; d++)
        if (__builtin_mul_overflow(numel, a->shape[d], &numel))
            return tp_err(TP_ERR_FORMAT, "%s: npy shape element count overflows", path);
    a->numel = numel;
    return TP_OK;
}

/* ---- reading --------------------------------------------------------------------- */

static uint32_t read_le(const unsigned char *p, int n)
{
    uint32_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

tp_status npy_read(const char *path, npy_array *out)
{
    memset(out, 0, sizeof *out);
    FILE *fp = fopen(path, "rb");
    if (!fp) return tp_err(TP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    tp_status st = TP_OK;
    char *header = NULL;
    npy_array a;
    memset(&a, 0, sizeof a);

    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        st = tp_err(TP_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = tp_err(TP_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    uint64_t size = (uint64_t)sb.st_size;
    unsigned char pre[12];
    size_t got = fread(pre, 1, sizeof pre, fp);
    if (ferror(fp)) {
        st = tp_err(TP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        goto done;
    }
    if (got < 6 || memcmp(pre, npy_magic, 6) != 0) {
        st = tp_err(TP_ERR_FORMAT, "%s: bad magic, not a .npy file", path);
        goto done;
    }
    if (got < 10) {
        st = tp_err(TP_ERR_FORMAT, "%s: file is %zu bytes, too short for a .npy header", path, got);
        goto done;
    }
    int major = pre[6], minor = pre[7];
    size_t preamble;
    uint32_t hlen;
    if (major == 1) {
        preamble = 10;
        hlen = read_le(pre + 8, 2);
    } else if ((major == 2 || major == 3) && got < 12) {
        st = tp_err(TP_ERR_FORMAT, "%s: file is %zu bytes, too short for a .npy %d.%d header",
                    path, got, major, minor);
        goto done;
    } else if (major == 2 || major == 3) {
        /* 3.0 differs from 2.0 only in allowing UTF-8 in the header. */
        preamble = 12;
        hlen = read_le(pre + 8, 4);
    } else {
        st = tp_err(TP_ERR_UNSUPPORTED, "%s: npy format version %d.%d is not supported", path,
                    major, minor);
        goto done;
    }
    if (hlen > NPY_MAX_HEADER_BYTES || preamble + (uint64_t)hlen > size) {
        st = tp_err(TP_ERR_FORMAT, "%s: npy header length %u runs past the end of the file "
                    "(%llu bytes)", path, hlen, (unsigned long long)size);
        goto done;
    }
    header = tp_malloc((size_t)hlen + 1);
    if (!header) {
        st = TP_ERR_NOMEM;
        goto done;
    }
    if (fseek(fp, (long)preamble, SEEK_SET) != 0 || fread(header, 1, hlen, fp) != hlen) {
        st = tp_err(TP_ERR_IO, "%s: reading the npy header failed", path);
        goto done;
    }
    header[hlen] = '\0';
    TP_CHECK_GOTO(parse_header(path, header, hlen, &a), st, done);

    uint64_t avail = size - preamble - hlen;
    size_t nbytes;
    if (__builtin_mul_overflow((size_t)a.numel, tp_dtype_size(a.dtype), &nbytes)) {
        st = tp_err(TP_ERR_FORMAT, "%s: npy shape byte size overflows", path);
        goto done;
    }
    if (avail < (uint64_t)nbytes) {
        char shape[200];
        format_shape(shape, sizeof shape, a.ndim, a.shape);
        st = tp_err(TP_ERR_FORMAT,
                    "%s: data is %llu bytes but shape %s of %s needs %zu — file truncated?", path,
                    (unsigned long long)avail, shape, tp_dtype_name(a.dtype), nbytes);
        goto done;
    }
    a.data = tp_malloc(nbytes);
    if (!a.data) {
        st = TP_ERR_NOMEM;
        goto done;
    }
    if (nbytes > 0 && fread(a.data, 1, nbytes, fp) != nbytes) {
        st = tp_err(TP_ERR_IO, "%s: reading %zu bytes of array data failed", path, nbytes);
        goto done;
    }
    *out = a;
    a.data = NULL;
done:
    free(a.data);
    free(header);
    fclose(fp); /* read-only stream: a close error cannot lose data */
    return st;
}

tp_status npy_read_f32(const char *path, npy_array *out)
{
    npy_array a;
    TP_CHECK(npy_read(path, &a));
    if (a.dtype != TP_DTYPE_F32) {
        float *f = tp_malloc((size_t)a.numel * sizeof *f);
        if (!f) {
            npy_free(&a);
            return TP_ERR_NOMEM;
        }
        tp_convert_to_f32(a.dtype, a.data, f, (size_t)a.numel);
        free(a.data);
        a.data = f;
        a.dtype = TP_DTYPE_F32;
    }
    *out = a;
    return TP_OK;
}

/* ---- writing --------------------------------------------------------------------- */

static tp_status write_all(FILE *fp, const void *buf, size_t n, const char *path)
{
    if (n > 0 && fwrite(buf, 1, n, fp) != n)
        return tp_err(TP_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    return TP_OK;
}

tp_status npy_write(const char *path, tp_dtype dtype, int ndim, const int64_t *shape,
                    const void *data)
{
    const char *code;
    if (!npy_code_of(dtype, &code))
        return tp_err(TP_ERR_UNSUPPORTED, "%s: cannot write %s to .npy (numpy has no such dtype)",
                      path, tp_dtype_name(dtype));
    if (ndim < 0 || ndim > NPY_MAX_DIMS || (ndim > 0 && !shape))
        return tp_err(TP_ERR_RANGE, "%s: invalid ndim %d", path, ndim);
    size_t numel = 1, nbytes;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(numel, (size_t)shape[d], &numel))
            return tp_err(TP_ERR_RANGE, "%s: invalid shape[%d] = %lld", path, d,
                          (long long)shape[d]);
    if (__builtin_mul_overflow(numel, tp_dtype_size(dtype), &nbytes))
        return tp_err(TP_ERR_RANGE, "%s: array too large", path);
    if (nbytes > 0 && !data) return tp_err(TP_ERR_RANGE, "%s: data is NULL", path);

    /* numpy's own spelling: sorted keys, repr() values, trailing ", }". Version 1.0
     * suffices: 8 dims of 19 digits keep the dict far under 65535 bytes. */
    char dict[512], shape_s[256];
    format_shape(shape_s, sizeof shape_s, ndim, shape);
    int dl = snprintf(dict, sizeof dict, "{'descr': '%c%s', 'fortran_order': False, 'shape': %s, }",
                      tp_dtype_size(dtype) == 1 ? '|' : '<', code, shape_s);
    if (dl < 0 || (size_t)dl >= sizeof dict)
        return tp_err(TP_ERR_INTERNAL, "%s: npy header does not fit its buffer", path);
    /* Spaces then '\n' so the data starts on a 64-byte boundary. */
    size_t unpadded = 10 + (size_t)dl + 1;
    size_t pad = (NPY_ALIGN - unpadded % NPY_ALIGN) % NPY_ALIGN;
    size_t hlen = (size_t)dl + pad + 1;
    unsigned char pre[10];
    memcpy(pre, npy_magic, 6);
    pre[6] = 1;
    pre[7] = 0;
    pre[8] = (unsigned char)(hlen & 0xff);
    pre[9] = (unsigned char)(hlen >> 8);
    char tail[NPY_ALIGN + 1];
    memset(tail, ' ', pad);
    tail[pad] = '\n';

    /* path.tmp, then rename on success: a reader never sees a half-written file. */
    tp_status st = TP_OK;
    FILE *fp = NULL;
    TP_CHECK(fs_open_tmp(path, &fp));
    TP_CHECK_GOTO(write_all(fp, pre, sizeof pre, path), st, fail);
    TP_CHECK_GOTO(write_all(fp, dict, (size_t)dl, path), st, fail);
    TP_CHECK_GOTO(write_all(fp, tail, pad + 1, path), st, fail);
    TP_CHECK_GOTO(write_all(fp, data, nbytes, path), st, fail);
    return fs_commit(fp, path); /* flush, fsync, close, rename; removes the tmp on failure */
fail:
    fs_abort(fp, path);
    return st;
}
