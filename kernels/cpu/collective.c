// Device collectives for the CPU backend: device memory is host memory, so these are MPI's
// non-blocking collectives, waited on with sleeps instead of Open MPI's busy polling. The
// broadcast is MPI_Ibcast straight on the caller's buffer, in chunks of 2^30 floats (MPI
// counts are int), tested with MPI_Testall.
#include <stdlib.h>
#include <time.h>

#include "collective.h"
#include "core/error.h"
#include "cpu/cpu.h"

#define BCAST_MAX_CHUNKS 64
#define CHUNK ((size_t)1 << 30)

struct DeviceComm {
    MPI_Comm comm;
    MPI_Request bcast[BCAST_MAX_CHUNKS];  // the broadcast in flight, one request per chunk
    int n_bcast;                          // 0 when none is in flight
    float *bcast_buf;                     // its buffer (n floats): written when it completes
    size_t bcast_n;
};

DeviceComm *devcomm_create(MPI_Comm comm) {
    CHECK(comm != MPI_COMM_NULL, "a bug in the caller", "devcomm_create on MPI_COMM_NULL");
    DeviceComm *dc = xcalloc(1, sizeof *dc);
    dc->comm = comm;
    return dc;
}

static void wait_sleeping(MPI_Request *request, const char *what) {
    int done = 0, sleep_us = 20;
    for (;;) {
        if (MPI_Test(request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            FATAL("a rank may have died", "MPI_Test failed in %s", what);
        if (done) return;
        struct timespec ts = {0, sleep_us * 1000L};
        nanosleep(&ts, NULL);
        if (sleep_us < 1000) sleep_us *= 2;
    }
}

void devcomm_destroy(DeviceComm *dc) {
    if (!dc) return;
    while (!devcomm_bcast_test(dc)) {
        struct timespec ts = {0, 200 * 1000L};
        nanosleep(&ts, NULL);
    }
    free(dc);
}

void devcomm_allreduce_sum(DeviceComm *dc, float *buf, size_t n) {
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t count = n - off < CHUNK ? n - off : CHUNK;
        MPI_Request request;
        if (MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)count, MPI_FLOAT, MPI_SUM, dc->comm, &request) != MPI_SUCCESS)
            FATAL("a trainer rank may have died", "MPI_Iallreduce of %zu floats failed", count);
        wait_sleeping(&request, "the gradient all-reduce");
    }
    cpu_note_write(buf, n * sizeof(float));
}

int devcomm_direct_broadcast(const DeviceComm *dc) {
    (void)dc;
    return 0;
}

void devcomm_bcast_start(DeviceComm *dc, float *buf, size_t n) {
    CHECK(dc->n_bcast == 0, "a bug in the caller: wait for devcomm_bcast_test to return 1",
          "devcomm_bcast_start while a broadcast is in flight");
    CHECK((n + CHUNK - 1) / CHUNK <= BCAST_MAX_CHUNKS, "", "broadcast of %zu floats is too large", n);
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t count = n - off < CHUNK ? n - off : CHUNK;
        if (MPI_Ibcast(buf + off, (int)count, MPI_FLOAT, 0, dc->comm, &dc->bcast[dc->n_bcast]) != MPI_SUCCESS)
            FATAL("a rank may have died", "MPI_Ibcast of %zu floats failed", count);
        dc->n_bcast++;
    }
    dc->bcast_buf = buf, dc->bcast_n = n;
    cpu_note_write(buf, n * sizeof(float));
}

int devcomm_bcast_test(DeviceComm *dc) {
    if (dc->n_bcast == 0) return 1;
    int done = 0;
    if (MPI_Testall(dc->n_bcast, dc->bcast, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        FATAL("a rank may have died", "MPI_Testall failed in the weight broadcast");
    if (done) {
        dc->n_bcast = 0;
        cpu_note_write(dc->bcast_buf, dc->bcast_n * sizeof(float));  // (the root's buffer is unchanged: harmless)
    }
    return done;
}
