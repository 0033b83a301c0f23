// Non-blocking sends, polling receives and sleeping waits (see transport.h).
#include "comm/transport.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm/mpi_check.h"
#include "comm/protocol.h"
#include "core/signals.h"

#define BACKOFF_MIN_US 20
#define BACKOFF_MAX_US 2000

void backoff_reset(Backoff *b) { b->sleep_us = BACKOFF_MIN_US; }

void backoff_sleep(Backoff *b) {
    if (b->sleep_us < BACKOFF_MIN_US) b->sleep_us = BACKOFF_MIN_US;
    struct timespec ts = {0, (long)b->sleep_us * 1000L};
    nanosleep(&ts, NULL);
    b->sleep_us *= 2;
    if (b->sleep_us > BACKOFF_MAX_US) b->sleep_us = BACKOFF_MAX_US;
}

void outbox_init(Outbox *o) { memset(o, 0, sizeof *o); }

void outbox_send(Outbox *o, ByteWriter *msg, int dest, int tag, MPI_Comm comm) {
    CHECK(msg->len <= (size_t)INT32_MAX, "lower batch sizes: one message must stay under 2 GiB",
          "message of %zu bytes is too large for one MPI send", msg->len);
    if (o->count == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 8;
        o->items = xrealloc(o->items, sizeof(PendingSend) * (size_t)o->cap);
    }
    PendingSend *p = &o->items[o->count++];
    p->buf = *msg;
    memset(msg, 0, sizeof *msg);
    MPI_CHECK(MPI_Isend(p->buf.data, (int)p->buf.len, MPI_BYTE, dest, tag, comm, &p->request));
}

int outbox_progress(Outbox *o) {
    int kept = 0;
    for (int i = 0; i < o->count; i++) {
        int done = 0;
        MPI_CHECK(MPI_Test(&o->items[i].request, &done, MPI_STATUS_IGNORE));
        if (done) bw_free(&o->items[i].buf);
        else o->items[kept++] = o->items[i];
    }
    o->count = kept;
    return kept;
}

void outbox_flush(Outbox *o) {
    Backoff b;
    backoff_reset(&b);
    while (outbox_progress(o) > 0) backoff_sleep(&b);
}

void outbox_free(Outbox *o) {
    outbox_flush(o);
    free(o->items);
    memset(o, 0, sizeof *o);
}

void msg_send_now(ByteWriter *msg, int dest, int tag, MPI_Comm comm) {
    MPI_Request request;
    CHECK(msg->len <= (size_t)INT32_MAX, "lower batch sizes", "message of %zu bytes is too large", msg->len);
    MPI_CHECK(MPI_Isend(msg->data, (int)msg->len, MPI_BYTE, dest, tag, comm, &request));
    mpi_wait_sleeping(&request);
}

void msg_send_empty(int dest, int tag, MPI_Comm comm) {
    MPI_Request request;
    MPI_CHECK(MPI_Isend(NULL, 0, MPI_BYTE, dest, tag, comm, &request));
    mpi_wait_sleeping(&request);
}

int msg_try_recv(MPI_Comm comm, int source, int tag, Received *out) {
    int flag = 0;
    MPI_Message handle;
    MPI_Status status;
    MPI_CHECK(MPI_Improbe(source, tag, comm, &flag, &handle, &status));
    if (!flag) return 0;
    int count = 0;
    MPI_CHECK(MPI_Get_count(&status, MPI_BYTE, &count));
    out->source = status.MPI_SOURCE;
    out->tag = status.MPI_TAG;
    out->len = (size_t)count;
    out->data = xmalloc(out->len ? out->len : 1);
    MPI_CHECK(MPI_Mrecv(out->data, count, MPI_BYTE, &handle, MPI_STATUS_IGNORE));
    return 1;
}

void msg_recv_wait(MPI_Comm comm, int source, int tag, Received *out) {
    Backoff b;
    backoff_reset(&b);
    while (!msg_try_recv(comm, source, tag, out)) backoff_sleep(&b);
}

void received_free(Received *r) {
    free(r->data);
    r->data = NULL;
    r->len = 0;
}

void mpi_wait_sleeping(MPI_Request *request) {
    Backoff b;
    backoff_reset(&b);
    for (;;) {
        int done = 0;
        MPI_CHECK(MPI_Test(request, &done, MPI_STATUS_IGNORE));
        if (done) return;
        backoff_sleep(&b);
    }
}

void stop_signal_forward(void) {
    static int forwarded = 0;
    const int sig = signals_stop_requested();
    if (!sig || forwarded) return;
    forwarded = 1;
    ByteWriter w;
    bw_init(&w, 8);
    bw_i32(&w, sig);
    msg_send_now(&w, 0, MSG_STOP, MPI_COMM_WORLD);
    bw_free(&w);
}
