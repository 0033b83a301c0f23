// Collectives on device memory among the ranks of an MPI communicator: the gradient
// all-reduce across trainer ranks and (optionally) the weight broadcast. The CPU backend
// uses non-blocking MPI and sleeps while it waits (nothing spins); the CUDA backend uses NCCL
// (communicator built from an ncclUniqueId broadcast over MPI) when every rank of the
// communicator has its own GPU, and stages through host memory with MPI otherwise (NCCL
// refuses two ranks on one device).
//
// The weight broadcast (comm/weights.c) uses devcomm_bcast_start / devcomm_bcast_test, which
// hide how the bytes travel: MPI_Ibcast on the buffer itself (CPU), ncclBroadcast device to
// device on a side stream, polled with cudaEventQuery (CUDA, one GPU per rank), or pinned host
// staging with MPI_Ibcast and copies on the side stream (CUDA, ranks sharing a GPU). Every
// wait sleeps; nothing spins. ASYNCRL_NCCL=0 in the environment forces host staging on CUDA.
#pragma once
#include <mpi.h>
#include <stddef.h>

typedef struct DeviceComm DeviceComm;

// Collective over comm (every rank calls it). comm must stay valid until devcomm_destroy.
DeviceComm *devcomm_create(MPI_Comm comm);
void devcomm_destroy(DeviceComm *dc);
// In-place sum of n device floats over every rank of the communicator. Returns when done.
void devcomm_allreduce_sum(DeviceComm *dc, float *buf, size_t n);
// 1 when broadcasts move device memory directly, GPU to GPU (NCCL); 0 when they go through
// host memory and MPI (always on CPU, where device memory is host memory).
int devcomm_direct_broadcast(const DeviceComm *dc);

// Starts a non-blocking broadcast of n device floats from rank 0 of the communicator to every
// other rank (collective: every rank starts it, in the same order). Rank 0 reads buf, the
// others write it; nobody may touch buf until devcomm_bcast_test has returned 1. At most one
// broadcast per DeviceComm is in flight. Work queued on the compute stream before the call
// (e.g. the copy that filled buf, or a decode step still reading it) finishes before the
// broadcast touches buf.
void devcomm_bcast_start(DeviceComm *dc, float *buf, size_t n);
// Moves the broadcast on; 1 when it is complete on this rank (or none is in flight), else 0.
// Never blocks. After 1, buf may be used by any op.
int devcomm_bcast_test(DeviceComm *dc);
