// arithmetic: one +, - or * of two integers.
//
//   prompt  "<a><op><b>="     e.g. "12+7=", "3*-4=" (operands in env.arithmetic.min_operand..
//                              max_operand, operator drawn from env.arithmetic.ops)
//   answer  the result        e.g. "19", "-12"
//   info    the result
//
// Reward 1 when the last integer of the output equals the result, else 0 (so "19", " 19\n"
// and "12+7=19" all count; "19.5" does not). Output over 64 bytes, runaway repetition, empty,
// NUL-holding or invalid UTF-8 output scores 0.
// Metrics: exact (= the reward), format_ok (the trimmed output is exactly one integer).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/builtin.h"
#include "env/env_impl.h"
#include "env/text.h"

#define MAX_OUTPUT 64

typedef struct {
    int min_operand, max_operand;
    char ops[8];
    double eval_fraction;
} Arithmetic;

static const char *const METRICS[] = {"exact", "format_ok", NULL};

static int generate(const Env *env, Rng *rng, Problem *out, ErrorBuf *err) {
    const Arithmetic *a = env->state;
    uint64_t span = (uint64_t)((int64_t)a->max_operand - a->min_operand + 1);
    int64_t x = a->min_operand + (int64_t)rng_below(rng, span);
    int64_t y = a->min_operand + (int64_t)rng_below(rng, span);
    char op = a->ops[rng_below(rng, strlen(a->ops))];
    int64_t result = op == '+' ? x + y : op == '-' ? x - y : x * y;  // |x|, |y| <= 10^6: no overflow
    StrBuf prompt = {0}, answer = {0};
    sb_printf(&prompt, "%lld%c%lld=", (long long)x, op, (long long)y);
    sb_printf(&answer, "%lld", (long long)result);
    out->prompt = sb_take(&prompt);
    out->answer = sb_take(&answer);
    out->info = xstrdup(out->answer);
    return 0;
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Arithmetic *a = env->state;
    return env_generate(env, split, index, a->eval_fraction, generate, out, err);
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Turn *turn = env_last_model_turn(t);
    double exact = 0, format_ok = 0;
    int64_t want, got;
    int known = p->info && text_parse_int((Span){p->info, strlen(p->info)}, &want) == 0;
    if (known && turn && text_check(turn->text, turn->len, MAX_OUTPUT, 1) == TEXT_OK) {
        format_ok = text_parse_int(text_trim(turn->text, turn->len), &got) == 0;
        exact = text_last_int(turn->text, turn->len, &got) == 1 && got == want;
    }
    env_metrics_fill(metrics, METRICS, (double[]){exact, format_ok});
    return exact;
}

Env *env_arithmetic_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    const char *ops = cfg->arithmetic.ops;
    if (cfg->arithmetic.min_operand > cfg->arithmetic.max_operand || !ops[0] || strspn(ops, "+-*") != strlen(ops) ||
        cfg->arithmetic.min_operand < -1000000 || cfg->arithmetic.max_operand > 1000000) {
        error_set(err, "env arithmetic: bad settings: need env.arithmetic.min_operand <= max_operand within "
                       "[-10^6, 10^6] and env.arithmetic.ops made of + - *");
        return NULL;
    }
    Arithmetic *a = xcalloc(1, sizeof *a);
    a->min_operand = cfg->arithmetic.min_operand;
    a->max_operand = cfg->arithmetic.max_operand;
    snprintf(a->ops, sizeof a->ops, "%s", ops);
    a->eval_fraction = cfg->eval_fraction;
    Env *env = env_alloc("arithmetic", 1, seed, a, METRICS);
    env->problem = problem;
    env->score = score;
    return env;
}
