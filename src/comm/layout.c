// Rank layout and communicators (see layout.h).
#include "comm/layout.h"

#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "comm/mpi_check.h"
#include "core/cli.h"
#include "core/log.h"
#include "core/signals.h"

const char *role_name(Role role) {
    switch (role) {
        case ROLE_ORCHESTRATOR: return "orchestrator";
        case ROLE_TRAINER: return "trainer";
        case ROLE_INFERENCE: return "inference";
    }
    return "?";
}

Role layout_role_of(const Config *cfg, int world_rank, int *role_index) {
    int t = cfg->ranks.trainers;
    Role role;
    int index;
    if (world_rank == 0) role = ROLE_ORCHESTRATOR, index = 0;
    else if (world_rank <= t) role = ROLE_TRAINER, index = world_rank - 1;
    else role = ROLE_INFERENCE, index = world_rank - 1 - t;
    if (role_index) *role_index = index;
    return role;
}

void layout_init(Layout *layout, const Config *cfg, MPI_Comm world) {
    memset(layout, 0, sizeof *layout);
    MPI_CHECK(MPI_Comm_rank(world, &layout->world_rank));
    MPI_CHECK(MPI_Comm_size(world, &layout->world_size));
    CHECK(layout->world_size == config_world_size(cfg), "run with mpirun -np 1+ranks.trainers+ranks.inference",
          "world size %d does not match the config (%d)", layout->world_size, config_world_size(cfg));
    layout->n_trainers = cfg->ranks.trainers;
    layout->n_inference = cfg->ranks.inference;
    layout->trainer_root = 1;
    layout->first_inference = 1 + layout->n_trainers;
    layout->role = layout_role_of(cfg, layout->world_rank, &layout->role_index);

    MPI_Comm local;
    MPI_CHECK(MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, layout->world_rank, MPI_INFO_NULL, &local));
    MPI_CHECK(MPI_Comm_rank(local, &layout->local_rank));
    MPI_CHECK(MPI_Comm_size(local, &layout->local_size));
    int is_compute = layout->role != ROLE_ORCHESTRATOR;
    MPI_CHECK(MPI_Allreduce(&is_compute, &layout->local_compute, 1, MPI_INT, MPI_SUM, local));
    // A GPU backend picks its device by the rank's index among the node's compute ranks (the
    // orchestrator uses no GPU, so 8 trainers beside it get GPUs 0..7). kernels/cuda/memory.cu
    // reads ASYNCRL_LOCAL_RANK; a value set by the user wins. Published here because this split is
    // collective over every rank and ops_init, which only compute ranks call, must not be.
    int compute_index = 0;
    MPI_CHECK(MPI_Exscan(&is_compute, &compute_index, 1, MPI_INT, MPI_SUM, local));
    if (layout->local_rank == 0) compute_index = 0;  // Exscan leaves rank 0's result undefined
    char local_rank[16];
    snprintf(local_rank, sizeof local_rank, "%d", compute_index);
    setenv("ASYNCRL_LOCAL_RANK", local_rank, 0);
    MPI_CHECK(MPI_Comm_free(&local));

    int is_trainer = layout->role == ROLE_TRAINER;
    MPI_CHECK(MPI_Comm_split(world, is_trainer ? 0 : MPI_UNDEFINED, layout->world_rank, &layout->trainers));
    int in_weights = layout->role == ROLE_INFERENCE || layout->world_rank == layout->trainer_root;
    MPI_CHECK(MPI_Comm_split(world, in_weights ? 0 : MPI_UNDEFINED, layout->world_rank, &layout->weights));
}

void layout_free(Layout *layout) {
    if (layout->trainers != MPI_COMM_NULL) MPI_Comm_free(&layout->trainers);
    if (layout->weights != MPI_COMM_NULL) MPI_Comm_free(&layout->weights);
}

void layout_describe(const Config *cfg, FILE *out) {
    int t = cfg->ranks.trainers, i = cfg->ranks.inference, world = config_world_size(cfg);
    fprintf(out, "rank layout (world size %d; launch with mpirun -np %d):\n", world, world);
    fprintf(out, "  rank 0          orchestrator: hands out rollout requests, scores, packs batches, writes metrics\n");
    if (t == 1) fprintf(out, "  rank 1          trainer 0 (root): trains, broadcasts weights to inference\n");
    else
        fprintf(out, "  ranks 1..%-5d trainers 0..%d (rank 1 is the root: it broadcasts weights to inference)\n", t,
                t - 1);
    if (i == 1) fprintf(out, "  rank %-10d inference 0: generates rollouts with the newest weights it holds\n", t + 1);
    else fprintf(out, "  ranks %d..%-5d inference 0..%d: generate rollouts\n", t + 1, world - 1, i - 1);
    fprintf(out, "communicators:\n");
    fprintf(out, "  trainers  world ranks 1..%d (%d rank%s): gradient all-reduce\n", t, t, t == 1 ? "" : "s");
    fprintf(out, "  weights   world ranks 1 and %d..%d (%d ranks): weight broadcast from the trainer root\n", t + 1,
            world - 1, i + 1);
}

int layout_compute_threads(const Config *cfg, const Layout *layout) {
    if (cfg->run.threads > 0) return cfg->run.threads;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int compute = layout->local_compute, threads = compute > 0 ? (int)(cores / compute) : (int)cores;
    return threads > 0 ? threads : 1;
}

static void init_mpi(int *argc, char ***argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) return;
    int provided;
    MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided));
}

void job_start(int *argc, char ***argv, const char *command, Config *cfg, Layout *layout) {
    signals_install();  // first: a stop signal during start-up stops the job cleanly, not a rank
    init_mpi(argc, argv);
    int rank, size;
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &rank));
    MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &size));
    identity_set(rank, "starting");

    // Rank 0 reads the file; every rank then parses the same resolved text, so they agree.
    ErrorBuf err = {{0}};
    long long text_len = 0;
    char *text = NULL;
    int status = 0;
    if (rank == 0) {
        CliArgs args;
        if (cli_parse_config_args(*argc, *argv, command, &args, &err) || config_load(cfg, args.config_path, args.overrides, args.n_overrides, &err) ||
            config_check_world(cfg, size, &err)) {
            status = 2;
        } else {
            text = config_to_text(cfg);
            text_len = (long long)strlen(text) + 1;
        }
        cli_args_free(&args);
    }
    MPI_CHECK(MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (status) die_user("%s", err.msg);
    MPI_CHECK(MPI_Bcast(&text_len, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD));
    if (rank != 0) text = xmalloc((size_t)text_len);
    MPI_CHECK(MPI_Bcast(text, (int)text_len, MPI_CHAR, 0, MPI_COMM_WORLD));
    if (rank != 0 && config_load_text(cfg, text, "(resolved config from rank 0)", NULL, 0, &err) != 0)
        FATAL("this is a bug: the resolved config should always parse", "%s", err.msg);
    free(text);

    layout_init(layout, cfg, MPI_COMM_WORLD);
    identity_set(rank, role_name(layout->role));
    LogLevel level;
    if (log_level_parse(cfg->log.level, &level) == 0) log_set_level(level);
}

void job_finish(Layout *layout) {
    layout_free(layout);
    MPI_Finalize();
}
