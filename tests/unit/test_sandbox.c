// Sandbox and sandbox pool: hostile programs are stopped within their limits with the right
// reason, leave no process, file or directory behind, and cannot reach the network or the
// host's files; a burst through the pool leaks nothing and the caller never blocks.
//
// Each hostile test runs twice: with every layer this machine offers ("full") and with only
// the layers every root container has ("fallback": uid, rlimits, seccomp; no namespaces, no
// Landlock), which is what CI gets when it may not create namespaces.
#include "common/test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "env/sandbox.h"
#include "env/sandbox_pool.h"

#define PYTHON "/usr/bin/python3"
#define UID_COUNT 64u
#define FALLBACK_DISABLE (SANDBOX_LAYER_NETNS | SANDBOX_LAYER_PIDNS | SANDBOX_LAYER_MNTNS | SANDBOX_LAYER_LANDLOCK)

static char g_root[256];  // private tmp_root of this test binary
static uint32_t g_uid_base;  // a range of UID_COUNT uids picked by the process id, so that two
                             // test runs at once do not count each other's processes

static unsigned MODE_FULL = 0, MODE_FALLBACK = FALLBACK_DISABLE;

static int have_python(void) {
    if (access(PYTHON, X_OK) == 0) return 1;
    printf("# %s is missing (make deps installs Debian's python3): skipping\n", PYTHON);
    return 0;
}

static void config(SandboxConfig *cfg, const void *state) {
    sandbox_config_defaults(cfg);
    snprintf(cfg->tmp_root, sizeof cfg->tmp_root, "%s", g_root);
    cfg->timeout_s = 5.0;  // generous: only the timeout tests wait for it (they set 1 s)
    cfg->memory_mb = 128;
    cfg->file_mb = 4;
    cfg->nproc = 8;
    cfg->max_output_bytes = 4096;
    cfg->uid_base = g_uid_base;
    cfg->uid_count = UID_COUNT;
    cfg->disable = state ? *(const unsigned *)state : 0;
}

// Processes whose real uid is in the sandbox range (anywhere on the machine).
static int sandbox_processes(void) {
    DIR *d = opendir("/proc");
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        while (fgets(line, sizeof line, f)) {
            unsigned uid;
            if (sscanf(line, "Uid: %u", &uid) == 1) {
                if (uid >= g_uid_base && uid < g_uid_base + UID_COUNT) count++;
                break;
            }
        }
        fclose(f);
    }
    if (d) closedir(d);
    return count;
}

// Children of this process (any state: a zombie is a child not yet reaped).
static int children(void) {
    DIR *d = opendir("/proc");
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *rp = strrchr(buf, ')');
        char state;
        int ppid;
        if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid()) count++;
    }
    if (d) closedir(d);
    return count;
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int count = 0;
    while (d && readdir(d)) count++;
    if (d) closedir(d);
    return count;
}

// The directory holding the job directories (sandbox.h).
static const char *base_path(void) {
    static char path[300];
    if (geteuid() == 0) snprintf(path, sizeof path, "%s/asyncrl-sandbox", g_root);
    else snprintf(path, sizeof path, "%s/asyncrl-sandbox-%u", g_root, (unsigned)geteuid());
    return path;
}

static int job_dirs(void) {
    const char *path = base_path();
    DIR *d = opendir(path);
    int count = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, "job-", 4) == 0) count++;
    if (d) closedir(d);
    return count;
}

// Nothing of a run may remain: no process of the sandbox uids, no child, no job directory.
static void assert_clean(void) {
    assert_int_equal(sandbox_processes(), 0);
    assert_int_equal(children(), 0);
    assert_int_equal(job_dirs(), 0);
}

static void run(const SandboxConfig *cfg, const char *program, const char *input, SandboxResult *r) {
    ErrorBuf err;
    int rc = sandbox_run(cfg, program, strlen(program), input, input ? strlen(input) : 0, r, &err);
    if (rc != 0) print_error("sandbox_run: %s\n", err.msg);
    assert_int_equal(rc, 0);
    char layers[128];
    printf("# %s (%s): %s wall %.3f s cpu %.3f s rss %ld kB%s%s\n", sandbox_layers_string(r->layers, layers, sizeof layers),
           cfg->disable ? "fallback" : "full", sandbox_reason_name(r->reason), r->wall_s, r->cpu_s, r->peak_rss_kb,
           r->detail[0] ? ": " : "", r->detail);
}

static void expect_reason(const SandboxResult *r, SandboxReason want) {
    if (r->reason != want)
        print_error("reason %s (%s), expected %s; stderr: %.400s\n", sandbox_reason_name(r->reason), r->detail,
                    sandbox_reason_name(want), r->err ? r->err : "");
    assert_int_equal(r->reason, want);
}

// ---------------------------------------------------------------------------------------------

static void test_layers(void **state) {
    char why[512], names[128];
    unsigned l = sandbox_probe(why, sizeof why);
    printf("# isolation layers here: %s\n", sandbox_layers_string(l, names, sizeof names));
    if (why[0]) printf("# unavailable: %s\n", why);
    assert_true(l & SANDBOX_LAYER_RLIMITS);
    if (geteuid() == 0) assert_true(l & SANDBOX_LAYER_UID);
    SandboxConfig cfg;
    config(&cfg, *state);
    unsigned used;
    ErrorBuf err;
    assert_int_equal(sandbox_layers_for(&cfg, &used, &err), 0);
    if (!(used & SANDBOX_LAYER_UID)) assert_true(used & SANDBOX_LAYER_NOFORK);
    uint32_t base, count;
    assert_int_equal(sandbox_uid_range(&cfg, &base, &count, &err), 0);  // an explicit range is kept
    assert_int_equal(base, g_uid_base);
    assert_int_equal(count, UID_COUNT);
    cfg.uid_base = 0;
    assert_int_equal(sandbox_uid_range(&cfg, &base, &count, &err), 0);
    assert_true(base == SANDBOX_UID_AUTO_HIGH || base == SANDBOX_UID_AUTO_LOW);
}

static void test_echo(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    run(&cfg,
        "import os, sys\ndata = sys.stdin.read()\nprint(data.upper(), end='')\n"
        "print(os.environ.get('HOME') == os.getcwd(), sorted(os.listdir('.')), file=sys.stderr)\n",
        "hello sandbox\n", &r);
    expect_reason(&r, SANDBOX_OK);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.out, "HELLO SANDBOX\n");
    assert_non_null(strstr(r.err, "True ['main.py']"));  // HOME is its directory, holding only the program
    assert_true(r.peak_rss_kb > 1000);
    assert_true(r.wall_s > 0 && r.wall_s < 3.0);
    if (geteuid() == 0) assert_true(r.layers & SANDBOX_LAYER_UID);
    assert_int_equal(r.layers & FALLBACK_DISABLE & cfg.disable, 0);
    sandbox_result_free(&r);
    assert_clean();
}

static void test_exit_status_and_signal(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    run(&cfg, "import sys\nprint('partial')\nsys.exit(3)\n", NULL, &r);
    expect_reason(&r, SANDBOX_CRASHED);
    assert_int_equal(r.exit_code, 3);
    assert_string_equal(r.out, "partial\n");
    sandbox_result_free(&r);
    run(&cfg, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n", NULL, &r);
    expect_reason(&r, SANDBOX_KILLED_BY_SIGNAL);
    assert_int_equal(r.term_signal, 11);
    sandbox_result_free(&r);
    run(&cfg, "def f(:\n    pass\n", NULL, &r);
    expect_reason(&r, SANDBOX_CRASHED);
    assert_non_null(strstr(r.err, "SyntaxError"));
    sandbox_result_free(&r);
    assert_clean();
}

static void test_fork_bomb(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    cfg.timeout_s = 1.0;
    SandboxResult r;
    double t0 = sandbox_now();
    run(&cfg, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n", NULL, &r);
    double took = sandbox_now() - t0;
    expect_reason(&r, SANDBOX_TIMEOUT);
    assert_true(took < cfg.timeout_s + 2.5);
    sandbox_result_free(&r);
    assert_clean();
}

// Processes are limited per sandbox (its own uid's RLIMIT_NPROC, or no fork at all).
static void test_nproc_limit(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    run(&cfg,
        "import os, time\nn = 0\nfor i in range(100):\n    try:\n        pid = os.fork()\n"
        "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(100)\n        os._exit(0)\n"
        "    n += 1\nprint(n)\n",
        NULL, &r);
    expect_reason(&r, SANDBOX_OK);
    int forked = atoi(r.out);
    printf("# forked %d children with nproc = %d\n", forked, cfg.nproc);
    assert_true(forked < cfg.nproc);  // the program itself counts too
    sandbox_result_free(&r);
    assert_clean();  // the sleeping children were killed with the sandbox
}

static void test_memory_hog(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    run(&cfg, "a = []\nwhile True:\n    a.append(bytearray(1 << 20))\n", NULL, &r);
    expect_reason(&r, SANDBOX_MEMORY);
    assert_true(r.peak_rss_kb <= (long)cfg.memory_mb * 1024 + 1024);
    sandbox_result_free(&r);
    assert_clean();
}

static void test_file_hog(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    run(&cfg, "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 65536)\n", NULL, &r);
    expect_reason(&r, SANDBOX_FILE_LIMIT);
    sandbox_result_free(&r);
    assert_clean();
}

static void test_sleep_forever(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    cfg.timeout_s = 1.0;
    SandboxResult r;
    double t0 = sandbox_now();
    run(&cfg, "import time\nprint('going to sleep', flush=True)\ntime.sleep(1000)\n", NULL, &r);
    double took = sandbox_now() - t0;
    expect_reason(&r, SANDBOX_TIMEOUT);
    assert_true(took >= cfg.timeout_s && took < cfg.timeout_s + 2.0);
    assert_string_equal(r.out, "going to sleep\n");  // output written before the kill is kept
    sandbox_result_free(&r);
    assert_clean();
}

// A daemon that escapes its process group and session dies with the sandbox.
static void test_escaped_child(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    double t0 = sandbox_now();
    run(&cfg,
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        "        os.close(1)\n        os.close(2)\n        time.sleep(1000)\n    os._exit(0)\nprint('parent done')\n",
        NULL, &r);
    if (r.layers & SANDBOX_LAYER_NOFORK) {  // not root: no uid of its own, so no fork at all
        expect_reason(&r, SANDBOX_CRASHED);
        assert_non_null(strstr(r.err, "PermissionError"));
    } else {
        expect_reason(&r, SANDBOX_OK);
        assert_string_equal(r.out, "parent done\n");
    }
    assert_true(sandbox_now() - t0 < cfg.timeout_s - 1);  // not waiting for the daemon
    sandbox_result_free(&r);
    assert_clean();
}

// A hostile program whose run must end well before the timeout and leave nothing behind;
// checks the reason with `check` (NULL: SANDBOX_OK).
static void run_ends_promptly(void **state, const char *program, void (*check)(const SandboxResult *)) {
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    const double t0 = sandbox_now();
    run(&cfg, program, NULL, &r);
    if (check) check(&r);
    else expect_reason(&r, SANDBOX_OK);
    assert_true(sandbox_now() - t0 < cfg.timeout_s - 1);
    sandbox_result_free(&r);
    assert_clean();
}

static void ok_or_killed(const SandboxResult *r) {  // (the program's child may kill it first)
    if (r->reason != SANDBOX_OK) expect_reason(r, SANDBOX_KILLED_BY_SIGNAL);
}

// Processes that outlive the program, keep forking and send kill(-1) (which would also hit a
// helper sweeping their uid) are all gone once the run is reported.
static void test_sweeper_killers(void **state) {
    if (!have_python()) skip();
    run_ends_promptly(state,
        "import os\ntry:\n    child = os.fork()\nexcept OSError:\n    child = 1\nif child == 0:\n    os.setsid()\n"
        "    while True:\n        try:\n            os.kill(-1, 9)\n        except OSError:\n            pass\n"
        "        try:\n            os.fork()\n        except OSError:\n            pass\nprint('bye')\n",
        ok_or_killed);
}

// A process of the sandbox uid that keeps stopping every process it may signal (kill(-1,
// SIGSTOP)) also stops the helper that sweeps the uid (it has that uid while it sweeps): a
// stopped helper is killed and the uid's processes are found in /proc instead. The run once hung
// here until its timeout and more.
static void test_stopping_sweeper(void **state) {
    if (!have_python()) skip();
    run_ends_promptly(state,
        "import os, signal\nparent = os.getpid()\ntry:\n    child = os.fork()\nexcept OSError:\n    child = 1\n"
        "if child == 0:\n    while os.getppid() == parent:\n        pass\n"
        "    while True:\n        try:\n            os.kill(-1, signal.SIGSTOP)\n        except OSError:\n            pass\n"
        "print('answer')\n",
        NULL);
}

// With a mount namespace the world-writable lock directory is private too (it is swept only
// without one): nothing the program writes there is left on the host.
static void test_run_lock(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    cfg.disable |= SANDBOX_LAYER_LANDLOCK;  // (Landlock alone refuses the write)
    char host[128], program[512];
    snprintf(host, sizeof host, "/run/lock/asyncrl-sbxtest-%d", (int)getpid());
    snprintf(program, sizeof program, "try:\n    open('%s', 'w').write('x' * 1000)\n    print('written')\n"
             "except OSError:\n    print('refused')\n", host);
    SandboxResult r;
    run(&cfg, program, NULL, &r);
    expect_reason(&r, SANDBOX_OK);
    if (r.layers & SANDBOX_LAYER_MNTNS) assert_non_null(strstr(r.out, "written"));  // (into its own tmpfs)
    struct stat st;
    assert_int_not_equal(stat(host, &st), 0);
    sandbox_result_free(&r);
    assert_clean();
}

// Without a uid of its own (the caller is not root) the program runs as the caller's user; it
// may signal itself, but not the supervisor nor any other process of that user. As root, the
// caller becomes nobody for this test.
static void test_signals_only_self(void **state) {
    if (!have_python()) skip();
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        char root[300];
        snprintf(root, sizeof root, "%s/nobody", g_root);
        mkdir(root, 0777);
        chmod(root, 0777);
        if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
        SandboxConfig cfg;
        config(&cfg, *state);
        snprintf(cfg.tmp_root, sizeof cfg.tmp_root, "%s", root);
        cfg.disable |= SANDBOX_LAYER_UID;  // (what this process probed as root is cached)
        const char *program = "import os\n"
                              "try:\n    os.kill(os.getppid(), 0)\n    print('parent signalled')\n"
                              "except PermissionError:\n    print('parent refused')\n"
                              "os.kill(os.getpid(), 0)\nprint('self signalled')\n";
        SandboxResult r;
        ErrorBuf err;
        if (sandbox_run(&cfg, program, strlen(program), NULL, 0, &r, &err) != 0) _exit(4);
        printf("# as uid %d: %s (%s) %s%s\n", (int)getuid(), sandbox_reason_name(r.reason), r.detail, r.out ? r.out : "",
               r.err ? r.err : "");
        const int seccomp = (r.layers & SANDBOX_LAYER_SECCOMP) != 0;
        const int ok = r.reason == SANDBOX_OK && r.out && strstr(r.out, "self signalled") &&
                       (!seccomp || !(r.layers & SANDBOX_LAYER_NOFORK) || strstr(r.out, "parent refused"));
        fflush(stdout);
        _exit(ok ? 0 : 5);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_network(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    unsigned layers;
    ErrorBuf err;
    assert_int_equal(sandbox_layers_for(&cfg, &layers, &err), 0);
    if (!(layers & (SANDBOX_LAYER_SECCOMP | SANDBOX_LAYER_NETNS))) {
        printf("# neither seccomp nor a network namespace is available: no network isolation to test\n");
        skip();
    }
    // A TCP listener and a UDP socket on the loopback that the program tries to reach.
    int tcp = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), udp = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in b = a;
    socklen_t len = sizeof a;
    assert_int_equal(bind(tcp, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(tcp, 4), 0);
    assert_int_equal(getsockname(tcp, (struct sockaddr *)&a, &len), 0);
    assert_int_equal(bind(udp, (struct sockaddr *)&b, sizeof b), 0);
    len = sizeof b;
    assert_int_equal(getsockname(udp, (struct sockaddr *)&b, &len), 0);
    char program[1024];
    snprintf(program, sizeof program,
             "import socket\n"
             "try:\n    s = socket.create_connection(('127.0.0.1', %d), timeout=0.5)\n    s.sendall(b'x')\n"
             "    print('tcp connected')\nexcept OSError as e:\n    print('tcp blocked')\n"
             "try:\n    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "    u.sendto(b'x', ('127.0.0.1', %d))\n    print('udp sent')\nexcept OSError as e:\n"
             "    print('udp blocked')\n"
             "try:\n    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect('/run/dbus/system_bus_socket')\n"
             "    print('unix connected')\nexcept OSError:\n    print('unix blocked')\n",
             ntohs(a.sin_port), ntohs(b.sin_port));
    SandboxResult r;
    run(&cfg, program, NULL, &r);
    expect_reason(&r, SANDBOX_OK);
    assert_string_equal(r.out, "tcp blocked\nudp blocked\nunix blocked\n");
    char buf[8];
    assert_true(accept(tcp, NULL, NULL) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    assert_true(recv(udp, buf, sizeof buf, 0) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    close(tcp);
    close(udp);
    sandbox_result_free(&r);
    assert_clean();
}

static void test_filesystem(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    char outside[128], parent_file[300];
    snprintf(outside, sizeof outside, "/tmp/asyncrl-escape-%d", (int)getpid());
    snprintf(parent_file, sizeof parent_file, "%s/escape", base_path());
    unlink(outside);
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char program[3072];
    snprintf(program, sizeof program,
             "def attempt(what, fn):\n    try:\n        fn()\n        print(what, 'done')\n"
             "    except OSError as e:\n        print(what, 'refused')\n"
             "attempt('read shadow', lambda: open('/etc/shadow').read())\n"
             "attempt('write tmp', lambda: open('%s', 'w').write('x'))\n"
             "attempt('write parent', lambda: open('../escape', 'w').write('x'))\n"
             "attempt('write root', lambda: open('/escape-%d', 'w').write('x'))\n"
             "attempt('write home', lambda: open('scratch', 'w').write('x'))\n"
             "attempt('read system', lambda: open('/etc/passwd').read())\n"
             "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
             "def sysv():\n    if libc.shmget(0, 4096, 0o1600) < 0:\n        raise OSError(ctypes.get_errno(), 'shmget')\n"
             "attempt('sysv shm', sysv)\n"
             "attempt('read project', lambda: open('%s/Makefile').read())\n",
             outside, (int)getpid(), cwd);
    SandboxResult r;
    run(&cfg, program, NULL, &r);
    expect_reason(&r, SANDBOX_OK);
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) printf("# %s\n", line);
    for (size_t i = 0; i < r.out_len; i++)
        if (r.out[i] == '\0') r.out[i] = '\n';  // undo strtok
    assert_non_null(strstr(r.out, "read shadow refused"));
    assert_non_null(strstr(r.out, "write root refused"));
    assert_non_null(strstr(r.out, "write home done"));
    assert_non_null(strstr(r.out, "read system done"));
    if (r.layers & SANDBOX_LAYER_SECCOMP) assert_non_null(strstr(r.out, "sysv shm refused"));
    if (!(r.layers & (SANDBOX_LAYER_UID | SANDBOX_LAYER_LANDLOCK | SANDBOX_LAYER_MNTNS))) {
        printf("# not root, no Landlock, no mount namespace: the program writes wherever its user may\n");
        unlink(outside);
        unlink(parent_file);
        sandbox_result_free(&r);
        assert_clean();
        return;
    }
    assert_non_null(strstr(r.out, "write parent refused"));
    if (r.layers & SANDBOX_LAYER_LANDLOCK) {  // Landlock: writes only at home, reads only the system
        assert_non_null(strstr(r.out, "write tmp refused"));
        assert_non_null(strstr(r.out, "read project refused"));
    }
    // Whatever the layers, nothing it wrote outside its directory is left on the host.
    struct stat st;
    assert_int_not_equal(stat(outside, &st), 0);
    assert_int_not_equal(stat(parent_file, &st), 0);
    sandbox_result_free(&r);
    assert_clean();
}

static void test_big_output(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    SandboxResult r;
    run(&cfg, "import sys\nwhile True:\n    sys.stdout.write('x' * 100000)\n", NULL, &r);
    expect_reason(&r, SANDBOX_OUTPUT_LIMIT);
    assert_int_equal(r.out_len, cfg.max_output_bytes);
    assert_true(r.out_truncated);
    assert_true(r.wall_s < cfg.timeout_s - 1);  // stopped at once, not at the timeout
    sandbox_result_free(&r);
    run(&cfg, "import sys\nwhile True:\n    sys.stderr.write('e' * 100000)\n", NULL, &r);  // stderr counts too
    expect_reason(&r, SANDBOX_OUTPUT_LIMIT);
    sandbox_result_free(&r);
    assert_clean();
}

static void test_big_input(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    size_t n = 1 << 20;
    char *input = malloc(n + 1);
    memset(input, 'a', n);
    input[n] = '\0';
    SandboxResult r;
    run(&cfg, "import sys\nprint(len(sys.stdin.buffer.read()))\n", input, &r);
    expect_reason(&r, SANDBOX_OK);
    assert_string_equal(r.out, "1048576\n");
    sandbox_result_free(&r);
    free(input);
    assert_clean();
}

// A program that makes its directory hard to remove: deep trees, no permissions, symlinks
// pointing outside. All of it goes, and nothing outside is touched.
static void test_hostile_cleanup(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    struct stat before, after;
    assert_int_equal(stat("/etc/passwd", &before), 0);
    SandboxResult r;
    run(&cfg,
        "import os\nos.symlink('/etc/passwd', 'passwd')\nos.symlink('/etc', 'etc')\nos.symlink('..', 'up')\n"
        "os.mkdir('locked')\nopen('locked/f', 'w').write('x')\nos.chmod('locked/f', 0)\nos.chmod('locked', 0)\n"
        "for i in range(300):\n    os.mkdir('d')\n    os.chdir('d')\n    open('f', 'w').write('x')\n"
        "os.chmod('.', 0)\nprint('ok')\n",
        NULL, &r);
    expect_reason(&r, SANDBOX_OK);
    sandbox_result_free(&r);
    assert_int_equal(stat("/etc/passwd", &after), 0);
    assert_int_equal(before.st_size, after.st_size);
    assert_int_equal(before.st_mode, after.st_mode);
    assert_clean();
}

static void test_setup_errors(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    ErrorBuf err;
    SandboxResult r;
    snprintf(cfg.interpreter, sizeof cfg.interpreter, "python3");
    assert_int_equal(sandbox_run(&cfg, "print(1)", 8, NULL, 0, &r, &err), -1);
    assert_non_null(strstr(err.msg, "not an absolute path"));
    snprintf(cfg.interpreter, sizeof cfg.interpreter, "/nonexistent/python3");
    assert_int_equal(sandbox_run(&cfg, "print(1)", 8, NULL, 0, &r, &err), -1);
    assert_non_null(strstr(err.msg, "not executable"));
    snprintf(cfg.interpreter, sizeof cfg.interpreter, "/tmp");  // a directory passes access(X_OK)
    assert_int_equal(sandbox_run(&cfg, "print(1)", 8, NULL, 0, &r, &err), -1);
    assert_non_null(strstr(err.msg, "not a program file"));
    config(&cfg, *state);
    snprintf(cfg.program_name, sizeof cfg.program_name, "../main.py");
    assert_int_equal(sandbox_run(&cfg, "print(1)", 8, NULL, 0, &r, &err), -1);
    assert_non_null(strstr(err.msg, "plain file name"));
    if (geteuid() == 0) {
        config(&cfg, *state);
        cfg.disable |= SANDBOX_LAYER_UID;
        assert_int_equal(sandbox_run(&cfg, "print(1)", 8, NULL, 0, &r, &err), -1);
        assert_non_null(strstr(err.msg, "refusing"));
    }
    // An interpreter that cannot be executed inside the sandbox: a setup error, not a crash.
    char script[300];
    snprintf(script, sizeof script, "%s/bad-interpreter", g_root);
    FILE *f = fopen(script, "w");
    fputs("#!/nonexistent/interpreter\n", f);
    fclose(f);
    chmod(script, 0755);
    config(&cfg, *state);
    snprintf(cfg.interpreter, sizeof cfg.interpreter, "%s", script);
    run(&cfg, "print(1)", NULL, &r);
    expect_reason(&r, SANDBOX_SETUP_ERROR);
    assert_non_null(strstr(r.detail, "execve"));
    sandbox_result_free(&r);
    unlink(script);
    assert_clean();
}

// ---------------------------------------------------------------------------------------------
// Pool

static void test_pool_burst(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    int fds_before = open_fds();
    ErrorBuf err;
    SandboxPool *pool = sandbox_pool_create(&cfg, 8, &err);
    if (!pool) print_error("%s\n", err.msg);
    assert_non_null(pool);
    enum { N = 100 };
    int tickets[N];
    const char *programs[] = {"print(int(input()) * 2)\n", "raise SystemExit(4)\n", "print(:\n"};
    double t0 = sandbox_now();
    for (int i = 0; i < N; i++) {
        char input[32];
        snprintf(input, sizeof input, "%d\n", i);
        const char *p = programs[i % 10 == 9 ? 1 : i % 10 == 8 ? 2 : 0];
        tickets[i] = sandbox_pool_submit(pool, p, strlen(p), input, strlen(input));
        assert_true(tickets[i] >= 0);
    }
    double submit_s = sandbox_now() - t0;
    int ok = 0;
    for (int i = 0; i < N; i++) {
        SandboxResult r;
        assert_int_equal(sandbox_pool_wait(pool, tickets[i], &r), 0);
        if (i % 10 == 9) {
            expect_reason(&r, SANDBOX_CRASHED);
            assert_int_equal(r.exit_code, 4);
        } else if (i % 10 == 8) {
            expect_reason(&r, SANDBOX_CRASHED);
            assert_non_null(strstr(r.err, "SyntaxError"));
        } else {
            expect_reason(&r, SANDBOX_OK);
            assert_int_equal(atoi(r.out), 2 * i);
            ok++;
        }
        sandbox_result_free(&r);
        assert_int_equal(sandbox_pool_poll(pool, tickets[i], &r), -1);  // released
    }
    double total_s = sandbox_now() - t0;
    SandboxPoolStats s;
    sandbox_pool_stats(pool, &s);
    printf("# %d runs through a pool of 8: %.2f s (submit %.1f ms), mean wall %.1f ms, max %.1f ms\n", N, total_s,
           1e3 * submit_s, 1e3 * s.wall_sum_s / (double)s.runs, 1e3 * s.wall_max_s);
    assert_int_equal(s.runs, N);
    assert_int_equal(s.ok, ok);
    assert_int_equal(s.crashed, N - ok);
    assert_int_equal(s.running + s.queued, 0);
    assert_true(submit_s < 0.5);
    sandbox_pool_destroy(pool);
    assert_int_equal(open_fds(), fds_before);
    assert_clean();
}

// The caller is never blocked (poll returns at once) and nobody spins while programs run.
static void test_pool_nonblocking(void **state) {
    if (!have_python()) skip();
    SandboxConfig cfg;
    config(&cfg, *state);
    cfg.timeout_s = 0.6;
    ErrorBuf err;
    SandboxPool *pool = sandbox_pool_create(&cfg, 2, &err);
    assert_non_null(pool);
    const char *sleeper = "import time\ntime.sleep(100)\n";
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double t0 = sandbox_now();
    int a = sandbox_pool_submit(pool, sleeper, strlen(sleeper), NULL, 0);
    int b = sandbox_pool_submit(pool, sleeper, strlen(sleeper), NULL, 0);
    int c = sandbox_pool_submit(pool, sleeper, strlen(sleeper), NULL, 0);  // queued: 2 slots
    SandboxResult r;
    double worst_poll = 0;
    int polls = 0;
    while (sandbox_pool_poll(pool, a, &r) == 0) {
        double p0 = sandbox_now();
        assert_int_equal(sandbox_pool_poll(pool, b, &r) == 1 || 1, 1);
        double dt = sandbox_now() - p0;
        if (dt > worst_poll) worst_poll = dt;
        polls++;
        usleep(20000);
        assert_true(sandbox_now() - t0 < 5);
    }
    expect_reason(&r, SANDBOX_TIMEOUT);
    sandbox_result_free(&r);
    sandbox_pool_cancel(pool, c);  // dropped while queued or running
    assert_int_equal(sandbox_pool_poll(pool, c, &r), -1);
    assert_int_equal(sandbox_pool_poll(pool, 123456, &r), -1);
    if (sandbox_pool_poll(pool, b, &r) == 0) assert_int_equal(sandbox_pool_wait(pool, b, &r), 0);
    expect_reason(&r, SANDBOX_TIMEOUT);
    sandbox_result_free(&r);
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + 1e-6 * (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) +
                 (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + 1e-6 * (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
    printf("# %d polls, slowest %.3f ms; this process used %.3f s CPU over %.2f s of waiting\n", polls,
           1e3 * worst_poll, cpu, sandbox_now() - t0);
    assert_true(worst_poll < 0.05);
    assert_true(cpu < 0.25);  // the pool thread sleeps in poll(2); the sandboxes' CPU is not ours
    // Destroying a pool with runs in flight stops them and cleans up.
    int d = sandbox_pool_submit(pool, sleeper, strlen(sleeper), NULL, 0);
    (void)d;
    usleep(100000);
    sandbox_pool_destroy(pool);
    assert_clean();
}

static int group_setup(void **state) {
    snprintf(g_root, sizeof g_root, "/tmp/asyncrl-sbxtest-XXXXXX");
    if (!mkdtemp(g_root)) return -1;
    chmod(g_root, 0755);
    SandboxConfig cfg;
    sandbox_config_defaults(&cfg);  // the automatic range, then a slice of it
    uint32_t base = 0, count = 0;
    ErrorBuf err;
    if (geteuid() == 0 && sandbox_uid_range(&cfg, &base, &count, &err) != 0) {
        printf("# %s\n", err.msg);
        return -1;
    }
    g_uid_base = base + (uint32_t)(getpid() % 32) * UID_COUNT;
    printf("# sandbox uids %u..%u\n", g_uid_base, g_uid_base + UID_COUNT - 1);
    return 0;
}

static int group_teardown(void **state) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    return system(cmd) == 0 ? 0 : -1;
}

#define BOTH(f) {#f "/full", f, NULL, NULL, &MODE_FULL}, {#f "/fallback", f, NULL, NULL, &MODE_FALLBACK}

int main(void) {
    const struct CMUnitTest tests[] = {
        BOTH(test_layers),
        BOTH(test_echo),
        BOTH(test_exit_status_and_signal),
        BOTH(test_fork_bomb),
        BOTH(test_nproc_limit),
        BOTH(test_memory_hog),
        BOTH(test_file_hog),
        BOTH(test_sleep_forever),
        BOTH(test_escaped_child),
        BOTH(test_sweeper_killers),
        BOTH(test_stopping_sweeper),
        {"test_run_lock", test_run_lock, NULL, NULL, &MODE_FULL},
        {"test_signals_only_self", test_signals_only_self, NULL, NULL, &MODE_FALLBACK},
        BOTH(test_network),
        BOTH(test_filesystem),
        BOTH(test_big_output),
        BOTH(test_big_input),
        BOTH(test_hostile_cleanup),
        {"test_setup_errors", test_setup_errors, NULL, NULL, &MODE_FULL},
        BOTH(test_pool_burst),
        {"test_pool_nonblocking", test_pool_nonblocking, NULL, NULL, &MODE_FULL},
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
