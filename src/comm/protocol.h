// The messages the three roles exchange, as typed structs encoded into byte buffers and sent
// point-to-point (transport.h). Each message type has its own MPI tag. Decoding checks every
// length and count against the message size and against the configured limits (ProtoLimits)
// before using it: a malformed message is an error with a clear text, never a crash.
//
//   orchestrator -> inference   MSG_REQUESTS      rollout requests (one record per sequence)
//   inference -> orchestrator   MSG_COMPLETIONS   finished sequences: tokens, logprobs, versions
//   orchestrator -> trainer     MSG_BATCH         packed rows of one step for this trainer
//   trainer root -> orch.       MSG_STEP_DONE     the step's metrics and the new policy version
//   trainer root -> inference   MSG_WEIGHTS       notice: version v follows on the weights comm
//   inference -> orchestrator   MSG_WEIGHTS_LOADED  this rank now samples with version v
//   orchestrator -> inference   MSG_CANCEL        drop requests (by id, or all)
//   orchestrator -> everyone    MSG_SHUTDOWN      finish and exit
//   everyone -> orchestrator    MSG_BYE           the rank's last message, after its other sends
//                                                 completed (rank 0 receives until every bye)
//   trainer/inference -> orch.  MSG_STOP          a stop signal reached this rank (i32: its number);
//                                                 the orchestrator stops the job as for its own
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "comm/bytes.h"
#include "core/config.h"

typedef enum {
    MSG_REQUESTS = 101,
    MSG_COMPLETIONS = 102,
    MSG_BATCH = 103,
    MSG_STEP_DONE = 104,
    MSG_WEIGHTS = 105,
    MSG_WEIGHTS_LOADED = 106,
    MSG_CANCEL = 107,
    MSG_SHUTDOWN = 108,
    MSG_CONTROL = 109,  // small role-to-role control values (checkpoint requests, state hand-over)
    MSG_BYE = 110,
    MSG_STOP = 111,
} MsgType;

const char *msg_type_name(int type);

// The signal number a MSG_STOP carries; -1 + err when the message is damaged.
int decode_stop(const void *data, size_t len, int *signal_number, ErrorBuf *err);

// Limits every decoder checks against; derived from the config so a message can never claim
// more than the job was configured for.
typedef struct {
    uint32_t max_prompt;       // tokens in one prompt
    uint32_t max_completion;   // tokens in one completion
    uint32_t max_records;      // requests or completions in one message
    uint32_t max_rows;         // rows in one batch
    uint32_t seq_len;          // tokens per row
    uint32_t max_metrics;      // named values in a step-done message
    int32_t vocab_size;        // token ids must lie in [0, vocab_size) (0 = not checked)
} ProtoLimits;

void proto_limits_from_config(const Config *cfg, int vocab_size, ProtoLimits *limits);

// ---------------------------------------------------------------------------------------------
// Rollout requests

enum { REQ_GREEDY = 1u, REQ_PIN_VERSION = 2u, REQ_EVAL = 4u };
#define REQ_MAX_STOP 8

typedef struct {
    uint64_t id;            // unique per request in the job
    uint64_t group;         // the orchestrator's group id
    int32_t step;           // step the group was handed out for
    int32_t n_prompt;
    int32_t *prompt;        // (n_prompt) token ids
    int32_t max_tokens;
    float temperature, top_p, min_p;
    int32_t top_k;
    uint64_t seed;          // the sequence's own sampler seed
    int32_t version;        // generate with exactly this policy version (-1: the newest held)
    uint32_t flags;         // REQ_*
    int32_t n_stop;
    int32_t stop[REQ_MAX_STOP];
} Request;

// ---------------------------------------------------------------------------------------------
// Completions

typedef enum { FINISH_STOP = 0, FINISH_LENGTH = 1, FINISH_REJECTED = 2, FINISH_CANCELLED = 3 } FinishReason;
const char *finish_reason_name(int reason);

// An inference rank's totals so far, sent with every completions message (for the inference
// throughput and idle-time metrics). clock_s is the time they were taken on the sender's own
// clock (seconds since its service started): rates between two reports of one rank use the
// difference of its clock, which no transit delay or clock offset between nodes distorts.
typedef struct {
    double decode_tokens, prefill_tokens, busy_s, clock_s;
} EngineTotals;

typedef struct {
    uint64_t id;
    uint8_t finish;         // FinishReason
    int32_t n;
    int32_t *tokens;        // (n) sampled token ids (the stop token included when finish == STOP)
    float *logprobs;        // (n) logprob of each token at the sampling temperature
    int32_t *versions;      // (n) policy version that produced each token
    char reason[256];       // why it was rejected or cancelled, else empty
} Completion;

// ---------------------------------------------------------------------------------------------
// Training batches: one message per trainer with that trainer's packed rows. A row holds
// several samples back to back; position restarts at 0 at each sample's first token.

enum { BATCH_SFT = 1u };

typedef struct {
    int32_t step;
    uint32_t flags;          // BATCH_SFT: plain cross-entropy on masked tokens
    int32_t n_rows, seq_len;
    int32_t *row_len;        // (n_rows) tokens used in each row, <= seq_len
    // Each of the following is (n_rows, seq_len); entries past row_len are zero.
    int32_t *input;          // token fed at this position
    int32_t *target;         // next token to predict
    int32_t *position;       // position within its sample
    int32_t *sample;         // sample index within this batch message (for sequence-level losses)
    uint8_t *mask;           // 1 = the target is a completion token that takes part in the loss
    float *logp_infer;       // logprob of target under the inference policy (0 where mask is 0)
    float *advantage;        // advantage of the sample, on every masked token
} Batch;

void batch_alloc(Batch *b, int n_rows, int seq_len);
void batch_free(Batch *b);

// ---------------------------------------------------------------------------------------------
// Step done: named metrics from the trainer root, and the policy version now trained.

enum { STEP_SKIPPED = 1u, STEP_SFT = 2u, STEP_STOP = 4u };  // STEP_STOP: too many bad steps in a row

#define METRIC_NAME_MAX 48
typedef struct {
    char name[METRIC_NAME_MAX];
    double value;
} Metric;

typedef struct {
    int32_t step;
    int32_t version;         // policy version after this step (step + 1 for RL steps)
    uint32_t flags;          // STEP_SKIPPED, STEP_SFT
    int32_t n_metrics;
    Metric *metrics;         // (n_metrics)
} StepDone;

// ---------------------------------------------------------------------------------------------
// Small messages

#define WEIGHTS_END (-1)  // a notice with this version: the trainer root publishes nothing more

typedef struct {
    int32_t version;         // or WEIGHTS_END
    uint64_t n_params;       // floats in the broadcast that follows
} WeightsNotice;

typedef struct {
    int32_t version;
    int32_t rank;
} WeightsLoaded;

typedef struct {
    uint32_t all;            // 1 = cancel every request on the rank
    uint32_t n;
    uint64_t *ids;           // (n)
} Cancel;

// ---------------------------------------------------------------------------------------------
// Encoders append to a ByteWriter; decoders fill caller structs (allocating arrays) or return
// -1 with err naming what was wrong. Free decoded structs with the *_free functions.

void encode_requests(ByteWriter *w, const Request *reqs, int n);
int decode_requests(const void *buf, size_t len, const ProtoLimits *lim, Request **reqs, int *n, ErrorBuf *err);
void requests_free(Request *reqs, int n);

void encode_completions(ByteWriter *w, const Completion *comps, int n, const EngineTotals *totals);
// totals may be NULL when the caller does not need them.
int decode_completions(const void *buf, size_t len, const ProtoLimits *lim, Completion **comps, int *n,
                       EngineTotals *totals, ErrorBuf *err);
void completions_free(Completion *comps, int n);
void completion_free(Completion *c);  // the arrays of one completion

void encode_batch(ByteWriter *w, const Batch *b);
int decode_batch(const void *buf, size_t len, const ProtoLimits *lim, Batch *b, ErrorBuf *err);

void encode_step_done(ByteWriter *w, const StepDone *s);
int decode_step_done(const void *buf, size_t len, const ProtoLimits *lim, StepDone *s, ErrorBuf *err);
void step_done_free(StepDone *s);
void step_done_add(StepDone *s, const char *name, double value);  // appends a metric
double step_done_get(const StepDone *s, const char *name, double fallback);

// Control between the orchestrator and the trainer root: checkpoint requests (with the
// orchestrator's part of the state at that step boundary) and their acknowledgement.
typedef enum { CONTROL_CHECKPOINT = 1, CONTROL_CHECKPOINT_DONE = 2 } ControlKind;

typedef struct {
    uint32_t kind;           // ControlKind
    int32_t step;            // the step boundary: the checkpoint holds the policy after `step` steps
    int32_t ok;              // CHECKPOINT_DONE: 1 written, 0 failed (text says why)
    char text[512];          // CHECKPOINT_DONE: the path, or the error
    int64_t cursor, sft_cursor, next_group, next_request, rr_rank;
    uint32_t n_pending;
    int64_t *pending;        // (n_pending) problem indices handed out but not trained
    uint32_t n_easy, n_hard;
    int64_t *easy, *hard;    // (n_easy), (n_hard) problem ids in the easy / hard pools
} Control;

void control_free(Control *c);  // the arrays of a decoded control message

void encode_control(ByteWriter *w, const Control *c);
int decode_control(const void *buf, size_t len, Control *c, ErrorBuf *err);

void encode_weights_notice(ByteWriter *w, const WeightsNotice *m);
int decode_weights_notice(const void *buf, size_t len, WeightsNotice *m, ErrorBuf *err);
void encode_weights_loaded(ByteWriter *w, const WeightsLoaded *m);
int decode_weights_loaded(const void *buf, size_t len, WeightsLoaded *m, ErrorBuf *err);
void encode_cancel(ByteWriter *w, const Cancel *m);
int decode_cancel(const void *buf, size_t len, const ProtoLimits *lim, Cancel *m, ErrorBuf *err);
