// CPU backend: lifecycle (threads) and "device" memory, which on CPU is 64-byte aligned host
// memory. Also the single-threaded GEMM wrapper every kernel uses (cpu.h).
//
// Threads: one OpenMP pool does all the parallel work. BLAS is told to run ONE thread and the
// kernels split their GEMMs among the OpenMP threads themselves. Letting OpenBLAS (pthread
// build) keep its own pool next to OpenMP's made the two pools spin against each other on
// the same cores (measured: a 2048x64x64 GEMM split over 2 OpenMP threads ran at 12 GFLOP/s
// while OpenBLAS's idle pool spun, 150 GFLOP/s once it slept); splitting by hand is as fast
// as OpenBLAS's own threading for the shapes a transformer uses.
//
// Denormals: every thread flushes results below FLT_MIN to zero and reads such inputs as zero
// (MXCSR FTZ + DAZ, as oneDNN and TensorFlow do). On Intel cores an instruction that makes or
// reads a denormal takes a microcode assist of about a hundred cycles, and vectorised loops
// make them where no result needs one: the SwiGLU loop divides every lane by 1 + e^88 for the
// lanes its clamp would take, and 64 rows of it ran 11x slower on Emerald Rapids (180 -> 16 us).
// Values that small carry nothing a model uses.
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

#ifndef ASYNCRL_NO_BLAS
#include <cblas.h>
#endif
#if defined(__x86_64__)
#include <xmmintrin.h>  // _mm_getcsr, _mm_setcsr
#endif

int cpu_has_avx2(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    const char *baseline = getenv("ASYNCRL_CPU_BASELINE");  // tests run the baseline build too
    return cached && !(baseline && baseline[0] == '1');
#else
    return 0;
#endif
}

int cpu_has_avx512(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
    }
    const char *no_avx512 = getenv("ASYNCRL_CPU_NO_AVX512");  // tests run the AVX2 build too
    return cached && cpu_has_avx2() && !(no_avx512 && no_avx512[0] == '1');
#else
    return 0;
#endif
}

// FTZ and DAZ on the calling thread (threads it starts later inherit them).
static void flush_denormals(void) {
#if defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8000 | 0x0040);  // FTZ (bit 15), DAZ (bit 6)
#endif
}

void ops_init(int threads) {
    cpu_has_avx2();
    cpu_has_avx512();
    if (threads > 0) omp_set_num_threads(threads);
    omp_set_max_active_levels(1);  // an op inside ops_run_slices stays on its slice's thread
    flush_denormals();
#pragma omp parallel
    flush_denormals();  // the OpenMP pool, if it already runs
#ifndef ASYNCRL_NO_BLAS
    openblas_set_num_threads(1);
#endif
}

void ops_finalize(void) {}

const char *ops_backend_name(void) { return "cpu"; }

int ops_num_threads(void) { return omp_get_max_threads(); }

void ops_synchronize(void) {}

// Every slice reads all of the layers' weights: that pays while they stay in the L3, where a
// core reads them faster than activations move between cores. From memory, each thread would
// stream them again (a 110M-parameter shape, 440 MB, on the 260 MB L3 of the Emerald Rapids VM:
// 620-800 tok/s at 64 sequences with slices, 710-970 without). So the largest registered
// parameter buffer must fit in the L3 (sysconf; unknown: no slices).
// ASYNCRL_CPU_SLICE_MAX_BYTES replaces the L3 size (the tests set it).
static size_t slice_max_weight_bytes(void) {
    const char *env = getenv("ASYNCRL_CPU_SLICE_MAX_BYTES");
    if (env && *env) return (size_t)strtoull(env, NULL, 10);
    return cpu_l3_bytes();
}

size_t cpu_l3_bytes(void) {
    const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);  // 0 or -1 when unknown
    return l3 > 0 ? (size_t)l3 : 0;
}

int ops_batch_slices(int n_rows) {
    const int threads = omp_get_max_threads();
    if (threads < 2 || n_rows < threads * OPS_MIN_SLICE_ROWS) return 1;
    return cpu_packed_largest_buffer() <= slice_max_weight_bytes() ? threads : 1;
}

// One slice per thread; the parallel regions of the ops inside are nested, hence inactive
// (ops_init allows one active level): each runs on its slice's thread.
void ops_run_slices(int n, void (*fn)(void *ctx, int slice), void *ctx) {
#pragma omp parallel for schedule(static, 1) num_threads(n) if (n > 1)
    for (int i = 0; i < n; i++) fn(ctx, i);
}

void ops_params_updated(const float *params, size_t n) { cpu_packed_params_updated(params, n); }

void *ops_alloc(size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0) rounded = 64;
    CHECK(rounded >= bytes, "the requested size overflows", "ops_alloc(%zu bytes)", bytes);
    void *p = aligned_alloc(64, rounded);
    CHECK(p != NULL, "lower what the job holds in memory: the model, trainer.seq_len / micro-batch tokens, or "
                     "the KV cache (inference.kv_blocks, max_seqs)",
          "out of memory allocating %zu bytes (%.1f MiB)", bytes, bytes / 1048576.0);
    memset(p, 0, rounded);
    return p;
}

size_t ops_device_memory(void) {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

void ops_free(void *ptr) {
    if (!ptr) return;
    cpu_packed_forget(ptr);
    free(ptr);
}

void ops_copy_to_device(void *dst, const void *src_host, size_t bytes) {
    if (bytes) memcpy(dst, src_host, bytes);
    cpu_note_write(dst, bytes);
}

void ops_copy_to_host(void *dst_host, const void *src, size_t bytes) {
    if (bytes) memcpy(dst_host, src, bytes);
}

void ops_copy(void *dst, const void *src, size_t bytes) {
    if (bytes && dst != src) memmove(dst, src, bytes);
    cpu_note_write(dst, bytes);
}

void ops_zero(void *ptr, size_t bytes) {
    if (bytes) memset(ptr, 0, bytes);
    cpu_note_write(ptr, bytes);
}

#ifndef ASYNCRL_NO_BLAS
void cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
               int ldb, float beta, float *c, int ldc) {
    if (m <= 0 || n <= 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n, k,
                alpha, a, lda, b, ldb, beta, c, ldc);
}

void cpu_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y) {
    if (m <= 0) return;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
}
#else
void cpu_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y) {
    cpu_sgemm(0, 1, 1, m, n, alpha, x, n, a, lda, beta, y, m);
}

// Plain loops for builds without BLAS (correct, slow).
void cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
               int ldb, float beta, float *c, int ldc) {
    for (int i = 0; i < m; i++) {
        for (int j = 0; j < n; j++) {
            float sum = 0.0f;
            for (int p = 0; p < k; p++) {
                float x = trans_a ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                float y = trans_b ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                sum += x * y;
            }
            float *out = &c[(size_t)i * ldc + j];
            *out = alpha * sum + (beta == 0.0f ? 0.0f : beta * *out);
        }
    }
}
#endif
