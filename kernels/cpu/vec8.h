// Eight-float vectors and the weighted sum of value rows shared by the CPU attention kernels
// (attention.c for training, paged_attention.c for inference). Everything here is always
// inlined into the kernels' AVX2 and baseline copies (see cpu.h).
#pragma once
#include <stddef.h>
#include <string.h>

#include "cpu/cpu.h"

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

// o (hd) = sum_{j < n} p[j] * V[j] (V rows with stride `stride`), or o += that sum with
// accumulate != 0. NV = hd / 8 is a compile-time constant in the specialised copies
// (accumulators stay in registers); NV = 0 is the plain version for any hd. Every output float
// sums the keys in a fixed order given n.
static CPU_INLINE void weighted_sum_nv(float *restrict o, const float *restrict p, const float *restrict V, int n,
                                      size_t stride, int hd, int accumulate, const int NV) {
    if (NV == 0) {
        if (!accumulate)
            for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float pj = p[j], *vr = V + (size_t)j * stride;
            for (int d = 0; d < hd; d++) o[d] += pj * vr[d];
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
            const float pj = p[j + w], *vr = V + (size_t)(j + w) * stride;
#pragma GCC unroll 8
            for (int u = 0; u < NV; u++) acc[w][u] += pj * load8(vr + 8 * u);
        }
    for (; j < n; j++) {
        const float pj = p[j], *vr = V + (size_t)j * stride;
#pragma GCC unroll 8
        for (int u = 0; u < NV; u++) acc[0][u] += pj * load8(vr + 8 * u);
    }
#pragma GCC unroll 8
    for (int u = 0; u < NV; u++) {
#pragma GCC unroll 8
        for (int w = 1; w < U; w++) acc[0][u] += acc[w][u];
        store8(o + 8 * u, accumulate ? load8(o + 8 * u) + acc[0][u] : acc[0][u]);
    }
}

// weighted_sum_nv for any hd: a multiple of 8 runs as slices of at most 64 floats through the
// specialised copies, anything else through the plain one.
static CPU_INLINE void weighted_sum(float *restrict o, const float *restrict p, const float *restrict V, int n,
                                   size_t stride, int hd, int accumulate) {
    if (hd % 8 != 0) {
        weighted_sum_nv(o, p, V, n, stride, hd, accumulate, 0);
        return;
    }
    for (int d0 = 0; d0 < hd; d0 += 64) {
        const int nv = (hd - d0 < 64 ? hd - d0 : 64) / 8;
#define WS(NV) weighted_sum_nv(o + d0, p, V + d0, n, stride, 8 * (NV), accumulate, NV)
        BY_NV(WS)
#undef WS
    }
}
