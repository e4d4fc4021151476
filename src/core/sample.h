/* sample.h — the seeded random numbers and samples every phase draws from
 * (splitmix64, core/rng.h): integers below a bound without bias, uniform doubles,
 * and a sample of m distinct indices out of n. Deterministic: the same seed gives the
 * same numbers everywhere, so results do not depend on the number of ranks. */
#ifndef TP_SAMPLE_H
#define TP_SAMPLE_H

#include "core/error.h"

#include <stdint.h>

uint64_t tp_rng_next(uint64_t *state);
/* Uniform in [0, bound), by rejection (no modulo bias); bound >= 1. */
uint64_t tp_rng_below(uint64_t *state, uint64_t bound);
/* Uniform in [0, 1) with 53 random bits. */
double tp_rng_unit(uint64_t *state);
/* min(m, n) distinct indices of [0, n), uniform (Floyd's algorithm), ascending, into
 * out. Local; no communication. */
tp_status tp_sample_indices(int64_t n, int64_t m, uint64_t seed, int64_t *out);

#endif
