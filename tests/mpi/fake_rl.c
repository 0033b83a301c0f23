// A stand-in for `asyncrl rl` that keeps its outer contract, for testing the Slurm job scripts
// and `asyncrl report` before (and independently of) the real job: same command line
// (`fake_rl rl CONFIG [--set k=v]...`), same rank layout check, metrics.h5 written by the real
// writer with every per-step metric, checkpoints <out>/checkpoints/step_NNNNNN.h5 written to a
// temporary name, marked `complete` and renamed, `checkpoint.resume = "latest"`, and on SIGUSR1
// or SIGTERM every rank finishes the step in progress, a checkpoint is written and the job
// exits 0 saying how to resume. A step takes ASYNCRL_FAKE_STEP_MS milliseconds (default 500).
// Rank 0 prints where each rank runs ("placement: rank R on NODE gpus DEVICES"), from Slurm's
// SLURMD_NODENAME (else the host name) and CUDA_VISIBLE_DEVICES, for the job script tests.
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "comm/layout.h"
#include "core/log.h"
#include "io/h5util.h"
#include "io/metrics.h"

static volatile sig_atomic_t g_stop_signal = 0;

static void on_signal(int sig) { g_stop_signal = sig; }

static const char *STEP_NAMES[] = {
    "reward_mean", "samples", "groups_dropped", "groups_rescheduled", "completion_len_mean", "seq_len_mean",
    "seq_len_max", "truncated_frac", "off_policy_mean", "off_policy_max", "reward/reverse", "loss", "entropy",
    "mismatch_kl", "masked_low", "masked_high", "masked_seq", "grad_norm", "lr", "skipped", "trainer_tokens",
    "timing/step_s", "timing/trainer_s", "timing/trainer_wait_s", "timing/rollout_wait_s",
    "timing/inference_tokens_per_s", "timing/trainer_tokens_per_s", "timing/weights_broadcast_s",
    "timing/elapsed_s"};
enum { N_STEP_NAMES = sizeof STEP_NAMES / sizeof STEP_NAMES[0] };

static void mkdir_p(const char *path) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) FATAL_ERRNO("check run.output_dir", "mkdir %s", buf);
        *p = '/';
    }
    if (mkdir(buf, 0777) != 0 && errno != EEXIST) FATAL_ERRNO("check run.output_dir", "mkdir %s", buf);
}

// Step of the newest checkpoint that has the `complete` attribute, or 0 when there is none.
static int newest_complete_step(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int best = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int step;
        char tail[8];
        if (sscanf(e->d_name, "step_%d.%7s", &step, tail) != 2 || strcmp(tail, "h5") != 0 || step <= best) continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%.255s", dir, e->d_name);
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) continue;
        if (H5Aexists(f, "complete") > 0) best = step;
        H5Fclose(f);
    }
    closedir(d);
    return best;
}

static void write_checkpoint(const char *dir, int step, int keep) {
    char tmp[1280], path[1280];
    snprintf(tmp, sizeof tmp, "%s/.step_%06d.h5.tmp", dir, step);
    snprintf(path, sizeof path, "%s/step_%06d.h5", dir, step);
    hid_t f = H5_CHECK(H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), "is the disk full?");
    h5_attr_i64(f, "step", step);
    h5_attr_i64(f, "version", step);
    h5_attr_string(f, "complete", "yes");
    H5_CHECK(H5Fclose(f), "is the disk full?");
    CHECK_ERRNO(rename(tmp, path) == 0, "", "rename %s", tmp);
    if (keep > 0 && step - keep > 0) {  // this stand-in writes every step it may delete
        for (int old = step - keep; old > 0 && old > step - keep - 64; old--) {
            snprintf(path, sizeof path, "%s/step_%06d.h5", dir, old);
            unlink(path);
        }
    }
    printf("checkpoint: wrote %s/step_%06d.h5\n", dir, step);
    fflush(stdout);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

// Rank 0 prints each rank's node and visible GPUs.
static void print_placement(int rank, int size) {
    char mine[128];
    const char *node = getenv("SLURMD_NODENAME"), *gpus = getenv("CUDA_VISIBLE_DEVICES");
    char host[64] = "?";
    if (!node) {
        gethostname(host, sizeof host - 1);
        node = host;
    }
    snprintf(mine, sizeof mine, "%.60s gpus %.50s", node, gpus ? gpus : "none");
    char *all = rank == 0 ? xmalloc((size_t)size * sizeof mine) : NULL;
    MPI_Gather(mine, sizeof mine, MPI_CHAR, all, sizeof mine, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (int r = 0; r < size; r++) printf("placement: rank %d on %s\n", r, all + (size_t)r * sizeof mine);
        fflush(stdout);
        free(all);
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "rl") != 0) {
        fprintf(stderr, "usage: fake_rl rl CONFIG [--set k=v]...\n");
        return 2;
    }
    int ac = argc - 1;
    char **av = argv + 1;
    Config cfg;
    Layout layout;
    signal(SIGUSR1, on_signal);
    signal(SIGTERM, on_signal);
    job_start(&ac, &av, "rl", &cfg, &layout);
    const char *env_ms = getenv("ASYNCRL_FAKE_STEP_MS");
    long step_ms = env_ms ? atol(env_ms) : 500;

    char ckpt_dir[1100], metrics_path[1100];
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/checkpoints", cfg.run.output_dir);
    snprintf(metrics_path, sizeof metrics_path, "%s/metrics.h5", cfg.run.output_dir);
    int start = 0;
    if (layout.world_rank == 0) {
        h5_quiet();
        mkdir_p(ckpt_dir);
        if (strcmp(cfg.checkpoint.resume, "latest") == 0) start = newest_complete_step(ckpt_dir);
        else if (strcmp(cfg.checkpoint.resume, "none") != 0) start = atoi(cfg.checkpoint.resume);
        if (start > 0) printf("resuming from %s/step_%06d.h5\n", ckpt_dir, start);
    }
    MPI_Bcast(&start, 1, MPI_INT, 0, MPI_COMM_WORLD);
    print_placement(layout.world_rank, layout.world_size);
    MetricsWriter *m = NULL;
    if (layout.world_rank == 0) {
        char *text = config_to_text(&cfg);
        m = metrics_open(metrics_path, STEP_NAMES, N_STEP_NAMES, NULL, 0, text, "reverse", 0, start > 0 ? start : -1);
        free(text);
    }
    int last_ckpt = start, stop = 0, step = start;
    double t0 = MPI_Wtime();
    for (; step < cfg.run.max_steps && !stop; step++) {
        sleep_ms(step_ms);
        if (m) {
            double v[N_STEP_NAMES];
            for (int i = 0; i < N_STEP_NAMES; i++) v[i] = 0.5 + 0.01 * i;
            v[0] = v[10] = 1.0 - 1.0 / (step + 2);  // reward_mean, reward/reverse
            v[N_STEP_NAMES - 1] = MPI_Wtime() - t0;
            metrics_write_step(m, step, STEP_NAMES, v, N_STEP_NAMES);
        }
        int local = g_stop_signal != 0;
        MPI_Allreduce(&local, &stop, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        if (layout.world_rank == 0) {
            printf("step %4d | reward %.3f\n", step, 1.0 - 1.0 / (step + 2));
            fflush(stdout);
            int due = cfg.checkpoint.interval > 0 && (step + 1) % cfg.checkpoint.interval == 0;
            if (due || stop || (step + 1 == cfg.run.max_steps && cfg.checkpoint.at_end)) {
                write_checkpoint(ckpt_dir, step + 1, cfg.checkpoint.keep);
                last_ckpt = step + 1;
            }
        }
    }
    if (m) metrics_close(m);
    if (layout.world_rank == 0) {
        if (stop)
            printf("stopped by a signal after step %d; checkpoint step_%06d.h5 written. Resume with: "
                   "--set checkpoint.resume=latest\n", step - 1, last_ckpt);
        else
            printf("run finished: %d steps\n", step);
    }
    job_finish(&layout);
    return 0;
}
