// CUDA log-probabilities and entropy of softmax(logits / T), and their gradient with respect
// to the logits. One block per row; the (N, V) probability matrix is never stored.
//
// Forward, one pass over the row: each thread keeps an online triple over its share of the
// vocabulary, m = max z, s = sum e^(z - m), a = sum e^(z - m) (z - m), rebased when m grows
// (a' = e^(m - m') (a + s (m - m')), s' = e^(m - m') s); the block merges the triples with a
// fixed tree. Then lse = m + log s, entropy = log s - a / s, logp = z_t - lse.
// Backward: one pass over the row, recomputing p from the saved lse; the row may be written in
// place over the logits (each element is read, then written, by the same thread).
#include <math.h>

#include "cuda/cuda_common.h"

#define LOSS_THREADS 256

struct SoftmaxStats {
    float m, s, a;
};

// Rebases a triple to the max M >= t.m. A triple with s == 0 (nothing seen) stays empty.
__device__ __forceinline__ SoftmaxStats rebase(SoftmaxStats t, float M) {
    if (t.s == 0.0f) return SoftmaxStats{M, 0.0f, 0.0f};
    const float e = expf(t.m - M);
    return SoftmaxStats{M, t.s * e, e * (t.a + t.s * (t.m - M))};
}

__device__ __forceinline__ SoftmaxStats merge(SoftmaxStats x, SoftmaxStats y) {
    const float M = fmaxf(x.m, y.m);
    if (M == -INFINITY) return SoftmaxStats{-INFINITY, 0.0f, 0.0f};
    x = rebase(x, M);
    y = rebase(y, M);
    return SoftmaxStats{M, x.s + y.s, x.a + y.a};
}

__global__ void __launch_bounds__(LOSS_THREADS)
    logprob_forward_kernel(float *logp, float *entropy, float *lse, const float *logits, const int32_t *targets,
                           int vocab, float inv_t) {
    __shared__ SoftmaxStats shared[LOSS_THREADS / 32];
    const size_t row = blockIdx.x;
    const float *x = logits + row * vocab;
    SoftmaxStats t = {-INFINITY, 0.0f, 0.0f};
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float z = x[j] * inv_t;
        if (z > t.m) t = rebase(t, z);
        const float e = expf(z - t.m);
        if (e > 0.0f) {  // skips -inf logits (masked tokens), whose term is 0
            t.s += e;
            t.a += e * (z - t.m);
        }
    }
    // Warp tree, then the warps' results in order by warp 0.
    for (int offset = 16; offset > 0; offset >>= 1) {
        SoftmaxStats o;
        o.m = __shfl_xor_sync(FULL_MASK, t.m, offset);
        o.s = __shfl_xor_sync(FULL_MASK, t.s, offset);
        o.a = __shfl_xor_sync(FULL_MASK, t.a, offset);
        t = merge(t, o);
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) shared[warp] = t;
    __syncthreads();
    if (threadIdx.x != 0) return;
    SoftmaxStats total = shared[0];
    for (int w = 1; w < (int)(blockDim.x / 32); w++) total = merge(total, shared[w]);
    const float log_sum = logf(total.s);
    if (lse) lse[row] = total.m + log_sum;
    if (entropy) entropy[row] = log_sum - total.a / total.s;
    const int target = targets[row];
    logp[row] = target >= 0 ? (x[target] * inv_t - total.m) - log_sum : 0.0f;
}

// d logp_t / d z_j = [j == t] - p_j,   d H / d z_j = -p_j (log p_j + H),   d z / d logits = 1/T.
__global__ void logprob_backward_kernel(float *d_logits, const float *logits, const float *lse,
                                        const float *entropy, const int32_t *targets, const float *d_logp,
                                        const float *d_entropy, int vocab, float inv_t) {
    const size_t row = blockIdx.x;
    const float *z = logits + row * vocab;
    float *dz = d_logits + row * vocab;
    const int target = targets[row];
    const float w = target >= 0 ? d_logp[row] : 0.0f;
    const float de = d_entropy ? d_entropy[row] : 0.0f;
    const float H = de != 0.0f ? entropy[row] : 0.0f;
    const float l = lse[row];
    for (int j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float lp = z[j] * inv_t - l;
        const float p = expf(lp);
        float g = de != 0.0f ? (-w * p - de * p * (lp + H)) * inv_t : -w * inv_t * p;
        if (j == target) g += w * inv_t;
        dz[j] = g;
    }
}

void ops_logprob_forward(float *logp, float *entropy, float *lse, const float *logits, const int32_t *targets, int n,
                         int vocab, float temperature) {
    if (n <= 0) return;
    logprob_forward_kernel<<<n, LOSS_THREADS, 0, cuda_stream()>>>(logp, entropy, lse, logits, targets, vocab,
                                                                  1.0f / temperature);
    CUDA_LAUNCH_CHECK("logprob_forward_kernel");
}

void ops_logprob_backward(float *d_logits, const float *logits, const float *lse, const float *entropy,
                          const int32_t *targets, const float *d_logp, const float *d_entropy, int n, int vocab,
                          float temperature) {
    if (n <= 0) return;
    logprob_backward_kernel<<<n, LOSS_THREADS, 0, cuda_stream()>>>(d_logits, logits, lse, entropy, targets, d_logp,
                                                                   d_entropy, vocab, 1.0f / temperature);
    CUDA_LAUNCH_CHECK("logprob_backward_kernel");
}
