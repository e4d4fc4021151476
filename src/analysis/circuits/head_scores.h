/* head_scores.h — what an attention pattern says about its head (docs/circuits.md).
 *
 * A pattern A [T, T] (query i, source j, causal: A[i, j] = 0 for j > i, rows sum
 * to 1) of one head on one prompt is scored against a detection pattern D [T, T]
 * of 0/1 entries, as TransformerLens's head_detector does with error_measure="mul":
 *
 *     score(A, D) = Σ_ij A[i,j] D[i,j] / Σ_ij A[i,j]        (no exclusions)
 *
 * and averaged over prompts. The detection patterns (tokens t[0..T)):
 *   previous_token   D[i, i-1] = 1                                    (TL)
 *   duplicate_token  D[i, j] = 1 for j < i with t[j] = t[i]           (TL)
 *   induction        D[i, j] = 1 for 1 <= j <= i with t[j-1] = t[i]   (TL: the duplicate
 *                    pattern shifted one source position right)
 *   bos              D[i, 0] = 1: attention to the first position
 *   self             D[i, i] = 1
 *   local            D[i, j] = 1 for i-w < j <= i (w = circuits.heads.local_window)
 * entropy is not a class: the mean over queries i >= 1 of -Σ_j A[i,j] ln A[i,j]
 * (nats; query 0 sees one position and has none).
 *
 * The null baseline of a score is the same score on the pattern with each query's
 * row permuted over its causal window (A'[i, j] = A[i, π_i(j)], π_i a seeded
 * permutation of 0..i): what a head that attends as much, but to no position in
 * particular, would score. The induction stripe score of a prompt [BOS, r1..rL,
 * r1..rL] (T = 2L + 1) is the mean of A[i, i+1-L] over the second half,
 * i = L+1..2L: the weight on the token after the previous occurrence.
 */
#ifndef TP_HEAD_SCORES_H
#define TP_HEAD_SCORES_H

#include <stdint.h>

typedef enum {
    HS_PREVIOUS_TOKEN = 0,
    HS_DUPLICATE_TOKEN,
    HS_INDUCTION,
    HS_BOS,
    HS_SELF,
    HS_LOCAL,
    HS_CLASSES,                      /* scores that are classes (with a null baseline) */
    HS_ENTROPY = HS_CLASSES,         /* the one score that is not */
    HS_SCORES
} hs_score_kind;

/* "previous_token", ..., "local", "entropy". */
const char *hs_class_name(int kind);

/* D [T, T] of class c (< HS_CLASSES) for tokens t[0..T). */
void hs_detection_pattern(int c, const int32_t *t, int T, int local_window, uint8_t *D);
/* Σ A⊙D / Σ A over the T x T entries (f64 sums). */
double hs_score(const float *A, const uint8_t *D, int T);
/* Mean entropy in nats over queries 1..T-1 (NaN for T < 2). */
double hs_entropy(const float *A, int T);
/* Mean of A[i, i+1-L] over i = L+1..2L (needs T >= 2L + 1). */
double hs_induction_stripe(const float *A, int T, int L);
/* out = A with row i's entries 0..i permuted by a permutation drawn from `seed`
 * (entries above the diagonal stay 0). */
void hs_shuffle_causal(const float *A, int T, uint64_t seed, float *out);
/* A seed for (base, a, b, c, d): splitmix64 mixing, the same on every rank. */
uint64_t hs_seed(uint64_t base, uint64_t a, uint64_t b, uint64_t c, uint64_t d);

/* One example of a class: a query i >= 1 and a source j with D[i, j] = 1. */
typedef struct {
    double weight;                   /* A[i, j]; -1: no example */
    int prompt, query, source;
} hs_example;
/* The k pairs (i >= 1, j) with D[i, j] = 1 of largest A[i, j], largest first;
 * unused slots get weight -1. Every example gets prompt = `prompt`. */
void hs_top_examples(const float *A, const uint8_t *D, int T, int k, int prompt, hs_example *out);
/* Inserts e into top[0..k) (largest weight first; ties: smaller prompt, query,
 * source first), keeping k. */
void hs_example_insert(hs_example *top, int k, const hs_example *e);

#endif
