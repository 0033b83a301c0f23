// Helpers for the environment tests (test_env_*.c): building an environment from the default
// config plus overrides, scoring a single-turn output, and the garbage outputs every verifier
// must survive with reward 0.
#pragma once
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/config.h"
#include "env/env.h"
#include "env/registry.h"

// Default config with "group.key=value" overrides (NULL-terminated), validated.
static inline void env_test_config(Config *cfg, const char *const *sets) {
    ErrorBuf err = {{0}};
    config_defaults(cfg);
    for (int i = 0; sets && sets[i]; i++) {
        if (config_set(cfg, sets[i], &err)) {
            print_error("config_set %s: %s\n", sets[i], err.msg);
            fail();
        }
    }
}

static inline Env *env_test_make(const char *name, const char *const *sets, uint64_t seed) {
    Config cfg;
    ErrorBuf err = {{0}};
    env_test_config(&cfg, sets);
    Env *env = env_create(name, &cfg.env, seed, &err);
    if (!env) {
        print_error("env_create %s: %s\n", name, err.msg);
        fail();
    }
    return env;
}

static inline void env_test_problem(Env *env, EnvSplit split, uint64_t index, Problem *p) {
    ErrorBuf err = {{0}};
    if (env->problem(env, split, index, p, &err)) {
        print_error("%s problem %llu: %s\n", env->name, (unsigned long long)index, err.msg);
        fail();
    }
}

// Scores `text` as the one model turn of a transcript; checks the reward is in [0, 1] and
// that the metrics are exactly the environment's declared names.
static inline double env_test_score_bytes(Env *env, const Problem *p, const char *text, size_t len, EnvMetrics *out) {
    Turn turn = {TURN_MODEL, text, len};
    Transcript t = {&turn, 1};
    EnvMetrics m;
    memset(&m, 0, sizeof m);
    double r = env->score(env, p, &t, &m);
    assert_true(r >= 0.0 && r <= 1.0);
    if (env->metric_names) {
        int n = 0;
        while (env->metric_names[n]) {
            assert_true(n < m.count);
            assert_string_equal(m.names[n], env->metric_names[n]);
            n++;
        }
        assert_int_equal(n, m.count);
    }
    if (out) *out = m;
    return r;
}

static inline double env_test_score(Env *env, const Problem *p, const char *text) {
    return env_test_score_bytes(env, p, text, strlen(text), NULL);
}
