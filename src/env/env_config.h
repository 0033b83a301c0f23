// The `env` group of the config: which environments a run mixes (env.tasks with
// env.weights), the held-out fraction of the generated environments (env.eval_fraction) and
// each environment's own settings (env.<name>.<key>). The keys are declared in env_config.c;
// config.c checks files against them like every other key.
#pragma once
#include "core/config_types.h"

typedef struct EnvConfig {
    CfgStrList tasks;       // environment names, e.g. ["reverse", "arithmetic"]
    CfgFloatList weights;   // sampling weight of each task (same length as tasks)
    double eval_fraction;   // generated environments: share of problems held out for eval
    struct {
        int min_operand, max_operand;
        char ops[8];        // operators to draw from, e.g. "+-*"
    } arithmetic;
    struct {
        int min_len, max_len;
        int min_value, max_value;
        int partial_credit;
    } sorting;
    struct {
        int numbers;
        int min_number, max_number;
        int min_target, max_target;
    } countdown;
    struct {
        int max_number;
        int max_turns;
    } guess;
    struct {
        int min_operand, max_operand;
        int terms;
        int max_calls;
    } tool;
    struct {
        char path[CFG_STR_MAX];
        char eval_path[CFG_STR_MAX];
        double eval_fraction;
        char match[16];     // exact | numeric
        double tolerance;
        int max_line_bytes;
    } jsonl;
    struct {
        int min_words;
        int max_chars;
    } stories;
    struct {
        char alphabet[96];
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
