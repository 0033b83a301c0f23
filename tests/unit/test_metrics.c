// metrics.h5: what the writer wrote is read back by h5py as a SWMR reader while the writer
// still has the file open, and by h5dump once it is closed; resume cuts the file back to a step; rollouts keep tokens.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/test_util.h"
#include "io/metrics.h"

static char g_path[256];

static const char *STEP_NAMES[] = {"loss", "reward_mean", "grad_norm"};
static const char *EVAL_NAMES[] = {"step", "greedy_pass", "sampled_pass"};
static const MetricsTable TABLES[] = {{"eval", EVAL_NAMES, 3, 1}};

static MetricsWriter *open_writer(int64_t resume) {
    return metrics_open(g_path, STEP_NAMES, 3, TABLES, 1, "run = { seed = 1L; };", "reverse,sorting", 1, resume);
}

// Runs a shell command and returns its stdout (heap), or NULL if it failed.
static char *run(const char *cmd) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    if (pclose(p) != 0) {
        printf("# command failed: %s\n# output: %s\n", cmd, buf);
        free(buf);
        return NULL;
    }
    return buf;
}

static void write_steps(MetricsWriter *m, int from, int to) {
    for (int s = from; s < to; s++) {
        const char *names[] = {"loss", "reward_mean"};
        double values[] = {1.0 / (s + 1), 0.1 * s};
        metrics_write_step(m, s, names, values, 2);
        int32_t toks[5] = {256, 97 + s, 98, 99, 257}, vers[5] = {-1, -1, s, s, s};
        RolloutRecord r = {.step = s, .group = (uint64_t)s, .problem = 1000u + (uint64_t)s, .env = s % 2,
                           .sample = 0, .reward = 0.5, .advantage = 0.1, .prompt_len = 2, .completion_len = 3,
                           .version_min = s, .version_max = s, .finish = 0, .tokens = toks, .token_versions = vers};
        metrics_write_rollouts(m, &r, 1);
    }
}

static void test_read_while_open(void **state) {
    MetricsWriter *m = open_writer(-1);
    write_steps(m, 0, 4);
    const char *en[] = {"greedy_pass"};
    double ev[] = {0.75};
    metrics_write_row(m, 0, 3, en, ev, 1);
    char cmd[600];
    // h5py as a SWMR reader (Debian's python3-h5py), also while open.
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py; f = h5py.File('%s', 'r', libver='latest', swmr=True); "
             "print(list(f['steps/loss'][:]), f['rollouts/tokens'][:].tolist(), f['eval/greedy_pass'][0], "
             "f['eval/step'][0], f.attrs['env_names'])\"",
             g_path);
    char *out = run(cmd);
    if (!out) skip();  // python3-h5py missing (make deps installs it)
    assert_non_null(strstr(out, "[1.0, 0.5, 0.3333"));
    assert_non_null(strstr(out, "[256, 97, 98, 99, 257, 256, 98"));
    assert_non_null(strstr(out, "0.75 3.0"));
    assert_non_null(strstr(out, "reverse,sorting"));
    free(out);
    metrics_close(m);
    // h5dump (which has no SWMR reader mode) reads the closed file.
    snprintf(cmd, sizeof cmd, "h5dump -d /steps/reward_mean %s 2>&1", g_path);
    out = run(cmd);
    assert_non_null(out);
    assert_non_null(strstr(out, "0, 0.1, 0.2, 0.3"));
    free(out);
}

static void test_nan_for_missing_and_unknown(void **state) {
    MetricsWriter *m = open_writer(-1);
    const char *names[] = {"grad_norm", "not_declared"};
    double values[] = {2.0, 5.0};
    metrics_write_step(m, 2, names, values, 2);  // steps 0 and 1 never had grad_norm
    metrics_close(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "h5dump -d /steps/grad_norm %s 2>&1", g_path);
    char *out = run(cmd);
    assert_non_null(out);
    assert_non_null(strstr(out, "nan, nan, 2"));
    free(out);
}

static void test_resume_cuts_back(void **state) {
    MetricsWriter *m = open_writer(-1);
    write_steps(m, 0, 6);
    metrics_close(m);
    m = open_writer(3);  // resume after 3 steps: rows of steps 3..5 go away
    write_steps(m, 3, 5);
    metrics_close(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c \"import h5py; f = h5py.File('%s', 'r'); "
             "print(len(f['steps/loss']), f['rollouts/step'][:].tolist(), len(f['rollouts/tokens']), "
             "f['rollouts/token_offset'][:].tolist())\"",
             g_path);
    char *out = run(cmd);
    if (!out) skip();
    assert_non_null(strstr(out, "5 [0, 1, 2, 3, 4] 25 [0, 5, 10, 15, 20]"));
    free(out);
}

static int setup(void **state) {
    snprintf(g_path, sizeof g_path, "/tmp/asyncrl-test-metrics-%d.h5", (int)getpid());
    return 0;
}
static int teardown(void **state) {
    unlink(g_path);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_while_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nan_for_missing_and_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_cuts_back, setup, teardown),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
