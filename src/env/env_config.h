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
    // code: model-written programs run in a sandbox against test cases (src/env/code.h)
    struct {
        char path[CFG_STR_MAX];          // JSONL problems
        char interpreter[CFG_STR_MAX];   // absolute path, optional arguments
        double timeout_s;
        int memory_mb, file_mb, nproc, max_output_bytes;
        int max_parallel;                // sandboxes at once (0 = cores)
        double eval_fraction;
        char tmp_dir[CFG_STR_MAX];
        int64_t uid_base;
        int uid_count;
        int namespaces, landlock;        // use them where available
    } code;
} EnvConfig;

extern const ConfigTable ENV_CONFIG_TABLE;
