// Makes OpenBLAS use the kernels this processor can run fastest (see blas_kernels.c).
#pragma once

// The OPENBLAS_CORETYPE to ask for when OpenBLAS chose `chosen` (its name for the kernels it
// loaded, e.g. "Prescott") on a processor with the given features; NULL to keep its choice.
const char *blas_better_core(const char *chosen, int has_avx512, int has_avx2);

// Call first in main(), before MPI_Init and before any thread starts. When OpenBLAS fell back
// to its SSE3 kernels on a processor it does not know, and the user did not set
// OPENBLAS_CORETYPE, sets it and executes this program again with the same arguments (once);
// otherwise returns. If the exec fails it says so on stderr and returns (slower, still right).
void blas_use_processor_kernels(char **argv);
