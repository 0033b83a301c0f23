// `asyncrl report RUN_DIR` (see report.h). metrics.h5 is opened as an HDF5 SWMR reader (so it
// can be read while the orchestrator writes it), falling back to a plain read-only open for a
// file that was not written in SWMR mode. Every HDF5 call is checked and every dataset's length
// is checked against the file's size before anything is allocated: a damaged file gives an
// error message naming the file and what to do, never a crash.
#include "io/report.h"

#include <dirent.h>
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "io/h5util.h"

enum { REPORT_POINTS = 10, REPORT_MAX_NAMES = 64, REPORT_MAX_CHECKPOINTS = 4096, REPORT_EVAL_ROWS = 12 };

typedef struct {
    double *v;  // (n,) values as float64, NaN where absent
    size_t n;
} Series;

typedef struct {
    size_t count;      // finite values
    double mean, min, max, sum;
    double last;       // last finite value
    size_t last_index;
} Stats;

typedef struct {
    const char *path;  // the metrics file
    hid_t file;
    int swmr;          // opened as a SWMR reader
    ErrorBuf *err;
} Reader;

// ---------------------------------------------------------------------------------------------
// Reading

static long long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static int open_metrics(Reader *r) {
    long long size = file_size(r->path);
    if (size < 0)
        return error_set(r->err, "no metrics file %s (%s): has the job started? It writes <run.output_dir>/metrics.h5",
                         r->path, strerror(errno));
    htri_t is_hdf5 = H5Fis_hdf5(r->path);
    if (is_hdf5 <= 0)
        return error_set(r->err, "%s is not an HDF5 file (%lld bytes, no HDF5 signature): it is damaged or not a "
                         "metrics file", r->path, size);
    r->swmr = 1;
    // A SWMR reader retries metadata whose checksum fails (the writer may be midway); HDF5's
    // default of 100 sleeping retries per object makes a damaged file take minutes.
    hid_t fapl = h5_fapl_read();
    H5Pset_metadata_read_attempts(fapl, 8);
    r->file = H5Fopen(r->path, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, fapl);
    if (r->file < 0) {
        r->swmr = 0;
        r->file = H5Fopen(r->path, H5F_ACC_RDONLY, fapl);
    }
    H5Pclose(fapl);
    if (r->file < 0)
        return error_set(r->err, "cannot open %s: it is damaged (a truncated copy?) or held by a writer that is not in "
                         "SWMR mode; if the job that wrote it was killed, `h5clear -s %s` clears its open mark",
                         r->path, r->path);
    return 0;
}

// Reads a 1-D numeric dataset as float64. 0 with *s filled, 1 when it does not exist, -1 with
// the error set when it exists but cannot be used.
static int read_series(Reader *r, const char *name, Series *s) {
    s->v = NULL;
    s->n = 0;
    if (!h5_exists(r->file, name)) return 1;
    hid_t ds = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (ds < 0) return error_set(r->err, "%s: cannot open dataset %s: the file is damaged", r->path, name);
    if (r->swmr) H5Drefresh(ds);
    int rc = -1;
    hid_t space = H5Dget_space(ds), type = H5Dget_type(ds);
    hsize_t dims[1] = {0};
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    size_t elem = type >= 0 ? H5Tget_size(type) : 0;
    if (space < 0 || type < 0 || H5Sget_simple_extent_ndims(space) != 1 || (cls != H5T_INTEGER && cls != H5T_FLOAT) ||
        elem == 0) {
        error_set(r->err, "%s: %s is not a 1-D numeric dataset: not a metrics file of this asyncrl version?", r->path,
                  name);
    } else if (H5Sget_simple_extent_dims(space, dims, NULL) < 0) {
        error_set(r->err, "%s: cannot read the length of %s: the file is damaged", r->path, name);
    } else if ((long double)dims[0] * elem > (long double)file_size(r->path)) {
        error_set(r->err, "%s: %s claims %llu rows, more than the file's %lld bytes can hold: the file is damaged",
                  r->path, name, (unsigned long long)dims[0], file_size(r->path));
    } else {
        s->n = (size_t)dims[0];
        s->v = xmalloc(sizeof(double) * (s->n ? s->n : 1));
        if (s->n && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, s->v) < 0) {
            error_set(r->err, "%s: cannot read %s: the file is damaged", r->path, name);
            free(s->v);
            s->v = NULL;
            s->n = 0;
        } else {
            rc = 0;
        }
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return rc;
}

static void series_free(Series *s) {
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static double series_at(const Series *s, size_t i) { return i < s->n ? s->v[i] : NAN; }

static Stats stats_of(const Series *s) {
    Stats st = {0, NAN, NAN, NAN, 0, NAN, 0};
    for (size_t i = 0; i < s->n; i++) {
        double x = s->v[i];
        if (!isfinite(x)) continue;
        if (st.count == 0) st.min = st.max = x;
        if (x < st.min) st.min = x;
        if (x > st.max) st.max = x;
        st.sum += x;
        st.last = x;
        st.last_index = i;
        st.count++;
    }
    if (st.count) st.mean = st.sum / (double)st.count;
    return st;
}

// Mean of the last `window` finite values at or before index i (NaN when there are none).
static double trailing_mean(const Series *s, size_t i, size_t window) {
    double sum = 0;
    size_t used = 0;
    for (size_t j = i + 1; j-- > 0 && used < window;) {
        double x = series_at(s, j);
        if (!isfinite(x)) continue;
        sum += x;
        used++;
    }
    return used ? sum / (double)used : NAN;
}

// A string attribute of `loc` (heap), or NULL: fixed-length (as h5_attr_string writes it) or
// variable-length (as h5py writes a Python str). The file's character set is kept
// (h5_read_attr_string asks HDF5 for ASCII, which it refuses to convert the UTF-8 strings to).
static char *read_string_attr(hid_t loc, const char *name) {
    if (H5Aexists(loc, name) <= 0) return NULL;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0) return NULL;
    hid_t type = H5Aget_type(attr), space = H5Aget_space(attr), mem = -1;
    char *out = NULL;
    if (type < 0 || space < 0 || H5Tget_class(type) != H5T_STRING || H5Sget_simple_extent_npoints(space) != 1) {
        // not a single string
    } else if (H5Tis_variable_str(type) > 0) {
        char *value = NULL;
        mem = H5Tcopy(type);
        if (mem >= 0 && H5Aread(attr, mem, &value) >= 0 && value) out = xstrdup(value);
        if (value) H5free_memory(value);
    } else {
        size_t n = H5Tget_size(type);
        mem = H5Tcopy(type);
        if (n < ((size_t)1 << 24) && mem >= 0 && H5Tset_size(mem, n + 1) >= 0 && H5Tset_strpad(mem, H5T_STR_NULLTERM) >= 0) {
            out = xcalloc(n + 2, 1);
            if (H5Aread(attr, mem, out) < 0) {
                free(out);
                out = NULL;
            }
        }
    }
    if (mem >= 0) H5Tclose(mem);
    if (space >= 0) H5Sclose(space);
    if (type >= 0) H5Tclose(type);
    H5Aclose(attr);
    return out;
}

typedef struct {
    char names[REPORT_MAX_NAMES][64];
    int n;
} NameList;

static herr_t collect_name(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    (void)group;
    (void)info;
    NameList *list = data;
    if (list->n < REPORT_MAX_NAMES && strlen(name) < sizeof list->names[0]) strcpy(list->names[list->n++], name);
    return 0;
}

// Names of the links in group `path` (e.g. the environments under steps/reward).
static NameList list_group(hid_t file, const char *path) {
    NameList list = {.n = 0};
    if (!h5_exists(file, path)) return list;
    hid_t g = H5Gopen2(file, path, H5P_DEFAULT);
    if (g < 0) return list;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_name, &list);
    H5Gclose(g);
    return list;
}

// ---------------------------------------------------------------------------------------------
// Formatting

static void format_duration(double seconds, char *buf, size_t size) {
    if (!isfinite(seconds) || seconds < 0) {
        snprintf(buf, size, "?");
        return;
    }
    long long s = (long long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, size, "%lldh%02lldm%02llds", s / 3600, s / 60 % 60, s % 60);
    else if (s >= 60) snprintf(buf, size, "%lldm%02llds", s / 60, s % 60);
    else snprintf(buf, size, "%.1fs", seconds);
}

// ---------------------------------------------------------------------------------------------
// Sections

// The run's config from the metrics file's config attribute (heap), or NULL when it is missing
// or does not parse.
static Config *read_config(hid_t file) {
    char *text = read_string_attr(file, "config");
    if (!text) return NULL;
    Config *cfg = xmalloc(sizeof *cfg);
    ErrorBuf err = {{0}};
    if (config_load_text(cfg, text, "metrics.h5 config attribute", NULL, 0, &err) != 0) {
        free(cfg);
        cfg = NULL;
    }
    free(text);
    return cfg;
}

// Rows in /steps: the longest of the per-step series (they can differ by the step in flight).
static size_t count_steps(Reader *r) {
    static const char *probe[] = {"steps/reward_mean", "steps/loss", "steps/timing/step_s", "steps/samples"};
    size_t n = 0;
    for (size_t i = 0; i < sizeof probe / sizeof probe[0]; i++) {
        Series s;
        if (read_series(r, probe[i], &s) == 0 && s.n > n) n = s.n;
        series_free(&s);
    }
    return n;
}

static void print_header(Reader *r, const char *run_dir, FILE *out, size_t steps, int max_steps) {
    char *created = read_string_attr(r->file, "created");
    char *envs = read_string_attr(r->file, "env_names");
    fprintf(out, "run %s\n", run_dir);
    fprintf(out, "  metrics    %s (created %s, environments: %s)%s\n", r->path, created ? created : "?",
            envs && envs[0] ? envs : "?", r->swmr ? "" : " [not a SWMR file: read as a closed file]");
    if (max_steps > 0)
        fprintf(out, "  steps      %zu of %d done (%.0f%%)\n", steps, max_steps, 100.0 * (double)steps / max_steps);
    else
        fprintf(out, "  steps      %zu done (run.max_steps unknown: the config attribute is missing or unreadable)\n", steps);
    free(created);
    free(envs);
}

// Wall time from timing/elapsed_s (seconds since the job started): the sum of each job's last
// value. A job starts where timing/job_started changes (files of older versions lack it: there,
// where elapsed_s decreases, which misses a resumed job that took longer to start than the
// steps it resumed over). The pace is the mean step-to-step increase over the last (up to 10)
// steps of the newest job.
static void print_time(Reader *r, FILE *out, size_t steps, int max_steps) {
    Series el, started;
    if (read_series(r, "steps/timing/elapsed_s", &el) != 0 || stats_of(&el).count == 0) {
        fprintf(out, "  time       no timings recorded yet\n");
        series_free(&el);
        return;
    }
    const int have_started = read_series(r, "steps/timing/job_started", &started) == 0 && stats_of(&started).count > 0;
    double total = 0, prev = NAN, prev_start = NAN, segment_end = 0;
    int starts = 0;
    size_t segment_first = 0, last = 0;
    for (size_t i = 0; i < el.n; i++) {
        double x = el.v[i];
        if (!isfinite(x)) continue;
        const double job = have_started ? series_at(&started, i) : NAN;
        const int restart = !isfinite(prev) || (isfinite(job) && isfinite(prev_start) ? job != prev_start : x < prev);
        if (restart) {
            total += segment_end;
            starts++;
            segment_first = i;
        }
        if (isfinite(job)) prev_start = job;
        segment_end = prev = x;
        last = i;
    }
    total += segment_end;
    size_t first = last >= segment_first + 10 ? last - 10 : segment_first;
    double pace = last > first && isfinite(el.v[first]) ? (el.v[last] - el.v[first]) / (double)(last - first) : NAN;
    char wall[32], step[32], eta[32];
    format_duration(total, wall, sizeof wall);
    fprintf(out, "  time       %s of wall time over %d job start%s", wall, starts, starts == 1 ? "" : "s");
    if (isfinite(pace)) {
        format_duration(pace, step, sizeof step);
        fprintf(out, "; lately %s a step", step);
        if (max_steps > 0 && (size_t)max_steps > steps) {
            format_duration(pace * (double)((size_t)max_steps - steps), eta, sizeof eta);
            fprintf(out, ", about %s to go", eta);
        }
    }
    fprintf(out, "\n");
    series_free(&el);
    series_free(&started);
}

static void print_reward(Reader *r, FILE *out) {
    Series reward;
    if (read_series(r, "steps/reward_mean", &reward) != 0 || stats_of(&reward).count == 0) {
        fprintf(out, "\nreward: no steps recorded yet\n");
        series_free(&reward);
        return;
    }
    size_t n = reward.n, window = n >= 20 ? (n + 5) / 10 : 2;  // about a tenth of the run
    Stats st = stats_of(&reward);
    fprintf(out, "\nreward (reward_mean per step; avg = mean of the last %zu steps)\n", window);
    fprintf(out, "  %8s  %9s  %9s\n", "step", "reward", "avg");
    size_t points = n <= REPORT_POINTS + 2 ? n : REPORT_POINTS + 1, prev = (size_t)-1;
    for (size_t k = 0; k < points; k++) {
        size_t i = points == n ? k : (size_t)llround((double)k * (double)(n - 1) / REPORT_POINTS);
        if (i == prev) continue;
        prev = i;
        fprintf(out, "  %8zu  %9.4f  %9.4f\n", i, reward.v[i], trailing_mean(&reward, i, window));
    }
    fprintf(out, "  min %.4f, max %.4f, mean %.4f over %zu steps\n", st.min, st.max, st.mean, st.count);
    NameList envs = list_group(r->file, "steps/reward");
    for (int e = 0; e < envs.n; e++) {
        char name[128];
        Series s;
        snprintf(name, sizeof name, "steps/reward/%s", envs.names[e]);
        if (read_series(r, name, &s) == 0 && s.n)
            fprintf(out, "  %-14s last %.4f, avg %.4f\n", envs.names[e], series_at(&s, s.n - 1),
                    trailing_mean(&s, s.n - 1, window));
        series_free(&s);
    }
    series_free(&reward);
}

// "name: mean M, min A, max B, last L" for one per-step metric, or nothing when absent.
static void print_metric_line(Reader *r, FILE *out, const char *label, const char *name) {
    Series s;
    if (read_series(r, name, &s) == 0) {
        Stats st = stats_of(&s);
        if (st.count)
            fprintf(out, "  %-20s mean %-11.4g min %-11.4g max %-11.4g last %.4g\n", label, st.mean, st.min, st.max,
                    st.last);
    }
    series_free(&s);
}

// A note when most sampled groups were dropped lately (zero advantage: every sample of the group
// got the same reward). Such a run wastes its rollouts and slows down; the orchestrator warns
// in its log, and this says it to whoever reads the run afterwards.
static void print_dropped_note(Reader *r, FILE *out, size_t steps, const Config *cfg) {
    Series dropped;
    if (!cfg || cfg->orchestrator.group_size <= 0 || read_series(r, "steps/groups_dropped", &dropped) != 0) return;
    const double trained = (double)cfg->orchestrator.batch_size / cfg->orchestrator.group_size;
    const size_t window = steps / 10 > 10 ? steps / 10 : 10;
    const double lately = dropped.n ? trailing_mean(&dropped, dropped.n - 1, window) : NAN;
    if (isfinite(lately) && lately > trained)
        fprintf(out,
                "  note: over the last %zu steps, %.0f groups a step were dropped (every sample got the same reward)\n"
                "        for %.0f trained: most rollouts carry no signal. The policy may have collapsed (low\n"
                "        entropy), or the task is too easy or too hard for it; orchestrator.easy_threshold and\n"
                "        hard_threshold set problems aside, a higher inference.temperature spreads the rewards.\n",
                window < dropped.n ? window : dropped.n, lately, trained);
    series_free(&dropped);
}

static void print_training(Reader *r, FILE *out, size_t steps, const Config *cfg) {
    fprintf(out, "\ntraining (over the steps that have each value)\n");
    print_metric_line(r, out, "loss", "steps/loss");
    print_metric_line(r, out, "entropy", "steps/entropy");
    print_metric_line(r, out, "grad_norm", "steps/grad_norm");
    print_metric_line(r, out, "lr", "steps/lr");
    print_metric_line(r, out, "completion_len_mean", "steps/completion_len_mean");
    print_metric_line(r, out, "truncated_frac", "steps/truncated_frac");
    print_metric_line(r, out, "groups_dropped", "steps/groups_dropped");
    print_metric_line(r, out, "groups_rescheduled", "steps/groups_rescheduled");
    print_dropped_note(r, out, steps, cfg);
}

static void print_throughput(Reader *r, FILE *out) {
    fprintf(out, "\nthroughput\n");
    print_metric_line(r, out, "inference tokens/s", "steps/timing/inference_tokens_per_s");
    print_metric_line(r, out, "trainer tokens/s", "steps/timing/trainer_tokens_per_s");
    print_metric_line(r, out, "step time (s)", "steps/timing/step_s");
    print_metric_line(r, out, "trainer step (s)", "steps/timing/trainer_s");
    print_metric_line(r, out, "trainer wait (s)", "steps/timing/trainer_wait_s");
    print_metric_line(r, out, "rollout wait (s)", "steps/timing/rollout_wait_s");
    print_metric_line(r, out, "weights bcast (s)", "steps/timing/weights_broadcast_s");
}

static void print_off_policy(Reader *r, FILE *out) {
    fprintf(out, "\noff-policy and masking\n");
    Series mean, max;
    int have_mean = read_series(r, "steps/off_policy_mean", &mean) == 0;
    int have_max = read_series(r, "steps/off_policy_max", &max) == 0;
    Stats a = stats_of(&mean), b = stats_of(&max);
    if ((have_mean && a.count) || (have_max && b.count))
        fprintf(out, "  off-policy steps     mean %.3f (average of the per-step means), max %.0f\n", a.mean, b.max);
    series_free(&mean);
    series_free(&max);
    print_metric_line(r, out, "mismatch_kl", "steps/mismatch_kl");
    print_metric_line(r, out, "masked_low", "steps/masked_low");
    print_metric_line(r, out, "masked_high", "steps/masked_high");
    print_metric_line(r, out, "masked_seq", "steps/masked_seq");
}

// Steps the trainer skipped (non-finite loss or gradient) and steps with a NaN loss.
static void print_skipped(Reader *r, FILE *out, size_t steps) {
    Series skipped, loss;
    read_series(r, "steps/skipped", &skipped);
    read_series(r, "steps/loss", &loss);
    size_t n_skipped = 0, n_nan = 0;
    char list[256] = "";
    size_t used = 0;
    for (size_t i = 0; i < skipped.n; i++) {
        if (!(isfinite(skipped.v[i]) && skipped.v[i] > 0)) continue;
        if (n_skipped < 12 && used < sizeof list - 16) used += (size_t)snprintf(list + used, sizeof list - used, "%s%zu", n_skipped ? ", " : "", i);
        n_skipped++;
    }
    for (size_t i = 0; i < steps && i < loss.n; i++)
        if (isnan(loss.v[i])) n_nan++;
    if (n_skipped)
        fprintf(out, "  skipped steps        %zu (steps %s%s): non-finite loss or gradient, no update\n", n_skipped, list,
                n_skipped > 12 ? ", ..." : "");
    else
        fprintf(out, "  skipped steps        none\n");
    if (n_nan) fprintf(out, "  steps without loss   %zu (NaN in /steps/loss: no trainer result recorded)\n", n_nan);
    series_free(&skipped);
    series_free(&loss);
}

static void print_eval(Reader *r, FILE *out) {
    static const char *cols[] = {"step", "version", "greedy_reward", "greedy_pass", "sampled_reward", "sampled_pass",
                                 "completion_len"};
    enum { N_COLS = sizeof cols / sizeof cols[0] };
    Series s[N_COLS];
    size_t rows = 0;
    for (int c = 0; c < N_COLS; c++) {
        char name[64];
        snprintf(name, sizeof name, "eval/%s", cols[c]);
        if (read_series(r, name, &s[c]) != 0) s[c].n = 0;
        if (c == 0) rows = s[c].n;
    }
    if (rows == 0) {
        fprintf(out, "\neval: none recorded\n");
    } else {
        fprintf(out, "\neval (%zu evaluations%s)\n", rows, rows > REPORT_EVAL_ROWS ? ", some shown" : "");
        fprintf(out, "  %8s %8s %14s %12s %15s %13s %15s\n", cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6]);
        size_t shown = rows <= REPORT_EVAL_ROWS ? rows : REPORT_EVAL_ROWS, prev = (size_t)-1;
        for (size_t k = 0; k < shown; k++) {
            size_t i = shown == rows ? k : (size_t)llround((double)k * (double)(rows - 1) / (double)(shown - 1));
            if (i == prev) continue;
            prev = i;
            fprintf(out, "  %8.0f %8.0f %14.4f %12.4f %15.4f %13.4f %15.1f\n", series_at(&s[0], i), series_at(&s[1], i),
                    series_at(&s[2], i), series_at(&s[3], i), series_at(&s[4], i), series_at(&s[5], i),
                    series_at(&s[6], i));
        }
    }
    for (int c = 0; c < N_COLS; c++) series_free(&s[c]);
}

static void print_sft(Reader *r, FILE *out) {
    Series loss;
    if (read_series(r, "sft/loss", &loss) == 0 && loss.n) {
        Stats st = stats_of(&loss);
        fprintf(out, "\nsft warm-up: %zu steps, loss %.4f (first) -> %.4f (last)\n", loss.n, series_at(&loss, 0), st.last);
    }
    series_free(&loss);
}

static void print_rollouts(Reader *r, FILE *out) {
    Series len;
    if (read_series(r, "rollouts/completion_len", &len) == 0 && len.n) {
        Stats st = stats_of(&len);
        fprintf(out, "  rollouts             %zu recorded, completion length mean %.1f, max %.0f tokens\n", len.n, st.mean,
                st.max);
    }
    series_free(&len);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

typedef struct {
    char name[256];
    long step;      // from the name
    int partial;    // a temporary file of a write in progress (or of a killed job)
} CheckpointFile;

static int compare_checkpoints(const void *a, const void *b) {
    const CheckpointFile *x = a, *y = b;
    if (x->step != y->step) return x->step < y->step ? -1 : 1;
    return strcmp(x->name, y->name);
}

// Recognises step_NNNNNN.h5 and the writer's temporary names (.step_NNNNNN.h5.tmp and the like).
static int parse_checkpoint_name(const char *name, CheckpointFile *c) {
    int used = 0;
    long step;
    const char *base = name[0] == '.' ? name + 1 : name;
    if (sscanf(base, "step_%ld%n", &step, &used) != 1 || step < 0) return 0;
    const char *rest = base + used;
    if (strlen(name) >= sizeof c->name) return 0;
    strcpy(c->name, name);
    c->step = step;
    c->partial = !(name == base && strcmp(rest, ".h5") == 0);
    return strncmp(rest, ".h5", 3) == 0;
}

static void describe_checkpoint(const char *dir, const CheckpointFile *c, FILE *out, long *newest_complete) {
    char path[4096 + 256];
    snprintf(path, sizeof path, "%s/%s", dir, c->name);
    long long size = file_size(path);
    fprintf(out, "  %-22s %9.1f MB  ", c->name, size >= 0 ? (double)size / 1e6 : 0.0);
    if (c->partial) {
        fprintf(out, "partial: a write in progress, or left by a job killed while writing (safe to delete when no job runs)\n");
        return;
    }
    hid_t fapl = h5_fapl_read();
    hid_t f = H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : -1;
    H5Pclose(fapl);
    if (f < 0) {
        fprintf(out, "UNREADABLE: not an HDF5 file or damaged; resume skips it\n");
        return;
    }
    int64_t step = -1;
    int complete = H5Aexists(f, "complete") > 0;
    int have_step = h5_read_attr_i64(f, "step", &step) == 0;
    H5Fclose(f);
    if (!complete) {
        fprintf(out, "INCOMPLETE: no 'complete' attribute (the write was interrupted); resume skips it\n");
        return;
    }
    if (have_step) fprintf(out, "step %-8lld complete\n", (long long)step);
    else fprintf(out, "complete (no step attribute)\n");
    if (c->step > *newest_complete) *newest_complete = c->step;
}

static void print_checkpoints(const char *run_dir, FILE *out) {
    char dir[4096 + 16];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(out, "\ncheckpoints: none (%s: %s)\n", dir, strerror(errno));
        return;
    }
    CheckpointFile *files = xmalloc(sizeof(CheckpointFile) * REPORT_MAX_CHECKPOINTS);
    int n = 0, more = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        CheckpointFile c;
        if (!parse_checkpoint_name(e->d_name, &c)) continue;
        if (n < REPORT_MAX_CHECKPOINTS) files[n++] = c;
        else more++;
    }
    closedir(d);
    qsort(files, (size_t)n, sizeof files[0], compare_checkpoints);
    fprintf(out, "\ncheckpoints in %s: %d file%s%s\n", dir, n, n == 1 ? "" : "s", more ? " (and more not shown)" : "");
    long newest = -1;
    for (int i = 0; i < n; i++) describe_checkpoint(dir, &files[i], out, &newest);
    if (newest >= 0)
        fprintf(out, "  newest complete: step %ld (checkpoint.resume = \"latest\" resumes from it)\n", newest);
    else if (n)
        fprintf(out, "  no complete checkpoint: checkpoint.resume = \"latest\" starts a fresh run\n");
    free(files);
}

// ---------------------------------------------------------------------------------------------

int report_print(const char *run_dir, FILE *out, ErrorBuf *err) {
    h5_quiet();
    struct stat st;
    if (stat(run_dir, &st) != 0)
        return error_set(err, "no run directory or file %s (%s): give run.output_dir of the run", run_dir, strerror(errno));
    char metrics_path[4096 + 16], dir[4096];
    if (S_ISDIR(st.st_mode)) {
        if (snprintf(dir, sizeof dir, "%s", run_dir) >= (int)sizeof dir) return error_set(err, "path too long: %s", run_dir);
        snprintf(metrics_path, sizeof metrics_path, "%s/metrics.h5", run_dir);
    } else {  // a metrics file given directly: its directory is the run's
        if (snprintf(metrics_path, sizeof metrics_path, "%s", run_dir) >= (int)sizeof metrics_path)
            return error_set(err, "path too long: %s", run_dir);
        const char *slash = strrchr(run_dir, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - run_dir) : 1, slash ? run_dir : ".");
    }
    Reader r = {.path = metrics_path, .file = -1, .err = err};
    if (open_metrics(&r) != 0) return -1;
    if (!h5_exists(r.file, "steps")) {
        H5Fclose(r.file);
        return error_set(err, "%s has no /steps group: it is not an asyncrl metrics file", metrics_path);
    }
    size_t steps = count_steps(&r);
    Config *cfg = read_config(r.file);
    const int max_steps = cfg ? cfg->run.max_steps : -1;
    err->msg[0] = '\0';
    print_header(&r, dir, out, steps, max_steps);
    print_time(&r, out, steps, max_steps);
    print_reward(&r, out);
    print_eval(&r, out);
    print_training(&r, out, steps, cfg);
    print_throughput(&r, out);
    print_off_policy(&r, out);
    print_skipped(&r, out, steps);
    print_rollouts(&r, out);
    print_sft(&r, out);
    print_checkpoints(dir, out);
    free(cfg);
    H5Fclose(r.file);
    // A dataset that could not be read leaves its message: the summary above lacks it.
    if (err->msg[0]) {
        fprintf(out, "\nwarning: %s\n", err->msg);
        return -1;
    }
    return 0;
}

int cmd_report(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: asyncrl report RUN_DIR\n  summary of a run from RUN_DIR/metrics.h5 and RUN_DIR/checkpoints "
               "(also while the job runs)\n");
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        if (argc == 2) fprintf(stderr, "error: unknown option '%s'\n", argv[1]);
        fprintf(stderr, "usage: asyncrl report RUN_DIR (run.output_dir of the run, or its metrics.h5)\n");
        return 2;
    }
    ErrorBuf err = {{0}};
    int rc = report_print(argv[1], stdout, &err);
    fflush(stdout);
    if (rc != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
