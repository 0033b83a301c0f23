// Shared argument parsing and the `check` and `defaults` subcommands (see cli.h).
#include "core/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/layout.h"
#include "core/config.h"

int cli_parse_config_args(int argc, char **argv, const char *command, CliArgs *args, ErrorBuf *err) {
    memset(args, 0, sizeof *args);
    args->overrides = xcalloc((size_t)argc + 1, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--set") == 0) {
            if (i + 1 >= argc) return error_set(err, "--set needs group.key=value (usage: asyncrl %s CONFIG [--set group.key=value]...)", command);
            args->overrides[args->n_overrides++] = argv[++i];
        } else if (strncmp(a, "--set=", 6) == 0) {
            args->overrides[args->n_overrides++] = argv[i] + 6;
        } else if (a[0] == '-' && a[1]) {
            return error_set(err, "unknown option '%s' (usage: asyncrl %s CONFIG [--set group.key=value]...)", a, command);
        } else if (!args->config_path) {
            args->config_path = a;
        } else {
            return error_set(err, "unexpected argument '%s': give one config file (usage: asyncrl %s CONFIG [--set group.key=value]...)", a, command);
        }
    }
    if (!args->config_path) return error_set(err, "no config file given (usage: asyncrl %s CONFIG [--set group.key=value]...); inputs/ holds ready ones", command);
    return 0;
}

void cli_args_free(CliArgs *args) {
    free(args->overrides);
    args->overrides = NULL;
}

int cmd_check(int argc, char **argv) {
    CliArgs args;
    ErrorBuf err = {{0}};
    Config cfg;
    if (cli_parse_config_args(argc, argv, "check", &args, &err) ||
        config_load(&cfg, args.config_path, args.overrides, args.n_overrides, &err)) {
        fprintf(stderr, "error: %s\n", err.msg);
        cli_args_free(&args);
        return 2;
    }
    char *text = config_to_text(&cfg);
    printf("# resolved config of %s\n%s\n", args.config_path, text);
    layout_describe(&cfg, stdout);
    printf("config OK\n");
    free(text);
    cli_args_free(&args);
    return 0;
}

int cmd_defaults(int argc, char **argv) {
    (void)argc;
    (void)argv;
    config_print_defaults(stdout);
    return 0;
}
