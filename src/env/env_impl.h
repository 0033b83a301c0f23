// Helpers for writing an environment (used by the built-in ones, not by callers of Env):
// allocation with the common fields, the train/eval split by content hash, and transcripts.
//
// Splits: a problem belongs to the eval split iff a hash of its content (prompt and info, the
// data its verifier sees) falls below env.eval_fraction. Problem `index` of a split is the
// first candidate drawn from an RNG seeded by (seed, split, index, attempt) that belongs to
// that split, so the same (seed, split, index) always gives the same problem and the two
// splits never share one, whatever the seed.
#pragma once
#include "core/rng.h"
#include "env/env.h"

// Candidates tried before env_generate gives up (the problem space is too small).
#define ENV_GENERATE_ATTEMPTS 100000

// An Env with the common fields set; its destroy frees `state` (a single heap block) and it.
Env *env_alloc(const char *name, int max_turns, uint64_t seed, void *state, const char *const *metric_names);
void env_free_state_and_env(Env *env);

uint64_t env_content_hash(const char *prompt, const char *info);
int env_hash_is_eval(uint64_t hash, double eval_fraction);

// Draws one candidate problem from rng: fills prompt, answer and info (heap strings), and
// answer_turns for multi-turn environments. Returns 0, or -1 with err set.
typedef int (*EnvGenerateFn)(const Env *env, Rng *rng, Problem *out, ErrorBuf *err);
// Problem `index` of `split` (see the top of this file); sets out->id to the content hash.
int env_generate(const Env *env, EnvSplit split, uint64_t index, double eval_fraction, EnvGenerateFn gen,
                 Problem *out, ErrorBuf *err);

int env_model_turns(const Transcript *t);                // NULL-safe
const Turn *env_last_model_turn(const Transcript *t);    // NULL when there is none
// Sets answer (the texts concatenated) and answer_turns (pointing into it) of a problem.
void env_set_reference_turns(Problem *p, int n, const TurnRole *roles, char *const *texts);
// Adds values[i] under names[i] for every name of the NULL-terminated list (score()'s last step).
void env_metrics_fill(EnvMetrics *metrics, const char *const *names, const double *values);
