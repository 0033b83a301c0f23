// Point-to-point transport for protocol messages, without busy-waiting. Open MPI's blocking
// calls poll a core at 100%; here every wait is MPI_Iprobe/MPI_Test plus a short sleep that
// backs off (20 us up to 2 ms), so an idle orchestrator costs next to no CPU. Sends are
// non-blocking (an outbox keeps each buffer until MPI is done with it), so a rank never
// stalls because its peer is busy computing.
#pragma once
#include <mpi.h>
#include <stddef.h>

#include "comm/bytes.h"

typedef struct {
    int sleep_us;  // current sleep; grows while nothing happens
} Backoff;

void backoff_reset(Backoff *b);
void backoff_sleep(Backoff *b);  // sleeps, then lengthens the next sleep

typedef struct {
    MPI_Request request;
    ByteWriter buf;
} PendingSend;

typedef struct {
    PendingSend *items;
    int count, cap;
} Outbox;

void outbox_init(Outbox *o);
// Starts sending msg (the outbox takes the buffer; *msg is reset) to dest with tag.
void outbox_send(Outbox *o, ByteWriter *msg, int dest, int tag, MPI_Comm comm);
int outbox_progress(Outbox *o);  // completes what it can; returns the sends still pending
void outbox_flush(Outbox *o);    // waits (sleeping) until every send is done
void outbox_free(Outbox *o);

// Sends and waits until done (for rare small messages at start-up and shutdown).
void msg_send_now(ByteWriter *msg, int dest, int tag, MPI_Comm comm);
// An empty message (a signal such as MSG_BYE), sent and waited for.
void msg_send_empty(int dest, int tag, MPI_Comm comm);

// A message that has arrived (or NULL data if none): source, tag and the bytes.
typedef struct {
    int source, tag;
    void *data;
    size_t len;
} Received;

// Non-blocking: if a message matching (source, tag) (MPI_ANY_* allowed) has arrived, receives
// it into *out (heap data) and returns 1; otherwise returns 0 at once.
int msg_try_recv(MPI_Comm comm, int source, int tag, Received *out);
// Blocks (sleeping, not spinning) until such a message arrives.
void msg_recv_wait(MPI_Comm comm, int source, int tag, Received *out);
void received_free(Received *r);

// On a trainer or inference rank: once a stop signal (SIGTERM, SIGUSR1) has reached this rank,
// passes it on to the orchestrator (MSG_STOP), which alone decides when the job stops; at most
// once a process. Called from the rank's message loop.
void stop_signal_forward(void);

// Waits for a non-blocking MPI operation, sleeping between tests.
void mpi_wait_sleeping(MPI_Request *request);
