// tool: a multi-turn environment with a calculator tool. The model is asked for the value of
// an expression too long to do in its head; on a turn it may call the calculator by writing
// `CALL <expression>`, and the environment answers with the value; a turn that is not a call
// is the final answer.
//
//   prompt      "calc <expression>\n"     e.g. "calc 37*48+12\n"  (env.tool.terms operands in
//                                          env.tool.min_operand..max_operand, operators + - *)
//   model turn  "CALL 37*48+12"           a calculator call, or the final answer "1788"
//   env turn    "= 1788\n", or "= error: <why>\n" for an expression it cannot evaluate
//   answer      turns "CALL 37*48+12" "= 1788\n" "1788"
//   info        the value
//
// In token terms: "calc 37*48+12\nCALL 37*48+12<eos>= 1788\n1788<eos>"; the environment's turns
// get loss mask 0 (the orchestrator does that from the turn roles). The calculator is the safe
// evaluator of expr.h (exact rationals, + - * / parentheses and unary minus, at most 256
// bytes, depth 16, 16 numbers, values within 10^15). At most env.tool.max_calls calls: a call
// beyond that ends the episode without an answer (reward 0). Reward 1 when the final answer's
// last integer equals the value (at most 64 bytes, no runaway repetition), else 0.
// Metrics: exact (= the reward), format_ok (the final turn is exactly one integer),
// tool_calls, tool_errors (calls the calculator could not evaluate), turns.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/builtin.h"
#include "env/env_impl.h"
#include "env/expr.h"
#include "env/text.h"

#define MAX_TERMS 4
#define MAX_CALL_BYTES 256
#define MAX_ANSWER_BYTES 64
#define DRAWS 1000

typedef struct {
    int min_operand, max_operand, terms, max_calls;
    double eval_fraction;
} Tool;

static const char *const METRICS[] = {"exact", "format_ok", "tool_calls", "tool_errors", "turns", NULL};

static const ExprLimits CALCULATOR = {
    .max_len = MAX_CALL_BYTES, .max_depth = 16, .max_numbers = 16, .allow_unary_minus = 1};

static int generate(const Env *env, Rng *rng, Problem *out, ErrorBuf *err) {
    const Tool *tool = env->state;
    static const char OPS[] = "+-*";
    uint64_t span = (uint64_t)(tool->max_operand - tool->min_operand + 1);
    for (int draw = 0; draw < DRAWS; draw++) {
        StrBuf expr = {0};
        for (int i = 0; i < tool->terms; i++) {
            if (i) sb_printf(&expr, "%c", OPS[rng_below(rng, 3)]);
            sb_printf(&expr, "%lld", (long long)(tool->min_operand + (int64_t)rng_below(rng, span)));
        }
        Rational v;
        if (expr_eval(expr.s, expr.len, &CALCULATOR, &v, NULL) != EXPR_OK) {  // too large: draw again
            free(expr.s);
            continue;
        }
        char value[32];
        rational_format(v, value, sizeof value);
        StrBuf prompt = {0}, call = {0}, reply = {0};
        sb_printf(&prompt, "calc %s\n", expr.s);
        sb_printf(&call, "CALL %s", expr.s);
        sb_printf(&reply, "= %s\n", value);
        out->prompt = sb_take(&prompt);
        out->info = xstrdup(value);
        char *texts[3] = {call.s, reply.s, value};
        env_set_reference_turns(out, 3, (TurnRole[]){TURN_MODEL, TURN_ENV, TURN_MODEL}, texts);
        free(expr.s);
        free(call.s);
        free(reply.s);
        return 0;
    }
    return error_set(err, "env tool: every expression drawn overflowed 10^15: lower env.tool.max_operand or env.tool.terms");
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Tool *tool = env->state;
    return env_generate(env, split, index, tool->eval_fraction, generate, out, err);
}

// A calculator call: the trimmed turn starts with "CALL"; *expr is what follows.
static int is_call(const Turn *turn, Span *expr) {
    Span sp = text_trim(turn->text, turn->len);
    if (sp.len < 4 || memcmp(sp.s, "CALL", 4) != 0) return 0;
    if (expr) *expr = (Span){sp.s + 4, sp.len - 4};
    return 1;
}

// Evaluates a call's expression; writes the calculator's reply ("= 42\n" or "= error: ...\n").
static int run_call(const Turn *turn, Span expr, char *reply, size_t size) {
    Rational v;
    ExprStatus st = text_check(turn->text, turn->len, MAX_CALL_BYTES, 0) != TEXT_OK
                        ? EXPR_TOO_LONG
                        : expr_eval(expr.s, expr.len, &CALCULATOR, &v, NULL);
    if (st != EXPR_OK) {
        snprintf(reply, size, "= error: %s\n", expr_status_name(st));
        return -1;
    }
    char value[48];
    rational_format(v, value, sizeof value);
    snprintf(reply, size, "= %s\n", value);
    return 0;
}

static int respond(Env *env, const Problem *p, const Transcript *t, char **reply, size_t *reply_len) {
    const Tool *tool = env->state;
    *reply = NULL;
    *reply_len = 0;
    if (!t || !t->turns || t->n_turns < 1) return 0;
    const Turn *last = &t->turns[t->n_turns - 1];
    Span expr;
    if (last->role != TURN_MODEL || !is_call(last, &expr)) return 0;  // the final answer
    int calls = 0;
    for (int i = 0; i < t->n_turns; i++) calls += t->turns[i].role == TURN_MODEL && is_call(&t->turns[i], NULL);
    if (calls > tool->max_calls) return 0;  // over the limit: the episode ends unanswered
    char buf[96];
    run_call(last, expr, buf, sizeof buf);
    *reply = xstrdup(buf);
    *reply_len = strlen(buf);
    return 1;
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Tool *tool = env->state;
    double exact = 0, format_ok = 0, calls = 0, errors = 0, turns = 0;
    const Turn *final = NULL;
    if (t && t->turns) {
        for (int i = 0; i < t->n_turns; i++) {
            const Turn *turn = &t->turns[i];
            if (turn->role != TURN_MODEL) continue;
            turns++;
            Span expr;
            if (is_call(turn, &expr)) {
                char buf[96];
                calls++;
                errors += run_call(turn, expr, buf, sizeof buf) != 0;
                final = NULL;
            } else {
                final = turn;
            }
        }
    }
    int64_t want, got;
    int known = p->info && text_parse_int((Span){p->info, strlen(p->info)}, &want) == 0;
    if (known && final && calls <= tool->max_calls &&
        text_check(final->text, final->len, MAX_ANSWER_BYTES, 1) == TEXT_OK) {
        format_ok = text_parse_int(text_trim(final->text, final->len), &got) == 0;
        exact = text_last_int(final->text, final->len, &got) == 1 && got == want;
    }
    env_metrics_fill(metrics, METRICS, (double[]){exact, format_ok, calls, errors, turns});
    return exact;
}

Env *env_tool_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    if (cfg->tool.min_operand < 0 || cfg->tool.min_operand > cfg->tool.max_operand || cfg->tool.max_operand > 1000000 ||
        cfg->tool.terms < 2 || cfg->tool.terms > MAX_TERMS || cfg->tool.max_calls < 1) {
        error_set(err, "env tool: bad settings: need 0 <= env.tool.min_operand <= max_operand <= 10^6, "
                       "2 <= env.tool.terms <= %d and env.tool.max_calls >= 1", MAX_TERMS);
        return NULL;
    }
    Tool *tool = xcalloc(1, sizeof *tool);
    tool->min_operand = cfg->tool.min_operand;
    tool->max_operand = cfg->tool.max_operand;
    tool->terms = cfg->tool.terms;
    tool->max_calls = cfg->tool.max_calls;
    tool->eval_fraction = cfg->eval_fraction;
    Env *env = env_alloc("tool", tool->max_calls + 1, seed, tool, METRICS);
    env->problem = problem;
    env->respond = respond;
    env->score = score;
    return env;
}
