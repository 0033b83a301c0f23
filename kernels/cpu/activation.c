// CPU SwiGLU: out = silu(gate) * up with silu(x) = x * sigmoid(x), and its backward. Chunk
// loops are compiled twice (baseline and AVX2+FMA, see cpu.h).

#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#include <omp.h>

#include "cpu/cpu.h"
#include "ops.h"

static CPU_INLINE void forward_chunk(float *restrict out, const float *restrict gate, const float *restrict up,
                                     size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + cpu_expf(-g)) * up[i];
    }
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g))). d_gate / d_up may alias gate / up.
static CPU_INLINE void backward_chunk(float *d_gate, float *d_up, const float *d_out, const float *gate,
                                      const float *up, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i], u = up[i], dy = d_out[i];
        const float sig = 1.0f / (1.0f + cpu_expf(-g));
        d_gate[i] = dy * u * sig * (1.0f + g * (1.0f - sig));
        d_up[i] = dy * g * sig;
    }
}

CPU_AVX2 static void forward_avx2(float *out, const float *gate, const float *up, size_t n) {
    forward_chunk(out, gate, up, n);
}
static void forward_base(float *out, const float *gate, const float *up, size_t n) { forward_chunk(out, gate, up, n); }
CPU_AVX2 static void backward_avx2(float *dg, float *du, const float *dy, const float *g, const float *u, size_t n) {
    backward_chunk(dg, du, dy, g, u, n);
}
static void backward_base(float *dg, float *du, const float *dy, const float *g, const float *u, size_t n) {
    backward_chunk(dg, du, dy, g, u, n);
}

void ops_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    const int avx2 = cpu_has_avx2();
#pragma omp parallel if (cpu_parallel(8.0 * n))
    {
        size_t b, e;
        cpu_split(n, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        if (avx2) forward_avx2(out + b, gate + b, up + b, e - b);
        else forward_base(out + b, gate + b, up + b, e - b);
    }
}

void ops_swiglu_backward(float *d_gate, float *d_up, const float *d_out, const float *gate, const float *up,
                         size_t n) {
    const int avx2 = cpu_has_avx2();
#pragma omp parallel if (cpu_parallel(8.0 * n))
    {
        size_t b, e;
        cpu_split(n, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        if (avx2) backward_avx2(d_gate + b, d_up + b, d_out + b, gate + b, up + b, e - b);
        else backward_base(d_gate + b, d_up + b, d_out + b, gate + b, up + b, e - b);
    }
}
