// What the machine can do, to read the other benchmarks against: the FMA throughput of all
// threads (independent FMA chains of the widest vectors the decode GEMM uses, AVX-512 or AVX2), the
// streaming read bandwidth (what a single decode stream is bound by: it reads every weight
// once per token), and the rate of the packed decode GEMM (kernels/cpu/packed_matmul.c) on the
// stories15M output layer at 64 rows with its weight coming from memory.
//
//   bench_machine [--threads N]
//
// Prints one line per figure, after the kernels OpenBLAS runs (src/core/blas_kernels.c), e.g.
//   blas kernels=Zen
//   fma GFLOP/s=208.1 threads=2 width=256
//   read GB/s=22.8 threads=2 bytes=268435456
//   gemm GFLOP/s=150.2 threads=2 rows=64 in=288 out=32000 (weight streamed from memory)
#pragma GCC optimize("fp-contract=fast")  // a * b + c is one FMA (C11 mode leaves it off)
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/blas_kernels.h"
#include "ops.h"

// Weak: NULL when the build has no BLAS or links another one.
extern char *openblas_get_corename(void) __attribute__((weak));

#define FMA_STEPS 50000000L
#define READ_FLOATS ((size_t)64 << 20)  // 256 MB: far past any cache
#define REPEATS 7

typedef float v8 __attribute__((vector_size(32)));

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef float v16 __attribute__((vector_size(64)));

// FLOP/s of 12 independent chains of a * b + c on vectors of type VEC (LANES floats) in every
// thread (more chains than the FMA latency times the FMA units per core; named variables stay
// in registers). Defines NAME, compiled for TARGET.
#define DEFINE_FMA_RATE(NAME, TARGET, VEC, LANES)                                                             \
    __attribute__((target(TARGET))) static double NAME(void) {                                               \
        const double t0 = now();                                                                              \
        float sink = 0.0f;                                                                                    \
        _Pragma("omp parallel reduction(+ : sink)") {                                                         \
            const VEC b = (VEC){0} + 0.9999f, c = (VEC){0} + 1e-4f;                                           \
            VEC a0 = c + 0.5f, a1 = c + 1, a2 = c + 2, a3 = c + 3, a4 = c + 4, a5 = c + 5, a6 = c + 6,        \
                a7 = c + 7, a8 = c + 8, a9 = c + 9, a10 = c + 10, a11 = c + 11;                               \
            for (long s = 0; s < FMA_STEPS; s++) {                                                            \
                a0 = a0 * b + c, a1 = a1 * b + c, a2 = a2 * b + c, a3 = a3 * b + c, a4 = a4 * b + c;          \
                a5 = a5 * b + c, a6 = a6 * b + c, a7 = a7 * b + c, a8 = a8 * b + c, a9 = a9 * b + c;          \
                a10 = a10 * b + c, a11 = a11 * b + c;                                                         \
                /* Opaque to the optimiser: every chain is computed, every step. */                           \
                __asm__ volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5), "+v"(a6),  \
                                 "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));                         \
            }                                                                                                 \
            const VEC all = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;                      \
            sink += all[0];                                                                                   \
        }                                                                                                     \
        const double dt = now() - t0;                                                                         \
        if (sink == 12345.0f) puts(""); /* uses the result */                                                 \
        return (double)omp_get_max_threads() * FMA_STEPS * 12 * 2.0 * (LANES) / dt;                           \
    }

DEFINE_FMA_RATE(fma_rate_avx2, "avx2,fma", v8, 8)
DEFINE_FMA_RATE(fma_rate_avx512, "avx512f,fma", v16, 16)

// Bytes/s of the best of REPEATS parallel sums over READ_FLOATS floats.
static double read_rate(void) {
    float *a = malloc(READ_FLOATS * sizeof(float));
    if (!a) {
        fprintf(stderr, "error: out of memory for the %zu MB read test\n", READ_FLOATS * 4 >> 20);
        exit(2);
    }
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < READ_FLOATS; i++) a[i] = (float)(i & 1023);
    double best = 1e30, sink = 0.0;
    for (int r = 0; r < REPEATS; r++) {
        const double t0 = now();
        float s = 0.0f;
#pragma omp parallel for schedule(static) reduction(+ : s)
        for (size_t i = 0; i < READ_FLOATS; i += 8) s += a[i] + a[i + 7];  // every cache line, once
        const double dt = now() - t0;
        best = dt < best ? dt : best;
        sink += s;
    }
    free(a);
    if (sink == 12345.0) puts("");
    return READ_FLOATS * sizeof(float) / best;
}

// FLOP/s of the best of REPEATS 64-row products with a registered (packed) 32000 x 288
// weight; a 256 MB sweep between calls evicts the weight, as the rest of a model's weights
// do in a decode step.
static double gemm_rate(int rows, int in, int out) {
    const size_t nw = (size_t)out * in, nx = (size_t)rows * in;
    float *w = ops_alloc(nw * sizeof(float)), *x = ops_alloc(nx * sizeof(float));
    float *y = ops_alloc((size_t)rows * out * sizeof(float));
    float *host = malloc(nw * sizeof(float)), *evict = malloc(READ_FLOATS * sizeof(float));
    if (!host || !evict) {
        fprintf(stderr, "error: out of memory for the GEMM test\n");
        exit(2);
    }
    for (size_t i = 0; i < nw; i++) host[i] = (float)(i % 7) * 0.01f;
    ops_copy_to_device(w, host, nw * sizeof(float));
    for (size_t i = 0; i < nx; i++) host[i] = (float)(i % 5) * 0.01f;
    ops_copy_to_device(x, host, nx * sizeof(float));
    free(host);
    ops_params_updated(w, (size_t)out * in);
    ops_matmul_forward(y, x, w, NULL, rows, in, out, 0);  // packs the weight
    double best = 1e30;
    for (int r = 0; r < REPEATS; r++) {
        memset(evict, r, READ_FLOATS * sizeof(float));
        const double t0 = now();
        ops_matmul_forward(y, x, w, NULL, rows, in, out, 0);
        const double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    free(evict);
    ops_free(w), ops_free(x), ops_free(y);
    return 2.0 * rows * in * out / best;
}

int main(int argc, char **argv) {
    blas_use_processor_kernels(argv);  // as asyncrl does: first, it may run the program again
    int threads = 2;
    for (int i = 1; i < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[i + 1]);
        else {
            fprintf(stderr, "usage: bench_machine [--threads N]\n");
            return 2;
        }
    }
    ops_init(threads);
    printf("blas kernels=%s\n", openblas_get_corename ? openblas_get_corename() : "none (not OpenBLAS)");
    // The packed decode GEMM uses AVX-512 where the processor has it (and the test allows it).
    __builtin_cpu_init();
    const char *no_avx512 = getenv("ASYNCRL_CPU_NO_AVX512");
    const int avx512 = __builtin_cpu_supports("avx512f") && !(no_avx512 && no_avx512[0] == '1');
    printf("fma GFLOP/s=%.1f threads=%d width=%d\n", (avx512 ? fma_rate_avx512() : fma_rate_avx2()) * 1e-9,
           ops_num_threads(), avx512 ? 512 : 256);
    printf("read GB/s=%.1f threads=%d bytes=%zu\n", read_rate() * 1e-9, ops_num_threads(),
           READ_FLOATS * sizeof(float));
    printf("gemm GFLOP/s=%.1f threads=%d rows=64 in=288 out=32000 (weight streamed from memory)\n",
           gemm_rate(64, 288, 32000) * 1e-9, ops_num_threads());
    return 0;
}
