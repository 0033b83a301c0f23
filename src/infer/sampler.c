// Checks of a request's sampling settings and their translation to ops_sample parameters
// (see sampler.h; the sampling itself runs on the device, kernels/<backend>/sample).
#include "infer/sampler.h"

#include <math.h>
#include <string.h>

#define MAX_STOP_TOKENS 1024

int sampler_check_request(const EngineRequest *req, int vocab, ErrorBuf *err) {
    const unsigned long long id = (unsigned long long)req->id;
    if (!req->greedy && !(isfinite(req->temperature) && req->temperature >= SAMPLER_MIN_TEMPERATURE))
        return error_set(err, "request %llu: temperature = %g must be finite and at least %g (or ask for greedy "
                         "decoding)", id, (double)req->temperature, (double)SAMPLER_MIN_TEMPERATURE);
    if (req->greedy && !(req->temperature >= 0.0f && req->temperature < INFINITY))
        return error_set(err, "request %llu: temperature = %g must be finite and >= 0", id, (double)req->temperature);
    if (!(req->top_p > 0.0f && req->top_p <= 1.0f))
        return error_set(err, "request %llu: top_p = %g must be in (0, 1] (1 = off)", id, (double)req->top_p);
    if (!(req->min_p >= 0.0f && req->min_p <= 1.0f))
        return error_set(err, "request %llu: min_p = %g must be in [0, 1] (0 = off)", id, (double)req->min_p);
    if (req->top_k < 0) return error_set(err, "request %llu: top_k = %d must be >= 0 (0 = off)", id, req->top_k);
    if (req->n_stop < 0 || req->n_stop > MAX_STOP_TOKENS || (req->n_stop > 0 && !req->stop))
        return error_set(err, "request %llu: %d stop tokens (at most %d, and the array must be given)", id, req->n_stop,
                         MAX_STOP_TOKENS);
    for (int i = 0; i < req->n_stop; i++)
        if (req->stop[i] < 0 || req->stop[i] >= vocab)
            return error_set(err, "request %llu: stop token %d is outside the vocabulary [0, %d)", id, req->stop[i],
                             vocab);
    return 0;
}

OpsSampleParams sampler_params(const EngineRequest *req) {
    OpsSampleParams p;
    memset(&p, 0, sizeof p);
    p.temperature = req->temperature > 0.0f ? req->temperature : 1.0f;
    p.top_p = req->top_p;
    p.min_p = req->min_p;
    p.top_k = req->top_k;
    p.greedy = req->greedy != 0;
    p.seed = req->seed;
    p.counter = 0;
    return p;
}
