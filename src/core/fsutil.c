#include "core/fsutil.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

tp_status fs_path(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= n) {
        /* Name the path as far as it goes, and how long it would be. */
        return tp_err(TP_ERR_RANGE, "path too long (%d bytes, at most %zu): '%.120s...'", len, n ? n - 1 : 0,
                      buf);
    }
    return TP_OK;
}

tp_status fs_join(char *buf, size_t n, const char *a, const char *b)
{
    size_t la = strlen(a);
    return fs_path(buf, n, "%s%s%s", a, (la && a[la - 1] == '/') ? "" : "/", b);
}

void fs_rmdir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[TP_PATH_MAX];
        struct stat sb;
        if (fs_join(sub, sizeof sub, dir, e->d_name) == TP_OK && lstat(sub, &sb) == 0 && S_ISDIR(sb.st_mode))
            fs_rmdir_empty(sub);
    }
    closedir(d);
    rmdir(dir);   /* fails, as it should, when anything is left in it */
}

bool fs_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

tp_status fs_mkdir_p(const char *path)
{
    char buf[TP_PATH_MAX];
    TP_CHECK(fs_path(buf, sizeof buf, "%s", path));
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return tp_err(TP_ERR_IO, "cannot create directory '%s': %s", buf, strerror(errno));
            struct stat sb;
            if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
                return tp_err(TP_ERR_IO, "'%s' exists and is not a directory", buf);
            *p = c;
            if (!c) break;
        }
    }
    return TP_OK;
}

tp_status fs_mkdir_parent(const char *path)
{
    char parent[TP_PATH_MAX];
    TP_CHECK(fs_path(parent, sizeof parent, "%s", path));
    char *slash = strrchr(parent, '/');
    if (!slash || slash == parent) return TP_OK;
    *slash = '\0';
    return fs_mkdir_p(parent);
}

static tp_status (*g_first_write)(void *);
static void *g_first_write_arg;

void fs_on_first_write(tp_status (*fn)(void *arg), void *arg)
{
    g_first_write = fn, g_first_write_arg = arg;
}

tp_status fs_before_write(void)
{
    tp_status (*fn)(void *) = g_first_write;
    g_first_write = NULL;
    return fn ? fn(g_first_write_arg) : TP_OK;
}

tp_status fs_open_tmp(const char *path, FILE **f)
{
    char tmp[TP_PATH_MAX + 8];
    *f = NULL;
    TP_CHECK(fs_before_write());
    TP_CHECK(fs_path(tmp, sizeof tmp, "%s.tmp", path));
    *f = fopen(tmp, "wb");
    if (!*f) return tp_err(TP_ERR_IO, "cannot write '%s': %s", tmp, strerror(errno));
    return TP_OK;
}

void fs_abort(FILE *f, const char *path)
{
    char tmp[TP_PATH_MAX + 8];
    if (f) fclose(f);
    if (fs_path(tmp, sizeof tmp, "%s.tmp", path) == TP_OK) unlink(tmp);
}

tp_status fs_commit(FILE *f, const char *path)
{
    char tmp[TP_PATH_MAX + 8];
    if (fs_path(tmp, sizeof tmp, "%s.tmp", path) != TP_OK) {
        fclose(f);
        return TP_ERR_RANGE;   /* fs_open_tmp made the same name, so this cannot happen */
    }
    int bad = ferror(f) || fflush(f) != 0 || fsync(fileno(f)) != 0;
    int err = errno;
    if (fclose(f) != 0 && !bad) { bad = 1; err = errno; }
    if (bad) {
        unlink(tmp);
        return tp_err(TP_ERR_IO, "writing '%s' failed: %s", path, strerror(err ? err : EIO));
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        unlink(tmp);
        return tp_err(TP_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(err));
    }
    return TP_OK;
}

int fs_write_errno(const char *path)
{
    struct statvfs sv;
    char dir[TP_PATH_MAX];
    int ok = statvfs(path, &sv) == 0;
    if (!ok && errno == ENOENT && fs_path(dir, sizeof dir, "%s", path) == TP_OK) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        ok = statvfs(slash == dir ? "/" : slash ? dir : ".", &sv) == 0;
    }
    if (!ok) return 0;
    if (sv.f_flag & ST_RDONLY) return EROFS;
    return sv.f_bavail == 0 ? ENOSPC : 0;
}

tp_status fs_write_atomic(const char *path, const void *data, size_t n)
{
    FILE *f;
    TP_CHECK(fs_open_tmp(path, &f));
    if (n && fwrite(data, 1, n, f) != n) {
        int err = errno;
        fs_abort(f, path);
        return tp_err(TP_ERR_IO, "writing '%s' failed: %s", path, strerror(err ? err : EIO));
    }
    return fs_commit(f, path);
}

static tp_status write_json(const char *path, const json_t *j, size_t flags)
{
    char *s = json_dumps(j, flags | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (!s) return tp_err(TP_ERR_NOMEM, "cannot serialise JSON for '%s'", path);
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);   /* a trailing newline, as text files should end */
    if (!t) { free(s); return tp_err(TP_ERR_NOMEM, "cannot serialise JSON for '%s'", path); }
    t[n] = '\n', t[n + 1] = '\0';
    tp_status st = fs_write_atomic(path, t, n + 1);
    free(t);
    return st;
}

tp_status fs_write_json(const char *path, const json_t *j) { return write_json(path, j, JSON_INDENT(2)); }
tp_status fs_write_json_compact(const char *path, const json_t *j) { return write_json(path, j, JSON_COMPACT); }

/* ---- fingerprints ------------------------------------------------------------------ */

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

void fs_fingerprint_init(fs_fingerprint *fp)
{
    *fp = (fs_fingerprint){.hash = 0xcbf29ce484222325ull};
}

/* Hashes [off, off + n) of f into *h. */
static tp_status fingerprint_range(FILE *f, const char *path, uint64_t off, uint64_t n, uint64_t *h)
{
    unsigned char buf[4096];
    if (fseeko(f, (off_t)off, SEEK_SET) != 0) return tp_err(TP_ERR_IO, "%s: seek failed: %s", path, strerror(errno));
    while (n > 0) {
        size_t want = n < sizeof buf ? (size_t)n : sizeof buf;
        size_t got = fread(buf, 1, want, f);
        if (got != want) return tp_err(TP_ERR_IO, "%s: read failed (file changed while read?)", path);
        *h = fnv_bytes(*h, buf, got);
        n -= got;
    }
    return TP_OK;
}

tp_status fs_fingerprint_add(fs_fingerprint *fp, const char *path, uint64_t head)
{
    FILE *f = fopen(path, "rb");
    if (!f) return tp_err(TP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        int e = errno;
        fclose(f);
        return tp_err(TP_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    uint64_t size = (uint64_t)sb.st_size;
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    uint64_t h = fnv_bytes(fp->hash, base, strlen(base) + 1);
    h = fnv_bytes(h, &size, sizeof size);
    if (head > size) head = size;
    tp_status st = fingerprint_range(f, path, 0, head, &h);
    const uint64_t blk = 4096, rest = size - head;
    for (int i = 0; st == TP_OK && i < FS_FINGERPRINT_SAMPLES && rest > 0; i++) {
        uint64_t n = rest < blk ? rest : blk;
        uint64_t off = head + (FS_FINGERPRINT_SAMPLES > 1 ? (rest - n) / (FS_FINGERPRINT_SAMPLES - 1) * (uint64_t)i : 0);
        if (i == FS_FINGERPRINT_SAMPLES - 1) off = size - n;
        st = fingerprint_range(f, path, off, n, &h);
    }
    fclose(f);
    TP_CHECK(st);
    fp->hash = h;
    fp->bytes += (int64_t)size;
    if (mtime > fp->mtime_ns) fp->mtime_ns = mtime;
    fp->files++;
    return TP_OK;
}
