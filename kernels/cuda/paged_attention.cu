// CUDA paged KV cache for inference: writing new key/value rows into their cache slots and
// reading them back (one thread per element), and causal grouped-query attention of new query
// rows (decode, or a prefill chunk) against the cache, read through each sequence's block table.
//
// Attention: one warp per (query row, head), running attend_row (attention_row.cuh), the same
// device code as the training attention, over keys t = 0 .. pos (pos = ctx - n_q + j for row j
// of its sequence) whose rows are at slot table[t / block_size] * block_size + t % block_size.
// Each (row, head) depends only on its own sequence's data and is computed the same way
// whatever else is in the batch (batch invariant), and decoding a token gives bitwise the
// output the training attention gives for that row over the same keys and values.
#include "cuda/attention_row.cuh"

// This backend's cache layout is slot-major rows: k_cache, v_cache (n_slots, KVH*hd) of KV
// (float, or __half for an fp16 cache). One thread per element copies row i of k, v (N, kv_dim)
// to or from cache slot slots[i].
template <typename KV>
__global__ void kv_cache_copy_kernel(KV *k_cache, KV *v_cache, float *k, float *v, const int32_t *slots, int n,
                                     int kv_dim, int to_cache) {
    const size_t total = (size_t)n * kv_dim;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t i = e / kv_dim, d = e % kv_dim;
        const size_t slot = (size_t)slots[i] * kv_dim + d;
        if (to_cache) k_cache[slot] = kv_store<KV>(k[e]), v_cache[slot] = kv_store<KV>(v[e]);
        else k[e] = kv_load(k_cache[slot]), v[e] = kv_load(v_cache[slot]);
    }
}

static void kv_cache_copy(void *k_cache, void *v_cache, float *k, float *v, const int32_t *slots, int n, int kv_dim,
                          int to_cache, int kv_dtype) {
    const size_t total = (size_t)n * kv_dim;
    if (n <= 0 || kv_dim <= 0) return;
    if (kv_dtype == OPS_KV_F16)
        kv_cache_copy_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cuda_stream()>>>(
            (__half *)k_cache, (__half *)v_cache, k, v, slots, n, kv_dim, to_cache);
    else
        kv_cache_copy_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cuda_stream()>>>(
            (float *)k_cache, (float *)v_cache, k, v, slots, n, kv_dim, to_cache);
    CUDA_LAUNCH_CHECK("kv_cache_copy_kernel");
}

void ops_kv_cache_write(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slots, int n,
                        int n_kv_heads, int head_dim, int block_size, int kv_dtype) {
    kv_cache_copy(k_cache, v_cache, (float *)k, (float *)v, slots, n, n_kv_heads * head_dim, 1, kv_dtype);  // k, v read
}

void ops_kv_cache_read(float *k, float *v, const void *k_cache, const void *v_cache, const int32_t *slots, int n,
                       int n_kv_heads, int head_dim, int block_size, int kv_dtype) {
    kv_cache_copy((void *)k_cache, (void *)v_cache, k, v, slots, n, n_kv_heads * head_dim, 0, kv_dtype);  // caches read
}

// Element offset of the key at position t of a sequence with block table `table`, kv head g.
struct PagedKeyOffset {
    const int32_t *table;
    int block_size;
    size_t kv_dim, head_offset;
    __device__ size_t operator()(int t) const {
        const size_t slot = (size_t)table[t / block_size] * block_size + t % block_size;
        return slot * kv_dim + head_offset;
    }
};

// The sequence whose rows contain `row`: the last s with query_start[s] <= row.
__device__ int sequence_of_row(const int32_t *query_start, int n_seqs, int row) {
    int lo = 0, hi = n_seqs - 1;
    while (lo < hi) {
        const int mid = (lo + hi + 1) / 2;
        if (query_start[mid] <= row)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

// The row count N = query_start[n_seqs] lives on the device, so the grid has a fixed number of
// warps that take the N * H items in turn (item = warp, warp + all warps, ...): no host round
// trip per layer, and an item's result does not depend on which warp computes it.
template <typename KV>
__global__ void __launch_bounds__(ATT_THREADS)
    paged_attention_kernel(float *out, const float *q, const KV *k_cache, const KV *v_cache,
                           const int32_t *block_tables, const int32_t *query_start, const int32_t *context_len,
                           int n_seqs, int max_blocks, int block_size, int n_heads, int n_kv_heads, int head_dim,
                           float scale) {
    __shared__ float q_shared[ATT_WARPS][ATT_MAX_HD];
    const int warp = threadIdx.x / 32;
    const size_t items = (size_t)query_start[n_seqs] * n_heads, warps = (size_t)gridDim.x * ATT_WARPS;
    const size_t kv_dim = (size_t)n_kv_heads * head_dim;
    for (size_t item = (size_t)blockIdx.x * ATT_WARPS + warp; item < items; item += warps) {  // warp-uniform
        const int row = (int)(item / n_heads), h = (int)(item % n_heads);
        const int g = h / (n_heads / n_kv_heads);
        const int s = sequence_of_row(query_start, n_seqs, row);
        const int n_q = query_start[s + 1] - query_start[s];
        const int pos = context_len[s] - n_q + (row - query_start[s]);  // keys 0 .. pos
        const size_t at = (size_t)row * n_heads * head_dim + (size_t)h * head_dim;
        const PagedKeyOffset offset = {block_tables + (size_t)s * max_blocks, block_size, kv_dim,
                                       (size_t)g * head_dim};
        __syncwarp();  // the previous item's reads of q_shared are done
        attend_row(out + at, q + at, k_cache, v_cache, pos + 1, offset, head_dim, scale, q_shared[warp]);
    }
}

void ops_paged_attention_forward(float *out, const float *q, const void *k_cache, const void *v_cache,
                                 const int32_t *block_tables, const int32_t *query_start, const int32_t *context_len,
                                 int n_seqs, int max_blocks, int block_size, int n_heads, int n_kv_heads, int head_dim,
                                 int kv_dtype) {
    if (n_seqs <= 0) return;
    attention_check_shape(n_heads, n_kv_heads, head_dim);
    const float scale = 1.0f / sqrtf((float)head_dim);
    // Enough warps to fill the GPU, never more than the largest possible N * H items
    // (N <= n_seqs * max_blocks * block_size).
    const size_t max_items = (size_t)n_seqs * max_blocks * block_size * n_heads;
    size_t blocks = attention_warp_blocks(max_items);
    const size_t fill = (size_t)cuda_sm_count() * 16;
    if (blocks > fill) blocks = fill;
    if (blocks < 1) blocks = 1;
    if (kv_dtype == OPS_KV_F16)
        paged_attention_kernel<<<(unsigned)blocks, ATT_THREADS, 0, cuda_stream()>>>(
            out, q, (const __half *)k_cache, (const __half *)v_cache, block_tables, query_start, context_len, n_seqs,
            max_blocks, block_size, n_heads, n_kv_heads, head_dim, scale);
    else
        paged_attention_kernel<<<(unsigned)blocks, ATT_THREADS, 0, cuda_stream()>>>(
            out, q, (const float *)k_cache, (const float *)v_cache, block_tables, query_start, context_len, n_seqs,
            max_blocks, block_size, n_heads, n_kv_heads, head_dim, scale);
    CUDA_LAUNCH_CHECK("paged_attention_kernel");
}
