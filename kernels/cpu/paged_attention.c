// CPU paged KV cache for inference: writing new key/value rows into their cache slots (and
// reading them back), and causal grouped-query attention of new query rows (decode or a
// prefill chunk) against the cached keys and values, read block by block through each
// sequence's block table.
//
// Layout (private to this backend, see ops.h): block b, kv head g holds its keys transposed,
// Kt (hd, bs), and its values as rows, V (bs, hd), both at offset ((b * KVH + g) * hd) * bs.
// A (block, head) is one contiguous run of memory (the prefetcher streams it), and with
// transposed keys the score loop runs over consecutive keys (vectorised, no horizontal sums),
// even for heads of 8 floats.
//
// Attention runs one task per (tile of up to ROWS consecutive query rows of one sequence,
// kv head g): for each visible block, the tile's ROWS x G query heads are scored against its
// keys (each key row of Kt read once for the whole tile), then each (row, head) takes a
// softmax over its own causal range and sums the values. Every (row, head) is computed with
// the same operations in the same order whatever else is in the call or the tile (scores are
// elementwise over keys; sums run in key order; scratch rows have a stride that is a multiple
// of 16 floats), so the results are batch invariant. Loops are compiled twice (baseline and
// AVX2+FMA, see cpu.h). Scratch per thread: ROWS * G * (longest context rounded up to 16) +
// 2 ROWS * G * hd floats.
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

#define ROWS 4  // query rows per task (prefill chunks share each key read among them)

// Offset of (block, kv head g) in k_cache and v_cache: hd * bs floats each.
static inline size_t block_offset(int block, int g, int n_kv_heads, int head_dim, int block_size) {
    return ((size_t)block * n_kv_heads + g) * head_dim * block_size;
}

void ops_kv_cache_write(float *k_cache, float *v_cache, const float *k, const float *v, const int32_t *slots, int n,
                        int n_kv_heads, int head_dim, int block_size) {
    const int kv_dim = n_kv_heads * head_dim;
#pragma omp parallel for schedule(static) if (cpu_parallel(2.0 * n * kv_dim))
    for (int i = 0; i < n; i++) {
        const int block = slots[i] / block_size, t = slots[i] % block_size;
        for (int g = 0; g < n_kv_heads; g++) {
            const size_t base = block_offset(block, g, n_kv_heads, head_dim, block_size);
            const float *kr = k + (size_t)i * kv_dim + (size_t)g * head_dim;
            const float *vr = v + (size_t)i * kv_dim + (size_t)g * head_dim;
            for (int d = 0; d < head_dim; d++) k_cache[base + (size_t)d * block_size + t] = kr[d];
            memcpy(v_cache + base + (size_t)t * head_dim, vr, (size_t)head_dim * sizeof(float));
        }
    }
}

void ops_kv_cache_read(float *k, float *v, const float *k_cache, const float *v_cache, const int32_t *slots, int n,
                       int n_kv_heads, int head_dim, int block_size) {
    const int kv_dim = n_kv_heads * head_dim;
    for (int i = 0; i < n; i++) {
        const int block = slots[i] / block_size, t = slots[i] % block_size;
        for (int g = 0; g < n_kv_heads; g++) {
            const size_t base = block_offset(block, g, n_kv_heads, head_dim, block_size);
            float *kr = k + (size_t)i * kv_dim + (size_t)g * head_dim;
            for (int d = 0; d < head_dim; d++) kr[d] = k_cache[base + (size_t)d * block_size + t];
            memcpy(v + (size_t)i * kv_dim + (size_t)g * head_dim, v_cache + base + (size_t)t * head_dim,
                   (size_t)head_dim * sizeof(float));
        }
    }
}

// One task: rows row0 .. row0+n_rows-1 of a sequence, their first having position pos0.
typedef struct {
    int seq, row0, n_rows, pos0, g;
} AttnTask;

typedef struct {
    const float *q, *k_cache, *v_cache;
    const int32_t *table;  // the sequence's block ids
    int block_size, n_heads, n_kv_heads, head_dim, group;
    size_t stride;         // floats between two score rows (multiple of 16)
    float scale;
} AttnArgs;

// qt (n_rows * G, hd) = scale * the tile's query heads (row-major by row, then head).
static CPU_INLINE void tile_queries(float *qt, const AttnArgs *a, const AttnTask *t) {
    const int hd = a->head_dim, q_stride = a->n_heads * hd;
    for (int r = 0; r < t->n_rows; r++)
        for (int hh = 0; hh < a->group; hh++) {
            const float *qh = a->q + (size_t)(t->row0 + r) * q_stride + (size_t)(t->g * a->group + hh) * hd;
            float *dst = qt + ((size_t)r * a->group + hh) * hd;
            for (int d = 0; d < hd; d++) dst[d] = qh[d] * a->scale;
        }
}

// The score of query qi (hd) against `width` consecutive keys of a transposed block kt (hd, bs)
// from key j0: s[j] = (sum over even d of qi[d] k[d][j]) + (sum over odd d ...), each sum in d
// order (two independent chains, hd is even). width is a constant 16 or 8 after inlining; the
// scalar tail computes the same sums key by key, so every key's score is computed alike.
static CPU_INLINE void score_keys(float *s, const float *qi, const float *kt, int bs, int hd, int j0, int width) {
    float even[16], odd[16];
    for (int l = 0; l < width; l++) even[l] = qi[0] * kt[j0 + l], odd[l] = qi[1] * kt[(size_t)bs + j0 + l];
    for (int d = 2; d < hd; d += 2) {
        const float qe = qi[d], qo = qi[d + 1];
        const float *ke = kt + (size_t)d * bs + j0, *ko = ke + bs;
        for (int l = 0; l < width; l++) even[l] += qe * ke[l], odd[l] += qo * ko[l];
    }
    for (int l = 0; l < width; l++) s[j0 + l] = even[l] + odd[l];
}

// scores (n_rows * G, stride) = qt . k for keys 0 .. keys-1 (keys = the last row's), block by
// block, 16 or 8 keys at a time in registers.
static CPU_INLINE void tile_scores(float *scores, const float *qt, const AttnArgs *a, const AttnTask *t, int keys) {
    const int hd = a->head_dim, bs = a->block_size, n_q = t->n_rows * a->group;
    for (int t0 = 0; t0 < keys; t0 += bs) {
        const int nt = keys - t0 < bs ? keys - t0 : bs;
        const float *kt = a->k_cache + block_offset(a->table[t0 / bs], t->g, a->n_kv_heads, hd, bs);  // (hd, bs)
        for (int i = 0; i < n_q; i++) {
            float *s = scores + (size_t)i * a->stride + t0;
            const float *qi = qt + (size_t)i * hd;
            int j0 = 0;
            for (; j0 + 16 <= nt; j0 += 16) score_keys(s, qi, kt, bs, hd, j0, 16);
            for (; j0 + 8 <= nt; j0 += 8) score_keys(s, qi, kt, bs, hd, j0, 8);
            for (int j = j0; j < nt; j++) {
                float even = qi[0] * kt[j], odd = qi[1] * kt[(size_t)bs + j];
                for (int d = 2; d < hd; d += 2)
                    even += qi[d] * kt[(size_t)d * bs + j], odd += qi[d + 1] * kt[(size_t)(d + 1) * bs + j];
                s[j] = even + odd;
            }
        }
    }
}

// In place: p (keys) = exp(s - max s); returns 1 / sum p. The sum runs in a fixed order
// (16 lanes j mod 16, then the lanes in order), whatever the alignment or vector width.
static CPU_INLINE float softmax_unnormalised(float *p, int keys) {
    float mx = -INFINITY;
    for (int t = 0; t < keys; t++) mx = p[t] > mx ? p[t] : mx;
#pragma omp simd
    for (int t = 0; t < keys; t++) p[t] = cpu_expf(p[t] - mx);
    float lanes[16] = {0};
    int t = 0;
    for (; t + 16 <= keys; t += 16)
        for (int l = 0; l < 16; l++) lanes[l] += p[t + l];
    for (int l = 0; t < keys; t++, l++) lanes[l] += p[t];
    float sum = 0.0f;
    for (int l = 0; l < 16; l++) sum += lanes[l];
    return 1.0f / sum;
}

// o[d0 .. d0+width) += sum_j p[j] * v_j[...] over n value rows vb (n rows, row stride ld), keys
// in order, with width (32, 16 or 8 after inlining) output floats in registers as independent
// chains.
static CPU_INLINE void accumulate_chunk(float *o, const float *p, const float *vb, size_t ld, int n, int d0,
                                        int width) {
    float acc[32];
    for (int l = 0; l < width; l++) acc[l] = o[d0 + l];
    for (int j = 0; j < n; j++) {
        const float w = p[j];
        const float *vr = vb + (size_t)j * ld + d0;
        for (int l = 0; l < width; l++) acc[l] += w * vr[l];
    }
    for (int l = 0; l < width; l++) o[d0 + l] = acc[l];
}

// o (hd) += sum_j p[j] * v_j over n value rows vb (row stride ld); every output float sums
// over the keys in order, whatever chunk it falls in.
static CPU_INLINE void accumulate_values(float *o, const float *p, const float *vb, size_t ld, int n, int hd) {
    int d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32) accumulate_chunk(o, p, vb, ld, n, d0, 32);
    for (; d0 + 16 <= hd; d0 += 16) accumulate_chunk(o, p, vb, ld, n, d0, 16);
    for (; d0 + 8 <= hd; d0 += 8) accumulate_chunk(o, p, vb, ld, n, d0, 8);
    for (int d = d0; d < hd; d++) {
        float acc = o[d];
        for (int j = 0; j < n; j++) acc += p[j] * vb[(size_t)j * ld + d];
        o[d] = acc;
    }
}

// out rows of the tile (n_rows, H*hd at the group's heads) = sum_t p[t] v_t * inv_sum, each
// (row, head) over its own keys. acc: (n_rows * G, hd) scratch.
static CPU_INLINE void tile_values(float *out, float *acc, const float *scores, const float *inv_sum,
                                   const AttnArgs *a, const AttnTask *t) {
    const int hd = a->head_dim, bs = a->block_size, q_stride = a->n_heads * hd, n_q = t->n_rows * a->group;
    memset(acc, 0, (size_t)n_q * hd * sizeof(float));
    const int keys_max = t->pos0 + t->n_rows;
    for (int t0 = 0; t0 < keys_max; t0 += bs) {
        const int nt = keys_max - t0 < bs ? keys_max - t0 : bs;
        const float *vb = a->v_cache + block_offset(a->table[t0 / bs], t->g, a->n_kv_heads, hd, bs);  // (bs, hd)
        for (int i = 0; i < n_q; i++) {
            const int keys = t->pos0 + i / a->group + 1;  // this row's causal range
            const int n = keys - t0 < nt ? keys - t0 : nt;
            if (n > 0) accumulate_values(acc + (size_t)i * hd, scores + (size_t)i * a->stride + t0, vb, hd, n, hd);
        }
    }
    for (int i = 0; i < n_q; i++) {
        const int r = i / a->group, hh = i % a->group;
        float *dst = out + (size_t)(t->row0 + r) * q_stride + (size_t)(t->g * a->group + hh) * hd;
        const float *o = acc + (size_t)i * hd;
        for (int d = 0; d < hd; d++) dst[d] = o[d] * inv_sum[i];
    }
}

// One task with its thread's scratch: (ROWS * G, stride) scores, then (ROWS * G, hd) value
// sums, (ROWS * G, hd) scaled queries and (ROWS * G) softmax normalisers.
static CPU_INLINE void attention_task(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    const int n_q = t->n_rows * a->group;
    float *scores = scratch;
    float *acc = scores + (size_t)ROWS * a->group * a->stride;
    float *qt = acc + (size_t)ROWS * a->group * a->head_dim;
    float *inv_sum = qt + (size_t)ROWS * a->group * a->head_dim;
    tile_queries(qt, a, t);
    tile_scores(scores, qt, a, t, t->pos0 + t->n_rows);
    for (int k = 0; k < n_q; k++)
        inv_sum[k] = softmax_unnormalised(scores + (size_t)k * a->stride, t->pos0 + k / a->group + 1);
    tile_values(out, acc, scores, inv_sum, a, t);
}

CPU_AVX2 static void attention_task_avx2(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    attention_task(out, scratch, a, t);
}
static void attention_task_base(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    attention_task(out, scratch, a, t);
}

void ops_paged_attention_forward(float *out, const float *q, const float *k_cache, const float *v_cache,
                                 const int32_t *block_tables, const int32_t *query_start, const int32_t *context_len,
                                 int n_seqs, int max_blocks, int block_size, int n_heads, int n_kv_heads,
                                 int head_dim) {
    if (n_seqs <= 0 || query_start[n_seqs] <= 0) return;
    const int group = n_heads / n_kv_heads;
    // Tasks: per sequence, tiles of ROWS rows, times the kv heads.
    int n_tasks = 0, max_ctx = 1;
    double work = 0.0;  // multiply-adds, roughly
    for (int s = 0; s < n_seqs; s++) {
        const int n_q = query_start[s + 1] - query_start[s];
        n_tasks += (n_q + ROWS - 1) / ROWS * n_kv_heads;
        max_ctx = context_len[s] > max_ctx ? context_len[s] : max_ctx;
        work += 2.0 * n_q * context_len[s] * n_heads * head_dim;
    }
    AttnTask *tasks = malloc((size_t)n_tasks * sizeof(AttnTask));
    CHECK(tasks != NULL, "out of memory", "paged attention: %d tasks", n_tasks);
    int ti = 0;
    for (int s = 0; s < n_seqs; s++) {
        const int n_q = query_start[s + 1] - query_start[s];
        for (int r = 0; r < n_q; r += ROWS)
            for (int g = 0; g < n_kv_heads; g++)
                tasks[ti++] = (AttnTask){s, query_start[s] + r, n_q - r < ROWS ? n_q - r : ROWS,
                                         context_len[s] - n_q + r, g};
    }
    const size_t stride = ((size_t)max_ctx + 15) / 16 * 16;
    const size_t per_thread =
        ((size_t)ROWS * group * (stride + 2 * head_dim + 1) + 15) / 16 * 16;
    const int threads = omp_get_max_threads();
    float *scratch = aligned_alloc(64, (size_t)threads * per_thread * sizeof(float));
    CHECK(scratch != NULL, "out of memory; lower inference.max_seqs or the context",
          "paged attention scratch of %d x %zu floats", threads, per_thread);
    AttnArgs base = {.q = q, .k_cache = k_cache, .v_cache = v_cache, .block_size = block_size, .n_heads = n_heads,
                     .n_kv_heads = n_kv_heads, .head_dim = head_dim, .group = group, .stride = stride,
                     .scale = 1.0f / sqrtf((float)head_dim)};
    const int avx2 = cpu_has_avx2();

#pragma omp parallel for schedule(dynamic, 1) if (n_tasks > 1 && cpu_parallel(work))
    for (int i = 0; i < n_tasks; i++) {
        AttnArgs a = base;
        a.table = block_tables + (size_t)tasks[i].seq * max_blocks;
        float *mine = scratch + (size_t)omp_get_thread_num() * per_thread;
        if (avx2) attention_task_avx2(out, mine, &a, &tasks[i]);
        else attention_task_base(out, mine, &a, &tasks[i]);
    }
    free(scratch);
    free(tasks);
}
