// Checkpoint writing, discovery and reading (see checkpoint.h). Writing and reading never end
// the job on a bad file or a full disk: they return -1 with a message saying what failed.
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config.h"
#include "core/files.h"
#include "core/log.h"
#include "io/h5util.h"
#include "ops.h"

void checkpoint_state_free(CheckpointState *st) {
    free(st->pending);
    free(st->easy);
    free(st->hard);
    st->pending = st->easy = st->hard = NULL;
    st->n_pending = st->n_easy = st->n_hard = 0;
}

// ---------------------------------------------------------------------------------------------
// Writing

typedef struct {
    hid_t file;
    ErrorBuf *err;
    const char *path;
    int failed;
} Writer;

static int w_fail(Writer *w, const char *what) {
    if (!w->failed) error_set(w->err, "writing checkpoint %s failed at %s (is the disk full or the directory "
                              "not writable?)", w->path, what);
    w->failed = 1;
    return -1;
}

static void w_attr_i64(Writer *w, const char *name, int64_t v) {
    if (w->failed) return;
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(w->file, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &v) < 0) w_fail(w, name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
}

static void w_attr_f64(Writer *w, const char *name, double v) {
    if (w->failed) return;
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(w->file, name, H5T_NATIVE_DOUBLE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0 || H5Awrite(a, H5T_NATIVE_DOUBLE, &v) < 0) w_fail(w, name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
}

static void w_attr_str(Writer *w, const char *name, const char *v) {
    if (w->failed) return;
    hid_t type = H5Tcopy(H5T_C_S1);
    size_t n = strlen(v);
    H5Tset_size(type, n ? n : 1);
    H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(w->file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    const char *data = n ? v : "";
    char empty[1] = {0};
    if (a < 0 || H5Awrite(a, type, n ? data : empty) < 0) w_fail(w, name);
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
}

// Elements per chunk of a checkpoint dataset (4 MiB of floats): each chunk carries its own
// Fletcher-32 checksum, which HDF5 checks on every read.
#define CHUNK_ELEMENTS ((hsize_t)1 << 20)

// One dataset of `rank` (1 or 2) dims at `path` (intermediate groups created) from host data,
// stored in chunks of whole rows with a Fletcher-32 checksum each: a damaged file (a flipped
// bit on disk) then fails to read instead of loading wrong numbers. h5py and h5dump read
// such datasets as plain arrays (the filter is built into HDF5).
static void w_dataset(Writer *w, const char *path, hid_t type, int rank, const hsize_t *dims, const void *data) {
    if (w->failed) return;
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const hsize_t row = rank == 2 ? (dims[1] ? dims[1] : 1) : 1;
    hsize_t chunk[2] = {CHUNK_ELEMENTS / row, rank == 2 ? row : 1};
    if (chunk[0] > dims[0]) chunk[0] = dims[0];
    if (chunk[0] == 0) chunk[0] = 1;
    if (H5Pset_chunk(dcpl, rank, chunk) < 0 || H5Pset_fletcher32(dcpl) < 0) w_fail(w, path);
    hid_t ds = w->failed ? -1 : H5Dcreate2(w->file, path, type, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0 || H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) w_fail(w, path);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
}

// Every tensor of a params-layout device buffer under group/<name>.
static void w_tensors(Writer *w, const Model *m, const float *buffer, const char *group) {
    size_t max = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > max) max = m->tensors[i].numel;
    float *host = xmalloc(sizeof(float) * (max ? max : 1));
    for (int i = 0; i < m->n_tensors && !w->failed; i++) {
        const ModelTensor *t = &m->tensors[i];
        model_tensor_to_host(buffer, t, host);
        hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)(t->ndim == 2 ? t->shape[1] : 1)};
        char path[160];
        snprintf(path, sizeof path, "%s/%s", group, t->name);
        w_dataset(w, path, H5T_NATIVE_FLOAT, t->ndim, dims, host);
    }
    free(host);
}

static void w_model_shape(Writer *w, const ModelConfig *c) {
    w_attr_i64(w, "dim", c->dim);
    w_attr_i64(w, "n_layers", c->n_layers);
    w_attr_i64(w, "n_heads", c->n_heads);
    w_attr_i64(w, "n_kv_heads", c->n_kv_heads);
    w_attr_i64(w, "head_dim", c->head_dim);
    w_attr_i64(w, "hidden_dim", c->hidden_dim);
    w_attr_i64(w, "vocab_size", c->vocab_size);
    w_attr_i64(w, "max_seq_len", c->max_seq_len);
    w_attr_i64(w, "tied_embeddings", c->tied_embeddings);
    w_attr_i64(w, "qkv_bias", c->qkv_bias);
    w_attr_f64(w, "rope_theta", c->rope_theta);
    w_attr_f64(w, "norm_eps", c->norm_eps);
}

static void checkpoint_name(char *buf, size_t size, const char *out_dir, int64_t step, const char *suffix) {
    snprintf(buf, size, "%s/checkpoints/step_%06lld.h5%s", out_dir, (long long)step, suffix);
}

// Fault injection for tests: ASYNCRL_FAULT_KILL_CHECKPOINT=<step> kills the writing process
// with SIGKILL halfway through writing that step's checkpoint, as a node failure would.
static int fault_kill_at(int64_t step) {
    const char *v = getenv("ASYNCRL_FAULT_KILL_CHECKPOINT");
    return v && *v && atoll(v) == step;
}

// Writes len bytes to path (created 0644), retrying short writes; -1 with errno on failure.
static int write_all(const char *path, const void *data, size_t len, int kill_halfway) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    const char *p = data;
    size_t half = len / 2;
    while (len > 0) {
        if (kill_halfway && (size_t)(p - (const char *)data) >= half) {
            fsync(fd);
            raise(SIGKILL);
        }
        ssize_t n = write(fd, p, kill_halfway && len > half ? len - half : len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int saved = n < 0 ? errno : ENOSPC;
            close(fd);
            errno = saved;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    if (fsync(fd) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return close(fd);
}

static int fsync_path(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

typedef struct {
    int64_t step;
} Found;

// Lists out_dir/checkpoints/step_*.h5 (complete or not), sorted by step ascending.
static int list_checkpoints(const char *out_dir, Found **out) {
    char dir[CFG_STR_MAX + 32];
    snprintf(dir, sizeof dir, "%s/checkpoints", out_dir);
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long step;
        char tail[8];
        if (sscanf(e->d_name, "step_%lld.h%7s", &step, tail) != 2 || strcmp(tail, "5") != 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, sizeof(Found) * (size_t)cap);
        }
        char canonical[64];
        snprintf(canonical, sizeof canonical, "step_%06lld.h5", step);
        if (strcmp(canonical, e->d_name) != 0) continue;  // only names this program writes
        (*out)[n++].step = step;
    }
    closedir(d);
    for (int i = 1; i < n; i++)  // insertion sort by step
        for (int j = i; j > 0 && (*out)[j - 1].step > (*out)[j].step; j--) {
            Found t = (*out)[j];
            (*out)[j] = (*out)[j - 1];
            (*out)[j - 1] = t;
        }
    return n;
}

// 1 when path opens as HDF5 and carries the `complete` attribute.
static int is_complete(const char *path) {
    h5_quiet();
    hid_t fapl = h5_fapl_read();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) return 0;
    int ok = H5Aexists(f, "complete") > 0;
    H5Fclose(f);
    return ok;
}

static void prune(const char *out_dir, int keep) {
    if (keep <= 0) return;
    Found *list;
    int n = list_checkpoints(out_dir, &list);
    int complete = 0;
    for (int i = n - 1; i >= 0; i--) {
        char path[CFG_STR_MAX + 96];
        checkpoint_name(path, sizeof path, out_dir, list[i].step, "");
        if (!is_complete(path)) continue;
        if (++complete > keep) {
            if (unlink(path) == 0) LOG_INFO("removed old checkpoint %s (checkpoint.keep = %d)", path, keep);
        }
    }
    free(list);
}

int checkpoint_write(const char *out_dir, const Model *m, const Optimizer *opt, const CheckpointState *st,
                     const PolicySnapshot *history, int n_history, const char *config_text, int keep, char *path_out,
                     size_t path_size, ErrorBuf *err) {
    char dir[CFG_STR_MAX + 32], tmp[CFG_STR_MAX + 64], final[CFG_STR_MAX + 64];
    snprintf(dir, sizeof dir, "%s/checkpoints", out_dir);
    // The run directory is never made here: one that is gone was deleted or moved under the job.
    struct stat run_dir;
    if (stat(out_dir, &run_dir) != 0 || !S_ISDIR(run_dir.st_mode))
        return error_set(err, "the run directory %s is gone (deleted or moved while the job ran?)", out_dir);
    if (make_dirs(dir, err) != 0) return -1;
    checkpoint_name(tmp, sizeof tmp, out_dir, st->step, ".tmp");
    checkpoint_name(final, sizeof final, out_dir, st->step, "");
    // The file is built in memory (HDF5's core driver) and written out by write_all: a full disk
    // or an I/O error then never leaves HDF5 itself in a failed state.
    h5_quiet();
    unlink(tmp);
    Writer w = {.err = err, .path = tmp};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, (size_t)64 << 20, 0);
    w.file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (w.file < 0) return error_set(err, "cannot create the in-memory checkpoint image for %s", tmp);
    w_tensors(&w, m, m->params, "model");
    if (opt) {
        w_tensors(&w, m, opt->m, "optimizer/m");
        w_tensors(&w, m, opt->v, "optimizer/v");
    }
    for (int i = 0; i < n_history; i++) {
        char name[64];
        snprintf(name, sizeof name, "history/v_%06lld", (long long)history[i].version);
        hsize_t n = (hsize_t)m->n_params;
        w_dataset(&w, name, H5T_NATIVE_FLOAT, 1, &n, history[i].params);
    }
    hsize_t np = (hsize_t)st->n_pending;
    int64_t none = 0;
    w_dataset(&w, "orchestrator/pending", H5T_NATIVE_INT64, 1, &np, st->n_pending ? (const void *)st->pending : &none);
    hsize_t ne = (hsize_t)st->n_easy, nh = (hsize_t)st->n_hard;
    w_dataset(&w, "orchestrator/easy", H5T_NATIVE_INT64, 1, &ne, st->n_easy ? (const void *)st->easy : &none);
    w_dataset(&w, "orchestrator/hard", H5T_NATIVE_INT64, 1, &nh, st->n_hard ? (const void *)st->hard : &none);
    w_attr_i64(&w, "step", st->step);
    w_attr_i64(&w, "policy_version", st->step);
    w_attr_i64(&w, "optimizer_step", opt ? opt->step : st->optimizer_step);
    w_attr_i64(&w, "sft_done", st->sft_done);
    w_attr_i64(&w, "bad_in_row", st->bad_in_row);
    w_attr_i64(&w, "cursor", st->cursor);
    w_attr_i64(&w, "sft_cursor", st->sft_cursor);
    w_attr_i64(&w, "next_group", st->next_group);
    w_attr_i64(&w, "next_request", st->next_request);
    w_attr_i64(&w, "rr_rank", st->rr_rank);
    w_attr_i64(&w, "seed", st->seed);
    w_model_shape(&w, &m->config);
    w_attr_str(&w, "config", config_text ? config_text : "");
    w_attr_i64(&w, "complete", 1);  // last: a file without it is never resumed from
    void *image = NULL;
    ssize_t size = -1;
    if (!w.failed && H5Fflush(w.file, H5F_SCOPE_GLOBAL) >= 0) size = H5Fget_file_image(w.file, NULL, 0);
    if (!w.failed && size > 0) {
        image = xmalloc((size_t)size);
        if (H5Fget_file_image(w.file, image, (size_t)size) != size) size = -1;
    }
    if (!w.failed && size <= 0) w_fail(&w, "building the file image");
    H5Fclose(w.file);
    if (!w.failed && write_all(tmp, image, (size_t)size, fault_kill_at(st->step)) != 0) {
        error_set(err, "writing checkpoint %s failed: %s (is the disk full?)", tmp, strerror(errno));
        w.failed = 1;
    }
    free(image);
    if (!w.failed && rename(tmp, final) != 0) {
        error_set(err, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
        w.failed = 1;
    }
    if (w.failed) {
        unlink(tmp);
        return -1;
    }
    fsync_path(dir);
    if (path_out) snprintf(path_out, path_size, "%s", final);
    prune(out_dir, keep);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Finding

// What a failed read of a dataset means: its checksum failed, or HDF5 could not follow the file.
#define DAMAGED                                                                                    \
    "cannot be read: the file is damaged (a checksum failed or it is corrupt); use another checkpoint " \
    "(to resume from an earlier one: --set checkpoint.resume=STEP)"

// What a value out of range in a checkpoint means.
#define OUT_OF_RANGE                                                                                 \
    "is out of range: the file is damaged or was written by another program; use another checkpoint " \
    "(--set checkpoint.resume=STEP)"

// The newest complete checkpoint in out_dir/checkpoints (its step, -1 when none), with a
// warning for each newer one skipped when `warn`.
static int64_t newest_complete(const char *out_dir, int warn) {
    Found *list;
    const int n = list_checkpoints(out_dir, &list);
    int64_t newest = -1;
    for (int i = n - 1; i >= 0 && newest < 0; i--) {
        char p[CFG_STR_MAX + 96];
        checkpoint_name(p, sizeof p, out_dir, list[i].step, "");
        if (is_complete(p)) newest = list[i].step;
        else if (warn)
            LOG_WARN("skipping checkpoint %s: it is incomplete or unreadable (a job killed while writing it?)", p);
    }
    free(list);
    return newest;
}

int64_t checkpoint_newest(const char *out_dir) { return newest_complete(out_dir, 0); }

// A new folder out_dir/checkpoints/rolled_back_to_NNNNNN[_K] (into where), or -1 with err.
static int make_rollback_dir(const char *out_dir, int64_t step, char *where, size_t size, ErrorBuf *err) {
    for (int k = 1; k < 1000; k++) {
        char suffix[16] = "";
        if (k > 1) snprintf(suffix, sizeof suffix, "_%d", k);
        snprintf(where, size, "%s/checkpoints/rolled_back_to_%06lld%s", out_dir, (long long)step, suffix);
        if (mkdir(where, 0777) == 0) return 0;
        if (errno != EEXIST) return error_set(err, "cannot create %s: %s", where, strerror(errno));
    }
    return error_set(err, "%s/checkpoints holds 999 rolled_back_to_%06lld folders: remove some", out_dir,
                     (long long)step);
}

int checkpoint_set_aside_newer(const char *out_dir, int64_t step, char *where, size_t where_size, ErrorBuf *err) {
    Found *list;
    const int n = list_checkpoints(out_dir, &list);
    int moved = 0;
    for (int i = 0; i < n; i++) {
        if (list[i].step <= step) continue;
        if (moved == 0 && make_rollback_dir(out_dir, step, where, where_size, err) != 0) {
            moved = -1;
            break;
        }
        char from[CFG_STR_MAX + 96], to[2 * CFG_STR_MAX + 160];
        checkpoint_name(from, sizeof from, out_dir, list[i].step, "");
        snprintf(to, sizeof to, "%s/step_%06lld.h5", where, (long long)list[i].step);
        if (rename(from, to) != 0) {
            moved = error_set(err, "cannot move %s to %s: %s", from, to, strerror(errno));
            break;
        }
        moved++;
    }
    free(list);
    return moved;
}

int checkpoint_resolve(const char *out_dir, const char *resume, char *path, size_t path_size, ErrorBuf *err) {
    path[0] = '\0';
    if (strcmp(resume, "none") == 0) return 0;
    if (strcmp(resume, "latest") == 0) {
        const int64_t step = newest_complete(out_dir, 1);
        if (step >= 0) checkpoint_name(path, path_size, out_dir, step, "");
        return step >= 0;
    }
    long long step = atoll(resume);
    char p[CFG_STR_MAX + 96];
    checkpoint_name(p, sizeof p, out_dir, step, "");
    if (access(p, R_OK) != 0)
        return error_set(err, "checkpoint.resume = %s: %s does not exist (checkpoint.resume = \"latest\" takes the "
                         "newest one)", resume, p);
    if (!is_complete(p))
        return error_set(err, "checkpoint.resume = %s: %s is incomplete or damaged (no `complete` attribute): pick "
                         "another step or \"latest\"", resume, p);
    snprintf(path, path_size, "%s", p);
    return 1;
}

// ---------------------------------------------------------------------------------------------
// Reading

// A checkpoint is never written again once renamed into place: it is read without a file lock
// (h5_fapl_read), so reading works on filesystems without locks and beside any lock holder.
static hid_t open_checkpoint(const char *path, ErrorBuf *err) {
    h5_quiet();
    hid_t fapl = h5_fapl_read();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    struct stat st;
    if (f >= 0) {
        if (H5Aexists(f, "complete") <= 0) {
            error_set(err, "checkpoint %s is incomplete (no `complete` attribute)", path);
            H5Fclose(f);
            f = -1;
        }
    } else if (h5_lock_failed()) {
        error_set(err, "cannot open checkpoint %s: %s", path, H5_LOCK_HINT);
    } else if (stat(path, &st) != 0) {
        error_set(err, "cannot open checkpoint %s: %s", path, strerror(errno));
    } else if (S_ISDIR(st.st_mode)) {
        error_set(err, "checkpoint %s is a directory: a checkpoint is a file such as runs/NAME/checkpoints/"
                       "step_NNNNNN.h5 (a Hugging Face model directory is model.source = \"hf\")", path);
    } else if (access(path, R_OK) != 0) {
        error_set(err, "cannot open checkpoint %s: %s", path, strerror(errno));
    } else if (st.st_size < 8) {
        error_set(err, "checkpoint %s is truncated (%lld bytes): its write was cut short, or the file was damaged",
                  path, (long long)st.st_size);
    } else if (!file_is_hdf5(path)) {
        error_set(err, "%s is not a checkpoint (not an HDF5 file): a checkpoint is runs/NAME/checkpoints/"
                       "step_NNNNNN.h5 (a llama2.c .bin is model.source = \"llama2c\")", path);
    } else {
        error_set(err, "cannot open checkpoint %s: not a readable HDF5 file (truncated or damaged?)", path);
    }
    return f;
}

static int r_attr_i64(hid_t f, const char *path, const char *name, int64_t *v, ErrorBuf *err) {
    if (h5_read_attr_i64(f, name, v) != 0)
        return error_set(err, "checkpoint %s lacks the attribute '%s' (written by another program?)", path, name);
    return 0;
}

int checkpoint_read_config(const char *path, ModelConfig *c, ErrorBuf *err) {
    hid_t f = open_checkpoint(path, err);
    if (f < 0) return -1;
    int64_t v[10];
    const char *names[10] = {"dim", "n_layers", "n_heads", "n_kv_heads", "head_dim", "hidden_dim", "vocab_size",
                             "max_seq_len", "tied_embeddings", "qkv_bias"};
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++) rc = r_attr_i64(f, path, names[i], &v[i], err);
    double theta = 0, eps = 0;
    if (rc == 0 && (h5_read_attr_f64(f, "rope_theta", &theta) || h5_read_attr_f64(f, "norm_eps", &eps)))
        rc = error_set(err, "checkpoint %s lacks rope_theta / norm_eps", path);
    H5Fclose(f);
    if (rc) return -1;
    memset(c, 0, sizeof *c);
    c->dim = (int)v[0], c->n_layers = (int)v[1], c->n_heads = (int)v[2], c->n_kv_heads = (int)v[3];
    c->head_dim = (int)v[4], c->hidden_dim = (int)v[5], c->vocab_size = (int)v[6], c->max_seq_len = (int)v[7];
    c->tied_embeddings = (int)v[8], c->qkv_bias = (int)v[9], c->rope_theta = theta, c->norm_eps = eps;
    return model_config_resolve(c, err);
}

// A 1-D int64 dataset into a heap array.
static int read_ids(hid_t f, const char *path, const char *name, int64_t **out, int64_t *n_out, ErrorBuf *err) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return error_set(err, "checkpoint %s lacks /%s", path, name);
    if (!h5_is_1d(ds)) {
        H5Dclose(ds);
        return error_set(err, "checkpoint %s: /%s is not a 1-D list %s", path, name, DAMAGED);
    }
    hsize_t n = h5_length(ds);
    *n_out = (int64_t)n;
    *out = xmalloc(sizeof(int64_t) * (n ? n : 1));
    int rc = 0;
    if (n && H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0)
        rc = error_set(err, "checkpoint %s: /%s %s", path, name, DAMAGED);
    H5Dclose(ds);
    return rc;
}

// The counters of a checkpoint are never negative, and its step is the one in its file name
// (a checkpoint renamed or copied to another step's name would be resumed as that step).
static int check_state_ranges(const char *path, const CheckpointState *st, ErrorBuf *err) {
    const int64_t values[] = {st->step, st->optimizer_step, st->sft_done, st->bad_in_row, st->cursor,
                              st->sft_cursor, st->next_group, st->next_request, st->rr_rank};
    const char *names[] = {"step", "optimizer_step", "sft_done", "bad_in_row", "cursor",
                           "sft_cursor", "next_group", "next_request", "rr_rank"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        if (values[i] < 0)
            return error_set(err, "checkpoint %s: %s = %lld %s", path, names[i], (long long)values[i], OUT_OF_RANGE);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    long long named;
    char tail[8];
    if (sscanf(base, "step_%lld.h5%7s", &named, tail) == 1 && named != st->step)
        return error_set(err, "checkpoint %s holds step %lld, not the step %lld its name says: it was renamed or copied "
                         "there; give it back its name step_%06lld.h5",
                         path, (long long)st->step, named, (long long)st->step);
    return 0;
}

int checkpoint_read_state(const char *path, CheckpointState *st, char **config_text, ErrorBuf *err) {
    memset(st, 0, sizeof *st);
    hid_t f = open_checkpoint(path, err);
    if (f < 0) return -1;
    int rc = r_attr_i64(f, path, "step", &st->step, err) || r_attr_i64(f, path, "optimizer_step", &st->optimizer_step, err) ||
             r_attr_i64(f, path, "sft_done", &st->sft_done, err) || r_attr_i64(f, path, "bad_in_row", &st->bad_in_row, err) ||
             r_attr_i64(f, path, "cursor", &st->cursor, err) || r_attr_i64(f, path, "sft_cursor", &st->sft_cursor, err) ||
             r_attr_i64(f, path, "next_group", &st->next_group, err) ||
             r_attr_i64(f, path, "next_request", &st->next_request, err) ||
             r_attr_i64(f, path, "rr_rank", &st->rr_rank, err) || r_attr_i64(f, path, "seed", &st->seed, err)
                 ? -1 : 0;
    if (rc == 0) rc = check_state_ranges(path, st, err);
    if (rc == 0) rc = read_ids(f, path, "orchestrator/pending", &st->pending, &st->n_pending, err);
    if (rc == 0) rc = read_ids(f, path, "orchestrator/easy", &st->easy, &st->n_easy, err);
    if (rc == 0) rc = read_ids(f, path, "orchestrator/hard", &st->hard, &st->n_hard, err);
    if (rc == 0 && config_text) {
        *config_text = h5_read_attr_string(f, "config");
        if (!*config_text) rc = error_set(err, "checkpoint %s lacks its config text", path);
    }
    H5Fclose(f);
    if (rc) checkpoint_state_free(st);
    return rc;
}

// Reads group/<tensor> for every tensor of m into a params-layout device buffer.
static int read_tensors(hid_t f, const char *path, const Model *m, float *buffer, const char *group, ErrorBuf *err) {
    size_t max = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > max) max = m->tensors[i].numel;
    float *host = xmalloc(sizeof(float) * (max ? max : 1));
    int rc = 0;
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const ModelTensor *t = &m->tensors[i];
        char name[160];
        snprintf(name, sizeof name, "%s/%s", group, t->name);
        if (!h5_exists(f, name)) {
            rc = error_set(err, "checkpoint %s has no dataset /%s: it was written for a different model", path, name);
            break;
        }
        hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
        hid_t space = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[2] = {0, 0};
        int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
        if (rank >= 1 && rank <= 2) H5Sget_simple_extent_dims(space, dims, NULL);
        size_t numel = rank == 2 ? (size_t)(dims[0] * dims[1]) : rank == 1 ? (size_t)dims[0] : 0;
        if (rank != t->ndim || dims[0] != (hsize_t)t->shape[0] || numel != t->numel)
            rc = error_set(err, "checkpoint %s: /%s has shape %llux%llu, the model expects %dx%d: the checkpoint "
                           "is of a different model shape", path, name, (unsigned long long)dims[0],
                           (unsigned long long)(rank == 2 ? dims[1] : 1), t->shape[0], t->ndim == 2 ? t->shape[1] : 1);
        else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, host) < 0)
            rc = error_set(err, "checkpoint %s: /%s %s", path, name, DAMAGED);
        else
            model_tensor_from_host(buffer, t, host);
        if (space >= 0) H5Sclose(space);
        if (ds >= 0) H5Dclose(ds);
    }
    free(host);
    return rc;
}

static int same_shape(const ModelConfig *a, const ModelConfig *b, const char *path, ErrorBuf *err) {
    char want[256], got[256];
    model_config_describe(a, want, sizeof want);
    model_config_describe(b, got, sizeof got);
    if (a->dim != b->dim || a->n_layers != b->n_layers || a->n_heads != b->n_heads || a->n_kv_heads != b->n_kv_heads ||
        a->head_dim != b->head_dim || a->hidden_dim != b->hidden_dim || a->vocab_size != b->vocab_size ||
        a->tied_embeddings != b->tied_embeddings || a->qkv_bias != b->qkv_bias)
        return error_set(err, "checkpoint %s holds a different model (%s) than the config asks for (%s): resume with "
                         "the config the run started with, or start a new run.output_dir", path, got, want);
    // The same weights under another RoPE base or RMSNorm epsilon compute another function.
    if (a->rope_theta != b->rope_theta || a->norm_eps != b->norm_eps)
        return error_set(err, "checkpoint %s was trained with rope_theta = %g and norm_eps = %g, but the config asks "
                         "for rope_theta = %g and norm_eps = %g: resume with the values the run started with "
                         "(model.rope_theta, model.norm_eps), or start a new run.output_dir",
                         path, b->rope_theta, b->norm_eps, a->rope_theta, a->norm_eps);
    return 0;
}

int checkpoint_read_model(const char *path, Model *m, ErrorBuf *err) {
    ModelConfig c;
    if (checkpoint_read_config(path, &c, err) || same_shape(&m->config, &c, path, err)) return -1;
    hid_t f = open_checkpoint(path, err);
    if (f < 0) return -1;
    int rc = read_tensors(f, path, m, m->params, "model", err);
    H5Fclose(f);
    if (rc == 0) rc = model_check_finite(m, path, err);
    if (rc == 0) model_params_changed(m);
    return rc;
}

Model *checkpoint_load_model(const char *path, ErrorBuf *err) {
    ModelConfig c;
    if (checkpoint_read_config(path, &c, err) != 0) return NULL;
    Model *m = model_create(&c, err);
    if (m && checkpoint_read_model(path, m, err) != 0) {
        model_free(m);
        return NULL;
    }
    return m;
}

int checkpoint_read_tokenizer(const char *path, char *buf, size_t size, ErrorBuf *err) {
    hid_t f = open_checkpoint(path, err);
    if (f < 0) return -1;
    char *text = h5_read_attr_string(f, "config");
    H5Fclose(f);
    if (!text) return error_set(err, "checkpoint %s lacks its config text", path);
    Config cfg;
    const int rc = config_load_text(&cfg, text, path, NULL, 0, err);
    free(text);
    if (rc != 0) return -1;
    snprintf(buf, size, "%s", cfg.model.tokenizer);
    return 0;
}

int checkpoint_read_optimizer(const char *path, Optimizer *opt, const Model *m, ErrorBuf *err) {
    hid_t f = open_checkpoint(path, err);
    if (f < 0) return -1;
    int64_t step;
    int rc = r_attr_i64(f, path, "optimizer_step", &step, err);
    if (rc == 0 && !h5_exists(f, "optimizer/m")) rc = error_set(err, "checkpoint %s has no optimizer state", path);
    if (rc == 0) rc = read_tensors(f, path, m, opt->m, "optimizer/m", err);
    if (rc == 0) rc = read_tensors(f, path, m, opt->v, "optimizer/v", err);
    if (rc == 0) opt->step = (long)step;
    H5Fclose(f);
    return rc;
}

typedef struct {
    int64_t versions[64];
    int n;
} HistoryList;

static herr_t collect_history(hid_t group, const char *name, const H5L_info_t *info, void *data) {
    (void)group;
    (void)info;
    HistoryList *l = data;
    long long v;
    if (l->n < 64 && sscanf(name, "v_%lld", &v) == 1) l->versions[l->n++] = v;
    return 0;
}

int checkpoint_read_history(const char *path, size_t n_params, PolicySnapshot **out, int *n, ErrorBuf *err) {
    *out = NULL;
    *n = 0;
    hid_t f = open_checkpoint(path, err);
    if (f < 0) return -1;
    if (!h5_exists(f, "history")) {
        H5Fclose(f);
        return 0;
    }
    HistoryList l = {.n = 0};
    hid_t g = H5Gopen2(f, "history", H5P_DEFAULT);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_history, &l);
    int rc = 0;
    PolicySnapshot *snaps = xcalloc((size_t)(l.n ? l.n : 1), sizeof(PolicySnapshot));
    for (int i = 0; i < l.n && rc == 0; i++) {  // names are zero-padded, so in version order
        char name[64];
        snprintf(name, sizeof name, "v_%06lld", (long long)l.versions[i]);
        hid_t ds = H5Dopen2(g, name, H5P_DEFAULT);
        if (ds < 0 || h5_length(ds) != (hsize_t)n_params) {
            rc = error_set(err, "checkpoint %s: /history/%s is missing or of another size", path, name);
        } else {
            snaps[i].version = l.versions[i];
            snaps[i].params = xmalloc(sizeof(float) * n_params);
            if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, snaps[i].params) < 0)
                rc = error_set(err, "checkpoint %s: /history/%s %s", path, name, DAMAGED);
            *n = i + 1;
        }
        if (ds >= 0) H5Dclose(ds);
    }
    H5Gclose(g);
    H5Fclose(f);
    if (rc) {
        for (int i = 0; i < *n; i++) free(snaps[i].params);
        free(snaps);
        *n = 0;
        return -1;
    }
    *out = snaps;
    return 0;
}
