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

    // code (src/env/code.c, sandbox in src/env/sandbox.c)
    KEY("env.code.path", CFG_STRING, code.path, "inputs/data/code_problems.jsonl", 0, 0, NULL,
        "code: JSONL problems {\"prompt\", \"tests\": [{\"input\", \"output\"}], \"reference\"}"),
    KEY("env.code.interpreter", CFG_STRING, code.interpreter, "/usr/bin/python3", 0, 0, NULL,
        "code: absolute path of the interpreter that runs the program, optionally with arguments"),
    KEY("env.code.timeout_s", CFG_FLOAT, code.timeout_s, "5.0", 0.05, 3600, NULL,
        "code: wall-clock limit per test run (the CPU limit is its ceiling)"),
    KEY("env.code.memory_mb", CFG_INT, code.memory_mb, "512", 0, 1 << 20, NULL,
        "code: address-space limit per run in MB (python3 starts in ~30; 0 = none)"),
    KEY("env.code.file_mb", CFG_INT, code.file_mb, "16", 1, 1 << 16, NULL,
        "code: largest file a program may write, and its disk space under a mount namespace"),
    KEY("env.code.nproc", CFG_INT, code.nproc, "16", 1, 4096, NULL,
        "code: processes and threads a program may have (its own uid's RLIMIT_NPROC)"),
    KEY("env.code.max_output_bytes", CFG_INT, code.max_output_bytes, "65536", 1024, 1 << 28, NULL,
        "code: stdout or stderr beyond this stops the program (reason output_limit)"),
    KEY("env.code.max_parallel", CFG_INT, code.max_parallel, "0", 0, 4096, NULL,
        "code: sandboxes running at once (0 = the cores of the node)"),
    KEY("env.code.eval_fraction", CFG_FLOAT, code.eval_fraction, "0.2", 0, 1, NULL,
        "code: share of problems held out for eval (by a hash of the prompt; a line's \"split\" overrides)"),
    KEY("env.code.tmp_dir", CFG_STRING, code.tmp_dir, "/tmp", 0, 0, NULL,
        "code: where the sandboxes' private directories are made (under asyncrl-sandbox/)"),
    KEY("env.code.uid_base", CFG_INT64, code.uid_base, "0", 0, 4.2e9, NULL,
        "code: first of the uids the sandboxes run as when asyncrl runs as root, one per sandbox "
        "(0 = 1500000, or 60000 in a container that maps only 65536 uids)"),
    KEY("env.code.uid_count", CFG_INT, code.uid_count, "4096", 1, 1 << 24, NULL,
        "code: how many uids from uid_base the sandboxes may claim"),
    KEY("env.code.namespaces", CFG_BOOL, code.namespaces, "true", 0, 0, NULL,
        "code: use network, PID and mount namespaces where the kernel allows"),
    KEY("env.code.landlock", CFG_BOOL, code.landlock, "true", 0, 0, NULL,
        "code: use Landlock (writes only in the sandbox's directory) where the kernel allows"),
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
