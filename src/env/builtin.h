// Constructors of the built-in environments (each in its own file; the registry in
// registry.c lists them under their env.tasks names).
#pragma once
#include "env/env.h"
#include "env/env_config.h"

Env *env_reverse_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);     // reverse.c
Env *env_arithmetic_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);  // arithmetic.c
Env *env_sorting_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);     // sorting.c
Env *env_countdown_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);   // countdown.c
Env *env_guess_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);       // guess.c
Env *env_tool_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);        // tool.c
Env *env_jsonl_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);       // jsonl.c
Env *env_stories_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err);     // stories.c
