// The per-(query row, head) attention of the CUDA backend, shared by the training attention
// over packed rows (attention.cu) and the paged-KV-cache attention of inference
// (paged_attention.cu): both call attend_row, so a query row attending to the same keys and
// values gives bitwise the same output and lse in training and in decode.
//
// One warp handles one (row, head). It walks the row's keys 32 at a time: each lane scores one
// key (a dot product over hd with the scaled query, kept in shared memory), the warp keeps an
// online softmax (running max m and sum l, rescaling the output accumulator when m grows), and
// each lane accumulates the output dimensions d = lane + 32 t. Keys are numbered t = 0 ..
// n_keys-1; `offset(t)` gives the element offset of key t's row (same for keys and values).
// Keys and values are floats, or halves (an fp16 KV cache) widened as they are read: the
// arithmetic is the same fp32 arithmetic on the stored values.
#pragma once
#include <cuda_fp16.h>
#include <math.h>

#include "cuda/cuda_common.h"

#define ATT_MAX_HD 256
#define ATT_PER_LANE (ATT_MAX_HD / 32)
#define ATT_WARPS 4
#define ATT_THREADS (ATT_WARPS * 32)

// A stored key or value as a float, and a float as stored (fp16: round to nearest even).
__device__ __forceinline__ float kv_load(float x) { return x; }
__device__ __forceinline__ float kv_load(__half x) { return __half2float(x); }
template <typename T> __device__ __forceinline__ T kv_store(float x);
template <> __device__ __forceinline__ float kv_store<float>(float x) { return x; }
template <> __device__ __forceinline__ __half kv_store<__half>(float x) { return __float2half_rn(x); }

// out_row (hd) = sum_t softmax_t(scale q . k_t) v_t over t < n_keys (n_keys >= 1); returns the
// logsumexp of the scaled scores (the same value in every lane). q_shared: this warp's
// ATT_MAX_HD floats of shared memory. Every lane of the warp must call it. KV: float or __half.
template <typename KeyOffset, typename KV>
__device__ float attend_row(float *out_row, const float *q_row, const KV *k, const KV *v, int n_keys,
                            KeyOffset offset, int head_dim, float scale, float *q_shared) {
    const int lane = threadIdx.x % 32;
    for (int d = lane; d < head_dim; d += 32) q_shared[d] = q_row[d] * scale;
    __syncwarp();
    float acc[ATT_PER_LANE];
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) acc[t] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    for (int base = 0; base < n_keys; base += 32) {
        const int key = base + lane;
        const bool valid = key < n_keys;
        const size_t my_offset = valid ? offset(key) : 0;
        float s = -INFINITY;
        if (valid) {
            const KV *kt = k + my_offset;
            float dot = 0.0f;
            for (int d = 0; d < head_dim; d++) dot += q_shared[d] * kv_load(kt[d]);
            s = dot;
        }
        const float m_new = fmaxf(m, warp_max(s));  // finite: lane 0's key is always valid
        const float p = valid ? expf(s - m_new) : 0.0f;
        const float correction = expf(m - m_new);  // 0 on the first chunk (m = -inf)
        l = l * correction + warp_sum(p);
#pragma unroll
        for (int t = 0; t < ATT_PER_LANE; t++) acc[t] *= correction;
        const int count = min(32, n_keys - base);
        for (int c = 0; c < count; c++) {
            const float pc = __shfl_sync(FULL_MASK, p, c);
            const size_t off_c = __shfl_sync(FULL_MASK, (unsigned long long)my_offset, c);
            const KV *vt = v + off_c;
#pragma unroll
            for (int t = 0; t < ATT_PER_LANE; t++) {
                const int d = lane + 32 * t;
                if (d < head_dim) acc[t] += pc * kv_load(vt[d]);
            }
        }
        m = m_new;
    }
    const float inv = 1.0f / l;
#pragma unroll
    for (int t = 0; t < ATT_PER_LANE; t++) {
        const int d = lane + 32 * t;
        if (d < head_dim) out_row[d] = acc[t] * inv;
    }
    return m + logf(l);
}

static inline void attention_check_shape(int n_heads, int n_kv_heads, int head_dim) {
    CHECK(head_dim > 0 && head_dim <= ATT_MAX_HD, "raise ATT_MAX_HD in kernels/cuda/attention_row.cuh",
          "attention head size %d is not supported by the CUDA backend (1..%d)", head_dim, ATT_MAX_HD);
    CHECK(n_kv_heads > 0 && n_heads % n_kv_heads == 0, "n_heads must be a multiple of n_kv_heads",
          "attention with %d query heads and %d key/value heads", n_heads, n_kv_heads);
}

static inline unsigned attention_warp_blocks(size_t items) { return (unsigned)((items + ATT_WARPS - 1) / ATT_WARPS); }
