// CUDA SwiGLU: out = silu(gate) * up with silu(x) = x * sigmoid(x), and its backward,
// elementwise with grid-stride loops. Each element is read before it is written, so the
// backward may write d_gate over gate and d_up over up.
#include "cuda/cuda_common.h"

__global__ void swiglu_forward_kernel(float *out, const float *gate, const float *up, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g))).
__global__ void swiglu_backward_kernel(float *d_gate, float *d_up, const float *d_out, const float *gate,
                                       const float *up, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = gate[i], u = up[i], dy = d_out[i];
        const float sig = 1.0f / (1.0f + expf(-g));
        d_gate[i] = dy * u * sig * (1.0f + g * (1.0f - sig));
        d_up[i] = dy * g * sig;
    }
}

void ops_swiglu_forward(float *out, const float *gate, const float *up, size_t n) {
    if (n == 0) return;
    swiglu_forward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream()>>>(out, gate, up, n);
    CUDA_LAUNCH_CHECK("swiglu_forward_kernel");
}

void ops_swiglu_backward(float *d_gate, float *d_up, const float *d_out, const float *gate, const float *up,
                         size_t n) {
    if (n == 0) return;
    swiglu_backward_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream()>>>(d_gate, d_up, d_out, gate, up, n);
    CUDA_LAUNCH_CHECK("swiglu_backward_kernel");
}
