// The orchestrator's state, shared by its files: orchestrator.c (the loop and scheduling),
// orch_batch.c (turning scored groups into a step's batch and its metrics), orch_eval.c
// (evaluation) and orch_sft.c (the supervised warm-up).
#pragma once
#include <stdint.h>

#include "comm/layout.h"
#include "comm/protocol.h"
#include "comm/transport.h"
#include "core/config.h"
#include "env/env.h"
#include "env/mix.h"
#include "io/metrics.h"
#include "orch/pools.h"
#include "orch/rollout.h"

#define EVAL_GROUP_IDS (1ULL << 62)

typedef struct {
    Group **items;
    int count, cap;
} GroupList;

void group_list_push(GroupList *l, Group *g);
void group_list_remove_at(GroupList *l, int i);

// Request id -> (group, sample): open addressing, ids are never 0.
typedef struct {
    uint64_t id;
    Group *group;
    int sample;
} RequestSlot;

typedef struct {
    RequestSlot *slots;
    int cap, count;
} RequestMap;

// Orchestrator-side statistics of a step's batch, kept until the trainer's step-done arrives.
typedef struct {
    int step;
    int valid;
    double reward_sum, reward_n;
    double env_reward_sum[16], env_reward_n[16];
    double completion_len_sum, seq_len_sum, seq_len_max, truncated;
    double off_policy_sum, off_policy_n, off_policy_max;
    double dropped_groups, rescheduled_groups, samples;
    double skipped;          // problems the pools skipped for this step
    double rollout_wait_s;   // how long the batch waited for rollouts after the previous one
} StepStats;

typedef struct {
    Request *items;          // requests collected for one inference rank, sent by orch_flush
    int count, cap;
} RequestList;

// Deterministic mode: the counters at the moment a step's first group was handed out.
typedef struct {
    uint64_t cursor, next_group, next_request;
    int rr_rank;
} DetMark;

// An inference rank's throughput, from the engine totals that come with its completions. The
// totals are as of when they were sent, so rates are taken between two of them, over the time
// between them on the rank's own clock (not over the step, which would alias: the totals move
// only when completions arrive).
typedef struct {
    EngineTotals latest;     // the newest totals (clock_s < 0: none yet)
    EngineTotals marked;     // the totals the last logged step measured up to (clock_s < 0: none)
    double tokens_per_s;     // decode tokens/s between the last two marks (NaN: not measured yet)
    double busy_frac;        // the share of that time spent in engine steps (NaN: not yet)
} InferenceMeter;

typedef struct {
    const Config *cfg;
    const Layout *L;
    EnvMix mix;
    Env **envs;              // mix.envs
    int n_envs;
    TextCodec codec;
    void *tokenizer;
    RolloutLimits lim;         // rollouts: a training row, the model's and the engine's context
    RolloutLimits sft_lim;     // warm-up samples: a training row and the model's context
    ProtoLimits plim;
    MetricsWriter *mw;
    Outbox out;
    double t_start;
    double job_started;        // when this job started, in seconds since 1970 (a column of /steps/timing)

    GroupList active;        // handed out and not yet scored (RL and eval)
    GroupList scoring;       // finished groups whose scores are still being computed (sandbox)
    GroupList ready;         // scored RL groups with signal, waiting for a batch
    RequestMap map;
    uint64_t next_request, next_group;
    uint64_t next_eval_group;  // evaluation groups' ids: EVAL_GROUP_IDS + 1, + 2, ...
    uint64_t cursor;         // next training problem index
    uint64_t sft_cursor;

    int n_inf;
    int *inf_version;        // policy version each inference rank holds
    int *inf_load;           // requests outstanding per inference rank
    RequestList *outgoing;   // (n_inf) requests collected, not yet sent
    InferenceMeter *inf_meter;   // (n_inf) throughput of each inference rank, from its engine totals
    int capacity;            // requests kept outstanding per inference rank
    int rr_rank;             // round-robin rank for deterministic mode

    int step_fill;           // the step whose batch is being filled
    int steps_done;          // steps the trainer has finished
    int trainer_version;     // newest policy version the trainer has produced
    int stop;                // the run must end early (see trainer_stop, dropped_in_row)
    int trainer_stop;        // the trainer asked to stop (too many bad steps in a row)
    int dropped_in_row;      // zero-advantage groups since the last kept one
    ProblemPools pools;      // easy / hard problems (orchestrator.easy_threshold, hard_threshold)
    int skipped_in_row;      // problems the pools skipped since the last one handed out
    int sft_done;            // warm-up steps the trainer has finished
    // Checkpoints and resume.
    int resumed;             // started from a checkpoint
    int64_t *reissue;        // problem indices to hand out before the cursor (from a checkpoint)
    int n_reissue, reissue_head;
    int ckpt_acked;          // step of the last checkpoint acknowledged by the trainer root (-1 none)
    int ckpt_requested;      // step of the last checkpoint this job asked the trainer for (-1 none)
    double run_dir_checked_at;  // MPI_Wtime of the last check that run.output_dir is still in place
    int forwarded_signal;       // a stop signal a trainer or inference rank passed on (0 none)
    double step_done_at;        // orch_now() when the last RL step ended (or RL began)
    int ckpt_ok;             // whether it was written
    int det_marked;          // deterministic mode: the step det_mark belongs to (-1 none)
    DetMark det_mark;
    StepStats *stats;        // (max_steps) per-step orchestrator statistics
    double trainer_idle_since;  // when the trainer finished its last step (waiting for a batch)
    const char **step_names, **eval_names;
    int n_step_names, n_eval_names;
    double busy_s, busy_at_step;    // the orchestrator's own work (not its sleeps)

    // Evaluation: its problems (made on first use, the same for every evaluation) ...
    int n_eval_problems;     // at most eval.problems (fewer when the eval splits hold fewer)
    int *eval_env;           // (n_eval_problems) environment of each
    uint64_t *eval_index;    // (n_eval_problems) its index in that environment's eval split
    uint64_t *eval_position; // (n_eval_problems) its position p among the eval.problems asked for
    // ... and the one in progress.
    int eval_pending;        // eval groups not yet scored
    int eval_step;           // step the running evaluation belongs to
    GroupList eval_done;
} Orch;

uint64_t orch_request_seed(const Orch *o, const Group *g, int sample);
// Makes the evaluation's list of problems (once; see orch_eval.c).
void orch_plan_eval(Orch *o);
// Adds "WHERE (N tokens)" to a message listing the first 3 examples too long (nth counts from 1).
void orch_list_example(char *list, size_t size, int nth, const char *where, int tokens);
// Creates a group for problem `index` of `split` of environment `env` (-1: the environment the
// mix picks for the index).
Group *orch_new_group(Orch *o, int env, EnvSplit split, uint64_t index, int n_samples, int step, int eval);
// Queues every waiting sample of g for inference rank `rank` (with g->version); orch_flush
// sends each rank's queue as one message.
void orch_dispatch(Orch *o, Group *g, int rank);
void orch_flush(Orch *o);
// Receives and handles every message that has arrived; returns how many.
int orch_poll(Orch *o);
double orch_now(const Orch *o);

// orch_batch.c
// Takes batch_size samples of ready groups, packs and sends them as step o->step_fill.
void orch_send_batch(Orch *o);
int orch_ready_samples(const Orch *o);
// Merges the trainer's step-done with the step's statistics; writes metrics; prints the line.
void orch_step_done(Orch *o, const StepDone *s);
const char *const *orch_step_metric_names(const Orch *o, int *n);

// Sends the trainer root a checkpoint request for the boundary after `step` steps, with the
// orchestrator's state at that boundary (call right after sending batch step-1).
void orch_request_checkpoint(Orch *o, int step);
// The stop signal this job received, on rank 0 or passed on by another rank; 0 when none.
int orch_stop_signal(const Orch *o);
// Waits (sleeping, handling messages) until the checkpoint of `step` is acknowledged; returns ok.
// Steps that finish meanwhile get their periodic evaluations (eval.interval), as in rl_loop.
int orch_wait_checkpoint(Orch *o, int step);

// orch_eval.c
// Evaluates eval.problems held-out problems (greedy + eval.samples sampled each), blocking
// until done, and logs the result under step `step`. Returns the mean greedy reward.
double orch_evaluate(Orch *o, int step, const char *label);
const char *const *orch_eval_metric_names(const Orch *o, int *n);

// orch_sft.c
// Runs sft.steps supervised steps on reference answers (or a JSONL file).
// The warm-up's remaining steps. A stop signal ends it early: the batches already sent are
// trained, then it returns the signal (0 when the warm-up is done).
int orch_sft(Orch *o);
// The trainer finished a warm-up step: logs it.
void orch_sft_step_done(Orch *o, const StepDone *s);
extern const MetricsTable ORCH_SFT_TABLE;
