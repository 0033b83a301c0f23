// Evaluation on held-out problems: for each of eval.problems problems of the eval split (fewer
// when the eval data holds fewer: see orch_plan_eval), one greedy completion and eval.samples sampled
// ones; logged as a row of /eval (see orch_state.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm/transport.h"
#include "core/log.h"
#include "orch/orch_state.h"

// version / version_max: the oldest and newest policy that sampled the evaluation's tokens (they
// differ when weights reached inference while it ran, outside deterministic mode).
static const char *EVAL_BASE[] = {"step", "version", "greedy_reward", "greedy_pass", "sampled_reward", "sampled_pass",
                                  "completion_len", "version_max"};
#define N_BASE ((int)(sizeof EVAL_BASE / sizeof EVAL_BASE[0]))

const char *const *orch_eval_metric_names(const Orch *o, int *n) {
    Orch *w = (Orch *)o;
    if (!w->eval_names) {
        w->eval_names = xcalloc((size_t)(N_BASE + 2 * o->n_envs), sizeof(char *));
        int k = 0;
        for (int i = 0; i < N_BASE; i++) w->eval_names[k++] = EVAL_BASE[i];
        for (int e = 0; e < o->n_envs; e++) {
            char *a = xmalloc(64), *b = xmalloc(64);
            snprintf(a, 64, "by_env/%s/greedy_reward", o->envs[e]->name);
            snprintf(b, 64, "by_env/%s/sampled_reward", o->envs[e]->name);
            w->eval_names[k++] = a;
            w->eval_names[k++] = b;
        }
        w->n_eval_names = k;
    }
    *n = o->n_eval_names;
    return o->eval_names;
}

// The evaluation's problems: problem p comes from the environment the mix picks for p. A
// generated environment gives its eval problem p; one that reads its problems from a file gives
// its k-th, k counting the earlier problems it was picked for, so its problems are distinct, and
// one picked more often than its eval split holds problems gives each of them once (an
// evaluation never scores a problem twice): the rest are left out. (A group's problem_index
// stays p, which its samples' seeds key on: unique across environments.)
void orch_plan_eval(Orch *o) {
    const int problems = o->cfg->eval.problems;
    if (o->eval_env || problems <= 0) return;
    o->eval_env = xmalloc(sizeof(int) * (size_t)problems);
    o->eval_index = xmalloc(sizeof(uint64_t) * (size_t)problems);
    o->eval_position = xmalloc(sizeof(uint64_t) * (size_t)problems);
    uint64_t next[CFG_LIST_MAX] = {0};  // per file environment: its next eval index
    int left_out[CFG_LIST_MAX] = {0};
    for (int p = 0; p < problems; p++) {
        const int e = env_mix_pick(&o->mix, ENV_SPLIT_EVAL, (uint64_t)p);
        const Env *env = o->envs[e];
        uint64_t index = (uint64_t)p;
        if (env->problem_count) {
            if (next[e] >= (uint64_t)env->problem_count(env, ENV_SPLIT_EVAL)) {
                left_out[e]++;
                continue;
            }
            index = next[e]++;
        }
        o->eval_env[o->n_eval_problems] = e;
        o->eval_index[o->n_eval_problems] = index;
        o->eval_position[o->n_eval_problems++] = (uint64_t)p;
    }
    for (int e = 0; e < o->n_envs; e++)
        if (left_out[e])
            LOG_WARN("eval.problems = %d picks environment %s %d times, but its eval split holds %d problems: each "
                     "evaluation scores those %d once (%d problems in all, so the overall eval reward weighs the "
                     "environments by the problems each gave); lower eval.problems or add eval data",
                     problems, o->envs[e]->name, (int)next[e] + left_out[e], (int)next[e], (int)next[e],
                     o->n_eval_problems);
}

double orch_evaluate(Orch *o, int step, const char *label) {
    const Config *cfg = o->cfg;
    const int per = 1 + cfg->eval.samples;
    if (cfg->eval.problems <= 0) return NAN;
    orch_plan_eval(o);
    const int problems = o->n_eval_problems;
    // Deterministic mode names the exact policy (the trainer's newest); otherwise inference
    // uses the newest it holds (at least the one waited for before calling).
    int version = o->inf_version[0];
    for (int r = 1; r < o->n_inf; r++)
        if (o->inf_version[r] < version) version = o->inf_version[r];
    if (cfg->run.deterministic) version = o->trainer_version;
    o->eval_step = step;
    o->eval_pending = problems;
    for (int p = 0; p < problems; p++) {
        Group *g = orch_new_group(o, o->eval_env[p], ENV_SPLIT_EVAL, o->eval_index[p], per, step, 1);
        g->problem_index = o->eval_position[p];  // (the seeds key on p, not on the environment's index)
        g->version = cfg->run.deterministic ? version : -1;
        group_list_push(&o->active, g);
        orch_dispatch(o, g, p % o->n_inf);
    }
    orch_flush(o);
    Backoff b;
    backoff_reset(&b);
    while (o->eval_pending > 0) {
        if (orch_poll(o)) backoff_reset(&b);
        else backoff_sleep(&b);
    }
    double greedy = 0, greedy_pass = 0, sampled = 0, sampled_pass = 0, length = 0, n_sampled = 0;
    double env_greedy[16] = {0}, env_sampled[16] = {0}, env_g_n[16] = {0}, env_s_n[16] = {0};
    int oldest = -1, newest = -1;
    for (int i = 0; i < o->eval_done.count; i++) {
        Group *g = o->eval_done.items[i];
        for (int s = 0; s < g->n; s++) {
            int lo, hi;
            sample_version_range(&g->samples[s], &lo, &hi);
            if (lo >= 0 && (oldest < 0 || lo < oldest)) oldest = lo;
            if (hi > newest) newest = hi;
            double r = g->samples[s].reward;
            int pass = r >= cfg->eval.pass_threshold;
            length += sample_completion_tokens(&g->samples[s]);
            int e = g->env < 16 ? g->env : 15;
            if (s == 0) {
                greedy += r, greedy_pass += pass;
                env_greedy[e] += r, env_g_n[e] += 1;
            } else {
                sampled += r, sampled_pass += pass, n_sampled += 1;
                env_sampled[e] += r, env_s_n[e] += 1;
            }
        }
        group_free(g);
        free(g);
    }
    o->eval_done.count = 0;
    int n_names;
    const char *const *names = orch_eval_metric_names(o, &n_names);
    double *values = xcalloc((size_t)n_names, sizeof(double));
    values[0] = step;
    values[1] = version;
    values[2] = greedy / problems;
    values[3] = greedy_pass / problems;
    values[4] = n_sampled ? sampled / n_sampled : NAN;
    values[5] = n_sampled ? sampled_pass / n_sampled : NAN;
    values[6] = length / (problems * per);
    if (oldest < 0) oldest = newest = version;  // (no sampled token at all)
    values[1] = oldest;
    values[7] = newest;
    for (int e = 0; e < o->n_envs && e < 16; e++) {
        values[N_BASE + 2 * e] = env_g_n[e] ? env_greedy[e] / env_g_n[e] : NAN;
        values[N_BASE + 2 * e + 1] = env_s_n[e] ? env_sampled[e] / env_s_n[e] : NAN;
    }
    metrics_write_row(o->mw, 0, step, names, values, n_names);
    char policy[48];
    if (oldest == newest) snprintf(policy, sizeof policy, "policy v%d", oldest);
    else snprintf(policy, sizeof policy, "policies v%d-v%d", oldest, newest);
    printf("eval (%s, step %d, %s): greedy reward %.4f pass %.3f | sampled reward %.4f pass %.3f | %d problems\n",
           label, step, policy, values[2], values[3], values[4], values[5], problems);
    fflush(stdout);
    double result = values[2];
    free(values);
    return result;
}
