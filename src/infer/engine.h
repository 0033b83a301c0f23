// The inference engine of one inference rank (it replaces vLLM in prime-rl): a paged KV cache
// with a fixed memory budget, continuous batching (finished sequences leave and queued ones
// join at every step), chunked prefill of new prompts, batched decode of every active
// sequence in one pass (one GEMM per weight matrix across sequences), samplers (temperature,
// top-k, top-p, min-p, greedy) with one RNG per request seeded from the request, and weight
// swaps between two steps.
//
// Every sampled token carries its logprob at the sampling temperature and the policy version
// that produced it. Weight swaps (engine_set_weights) take effect between two engine steps:
//   ENGINE_SWAP_IN_FLIGHT  at once: unfinished sequences keep their KV cache and go on with the
//                          new weights; their next tokens carry the new version.
//   ENGINE_SWAP_DRAIN      the new weights wait; no new sequence is admitted until every active
//                          one has finished on the version it started with; then they apply.
// A sequence that lives through more than max_updates swaps is cancelled (FINISH_CANCELLED).
// When the KV budget runs out, sequences are preempted (their blocks freed) and resumed later
// by recomputing their cache: never dropped, never a crash. A prompt that does not fit the
// context finishes at once with FINISH_REJECTED and the reason.
//
// Details of this implementation:
// - Context: a sequence (prompt + completion) holds at most engine_context() tokens; a prompt
//   of that many or more is REJECTED, and generation stops with FINISH_LENGTH when it is full
//   (or at max_tokens). The KV budget must give every one of max_seqs sequences a block.
// - Sampling (kernels/ops.h, ops_sample): the logprob is log_softmax(logits / T)[token] of the
//   full, untruncated distribution at the request's temperature (greedy requests with
//   temperature 0 report it at T = 1). The random stream is counter-based: token i of a
//   request draws uniform(seed, i), so outputs do not depend on the batch or on preemption.
// - Preemption frees the youngest running sequence (latest arrival); it is requeued ahead of
//   newer requests and recomputes its cache (prompt + tokens so far) by prefill when resumed.
// - Weight updates count for sequences that have started (been admitted once); with IN_FLIGHT
//   the recomputation of a preempted sequence uses the weights of the moment.
// - No sequence is admitted before the first engine_set_weights.
// - Batch invariance: attention and sampling compute each sequence alone; the GEMMs (OpenBLAS
//   on CPU) may round a row differently with a different number of rows, so a sequence's
//   logprobs match its solo run to ~1e-6, not always bit for bit.
#pragma once
#include <stdint.h>

#include "comm/protocol.h"
#include "core/error.h"
#include "model/model.h"

typedef enum { ENGINE_SWAP_IN_FLIGHT = 0, ENGINE_SWAP_DRAIN = 1 } EngineSwapMode;

typedef struct {
    int max_seqs;          // sequences decoded together
    int kv_block_size;     // tokens per KV block
    int kv_blocks;         // blocks in the cache (0 = enough for max_seqs full-length sequences)
    int kv_dtype;          // OpsKVDtype of the cache (0 = fp32)
    int prefill_chunk;     // prompt tokens prefilled per engine step
    EngineSwapMode swap_mode;
    int max_updates;       // cancel a sequence after this many swaps (-1: never)
} EngineConfig;

typedef struct {
    uint64_t id;
    const int32_t *prompt;   // (n_prompt) token ids, copied by engine_add
    int n_prompt;
    int max_tokens;
    float temperature, top_p, min_p;
    int top_k;
    int greedy;
    uint64_t seed;           // the request's own sampler stream
    const int32_t *stop;     // (n_stop) stop tokens (the stop token is kept in the output)
    int n_stop;
} EngineRequest;

typedef struct Engine Engine;

// Builds an engine for model shape mc (allocates its own parameter buffer and the KV cache).
// NULL + err when the settings cannot work (e.g. a KV budget smaller than one sequence).
Engine *engine_create(const ModelConfig *mc, const EngineConfig *ec, ErrorBuf *err);
void engine_free(Engine *e);
// New weights (the model's params layout, n_params floats) as `version`. Host or device memory:
// the weight receiver (comm/weights.h) hands out device buffers, and the backends' copies take
// either (the CUDA backend's copies infer the direction from the pointers).
void engine_set_weights(Engine *e, const float *host_params, int version);
int engine_version(const Engine *e);       // version sampling now (-1 before any weights)
int engine_staged_version(const Engine *e); // DRAIN mode: version waiting to apply (-1 none)
size_t engine_n_params(const Engine *e);
// Queues a request. An invalid token id or parameter is an error (-1 + err, nothing queued);
// a prompt too long for the context is accepted and finishes REJECTED with a reason.
int engine_add(Engine *e, const EngineRequest *req, ErrorBuf *err);
// Cancels a queued or running request: it finishes with FINISH_CANCELLED. 0, or -1 if unknown.
int engine_cancel(Engine *e, uint64_t id, const char *reason);
void engine_cancel_all(Engine *e, const char *reason);
// One step: admit queued requests, prefill up to prefill_chunk prompt tokens, decode one token
// for every active sequence. Returns the number of tokens computed (0: nothing to do).
int engine_step(Engine *e);
int engine_active(const Engine *e);   // sequences admitted and not finished
int engine_queued(const Engine *e);   // waiting for admission (including preempted ones)
// Moves the finished sequences out (caller frees with completions_free). Returns the count.
int engine_take_finished(Engine *e, Completion **out);

typedef struct {
    double prefill_tokens, decode_tokens;  // totals
    double preemptions, cancelled;
    double kv_blocks_used, kv_blocks_total;
} EngineStats;
void engine_stats(const Engine *e, EngineStats *out);

// ---------------------------------------------------------------------------------------
// Extensions (compatible additions to the interface above).

// The EngineConfig of a job's config: inference.max_seqs / kv_block_size / kv_blocks /
// kv_cache_dtype / prefill_chunk; IN_FLIGHT swaps when orchestrator.in_flight_updates and not
// run.deterministic, else DRAIN; max_updates = orchestrator.max_off_policy_steps.
void engine_config_from(const Config *cfg, EngineConfig *ec);
// The OpsKVDtype named "fp32" or "fp16" (inference.kv_cache_dtype, generate's --kv-cache), -1
// for any other name.
int engine_kv_dtype(const char *name);
// Longest sequence (prompt + completion) the engine runs: the model's max_seq_len, or less
// when the KV cache (kv_blocks x kv_block_size tokens) is smaller.
int engine_context(const Engine *e);
// The engine's model (its weights are the current version's).
const Model *engine_model(const Engine *e);
// The tokens generated so far by a queued or running request (for streaming): returns their
// count and points *tokens at them (valid until the next engine call), or -1 if unknown.
int engine_peek(const Engine *e, uint64_t id, const int32_t **tokens);
