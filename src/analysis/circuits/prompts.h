/* prompts.h — the prompts the circuit analyses run on, as token ids.
 *
 * Sources: a prompt given on the command line (prompts_encode), a prompts file
 * (.txt: one prompt per non-empty line; .jsonl: one {"text": "..."} object per
 * non-blank line), held-out corpus documents (the documents of data.corpus outside
 * the run's data sample: the first sequence of each as data.seq_len and
 * data.packing cut it), and synthetic repeated sequences [BOS, r1..rL, r1..rL] of
 * seeded random tokens (the setting of the induction stripe score).
 *
 * With `bos` >= 0 every text prompt starts with that token (TransformerLens's
 * to_tokens prepends the BOS token the same way). A prompt that does not fit the
 * model's context, an empty prompt, an empty or unreadable file: TP_ERR_CONFIG
 * naming the file and line (a usage error: exit code 2).
 */
#ifndef TP_CIRCUITS_PROMPTS_H
#define TP_CIRCUITS_PROMPTS_H

#include "core/error.h"
#include "data/dataset.h"
#include "model/tokenizer.h"

#include <stdint.h>

typedef struct {
    int32_t *ids;
    int n;
    char source[160];       /* "FILE:LINE", "corpus FILE:LINE", "synthetic 3", "--prompt" */
    int synthetic_len;      /* L of a synthetic prompt (n = 2L + 1), else 0 */
} circuit_prompt;

typedef struct {
    circuit_prompt *p;
    int n, cap;
    int max_len;            /* longest prompt */
} prompt_set;

/* Limits every prompt is checked against. */
typedef struct {
    int32_t bos;            /* prepended to text prompts; -1: nothing */
    int context;            /* the model's max_position_embeddings */
    int min_tokens;         /* fewest tokens a prompt may have (after BOS) */
} prompt_limits;

/* One text prompt; `what` names it in messages ("circuits trace: --prompt"). */
tp_status prompts_encode(tp_tokenizer *tok, const char *text, const prompt_limits *lim, const char *what,
                         int32_t **ids, int *n);
/* Appends the prompts of a .txt or .jsonl file. */
tp_status prompts_add_file(prompt_set *ps, tp_tokenizer *tok, const char *path, const prompt_limits *lim);
/* Appends one prompt per held-out document: up to `docs` of them drawn by `seed`
 * from the corpus documents outside the run's sample (spec->num_samples drawn by
 * spec->seed). When the sample is the whole corpus it appends none and warns. */
tp_status prompts_add_heldout(prompt_set *ps, tp_tokenizer *tok, const tp_data_spec *spec, int32_t eos, int64_t docs,
                              uint64_t seed, const prompt_limits *lim);
/* Appends `count` prompts [BOS, r1..rL, r1..rL]; r uniform over the ids below
 * `vocab` that the tokenizer has and that are not special, drawn by `seed`. */
tp_status prompts_add_synthetic(prompt_set *ps, tp_tokenizer *tok, int count, int L, int vocab, uint64_t seed,
                                const prompt_limits *lim);
/* Appends token ids as they are (copied; no BOS, no checks): a prompt made
 * elsewhere (tests, goldens); synthetic_len > 0 marks [BOS, r1..rL, r1..rL]. */
tp_status prompts_add_ids(prompt_set *ps, const int32_t *ids, int n, const char *source, int synthetic_len);
void prompt_set_free(prompt_set *ps);

#endif
