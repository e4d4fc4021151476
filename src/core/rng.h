/* rng.h — splitmix64 (Steele, Lea & Flood 2014): the one generator behind every
 * seeded choice (corpus samples, geometry samples, row order, SAE initialisation).
 * Tiny, well mixed, and easy to reproduce in Python for goldens. */
#ifndef TP_RNG_H
#define TP_RNG_H

#include <stdint.h>

static inline uint64_t tp_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

#endif
