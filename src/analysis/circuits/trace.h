/* trace.h — `circuits trace`: the attention of one prompt, head by head
 * (docs/circuits.md) -> results/circuits/trace/<id>.json and one heat map per
 * layer, results/circuits/trace/<id>/layer_<L>.svg.
 *
 * Per selected layer and head, from attn.hook_pattern A [T, T]:
 *   pattern                   A itself
 *   entropy                   mean over queries i >= 1 of -Σ_j A[i,j] ln A[i,j] (nats),
 *                             and per query (entropy_per_query)
 *   mean_attended_distance    mean over queries i >= 1 of Σ_j A[i,j] (i - j), positions
 *   attention_to_first_token  mean over queries i >= 1 of A[i,0]
 *   top_sources               the sources j of largest attention mass Σ_i A[i,j] / T
 * (queries i >= 1: query 0 sees only itself). Rank 0 runs the prompt and writes;
 * the figures first, the JSON last.
 */
#ifndef TP_CIRCUITS_TRACE_H
#define TP_CIRCUITS_TRACE_H

#include "analysis/circuits/circuits_common.h"

#include <stdint.h>

typedef struct {
    const char *prompt;       /* the text, as given */
    const int32_t *ids;       /* its tokens (BOS first when prepended) */
    int T;
    const char *id;           /* names the outputs */
    const uint8_t *select;    /* [L][H] 1 = traced */
} trace_request;

/* Collective (rank 0 works, the others wait for its verdict). */
tp_status trace_run(const circuits_ctx *cx, const trace_request *rq, const char *run_dir);

/* Per-head statistics of one pattern (exposed for the tests). */
typedef struct {
    double entropy, mean_distance, first_token;
} trace_stats;
void trace_head_stats(const float *A, int T, trace_stats *out);

#endif
