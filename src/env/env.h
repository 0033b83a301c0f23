// Environments: where problems come from and how a finished transcript is scored.
//
// An environment gives problems (prompt, reference answer, info) from a seeded index, may
// answer model turns (multi-turn games, tool calls), and scores a finished transcript with a
// reward in [0, 1] plus named metrics. Every environment is deterministic: the same
// (seed, split, index) always gives the same problem. A verifier never crashes on garbage:
// empty, huge, non-UTF-8 or runaway output scores 0.
//
// Text crosses this interface as (pointer, length) pairs: model output is arbitrary bytes.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define ENV_MAX_METRICS 8
#define ENV_NAME_MAX 32
// Model output longer than this is scored 0 without being looked at.
#define ENV_MAX_OUTPUT_BYTES (1 << 20)

typedef enum { ENV_SPLIT_TRAIN = 0, ENV_SPLIT_EVAL = 1 } EnvSplit;

typedef enum { TURN_MODEL = 0, TURN_ENV = 1 } TurnRole;

typedef struct {
    TurnRole role;
    const char *text;   // bytes, not necessarily NUL-terminated or valid UTF-8
    size_t len;
} Turn;

typedef struct {
    char *prompt;       // text shown to the model (already formatted by the environment)
    char *answer;       // a reference completion (used by SFT and by some verifiers); for a
                        // multi-turn environment the whole reference conversation, model and
                        // environment turns concatenated
    char *info;         // extra data the verifier needs (environment specific), may be NULL
    uint64_t id;        // stable id of the problem (for logs and dedup): a hash of its content
    char *where;        // where a problem read from a file comes from, for messages ("data.jsonl:12");
                        // NULL for generated problems
    // Multi-turn environments only (else 0 / NULL): the reference conversation as turns whose
    // texts point into `answer`, so that SFT can end each model turn with EOS and give the
    // environment's turns loss mask 0, exactly as in an RL rollout.
    int n_answer_turns;
    Turn *answer_turns;
} Problem;

typedef struct {
    const Turn *turns;  // the conversation after the prompt, in order
    int n_turns;
} Transcript;

typedef struct {
    int count;
    char names[ENV_MAX_METRICS][ENV_NAME_MAX];
    double values[ENV_MAX_METRICS];
} EnvMetrics;

struct EnvConfig;  // the env.* settings of the config (env_config.h)
typedef struct Env Env;

struct Env {
    char name[ENV_NAME_MAX];
    int max_turns;          // model turns per episode (1 for single-turn environments)
    uint64_t seed;
    void *state;            // environment-specific data (parsed settings, loaded dataset)
    // The metrics score() fills, in order (NULL-terminated; NULL if the environment does not
    // say): score() always fills all of them, so per-environment logs have fixed columns.
    const char *const *metric_names;

    // Fills *out with problem `index` of `split`. Returns 0, or -1 with err set (for example a
    // JSONL file with fewer lines than needed is not an error: indices wrap around).
    int (*problem)(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err);
    // Environments whose problems come from a file (may be NULL for generated ones): the number
    // of distinct problems of the split; indices 0 .. count-1 give each of them once. Lets the
    // orchestrator check every prompt at start-up and evaluate each eval problem at most once.
    int (*problem_count)(const Env *env, EnvSplit split);
    // Multi-turn only (may be NULL): after a model turn, writes the environment's reply into a
    // new heap string *reply (with *reply_len) and returns 1 to continue the episode, or
    // returns 0 when the episode is over.
    int (*respond)(Env *env, const Problem *problem, const Transcript *transcript, char **reply, size_t *reply_len);
    // Reward in [0, 1] for a finished transcript; fills metrics (may be NULL) with named values.
    double (*score)(Env *env, const Problem *problem, const Transcript *transcript, EnvMetrics *metrics);
    // Optional asynchronous scoring for slow verifiers (programs run in a sandbox), so that the
    // orchestrator's loop never blocks: score_begin starts the work and returns a ticket (>= 0),
    // score_poll returns 1 with the reward and metrics once the ticket is done, 0 while it is
    // still running. An environment with these still provides score (the blocking form).
    int (*score_begin)(Env *env, const Problem *problem, const Transcript *transcript);
    int (*score_poll)(Env *env, int ticket, double *reward, EnvMetrics *metrics);
    void (*destroy)(Env *env);
};

// Every built-in environment is made by a constructor of this shape, e.g. env_reverse_create.
typedef Env *(*EnvCreateFn)(const struct EnvConfig *cfg, uint64_t seed, ErrorBuf *err);

void problem_free(Problem *problem);  // frees the strings and turns; the struct is zeroed
// Appends a named value (ignored when metrics is NULL or already holds ENV_MAX_METRICS).
void env_metrics_add(EnvMetrics *metrics, const char *name, double value);
// The value of a named metric, or `missing` when absent.
double env_metrics_get(const EnvMetrics *metrics, const char *name, double missing);
void env_destroy(Env *env);  // NULL-safe: calls env->destroy
