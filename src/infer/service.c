// The inference rank's loop: MPI messages <-> engine calls (see service.h).
#include "infer/service.h"

#include <stdlib.h>
#include <string.h>

#include "comm/mpi_check.h"
#include "comm/protocol.h"
#include "comm/transport.h"
#include "comm/weights.h"
#include "core/log.h"
#include "infer/engine.h"
#include "model/model_load.h"
#include "ops.h"

typedef struct {
    const Config *cfg;
    const Layout *L;
    Engine *engine;
    WeightsReceiver weights;
    ProtoLimits plim;
    Outbox out;
    int deterministic;
    int acked_version;
    double busy_s;           // time spent in engine steps that computed something
    double started_at;       // MPI_Wtime() when the service started (EngineTotals.clock_s counts from it)
    // Requests held back until the engine samples with the version they name (deterministic).
    Request *held;
    int n_held, cap_held;
} Service;

static void send_completions(Service *s, Completion *comps, int n) {
    if (n <= 0) return;
    EngineStats es;
    engine_stats(s->engine, &es);
    EngineTotals totals = {es.decode_tokens, es.prefill_tokens, s->busy_s, MPI_Wtime() - s->started_at};
    ByteWriter w;
    bw_init(&w, 4096);
    encode_completions(&w, comps, n, &totals);
    outbox_send(&s->out, &w, 0, MSG_COMPLETIONS, MPI_COMM_WORLD);
}

static void cancelled_reply(Service *s, uint64_t id, const char *reason) {
    Completion c;
    memset(&c, 0, sizeof c);
    c.id = id;
    c.finish = FINISH_CANCELLED;
    snprintf(c.reason, sizeof c.reason, "%s", reason);
    send_completions(s, &c, 1);
}

static void to_engine(Service *s, const Request *q) {
    EngineRequest er = {.id = q->id, .prompt = q->prompt, .n_prompt = q->n_prompt, .max_tokens = q->max_tokens,
                        .temperature = q->temperature, .top_p = q->top_p, .min_p = q->min_p, .top_k = q->top_k,
                        .greedy = (q->flags & REQ_GREEDY) != 0, .seed = q->seed, .stop = q->stop, .n_stop = q->n_stop};
    ErrorBuf err;
    if (engine_add(s->engine, &er, &err) != 0)
        FATAL("the orchestrator sent a request the engine cannot take: a bug or mismatched binaries", "request %llu: %s",
              (unsigned long long)q->id, err.msg);
}

static void hold(Service *s, Request *q) {
    if (s->n_held == s->cap_held) {
        s->cap_held = s->cap_held ? 2 * s->cap_held : 64;
        s->held = xrealloc(s->held, sizeof(Request) * (size_t)s->cap_held);
    }
    s->held[s->n_held++] = *q;
    q->prompt = NULL;  // the held copy owns it now
}

static void handle_requests(Service *s, const Received *msg) {
    Request *reqs;
    int n;
    ErrorBuf err;
    if (decode_requests(msg->data, msg->len, &s->plim, &reqs, &n, &err) != 0)
        FATAL("the orchestrator sent a damaged message: a bug or mismatched binaries", "%s", err.msg);
    for (int i = 0; i < n; i++) {
        if (reqs[i].version >= 0 || engine_version(s->engine) < 0) hold(s, &reqs[i]);
        else to_engine(s, &reqs[i]);
    }
    requests_free(reqs, n);
}

static void handle_cancel(Service *s, const Received *msg) {
    Cancel c;
    ErrorBuf err;
    if (decode_cancel(msg->data, msg->len, &s->plim, &c, &err) != 0)
        FATAL("the orchestrator sent a damaged message", "%s", err.msg);
    if (c.all) {
        engine_cancel_all(s->engine, "cancelled by the orchestrator");
        for (int i = 0; i < s->n_held; i++) {
            cancelled_reply(s, s->held[i].id, "cancelled by the orchestrator");
            free(s->held[i].prompt);
        }
        s->n_held = 0;
    }
    for (uint32_t k = 0; k < c.n; k++) {
        if (engine_cancel(s->engine, c.ids[k], "cancelled by the orchestrator") == 0) continue;
        for (int i = 0; i < s->n_held; i++) {
            if (s->held[i].id != c.ids[k]) continue;
            cancelled_reply(s, s->held[i].id, "cancelled by the orchestrator");
            free(s->held[i].prompt);
            s->held[i] = s->held[--s->n_held];
            break;
        }
    }
    free(c.ids);
}

static void ack_version(Service *s) {
    int v = engine_version(s->engine);
    if (v <= s->acked_version) return;
    s->acked_version = v;
    WeightsLoaded wl = {.version = v, .rank = s->L->world_rank};
    ByteWriter w;
    bw_init(&w, 32);
    encode_weights_loaded(&w, &wl);
    outbox_send(&s->out, &w, 0, MSG_WEIGHTS_LOADED, MPI_COMM_WORLD);
}

static void apply_version(Service *s, int version) {
    float *params = weights_receiver_take(&s->weights, version);
    engine_set_weights(s->engine, params, version);
    weights_receiver_recycle(&s->weights, params);
}

// Default and drain modes: the newest complete version goes to the engine.
static void take_newest_weights(Service *s) {
    int newest = weights_receiver_newest(&s->weights);
    int current = engine_version(s->engine), staged = engine_staged_version(s->engine);
    if (newest > current && newest > staged) apply_version(s, newest);
}

// Deterministic mode: the engine samples with exactly `want`, switching while it is idle. The
// staged copies stay: an evaluation asks for the trainer's newest version while refills of the
// step being filled (dropped zero-advantage groups, later turns) still ask for an older one.
// Versions older than an RL request's are dropped (RL versions never go back). 0 once the
// engine samples with `want`, -1 while it cannot yet.
static int switch_to_version(Service *s, int want, int for_eval) {
    if (engine_version(s->engine) != want) {
        if (engine_active(s->engine) > 0 || engine_queued(s->engine) > 0) return -1;
        const float *staged = weights_receiver_peek(&s->weights, want);
        if (!staged) {
            const int oldest = weights_receiver_oldest(&s->weights);
            CHECK(oldest < 0 || oldest < want, "this is a bug in the deterministic weight flow",
                  "a request asks for weights version %d, but the oldest staged one is %d", want, oldest);
            return -1;  // not received yet
        }
        engine_set_weights(s->engine, staged, want);  // (the engine copies them)
    }
    if (!for_eval) weights_receiver_drop_older(&s->weights, want);
    return 0;
}

// Held requests (deterministic mode, or requests that came before the first weights) enter
// the engine once it samples with their version; the switch happens when the engine is idle.
static void release_held(Service *s) {
    if (s->n_held == 0) return;
    int want = s->held[0].version;
    if (want < 0) {  // only waiting for any weights at all
        if (engine_version(s->engine) < 0) return;
    } else if (switch_to_version(s, want, (s->held[0].flags & REQ_EVAL) != 0) != 0) {
        return;
    }
    int kept = 0;
    for (int i = 0; i < s->n_held; i++) {
        if (s->held[i].version == want || (want < 0 && s->held[i].version < 0)) {
            to_engine(s, &s->held[i]);
            free(s->held[i].prompt);
        } else {
            s->held[kept++] = s->held[i];
        }
    }
    s->n_held = kept;
}

int inference_run(const Config *cfg, const Layout *L) {
    Service s;
    memset(&s, 0, sizeof s);
    s.started_at = MPI_Wtime();
    s.cfg = cfg;
    s.L = L;
    s.deterministic = cfg->run.deterministic;
    s.acked_version = -1;
    ops_init(layout_compute_threads(cfg, L));
    ErrorBuf err;
    ModelConfig mc;
    if (model_shape_from_config(cfg, &mc, &err) != 0) FATAL("check the model.* settings", "%s", err.msg);
    EngineConfig ec;
    engine_config_from(cfg, &ec);
    s.engine = engine_create(&mc, &ec, &err);
    if (!s.engine) FATAL("check the inference.* settings", "%s", err.msg);
    weights_receiver_init(&s.weights, L, engine_n_params(s.engine), s.deterministic);
    proto_limits_from_config(cfg, mc.vocab_size, &s.plim);
    outbox_init(&s.out);

    Backoff b;
    backoff_reset(&b);
    int running = 1;
    while (running) {
        int progressed = 0;
        stop_signal_forward();
        Received msg;
        while (msg_try_recv(MPI_COMM_WORLD, 0, MPI_ANY_TAG, &msg)) {
            progressed = 1;
            switch (msg.tag) {
                case MSG_REQUESTS: handle_requests(&s, &msg); break;
                case MSG_CANCEL: handle_cancel(&s, &msg); break;
                case MSG_SHUTDOWN: running = 0; break;
                default:
                    FATAL("ranks of different versions, or a bug", "inference got an unexpected %s message (tag %d)",
                          msg_type_name(msg.tag), msg.tag);
            }
            received_free(&msg);
        }
        if (!running) break;
        weights_receiver_poll(&s.weights);
        if (!s.deterministic) take_newest_weights(&s);
        release_held(&s);
        double t0 = MPI_Wtime();
        if (engine_step(s.engine) > 0) {
            progressed = 1;
            s.busy_s += MPI_Wtime() - t0;
        }
        ack_version(&s);
        Completion *done;
        int n = engine_take_finished(s.engine, &done);
        if (n > 0) {
            send_completions(&s, done, n);
            completions_free(done, n);
            progressed = 1;
        }
        outbox_progress(&s.out);
        if (progressed) backoff_reset(&b);
        else backoff_sleep(&b);
    }
    for (int i = 0; i < s.n_held; i++) free(s.held[i].prompt);
    free(s.held);
    outbox_free(&s.out);  // (completes: the orchestrator receives until this rank's bye)
    msg_send_empty(0, MSG_BYE, MPI_COMM_WORLD);
    weights_receiver_drain(&s.weights);  // joins what the trainer root still broadcasts, up to its end notice
    engine_free(s.engine);
    ops_finalize();
    return 0;
}
