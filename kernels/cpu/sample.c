// CPU sampling from logits rows (the rule is spelled out in ops.h): temperature, greedy,
// top-k, top-p and min-p, one uniform per row from the counter-based stream (seed, counter),
// and the logprob of the chosen token under the untruncated distribution at temperature T.
//
// Per row: passes for z = logits / T (at T = 1 the row itself when it has no NaN), its max (and
// the first id reaching it), w = exp(z - max) and its sum (the logsumexp), the kept weights wk,
// and the inverse-CDF walk, which skips blocks of 256 ids by their sums. Sums run in double in
// a fixed order (8 interleaved lanes), so every pass vectorises and a row's result never
// depends on the other rows. The row loop is compiled three times (baseline, AVX2+FMA and
// AVX-512, see cpu.h; the last two give the same bits). With cuts, the kept rank prefix is
// found by selection, not a sort: a quickselect by rank for top-k, then a quickselect by
// probability mass for top-p, expected O(V); the prefix is then described by its last token
// b, and "j is in the prefix" is "j ranks before b or is b". Rows run in parallel; scratch per
// thread: 3 V floats, V ints and V / 256 doubles.
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"
#include "cpu/cpu.h"
#include "cpu/vec8.h"
#include "ops.h"

// j comes before k in the rank order (z descending, lower id first on ties).
static inline int ranks_before(const float *z, int j, int k) { return z[j] > z[k] || (z[j] == z[k] && j < k); }

static inline void swap_ids(int32_t *a, int32_t *b) {
    const int32_t t = *a;
    *a = *b;
    *b = t;
}

// Partitions ids[lo, hi) (hi - lo >= 2) around a median-of-three pivot by rank: afterwards the
// pivot sits at the returned index p, ids[lo, p) rank before it and ids(p, hi) after it.
// Stays in bounds even if the order is inconsistent (NaN logits).
static int partition_by_rank(int32_t *ids, int lo, int hi, const float *z) {
    const int mid = lo + (hi - lo) / 2, last = hi - 1;
    if (ranks_before(z, ids[mid], ids[lo])) swap_ids(&ids[mid], &ids[lo]);
    if (ranks_before(z, ids[last], ids[lo])) swap_ids(&ids[last], &ids[lo]);
    if (ranks_before(z, ids[last], ids[mid])) swap_ids(&ids[last], &ids[mid]);
    swap_ids(&ids[mid], &ids[last]);  // the median becomes the pivot, at the end
    const int32_t pivot = ids[last];
    int store = lo;
    for (int i = lo; i < last; i++)
        if (ranks_before(z, ids[i], pivot)) swap_ids(&ids[i], &ids[store++]);
    swap_ids(&ids[store], &ids[last]);
    return store;
}

// Reorders ids[0, n) so that ids[0, k) are the k first tokens of the rank order, with the k-th
// of them at ids[k-1]. 1 <= k <= n.
static void select_top_k(int32_t *ids, int n, int k, const float *z) {
    int lo = 0, hi = n;
    while (hi - lo > 1) {
        const int p = partition_by_rank(ids, lo, hi, z);
        if (p == k - 1) return;
        if (p < k - 1)
            lo = p + 1;
        else
            hi = p;
    }
}

// Of the candidates ids[0, n), the last token (in rank order) of the shortest rank prefix whose
// mass sum w reaches target > 0. Sums in double.
static int32_t select_top_p(int32_t *ids, int n, const float *z, const float *w, double target) {
    int lo = 0, hi = n;
    double acc = 0.0;  // mass of ids[0, lo), which rank before everything in ids[lo, hi)
    while (hi - lo > 16) {
        const int p = partition_by_rank(ids, lo, hi, z);
        double before = 0.0;
        for (int i = lo; i < p; i++) before += w[ids[i]];
        if (acc + before >= target) {
            hi = p;  // the boundary lies among the tokens before the pivot
            continue;
        }
        acc += before;
        if (acc + w[ids[p]] >= target) return ids[p];
        acc += w[ids[p]];
        lo = p + 1;
    }
    for (int i = lo + 1; i < hi; i++)  // insertion sort of the few left, by rank
        for (int j = i; j > lo && ranks_before(z, ids[j], ids[j - 1]); j--) swap_ids(&ids[j], &ids[j - 1]);
    for (int i = lo; i < hi; i++) {
        acc += w[ids[i]];
        if (acc >= target) return ids[i];
    }
    return ids[hi > 0 ? hi - 1 : 0];
}

// One uniform in [0, 1) from the counter-based stream (see ops.h).
static double stream_uniform(uint64_t seed, uint64_t counter) {
    return (double)(rng_mix(seed, counter) >> 11) * 0x1.0p-53;
}

#define SUM_LANES 8    // interleaved partial sums in double: a fixed order that vectorises
#define MAX_LANES 64   // interleaved maxima: 8 vectors of 8
#define WALK_BLOCK 256  // the inverse-CDF walk skips whole blocks by their sums

// Sum of x[0, n) in double: SUM_LANES interleaved partial sums, then the lanes in order. (32
// lanes, as independent chains, ran faster alone but made single-stream decode 3% slower in
// interleaved runs, for reasons not found; these sums overlap the exp pass anyway.)
static CPU_INLINE double lane_sum(const float *x, int n) {
    double lanes[SUM_LANES] = {0};
    int j = 0;
    for (; j + SUM_LANES <= n; j += SUM_LANES)
        for (int l = 0; l < SUM_LANES; l++) lanes[l] += (double)x[j + l];
    for (int l = 0; j < n; j++, l++) lanes[l] += (double)x[j];
    double sum = 0.0;
    for (int l = 0; l < SUM_LANES; l++) sum += lanes[l];
    return sum;
}

// sums[b] = lane_sum of block b (WALK_BLOCK ids) of x (V); returns the sum of the block sums.
static CPU_INLINE double block_sums(const float *x, int vocab, double *sums) {
    double total = 0.0;
    for (int b = 0, i = 0; b < vocab; b += WALK_BLOCK, i++) {
        sums[i] = lane_sum(x + b, vocab - b < WALK_BLOCK ? vocab - b : WALK_BLOCK);
        total += sums[i];
    }
    return total;
}

// cpu_expf(x) for x <= 0 that is not NaN (z - max z), bit for bit: its lower clamp written as
// a max (one vmaxps; cpu_expf's form keeps a NaN, which costs a compare and a blend), and no
// upper clamp, which x <= 0 never reaches. ops_sample of 8 rows on one thread: 18.5 -> 16.8 us
// a row.
static CPU_INLINE float exp_nonpositive(float x) { return cpu_exp_clamped(x > -87.3f ? x : -87.3f); }

// w = exp(z - zmax) (V) with the block sums of w as block_sums gives them, a block at a time
// while it is in L1 (the same sums, in the same order).
static CPU_INLINE double exp_block_sums(float *restrict w, const float *restrict z, float zmax, int vocab,
                                        double *sums) {
    double total = 0.0;
    for (int b = 0, i = 0; b < vocab; b += WALK_BLOCK, i++) {
        const int n = vocab - b < WALK_BLOCK ? vocab - b : WALK_BLOCK;
#pragma omp simd
        for (int j = b; j < b + n; j++) w[j] = exp_nonpositive(z[j] - zmax);
        sums[i] = lane_sum(w + b, n);
        total += sums[i];
    }
    return total;
}

// The first j whose cumulative weight sum_{k <= j} wk[k] exceeds target, skipping blocks by
// their sums (from block_sums) and then walking the crossing block one id at a time; the
// last j with wk[j] > 0 when rounding leaves none.
static int32_t inverse_cdf(const float *wk, int vocab, const double *sums, double target) {
    double acc = 0.0;
    for (int b = 0, i = 0; b < vocab; b += WALK_BLOCK, i++) {
        const int n = vocab - b < WALK_BLOCK ? vocab - b : WALK_BLOCK;
        if (acc + sums[i] > target) {
            double a = acc;
            for (int j = b; j < b + n; j++) {
                a += wk[j];
                if (a > target && wk[j] > 0.0f) return j;
            }
        }
        acc += sums[i];
    }
    for (int j = vocab - 1; j > 0; j--)
        if (wk[j] > 0.0f) return j;
    return 0;
}

// The first j with z[j] == value (0 if none).
static int32_t first_index_of(const float *z, int vocab, float value) {
    for (int32_t j = 0; j < vocab; j++)
        if (z[j] == value) return j;
    return 0;
}

// The max of x[0, n) and whether x holds a NaN, in one read: MAX_LANES lanes of maxima as 8
// vectors that do not wait on each other (they skip NaNs: a compare with NaN is false), and
// one vector of NaN flags. A max is exact in any order.
static CPU_INLINE float lane_max_nan(const float *x, int n, int *has_nan) {
    v8f mx[MAX_LANES / 8];
    v8i nan = {0};
#pragma GCC unroll 8
    for (int a = 0; a < MAX_LANES / 8; a++) mx[a] = (v8f){0} - INFINITY;
    int j = 0;
    for (; j + MAX_LANES <= n; j += MAX_LANES)
#pragma GCC unroll 8
        for (int a = 0; a < MAX_LANES / 8; a++) {
            const v8f v = load8(x + j + 8 * a);
            mx[a] = select8(v > mx[a], v, mx[a]);
            nan |= v != v;
        }
    float lanes[MAX_LANES];
    int nan_lanes[8];
    memcpy(lanes, mx, sizeof lanes);
    memcpy(nan_lanes, &nan, sizeof nan_lanes);
    for (int l = 0; j < n; j++, l++) {
        lanes[l] = x[j] > lanes[l] ? x[j] : lanes[l];
        nan_lanes[l % 8] |= x[j] != x[j];
    }
    CPU_MAX_FOLD(lanes, 32);
    CPU_MAX_FOLD(lanes, 16);
    CPU_MAX_FOLD(lanes, 8);
    CPU_MAX_FOLD(lanes, 4);
    CPU_MAX_FOLD(lanes, 2);
    CPU_MAX_FOLD(lanes, 1);
    *has_nan = 0;
    for (int l = 0; l < 8; l++) *has_nan |= nan_lanes[l];
    return lanes[0];
}

// z = logits / T with NaN as -inf (never sampled), and its max in *zmax. At T = 1 a row without
// NaN is its own z: the row is read once for the max and not copied (the common case; the copy
// and its extra pass cost a fifth of the row's time).
static CPU_INLINE const float *scaled_logits(const float *restrict logits, int vocab, float T, float *restrict z,
                                             float *zmax) {
    if (T == 1.0f) {
        int has_nan;
        *zmax = lane_max_nan(logits, vocab, &has_nan);
        if (!has_nan) return logits;
#pragma omp simd
        for (int j = 0; j < vocab; j++) z[j] = logits[j] == logits[j] ? logits[j] : -INFINITY;
    } else {
#pragma omp simd
        for (int j = 0; j < vocab; j++) {
            const float x = logits[j] / T;
            z[j] = x == x ? x : -INFINITY;
        }
    }
    *zmax = cpu_max(z, vocab);
    return z;
}

// Samples one row. zbuf, w, wk (V floats) and ids (V) are scratch. Returns the token; *logprob
// its logprob. Every pass but the top-k / top-p selection is a plain loop the compiler vectorises.
static CPU_INLINE int32_t sample_row(const float *restrict logits, int vocab, const OpsSampleParams *sp,
                                     float *restrict zbuf, float *restrict w, float *restrict wk, int32_t *ids,
                                     double *sums, float *logprob) {
    const float T = sp->temperature > 0.0f ? sp->temperature : 1.0f;
    float zmax;
    const float *z = scaled_logits(logits, vocab, T, zbuf, &zmax);
    if (!isfinite(zmax)) {  // garbage row (all NaN / -inf, or +inf): a valid id, NaN logprob
        *logprob = NAN;
        return first_index_of(z, vocab, zmax);
    }
    const double sum_w = exp_block_sums(w, z, zmax, vocab, sums);  // the logsumexp's sum, and the walk's without cuts
    const double lse = (double)zmax + log(sum_w);
    int32_t tok;
    if (sp->greedy) {
        tok = first_index_of(z, vocab, zmax);
    } else {
        // The kept rank prefix, described by its last token (-1: no cut).
        int32_t last = -1;
        const int cut_k = sp->top_k > 0 && sp->top_k < vocab;
        const int cut_p = sp->top_p < 1.0f;
        if (cut_k || cut_p) {
            for (int j = 0; j < vocab; j++) ids[j] = j;
            int n = vocab;
            if (cut_k) {
                n = sp->top_k;
                select_top_k(ids, vocab, n, z);
                last = ids[n - 1];
            }
            if (cut_p) {
                double mass = 0.0;
                for (int i = 0; i < n; i++) mass += w[ids[i]];
                const double target = (double)sp->top_p * mass;
                last = target > 0.0 ? select_top_p(ids, n, z, w, target) : first_index_of(z, vocab, zmax);
            }
        }
        const float min_w = sp->min_p;
        const float *kept = w;
        double total = sum_w;
        if (last >= 0 || min_w > 0.0f) {
            // wk = w on the kept tokens (in the rank prefix up to `last`, and w >= min_p), else 0.
            const float zl = last >= 0 ? z[last] : -INFINITY;
            const int32_t jl = last >= 0 ? last : vocab;
#pragma omp simd
            for (int j = 0; j < vocab; j++) {
                const int in_prefix = (z[j] > zl) | ((z[j] == zl) & (j <= jl));
                wk[j] = in_prefix & (w[j] >= min_w) ? w[j] : 0.0f;
            }
            kept = wk;
            total = block_sums(wk, vocab, sums);
        }
        tok = inverse_cdf(kept, vocab, sums, stream_uniform(sp->seed, sp->counter) * total);
    }
    *logprob = (float)((double)z[tok] - lse);
    return tok;
}

CPU_AVX2 static int32_t sample_row_avx2(const float *logits, int vocab, const OpsSampleParams *sp, float *z, float *w,
                                        float *wk, int32_t *ids, double *sums, float *logprob) {
    return sample_row(logits, vocab, sp, z, w, wk, ids, sums, logprob);
}
CPU_AVX512 static int32_t sample_row_avx512(const float *logits, int vocab, const OpsSampleParams *sp, float *z,
                                            float *w, float *wk, int32_t *ids, double *sums, float *logprob) {
    return sample_row(logits, vocab, sp, z, w, wk, ids, sums, logprob);
}
static int32_t sample_row_base(const float *logits, int vocab, const OpsSampleParams *sp, float *z, float *w,
                               float *wk, int32_t *ids, double *sums, float *logprob) {
    return sample_row(logits, vocab, sp, z, w, wk, ids, sums, logprob);
}

void ops_sample(int32_t *tokens, float *logprobs, const float *logits, const OpsSampleParams *params, int n,
                int vocab) {
    if (n <= 0 || vocab <= 0) return;
    const int threads = omp_get_max_threads();
    // z, w, wk (floats), ids (int32) and the block sums (doubles) of one row.
    const size_t per_thread = 4 * (size_t)vocab + 2 * ((size_t)vocab / WALK_BLOCK + 1);
    float *scratch = malloc((size_t)threads * per_thread * sizeof(float));
    CHECK(scratch != NULL, "out of memory", "sampling scratch of %d x %zu floats", threads, per_thread);
    const int avx2 = cpu_has_avx2(), avx512 = cpu_has_avx512();
#pragma omp parallel for schedule(dynamic, 1) if (n > 1 && cpu_parallel((double)n * vocab * 8))
    for (int i = 0; i < n; i++) {
        float *z = scratch + (size_t)omp_get_thread_num() * per_thread, *w = z + vocab, *wk = w + vocab;
        int32_t *ids = (int32_t *)(wk + vocab);
        double *sums = (double *)(wk + 2 * (size_t)vocab);  // 4 V floats in: 8-byte aligned
        const float *row = logits + (size_t)i * vocab;
        tokens[i] = avx512 ? sample_row_avx512(row, vocab, &params[i], z, w, wk, ids, sums, &logprobs[i])
                    : avx2 ? sample_row_avx2(row, vocab, &params[i], z, w, wk, ids, sums, &logprobs[i])
                         : sample_row_base(row, vocab, &params[i], z, w, wk, ids, sums, &logprobs[i]);
    }
    free(scratch);
}
