// CPU SwiGLU: out = silu(gate) * up with silu(x) = x * sigmoid(x), and its backward.
#include <omp.h>

#include "cpu/cpu.h"
#include "ops.h"

void ops_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + cpu_expf(-g)) * up[i];
    }
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g))).
void ops_swiglu_backward(float *d_gate, float *d_up, const float *d_out, const float *gate, const float *up,
                         size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = gate[i], u = up[i], dy = d_out[i];
        const float sig = 1.0f / (1.0f + cpu_expf(-g));
        d_gate[i] = dy * u * sig * (1.0f + g * (1.0f - sig));
        d_up[i] = dy * g * sig;
    }
}
