// CUDA AdamW on fp32 master weights, the same arithmetic as the CPU backend and
// torch.optim.AdamW: decoupled weight decay, moments by lerp / mul-add, bias corrections
// computed on the host in double and used in float. One thread per element. When the
// parameters lie in the registered buffer, its bf16 shadow is marked stale and refreshed
// before the next GEMM reads it.
#include <math.h>

#include "cuda/cuda_common.h"

__global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, size_t n, float step_size,
                             float bc2_sqrt, float decay, float beta2, float one_minus_b1, float one_minus_b2,
                             float eps, float grad_scale) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = grads[i] * grad_scale;
        const float p = params[i] * decay;
        const float mi = m[i] + one_minus_b1 * (g - m[i]);
        const float vi = v[i] * beta2 + one_minus_b2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}

void ops_adamw(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, long step) {
    if (n == 0) return;
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const float step_size = (float)((double)lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float decay = 1.0f - lr * weight_decay;
    cuda_note_write(params, n * sizeof(float));
    adamw_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream()>>>(params, grads, m, v, n, step_size, bc2_sqrt, decay,
                                                                   beta2, 1.0f - beta1, 1.0f - beta2, eps, grad_scale);
    CUDA_LAUNCH_CHECK("adamw_kernel");
}
