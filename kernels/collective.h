// Collectives on device memory among the ranks of an MPI communicator: the gradient
// all-reduce across trainer ranks and (optionally) the weight broadcast. The CPU backend
// uses non-blocking MPI and sleeps while it waits (nothing spins); the CUDA backend uses NCCL
// (communicator built from an ncclUniqueId broadcast over MPI) when every rank of the
// communicator has its own GPU, and stages through host memory with MPI otherwise (NCCL
// refuses two ranks on one device).
#pragma once
#include <mpi.h>
#include <stddef.h>

typedef struct DeviceComm DeviceComm;

// Collective over comm (every rank calls it). comm must stay valid until devcomm_destroy.
DeviceComm *devcomm_create(MPI_Comm comm);
void devcomm_destroy(DeviceComm *dc);
// In-place sum of n device floats over every rank of the communicator. Returns when done.
void devcomm_allreduce_sum(DeviceComm *dc, float *buf, size_t n);
// 1 when broadcasts move device memory directly (NCCL); 0 when callers should stage the data
// through host memory and use MPI themselves (comm/weights.c does).
int devcomm_direct_broadcast(const DeviceComm *dc);
