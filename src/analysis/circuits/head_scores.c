/* head_scores.c — detection patterns, scores, null shuffles and examples of one
 * head's attention pattern (head_scores.h). */
#include "analysis/circuits/head_scores.h"

#include "core/rng.h"
#include "core/sample.h"

#include <math.h>
#include <string.h>

static const char *const names[HS_SCORES] = {"previous_token", "duplicate_token", "induction", "bos", "self",
                                             "local", "entropy"};

const char *hs_class_name(int kind) { return kind >= 0 && kind < HS_SCORES ? names[kind] : "?"; }

void hs_detection_pattern(int c, const int32_t *t, int T, int w, uint8_t *D)
{
    memset(D, 0, (size_t)T * (size_t)T);
    for (int i = 0; i < T; i++) {
        uint8_t *row = D + (size_t)i * (size_t)T;
        switch (c) {
        case HS_PREVIOUS_TOKEN:
            if (i > 0) row[i - 1] = 1;
            break;
        case HS_DUPLICATE_TOKEN:
            for (int j = 0; j < i; j++) row[j] = t[j] == t[i];
            break;
        case HS_INDUCTION:
            for (int j = 1; j <= i; j++) row[j] = t[j - 1] == t[i];
            break;
        case HS_BOS:
            row[0] = 1;
            break;
        case HS_SELF:
            row[i] = 1;
            break;
        case HS_LOCAL:
            for (int j = i - w + 1 > 0 ? i - w + 1 : 0; j <= i; j++) row[j] = 1;
            break;
        default:
            break;
        }
    }
}

double hs_score(const float *A, const uint8_t *D, int T)
{
    double num = 0, den = 0;
    size_t n = (size_t)T * (size_t)T;
    for (size_t k = 0; k < n; k++) {
        num += D[k] ? (double)A[k] : 0.0;
        den += A[k];
    }
    return num / den;
}

double hs_entropy(const float *A, int T)
{
    if (T < 2) return NAN;
    double sum = 0;
    for (int i = 1; i < T; i++) {
        const float *row = A + (size_t)i * (size_t)T;
        double h = 0;
        for (int j = 0; j <= i; j++)
            if (row[j] > 0) h -= (double)row[j] * log((double)row[j]);
        sum += h;
    }
    return sum / (T - 1);
}

double hs_induction_stripe(const float *A, int T, int L)
{
    if (L < 1 || T < 2 * L + 1) return NAN;
    double s = 0;
    for (int i = L + 1; i <= 2 * L; i++) s += A[(size_t)i * (size_t)T + (size_t)(i + 1 - L)];
    return s / L;
}

void hs_shuffle_causal(const float *A, int T, uint64_t seed, float *out)
{
    uint64_t st = seed;
    memset(out, 0, (size_t)T * (size_t)T * sizeof *out);
    for (int i = 0; i < T; i++) {
        const float *row = A + (size_t)i * (size_t)T;
        float *o = out + (size_t)i * (size_t)T;
        memcpy(o, row, (size_t)(i + 1) * sizeof *o);
        /* Fisher-Yates over the causal window 0..i */
        for (int j = i; j > 0; j--) {
            int k = (int)tp_rng_below(&st, (uint64_t)j + 1);
            float x = o[j];
            o[j] = o[k], o[k] = x;
        }
    }
}

uint64_t hs_seed(uint64_t base, uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t v[4] = {a, b, c, d}, h = base;
    for (int i = 0; i < 4; i++) {
        uint64_t s = h ^ (v[i] * 0x9E3779B97F4A7C15ull + (uint64_t)i);
        h = tp_splitmix64(&s);
    }
    return h;
}

/* a before b in an example list: heavier first, then smaller prompt, query, source. */
static int example_before(const hs_example *a, const hs_example *b)
{
    if (a->weight != b->weight) return a->weight > b->weight;
    if (a->prompt != b->prompt) return a->prompt < b->prompt;
    if (a->query != b->query) return a->query < b->query;
    return a->source < b->source;
}

void hs_example_insert(hs_example *top, int k, const hs_example *e)
{
    if (k <= 0 || e->weight < 0 || (top[k - 1].weight >= 0 && !example_before(e, &top[k - 1]))) return;
    int p = k - 1;
    while (p > 0 && (top[p - 1].weight < 0 || example_before(e, &top[p - 1]))) top[p] = top[p - 1], p--;
    top[p] = *e;
}

void hs_top_examples(const float *A, const uint8_t *D, int T, int k, int prompt, hs_example *out)
{
    for (int s = 0; s < k; s++) out[s] = (hs_example){.weight = -1, .prompt = -1, .query = -1, .source = -1};
    for (int i = 1; i < T; i++)
        for (int j = 0; j <= i; j++) {
            size_t at = (size_t)i * (size_t)T + (size_t)j;
            if (!D[at]) continue;
            hs_example e = {.weight = A[at], .prompt = prompt, .query = i, .source = j};
            hs_example_insert(out, k, &e);
        }
}
