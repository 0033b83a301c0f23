// Fatal errors and checked allocation (see error.h). MPI is used only if it is running.
#include "core/error.h"

#include <errno.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_rank = -1;
static char g_role[32] = "main";

void identity_set(int rank, const char *role) {
    g_rank = rank;
    snprintf(g_role, sizeof g_role, "%s", role);
}
int identity_rank(void) { return g_rank; }
const char *identity_role(void) { return g_role; }

static int mpi_running(void) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    return initialized && !finalized;
}

__attribute__((noreturn)) static void end_job(int status) {
    fflush(stdout);
    fflush(stderr);
    if (mpi_running()) {
        int size = 1;
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        if (size > 1) MPI_Abort(MPI_COMM_WORLD, status);
        MPI_Finalize();
    }
    exit(status);
}

static void print_error(const char *file, int line, const char *hint, const char *fmt, va_list ap,
                        const char *suffix) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fprintf(stderr, "error [rank %d %s] %s:%d: %s%s\n", g_rank, g_role, file, line, msg,
            suffix ? suffix : "");
    if (hint && hint[0]) fprintf(stderr, "  hint: %s\n", hint);
}

void fatal_at(const char *file, int line, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    print_error(file, line, hint, fmt, ap, NULL);
    va_end(ap);
    end_job(1);
}

void fatal_errno_at(const char *file, int line, const char *hint, const char *fmt, ...) {
    char suffix[256];
    snprintf(suffix, sizeof suffix, ": %s", strerror(errno));
    va_list ap;
    va_start(ap, fmt);
    print_error(file, line, hint, fmt, ap, suffix);
    va_end(ap);
    end_job(1);
}

void die_user(const char *fmt, ...) {
    if (g_rank <= 0) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "error: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
    }
    fflush(stdout);
    fflush(stderr);
    if (mpi_running()) MPI_Finalize();
    exit(2);
}

void *xmalloc_at(const char *file, int line, size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) fatal_at(file, line, "the job needs more memory: lower batch or model sizes", "out of memory allocating %zu bytes", bytes);
    return p;
}

void *xcalloc_at(const char *file, int line, size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) fatal_at(file, line, "the job needs more memory: lower batch or model sizes", "out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc_at(const char *file, int line, void *ptr, size_t bytes) {
    void *p = realloc(ptr, bytes ? bytes : 1);
    if (!p) fatal_at(file, line, "the job needs more memory: lower batch or model sizes", "out of memory reallocating to %zu bytes", bytes);
    return p;
}

char *xstrdup_at(const char *file, int line, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc_at(file, line, n);
    memcpy(p, s, n);
    return p;
}

int error_set(ErrorBuf *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}
