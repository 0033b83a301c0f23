// Run under `mpirun -np 4` (1 trainer, 2 inference) by tests/integration/weights.sh: the trainer
// root publishes versions 1..6 back to back; the inference rank that keeps every version
// (deterministic mode) takes each one in order with the right contents, the other ends with
// the newest. Rank 0 prints TAP lines. Parameters live in device memory (ops_alloc), so the
// same program tests the CUDA build's paths (tests/integration/gpu_weights.sh).
#include <stdlib.h>
#include <string.h>

#include "comm/layout.h"
#include "comm/mpi_check.h"
#include "comm/weights.h"
#include "ops.h"

#define N 300001

static float value(int version, size_t i) { return (float)version * 1000.0f + (float)(i % 997); }

int main(int argc, char **argv) {
    Config cfg;
    Layout L;
    job_start(&argc, &argv, "weights-test", &cfg, &L);
    int ok = 1;
    if (L.world_rank == L.trainer_root) {
        WeightsSender s;
        weights_sender_init(&s, &L, N);
        float *host = malloc(sizeof(float) * N), *params = ops_alloc(sizeof(float) * N);
        for (int v = 1; v <= 6; v++) {
            for (size_t i = 0; i < N; i++) host[i] = value(v, i);
            ops_copy_to_device(params, host, sizeof(float) * N);
            weights_publish(&s, params, v);  // the previous broadcast may still be in flight
        }
        weights_sender_finish(&s);
        ops_free(params);
        free(host);
    } else if (L.role == ROLE_INFERENCE) {
        int keep_all = L.role_index == 0;
        WeightsReceiver r;
        weights_receiver_init(&r, &L, N, keep_all);
        int expect = 1;
        float *host = malloc(sizeof(float) * N);
        while (expect <= 6) {
            weights_receiver_wait(&r, expect);
            int v = keep_all ? expect : weights_receiver_newest(&r);
            if (keep_all && weights_receiver_newest(&r) < expect) ok = 0;
            float *w = weights_receiver_take(&r, v);
            ops_copy_to_host(host, w, sizeof(float) * N);
            for (size_t i = 0; i < N; i++) ok &= host[i] == value(v, i);
            weights_receiver_recycle(&r, w);
            expect = v + 1;
        }
        weights_receiver_drain(&r);
        free(host);
    }
    int all = 0;
    MPI_Reduce(&ok, &all, 1, MPI_INT, MPI_LAND, 0, MPI_COMM_WORLD);
    if (L.world_rank == 0) printf("%s - weights versions 1..6 reach both inference ranks intact\n", all ? "ok" : "not ok");
    MPI_Bcast(&all, 1, MPI_INT, 0, MPI_COMM_WORLD);
    job_finish(&L);
    return all ? 0 : 1;
}
