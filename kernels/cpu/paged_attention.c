// CPU paged KV cache for inference: writing new key/value rows into their cache slots, and
// causal grouped-query attention of new query rows (decode or a prefill chunk) against the
// cached keys and values, read block by block through each sequence's block table.
//
// Attention runs one task per (query row, key/value head): the task scores the G = H / KVH
// query heads of the group against every visible key (one pass over the keys, reading each
// key once for the whole group), takes a two-pass softmax per head and sums the values. Every
// (row, head) is computed by the same code in the same order whatever else is in the call, so
// results are batch invariant (see ops.h). Scratch: G x (longest context) floats per thread.
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

void ops_kv_cache_write(float *k_cache, float *v_cache, const float *k, const float *v, const int32_t *slots, int n,
                        int kv_dim) {
    const size_t bytes = (size_t)kv_dim * sizeof(float);
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int i = 0; i < n; i++) {
        memcpy(k_cache + (size_t)slots[i] * kv_dim, k + (size_t)i * kv_dim, bytes);
        memcpy(v_cache + (size_t)slots[i] * kv_dim, v + (size_t)i * kv_dim, bytes);
    }
}

// The sequence whose rows contain `row`: the last s with query_start[s] <= row.
static int sequence_of_row(const int32_t *query_start, int n_seqs, int row) {
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

// Scores of the group's G query heads against keys 0 .. keys-1: scores (G, stride) =
// scale * q_h . k_t, visiting the keys block by block in position order.
static void group_scores(float *scores, int stride, const float *q, const float *k_cache, const int32_t *table,
                         int keys, int block_size, int kv_dim, int g, int group, int head_dim, float scale) {
    for (int t0 = 0; t0 < keys; t0 += block_size) {
        const size_t base = (size_t)table[t0 / block_size] * block_size;
        const int nt = keys - t0 < block_size ? keys - t0 : block_size;
        for (int tt = 0; tt < nt; tt++) {
            const float *kp = k_cache + (base + tt) * kv_dim + (size_t)g * head_dim;
            for (int hh = 0; hh < group; hh++) {
                const float *qh = q + (size_t)hh * head_dim;
                float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
                for (int d = 0; d < head_dim; d++) dot += qh[d] * kp[d];
                scores[(size_t)hh * stride + t0 + tt] = dot * scale;
            }
        }
    }
}

// In place: p (keys) = exp(s - max s); returns 1 / sum p.
static float softmax_unnormalised(float *p, int keys) {
    float mx = -INFINITY;
    for (int t = 0; t < keys; t++) mx = p[t] > mx ? p[t] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int t = 0; t < keys; t++) {
        p[t] = cpu_expf(p[t] - mx);
        sum += p[t];
    }
    return 1.0f / sum;
}

// out_h (hd) = inv_sum * sum_t p_h[t] v_t for each head of the group.
static void group_values(float *out, const float *p, int stride, const float *inv_sum, const float *v_cache,
                         const int32_t *table, int keys, int block_size, int kv_dim, int g, int group,
                         int head_dim) {
    for (int hh = 0; hh < group; hh++) memset(out + (size_t)hh * head_dim, 0, (size_t)head_dim * sizeof(float));
    for (int t0 = 0; t0 < keys; t0 += block_size) {
        const size_t base = (size_t)table[t0 / block_size] * block_size;
        const int nt = keys - t0 < block_size ? keys - t0 : block_size;
        for (int tt = 0; tt < nt; tt++) {
            const float *vp = v_cache + (base + tt) * kv_dim + (size_t)g * head_dim;
            for (int hh = 0; hh < group; hh++) {
                float *oh = out + (size_t)hh * head_dim;
                const float w = p[(size_t)hh * stride + t0 + tt];
#pragma omp simd
                for (int d = 0; d < head_dim; d++) oh[d] += w * vp[d];
            }
        }
    }
    for (int hh = 0; hh < group; hh++) {
        float *oh = out + (size_t)hh * head_dim;
        const float inv = inv_sum[hh];
#pragma omp simd
        for (int d = 0; d < head_dim; d++) oh[d] *= inv;
    }
}

void ops_paged_attention_forward(float *out, const float *q, const float *k_cache, const float *v_cache,
                                 const int32_t *block_tables, const int32_t *query_start, const int32_t *context_len,
                                 int n_seqs, int max_blocks, int block_size, int n_heads, int n_kv_heads,
                                 int head_dim) {
    if (n_seqs <= 0) return;
    const int n = query_start[n_seqs];
    if (n <= 0) return;
    int max_ctx = 1;
    for (int s = 0; s < n_seqs; s++) max_ctx = context_len[s] > max_ctx ? context_len[s] : max_ctx;
    const int group = n_heads / n_kv_heads;
    const int q_stride = n_heads * head_dim, kv_dim = n_kv_heads * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);
    const int threads = omp_get_max_threads();
    const size_t per_thread = (size_t)group * max_ctx + (size_t)group;  // scores + 1/sum per head
    float *scratch = malloc((size_t)threads * per_thread * sizeof(float));
    CHECK(scratch != NULL, "out of memory; lower inference.max_seqs or the context", "paged attention scratch of "
          "%d x %zu floats", threads, per_thread);
    const int n_tasks = n * n_kv_heads;

#pragma omp parallel for schedule(dynamic, 4) if (n_tasks > 1)
    for (int task = 0; task < n_tasks; task++) {
        const int row = task / n_kv_heads, g = task % n_kv_heads;
        const int s = sequence_of_row(query_start, n_seqs, row);
        const int n_q = query_start[s + 1] - query_start[s];
        const int keys = context_len[s] - n_q + (row - query_start[s]) + 1;  // positions 0 .. pos
        const int32_t *table = block_tables + (size_t)s * max_blocks;
        float *scores = scratch + (size_t)omp_get_thread_num() * per_thread;  // (G, max_ctx)
        float *inv_sum = scores + (size_t)group * max_ctx;                     // (G)
        const float *qg = q + (size_t)row * q_stride + (size_t)g * group * head_dim;  // (G, hd)
        group_scores(scores, max_ctx, qg, k_cache, table, keys, block_size, kv_dim, g, group, head_dim, scale);
        for (int hh = 0; hh < group; hh++) inv_sum[hh] = softmax_unnormalised(scores + (size_t)hh * max_ctx, keys);
        group_values(out + (size_t)row * q_stride + (size_t)g * group * head_dim, scores, max_ctx, inv_sum, v_cache,
                     table, keys, block_size, kv_dim, g, group, head_dim);
    }
    free(scratch);
}
