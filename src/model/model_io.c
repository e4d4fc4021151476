#include "model/model_io.h"

#include "core/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tp_status model_io_open_tokenizer(const char *dir, tp_tokenizer **tok)
{
    char path[TP_PATH_MAX];
    *tok = NULL;
    TP_CHECK(fs_join(path, sizeof path, dir, "tokenizer.json"));
    return tokenizer_load(path, tok);
}

tp_status model_io_open(const tp_model_source *src, tp_model **m, tp_tokenizer **tok)
{
    *m = NULL;
    TP_CHECK(model_open(src->dir, src->convert, m));
    if (!tok) return TP_OK;
    tp_status st = model_io_open_tokenizer(src->dir, tok);
    if (st != TP_OK) {
        model_close(*m);
        *m = NULL;
    }
    return st;
}

tp_status model_io_parse_ids(const char *text, int32_t **ids, size_t *n)
{
    size_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == ',';
    int32_t *out = tp_malloc(cap * sizeof *out);
    if (!out) return TP_ERR_NOMEM;
    size_t k = 0;
    const char *p = text;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);   /* skips the spaces after a comma */
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(out);
            return tp_err(TP_ERR_CONFIG, "--ids: expected non-negative integers separated by ',', got '%s'", text);
        }
        out[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    *ids = out, *n = k;
    return TP_OK;
}
