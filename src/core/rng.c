// xoshiro256** with splitmix64 seeding (see rng.h).
#include "core/rng.h"

#include <math.h>

uint64_t rng_hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t rng_mix(uint64_t a, uint64_t b) { return rng_hash64(rng_hash64(a) ^ (b + 0x632be59bd9b4e019ULL)); }

void rng_seed(Rng *rng, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) {
        x = rng_hash64(x);
        rng->s[i] = x;
    }
    if ((rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]) == 0) rng->s[0] = 1;
}

void rng_seed_tuple(Rng *rng, int n, const uint64_t *parts) {
    uint64_t h = 0x2545f4914f6cdd1dULL;
    for (int i = 0; i < n; i++) h = rng_mix(h, parts[i]);
    rng_seed(rng, h);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(Rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t rng_u32(Rng *rng) { return (uint32_t)(rng_next(rng) >> 32); }

double rng_uniform(Rng *rng) { return (double)(rng_next(rng) >> 11) * 0x1.0p-53; }

float rng_uniform_f(Rng *rng) { return (float)(rng_next(rng) >> 40) * 0x1.0p-24f; }

uint64_t rng_below(Rng *rng, uint64_t n) {
    // Lemire-free rejection: unbiased and simple.
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = rng_next(rng);
    while (x >= limit);
    return x % n;
}

float rng_normal(Rng *rng) {
    double u1 = rng_uniform(rng), u2 = rng_uniform(rng);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}
