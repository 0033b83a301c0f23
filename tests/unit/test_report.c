// `asyncrl report`: the numbers it prints for a metrics.h5 written by the real writer with
// known values (worked out by hand below), its checkpoint listing (complete, incomplete,
// damaged, partial), a file still open by its writer (the binary reads it as a SWMR reader while
// this process writes), the note on dropped groups, and clear errors for missing, foreign,
// garbage and damaged files.
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/test_util.h"
#include "io/h5util.h"
#include "io/metrics.h"
#include "io/report.h"

static char g_dir[256], g_metrics[320];

static const char *STEP_NAMES[] = {"reward_mean", "loss", "skipped", "off_policy_mean", "off_policy_max",
                                   "timing/elapsed_s", "timing/inference_tokens_per_s", "reward/reverse"};
static const char *EVAL_COLS[] = {"step", "version", "greedy_reward", "greedy_pass", "sampled_reward", "sampled_pass",
                                  "completion_len"};
static const MetricsTable TABLES[] = {{"eval", EVAL_COLS, 7, 1}};
static const char *CONFIG = "run = { max_steps = 40; };";

static MetricsWriter *open_writer(void) {
    return metrics_open(g_metrics, STEP_NAMES, 8, TABLES, 1, CONFIG, "reverse", 0, -1);
}

// Step s: reward s/100, loss 1 except step 5 (never written: NaN), skipped at 7 and 9, 100 + s
// inference tokens/s, off-policy max s % 4, 2 s a step: elapsed 2(s+1) until step 19, then a
// restart at step 20 (resumed: 5 s to start, then 2 s a step).
static void write_steps(MetricsWriter *m, int from, int to) {
    for (int s = from; s < to; s++) {
        const char *names[] = {"reward_mean", "skipped", "off_policy_mean", "off_policy_max", "timing/elapsed_s",
                               "timing/inference_tokens_per_s", "reward/reverse", "loss"};
        double elapsed = s < 20 ? 2.0 * (s + 1) : 5.0 + 2.0 * (s - 20);
        double values[] = {s / 100.0, (s == 7 || s == 9) ? 1 : 0, 0.5, s % 4, elapsed, 100.0 + s, s / 100.0, 1.0};
        metrics_write_step(m, s, names, values, s == 5 ? 7 : 8);
    }
}

// The report of `path` as a heap string.
static char *report_text(const char *path, int *rc, ErrorBuf *err) {
    FILE *out = tmpfile();
    assert_non_null(out);
    *rc = report_print(path, out, err);
    long len = ftell(out);
    assert_true(len >= 0);
    char *text = malloc((size_t)len + 1);
    rewind(out);
    assert_int_equal(fread(text, 1, (size_t)len, out), (size_t)len);
    text[len] = '\0';
    fclose(out);
    return text;
}

static void expect(const char *text, const char *want) {
    if (!strstr(text, want)) {
        printf("# missing: [%s]\n# in:\n%s\n", want, text);
        fail();
    }
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

// Writes a finished 30-step metrics.h5 and returns its bytes (*len of them), for damaging.
static char *finished_metrics_bytes(size_t *len) {
    MetricsWriter *m = open_writer();
    write_steps(m, 0, 30);
    metrics_close(m);
    char *whole = test_read_file(g_metrics, len);
    assert_non_null(whole);
    return whole;
}

static void make_checkpoint(const char *name, int complete, int step) {
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/%s", g_dir, name);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(f >= 0);
    h5_attr_i64(f, "step", step);
    if (complete) h5_attr_string(f, "complete", "yes");
    H5Fclose(f);
}

static void test_summary_numbers(void **state) {
    MetricsWriter *m = open_writer();
    write_steps(m, 0, 30);
    const char *names[] = {"version", "greedy_reward", "greedy_pass", "sampled_reward", "sampled_pass", "completion_len"};
    double first[] = {0, 0.25, 0.125, 0.2, 0.1, 7.5}, last[] = {29, 0.75, 0.5, 0.6, 0.4, 9.0};
    metrics_write_row(m, 0, 0, names, first, 6);
    metrics_write_row(m, 0, 29, names, last, 6);
    metrics_close(m);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints", g_dir);
    mkdir(path, 0777);
    make_checkpoint("step_000010.h5", 1, 10);
    make_checkpoint("step_000020.h5", 0, 20);
    snprintf(path, sizeof path, "%s/checkpoints/step_000030.h5", g_dir);
    write_file(path, "not hdf5 at all", 15);
    snprintf(path, sizeof path, "%s/checkpoints/.step_000031.h5.tmp", g_dir);
    write_file(path, "", 0);
    snprintf(path, sizeof path, "%s/checkpoints/notes.txt", g_dir);
    write_file(path, "x", 1);

    ErrorBuf err = {{0}};
    int rc;
    char *text = report_text(g_dir, &rc, &err);
    assert_int_equal(rc, 0);
    expect(text, "environments: reverse");
    expect(text, "30 of 40 done (75%)");
    // Two starts: 40 s until step 19, then 5 + 2 * 9 = 23 s; 10 steps to go at 2 s.
    expect(text, "1m03s of wall time over 2 job starts; lately 2.0s a step, about 20.0s to go");
    // 11 points at round(k * 29 / 10); the average is over the last (30 + 5) / 10 = 3 steps.
    expect(text, "mean of the last 3 steps");
    expect(text, "         0     0.0000     0.0000\n");
    expect(text, "         3     0.0300     0.0200\n");  // (0.01 + 0.02 + 0.03) / 3
    expect(text, "        15     0.1500     0.1400\n");  // 14.5 rounds away from zero
    expect(text, "        29     0.2900     0.2800\n");
    assert_null(strstr(text, "        28     0.28"));  // only the sampled steps
    expect(text, "min 0.0000, max 0.2900, mean 0.1450 over 30 steps");
    expect(text, "reverse        last 0.2900, avg 0.2800");
    // Eval rows as written.
    expect(text, "eval (2 evaluations)");
    expect(text, "       0        0         0.2500       0.1250          0.2000        0.1000             7.5\n");
    expect(text, "      29       29         0.7500       0.5000          0.6000        0.4000             9.0\n");
    // Throughput: mean of 100..129 = 114.5.
    expect(text, "inference tokens/s   mean 114.5       min 100         max 129         last 129");
    expect(text, "off-policy steps     mean 0.500 (average of the per-step means), max 3");
    expect(text, "skipped steps        2 (steps 7, 9)");
    expect(text, "steps without loss   1 (NaN");
    // Checkpoints: sorted by step, each described.
    expect(text, "checkpoints in ");
    expect(text, ": 4 files\n");
    char *c10 = strstr(text, "step_000010.h5"), *c20 = strstr(text, "step_000020.h5"),
         *c30 = strstr(text, "step_000030.h5"), *c31 = strstr(text, ".step_000031.h5.tmp");
    assert_true(c10 && c20 && c30 && c31 && c10 < c20 && c20 < c30 && c30 < c31);
    expect(c10, "step 10       complete");
    expect(c20, "INCOMPLETE: no 'complete' attribute");
    expect(c30, "UNREADABLE");
    expect(c31, "partial: a write in progress");
    expect(text, "newest complete: step 10");
    assert_null(strstr(text, "notes.txt"));
    free(text);

    // The metrics file itself can be given instead of the directory.
    text = report_text(g_metrics, &rc, &err);
    assert_int_equal(rc, 0);
    expect(text, "30 of 40 done");
    expect(text, "newest complete: step 10");
    free(text);
}

// Runs `asyncrl report` (a separate process: HDF5 opens a file once per process) on the run
// while this process still holds the writer open.
static char *report_binary(void) {
    const char *bin = getenv("ASYNCRL_BIN");
    char cmd[700];
    snprintf(cmd, sizeof cmd, "%s report %s 2>&1", bin ? bin : "build/asyncrl", g_dir);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap);
    while ((n = fread(buf + len, 1, cap - len - 1, p)) > 0) len += n;
    buf[len] = '\0';
    if (pclose(p) != 0) {
        printf("# %s failed:\n%s\n", cmd, buf);
        free(buf);
        return NULL;
    }
    return buf;
}

static void test_while_writing(void **state) {
    const char *bin = getenv("ASYNCRL_BIN");
    if (access(bin ? bin : "build/asyncrl", X_OK) != 0) skip();
    MetricsWriter *m = open_writer();
    write_steps(m, 0, 5);
    char *text = report_binary();
    assert_non_null(text);
    expect(text, "5 of 40 done");
    expect(text, "         4     0.0400");
    expect(text, "checkpoints: none");
    free(text);
    write_steps(m, 5, 12);  // the reader sees rows appended since
    text = report_binary();
    assert_non_null(text);
    expect(text, "12 of 40 done");
    expect(text, "        11     0.1100");
    free(text);
    metrics_close(m);
}

static void expect_error(const char *path, const char *want) {
    ErrorBuf err = {{0}};
    int rc;
    char *text = report_text(path, &rc, &err);
    if (rc != -1 || !strstr(err.msg, want)) {
        printf("# %s: rc %d, error [%s], wanted [%s]\n# output:\n%s\n", path, rc, err.msg, want, text);
        fail();
    }
    free(text);
}

static void test_bad_files(void **state) {
    char path[512];
    snprintf(path, sizeof path, "%s/nonexistent", g_dir);
    expect_error(path, "no run directory or file");
    expect_error(g_dir, "no metrics file");  // a directory without metrics.h5
    write_file(g_metrics, "", 0);
    expect_error(g_dir, "is not an HDF5 file (0 bytes");
    unsigned char junk[4096];
    unsigned int seed = 1;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(rand_r(&seed) >> 8);
    write_file(g_metrics, junk, sizeof junk);
    expect_error(g_dir, "is not an HDF5 file (4096 bytes");

    // An HDF5 file that is not a metrics file, and one with a metric of the wrong shape.
    hid_t f = H5Fcreate(g_metrics, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    expect_error(g_dir, "has no /steps group");
    f = H5Fcreate(g_metrics, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "steps", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {3, 2};
    hid_t space = H5Screate_simple(2, dims, NULL);
    hid_t ds = H5Dcreate2(g, "reward_mean", H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(ds);
    H5Sclose(space);
    H5Gclose(g);
    H5Fclose(f);
    expect_error(g_dir, "steps/reward_mean is not a 1-D numeric dataset");

    // A real metrics file cut short, as by a full disk or a partial copy.
    size_t len;
    char *whole = finished_metrics_bytes(&len);
    write_file(g_metrics, whole, len / 2);
    expect_error(g_dir, "metrics.h5");
    write_file(g_metrics, whole, 512);
    expect_error(g_dir, "metrics.h5");
    free(whole);
}

// Damage at many places of a real file: every outcome is a summary or an error, never a crash
// (run under ASan by `make sanitize`).
static void test_damaged_anywhere(void **state) {
    size_t len;
    char *whole = finished_metrics_bytes(&len);
    int errors = 0, fine = 0;
    for (size_t at = 0; at + 32 < len; at += len / 64) {
        char *copy = malloc(len);
        memcpy(copy, whole, len);
        for (size_t k = 0; k < 32; k++) copy[at + k] = (char)(0xA5 ^ k);
        write_file(g_metrics, copy, len);
        free(copy);
        ErrorBuf err = {{0}};
        int rc;
        char *text = report_text(g_dir, &rc, &err);
        assert_true(rc == 0 || (rc == -1 && err.msg[0]));
        rc == 0 ? fine++ : errors++;
        free(text);
    }
    printf("# damaged copies: %d summaries, %d errors\n", fine, errors);
    assert_true(errors > 0);
    free(whole);
}

// The note on dropped groups: 4 groups trained a step (batch 32, groups of 8); in the first 40
// steps 2 dropped a step (no note), then 12 a step for 10 steps: the last max(10, 50 / 10) = 10
// steps average 12 > 4.
static void test_dropped_groups_note(void **state) {
    static const char *names[] = {"reward_mean", "groups_dropped"};
    static const char *cfg = "run = { max_steps = 100; }; orchestrator = { batch_size = 32; group_size = 8; };";
    MetricsWriter *m = metrics_open(g_metrics, names, 2, NULL, 0, cfg, "reverse", 0, -1);
    assert_non_null(m);
    for (int s = 0; s < 40; s++) metrics_write_step(m, s, names, (double[]){0.5, 2}, 2);
    metrics_close(m);
    ErrorBuf err = {{0}};
    int rc;
    char *text = report_text(g_dir, &rc, &err);
    assert_int_equal(rc, 0);
    expect(text, "groups_dropped       mean 2 ");
    assert_null(strstr(text, "note:"));
    free(text);
    m = metrics_open(g_metrics, names, 2, NULL, 0, NULL, "reverse", 0, METRICS_APPEND);  // (10 steps more)
    assert_non_null(m);
    for (int s = 40; s < 50; s++) metrics_write_step(m, s, names, (double[]){0.5, 12}, 2);
    metrics_close(m);
    text = report_text(g_dir, &rc, &err);
    assert_int_equal(rc, 0);
    expect(text, "note: over the last 10 steps, 12 groups a step were dropped (every sample got the same reward)\n"
                 "        for 4 trained");
    free(text);
}

// Job starts from timing/job_started: the second job's first row (its start-up and one step,
// 9 s) is later than the first job's last row (8 s), so elapsed_s alone shows no restart.
static void test_job_starts(void **state) {
    static const char *names[] = {"reward_mean", "timing/elapsed_s", "timing/job_started"};
    MetricsWriter *m = metrics_open(g_metrics, names, 3, NULL, 0, CONFIG, "reverse", 0, -1);
    assert_non_null(m);
    const double elapsed[] = {2, 4, 6, 8, 9, 11, 13}, started[] = {1.7e9, 1.7e9, 1.7e9, 1.7e9, 1.7e9 + 100.5,
                                                                   1.7e9 + 100.5, 1.7e9 + 100.5};
    for (int s = 0; s < 7; s++) metrics_write_step(m, s, names, (double[]){0.5, elapsed[s], started[s]}, 3);
    metrics_close(m);
    ErrorBuf err = {{0}};
    int rc;
    char *text = report_text(g_dir, &rc, &err);
    assert_int_equal(rc, 0);
    expect(text, "21.0s of wall time over 2 job starts; lately 2.0s a step");  // 8 + 13 s; (13 - 9) / 2
    free(text);
}

static int setup(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/asyncrl-test-report-%d", (int)getpid());
    snprintf(g_metrics, sizeof g_metrics, "%s/metrics.h5", g_dir);
    mkdir(g_dir, 0777);
    return 0;
}

static int teardown(void **state) {
    // Every HDF5 id the code opened is closed again (a file left open leaks its whole cache).
    ssize_t open_ids = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (open_ids != 0) fprintf(stderr, "# %zd HDF5 ids left open\n", open_ids);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 && open_ids == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_summary_numbers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_while_writing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_anywhere, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_groups_note, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_starts, setup, teardown),
    };
    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
