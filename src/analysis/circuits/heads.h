/* heads.h — `circuits heads`: every head's scores (head_scores.h) over a set of
 * prompts, its classes and their evidence -> results/circuits/head_scores.json.
 *
 * Each rank runs its contiguous share of the prompts one at a time (a prompt's
 * pattern does not depend on any other prompt) and scores every head of every layer
 * from the attn.hook_pattern callback; the per-prompt records go to rank 0, which
 * averages them in prompt order, so the file is the same for any number of ranks.
 * A head gets class c when its score >= circuits.heads.threshold.<c> and the score
 * exceeds its null baseline by circuits.heads.null_margin.
 */
#ifndef TP_CIRCUITS_HEADS_H
#define TP_CIRCUITS_HEADS_H

#include "analysis/circuits/circuits_common.h"
#include "analysis/circuits/prompts.h"

#include <jansson.h>
#include <stddef.h>

/* One record of doubles per prompt: scores [HS_SCORES][L][H], null baselines
 * [HS_CLASSES][L][H], stripe [L][H] (NaN off synthetic prompts), examples
 * [HS_CLASSES][L][H][k] as (weight, prompt, query, source). */
typedef struct {
    int L, H, k, nprompts;
    size_t rec;
    double *all;             /* rank 0: [nprompts][rec]; NULL elsewhere */
} head_records;

static inline size_t hr_score(const head_records *r, int kind, int l, int h)
{
    return ((size_t)kind * (size_t)r->L + (size_t)l) * (size_t)r->H + (size_t)h;
}
size_t hr_null(const head_records *r, int c, int l, int h);
size_t hr_stripe(const head_records *r, int l, int h);
size_t hr_example(const head_records *r, int c, int l, int h, int s);   /* 4 doubles */

/* The default prompts: circuits.heads.prompts (a file) or the held-out corpus
 * documents, then the synthetic repeated sequences; `file` (non-NULL) replaces
 * circuits.heads.prompts. Every rank builds the same set. */
tp_status heads_prompts(const circuits_ctx *cx, const char *file, prompt_set *ps);
/* Collective: every prompt's record, gathered on rank 0. */
tp_status heads_collect(const circuits_ctx *cx, const prompt_set *ps, head_records *out);
void head_records_free(head_records *r);
/* Rank 0: results/circuits/head_scores.json from the records (head_report.c). */
tp_status heads_report(const circuits_ctx *cx, const prompt_set *ps, const head_records *r, json_t **doc);
/* Collective: prompts -> collect -> report -> write (rank 0). */
tp_status heads_run(const circuits_ctx *cx, const char *file, const char *run_dir);
/* "previous_token L1H3 0.61 | induction L2H5 0.45 | 5 labels" from the file. */
void heads_headline(const char *run_dir, char *buf, size_t n);

#endif
