// Declarations of the env.* config keys and their cross-checks (see env_config.h).
#include "env/env_config.h"

#include <stddef.h>
#include <string.h>

#include "core/config.h"

#define KEY(path, type, field, def, lo, hi, choices, doc) \
    {path, type, offsetof(EnvConfig, field), sizeof(((EnvConfig *)0)->field), def, lo, hi, choices, doc}

static const ConfigKey ENV_KEYS[] = {
    KEY("env.tasks", CFG_STR_LIST, tasks, "[\"reverse\"]", 0, 0, NULL, "environments mixed in the run"),
    KEY("env.weights", CFG_FLOAT_LIST, weights, "[1.0]", 0, 1e6, NULL,
        "sampling weight of each task (one per entry of env.tasks)"),
    KEY("env.reverse.min_chars", CFG_INT, reverse.min_chars, "4", 1, 4096, NULL, "reverse-text: shortest text"),
    KEY("env.reverse.max_chars", CFG_INT, reverse.max_chars, "10", 1, 4096, NULL, "reverse-text: longest text"),
};

static int validate_env(const Config *cfg, ErrorBuf *err) {
    const EnvConfig *env = &cfg->env;
    if (env->tasks.count == 0)
        return error_set(err, "env.tasks (%s) is empty: name at least one environment, e.g. [\"reverse\"]",
                         config_origin(cfg, "env.tasks"));
    if (env->weights.count != env->tasks.count)
        return error_set(err, "env.weights (%s) has %d entries but env.tasks (%s) has %d: give one weight per task",
                         config_origin(cfg, "env.weights"), env->weights.count, config_origin(cfg, "env.tasks"),
                         env->tasks.count);
    double total = 0;
    for (int i = 0; i < env->weights.count; i++) total += env->weights.items[i];
    if (!(total > 0))
        return error_set(err, "env.weights (%s) sum to 0: give at least one task a positive weight",
                         config_origin(cfg, "env.weights"));
    if (env->reverse.min_chars > env->reverse.max_chars)
        return error_set(err, "env.reverse.min_chars = %d (%s) is larger than env.reverse.max_chars = %d (%s)",
                         env->reverse.min_chars, config_origin(cfg, "env.reverse.min_chars"), env->reverse.max_chars,
                         config_origin(cfg, "env.reverse.max_chars"));
    return 0;
}

const ConfigTable ENV_CONFIG_TABLE = {ENV_KEYS, (int)(sizeof ENV_KEYS / sizeof ENV_KEYS[0]), offsetof(Config, env),
                                      validate_env};
