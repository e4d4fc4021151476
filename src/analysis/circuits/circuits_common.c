/* circuits_common.c — model, tokens and output files shared by the circuits
 * commands (circuits_common.h). */
#include "analysis/circuits/circuits_common.h"

#include "core/fsutil.h"
#include "core/log.h"
#include "model/model_io.h"
#include "run_layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

tp_status circuits_open(const tp_settings *set, const circuits_settings *cs, circuits_ctx *cx)
{
    memset(cx, 0, sizeof *cx);
    cx->set = set, cx->cs = cs;
    TP_CHECK(model_io_open(&set->model, &cx->m, &cx->tok));
    const tp_model_config *c = &cx->m->cfg;
    cx->bos = c->bos_token_id >= 0 ? c->bos_token_id : c->eos_token_id;
    if (cx->bos >= c->vocab_size) cx->bos = -1;
    return TP_OK;
}

void circuits_close(circuits_ctx *cx)
{
    tokenizer_free(cx->tok);
    model_close(cx->m);
    cx->tok = NULL, cx->m = NULL;
}

prompt_limits circuits_limits(const circuits_ctx *cx, int min_tokens)
{
    return (prompt_limits){.bos = cx->cs->prepend_bos ? cx->bos : -1,
                           .context = cx->m->cfg.max_position_embeddings, .min_tokens = min_tokens};
}

json_t *circuits_model_json(const circuits_ctx *cx)
{
    const tp_model_config *c = &cx->m->cfg;
    return json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o}", "path", cx->m->dir, "name",
        c->name, "architecture", c->architecture, "n_layers", c->num_layers, "n_heads", c->num_heads, "n_kv_heads",
        c->num_kv_heads, "d_model", c->hidden_size, "d_head", c->head_dim, "d_mlp", c->intermediate_size,
        "vocab_size", c->vocab_size, "context", c->max_position_embeddings, "bos_token",
        cx->bos >= 0 ? json_integer(cx->bos) : json_null());
}

json_t *circuits_text_json(const circuits_ctx *cx, const int32_t *ids, int n)
{
    char *text = NULL;
    size_t len = 0;
    json_t *j = tokenizer_decode(cx->tok, ids, (size_t)n, 0, &text, &len) == TP_OK ? json_stringn(text, len) : NULL;
    free(text);
    tp_err_clear();
    return j ? j : json_string("");
}

json_t *circuits_tokens_json(const circuits_ctx *cx, const int32_t *ids, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:i, s:i, s:o}", "position", i, "id", ids[i], "text",
                                           circuits_text_json(cx, ids + i, 1)));
    return a;
}

json_t *circuits_prompts_json(const circuits_ctx *cx, const prompt_set *ps)
{
    json_t *a = json_array();
    for (int i = 0; i < ps->n; i++) {
        const circuit_prompt *p = &ps->p[i];
        json_array_append_new(a, json_pack("{s:s, s:i, s:o}", "source", p->source, "tokens", p->n, "text",
                                           circuits_text_json(cx, p->ids, p->n)));
    }
    return a;
}

void circuits_rank_share(int n, int rank, int size, int *lo, int *hi)
{
    *lo = (int)((int64_t)n * rank / size);
    *hi = (int)((int64_t)n * (rank + 1) / size);
}

tp_status circuits_write_json(const char *run_dir, const char *artifact, const json_t *doc)
{
    char path[TP_PATH_MAX];
    TP_CHECK(run_path(path, sizeof path, run_dir, artifact));
    TP_CHECK(fs_mkdir_parent(path));
    TP_CHECK(fs_write_json(path, doc));
    tp_log_info("circuits: wrote %s", path);
    return TP_OK;
}

json_t *circuits_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }
