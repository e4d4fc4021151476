#include "model/model_io.h"

#include "core/fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tp_status model_io_open(const tp_config *cfg, tp_model **m, tp_tokenizer **tok)
{
    const char *dir = tp_config_str(cfg, "model.path");
    const char *conv = tp_config_str(cfg, "model.weight_conversion");
    *m = NULL;
    TP_CHECK(model_open(dir, !strcmp(conv, "upfront") ? TP_CONVERT_UPFRONT : TP_CONVERT_PER_MATRIX, m));
    if (!tok) return TP_OK;
    char path[4200];
    fs_join(path, sizeof path, dir, "tokenizer.json");
    tp_status st = tokenizer_load(path, tok);
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
