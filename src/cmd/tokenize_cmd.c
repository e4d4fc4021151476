#include "cmd/tokenize_cmd.h"

#include "model/model_io.h"

#include "core/fsutil.h"
#include "dist/world.h"
#include "model/tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Whole file (or stdin for "-") into memory. */
static tp_status read_all(const char *path, char **data, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) return tp_err(TP_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(f);
        return tp_err(TP_ERR_IO, "%s: is a directory, not a text file", path);
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = tp_malloc(cap);
    tp_status st = buf ? TP_OK : TP_ERR_NOMEM;
    while (st == TP_OK) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { st = tp_err(TP_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, cap * 2); break; }
            buf = nb, cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) st = tp_err(TP_ERR_IO, "%s: read failed", path);
            break;
        }
    }
    if (f != stdin) fclose(f);
    if (st != TP_OK) { free(buf); return st; }
    *data = buf, *len = n;
    return TP_OK;
}

static tp_status print_ids(const tp_tokenizer *tok, const int32_t *ids, size_t n, int show_tokens)
{
    if (show_tokens) {
        for (size_t i = 0; i < n; i++) printf("%d\t%s\n", ids[i], tokenizer_id_to_token(tok, ids[i]));
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
        printf("\n");
    }
    return fflush(stdout) ? tp_err(TP_ERR_IO, "tokenize: writing to stdout failed") : TP_OK;
}

tp_status tokenize_cmd_run(tp_cli *cli)
{
    const char *tok_file = cli_take_value(cli, "--tokenizer");
    const char *text = cli_take_value(cli, "--text");
    const char *file = cli_take_value(cli, "--file");
    const char *ids_text = cli_take_value(cli, "--ids");
    int replace = cli_take_flag(cli, "--replace-invalid");
    int no_special = cli_take_flag(cli, "--no-special");
    int skip_special = cli_take_flag(cli, "--skip-special");
    int show_tokens = cli_take_flag(cli, "--show-tokens");
    TP_CHECK(cli_reject_rest(cli));
    if ((text != NULL) + (file != NULL) + (ids_text != NULL) != 1)
        return tp_err(TP_ERR_CONFIG, "tokenize: give exactly one of --text, --file or --ids");

    tp_tokenizer *tok;
    if (tok_file) TP_CHECK(tokenizer_load(tok_file, &tok));
    else TP_CHECK(model_io_open_tokenizer(cli->set.model.dir, &tok));

    tp_status st = TP_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    char *data = NULL;
    size_t len = 0;
    if (ids_text) {
        TP_CHECK_GOTO(model_io_parse_ids(ids_text, &ids, &n), st, done);
        unsigned flags = skip_special ? TOKENIZER_SKIP_SPECIAL : 0;
        TP_CHECK_GOTO(tokenizer_decode(tok, ids, n, flags, &data, &len), st, done);
        if (dist_rank() == 0 && (fwrite(data, 1, len, stdout) != len || fflush(stdout)))
            st = tp_err(TP_ERR_IO, "tokenize: writing to stdout failed");
        goto done;
    }
    if (file) TP_CHECK_GOTO(read_all(file, &data, &len), st, done);
    unsigned flags = (no_special ? 0 : TOKENIZER_ADD_SPECIAL) | (replace ? TOKENIZER_REPLACE_INVALID : 0);
    st = tokenizer_encode(tok, file ? data : text, file ? len : strlen(text), flags, &ids, &n);
    if (st != TP_OK) {
        tp_err_prefix("tokenize %s", file ? file : "--text");
        goto done;
    }
    if (dist_rank() == 0) st = print_ids(tok, ids, n, show_tokens);
done:
    free(ids);
    free(data);
    tokenizer_free(tok);
    return st;
}
