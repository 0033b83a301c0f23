// The inference engine (see engine.h): creation and its checks, requests in (engine_add) and
// completions out (engine_take_finished), cancellation, and the step: schedule rows, one
// batched forward over them, sample the sequences that reached their last token, finish those
// that stopped. Scheduling is in schedule.c, weight swaps in swap.c, the forward in forward.c.
#include "infer/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "infer/engine_internal.h"
#include "infer/sampler.h"

// Logit rows computed (and sampled) at a time: bounds the (rows, V) logits buffer.
#define ENGINE_LOGIT_ROWS 256

int engine_kv_dtype(const char *name) {
    if (strcmp(name, "fp32") == 0) return OPS_KV_F32;
    if (strcmp(name, "fp16") == 0) return OPS_KV_F16;
    return -1;
}

void engine_config_from(const Config *cfg, EngineConfig *ec) {
    memset(ec, 0, sizeof *ec);
    ec->max_seqs = cfg->inference.max_seqs;
    ec->kv_block_size = cfg->inference.kv_block_size;
    ec->kv_blocks = cfg->inference.kv_blocks;
    ec->kv_dtype = engine_kv_dtype(cfg->inference.kv_cache_dtype);  // the config allows only the two names
    ec->prefill_chunk = cfg->inference.prefill_chunk;
    ec->swap_mode = cfg->orchestrator.in_flight_updates && !cfg->run.deterministic ? ENGINE_SWAP_IN_FLIGHT
                                                                                     : ENGINE_SWAP_DRAIN;
    ec->max_updates = cfg->orchestrator.max_off_policy_steps;
}

static int check_engine_config(const ModelConfig *mc, const EngineConfig *ec, ErrorBuf *err) {
    if (ec->max_seqs < 1) return error_set(err, "inference.max_seqs = %d must be >= 1", ec->max_seqs);
    if (ec->kv_block_size < 1) return error_set(err, "inference.kv_block_size = %d must be >= 1", ec->kv_block_size);
    if (ec->kv_blocks < 0) return error_set(err, "inference.kv_blocks = %d must be >= 0 (0 = enough for max_seqs "
                                                 "full-length sequences)", ec->kv_blocks);
    if (ec->prefill_chunk < 1) return error_set(err, "inference.prefill_chunk = %d must be >= 1", ec->prefill_chunk);
    if (ec->swap_mode != ENGINE_SWAP_IN_FLIGHT && ec->swap_mode != ENGINE_SWAP_DRAIN)
        return error_set(err, "unknown weight swap mode %d", (int)ec->swap_mode);
    if (ec->max_updates < -1) return error_set(err, "max_updates = %d must be >= -1 (-1 = never cancel)", ec->max_updates);
    if (ec->kv_blocks > 0 && ec->kv_blocks < ec->max_seqs)
        return error_set(err, "inference.kv_blocks = %d is smaller than inference.max_seqs = %d: every running "
                              "sequence needs at least one block of the KV cache; raise kv_blocks or lower max_seqs",
                         ec->kv_blocks, ec->max_seqs);
    if ((double)ec->max_seqs + ec->prefill_chunk > 1 << 24)
        return error_set(err, "inference.max_seqs + inference.prefill_chunk = %.0f rows per step is too many "
                              "(at most %d)", (double)ec->max_seqs + ec->prefill_chunk, 1 << 24);
    (void)mc;
    return 0;
}

Engine *engine_create(const ModelConfig *mc, const EngineConfig *ec, ErrorBuf *err) {
    ModelConfig c = *mc;
    if (model_config_resolve(&c, err) != 0) return NULL;
    if (check_engine_config(&c, ec, err) != 0) return NULL;
    const int bs = ec->kv_block_size;
    const long blocks_per_seq = (c.max_seq_len + bs - 1) / bs;
    long n_blocks = ec->kv_blocks;
    if (n_blocks == 0) n_blocks = blocks_per_seq * ec->max_seqs;
    if (n_blocks > INT32_MAX / bs) {
        error_set(err, "a KV cache of %ld blocks of %d tokens is too large: set inference.kv_blocks", n_blocks, bs);
        return NULL;
    }
    Engine *e = xcalloc(1, sizeof(Engine));
    e->cfg = *ec;
    e->version = -1;
    e->staged_version = -1;
    e->context = c.max_seq_len < n_blocks * bs ? c.max_seq_len : (int)(n_blocks * bs);
    const int max_blocks = (e->context + bs - 1) / bs;
    const int logit_rows = ec->max_seqs < ENGINE_LOGIT_ROWS ? ec->max_seqs : ENGINE_LOGIT_ROWS;
    if (kvcache_init(&e->cache, c.n_layers, c.n_kv_heads * c.head_dim, bs, (int)n_blocks, ec->kv_dtype, err) != 0 ||
        infer_forward_init(&e->fwd, &c, ec->max_seqs + ec->prefill_chunk, ec->max_seqs, max_blocks, logit_rows,
                           err) != 0) {
        engine_free(e);
        return NULL;
    }
    e->model = model_create(&c, err);
    if (!e->model) {
        engine_free(e);
        return NULL;
    }
    e->running = xcalloc((size_t)ec->max_seqs, sizeof(Seq *));
    e->sample_seqs = xcalloc((size_t)ec->max_seqs, sizeof(Seq *));
    e->h_params = xcalloc((size_t)logit_rows, sizeof(OpsSampleParams));
    e->h_tokens = xcalloc((size_t)logit_rows, sizeof(int32_t));
    e->h_logprobs = xcalloc((size_t)logit_rows, sizeof(float));
    e->d_params = ops_alloc((size_t)logit_rows * sizeof(OpsSampleParams));
    e->d_tokens = ops_alloc((size_t)logit_rows * sizeof(int32_t));
    e->d_logprobs = ops_alloc((size_t)logit_rows * sizeof(float));
    e->stats.kv_blocks_total = (double)n_blocks;
    if (e->context < c.max_seq_len)
        LOG_INFO("inference: the KV cache (%ld blocks of %d tokens) limits sequences to %d tokens (the model allows %d)",
                 n_blocks, bs, e->context, c.max_seq_len);
    return e;
}

static void seq_free(Seq *s) {
    if (!s) return;
    free(s->tokens);
    free(s->logprobs);
    free(s->versions);
    free(s->stop);
    block_table_free(&s->table);
    free(s);
}

void engine_free(Engine *e) {
    if (!e) return;
    for (int i = 0; i < e->n_queue; i++) seq_free(e->queue[i]);
    for (int i = 0; i < e->n_running; i++) seq_free(e->running[i]);
    free(e->queue);
    free(e->running);
    completions_free(e->finished, e->n_finished);
    kvcache_free(&e->cache);
    infer_forward_free(&e->fwd);
    model_free(e->model);
    free(e->staged);
    free(e->sample_seqs);
    free(e->h_params);
    free(e->h_tokens);
    free(e->h_logprobs);
    ops_free(e->d_params);
    ops_free(e->d_tokens);
    ops_free(e->d_logprobs);
    free(e);
}

int engine_version(const Engine *e) { return e->version; }
int engine_staged_version(const Engine *e) { return e->staged_version; }
size_t engine_n_params(const Engine *e) { return e->model->n_params; }
int engine_active(const Engine *e) { return e->n_running; }
int engine_queued(const Engine *e) { return e->n_queue; }
int engine_context(const Engine *e) { return e->context; }
const Model *engine_model(const Engine *e) { return e->model; }

// ---------------------------------------------------------------------------------------
// Requests and completions.

static Seq *find_seq(const Engine *e, uint64_t id) {
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i]->id == id) return e->running[i];
    for (int i = 0; i < e->n_queue; i++)
        if (e->queue[i]->id == id) return e->queue[i];
    return NULL;
}

static Completion *new_completion(Engine *e) {
    if (e->n_finished == e->cap_finished) {
        e->cap_finished = e->cap_finished ? 2 * e->cap_finished : 64;
        e->finished = xrealloc(e->finished, (size_t)e->cap_finished * sizeof(Completion));
    }
    Completion *c = &e->finished[e->n_finished++];
    memset(c, 0, sizeof *c);
    return c;
}

static void set_reason(Completion *c, const char *reason) {
    if (reason) snprintf(c->reason, sizeof c->reason, "%s", reason);
}

void engine_finish(Engine *e, Seq *s, int finish, const char *reason) {
    Completion *c = new_completion(e);
    c->id = s->id;
    c->finish = (uint8_t)finish;
    c->n = s->n_gen;
    c->tokens = xmalloc((size_t)s->n_gen * sizeof(int32_t));
    c->logprobs = xmalloc((size_t)s->n_gen * sizeof(float));
    c->versions = xmalloc((size_t)s->n_gen * sizeof(int32_t));
    memcpy(c->tokens, s->tokens + s->n_prompt, (size_t)s->n_gen * sizeof(int32_t));
    memcpy(c->logprobs, s->logprobs, (size_t)s->n_gen * sizeof(float));
    memcpy(c->versions, s->versions, (size_t)s->n_gen * sizeof(int32_t));
    set_reason(c, reason);
    if (finish == FINISH_CANCELLED) e->stats.cancelled++;
    block_table_release(&e->cache, &s->table);
    engine_remove_running(e, s);
    engine_remove_queued(e, s);
    seq_free(s);
}

int engine_add(Engine *e, const EngineRequest *req, ErrorBuf *err) {
    const int V = e->model->config.vocab_size;
    if (!req) return error_set(err, "engine_add: no request");
    if (req->n_prompt < 1 || !req->prompt)
        return error_set(err, "request %llu: the prompt is empty (n_prompt = %d); give at least one token (e.g. BOS)",
                         (unsigned long long)req->id, req->n_prompt);
    for (int i = 0; i < req->n_prompt; i++)
        if (req->prompt[i] < 0 || req->prompt[i] >= V)
            return error_set(err, "request %llu: prompt token %d at index %d is outside the vocabulary [0, %d)",
                             (unsigned long long)req->id, req->prompt[i], i, V);
    if (req->max_tokens < 1)
        return error_set(err, "request %llu: max_tokens = %d must be >= 1", (unsigned long long)req->id,
                         req->max_tokens);
    if (sampler_check_request(req, V, err) != 0) return -1;
    if (find_seq(e, req->id))
        return error_set(err, "request %llu is already queued or running: request ids must be unique",
                         (unsigned long long)req->id);
    if (req->n_prompt >= e->context) {
        Completion *c = new_completion(e);
        c->id = req->id;
        c->finish = FINISH_REJECTED;
        c->tokens = xmalloc(sizeof(int32_t));
        c->logprobs = xmalloc(sizeof(float));
        c->versions = xmalloc(sizeof(int32_t));
        snprintf(c->reason, sizeof c->reason,
                 "the prompt of %d tokens leaves no room in the context of %d tokens (%s): shorten the prompt",
                 req->n_prompt, e->context,
                 e->context < e->model->config.max_seq_len ? "limited by the KV cache, inference.kv_blocks x "
                                                             "inference.kv_block_size"
                                                           : "the model's max_seq_len");
        return 0;
    }
    Seq *s = xcalloc(1, sizeof(Seq));
    s->id = req->id;
    s->order = e->next_order++;
    s->n_prompt = req->n_prompt;
    s->max_tokens = req->max_tokens;
    const long cap = (long)req->n_prompt + req->max_tokens;
    s->cap = cap < e->context ? (int)cap : e->context;
    s->tokens = xmalloc((size_t)s->cap * sizeof(int32_t));
    memcpy(s->tokens, req->prompt, (size_t)req->n_prompt * sizeof(int32_t));
    const int max_gen = s->cap - s->n_prompt;
    s->logprobs = xmalloc((size_t)max_gen * sizeof(float));
    s->versions = xmalloc((size_t)max_gen * sizeof(int32_t));
    s->sample = sampler_params(req);
    s->n_stop = req->n_stop;
    s->stop = xmalloc((size_t)(req->n_stop > 0 ? req->n_stop : 1) * sizeof(int32_t));
    if (req->n_stop > 0) memcpy(s->stop, req->stop, (size_t)req->n_stop * sizeof(int32_t));
    engine_queue_insert(e, s);
    return 0;
}

int engine_cancel(Engine *e, uint64_t id, const char *reason) {
    Seq *s = find_seq(e, id);
    if (!s) return -1;
    engine_finish(e, s, FINISH_CANCELLED, reason ? reason : "cancelled");
    engine_apply_staged_if_idle(e);
    return 0;
}

void engine_cancel_all(Engine *e, const char *reason) {
    while (e->n_running > 0) engine_finish(e, e->running[e->n_running - 1], FINISH_CANCELLED, reason ? reason : "cancelled");
    while (e->n_queue > 0) engine_finish(e, e->queue[e->n_queue - 1], FINISH_CANCELLED, reason ? reason : "cancelled");
    engine_apply_staged_if_idle(e);
}

int engine_take_finished(Engine *e, Completion **out) {
    const int n = e->n_finished;
    *out = NULL;
    if (n == 0) return 0;
    *out = e->finished;
    e->finished = NULL;
    e->n_finished = e->cap_finished = 0;
    return n;
}

int engine_peek(const Engine *e, uint64_t id, const int32_t **tokens) {
    const Seq *s = find_seq(e, id);
    if (!s) return -1;
    if (tokens) *tokens = s->tokens + s->n_prompt;
    return s->n_gen;
}

void engine_stats(const Engine *e, EngineStats *out) {
    *out = e->stats;
    out->kv_blocks_used = kvcache_blocks_used(&e->cache);
    out->kv_blocks_total = e->cache.n_blocks;
}

// ---------------------------------------------------------------------------------------
// The step.

static int is_stop(const Seq *s, int32_t tok) {
    for (int i = 0; i < s->n_stop; i++)
        if (s->stop[i] == tok) return 1;
    return 0;
}

// Samples the step's sample rows chunk by chunk and appends the tokens to their sequences.
static void sample_rows(Engine *e) {
    const InferBatch *b = &e->fwd.batch;
    const int V = e->model->config.vocab_size;
    for (int first = 0; first < b->n_sample; first += e->fwd.logit_rows) {
        const int count = b->n_sample - first < e->fwd.logit_rows ? b->n_sample - first : e->fwd.logit_rows;
        infer_forward_logits(&e->fwd, e->model, first, count);
        for (int i = 0; i < count; i++) {
            const Seq *s = e->sample_seqs[first + i];
            e->h_params[i] = s->sample;
            e->h_params[i].counter = (uint64_t)s->n_gen;
        }
        ops_copy_to_device(e->d_params, e->h_params, (size_t)count * sizeof(OpsSampleParams));
        ops_sample(e->d_tokens, e->d_logprobs, e->fwd.logits, e->d_params, count, V);
        ops_copy_to_host(e->h_tokens, e->d_tokens, (size_t)count * sizeof(int32_t));
        ops_copy_to_host(e->h_logprobs, e->d_logprobs, (size_t)count * sizeof(float));
        for (int i = 0; i < count; i++) {
            Seq *s = e->sample_seqs[first + i];
            s->tokens[s->n_prompt + s->n_gen] = e->h_tokens[i];
            s->logprobs[s->n_gen] = e->h_logprobs[i];
            s->versions[s->n_gen] = e->version;
            s->n_gen++;
        }
    }
    e->stats.decode_tokens += b->n_sample;
}

// Finishes the sampled sequences that hit a stop token, max_tokens or the context.
static void finish_stopped(Engine *e) {
    const InferBatch *b = &e->fwd.batch;
    for (int i = 0; i < b->n_sample; i++) {
        Seq *s = e->sample_seqs[i];
        const int32_t last = s->tokens[s->n_prompt + s->n_gen - 1];
        if (is_stop(s, last))
            engine_finish(e, s, FINISH_STOP, NULL);
        else if (s->n_gen >= s->max_tokens || s->n_prompt + s->n_gen >= e->context)
            engine_finish(e, s, FINISH_LENGTH, NULL);
    }
}

int engine_step(Engine *e) {
    engine_apply_staged_if_idle(e);
    const int n_rows = engine_schedule(e);
    if (n_rows == 0) return 0;
    infer_forward_blocks(&e->fwd, e->model, &e->cache);
    int decode_rows = 0;
    for (int i = 0; i < e->n_running; i++) {
        Seq *s = e->running[i];
        if (s->scheduled == 0) continue;
        if (s->n_prompt + s->n_gen - s->n_cached == 1) decode_rows++;
        s->n_cached += s->scheduled;
    }
    e->stats.prefill_tokens += n_rows - decode_rows;
    sample_rows(e);
    finish_stopped(e);
    engine_apply_staged_if_idle(e);
    return n_rows;
}
