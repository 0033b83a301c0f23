// Filesystem helpers: mkdir -p, the run directory's lock, and reading a whole file.
#include "core/files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/config_types.h"

int make_dirs(const char *path, ErrorBuf *err) {
    char buf[CFG_STR_MAX + 64];
    const size_t n = strlen(path);
    if (n == 0) return error_set(err, "empty directory name");
    if (n >= sizeof buf) return error_set(err, "directory name too long (%zu characters): %.60s...", n, path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        const char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return error_set(err, "cannot create directory %s: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0) return error_set(err, "cannot use directory %s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return error_set(err, "%s exists and is not a directory", path);
    return 0;
}

// What an errno of a failed create or write of a run directory's file says to do ("" none).
static const char *storage_hint(int e) {
    if (e == EROFS || e == EACCES || e == EPERM) return " (run.output_dir must be writable by this job)";
    if (e == ENOSPC || e == EDQUOT) return " (the filesystem or your quota is full)";
    return "";
}

// The lock file this process holds (run_dir_lock) and its path, for run_dir_check.
static int g_lock_fd = -1;
static char g_lock_path[CFG_STR_MAX + 32];

// The error for a lock another process holds, naming it from the lock file; closes fd.
static int held_elsewhere(int fd, const char *dir, const char *path, ErrorBuf *err) {
    char holder[128] = "";
    const ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
    holder[n > 0 ? n : 0] = '\0';
    holder[strcspn(holder, "\n")] = '\0';
    close(fd);
    return error_set(err, "another job is writing to %s (%s holds %s): give this job its own run.output_dir, "
                          "or stop the other one first", dir, holder[0] ? holder : "a process", path);
}

int run_dir_busy(const char *dir, ErrorBuf *err) {
    char path[CFG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/.asyncrl.lock", dir);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) return held_elsewhere(fd, dir, path, err);
    close(fd);  // (releases the shared lock, if taken)
    return 0;
}

int run_dir_lock(const char *dir, int wait_s, int *unsupported, ErrorBuf *err) {
    char path[CFG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/.asyncrl.lock", dir);
    *unsupported = 0;
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        const int e = errno;
        return error_set(err, "cannot create %s: %s%s", path, strerror(e), storage_hint(e));
    }
    int locked = flock(fd, LOCK_EX | LOCK_NB) == 0;
    for (int waited = 0; !locked && errno == EWOULDBLOCK && waited < wait_s; waited++) {
        sleep(1);
        locked = flock(fd, LOCK_EX | LOCK_NB) == 0;
    }
    if (!locked) {
        const int e = errno;
        if (e == ENOLCK || e == ENOSYS || e == EOPNOTSUPP) {  // a filesystem without locks
            *unsupported = 1;
            g_lock_fd = fd;  // kept for run_dir_check
            snprintf(g_lock_path, sizeof g_lock_path, "%s", path);
            return 0;
        }
        if (e != EWOULDBLOCK) {
            close(fd);
            return error_set(err, "cannot lock %s: %s", path, strerror(e));
        }
        return held_elsewhere(fd, dir, path, err);
    }
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    char line[128];
    const int len = snprintf(line, sizeof line, "host %s pid %ld\n", host, (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)len, 0) != len) {
        const int e = errno;
        close(fd);
        return error_set(err, "cannot write %s: %s%s", path, strerror(e), storage_hint(e));
    }
    g_lock_fd = fd;
    snprintf(g_lock_path, sizeof g_lock_path, "%s", path);
    return 0;  // fd stays open (close-on-exec): the lock lasts until this process ends
}

int run_dir_check(ErrorBuf *err) {
    if (g_lock_fd < 0) return 0;
    struct stat held, now;
    if (fstat(g_lock_fd, &held) != 0) return error_set(err, "cannot stat the lock %s: %s", g_lock_path, strerror(errno));
    if (stat(g_lock_path, &now) != 0 || now.st_dev != held.st_dev || now.st_ino != held.st_ino)
        return error_set(err, "%s is gone or is another file: the run directory was deleted, moved or replaced while "
                              "this job ran",
                         g_lock_path);
    return 0;
}

char *file_read_all(const char *path, size_t max_bytes, size_t *len, ErrorBuf *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return error_set(err, "cannot open %s: %s", path, strerror(errno)), NULL;
    struct stat st = {0};
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return error_set(err, "%s is %s", path,
                         S_ISDIR(st.st_mode) ? "a directory, not a file" : "not a regular file"),
               NULL;
    }
    if ((unsigned long long)st.st_size > max_bytes) {
        fclose(f);
        return error_set(err, "%s is %lld bytes, more than the %zu this reader takes", path, (long long)st.st_size,
                         max_bytes),
               NULL;
    }
    const size_t size = (size_t)st.st_size;
    char *buf = xmalloc(size + 1);
    const size_t got = fread(buf, 1, size, f);
    fclose(f);
    if (got != size) {
        free(buf);
        return error_set(err, "could not read %s (%zu of %zu bytes)", path, got, size), NULL;
    }
    buf[size] = '\0';
    *len = size;
    return buf;
}

int file_commit(FILE *fp, int ok, const char *tmp, const char *path, ErrorBuf *err) {
    ok = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok = (fclose(fp) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        const int saved = errno;
        remove(tmp);
        return error_set(err, "cannot write %s: %s (disk full?)", path, strerror(saved));
    }
    return 0;
}

int file_is_hdf5(const char *path) {
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    const int ok = fread(head, 1, sizeof head, f) == sizeof head && memcmp(head, HDF5_SIGNATURE, 8) == 0;
    fclose(f);
    return ok;
}
