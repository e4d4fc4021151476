/* circuits_common.h — what every circuits command shares: the model and its
 * tokenizer, the BOS token, the "model" block of every JSON, token texts, the
 * split of prompts over the ranks, and writing a result atomically. */
#ifndef TP_CIRCUITS_COMMON_H
#define TP_CIRCUITS_COMMON_H

#include "analysis/circuits/circuits_phase.h"
#include "analysis/circuits/prompts.h"
#include "core/error.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "settings.h"

#include <jansson.h>

typedef struct {
    const tp_settings *set;
    const circuits_settings *cs;
    tp_model *m;
    tp_tokenizer *tok;
    int32_t bos;            /* bos_token_id, else eos_token_id; -1: the model has neither */
} circuits_ctx;

/* Opens set->model with its tokenizer. */
tp_status circuits_open(const tp_settings *set, const circuits_settings *cs, circuits_ctx *cx);
void circuits_close(circuits_ctx *cx);
/* The limits of text prompts: BOS when circuits.prepend_bos, the model's context,
 * at least min_tokens tokens of text. */
prompt_limits circuits_limits(const circuits_ctx *cx, int min_tokens);

/* {"path", "name", "architecture", "n_layers", "n_heads", "n_kv_heads", "d_model",
 *  "d_head", "d_mlp", "vocab_size", "context"} */
json_t *circuits_model_json(const circuits_ctx *cx);
/* The decoded text of ids[0..n) ("" when it cannot be decoded). */
json_t *circuits_text_json(const circuits_ctx *cx, const int32_t *ids, int n);
/* [{"position", "id", "text"}, ...] of ids[0..n). */
json_t *circuits_tokens_json(const circuits_ctx *cx, const int32_t *ids, int n);
/* [{"source", "tokens", "text"}, ...] of the set. */
json_t *circuits_prompts_json(const circuits_ctx *cx, const prompt_set *ps);

/* Prompts [*lo, *hi) of this rank: contiguous, in order. */
void circuits_rank_share(int n, int rank, int size, int *lo, int *hi);

/* Rank 0: run_dir/artifact written atomically (its folder made first). */
tp_status circuits_write_json(const char *run_dir, const char *artifact, const json_t *doc);
/* A JSON number, or null for NaN/Inf. */
json_t *circuits_num(double v);

#endif
