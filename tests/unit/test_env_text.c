// The verifiers' building blocks: the output guard (UTF-8, NUL, size, runaway repetition),
// number extraction with overflow checks, word matching, and the safe rational expression
// evaluator (precedence, exact fractions, limits on depth, length and numbers, the pool).
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "env/env.h"
#include "env/expr.h"
#include "env/text.h"

#define S(lit) lit, sizeof(lit) - 1

static void test_utf8(void **state) {
    assert_true(text_utf8_valid(S("plain ascii")));
    assert_true(text_utf8_valid(S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80")));  // 2, 3 and 4 bytes
    assert_false(text_utf8_valid(S("\x80")));                  // stray continuation
    assert_false(text_utf8_valid(S("\xc0\xaf")));              // overlong
    assert_false(text_utf8_valid(S("\xe0\x80\xaf")));          // overlong 3-byte
    assert_false(text_utf8_valid(S("\xed\xa0\x80")));          // surrogate
    assert_false(text_utf8_valid(S("\xf4\x90\x80\x80")));      // beyond U+10FFFF
    assert_false(text_utf8_valid(S("\xf5\x80\x80\x80")));
    assert_false(text_utf8_valid(S("ok\xe2\x82")));            // truncated at the end
    assert_false(text_utf8_valid(S("\xe2\x28\xa1")));          // bad continuation
}

static void test_check(void **state) {
    assert_int_equal(text_check(S("19"), 64, 1), TEXT_OK);
    assert_int_equal(text_check(S(""), 64, 1), TEXT_EMPTY);
    assert_int_equal(text_check(S(" \n\t "), 64, 1), TEXT_EMPTY);
    assert_int_equal(text_check(NULL, 0, 64, 1), TEXT_EMPTY);
    assert_int_equal(text_check(S("12345"), 4, 1), TEXT_TOO_LONG);
    assert_int_equal(text_check(S("1\0002"), 64, 1), TEXT_NUL);
    assert_int_equal(text_check(S("\xff"), 64, 1), TEXT_BAD_UTF8);
    assert_int_equal(text_check(S("19 19 19 19 19 19 19 19 19 19 19"), 64, 1), TEXT_REPETITIVE);
    assert_int_equal(text_check(S("19 19 19 19 19 19 19 19 19 19 19"), 64, 0), TEXT_OK);
    // The cap never exceeds ENV_MAX_OUTPUT_BYTES whatever the caller asks.
    size_t big = ENV_MAX_OUTPUT_BYTES + 1;
    char *buf = malloc(big);
    for (size_t i = 0; i < big; i++) buf[i] = (char)('a' + (i * 7919) % 26);
    assert_int_equal(text_check(buf, big, (size_t)-1, 0), TEXT_TOO_LONG);
    free(buf);
    assert_string_equal(text_status_name(TEXT_REPETITIVE), "runaway repetition");
}

static void test_repetitive(void **state) {
    assert_true(text_repetitive(S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")));                       // 32 x 'a'
    assert_false(text_repetitive(S("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")));                       // 31
    assert_true(text_repetitive(S("Lily was happy. Lily was happy. Lily was happy. Lily was happy. ")));
    assert_false(text_repetitive(S("Lily was happy. Lily was happy. Lily was happy. Lily was happy.")));  // 3.94
    assert_false(text_repetitive(S("1 1 1 1 1 1 1 1")));                                       // short
    assert_false(text_repetitive(S("Once upon a time, there was a little girl named Lily. She loved her ball.")));
    assert_false(text_repetitive(S("")));
    // A period longer than 64 bytes is not looked for.
    char buf[400];
    const char *block = "this sentence is long enough that its period exceeds sixty-four bytes.. ";
    buf[0] = '\0';
    for (int i = 0; i < 5; i++) strcat(buf, block);
    assert_true(strlen(block) > 64);
    assert_false(text_repetitive(buf, strlen(buf)));
}

static void test_numbers(void **state) {
    int64_t v = 0;
    assert_int_equal(text_parse_int((Span){S("42")}, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(text_parse_int((Span){S("-42")}, &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(text_parse_int((Span){S("+7")}, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(text_parse_int((Span){S("1000000000000000000")}, &v), 0);  // 10^18
    assert_int_equal(text_parse_int((Span){S("1000000000000000001")}, &v), -1);
    assert_int_equal(text_parse_int((Span){S("9999999999999999999")}, &v), -1);
    assert_int_equal(text_parse_int((Span){S("99999999999999999999999999999")}, &v), -1);
    assert_int_equal(text_parse_int((Span){S("-")}, &v), -1);
    assert_int_equal(text_parse_int((Span){S("")}, &v), -1);
    assert_int_equal(text_parse_int((Span){S("4 2")}, &v), -1);
    assert_int_equal(text_parse_int((Span){S("0x10")}, &v), -1);

    assert_int_equal(text_last_int(S("19"), &v), 1);
    assert_int_equal(v, 19);
    assert_int_equal(text_last_int(S("12+7=19\n"), &v), 1);
    assert_int_equal(v, 19);
    assert_int_equal(text_last_int(S("3-12=-9"), &v), 1);
    assert_int_equal(v, -9);
    assert_int_equal(text_last_int(S("12-7"), &v), 1);  // a minus between numbers is not a sign
    assert_int_equal(v, 7);
    assert_int_equal(text_last_int(S("the answer is -5."), &v), 1);
    assert_int_equal(v, -5);
    assert_int_equal(text_last_int(S("no digits here"), &v), 0);
    assert_int_equal(text_last_int(S("19.5"), &v), -1);  // a fraction is not read as the integer 5
    assert_int_equal(text_last_int(S("123456789012345678901234567890"), &v), -1);

    double d = 0;
    assert_int_equal(text_last_double(S("x = 2.5e3 apples"), &d), 1);
    assert_true(d == 2500.0);
    assert_int_equal(text_last_double(S("-0.25"), &d), 1);
    assert_true(d == -0.25);
    assert_int_equal(text_last_double(S("1e999999"), &d), 0);  // not finite
    assert_int_equal(text_last_double(S("none"), &d), 0);
    // Thousands separators: groups of exactly 3 digits after a first group of 1 to 3.
    assert_int_equal(text_last_double(S("The answer is 1,234."), &d), 1);
    assert_true(d == 1234.0);
    assert_int_equal(text_last_double(S("-12,345,678.5"), &d), 1);
    assert_true(d == -12345678.5);
    assert_int_equal(text_last_double(S("2,3"), &d), 1);  // not a group of 3: two numbers
    assert_true(d == 3.0);
    assert_int_equal(text_last_double(S("1,2345"), &d), 1);
    assert_true(d == 2345.0);
    assert_int_equal(text_last_double(S("1234,567"), &d), 1);  // a first group of 4 digits
    assert_true(d == 567.0);
    assert_int_equal(text_last_int(S("1,234"), &v), 1);  // (integers as before: no separators)
    assert_int_equal(v, 234);
    // One number, and nothing else.
    assert_true(text_is_one_number(S(" -3.5 ")) && text_is_one_number(S("1,234")) && text_is_one_number(S("1e3")));
    assert_false(text_is_one_number(S("3/4")) || text_is_one_number(S("$18")) || text_is_one_number(S("12 apples")) ||
                 text_is_one_number(S("")) || text_is_one_number(S("x")));
}

static void test_words(void **state) {
    assert_true(text_has_word(S("Lily went home."), "lily"));
    assert_true(text_has_word(S("She saw Lily's ball"), "Lily"));
    assert_true(text_has_word(S("two balls!"), "ball"));
    assert_false(text_has_word(S("Tommy ran"), "Tom"));
    assert_false(text_has_word(S("football"), "ball"));
    assert_false(text_has_word(S("ballet"), "ball"));
    assert_false(text_has_word(S(""), "ball"));
    assert_int_equal(text_count_words(S("  one two\nthree  ")), 3);
    assert_int_equal(text_count_words(S("")), 0);
    Span t = text_trim(S("  hi \n"));
    assert_int_equal(t.len, 2);
    assert_memory_equal(t.s, "hi", 2);
}

static void test_strbuf(void **state) {
    StrBuf b = {0};
    sb_printf(&b, "%d-%s", 7, "x");
    char big[600];
    memset(big, 'y', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sb_printf(&b, "%s", big);  // longer than the small buffer inside sb_printf
    char *s = sb_take(&b);
    assert_int_equal(strlen(s), 3 + 599);
    assert_memory_equal(s, "7-xyy", 5);
    free(s);
    assert_null(b.s);
}

static const ExprLimits CALC = {.max_len = 256, .max_depth = 16, .max_numbers = 16, .allow_unary_minus = 1};

static ExprStatus eval(const char *s, const ExprLimits *lim, Rational *v) {
    return expr_eval(s, strlen(s), lim, v, NULL);
}

static void test_expr_values(void **state) {
    Rational v;
    assert_int_equal(eval("2+3*4", &CALC, &v), EXPR_OK);
    assert_true(v.num == 14 && v.den == 1);
    assert_int_equal(eval("(2+3)*4", &CALC, &v), EXPR_OK);
    assert_true(v.num == 20 && v.den == 1);
    assert_int_equal(eval("10-4-3", &CALC, &v), EXPR_OK);  // left associative
    assert_true(v.num == 3);
    assert_int_equal(eval("12/3/2", &CALC, &v), EXPR_OK);
    assert_true(v.num == 2 && v.den == 1);
    assert_int_equal(eval(" 1/3 + 1/6 ", &CALC, &v), EXPR_OK);  // exact: 1/2
    assert_true(v.num == 1 && v.den == 2);
    assert_int_equal(eval("(1/3)*3", &CALC, &v), EXPR_OK);
    assert_true(v.num == 1 && v.den == 1);
    assert_int_equal(eval("-2*-3", &CALC, &v), EXPR_OK);
    assert_true(v.num == 6);
    assert_int_equal(eval("4/-6", &CALC, &v), EXPR_OK);
    assert_true(v.num == -2 && v.den == 3);
    char text[32];
    rational_format(v, text, sizeof text);
    assert_string_equal(text, "-2/3");
    rational_format((Rational){1788, 1}, text, sizeof text);
    assert_string_equal(text, "1788");
    int used = 0;
    assert_int_equal(expr_eval("1+2+3", 5, &CALC, &v, &used), EXPR_OK);
    assert_int_equal(used, 3);
}

static void test_expr_errors(void **state) {
    Rational v;
    ExprLimits no_unary = CALC;
    no_unary.allow_unary_minus = 0;
    assert_int_equal(eval("", &CALC, &v), EXPR_EMPTY);
    assert_int_equal(eval("   ", &CALC, &v), EXPR_EMPTY);
    assert_int_equal(eval("1/0", &CALC, &v), EXPR_DIV_ZERO);
    assert_int_equal(eval("1/(2-2)", &CALC, &v), EXPR_DIV_ZERO);
    assert_int_equal(eval("2+", &CALC, &v), EXPR_SYNTAX);
    assert_int_equal(eval("(2+3", &CALC, &v), EXPR_SYNTAX);
    assert_int_equal(eval("2+3)", &CALC, &v), EXPR_SYNTAX);
    assert_int_equal(eval("2 3", &CALC, &v), EXPR_SYNTAX);
    assert_int_equal(eval("2^3", &CALC, &v), EXPR_SYNTAX);
    assert_int_equal(eval("1.5+1", &CALC, &v), EXPR_SYNTAX);
    assert_int_equal(eval("-3+5", &no_unary, &v), EXPR_SYNTAX);
    assert_int_equal(eval("9999999999999999999999", &CALC, &v), EXPR_OVERFLOW);
    assert_int_equal(eval("1000000000000000*10", &CALC, &v), EXPR_OVERFLOW);  // 10^16 > bound
    assert_int_equal(eval("999999999999999*999999999999999", &CALC, &v), EXPR_OVERFLOW);
    assert_int_equal(eval("1/999999999999999/999999999999999", &CALC, &v), EXPR_OVERFLOW);
    assert_int_equal(eval("1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1+1", &CALC, &v), EXPR_TOO_MANY_NUMBERS);
    // Nesting: 16 levels are fine, 17 are not; a million are refused without deep recursion.
    char nest[64];
    snprintf(nest, sizeof nest, "%.*s1%.*s", 16, "((((((((((((((((((((", 16, "))))))))))))))))))))");
    assert_int_equal(eval(nest, &CALC, &v), EXPR_OK);
    snprintf(nest, sizeof nest, "%.*s1%.*s", 17, "((((((((((((((((((((", 17, "))))))))))))))))))))");
    assert_int_equal(eval(nest, &CALC, &v), EXPR_TOO_DEEP);
    assert_int_equal(eval("-----------------1", &CALC, &v), EXPR_TOO_DEEP);
    size_t n = 1000000;
    char *deep = malloc(2 * n + 2);
    memset(deep, '(', n);
    deep[n] = '1';
    memset(deep + n + 1, ')', n);
    ExprLimits roomy = CALC;
    roomy.max_len = 4 * n;
    assert_int_equal(expr_eval(deep, 2 * n + 1, &roomy, &v, NULL), EXPR_TOO_DEEP);
    assert_int_equal(expr_eval(deep, 2 * n + 1, &CALC, &v, NULL), EXPR_TOO_LONG);
    free(deep);
    assert_int_equal(expr_eval("1+\0002", 4, &CALC, &v, NULL), EXPR_SYNTAX);  // embedded NUL
    assert_string_equal(expr_status_name(EXPR_DIV_ZERO), "division by zero");
}

static void test_expr_pool(void **state) {
    const int64_t pool[] = {3, 5, 2, 4};
    ExprLimits lim = {.max_len = 128, .max_depth = 16, .max_numbers = 4, .pool = pool, .pool_count = 4};
    Rational v;
    assert_int_equal(eval("(3+5)*2-4", &lim, &v), EXPR_OK);
    assert_true(v.num == 12);
    assert_int_equal(eval("5*4", &lim, &v), EXPR_OK);
    assert_int_equal(eval("5*5", &lim, &v), EXPR_NOT_ALLOWED);  // 5 is given once
    assert_int_equal(eval("7+1", &lim, &v), EXPR_NOT_ALLOWED);
    assert_int_equal(eval("3+5+2+4+3", &lim, &v), EXPR_TOO_MANY_NUMBERS);
    const int64_t twice[] = {5, 5};
    lim.pool = twice;
    lim.pool_count = 2;
    assert_int_equal(eval("5*5", &lim, &v), EXPR_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),       cmocka_unit_test(test_check),       cmocka_unit_test(test_repetitive),
        cmocka_unit_test(test_numbers),    cmocka_unit_test(test_words),       cmocka_unit_test(test_strbuf),
        cmocka_unit_test(test_expr_values), cmocka_unit_test(test_expr_errors), cmocka_unit_test(test_expr_pool),
    };
    return cmocka_run_group_tests_name("env_text", tests, NULL, NULL);
}
