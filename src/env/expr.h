// A safe evaluator for the arithmetic expressions models write (countdown answers, calculator
// calls): decimal integers, + - * /, parentheses and optionally unary minus, evaluated in
// exact rational arithmetic. It is a recursive-descent parser with limits on length, nesting
// depth and number count, every intermediate value is bounded (|numerator|, denominator
// <= EXPR_MAX_ABS, checked in 128-bit arithmetic), and division by zero is an error, so no
// input can overflow, recurse without bound or crash it.
//
//   expr   := term   (('+' | '-') term)*
//   term   := factor (('*' | '/') factor)*
//   factor := number | '(' expr ')' | '-' factor      (unary minus only when allowed)
#pragma once
#include <stddef.h>
#include <stdint.h>

#define EXPR_MAX_ABS 1000000000000000LL  // 10^15

typedef struct {
    int64_t num, den;  // den > 0, gcd(|num|, den) == 1
} Rational;

typedef struct {
    size_t max_len;          // longest expression in bytes
    int max_depth;           // deepest nesting of parentheses and unary minus
    int max_numbers;         // most number literals in one expression
    int allow_unary_minus;
    const int64_t *pool;     // when not NULL, every literal must be taken from this multiset,
    int pool_count;          // each entry at most once (countdown); at most 32 entries
} ExprLimits;

typedef enum {
    EXPR_OK = 0,
    EXPR_EMPTY,
    EXPR_SYNTAX,
    EXPR_TOO_LONG,
    EXPR_TOO_DEEP,
    EXPR_TOO_MANY_NUMBERS,
    EXPR_NOT_ALLOWED,  // a number that is not (or no longer) in the pool
    EXPR_DIV_ZERO,
    EXPR_OVERFLOW,
} ExprStatus;

// Evaluates s[0..len) (surrounding whitespace allowed). On EXPR_OK fills *value and, when
// numbers_used is not NULL, the count of number literals.
ExprStatus expr_eval(const char *s, size_t len, const ExprLimits *lim, Rational *value, int *numbers_used);
const char *expr_status_name(ExprStatus status);
// Writes "7", "-3" or "22/7" (always NUL-terminated); returns the length.
int rational_format(Rational r, char *buf, size_t size);
