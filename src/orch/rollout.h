// Rollout groups as the orchestrator tracks them: a problem, its group of samples, and for
// each sample the whole token sequence (prompt, model turns, environment turns) with the
// loss mask (1 on tokens the model sampled), the inference logprob and the policy version of
// each token. Multi-turn episodes go back to inference with the transcript so far as the new
// prompt; environment replies are tokenized and masked out of the loss.
#pragma once
#include <stdint.h>

#include "comm/protocol.h"
#include "env/env.h"

// Text <-> tokens, provided by the tokenizer in use.
typedef struct {
    void *ctx;
    int bos, eos;
    // Writes at most max ids; returns the count (or -1 when the text needs more than max).
    int (*encode)(void *ctx, const char *text, size_t len, int add_bos, int32_t *out, int max);
    // Appends the text of ids to a heap buffer; returns its length.
    size_t (*decode)(void *ctx, const int32_t *ids, int n, char **text);
} TextCodec;

typedef enum { SAMPLE_WAITING = 0, SAMPLE_RUNNING = 1, SAMPLE_DONE = 2 } SampleState;

typedef struct {
    int n, cap;
    int32_t *tokens;        // (n)
    uint8_t *mask;          // (n) 1 = sampled by the model
    float *logp;            // (n) inference logprob (0 where mask is 0)
    int32_t *version;       // (n) policy version (-1 for prompt and environment tokens)
    int prompt_len;
    // The transcript after the prompt, as the environment sees it.
    Turn *turns;
    int n_turns;
    int model_turns;
    SampleState state;
    uint64_t request_id;
    int rank;               // inference rank running it
    int finish;             // FinishReason of the last model turn
    int truncated;          // hit max_tokens or the row length
    double reward;
    double advantage;
    EnvMetrics metrics;
    int score_ticket;       // async scoring ticket, -1 when none
} Sample;

typedef struct {
    uint64_t id;
    int env;                // index into the environment mix
    uint64_t problem_index;
    EnvSplit split;
    Problem problem;
    int step;               // the step it was handed out for
    int version;            // exact policy version its requests must use (-1: the newest)
    int eval;               // an evaluation group (not trained)
    int n;
    Sample *samples;        // (n)
    int n_done, n_scored;
    int attempts;           // times the group was rescheduled
} Group;

typedef struct {
    int max_total;          // longest sample in tokens (trainer.seq_len + 1, or less: see max_total_by)
    int max_tokens;         // longest model turn
    char max_total_by[96];  // the setting that sets max_total, for messages
} RolloutLimits;

// Whether BOS + prompt leaves room for a completion in a sample of lim->max_total tokens;
// *tokens = the prompt's tokens with BOS when it had to be encoded to tell, else -1 (a prompt
// of len bytes never needs more than len + 2, so short prompts are not encoded).
int prompt_fits(const TextCodec *codec, const RolloutLimits *lim, const char *prompt, int *tokens);

// Makes a group of n samples for `problem` (taken over by the group). The prompt is tokenized
// with BOS. Returns -1 with err when the prompt leaves no room for a completion.
int group_init(Group *g, uint64_t id, int env, uint64_t problem_index, EnvSplit split, Problem *problem, int n,
               const TextCodec *codec, const RolloutLimits *lim, ErrorBuf *err);
void group_free(Group *g);
// Resets every sample to its prompt (a rescheduled group starts over).
void group_restart(Group *g);

// Fills the request for sample s: its tokens so far as the prompt, the room left as max_tokens.
void sample_make_request(const Group *g, int s, const RolloutLimits *lim, Request *req);
// Applies a completion to sample s: appends the model turn; for a multi-turn environment asks
// for its reply and appends it (the sample waits for another turn), else the sample is done.
// Returns 1 when the sample is done.
int sample_complete(Group *g, int s, const Completion *c, Env *env, const TextCodec *codec, const RolloutLimits *lim);
// Scores every sample with the environment (blocking form). Sets rewards and metrics.
void group_score(Group *g, Env *env);
// Starts scoring: with an environment that scores asynchronously (programs in a sandbox) each
// sample gets a ticket and 0 is returned; otherwise the group is scored at once and 1 returned.
int group_score_begin(Group *g, Env *env);
// Collects finished asynchronous scores without blocking; 1 once every sample is scored.
int group_score_poll(Group *g, Env *env);
// Completion tokens (mask 1) of a sample, and its oldest/newest token versions.
int sample_completion_tokens(const Sample *s);
void sample_version_range(const Sample *s, int *min_version, int *max_version);
