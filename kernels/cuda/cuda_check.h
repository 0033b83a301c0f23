// Error checks for the CUDA backend: every CUDA runtime, cuBLAS and NCCL call goes through
// one of these macros, and every kernel launch is followed by CUDA_LAUNCH_CHECK. A failure
// ends the job through FATAL (core/error.h), which prints the file, line, rank and role, the
// failing call, the library's error text and a hint, then calls MPI_Abort.
//
// Kernels run asynchronously, so an error inside a kernel (an out-of-bounds read, say) is
// reported by whichever later call notices it. Set ASYNCRL_CUDA_SYNC=1 to synchronise after
// every launch: the error then names the kernel that caused it.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

extern "C" {
#include "core/error.h"
}

// A hint for the user, chosen by the kind of error.
const char *cuda_error_hint(cudaError_t err);
const char *cublas_error_hint(cublasStatus_t status);
const char *nccl_error_hint(ncclResult_t result);
// Called after every kernel launch (through CUDA_LAUNCH_CHECK).
void cuda_launch_check_at(const char *file, int line, const char *kernel);

#define CUDA_CHECK(call)                                                                              \
    do {                                                                                              \
        cudaError_t cuda_err_ = (call);                                                               \
        if (cuda_err_ != cudaSuccess)                                                                 \
            fatal_at(__FILE__, __LINE__, cuda_error_hint(cuda_err_), "%s failed: %s (%s)", #call,     \
                     cudaGetErrorString(cuda_err_), cudaGetErrorName(cuda_err_));                     \
    } while (0)

#define CUBLAS_CHECK(call)                                                                            \
    do {                                                                                              \
        cublasStatus_t cublas_st_ = (call);                                                           \
        if (cublas_st_ != CUBLAS_STATUS_SUCCESS)                                                      \
            fatal_at(__FILE__, __LINE__, cublas_error_hint(cublas_st_), "%s failed: %s (%s)", #call,  \
                     cublasGetStatusString(cublas_st_), cublasGetStatusName(cublas_st_));             \
    } while (0)

#define NCCL_CHECK(call)                                                                              \
    do {                                                                                              \
        ncclResult_t nccl_rc_ = (call);                                                               \
        if (nccl_rc_ != ncclSuccess)                                                                  \
            fatal_at(__FILE__, __LINE__, nccl_error_hint(nccl_rc_), "%s failed: %s", #call,           \
                     ncclGetErrorString(nccl_rc_));                                                   \
    } while (0)

#define CUDA_LAUNCH_CHECK(kernel) cuda_launch_check_at(__FILE__, __LINE__, (kernel))
