/* describe.h — a feature's description without a language model: a rule fitted on
 * its training contexts that predicts where (and how strongly) it fires, scored on
 * held-out contexts by the detection and simulation protocols of the LLM explainers
 * (Bills et al. 2023, OpenAI "Language models can explain neurons": simulation;
 * Paulo et al. 2024, Delphi, and SAEBench: detection), with the same arithmetic and
 * a rule in place of the LLM.
 *
 * A window is a run of tokens x[0..n) of one sequence with the feature's true
 * activation a[0..n) at every token (a ≥ 0; it fires where a > 0), the token before
 * x[0] in its sequence (prev, −1 at the start) and its document's domain.
 *
 * Keys. A rule of kind k looks at one key per position t:
 *   token   x[t]
 *   bigram  (x[t−1], x[t]) (x[−1] = prev; −1 at the start of a sequence)
 *   domain  the window's domain
 * Fitting (desc_fit) over every position of the training windows, per key κ:
 *   count(κ), fires(κ) = #{a > 0}, mass(κ) = Σ a.
 * The rule keeps the keys with fires(κ) ≥ 1 and fires(κ)/count(κ) ≥ min_precision; a
 * kept key predicts the activation pred(κ) = mass(κ)/count(κ) (E[a | κ] on the
 * training positions, the least-squares predictor of a from κ) and "fires"; any other
 * key predicts 0 and "does not fire".
 *
 * Detection (window level, as Delphi's detection score): truth = the window holds a
 * firing (max a > 0); prediction = the rule fires at some position. With the
 * confusion counts tp, fp, tn, fn over the n windows:
 *   accuracy = (tp + tn)/n, precision = tp/(tp + fp), recall = tp/(tp + fn),
 *   F1 = 2·precision·recall/(precision + recall)
 * with scikit-learn's zero_division = 0 (precision, recall or F1 of 0/0 is 0).
 * Simulation (token level, as OpenAI's explainer score, "all at once"): Pearson's
 * correlation of the predicted and the true activations over every position of the
 * windows, r = Σ(p − p̄)(a − ā) / √(Σ(p − p̄)² Σ(a − ā)²), NaN when either variance is 0
 * (NumPy's corrcoef gives nan).
 *
 * desc_choose fits every kind on the training windows and keeps the one with the
 * highest training F1 (ties: the earlier kind: token, bigram, domain).
 */
#ifndef TP_DESCRIBE_H
#define TP_DESCRIBE_H

#include "core/error.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum { DESC_TOKEN = 0, DESC_BIGRAM, DESC_DOMAIN, DESC_NKINDS } desc_kind;

typedef struct {
    const int32_t *tokens;     /* [n] */
    const float *acts;         /* [n] true activations */
    int n;
    int32_t prev;              /* the token before tokens[0] in its sequence; −1: none */
    int32_t domain;            /* the document's domain; −1: unknown */
} desc_window;

typedef struct {
    int64_t key;
    int64_t count, fires;
    double mass;               /* Σ activation on the training positions */
    double pred;               /* mass / count */
} desc_entry;

typedef struct {
    desc_kind kind;
    double min_precision;
    desc_entry *e;             /* sorted by key */
    int n;
} desc_rule;

typedef struct {
    double accuracy, precision, recall, f1;
    int64_t n, tp, fp, tn, fn;
} desc_detection;

typedef struct {
    double correlation;        /* NaN when undefined */
    int64_t n;                 /* positions */
} desc_simulation;

const char *desc_kind_name(desc_kind k);   /* "token", "bigram", "domain" */
/* The key of position t of w under kind k. */
int64_t desc_key(desc_kind k, const desc_window *w, int t);
/* Bigram keys back to their tokens (first = −1 at a sequence start). */
void desc_bigram_tokens(int64_t key, int32_t *first, int32_t *second);

tp_status desc_fit(const desc_window *w, int nw, desc_kind kind, double min_precision, desc_rule *out);
void desc_rule_free(desc_rule *r);
/* The kept entry of position t (NULL: the rule predicts 0 there). */
const desc_entry *desc_lookup(const desc_rule *r, const desc_window *w, int t);
/* Entry indices by mass, largest first (ties: smaller key): order [r->n]. */
void desc_rule_order(const desc_rule *r, int *order);

/* The scores of binary predictions against the truth (n items). */
void desc_binary_scores(const uint8_t *pred, const uint8_t *truth, int64_t n, desc_detection *out);
/* Pearson's r of x and y (n values), NaN when either is constant or n < 2. */
double desc_pearson(const double *x, const double *y, int64_t n);

tp_status desc_detect(const desc_rule *r, const desc_window *w, int nw, desc_detection *out);
tp_status desc_simulate(const desc_rule *r, const desc_window *w, int nw, desc_simulation *out);

/* Fits every kind on train and keeps the best by training F1 (above). */
tp_status desc_choose(const desc_window *train, int ntrain, double min_precision, desc_rule *out);

#endif
