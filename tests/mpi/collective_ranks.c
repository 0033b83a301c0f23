// Run under `mpirun -np 3` by tests/integration/collective.sh (CPU) and gpu_collective.sh
// (CUDA): the device collectives of kernels/collective.h over MPI_COMM_WORLD, on device
// memory. Checks the all-reduce sum (values chosen so that float sums are exact), the
// non-blocking broadcast (two in a row, the root's buffer untouched, polling while it runs),
// and the zero-length cases. Rank 0 prints TAP lines.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "collective.h"
#include "ops.h"

#define N 1000003  // not a multiple of any chunk or block size

static float reduce_value(int rank, size_t i) { return (float)((i % 1024) + 1000 * rank); }
static float bcast_value(int round, size_t i) { return (float)(round * 4096 + (int)(i % 4093)); }

static void report(int ok, const char *name, int rank) {
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    if (rank == 0) printf("%s - %s\n", all ? "ok" : "not ok", name);
}

int main(int argc, char **argv) {
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    ops_init(1);
    DeviceComm *dc = devcomm_create(MPI_COMM_WORLD);
    if (rank == 0) printf("# backend %s, direct broadcast %d\n", ops_backend_name(), devcomm_direct_broadcast(dc));
    float *host = malloc(sizeof(float) * N);
    float *buf = ops_alloc(sizeof(float) * N);

    // All-reduce: sum over ranks r of (i % 1024 + 1000 r), exact in float.
    for (size_t i = 0; i < N; i++) host[i] = reduce_value(rank, i);
    ops_copy_to_device(buf, host, sizeof(float) * N);
    devcomm_allreduce_sum(dc, buf, N);
    ops_copy_to_host(host, buf, sizeof(float) * N);
    int ok = 1;
    for (size_t i = 0; i < N; i++) {
        float expect = 0.0f;
        for (int r = 0; r < size; r++) expect += reduce_value(r, i);
        ok &= host[i] == expect;
    }
    report(ok, "all-reduce sums every rank's buffer", rank);

    // Two broadcasts in a row, polled (the test sleeps between polls as callers do).
    ok = 1;
    int polls = 0;
    for (int round = 1; round <= 2; round++) {
        for (size_t i = 0; i < N; i++) host[i] = rank == 0 ? bcast_value(round, i) : -1.0f;
        ops_copy_to_device(buf, host, sizeof(float) * N);
        devcomm_bcast_start(dc, buf, N);
        while (!devcomm_bcast_test(dc)) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
            polls++;
        }
        ok &= devcomm_bcast_test(dc) == 1;  // idle afterwards
        ops_copy_to_host(host, buf, sizeof(float) * N);
        for (size_t i = 0; i < N; i++) ok &= host[i] == bcast_value(round, i);
    }
    report(ok, "broadcast from rank 0 reaches every rank intact, twice", rank);

    // Zero lengths are no-ops that still complete.
    devcomm_allreduce_sum(dc, buf, 0);
    devcomm_bcast_start(dc, buf, 0);
    report(devcomm_bcast_test(dc) == 1, "zero-length collectives complete at once", rank);

    ops_free(buf);
    free(host);
    devcomm_destroy(dc);
    ops_finalize();
    MPI_Finalize();
    return 0;
}
