// countdown: reach a target with the given numbers and + - * / (each number at most once,
// not all need to be used), as in the TinyZero / prime-rl countdown tasks.
//
//   prompt  "cd <numbers>><target>="   e.g. "cd 3 5 2 4>14="  (env.countdown.numbers numbers
//                                       in min_number..max_number, target in min_target..max_target)
//   answer  an expression              e.g. "(3+5)*2-4"   (a solution found while generating)
//   info    "<target>:<numbers>"       e.g. "14:3 5 2 4"
//
// The verifier parses the output with the safe evaluator of expr.h (at most 128 bytes,
// nesting depth 16, exact rationals): every number must come from the given multiset, each at
// most once, no unary minus; division by zero, a foreign number, a syntax error or anything
// else invalid scores 0. Reward 1 when the value equals the target, else 0. Problems are made
// by combining a random subset of the numbers left to right with random operators (only
// exact divisions, only positive differences), so every problem has a solution; a target
// equal to one of the given numbers is redrawn (it would need no arithmetic).
// Metrics: exact (= the reward), format_ok (a valid expression over the given numbers),
// numbers_used.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/builtin.h"
#include "env/env_impl.h"
#include "env/expr.h"
#include "env/text.h"

#define MAX_NUMBERS 6
#define MAX_OUTPUT 128
#define DRAWS 10000       // candidate solutions tried before giving up
#define NUMBER_DRAWS 100  // candidate solutions tried for one set of numbers

typedef struct {
    int numbers, min_number, max_number, min_target, max_target;
    double eval_fraction;
} Countdown;

static const char *const METRICS[] = {"exact", "format_ok", "numbers_used", NULL};

// One attempt: combines a random order of a random subset left to right. Writes the
// expression into expr and returns its value, or -1 when an intermediate grew too large.
static int64_t random_solution(Rng *rng, const int64_t *nums, int n, StrBuf *expr) {
    int64_t order[MAX_NUMBERS];
    memcpy(order, nums, sizeof(int64_t) * (size_t)n);
    for (int i = n - 1; i > 0; i--) {  // Fisher-Yates
        int j = (int)rng_below(rng, (uint64_t)i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int k = 2 + (int)rng_below(rng, (uint64_t)(n - 1));  // use 2..n numbers
    int64_t acc = order[0];
    char top = 0;  // the top-level operator of the expression so far (0: a single number)
    sb_printf(expr, "%lld", (long long)acc);
    for (int i = 1; i < k; i++) {
        int64_t x = order[i];
        char ops[4];
        int n_ops = 0;
        ops[n_ops++] = '+';
        ops[n_ops++] = '*';
        if (acc > x) ops[n_ops++] = '-';
        if (x > 1 && acc % x == 0) ops[n_ops++] = '/';
        char op = ops[rng_below(rng, (uint64_t)n_ops)];
        int wrap = (op == '*' || op == '/') && (top == '+' || top == '-');
        if (wrap) {
            StrBuf wrapped = {0};
            sb_printf(&wrapped, "(%s)", expr->s);
            free(expr->s);
            *expr = wrapped;
        }
        sb_printf(expr, "%c%lld", op, (long long)x);
        acc = op == '+' ? acc + x : op == '-' ? acc - x : op == '*' ? acc * x : acc / x;
        if (acc > 1000000000000LL) return -1;  // numbers <= 1000, at most 6 of them: no overflow before this
        top = op;  // "A+x", "A*x" (A had no + or - on top) and "(A)*x" all have op on top
    }
    return acc;
}

static int generate(const Env *env, Rng *rng, Problem *out, ErrorBuf *err) {
    const Countdown *c = env->state;
    int64_t nums[MAX_NUMBERS];
    uint64_t span = (uint64_t)(c->max_number - c->min_number + 1);
    for (int draw = 0; draw < DRAWS; draw++) {
        if (draw % NUMBER_DRAWS == 0)  // new numbers now and then: some sets cannot reach the range
            for (int i = 0; i < c->numbers; i++) nums[i] = c->min_number + (int64_t)rng_below(rng, span);
        StrBuf expr = {0};
        int64_t target = random_solution(rng, nums, c->numbers, &expr);
        int trivial = 0;
        for (int i = 0; i < c->numbers; i++) trivial |= nums[i] == target;
        if (target < c->min_target || target > c->max_target || trivial) {
            free(expr.s);
            continue;
        }
        StrBuf prompt = {0}, info = {0};
        sb_printf(&prompt, "cd");
        sb_printf(&info, "%lld:", (long long)target);
        for (int i = 0; i < c->numbers; i++) {
            sb_printf(&prompt, " %lld", (long long)nums[i]);
            sb_printf(&info, "%s%lld", i ? " " : "", (long long)nums[i]);
        }
        sb_printf(&prompt, ">%lld=", (long long)target);
        out->prompt = sb_take(&prompt);
        out->info = sb_take(&info);
        out->answer = sb_take(&expr);
        return 0;
    }
    return error_set(err,
                     "env countdown: found no target in env.countdown.min_target..max_target = %d..%d for the numbers "
                     "drawn from %d..%d (env.countdown.min_number..max_number): widen the target range",
                     c->min_target, c->max_target, c->min_number, c->max_number);
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Countdown *c = env->state;
    return env_generate(env, split, index, c->eval_fraction, generate, out, err);
}

// Reads "<target>:<n1> <n2> ..." (written by generate). Returns the count of numbers, or -1.
static int parse_info(const char *info, int64_t *target, int64_t *nums) {
    if (!info) return -1;
    const char *colon = strchr(info, ':');
    if (!colon || text_parse_int((Span){info, (size_t)(colon - info)}, target) != 0) return -1;
    int n = 0;
    const char *p = colon + 1;
    while (*p) {
        const char *end = strchr(p, ' ');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n == MAX_NUMBERS || text_parse_int((Span){p, len}, &nums[n]) != 0) return -1;
        n++;
        p += len + (end != NULL);
    }
    return n;
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Turn *turn = env_last_model_turn(t);
    double exact = 0, format_ok = 0, used = 0;
    int64_t target, nums[MAX_NUMBERS];
    int n = parse_info(p->info, &target, nums);
    if (n > 0 && turn && text_check(turn->text, turn->len, MAX_OUTPUT, 1) == TEXT_OK) {
        ExprLimits lim = {.max_len = MAX_OUTPUT, .max_depth = 16, .max_numbers = n, .pool = nums, .pool_count = n};
        Rational v;
        int count = 0;
        if (expr_eval(turn->text, turn->len, &lim, &v, &count) == EXPR_OK) {
            format_ok = 1;
            used = count;
            exact = v.den == 1 && v.num == target;
        }
    }
    env_metrics_fill(metrics, METRICS, (double[]){exact, format_ok, used});
    return exact;
}

Env *env_countdown_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    const int n = cfg->countdown.numbers;
    if (n < 2 || n > MAX_NUMBERS || cfg->countdown.min_number < 1 || cfg->countdown.max_number > 1000 ||
        cfg->countdown.min_number > cfg->countdown.max_number || cfg->countdown.min_target > cfg->countdown.max_target) {
        error_set(err, "env countdown: bad settings: need 2 <= env.countdown.numbers <= %d, 1 <= min_number <= "
                       "max_number <= 1000 and min_target <= max_target", MAX_NUMBERS);
        return NULL;
    }
    Countdown *c = xcalloc(1, sizeof *c);
    c->numbers = n;
    c->min_number = cfg->countdown.min_number;
    c->max_number = cfg->countdown.max_number;
    c->min_target = cfg->countdown.min_target;
    c->max_target = cfg->countdown.max_target;
    c->eval_fraction = cfg->eval_fraction;
    Env *env = env_alloc("countdown", 1, seed, c, METRICS);
    env->problem = problem;
    env->score = score;
    return env;
}
