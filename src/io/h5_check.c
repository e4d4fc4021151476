#include "io/h5_check.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t n;
} walk_ctx;

static herr_t take_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    walk_ctx *w = data;
    if (n == 0) snprintf(w->buf, w->n, "%s (%s)", e->desc ? e->desc : "?", e->func_name ? e->func_name : "?");
    return 0;
}

const char *h5_last_error(char *buf, size_t n)
{
    buf[0] = '\0';
    walk_ctx w = {buf, n};
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_innermost, &w);
    return buf;
}

const char *h5_cause(char *buf, size_t n, int err)
{
    h5_last_error(buf, n);
    if (err != 0 && !strstr(buf, strerror(err))) {
        /* The OS error is what the user acts on: HDF5's text (which can name a long
         * path twice, and cut before its own "error message = ...") makes room for it. */
        const char *os = strerror(err);
        size_t l = strlen(buf), room = strlen(os) + 5;   /* "...: " */
        if (l && l + room >= n) {
            l = n > room + 1 ? n - room - 1 : 0;
            snprintf(buf + l, n - l, "...");
            l = strlen(buf);
        }
        snprintf(buf + l, n - l, "%s%s", l ? ": " : "", os);
    }
    if (!buf[0]) snprintf(buf, n, "no cause given by HDF5");
    return buf;
}
