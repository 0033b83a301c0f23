// Weight flow from the trainer root to every inference rank (DESIGN.md section 1). The root
// publishes version v: it sends each inference rank a notice (MSG_WEIGHTS, point-to-point) and
// starts a non-blocking broadcast of the whole parameter buffer over the `weights`
// communicator. An inference rank takes the notice between two decode steps, joins the
// broadcast into a staging buffer, keeps decoding while it completes, and then swaps.
// Nothing blocks on a peer that is busy computing, and nothing spins.
//
// Receiving keeps either only the newest complete version (default: older staged versions are
// dropped) or every version in order (deterministic mode, where a request names the exact
// version it must be generated with).
//
// All parameter buffers here are DEVICE memory (ops_alloc; host memory in the CPU build). How
// the bytes travel is the device collectives' business (kernels/collective.h): MPI_Ibcast on
// CPU, NCCL GPU to GPU when every rank has its own GPU, pinned host staging + MPI when ranks
// share a GPU. weights_sender_init and weights_receiver_init are collective over the weights
// communicator: the root and every inference rank call theirs once at start-up.
#pragma once
#include <mpi.h>
#include <stddef.h>

#include "collective.h"
#include "comm/layout.h"

typedef struct {
    MPI_Comm comm;          // the weights communicator (root is rank 0 in it)
    DeviceComm *dc;         // its device collectives
    int world_root;
    const int *inference;   // world ranks of the inference ranks
    int n_inference;
    size_t n_floats;
    float *staging;         // (n_floats) device copy being broadcast
    int in_flight;          // a broadcast is under way
    int version;            // version of the broadcast under way or last sent
    double bytes_sent, seconds;  // for the broadcast throughput metric
    double started;
} WeightsSender;

void weights_sender_init(WeightsSender *s, const Layout *layout, size_t n_floats);
// Publishes `params` (n_floats device floats) as `version`: waits (sleeping) for the previous
// broadcast to finish, copies params to the staging buffer (so training may go on changing
// them), notifies every inference rank, starts the broadcast.
void weights_publish(WeightsSender *s, const float *params, int version);
int weights_sender_progress(WeightsSender *s);  // 1 while a broadcast is still in flight
// Completes the last broadcast, tells every inference rank that no more weights come (so none
// waits for a broadcast the root will not start, and none leaves one the root started), frees.
void weights_sender_finish(WeightsSender *s);

typedef struct {
    int version;
    float *data;            // (n_floats) device
} StagedWeights;

typedef struct {
    MPI_Comm comm;
    DeviceComm *dc;
    int world_root;
    size_t n_floats;
    int keep_all;
    // The broadcast being received.
    int receiving;
    StagedWeights incoming;
    // Complete versions not yet taken, oldest first.
    StagedWeights *ready;
    int n_ready;
    float *spare;           // a buffer to reuse for the next broadcast
    int ended;              // the root's end notice has arrived
} WeightsReceiver;

void weights_receiver_init(WeightsReceiver *r, const Layout *layout, size_t n_floats, int keep_all);
// Takes notices and progresses the broadcast; never blocks.
void weights_receiver_poll(WeightsReceiver *r);
// Blocks (sleeping) until a version >= min_version is complete.
void weights_receiver_wait(WeightsReceiver *r, int min_version);
// The newest complete version not yet taken (-1 if none).
int weights_receiver_newest(const WeightsReceiver *r);
// Takes version `version` (must be complete); older ones are dropped. The returned device
// buffer belongs to the caller until given back with weights_receiver_recycle. (A backend that
// keeps bf16 copies of weights needs ops_params_updated on it before it is used as parameters.)
float *weights_receiver_take(WeightsReceiver *r, int version);
void weights_receiver_recycle(WeightsReceiver *r, float *buffer);
// Deterministic mode (keep_all) switches the engine between staged versions and back: the staged
// buffer of `version` (NULL when it is not staged), which stays staged.
const float *weights_receiver_peek(const WeightsReceiver *r, int version);
// The oldest staged version (-1 if none); recycles the staged versions older than `version`.
int weights_receiver_oldest(const WeightsReceiver *r);
void weights_receiver_drop_older(WeightsReceiver *r, int version);
// At shutdown: joins every broadcast the root still announces until its end notice, then frees.
void weights_receiver_drain(WeightsReceiver *r);
void weights_receiver_free(WeightsReceiver *r);
