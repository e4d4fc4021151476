/* ablate.h — what an intervention does to the model's predictions, prompt by prompt.
 *
 * For each prompt x[0..T) (T >= 2) the clean and the intervened forward pass give
 * logits ℓ_t and ℓ'_t. Per prompt, in f64 from the f32 logits:
 *   ce_clean, ce_intervened  mean over t < T-1 of −log softmax(ℓ_t)[x_{t+1}]
 *   delta_ce                 ce_intervened − ce_clean
 *   kl                       mean over all t of KL(softmax ℓ_t ‖ softmax ℓ'_t)
 *   delta_logit[j]           ℓ'_{T-1}[tok_j] − ℓ_{T-1}[tok_j] for each chosen token
 *   delta_logprob[j]         the same for log softmax
 * Rows are laid out as ablate_row_width(nchosen) doubles: ABLATE_* columns, then the
 * chosen tokens' delta_logit, then their delta_logprob.
 */
#ifndef TP_ABLATE_H
#define TP_ABLATE_H

#include "analysis/verify/intervention.h"

enum { ABLATE_CE_CLEAN = 0, ABLATE_CE_INTERVENED, ABLATE_DELTA_CE, ABLATE_KL, ABLATE_TOKENS, ABLATE_BASE_COLS };

static inline int ablate_row_width(int nchosen) { return ABLATE_BASE_COLS + 2 * nchosen; }

/* Prompts lo..hi-1 of `prompts` (global indices, used by resample's hash); rows gets
 * (hi − lo) rows. f must hold one prompt (max_seq >= its length). */
tp_status ablate_prompts(tp_forward *f, iv_set *s, const tp_sequences *prompts, size_t lo, size_t hi,
                         const int32_t *chosen, int nchosen, double *rows);

/* Every prompt over the ranks: rank r runs prompts [n·r/size, n·(r+1)/size) with
 * ablate_prompts on a forward pass of its own, and rank 0 gets every row in prompt
 * order in *all (n × ablate_row_width(nchosen) doubles, malloc'd; NULL on the other
 * ranks). The rows do not depend on the number of ranks. Progress lines (rank 0)
 * when `progress`. Collective: a failure on any rank is every rank's. */
tp_status ablate_prompts_shared(const tp_model *m, iv_set *s, const tp_sequences *prompts, const int32_t *chosen,
                                int nchosen, bool progress, double **all);

/* {"mean", "ci95_low", "ci95_high", "n"} of column `col` of rows [n, width]: the mean
 * and its 95 % percentile bootstrap interval over the n rows (core/bootstrap.h,
 * `resamples`, `seed`). NULL on allocation failure. */
json_t *ablate_ci_json(const double *rows, size_t n, int width, int col, int resamples, uint64_t seed);

#endif
