// Random numbers: xoshiro256** generators whose whole state is four integers, so that a
// checkpoint can save and restore every rank's stream exactly. Seeds are derived by hashing
// tuples such as (seed, step, problem, sample), which makes each sampler's stream independent
// of what else runs in the same batch or on the same rank.
#pragma once
#include <stdint.h>

typedef struct {
    uint64_t s[4];
} Rng;

uint64_t rng_hash64(uint64_t x);                     // splitmix64 finaliser
uint64_t rng_mix(uint64_t a, uint64_t b);            // hash of an ordered pair
void rng_seed(Rng *rng, uint64_t seed);
// Seed from an ordered tuple, e.g. rng_seed_tuple(&r, 4, (uint64_t[]){seed, step, problem, sample}).
void rng_seed_tuple(Rng *rng, int n, const uint64_t *parts);
uint64_t rng_next(Rng *rng);
uint32_t rng_u32(Rng *rng);
double rng_uniform(Rng *rng);                        // in [0, 1)
float rng_uniform_f(Rng *rng);                       // in [0, 1)
uint64_t rng_below(Rng *rng, uint64_t n);            // uniform in [0, n), n > 0
float rng_normal(Rng *rng);                          // standard normal (Box-Muller)
