// The environment registry, the weighted mixture (determinism, and its choices follow the
// weights by a chi-square test with a fixed seed), and the env.* config cross-checks, whose
// messages name the keys and where they were set.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/mix.h"
#include "test_env_util.h"

static void test_registry(void **state) {
    const char *names[] = {"reverse", "arithmetic", "sorting", "countdown", "guess", "tool", "jsonl", "stories"};
    for (int i = 0; i < 8; i++) assert_true(env_known(names[i]));
    assert_false(env_known("nope"));
    assert_false(env_known(""));
    assert_false(env_known(NULL));
    assert_null(env_registry_entry(-1));
    assert_null(env_registry_entry(env_registry_count()));
    for (int i = 0; i < env_registry_count(); i++) {
        const EnvEntry *e = env_registry_entry(i);
        assert_non_null(e->create);
        assert_true(strlen(e->description) > 10);
    }
    char buf[512];
    env_names(buf, sizeof buf);
    assert_non_null(strstr(buf, "reverse, arithmetic, sorting"));
    char tiny[12];
    memset(tiny, 'z', sizeof tiny);
    env_names(tiny, sizeof tiny);  // truncated, terminated, no overflow
    assert_true(strlen(tiny) < sizeof tiny);
    char *listing = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&listing, &len);
    env_print_list(out);
    fclose(out);
    assert_non_null(strstr(listing, "countdown"));
    assert_non_null(strstr(listing, "CALL"));
    free(listing);

    Config cfg;
    config_defaults(&cfg);
    ErrorBuf err = {{0}};
    assert_null(env_create("nope", &cfg.env, 1, &err));
    assert_non_null(strstr(err.msg, "unknown environment \"nope\""));
    assert_non_null(strstr(err.msg, "reverse, arithmetic"));
    assert_null(env_create("jsonl", &cfg.env, 1, &err));  // no env.jsonl.path
    assert_non_null(strstr(err.msg, "env.jsonl.path"));
}

static void make_mix(EnvMix *mix, const char *tasks, const char *weights, uint64_t seed) {
    Config cfg;
    char t[200], w[200];
    snprintf(t, sizeof t, "env.tasks=%s", tasks);
    snprintf(w, sizeof w, "env.weights=%s", weights);
    env_test_config(&cfg, (const char *const[]){t, w, NULL});
    ErrorBuf err = {{0}};
    if (env_mix_init(mix, &cfg.env, seed, &err)) {
        print_error("env_mix_init: %s\n", err.msg);
        fail();
    }
}

static void test_mix_follows_weights(void **state) {
    EnvMix mix;
    make_mix(&mix, "[reverse, arithmetic, sorting, countdown]", "[1, 3, 0, 6]", 2024);
    assert_int_equal(mix.count, 4);
    const int n = 20000;
    const double p[4] = {0.1, 0.3, 0.0, 0.6};
    for (int split = 0; split < 2; split++) {
        int counts[4] = {0};
        for (int i = 0; i < n; i++) counts[env_mix_pick(&mix, (EnvSplit)split, (uint64_t)i)]++;
        assert_int_equal(counts[2], 0);  // weight 0: never
        double chi2 = 0;
        for (int k = 0; k < 4; k++) {
            if (p[k] == 0) continue;
            double expect = n * p[k];
            chi2 += (counts[k] - expect) * (counts[k] - expect) / expect;
        }
        // 2 degrees of freedom: P(chi2 > 13.82) = 0.001. The seed is fixed, so this is not flaky.
        if (chi2 > 13.82) {
            print_error("chi2 = %g for counts %d %d %d %d\n", chi2, counts[0], counts[1], counts[2], counts[3]);
            fail();
        }
    }
    // Deterministic, independent of call order, different across splits and seeds.
    EnvMix again, other;
    make_mix(&again, "[reverse, arithmetic, sorting, countdown]", "[1, 3, 0, 6]", 2024);
    make_mix(&other, "[reverse, arithmetic, sorting, countdown]", "[1, 3, 0, 6]", 2025);
    int differ_seed = 0, differ_split = 0;
    for (int i = 999; i >= 0; i--) {
        assert_int_equal(env_mix_pick(&mix, ENV_SPLIT_TRAIN, (uint64_t)i),
                         env_mix_pick(&again, ENV_SPLIT_TRAIN, (uint64_t)i));
        differ_seed += env_mix_pick(&mix, ENV_SPLIT_TRAIN, (uint64_t)i) !=
                       env_mix_pick(&other, ENV_SPLIT_TRAIN, (uint64_t)i);
        differ_split += env_mix_pick(&mix, ENV_SPLIT_TRAIN, (uint64_t)i) !=
                        env_mix_pick(&mix, ENV_SPLIT_EVAL, (uint64_t)i);
    }
    assert_true(differ_seed > 300 && differ_split > 300);  // two independent draws differ ~54 % of the time
    env_mix_free(&again);
    env_mix_free(&other);
    env_mix_free(&mix);
}

static void test_mix_problems(void **state) {
    EnvMix mix;
    make_mix(&mix, "[arithmetic, reverse]", "[1, 1]", 77);
    // A problem of the mixture is the picked environment's own problem of that index, and an
    // environment's problems do not depend on its place in the list.
    Env *reverse = env_test_make("reverse", NULL, env_mix_env_seed(77, "reverse"));
    EnvMix swapped;
    make_mix(&swapped, "[reverse, arithmetic]", "[1, 1]", 77);
    int seen[2] = {0, 0};
    for (int i = 0; i < 200; i++) {
        Problem p;
        int which = -1;
        ErrorBuf err;
        assert_int_equal(env_mix_problem(&mix, ENV_SPLIT_TRAIN, (uint64_t)i, &which, &p, &err), 0);
        seen[which]++;
        assert_string_equal(mix.envs[which]->name, which == 0 ? "arithmetic" : "reverse");
        if (which == 1) {
            Problem q, r;
            env_test_problem(reverse, ENV_SPLIT_TRAIN, (uint64_t)i, &q);
            env_test_problem(swapped.envs[0], ENV_SPLIT_TRAIN, (uint64_t)i, &r);
            assert_string_equal(p.prompt, q.prompt);
            assert_string_equal(p.prompt, r.prompt);
            problem_free(&q);
            problem_free(&r);
        }
        problem_free(&p);
    }
    assert_true(seen[0] > 50 && seen[1] > 50);
    env_destroy(reverse);
    env_mix_free(&swapped);
    env_mix_free(&mix);

    // Errors: nothing is kept, the message says why.
    Config cfg;
    env_test_config(&cfg, (const char *const[]){"env.tasks=[reverse, jsonl]", "env.weights=[1, 1]",
                                                 "env.jsonl.path=/nonexistent/x.jsonl", NULL});
    ErrorBuf err = {{0}};
    assert_int_equal(env_mix_init(&mix, &cfg.env, 1, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/x.jsonl"));
    assert_int_equal(mix.count, 0);
    cfg.env.weights.count = 1;
    assert_int_equal(env_mix_init(&mix, &cfg.env, 1, &err), -1);
    assert_non_null(strstr(err.msg, "env.weights"));
}

// Config errors: load `text` (may be "") with overrides; every fragment must be in the message.
static void expect_config_error(const char *text, const char *const *sets, const char *const *fragments) {
    Config cfg;
    ErrorBuf err = {{0}};
    int n = 0;
    while (sets && sets[n]) n++;
    assert_int_equal(config_load_text(&cfg, text, "inline.cfg", (char **)sets, n, &err), -1);
    for (int i = 0; fragments[i]; i++) {
        if (!strstr(err.msg, fragments[i])) {
            print_error("message \"%s\" lacks \"%s\"\n", err.msg, fragments[i]);
            fail();
        }
    }
}

#define SETS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void test_config_errors(void **state) {
    expect_config_error("env = { tasks = [\"reverse\", \"nope\"]; weights = [1.0, 1.0]; };\n", NULL,
                        SETS("env.tasks", "inline.cfg:1", "unknown environment \"nope\"",
                             "known environments: reverse, arithmetic, sorting"));
    expect_config_error("", SETS("env.tasks=[reverse, arithmetic]"),
                        SETS("env.weights", "1 entries", "env.tasks", "2", "--set"));
    expect_config_error("", SETS("env.tasks=[reverse, reverse]", "env.weights=[1, 1]"), SETS("twice", "env.tasks"));
    expect_config_error("", SETS("env.tasks=[jsonl]"), SETS("env.jsonl.path", "empty"));
    expect_config_error("", SETS("env.eval_fraction=0"), SETS("env.eval_fraction", "out of range"));
    // min > max pairs name both keys and their origins.
    const char *pairs[][2] = {
        {"env.reverse.min_chars", "env.reverse.max_chars"},
        {"env.arithmetic.min_operand", "env.arithmetic.max_operand"},
        {"env.sorting.min_len", "env.sorting.max_len"},
        {"env.sorting.min_value", "env.sorting.max_value"},
        {"env.countdown.min_number", "env.countdown.max_number"},
        {"env.countdown.min_target", "env.countdown.max_target"},
        {"env.tool.min_operand", "env.tool.max_operand"},
    };
    for (int i = 0; i < (int)(sizeof pairs / sizeof pairs[0]); i++) {
        char lo[100], hi[100];
        snprintf(lo, sizeof lo, "%s=9", pairs[i][0]);
        snprintf(hi, sizeof hi, "%s=3", pairs[i][1]);
        expect_config_error("", SETS(lo, hi), SETS(pairs[i][0], pairs[i][1], "--set", "larger than"));
    }
    // And in a file, with the line of each key.
    expect_config_error("env = {\n  sorting = {\n    min_len = 9;\n    max_len = 3;\n  };\n};\n", NULL,
                        SETS("env.sorting.min_len = 9 (inline.cfg:3)", "env.sorting.max_len = 3 (inline.cfg:4)"));
    expect_config_error("", SETS("env.arithmetic.ops=+/"), SETS("env.arithmetic.ops", "+ - *"));
    expect_config_error("", SETS("env.arithmetic.ops=\"\""), SETS("env.arithmetic.ops"));
    expect_config_error("", SETS("env.guess.max_turns=5"),
                        SETS("env.guess.max_turns = 5", "env.guess.max_number = 32", "6 guesses"));
    expect_config_error("", SETS("env.reverse.alphabet=aaaa"), SETS("env.reverse.alphabet", "two different"));
    expect_config_error("", SETS("env.reverse.alphabet=\"   \""), SETS("env.reverse.alphabet", "not a space"));
    expect_config_error("", SETS("env.jsonl.match=fuzzy"), SETS("env.jsonl.match", "exact|numeric"));
    expect_config_error("", SETS("env.countdown.numbers=7"), SETS("env.countdown.numbers", "out of range"));
    // A good mixed config passes, and its resolved text reads back the same.
    Config cfg, back;
    ErrorBuf err = {{0}};
    const char *good = "env = { tasks = [\"reverse\", \"guess\", \"tool\"]; weights = [1.0, 2.0, 0.5];\n"
                       "  reverse = { alphabet = \"ab c\"; }; guess = { max_number = 100; max_turns = 7; }; };\n";
    assert_int_equal(config_load_text(&cfg, good, "inline.cfg", NULL, 0, &err), 0);
    assert_string_equal(cfg.env.reverse.alphabet, "ab c");
    char *text = config_to_text(&cfg);
    assert_int_equal(config_load_text(&back, text, "resolved", NULL, 0, &err), 0);
    assert_memory_equal(&cfg.env, &back.env, sizeof cfg.env);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_mix_follows_weights),
        cmocka_unit_test(test_mix_problems),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests_name("env_registry", tests, NULL, NULL);
}
