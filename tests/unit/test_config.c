// Config loading: every error class names the key, the file and line and what was expected;
// overrides; defaults; the resolved text reads back to the same config.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/test_util.h"
#include "core/config.h"

static char g_path[256];

// Writes text to a temporary config file and loads it with the given overrides.
static int load(const char *text, char **overrides, int n, Config *cfg, ErrorBuf *err) {
    snprintf(g_path, sizeof g_path, "/tmp/asyncrl-test-config-%d.cfg", (int)getpid());
    FILE *f = fopen(g_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    memset(err, 0, sizeof *err);
    int rc = config_load(cfg, g_path, overrides, n, err);
    unlink(g_path);
    return rc;
}

static void expect_error(const char *text, char **overrides, int n, const char *const *fragments) {
    Config cfg;
    ErrorBuf err;
    assert_int_equal(load(text, overrides, n, &cfg, &err), -1);
    for (int i = 0; fragments[i]; i++) {
        if (!strstr(err.msg, fragments[i])) {
            print_error("message \"%s\" lacks \"%s\"\n", err.msg, fragments[i]);
            fail();
        }
    }
}

static void test_defaults(void **state) {
    Config cfg;
    config_defaults(&cfg);
    assert_int_equal(cfg.run.async_level, 1);
    assert_int_equal(cfg.orchestrator.max_off_policy_steps, 8);
    assert_true(cfg.loss.mask_low == 0.125 && cfg.loss.mask_high == 8.0);
    assert_string_equal(cfg.loss.type, "icepop");
    assert_true(cfg.trainer.beta1 == 0.9 && cfg.trainer.beta2 == 0.999 && cfg.trainer.weight_decay == 0.01);
    assert_true(cfg.trainer.grad_clip == 1.0);
    assert_int_equal(cfg.env.tasks.count, 1);
    assert_string_equal(cfg.env.tasks.items[0], "reverse");
    assert_string_equal(cfg.checkpoint.resume, "none");
    assert_string_equal(config_origin(&cfg, "trainer.lr"), "default");
    ErrorBuf err;
    assert_int_equal(config_validate(&cfg, &err), 0);
}

static void test_good_file_and_origin(void **state) {
    Config cfg;
    ErrorBuf err;
    const char *text = "run = { seed = 7; max_steps = 3; };\n"
                       "trainer = {\n  lr = 1e-4;\n  lr_schedule = \"cosine\";\n};\n"
                       "env = { tasks = [\"reverse\", \"arithmetic\"]; weights = (1.0, 3); };\n";
    assert_int_equal(load(text, NULL, 0, &cfg, &err), 0);
    assert_int_equal(cfg.run.seed, 7);
    assert_true(cfg.trainer.lr == 1e-4);
    assert_string_equal(cfg.trainer.lr_schedule, "cosine");
    assert_int_equal(cfg.env.weights.count, 2);
    assert_true(cfg.env.weights.items[1] == 3.0);
    char expect[300];
    snprintf(expect, sizeof expect, "%s:3", g_path);
    assert_string_equal(config_origin(&cfg, "trainer.lr"), expect);
}

static void test_unknown_key(void **state) {
    expect_error("run = { seed = 1; };\ntrainer = {\n  lrr = 0.1;\n};\n", NULL, 0,
                 (const char *[]){":3", "unknown key 'trainer.lrr'", "did you mean 'trainer.lr'", NULL});
    expect_error("traner = { lr = 0.1; };\n", NULL, 0, (const char *[]){":1", "unknown group 'traner'", NULL});
    expect_error("seed = 3;\n", NULL, 0, (const char *[]){"unknown key 'seed'", "run.seed", NULL});
}

static void test_wrong_type(void **state) {
    expect_error("trainer = { seq_len = \"long\"; };\n", NULL, 0,
                 (const char *[]){":1", "trainer.seq_len", "is a string", "expected an integer", NULL});
    expect_error("trainer = { seq_len = 1.5; };\n", NULL, 0, (const char *[]){"trainer.seq_len", "expected an integer", NULL});
    expect_error("run = { deterministic = 1; };\n", NULL, 0, (const char *[]){"run.deterministic", "true or false", NULL});
    expect_error("loss = { type = \"ppo\"; };\n", NULL, 0,
                 (const char *[]){"loss.type", "\"ppo\"", "icepop|gspo|dppo", NULL});
    expect_error("trainer = { lr = { a = 1; }; };\n", NULL, 0, (const char *[]){"trainer.lr is a group", NULL});
    expect_error("env = { tasks = [1, 2]; };\n", NULL, 0, (const char *[]){"env.tasks", "item 0", NULL});
}

static void test_out_of_range(void **state) {
    expect_error("\n\ntrainer = { lr = -1.0; };\n", NULL, 0,
                 (const char *[]){":3", "trainer.lr = -1", "out of range", "[0, 10]", NULL});
    expect_error("run = { async_level = 100; };\n", NULL, 0,
                 (const char *[]){"run.async_level = 100", "expected an integer in [0, 64]", NULL});
    expect_error("ranks = { trainers = 0; };\n", NULL, 0, (const char *[]){"ranks.trainers", "[1, 65536]", NULL});
}

static void test_cross_checks(void **state) {
    expect_error("orchestrator = {\n batch_size = 10;\n group_size = 4;\n};\n", NULL, 0,
                 (const char *[]){"orchestrator.batch_size = 10", ":2", "orchestrator.group_size = 4", ":3",
                                  "not a multiple", "batch_size = 12", NULL});
    expect_error("model = { dim = 66; n_heads = 4; };\n", NULL, 0, (const char *[]){"model.dim = 66", "n_heads", NULL});
    expect_error("model = { n_heads = 4; n_kv_heads = 3; };\n", NULL, 0, (const char *[]){"n_kv_heads = 3", NULL});
    expect_error("model = { source = \"llama2c\"; };\n", NULL, 0, (const char *[]){"needs model.path", NULL});
    expect_error("model = { source = \"checkpoint\"; };\n", NULL, 0,
                 (const char *[]){"needs model.path: the checkpoint file (runs/NAME/checkpoints/step_NNNNNN.h5)", NULL});
    expect_error("env = { tasks = [\"reverse\"]; weights = [1.0, 2.0]; };\n", NULL, 0,
                 (const char *[]){"env.weights", "2 entries", "env.tasks", NULL});
    expect_error("inference = { max_tokens = 300; };\n", NULL, 0,
                 (const char *[]){"inference.max_tokens = 300", "trainer.seq_len = 256", NULL});
}

static void test_world_size(void **state) {
    Config cfg;
    ErrorBuf err;
    assert_int_equal(load("ranks = { trainers = 2; inference = 3; };\n", NULL, 0, &cfg, &err), 0);
    assert_int_equal(config_world_size(&cfg), 6);
    assert_int_equal(config_check_world(&cfg, 6, &err), 0);
    assert_int_equal(config_check_world(&cfg, 4, &err), -1);
    assert_non_null(strstr(err.msg, "4 ranks"));
    assert_non_null(strstr(err.msg, "mpirun -np 6"));
    assert_non_null(strstr(err.msg, "ranks.trainers = 2"));
}

static void test_syntax_error(void **state) {
    expect_error("run = { seed = 1 }\ntrainer = { lr = ; };\n", NULL, 0,
                 (const char *[]){":2: syntax error near `trainer = { lr = ; };`", "key = value;", NULL});
    Config cfg;
    ErrorBuf err;
    // A config from a string (a checkpoint's config text) quotes its line too.
    assert_int_equal(config_load_text(&cfg, "run = { seed = 1; };\n\n  model = { dim = 64 64; };\n", "ckpt", NULL, 0,
                                      &err), -1);
    if (!strstr(err.msg, "ckpt:3: syntax error near `model = { dim = 64 64; };`")) print_error("got: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "ckpt:3: syntax error near `model = { dim = 64 64; };`"));
    assert_int_equal(config_load(&cfg, "/nonexistent/x.cfg", NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "/nonexistent/x.cfg"));
}

static void test_overrides(void **state) {
    Config cfg;
    ErrorBuf err;
    char *ok[] = {"trainer.lr=0.5", "run.output_dir=\"/tmp/x y\"", "env.tasks=[reverse, sorting]",
                  "env.weights=1,2", "run.deterministic=true", "checkpoint.resume=42"};
    assert_int_equal(load("trainer = { lr = 0.1; };\n", ok, 6, &cfg, &err), 0);
    assert_true(cfg.trainer.lr == 0.5);
    assert_string_equal(cfg.run.output_dir, "/tmp/x y");
    assert_int_equal(cfg.env.tasks.count, 2);
    assert_string_equal(cfg.env.tasks.items[1], "sorting");
    assert_true(cfg.env.weights.items[1] == 2.0);
    assert_int_equal(cfg.run.deterministic, 1);
    assert_string_equal(cfg.checkpoint.resume, "42");
    assert_string_equal(config_origin(&cfg, "trainer.lr"), "--set");
    expect_error("", (char *[]){"trainer.lrr=1"}, 1, (const char *[]){"--set", "unknown key 'trainer.lrr'", "trainer.lr'", NULL});
    expect_error("", (char *[]){"trainer.lr"}, 1, (const char *[]){"expected group.key=value", NULL});
    expect_error("", (char *[]){"trainer.lr=fast"}, 1, (const char *[]){"--set trainer.lr", "expected a number", NULL});
    expect_error("", (char *[]){"checkpoint.resume=soon"}, 1, (const char *[]){"checkpoint.resume", "\"latest\"", NULL});
    // An override that breaks a cross-key rule is caught too.
    expect_error("", (char *[]){"orchestrator.batch_size=9"}, 1, (const char *[]){"--set", "not a multiple", NULL});
}

static void test_resume_values(void **state) {
    Config cfg;
    ErrorBuf err;
    assert_int_equal(load("checkpoint = { resume = 120; };\n", NULL, 0, &cfg, &err), 0);
    assert_string_equal(cfg.checkpoint.resume, "120");
    assert_int_equal(load("checkpoint = { resume = \"latest\"; };\n", NULL, 0, &cfg, &err), 0);
    expect_error("checkpoint = { resume = -3; };\n", NULL, 0, (const char *[]){"cannot be negative", NULL});
}

static void test_text_round_trip(void **state) {
    Config a, b;
    ErrorBuf err;
    char *over[] = {"trainer.lr=0.000123456789", "run.seed=9007199254740993", "env.tasks=[reverse,sorting]",
                    "env.weights=[0.25, 0.75]", "run.output_dir=\"runs/with \\\"quote\""};
    assert_int_equal(load("", over, 5, &a, &err), 0);
    char *text = config_to_text(&a);
    assert_int_equal(config_load_text(&b, text, "text", NULL, 0, &err), 0);
    // Every key reads back to the same value.
    char *text2 = config_to_text(&b);
    assert_string_equal(text, text2);
    assert_true(b.trainer.lr == a.trainer.lr);
    assert_true(b.run.seed == a.run.seed);
    assert_string_equal(b.run.output_dir, a.run.output_dir);
    assert_int_equal(b.env.weights.count, 2);
    free(text);
    free(text2);
}

static void test_defaults_listing(void **state) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_print_defaults(f);
    fclose(f);
    const char *keys[] = {"run.output_dir", "run.seed", "run.max_steps", "run.async_level", "run.deterministic",
                          "ranks.trainers", "ranks.inference", "checkpoint.interval", "checkpoint.resume",
                          "checkpoint.keep", "env.tasks", "loss.mask_low", NULL};
    for (int i = 0; keys[i]; i++) assert_non_null(strstr(buf, keys[i]));
    free(buf);
}

// 64-bit seeds keep every digit, from a file (with L) and from --set (through a double,
// 2^53 + 1 would become 2^53).
static void test_int64_exact(void **state) {
    Config cfg;
    ErrorBuf err;
    char *set[] = {"run.seed=9007199254740993"};
    assert_int_equal(load("run = { seed = 1234567890123456789L; };", NULL, 0, &cfg, &err), 0);
    assert_true(cfg.run.seed == 1234567890123456789LL);
    assert_int_equal(load("", set, 1, &cfg, &err), 0);
    assert_true(cfg.run.seed == 9007199254740993LL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),         cmocka_unit_test(test_good_file_and_origin),
        cmocka_unit_test(test_int64_exact),
        cmocka_unit_test(test_unknown_key),      cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),     cmocka_unit_test(test_cross_checks),
        cmocka_unit_test(test_world_size),       cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_overrides),        cmocka_unit_test(test_resume_values),
        cmocka_unit_test(test_text_round_trip),  cmocka_unit_test(test_defaults_listing),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
