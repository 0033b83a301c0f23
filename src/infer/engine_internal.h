// The engine's state, shared by its files (engine.c: requests, finishing, the step; schedule.c:
// admission, KV blocks and preemption; swap.c: weight swaps). Not part of the public interface.
#pragma once
#include <stdint.h>

#include "infer/engine.h"
#include "infer/forward.h"
#include "infer/kvcache.h"
#include "ops.h"

typedef struct {
    uint64_t id;
    uint64_t order;        // arrival number: lower = older = higher priority (preempted last)
    int32_t *tokens;       // (cap) the prompt, then the completion
    int n_prompt, n_gen;   // tokens = n_prompt + n_gen
    int cap;               // n_prompt + max_tokens, at most the engine's context
    int max_tokens;
    int n_cached;          // leading tokens whose keys / values are in the cache
    float *logprobs;       // (max_tokens)
    int32_t *versions;     // (max_tokens)
    OpsSampleParams sample;  // counter is set to n_gen at each draw
    int32_t *stop;         // (n_stop)
    int n_stop;
    BlockTable table;
    int started;           // admitted at least once: weight swaps count, DRAIN waits for it
    int n_updates;         // weight swaps lived through since it started
    int scheduled;         // rows of this step
} Seq;

struct Engine {
    EngineConfig cfg;
    Model *model;          // the engine's own copy of the weights
    int context;           // longest sequence: min(max_seq_len, kv_blocks * kv_block_size)
    KVCache cache;
    InferForward fwd;
    int version;           // -1 before any weights
    float *staged;         // host (n_params): DRAIN weights waiting to apply (NULL until needed)
    int staged_version;    // -1: nothing staged
    Seq **queue;           // waiting, oldest first (new requests and preempted sequences)
    int n_queue, cap_queue;
    Seq **running;         // admitted, oldest first
    int n_running;         // <= max_seqs
    Completion *finished;  // taken by engine_take_finished
    int n_finished, cap_finished;
    uint64_t next_order;
    // Sampling of one chunk of logit rows: host and device arrays of logit_rows entries.
    OpsSampleParams *h_params, *d_params;
    int32_t *h_tokens, *d_tokens;
    float *h_logprobs, *d_logprobs;
    Seq **sample_seqs;     // (max_seqs) the sequence of each sample row of the step
    EngineStats stats;
};

// schedule.c
// Admits queued sequences and picks this step's rows (preempting when blocks run out); fills
// e->fwd.batch and e->sample_seqs. Returns the row count (0: nothing to run).
int engine_schedule(Engine *e);
// Frees s's blocks and puts it back in the queue (by age) to be recomputed later.
void engine_preempt(Engine *e, Seq *s);
void engine_queue_insert(Engine *e, Seq *s);
void engine_remove_running(Engine *e, Seq *s);
void engine_remove_queued(Engine *e, Seq *s);

// engine.c
// Moves s (running or queued) to the finished list with `finish` and reason (may be NULL).
void engine_finish(Engine *e, Seq *s, int finish, const char *reason);

// swap.c
// DRAIN: applies staged weights once no started sequence is left.
void engine_apply_staged_if_idle(Engine *e);
int engine_started_count(const Engine *e);  // started sequences running or queued
