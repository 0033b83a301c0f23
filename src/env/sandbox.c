// Sandboxed runs of untrusted programs (see sandbox.h): probing the isolation layers, the
// supervisor and program processes, the seccomp filter, Landlock rules, cleanup.
//
// Process tree of one run:
//   caller --clone(ns flags)--> supervisor S (pid 1 of the PID namespace, or a subreaper)
//                                  --clone--> program P (drops to the sandbox uid, rlimits,
//                                             landlock, seccomp, execve interpreter)
// The caller only ever talks to S: SIGUSR1 asks S to kill everything and report; S writes a
// Report record to the report pipe when P is gone and every descendant reaped, then exits.
// Children are made with the raw clone system call and use only system calls until execve (no
// malloc, no stdio, no glibc set*id which would try to signal the caller's other threads).
#include "env/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define BASE_DIR_NAME "asyncrl-sandbox"
#define STOP_GRACE_S 1.0     // after SIGUSR1, the supervisor has this long before SIGKILL
#define REAP_RETRY_S 0.001   // the supervisor closed its pipe but is not a zombie yet
#define STDERR_KEEP (64 * 1024)

// ---------------------------------------------------------------------------------------------
// Small helpers

double sandbox_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// Like fork(), with namespace flags; the child runs on a copy of the caller's stack.
static pid_t raw_clone(unsigned long flags) { return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0); }

// snprintf that may truncate on purpose (messages and paths checked elsewhere).
__attribute__((format(printf, 3, 4))) static void fmt(char *dst, size_t size, const char *format, ...) {
    va_list ap;
    va_start(ap, format);
    vsnprintf(dst, size, format, ap);
    va_end(ap);
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static const char *const REASON_NAMES[SANDBOX_REASON_COUNT] = {
    "ok", "crashed", "killed_by_signal", "timeout", "memory", "output_limit", "file_limit", "setup_error",
};

const char *sandbox_reason_name(SandboxReason reason) {
    return (reason >= 0 && reason < SANDBOX_REASON_COUNT) ? REASON_NAMES[reason] : "unknown";
}

static const char *const LAYER_NAMES[] = {"rlimits", "uid", "seccomp", "netns", "pidns", "mntns", "landlock", "nofork"};

char *sandbox_layers_string(unsigned layers, char *buf, size_t size) {
    size_t at = 0;
    if (size) buf[0] = '\0';
    for (int i = 0; i < (int)(sizeof LAYER_NAMES / sizeof LAYER_NAMES[0]); i++) {
        if (!(layers & (1u << i))) continue;
        int n = snprintf(buf + at, size > at ? size - at : 0, "%s%s", at ? "," : "", LAYER_NAMES[i]);
        if (n > 0) at += (size_t)n;
        if (at >= size) break;
    }
    return buf;
}

void sandbox_config_defaults(SandboxConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->interpreter, sizeof cfg->interpreter, "/usr/bin/python3");
    snprintf(cfg->program_name, sizeof cfg->program_name, "main.py");
    snprintf(cfg->tmp_root, sizeof cfg->tmp_root, "/tmp");
    cfg->timeout_s = 5.0;
    cfg->memory_mb = 512;
    cfg->file_mb = 16;
    cfg->nproc = 16;
    cfg->nofile = 64;
    cfg->max_output_bytes = 1 << 16;
    cfg->uid_base = 0;  // auto
    cfg->uid_count = 4096;
}

// Splits cfg->interpreter into argv[0..n) inside `store` (a copy). Returns n, 0 if empty.
static int split_interpreter(const char *interpreter, char *store, size_t store_size, char **argv, int max) {
    snprintf(store, store_size, "%s", interpreter);
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(store, " \t", &save); t && n < max; t = strtok_r(NULL, " \t", &save)) argv[n++] = t;
    return n;
}

int sandbox_config_check(const SandboxConfig *cfg, ErrorBuf *err) {
    char store[SANDBOX_PATH_MAX];
    char *argv[SANDBOX_MAX_ARGS];
    int n = split_interpreter(cfg->interpreter, store, sizeof store, argv, SANDBOX_MAX_ARGS - 2);
    if (n == 0) return error_set(err, "sandbox: the interpreter is empty: give an absolute path like /usr/bin/python3");
    if (argv[0][0] != '/')
        return error_set(err, "sandbox: interpreter \"%s\" is not an absolute path: give one like /usr/bin/python3",
                         argv[0]);
    struct stat interp;
    if (access(argv[0], X_OK) != 0 || stat(argv[0], &interp) != 0)
        return error_set(err, "sandbox: interpreter %s is not executable: %s (install it, e.g. apt-get install python3)",
                         argv[0], strerror(errno));
    if (!S_ISREG(interp.st_mode))
        return error_set(err, "sandbox: interpreter %s is not a program file (a directory?): give one like "
                         "/usr/bin/python3", argv[0]);
    if (!cfg->program_name[0] || strchr(cfg->program_name, '/') || cfg->program_name[0] == '.')
        return error_set(err, "sandbox: program file name \"%s\" must be a plain file name like main.py",
                         cfg->program_name);
    if (cfg->tmp_root[0] != '/')
        return error_set(err, "sandbox: tmp_root \"%s\" is not an absolute path", cfg->tmp_root);
    if (!(cfg->timeout_s > 0 && cfg->timeout_s <= 86400))
        return error_set(err, "sandbox: timeout %g s is out of range (0, 86400]", cfg->timeout_s);
    if (cfg->memory_mb < 0 || cfg->file_mb < 1 || cfg->nproc < 1 || cfg->nofile < 8)
        return error_set(err, "sandbox: limits out of range (memory_mb >= 0, file_mb >= 1, nproc >= 1, nofile >= 8)");
    if (cfg->max_output_bytes < 1 || cfg->max_output_bytes > ((size_t)1 << 30))
        return error_set(err, "sandbox: max_output_bytes %zu is out of range [1, 2^30]", cfg->max_output_bytes);
    if (cfg->uid_count < 1 || (uint64_t)cfg->uid_base + cfg->uid_count > 0xFFFFFFFEull)
        return error_set(err, "sandbox: uid range %u + %u is invalid", cfg->uid_base, cfg->uid_count);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Seccomp: a hand-written BPF filter (no libseccomp).

#if defined(__x86_64__)
#define SC_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SC_ARCH AUDIT_ARCH_AARCH64
#endif

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SC_ARG0_LO offsetof(struct seccomp_data, args[0])
#else
#define SC_ARG0_LO (offsetof(struct seccomp_data, args[0]) + 4)
#endif

#define SC_MAX_INS 200
#define SC_NS_FLAGS \
    (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)

typedef struct {
    struct sock_filter ins[SC_MAX_INS];
    unsigned short n;
    unsigned short self_at[8];  // instructions comparing with the program's own pid (filter_set_self)
    unsigned short n_self;
} Filter;

// System calls the program never needs and that could reach outside the sandbox.
static const long DENIED_SYSCALLS[] = {
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot,
    SYS_unshare, SYS_setns, SYS_swapon, SYS_swapoff, SYS_reboot, SYS_kexec_load, SYS_kexec_file_load,
    SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_bpf, SYS_perf_event_open, SYS_userfaultfd,
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register, SYS_keyctl, SYS_add_key, SYS_request_key,
    SYS_acct, SYS_quotactl, SYS_open_by_handle_at, SYS_name_to_handle_at, SYS_fanotify_init, SYS_mount_setattr,
    SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick, SYS_syslog, SYS_vhangup,
    SYS_pidfd_getfd, SYS_kcmp, SYS_connect, SYS_bind, SYS_listen, SYS_accept, SYS_accept4, SYS_settimeofday,
    SYS_clock_settime, SYS_clock_adjtime, SYS_adjtimex,
    SYS_shmget, SYS_semget, SYS_msgget,  // System V IPC objects would outlive the program
#if defined(__x86_64__)
    SYS_iopl, SYS_ioperm, SYS_uselib, SYS_lookup_dcookie,
#endif
};

static void emit(Filter *f, unsigned short code, unsigned k, unsigned char jt, unsigned char jf) {
    if (f->n < SC_MAX_INS) f->ins[f->n++] = (struct sock_filter){code, jt, jf, k};
}
#define SC_RET(f, v) emit((f), BPF_RET | BPF_K, (v), 0, 0)
#define SC_ERRNO(e) (SECCOMP_RET_ERRNO | ((e) & SECCOMP_RET_DATA))

// Syscall nr only with the program's own pid as its first argument (the constant is set by
// filter_set_self in the program's process, before the filter is installed).
static void allow_only_self(Filter *f, long nr) {
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 4);
    emit(f, BPF_LD | BPF_W | BPF_ABS, SC_ARG0_LO, 0, 0);
    if (f->n_self < sizeof f->self_at / sizeof f->self_at[0]) f->self_at[f->n_self++] = f->n;
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1);
    SC_RET(f, SECCOMP_RET_ALLOW);
    SC_RET(f, SC_ERRNO(EPERM));
}

static void filter_set_self(Filter *f, pid_t self) {
    for (unsigned i = 0; i < f->n_self; i++) f->ins[f->self_at[i]].k = (unsigned)self;
}

// Builds the filter. Returns 0, or -1 when this architecture is not supported.
static int build_filter(Filter *f, int nofork) {
#ifndef SC_ARCH
    (void)f;
    (void)nofork;
    return -1;
#else
    f->n = f->n_self = 0;
    emit(f, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SC_ARCH, 1, 0);
    SC_RET(f, SECCOMP_RET_KILL_PROCESS);
    emit(f, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
#if defined(__x86_64__)
    emit(f, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, 0, 1);  // the x32 ABI
    SC_RET(f, SECCOMP_RET_KILL_PROCESS);
#endif
    for (size_t i = 0; i < sizeof DENIED_SYSCALLS / sizeof DENIED_SYSCALLS[0]; i++) {
        emit(f, BPF_JMP | BPF_JEQ | BPF_K, (unsigned)DENIED_SYSCALLS[i], 0, 1);
        SC_RET(f, SC_ERRNO(EPERM));
    }
    // No sockets at all: not TCP/UDP, not raw, netlink or Unix sockets to the host's services.
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 1);
    SC_RET(f, SC_ERRNO(EPERM));
    // socketpair only as AF_UNIX (it connects to nothing).
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_socketpair, 0, 4);
    emit(f, BPF_LD | BPF_W | BPF_ABS, SC_ARG0_LO, 0, 0);
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1);
    SC_RET(f, SECCOMP_RET_ALLOW);
    SC_RET(f, SC_ERRNO(EPERM));
    // clone: no namespaces; without the uid layer, threads only.
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, nofork ? 6 : 4);
    emit(f, BPF_LD | BPF_W | BPF_ABS, SC_ARG0_LO, 0, 0);
    emit(f, BPF_JMP | BPF_JSET | BPF_K, SC_NS_FLAGS, 0, 1);
    SC_RET(f, SC_ERRNO(EPERM));
    if (nofork) {
        emit(f, BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1);
        SC_RET(f, SECCOMP_RET_ALLOW);
        SC_RET(f, SC_ERRNO(EPERM));
    } else {
        SC_RET(f, SECCOMP_RET_ALLOW);
    }
    // clone3 passes its flags in memory the filter cannot read: ENOSYS makes libc use clone.
    emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
    SC_RET(f, SC_ERRNO(ENOSYS));
#if defined(__x86_64__)
    if (nofork) {
        emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_fork, 0, 1);
        SC_RET(f, SC_ERRNO(EPERM));
        emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_vfork, 0, 1);
        SC_RET(f, SC_ERRNO(EPERM));
    }
#endif
    if (nofork) {  // no uid of its own: the program runs as the caller's uid and signals only itself
        allow_only_self(f, SYS_kill);
        allow_only_self(f, SYS_tgkill);
        allow_only_self(f, SYS_rt_sigqueueinfo);
        allow_only_self(f, SYS_rt_tgsigqueueinfo);
        emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_tkill, 0, 1);
        SC_RET(f, SC_ERRNO(EPERM));
        emit(f, BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_send_signal, 0, 1);
        SC_RET(f, SC_ERRNO(EPERM));
    }
    SC_RET(f, SECCOMP_RET_ALLOW);
    return f->n < SC_MAX_INS ? 0 : -1;
#endif
}

static int install_filter(const Filter *f) {
    struct sock_fprog prog = {f->n, (struct sock_filter *)f->ins};
    return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog);
}

// ---------------------------------------------------------------------------------------------
// Landlock (ABI constants defined here: Debian 12's headers stop at ABI 2).

#define LL_FS_EXECUTE (1ull << 0)
#define LL_FS_WRITE_FILE (1ull << 1)
#define LL_FS_READ_FILE (1ull << 2)
#define LL_FS_READ_DIR (1ull << 3)
#define LL_FS_REFER (1ull << 13)
#define LL_FS_TRUNCATE (1ull << 14)
#define LL_NET_BIND_TCP (1ull << 0)
#define LL_NET_CONNECT_TCP (1ull << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ull << 0)
#define LL_SCOPE_SIGNAL (1ull << 1)

typedef struct {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
} LandlockRulesetAttr;

static int landlock_abi(void) {
    long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    return v < 0 ? 0 : (int)v;
}

static uint64_t landlock_fs_rights(int abi) {
    uint64_t r = (1ull << 13) - 1;  // ABI 1: execute .. make_sym
    if (abi >= 2) r |= LL_FS_REFER;
    if (abi >= 3) r |= LL_FS_TRUNCATE;
    return r;
}

// Directories the program may read (and execute from): the system, not the users' files.
static const char *const READ_DIRS[] = {"/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin",
                                        "/sbin", "/etc", "/dev", "/proc", NULL};

// ---------------------------------------------------------------------------------------------
// What the children need, prepared by the caller before clone.

enum {
    STEP_NONE, STEP_SETSID, STEP_SUBREAPER, STEP_MOUNT_PRIVATE, STEP_MOUNT_TMP, STEP_MKDIR, STEP_MOUNT_WORK,
    STEP_CHDIR, STEP_WRITE_PROGRAM, STEP_LANDLOCK_RULES, STEP_FORK, STEP_DUP, STEP_SETGROUPS, STEP_SETGID,
    STEP_SETUID, STEP_RLIMIT, STEP_NO_NEW_PRIVS, STEP_LANDLOCK, STEP_SECCOMP, STEP_EXEC, STEP_COUNT
};
static const char *const STEP_NAMES[STEP_COUNT] = {
    "?", "setsid", "prctl(PR_SET_CHILD_SUBREAPER)", "mount --make-rprivate /", "mount tmpfs over /tmp",
    "mkdir the working directory", "mount the working tmpfs", "chdir to the working directory",
    "write the program file", "landlock rules", "fork the program", "dup2 stdin/stdout/stderr", "setgroups",
    "setresgid", "setresuid", "setrlimit", "prctl(PR_SET_NO_NEW_PRIVS)", "landlock_restrict_self",
    "seccomp filter", "execve the interpreter",
};

enum { REPORT_SETUP = 1, REPORT_FINAL = 2 };
typedef struct {
    int32_t kind;
    int32_t step;     // REPORT_SETUP: which step failed, with errno in err
    int32_t err;
    int32_t status;   // REPORT_FINAL: wait status of the program
    int32_t stopped;  // the caller asked to stop before the program ended
    int64_t wall_ns;  // program start to exit
    struct rusage ru; // of the program
} Report;

static const char *const MASKED_DIRS[] = {"/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock", NULL};

typedef struct {
    unsigned layers;
    long uid;
    pid_t parent_pid;
    int report_w, out_w, err_w, in_fd;
    char workdir[SANDBOX_PATH_MAX];
    const char *program;
    size_t program_len;
    char program_name[64];
    char *argv[SANDBOX_MAX_ARGS];
    char argv_store[SANDBOX_PATH_MAX + 64];
    char *envp[8];
    char env_store[4][SANDBOX_PATH_MAX + 16];
    char mask_opts[64], work_opts[160];
    char interp_prefix[SANDBOX_PATH_MAX];  // extra readable directory ("" if none)
    int landlock_abi;
    struct rlimit lim_cpu, lim_as, lim_fsize, lim_nproc, lim_nofile;
    Filter filter;
} Launch;

// --- code run in the children: system calls only ---------------------------------------------

__attribute__((noreturn)) static void child_fail(const Launch *L, int step, int err) {
    Report r;
    memset(&r, 0, sizeof r);
    r.kind = REPORT_SETUP;
    r.step = step;
    r.err = err;
    write_all(L->report_w, &r, sizeof r);
    _exit(127);
}

static void close_range_fallback(unsigned lo, unsigned hi) {
    if (syscall(SYS_close_range, lo, hi, 0) == 0) return;
    struct rlimit rl;
    unsigned max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < max)
        max = (unsigned)rl.rlim_cur;
    for (unsigned fd = lo; fd <= hi && fd < max; fd++) close((int)fd);
}

// Closes every descriptor >= 3 except keep[0..n) (any order; -1 entries ignored).
static void close_all_except(int *keep, int n) {
    for (int i = 1; i < n; i++)  // insertion sort
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    unsigned lo = 3;
    for (int i = 0; i < n; i++) {
        if (keep[i] < (int)lo) continue;
        if ((unsigned)keep[i] > lo) close_range_fallback(lo, (unsigned)keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    close_range_fallback(lo, ~0u);
}

static int set_ids(long uid) {
    if (syscall(SYS_setgroups, 0, NULL) != 0) return STEP_SETGROUPS;
    if (syscall(SYS_setresgid, (gid_t)uid, (gid_t)uid, (gid_t)uid) != 0) return STEP_SETGID;
    if (syscall(SYS_setresuid, (uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) return STEP_SETUID;
    return 0;
}

// The real uid of process `pid` from /proc (-1 when it is gone or unreadable).
static long proc_uid(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    long uid = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Uid: %ld", &uid) == 1) break;
    fclose(f);
    return uid;
}

// Kills every process running as `uid` from this process, found in /proc: each through a pidfd
// taken before its uid is checked, so a pid reused meanwhile is never signalled. Rounds until
// one finds none (RLIMIT_NPROC bounds how many can be forked in between).
static void kill_uid_by_scan(long uid) {
    for (int round = 0; round < 64; round++) {
        DIR *d = opendir("/proc");
        if (!d) return;
        int found = 0;
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char *end;
            const long pid = strtol(e->d_name, &end, 10);
            if (*end || pid <= 1) continue;
            const int pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
            if (pidfd < 0) continue;
            if (proc_uid((pid_t)pid) == uid) {
                syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
                found = 1;
            }
            close(pidfd);
        }
        closedir(d);
        if (!found) return;
    }
}

// Kills every process running as `uid` (a helper with that uid sends kill(-1)); twice, so
// that a process being forked during the first sweep is caught by the second. Having that uid,
// the helper can be stopped by those processes (SIGSTOP): a stopped helper is killed, and the
// uid's processes are then found in /proc instead.
static void uid_sweep(long uid) {
    for (int round = 0; round < 2; round++) {
        pid_t h = raw_clone(0);
        if (h == 0) {
            if (set_ids(uid) == 0) kill(-1, SIGKILL);
            _exit(0);
        }
        if (h < 0) return;
        int status = 0;
        pid_t r;
        while ((r = waitpid(h, &status, __WALL | WUNTRACED)) < 0 && errno == EINTR) {
        }
        if (r == h && WIFSTOPPED(status)) {
            kill(h, SIGKILL);
            while (waitpid(h, NULL, __WALL) < 0 && errno == EINTR) {
            }
            kill_uid_by_scan(uid);
        }
    }
}

static int mkdir_p(const char *path, mode_t mode) {
    char buf[SANDBOX_PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    return 0;
}

static void setup_mounts(const Launch *L) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) child_fail(L, STEP_MOUNT_PRIVATE, errno);
    for (int i = 0; MASKED_DIRS[i]; i++) {
        struct stat st;
        if (stat(MASKED_DIRS[i], &st) != 0 || !S_ISDIR(st.st_mode)) continue;
        if (mount("tmpfs", MASKED_DIRS[i], "tmpfs", MS_NOSUID | MS_NODEV, L->mask_opts) != 0)
            child_fail(L, STEP_MOUNT_TMP, errno);
    }
    if (mkdir_p(L->workdir, 0711) != 0) child_fail(L, STEP_MKDIR, errno);
    if (mount("tmpfs", L->workdir, "tmpfs", MS_NOSUID | MS_NODEV, L->work_opts) != 0)
        child_fail(L, STEP_MOUNT_WORK, errno);
    if (chdir(L->workdir) != 0) child_fail(L, STEP_CHDIR, errno);
    int fd = open(L->program_name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
    if (fd < 0 || write_all(fd, L->program, L->program_len) != 0) child_fail(L, STEP_WRITE_PROGRAM, errno);
    close(fd);
    if (L->layers & SANDBOX_LAYER_PIDNS)  // this process's own /proc; the host's stays hidden
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

static int landlock_add_path(int ruleset, const char *path, uint64_t dir_rights, uint64_t file_rights) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return 0;  // absent on this system
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) == 0) {
        struct landlock_path_beneath_attr pb = {S_ISDIR(st.st_mode) ? dir_rights : file_rights, fd};
        rc = (int)syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
    }
    close(fd);
    return rc;
}

// The ruleset (in the working directory, after the mounts): read the system, write here.
static int build_landlock(const Launch *L) {
    int abi = L->landlock_abi;
    LandlockRulesetAttr attr = {landlock_fs_rights(abi), 0, 0};
    size_t size = sizeof(uint64_t);
    if (abi >= 4) attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP, size = 2 * sizeof(uint64_t);
    if (abi >= 6) attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL, size = 3 * sizeof(uint64_t);
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
    if (rs < 0) child_fail(L, STEP_LANDLOCK_RULES, errno);
    uint64_t read_dir = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR, read_file = LL_FS_EXECUTE | LL_FS_READ_FILE;
    for (int i = 0; READ_DIRS[i]; i++)
        if (landlock_add_path(rs, READ_DIRS[i], read_dir, read_file) != 0) child_fail(L, STEP_LANDLOCK_RULES, errno);
    if (L->interp_prefix[0] && landlock_add_path(rs, L->interp_prefix, read_dir, read_file) != 0)
        child_fail(L, STEP_LANDLOCK_RULES, errno);
    uint64_t null_rights = LL_FS_READ_FILE | LL_FS_WRITE_FILE | (abi >= 3 ? LL_FS_TRUNCATE : 0);
    if (landlock_add_path(rs, "/dev/null", null_rights, null_rights) != 0) child_fail(L, STEP_LANDLOCK_RULES, errno);
    uint64_t all = landlock_fs_rights(abi);
    uint64_t all_file = LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_WRITE_FILE | (abi >= 3 ? LL_FS_TRUNCATE : 0);
    if (landlock_add_path(rs, ".", all, all_file) != 0) child_fail(L, STEP_LANDLOCK_RULES, errno);
    return rs;
}

__attribute__((noreturn)) static void program_main(const Launch *L, int ruleset) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    setpgid(0, 0);
    if (dup2(L->in_fd, 0) < 0 || dup2(L->out_w, 1) < 0 || dup2(L->err_w, 2) < 0) child_fail(L, STEP_DUP, errno);
    close(L->in_fd);
    close(L->out_w);
    close(L->err_w);
    if (L->layers & SANDBOX_LAYER_UID) {
        int step = set_ids(L->uid);
        if (step) child_fail(L, step, errno);
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // reset by the uid change; the supervisor's death ends us
    }
    struct rlimit zero = {0, 0};
    if (setrlimit(RLIMIT_CORE, &zero) != 0 || setrlimit(RLIMIT_CPU, &L->lim_cpu) != 0 ||
        setrlimit(RLIMIT_FSIZE, &L->lim_fsize) != 0 || setrlimit(RLIMIT_NOFILE, &L->lim_nofile) != 0 ||
        (L->lim_as.rlim_cur != RLIM_INFINITY && setrlimit(RLIMIT_AS, &L->lim_as) != 0) ||
        ((L->layers & SANDBOX_LAYER_UID) && setrlimit(RLIMIT_NPROC, &L->lim_nproc) != 0) ||
        setrlimit(RLIMIT_MSGQUEUE, &zero) != 0)
        child_fail(L, STEP_RLIMIT, errno);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(L, STEP_NO_NEW_PRIVS, errno);
    if (ruleset >= 0) {
        if (syscall(SYS_landlock_restrict_self, ruleset, 0) != 0) child_fail(L, STEP_LANDLOCK, errno);
        close(ruleset);
    }
    if (L->layers & SANDBOX_LAYER_SECCOMP) {
        Filter f = L->filter;
        filter_set_self(&f, (pid_t)syscall(SYS_getpid));
        if (install_filter(&f) != 0) child_fail(L, STEP_SECCOMP, errno);
    }
    execve(L->argv[0], L->argv, L->envp);
    child_fail(L, STEP_EXEC, errno);
}

// Everything but the supervisor dies: the whole PID namespace, or the program's process group
// and every process of the sandbox uid.
static void kill_all(const Launch *L, pid_t program, int program_alive) {
    if (L->layers & SANDBOX_LAYER_PIDNS) {
        kill(-1, SIGKILL);
        return;
    }
    if (program_alive) {
        kill(-program, SIGKILL);
        kill(program, SIGKILL);
    }
    if (L->layers & SANDBOX_LAYER_UID) uid_sweep(L->uid);
}

__attribute__((noreturn)) static void supervisor_main(Launch *L) {
    sigset_t all, waitset;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &dfl, NULL);  // a caller ignoring SIGCHLD would make children auto-reaped
    int keep[4] = {L->report_w, L->out_w, L->err_w, L->in_fd};
    close_all_except(keep, 4);
    int pidns = (L->layers & SANDBOX_LAYER_PIDNS) != 0;
    if (setsid() < 0) child_fail(L, STEP_SETSID, errno);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!pidns) {
        if (getppid() != L->parent_pid) _exit(1);  // the caller is already gone
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) child_fail(L, STEP_SUBREAPER, errno);
    }
    if (L->layers & SANDBOX_LAYER_MNTNS) setup_mounts(L);
    else if (chdir(L->workdir) != 0) child_fail(L, STEP_CHDIR, errno);
    int ruleset = (L->layers & SANDBOX_LAYER_LANDLOCK) ? build_landlock(L) : -1;

    int64_t start = now_ns();
    pid_t program = raw_clone(0);
    if (program == 0) program_main(L, ruleset);
    if (program < 0) child_fail(L, STEP_FORK, errno);
    close(L->out_w);
    close(L->err_w);
    close(L->in_fd);
    if (ruleset >= 0) close(ruleset);

    sigemptyset(&waitset);
    sigaddset(&waitset, SIGCHLD);
    sigaddset(&waitset, SIGUSR1);
    Report r;
    memset(&r, 0, sizeof r);
    r.kind = REPORT_FINAL;
    int done = 0;
    while (!done) {
        siginfo_t si;
        int sig = sigwaitinfo(&waitset, &si);
        if (sig == SIGUSR1 && !r.stopped) {
            r.stopped = 1;
            kill_all(L, program, 1);
        }
        for (;;) {
            int status;
            struct rusage ru;
            pid_t w = wait4(-1, &status, WNOHANG | __WALL, &ru);
            if (w <= 0) break;
            if (w == program) {
                r.status = status;
                r.ru = ru;
                r.wall_ns = now_ns() - start;
                done = 1;
            }
        }
    }
    // Kill and reap every descendant. A sweep can be defeated once (the program's processes
    // may kill the sweeping helper, which shares their uid), so repeat until none is left; if
    // that never happens the caller's deadline ends this process and its namespace.
    for (;;) {
        kill_all(L, program, 0);
        pid_t w;
        while ((w = wait4(-1, NULL, WNOHANG | __WALL, NULL)) > 0) {
        }
        if (w < 0 && errno == ECHILD) break;
        struct timespec pause = {0, 2000000};
        nanosleep(&pause, NULL);
    }
    write_all(L->report_w, &r, sizeof r);
    _exit(0);
}

// ---------------------------------------------------------------------------------------------
// Probing which layers work here (once per process).

static pthread_mutex_t probe_mutex = PTHREAD_MUTEX_INITIALIZER;
static int probe_done;
static unsigned probe_layers;
static char probe_why[512];

// Runs fn in a child made with clone(flags); 1 when it exits with status 0.
static int probe_child(unsigned long flags, int (*fn)(void), int *clone_errno) {
    pid_t pid = raw_clone(flags);
    if (pid == 0) _exit(fn ? fn() : 0);
    if (pid < 0) {
        *clone_errno = errno;
        return 0;
    }
    *clone_errno = 0;
    int status;
    while (waitpid(pid, &status, __WALL) < 0)
        if (errno != EINTR) return 0;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int probe_mount(void) {
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return 1;
    return mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=1m") != 0;
}

static int probe_seccomp(void) {
    Filter f;
    if (build_filter(&f, 1) != 0) return 2;
    filter_set_self(&f, getpid());
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || install_filter(&f) != 0) return 1;
    errno = 0;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    return !(s < 0 && errno == EPERM);
}

static int probe_landlock(void) {
    LandlockRulesetAttr attr = {landlock_fs_rights(landlock_abi()), 0, 0};
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof(uint64_t), 0);
    if (rs < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 1;
    return syscall(SYS_landlock_restrict_self, rs, 0) != 0;
}

static void why_add(const char *fmt, const char *what, int err) {
    size_t at = strlen(probe_why);
    snprintf(probe_why + at, sizeof probe_why - at, fmt, at ? "; " : "", what, err ? strerror(err) : "");
}

unsigned sandbox_probe(char *why, size_t why_size) {
    pthread_mutex_lock(&probe_mutex);
    if (!probe_done) {
        unsigned l = SANDBOX_LAYER_RLIMITS;
        int e;
        probe_why[0] = '\0';
        if (geteuid() == 0) l |= SANDBOX_LAYER_UID;
        else why_add("%s%s: not running as root%s", "uid", 0);
        if (probe_child(0, probe_seccomp, &e)) l |= SANDBOX_LAYER_SECCOMP;
        else why_add("%s%s: cannot install a filter %s", "seccomp", e);
        struct { unsigned layer; unsigned long flags; const char *name; int (*fn)(void); } ns[] = {
            {SANDBOX_LAYER_NETNS, CLONE_NEWNET, "netns", NULL},
            {SANDBOX_LAYER_PIDNS, CLONE_NEWPID, "pidns", NULL},
            {SANDBOX_LAYER_MNTNS, CLONE_NEWNS, "mntns", probe_mount},
        };
        for (int i = 0; i < 3; i++) {
            if (probe_child(ns[i].flags, ns[i].fn, &e)) l |= ns[i].layer;
            else why_add(e ? "%s%s: clone: %s" : "%s%s: mount refused%s", ns[i].name, e);
        }
        if (landlock_abi() >= 1 && probe_child(0, probe_landlock, &e)) l |= SANDBOX_LAYER_LANDLOCK;
        else why_add("%s%s: not available in this kernel%s", "landlock", 0);
        probe_layers = l;
        probe_done = 1;
    }
    unsigned l = probe_layers;
    if (why && why_size) snprintf(why, why_size, "%s", probe_why);
    pthread_mutex_unlock(&probe_mutex);
    return l;
}

// True when uids [base, base + count) are mapped in this process's user namespace.
static int uids_mapped(uint32_t base, uint32_t count) {
    FILE *f = fopen("/proc/self/uid_map", "r");
    if (!f) return 1;  // no user namespaces in this kernel: everything is mapped
    unsigned long inside, outside, n;
    int ok = 0;
    while (fscanf(f, "%lu %lu %lu", &inside, &outside, &n) == 3)
        if (base >= inside && (uint64_t)base + count <= (uint64_t)inside + n) ok = 1;
    fclose(f);
    return ok;
}

int sandbox_uid_range(const SandboxConfig *cfg, uint32_t *base, uint32_t *count, ErrorBuf *err) {
    if (cfg->uid_base != 0) {
        if (!uids_mapped(cfg->uid_base, cfg->uid_count))
            return error_set(err,
                             "sandbox: uids %u..%u are not mapped in this user namespace (see /proc/self/uid_map): "
                             "set env.code.uid_base to a free range inside it, or 0 to choose one",
                             cfg->uid_base, cfg->uid_base + cfg->uid_count - 1);
        *base = cfg->uid_base;
        *count = cfg->uid_count;
        return 0;
    }
    // Auto: far above any real user; inside a container that maps only 65536 ids, Debian's
    // on-demand range 60000-64999.
    if (uids_mapped(SANDBOX_UID_AUTO_HIGH, cfg->uid_count)) {
        *base = SANDBOX_UID_AUTO_HIGH;
        *count = cfg->uid_count;
        return 0;
    }
    uint32_t n = cfg->uid_count < 4096 ? cfg->uid_count : 4096;
    if (uids_mapped(SANDBOX_UID_AUTO_LOW, n)) {
        *base = SANDBOX_UID_AUTO_LOW;
        *count = n;
        return 0;
    }
    return error_set(err, "sandbox: neither uids %u.. nor %u.. are mapped in this user namespace (see "
                     "/proc/self/uid_map): set env.code.uid_base to a free range inside it",
                     SANDBOX_UID_AUTO_HIGH, SANDBOX_UID_AUTO_LOW);
}

int sandbox_layers_for(const SandboxConfig *cfg, unsigned *layers, ErrorBuf *err) {
    unsigned l = (sandbox_probe(NULL, 0) & ~cfg->disable) | SANDBOX_LAYER_RLIMITS;
    uint32_t base, count;
    if ((l & SANDBOX_LAYER_UID) && sandbox_uid_range(cfg, &base, &count, err)) return -1;
    if (geteuid() == 0 && !(l & SANDBOX_LAYER_UID))
        return error_set(err, "sandbox: refusing to run untrusted programs as root without the uid layer");
    if (!(l & SANDBOX_LAYER_UID) && (l & SANDBOX_LAYER_SECCOMP)) l |= SANDBOX_LAYER_NOFORK;
    *layers = l;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Directories: <tmp_root>/asyncrl-sandbox (0711, ours) and the job directories inside it.

// Root's is <tmp_root>/asyncrl-sandbox; another user's <tmp_root>/asyncrl-sandbox-<uid>.
static int base_dir(const SandboxConfig *cfg, char *out, size_t size, ErrorBuf *err) {
    int n = geteuid() == 0 ? snprintf(out, size, "%s/%s", cfg->tmp_root, BASE_DIR_NAME)
                           : snprintf(out, size, "%s/%s-%u", cfg->tmp_root, BASE_DIR_NAME, (unsigned)geteuid());
    if (n < 0 || (size_t)n >= size - 64) return error_set(err, "sandbox: tmp_root %s is too long", cfg->tmp_root);
    if (mkdir(out, 0711) != 0 && errno != EEXIST)
        return error_set(err, "sandbox: cannot create %s: %s", out, strerror(errno));
    struct stat st;
    if (lstat(out, &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
        return error_set(err, "sandbox: %s is not a directory owned by uid %u: remove it or choose another tmp dir",
                         out, (unsigned)geteuid());
    if ((st.st_mode & 07777) != 0711 && chmod(out, 0711) != 0)
        return error_set(err, "sandbox: cannot chmod %s: %s", out, strerror(errno));
    return 0;
}

// Removes `name` in dirfd and everything below, without following symbolic links, making
// directories writable first. Deep trees are flattened into `top` to bound the recursion.
static void remove_tree_at(int dirfd, const char *name, int top, int depth, unsigned *counter) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return;
    for (int pass = 0; pass < 8; pass++) {
        fchmodat(dirfd, name, 0700, AT_SYMLINK_NOFOLLOW);
        int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) break;
        DIR *d = fdopendir(fd);
        if (!d) {
            close(fd);
            break;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            if (unlinkat(fd, e->d_name, 0) == 0) continue;
            if (depth < 48 || top < 0) {
                remove_tree_at(fd, e->d_name, top < 0 ? fd : top, depth + 1, counter);
            } else {  // too deep: move it up to the top and deal with it from there
                char flat[64];
                snprintf(flat, sizeof flat, ".flat-%u", (*counter)++);
                fchmodat(fd, e->d_name, 0700, AT_SYMLINK_NOFOLLOW);
                renameat(fd, e->d_name, top, flat);
            }
        }
        closedir(d);
        if (unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT) return;
    }
}

// Removes `name` in the open directory pfd and everything below it.
static void remove_tree_in(int pfd, const char *name) {
    unsigned counter = 0;
    for (int round = 0; round < 4; round++) {  // flattened subtrees are removed in the next round
        remove_tree_at(pfd, name, -1, 0, &counter);
        if (faccessat(pfd, name, F_OK, AT_SYMLINK_NOFOLLOW) != 0) break;
    }
}

// For paths of our own (the job directories under tmp_root, which only this uid can change).
static void remove_tree(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return;
    char parent[SANDBOX_PATH_MAX];
    size_t n = (size_t)(slash - path);
    if (n >= sizeof parent) return;
    memcpy(parent, path, n);
    parent[n] = '\0';
    int pfd = open(n ? parent : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) return;
    remove_tree_in(pfd, slash + 1);
    close(pfd);
}

// Without a private /tmp (mntns) or Landlock, the program could leave files in the world-
// writable directories: remove everything owned by its uid there (two levels deep).
static void sweep_owned_at(int dirfd, long uid, int depth) {
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if ((long)st.st_uid == uid) {
            // Relative to the directory already open, never by its path again: another sandbox
            // (another uid) that owns a directory on the way could swap it for a symbolic link
            // between the two, and this process (root) would remove what the link points to.
            remove_tree_in(dirfd, e->d_name);
        } else if (S_ISDIR(st.st_mode) && depth < 2 && (st.st_mode & S_IWOTH)) {
            int sub = openat(dirfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) sweep_owned_at(sub, uid, depth + 1);
        }
    }
    closedir(d);
}

static void sweep_owned(long uid) {
    static const char *const SWEPT_DIRS[] = {"/tmp", "/var/tmp", "/dev/shm", "/run/lock", NULL};
    for (int i = 0; SWEPT_DIRS[i]; i++) {
        int fd = open(SWEPT_DIRS[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) sweep_owned_at(fd, uid, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Slots

int sandbox_slot_acquire(const SandboxConfig *cfg, unsigned layers, SandboxSlot *slot, ErrorBuf *err) {
    char base[SANDBOX_PATH_MAX];
    slot->uid = -1;
    slot->lock_fd = -1;
    if (base_dir(cfg, base, sizeof base, err)) return -1;
    if (!(layers & SANDBOX_LAYER_UID)) return 0;
    uint32_t uid_base, uid_count;
    if (sandbox_uid_range(cfg, &uid_base, &uid_count, err)) return -1;
    for (uint32_t i = 0; i < uid_count; i++) {
        uint32_t uid = uid_base + i;
        char path[SANDBOX_PATH_MAX + 64];
        snprintf(path, sizeof path, "%s/uid-%u.lock", base, uid);
        int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0) return error_set(err, "sandbox: cannot open %s: %s", path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            continue;
        }
        slot->uid = uid;
        slot->lock_fd = fd;
        uid_sweep(uid);  // whatever a crashed previous owner left running
        char prefix[64];
        int plen = snprintf(prefix, sizeof prefix, "job-%u-", uid);
        DIR *d = opendir(base);
        if (d) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strncmp(e->d_name, prefix, (size_t)plen) != 0) continue;
                fmt(path, sizeof path, "%s/%s", base, e->d_name);
                remove_tree(path);
            }
            closedir(d);
        }
        return 0;
    }
    return error_set(err, "sandbox: all %u sandbox uids from %u are in use (lock files in %s): raise the uid count "
                     "or run fewer sandboxes", uid_count, uid_base, base);
}

void sandbox_slot_release(SandboxSlot *slot) {
    if (slot->lock_fd >= 0) close(slot->lock_fd);
    slot->lock_fd = -1;
    slot->uid = -1;
}

// ---------------------------------------------------------------------------------------------
// Jobs

typedef struct {
    char *data;
    size_t len, cap, limit;  // kept bytes, allocated, most kept
    size_t total;            // bytes the program wrote
    int truncated;
} OutBuf;

struct SandboxJob {
    SandboxConfig cfg;
    unsigned layers;
    long uid;
    pid_t pid;                      // the supervisor; -1 once reaped
    int report_fd, out_fd, err_fd;  // our ends; -1 when closed
    int report_eof;
    char workdir[SANDBOX_PATH_MAX];
    double start, deadline, kill_deadline;
    int stop_sent, killed_hard, finished;
    SandboxReason stop_reason;
    OutBuf out, err;
    Report setup, final;
    int have_setup, have_final;
    int sup_status;                 // wait status of the supervisor
    char detail[256];               // a failure before the supervisor ran
    Launch launch;
};

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void job_fail(SandboxJob *job, const char *format, const char *what, int err) {
    fmt(job->detail, sizeof job->detail, format, what, strerror(err));
    job->finished = 1;
}

static void prepare_launch(SandboxJob *job, const char *program, size_t program_len) {
    Launch *L = &job->launch;
    const SandboxConfig *cfg = &job->cfg;
    L->layers = job->layers;
    L->uid = job->uid;
    L->parent_pid = getpid();
    snprintf(L->workdir, sizeof L->workdir, "%s", job->workdir);
    L->program = program;
    L->program_len = program_len;
    snprintf(L->program_name, sizeof L->program_name, "%s", cfg->program_name);
    int n = split_interpreter(cfg->interpreter, L->argv_store, sizeof L->argv_store, L->argv, SANDBOX_MAX_ARGS - 2);
    L->argv[n++] = L->program_name;
    L->argv[n] = NULL;
    snprintf(L->env_store[0], sizeof L->env_store[0], "HOME=%s", job->workdir);
    snprintf(L->env_store[1], sizeof L->env_store[1], "TMPDIR=%s", job->workdir);
    snprintf(L->env_store[2], sizeof L->env_store[2], "PATH=/usr/local/bin:/usr/bin:/bin");
    snprintf(L->env_store[3], sizeof L->env_store[3], "LANG=C.UTF-8");
    for (int i = 0; i < 4; i++) L->envp[i] = L->env_store[i];
    L->envp[4] = "PYTHONHASHSEED=0";
    L->envp[5] = "PYTHONDONTWRITEBYTECODE=1";
    L->envp[6] = NULL;
    snprintf(L->mask_opts, sizeof L->mask_opts, "size=%dm,nr_inodes=1024,mode=1777", cfg->file_mb);
    long owner = job->uid >= 0 ? job->uid : (long)geteuid();
    snprintf(L->work_opts, sizeof L->work_opts, "size=%dm,nr_inodes=4096,mode=0700,uid=%ld,gid=%ld", cfg->file_mb,
             owner, owner);
    // The interpreter's installation prefix (e.g. /opt/python for /opt/python/bin/python3),
    // readable under Landlock unless it is already covered or would open up "/".
    L->interp_prefix[0] = '\0';
    char real[PATH_MAX];
    if (realpath(L->argv[0], real)) {
        for (int up = 0; up < 2; up++) {
            char *slash = strrchr(real, '/');
            if (slash) *slash = '\0';
        }
        int covered = real[0] == '\0';
        for (int i = 0; READ_DIRS[i] && !covered; i++) {
            size_t len = strlen(READ_DIRS[i]);
            covered = strncmp(real, READ_DIRS[i], len) == 0 && (real[len] == '\0' || real[len] == '/');
        }
        if (!covered && strlen(real) < sizeof L->interp_prefix) snprintf(L->interp_prefix, sizeof L->interp_prefix, "%s", real);
    }
    L->landlock_abi = (job->layers & SANDBOX_LAYER_LANDLOCK) ? landlock_abi() : 0;
    rlim_t cpu = (rlim_t)ceil(cfg->timeout_s);
    if (cpu < 1) cpu = 1;
    L->lim_cpu = (struct rlimit){cpu, cpu + 1};
    L->lim_as.rlim_cur = L->lim_as.rlim_max = cfg->memory_mb > 0 ? (rlim_t)cfg->memory_mb << 20 : RLIM_INFINITY;
    L->lim_fsize = (struct rlimit){(rlim_t)cfg->file_mb << 20, (rlim_t)cfg->file_mb << 20};
    L->lim_nproc = (struct rlimit){(rlim_t)cfg->nproc, (rlim_t)cfg->nproc};
    struct rlimit cur;
    rlim_t nofile = (rlim_t)cfg->nofile;
    if (getrlimit(RLIMIT_NOFILE, &cur) == 0 && cur.rlim_max != RLIM_INFINITY && cur.rlim_max < nofile)
        nofile = cur.rlim_max;
    L->lim_nofile = (struct rlimit){nofile, nofile};
    if (job->layers & SANDBOX_LAYER_SECCOMP) build_filter(&L->filter, (job->layers & SANDBOX_LAYER_NOFORK) != 0);
}

// Descriptors 0-2 must be taken, or a pipe could land there and be clobbered by the dup2s.
static void ensure_std_fds(void) {
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
            int n = open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd) close(n);  // cannot happen: open takes the lowest free number
        }
}

SandboxJob *sandbox_job_start(const SandboxConfig *cfg, unsigned layers, const SandboxSlot *slot,
                              const char *program, size_t program_len, const char *input, size_t input_len,
                              double now) {
    SandboxJob *job = xcalloc(1, sizeof *job);
    job->cfg = *cfg;
    job->layers = layers;
    job->uid = slot->uid;
    job->pid = -1;
    job->report_fd = job->out_fd = job->err_fd = -1;
    job->start = now;
    job->out.limit = cfg->max_output_bytes;
    job->err.limit = cfg->max_output_bytes < STDERR_KEEP ? cfg->max_output_bytes : STDERR_KEEP;
    ensure_std_fds();

    char base[SANDBOX_PATH_MAX];
    ErrorBuf err;
    if (base_dir(cfg, base, sizeof base, &err)) {
        fmt(job->detail, sizeof job->detail, "%s", err.msg);
        job->finished = 1;
        return job;
    }
    fmt(job->workdir, sizeof job->workdir, "%s/job-%ld-XXXXXX", base, slot->uid);
    if (!mkdtemp(job->workdir)) {
        job_fail(job, "sandbox: cannot create a directory in %s: %s", base, errno);
        job->workdir[0] = '\0';
        return job;
    }
    if (job->uid >= 0 && chown(job->workdir, (uid_t)job->uid, (gid_t)job->uid) != 0) {
        job_fail(job, "sandbox: cannot chown %s: %s", job->workdir, errno);
        return job;
    }
    if (!(layers & SANDBOX_LAYER_MNTNS)) {  // with mntns the supervisor writes it into the tmpfs
        char path[SANDBOX_PATH_MAX + 64];
        fmt(path, sizeof path, "%s/%s", job->workdir, cfg->program_name);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
        int bad = fd < 0 || write_all(fd, program, program_len) != 0;
        int e = errno;
        if (fd >= 0) close(fd);
        if (bad) {
            job_fail(job, "sandbox: cannot write %s: %s", path, e);
            return job;
        }
    }
    int in_fd = memfd_create("sandbox-stdin", MFD_CLOEXEC);
    if (in_fd < 0 || write_all(in_fd, input ? input : "", input_len) != 0 || lseek(in_fd, 0, SEEK_SET) != 0) {
        job_fail(job, "sandbox: cannot prepare stdin (%s): %s", "memfd", errno);
        if (in_fd >= 0) close(in_fd);
        return job;
    }
    int rp[2] = {-1, -1}, op[2] = {-1, -1}, ep[2] = {-1, -1};
    if (pipe2(rp, O_CLOEXEC) != 0 || pipe2(op, O_CLOEXEC) != 0 || pipe2(ep, O_CLOEXEC) != 0) {
        job_fail(job, "sandbox: %s: %s", "pipe2", errno);
        int fds[] = {rp[0], rp[1], op[0], op[1], ep[0], ep[1], in_fd};
        for (int i = 0; i < 7; i++)
            if (fds[i] >= 0) close(fds[i]);
        return job;
    }
    Launch *L = &job->launch;
    L->report_w = rp[1];
    L->out_w = op[1];
    L->err_w = ep[1];
    L->in_fd = in_fd;
    prepare_launch(job, program, program_len);

    unsigned long flags = 0;
    if (layers & SANDBOX_LAYER_NETNS) flags |= CLONE_NEWNET;
    if (layers & SANDBOX_LAYER_PIDNS) flags |= CLONE_NEWPID;
    if (layers & SANDBOX_LAYER_MNTNS) flags |= CLONE_NEWNS;
    pid_t pid = raw_clone(flags);
    if (pid == 0) supervisor_main(L);
    int clone_errno = errno;
    close(rp[1]);
    close(op[1]);
    close(ep[1]);
    close(in_fd);
    job->report_fd = rp[0];
    job->out_fd = op[0];
    job->err_fd = ep[0];
    fcntl(rp[0], F_SETFL, O_NONBLOCK);
    fcntl(op[0], F_SETFL, O_NONBLOCK);
    fcntl(ep[0], F_SETFL, O_NONBLOCK);
    if (pid < 0) {
        job_fail(job, "sandbox: %s: %s", "clone", clone_errno);
        close_fd(&job->report_fd);
        close_fd(&job->out_fd);
        close_fd(&job->err_fd);
        return job;
    }
    job->pid = pid;
    job->deadline = now + cfg->timeout_s;
    return job;
}

int sandbox_job_pollfds(const SandboxJob *job, struct pollfd *fds) {
    int n = 0;
    if (job->finished) return 0;
    int ours[3] = {job->report_fd, job->out_fd, job->err_fd};
    for (int i = 0; i < 3; i++)
        if (ours[i] >= 0) fds[n++] = (struct pollfd){ours[i], POLLIN, 0};
    return n;
}

double sandbox_job_deadline(const SandboxJob *job) {
    if (job->finished) return 0;
    if (job->report_eof && job->pid > 0) return sandbox_now() + REAP_RETRY_S;
    if (!job->stop_sent) return job->deadline;
    if (!job->killed_hard && job->pid > 0) return job->kill_deadline;
    return INFINITY;
}

void sandbox_job_stop(SandboxJob *job, SandboxReason reason, double now) {
    if (job->finished || job->stop_sent || job->pid <= 0) return;
    job->stop_sent = 1;
    job->stop_reason = reason;
    job->kill_deadline = now + STOP_GRACE_S;
    kill(job->pid, SIGUSR1);
}

// Reads what is available, keeping up to b->limit bytes; a program that writes more than
// max_output_bytes to either stream is stopped.
static void drain(SandboxJob *job, int *fd, OutBuf *b) {
    char chunk[16384];
    for (int rounds = 0; *fd >= 0 && rounds < 64; rounds++) {
        ssize_t r = read(*fd, chunk, sizeof chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return;  // EAGAIN: nothing more for now
        if (r == 0) {
            close_fd(fd);
            return;
        }
        b->total += (size_t)r;
        size_t keep = (size_t)r;
        if (b->len + keep > b->limit) keep = b->limit - b->len, b->truncated = 1;
        if (keep > 0) {
            if (b->len + keep + 1 > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                while (cap < b->len + keep + 1) cap *= 2;
                if (cap > b->limit + 1) cap = b->limit + 1;
                b->data = xrealloc(b->data, cap);
                b->cap = cap;
            }
            memcpy(b->data + b->len, chunk, keep);
            b->len += keep;
        }
        if (b->total > job->cfg.max_output_bytes) sandbox_job_stop(job, SANDBOX_OUTPUT_LIMIT, sandbox_now());
    }
}

static void read_reports(SandboxJob *job) {
    for (;;) {
        Report r;
        ssize_t n = read(job->report_fd, &r, sizeof r);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return;  // EAGAIN
        if (n == 0) {
            job->report_eof = 1;
            close_fd(&job->report_fd);
            return;
        }
        if (n != (ssize_t)sizeof r) continue;  // records are written atomically; ignore anything else
        if (r.kind == REPORT_SETUP && !job->have_setup) job->setup = r, job->have_setup = 1;
        if (r.kind == REPORT_FINAL) job->final = r, job->have_final = 1;
    }
}

int sandbox_job_step(SandboxJob *job, const struct pollfd *fds, double now) {
    if (job->finished) return 1;
    if (fds) {
        // fds come in the order of sandbox_job_pollfds: report, out, err (those still open).
        int i = 0;
        int report = job->report_fd, out = job->out_fd, err = job->err_fd;
        if (report >= 0 && fds[i++].revents) read_reports(job);
        if (out >= 0 && fds[i++].revents) drain(job, &job->out_fd, &job->out);
        if (err >= 0 && fds[i++].revents) drain(job, &job->err_fd, &job->err);
    }
    if (job->report_eof && job->pid > 0) {
        int status;
        pid_t w = waitpid(job->pid, &status, WNOHANG | __WALL);
        if (w == job->pid || (w < 0 && errno == ECHILD)) {
            job->sup_status = w == job->pid ? status : 0;
            job->pid = -1;
        }
    }
    if (job->pid > 0 && !job->stop_sent && now >= job->deadline) sandbox_job_stop(job, SANDBOX_TIMEOUT, now);
    if (job->pid > 0 && job->stop_sent && !job->killed_hard && now >= job->kill_deadline) {
        kill(job->pid, SIGKILL);  // the supervisor did not answer: end it (and its namespace)
        job->killed_hard = 1;
        if ((job->layers & SANDBOX_LAYER_UID) && !(job->layers & SANDBOX_LAYER_PIDNS)) uid_sweep(job->uid);
    }
    if (job->pid < 0 && job->report_eof) {
        // Every writer is gone: what is left in the pipes is all there is.
        drain(job, &job->out_fd, &job->out);
        drain(job, &job->err_fd, &job->err);
        job->finished = 1;
    }
    return job->finished;
}

static int contains(const char *hay, size_t len, const char *needle) { return memmem(hay, len, needle, strlen(needle)) != NULL; }

static int memory_text(const SandboxResult *r) {
    return r->err && (contains(r->err, r->err_len, "MemoryError") || contains(r->err, r->err_len, "Cannot allocate memory") ||
                      contains(r->err, r->err_len, "std::bad_alloc") || contains(r->err, r->err_len, "out of memory"));
}

static int fsize_text(const SandboxResult *r) {
    return r->err && (contains(r->err, r->err_len, "File too large") || contains(r->err, r->err_len, "[Errno 27]") ||
                      contains(r->err, r->err_len, "No space left on device") ||
                      contains(r->err, r->err_len, "[Errno 28]"));
}

// Why the program ended, from its wait status, resources and stderr.
static void classify(const SandboxJob *job, SandboxResult *r) {
    const SandboxConfig *cfg = &job->cfg;
    int st = job->final.status;
    double cpu_limit = (double)job->launch.lim_cpu.rlim_cur;
    double mem_kb = cfg->memory_mb > 0 ? (double)cfg->memory_mb * 1024.0 : INFINITY;
    if (WIFEXITED(st)) {
        r->exit_code = WEXITSTATUS(st);
        if (r->exit_code == 0) {
            r->reason = SANDBOX_OK;
        } else if (memory_text(r)) {
            r->reason = SANDBOX_MEMORY;
            snprintf(r->detail, sizeof r->detail, "out of memory (address-space limit %d MB), exit status %d",
                     cfg->memory_mb, r->exit_code);
        } else if (fsize_text(r)) {
            r->reason = SANDBOX_FILE_LIMIT;
            snprintf(r->detail, sizeof r->detail, "file size or disk limit %d MB, exit status %d", cfg->file_mb,
                     r->exit_code);
        } else {
            r->reason = SANDBOX_CRASHED;
            snprintf(r->detail, sizeof r->detail, "exit status %d", r->exit_code);
        }
    } else if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        r->term_signal = sig;
        if (sig == SIGXCPU || (sig == SIGKILL && r->cpu_s >= cpu_limit - 0.05)) {
            r->reason = SANDBOX_TIMEOUT;
            snprintf(r->detail, sizeof r->detail, "CPU time limit %.0f s", cpu_limit);
        } else if (sig == SIGXFSZ) {
            r->reason = SANDBOX_FILE_LIMIT;
            snprintf(r->detail, sizeof r->detail, "file size limit %d MB", cfg->file_mb);
        } else if ((sig == SIGKILL || sig == SIGSEGV || sig == SIGABRT || sig == SIGBUS) &&
                   (memory_text(r) || (double)r->peak_rss_kb >= 0.9 * mem_kb)) {
            r->reason = SANDBOX_MEMORY;
            snprintf(r->detail, sizeof r->detail, "out of memory (address-space limit %d MB), signal %d",
                     cfg->memory_mb, sig);
        } else {
            r->reason = SANDBOX_KILLED_BY_SIGNAL;
            snprintf(r->detail, sizeof r->detail, "killed by signal %d (%s)", sig, strsignal(sig));
        }
    }
}

static char *take_buffer(OutBuf *b, size_t *len) {
    char *s = b->data ? b->data : xmalloc(1);
    s[b->len] = '\0';
    *len = b->len;
    b->data = NULL;
    return s;
}

void sandbox_job_finish(SandboxJob *job, SandboxResult *r) {
    memset(r, 0, sizeof *r);
    if (!job->finished) {  // not expected: stop it the hard way
        if (job->pid > 0) {
            kill(job->pid, SIGKILL);
            while (waitpid(job->pid, NULL, __WALL) < 0 && errno == EINTR) {
            }
            job->pid = -1;
        }
        if (!job->stop_sent) job->stop_sent = 1, job->stop_reason = SANDBOX_SETUP_ERROR;
        if ((job->layers & SANDBOX_LAYER_UID) && !(job->layers & SANDBOX_LAYER_PIDNS)) uid_sweep(job->uid);
        job->finished = 1;
    }
    r->layers = job->layers;
    r->exit_code = -1;
    r->out = take_buffer(&job->out, &r->out_len);
    r->err = take_buffer(&job->err, &r->err_len);
    r->out_truncated = job->out.truncated;
    double end = sandbox_now();
    r->wall_s = job->have_final ? (double)job->final.wall_ns * 1e-9 : end - job->start;
    if (job->have_final) {
        const struct rusage *ru = &job->final.ru;
        r->cpu_s = (double)ru->ru_utime.tv_sec + 1e-6 * (double)ru->ru_utime.tv_usec + (double)ru->ru_stime.tv_sec +
                   1e-6 * (double)ru->ru_stime.tv_usec;
        r->peak_rss_kb = ru->ru_maxrss;
    }
    if (job->detail[0]) {
        r->reason = SANDBOX_SETUP_ERROR;
        snprintf(r->detail, sizeof r->detail, "%s", job->detail);
    } else if (job->have_setup) {
        int step = job->setup.step > 0 && job->setup.step < STEP_COUNT ? job->setup.step : 0;
        r->reason = SANDBOX_SETUP_ERROR;
        snprintf(r->detail, sizeof r->detail, "sandbox setup failed at %s%s%s: %s", STEP_NAMES[step],
                 step == STEP_EXEC ? " " : "", step == STEP_EXEC ? job->launch.argv[0] : "", strerror(job->setup.err));
    } else if (job->stop_sent && (job->stop_reason == SANDBOX_OUTPUT_LIMIT || !job->have_final || job->final.stopped)) {
        r->reason = job->stop_reason;
        if (job->have_final && WIFSIGNALED(job->final.status)) r->term_signal = WTERMSIG(job->final.status);
        if (r->reason == SANDBOX_TIMEOUT)
            snprintf(r->detail, sizeof r->detail, "wall-clock limit %.3g s", job->cfg.timeout_s);
        else if (r->reason == SANDBOX_OUTPUT_LIMIT)
            snprintf(r->detail, sizeof r->detail, "output over %zu bytes", job->cfg.max_output_bytes);
        else
            snprintf(r->detail, sizeof r->detail, "stopped");
    } else if (job->have_final) {
        classify(job, r);
    } else {
        r->reason = SANDBOX_SETUP_ERROR;
        snprintf(r->detail, sizeof r->detail, "the sandbox supervisor died (wait status 0x%x)", job->sup_status);
    }
    close_fd(&job->report_fd);
    close_fd(&job->out_fd);
    close_fd(&job->err_fd);
    if (job->workdir[0]) remove_tree(job->workdir);
    if (job->uid >= 0 && !(job->layers & (SANDBOX_LAYER_MNTNS | SANDBOX_LAYER_LANDLOCK))) sweep_owned(job->uid);
    free(job->out.data);
    free(job->err.data);
    free(job);
}

void sandbox_result_free(SandboxResult *result) {
    if (!result) return;
    free(result->out);
    free(result->err);
    result->out = result->err = NULL;
}

// ---------------------------------------------------------------------------------------------
// One blocking run

int sandbox_run(const SandboxConfig *cfg, const char *program, size_t program_len, const char *input,
                size_t input_len, SandboxResult *out, ErrorBuf *err) {
    unsigned layers;
    SandboxSlot slot;
    if (sandbox_config_check(cfg, err) || sandbox_layers_for(cfg, &layers, err) ||
        sandbox_slot_acquire(cfg, layers, &slot, err))
        return -1;
    SandboxJob *job = sandbox_job_start(cfg, layers, &slot, program, program_len, input, input_len, sandbox_now());
    for (;;) {
        double now = sandbox_now();
        if (sandbox_job_step(job, NULL, now)) break;
        struct pollfd fds[SANDBOX_JOB_MAX_FDS];
        int n = sandbox_job_pollfds(job, fds);
        double wait = sandbox_job_deadline(job) - now;
        int timeout_ms = wait > 3600 ? 3600000 : wait <= 0 ? 0 : (int)ceil(wait * 1000);
        int rc = poll(fds, (nfds_t)n, timeout_ms);
        if (sandbox_job_step(job, rc > 0 ? fds : NULL, sandbox_now())) break;
    }
    sandbox_job_finish(job, out);
    sandbox_slot_release(&slot);
    return 0;
}
