// A mixture of environments from env.tasks and env.weights: decides which environment each
// problem index comes from, with probability proportional to its weight, using an RNG seeded
// by (seed, split, index) so that the choice is the same on every run and every rank and
// does not depend on what was asked before. Environments with weight 0 are built (their eval
// splits can still be used) but never picked.
#pragma once
#include "core/config_types.h"
#include "env/env.h"
#include "env/env_config.h"

typedef struct {
    int count;
    Env *envs[CFG_LIST_MAX];          // in env.tasks order
    double cumulative[CFG_LIST_MAX];  // normalised running sum of the weights; the last is 1
    uint64_t seed;
} EnvMix;

// Builds every environment of cfg->tasks; environment i gets the seed hash(seed, its name),
// so its problems do not depend on its position in the list. 0, or -1 with err (nothing kept).
int env_mix_init(EnvMix *mix, const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);
void env_mix_free(EnvMix *mix);
// The environment (index into envs) problem `index` of `split` comes from.
int env_mix_pick(const EnvMix *mix, EnvSplit split, uint64_t index);
// Problem `index` of `split` from the picked environment (its own index is `index` too);
// *which is set to the environment. 0, or -1 with err.
int env_mix_problem(const EnvMix *mix, EnvSplit split, uint64_t index, int *which, Problem *out, ErrorBuf *err);
// Seed environment `name` gets in a mixture seeded with `seed`.
uint64_t env_mix_env_seed(uint64_t seed, const char *name);
