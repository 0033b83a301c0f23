// Declarations of the env.* config keys and their cross-checks (see env_config.h). Every
// cross-check names the keys involved and where each was set (config_origin).
#include "env/env_config.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "env/registry.h"

#define KEY(path, type, field, def, lo, hi, choices, doc) \
    {path, type, offsetof(EnvConfig, field), sizeof(((EnvConfig *)0)->field), def, lo, hi, choices, doc}
#define MILLION 1e6

static const ConfigKey ENV_KEYS[] = {
    KEY("env.tasks", CFG_STR_LIST, tasks, "[\"reverse\"]", 0, 0, NULL,
        "environments mixed in the run (an unknown name is an error listing the known ones)"),
    KEY("env.weights", CFG_FLOAT_LIST, weights, "[1.0]", 0, 1e6, NULL,
        "sampling weight of each task (one per entry of env.tasks)"),
    KEY("env.eval_fraction", CFG_FLOAT, eval_fraction, "0.1", 0.001, 0.5, NULL,
        "generated environments: share of problems held out for evaluation (chosen by a hash of the problem)"),

    KEY("env.arithmetic.min_operand", CFG_INT, arithmetic.min_operand, "0", -MILLION, MILLION, NULL,
        "arithmetic: smallest operand"),
    KEY("env.arithmetic.max_operand", CFG_INT, arithmetic.max_operand, "99", -MILLION, MILLION, NULL,
        "arithmetic: largest operand"),
    KEY("env.arithmetic.ops", CFG_STRING, arithmetic.ops, "+-*", 0, 0, NULL,
        "arithmetic: operators to draw from (any of + - *)"),

    KEY("env.sorting.min_len", CFG_INT, sorting.min_len, "2", 1, 64, NULL, "sorting: shortest list"),
    KEY("env.sorting.max_len", CFG_INT, sorting.max_len, "5", 1, 64, NULL, "sorting: longest list"),
    KEY("env.sorting.min_value", CFG_INT, sorting.min_value, "0", -MILLION, MILLION, NULL, "sorting: smallest value"),
    KEY("env.sorting.max_value", CFG_INT, sorting.max_value, "99", -MILLION, MILLION, NULL, "sorting: largest value"),
    KEY("env.sorting.partial_credit", CFG_BOOL, sorting.partial_credit, "true", 0, 0, NULL,
        "sorting: a wrong order of the right numbers earns 0.5 * the share of positions right"),

    KEY("env.countdown.numbers", CFG_INT, countdown.numbers, "4", 2, 6, NULL, "countdown: numbers given"),
    KEY("env.countdown.min_number", CFG_INT, countdown.min_number, "1", 1, 1000, NULL,
        "countdown: smallest given number"),
    KEY("env.countdown.max_number", CFG_INT, countdown.max_number, "10", 1, 1000, NULL,
        "countdown: largest given number"),
    KEY("env.countdown.min_target", CFG_INT, countdown.min_target, "10", 1, MILLION, NULL,
        "countdown: smallest target"),
    KEY("env.countdown.max_target", CFG_INT, countdown.max_target, "100", 1, MILLION, NULL,
        "countdown: largest target"),

    KEY("env.guess.max_number", CFG_INT, guess.max_number, "32", 2, MILLION, NULL,
        "guess: the secret is in 1..max_number"),
    KEY("env.guess.max_turns", CFG_INT, guess.max_turns, "8", 1, 64, NULL,
        "guess: guesses allowed (at least what binary search needs)"),

    KEY("env.tool.min_operand", CFG_INT, tool.min_operand, "10", 0, MILLION, NULL, "tool: smallest operand"),
    KEY("env.tool.max_operand", CFG_INT, tool.max_operand, "999", 0, MILLION, NULL, "tool: largest operand"),
    KEY("env.tool.terms", CFG_INT, tool.terms, "3", 2, 4, NULL, "tool: operands in each problem"),
    KEY("env.tool.max_calls", CFG_INT, tool.max_calls, "2", 1, 16, NULL,
        "tool: calculator calls allowed before the answer"),

    KEY("env.jsonl.path", CFG_STRING, jsonl.path, "", 0, 0, NULL,
        "jsonl: dataset, one {\"prompt\": ..., \"answer\": ...} object per line"),
    KEY("env.jsonl.eval_path", CFG_STRING, jsonl.eval_path, "", 0, 0, NULL,
        "jsonl: separate eval dataset (\"\" = hold out env.jsonl.eval_fraction of env.jsonl.path)"),
    KEY("env.jsonl.eval_fraction", CFG_FLOAT, jsonl.eval_fraction, "0.1", 0, 0.9, NULL,
        "jsonl: share of the lines held out for eval when there is no eval_path (by a hash of the prompt)"),
    KEY("env.jsonl.match", CFG_ENUM, jsonl.match, "exact", 0, 0, "exact|numeric",
        "jsonl: exact (output equals the answer, whitespace trimmed) or numeric (last number of the output)"),
    KEY("env.jsonl.tolerance", CFG_FLOAT, jsonl.tolerance, "1e-6", 0, 1e9, NULL,
        "jsonl numeric: |output - answer| <= tolerance * max(1, |answer|) counts as right"),
    KEY("env.jsonl.max_line_bytes", CFG_INT, jsonl.max_line_bytes, "65536", 16, 1 << 26, NULL,
        "jsonl: longest line accepted (a longer one is a load error)"),

    KEY("env.stories.min_words", CFG_INT, stories.min_words, "8", 0, 10000, NULL,
        "stories: a continuation shorter than this scores 0"),
    KEY("env.stories.max_chars", CFG_INT, stories.max_chars, "2000", 16, 1 << 20, NULL,
        "stories: a continuation longer than this scores 0"),

    KEY("env.reverse.alphabet", CFG_STRING, reverse.alphabet, "abcdefghijklmnopqrstuvwxyz", 0, 0, NULL,
        "reverse-text: characters the text is drawn from (printable ASCII)"),
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

// "env.<group>.min_<what> = a (origin) is larger than env.<group>.max_<what> = b (origin)".
static int check_order(const Config *cfg, const char *lo_key, int lo, const char *hi_key, int hi, ErrorBuf *err) {
    if (lo <= hi) return 0;
    return error_set(err, "%s = %d (%s) is larger than %s = %d (%s)", lo_key, lo, config_origin(cfg, lo_key), hi_key,
                     hi, config_origin(cfg, hi_key));
}

static int has_task(const EnvConfig *env, const char *name) {
    for (int i = 0; i < env->tasks.count; i++)
        if (strcmp(env->tasks.items[i], name) == 0) return 1;
    return 0;
}

static int validate_tasks(const Config *cfg, ErrorBuf *err) {
    const EnvConfig *env = &cfg->env;
    for (int i = 0; i < env->tasks.count; i++) {
        const char *name = env->tasks.items[i];
        if (!env_known(name)) {
            char known[512];
            env_names(known, sizeof known);
            return error_set(err, "env.tasks (%s): unknown environment \"%s\"; known environments: %s",
                             config_origin(cfg, "env.tasks"), name, known);
        }
        for (int j = 0; j < i; j++)
            if (strcmp(env->tasks.items[j], name) == 0)
                return error_set(err, "env.tasks (%s) names \"%s\" twice: list each environment once and set its "
                                      "share with env.weights",
                                 config_origin(cfg, "env.tasks"), name);
    }
    if (has_task(env, "jsonl") && !env->jsonl.path[0])
        return error_set(err, "env.tasks (%s) has \"jsonl\" but env.jsonl.path (%s) is empty: give the dataset file",
                         config_origin(cfg, "env.tasks"), config_origin(cfg, "env.jsonl.path"));
    return 0;
}

static int validate_generated(const Config *cfg, ErrorBuf *err) {
    const EnvConfig *env = &cfg->env;
    if (check_order(cfg, "env.arithmetic.min_operand", env->arithmetic.min_operand, "env.arithmetic.max_operand",
                    env->arithmetic.max_operand, err) ||
        check_order(cfg, "env.sorting.min_len", env->sorting.min_len, "env.sorting.max_len", env->sorting.max_len,
                    err) ||
        check_order(cfg, "env.sorting.min_value", env->sorting.min_value, "env.sorting.max_value",
                    env->sorting.max_value, err) ||
        check_order(cfg, "env.countdown.min_number", env->countdown.min_number, "env.countdown.max_number",
                    env->countdown.max_number, err) ||
        check_order(cfg, "env.countdown.min_target", env->countdown.min_target, "env.countdown.max_target",
                    env->countdown.max_target, err) ||
        check_order(cfg, "env.tool.min_operand", env->tool.min_operand, "env.tool.max_operand",
                    env->tool.max_operand, err))
        return -1;
    const char *ops = env->arithmetic.ops;
    if (!ops[0] || strspn(ops, "+-*") != strlen(ops))
        return error_set(err, "env.arithmetic.ops = \"%s\" (%s): expected one or more of the operators + - *", ops,
                         config_origin(cfg, "env.arithmetic.ops"));
    // Binary search needs floor(log2(n)) + 1 guesses in the worst case.
    int needed = 0;
    for (int n = env->guess.max_number; n > 0; n >>= 1) needed++;
    if (env->guess.max_turns < needed)
        return error_set(err,
                         "env.guess.max_turns = %d (%s) is too few for env.guess.max_number = %d (%s): binary search "
                         "needs up to %d guesses, so allow at least that many",
                         env->guess.max_turns, config_origin(cfg, "env.guess.max_turns"), env->guess.max_number,
                         config_origin(cfg, "env.guess.max_number"), needed);
    return 0;
}

static int validate_reverse_alphabet(const Config *cfg, ErrorBuf *err) {
    const char *a = cfg->env.reverse.alphabet;
    int distinct = 0, visible = 0;
    for (const char *p = a; *p; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return error_set(err, "env.reverse.alphabet (%s) has the byte 0x%02x: use printable ASCII characters",
                             config_origin(cfg, "env.reverse.alphabet"), (unsigned char)*p);
        if (!memchr(a, *p, (size_t)(p - a))) distinct++;
        visible += *p != ' ';
    }
    if (distinct < 2 || !visible)
        return error_set(err,
                         "env.reverse.alphabet = \"%s\" (%s) needs at least two different characters, one of them not "
                         "a space",
                         a, config_origin(cfg, "env.reverse.alphabet"));
    return 0;
}

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
    if (validate_tasks(cfg, err) || validate_generated(cfg, err) || validate_reverse_alphabet(cfg, err)) return -1;
    if (env->reverse.min_chars > env->reverse.max_chars)
        return error_set(err, "env.reverse.min_chars = %d (%s) is larger than env.reverse.max_chars = %d (%s)",
                         env->reverse.min_chars, config_origin(cfg, "env.reverse.min_chars"), env->reverse.max_chars,
                         config_origin(cfg, "env.reverse.max_chars"));
    return 0;
}

const ConfigTable ENV_CONFIG_TABLE = {ENV_KEYS, (int)(sizeof ENV_KEYS / sizeof ENV_KEYS[0]), offsetof(Config, env),
                                      validate_env};
