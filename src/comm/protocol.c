// Encoding and checked decoding of the role-to-role messages (see protocol.h).
#include "comm/protocol.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PROTO_MAGIC 0x4c525341u  // "ASRL"

const char *msg_type_name(int type) {
    switch (type) {
        case MSG_REQUESTS: return "requests";
        case MSG_COMPLETIONS: return "completions";
        case MSG_BATCH: return "batch";
        case MSG_STEP_DONE: return "step-done";
        case MSG_WEIGHTS: return "weights";
        case MSG_WEIGHTS_LOADED: return "weights-loaded";
        case MSG_CANCEL: return "cancel";
        case MSG_SHUTDOWN: return "shutdown";
        case MSG_CONTROL: return "control";
        case MSG_BYE: return "bye";
        case MSG_STOP: return "stop";
    }
    return "unknown";
}

int decode_stop(const void *data, size_t len, int *signal_number, ErrorBuf *err) {
    int32_t sig;
    if (len != sizeof sig) return error_set(err, "malformed stop message: %zu bytes, expected 4", len);
    memcpy(&sig, data, sizeof sig);
    if (sig <= 0 || sig > 64) return error_set(err, "malformed stop message: signal number %d", (int)sig);
    *signal_number = sig;
    return 0;
}

const char *finish_reason_name(int reason) {
    switch (reason) {
        case FINISH_STOP: return "stop";
        case FINISH_LENGTH: return "length";
        case FINISH_REJECTED: return "rejected";
        case FINISH_CANCELLED: return "cancelled";
    }
    return "unknown";
}

void proto_limits_from_config(const Config *cfg, int vocab_size, ProtoLimits *lim) {
    int max_seq = cfg->model.max_seq_len > cfg->trainer.seq_len ? cfg->model.max_seq_len : cfg->trainer.seq_len;
    lim->max_prompt = (uint32_t)max_seq;
    lim->max_completion = (uint32_t)max_seq;
    lim->max_records = 1u << 16;
    lim->seq_len = (uint32_t)cfg->trainer.seq_len;
    // A step's samples never need more rows than samples (plus padding rows for the trainers).
    lim->max_rows = (uint32_t)(cfg->orchestrator.batch_size + cfg->sft.batch_size + cfg->ranks.trainers);
    lim->max_metrics = 1024;
    lim->vocab_size = vocab_size;
}

static void put_header(ByteWriter *w, MsgType type) {
    bw_u32(w, PROTO_MAGIC);
    bw_u32(w, (uint32_t)type);
}

static int get_header(ByteReader *r, MsgType type) {
    uint32_t magic, got;
    if (br_u32(r, &magic, "magic") || br_u32(r, &got, "type")) return -1;
    if (magic != PROTO_MAGIC)
        return error_set(r->err, "malformed %s message: bad magic 0x%08x (not an asyncrl message)", r->what, magic);
    if (got != (uint32_t)type)
        return error_set(r->err, "malformed %s message: header says type %u (%s)", r->what, got, msg_type_name((int)got));
    return 0;
}

static int check_tokens(ByteReader *r, const int32_t *ids, uint32_t n, int32_t vocab, const char *field) {
    if (vocab <= 0) return 0;
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            return error_set(r->err, "malformed %s message: %s[%u] = %d is not a token id in [0, %d)", r->what, field, i,
                             ids[i], vocab);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Requests

void encode_requests(ByteWriter *w, const Request *reqs, int n) {
    put_header(w, MSG_REQUESTS);
    bw_u32(w, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        const Request *q = &reqs[i];
        bw_u64(w, q->id);
        bw_u64(w, q->group);
        bw_i32(w, q->step);
        bw_u32(w, (uint32_t)q->n_prompt);
        bw_put(w, q->prompt, sizeof(int32_t) * (size_t)q->n_prompt);
        bw_i32(w, q->max_tokens);
        bw_f32(w, q->temperature);
        bw_f32(w, q->top_p);
        bw_f32(w, q->min_p);
        bw_i32(w, q->top_k);
        bw_u64(w, q->seed);
        bw_i32(w, q->version);
        bw_u32(w, q->flags);
        bw_u32(w, (uint32_t)q->n_stop);
        bw_put(w, q->stop, sizeof(int32_t) * (size_t)q->n_stop);
    }
}

static int decode_request(ByteReader *r, const ProtoLimits *lim, Request *q) {
    uint32_t n_prompt, n_stop;
    if (br_u64(r, &q->id, "id") || br_u64(r, &q->group, "group") || br_i32(r, &q->step, "step")) return -1;
    if (br_count(r, &n_prompt, lim->max_prompt, sizeof(int32_t), "prompt")) return -1;
    q->n_prompt = (int32_t)n_prompt;
    if (br_array(r, (void **)&q->prompt, n_prompt, sizeof(int32_t), "prompt")) return -1;
    if (check_tokens(r, q->prompt, n_prompt, lim->vocab_size, "prompt")) return -1;
    if (br_i32(r, &q->max_tokens, "max_tokens") || br_f32(r, &q->temperature, "temperature") ||
        br_f32(r, &q->top_p, "top_p") || br_f32(r, &q->min_p, "min_p") || br_i32(r, &q->top_k, "top_k") ||
        br_u64(r, &q->seed, "seed") || br_i32(r, &q->version, "version") || br_u32(r, &q->flags, "flags"))
        return -1;
    if (q->version < -1) return error_set(r->err, "malformed requests message: version %d", q->version);
    if (q->max_tokens < 1 || (uint32_t)q->max_tokens > lim->max_completion)
        return error_set(r->err, "malformed requests message: max_tokens = %d outside [1, %u]", q->max_tokens,
                         lim->max_completion);
    if (!(q->temperature >= 0 && q->temperature <= 1e4) || !(q->top_p > 0 && q->top_p <= 1) ||
        !(q->min_p >= 0 && q->min_p <= 1) || q->top_k < 0)
        return error_set(r->err, "malformed requests message: sampling parameters out of range (temperature %g, "
                         "top_p %g, min_p %g, top_k %d)", q->temperature, q->top_p, q->min_p, q->top_k);
    if (br_count(r, &n_stop, REQ_MAX_STOP, sizeof(int32_t), "stop")) return -1;
    q->n_stop = (int32_t)n_stop;
    if (br_get(r, q->stop, sizeof(int32_t) * n_stop, "stop")) return -1;
    return check_tokens(r, q->stop, n_stop, lim->vocab_size, "stop");
}

int decode_requests(const void *buf, size_t len, const ProtoLimits *lim, Request **reqs, int *n, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "requests", err);
    *reqs = NULL;
    *n = 0;
    uint32_t count;
    // Each record is at least 64 bytes, which bounds the allocation by the message size.
    if (get_header(&r, MSG_REQUESTS) || br_count(&r, &count, lim->max_records, 64, "records")) return -1;
    Request *out = xcalloc(count ? count : 1, sizeof(Request));
    for (uint32_t i = 0; i < count; i++) {
        if (decode_request(&r, lim, &out[i])) {
            requests_free(out, (int)i + 1);
            return -1;
        }
    }
    if (br_done(&r)) {
        requests_free(out, (int)count);
        return -1;
    }
    *reqs = out;
    *n = (int)count;
    return 0;
}

void requests_free(Request *reqs, int n) {
    if (!reqs) return;
    for (int i = 0; i < n; i++) free(reqs[i].prompt);
    free(reqs);
}

// ---------------------------------------------------------------------------------------------
// Completions

void encode_completions(ByteWriter *w, const Completion *comps, int n, const EngineTotals *totals) {
    put_header(w, MSG_COMPLETIONS);
    EngineTotals none = {0, 0, 0, 0};
    if (!totals) totals = &none;
    bw_f64(w, totals->decode_tokens);
    bw_f64(w, totals->prefill_tokens);
    bw_f64(w, totals->busy_s);
    bw_f64(w, totals->clock_s);
    bw_u32(w, (uint32_t)n);
    for (int i = 0; i < n; i++) {
        const Completion *c = &comps[i];
        bw_u64(w, c->id);
        bw_u8(w, c->finish);
        bw_u32(w, (uint32_t)c->n);
        bw_put(w, c->tokens, sizeof(int32_t) * (size_t)c->n);
        bw_put(w, c->logprobs, sizeof(float) * (size_t)c->n);
        bw_put(w, c->versions, sizeof(int32_t) * (size_t)c->n);
        bw_str(w, c->reason, sizeof c->reason - 1);
    }
}

void completion_free(Completion *c) {
    free(c->tokens);
    free(c->logprobs);
    free(c->versions);
    c->tokens = NULL;
    c->logprobs = NULL;
    c->versions = NULL;
}

static int decode_completion(ByteReader *r, const ProtoLimits *lim, Completion *c) {
    uint32_t n;
    if (br_u64(r, &c->id, "id") || br_u8(r, &c->finish, "finish")) return -1;
    if (c->finish > FINISH_CANCELLED)
        return error_set(r->err, "malformed completions message: unknown finish reason %u", c->finish);
    if (br_count(r, &n, lim->max_completion, 12, "tokens")) return -1;
    c->n = (int32_t)n;
    if (br_array(r, (void **)&c->tokens, n, sizeof(int32_t), "tokens") ||
        br_array(r, (void **)&c->logprobs, n, sizeof(float), "logprobs") ||
        br_array(r, (void **)&c->versions, n, sizeof(int32_t), "versions"))
        return -1;
    if (check_tokens(r, c->tokens, n, lim->vocab_size, "tokens")) return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (!(c->logprobs[i] <= 0.0f) || isinf(c->logprobs[i]))
            return error_set(r->err, "malformed completions message: logprobs[%u] = %g is not a finite log probability",
                             i, c->logprobs[i]);
        if (c->versions[i] < 0)
            return error_set(r->err, "malformed completions message: versions[%u] = %d is negative", i, c->versions[i]);
    }
    return br_str(r, c->reason, sizeof c->reason, "reason");
}

int decode_completions(const void *buf, size_t len, const ProtoLimits *lim, Completion **comps, int *n,
                       EngineTotals *totals, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "completions", err);
    *comps = NULL;
    *n = 0;
    uint32_t count;
    EngineTotals t;
    if (get_header(&r, MSG_COMPLETIONS) || br_f64(&r, &t.decode_tokens, "decode_tokens") ||
        br_f64(&r, &t.prefill_tokens, "prefill_tokens") || br_f64(&r, &t.busy_s, "busy_s") ||
        br_f64(&r, &t.clock_s, "clock_s") || br_count(&r, &count, lim->max_records, 17, "records"))
        return -1;
    if (!(t.decode_tokens >= 0 && t.prefill_tokens >= 0 && t.busy_s >= 0 && t.clock_s >= 0) ||
        !isfinite(t.decode_tokens + t.prefill_tokens + t.busy_s + t.clock_s))
        return error_set(err, "malformed completions message: negative or NaN engine totals");
    if (totals) *totals = t;
    Completion *out = xcalloc(count ? count : 1, sizeof(Completion));
    for (uint32_t i = 0; i < count; i++) {
        if (decode_completion(&r, lim, &out[i])) {
            completions_free(out, (int)i + 1);
            return -1;
        }
    }
    if (br_done(&r)) {
        completions_free(out, (int)count);
        return -1;
    }
    *comps = out;
    *n = (int)count;
    return 0;
}

void completions_free(Completion *comps, int n) {
    if (!comps) return;
    for (int i = 0; i < n; i++) completion_free(&comps[i]);
    free(comps);
}

// ---------------------------------------------------------------------------------------------
// Batches

void batch_alloc(Batch *b, int n_rows, int seq_len) {
    memset(b, 0, sizeof *b);
    size_t n = (size_t)n_rows * (size_t)seq_len;
    b->n_rows = n_rows;
    b->seq_len = seq_len;
    b->row_len = xcalloc((size_t)n_rows, sizeof(int32_t));
    b->input = xcalloc(n, sizeof(int32_t));
    b->target = xcalloc(n, sizeof(int32_t));
    b->position = xcalloc(n, sizeof(int32_t));
    b->sample = xcalloc(n, sizeof(int32_t));
    b->mask = xcalloc(n, sizeof(uint8_t));
    b->logp_infer = xcalloc(n, sizeof(float));
    b->advantage = xcalloc(n, sizeof(float));
}

void batch_free(Batch *b) {
    free(b->row_len);
    free(b->input);
    free(b->target);
    free(b->position);
    free(b->sample);
    free(b->mask);
    free(b->logp_infer);
    free(b->advantage);
    memset(b, 0, sizeof *b);
}

void encode_batch(ByteWriter *w, const Batch *b) {
    put_header(w, MSG_BATCH);
    bw_i32(w, b->step);
    bw_u32(w, b->flags);
    bw_u32(w, (uint32_t)b->n_rows);
    bw_u32(w, (uint32_t)b->seq_len);
    for (int row = 0; row < b->n_rows; row++) {
        size_t o = (size_t)row * (size_t)b->seq_len, n = (size_t)b->row_len[row];
        bw_u32(w, (uint32_t)n);
        bw_put(w, b->input + o, n * sizeof(int32_t));
        bw_put(w, b->target + o, n * sizeof(int32_t));
        bw_put(w, b->position + o, n * sizeof(int32_t));
        bw_put(w, b->sample + o, n * sizeof(int32_t));
        bw_put(w, b->mask + o, n);
        bw_put(w, b->logp_infer + o, n * sizeof(float));
        bw_put(w, b->advantage + o, n * sizeof(float));
    }
}

static int decode_row(ByteReader *r, const ProtoLimits *lim, Batch *b, int row) {
    uint32_t n;
    size_t o = (size_t)row * (size_t)b->seq_len;
    if (br_count(r, &n, (uint32_t)b->seq_len, 25, "row_len")) return -1;
    b->row_len[row] = (int32_t)n;
    if (br_get(r, b->input + o, n * sizeof(int32_t), "input") || br_get(r, b->target + o, n * sizeof(int32_t), "target") ||
        br_get(r, b->position + o, n * sizeof(int32_t), "position") ||
        br_get(r, b->sample + o, n * sizeof(int32_t), "sample") || br_get(r, b->mask + o, n, "mask") ||
        br_get(r, b->logp_infer + o, n * sizeof(float), "logp_infer") ||
        br_get(r, b->advantage + o, n * sizeof(float), "advantage"))
        return -1;
    if (check_tokens(r, b->input + o, n, lim->vocab_size, "input") ||
        check_tokens(r, b->target + o, n, lim->vocab_size, "target"))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        int32_t pos = b->position[o + i];
        if (pos < 0 || (uint32_t)pos >= (uint32_t)b->seq_len || (i > 0 && pos != 0 && pos != b->position[o + i - 1] + 1) ||
            (i == 0 && pos != 0))
            return error_set(r->err, "malformed batch message: row %d position[%u] = %d does not continue a sample "
                             "(positions start at 0 and count up within each sample)", row, i, pos);
        if (b->mask[o + i] > 1 || b->sample[o + i] < 0 || !isfinite(b->logp_infer[o + i]) ||
            !isfinite(b->advantage[o + i]))
            return error_set(r->err, "malformed batch message: row %d token %u has a bad mask, sample index, logprob or "
                             "advantage", row, i);
    }
    return 0;
}

int decode_batch(const void *buf, size_t len, const ProtoLimits *lim, Batch *b, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "batch", err);
    memset(b, 0, sizeof *b);
    int32_t step;
    uint32_t flags, n_rows, seq_len;
    if (get_header(&r, MSG_BATCH) || br_i32(&r, &step, "step") || br_u32(&r, &flags, "flags") ||
        br_count(&r, &n_rows, lim->max_rows, 4, "rows") || br_u32(&r, &seq_len, "seq_len"))
        return -1;
    if (seq_len != lim->seq_len)
        return error_set(err, "malformed batch message: seq_len %u differs from trainer.seq_len %u", seq_len, lim->seq_len);
    batch_alloc(b, (int)n_rows, (int)seq_len);
    b->step = step;
    b->flags = flags;
    for (uint32_t row = 0; row < n_rows; row++) {
        if (decode_row(&r, lim, b, (int)row)) {
            batch_free(b);
            return -1;
        }
    }
    if (br_done(&r)) {
        batch_free(b);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Step done

void step_done_add(StepDone *s, const char *name, double value) {
    s->metrics = xrealloc(s->metrics, sizeof(Metric) * (size_t)(s->n_metrics + 1));
    Metric *m = &s->metrics[s->n_metrics++];
    snprintf(m->name, sizeof m->name, "%s", name);
    m->value = value;
}

double step_done_get(const StepDone *s, const char *name, double fallback) {
    for (int i = 0; i < s->n_metrics; i++)
        if (strcmp(s->metrics[i].name, name) == 0) return s->metrics[i].value;
    return fallback;
}

void step_done_free(StepDone *s) {
    free(s->metrics);
    s->metrics = NULL;
    s->n_metrics = 0;
}

void encode_step_done(ByteWriter *w, const StepDone *s) {
    put_header(w, MSG_STEP_DONE);
    bw_i32(w, s->step);
    bw_i32(w, s->version);
    bw_u32(w, s->flags);
    bw_u32(w, (uint32_t)s->n_metrics);
    for (int i = 0; i < s->n_metrics; i++) {
        bw_str(w, s->metrics[i].name, METRIC_NAME_MAX - 1);
        bw_f64(w, s->metrics[i].value);
    }
}

int decode_step_done(const void *buf, size_t len, const ProtoLimits *lim, StepDone *s, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "step-done", err);
    memset(s, 0, sizeof *s);
    uint32_t n;
    if (get_header(&r, MSG_STEP_DONE) || br_i32(&r, &s->step, "step") || br_i32(&r, &s->version, "version") ||
        br_u32(&r, &s->flags, "flags") || br_count(&r, &n, lim->max_metrics, 12, "metrics"))
        return -1;
    if (s->step < 0 || s->version < 0)
        return error_set(err, "malformed step-done message: step %d / version %d negative", s->step, s->version);
    s->metrics = xcalloc(n ? n : 1, sizeof(Metric));
    for (uint32_t i = 0; i < n; i++, s->n_metrics++) {
        Metric *m = &s->metrics[i];
        if (br_str(&r, m->name, sizeof m->name, "metric name") || br_f64(&r, &m->value, "metric value")) {
            step_done_free(s);
            return -1;
        }
        if (!m->name[0]) {
            step_done_free(s);
            return error_set(err, "malformed step-done message: metric %u has an empty name", i);
        }
    }
    if (br_done(&r)) {
        step_done_free(s);
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Small messages

void encode_weights_notice(ByteWriter *w, const WeightsNotice *m) {
    put_header(w, MSG_WEIGHTS);
    bw_i32(w, m->version);
    bw_u64(w, m->n_params);
}

int decode_weights_notice(const void *buf, size_t len, WeightsNotice *m, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "weights", err);
    if (get_header(&r, MSG_WEIGHTS) || br_i32(&r, &m->version, "version") || br_u64(&r, &m->n_params, "n_params") ||
        br_done(&r))
        return -1;
    if (m->version < WEIGHTS_END)
        return error_set(err, "malformed weights message: version %d", m->version);
    return 0;
}

void encode_weights_loaded(ByteWriter *w, const WeightsLoaded *m) {
    put_header(w, MSG_WEIGHTS_LOADED);
    bw_i32(w, m->version);
    bw_i32(w, m->rank);
}

int decode_weights_loaded(const void *buf, size_t len, WeightsLoaded *m, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "weights-loaded", err);
    if (get_header(&r, MSG_WEIGHTS_LOADED) || br_i32(&r, &m->version, "version") || br_i32(&r, &m->rank, "rank") ||
        br_done(&r))
        return -1;
    if (m->version < 0) return error_set(err, "malformed weights-loaded message: negative version %d", m->version);
    return 0;
}

void encode_cancel(ByteWriter *w, const Cancel *m) {
    put_header(w, MSG_CANCEL);
    bw_u32(w, m->all);
    bw_u32(w, m->n);
    bw_put(w, m->ids, sizeof(uint64_t) * m->n);
}

int decode_cancel(const void *buf, size_t len, const ProtoLimits *lim, Cancel *m, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "cancel", err);
    memset(m, 0, sizeof *m);
    if (get_header(&r, MSG_CANCEL) || br_u32(&r, &m->all, "all") ||
        br_count(&r, &m->n, lim->max_records, sizeof(uint64_t), "ids") ||
        br_array(&r, (void **)&m->ids, m->n, sizeof(uint64_t), "ids"))
        return -1;
    if (br_done(&r)) {
        free(m->ids);
        m->ids = NULL;
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Control

void encode_control(ByteWriter *w, const Control *c) {
    put_header(w, MSG_CONTROL);
    bw_u32(w, c->kind);
    bw_i32(w, c->step);
    bw_i32(w, c->ok);
    bw_str(w, c->text, sizeof c->text - 1);
    bw_u64(w, (uint64_t)c->cursor);
    bw_u64(w, (uint64_t)c->sft_cursor);
    bw_u64(w, (uint64_t)c->next_group);
    bw_u64(w, (uint64_t)c->next_request);
    bw_u64(w, (uint64_t)c->rr_rank);
    bw_u32(w, c->n_pending);
    bw_put(w, c->pending, sizeof(int64_t) * c->n_pending);
    bw_u32(w, c->n_easy);
    bw_put(w, c->easy, sizeof(int64_t) * c->n_easy);
    bw_u32(w, c->n_hard);
    bw_put(w, c->hard, sizeof(int64_t) * c->n_hard);
}

void control_free(Control *c) {
    free(c->pending);
    free(c->easy);
    free(c->hard);
    c->pending = c->easy = c->hard = NULL;
}

int decode_control(const void *buf, size_t len, Control *c, ErrorBuf *err) {
    ByteReader r;
    br_init(&r, buf, len, "control", err);
    memset(c, 0, sizeof *c);
    uint64_t u[5];
    if (get_header(&r, MSG_CONTROL) || br_u32(&r, &c->kind, "kind") || br_i32(&r, &c->step, "step") ||
        br_i32(&r, &c->ok, "ok") || br_str(&r, c->text, sizeof c->text, "text") || br_u64(&r, &u[0], "cursor") ||
        br_u64(&r, &u[1], "sft_cursor") || br_u64(&r, &u[2], "next_group") || br_u64(&r, &u[3], "next_request") ||
        br_u64(&r, &u[4], "rr_rank") || br_count(&r, &c->n_pending, 1u << 26, sizeof(int64_t), "pending") ||
        br_array(&r, (void **)&c->pending, c->n_pending, sizeof(int64_t), "pending") ||
        br_count(&r, &c->n_easy, 1u << 28, sizeof(int64_t), "easy") ||
        br_array(&r, (void **)&c->easy, c->n_easy, sizeof(int64_t), "easy") ||
        br_count(&r, &c->n_hard, 1u << 28, sizeof(int64_t), "hard") ||
        br_array(&r, (void **)&c->hard, c->n_hard, sizeof(int64_t), "hard") || br_done(&r)) {
        control_free(c);
        return -1;
    }
    if (c->kind != CONTROL_CHECKPOINT && c->kind != CONTROL_CHECKPOINT_DONE)
        return control_free(c), error_set(err, "malformed control message: unknown kind %u", c->kind);
    if (c->step < 0) return control_free(c), error_set(err, "malformed control message: step %d", c->step);
    c->cursor = (int64_t)u[0], c->sft_cursor = (int64_t)u[1], c->next_group = (int64_t)u[2];
    c->next_request = (int64_t)u[3], c->rr_rank = (int64_t)u[4];
    return 0;
}
