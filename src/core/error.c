#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TP_ERR_MAX 2048
/* Messages longer than the buffer are cut, by design: one line is enough. */
#pragma GCC diagnostic ignored "-Wformat-truncation"
static _Thread_local char err_buf[TP_ERR_MAX];
static _Thread_local char err_where[512];

/* "src/core/x.c": the build makes __FILE__ relative to the source root
 * (-fmacro-prefix-map in CMakeLists.txt), so a relative path is the answer. A
 * compiler without that flag gives an absolute path: then the last "/src/" (or
 * kernels/, tests/, tools/). */
static const char *base_name(const char *path)
{
    if (path[0] != '/') return path;
    static const char *const roots[] = {"/src/", "/kernels/", "/tests/", "/tools/"};
    const char *best = NULL;
    for (size_t r = 0; r < sizeof roots / sizeof *roots; r++)
        for (const char *s = strstr(path, roots[r]); s; s = strstr(s + 1, roots[r]))
            if (!best || s > best) best = s;
    if (best) return best + 1;
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

tp_status tp_err_at(tp_status code, const char *file, int line, const char *fmt, ...)
{
    char msg[TP_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One line, always: user text (file names, JSON) must not break the line. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    snprintf(err_buf, sizeof err_buf, "%s", msg);
    snprintf(err_where, sizeof err_where, "%s:%d", base_name(file), line);
    return code;
}

void tp_err_prefix(const char *fmt, ...)
{
    char pre[TP_ERR_MAX], old[TP_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", err_buf);
    snprintf(err_buf, sizeof err_buf, "%s: %s", pre, old);
}

const char *tp_err_msg(void) { return err_buf; }
const char *tp_err_where(void) { return err_where; }
void tp_err_clear(void) { err_buf[0] = '\0', err_where[0] = '\0'; }
void tp_err_restore(const char *saved) { snprintf(err_buf, sizeof err_buf, "%s", saved); }

const char *tp_status_name(tp_status s)
{
    switch (s) {
    case TP_OK: return "ok";
    case TP_ERR_IO: return "I/O error";
    case TP_ERR_FORMAT: return "format error";
    case TP_ERR_CONFIG: return "config error";
    case TP_ERR_UNSUPPORTED: return "unsupported";
    case TP_ERR_RANGE: return "out of range";
    case TP_ERR_NOMEM: return "out of memory";
    case TP_ERR_MPI: return "MPI error";
    case TP_ERR_HDF5: return "HDF5 error";
    case TP_ERR_CUDA: return "CUDA error";
    case TP_ERR_NO_DEVICE: return "no GPU";
    case TP_ERR_INTERNAL: return "internal error";
    case TP_ERR_STOPPED: return "stopped";
    }
    return "unknown error";
}

void *tp_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) tp_err(TP_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *tp_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) tp_err(TP_ERR_NOMEM, "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}
