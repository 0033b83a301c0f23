// Sandbox: runs one untrusted program (text written by the model) under an interpreter from the
// system (e.g. /usr/bin/python3) with a given stdin, and reports its stdout, stderr, exit
// status, times, peak memory and why it stopped. Nothing the program does can hurt the caller.
//
// Isolation, in layers (each probed at run time; a result says which were in force):
//   rlimits   CPU time, address space, file size, open files, no core dumps (always)
//   uid       as root: the program runs as an unprivileged uid of its own (uid_base + slot,
//             held by a lock file so no two sandboxes on the machine share one), so it cannot
//             read root-only files or write outside world-writable places, RLIMIT_NPROC
//             applies, and every process it leaves behind is found by uid and killed
//   seccomp   a BPF filter refusing sockets (any family; socketpair only as AF_UNIX),
//             ptrace, mount, namespaces, bpf, io_uring, kernel modules, keyrings, System V IPC
//             (it would outlive the program)... and, without the uid layer, new processes and
//             signals to any process but itself (it runs as the caller's user then)
//   netns     a new network namespace: no interface but a down loopback
//   pidns     a new PID namespace: the program sees only its own processes, and everything in
//             it dies with the sandbox's init
//   mntns     a new mount namespace: /tmp, /var/tmp, /dev/shm and /run/lock are fresh tmpfs,
//             the working directory is a tmpfs of file_mb (so disk use and file count are
//             bounded)
//   landlock  writes only beneath the working directory; reads only below /usr, /lib*, /bin,
//             /sbin, /etc, /dev, /proc and the interpreter's prefix; no TCP bind/connect
// Running as root without the uid layer is refused (the program would run as root). With the
// uid layer but neither mntns nor Landlock, whatever the program leaves in /tmp, /var/tmp,
// /dev/shm or /run/lock is removed by owner after the run. A caller other than root gets no
// uid layer: the program runs as the caller, cannot fork (seccomp), and only Landlock (if
// present) confines its writes; RLIMIT_NPROC then does not apply (it would count the caller's
// processes), so its threads are bounded by its address space only. Without Landlock a program
// reads whatever its user may read (the code environment warns when that includes its tests).
// Limits are per process: memory_mb bounds each of up to nproc processes (no cgroup), and the
// tmpfs mounts of the mount namespace are not counted in it.
//
// Processes: the caller forks a small supervisor (pid 1 of the PID namespace, or a child
// subreaper without one) which forks the program, waits for it, kills whatever is left
// (kill(-1) inside the PID namespace, or by uid) and reaps every descendant before reporting
// the status and resource use through a pipe. The working directory is a private directory
// (0700) under <tmp_root>/asyncrl-sandbox (0711, owned by the caller; asyncrl-sandbox-<uid>
// for a caller other than root), removed with everything in it afterwards, even if the
// program made it unreadable or deep.
//
// Use sandbox_run for one blocking run, or SandboxPool (sandbox_pool.h) for many at once.
#pragma once
#include <poll.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum {
    SANDBOX_OK = 0,           // exited with status 0
    SANDBOX_CRASHED,          // exited with a non-zero status (an uncaught exception, exit(1)...)
    SANDBOX_KILLED_BY_SIGNAL, // died from a signal it caused (SIGSEGV, SIGABRT...)
    SANDBOX_TIMEOUT,          // ran past the wall-clock or CPU time limit
    SANDBOX_MEMORY,           // ran out of its address-space limit (MemoryError or similar)
    SANDBOX_OUTPUT_LIMIT,     // wrote more than max_output_bytes to stdout or stderr
    SANDBOX_FILE_LIMIT,       // wrote a file over file_mb, or filled its directory (mntns: file_mb)
    SANDBOX_SETUP_ERROR,      // the sandbox itself could not be set up (not the program's fault)
    SANDBOX_REASON_COUNT
} SandboxReason;

// Isolation layers (bit flags).
enum {
    SANDBOX_LAYER_RLIMITS = 1 << 0,
    SANDBOX_LAYER_UID = 1 << 1,
    SANDBOX_LAYER_SECCOMP = 1 << 2,
    SANDBOX_LAYER_NETNS = 1 << 3,
    SANDBOX_LAYER_PIDNS = 1 << 4,
    SANDBOX_LAYER_MNTNS = 1 << 5,
    SANDBOX_LAYER_LANDLOCK = 1 << 6,
    SANDBOX_LAYER_NOFORK = 1 << 7,  // seccomp refuses new processes (threads still allowed)
    SANDBOX_LAYER_ALL = (1 << 8) - 1
};

#define SANDBOX_PATH_MAX 512
#define SANDBOX_UID_AUTO_HIGH 1500000u
#define SANDBOX_UID_AUTO_LOW 60000u
#define SANDBOX_MAX_ARGS 16

typedef struct {
    char interpreter[SANDBOX_PATH_MAX];  // absolute path and arguments, space separated
    char program_name[64];               // file name of the program in its directory ("main.py")
    char tmp_root[SANDBOX_PATH_MAX];     // where <tmp_root>/asyncrl-sandbox[-uid] lives ("/tmp")
    double timeout_s;                    // wall-clock limit; CPU limit is ceil(timeout_s)
    int memory_mb;                       // RLIMIT_AS (0 = none); python needs ~30 MB at least
    int file_mb;                         // RLIMIT_FSIZE, and size of the working tmpfs (mntns)
    int nproc;                           // RLIMIT_NPROC of the sandbox uid (threads count too)
    int nofile;                          // RLIMIT_NOFILE
    size_t max_output_bytes;             // stdout and stderr each; more stops the program
    uint32_t uid_base, uid_count;        // uids uid_base .. uid_base+uid_count-1 (root only);
                                         // uid_base 0: SANDBOX_UID_AUTO_HIGH, or _LOW when that
                                         // is not mapped (a container with 65536 ids)
    unsigned disable;                    // layers not to use even where available
} SandboxConfig;

typedef struct {
    SandboxReason reason;
    int exit_code;        // when the program exited (else -1)
    int term_signal;      // when a signal ended it (else 0)
    double wall_s;        // from start to exit of the program
    double cpu_s;         // user + system CPU of the program
    long peak_rss_kb;     // largest resident set of the program
    char *out;            // stdout, NUL-terminated, at most max_output_bytes (heap)
    size_t out_len;
    char *err;            // stderr, likewise
    size_t err_len;
    int out_truncated;    // more was written than kept
    unsigned layers;      // the isolation layers that were in force
    char detail[256];     // a readable explanation for anything but OK
} SandboxResult;

void sandbox_config_defaults(SandboxConfig *cfg);
// Checks values and that the interpreter is an absolute path to an executable. 0 or -1 with err.
int sandbox_config_check(const SandboxConfig *cfg, ErrorBuf *err);

// Which layers work on this machine for this process (probed once, then cached), and a line
// saying why each missing one is missing.
unsigned sandbox_probe(char *why, size_t why_size);
// The layers a run with this config would use: sandbox_probe() minus cfg->disable, adjusted
// (no uid layer => nofork). -1 with err when the config cannot run safely here.
int sandbox_layers_for(const SandboxConfig *cfg, unsigned *layers, ErrorBuf *err);
// The uids the sandboxes may use (uid_base 0 resolved), checked to be mapped in this user
// namespace. 0, or -1 with err.
int sandbox_uid_range(const SandboxConfig *cfg, uint32_t *base, uint32_t *count, ErrorBuf *err);
// "uid,seccomp,netns,..." into buf (returns buf).
char *sandbox_layers_string(unsigned layers, char *buf, size_t size);
const char *sandbox_reason_name(SandboxReason reason);

// Runs program (program_len bytes) with input on stdin and waits for it. Returns 0 with *out
// filled (even when the program failed: see out->reason), or -1 with err set when the
// sandbox could not be prepared at all (bad config, no free uid).
int sandbox_run(const SandboxConfig *cfg, const char *program, size_t program_len, const char *input,
                size_t input_len, SandboxResult *out, ErrorBuf *err);
void sandbox_result_free(SandboxResult *result);

// ---------------------------------------------------------------------------------------------
// The pieces sandbox_run is made of, for the pool (sandbox_pool.c). Not thread-safe per object.

// A sandbox identity: a uid held exclusively (lock file) by this process, or none.
typedef struct {
    long uid;    // -1 without the uid layer
    int lock_fd;
} SandboxSlot;

// Claims a free uid in [uid_base, uid_base + uid_count) when the uid layer is used, kills
// anything still running under it and removes job directories a crashed owner left.
int sandbox_slot_acquire(const SandboxConfig *cfg, unsigned layers, SandboxSlot *slot, ErrorBuf *err);
void sandbox_slot_release(SandboxSlot *slot);

typedef struct SandboxJob SandboxJob;

// Starts a run; never returns NULL (a job that failed to start is already finished with
// reason SANDBOX_SETUP_ERROR). `now` is sandbox_now().
SandboxJob *sandbox_job_start(const SandboxConfig *cfg, unsigned layers, const SandboxSlot *slot,
                              const char *program, size_t program_len, const char *input, size_t input_len,
                              double now);
// The descriptors to poll for this job (at most SANDBOX_JOB_MAX_FDS).
#define SANDBOX_JOB_MAX_FDS 3
int sandbox_job_pollfds(const SandboxJob *job, struct pollfd *fds);
// The next time at which sandbox_job_step must be called even without events (monotonic s).
double sandbox_job_deadline(const SandboxJob *job);
// Handles the events of the fds filled by sandbox_job_pollfds (fds may be NULL: timers only).
// Returns 1 once the job is finished.
int sandbox_job_step(SandboxJob *job, const struct pollfd *fds, double now);
// Stops a running job (the pool's shutdown): it finishes with `reason`.
void sandbox_job_stop(SandboxJob *job, SandboxReason reason, double now);
// Cleans up (directory, descriptors) and moves the result out; frees the job.
void sandbox_job_finish(SandboxJob *job, SandboxResult *out);

double sandbox_now(void);  // CLOCK_MONOTONIC seconds
