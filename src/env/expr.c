// Recursive-descent evaluator for model-written arithmetic in exact rationals (see expr.h).
#include "env/expr.h"

#include <stdio.h>

#define POOL_MAX 32

typedef struct {
    const char *p, *end;
    const ExprLimits *lim;
    int depth;
    int numbers;
    unsigned char used[POOL_MAX];  // pool entries already taken
    ExprStatus status;             // first error, EXPR_OK while none
} Parser;

typedef __int128 i128;

static void fail(Parser *ps, ExprStatus status) {
    if (ps->status == EXPR_OK) ps->status = status;
}

static void skip_space(Parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static i128 gcd128(i128 a, i128 b) {
    if (a < 0) a = -a;
    if (b < 0) b = -b;
    while (b != 0) {
        i128 t = a % b;
        a = b;
        b = t;
    }
    return a;
}

// Reduces num/den (den != 0) and checks the bound; num and den come from products of values
// below 10^15, so they fit in 128 bits with room to spare.
static Rational make(Parser *ps, i128 num, i128 den) {
    if (den == 0) {
        fail(ps, EXPR_DIV_ZERO);
        return (Rational){0, 1};
    }
    if (den < 0) num = -num, den = -den;
    i128 g = gcd128(num, den);
    if (g > 1) num /= g, den /= g;
    if (num > EXPR_MAX_ABS || num < -EXPR_MAX_ABS || den > EXPR_MAX_ABS) {
        fail(ps, EXPR_OVERFLOW);
        return (Rational){0, 1};
    }
    return (Rational){(int64_t)num, (int64_t)den};
}

static Rational apply(Parser *ps, char op, Rational a, Rational b) {
    switch (op) {
        case '+': return make(ps, (i128)a.num * b.den + (i128)b.num * a.den, (i128)a.den * b.den);
        case '-': return make(ps, (i128)a.num * b.den - (i128)b.num * a.den, (i128)a.den * b.den);
        case '*': return make(ps, (i128)a.num * b.num, (i128)a.den * b.den);
        default: return make(ps, (i128)a.num * b.den, (i128)a.den * b.num);  // '/'
    }
}

static void take_from_pool(Parser *ps, int64_t v) {
    const ExprLimits *lim = ps->lim;
    if (!lim->pool) return;
    for (int i = 0; i < lim->pool_count && i < POOL_MAX; i++) {
        if (!ps->used[i] && lim->pool[i] == v) {
            ps->used[i] = 1;
            return;
        }
    }
    fail(ps, EXPR_NOT_ALLOWED);
}

static Rational parse_number(Parser *ps) {
    int64_t v = 0;
    int digits = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        int d = *ps->p++ - '0';
        if (v > (EXPR_MAX_ABS - d) / 10) {
            fail(ps, EXPR_OVERFLOW);
            return (Rational){0, 1};
        }
        v = v * 10 + d;
        digits++;
    }
    if (digits == 0) {
        fail(ps, EXPR_SYNTAX);
        return (Rational){0, 1};
    }
    if (++ps->numbers > ps->lim->max_numbers) fail(ps, EXPR_TOO_MANY_NUMBERS);
    take_from_pool(ps, v);
    return (Rational){v, 1};
}

static Rational parse_expr(Parser *ps);

static Rational parse_factor(Parser *ps) {
    skip_space(ps);
    if (ps->status != EXPR_OK) return (Rational){0, 1};
    if (ps->p >= ps->end) {
        fail(ps, EXPR_SYNTAX);
        return (Rational){0, 1};
    }
    char c = *ps->p;
    if (c == '(' || (c == '-' && ps->lim->allow_unary_minus)) {
        if (++ps->depth > ps->lim->max_depth) {
            fail(ps, EXPR_TOO_DEEP);
            return (Rational){0, 1};
        }
        ps->p++;
        Rational v;
        if (c == '(') {
            v = parse_expr(ps);
            skip_space(ps);
            if (ps->p < ps->end && *ps->p == ')') ps->p++;
            else fail(ps, EXPR_SYNTAX);
        } else {
            Rational inner = parse_factor(ps);
            v = (Rational){-inner.num, inner.den};
        }
        ps->depth--;
        return v;
    }
    return parse_number(ps);
}

static Rational parse_term(Parser *ps) {
    Rational acc = parse_factor(ps);
    for (;;) {
        skip_space(ps);
        if (ps->status != EXPR_OK || ps->p >= ps->end || (*ps->p != '*' && *ps->p != '/')) return acc;
        char op = *ps->p++;
        Rational rhs = parse_factor(ps);
        if (ps->status != EXPR_OK) return acc;
        acc = apply(ps, op, acc, rhs);
    }
}

static Rational parse_expr(Parser *ps) {
    Rational acc = parse_term(ps);
    for (;;) {
        skip_space(ps);
        if (ps->status != EXPR_OK || ps->p >= ps->end || (*ps->p != '+' && *ps->p != '-')) return acc;
        char op = *ps->p++;
        Rational rhs = parse_term(ps);
        if (ps->status != EXPR_OK) return acc;
        acc = apply(ps, op, acc, rhs);
    }
}

ExprStatus expr_eval(const char *s, size_t len, const ExprLimits *lim, Rational *value, int *numbers_used) {
    if (!s || len == 0) return EXPR_EMPTY;
    if (len > lim->max_len) return EXPR_TOO_LONG;
    Parser ps = {.p = s, .end = s + len, .lim = lim, .status = EXPR_OK};
    skip_space(&ps);
    if (ps.p == ps.end) return EXPR_EMPTY;
    Rational v = parse_expr(&ps);
    skip_space(&ps);
    if (ps.status == EXPR_OK && ps.p != ps.end) ps.status = EXPR_SYNTAX;  // trailing bytes
    if (ps.status != EXPR_OK) return ps.status;
    *value = v;
    if (numbers_used) *numbers_used = ps.numbers;
    return EXPR_OK;
}

const char *expr_status_name(ExprStatus status) {
    switch (status) {
        case EXPR_OK: return "ok";
        case EXPR_EMPTY: return "empty expression";
        case EXPR_SYNTAX: return "syntax error";
        case EXPR_TOO_LONG: return "expression too long";
        case EXPR_TOO_DEEP: return "nested too deeply";
        case EXPR_TOO_MANY_NUMBERS: return "too many numbers";
        case EXPR_NOT_ALLOWED: return "number not allowed";
        case EXPR_DIV_ZERO: return "division by zero";
        case EXPR_OVERFLOW: return "number too large";
    }
    return "?";
}

int rational_format(Rational r, char *buf, size_t size) {
    int n = r.den == 1 ? snprintf(buf, size, "%lld", (long long)r.num)
                       : snprintf(buf, size, "%lld/%lld", (long long)r.num, (long long)r.den);
    return n < 0 ? 0 : n;
}
