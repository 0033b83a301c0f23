// asyncrl: one binary, several subcommands. `rl` is the main job (orchestrator, trainer and
// inference ranks of one MPI program); the others are tools around it.
#include <stdio.h>
#include <string.h>

#include "core/blas_kernels.h"
#include "core/cli.h"
#include "infer/generate.h"
#include "io/report.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} Command;

static const Command COMMANDS[] = {
    {"check", cmd_check, "check CONFIG [--set k=v]...  validate a config and print the rank layout"},
    {"defaults", cmd_defaults, "defaults                      print every config key with its default and meaning"},
    {"rl", cmd_rl, "rl CONFIG [--set k=v]...      the RL job (run under mpirun -np 1+trainers+inference)"},
    {"sft", cmd_sft, "sft CONFIG [--set k=v]...     the supervised warm-up alone (same ranks as rl)"},
    {"eval", cmd_eval, "eval CONFIG [--set k=v]...    evaluate the configured (or checkpointed) policy, same ranks"},
    {"convert", cmd_convert, "convert IN OUT [--format F]  checkpoint / HF dir / llama2.c .bin -> HF dir or .bin"},
    {"generate", cmd_generate, "generate --model M [...]      generate text from a model file (no MPI; --help for options)"},
    {"report", cmd_report, "report RUN_DIR                summary of a run's metrics.h5 and checkpoints (also while it runs)"},
};

static void usage(FILE *out) {
    fprintf(out, "usage: asyncrl COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) fprintf(out, "  %s\n", COMMANDS[i].help);
    fprintf(out, "\nMPI jobs run under mpirun, e.g.: mpirun -np 3 build/asyncrl rl inputs/reverse.cfg\n");
}

// The commands that parse --help themselves (with their own options).
static int has_own_help(const char *command) {
    return strcmp(command, "convert") == 0 || strcmp(command, "generate") == 0 || strcmp(command, "report") == 0;
}

int main(int argc, char **argv) {
    blas_use_processor_kernels(argv);  // first: it may run the program again
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
        if (strcmp(argv[1], COMMANDS[i].name) != 0) continue;
        if (argc >= 3 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0) && !has_own_help(argv[1])) {
            printf("usage: asyncrl %s\n\nConfig keys: `asyncrl defaults` or docs/CONFIG.md; ready configs in inputs/.\n"
                   "MPI jobs run under mpirun, e.g.: mpirun -np 3 build/asyncrl rl inputs/reverse.cfg\n",
                   COMMANDS[i].help);
            return 0;
        }
        return COMMANDS[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "error: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
