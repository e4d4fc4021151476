#include "io/h5_check.h"

#include <stdio.h>

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
