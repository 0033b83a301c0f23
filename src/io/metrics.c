// metrics.h5 writer in SWMR mode (see metrics.h).
#include "io/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/log.h"
#include "io/h5util.h"

typedef struct {
    char name[64];
    hid_t ds;
    int warned;
} Column;

enum {
    R_STEP, R_GROUP, R_PROBLEM, R_ENV, R_SAMPLE, R_REWARD, R_ADVANTAGE, R_PROMPT_LEN, R_COMPLETION_LEN,
    R_VERSION_MIN, R_VERSION_MAX, R_FINISH, R_TOKEN_OFFSET, R_N_TOKENS, R_COUNT
};
static const char *ROLLOUT_COLUMNS[R_COUNT] = {"step", "group", "problem", "env", "sample", "reward", "advantage",
                                               "prompt_len", "completion_len", "version_min", "version_max",
                                               "finish", "token_offset", "n_tokens"};

static hid_t rollout_type(int column) {
    switch (column) {
        case R_GROUP: case R_PROBLEM: case R_TOKEN_OFFSET: return H5T_NATIVE_INT64;
        case R_REWARD: case R_ADVANTAGE: return H5T_NATIVE_DOUBLE;
        default: return H5T_NATIVE_INT32;
    }
}

struct MetricsWriter {
    hid_t file;
    Column *steps;
    int n_steps;
    struct {
        Column *cols;
        int n;
        int rl_steps;
    } tables[8];
    int n_tables;
    hid_t rollout[R_COUNT];
    hid_t tokens, token_versions;
    int keep_tokens;
    char unknown_warned[64];
};

static Column *find_column(Column *cols, int n, const char *name);

static hid_t open_or_create(hid_t file, const char *name, hid_t type, hsize_t chunk) {
    if (h5_exists(file, name)) return H5_CHECK(H5Dopen2(file, name, H5P_DEFAULT), "metrics.h5 may be damaged");
    return h5_create_extendable(file, name, type, chunk);
}

static Column *make_columns(hid_t file, const char *group, const char *const *names, int n) {
    Column *cols = xcalloc((size_t)(n ? n : 1), sizeof(Column));
    for (int i = 0; i < n; i++) {
        snprintf(cols[i].name, sizeof cols[i].name, "%s", names[i]);
        char path[128];
        snprintf(path, sizeof path, "/%s/%s", group, names[i]);
        cols[i].ds = open_or_create(file, path, H5T_NATIVE_DOUBLE, 256);
    }
    return cols;
}

// Cuts every dataset back to the state after `steps` steps (resume from a checkpoint).
static void cut_back(MetricsWriter *m, int64_t steps) {
    for (int i = 0; i < m->n_steps; i++)
        if ((int64_t)h5_length(m->steps[i].ds) > steps) h5_set_length(m->steps[i].ds, (hsize_t)steps);
    // Rollouts and evals: keep rows whose step is below `steps` (rows are in step order).
    hsize_t n = h5_length(m->rollout[R_STEP]);
    for (int c = 0; c < R_COUNT; c++)
        CHECK(h5_length(m->rollout[c]) == n, "move the damaged metrics.h5 away to start a fresh one",
              "metrics.h5 is damaged: its /rollouts columns differ in length (%llu rows of step, %llu of column %d)",
              (unsigned long long)n, (unsigned long long)h5_length(m->rollout[c]), c);
    int32_t *step = xmalloc(sizeof(int32_t) * (n ? n : 1));
    if (n) H5_CHECK(H5Dread(m->rollout[R_STEP], H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, step), "");
    hsize_t keep = 0;
    while (keep < n && step[keep] < steps) keep++;
    free(step);
    // Tokens of the kept rows end where the last kept row with tokens ends.
    int64_t token_keep = 0;
    if (keep > 0) {
        int64_t *off = xmalloc(sizeof(int64_t) * n);
        int32_t *len = xmalloc(sizeof(int32_t) * n);
        H5_CHECK(H5Dread(m->rollout[R_TOKEN_OFFSET], H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, off), "");
        H5_CHECK(H5Dread(m->rollout[R_N_TOKENS], H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, len), "");
        for (hsize_t i = 0; i < keep; i++)
            if (off[i] >= 0 && off[i] + len[i] > token_keep) token_keep = off[i] + len[i];
        free(off);
        free(len);
    }
    for (int c = 0; c < R_COUNT; c++) h5_set_length(m->rollout[c], keep);
    if ((int64_t)h5_length(m->tokens) > token_keep) h5_set_length(m->tokens, (hsize_t)token_keep);
    if ((int64_t)h5_length(m->token_versions) > token_keep) h5_set_length(m->token_versions, (hsize_t)token_keep);
    // Row tables: keep the rows of steps up to the checkpoint's (an evaluation at step N measured
    // policy vN, which the checkpoint holds; a resumed run does not evaluate it again).
    for (int t = 0; t < m->n_tables; t++) {
        Column *step_col = find_column(m->tables[t].cols, m->tables[t].n, "step");
        if (!step_col || !m->tables[t].rl_steps) continue;
        hsize_t ne = h5_length(step_col->ds);
        double *es = xmalloc(sizeof(double) * (ne ? ne : 1));
        if (ne) H5_CHECK(H5Dread(step_col->ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, es), "");
        hsize_t ke = 0;
        while (ke < ne && es[ke] <= (double)steps) ke++;  // (a row of step N: the checkpoint's policy)
        free(es);
        for (int j = 0; j < m->tables[t].n; j++)
            if (h5_length(m->tables[t].cols[j].ds) > ke) h5_set_length(m->tables[t].cols[j].ds, ke);
    }
}

MetricsWriter *metrics_open(const char *path, const char *const *step_names, int n_step,
                            const MetricsTable *tables, int n_tables, const char *config_text,
                            const char *env_names, int keep_tokens, int64_t resume_steps) {
    h5_quiet();
    MetricsWriter *m = xcalloc(1, sizeof *m);
    m->keep_tokens = keep_tokens;
    hid_t fapl = h5_fapl_write();
    H5_CHECK(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), "");
    H5_CHECK(H5Pset_fapl_sec2(fapl), "");
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        FATAL("move it away: a run keeps its metrics in this file", "%s is %s, not the run's metrics file", path,
              S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    int reopen = resume_steps >= 0 && access(path, F_OK) == 0;
    if (reopen && !file_is_hdf5(path))
        FATAL("move it away to start a fresh metrics file (the steps before the checkpoint are then NaN)",
              "%s is not an HDF5 file (damaged, or another file by that name): cannot resume its metrics", path);
    if (resume_steps > 0 && resume_steps != METRICS_APPEND && !reopen)
        LOG_WARN("%s is not there: this resumed run starts a new one, whose rows of the %lld steps before the "
                 "checkpoint are NaN", path, (long long)resume_steps);
    if (reopen) {
        m->file = H5Fopen(path, H5F_ACC_RDWR, fapl);
        if (m->file < 0 && h5_lock_failed()) FATAL(H5_LOCK_HINT, "cannot reopen metrics file %s for resume", path);
        if (m->file < 0) {
            // A job killed while writing leaves the SWMR "open for writing" flags set; clear them
            // as h5clear -s does (HDF5 1.10's clear_status_flags file-access property).
            hbool_t clear = 1;
            if (H5Pexist(fapl, "clear_status_flags") > 0 && H5Pset(fapl, "clear_status_flags", &clear) >= 0) {
                LOG_WARN("%s was not closed cleanly (the job was killed?): clearing its status flags", path);
                m->file = H5Fopen(path, H5F_ACC_RDWR, fapl);
            }
        }
        if (m->file < 0) {
            h5_print_stack();
            FATAL("the file may be open in another writer, or damaged: move it away to start a fresh one "
                  "(a crashed SWMR writer can also be cleared with `h5clear -s FILE`)",
                  "cannot reopen metrics file %s for resume", path);
        }
    } else {
        m->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        if (m->file < 0 && h5_lock_failed()) FATAL(H5_LOCK_HINT, "cannot create metrics file %s", path);
        if (m->file < 0) {
            h5_print_stack();
            FATAL("check that run.output_dir exists and is writable", "cannot create metrics file %s", path);
        }
    }
    H5Pclose(fapl);

    m->n_steps = n_step;
    m->steps = make_columns(m->file, "steps", step_names, n_step);
    CHECK(n_tables <= 8, "", "too many metrics tables");
    m->n_tables = n_tables;
    for (int t = 0; t < n_tables; t++) {
        m->tables[t].n = tables[t].n_columns;
        m->tables[t].rl_steps = tables[t].rl_steps;
        m->tables[t].cols = make_columns(m->file, tables[t].name, tables[t].columns, tables[t].n_columns);
    }
    for (int c = 0; c < R_COUNT; c++) {
        char p[64];
        snprintf(p, sizeof p, "/rollouts/%s", ROLLOUT_COLUMNS[c]);
        m->rollout[c] = open_or_create(m->file, p, rollout_type(c), 1024);
    }
    m->tokens = open_or_create(m->file, "/rollouts/tokens", H5T_NATIVE_INT32, 16384);
    m->token_versions = open_or_create(m->file, "/rollouts/token_versions", H5T_NATIVE_INT32, 16384);
    if (reopen) cut_back(m, resume_steps);

    hid_t root = H5_CHECK(H5Gopen2(m->file, "/", H5P_DEFAULT), "");
    if (config_text) h5_attr_string(root, "config", config_text);
    if (env_names) h5_attr_string(root, "env_names", env_names);
    if (!reopen) {
        char stamp[64];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", localtime(&now));
        h5_attr_string(root, "created", stamp);
    }
    H5Gclose(root);
    H5_CHECK(H5Fflush(m->file, H5F_SCOPE_GLOBAL), "the disk may be full");
    H5_CHECK(H5Fstart_swmr_write(m->file), "metrics.h5 could not switch to SWMR mode");
    return m;
}

static Column *find_column(Column *cols, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(cols[i].name, name) == 0) return &cols[i];
    return NULL;
}

static void write_row(MetricsWriter *m, Column *cols, int n_cols, hsize_t row, const char *const *names,
                      const double *values, int n) {
    for (int i = 0; i < n; i++) {
        Column *col = find_column(cols, n_cols, names[i]);
        if (!col) {
            if (strcmp(m->unknown_warned, names[i]) != 0) {
                LOG_WARN("metric '%s' was not declared when metrics.h5 was opened; it is not stored", names[i]);
                snprintf(m->unknown_warned, sizeof m->unknown_warned, "%s", names[i]);
            }
            continue;
        }
        hsize_t len = h5_length(col->ds);
        if (len < row) {  // fill skipped rows with NaN
            hsize_t gap = row - len;
            double *nan_fill = xmalloc(sizeof(double) * gap);
            for (hsize_t k = 0; k < gap; k++) nan_fill[k] = NAN;
            h5_write_at(col->ds, H5T_NATIVE_DOUBLE, nan_fill, len, gap);
            free(nan_fill);
        }
        h5_write_at(col->ds, H5T_NATIVE_DOUBLE, &values[i], row, 1);
    }
}

void metrics_write_step(MetricsWriter *m, int64_t step, const char *const *names, const double *values, int n) {
    write_row(m, m->steps, m->n_steps, (hsize_t)step, names, values, n);
    metrics_flush(m);
}

void metrics_write_row(MetricsWriter *m, int table, int64_t step, const char *const *names, const double *values,
                       int n) {
    CHECK(table >= 0 && table < m->n_tables, "", "no metrics table %d", table);
    Column *cols = m->tables[table].cols;
    int n_cols = m->tables[table].n;
    hsize_t row = 0;
    for (int i = 0; i < n_cols; i++) {
        hsize_t len = h5_length(cols[i].ds);
        if (len > row) row = len;
    }
    Column *step_col = find_column(cols, n_cols, "step");
    if (step_col) {
        double s = (double)step;
        h5_write_at(step_col->ds, H5T_NATIVE_DOUBLE, &s, row, 1);
    }
    write_row(m, cols, n_cols, row, names, values, n);
    // Columns not given this time get NaN so every column of the table has the same length.
    for (int i = 0; i < n_cols; i++) {
        if (h5_length(cols[i].ds) <= row) {
            double nan_value = NAN;
            h5_write_at(cols[i].ds, H5T_NATIVE_DOUBLE, &nan_value, row, 1);
        }
    }
    metrics_flush(m);
}

int64_t metrics_table_last_step(const MetricsWriter *m, int table) {
    CHECK(table >= 0 && table < m->n_tables, "", "no metrics table %d", table);
    const Column *step_col = find_column(m->tables[table].cols, m->tables[table].n, "step");
    const hsize_t n = step_col ? h5_length(step_col->ds) : 0;
    if (n == 0) return -1;
    double last;
    hsize_t at = n - 1, count = 1;
    hid_t file_space = H5Dget_space(step_col->ds), mem_space = H5Screate_simple(1, &count, NULL);
    H5_CHECK(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &at, NULL, &count, NULL), "");
    H5_CHECK(H5Dread(step_col->ds, H5T_NATIVE_DOUBLE, mem_space, file_space, H5P_DEFAULT, &last), "");
    H5Sclose(mem_space);
    H5Sclose(file_space);
    return isfinite(last) ? (int64_t)last : -1;
}

void metrics_write_rollouts(MetricsWriter *m, const RolloutRecord *recs, int n) {
    if (n <= 0) return;
    hsize_t base = h5_length(m->rollout[R_STEP]);
    int64_t token_base = (int64_t)h5_length(m->tokens);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)(recs[i].prompt_len + recs[i].completion_len);
    int32_t *i32 = xmalloc(sizeof(int32_t) * (size_t)n);
    int64_t *i64 = xmalloc(sizeof(int64_t) * (size_t)n);
    double *f64 = xmalloc(sizeof(double) * (size_t)n);
    for (int c = 0; c < R_COUNT; c++) {
        int64_t offset = token_base;
        for (int i = 0; i < n; i++) {
            const RolloutRecord *r = &recs[i];
            int32_t len = r->prompt_len + r->completion_len;
            switch (c) {
                case R_STEP: i32[i] = r->step; break;
                case R_GROUP: i64[i] = (int64_t)r->group; break;
                case R_PROBLEM: i64[i] = (int64_t)r->problem; break;
                case R_ENV: i32[i] = r->env; break;
                case R_SAMPLE: i32[i] = r->sample; break;
                case R_REWARD: f64[i] = r->reward; break;
                case R_ADVANTAGE: f64[i] = r->advantage; break;
                case R_PROMPT_LEN: i32[i] = r->prompt_len; break;
                case R_COMPLETION_LEN: i32[i] = r->completion_len; break;
                case R_VERSION_MIN: i32[i] = r->version_min; break;
                case R_VERSION_MAX: i32[i] = r->version_max; break;
                case R_FINISH: i32[i] = r->finish; break;
                case R_TOKEN_OFFSET: i64[i] = m->keep_tokens && r->tokens ? offset : -1; break;
                case R_N_TOKENS: i32[i] = m->keep_tokens && r->tokens ? len : 0; break;
            }
            if (m->keep_tokens && r->tokens) offset += len;
        }
        hid_t type = rollout_type(c);
        const void *buf = type == H5T_NATIVE_INT64 ? (const void *)i64 : type == H5T_NATIVE_DOUBLE ? (const void *)f64 : (const void *)i32;
        h5_write_at(m->rollout[c], type, buf, base, (hsize_t)n);
    }
    if (m->keep_tokens && total > 0) {
        int32_t *toks = xmalloc(sizeof(int32_t) * total), *vers = xmalloc(sizeof(int32_t) * total);
        size_t k = 0;
        for (int i = 0; i < n; i++) {
            if (!recs[i].tokens) continue;
            size_t len = (size_t)(recs[i].prompt_len + recs[i].completion_len);
            memcpy(toks + k, recs[i].tokens, sizeof(int32_t) * len);
            if (recs[i].token_versions) memcpy(vers + k, recs[i].token_versions, sizeof(int32_t) * len);
            else for (size_t j = 0; j < len; j++) vers[k + j] = -1;
            k += len;
        }
        h5_write_at(m->tokens, H5T_NATIVE_INT32, toks, (hsize_t)token_base, (hsize_t)k);
        h5_write_at(m->token_versions, H5T_NATIVE_INT32, vers, (hsize_t)token_base, (hsize_t)k);
        free(toks);
        free(vers);
    }
    free(i32);
    free(i64);
    free(f64);
    metrics_flush(m);
}

void metrics_flush(MetricsWriter *m) { H5_CHECK(H5Fflush(m->file, H5F_SCOPE_GLOBAL), "the disk may be full"); }

void metrics_close(MetricsWriter *m) {
    if (!m) return;
    for (int i = 0; i < m->n_steps; i++) H5Dclose(m->steps[i].ds);
    for (int t = 0; t < m->n_tables; t++) {
        for (int i = 0; i < m->tables[t].n; i++) H5Dclose(m->tables[t].cols[i].ds);
        free(m->tables[t].cols);
    }
    for (int c = 0; c < R_COUNT; c++) H5Dclose(m->rollout[c]);
    H5Dclose(m->tokens);
    H5Dclose(m->token_versions);
    H5Fclose(m->file);
    free(m->steps);
    free(m);
}
