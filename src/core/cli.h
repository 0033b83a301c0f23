// Command-line handling shared by the subcommands, and the entry points of the subcommands
// that main.c dispatches to.
#pragma once
#include "core/error.h"

typedef struct {
    const char *config_path;
    char **overrides;  // "group.key=value" strings (heap array of pointers into argv)
    int n_overrides;
} CliArgs;

// Parses "CONFIG [--set group.key=value]..." (also --set=group.key=value). argv[0] is the
// subcommand. 0 or -1 with err naming what was wrong and the usage.
int cli_parse_config_args(int argc, char **argv, const char *command, CliArgs *args, ErrorBuf *err);
void cli_args_free(CliArgs *args);

int cmd_check(int argc, char **argv);
int cmd_defaults(int argc, char **argv);
int cmd_rl(int argc, char **argv);   // src/orch/job.c
int cmd_sft(int argc, char **argv);  // src/orch/job.c
int cmd_eval(int argc, char **argv); // src/orch/job.c
int cmd_convert(int argc, char **argv);  // src/model/convert.c
