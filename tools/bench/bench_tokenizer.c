/* bench_tokenizer.c — encoding speed of the C tokenizer (run by tools/bench/tokenizer.sh,
 * which runs Hugging Face `tokenizers` on the same text beside it).
 *
 *   bench_tokenizer --tokenizer FILE --text FILE [--docs] [--reps 3] [--ids-out F]
 *
 * --docs: FILE is JSON lines with a "text" field, one tokenizer_encode call per
 * document; without it the whole file is one call. One thread. One untimed warm-up
 * pass (it also fills the piece cache, as the Rust side's first pass fills its own),
 * then `reps` timed passes; the median is reported. --ids-out writes every id of the
 * warm-up pass as little-endian int32, for tokenizer.sh to compare with the Rust ids.
 *
 * Output is `key=value` lines for the script to collect.
 */
#include "core/error.h"
#include "model/tokenizer.h"

#define BENCH_NAME "bench_tokenizer"
#include "bench_common.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) DIE("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) DIE("cannot read %s", path);
    fclose(f);
    b[n] = '\0';
    *len = (size_t)n;
    return b;
}

typedef struct {
    const char *text;
    size_t len;
} doc;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *tok_path = NULL, *text_path = NULL, *ids_out = NULL;
    int docs_mode = 0, reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok_path = argv[++i];
        else if (!strcmp(argv[i], "--text") && i + 1 < argc) text_path = argv[++i];
        else if (!strcmp(argv[i], "--ids-out") && i + 1 < argc) ids_out = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--docs")) docs_mode = 1;
        else DIE("unknown argument %s", argv[i]);
    }
    if (!tok_path || !text_path || reps < 1) DIE("usage: bench_tokenizer --tokenizer F --text F [--docs] [--reps N]");

    double t0 = now_s();
    tp_tokenizer *tok;
    CHECK(tokenizer_load(tok_path, &tok));
    double load_s = now_s() - t0;

    size_t len;
    char *raw = read_file(text_path, &len);
    doc *docs = NULL;
    size_t nd = 0, bytes = 0;
    json_t **keep = NULL;
    if (docs_mode) {
        size_t cap = 1024;
        docs = malloc(cap * sizeof *docs);
        keep = malloc(cap * sizeof *keep);
        for (char *line = strtok(raw, "\n"); line; line = strtok(NULL, "\n")) {
            json_error_t err;
            json_t *j = json_loads(line, JSON_ALLOW_NUL, &err);
            const json_t *t = json_object_get(j, "text");
            if (!json_is_string(t)) DIE("%s: line %zu has no \"text\"", text_path, nd + 1);
            if (nd == cap) {
                cap *= 2;
                docs = realloc(docs, cap * sizeof *docs);
                keep = realloc(keep, cap * sizeof *keep);
            }
            keep[nd] = j;
            docs[nd++] = (doc){json_string_value(t), json_string_length(t)};
            bytes += json_string_length(t);
        }
    } else {
        docs = malloc(sizeof *docs);
        docs[0] = (doc){raw, len};
        nd = 1, bytes = len;
    }

    /* Warm-up pass, also the ids for the parity check. */
    FILE *fo = ids_out ? fopen(ids_out, "wb") : NULL;
    if (ids_out && !fo) DIE("cannot write %s", ids_out);
    size_t tokens = 0;
    double cold = now_s();
    for (size_t d = 0; d < nd; d++) {
        int32_t *ids;
        size_t n;
        CHECK(tokenizer_encode(tok, docs[d].text, docs[d].len, TOKENIZER_ADD_SPECIAL, &ids, &n));
        if (fo && fwrite(ids, sizeof *ids, n, fo) != n) DIE("cannot write %s", ids_out);
        tokens += n;
        free(ids);
    }
    cold = now_s() - cold;
    if (fo) fclose(fo);

    double *times = malloc((size_t)reps * sizeof *times);
    for (int r = 0; r < reps; r++) {
        double t = now_s();
        for (size_t d = 0; d < nd; d++) {
            int32_t *ids;
            size_t n;
            CHECK(tokenizer_encode(tok, docs[d].text, docs[d].len, TOKENIZER_ADD_SPECIAL, &ids, &n));
            free(ids);
        }
        times[r] = now_s() - t;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    double med = times[reps / 2];
    printf("mode=%s\ndocs=%zu\nbytes=%zu\ntokens=%zu\nload_s=%.3f\ncold_s=%.4f\nseconds=%.4f\n"
           "tokens_per_s=%.0f\nmb_per_s=%.2f\n",
           docs_mode ? "docs" : "whole", nd, bytes, tokens, load_s, cold, med, (double)tokens / med,
           (double)bytes / med / 1e6);
    for (size_t d = 0; keep && d < nd; d++) json_decref(keep[d]);
    free(keep);
    free(docs);
    free(raw);
    free(times);
    tokenizer_free(tok);
    return 0;
}
