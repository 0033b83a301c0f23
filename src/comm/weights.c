// Non-blocking weight broadcast from the trainer root to the inference ranks (see weights.h).
// The notices travel as MPI messages; the parameters through the device collectives'
// broadcast (devcomm_bcast_start / devcomm_bcast_test), whatever the backend.
#include "comm/weights.h"

#include <stdlib.h>
#include <string.h>

#include "comm/protocol.h"
#include "comm/transport.h"
#include "core/log.h"
#include "ops.h"

void weights_sender_init(WeightsSender *s, const Layout *layout, size_t n_floats) {
    memset(s, 0, sizeof *s);
    s->comm = layout->weights;
    s->world_root = layout->trainer_root;
    s->n_floats = n_floats;
    s->dc = devcomm_create(s->comm);
    s->staging = ops_alloc(sizeof(float) * n_floats);
    s->version = -1;
    int *ranks = xmalloc(sizeof(int) * (size_t)layout->n_inference);
    for (int i = 0; i < layout->n_inference; i++) ranks[i] = layout->first_inference + i;
    s->inference = ranks;
    s->n_inference = layout->n_inference;
}

int weights_sender_progress(WeightsSender *s) {
    if (!s->in_flight) return 0;
    if (devcomm_bcast_test(s->dc)) {
        s->in_flight = 0;
        s->seconds += MPI_Wtime() - s->started;
        s->bytes_sent += (double)s->n_floats * sizeof(float) * s->n_inference;
    }
    return s->in_flight;
}

static void notify_all(const WeightsSender *s, int version) {
    WeightsNotice notice = {.version = version, .n_params = s->n_floats};
    for (int i = 0; i < s->n_inference; i++) {
        ByteWriter w;
        bw_init(&w, 32);
        encode_weights_notice(&w, &notice);
        msg_send_now(&w, s->inference[i], MSG_WEIGHTS, MPI_COMM_WORLD);
        bw_free(&w);
    }
}

void weights_publish(WeightsSender *s, const float *params, int version) {
    Backoff b;
    backoff_reset(&b);
    while (weights_sender_progress(s)) backoff_sleep(&b);
    ops_copy(s->staging, params, sizeof(float) * s->n_floats);
    s->version = version;
    notify_all(s, version);
    s->started = MPI_Wtime();
    devcomm_bcast_start(s->dc, s->staging, s->n_floats);
    s->in_flight = 1;
}

void weights_sender_finish(WeightsSender *s) {
    Backoff b;
    backoff_reset(&b);
    while (weights_sender_progress(s)) backoff_sleep(&b);
    notify_all(s, WEIGHTS_END);
    devcomm_destroy(s->dc);
    ops_free(s->staging);
    free((void *)s->inference);
    memset(s, 0, sizeof *s);
}

void weights_receiver_init(WeightsReceiver *r, const Layout *layout, size_t n_floats, int keep_all) {
    memset(r, 0, sizeof *r);
    r->comm = layout->weights;
    r->world_root = layout->trainer_root;
    r->n_floats = n_floats;
    r->keep_all = keep_all;
    r->dc = devcomm_create(r->comm);
}

static float *get_buffer(WeightsReceiver *r) {
    if (r->spare) {
        float *b = r->spare;
        r->spare = NULL;
        return b;
    }
    return ops_alloc(sizeof(float) * r->n_floats);
}

void weights_receiver_recycle(WeightsReceiver *r, float *buffer) {
    if (!buffer) return;
    if (!r->spare) r->spare = buffer;
    else ops_free(buffer);
}

static void push_ready(WeightsReceiver *r, StagedWeights w) {
    if (!r->keep_all) {  // only the newest matters
        for (int i = 0; i < r->n_ready; i++) weights_receiver_recycle(r, r->ready[i].data);
        r->n_ready = 0;
    }
    r->ready = xrealloc(r->ready, sizeof(StagedWeights) * (size_t)(r->n_ready + 1));
    r->ready[r->n_ready++] = w;
}

void weights_receiver_poll(WeightsReceiver *r) {
    for (;;) {
        if (r->receiving) {
            if (!devcomm_bcast_test(r->dc)) return;
            r->receiving = 0;
            push_ready(r, r->incoming);
            LOG_DEBUG("weights version %d received", r->incoming.version);
        }
        Received msg;
        if (!msg_try_recv(MPI_COMM_WORLD, r->world_root, MSG_WEIGHTS, &msg)) return;
        WeightsNotice notice;
        ErrorBuf err;
        if (decode_weights_notice(msg.data, msg.len, &notice, &err) != 0)
            FATAL("the trainer root sent a damaged notice: a bug or a mismatched binary", "%s", err.msg);
        received_free(&msg);
        if (notice.version == WEIGHTS_END) {
            r->ended = 1;
            return;
        }
        CHECK(notice.n_params == r->n_floats, "trainer and inference must load the same model shape",
              "weights notice for %llu floats, this rank's model has %zu", (unsigned long long)notice.n_params,
              r->n_floats);
        r->incoming.version = notice.version;
        r->incoming.data = get_buffer(r);
        devcomm_bcast_start(r->dc, r->incoming.data, r->n_floats);
        r->receiving = 1;
    }
}

void weights_receiver_drain(WeightsReceiver *r) {
    Backoff b;
    backoff_reset(&b);
    for (;;) {
        weights_receiver_poll(r);
        if (r->ended && !r->receiving) break;
        backoff_sleep(&b);
    }
    weights_receiver_free(r);
}

void weights_receiver_wait(WeightsReceiver *r, int min_version) {
    Backoff b;
    backoff_reset(&b);
    for (;;) {
        weights_receiver_poll(r);
        if (weights_receiver_newest(r) >= min_version) return;
        backoff_sleep(&b);
    }
}

int weights_receiver_newest(const WeightsReceiver *r) { return r->n_ready ? r->ready[r->n_ready - 1].version : -1; }

float *weights_receiver_take(WeightsReceiver *r, int version) {
    int i = 0;
    while (i < r->n_ready && r->ready[i].version != version) i++;
    CHECK(i < r->n_ready, "this is a bug in the weight flow", "weights version %d is not staged", version);
    for (int j = 0; j < i; j++) weights_receiver_recycle(r, r->ready[j].data);
    float *data = r->ready[i].data;
    memmove(r->ready, r->ready + i + 1, sizeof(StagedWeights) * (size_t)(r->n_ready - i - 1));
    r->n_ready -= i + 1;
    return data;
}

const float *weights_receiver_peek(const WeightsReceiver *r, int version) {
    for (int i = 0; i < r->n_ready; i++)
        if (r->ready[i].version == version) return r->ready[i].data;
    return NULL;
}

int weights_receiver_oldest(const WeightsReceiver *r) { return r->n_ready ? r->ready[0].version : -1; }

void weights_receiver_drop_older(WeightsReceiver *r, int version) {
    int i = 0;
    while (i < r->n_ready && r->ready[i].version < version) weights_receiver_recycle(r, r->ready[i++].data);
    memmove(r->ready, r->ready + i, sizeof(StagedWeights) * (size_t)(r->n_ready - i));
    r->n_ready -= i;
}

void weights_receiver_free(WeightsReceiver *r) {
    Backoff b;
    backoff_reset(&b);
    while (r->receiving) {
        if (devcomm_bcast_test(r->dc)) {
            r->receiving = 0;
            ops_free(r->incoming.data);
        } else {
            backoff_sleep(&b);
        }
    }
    for (int i = 0; i < r->n_ready; i++) ops_free(r->ready[i].data);
    free(r->ready);
    ops_free(r->spare);
    devcomm_destroy(r->dc);
    memset(r, 0, sizeof *r);
}
