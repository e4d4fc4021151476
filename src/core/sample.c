/* sample.c — seeded random numbers and samples (sample.h). */
#include "core/sample.h"

#include "core/rng.h"

#include <stdlib.h>
#include <string.h>

uint64_t tp_rng_next(uint64_t *state) { return tp_splitmix64(state); }

uint64_t tp_rng_below(uint64_t *state, uint64_t bound)
{
    /* Rejection keeps it unbiased: accept r < 2^64 − (2^64 mod bound). */
    uint64_t rem = (0 - bound) % bound;
    for (;;) {
        uint64_t r = tp_rng_next(state);
        if (rem == 0 || r < 0 - rem) return r % bound;
    }
}

double tp_rng_unit(uint64_t *state) { return (double)(tp_rng_next(state) >> 11) * 0x1.0p-53; }

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Open-addressing set of non-negative int64 (−1 = empty slot). */
static int set_insert(int64_t *slots, uint64_t mask, int64_t key)
{
    uint64_t h = ((uint64_t)key * 0x9E3779B97F4A7C15ULL) & mask;
    while (slots[h] >= 0) {
        if (slots[h] == key) return 0;
        h = (h + 1) & mask;
    }
    slots[h] = key;
    return 1;
}

tp_status tp_sample_indices(int64_t n, int64_t m, uint64_t seed, int64_t *out)
{
    if (n < 0 || m < 0) return tp_err(TP_ERR_RANGE, "sample: n = %lld, m = %lld", (long long)n, (long long)m);
    if (m >= n) {
        for (int64_t i = 0; i < n; i++) out[i] = i;
        return TP_OK;
    }
    if (m == 0) return TP_OK;
    uint64_t cap = 16;
    while (cap < 2 * (uint64_t)m) cap <<= 1;
    int64_t *slots = tp_malloc(cap * sizeof *slots);
    if (!slots) return TP_ERR_NOMEM;
    memset(slots, 0xff, cap * sizeof *slots);
    /* Floyd's algorithm (Bentley & Floyd 1987): m draws, each set member uniform. */
    uint64_t st = seed;
    int64_t got = 0;
    for (int64_t j = n - m; j < n; j++) {
        int64_t t = (int64_t)tp_rng_below(&st, (uint64_t)j + 1);
        int64_t pick = set_insert(slots, cap - 1, t) ? t : j;
        if (pick == j) set_insert(slots, cap - 1, j);
        out[got++] = pick;
    }
    free(slots);
    qsort(out, (size_t)m, sizeof *out, cmp_i64);
    return TP_OK;
}

