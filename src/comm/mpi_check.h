// MPI_CHECK(call): a failed MPI call ends the job with the MPI error text, the call, and the
// file, line, rank and role where it happened.
#pragma once
#include <mpi.h>

#include "core/error.h"

#define MPI_CHECK(call)                                                                            \
    do {                                                                                           \
        int mpi_rc_ = (call);                                                                      \
        if (mpi_rc_ != MPI_SUCCESS) {                                                              \
            char mpi_msg_[MPI_MAX_ERROR_STRING];                                                   \
            int mpi_len_ = 0;                                                                      \
            MPI_Error_string(mpi_rc_, mpi_msg_, &mpi_len_);                                        \
            FATAL("a rank may have died or the network failed; look for an earlier error",        \
                  "%s failed: %s", #call, mpi_msg_);                                               \
        }                                                                                          \
    } while (0)
