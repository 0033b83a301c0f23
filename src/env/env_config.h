// The `env` group of the config: which environments a run mixes (env.tasks with
// env.weights) and each environment's own settings (env.<name>.<key>). The keys are declared
// in env_config.c; config.c checks files against them like every other key.
#pragma once
#include "core/config_types.h"

typedef struct EnvConfig {
    CfgStrList tasks;       // environment names, e.g. ["reverse", "arithmetic"]
    CfgFloatList weights;   // sampling weight of each task (same length as tasks)
    struct {
        int min_chars, max_chars;
    } reverse;
} EnvConfig;

extern const ConfigTable ENV_CONFIG_TABLE;
