// Bandwidth of the device collectives (kernels/collective.h) over MPI_COMM_WORLD: the weight
// broadcast from rank 0 (devcomm_bcast_start / devcomm_bcast_test, polled with short sleeps as
// the inference ranks do) and the gradient all-reduce. Run under mpirun with 2+ ranks; the
// path (NCCL or host staging) is the one devcomm_create picks for this placement. Rank 0
// prints, per collective, the seconds per call (the slowest rank's) and GB/s:
//   broadcast: parameter bytes / time (what every receiver gets per second)
//   all-reduce: bus bandwidth, bytes * 2 (ranks - 1) / ranks / time (NCCL's convention)
//
//   mpirun -np 3 bench_gpu_broadcast [floats rounds]     (default 0.37e9 floats = 1.5 GB, 5)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "collective.h"
#include "ops.h"

static double slowest(double seconds) {
    double max = 0;
    MPI_Allreduce(&seconds, &max, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return max;
}

int main(int argc, char **argv) {
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const size_t n = argc > 1 ? (size_t)atof(argv[1]) : (size_t)370000000;
    const int rounds = argc > 2 ? atoi(argv[2]) : 5;
    ops_init(0);
    DeviceComm *dc = devcomm_create(MPI_COMM_WORLD);
    float *buf = ops_alloc(n * sizeof(float));
    const double bytes = (double)n * sizeof(float);
    const char *path = devcomm_direct_broadcast(dc)                 ? "nccl"
                       : strcmp(ops_backend_name(), "cuda") == 0 ? "host-staged-mpi"
                                                                  : "mpi";
    if (rank == 0) printf("# %d ranks, %zu floats (%.2f GB), path: %s\n", size, n, bytes / 1e9, path);
    double t_bcast = 0, t_reduce = 0;
    for (int r = -1; r < rounds; r++) {  // round -1 warms up
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        devcomm_bcast_start(dc, buf, n);
        while (!devcomm_bcast_test(dc)) {
            struct timespec ts = {0, 50000};
            nanosleep(&ts, NULL);
        }
        const double b = slowest(MPI_Wtime() - t0);
        MPI_Barrier(MPI_COMM_WORLD);
        t0 = MPI_Wtime();
        devcomm_allreduce_sum(dc, buf, n);
        const double a = slowest(MPI_Wtime() - t0);
        if (r >= 0) t_bcast += b, t_reduce += a;
    }
    if (rank == 0 && rounds > 0) {
        const double b = t_bcast / rounds, a = t_reduce / rounds;
        printf("broadcast ranks=%d bytes=%.3e s/call=%.4f GB/s=%.2f path=%s\n", size, bytes, b, bytes / b / 1e9, path);
        printf("allreduce ranks=%d bytes=%.3e s/call=%.4f busGB/s=%.2f path=%s\n", size, bytes, a,
               bytes * 2.0 * (size - 1) / size / a / 1e9, path);
    }
    ops_free(buf);
    devcomm_destroy(dc);
    ops_finalize();
    MPI_Finalize();
    return 0;
}
