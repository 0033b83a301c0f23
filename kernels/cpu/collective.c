// Device collectives for the CPU backend: device memory is host memory, so these are MPI's
// non-blocking collectives, waited on with sleeps instead of Open MPI's busy polling.
#include <stdlib.h>
#include <time.h>

#include "collective.h"
#include "core/error.h"

struct DeviceComm {
    MPI_Comm comm;
};

DeviceComm *devcomm_create(MPI_Comm comm) {
    DeviceComm *dc = xcalloc(1, sizeof *dc);
    dc->comm = comm;
    return dc;
}

void devcomm_destroy(DeviceComm *dc) { free(dc); }

static void wait_sleeping(MPI_Request *request) {
    int done = 0, sleep_us = 20;
    for (;;) {
        if (MPI_Test(request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            FATAL("a trainer rank may have died", "MPI_Test failed in the gradient all-reduce");
        if (done) return;
        struct timespec ts = {0, sleep_us * 1000L};
        nanosleep(&ts, NULL);
        if (sleep_us < 1000) sleep_us *= 2;
    }
}

void devcomm_allreduce_sum(DeviceComm *dc, float *buf, size_t n) {
    const size_t chunk = (size_t)1 << 30;  // MPI counts are int
    for (size_t off = 0; off < n; off += chunk) {
        size_t count = n - off < chunk ? n - off : chunk;
        MPI_Request request;
        if (MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)count, MPI_FLOAT, MPI_SUM, dc->comm, &request) != MPI_SUCCESS)
            FATAL("a trainer rank may have died", "MPI_Iallreduce of %zu floats failed", count);
        wait_sleeping(&request);
    }
}

int devcomm_direct_broadcast(const DeviceComm *dc) {
    (void)dc;
    return 0;
}
