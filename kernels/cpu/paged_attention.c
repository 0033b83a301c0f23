// CPU paged KV cache for inference: writing new key/value rows into their cache slots (and
// reading them back), and causal grouped-query attention of new query rows (decode or a
// prefill chunk) against the cached keys and values, read block by block through each
// sequence's block table.
//
// Layout (private to this backend, see ops.h): block b, kv head g holds its keys transposed,
// Kt (hd, bs), and its values as rows, V (bs, hd), both at offset ((b * KVH + g) * hd) * bs.
// Small heads (hd <= SMALL_HEAD with bs a multiple of KEYS = 8, see small_heads()) hold their
// values transposed too, Vt (hd, bs). A (block, head) is one contiguous run of memory (the
// prefetcher streams it), and with transposed keys the score loop runs over consecutive keys
// (vectorised, no horizontal sums), even for heads of 8 floats.
//
// Attention runs one task per (tile of up to ROWS consecutive query rows of one sequence,
// group of kv heads; as many heads per task as leave 8 tasks per thread), and for each kv head
// g: for each visible block, the tile's ROWS x G query heads are scored against its keys (each
// key row of Kt read once for the whole tile), then each (row, head) takes a softmax over its
// own causal range and sums the values. Dot products and value sums run in several
// interleaved chains (score_keys; weighted_sum, vec8.h) so that the FMA latency is hidden even for
// heads of 8 floats. Small heads take another path (small_head_rows): each (row, head) runs
// along its keys 8 at a time, scores, softmax and value sums alike (with values transposed,
// every FMA covers 8 keys and the head's dimensions are the independent chains), which for
// heads of 8 floats takes ~25% less time than the general path's per-block loops; heads of 8
// floats that share a kv head go two at a time, sharing each load of a key or value vector.
// Every (row, head) is computed with the same operations in the same order
// whatever else is in the call or the tile (scores are elementwise over keys; sums run in a
// fixed order given the keys; scratch rows have a stride that is a multiple of 16 floats), so
// the results are batch invariant. Loops are compiled three times (baseline, AVX2+FMA and
// AVX-512, see cpu.h); the AVX-512 copy's general path scores 16 keys and sums 16 value floats
// per vector, lane by lane the AVX2 copy's operations, so all copies give the same bits (the
// small-head path keeps its 8-key vectors in every copy: see attention_task_copy). Scratch per
// thread: ROWS * G * (longest context rounded up to 16) + 2 ROWS * G * hd floats.
//
// An fp16 cache (OPS_KV_F16) holds the same layout in halves: the memory traffic, which bounds
// decode with many sequences, is halved. The AVX2 copy reads the halves straight into the
// score and value loops with F16C (vec8.h's load8_kv); the baseline copy widens each (block,
// head) into per-thread fp32 scratch (hd * bs more floats) first. Either way the arithmetic
// is the fp32 arithmetic on the stored values.
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "cpu/vec8.h"
#include "ops.h"

#define ROWS 4  // query rows per task (prefill chunks share each key read among them)

typedef _Float16 half;  // IEEE binary16 (GCC on x86-64; F16C instructions in the AVX2 build)

// Offset of (block, kv head g) in k_cache and v_cache: hd * bs elements each.
static inline size_t block_offset(int block, int g, int n_kv_heads, int head_dim, int block_size) {
    return ((size_t)block * n_kv_heads + g) * head_dim * block_size;
}

// Heads of at most SMALL_HEAD floats (vec8.h) in blocks of a multiple of KEYS slots store their
// values transposed and take the small-head attention path.
#define KEYS 8  // keys per vector in the small-head path
static inline int small_heads(int head_dim, int block_size) {
    return head_dim <= SMALL_HEAD && block_size % KEYS == 0;
}

// Whether small heads go two at a time (attention_head_small): heads of 8 floats that share a
// kv head (GQA); wider heads would not keep two heads' vectors in registers.
static inline int small_heads_in_pairs(int head_dim, int group) { return head_dim == 8 && group >= 2; }

// dst (n) = src (n) widened (exact), for the baseline copy of attention over an fp16 cache.
static void widen(float *restrict dst, const half *restrict src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = (float)src[i];
}

// Row i of k and v into their slot: keys transposed (a column of Kt), values as a row.
static CPU_INLINE void write_slot(void *k_cache, void *v_cache, const float *k, const float *v, int i, int slot,
                                  int n_kv_heads, int head_dim, int block_size, int f16) {
    const int kv_dim = n_kv_heads * head_dim, block = slot / block_size, t = slot % block_size;
    const int vt = small_heads(head_dim, block_size);
    const size_t v_step = vt ? (size_t)block_size : 1;  // between two dimensions of a value
    for (int g = 0; g < n_kv_heads; g++) {
        const size_t base = block_offset(block, g, n_kv_heads, head_dim, block_size);
        const size_t k_at = base + (size_t)t, v_at = base + (size_t)t * (vt ? 1 : head_dim);  // + d * bs, + d
        const float *kr = k + (size_t)i * kv_dim + (size_t)g * head_dim;
        const float *vr = v + (size_t)i * kv_dim + (size_t)g * head_dim;
        if (f16) {
            half *kc = k_cache, *vc = v_cache;
            for (int d = 0; d < head_dim; d++) kc[k_at + (size_t)d * block_size] = (half)kr[d];
            for (int d = 0; d < head_dim; d++) vc[v_at + d * v_step] = (half)vr[d];
        } else {
            float *kc = k_cache, *vc = v_cache;
            for (int d = 0; d < head_dim; d++) kc[k_at + (size_t)d * block_size] = kr[d];
            if (vt)
                for (int d = 0; d < head_dim; d++) vc[v_at + d * v_step] = vr[d];
            else
                memcpy(vc + v_at, vr, (size_t)head_dim * sizeof(float));
        }
    }
}

CPU_AVX2 static void write_slot_avx2(void *kc, void *vc, const float *k, const float *v, int i, int slot, int kvh,
                                     int hd, int bs, int f16) {
    write_slot(kc, vc, k, v, i, slot, kvh, hd, bs, f16);
}
static void write_slot_base(void *kc, void *vc, const float *k, const float *v, int i, int slot, int kvh, int hd,
                            int bs, int f16) {
    write_slot(kc, vc, k, v, i, slot, kvh, hd, bs, f16);
}

void ops_kv_cache_write(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slots, int n,
                        int n_kv_heads, int head_dim, int block_size, int kv_dtype) {
    const int f16 = kv_dtype == OPS_KV_F16, avx2 = cpu_has_avx2();
// Scattered stores (a key's dimensions, and a small head's values, lie a block row apart) each
// wait for their cache line: counted as 16 units each, so that 64 decode rows of stories260K
// (4096 stores, 13 us on one thread) are split between threads.
#pragma omp parallel for schedule(static) if (cpu_parallel(16.0 * n * n_kv_heads * head_dim))
    for (int i = 0; i < n; i++) {
        if (avx2) write_slot_avx2(k_cache, v_cache, k, v, i, slots[i], n_kv_heads, head_dim, block_size, f16);
        else write_slot_base(k_cache, v_cache, k, v, i, slots[i], n_kv_heads, head_dim, block_size, f16);
    }
}

void ops_kv_cache_read(float *k, float *v, const void *k_cache, const void *v_cache, const int32_t *slots, int n,
                       int n_kv_heads, int head_dim, int block_size, int kv_dtype) {
    const int kv_dim = n_kv_heads * head_dim, f16 = kv_dtype == OPS_KV_F16;
    const int vt = small_heads(head_dim, block_size);
    for (int i = 0; i < n; i++) {
        const int block = slots[i] / block_size, t = slots[i] % block_size;
        for (int g = 0; g < n_kv_heads; g++) {
            const size_t base = block_offset(block, g, n_kv_heads, head_dim, block_size);
            float *kr = k + (size_t)i * kv_dim + (size_t)g * head_dim;
            float *vr = v + (size_t)i * kv_dim + (size_t)g * head_dim;
            for (int d = 0; d < head_dim; d++) {
                const size_t k_at = base + (size_t)d * block_size + t;
                const size_t v_at = vt ? k_at : base + (size_t)t * head_dim + d;
                kr[d] = f16 ? (float)((const half *)k_cache)[k_at] : ((const float *)k_cache)[k_at];
                vr[d] = f16 ? (float)((const half *)v_cache)[v_at] : ((const float *)v_cache)[v_at];
            }
        }
    }
}

// One task: rows row0 .. row0+n_rows-1 of a sequence, their first having position pos0, for
// kv heads g .. g + heads_per_task - 1 (attention_task runs each as a task of its own head).
typedef struct {
    int seq, row0, n_rows, pos0, g;
} AttnTask;

typedef struct {
    const float *q;
    const void *k_cache, *v_cache;  // fp32 or (f16) fp16 elements
    int f16;
    float *widened;        // f16, baseline copy: this thread's (hd * bs) floats for the block being read
    const int32_t *table;  // the sequence's block ids
    int block_size, n_heads, n_kv_heads, head_dim, group, heads_per_task;
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
// from key j0: s[j] = the sum over d of qi[d] k[d][j] in C interleaved chains (chain c takes
// d = c mod C, each in d order; C = 4 when hd is a multiple of 4, else 2, hd being even), the
// chains then added as (c0 + c1) + (c2 + c3). width is a constant 16 or 8 after inlining (2 C
// or C independent vector chains); score_key computes the same sums key by key for a tail in
// blocks whose size is not a multiple of 8, so every key's score is computed alike.
static CPU_INLINE void score_keys(float *s, const float *qi, const void *kt, int bs, int hd, int j0, int width,
                                  const int C, const int kv) {
    const int W = width / 8;
    v8f sum[4][2];  // [chain][vector of 8 keys]
#pragma GCC unroll 4
    for (int c = 0; c < C; c++)
#pragma GCC unroll 2
        for (int w = 0; w < W; w++) sum[c][w] = qi[c] * load8_kv(kt, (size_t)c * bs + j0 + 8 * w, kv);
    for (int d = C; d < hd; d += C)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) {
            const float qd = qi[d + c];
            const size_t kd = (size_t)(d + c) * bs + j0;
#pragma GCC unroll 2
            for (int w = 0; w < W; w++) sum[c][w] += qd * load8_kv(kt, kd + 8 * w, kv);
        }
#pragma GCC unroll 2
    for (int w = 0; w < W; w++)
        store8(s + j0 + 8 * w, C == 4 ? (sum[0][w] + sum[1][w]) + (sum[2][w] + sum[3][w]) : sum[0][w] + sum[1][w]);
}

static CPU_INLINE float score_key(const float *qi, const void *kt, int bs, int hd, int j, const int C, const int kv) {
    float sum[4];
    for (int c = 0; c < C; c++) sum[c] = qi[c] * load1_kv(kt, (size_t)c * bs + j, kv);
    for (int d = C; d < hd; d += C)
        for (int c = 0; c < C; c++) sum[c] += qi[d + c] * load1_kv(kt, (size_t)(d + c) * bs + j, kv);
    return C == 4 ? (sum[0] + sum[1]) + (sum[2] + sum[3]) : sum[0] + sum[1];
}

#if defined(__x86_64__) && defined(__GNUC__)
// score_keys for 16 keys in one vector of 16 per chain (the AVX-512 copies): lane by lane the
// same operations, so the same bits.
static CPU_INLINE void score_keys16(float *s, const float *qi, const void *kt, int bs, int hd, int j0, const int C,
                                    const int kv) {
    v16f sum[4];
#pragma GCC unroll 4
    for (int c = 0; c < C; c++) sum[c] = qi[c] * load16_kv(kt, (size_t)c * bs + j0, kv);
    for (int d = C; d < hd; d += C)
#pragma GCC unroll 4
        for (int c = 0; c < C; c++) sum[c] += qi[d + c] * load16_kv(kt, (size_t)(d + c) * bs + j0, kv);
    store16(s + j0, C == 4 ? (sum[0] + sum[1]) + (sum[2] + sum[3]) : sum[0] + sum[1]);
}
#endif

// One query row against the nt keys of a block, 16 or 8 keys at a time in registers (16 in one
// vector when `wide`: the AVX-512 copies).
static CPU_INLINE void score_block(float *s, const float *qi, const void *kt, int bs, int hd, int nt, const int C,
                                   const int kv, const int wide) {
    int j0 = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    if (wide)
        for (; j0 + 16 <= nt; j0 += 16) score_keys16(s, qi, kt, bs, hd, j0, C, kv);
#endif
    for (; j0 + 16 <= nt; j0 += 16) score_keys(s, qi, kt, bs, hd, j0, 16, C, kv);
    for (; j0 + 8 <= nt; j0 += 8) score_keys(s, qi, kt, bs, hd, j0, 8, C, kv);
    // A tail of 1-7 keys as one vector of 8 when the block size is a multiple of 8: its lanes past
    // nt score other slots of the block (read inside its rows; their scores land within the score
    // row's stride and are never used). Each lane does what score_key does, so the tail's scores
    // keep their bits, and 1-7 keys cost one vector instead of 1-7 scalar dot products: a
    // sequence's last block is its only partial one, and in 64-sequence stories15M decode the
    // scalar tails took ~10% of attention.
    if (bs % 8 == 0 && j0 < nt) {
        score_keys(s, qi, kt, bs, hd, j0, 8, C, kv);
        return;
    }
    for (int j = j0; j < nt; j++) s[j] = score_key(qi, kt, bs, hd, j, C, kv);
}

// Asks for the bytes [p, p + bytes) to be brought into cache (a (block, head) of keys or
// values: blocks lie anywhere in the cache, so the hardware prefetcher cannot guess the next one).
static CPU_INLINE void prefetch_bytes(const void *p, size_t bytes) {
    for (size_t i = 0; i < bytes; i += 64) __builtin_prefetch((const char *)p + i, 0, 3);
}

// The first n elements of a cache from `offset`, for loads of kind kv: the cache itself (fp32,
// or halves read with F16C), or halves widened into the thread's scratch (the baseline copy).
static CPU_INLINE const void *cache_block(const void *cache, size_t offset, size_t n, const AttnArgs *a, const int kv) {
    if (kv == KV_F16C) return (const half *)cache + offset;
    if (!a->f16) return (const float *)cache + offset;
    widen(a->widened, (const half *)cache + offset, n);
    return a->widened;
}

// scores (n_rows * G, stride) = qt . k for keys 0 .. keys-1 (keys = the last row's), block by
// block, 16 or 8 keys at a time in registers. While a block is scored, the next block's keys
// and this block's values (for tile_values) are fetched.
static CPU_INLINE void tile_scores(float *scores, const float *qt, const AttnArgs *a, const AttnTask *t, int keys,
                                   const int kv, const int wide) {
    const int hd = a->head_dim, bs = a->block_size, n_q = t->n_rows * a->group;
    const size_t elem = a->f16 ? sizeof(half) : sizeof(float), block_elems = (size_t)hd * bs;
    const size_t block_bytes = block_elems * elem;
    const char *k_bytes = a->k_cache, *v_bytes = a->v_cache;
    prefetch_bytes(k_bytes + block_offset(a->table[0], t->g, a->n_kv_heads, hd, bs) * elem, block_bytes);
    for (int t0 = 0; t0 < keys; t0 += bs) {
        const int nt = keys - t0 < bs ? keys - t0 : bs;
        const size_t offset = block_offset(a->table[t0 / bs], t->g, a->n_kv_heads, hd, bs);
        if (t0 + bs < keys)
            prefetch_bytes(k_bytes + block_offset(a->table[t0 / bs + 1], t->g, a->n_kv_heads, hd, bs) * elem,
                           block_bytes);
        prefetch_bytes(v_bytes + offset * elem, block_bytes);
        const void *kt = cache_block(a->k_cache, offset, block_elems, a, kv);  // (hd, bs)
        for (int i = 0; i < n_q; i++) {
            float *s = scores + (size_t)i * a->stride + t0;
            const float *qi = qt + (size_t)i * hd;
            if (hd % 4 == 0) score_block(s, qi, kt, bs, hd, nt, 4, kv, wide);
            else score_block(s, qi, kt, bs, hd, nt, 2, kv, wide);
        }
    }
}

// In place: p (keys) = exp(s - max s); returns 1 / sum p. The sum runs in a fixed order
// (16 lanes j mod 16, then the lanes in order), whatever the alignment or vector width.
static CPU_INLINE float softmax_unnormalised(float *p, int keys) {
    const float mx = cpu_max(p, keys);
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

// out rows of the tile (n_rows, H*hd at the group's heads) = sum_t p[t] v_t * inv_sum, each
// (row, head) over its own keys. acc: (n_rows * G, hd) scratch.
static CPU_INLINE void tile_values(float *out, float *acc, const float *scores, const float *inv_sum,
                                   const AttnArgs *a, const AttnTask *t, const int kv, const int wide) {
    const int hd = a->head_dim, bs = a->block_size, q_stride = a->n_heads * hd, n_q = t->n_rows * a->group;
    const int keys_max = t->pos0 + t->n_rows, wide_values = wide && weighted_sum16_matches(hd);
    for (int t0 = 0; t0 < keys_max; t0 += bs) {
        const int nt = keys_max - t0 < bs ? keys_max - t0 : bs;
        const size_t offset = block_offset(a->table[t0 / bs], t->g, a->n_kv_heads, hd, bs);
        const void *vb = cache_block(a->v_cache, offset, (size_t)nt * hd, a, kv);  // (nt, hd)
        for (int i = 0; i < n_q; i++) {
            const int keys = t->pos0 + i / a->group + 1;  // this row's causal range
            const int n = keys - t0 < nt ? keys - t0 : nt;
            if (n <= 0) continue;  // every row sees key 0: its first block sets acc, the others add to it
            float *o = acc + (size_t)i * hd;
            const float *p = scores + (size_t)i * a->stride + t0;
#if defined(__x86_64__) && defined(__GNUC__)
            if (wide_values) {
                weighted_sum16(o, p, vb, n, hd, hd, t0 > 0, kv);
                continue;
            }
#endif
            weighted_sum(o, p, vb, n, hd, hd, t0 > 0, kv);
        }
    }
    for (int i = 0; i < n_q; i++) {
        const int r = i / a->group, hh = i % a->group;
        float *dst = out + (size_t)(t->row0 + r) * q_stride + (size_t)(t->g * a->group + hh) * hd;
        const float *o = acc + (size_t)i * hd;
        for (int d = 0; d < hd; d++) dst[d] = o[d] * inv_sum[i];
    }
}

// ---------------------------------------------------------------------------------------
// Small heads: one (row, head) at a time along its keys, KEYS (8) keys per vector, in every copy
// (so they agree). Vectors of 16 keys for the scores and exponentials in the AVX-512 copy, with
// the sums still 8 lanes wide to keep the bits, were tried: no faster than 8 keys with VL's 32
// registers (stories260K heads, 64 decode rows x 5 layers: 387-395 against 383-400 us, fp16).

// The lanes l < n.
static CPU_INLINE v8i lanes_below(int n) {
    const v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    return lane < ((v8i){0} + n);
}

// Reductions of the 8 lanes in a fixed order: lane l with lane l + 4, then + 2, + 1.
static CPU_INLINE v8f max8(v8f a, v8f b) { return select8(b > a, b, a); }
static CPU_INLINE v8f add8(v8f a, v8f b) { return a + b; }
#define FOLD8(x, op)                                                      \
    do {                                                                  \
        x = op(x, __builtin_shufflevector(x, x, 4, 5, 6, 7, 0, 1, 2, 3)); \
        x = op(x, __builtin_shufflevector(x, x, 2, 3, 0, 1, 6, 7, 4, 5)); \
        x = op(x, __builtin_shufflevector(x, x, 1, 0, 3, 2, 5, 4, 7, 6)); \
    } while (0)
static CPU_INLINE float hmax8(v8f x) {
    FOLD8(x, max8);
    return x[0];
}
static CPU_INLINE float hsum8(v8f x) {
    FOLD8(x, add8);
    return x[0];
}

// o[d] = hsum8(acc[d]) * scale for d < HD, HD = 8 or 16: the same sums, with the dimensions
// folded together (each step adds two shuffles of a pair of vectors, so that one vector
// carries the partial sums of twice as many dimensions in half as many lanes each).
static CPU_INLINE void hsum8_many(float *o, const v8f *acc, float scale, const int HD) {
    const v8f *h = acc;
    v8f y[SMALL_HEAD / 2], z[SMALL_HEAD / 4];
#pragma GCC unroll 8
    for (int k = 0; k < HD / 2; k++)  // 4 lanes each of dimensions 2k, 2k + 1
        y[k] = __builtin_shufflevector(h[2 * k], h[2 * k + 1], 0, 1, 2, 3, 8, 9, 10, 11) +
               __builtin_shufflevector(h[2 * k], h[2 * k + 1], 4, 5, 6, 7, 12, 13, 14, 15);
#pragma GCC unroll 4
    for (int k = 0; k < HD / 4; k++)  // 2 lanes each of dimensions 4k .. 4k + 3
        z[k] = __builtin_shufflevector(y[2 * k], y[2 * k + 1], 0, 1, 4, 5, 8, 9, 12, 13) +
               __builtin_shufflevector(y[2 * k], y[2 * k + 1], 2, 3, 6, 7, 10, 11, 14, 15);
#pragma GCC unroll 2
    for (int k = 0; k < HD / 8; k++) {  // dimensions 8k .. 8k + 7
        const v8f sums = __builtin_shufflevector(z[2 * k], z[2 * k + 1], 0, 2, 4, 6, 8, 10, 12, 14) +
                         __builtin_shufflevector(z[2 * k], z[2 * k + 1], 1, 3, 5, 7, 9, 11, 13, 15);
        store8(o + 8 * k, sums * scale);
    }
}

// cpu_expf (cpu.h) on 8 lanes: the same steps, written with vector operations.
static CPU_INLINE v8f exp8(v8f x) {
    const v8f lo = (v8f){0} - 87.3f, hi = (v8f){0} + 88.0f;
    x = select8(x < lo, lo, x);
    x = select8(x > hi, hi, x);
    v8f n, r;
    CPU_EXP_REDUCE(x, n, r);
    const v8f p = CPU_EXP_TAYLOR7(r);
    const v8i scale = (__builtin_convertvector(n, v8i) + 127) << 23;
    return p * (v8f)scale;
}

// One (row, head) over a small head, or NH = 2 heads of the same row and kv head at once:
// o[h] (HD) = softmax(q[h] . k) v over the row's `keys` keys of kv head g, q[h] (HD) unscaled.
// Pass 1 stores the scores of KEYS keys at a time in s[h] (keys rounded up to KEYS floats; the
// dimensions summed in two chains, d even and d odd, then added) and keeps their lane-wise max;
// pass 2 sums exp(score - max) and those weights times the transposed values, lane-wise in key
// order, then the lanes in a fixed order. Lanes past the row's last key (scores of other slots
// of its last block, whatever they hold) are masked out of the max, the weights and the values.
// Two heads share each load (and, from an fp16 cache, each widening) of keys and values, and
// each head still computes exactly what it computes alone. HD and NH are constants after
// inlining (8 and 16 get their own copies; the vectors stay in registers). No software
// prefetch: a (block, head) is a contiguous run that the hardware prefetcher follows, and
// asking for the next block made 64 stories260K sequences 3% slower.
static CPU_INLINE void small_head_rows(float *const *o, float *const *s, const float *const *q, const AttnArgs *a,
                                       int g, int keys, const int HD, const int NH, const int kv) {
    const int hd = HD, bs = a->block_size, kvh = a->n_kv_heads;
    v8f qv[2][SMALL_HEAD], vmax[2];
#pragma GCC unroll 2
    for (int h = 0; h < NH; h++) {
        vmax[h] = (v8f){0} - INFINITY;
#pragma GCC unroll 16
        for (int d = 0; d < SMALL_HEAD; d++) qv[h][d] = (v8f){0} + (d < HD ? q[h][d] : 0.0f) * a->scale;  // (as acc)
    }
    for (int t0 = 0; t0 < keys; t0 += bs) {
        const size_t offset = block_offset(a->table[t0 / bs], g, kvh, hd, bs);
        const void *kt = cache_block(a->k_cache, offset, (size_t)hd * bs, a, kv);  // (hd, bs)
        const int nt = keys - t0 < bs ? keys - t0 : bs;
        for (int j = 0; j < nt; j += KEYS) {
            v8f even[2], odd[2];
#pragma GCC unroll 2
            for (int h = 0; h < NH; h++) even[h] = qv[h][0] * load8_kv(kt, (size_t)j, kv), odd[h] = (v8f){0};
#pragma GCC unroll 16
            for (int d = 1; d < HD; d++) {
#pragma GCC unroll 2
                for (int h = 0; h < NH; h++) {
                    const v8f term = qv[h][d] * load8_kv(kt, (size_t)d * bs + j, kv);  // (one load for both heads)
                    if (d % 2) odd[h] += term;
                    else even[h] += term;
                }
            }
#pragma GCC unroll 2
            for (int h = 0; h < NH; h++) {
                v8f sc = even[h] + odd[h];
                store8(s[h] + t0 + j, sc);
                if (nt - j < KEYS) sc = select8(lanes_below(nt - j), sc, (v8f){0} - INFINITY);
                vmax[h] = select8(sc > vmax[h], sc, vmax[h]);
            }
        }
    }
    float mx[2];
    v8f acc[2][SMALL_HEAD], sum[2];
#pragma GCC unroll 2
    for (int h = 0; h < NH; h++) {
        mx[h] = hmax8(vmax[h]);
        sum[h] = (v8f){0};
#pragma GCC unroll 16
        for (int d = 0; d < SMALL_HEAD; d++) acc[h][d] = (v8f){0};  // (all of them: GCC cannot see that hd <= 16)
    }
    for (int t0 = 0; t0 < keys; t0 += bs) {
        const size_t offset = block_offset(a->table[t0 / bs], g, kvh, hd, bs);
        const void *vt = cache_block(a->v_cache, offset, (size_t)hd * bs, a, kv);  // (hd, bs)
        const int nt = keys - t0 < bs ? keys - t0 : bs;
        for (int j = 0; j < nt; j += KEYS) {
            v8f p[2];
#pragma GCC unroll 2
            for (int h = 0; h < NH; h++) p[h] = exp8(load8(s[h] + t0 + j) - mx[h]);
            if (nt - j >= KEYS) {
#pragma GCC unroll 2
                for (int h = 0; h < NH; h++) sum[h] += p[h];
#pragma GCC unroll 16
                for (int d = 0; d < HD; d++) {
                    const v8f vd = load8_kv(vt, (size_t)d * bs + j, kv);
#pragma GCC unroll 2
                    for (int h = 0; h < NH; h++) acc[h][d] += p[h] * vd;
                }
            } else {
                const v8i keep = lanes_below(nt - j);
#pragma GCC unroll 2
                for (int h = 0; h < NH; h++) {
                    p[h] = select8(keep, p[h], (v8f){0});
                    sum[h] += p[h];
                }
#pragma GCC unroll 16
                for (int d = 0; d < HD; d++) {
                    const v8f vd = select8(keep, load8_kv(vt, (size_t)d * bs + j, kv), (v8f){0});
#pragma GCC unroll 2
                    for (int h = 0; h < NH; h++) acc[h][d] += p[h] * vd;
                }
            }
        }
    }
#pragma GCC unroll 2
    for (int h = 0; h < NH; h++) {
        const float inv_sum = 1.0f / hsum8(sum[h]);
        if (HD == 8 || HD == 16) hsum8_many(o[h], acc[h], inv_sum, HD);
        else
            for (int d = 0; d < HD; d++) o[h][d] = hsum8(acc[h][d]) * inv_sum;
    }
}

// Every (row, head) of the task's tile for kv head t->g through small_head_rows (heads of 8 and
// 16 floats get their own copies, other sizes run its loops over hd), with the first 2 `stride`
// floats of scratch for the scores. Heads of 8 floats that share the kv head go two at a time
// (small_heads_in_pairs): for them the loads cost the most.
static CPU_INLINE void attention_head_small(float *out, float *scratch, const AttnArgs *a, const AttnTask *t,
                                            const int kv) {
    const int hd = a->head_dim, q_stride = a->n_heads * hd, G = a->group, step = small_heads_in_pairs(hd, G) ? 2 : 1;
    float *s[2] = {scratch, scratch + a->stride};
    for (int r = 0; r < t->n_rows; r++) {
        const int keys = t->pos0 + r + 1;
        for (int hh = 0; hh < G; hh += step) {
            const int nh = G - hh < step ? G - hh : step;
            const size_t at = (size_t)(t->row0 + r) * q_stride + (size_t)(t->g * G + hh) * hd;
            float *o[2] = {out + at, out + at + hd};
            const float *q[2] = {a->q + at, a->q + at + hd};
            if (hd == 8 && nh == 2) small_head_rows(o, s, q, a, t->g, keys, 8, 2, kv);
            else if (hd == 8) small_head_rows(o, s, q, a, t->g, keys, 8, 1, kv);
            else if (hd == 16) small_head_rows(o, s, q, a, t->g, keys, 16, 1, kv);
            else small_head_rows(o, s, q, a, t->g, keys, hd, 1, kv);  // other sizes: loops over hd
        }
    }
}

// One task with its thread's scratch: (ROWS * G, stride) scores, then (ROWS * G, hd) value
// sums, (ROWS * G, hd) scaled queries and (ROWS * G) softmax normalisers.
static CPU_INLINE void attention_head(float *out, float *scratch, const AttnArgs *a, const AttnTask *t,
                                      const int kv, const int wide) {
    if (small_heads(a->head_dim, a->block_size)) {
        attention_head_small(out, scratch, a, t, kv);
        return;
    }
    const int n_q = t->n_rows * a->group;
    float *scores = scratch;
    float *acc = scores + (size_t)ROWS * a->group * a->stride;
    float *qt = acc + (size_t)ROWS * a->group * a->head_dim;
    float *inv_sum = qt + (size_t)ROWS * a->group * a->head_dim;
    tile_queries(qt, a, t);
    tile_scores(scores, qt, a, t, t->pos0 + t->n_rows, kv, wide);
    for (int k = 0; k < n_q; k++)
        inv_sum[k] = softmax_unnormalised(scores + (size_t)k * a->stride, t->pos0 + k / a->group + 1);
    tile_values(out, acc, scores, inv_sum, a, t, kv, wide);
}

static CPU_INLINE void attention_task(float *out, float *scratch, const AttnArgs *a, const AttnTask *task,
                                      const int kv, const int wide) {
    AttnTask t = *task;
    for (t.g = task->g; t.g < task->g + a->heads_per_task; t.g++) attention_head(out, scratch, a, &t, kv, wide);
}

// The copies: AVX2 over an fp32 cache, AVX2 over an fp16 cache read with F16C, the baseline (an
// fp16 cache widened into scratch first), and AVX-512 over either cache, whose general path
// scores 16 keys and sums 16 value floats per vector. Every copy gives the same bits.
typedef void AttentionTaskFn(float *out, float *scratch, const AttnArgs *a, const AttnTask *t);
CPU_AVX2 static void attention_task_avx2(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    attention_task(out, scratch, a, t, KV_F32, 0);
}
CPU_AVX2 static void attention_task_f16c(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    attention_task(out, scratch, a, t, KV_F16C, 0);
}
static void attention_task_base(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    attention_task(out, scratch, a, t, KV_F32, 0);
}
#if defined(__x86_64__) && defined(__GNUC__)
CPU_AVX512 static void attention_task_avx512(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    attention_task(out, scratch, a, t, KV_F32, 1);
}
CPU_AVX512 static void attention_task_avx512_f16(float *out, float *scratch, const AttnArgs *a, const AttnTask *t) {
    attention_task(out, scratch, a, t, KV_F16C, 1);
}
#endif

// The copy for this processor and cache type. The AVX-512 copy is built with AVX512-VL, so the
// small-head path's vectors of 8 get 32 registers there (without VL, GCC confined them to the
// 16 AVX2 registers, and small heads ran faster in the AVX2 copy). Single-thread microbench,
// 64 decode rows x 5 layers, contexts 17..144, stories260K heads (8 floats, 2 per kv head):
// AVX2 copy 431-444 us with fp16, 540-597 us with fp32; AVX-512 copy with VL 383-400 and 460-503.
static AttentionTaskFn *attention_task_copy(int f16) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx512()) return f16 ? attention_task_avx512_f16 : attention_task_avx512;
#endif
    if (cpu_has_avx2()) return f16 ? attention_task_f16c : attention_task_avx2;
    return attention_task_base;
}

void ops_paged_attention_forward(float *out, const float *q, const void *k_cache, const void *v_cache,
                                 const int32_t *block_tables, const int32_t *query_start, const int32_t *context_len,
                                 int n_seqs, int max_blocks, int block_size, int n_heads, int n_kv_heads, int head_dim,
                                 int kv_dtype) {
    if (n_seqs <= 0 || query_start[n_seqs] <= 0) return;
    const int group = n_heads / n_kv_heads, threads = omp_get_max_threads();
    // Tasks: per sequence, tiles of ROWS rows, times groups of heads_per_task kv heads: as many
    // heads per task as still leave 8 tasks per thread (a task of one small head costs about
    // as much to set up and hand out as to compute).
    int n_tiles = 0, max_ctx = 1;
    double work = 0.0;  // multiply-adds, roughly
    for (int s = 0; s < n_seqs; s++) {
        const int n_q = query_start[s + 1] - query_start[s];
        n_tiles += (n_q + ROWS - 1) / ROWS;
        max_ctx = context_len[s] > max_ctx ? context_len[s] : max_ctx;
        work += 2.0 * n_q * context_len[s] * n_heads * head_dim;
    }
    int heads_per_task = n_kv_heads;
    while (heads_per_task > 1 && (n_kv_heads % heads_per_task != 0 ||
                                  (double)n_tiles * (n_kv_heads / heads_per_task) < 8.0 * threads))
        heads_per_task--;
    const int n_tasks = n_tiles * (n_kv_heads / heads_per_task);
    AttnTask *tasks = malloc((size_t)n_tasks * sizeof(AttnTask));
    CHECK(tasks != NULL, "out of memory", "paged attention: %d tasks", n_tasks);
    int ti = 0;
    for (int s = 0; s < n_seqs; s++) {
        const int n_q = query_start[s + 1] - query_start[s];
        for (int r = 0; r < n_q; r += ROWS)
            for (int g = 0; g < n_kv_heads; g += heads_per_task)
                tasks[ti++] = (AttnTask){s, query_start[s] + r, n_q - r < ROWS ? n_q - r : ROWS,
                                         context_len[s] - n_q + r, g};
    }
    const size_t stride = ((size_t)max_ctx + 15) / 16 * 16;
    const int f16 = kv_dtype == OPS_KV_F16, avx2 = cpu_has_avx2();
    AttentionTaskFn *const run_task = attention_task_copy(f16);
    const size_t attn_floats = ((size_t)ROWS * group * (stride + 2 * head_dim + 1) + 15) / 16 * 16;
    const size_t widened_floats = f16 && !avx2 ? ((size_t)head_dim * block_size + 15) / 16 * 16 : 0;
    const size_t per_thread = attn_floats + widened_floats;
    float *scratch = aligned_alloc(64, (size_t)threads * per_thread * sizeof(float));
    CHECK(scratch != NULL, "out of memory; lower inference.max_seqs or the context",
          "paged attention scratch of %d x %zu floats", threads, per_thread);
    AttnArgs base = {.q = q, .k_cache = k_cache, .v_cache = v_cache, .f16 = f16, .block_size = block_size,
                     .n_heads = n_heads, .n_kv_heads = n_kv_heads, .head_dim = head_dim, .group = group,
                     .heads_per_task = heads_per_task, .stride = stride, .scale = 1.0f / sqrtf((float)head_dim)};

#pragma omp parallel for schedule(dynamic, 1) if (n_tasks > 1 && cpu_parallel(work))
    for (int i = 0; i < n_tasks; i++) {
        AttnArgs a = base;
        a.table = block_tables + (size_t)tasks[i].seq * max_blocks;
        float *mine = scratch + (size_t)omp_get_thread_num() * per_thread;
        a.widened = mine + attn_floats;
        run_task(out, mine, &a, &tasks[i]);
    }
    free(scratch);
    free(tasks);
}
