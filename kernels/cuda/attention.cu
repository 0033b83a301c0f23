// CUDA causal attention over packed rows with grouped-query attention, flash-style: no
// (T x T) matrix is ever stored. Token i attends to rows i - positions[i] .. i (its own
// sample, causally); query head h reads key/value head h / (H / KVH); scores are scaled by
// 1/sqrt(hd). Head sizes up to ATT_MAX_HD are supported.
//
// Forward: one warp per (query row, head), attend_row (attention_row.cuh, shared with the
// paged attention of inference) over the rows i - positions[i] .. i of the row's sample.
//
// Backward (probabilities recomputed from lse, P_ij = exp(s_ij - lse_i)):
//   D_i   = sum_d dO_i[d] O_i[d]
//   dS_ij = P_ij (dO_i . v_j - D_i)
//   dq_i  = scale * sum_j dS_ij k_j                  (kernel 1: one warp per (row, head))
//   dk_j  = scale * sum_{i, h in group} dS_ij q_i    (kernel 2: one warp per (key row, kv head),
//   dv_j  = sum_{i, h in group} P_ij dO_i             walking the later rows of its sample)
// Every output element is written by exactly one warp, in a fixed order: no atomics, the
// results are deterministic.
#include <math.h>

#include "cuda/attention_row.cuh"

// Float offset of key t of a sample that starts at row `first`, key/value head g.
struct PackedKeyOffset {
    int first;
    size_t kv_stride, head_offset;
    __device__ size_t operator()(int t) const { return (size_t)(first + t) * kv_stride + head_offset; }
};

__global__ void __launch_bounds__(ATT_THREADS)
    attention_forward_kernel(float *out, float *lse, const float *q, const float *k, const float *v,
                             const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim, float scale) {
    __shared__ float q_shared[ATT_WARPS][ATT_MAX_HD];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t item = (size_t)blockIdx.x * ATT_WARPS + warp;
    if (item >= (size_t)n * n_heads) return;  // the whole warp leaves together
    const int i = (int)(item / n_heads), h = (int)(item % n_heads);
    const int g = h / (n_heads / n_kv_heads);
    const int first = max(0, i - positions[i]);
    const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;
    const size_t at = (size_t)i * q_stride + (size_t)h * head_dim;
    const PackedKeyOffset offset = {first, kv_stride, (size_t)g * head_dim};
    const float row_lse = attend_row(out + at, q + at, k, v, i - first + 1, offset, head_dim, scale, q_shared[warp]);
    if (lse && lane == 0) lse[(size_t)i * n_heads + h] = row_lse;
}

// Kernel 1 of the backward: d_q (N, H, hd) = and D (N, H) = rowsum(dO * O).
__global__ void __launch_bounds__(ATT_THREADS)
    attention_backward_dq_kernel(float *d_q, float *D_rows, const float *d_out, const float *out, const float *lse,
                                 const float *q, const float *k, const float *v, const int32_t *positions, int n,
                                 int n_heads, int n_kv_heads, int head_dim, float scale) {
    __shared__ float q_shared[ATT_WARPS][ATT_MAX_HD];
    __shared__ float do_shared[ATT_WARPS][ATT_MAX_HD];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t item = (size_t)blockIdx.x * ATT_WARPS + warp;
    if (item >= (size_t)n * n_heads) return;
    const int i = (int)(item / n_heads), h = (int)(item % n_heads);
    const int g = h / (n_heads / n_kv_heads);
    const int first = max(0, i - positions[i]);
    const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;
    const size_t at = (size_t)i * q_stride + (size_t)h * head_dim;
    float *qs = q_shared[warp], *dos = do_shared[warp];
    float D = 0.0f;
    for (int d = lane; d < head_dim; d += 32) {
        qs[d] = q[at + d] * scale;
        dos[d] = d_out[at + d];
        D += d_out[at + d] * out[at + d];
    }
    D = warp_sum(D);
    __syncwarp();
    const float L = lse[(size_t)i * n_heads + h];
    const float *kg = k + (size_t)g * head_dim, *vg = v + (size_t)g * head_dim;

    float acc[ATT_PER_LANE];
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) acc[t] = 0.0f;
    for (int base = first; base <= i; base += 32) {
        const int j = base + lane;
        float ds = 0.0f;
        if (j <= i) {
            const float *kj = kg + (size_t)j * kv_stride, *vj = vg + (size_t)j * kv_stride;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < head_dim; d++) {
                s += qs[d] * kj[d];
                dp += dos[d] * vj[d];
            }
            ds = expf(s - L) * (dp - D);
        }
        const int count = min(32, i - base + 1);
        for (int c = 0; c < count; c++) {
            const float dsc = __shfl_sync(FULL_MASK, ds, c);
            const float *kc = kg + (size_t)(base + c) * kv_stride;
#pragma unroll
            for (int t = 0; t < ATT_PER_LANE; t++) {
                const int d = lane + 32 * t;
                if (d < head_dim) acc[t] += dsc * kc[d];
            }
        }
    }
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) {
        const int d = lane + 32 * t;
        if (d < head_dim) d_q[at + d] = acc[t] * scale;
    }
    if (lane == 0) D_rows[(size_t)i * n_heads + h] = D;
}

// Kernel 2 of the backward: d_k, d_v (N, KVH, hd) =, one warp per (key row j, kv head g),
// summing over the query heads of the group and the rows i >= j of j's sample.
__global__ void __launch_bounds__(ATT_THREADS)
    attention_backward_dkv_kernel(float *d_k, float *d_v, const float *D_rows, const float *d_out, const float *lse,
                                  const float *q, const float *k, const float *v, const int32_t *positions, int n,
                                  int n_heads, int n_kv_heads, int head_dim, float scale) {
    __shared__ float k_shared[ATT_WARPS][ATT_MAX_HD];
    __shared__ float v_shared[ATT_WARPS][ATT_MAX_HD];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t item = (size_t)blockIdx.x * ATT_WARPS + warp;
    if (item >= (size_t)n * n_kv_heads) return;
    const int j = (int)(item / n_kv_heads), g = (int)(item % n_kv_heads);
    const int group = n_heads / n_kv_heads;
    const int start = j - positions[j];  // first row of j's sample
    const size_t q_stride = (size_t)n_heads * head_dim, kv_stride = (size_t)n_kv_heads * head_dim;
    const size_t at = (size_t)j * kv_stride + (size_t)g * head_dim;
    float *ks = k_shared[warp], *vs = v_shared[warp];
    for (int d = lane; d < head_dim; d += 32) {
        ks[d] = k[at + d] * scale;
        vs[d] = v[at + d];
    }
    __syncwarp();

    float acc_k[ATT_PER_LANE], acc_v[ATT_PER_LANE];
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) acc_k[t] = acc_v[t] = 0.0f;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *qh = q + (size_t)h * head_dim, *doh = d_out + (size_t)h * head_dim;
        for (int base = j; base < n; base += 32) {
            const int i = base + lane;
            // The rows of j's sample from j on are a prefix of this chunk's lanes.
            const bool valid = i < n && i - positions[i] == start;
            const unsigned mask = __ballot_sync(FULL_MASK, valid);
            if (mask == 0) break;
            float p = 0.0f, ds = 0.0f;
            if (valid) {
                const float *qi = qh + (size_t)i * q_stride, *doi = doh + (size_t)i * q_stride;
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < head_dim; d++) {
                    s += qi[d] * ks[d];
                    dp += doi[d] * vs[d];
                }
                const size_t row_head = (size_t)i * n_heads + h;
                p = expf(s - lse[row_head]);
                ds = p * (dp - D_rows[row_head]);
            }
            const int count = __popc(mask);
            for (int c = 0; c < count; c++) {
                const float pc = __shfl_sync(FULL_MASK, p, c), dsc = __shfl_sync(FULL_MASK, ds, c);
                const float *qc = qh + (size_t)(base + c) * q_stride, *doc = doh + (size_t)(base + c) * q_stride;
#pragma unroll
                for (int t = 0; t < ATT_PER_LANE; t++) {
                    const int d = lane + 32 * t;
                    if (d < head_dim) {
                        acc_k[t] += dsc * qc[d];
                        acc_v[t] += pc * doc[d];
                    }
                }
            }
            if (count < 32) break;  // the sample ended inside this chunk
        }
    }
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) {
        const int d = lane + 32 * t;
        if (d < head_dim) {
            d_k[at + d] = acc_k[t] * scale;
            d_v[at + d] = acc_v[t];
        }
    }
}

void ops_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim) {
    if (n <= 0) return;
    attention_check_shape(n_heads, n_kv_heads, head_dim);
    const float scale = 1.0f / sqrtf((float)head_dim);
    attention_forward_kernel<<<attention_warp_blocks((size_t)n * n_heads), ATT_THREADS, 0, cuda_stream()>>>(
        out, lse, q, k, v, positions, n, n_heads, n_kv_heads, head_dim, scale);
    CUDA_LAUNCH_CHECK("attention_forward_kernel");
}

void ops_attention_backward(float *d_q, float *d_k, float *d_v, const float *d_out, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim) {
    if (n <= 0) return;
    attention_check_shape(n_heads, n_kv_heads, head_dim);
    const float scale = 1.0f / sqrtf((float)head_dim);
    float *D_rows = (float *)cuda_scratch(SCRATCH_ATTENTION, (size_t)n * n_heads * sizeof(float));  // (N, H)
    attention_backward_dq_kernel<<<attention_warp_blocks((size_t)n * n_heads), ATT_THREADS, 0, cuda_stream()>>>(
        d_q, D_rows, d_out, out, lse, q, k, v, positions, n, n_heads, n_kv_heads, head_dim, scale);
    CUDA_LAUNCH_CHECK("attention_backward_dq_kernel");
    attention_backward_dkv_kernel<<<attention_warp_blocks((size_t)n * n_kv_heads), ATT_THREADS, 0, cuda_stream()>>>(
        d_k, d_v, D_rows, d_out, lse, q, k, v, positions, n, n_heads, n_kv_heads, head_dim, scale);
    CUDA_LAUNCH_CHECK("attention_backward_dkv_kernel");
}
