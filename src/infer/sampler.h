// A request's sampling settings: their checks (clear errors for values that cannot work) and
// the per-row parameters of ops_sample (kernels/ops.h), whose rule they follow: temperature,
// then top-k, top-p and min-p cuts of the rank order, or greedy; one counter-based random
// stream per request (seed, token index), so a sequence's tokens do not depend on its batch
// and a preempted sequence continues its stream exactly.
#pragma once
#include "core/error.h"
#include "infer/engine.h"
#include "ops.h"

// The smallest sampling temperature: logits / T must stay finite (at 2e-38 they overflowed to
// inf and the row sampled an arbitrary id with a NaN logprob); below it, ask for greedy.
#define SAMPLER_MIN_TEMPERATURE 1e-6f

// 0, or -1 + err naming the bad field: temperature must be finite and >= 1e-6 unless greedy,
// top_p in (0, 1], min_p in [0, 1], top_k >= 0, stop tokens in [0, vocab) and at most 1024.
int sampler_check_request(const EngineRequest *req, int vocab, ErrorBuf *err);
// The request's ops_sample parameters (counter 0; the engine sets it to the token index).
OpsSampleParams sampler_params(const EngineRequest *req);
