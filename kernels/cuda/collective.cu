// Device collectives for the CUDA backend (kernels/collective.h).
//
// devcomm_create decides, for the whole communicator at once, how data moves:
// - NCCL, when every rank has a GPU of its own (the GPUs' UUIDs, gathered over MPI, are all
//   different) and ASYNCRL_NCCL is not 0. Rank 0 makes an ncclUniqueId and broadcasts it over
//   MPI; every rank then joins with ncclCommInitRank. All-reduce runs on the compute stream;
//   the broadcast runs on a side stream and is polled with cudaEventQuery.
// - host staging, when two ranks share a GPU (NCCL refuses that): device -> pinned host copy,
//   MPI non-blocking collective on the host buffer, host -> device copy. The copies of the
//   broadcast run on the side stream too, so a trainer or decoder keeps computing.
// Every wait polls (cudaEventQuery / MPI_Test, plus NCCL's asynchronous error state) and sleeps
// between polls, up to 1 ms: no rank spins a core, and a dead peer ends the job with a message
// instead of a silent hang where NCCL can tell.
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "collective.h"
#include "comm/mpi_check.h"
#include "core/log.h"
}

#define MPI_CHUNK ((size_t)1 << 30)     // MPI counts are int
#define BCAST_MAX_CHUNKS 64
#define REDUCE_STAGING ((size_t)1 << 26)  // floats of pinned memory for a host-staged all-reduce

typedef enum {
    BCAST_IDLE = 0,
    BCAST_NCCL,       // ncclBroadcast queued on the side stream, event `bcast_done` after it
    BCAST_COPY_DOWN,  // rank 0, staged: device -> pinned copy queued on the side stream
    BCAST_MPI,        // staged: MPI_Ibcast of the pinned buffer under way
    BCAST_COPY_UP,    // other ranks, staged: pinned -> device copy queued on the side stream
} BcastState;

struct DeviceComm {
    MPI_Comm comm;
    int rank, size;
    int use_nccl;
    ncclComm_t nccl;
    cudaStream_t side;         // broadcasts run here, beside the compute stream
    cudaEvent_t compute_mark;  // recorded on the compute stream; the side stream waits for it
    cudaEvent_t bcast_done;    // recorded on the side stream after the broadcast's last step
    cudaEvent_t reduce_done;   // recorded on the compute stream after an all-reduce
    float *pinned_bcast;       // (pinned_bcast_cap) host staging of the broadcast
    size_t pinned_bcast_cap;
    float *pinned_reduce;      // (REDUCE_STAGING) host staging of the all-reduce
    // The broadcast in flight.
    BcastState state;
    float *buf;
    size_t n;
    MPI_Request requests[BCAST_MAX_CHUNKS];
    int n_requests;
};

// ---------------------------------------------------------------------------------------
// Waiting without spinning.

static void nap(int *sleep_us) {
    struct timespec ts = {0, *sleep_us * 1000L};
    nanosleep(&ts, NULL);
    if (*sleep_us < 1000) *sleep_us *= 2;
}

static void check_nccl_async(const DeviceComm *dc) {
    if (!dc->use_nccl) return;
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(dc->nccl, &async));
    if (async != ncclSuccess && async != ncclInProgress)
        FATAL(nccl_error_hint(async), "an NCCL collective failed asynchronously: %s (%s)", ncclGetErrorString(async),
              ncclGetLastError(dc->nccl));
}

// 1 when every operation before `event` has finished.
static int event_done(const DeviceComm *dc, cudaEvent_t event) {
    cudaError_t q = cudaEventQuery(event);
    if (q == cudaSuccess) return 1;
    if (q != cudaErrorNotReady) CUDA_CHECK(q);
    check_nccl_async(dc);
    return 0;
}

static void wait_event(const DeviceComm *dc, cudaEvent_t event) {
    int sleep_us = 10;
    while (!event_done(dc, event)) nap(&sleep_us);
}

static void wait_request(MPI_Request *request, const char *what) {
    int done = 0, sleep_us = 10;
    for (;;) {
        if (MPI_Test(request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            FATAL("a rank may have died or the network failed", "MPI_Test failed in %s", what);
        if (done) return;
        nap(&sleep_us);
    }
}

// Blocking-free versions of the setup collectives.
static void allgather_sleeping(const void *mine, void *all, int bytes, MPI_Comm comm) {
    MPI_Request request;
    MPI_CHECK(MPI_Iallgather(mine, bytes, MPI_BYTE, all, bytes, MPI_BYTE, comm, &request));
    wait_request(&request, "devcomm_create");
}

static void bcast_bytes_sleeping(void *data, int bytes, MPI_Comm comm) {
    MPI_Request request;
    MPI_CHECK(MPI_Ibcast(data, bytes, MPI_BYTE, 0, comm, &request));
    wait_request(&request, "devcomm_create");
}

static int allreduce_min_sleeping(int value, MPI_Comm comm) {
    MPI_Request request;
    int result = value;
    MPI_CHECK(MPI_Iallreduce(&value, &result, 1, MPI_INT, MPI_MIN, comm, &request));
    wait_request(&request, "devcomm_create");
    return result;
}

static float *pinned_alloc(size_t n) {
    float *p = NULL;
    cudaError_t err = cudaMallocHost((void **)&p, n * sizeof(float));
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        FATAL("not enough pinned host memory: reduce the model size or the ranks per node",
              "cudaMallocHost of %zu floats (%.1f MiB) failed: %s", n, n * 4 / 1048576.0, cudaGetErrorString(err));
    }
    return p;
}

// ---------------------------------------------------------------------------------------
// Setup.

DeviceComm *devcomm_create(MPI_Comm comm) {
    CHECK(comm != MPI_COMM_NULL, "a bug in the caller", "devcomm_create on MPI_COMM_NULL");
    DeviceComm *dc = (DeviceComm *)xcalloc(1, sizeof *dc);
    dc->comm = comm;
    MPI_CHECK(MPI_Comm_rank(comm, &dc->rank));
    MPI_CHECK(MPI_Comm_size(comm, &dc->size));
    const int device = cuda_device();  // initialises the backend
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, device));

    // One GPU per rank? Compare the UUIDs of every rank's GPU.
    unsigned char *uuids = (unsigned char *)xmalloc((size_t)dc->size * 16);
    allgather_sleeping(prop.uuid.bytes, uuids, 16, comm);
    int shared = 0;
    for (int a = 0; a < dc->size; a++)
        for (int b = a + 1; b < dc->size; b++)
            if (memcmp(uuids + (size_t)a * 16, uuids + (size_t)b * 16, 16) == 0) shared = 1;
    free(uuids);
    const char *env = getenv("ASYNCRL_NCCL");
    const int allowed = !(env && strcmp(env, "0") == 0);
    dc->use_nccl = allreduce_min_sleeping(allowed && !shared && dc->size > 1, comm);

    if (dc->use_nccl) {
        ncclUniqueId id;
        memset(&id, 0, sizeof id);
        if (dc->rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
        bcast_bytes_sleeping(&id, (int)sizeof id, comm);
        NCCL_CHECK(ncclCommInitRank(&dc->nccl, dc->size, id, dc->rank));
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&dc->side, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&dc->compute_mark, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&dc->bcast_done, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&dc->reduce_done, cudaEventDisableTiming));
    if (dc->rank == 0 && dc->size > 1)
        LOG_INFO("device collectives over %d ranks: %s", dc->size,
                 dc->use_nccl ? "NCCL, GPU to GPU"
                 : shared     ? "host-staged MPI (ranks share a GPU, which NCCL refuses)"
                 : !allowed   ? "host-staged MPI (ASYNCRL_NCCL=0)"
                              : "host-staged MPI");
    return dc;
}

void devcomm_destroy(DeviceComm *dc) {
    if (!dc) return;
    int sleep_us = 10;
    while (!devcomm_bcast_test(dc)) nap(&sleep_us);
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(dc->side));
    if (dc->use_nccl) NCCL_CHECK(ncclCommDestroy(dc->nccl));
    CUDA_CHECK(cudaEventDestroy(dc->compute_mark));
    CUDA_CHECK(cudaEventDestroy(dc->bcast_done));
    CUDA_CHECK(cudaEventDestroy(dc->reduce_done));
    CUDA_CHECK(cudaStreamDestroy(dc->side));
    if (dc->pinned_bcast) CUDA_CHECK(cudaFreeHost(dc->pinned_bcast));
    if (dc->pinned_reduce) CUDA_CHECK(cudaFreeHost(dc->pinned_reduce));
    free(dc);
}

int devcomm_direct_broadcast(const DeviceComm *dc) { return dc->use_nccl; }

// ---------------------------------------------------------------------------------------
// All-reduce (blocking for the caller, sleeping while it waits).

void devcomm_allreduce_sum(DeviceComm *dc, float *buf, size_t n) {
    if (dc->size == 1 || n == 0) return;
    cudaStream_t stream = cuda_stream();
    cuda_note_write(buf, n * sizeof(float));
    if (dc->use_nccl) {
        NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, dc->nccl, stream));
        CUDA_CHECK(cudaEventRecord(dc->reduce_done, stream));
        wait_event(dc, dc->reduce_done);
        return;
    }
    if (!dc->pinned_reduce) dc->pinned_reduce = pinned_alloc(REDUCE_STAGING);
    for (size_t off = 0; off < n; off += REDUCE_STAGING) {
        const size_t count = n - off < REDUCE_STAGING ? n - off : REDUCE_STAGING;
        CUDA_CHECK(cudaMemcpyAsync(dc->pinned_reduce, buf + off, count * sizeof(float), cudaMemcpyDeviceToHost, stream));
        CUDA_CHECK(cudaEventRecord(dc->reduce_done, stream));
        wait_event(dc, dc->reduce_done);
        MPI_Request request;
        MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, dc->pinned_reduce, (int)count, MPI_FLOAT, MPI_SUM, dc->comm, &request));
        wait_request(&request, "the gradient all-reduce");
        CUDA_CHECK(cudaMemcpyAsync(buf + off, dc->pinned_reduce, count * sizeof(float), cudaMemcpyHostToDevice, stream));
        CUDA_CHECK(cudaEventRecord(dc->reduce_done, stream));
        wait_event(dc, dc->reduce_done);  // the pinned buffer is reused by the next chunk
    }
}

// ---------------------------------------------------------------------------------------
// Broadcast (non-blocking, a small state machine moved on by devcomm_bcast_test).

static void start_mpi_bcast(DeviceComm *dc) {
    dc->n_requests = 0;
    for (size_t off = 0; off < dc->n; off += MPI_CHUNK) {
        const size_t count = dc->n - off < MPI_CHUNK ? dc->n - off : MPI_CHUNK;
        MPI_CHECK(MPI_Ibcast(dc->pinned_bcast + off, (int)count, MPI_FLOAT, 0, dc->comm, &dc->requests[dc->n_requests]));
        dc->n_requests++;
    }
    dc->state = BCAST_MPI;
}

void devcomm_bcast_start(DeviceComm *dc, float *buf, size_t n) {
    CHECK(dc->state == BCAST_IDLE, "a bug in the caller: wait for devcomm_bcast_test to return 1",
          "devcomm_bcast_start while a broadcast is in flight");
    CHECK((n + MPI_CHUNK - 1) / MPI_CHUNK <= BCAST_MAX_CHUNKS, "", "broadcast of %zu floats is too large", n);
    if (dc->size == 1 || n == 0) return;
    dc->buf = buf;
    dc->n = n;
    if (dc->rank != 0) cuda_note_write(buf, n * sizeof(float));
    // The side stream starts after everything queued so far on the compute stream.
    CUDA_CHECK(cudaEventRecord(dc->compute_mark, cuda_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(dc->side, dc->compute_mark, 0));
    if (dc->use_nccl) {
        NCCL_CHECK(ncclBroadcast(buf, buf, n, ncclFloat, 0, dc->nccl, dc->side));
        CUDA_CHECK(cudaEventRecord(dc->bcast_done, dc->side));
        dc->state = BCAST_NCCL;
        return;
    }
    if (dc->pinned_bcast_cap < n) {
        if (dc->pinned_bcast) CUDA_CHECK(cudaFreeHost(dc->pinned_bcast));
        dc->pinned_bcast = pinned_alloc(n);
        dc->pinned_bcast_cap = n;
    }
    if (dc->rank == 0) {
        CUDA_CHECK(cudaMemcpyAsync(dc->pinned_bcast, buf, n * sizeof(float), cudaMemcpyDeviceToHost, dc->side));
        CUDA_CHECK(cudaEventRecord(dc->bcast_done, dc->side));
        dc->state = BCAST_COPY_DOWN;
    } else {
        start_mpi_bcast(dc);
    }
}

int devcomm_bcast_test(DeviceComm *dc) {
    switch (dc->state) {
    case BCAST_IDLE:
        return 1;
    case BCAST_NCCL:
        if (!event_done(dc, dc->bcast_done)) return 0;
        dc->state = BCAST_IDLE;
        return 1;
    case BCAST_COPY_DOWN:
        if (!event_done(dc, dc->bcast_done)) return 0;
        start_mpi_bcast(dc);
        return 0;
    case BCAST_MPI: {
        int done = 0;
        MPI_CHECK(MPI_Testall(dc->n_requests, dc->requests, &done, MPI_STATUSES_IGNORE));
        if (!done) return 0;
        dc->n_requests = 0;
        if (dc->rank == 0) {
            dc->state = BCAST_IDLE;
            return 1;
        }
        CUDA_CHECK(cudaMemcpyAsync(dc->buf, dc->pinned_bcast, dc->n * sizeof(float), cudaMemcpyHostToDevice, dc->side));
        CUDA_CHECK(cudaEventRecord(dc->bcast_done, dc->side));
        dc->state = BCAST_COPY_UP;
        return 0;
    }
    case BCAST_COPY_UP:
        if (!event_done(dc, dc->bcast_done)) return 0;
        dc->state = BCAST_IDLE;
        return 1;
    }
    return 1;
}
