/*
 * rng.h — the driver's only source of randomness: splitmix64, seeded from
 * the run's seed. A scenario is drawn from one stream in a fixed order, and
 * each handler decision is a pure hash of (seed, message, attempt), so a
 * seed replays the same scenario whatever the threads did.
 */
#ifndef FAULT_RNG_H
#define FAULT_RNG_H

#include <stdint.h>

typedef struct fault_rng {
    uint64_t state;
} fault_rng;

static inline uint64_t fault_mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t fault_rng_next(fault_rng *r)
{
    return fault_mix(r->state += 0x9e3779b97f4a7c15ULL);
}

/** A number from lo to hi, both included. */
static inline int64_t fault_rng_range(fault_rng *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(fault_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/** True with probability percent/100. */
static inline int fault_rng_chance(fault_rng *r, int percent)
{
    return (int)(fault_rng_next(r) % 100) < percent;
}

/** A stream of its own for (seed, a, b): the same numbers on every replay. */
static inline fault_rng fault_rng_for(uint64_t seed, uint64_t a, uint64_t b)
{
    fault_rng r = {fault_mix(seed ^ fault_mix(a + 0x632be59bd9b4e019ULL) ^
                             fault_mix(b * 0x8cb92ba72f3d8dd7ULL + 1))};
    return r;
}

#endif
