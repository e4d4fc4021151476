#include "cmd/generate_cmd.h"

#include "model/model_io.h"
#include "core/log.h"
#include "dist/world.h"
#include "model/forward.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int32_t argmax(const float *row, int V)
{
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (row[i] > row[best]) best = i;   /* first maximum, as torch.argmax */
    return best;
}

tp_status generate_cmd_run(tp_cli *cli)
{
    const char *prompt = cli_take_value(cli, "--prompt");
    const char *ids_text = cli_take_value(cli, "--ids");
    const char *max_s = cli_take_value(cli, "--max-new");
    bool no_stop = cli_take_flag(cli, "--no-stop");
    TP_CHECK(cli_reject_rest(cli));
    if (!prompt == !ids_text) return tp_err(TP_ERR_CONFIG, "generate: give exactly one of --prompt or --ids");
    int max_new = max_s ? atoi(max_s) : 40;
    if (max_new < 1 || max_new > 100000) return tp_err(TP_ERR_CONFIG, "generate: --max-new must be in [1, 100000]");

    tp_model *m = NULL;
    tp_tokenizer *tok = NULL;
    TP_CHECK(model_io_open(&cli->set.model, &m, prompt ? &tok : NULL));
    int32_t *ids = NULL, *out = NULL;
    size_t n = 0;
    tp_forward *f = NULL;
    tp_status st = prompt ? tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n)
                          : model_io_parse_ids(ids_text, &ids, &n);
    if (st == TP_OK && n == 0) st = tp_err(TP_ERR_CONFIG, "generate: the prompt has no tokens");
    int total = (int)n + max_new;
    if (st == TP_OK) st = forward_new(m, 1, total, &f);
    if (st == TP_OK) st = forward_kv_enable(f);
    if (st == TP_OK && !(out = tp_malloc((size_t)total * sizeof *out))) st = TP_ERR_NOMEM;
    int len = (int)n, eos = m->cfg.eos_token_id;
    if (st == TP_OK) {
        memcpy(out, ids, n * sizeof *out);
        const float *logits;
        /* Prefix once, then one token per step from the cache: stop at EOS as
         * transformers' generate does when the config names one. */
        st = forward_step(f, out, 1, len, 0, NULL, TP_LOGITS_LAST, &logits);
        while (st == TP_OK && len < total) {
            int32_t next = argmax(logits, m->cfg.vocab_size);
            out[len++] = next;
            if ((next == eos && !no_stop) || len == total) break;
            st = forward_step(f, &out[len - 1], 1, 1, len - 1, NULL, TP_LOGITS_LAST, &logits);
        }
    }
    if (st == TP_OK && dist_rank() == 0) {
        printf("ids:");
        for (int i = (int)n; i < len; i++) printf("%s%d", i > (int)n ? "," : " ", out[i]);
        printf("\n");
        if (tok) {
            char *text = NULL;
            size_t tl;
            st = tokenizer_decode(tok, out, (size_t)len, 0, &text, &tl);
            if (st == TP_OK) printf("text: %s\n", text);
            free(text);
        }
    }
    free(out);
    free(ids);
    forward_free(f);
    tokenizer_free(tok);
    model_close(m);
    return st;
}
