// CPU causal attention over packed rows with grouped-query attention, as fused per-row loops.
//
// The N rows are cut into sample segments where positions restart at 0. For one query row i
// of a segment and one head, with its sample's keys 0..i:
//   s_j = q_i . k_j (all j at once from a transposed copy of the segment's keys, so the loop
//   runs over j in SIMD lanes), p = softmax(s / sqrt(hd)) exactly (max, exp, sum), and
//   out_i = sum_j p_j v_j (an axpy over the head dimension per key; for heads of up to
//   SMALL_HEAD floats, dot products along the keys of transposed values); lse_i is saved.
// Backward, per row: p recomputed from lse, dp_j = dout_i . v_j (transposed values),
// ds_j = p_j (dp_j - dout_i . out_i) / sqrt(hd), dq_i = sum_j ds_j k_j; then per block of
// RBLOCK rows, dk_j += sum_i ds_ij q_i and dv_j += sum_i p_ij dout_i (one update of each key's
// gradient row per block).
// Work split: forward tasks are (segment, head, block of QBLOCK query rows); backward tasks are
// (segment, key/value head), so a task alone writes its keys' and values' gradients. Memory:
// per thread, transposed keys (and values) of one segment plus a few rows of its length; no
// (N x N) matrix. The loops are compiled three times (baseline, AVX2+FMA, and AVX-512, where
// the loops GCC vectorises itself run 16 floats wide; see cpu.h).

#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "cpu/vec8.h"
#include "ops.h"

#define QBLOCK 64
#define JBLOCK 32  // keys per block of the score loop (rows of the transposed copies are padded to it)

typedef struct {
    int start, len;
} Segment;

// Segments of the packed rows: a new one starts at row 0 and at every row with position 0.
static int find_segments(const int32_t *positions, int n, Segment **out, int *longest) {
    int count = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || positions[i] == 0) count++;
    Segment *seg = malloc((size_t)(count > 0 ? count : 1) * sizeof(Segment));
    CHECK(seg != NULL, "out of memory", "attention: %d segments", count);
    int s = -1;
    *longest = 0;
    for (int i = 0; i < n; i++) {
        if (i == 0 || positions[i] == 0) seg[++s] = (Segment){i, 0};
        seg[s].len++;
    }
    for (int j = 0; j < count; j++)
        if (seg[j].len > *longest) *longest = seg[j].len;
    *out = seg;
    return count;
}

static int padded(int n) { return (n + JBLOCK - 1) / JBLOCK * JBLOCK; }

// dst (hd, ld) = the first `rows` rows of src (rows, hd, row stride `stride`), transposed;
// columns rows..padded(rows)-1 are zero.
static CPU_INLINE void transpose_rows(float *restrict dst, const float *restrict src, int rows, int stride, int hd,
                                      int ld) {
    const int pad = padded(rows);
    for (int d = 0; d < hd; d++) {
        float *row = dst + (size_t)d * ld;
        for (int j = 0; j < rows; j++) row[j] = src[(size_t)j * stride + d];
        for (int j = rows; j < pad; j++) row[j] = 0.0f;
    }
}

// s[j] = x . t[:, j] for j < padded(n), t (hd, ld) transposed keys or values: JBLOCK keys at a
// time in four vector accumulators.
static CPU_INLINE void dots(float *restrict s, const float *restrict x, const float *restrict t, int n, int hd,
                            int ld) {
    for (int j0 = 0; j0 < n; j0 += JBLOCK) {
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        const float *tr = t + j0;
        for (int d = 0; d < hd; d++, tr += ld) {
            const float xd = x[d];
            a0 += xd * load8(tr);
            a1 += xd * load8(tr + 8);
            a2 += xd * load8(tr + 16);
            a3 += xd * load8(tr + 24);
        }
        store8(s + j0, a0);
        store8(s + j0 + 8, a1);
        store8(s + j0 + 16, a2);
        store8(s + j0 + 24, a3);
    }
}

static CPU_INLINE float dot(const float *restrict a, const float *restrict b, int hd) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < hd; d++) s += a[d] * b[d];
    return s;
}

// Heads of at most SMALL_HEAD floats (vec8.h) sum their values (and the backward its dq) from
// transposed rows, with vectors along the keys: every FMA covers 8 keys and the head's
// dimensions are the independent chains.

// o (HD) = sum_{j < n} p[j] t[:, j] with t (HD, ld) transposed rows: per dimension d, 8 lanes of
// partial sums (keys j mod 8, in order), then the lanes in order. HD is a constant after
// inlining (HD sums of 8 keys in registers).
static CPU_INLINE void weighted_sum_t_hd(float *restrict o, const float *restrict p, const float *restrict t, int n,
                                         int ld, const int HD) {
    v8f acc[SMALL_HEAD];
#pragma GCC unroll 16
    for (int d = 0; d < HD; d++) acc[d] = (v8f){0};
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        const v8f pj = load8(p + j);
#pragma GCC unroll 16
        for (int d = 0; d < HD; d++) acc[d] += pj * load8(t + (size_t)d * ld + j);
    }
    for (int l = 0; j < n; j++, l++)
#pragma GCC unroll 16
        for (int d = 0; d < HD; d++) acc[d][l] += p[j] * t[(size_t)d * ld + j];
#pragma GCC unroll 16
    for (int d = 0; d < HD; d++) {
        float sum = acc[d][0];
        for (int l = 1; l < 8; l++) sum += acc[d][l];
        o[d] = sum;
    }
}

// weighted_sum_t_hd for any hd <= SMALL_HEAD (the common head sizes get their own copies).
static CPU_INLINE void weighted_sum_t(float *restrict o, const float *restrict p, const float *restrict t, int n,
                                      int hd, int ld) {
    switch (hd) {
        case 8: weighted_sum_t_hd(o, p, t, n, ld, 8); break;
        case 16: weighted_sum_t_hd(o, p, t, n, ld, 16); break;
        default:
            for (int d = 0; d < hd; d++) weighted_sum_t_hd(o + d, p, t + (size_t)d * ld, n, ld, 1);
    }
}

// The loops over the keys of one row with vectors along the head dimension. NV = hd / 8 is a
// compile-time constant in the specialised copies (accumulators stay in registers); NV = 0 is
// the plain version for any hd. The dispatchers below run heads of any multiple of 8 as
// slices of at most 64 floats through the specialised copies (BY_NV, vec8.h).

#define RBLOCK 32  // query rows whose key and value gradients are summed before touching memory

// dK[j] += sum_r DS[r][j] q_r and dV[j] += sum_r P[r][j] dO_r for keys j0 .. j0 + ju - 1 (ju, NV
// constants after inlining: 2 ju NV vector sums in registers), the rows summed in order.
static CPU_INLINE void key_value_rows(float *restrict dK, float *restrict dV, const float *restrict DS,
                                      const float *restrict P, const float *restrict q, const float *restrict dO,
                                      int rows, int j0, const int ju, int ld, int qs, int stride, const int NV) {
    v8f ka[4][8], va[4][8];
#pragma GCC unroll 4
    for (int jj = 0; jj < ju; jj++)
#pragma GCC unroll 8
        for (int u = 0; u < NV; u++) ka[jj][u] = (v8f){0}, va[jj][u] = (v8f){0};
    for (int r = 0; r < rows; r++) {
        const float *qr = q + (size_t)r * qs, *or = dO + (size_t)r * qs;
#pragma GCC unroll 4
        for (int jj = 0; jj < ju; jj++) {
            const float dsj = DS[(size_t)r * ld + j0 + jj], pj = P[(size_t)r * ld + j0 + jj];
#pragma GCC unroll 8
            for (int u = 0; u < NV; u++) {
                ka[jj][u] += dsj * load8(qr + 8 * u);
                va[jj][u] += pj * load8(or + 8 * u);
            }
        }
    }
#pragma GCC unroll 4
    for (int jj = 0; jj < ju; jj++) {
        float *kr = dK + (size_t)(j0 + jj) * stride, *vr = dV + (size_t)(j0 + jj) * stride;
#pragma GCC unroll 8
        for (int u = 0; u < NV; u++) {
            store8(kr + 8 * u, load8(kr + 8 * u) + ka[jj][u]);
            store8(vr + 8 * u, load8(vr + 8 * u) + va[jj][u]);
        }
    }
}

// For j < n: dK[j] += sum_r DS[r][j] q_r;  dV[j] += sum_r P[r][j] dO_r over the `rows` rows of a
// block (DS, P (rows, ld), zero where a row does not see key j; q_r, dO_r rows of stride qs).
static CPU_INLINE void key_value_updates_nv(float *restrict dK, float *restrict dV, const float *restrict DS,
                                            const float *restrict P, const float *restrict q,
                                            const float *restrict dO, int rows, int n, int ld, int qs, int stride,
                                            int hd, const int NV) {
    if (NV == 0) {
        for (int j = 0; j < n; j++)
            for (int r = 0; r < rows; r++)
                for (int d = 0; d < hd; d++) {
                    dK[(size_t)j * stride + d] += DS[(size_t)r * ld + j] * q[(size_t)r * qs + d];
                    dV[(size_t)j * stride + d] += P[(size_t)r * ld + j] * dO[(size_t)r * qs + d];
                }
        return;
    }
    // JU keys at once: each (key, slice) sums its rows in one dependent FMA chain, so with a small
    // head (NV = 1: two chains per key) several keys keep the FMA units busy. Every output still
    // sums its rows in order: the same bits whatever JU.
    const int JU = NV >= 4 ? 1 : NV >= 2 ? 2 : 4;  // a constant in each specialised copy
    int j = 0;
    for (; j + JU <= n; j += JU) key_value_rows(dK, dV, DS, P, q, dO, rows, j, JU, ld, qs, stride, NV);
    for (; j < n; j++) key_value_rows(dK, dV, DS, P, q, dO, rows, j, 1, ld, qs, stride, NV);
}

static CPU_INLINE void key_value_updates(float *restrict dK, float *restrict dV, const float *restrict DS,
                                         const float *restrict P, const float *restrict q,
                                         const float *restrict dO, int rows, int n, int ld, int qs, int stride,
                                         int hd) {
    if (hd % 8 != 0) {
        key_value_updates_nv(dK, dV, DS, P, q, dO, rows, n, ld, qs, stride, hd, 0);
        return;
    }
    for (int d0 = 0; d0 < hd; d0 += 64) {
        const int nv = (hd - d0 < 64 ? hd - d0 : 64) / 8;
#define KV(NV) key_value_updates_nv(dK + d0, dV + d0, DS, P, q + d0, dO + d0, rows, n, ld, qs, stride, 8 * (NV), NV)
        BY_NV(KV)
#undef KV
    }
}

typedef struct {
    const float *q, *k, *v, *d_out, *out, *lse;
    float *o, *lse_out, *d_q, *d_k, *d_v;
    int n_heads, n_kv_heads, head_dim, q_stride, kv_stride;
    float scale;
} Args;

// Forward of query rows [b, b + rows) of segment sg for head h. work: per-thread scratch.
static CPU_INLINE void forward_block(const Args *a, Segment sg, int h, int b, int rows, float *work) {
    const int hd = a->head_dim, g = h / (a->n_heads / a->n_kv_heads), keys = b + rows, ld = padded(keys);
    const int small = hd <= SMALL_HEAD;
    float *kt = work;                    // (hd, ld) transposed keys 0..keys-1
    float *vt = kt + (size_t)hd * ld;    // small heads: (hd, ld) transposed values 0..keys-1
    float *s = vt + (small ? (size_t)hd * ld : 0);  // (ld) scores, then probabilities
    float *acc = s + ld;                 // (hd) output accumulator
    const float *K = a->k + (size_t)sg.start * a->kv_stride + g * hd;
    const float *V = a->v + (size_t)sg.start * a->kv_stride + g * hd;
    transpose_rows(kt, K, keys, a->kv_stride, hd, ld);
    if (small) transpose_rows(vt, V, keys, a->kv_stride, hd, ld);
    for (int r = b; r < b + rows; r++) {
        const size_t row = (size_t)(sg.start + r);
        const float *q = a->q + row * a->q_stride + (size_t)h * hd;
        const int n = r + 1;  // causal: keys 0..r
        dots(s, q, kt, n, hd, ld);
        const float mx = cpu_max(s, n) * a->scale;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < n; j++) {
            s[j] = cpu_expf(s[j] * a->scale - mx);
            sum += s[j];
        }
        if (small) weighted_sum_t(acc, s, vt, n, hd, ld);
        else weighted_sum(acc, s, V, n, a->kv_stride, hd, 0, KV_F32);
        const float inv = 1.0f / sum;
        float *o = a->o + row * a->q_stride + (size_t)h * hd;
#pragma omp simd
        for (int d = 0; d < hd; d++) o[d] = acc[d] * inv;
        if (a->lse_out) a->lse_out[row * a->n_heads + h] = mx + logf(sum);
    }
}

// Backward of segment sg for key/value head g (all its query heads and rows), RBLOCK query
// rows at a time.
static CPU_INLINE void backward_group(const Args *a, Segment sg, int g, float *work) {
    const int hd = a->head_dim, group = a->n_heads / a->n_kv_heads, L = sg.len, ld = padded(L);
    const int qs = a->q_stride;
    float *kt = work;                          // (hd, ld) transposed keys
    float *vt = kt + (size_t)hd * ld;          // (hd, ld) transposed values
    float *P = vt + (size_t)hd * ld;           // (RBLOCK, ld) probabilities of the block's rows
    float *DS = P + (size_t)RBLOCK * ld;       // (RBLOCK, ld) d scores (dp first)
    const float *K = a->k + (size_t)sg.start * a->kv_stride + g * hd;
    const float *V = a->v + (size_t)sg.start * a->kv_stride + g * hd;
    float *dK = a->d_k + (size_t)sg.start * a->kv_stride + g * hd;
    float *dV = a->d_v + (size_t)sg.start * a->kv_stride + g * hd;
    transpose_rows(kt, K, L, a->kv_stride, hd, ld);
    transpose_rows(vt, V, L, a->kv_stride, hd, ld);
    for (int j = 0; j < L; j++) {
        memset(dK + (size_t)j * a->kv_stride, 0, (size_t)hd * sizeof(float));
        memset(dV + (size_t)j * a->kv_stride, 0, (size_t)hd * sizeof(float));
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        for (int r0 = 0; r0 < L; r0 += RBLOCK) {
            const int rows = L - r0 < RBLOCK ? L - r0 : RBLOCK, keys = r0 + rows;
            const size_t at0 = (size_t)(sg.start + r0) * qs + (size_t)h * hd;
            for (int i = 0; i < rows; i++) {
                const size_t row = (size_t)(sg.start + r0 + i), at = at0 + (size_t)i * qs;
                const float *q = a->q + at, *dO = a->d_out + at;
                const int n = r0 + i + 1;  // causal: keys 0 .. r0+i
                float *p = P + (size_t)i * ld, *ds = DS + (size_t)i * ld;
                const float l = a->lse[row * a->n_heads + h], D = dot(dO, a->out + at, hd);
                dots(p, q, kt, n, hd, ld);
                dots(ds, dO, vt, n, hd, ld);
#pragma omp simd
                for (int j = 0; j < n; j++) {
                    p[j] = cpu_expf(p[j] * a->scale - l);
                    ds[j] = p[j] * (ds[j] - D) * a->scale;
                }
                for (int j = n; j < keys; j++) p[j] = ds[j] = 0.0f;
                if (hd <= SMALL_HEAD) weighted_sum_t(a->d_q + at, ds, kt, n, hd, ld);  // dq = sum_j ds_j k_j
                else weighted_sum(a->d_q + at, ds, K, n, a->kv_stride, hd, 0, KV_F32);
            }
            key_value_updates(dK, dV, DS, P, a->q + at0, a->d_out + at0, rows, keys, ld, qs, a->kv_stride, hd);
        }
    }
}

CPU_AVX2 static void forward_block_avx2(const Args *a, Segment sg, int h, int b, int rows, float *work) {
    forward_block(a, sg, h, b, rows, work);
}
static void forward_block_base(const Args *a, Segment sg, int h, int b, int rows, float *work) {
    forward_block(a, sg, h, b, rows, work);
}
CPU_AVX2 static void backward_group_avx2(const Args *a, Segment sg, int g, float *work) {
    backward_group(a, sg, g, work);
}
static void backward_group_base(const Args *a, Segment sg, int g, float *work) { backward_group(a, sg, g, work); }
CPU_AVX512 static void forward_block_avx512(const Args *a, Segment sg, int h, int b, int rows, float *work) {
    forward_block(a, sg, h, b, rows, work);
}
CPU_AVX512 static void backward_group_avx512(const Args *a, Segment sg, int g, float *work) {
    backward_group(a, sg, g, work);
}

static float *alloc_scratch(int threads, size_t per_thread) {
    float *p = malloc((size_t)threads * per_thread * sizeof(float));
    CHECK(p != NULL, "out of memory; shorten the longest sample", "attention scratch of %d x %zu floats", threads,
          per_thread);
    return p;
}

void ops_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim) {
    if (n <= 0) return;
    Segment *seg;
    int longest;
    const int n_seg = find_segments(positions, n, &seg, &longest);
    // Tasks (segment, block, head), later blocks (more keys) first for the dynamic schedule.
    int n_tasks = 0;
    for (int s = 0; s < n_seg; s++) n_tasks += (seg[s].len + QBLOCK - 1) / QBLOCK * n_heads;
    int(*tasks)[3] = malloc((size_t)n_tasks * sizeof *tasks);
    CHECK(tasks != NULL, "out of memory", "attention: %d tasks", n_tasks);
    int t_i = 0;
    for (int blk = (longest - 1) / QBLOCK; blk >= 0; blk--)
        for (int s = 0; s < n_seg; s++)
            if (blk * QBLOCK < seg[s].len)
                for (int h = 0; h < n_heads; h++) tasks[t_i][0] = s, tasks[t_i][1] = h, tasks[t_i][2] = blk * QBLOCK, t_i++;
    const Args a = {.q = q, .k = k, .v = v, .o = out, .lse_out = lse, .n_heads = n_heads, .n_kv_heads = n_kv_heads,
                    .head_dim = head_dim, .q_stride = n_heads * head_dim, .kv_stride = n_kv_heads * head_dim,
                    .scale = 1.0f / sqrtf((float)head_dim)};
    // forward_block's kt (and vt for small heads) of head_dim rows, s of one row, acc.
    const size_t per_thread = (size_t)(head_dim * (head_dim <= SMALL_HEAD ? 2 : 1) + 1) * padded(longest) + head_dim;
    float *scratch = alloc_scratch(omp_get_max_threads(), per_thread);
    const int avx2 = cpu_has_avx2(), avx512 = cpu_has_avx512();
    double work = 0;  // multiply-adds: about len^2 / 2 x hd x 2 per segment and head
    for (int s = 0; s < n_seg; s++) work += (double)seg[s].len * seg[s].len * head_dim * n_heads;
#pragma omp parallel for schedule(dynamic, 1) if (cpu_parallel(work))
    for (int t = 0; t < n_tasks; t++) {
        const Segment sg = seg[tasks[t][0]];
        const int h = tasks[t][1], b = tasks[t][2];
        const int rows = sg.len - b < QBLOCK ? sg.len - b : QBLOCK;
        float *work = scratch + (size_t)omp_get_thread_num() * per_thread;
        if (avx512) forward_block_avx512(&a, sg, h, b, rows, work);
        else if (avx2) forward_block_avx2(&a, sg, h, b, rows, work);
        else forward_block_base(&a, sg, h, b, rows, work);
    }
    free(scratch);
    free(tasks);
    free(seg);
}

static int by_length_desc(const void *x, const void *y) {
    const Segment *a = x, *b = y;
    return (b->len > a->len) - (b->len < a->len);
}

void ops_attention_backward(float *d_q, float *d_k, float *d_v, const float *d_out, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim) {
    if (n <= 0) return;
    Segment *seg;
    int longest;
    const int n_seg = find_segments(positions, n, &seg, &longest);
    qsort(seg, (size_t)n_seg, sizeof(Segment), by_length_desc);  // longest first: better balance
    const Args a = {.q = q, .k = k, .v = v, .d_out = d_out, .out = out, .lse = lse, .d_q = d_q, .d_k = d_k,
                    .d_v = d_v, .n_heads = n_heads, .n_kv_heads = n_kv_heads, .head_dim = head_dim,
                    .q_stride = n_heads * head_dim, .kv_stride = n_kv_heads * head_dim,
                    .scale = 1.0f / sqrtf((float)head_dim)};
    const size_t per_thread = (size_t)(2 * head_dim + 2 * RBLOCK) * padded(longest);
    float *scratch = alloc_scratch(omp_get_max_threads(), per_thread);
    const int avx2 = cpu_has_avx2(), avx512 = cpu_has_avx512();
    const int n_tasks = n_seg * n_kv_heads;
    double work = 0;
    for (int s = 0; s < n_seg; s++) work += 2.0 * seg[s].len * seg[s].len * head_dim * n_heads;
#pragma omp parallel for schedule(dynamic, 1) if (cpu_parallel(work))
    for (int t = 0; t < n_tasks; t++) {
        float *work = scratch + (size_t)omp_get_thread_num() * per_thread;
        if (avx512) backward_group_avx512(&a, seg[t / n_kv_heads], t % n_kv_heads, work);
        else if (avx2) backward_group_avx2(&a, seg[t / n_kv_heads], t % n_kv_heads, work);
        else backward_group_base(&a, seg[t / n_kv_heads], t % n_kv_heads, work);
    }
    free(scratch);
    free(seg);
}
