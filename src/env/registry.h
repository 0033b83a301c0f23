// The table of built-in environments (name -> constructor, with a one-line description), and
// the lookup the orchestrator, the config check and the docs use.
#pragma once
#include <stdio.h>

#include "env/env.h"
#include "env/env_config.h"

typedef struct {
    const char *name;         // as written in env.tasks
    EnvCreateFn create;
    const char *description;  // one line, for listings
} EnvEntry;

// Makes environment `name` from the config. NULL with err set for an unknown name (the
// message lists the known ones) or when the environment cannot be built (e.g. a bad dataset).
Env *env_create(const char *name, const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);
int env_known(const char *name);
int env_registry_count(void);
const EnvEntry *env_registry_entry(int i);   // NULL outside [0, count)
// The known names as "reverse, arithmetic, ..." (truncated to fit, always NUL-terminated).
void env_names(char *buf, size_t size);
// One line per environment: its name and description.
void env_print_list(FILE *out);
