// CPU causal attention over packed rows with grouped-query attention.
//
// The N rows are cut into sample segments where positions restart at 0. Forward: one task
// per (segment, query head, block of up to QBLOCK query rows); each task computes the block's
// scores against the segment's keys up to its last row with one GEMM, a masked softmax (lse
// saved per row and head), and the output with a second GEMM. Backward: one task per
// (segment, key/value head), so the key and value gradients of a task are written by that
// task alone; it walks the query heads of its group and their query blocks, recomputing the
// probabilities from lse (flash-attention style) and doing four GEMMs per block. Scratch is
// per thread: QBLOCK x (longest segment) floats (two of them in backward).
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

#define QBLOCK 64

typedef struct {
    int start, len;
} Segment;

// Segments of the packed rows: a new one starts at row 0 and at every row with position 0.
// Returns the count; *longest gets the longest length.
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
    // Task list: (segment, head, block); each entry holds the segment index and block start.
    int n_tasks = 0;
    for (int s = 0; s < n_seg; s++) n_tasks += (seg[s].len + QBLOCK - 1) / QBLOCK * n_heads;
    int(*tasks)[3] = malloc((size_t)n_tasks * sizeof *tasks);
    CHECK(tasks != NULL, "out of memory", "attention: %d tasks", n_tasks);
    int t_i = 0;
    for (int s = 0; s < n_seg; s++)
        for (int b = 0; b < seg[s].len; b += QBLOCK)
            for (int h = 0; h < n_heads; h++) tasks[t_i][0] = s, tasks[t_i][1] = h, tasks[t_i][2] = b, t_i++;

    const int threads = omp_get_max_threads();
    const size_t per_thread = (size_t)QBLOCK * longest;
    float *scratch = alloc_scratch(threads, per_thread);
    const int group = n_heads / n_kv_heads;
    const int q_stride = n_heads * head_dim, kv_stride = n_kv_heads * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);

#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; t++) {
        const Segment sg = seg[tasks[t][0]];
        const int h = tasks[t][1], b = tasks[t][2];
        const int g = h / group;
        const int rows = sg.len - b < QBLOCK ? sg.len - b : QBLOCK;
        const int keys = b + rows;  // the block's last row sees keys 0 .. keys-1
        float *S = scratch + (size_t)omp_get_thread_num() * per_thread;  // (rows, keys)
        const float *Q = q + (size_t)(sg.start + b) * q_stride + h * head_dim;
        const float *K = k + (size_t)sg.start * kv_stride + g * head_dim;
        const float *V = v + (size_t)sg.start * kv_stride + g * head_dim;
        // S = scale * Q_block (rows, hd) @ K (keys, hd)^T
        cpu_sgemm(0, 1, rows, keys, head_dim, scale, Q, q_stride, K, kv_stride, 0.0f, S, keys);
        for (int r = 0; r < rows; r++) {
            float *row = S + (size_t)r * keys;
            const int valid = b + r + 1;  // causal: keys 0 .. b+r
            float mx = -INFINITY;
            for (int j = 0; j < valid; j++) mx = row[j] > mx ? row[j] : mx;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int j = 0; j < valid; j++) {
                row[j] = cpu_expf(row[j] - mx);
                sum += row[j];
            }
            const float inv = 1.0f / sum;
#pragma omp simd
            for (int j = 0; j < valid; j++) row[j] *= inv;
            for (int j = valid; j < keys; j++) row[j] = 0.0f;
            if (lse) lse[(size_t)(sg.start + b + r) * n_heads + h] = mx + logf(sum);
        }
        // out_block (rows, hd) = P (rows, keys) @ V (keys, hd)
        cpu_sgemm(0, 0, rows, head_dim, keys, 1.0f, S, keys, V, kv_stride, 0.0f,
                  out + (size_t)(sg.start + b) * q_stride + h * head_dim, q_stride);
    }
    free(scratch);
    free(tasks);
    free(seg);
}

void ops_attention_backward(float *d_q, float *d_k, float *d_v, const float *d_out, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim) {
    if (n <= 0) return;
    Segment *seg;
    int longest;
    const int n_seg = find_segments(positions, n, &seg, &longest);
    const int n_tasks = n_seg * n_kv_heads;
    const int threads = omp_get_max_threads();
    const size_t per_thread = 2 * (size_t)QBLOCK * longest + QBLOCK;
    float *scratch = alloc_scratch(threads, per_thread);
    const int group = n_heads / n_kv_heads;
    const int q_stride = n_heads * head_dim, kv_stride = n_kv_heads * head_dim;
    const float scale = 1.0f / sqrtf((float)head_dim);

#pragma omp parallel for schedule(dynamic, 1)
    for (int t = 0; t < n_tasks; t++) {
        const Segment sg = seg[t / n_kv_heads];
        const int g = t % n_kv_heads;
        float *P = scratch + (size_t)omp_get_thread_num() * per_thread;  // (rows, keys)
        float *dS = P + (size_t)QBLOCK * longest;                         // (rows, keys)
        float *Drow = dS + (size_t)QBLOCK * longest;                      // (rows)
        const float *K = k + (size_t)sg.start * kv_stride + g * head_dim;
        const float *V = v + (size_t)sg.start * kv_stride + g * head_dim;
        float *dK = d_k + (size_t)sg.start * kv_stride + g * head_dim;
        float *dV = d_v + (size_t)sg.start * kv_stride + g * head_dim;
        for (int i = 0; i < sg.len; i++)
            for (int d = 0; d < head_dim; d++) dK[(size_t)i * kv_stride + d] = dV[(size_t)i * kv_stride + d] = 0.0f;
        for (int h = g * group; h < (g + 1) * group; h++) {
            for (int b = 0; b < sg.len; b += QBLOCK) {
                const int rows = sg.len - b < QBLOCK ? sg.len - b : QBLOCK;
                const int keys = b + rows;
                const size_t row0 = (size_t)(sg.start + b);
                const float *Q = q + row0 * q_stride + h * head_dim;
                const float *dO = d_out + row0 * q_stride + h * head_dim;
                const float *O = out + row0 * q_stride + h * head_dim;
                // P = softmax(scale * Q K^T) recomputed from lse; dS = dO V^T first.
                cpu_sgemm(0, 1, rows, keys, head_dim, scale, Q, q_stride, K, kv_stride, 0.0f, P, keys);
                cpu_sgemm(0, 1, rows, keys, head_dim, 1.0f, dO, q_stride, V, kv_stride, 0.0f, dS, keys);
                for (int r = 0; r < rows; r++) {
                    float dsum = 0.0f;
                    for (int d = 0; d < head_dim; d++) dsum += dO[(size_t)r * q_stride + d] * O[(size_t)r * q_stride + d];
                    Drow[r] = dsum;
                }
                for (int r = 0; r < rows; r++) {
                    float *p = P + (size_t)r * keys, *ds = dS + (size_t)r * keys;
                    const int valid = b + r + 1;
                    const float l = lse[(row0 + r) * n_heads + h], D = Drow[r];
#pragma omp simd
                    for (int j = 0; j < valid; j++) {
                        p[j] = cpu_expf(p[j] - l);
                        ds[j] = p[j] * (ds[j] - D);  // dL/dscore (before the scale)
                    }
                    for (int j = valid; j < keys; j++) p[j] = ds[j] = 0.0f;
                }
                // d_q block (rows, hd) = scale * dS @ K;  dK (keys, hd) += scale * dS^T @ Q;
                // dV (keys, hd) += P^T @ dO
                cpu_sgemm(0, 0, rows, head_dim, keys, scale, dS, keys, K, kv_stride, 0.0f,
                          d_q + row0 * q_stride + h * head_dim, q_stride);
                cpu_sgemm(1, 0, keys, head_dim, rows, scale, dS, keys, Q, q_stride, 1.0f, dK, kv_stride);
                cpu_sgemm(1, 0, keys, head_dim, rows, 1.0f, P, keys, dO, q_stride, 1.0f, dV, kv_stride);
            }
        }
    }
    free(scratch);
    free(seg);
}
