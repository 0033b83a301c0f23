// Weighted, seeded mixture of environments (see mix.h).
#include "env/mix.h"

#include <string.h>

#include "core/rng.h"
#include "env/registry.h"

#define MIX_STREAM 0x6d69782d7069636bULL  // "mix-pick": keeps this stream apart from others

uint64_t env_mix_env_seed(uint64_t seed, const char *name) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const char *p = name; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ULL;
    return rng_mix(seed, h);
}

int env_mix_init(EnvMix *mix, const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    memset(mix, 0, sizeof *mix);
    if (cfg->tasks.count < 1 || cfg->tasks.count > CFG_LIST_MAX || cfg->weights.count != cfg->tasks.count)
        return error_set(err, "env.tasks has %d entries and env.weights %d: give one weight per task (1 to %d tasks)",
                         cfg->tasks.count, cfg->weights.count, CFG_LIST_MAX);
    double total = 0;
    for (int i = 0; i < cfg->weights.count; i++) {
        double w = cfg->weights.items[i];
        if (!(w >= 0)) return error_set(err, "env.weights: entry %d is %g: weights must be >= 0", i, w);
        total += w;
    }
    if (!(total > 0)) return error_set(err, "env.weights sum to 0: give at least one task a positive weight");
    mix->seed = seed;
    double run = 0;
    for (int i = 0; i < cfg->tasks.count; i++) {
        Env *env = env_create(cfg->tasks.items[i], cfg, env_mix_env_seed(seed, cfg->tasks.items[i]), err);
        if (!env) {
            env_mix_free(mix);
            return -1;
        }
        mix->envs[mix->count++] = env;
        run += cfg->weights.items[i];
        mix->cumulative[i] = run / total;
    }
    // Round-off must not leave a sliver for trailing zero-weight tasks: from the last task with
    // a positive weight on, the running sum is exactly 1.
    int last = mix->count - 1;
    while (last > 0 && cfg->weights.items[last] == 0) last--;
    for (int i = last; i < mix->count; i++) mix->cumulative[i] = 1.0;
    return 0;
}

void env_mix_free(EnvMix *mix) {
    for (int i = 0; i < mix->count; i++) env_destroy(mix->envs[i]);
    memset(mix, 0, sizeof *mix);
}

int env_mix_pick(const EnvMix *mix, EnvSplit split, uint64_t index) {
    Rng rng;
    rng_seed_tuple(&rng, 4, (uint64_t[]){mix->seed, MIX_STREAM, (uint64_t)split, index});
    double u = rng_uniform(&rng);  // [0, 1)
    for (int i = 0; i < mix->count; i++)
        if (u < mix->cumulative[i]) return i;  // a zero weight adds an empty interval: never picked
    return mix->count - 1;
}

int env_mix_problem(const EnvMix *mix, EnvSplit split, uint64_t index, int *which, Problem *out, ErrorBuf *err) {
    int k = env_mix_pick(mix, split, index);
    if (which) *which = k;
    Env *env = mix->envs[k];
    return env->problem(env, split, index, out, err);
}
