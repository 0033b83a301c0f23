// The JSONL dataset environment: loading (aliases, numbers as answers, blank and CRLF lines, a
// byte-order mark), problem counts and each problem's FILE:LINE,
// every load error naming the file and line, the hash split and the separate eval file, index
// wrap-around, and exact and numeric matching.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_env_util.h"

static char g_train[128], g_eval[128];

static int setup(void **state) {
    snprintf(g_train, sizeof g_train, "/tmp/asyncrl-test-jsonl-%d-train.jsonl", (int)getpid());
    snprintf(g_eval, sizeof g_eval, "/tmp/asyncrl-test-jsonl-%d-eval.jsonl", (int)getpid());
    return 0;
}

static int teardown(void **state) {
    unlink(g_train);
    unlink(g_eval);
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

// Loads g_train (and g_eval when eval is set) with extra settings; returns the env or NULL.
static Env *load(const char *extra1, const char *extra2, int with_eval, ErrorBuf *err) {
    Config cfg;
    char path_set[200], eval_set[200];
    snprintf(path_set, sizeof path_set, "env.jsonl.path=%s", g_train);
    snprintf(eval_set, sizeof eval_set, "env.jsonl.eval_path=%s", g_eval);
    const char *sets[] = {path_set, with_eval ? eval_set : NULL, NULL, NULL, NULL};
    int n = with_eval ? 2 : 1;
    if (extra1) sets[n++] = extra1;
    if (extra2) sets[n++] = extra2;
    env_test_config(&cfg, sets);
    memset(err, 0, sizeof *err);
    return env_create("jsonl", &cfg.env, 3, err);
}

static void expect_load_error(const char *text, const char *extra, const char *const *fragments) {
    write_file(g_train, text);
    ErrorBuf err;
    Env *env = load(extra, NULL, 0, &err);
    assert_null(env);
    for (int i = 0; fragments[i]; i++) {
        if (!strstr(err.msg, fragments[i])) {
            print_error("message \"%s\" lacks \"%s\"\n", err.msg, fragments[i]);
            fail();
        }
    }
}

static void test_load_errors(void **state) {
    char line3[200];
    snprintf(line3, sizeof line3, "%s:3", g_train);
    const char *ok2 = "{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\", \"answer\": \"2\"}\n";
    char text[1024];
#define BAD_LINE3(line, ...)                                        \
    snprintf(text, sizeof text, "%s%s\n", ok2, line);               \
    expect_load_error(text, NULL, (const char *const[]){line3, __VA_ARGS__, NULL})
    BAD_LINE3("{\"prompt\": \"x\", \"answer\": }", "invalid JSON");
    BAD_LINE3("{\"prompt\": \"x\", \"answer\": \"y\"", "invalid JSON");
    BAD_LINE3("[\"x\", \"y\"]", "expected a JSON object");
    BAD_LINE3("{\"prompt\": \"x\"}", "no \"answer\" (or \"completion\")");
    BAD_LINE3("{\"answer\": \"x\"}", "no \"prompt\" (or \"question\")");
    BAD_LINE3("{\"prompt\": 5, \"answer\": \"x\"}", "\"prompt\" must be a non-empty string");
    BAD_LINE3("{\"prompt\": \"\", \"answer\": \"x\"}", "non-empty");
    BAD_LINE3("{\"prompt\": \"a\\u0000b\", \"answer\": \"x\"}", "NUL");
    BAD_LINE3("{\"prompt\": \"x\", \"answer\": \"a\\u0000\"}", "NUL");
    BAD_LINE3("{\"prompt\": \"x\", \"answer\": true}", "\"answer\" must be a string or a number");
    BAD_LINE3("{\"question\": \"x\", \"completion\": [1]}", "\"completion\" must be a string or a number");
    BAD_LINE3("not json at all", "invalid JSON");
#undef BAD_LINE3
    // Too long for env.jsonl.max_line_bytes = 64.
    snprintf(text, sizeof text, "%s{\"prompt\": \"%0100d\", \"answer\": \"1\"}\n", ok2, 7);
    expect_load_error(text, "env.jsonl.max_line_bytes=64",
                      (const char *const[]){line3, "longer than env.jsonl.max_line_bytes = 64", NULL});
    // Numeric matching needs a number in every answer.
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"answer\": \"many\"}\n", ok2);
    expect_load_error(text, "env.jsonl.match=numeric", (const char *const[]){line3, "holds no number", NULL});
    // ... and one number only: the output's last number would be compared with the 4 of 3/4.
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"answer\": \"3/4\"}\n", ok2);
    expect_load_error(text, "env.jsonl.match=numeric", (const char *const[]){line3, "\"answer\" is \"3/4\", not one number", NULL});
    // Two equal keys: Python's json keeps the last, a first-match lookup the first.
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"answer\": \"1\", \"answer\": \"2\"}\n", ok2);
    expect_load_error(text, NULL, (const char *const[]){line3, "the key \"answer\" appears twice", NULL});
    // Invalid bytes are not JSON strings' business, but a raw control character is.
    snprintf(text, sizeof text, "%s{\"prompt\": \"a\tb\", \"answer\": \"1\"}\n", ok2);
    expect_load_error(text, NULL, (const char *const[]){line3, "control character", NULL});
    // A missing file, and one whose hash split leaves no eval problem.
    unlink(g_train);
    ErrorBuf err;
    assert_null(load(NULL, NULL, 0, &err));
    assert_non_null(strstr(err.msg, "cannot open"));
    assert_non_null(strstr(err.msg, g_train));
    expect_load_error(ok2, "env.jsonl.eval_fraction=0",
                      (const char *const[]){"2 train and 0 eval problems", "env.jsonl.eval_fraction", NULL});
}

static void test_aliases_and_splits(void **state) {
    // 100 lines in several spellings; a blank line and CRLF endings are fine.
    size_t cap = 1 << 16, at = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 100; i++) {
        if (i % 3 == 0) at += (size_t)snprintf(text + at, cap - at, "{\"prompt\": \"q%d\", \"answer\": \"%d\"}\n", i, i);
        else if (i % 3 == 1)
            at += (size_t)snprintf(text + at, cap - at, "{\"question\": \"q%d\", \"completion\": \"%d\"}\r\n", i, i);
        else at += (size_t)snprintf(text + at, cap - at, "\n{\"prompt\": \"q%d\", \"answer\": %d, \"x\": 1}\n", i, i);
    }
    write_file(g_train, text);
    free(text);
    ErrorBuf err;
    Env *env = load("env.jsonl.eval_fraction=0.3", NULL, 0, &err);
    if (!env) {
        print_error("%s\n", err.msg);
        fail();
    }
    // Each split is a permutation of its lines, repeated: find the period and the lines.
    int seen[100] = {0};
    int n_split[2] = {0, 0};
    for (int split = 0; split < 2; split++) {
        for (int i = 0; i < 100; i++) {
            Problem p;
            env_test_problem(env, (EnvSplit)split, (uint64_t)i, &p);
            int q;
            assert_int_equal(sscanf(p.prompt, "q%d", &q), 1);
            assert_int_equal(atoi(p.answer), q);  // answer and prompt stay together
            assert_true(q >= 0 && q < 100);
            assert_true(seen[q] == 0 || seen[q] == split + 1);  // never in both splits
            if (!seen[q]) n_split[split]++;
            seen[q] = split + 1;
            assert_int_equal(env_test_score(env, &p, p.answer), 1.0);
            problem_free(&p);
        }
    }
    assert_int_equal(n_split[0] + n_split[1], 100);
    assert_true(n_split[1] >= 15 && n_split[1] <= 45);  // about 30 % held out
    // Indices wrap around with the split's size.
    for (int split = 0; split < 2; split++) {
        for (int i = 0; i < 5; i++) {
            Problem a, b;
            env_test_problem(env, (EnvSplit)split, (uint64_t)i, &a);
            env_test_problem(env, (EnvSplit)split, (uint64_t)(i + n_split[split]), &b);
            assert_string_equal(a.prompt, b.prompt);
            problem_free(&a);
            problem_free(&b);
        }
    }
    env_destroy(env);
}

static void test_eval_file(void **state) {
    write_file(g_train, "{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\", \"answer\": \"2\"}\n"
                        "{\"prompt\": \"c\", \"answer\": \"3\"}\n");
    write_file(g_eval, "{\"prompt\": \"b\", \"answer\": \"2\"}\n{\"prompt\": \"z\", \"answer\": \"26\"}\n");
    ErrorBuf err;
    Env *env = load(NULL, NULL, 1, &err);
    assert_non_null(env);
    int train_seen[128] = {0}, eval_seen[128] = {0};
    for (int i = 0; i < 20; i++) {
        Problem p;
        env_test_problem(env, ENV_SPLIT_TRAIN, (uint64_t)i, &p);
        train_seen[(unsigned char)p.prompt[0]] = 1;
        problem_free(&p);
        env_test_problem(env, ENV_SPLIT_EVAL, (uint64_t)i, &p);
        eval_seen[(unsigned char)p.prompt[0]] = 1;
        problem_free(&p);
    }
    assert_true(train_seen['a'] && train_seen['c'] && !train_seen['b'] && !train_seen['z']);  // b is eval's
    assert_true(eval_seen['b'] && eval_seen['z'] && !eval_seen['a']);
    env_destroy(env);
    // An eval file that holds every train prompt leaves nothing to train on.
    write_file(g_eval, "{\"prompt\": \"a\", \"answer\": \"1\"}\n{\"prompt\": \"b\", \"answer\": \"2\"}\n"
                       "{\"prompt\": \"c\", \"answer\": \"3\"}\n");
    assert_null(load(NULL, NULL, 1, &err));
    assert_non_null(strstr(err.msg, "no train problems"));
    // A bad eval file is reported with its own name and line.
    write_file(g_eval, "{\"prompt\": \"z\", \"answer\": \"26\"}\n{oops}\n");
    assert_null(load(NULL, NULL, 1, &err));
    char where[200];
    snprintf(where, sizeof where, "%s:2", g_eval);
    assert_non_null(strstr(err.msg, where));
}

static void test_matching(void **state) {
    write_file(g_train, "{\"prompt\": \"a\", \"answer\": \"42\"}\n");
    write_file(g_eval, "{\"prompt\": \"b\", \"answer\": \"3.5\"}\n");
    ErrorBuf err;
    Env *exact = load(NULL, NULL, 1, &err);
    assert_non_null(exact);
    Problem p = {.prompt = "a", .answer = "42"};
    EnvMetrics m;
    assert_true(env_test_score(exact, &p, "42") == 1.0);
    assert_true(env_test_score(exact, &p, " 42 \n") == 1.0);
    assert_true(env_test_score(exact, &p, "42.") == 0.0);
    assert_true(env_test_score(exact, &p, "it is 42") == 0.0);
    assert_true(env_test_score_bytes(exact, &p, "4\0002", 3, &m) == 0.0);
    assert_true(env_metrics_get(&m, "format_ok", -1) == 0.0);
    env_destroy(exact);

    Env *numeric = load("env.jsonl.match=numeric", "env.jsonl.tolerance=1e-6", 1, &err);
    assert_non_null(numeric);
    Problem q = {.prompt = "b", .answer = "3.5"};
    assert_true(env_test_score(numeric, &q, "The answer is 3.5000001") == 1.0);  // within 1e-6 * 3.5
    assert_true(env_test_score(numeric, &q, "3.50001") == 0.0);
    assert_true(env_test_score(numeric, &q, "3.5 no, 3.6") == 0.0);               // the last number counts
    assert_true(env_test_score(numeric, &q, "35e-1") == 1.0);
    Problem grouped = {.prompt = "e", .answer = "1,234"};
    assert_true(env_test_score(numeric, &grouped, "1234") == 1.0);
    assert_true(env_test_score(numeric, &grouped, "It is 1,234.") == 1.0);
    assert_true(env_test_score(numeric, &grouped, "234") == 0.0);
    assert_true(env_test_score_bytes(numeric, &q, "no number", 9, &m) == 0.0);
    assert_true(env_metrics_get(&m, "format_ok", -1) == 0.0);
    Problem big = {.prompt = "c", .answer = "1e300"};
    assert_true(env_test_score(numeric, &big, "1e999") == 0.0);  // infinite is no number
    Problem zero = {.prompt = "d", .answer = "0"};
    assert_true(env_test_score(numeric, &zero, "0.0000001") == 1.0);  // absolute tolerance near 0
    assert_true(env_test_score(numeric, &zero, "0.01") == 0.0);
    env_destroy(numeric);
}

static void test_number_answers(void **state) {
    write_file(g_train, "{\"prompt\": \"a\", \"answer\": 80}\n{\"prompt\": \"b\", \"answer\": -0.5}\n"
                        "{\"prompt\": \"f\", \"answer\": 2432902008176640000}\n{\"prompt\": \"g\", \"answer\": 8e1}\n");
    write_file(g_eval, "{\"prompt\": \"c\", \"answer\": 1e300}\n");
    ErrorBuf err;
    Env *env = load(NULL, NULL, 1, &err);
    assert_non_null(env);
    int seen = 0;
    for (int i = 0; i < 4; i++) {
        Problem p;
        env_test_problem(env, ENV_SPLIT_TRAIN, (uint64_t)i, &p);
        if (p.prompt[0] == 'a') assert_string_equal(p.answer, "80"), seen |= 1;
        else if (p.prompt[0] == 'b') assert_string_equal(p.answer, "-0.5"), seen |= 2;
        else if (p.prompt[0] == 'f') assert_string_equal(p.answer, "2432902008176640000"), seen |= 4;  // 20!, as written
        else assert_string_equal(p.answer, "80"), seen |= 8;  // 8e1
        problem_free(&p);
    }
    assert_int_equal(seen, 15);
    Problem p;
    env_test_problem(env, ENV_SPLIT_EVAL, 0, &p);
    assert_string_equal(p.answer, "1e+300");
    problem_free(&p);
    env_destroy(env);
}

// problem_count gives each split's size; indices 0 .. count-1 give every line of the split
// once, each with its FILE:LINE (a byte-order mark and blank lines of spaces do not shift them).
static void test_count_and_where(void **state) {
    write_file(g_train, "\xEF\xBB\xBF{\"prompt\": \"q1\", \"answer\": \"1\"}\n  \t \n{\"prompt\": \"q3\", \"answer\": \"3\"}\r\n"
                        "\n{\"prompt\": \"q5\", \"answer\": \"5\"}\n");
    write_file(g_eval, "{\"prompt\": \"q0\", \"answer\": \"0\"}\n");
    ErrorBuf err;
    Env *env = load(NULL, NULL, 1, &err);
    if (!env) {
        print_error("%s\n", err.msg);
        fail();
    }
    assert_non_null(env->problem_count);
    assert_int_equal(env->problem_count(env, ENV_SPLIT_TRAIN), 3);
    assert_int_equal(env->problem_count(env, ENV_SPLIT_EVAL), 1);
    int seen = 0;
    for (int i = 0; i < 3; i++) {
        Problem p;
        env_test_problem(env, ENV_SPLIT_TRAIN, (uint64_t)i, &p);
        const int line = p.prompt[1] - '0';  // q<line>
        seen |= 1 << line;
        char where[200];
        snprintf(where, sizeof where, "%s:%d", g_train, line);
        assert_non_null(p.where);
        assert_string_equal(p.where, where);
        problem_free(&p);
    }
    assert_int_equal(seen, (1 << 1) | (1 << 3) | (1 << 5));
    Problem p;
    env_test_problem(env, ENV_SPLIT_EVAL, 0, &p);
    char where[200];
    snprintf(where, sizeof where, "%s:1", g_eval);
    assert_string_equal(p.where, where);
    problem_free(&p);
    env_destroy(env);
    // A directory in place of the file is named as one.
    char set[200];
    snprintf(set, sizeof set, "env.jsonl.path=%s", "/tmp");
    Config cfg;
    env_test_config(&cfg, (const char *const[]){set, NULL});
    assert_null(env_create("jsonl", &cfg.env, 3, &err));
    assert_non_null(strstr(err.msg, "/tmp is a directory, not a file"));
}

static void test_example_dataset(void **state) {
    Env *env = env_test_make("jsonl", (const char *const[]){"env.jsonl.path=inputs/data/qa.jsonl",
                                                            "env.jsonl.match=numeric", NULL}, 1);
    for (int i = 0; i < 200; i++) {
        Problem p;
        env_test_problem(env, i % 2 ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN, (uint64_t)i, &p);
        assert_true(env_test_score(env, &p, p.answer) == 1.0);
        problem_free(&p);
    }
    env_destroy(env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors), cmocka_unit_test(test_aliases_and_splits),
        cmocka_unit_test(test_eval_file),   cmocka_unit_test(test_matching),
        cmocka_unit_test(test_number_answers),      cmocka_unit_test(test_example_dataset),
        cmocka_unit_test(test_count_and_where),
    };
    return cmocka_run_group_tests_name("env_jsonl", tests, setup, teardown);
}
