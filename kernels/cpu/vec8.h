// Eight-float vectors and the weighted sum of value rows shared by the CPU attention kernels
// (attention.c for training, paged_attention.c for inference; the sampler's reductions use the
// vectors too), and their sixteen-float forms for paged_attention.c's AVX-512 copy. Everything
// here is always inlined into the kernels' copies (see cpu.h).
#pragma once
#include <stddef.h>
#include <string.h>

#include "cpu/cpu.h"

// Heads of at most SMALL_HEAD floats take the attention kernels' small-head paths (attention.c,
// paged_attention.c): values transposed, vectors along the keys, the head's dimensions as
// independent chains (a vector along a head of 8 floats would do one FMA per key in few chains).
#define SMALL_HEAD 16

// Eight floats as one vector (GCC vector extension): one AVX register in the AVX2 build, two
// SSE registers in the baseline build. Loads and stores go through memcpy (unaligned). The
// helpers are always inlined, so GCC's note about the ABI of passing such vectors does not
// apply (the Makefile turns it off: -Wno-psabi; a pragma does not silence it in GCC 12).
typedef float v8f __attribute__((vector_size(32)));

static CPU_INLINE v8f load8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static CPU_INLINE void store8(float *p, v8f v) { memcpy(p, &v, sizeof v); }

// Lane masks (all bits set where a compare of v8f holds) and the choice by mask: GCC's C has
// no vector ?: (only its C++ does).
typedef int32_t v8i __attribute__((vector_size(32)));

// a where m is set, else b.
static CPU_INLINE v8f select8(v8i m, v8f a, v8f b) { return (v8f)((m & (v8i)a) | (~m & (v8i)b)); }

// What a key/value array holds, a constant in each compiled copy: fp32, or IEEE halves read
// with F16C (only the AVX2 and AVX-512 copies of a kernel may use KV_F16C; the instruction is
// written as inline asm because an F16C intrinsic may not even appear in code that the baseline
// copies inline, and GCC 12 does not vectorise half -> float conversions). Its "v" operand is
// any of the copy's vector registers: 16 in the AVX2 copies, 32 in the AVX-512 ones (AVX512-VL).
enum { KV_F32 = 0, KV_F16C = 1 };

// Elements i .. i+7 of p as floats.
static CPU_INLINE v8f load8_kv(const void *p, size_t i, const int kv) {
    if (kv == KV_F16C) {
        v8f r;
#if defined(__x86_64__) && defined(__GNUC__)
        __asm__("vcvtph2ps %1, %0" : "=v"(r) : "m"(*(const char(*)[16])((const char *)p + 2 * i)));
#else
        for (int l = 0; l < 8; l++) r[l] = (float)((const _Float16 *)p)[i + l];  // no F16C: one at a time
#endif
        return r;
    }
    return load8((const float *)p + i);
}

#if defined(__x86_64__) && defined(__GNUC__)
// Sixteen floats as one vector: one register in the AVX-512 copies, the only code that runs
// these helpers (in the other copies they are inlined only into branches that a constant rules
// out). An operation on a v16f does, lane by lane, what the same operation on two v8f does.
typedef float v16f __attribute__((vector_size(64)));

static CPU_INLINE v16f load16(const float *p) {
    v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}

static CPU_INLINE void store16(float *p, v16f v) { memcpy(p, &v, sizeof v); }

// Elements i .. i+15 of p as floats (halves widened with the AVX-512 form of vcvtph2ps).
static CPU_INLINE v16f load16_kv(const void *p, size_t i, const int kv) {
    if (kv == KV_F16C) {
        v16f r;
        __asm__("vcvtph2ps %1, %0" : "=v"(r) : "m"(*(const char(*)[32])((const char *)p + 2 * i)));
        return r;
    }
    return load16((const float *)p + i);
}
#endif

// Element i of p as a float.
static CPU_INLINE float load1_kv(const void *p, size_t i, const int kv) {
    return kv == KV_F16C ? (float)((const _Float16 *)p)[i] : ((const float *)p)[i];
}

// Calls CALL(NV) with NV the constant equal to nv (1..8), so that each gets its own copy.
#define BY_NV(CALL)          \
    switch (nv) {            \
    case 1: CALL(1); break;  \
    case 2: CALL(2); break;  \
    case 3: CALL(3); break;  \
    case 4: CALL(4); break;  \
    case 5: CALL(5); break;  \
    case 6: CALL(6); break;  \
    case 7: CALL(7); break;  \
    default: CALL(8); break; \
    }

// o (hd) = sum_{j < n} p[j] * V[j] (V rows with stride `stride` elements of kind kv), or
// o += that sum with accumulate != 0. NV = hd / 8 is a compile-time constant in the
// specialised copies (accumulators stay in registers); NV = 0 is the plain version for any hd.
// Every output float sums the keys in a fixed order given n.
static CPU_INLINE void weighted_sum_nv(float *restrict o, const float *restrict p, const void *restrict V, int n,
                                      size_t stride, int hd, int accumulate, const int NV, const int kv) {
    if (NV == 0) {
        if (!accumulate)
            for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float pj = p[j];
            for (int d = 0; d < hd; d++) o[d] += pj * load1_kv(V, (size_t)j * stride + d, kv);
        }
        return;
    }
    // U independent accumulator sets over interleaved keys hide the FMA latency when NV is small.
    const int U = NV >= 4 ? 1 : NV >= 2 ? 2 : 4;  // a constant in each specialised copy
    v8f acc[4][8];
#pragma GCC unroll 8
    for (int w = 0; w < U; w++)
#pragma GCC unroll 8
        for (int u = 0; u < NV; u++) acc[w][u] = (v8f){0};
    int j = 0;
    for (; j + U <= n; j += U)
#pragma GCC unroll 8
        for (int w = 0; w < U; w++) {
            const float pj = p[j + w];
            const size_t row = (size_t)(j + w) * stride;
#pragma GCC unroll 8
            for (int u = 0; u < NV; u++) acc[w][u] += pj * load8_kv(V, row + 8 * u, kv);
        }
    for (; j < n; j++) {
        const float pj = p[j];
        const size_t row = (size_t)j * stride;
#pragma GCC unroll 8
        for (int u = 0; u < NV; u++) acc[0][u] += pj * load8_kv(V, row + 8 * u, kv);
    }
#pragma GCC unroll 8
    for (int u = 0; u < NV; u++) {
#pragma GCC unroll 8
        for (int w = 1; w < U; w++) acc[0][u] += acc[w][u];
        store8(o + 8 * u, accumulate ? load8(o + 8 * u) + acc[0][u] : acc[0][u]);
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// weighted_sum_nv with NV16 = hd / 16 vectors of 16 floats (1..8, a constant in each copy) and
// one accumulator set: per output float the same FMAs in the same key order as weighted_sum_nv
// with U = 1, so the two give the same bits wherever weighted_sum would take U = 1 everywhere.
static CPU_INLINE void weighted_sum16_nv(float *restrict o, const float *restrict p, const void *restrict V, int n,
                                         size_t stride, int accumulate, const int NV16, const int kv) {
    v16f acc[8];
#pragma GCC unroll 8
    for (int u = 0; u < NV16; u++) acc[u] = (v16f){0};
    for (int j = 0; j < n; j++) {
        const float pj = p[j];
        const size_t row = (size_t)j * stride;
#pragma GCC unroll 8
        for (int u = 0; u < NV16; u++) acc[u] += pj * load16_kv(V, row + 16 * u, kv);
    }
#pragma GCC unroll 8
    for (int u = 0; u < NV16; u++) store16(o + 16 * u, accumulate ? load16(o + 16 * u) + acc[u] : acc[u]);
}
#endif

// Whether weighted_sum16 gives weighted_sum's bits for heads of hd floats: hd a multiple of 16
// whose slices of 64 floats all have at least 4 vectors of 8 (weighted_sum_nv's U = 1).
static inline int weighted_sum16_matches(int hd) { return hd % 16 == 0 && (hd % 64 == 0 || hd % 64 >= 32); }

// weighted_sum_nv for any hd: a multiple of 8 runs as slices of at most 64 floats through the
// specialised copies, anything else through the plain one.
static CPU_INLINE void weighted_sum(float *restrict o, const float *restrict p, const void *restrict V, int n,
                                   size_t stride, int hd, int accumulate, const int kv) {
    if (hd % 8 != 0) {
        weighted_sum_nv(o, p, V, n, stride, hd, accumulate, 0, kv);
        return;
    }
    const size_t elem = kv == KV_F16C ? 2 : sizeof(float);
    for (int d0 = 0; d0 < hd; d0 += 64) {
        const int nv = (hd - d0 < 64 ? hd - d0 : 64) / 8;
        const void *V0 = (const char *)V + d0 * elem;
#define WS(NV) weighted_sum_nv(o + d0, p, V0, n, stride, 8 * (NV), accumulate, NV, kv)
        BY_NV(WS)
#undef WS
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
// weighted_sum in vectors of 16 floats, for the AVX-512 copies and heads where
// weighted_sum16_matches (slices of at most 128 floats); the same bits as weighted_sum.
static CPU_INLINE void weighted_sum16(float *restrict o, const float *restrict p, const void *restrict V, int n,
                                     size_t stride, int hd, int accumulate, const int kv) {
    const size_t elem = kv == KV_F16C ? 2 : sizeof(float);
    for (int d0 = 0; d0 < hd; d0 += 128) {
        const int nv = (hd - d0 < 128 ? hd - d0 : 128) / 16;
        const void *V0 = (const char *)V + d0 * elem;
#define WS16(NV) weighted_sum16_nv(o + d0, p, V0, n, stride, accumulate, NV, kv)
        BY_NV(WS16)
#undef WS16
    }
}
#endif
