// OpenBLAS builds with DYNAMIC_ARCH (Debian's) pick their kernels for the processor when the
// library loads. A release older than the processor does not know its model and falls back to
// the SSE3 kernels it calls "Prescott" (seen: Debian 12's OpenBLAS 0.3.21 on Intel Emerald
// Rapids, where the training GEMMs then run 3.8x slower than with its AVX-512 "SkylakeX"
// kernels; benchmarks/RESULTS.md). The choice is only made at load time, from the
// environment variable OPENBLAS_CORETYPE, so a process that finds the fallback on a processor
// with AVX-512 or AVX2 sets the variable and executes itself again before it does anything
// else. A value the user set is always kept.
#include "core/blas_kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// Weak: absent (NULL) when the build has no BLAS or links another one.
extern char *openblas_get_corename(void) __attribute__((weak));

#define CORETYPE_VAR "OPENBLAS_CORETYPE"

const char *blas_better_core(const char *chosen, int has_avx512, int has_avx2) {
    if (!chosen || strcmp(chosen, "Prescott") != 0) return NULL;  // a real choice: keep it
    if (has_avx512) return "SkylakeX";  // AVX-512 F, CD, BW, DQ, VL kernels
    if (has_avx2) return "Haswell";     // AVX2 + FMA kernels
    return NULL;
}

// The processor's features as OpenBLAS's kernels need them (0, 0 off x86-64).
static void processor_features(int *has_avx512, int *has_avx2) {
    *has_avx512 = *has_avx2 = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    *has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    *has_avx512 = *has_avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512cd") &&
                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512vl");
#endif
}

void blas_use_processor_kernels(char **argv) {
    if (!openblas_get_corename || getenv(CORETYPE_VAR)) return;  // not OpenBLAS, or the user chose
    int has_avx512, has_avx2;
    processor_features(&has_avx512, &has_avx2);
    const char *core = blas_better_core(openblas_get_corename(), has_avx512, has_avx2);
    if (!core) return;
    // Set even when the exec fails, so that a child process (a sandbox) does not try again.
    if (setenv(CORETYPE_VAR, core, 1) != 0) return;
    execv("/proc/self/exe", argv);
    fprintf(stderr,
            "warning: OpenBLAS chose its SSE3 kernels on this processor and restarting with %s=%s failed "
            "(/proc/self/exe); GEMMs run slower. Set %s=%s in the environment of the job.\n",
            CORETYPE_VAR, core, CORETYPE_VAR, core);
}
