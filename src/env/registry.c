// The registry of built-in environments (see registry.h). Adding an environment: write its
// constructor, declare it in builtin.h, add one line to ENVS.
#include "env/registry.h"

#include <string.h>

#include "env/builtin.h"
#include "env/code.h"

static const EnvEntry ENVS[] = {
    {"reverse", env_reverse_create, "reverse a short random text; reward = LCS similarity to the reversed text"},
    {"arithmetic", env_arithmetic_create, "one +, - or * of two integers; reward 1 when the last number is right"},
    {"sorting", env_sorting_create, "sort a short list of integers; 1 when exact, partial credit for positions"},
    {"countdown", env_countdown_create, "reach a target with given numbers and + - * / (each at most once)"},
    {"guess", env_guess_create, "multi-turn: guess a secret number, told higher/lower; fewer guesses score more"},
    {"tool", env_tool_create, "multi-turn: compute an expression, with a calculator called by `CALL <expr>`"},
    {"jsonl", env_jsonl_create, "questions and answers from a JSONL file (env.jsonl.path); exact or numeric match"},
    {"stories", env_stories_create, "continue a TinyStories opening; reward = share of its name/object words reused"},
    {"code", env_code_create, "write a program that passes the tests, run in a sandbox (env.code.*)"},
};
#define N_ENVS ((int)(sizeof ENVS / sizeof ENVS[0]))

int env_registry_count(void) { return N_ENVS; }

const EnvEntry *env_registry_entry(int i) { return i >= 0 && i < N_ENVS ? &ENVS[i] : NULL; }

static const EnvEntry *find(const char *name) {
    for (int i = 0; i < N_ENVS; i++)
        if (strcmp(ENVS[i].name, name) == 0) return &ENVS[i];
    return NULL;
}

int env_known(const char *name) { return name && find(name) != NULL; }

void env_names(char *buf, size_t size) {
    if (size == 0) return;
    buf[0] = '\0';
    size_t at = 0;
    for (int i = 0; i < N_ENVS; i++) {
        int n = snprintf(buf + at, size - at, "%s%s", i ? ", " : "", ENVS[i].name);
        if (n < 0 || (size_t)n >= size - at) break;  // truncated: buf stays terminated
        at += (size_t)n;
    }
}

void env_print_list(FILE *out) {
    for (int i = 0; i < N_ENVS; i++) fprintf(out, "%-12s %s\n", ENVS[i].name, ENVS[i].description);
}

Env *env_create(const char *name, const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    const EnvEntry *entry = name ? find(name) : NULL;
    if (!entry) {
        char known[512];
        env_names(known, sizeof known);
        error_set(err, "unknown environment \"%s\"; known environments: %s", name ? name : "(null)", known);
        return NULL;
    }
    return entry->create(cfg, seed, err);
}
