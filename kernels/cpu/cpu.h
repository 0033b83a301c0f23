// Helpers shared by the CPU kernels (not part of the op interface): the single-threaded
// GEMM every kernel calls (OpenBLAS, or a plain loop when the build has no BLAS), how a loop
// of n items is split among the OpenMP threads, a vectorisable exp, and the run-time choice
// between an AVX2+FMA(+F16C) build of a hot loop and the baseline (x86-64 SSE2) build.
//
// Dispatch pattern: the loop body is a `static CPU_INLINE` function; a wrapper marked
// CPU_AVX2 and a plain wrapper both call it, so GCC compiles it twice; the op calls the AVX2
// wrapper when cpu_has_avx2() says so. Kernel files that use cpu_expf start with
//   #pragma GCC optimize("no-trapping-math", "fp-contract=fast")
// so that the clamps vectorise (compares cannot trap here) and a*b+c becomes an FMA in the
// AVX2 build (the project compiles with -std=c11, where contraction is off by default).
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>

// C (M, N) = alpha * op(A) @ op(B) + beta * C, row-major, op(X) = X or X^T. One thread: the
// kernels call it from inside their own OpenMP regions (BLAS is set to one thread).
void cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda, const float *b,
               int ldb, float beta, float *c, int ldc);

// y (m) = alpha * A (m, n) @ x (n) + beta * y, A row-major with leading dimension lda. One
// thread. (OpenBLAS's sgemm packs A on every call, which for a single row costs several times
// the product itself; sgemv streams A once.)
void cpu_sgemv(int m, int n, float alpha, const float *a, int lda, const float *x, float beta, float *y);

// Decode-sized GEMMs against packed weights (packed_matmul.c). A weight lying in a parameter
// buffer registered by ops_params_updated gets a copy packed in panels of 16 output rows,
// repacked after each update of its buffer; cpu_packed_weight returns it (NULL for any other
// pointer) and sets *needs_packing when the copy is stale: the caller must then pack every
// panel (cpu_packed_pack, split among threads) before multiplying.
typedef struct CpuPackedWeight CpuPackedWeight;
void cpu_packed_params_updated(const float *params, size_t n);
void cpu_packed_forget(const void *ptr);  // ptr was freed: forget it if it was a registered buffer
size_t cpu_packed_largest_buffer(void);   // bytes of the largest registered buffer (0: none)
size_t cpu_l3_bytes(void);                // the L3 cache's size as the system reports it (0: unknown)
// [ptr, ptr + bytes) was written by an op (copy, zero, add, scale, AdamW, a collective): packed
// copies of weights in a registered buffer it overlaps are stale (as the CUDA backend's bf16
// shadow, so the two backends keep one contract).
void cpu_note_write(const void *ptr, size_t bytes);
CpuPackedWeight *cpu_packed_weight(const float *weight, int rows, int cols, int *needs_packing);
int cpu_packed_panels(const CpuPackedWeight *pw);
void cpu_packed_pack(CpuPackedWeight *pw, int panel_begin, int panel_end);
// Where the output columns of a product go: columns [begin[s], begin[s + 1]) of row i to
// out[s] + i * (begin[s + 1] - begin[s]), for s < count (begin[0] = 0, begin[count] = O). One
// segment for a plain product; several for weights stacked in memory (a layer's q, k and v
// projections), whose widths are then multiples of 16 (a panel never spans two segments).
#define CPU_MAX_SEGMENTS 4
#define CPU_PACKED_PANEL 16  // output columns per panel of a packed weight
typedef struct {
    int count;
    int begin[CPU_MAX_SEGMENTS + 1];
    float *out[CPU_MAX_SEGMENTS];
} CpuOutput;
// out[:, panels] (N, O) (+)= in (N, I) @ W[panels]^T for the output columns of panels
// [panel_begin, panel_end); one thread.
void cpu_packed_gemm(const CpuOutput *out, const float *in, const CpuPackedWeight *pw, int n, int panel_begin,
                     int panel_end, int accumulate);

#if defined(__x86_64__) && defined(__GNUC__)
#define CPU_AVX2 __attribute__((target("avx2,fma,f16c")))
#define CPU_AVX512 __attribute__((target("avx512f,avx512vl,avx2,fma,f16c,prefer-vector-width=512")))
#else
#define CPU_AVX2
#define CPU_AVX512
#endif
#define CPU_INLINE inline __attribute__((always_inline))

// 1 when the processor has AVX2, FMA and F16C (checked once) and the environment variable
// ASYNCRL_CPU_BASELINE is not "1" (set by the tests to check the baseline build too), else 0.
int cpu_has_avx2(void);
// 1 when cpu_has_avx2() and the processor has AVX-512 F and VL (checked once) and the
// environment variable ASYNCRL_CPU_NO_AVX512 is not "1" (set by the tests to check the AVX2
// build too). The packed decode GEMM, the sampler and both attention kernels have an AVX-512
// build (CPU_AVX512 also makes GCC vectorise loops 16 floats wide; with VL, code in vectors of
// 8 floats gets 32 registers and masks there too).
int cpu_has_avx512(void);

// Work (in floats touched, or multiply-adds) below which an op runs on one thread: forking a
// team costs microseconds, and on a busy machine a descheduled team member stalls the rest
// for a time slice at every barrier (tiny decode-sized ops would pay that many times a step).
#define CPU_PARALLEL_MIN 32768
static inline int cpu_parallel(double work) { return work >= CPU_PARALLEL_MIN; }

// The share [*begin, *end) of n items that thread `thread` of `threads` works on.
static inline void cpu_split(size_t n, int thread, int threads, size_t *begin, size_t *end) {
    *begin = n * (size_t)thread / (size_t)threads;
    *end = n * (size_t)(thread + 1) / (size_t)threads;
}

// The largest of x[0, n), -inf for n = 0 (NaNs are skipped: a compare with NaN is false).
// Rows of 64 or more are kept in 64 lanes (lane l: the elements l mod 64; four independent
// vectors of 16, so the compares do not wait on each other) and folded to 16; shorter rows
// start at 16 lanes. The 16 lanes are then halved down to one. Every fold has a constant width,
// so it vectorises too (a loop over a variable width ran as scalar loads and stores, which
// cost more than the compares for the rows of a few dozen keys that decode attention takes).
// A max is exact in any order.
#define CPU_MAX_FOLD(lanes, w) \
    for (int l = 0; l < (w); l++) lanes[l] = lanes[l + (w)] > lanes[l] ? lanes[l + (w)] : lanes[l]
static CPU_INLINE float cpu_max(const float *x, int n) {
    float lanes[64];
    for (int l = 0; l < 16; l++) lanes[l] = -INFINITY;
    int j = 0;
    if (n >= 64) {
        for (int l = 16; l < 64; l++) lanes[l] = -INFINITY;
        for (; j + 64 <= n; j += 64)
            for (int l = 0; l < 64; l++) lanes[l] = x[j + l] > lanes[l] ? x[j + l] : lanes[l];
        CPU_MAX_FOLD(lanes, 32);
        CPU_MAX_FOLD(lanes, 16);
    }
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++) lanes[l] = x[j + l] > lanes[l] ? x[j + l] : lanes[l];
    for (int l = 0; j < n; j++, l++) lanes[l] = x[j] > lanes[l] ? x[j] : lanes[l];
    CPU_MAX_FOLD(lanes, 8);
    CPU_MAX_FOLD(lanes, 4);
    CPU_MAX_FOLD(lanes, 2);
    CPU_MAX_FOLD(lanes, 1);
    return lanes[0];
}

// exp(x) for float, accurate to about 2 ulp, written so that loops calling it vectorise:
// x = n ln2 + r with |r| <= ln2/2, exp(r) by a degree-7 Taylor polynomial, 2^n from bits.
// Inputs below -87.3 give 0 (no denormals), above 88 give exp(88) (callers only pass x <= 0).
// The steps shared with the kernels' vector copies (paged_attention.c's exp8), for x, n, r
// floats or GCC vectors of floats: n = x / ln2 rounded to an integer (adding 1.5 * 2^23 rounds),
// r = x - n ln2 (ln2 split in a high part exact in float and the rest), and exp(r) by the
// degree-7 Taylor polynomial in Horner form.
#define CPU_EXP_REDUCE(x, n, r)                                              \
    do {                                                                     \
        n = ((x) * 1.44269504088896341f + 12582912.0f) - 12582912.0f;        \
        r = ((x) - n * 0.693145751953125f) - n * 1.42860682030941723212e-6f; \
    } while (0)
#define CPU_EXP_TAYLOR7(r)                                                                                    \
    ((((((((r) * (1.0f / 5040.0f) + 1.0f / 720.0f) * (r) + 1.0f / 120.0f) * (r) + 1.0f / 24.0f) * (r) +       \
        1.0f / 6.0f) * (r) + 0.5f) * (r) + 1.0f) * (r) + 1.0f)
// exp(x) for x already clamped to [-87.3, 88] (cpu_expf's clamps, or the sampler's cheaper
// one where x <= 0 is never NaN).
static CPU_INLINE float cpu_exp_clamped(float x) {
    float n, r;
    CPU_EXP_REDUCE(x, n, r);
    const float p = CPU_EXP_TAYLOR7(r);
    union {
        float f;
        int32_t i;
    } scale;
    scale.i = ((int32_t)n + 127) << 23;
    return p * scale.f;
}
static inline float cpu_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    return cpu_exp_clamped(x);
}
