// CPU sampling from logits rows (the rule is spelled out in ops.h): temperature, greedy,
// top-k, top-p and min-p, one uniform per row from the counter-based stream (seed, counter),
// and the logprob of the chosen token under the untruncated distribution at temperature T.
//
// Per row: one pass for the max and argmax of z = logits / T, one for w = exp(z - max) and
// its sum (the logsumexp). Without top-k / top-p, the kept set is {w >= min_p} and one more
// pass walks the cumulative sum. With them, the kept rank prefix is found by selection, not a
// sort: a quickselect by rank for top-k, then a quickselect by probability mass for top-p,
// expected O(V); the prefix is then described by its last token b, and "j is in the prefix"
// is "j ranks before b or is b". Rows run in parallel; scratch is 2 V floats + V ints per thread.
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "core/error.h"
#include "core/rng.h"
#include "cpu/cpu.h"
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

// Samples one row. z, w (V) and ids (V) are scratch. Returns the token; *logprob its logprob.
static int32_t sample_row(const float *logits, int vocab, const OpsSampleParams *sp, float *z, float *w,
                          int32_t *ids, float *logprob) {
    const float T = sp->temperature > 0.0f ? sp->temperature : 1.0f;
    float zmax = -INFINITY;
    int32_t argmax = 0;
    for (int j = 0; j < vocab; j++) {
        z[j] = logits[j] / T;
        if (z[j] != z[j]) z[j] = -INFINITY;  // NaN: never sampled
        if (z[j] > zmax) zmax = z[j], argmax = j;
    }
    if (!isfinite(zmax)) {  // garbage row (all NaN / -inf, or +inf): a valid id, NaN logprob
        *logprob = NAN;
        return argmax;
    }
    double sum = 0.0;
    for (int j = 0; j < vocab; j++) {
        w[j] = cpu_expf(z[j] - zmax);
        sum += w[j];
    }
    const double lse = (double)zmax + log(sum);
    int32_t tok = argmax;
    if (!sp->greedy) {
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
                last = target > 0.0 ? select_top_p(ids, n, z, w, target) : argmax;
            }
        }
        const float min_w = sp->min_p;
        double kept = 0.0;
        int32_t last_kept = argmax;
        for (int j = 0; j < vocab; j++)
            if (w[j] >= min_w && (last < 0 || j == last || ranks_before(z, j, last))) kept += w[j], last_kept = j;
        const double target = stream_uniform(sp->seed, sp->counter) * kept;
        double acc = 0.0;
        tok = last_kept;
        for (int j = 0; j < vocab; j++) {
            if (!(w[j] >= min_w && (last < 0 || j == last || ranks_before(z, j, last)))) continue;
            acc += w[j];
            if (acc > target) {
                tok = j;
                break;
            }
        }
    }
    *logprob = (float)((double)z[tok] - lse);
    return tok;
}

void ops_sample(int32_t *tokens, float *logprobs, const float *logits, const OpsSampleParams *params, int n,
                int vocab) {
    if (n <= 0 || vocab <= 0) return;
    const int threads = omp_get_max_threads();
    const size_t per_thread = 3 * (size_t)vocab;  // z, w (floats) and ids (int32), 4 bytes each
    float *scratch = malloc((size_t)threads * per_thread * sizeof(float));
    CHECK(scratch != NULL, "out of memory", "sampling scratch of %d x %zu floats", threads, per_thread);
#pragma omp parallel for schedule(dynamic, 1) if (n > 1)
    for (int i = 0; i < n; i++) {
        float *z = scratch + (size_t)omp_get_thread_num() * per_thread, *w = z + vocab;
        int32_t *ids = (int32_t *)(w + vocab);
        tokens[i] = sample_row(logits + (size_t)i * vocab, vocab, &params[i], z, w, ids, &logprobs[i]);
    }
    free(scratch);
}
