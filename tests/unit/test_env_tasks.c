// Every built-in environment: determinism from (seed, split, index), disjoint train and eval
// splits, reference answers that score 1, garbage that scores 0 without a crash, the
// verifiers' rewards on right and wrong answers (checked against values worked out by hand),
// and full multi-turn episodes played through respond().
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "test_env_util.h"

static const char *const JSONL_SETS[] = {"env.jsonl.path=inputs/data/qa.jsonl", NULL};

typedef struct {
    const char *name;
    const char *const *sets;
} EnvCase;

static const EnvCase ALL[] = {
    {"reverse", NULL}, {"arithmetic", NULL}, {"sorting", NULL}, {"countdown", NULL},
    {"guess", NULL},   {"tool", NULL},       {"stories", NULL}, {"jsonl", JSONL_SETS},
};
#define N_ALL ((int)(sizeof ALL / sizeof ALL[0]))

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && strcmp(a, b) == 0); }

static int same_problem(const Problem *a, const Problem *b) {
    return a->id == b->id && same_str(a->prompt, b->prompt) && same_str(a->answer, b->answer) &&
           same_str(a->info, b->info) && a->n_answer_turns == b->n_answer_turns;
}

// ---------------------------------------------------------------------------------------------
// Properties every environment has

// Every registered environment is covered here, except "code" (tests/unit/test_code_env.c).
static void test_registry_covers_all(void **state) {
    assert_int_equal(env_registry_count(), N_ALL + 1);
    assert_true(env_known("code"));
    for (int i = 0; i < N_ALL; i++) assert_true(env_known(ALL[i].name));
}

static void test_determinism(void **state) {
    for (int e = 0; e < N_ALL; e++) {
        Env *a = env_test_make(ALL[e].name, ALL[e].sets, 42);
        Env *b = env_test_make(ALL[e].name, ALL[e].sets, 42);
        Env *other = env_test_make(ALL[e].name, ALL[e].sets, 43);
        for (int split = 0; split < 2; split++) {
            int differ = 0;
            for (int i = 199; i >= 0; i--) {  // b asks in the opposite order: no hidden state
                Problem pa, pb, pa2, po;
                env_test_problem(a, (EnvSplit)split, (uint64_t)(199 - i), &pa);
                env_test_problem(b, (EnvSplit)split, (uint64_t)(199 - i), &pb);
                env_test_problem(a, (EnvSplit)split, (uint64_t)(199 - i), &pa2);
                env_test_problem(other, (EnvSplit)split, (uint64_t)(199 - i), &po);
                assert_true(same_problem(&pa, &pb));
                assert_true(same_problem(&pa, &pa2));
                differ += !same_problem(&pa, &po);
                problem_free(&pa);
                problem_free(&pb);
                problem_free(&pa2);
                problem_free(&po);
            }
            if (differ < 100) {
                print_error("%s: only %d of 200 problems change with the seed\n", ALL[e].name, differ);
                fail();
            }
        }
        env_destroy(a);
        env_destroy(b);
        env_destroy(other);
    }
}

// What defines a problem for its verifier.
static char *problem_key(const Problem *p) {
    size_t n = strlen(p->prompt) + (p->info ? strlen(p->info) : 0) + 2;
    char *k = malloc(n);
    snprintf(k, n, "%s\x1f%s", p->prompt, p->info ? p->info : "");
    return k;
}

static int compare_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_splits_disjoint(void **state) {
    enum { N_TRAIN = 3000, N_EVAL = 1000 };
    for (int e = 0; e < N_ALL; e++) {
        Env *env = env_test_make(ALL[e].name, ALL[e].sets, 7);
        char **train = malloc(sizeof(char *) * N_TRAIN);
        for (int i = 0; i < N_TRAIN; i++) {
            Problem p;
            env_test_problem(env, ENV_SPLIT_TRAIN, (uint64_t)i, &p);
            train[i] = problem_key(&p);
            problem_free(&p);
        }
        qsort(train, N_TRAIN, sizeof(char *), compare_str);
        int distinct_eval = 0;
        char *prev = NULL;
        char **eval = malloc(sizeof(char *) * N_EVAL);
        for (int i = 0; i < N_EVAL; i++) {
            Problem p;
            env_test_problem(env, ENV_SPLIT_EVAL, (uint64_t)i, &p);
            eval[i] = problem_key(&p);
            if (bsearch(&eval[i], train, N_TRAIN, sizeof(char *), compare_str)) {
                print_error("%s: eval problem %d is also a train problem: %s\n", ALL[e].name, i, eval[i]);
                fail();
            }
            problem_free(&p);
        }
        qsort(eval, N_EVAL, sizeof(char *), compare_str);
        for (int i = 0; i < N_EVAL; i++) {
            distinct_eval += !prev || strcmp(prev, eval[i]) != 0;
            prev = eval[i];
        }
        assert_true(distinct_eval >= 2);  // guess has only ~3 of its 32 secrets held out
        for (int i = 0; i < N_TRAIN; i++) free(train[i]);
        for (int i = 0; i < N_EVAL; i++) free(eval[i]);
        free(train);
        free(eval);
        env_destroy(env);
    }
}

// Plays a multi-turn problem's reference conversation through respond(): every environment
// turn respond() writes must equal the reference's, and the episode must end after the last
// model turn. Returns the reward of the finished transcript.
static double play_reference(Env *env, const Problem *p) {
    assert_true(p->n_answer_turns >= 1);
    assert_int_equal(p->answer_turns[p->n_answer_turns - 1].role, TURN_MODEL);
    Turn *turns = calloc((size_t)p->n_answer_turns, sizeof(Turn));
    char **replies = calloc((size_t)p->n_answer_turns, sizeof(char *));
    int n = 0;
    for (int i = 0; i < p->n_answer_turns; i++) {
        const Turn *ref = &p->answer_turns[i];
        if (ref->role == TURN_ENV) continue;  // written by respond below
        turns[n++] = *ref;
        Transcript t = {turns, n};
        char *reply = NULL;
        size_t len = 0;
        int more = env->respond(env, p, &t, &reply, &len);
        int last = i == p->n_answer_turns - 1;
        assert_int_equal(more, !last);
        if (more) {
            const Turn *want = &p->answer_turns[i + 1];
            assert_int_equal(want->role, TURN_ENV);
            assert_int_equal(len, want->len);
            assert_memory_equal(reply, want->text, len);
            replies[n] = reply;
            turns[n++] = (Turn){TURN_ENV, reply, len};
        } else {
            assert_null(reply);
        }
    }
    Transcript t = {turns, n};
    EnvMetrics m = {0};
    double r = env->score(env, p, &t, &m);
    for (int i = 0; i < n; i++) free(replies[i]);
    free(replies);
    free(turns);
    return r;
}

static void test_reference_scores_one(void **state) {
    for (int e = 0; e < N_ALL; e++) {
        Env *env = env_test_make(ALL[e].name, ALL[e].sets, 11);
        for (int split = 0; split < 2; split++) {
            for (int i = 0; i < 600; i++) {
                Problem p;
                env_test_problem(env, (EnvSplit)split, (uint64_t)i, &p);
                double r;
                if (env->respond) {
                    r = play_reference(env, &p);
                    // The concatenated answer is the reference conversation's text.
                    size_t total = 0;
                    for (int k = 0; k < p.n_answer_turns; k++) total += p.answer_turns[k].len;
                    assert_int_equal(total, strlen(p.answer));
                } else {
                    assert_int_equal(p.n_answer_turns, 0);
                    r = env_test_score(env, &p, p.answer);
                }
                if (r != 1.0) {
                    print_error("%s %s %d: reference \"%s\" for \"%s\" scores %g\n", ALL[e].name,
                                split ? "eval" : "train", i, p.answer, p.prompt, r);
                    fail();
                }
                problem_free(&p);
            }
        }
        env_destroy(env);
    }
}

// Garbage outputs built around a problem's reference answer; each must score 0.
typedef struct {
    const char *what;
    char *text;
    size_t len;
} Garbage;

static int make_garbage(const Problem *p, Garbage *g) {
    int n = 0;
    const char *ans = p->n_answer_turns ? p->answer_turns[p->n_answer_turns - 1].text : p->answer;
    size_t alen = p->n_answer_turns ? p->answer_turns[p->n_answer_turns - 1].len : strlen(p->answer);
    g[n++] = (Garbage){"empty", calloc(1, 1), 0};
    g[n++] = (Garbage){"whitespace", strdup(" \n\t "), 4};
    size_t big = 2u << 20;  // 2 MB
    char *x = malloc(big);
    memset(x, 'x', big);
    g[n++] = (Garbage){"2 MB of x", x, big};
    char *rep = malloc(big);
    for (size_t i = 0; i < big; i++) rep[i] = i % (alen + 1) == alen ? ' ' : ans[i % (alen + 1)];
    g[n++] = (Garbage){"2 MB of the answer repeated", rep, big};
    size_t n_rep = 60 * (alen + 1);
    char *runaway = malloc(n_rep);
    memcpy(runaway, rep, n_rep);
    g[n++] = (Garbage){"the answer 60 times", runaway, n_rep};
    Rng rng;
    rng_seed(&rng, 99);
    char *bytes = malloc(4096);
    for (int i = 0; i < 4096; i++) bytes[i] = (char)rng_below(&rng, 256);
    bytes[17] = '\0';
    bytes[18] = (char)0xff;
    g[n++] = (Garbage){"random bytes", bytes, 4096};
    char *nul = malloc(2 * alen + 1);
    memcpy(nul, ans, alen);
    nul[alen] = '\0';
    memcpy(nul + alen + 1, ans, alen);
    g[n++] = (Garbage){"answer, NUL, answer", nul, 2 * alen + 1};
    char *bad = malloc(alen + 2);
    memcpy(bad, ans, alen);
    bad[alen] = (char)0xc0;
    bad[alen + 1] = (char)0xaf;
    g[n++] = (Garbage){"answer then an overlong UTF-8 sequence", bad, alen + 2};
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 1);
    memset(deep, '(', depth);
    deep[depth] = '1';
    memset(deep + depth + 1, ')', depth);
    g[n++] = (Garbage){"100000 nested parentheses", deep, 2 * depth + 1};
    g[n++] = (Garbage){"a huge number", strdup("999999999999999999999999999999999999"), 36};
    g[n++] = (Garbage){"a huge negative number", strdup("-99999999999999999999999"), 24};
    char *aaa = malloc(5000);
    memset(aaa, 'a', 5000);
    g[n++] = (Garbage){"5000 x a", aaa, 5000};
    return n;
}

static void test_garbage_scores_zero(void **state) {
    for (int e = 0; e < N_ALL; e++) {
        Env *env = env_test_make(ALL[e].name, ALL[e].sets, 5);
        for (int i = 0; i < 4; i++) {
            Problem p;
            env_test_problem(env, i % 2 ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN, (uint64_t)i, &p);
            Garbage g[16];
            int n = make_garbage(&p, g);
            for (int k = 0; k < n; k++) {
                double r = env_test_score_bytes(env, &p, g[k].text, g[k].len, NULL);
                if (r != 0.0) {
                    print_error("%s: garbage \"%s\" scores %g\n", ALL[e].name, g[k].what, r);
                    fail();
                }
                if (env->respond) {  // and the environment answers it without trouble
                    Turn turn = {TURN_MODEL, g[k].text, g[k].len};
                    Transcript t = {&turn, 1};
                    char *reply = NULL;
                    size_t len = 0;
                    int more = env->respond(env, &p, &t, &reply, &len);
                    assert_true(more == 0 || (more == 1 && reply && len == strlen(reply) && len < 256));
                    free(reply);
                }
                free(g[k].text);
            }
            problem_free(&p);
        }
        env_destroy(env);
    }
}

static void test_degenerate_transcripts(void **state) {
    for (int e = 0; e < N_ALL; e++) {
        Env *env = env_test_make(ALL[e].name, ALL[e].sets, 5);
        Problem p;
        env_test_problem(env, ENV_SPLIT_TRAIN, 0, &p);
        Turn env_only = {TURN_ENV, p.answer, strlen(p.answer)};  // the right text, but not the model's
        Transcript cases[] = {{NULL, 0}, {NULL, 3}, {&env_only, 0}, {&env_only, 1}, {&env_only, -1}};
        for (int k = 0; k < 5; k++) {
            assert_true(env->score(env, &p, &cases[k], NULL) == 0.0);
            if (env->respond) {
                char *reply = (char *)1;
                size_t len = 1;
                assert_int_equal(env->respond(env, &p, &cases[k], &reply, &len), 0);
                assert_null(reply);
            }
        }
        assert_true(env->score(env, &p, NULL, NULL) == 0.0);
        problem_free(&p);
        env_destroy(env);
    }
}

static void test_small_problem_spaces(void **state) {
    // One possible problem: it lands in one split, and asking for the other fails cleanly.
    Env *env = env_test_make("arithmetic", (const char *const[]){"env.arithmetic.min_operand=0",
                                                                 "env.arithmetic.max_operand=0",
                                                                 "env.arithmetic.ops=+", NULL}, 1);
    Problem p;
    ErrorBuf err = {{0}};
    int train = env->problem(env, ENV_SPLIT_TRAIN, 0, &p, &err);
    if (train == 0) problem_free(&p);
    int eval = env->problem(env, ENV_SPLIT_EVAL, 0, &p, &err);
    if (eval == 0) problem_free(&p);
    assert_true((train == 0) != (eval == 0));
    assert_non_null(strstr(err.msg, "problem space is too small"));
    assert_non_null(strstr(err.msg, "env.arithmetic"));
    assert_null(p.prompt);
    env_destroy(env);
    // Countdown targets out of reach of the numbers.
    env = env_test_make("countdown", (const char *const[]){"env.countdown.max_number=2", "env.countdown.numbers=2",
                                                           "env.countdown.min_target=500", "env.countdown.max_target=900",
                                                           NULL}, 1);
    assert_int_equal(env->problem(env, ENV_SPLIT_TRAIN, 0, &p, &err), -1);
    assert_non_null(strstr(err.msg, "env.countdown.min_target"));
    env_destroy(env);
    // A reverse alphabet with a space: texts never start or end with it, so trimming is safe.
    env = env_test_make("reverse", (const char *const[]){"env.reverse.alphabet=\"a \"", "env.reverse.min_chars=1",
                                                         NULL}, 1);
    for (int i = 0; i < 300; i++) {
        env_test_problem(env, ENV_SPLIT_TRAIN, (uint64_t)i, &p);
        size_t n = strlen(p.answer);
        assert_true(n >= 1 && p.answer[0] == 'a' && p.answer[n - 1] == 'a');
        assert_true(env_test_score(env, &p, p.answer) == 1.0);
        problem_free(&p);
    }
    env_destroy(env);
}

static void test_metric_names_declared(void **state) {
    for (int e = 0; e < N_ALL; e++) {
        Env *env = env_test_make(ALL[e].name, ALL[e].sets, 5);
        assert_non_null(env->metric_names);
        assert_non_null(env->metric_names[0]);
        int n = 0;
        while (env->metric_names[n]) n++;
        assert_true(n <= ENV_MAX_METRICS);
        assert_string_equal(env->name, ALL[e].name);
        assert_true(env->max_turns >= 1 && (env->respond != NULL) == (env->max_turns > 1));
        env_destroy(env);
    }
}

// ---------------------------------------------------------------------------------------------
// Each verifier on right and wrong answers (problems written by hand, so the expected values
// come from the rules, not from the generator).

static Problem manual(const char *prompt, const char *answer, const char *info) {
    Problem p = {0};
    p.prompt = (char *)prompt;
    p.answer = (char *)answer;
    p.info = (char *)info;
    return p;
}

static void assert_near_at(double got, double want, int line) {
    if (got < want - 1e-12 || got > want + 1e-12) {
        print_error("line %d: got %.15g, want %.15g\n", line, got, want);
        fail();
    }
}
#define assert_near(got, want) assert_near_at((got), (want), __LINE__)

static void test_reverse_verifier(void **state) {
    Env *env = env_test_make("reverse", NULL, 1);
    Problem p = manual("rev abcde=", "edcba", "edcba");
    EnvMetrics m;
    assert_near(env_test_score_bytes(env, &p, "edcba", 5, &m), 1.0);
    assert_near(env_metrics_get(&m, "exact", -1), 1.0);
    assert_near(env_test_score(env, &p, "edcba\n"), 1.0);
    assert_near(env_test_score(env, &p, "edXba"), 0.8);       // LCS 4: 2*4 / (5+5)
    assert_near(env_test_score(env, &p, "abcde"), 0.2);       // LCS 1: 2*1 / 10
    assert_near(env_test_score(env, &p, "ed"), 4.0 / 7.0);    // LCS 2: 2*2 / (2+5)
    assert_near(env_test_score(env, &p, "xedcbax"), 10.0 / 12.0);
    assert_near(env_test_score_bytes(env, &p, "edcbX", 5, &m), 0.8);
    assert_near(env_metrics_get(&m, "exact", -1), 0.0);
    assert_near(env_metrics_get(&m, "format_ok", -1), 1.0);
    // Longer than 4 * 5 + 16 = 36 bytes: 0.
    assert_near(env_test_score(env, &p, "edcbaedcbaedcbaedcbaedcbaedcbaedcbaed"), 0.0);
    assert_true(env_test_score(env, &p, "edcbaedcbaedcbaedcbaedcbaedcbaedcbae") > 0);  // 36 bytes
    env_destroy(env);
}

static void test_arithmetic_verifier(void **state) {
    Env *env = env_test_make("arithmetic", NULL, 1);
    Problem p = manual("12+7=", "19", "19");
    EnvMetrics m;
    assert_near(env_test_score_bytes(env, &p, "19", 2, &m), 1.0);
    assert_near(env_metrics_get(&m, "format_ok", -1), 1.0);
    assert_near(env_test_score(env, &p, " 19 \n"), 1.0);
    assert_near(env_test_score_bytes(env, &p, "12+7=19", 7, &m), 1.0);
    assert_near(env_metrics_get(&m, "format_ok", -1), 0.0);
    assert_near(env_test_score(env, &p, "18"), 0.0);
    assert_near(env_test_score(env, &p, "19.5"), 0.0);
    assert_near(env_test_score(env, &p, "19 or 20"), 0.0);
    assert_near(env_test_score(env, &p, "-19"), 0.0);
    Problem neg = manual("3-12=", "-9", "-9");
    assert_near(env_test_score(env, &neg, "-9"), 1.0);
    assert_near(env_test_score(env, &neg, "9"), 0.0);
    // The prompt format: two operands, one operator, "=".
    Problem q;
    env_test_problem(env, ENV_SPLIT_TRAIN, 3, &q);
    long long a, b;
    char op;
    assert_int_equal(sscanf(q.prompt, "%lld%c%lld=", &a, &op, &b), 3);
    long long want = op == '+' ? a + b : op == '-' ? a - b : a * b;
    assert_int_equal(atoll(q.answer), want);
    problem_free(&q);
    env_destroy(env);
}

static void test_sorting_verifier(void **state) {
    Env *env = env_test_make("sorting", NULL, 1);
    Problem p = manual("sort 5 3 9 3=", "3 3 5 9", "3 3 5 9");
    EnvMetrics m;
    assert_near(env_test_score(env, &p, "3 3 5 9"), 1.0);
    assert_near(env_test_score(env, &p, "3,3,5,9\n"), 1.0);
    assert_near(env_test_score(env, &p, "[3, 3, 5, 9]"), 1.0);
    assert_near(env_test_score_bytes(env, &p, "3 5 3 9", 7, &m), 0.25);  // permutation, 2 of 4 in place
    assert_near(env_metrics_get(&m, "permutation", -1), 1.0);
    assert_near(env_metrics_get(&m, "position_acc", -1), 0.5);
    assert_near(env_test_score(env, &p, "9 5 3 3"), 0.0);                  // permutation, none in place
    assert_near(env_test_score_bytes(env, &p, "3 3 5 8", 7, &m), 0.0);   // not the given numbers
    assert_near(env_metrics_get(&m, "position_acc", -1), 0.75);
    assert_near(env_test_score(env, &p, "3 3 5"), 0.0);
    assert_near(env_test_score(env, &p, "3 3 5 9 9"), 0.0);
    assert_near(env_test_score_bytes(env, &p, "3 3 five 9", 10, &m), 0.0);
    assert_near(env_metrics_get(&m, "format_ok", -1), 0.0);
    assert_near(env_test_score(env, &p, "3 3 5 9,"), 0.0);
    assert_near(env_test_score(env, &p, "3 ,, 3 5 9"), 0.0);
    env_destroy(env);
    Env *strict = env_test_make("sorting", (const char *const[]){"env.sorting.partial_credit=false", NULL}, 1);
    assert_near(env_test_score(strict, &p, "3 5 3 9"), 0.0);
    assert_near(env_test_score(strict, &p, "3 3 5 9"), 1.0);
    env_destroy(strict);
}

static void test_countdown_verifier(void **state) {
    Env *env = env_test_make("countdown", NULL, 1);
    Problem p = manual("cd 3 5 2 4>12=", "(3+5)*2-4", "12:3 5 2 4");
    EnvMetrics m;
    assert_near(env_test_score_bytes(env, &p, "(3+5)*2-4", 9, &m), 1.0);
    assert_near(env_metrics_get(&m, "numbers_used", -1), 4.0);
    assert_near(env_test_score(env, &p, " 3 * 4\n"), 1.0);        // not every number is needed
    assert_near(env_test_score(env, &p, "(5-2)*4"), 1.0);
    assert_near(env_test_score_bytes(env, &p, "3+5", 3, &m), 0.0);  // valid, wrong value
    assert_near(env_metrics_get(&m, "format_ok", -1), 1.0);
    assert_near(env_test_score_bytes(env, &p, "5*2+2", 5, &m), 0.0);  // 2 used twice
    assert_near(env_metrics_get(&m, "format_ok", -1), 0.0);
    assert_near(env_test_score(env, &p, "6*2"), 0.0);          // 6 is not given
    assert_near(env_test_score(env, &p, "-3+15"), 0.0);        // no unary minus
    assert_near(env_test_score(env, &p, "12"), 0.0);           // 12 is not given
    assert_near(env_test_score(env, &p, "3*4="), 0.0);         // trailing garbage
    assert_near(env_test_score(env, &p, "3*4 = 12"), 0.0);
    Problem z = manual("cd 2 2 3 4>12=", "3*4", "12:2 2 3 4");
    assert_near(env_test_score(env, &z, "3*4/(2-2)"), 0.0);    // division by zero
    assert_near(env_test_score(env, &z, "3*4*(2/2)"), 1.0);
    Problem frac = manual("cd 1 3 4 6>24=", "6/(1-3/4)", "24:1 3 4 6");
    assert_near(env_test_score(env, &frac, "6/(1-3/4)"), 1.0);  // exact rational intermediate 1/4
    assert_near(env_test_score(env, &frac, "6*4"), 1.0);
    // Generated problems: prompt and info agree, the target is in range and not a given number.
    for (int i = 0; i < 200; i++) {
        Problem q;
        env_test_problem(env, ENV_SPLIT_TRAIN, (uint64_t)i, &q);
        int n[4], target, t2;
        assert_int_equal(sscanf(q.prompt, "cd %d %d %d %d>%d=", &n[0], &n[1], &n[2], &n[3], &target), 5);
        assert_int_equal(sscanf(q.info, "%d:", &t2), 1);
        assert_int_equal(target, t2);
        assert_true(target >= 10 && target <= 100);
        for (int k = 0; k < 4; k++) assert_true(n[k] >= 1 && n[k] <= 10 && n[k] != target);
        problem_free(&q);
    }
    env_destroy(env);
}

static void test_stories_verifier(void **state) {
    Env *env = env_test_make("stories", NULL, 1);
    Problem p = manual("Lily had a red ball. She played with it every day.", "", "Lily|ball");
    EnvMetrics m;
    const char *good = " Lily played with the ball in the park all day.";
    assert_near(env_test_score_bytes(env, &p, good, strlen(good), &m), 1.0);
    assert_near(env_metrics_get(&m, "words", -1), 10.0);
    assert_near(env_test_score(env, &p, " Lily's mom gave her two new balls to play with today."), 1.0);
    assert_near(env_test_score(env, &p, " LILY went to the park with her mom and dad."), 0.5);
    assert_near(env_test_score(env, &p, " She went to the park and played with the ball."), 0.5);
    assert_near(env_test_score(env, &p, " She went to the park with her mom and dad."), 0.0);
    assert_near(env_test_score(env, &p, " Lily and the ball."), 0.0);  // under min_words = 8
    assert_near(env_test_score(env, &p, " Lilyanne kicked the football over the fence today."), 0.0);
    assert_near(env_test_score(env, &p, " Lily has a ball. Lily has a ball. Lily has a ball. Lily has a ball. "), 0.0);
    env_destroy(env);
    Env *short_ok = env_test_make("stories", (const char *const[]){"env.stories.min_words=0", NULL}, 1);
    assert_near(env_test_score(short_ok, &p, " Lily and the ball."), 1.0);
    env_destroy(short_ok);
}

// ---------------------------------------------------------------------------------------------
// Multi-turn episodes

// Plays guesses (strings) through respond() and returns the reward; replies are checked.
static double play(Env *env, const Problem *p, const char *const *model, const char *const *want_replies,
                   EnvMetrics *m) {
    Turn turns[64];
    char *owned[64] = {0};
    int n = 0;
    for (int i = 0; model[i]; i++) {
        turns[n++] = (Turn){TURN_MODEL, model[i], strlen(model[i])};
        Transcript t = {turns, n};
        char *reply = NULL;
        size_t len = 0;
        int more = env->respond(env, p, &t, &reply, &len);
        if (want_replies) {
            if (!want_replies[i]) {
                assert_int_equal(more, 0);
            } else {
                assert_int_equal(more, 1);
                assert_string_equal(reply, want_replies[i]);
                assert_int_equal(len, strlen(want_replies[i]));
            }
        }
        if (!more) break;
        owned[n] = reply;
        turns[n++] = (Turn){TURN_ENV, reply, len};
    }
    Transcript t = {turns, n};
    memset(m, 0, sizeof *m);
    double r = env->score(env, p, &t, m);
    for (int i = 0; i < n; i++) free(owned[i]);
    return r;
}

static void test_guess_episodes(void **state) {
    Env *env = env_test_make("guess", NULL, 1);  // 1..32, 8 turns, binary search needs 6
    assert_int_equal(env->max_turns, 8);
    Problem p = manual("guess 1-32\n", "", "7");
    EnvMetrics m;
    // Binary search finds 7 in 5 guesses: 16, 8, 4, 6, 7.
    const char *const bs[] = {"16", "8", "4", "6", "7", NULL};
    const char *const bs_replies[] = {"lower\n", "lower\n", "higher\n", "higher\n", NULL};
    assert_near(play(env, &p, bs, bs_replies, &m), 1.0);
    assert_near(env_metrics_get(&m, "turns", -1), 5.0);
    assert_near(env_metrics_get(&m, "found", -1), 1.0);
    // Linear search: 7 guesses, one more than binary search needs: 1 - 0.8 * 1 / (8 - 6 + 1).
    const char *const lin7[] = {"1", "2", "3", "4", "5", "6", "7", NULL};
    assert_near(play(env, &p, lin7, NULL, &m), 1.0 - 0.8 / 3.0);
    Problem p8 = manual("guess 1-32\n", "", "8");
    const char *const lin8[] = {"1", "2", "3", "4", "5", "6", "7", "8", NULL};
    assert_near(play(env, &p8, lin8, NULL, &m), 1.0 - 1.6 / 3.0);
    // Never found within 8 turns: the 8th wrong guess ends the episode.
    Problem p9 = manual("guess 1-32\n", "", "9");
    const char *const miss[] = {"1", "2", "3", "4", "5", "6", "7", "8", "9", NULL};
    const char *const miss_replies[] = {"higher\n", "higher\n", "higher\n", "higher\n", "higher\n", "higher\n",
                                        "higher\n", NULL};
    assert_near(play(env, &p9, miss, miss_replies, &m), 0.0);
    assert_near(env_metrics_get(&m, "found", -1), 0.0);
    assert_near(env_metrics_get(&m, "turns", -1), 8.0);
    // Invalid turns are answered and wasted.
    const char *const junk[] = {"sixteen", "", "16 16", "7", NULL};
    const char *const junk_replies[] = {"invalid\n", "invalid\n", "invalid\n", NULL};
    assert_near(play(env, &p, junk, junk_replies, &m), 1.0);  // found at turn 4 <= 6
    assert_near(env_metrics_get(&m, "invalid", -1), 3.0);
    // A transcript longer than max_turns: guesses after the 8th do not count.
    Turn many[20];
    for (int i = 0; i < 9; i++) many[i] = (Turn){TURN_MODEL, "1", 1};
    many[9] = (Turn){TURN_MODEL, "7", 1};
    Transcript t = {many, 10};
    assert_near(env->score(env, &p, &t, NULL), 0.0);
    // The reference conversation through respond() for every secret.
    for (int i = 0; i < 200; i++) {
        Problem q;
        env_test_problem(env, i % 2 ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN, (uint64_t)i, &q);
        assert_string_equal(q.prompt, "guess 1-32\n");
        assert_true(q.n_answer_turns <= 2 * 6 - 1);
        assert_near(play_reference(env, &q), 1.0);
        problem_free(&q);
    }
    env_destroy(env);
}

static void test_tool_episodes(void **state) {
    Env *env = env_test_make("tool", NULL, 1);  // 2 calls allowed
    assert_int_equal(env->max_turns, 3);
    Problem p = manual("calc 37*48+12\n", "", "1788");
    EnvMetrics m;
    const char *const ok[] = {"CALL 37*48+12", "1788", NULL};
    const char *const ok_replies[] = {"= 1788\n", NULL};
    assert_near(play(env, &p, ok, ok_replies, &m), 1.0);
    assert_near(env_metrics_get(&m, "tool_calls", -1), 1.0);
    assert_near(env_metrics_get(&m, "turns", -1), 2.0);
    const char *const direct[] = {"1788", NULL};
    assert_near(play(env, &p, direct, (const char *const[]){NULL}, &m), 1.0);
    assert_near(env_metrics_get(&m, "tool_calls", -1), 0.0);
    const char *const wrong[] = {"CALL 37*48", "1776", NULL};
    assert_near(play(env, &p, wrong, (const char *const[]){"= 1776\n", NULL}, &m), 0.0);
    // Calculator errors are answered, counted and never crash.
    const char *const errs[] = {"CALL 1/0", "CALL (((1", NULL};
    const char *const err_replies[] = {"= error: division by zero\n", "= error: syntax error\n"};
    assert_near(play(env, &p, errs, err_replies, &m), 0.0);  // no final answer
    assert_near(env_metrics_get(&m, "tool_errors", -1), 2.0);
    const char *const frac[] = {"CALL 7/-14", NULL};
    assert_near(play(env, &p, frac, (const char *const[]){"= -1/2\n"}, &m), 0.0);
    // A third call is over the limit: the episode ends unanswered.
    const char *const three[] = {"CALL 1", "CALL 2", "CALL 3", NULL};
    const char *const three_replies[] = {"= 1\n", "= 2\n", NULL};
    assert_near(play(env, &p, three, three_replies, &m), 0.0);
    assert_near(env_metrics_get(&m, "tool_calls", -1), 3.0);
    // Hostile calls: deep nesting, a huge expression, huge numbers.
    size_t depth = 200000;
    char *deep = malloc(depth + 16);
    memcpy(deep, "CALL ", 5);
    memset(deep + 5, '(', depth);
    memcpy(deep + 5 + depth, "1", 2);
    const char *const nested[] = {deep, NULL};
    assert_near(play(env, &p, nested, (const char *const[]){"= error: expression too long\n"}, &m), 0.0);
    deep[5 + 100] = '1';
    deep[5 + 101] = '\0';
    assert_near(play(env, &p, nested, (const char *const[]){"= error: nested too deeply\n"}, &m), 0.0);
    free(deep);
    const char *const huge[] = {"CALL 99999999999999999999*2", NULL};
    assert_near(play(env, &p, huge, (const char *const[]){"= error: number too large\n"}, &m), 0.0);
    // The reference conversation through respond().
    for (int i = 0; i < 200; i++) {
        Problem q;
        env_test_problem(env, i % 2 ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN, (uint64_t)i, &q);
        assert_int_equal(q.n_answer_turns, 3);
        assert_near(play_reference(env, &q), 1.0);
        problem_free(&q);
    }
    env_destroy(env);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_covers_all), cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_splits_disjoint),     cmocka_unit_test(test_reference_scores_one),
        cmocka_unit_test(test_garbage_scores_zero), cmocka_unit_test(test_metric_names_declared),
        cmocka_unit_test(test_degenerate_transcripts), cmocka_unit_test(test_small_problem_spaces),
        cmocka_unit_test(test_reverse_verifier),    cmocka_unit_test(test_arithmetic_verifier),
        cmocka_unit_test(test_sorting_verifier),    cmocka_unit_test(test_countdown_verifier),
        cmocka_unit_test(test_stories_verifier),    cmocka_unit_test(test_guess_episodes),
        cmocka_unit_test(test_tool_episodes),
    };
    return cmocka_run_group_tests_name("env_tasks", tests, NULL, NULL);
}
