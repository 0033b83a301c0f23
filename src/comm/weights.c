// Non-blocking weight broadcast from the trainer root to the inference ranks (see weights.h).
#include "comm/weights.h"

#include <stdlib.h>
#include <string.h>

#include "comm/mpi_check.h"
#include "comm/protocol.h"
#include "comm/transport.h"
#include "core/log.h"
#include "ops.h"

// MPI counts are int: a buffer of more than 2^30 floats goes out as several broadcasts.
#define CHUNK ((size_t)1 << 30)

static void bcast_start(float *buf, size_t n, MPI_Comm comm, WeightsTransfer *t) {
    t->n_requests = 0;
    for (size_t off = 0; off < n || t->n_requests == 0; off += CHUNK) {
        CHECK(t->n_requests < WEIGHTS_MAX_CHUNKS, "", "parameter buffer of %zu floats is too large", n);
        size_t count = n - off < CHUNK ? n - off : CHUNK;
        MPI_CHECK(MPI_Ibcast(buf + off, (int)count, MPI_FLOAT, 0, comm, &t->requests[t->n_requests++]));
        if (n == 0) break;
    }
}

static int bcast_test(WeightsTransfer *t) {
    int done = 0;
    MPI_CHECK(MPI_Testall(t->n_requests, t->requests, &done, MPI_STATUSES_IGNORE));
    return done;
}

void weights_sender_init(WeightsSender *s, const Layout *layout, size_t n_floats) {
    memset(s, 0, sizeof *s);
    s->comm = layout->weights;
    s->world_root = layout->trainer_root;
    s->n_floats = n_floats;
    s->staging = xmalloc(sizeof(float) * n_floats);
    s->version = -1;
    int *ranks = xmalloc(sizeof(int) * (size_t)layout->n_inference);
    for (int i = 0; i < layout->n_inference; i++) ranks[i] = layout->first_inference + i;
    s->inference = ranks;
    s->n_inference = layout->n_inference;
}

int weights_sender_progress(WeightsSender *s) {
    if (!s->in_flight) return 0;
    if (bcast_test(&s->transfer)) {
        s->in_flight = 0;
        s->seconds += MPI_Wtime() - s->started;
        s->bytes_sent += (double)s->n_floats * sizeof(float) * s->n_inference;
    }
    return s->in_flight;
}

void weights_publish(WeightsSender *s, const float *params, int version) {
    Backoff b;
    backoff_reset(&b);
    while (weights_sender_progress(s)) backoff_sleep(&b);
    ops_copy_to_host(s->staging, params, sizeof(float) * s->n_floats);
    s->version = version;
    WeightsNotice notice = {.version = version, .n_params = s->n_floats};
    for (int i = 0; i < s->n_inference; i++) {
        ByteWriter w;
        bw_init(&w, 32);
        encode_weights_notice(&w, &notice);
        msg_send_now(&w, s->inference[i], MSG_WEIGHTS, MPI_COMM_WORLD);
        bw_free(&w);
    }
    s->started = MPI_Wtime();
    bcast_start(s->staging, s->n_floats, s->comm, &s->transfer);
    s->in_flight = 1;
}

void weights_sender_finish(WeightsSender *s) {
    Backoff b;
    backoff_reset(&b);
    while (weights_sender_progress(s)) backoff_sleep(&b);
    free(s->staging);
    free((void *)s->inference);
    memset(s, 0, sizeof *s);
}

void weights_receiver_init(WeightsReceiver *r, const Layout *layout, size_t n_floats, int keep_all) {
    memset(r, 0, sizeof *r);
    r->comm = layout->weights;
    r->world_root = layout->trainer_root;
    r->n_floats = n_floats;
    r->keep_all = keep_all;
}

static float *get_buffer(WeightsReceiver *r) {
    if (r->spare) {
        float *b = r->spare;
        r->spare = NULL;
        return b;
    }
    return xmalloc(sizeof(float) * r->n_floats);
}

void weights_receiver_recycle(WeightsReceiver *r, float *buffer) {
    if (!buffer) return;
    if (!r->spare) r->spare = buffer;
    else free(buffer);
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
            if (!bcast_test(&r->transfer)) return;
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
        CHECK(notice.n_params == r->n_floats, "trainer and inference must load the same model shape",
              "weights notice for %llu floats, this rank's model has %zu", (unsigned long long)notice.n_params,
              r->n_floats);
        r->incoming.version = notice.version;
        r->incoming.data = get_buffer(r);
        bcast_start(r->incoming.data, r->n_floats, r->comm, &r->transfer);
        r->receiving = 1;
    }
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

void weights_receiver_free(WeightsReceiver *r) {
    Backoff b;
    backoff_reset(&b);
    while (r->receiving) {
        if (bcast_test(&r->transfer)) {
            r->receiving = 0;
            free(r->incoming.data);
        } else {
            backoff_sleep(&b);
        }
    }
    for (int i = 0; i < r->n_ready; i++) free(r->ready[i].data);
    free(r->ready);
    free(r->spare);
    memset(r, 0, sizeof *r);
}
