// Common environment plumbing (see env.h and env_impl.h): problems, metrics, allocation, the
// content-hash train/eval split and transcript helpers.
#include "env/env_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void problem_free(Problem *problem) {
    if (!problem) return;
    free(problem->prompt);
    free(problem->answer);
    free(problem->info);
    free(problem->where);
    free(problem->answer_turns);
    memset(problem, 0, sizeof *problem);
}

void env_metrics_add(EnvMetrics *metrics, const char *name, double value) {
    if (!metrics || metrics->count < 0 || metrics->count >= ENV_MAX_METRICS) return;
    snprintf(metrics->names[metrics->count], ENV_NAME_MAX, "%s", name);
    metrics->values[metrics->count++] = value;
}

double env_metrics_get(const EnvMetrics *metrics, const char *name, double missing) {
    if (!metrics) return missing;
    for (int i = 0; i < metrics->count && i < ENV_MAX_METRICS; i++)
        if (strcmp(metrics->names[i], name) == 0) return metrics->values[i];
    return missing;
}

void env_metrics_fill(EnvMetrics *metrics, const char *const *names, const double *values) {
    for (int i = 0; names[i]; i++) env_metrics_add(metrics, names[i], values[i]);
}

void env_destroy(Env *env) {
    if (env && env->destroy) env->destroy(env);
}

void env_free_state_and_env(Env *env) {
    if (!env) return;
    free(env->state);
    free(env);
}

Env *env_alloc(const char *name, int max_turns, uint64_t seed, void *state, const char *const *metric_names) {
    Env *env = xcalloc(1, sizeof *env);
    snprintf(env->name, sizeof env->name, "%s", name);
    env->max_turns = max_turns;
    env->seed = seed;
    env->state = state;
    env->metric_names = metric_names;
    env->destroy = env_free_state_and_env;
    return env;
}

static uint64_t fnv1a(uint64_t h, const char *s) {
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

uint64_t env_content_hash(const char *prompt, const char *info) {
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, prompt);
    h = (h ^ 0xff) * 0x100000001b3ULL;  // separator, so ("ab", "c") and ("a", "bc") differ
    return rng_hash64(fnv1a(h, info));
}

int env_hash_is_eval(uint64_t hash, double eval_fraction) {
    return (double)(hash >> 11) * 0x1.0p-53 < eval_fraction;
}

int env_generate(const Env *env, EnvSplit split, uint64_t index, double eval_fraction, EnvGenerateFn gen,
                 Problem *out, ErrorBuf *err) {
    memset(out, 0, sizeof *out);
    for (uint64_t attempt = 0; attempt < ENV_GENERATE_ATTEMPTS; attempt++) {
        Rng rng;
        rng_seed_tuple(&rng, 4, (uint64_t[]){env->seed, (uint64_t)split, index, attempt});
        if (gen(env, &rng, out, err)) {
            problem_free(out);
            return -1;
        }
        uint64_t h = env_content_hash(out->prompt, out->info);
        if (env_hash_is_eval(h, eval_fraction) == (split == ENV_SPLIT_EVAL)) {
            out->id = h;
            return 0;
        }
        problem_free(out);
    }
    return error_set(err,
                     "env %s: no %s problem found in %d draws: its problem space is too small for "
                     "env.eval_fraction = %g; widen the env.%s.* ranges or change env.eval_fraction",
                     env->name, split == ENV_SPLIT_EVAL ? "eval" : "train", ENV_GENERATE_ATTEMPTS, eval_fraction,
                     env->name);
}

int env_model_turns(const Transcript *t) {
    int n = 0;
    if (!t || !t->turns) return 0;
    for (int i = 0; i < t->n_turns; i++) n += t->turns[i].role == TURN_MODEL;
    return n;
}

const Turn *env_last_model_turn(const Transcript *t) {
    if (!t || !t->turns) return NULL;
    for (int i = t->n_turns - 1; i >= 0; i--)
        if (t->turns[i].role == TURN_MODEL) return &t->turns[i];
    return NULL;
}

void env_set_reference_turns(Problem *p, int n, const TurnRole *roles, char *const *texts) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += strlen(texts[i]);
    free(p->answer);
    free(p->answer_turns);
    p->answer = xmalloc(total + 1);
    p->answer_turns = xcalloc((size_t)n, sizeof(Turn));
    p->n_answer_turns = n;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(texts[i]);
        memcpy(p->answer + at, texts[i], len);
        p->answer_turns[i] = (Turn){roles[i], p->answer + at, len};
        at += len;
    }
    p->answer[at] = '\0';
}
