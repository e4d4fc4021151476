#include "cmd/forward_cmd.h"

#include "core/fsutil.h"
#include "core/log.h"
#include "dist/world.h"
#include "io/npy.h"
#include "model/forward.h"
#include "model/hooks.h"
#include "model/model.h"
#include "model/model_io.h"
#include "model/tokenizer.h"
#include "run_layout.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A capture point saved whole: [B, ...] assembled from the per-call tensors. */
typedef struct {
    char name[96];
    float *data;
    int ndim;
    int64_t shape[4];
} dump_buf;

static tp_status dump_cb(const tp_hook_info *info, float *data, void *user)
{
    dump_buf *d = user;
    size_t n = 1;
    for (int i = 1; i < info->ndim; i++) n *= (size_t)info->shape[i];
    if (!d->data) return tp_err(TP_ERR_INTERNAL, "dump buffer for %s not allocated", d->name);
    memcpy(d->data + (size_t)info->seq * n, data, (size_t)info->shape[0] * n * sizeof(float));
    return TP_OK;
}

/* Parses "1,2,3/4,5,6" into ids [B, T]. */
static tp_status parse_ids(const char *text, int32_t **ids, int *B, int *T)
{
    int n = 0, seqs = 1, cur = 0, t = -1;
    for (const char *p = text; *p; p++) if (*p == ',' || *p == '/') n++;
    int32_t *out = tp_malloc((size_t)(n + 1) * sizeof *out);
    if (!out) return TP_ERR_NOMEM;
    const char *p = text;
    n = 0;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX) {
            free(out);
            return tp_err(TP_ERR_CONFIG, "--ids: expected non-negative integers separated by ',' and '/', got '%s'", text);
        }
        out[n++] = (int32_t)v;
        cur++;
        if (*end == ',') { p = end + 1; continue; }
        if (*end == '/' || *end == '\0') {
            if (t >= 0 && cur != t) {
                free(out);
                return tp_err(TP_ERR_CONFIG, "--ids: all sequences must have the same length (%d vs %d)", t, cur);
            }
            t = cur, cur = 0;
            if (*end == '\0') break;
            seqs++;
            p = end + 1;
            continue;
        }
        free(out);
        return tp_err(TP_ERR_CONFIG, "--ids: unexpected '%c' in '%s'", *end, text);
    }
    *ids = out, *B = seqs, *T = t;
    return TP_OK;
}

/* --prompt: the text as the tokenizer encodes it (special tokens as its
 * post-processor adds them), one sequence. */
static tp_status encode_prompt(tp_tokenizer *tok, const char *text, int32_t **ids, int *B, int *T)
{
    size_t n = 0;
    TP_CHECK(tokenizer_encode(tok, text, strlen(text), 0, ids, &n));
    if (n == 0) {
        free(*ids);
        *ids = NULL;
        return tp_err(TP_ERR_CONFIG, "forward: --prompt '%.80s' has no tokens", text);
    }
    *B = 1, *T = (int)n;
    return TP_OK;
}

static tp_status load_ids_file(const char *path, int32_t **ids, int *B, int *T)
{
    npy_array a;
    TP_CHECK(npy_read(path, &a));
    if ((a.dtype != TP_DTYPE_I64 && a.dtype != TP_DTYPE_I32) || a.ndim < 1 || a.ndim > 2 || a.numel < 1) {
        npy_free(&a);
        return tp_err(TP_ERR_FORMAT, "%s: token ids must be int32/int64 of shape [T] or [B, T]", path);
    }
    int32_t *out = tp_malloc((size_t)a.numel * sizeof *out);
    if (!out) { npy_free(&a); return TP_ERR_NOMEM; }
    for (int64_t i = 0; i < a.numel; i++) {
        int64_t v = a.dtype == TP_DTYPE_I64 ? ((int64_t *)a.data)[i] : ((int32_t *)a.data)[i];
        if (v < 0 || v > INT32_MAX) {
            free(out);
            npy_free(&a);
            return tp_err(TP_ERR_FORMAT, "%s: token id %lld at index %lld is negative or too large",
                          path, (long long)v, (long long)i);
        }
        out[i] = (int32_t)v;
    }
    *B = a.ndim == 2 ? (int)a.shape[0] : 1;
    *T = (int)a.shape[a.ndim - 1];
    *ids = out;
    npy_free(&a);
    return TP_OK;
}

/* The decoded text of one token, quoted, for the top-token lines ("" without a
 * tokenizer). */
static void token_text(const tp_tokenizer *tok, int32_t id, char *buf, size_t n)
{
    buf[0] = '\0';
    char *text = NULL;
    size_t len = 0;
    if (!tok || tokenizer_decode(tok, &id, 1, 0, &text, &len) != TP_OK) { free(text); return; }
    size_t o = 0;
    if (o + 1 < n) buf[o++] = '\'';
    for (size_t i = 0; i < len && o + 3 < n; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n' || c == '\t' || c == '\'' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = c == '\n' ? 'n' : c == '\t' ? 't' : (char)c;
        } else {
            buf[o++] = (char)c;
        }
    }
    if (o + 1 < n) buf[o++] = '\'';
    buf[o] = '\0';
    free(text);
}

/* Top k next tokens after position pos of sequence b, decoded when tok is given. */
static void print_top(const float *logits, int V, int k, int b, int pos, const tp_tokenizer *tok)
{
    /* Top k by partial selection; softmax for the probabilities. */
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    for (int i = 0; i < V; i++) sum += exp(logits[i] - mx);
    int best[64];
    int n = k < V ? k : V;
    for (int j = 0; j < n; j++) {
        int arg = -1;
        for (int i = 0; i < V; i++) {
            int taken = 0;
            for (int q = 0; q < j && !taken; q++) taken = best[q] == i;
            if (!taken && (arg < 0 || logits[i] > logits[arg])) arg = i;
        }
        best[j] = arg;
        char text[96];
        token_text(tok, arg, text, sizeof text);
        printf("seq %d  pos %d  rank %2d  token %6d  logit %9.4f  p %.4f  %s\n", b, pos, j + 1, arg, logits[arg],
               exp(logits[arg] - mx) / sum, text);
    }
}

tp_status forward_cmd_run(tp_cli *cli)
{
    const char *ids_text = cli_take_value(cli, "--ids");
    const char *ids_file = cli_take_value(cli, "--ids-file");
    const char *prompt = cli_take_value(cli, "--prompt");
    const char *top_s = cli_take_value(cli, "--top");
    const char *dump = cli_take_value(cli, "--dump");
    const char *dump_dir = cli_take_value(cli, "--dump-dir");
    const char *logits_out = cli_take_value(cli, "--logits-out");
    TP_CHECK(cli_reject_rest(cli));
    if ((ids_text != NULL) + (ids_file != NULL) + (prompt != NULL) != 1)
        return tp_err(TP_ERR_CONFIG, "forward: give exactly one of --prompt, --ids or --ids-file");
    int top = top_s ? atoi(top_s) : 10;
    if (top < 0 || top > 64) return tp_err(TP_ERR_CONFIG, "forward: --top must be in [0, 64]");

    /* The tokenizer: needed for --prompt, used to print the top tokens as text when
     * the model directory has one. */
    tp_tokenizer *tok = NULL;
    if (prompt) TP_CHECK(model_io_open_tokenizer(cli->set.model.dir, &tok));
    else if (model_io_open_tokenizer(cli->set.model.dir, &tok) != TP_OK) tok = NULL;
    int32_t *ids = NULL;
    int B = 0, T = 0;
    tp_status st = prompt ? encode_prompt(tok, prompt, &ids, &B, &T)
                 : ids_text ? parse_ids(ids_text, &ids, &B, &T) : load_ids_file(ids_file, &ids, &B, &T);
    if (st != TP_OK) { tokenizer_free(tok); return st; }

    tp_model *m = NULL;
    tp_forward *f = NULL;
    tp_hooks *hooks = NULL;
    dump_buf *bufs = NULL;
    int nd = 0;
    TP_CHECK_GOTO(model_io_open(&cli->set.model, &m, NULL), st, done);
    const tp_model_config *c = &m->cfg;
    TP_CHECK_GOTO(hooks_new(c->num_layers, &hooks), st, done);
    if (dump) {
        /* One buffer per requested point, sized from its shape. */
        char *list = strdup(dump);
        if (!list) { st = tp_err(TP_ERR_NOMEM, "out of memory"); goto done; }
        for (char *p = list; *p; p++) if (*p == ',') nd++;
        nd++;
        bufs = tp_calloc((size_t)nd, sizeof *bufs);
        int i = 0;
        for (char *name = strtok(list, ","); name && bufs; name = strtok(NULL, ","), i++) {
            int L;
            tp_hook_point pt;
            st = hooks_parse_name(c, name, &L, &pt);
            if (st != TP_OK) break;
            bufs[i].ndim = hooks_point_shape(c, pt, B, T, bufs[i].shape);
            size_t n = 1;
            for (int k = 0; k < bufs[i].ndim; k++) n *= (size_t)bufs[i].shape[k];
            bufs[i].data = tp_malloc(n * sizeof(float));
            if (!bufs[i].data) { st = TP_ERR_NOMEM; break; }
            hooks_point_name(L, pt, bufs[i].name, sizeof bufs[i].name);
            st = hooks_add_reader(hooks, L, pt, dump_cb, &bufs[i]);
            if (st != TP_OK) break;
        }
        free(list);
        if (!bufs) st = TP_ERR_NOMEM;
        if (st != TP_OK) goto done;
    }
    TP_CHECK_GOTO(forward_new(m, B, T, &f), st, done);
    const float *logits = NULL;
    tp_logits_mode mode = logits_out ? TP_LOGITS_ALL : TP_LOGITS_LAST;
    TP_CHECK_GOTO(forward_run(f, ids, B, T, hooks, mode, -1, &logits), st, done);

    if (dist_rank() == 0) {
        int V = c->vocab_size;
        for (int b = 0; b < B && top > 0; b++) {
            const float *row = mode == TP_LOGITS_ALL ? logits + ((size_t)b * T + T - 1) * V
                                                     : logits + (size_t)b * V;
            print_top(row, V, top, b, T - 1, tok);
        }
        if (logits_out) {
            TP_CHECK_GOTO(fs_mkdir_parent(logits_out), st, done);
            int64_t shape[3] = {B, T, V};
            TP_CHECK_GOTO(npy_write(logits_out, TP_DTYPE_F32, 3, shape, logits), st, done);
        }
        if (nd) {
            char dir[TP_PATH_MAX];
            if (dump_dir) TP_CHECK_GOTO(fs_path(dir, sizeof dir, "%s", dump_dir), st, done);
            else TP_CHECK_GOTO(run_path(dir, sizeof dir, cli->run_dir, RUN_FORWARD_DIR), st, done);
            TP_CHECK_GOTO(fs_mkdir_p(dir), st, done);
            for (int i = 0; i < nd; i++) {
                char path[TP_PATH_MAX], file[128];
                snprintf(file, sizeof file, "%s.npy", bufs[i].name);
                TP_CHECK_GOTO(fs_join(path, sizeof path, dir, file), st, done);
                TP_CHECK_GOTO(npy_write(path, TP_DTYPE_F32, bufs[i].ndim, bufs[i].shape, bufs[i].data), st, done);
                tp_log_info("forward: wrote %s", path);
            }
        }
    }
    st = TP_OK;
done:
    for (int i = 0; bufs && i < nd; i++) free(bufs[i].data);
    free(bufs);
    hooks_free(hooks);
    forward_free(f);
    model_close(m);
    tokenizer_free(tok);
    free(ids);
    return st;
}
