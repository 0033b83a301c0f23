// The `code` environment: JSONL loading errors, program extraction, output comparison,
// rewards for right / partly right / wrong / garbage completions (blocking and asynchronous),
// and the committed problem set: every reference solution passes all of its tests.
#include "common/test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "env/code.h"

#define PYTHON "/usr/bin/python3"
#define PROBLEMS "inputs/data/code_problems.jsonl"

static char g_dir[256];

static int have_python(void) {
    if (access(PYTHON, X_OK) == 0) return 1;
    printf("# %s is missing (make deps installs Debian's python3): skipping\n", PYTHON);
    return 0;
}

static const char *write_file(const char *name, const char *text) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static Config *make_config(const char *path) {
    static Config cfg;
    config_defaults(&cfg);
    snprintf(cfg.env.code.path, sizeof cfg.env.code.path, "%s", path);
    snprintf(cfg.env.code.tmp_dir, sizeof cfg.env.code.tmp_dir, "%s", g_dir);
    cfg.env.code.timeout_s = 1.0;
    cfg.env.code.max_parallel = 4;
    cfg.env.code.uid_base = 0;  // automatic
    return &cfg;
}

static void free_problem(Problem *p) {
    free(p->prompt);
    free(p->answer);
    free(p->info);
    memset(p, 0, sizeof *p);
}

static void expect_load_error(const char *name, const char *text, const char *needle) {
    const char *path = write_file(name, text);
    ErrorBuf err;
    Config *cfg = make_config(path);
    snprintf(cfg->env.code.interpreter, sizeof cfg->env.code.interpreter, "/bin/sh");  // loading needs no python
    Env *env = env_code_create(&cfg->env, 1, &err);
    if (env) env->destroy(env);
    assert_null(env);
    if (!strstr(err.msg, needle)) print_error("message \"%s\" lacks \"%s\"\n", err.msg, needle);
    assert_non_null(strstr(err.msg, needle));
}

static void test_load_errors(void **state) {
    const char *ok = "{\"prompt\": \"p\", \"tests\": [{\"input\": \"\", \"output\": \"1\"}], \"split\": \"eval\"}\n";
    char text[1024];
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"tests\": [}\n", ok);
    expect_load_error("bad_json.jsonl", text, "bad_json.jsonl:2:");
    snprintf(text, sizeof text, "%s\n\n[1, 2]\n", ok);
    expect_load_error("not_object.jsonl", text, "not_object.jsonl:4: expected a JSON object");
    snprintf(text, sizeof text, "%s{\"tests\": [{\"input\": \"\", \"output\": \"\"}]}\n", ok);
    expect_load_error("no_prompt.jsonl", text, "no_prompt.jsonl:2: \"prompt\" must be");
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"tests\": []}\n", ok);
    expect_load_error("no_tests.jsonl", text, "no_tests.jsonl:2: \"tests\" must be an array of 1 to 64");
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"tests\": [{\"input\": \"1\"}]}\n", ok);
    expect_load_error("no_output.jsonl", text, "no_output.jsonl:2: test 1 must be an object");
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"tests\": [{\"input\": \"\", \"output\": \"\"}], \"split\": \"dev\"}\n", ok);
    expect_load_error("bad_split.jsonl", text, "bad_split.jsonl:2: \"split\" must be");
    snprintf(text, sizeof text, "%s{\"prompt\": \"x\", \"tests\": [{\"input\": \"\", \"output\": \"\"}], \"reference\": 5}\n", ok);
    expect_load_error("bad_ref.jsonl", text, "bad_ref.jsonl:2: \"reference\" must be");
    snprintf(text, sizeof text, "%s{\"prompt\": \"\", \"tests\": [{\"input\": \"\", \"output\": \"\"}]}\n", ok);
    expect_load_error("empty_prompt.jsonl", text, "empty_prompt.jsonl:2: \"prompt\" must be a non-empty");
    expect_load_error("empty.jsonl", "\n  \n", "holds no problems");
    expect_load_error("only_eval.jsonl", ok, "has 0 train and 1 eval problems");
    ErrorBuf err;
    char missing[300];
    snprintf(missing, sizeof missing, "%s/missing.jsonl", g_dir);
    Config *cfg = make_config(missing);
    snprintf(cfg->env.code.interpreter, sizeof cfg->env.code.interpreter, "/bin/sh");
    assert_null(env_code_create(&cfg->env, 1, &err));
    assert_non_null(strstr(err.msg, "env.code.path: cannot open"));
    assert_non_null(strstr(err.msg, "missing.jsonl"));
    cfg = make_config(g_dir);  // a directory
    snprintf(cfg->env.code.interpreter, sizeof cfg->env.code.interpreter, "/bin/sh");
    assert_null(env_code_create(&cfg->env, 1, &err));
    assert_non_null(strstr(err.msg, "is a directory, not a file"));
    cfg = make_config(PROBLEMS);  // a bad interpreter is found at creation, not at the first score
    snprintf(cfg->env.code.interpreter, sizeof cfg->env.code.interpreter, "/no/such/python3");
    assert_null(env_code_create(&cfg->env, 1, &err));
    assert_non_null(strstr(err.msg, "not executable"));
}

static void check_extract(const char *text, const char *want, int fenced) {
    const char *p;
    size_t n;
    assert_int_equal(code_extract_program(text, strlen(text), &p, &n), fenced);
    if (n != strlen(want) || memcmp(p, want, n) != 0) print_error("extracted \"%.*s\", want \"%s\"\n", (int)n, p, want);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(p, want, n);
}

static void test_extract_and_compare(void **state) {
    check_extract("Here:\n```python\nprint(1)\n```\nDone.", "print(1)\n", 1);
    check_extract("```\nx = 1\nprint(x)\n```", "x = 1\nprint(x)\n", 1);
    check_extract("```py\nfirst\n```\n```python\nsecond\n```", "first\n", 1);
    check_extract("print(2)\n", "print(2)\n", 0);
    check_extract("```python\nprint('no closing fence')\n", "print('no closing fence')\n", 1);
    check_extract("inline ```print(3)``` here", "print(3)", 1);
    check_extract("s = '```'\n", "", 1);  // a fence opens a block (info string "'"): garbage in, garbage out
    check_extract("```python\nprint('a ``` inside')\n```\n", "print('a ``` inside')\n", 1);
    check_extract("```", "", 1);
    check_extract("", "", 0);

#define MATCH(a, b) code_output_matches((a), strlen(a), (b), strlen(b))
    assert_true(MATCH("3\n", "3\n"));
    assert_true(MATCH("3", "3\n"));
    assert_true(MATCH("1 2  \r\n3\t\n\n\n", "1 2\n3\n"));
    assert_true(MATCH("", "\n"));
    assert_false(MATCH("3\n", "4\n"));
    assert_false(MATCH(" 3\n", "3\n"));         // leading space matters
    assert_false(MATCH("1\n\n2\n", "1\n2\n"));  // inner blank lines matter
    assert_false(MATCH("1\n2\n", "1\n"));
    assert_false(MATCH("1\n", "1\n2\n"));
    assert_false(code_output_matches("3\0", 2, "3", 1));  // a NUL is not whitespace
    assert_false(code_output_matches(NULL, 0, "1\n", 2));
#undef MATCH
}

// A two-problem file: "add" (train, 4 tests) and "echo" (eval).
static Env *small_env(double timeout_s) {
    const char *path = write_file("small.jsonl",
        "{\"prompt\": \"Print a + b.\", \"tests\": ["
        "{\"input\": \"1 2\\n\", \"output\": \"3\\n\"}, {\"input\": \"5 5\\n\", \"output\": \"10\\n\"}, "
        "{\"input\": \"-4 1\\n\", \"output\": \"-3\\n\"}, {\"input\": \"-10 -10\\n\", \"output\": \"-20\\n\"}], "
        "\"reference\": \"a, b = map(int, input().split())\\nprint(a + b)\\n\", \"split\": \"train\"}\n"
        "\n"
        "{\"prompt\": \"Echo the line.\", \"tests\": [{\"input\": \"hi\\n\", \"output\": \"hi\\n\"}], "
        "\"split\": \"eval\"}\n");
    Config *cfg = make_config(path);
    cfg->env.code.timeout_s = timeout_s;
    ErrorBuf err;
    Env *env = env_code_create(&cfg->env, 7, &err);
    if (!env) print_error("%s\n", err.msg);
    assert_non_null(env);
    return env;
}

static double metric(const EnvMetrics *m, const char *name) {
    for (int i = 0; i < m->count; i++)
        if (strcmp(m->names[i], name) == 0) return m->values[i];
    print_error("no metric %s\n", name);
    fail();
    return 0;
}

static double score_text(Env *env, const Problem *p, const char *text, size_t len, EnvMetrics *m) {
    Turn turn = {TURN_MODEL, text, len};
    Transcript t = {&turn, 1};
    memset(m, 0, sizeof *m);
    return env->score(env, p, &t, m);
}

static void test_rewards(void **state) {
    if (!have_python()) skip();
    Env *env = small_env(1.0);
    assert_int_equal(env->problem_count(env, ENV_SPLIT_TRAIN), 1);
    assert_int_equal(env->problem_count(env, ENV_SPLIT_EVAL), 1);
    Problem p;
    ErrorBuf err;
    assert_int_equal(env->problem(env, ENV_SPLIT_TRAIN, 5, &p, &err), 0);  // indices wrap around
    assert_non_null(p.where);
    assert_non_null(strstr(p.where, ".jsonl:"));  // FILE:LINE of the problem
    assert_non_null(strstr(p.prompt, "Print a + b."));
    assert_non_null(strstr(p.prompt, "```python"));
    assert_string_equal(p.answer, "```python\na, b = map(int, input().split())\nprint(a + b)\n```");
    EnvMetrics m;
    struct { const char *name, *text; double reward; } cases[] = {
        {"right", "Sure:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\n", 1.0},
        {"right, no fence", "a, b = map(int, input().split())\nprint(a + b)\n", 1.0},
        {"trailing spaces", "```python\nprint(sum(map(int, input().split())), '  ')\n```", 1.0},
        {"half", "```python\na, b = map(int, input().split())\nprint(a + b if a > 0 else 0)\n```", 0.5},
        {"wrong", "```python\nprint(42)\n```", 0.0},
        {"crash after output", "```python\nprint(sum(map(int, input().split())))\nraise ValueError\n```", 0.0},
        {"syntax", "```python\nprint(1 +\n```", 0.0},
        {"prose", "I think the answer is to add the two numbers.", 0.0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double r = score_text(env, &p, cases[i].text, strlen(cases[i].text), &m);
        printf("# %-20s reward %.2f passed %.0f syntax %.0f crashes %.0f fenced %.0f run %.1f ms\n", cases[i].name, r,
               metric(&m, "tests_passed"), metric(&m, "syntax_error"), metric(&m, "crashes"), metric(&m, "fenced"),
               metric(&m, "run_ms"));
        assert_true(fabs(r - cases[i].reward) < 1e-9);
        assert_int_equal(m.count, 8);
        for (int k = 0; k < m.count; k++) assert_string_equal(m.names[k], env->metric_names[k]);  // fixed columns
        assert_null(env->metric_names[m.count]);
        assert_true(metric(&m, "tests_total") == 4);
        assert_true(metric(&m, "sandbox_errors") == 0);
    }
    score_text(env, &p, cases[6].text, strlen(cases[6].text), &m);
    assert_true(metric(&m, "syntax_error") == 1);
    score_text(env, &p, cases[1].text, strlen(cases[1].text), &m);
    assert_true(metric(&m, "fenced") == 0);

    // Garbage never runs or crashes anything: empty, blank, binary, huge.
    char binary[512];
    for (size_t i = 0; i < sizeof binary; i++) binary[i] = (char)(i * 131 + 7);
    assert_true(score_text(env, &p, "", 0, &m) == 0);
    assert_true(metric(&m, "tests_total") == 4 && metric(&m, "run_ms") == 0);
    assert_true(score_text(env, &p, " \n\t\n", 4, &m) == 0);
    assert_true(score_text(env, &p, binary, sizeof binary, &m) == 0);
    assert_true(score_text(env, &p, "```python\n\xff\xfe\x00print(3)\n```", 24, &m) == 0);
    size_t huge = ENV_MAX_OUTPUT_BYTES + 1;
    char *big = malloc(huge);
    memset(big, '#', huge);
    assert_true(score_text(env, &p, big, huge, &m) == 0);
    assert_true(metric(&m, "run_ms") == 0);  // not run at all
    free(big);
    Transcript none = {NULL, 0};
    memset(&m, 0, sizeof m);
    assert_true(env->score(env, &p, &none, &m) == 0);
    // A Problem this environment did not make scores 0.
    Problem forged = p;
    forged.id ^= 1;
    assert_true(score_text(env, &forged, cases[0].text, strlen(cases[0].text), &m) == 0);
    forged = p;
    forged.info = "999";
    assert_true(score_text(env, &forged, cases[0].text, strlen(cases[0].text), &m) == 0);
    free_problem(&p);
    env->destroy(env);
}

static void test_timeouts_and_async(void **state) {
    if (!have_python()) skip();
    Env *env = small_env(0.5);
    Problem p;
    ErrorBuf err;
    assert_int_equal(env->problem(env, ENV_SPLIT_TRAIN, 0, &p, &err), 0);
    const char *texts[] = {
        "```python\nwhile True:\n    pass\n```",
        "```python\na, b = map(int, input().split())\nprint(a + b)\n```",
        "```python\nprint(0)\n```",
        "",
    };
    double want[] = {0, 1, 0, 0};
    Turn turns[4];
    Transcript ts[4];
    int tickets[4];
    double t0 = sandbox_now();
    for (int i = 0; i < 4; i++) {
        turns[i] = (Turn){TURN_MODEL, texts[i], strlen(texts[i])};
        ts[i] = (Transcript){&turns[i], 1};
        tickets[i] = env->score_begin(env, &p, &ts[i]);
        assert_true(tickets[i] >= 0);
    }
    assert_true(sandbox_now() - t0 < 0.1);  // begin never waits for the programs
    int left = 4, polls = 0;
    double rewards[4];
    EnvMetrics ms[4];
    int done[4] = {0};
    while (left > 0) {
        for (int i = 0; i < 4; i++) {
            if (done[i]) continue;
            memset(&ms[i], 0, sizeof ms[i]);
            int rc = env->score_poll(env, tickets[i], &rewards[i], &ms[i]);
            assert_true(rc == 0 || rc == 1);
            if (rc == 1) done[i] = 1, left--;
        }
        polls++;
        usleep(10000);
        assert_true(sandbox_now() - t0 < 10);
    }
    printf("# 4 completions x 4 tests scored asynchronously in %.2f s (%d polls)\n", sandbox_now() - t0, polls);
    for (int i = 0; i < 4; i++) assert_true(rewards[i] == want[i]);
    assert_true(metric(&ms[0], "timeouts") == 4);
    assert_true(metric(&ms[1], "tests_passed") == 4);
    assert_int_equal(env->score_poll(env, tickets[1], &rewards[0], NULL), -1);  // already collected
    SandboxPoolStats s;
    code_env_pool_stats(env, &s);
    assert_int_equal(s.runs, 12);
    assert_int_equal(s.timeouts, 4);
    free_problem(&p);
    env->destroy(env);
}

// Another interpreter: the prompt names it, the program file has no .py, and it runs.
static void test_shell_interpreter(void **state) {
    const char *path = write_file("shell.jsonl",
        "{\"prompt\": \"Echo the line.\", \"tests\": [{\"input\": \"hi there\\n\", \"output\": \"hi there\\n\"}], "
        "\"reference\": \"read x\\necho \\\"$x\\\"\\n\", \"split\": \"train\"}\n"
        "{\"prompt\": \"Print 1.\", \"tests\": [{\"input\": \"\", \"output\": \"1\\n\"}], \"split\": \"eval\"}\n");
    Config *cfg = make_config(path);
    snprintf(cfg->env.code.interpreter, sizeof cfg->env.code.interpreter, "/bin/sh");
    ErrorBuf err;
    Env *env = env_code_create(&cfg->env, 1, &err);
    if (!env) print_error("%s\n", err.msg);
    assert_non_null(env);
    Problem p;
    assert_int_equal(env->problem(env, ENV_SPLIT_TRAIN, 0, &p, &err), 0);
    assert_non_null(strstr(p.prompt, "Write a sh program"));
    assert_non_null(strstr(p.prompt, "```sh code block"));
    assert_string_equal(p.answer, "```sh\nread x\necho \"$x\"\n```");
    EnvMetrics m;
    assert_true(score_text(env, &p, p.answer, strlen(p.answer), &m) == 1.0);
    assert_true(score_text(env, &p, "```sh\necho nope\n```", 20, &m) == 0.0);
    free_problem(&p);
    env->destroy(env);
}

// The committed problem set: both splits non-empty, problems deterministic, and every
// reference answer (exactly as SFT would train on it) scores 1.
static void test_problem_set(void **state) {
    if (!have_python()) skip();
    Config *cfg = make_config(PROBLEMS);
    cfg->env.code.timeout_s = 5.0;
    ErrorBuf err;
    Env *env = env_code_create(&cfg->env, 3, &err);
    if (!env) print_error("%s\n", err.msg);
    assert_non_null(env);
    int n_train = env->problem_count(env, ENV_SPLIT_TRAIN), n_eval = env->problem_count(env, ENV_SPLIT_EVAL);
    printf("# %s: %d train, %d eval problems\n", PROBLEMS, n_train, n_eval);
    assert_true(n_train >= 20 && n_eval >= 1);
    enum { MAX = 64 };
    Problem ps[MAX];
    Turn turns[MAX];
    Transcript ts[MAX];
    int tickets[MAX], n = 0;
    double t0 = sandbox_now();
    for (int split = 0; split < 2; split++) {
        int count = split ? n_eval : n_train;
        for (int i = 0; i < count && n < MAX; i++, n++) {
            assert_int_equal(env->problem(env, (EnvSplit)split, (uint64_t)i, &ps[n], &err), 0);
            assert_non_null(ps[n].answer);
            Problem again;
            assert_int_equal(env->problem(env, (EnvSplit)split, (uint64_t)(i + count), &again, &err), 0);
            assert_string_equal(again.prompt, ps[n].prompt);  // wraps around to the same problem
            free_problem(&again);
            turns[n] = (Turn){TURN_MODEL, ps[n].answer, strlen(ps[n].answer)};
            ts[n] = (Transcript){&turns[n], 1};
            tickets[n] = env->score_begin(env, &ps[n], &ts[n]);
        }
    }
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) assert_true(ps[i].id != ps[j].id);  // splits are disjoint
    for (int i = 0; i < n; i++) {
        double reward = -1;
        EnvMetrics m = {0};
        while (env->score_poll(env, tickets[i], &reward, &m) == 0) usleep(5000);
        if (reward != 1.0) print_error("problem %s: the reference scores %.2f\n", ps[i].info, reward);
        assert_true(reward == 1.0);
        free_problem(&ps[i]);
    }
    SandboxPoolStats s;
    code_env_pool_stats(env, &s);
    printf("# %ld reference runs in %.2f s with 4 sandboxes: mean %.1f ms, max %.1f ms per run\n", s.runs,
           sandbox_now() - t0, 1e3 * s.wall_sum_s / (double)s.runs, 1e3 * s.wall_max_s);
    assert_int_equal(s.ok, s.runs);
    env->destroy(env);

    // Another seed orders the train split differently but holds the same problems.
    Env *other = env_code_create(&cfg->env, 4, &err);
    assert_non_null(other);
    assert_int_equal(other->problem_count(other, ENV_SPLIT_TRAIN), n_train);
    other->destroy(other);
}

static int group_setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/asyncrl-codetest-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    chmod(g_dir, 0755);
    return 0;
}

static int group_teardown(void **state) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_extract_and_compare),
        cmocka_unit_test(test_rewards),
        cmocka_unit_test(test_timeouts_and_async),
        cmocka_unit_test(test_shell_interpreter),
        cmocka_unit_test(test_problem_set),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
