// CPU linear layers: out = in @ W^T (+ bias) and its backward, as GEMMs split among the
// OpenMP threads (each thread one single-threaded BLAS call on its share). Many rows: split
// the rows; few rows (decode): split the output columns so every thread still has work, and
// for one to three rows use matrix-vector products.
#include <omp.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

// Below this many rows per thread the split goes over columns instead of rows.
#define MIN_ROWS_PER_THREAD 32
// Up to this many rows (decode of a few sequences), one matrix-vector product per row: it
// streams the weight once per row, while sgemm packs the whole weight on every call (measured
// on Zen 2 for 288x768: 1 row 17 us vs 82 us, 4 rows even).
#define MAX_GEMV_ROWS 3
// Up to this many rows, weights of a registered parameter buffer are multiplied in their packed
// copy (packed_matmul.c): the input rows stay in cache while each panel of the weight streams.
#define MAX_PACKED_ROWS 256
#define PACKED_CHUNKS_PER_THREAD 8  // panel chunks per thread in a packed product (load balance)
#define MIN_SPLIT_ROWS 12           // rows per part, at least, when a chunk is split by rows (MR512)

// out (n, O) (+)= in (n, I) @ W^T for a few rows with W packed (cpu_packed_weight). The panels
// go out in PACKED_CHUNKS_PER_THREAD chunks per thread, taken in turn, so that a thread slowed
// down (another tenant on its core) does not hold the other threads at the end of the call; a
// stale copy's panels are packed by the thread that takes them, before it multiplies them.
// When the chunks do not share out evenly (a 288-wide product at 64 rows has 9 panel pairs for
// 2 threads: one thread did 5, the other 4), the last few go out as row parts, one per thread
// (each output's sum is the same whatever the rows beside it, see packed_matmul.c).
static void matmul_packed(const CpuOutput *out, const float *in, CpuPackedWeight *pw, int needs_packing,
                          const float *bias, int n, int in_dim, int out_dim, int accumulate) {
    const int panels = cpu_packed_panels(pw);
#pragma omp parallel if (cpu_parallel((double)n * in_dim * out_dim))
    {
        const int threads = omp_get_num_threads();
        int per_chunk = (panels + PACKED_CHUNKS_PER_THREAD * threads - 1) / (PACKED_CHUNKS_PER_THREAD * threads);
        per_chunk += per_chunk % 2;  // whole pairs: the AVX-512 kernel runs a lone panel at half its pace
        const int chunks = (panels + per_chunk - 1) / per_chunk;
        // Chunks split into row parts (not while packing: two threads would pack one panel).
        const int split = !needs_packing && n >= threads * MIN_SPLIT_ROWS ? chunks % threads : 0;
        const int whole = chunks - split;
#pragma omp for schedule(dynamic, 1)
        for (int task = 0; task < whole + split * threads; task++) {
            const int c = task < whole ? task : whole + (task - whole) / threads;
            const int part = task < whole ? 0 : (task - whole) % threads, parts = task < whole ? 1 : threads;
            const int r0 = n * part / parts, r1 = n * (part + 1) / parts;
            const int b = c * per_chunk, e = b + per_chunk < panels ? b + per_chunk : panels;
            if (needs_packing) cpu_packed_pack(pw, b, e);
            CpuOutput rows = *out;  // from row r0 on
            for (int s = 0; s < rows.count; s++) rows.out[s] += (size_t)r0 * (rows.begin[s + 1] - rows.begin[s]);
            cpu_packed_gemm(&rows, in + (size_t)r0 * in_dim, pw, r1 - r0, b, e, accumulate);
            if (bias) {  // (plain products only: one segment)
                const int c0 = b * CPU_PACKED_PANEL, c_end = e * CPU_PACKED_PANEL;
                const int c1 = c_end < out_dim ? c_end : out_dim;
                for (int i = r0; i < r1; i++) {
                    float *row = out->out[0] + (size_t)i * out_dim;
                    for (int o = c0; o < c1; o++) row[o] += bias[o];
                }
            }
        }
    }
}

// The product by the packed copy of weight (out_dim, in_dim) when it has one and n is small
// enough; returns 0 (nothing done) otherwise.
static int matmul_by_packed_copy(const CpuOutput *out, const float *in, const float *weight, const float *bias, int n,
                                 int in_dim, int out_dim, int accumulate) {
    if (n > MAX_PACKED_ROWS) return 0;
    int needs_packing = 0;
    CpuPackedWeight *pw;
    if (omp_in_parallel()) {
        // Concurrent batch slices (ops_run_slices): one at a time finds the packed copy, and
        // packs it if stale, before any of them multiplies by it.
#pragma omp critical(asyncrl_packed_weights)
        {
            pw = cpu_packed_weight(weight, out_dim, in_dim, &needs_packing);
            if (pw && needs_packing) cpu_packed_pack(pw, 0, cpu_packed_panels(pw));
        }
        needs_packing = 0;
    } else {
        pw = cpu_packed_weight(weight, out_dim, in_dim, &needs_packing);
    }
    if (!pw) return 0;
    matmul_packed(out, in, pw, needs_packing, bias, n, in_dim, out_dim, accumulate);
    return 1;
}

void ops_matmul_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                        int out_dim, int accumulate) {
    const CpuOutput whole = {.count = 1, .begin = {0, out_dim}, .out = {out}};
    if (matmul_by_packed_copy(&whole, in, weight, bias, n, in_dim, out_dim, accumulate)) return;
    // Each sgemm call packs the part of the weight it reads: splitting the rows makes every
    // thread pack the whole weight, splitting the columns packs it once in all. So rows are
    // split only when they outnumber the weight's rows (then packing the input dominates).
    const int by_rows = n >= MIN_ROWS_PER_THREAD * omp_get_max_threads() && n >= out_dim;
    // Parallel from a 181 x 181 weight on for a single row: a decode step's matrix-vector
    // products are memory-bound, and two threads stream a weight faster than one (288 x 288 on
    // Zen 2: single-stream decode of the stories15M shape 257 -> 340 tokens/s).
#pragma omp parallel if (cpu_parallel((double)n * in_dim * out_dim))
    {
        size_t b, e;
        if (by_rows) {
            cpu_split((size_t)n, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
            // out[b:e] (rows, O) = in[b:e] (rows, I) @ W^T
            cpu_sgemm(0, 1, (int)(e - b), out_dim, in_dim, 1.0f, in + b * in_dim, in_dim, weight, in_dim,
                      accumulate ? 1.0f : 0.0f, out + b * out_dim, out_dim);
            if (bias)
                for (size_t i = b; i < e; i++) {
                    float *row = out + i * out_dim;
                    for (int o = 0; o < out_dim; o++) row[o] += bias[o];
                }
        } else {
            cpu_split((size_t)out_dim, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
            // out[:, b:e] (N, cols) = in (N, I) @ W[b:e]^T
            if (n <= MAX_GEMV_ROWS)
                for (int i = 0; i < n; i++)
                    cpu_sgemv((int)(e - b), in_dim, 1.0f, weight + b * in_dim, in_dim, in + (size_t)i * in_dim,
                              accumulate ? 1.0f : 0.0f, out + (size_t)i * out_dim + b);
            else
                cpu_sgemm(0, 1, n, (int)(e - b), in_dim, 1.0f, in, in_dim, weight + b * in_dim, in_dim,
                          accumulate ? 1.0f : 0.0f, out + b, out_dim);
            if (bias)
                for (int i = 0; i < n; i++) {
                    float *row = out + (size_t)i * out_dim;
                    for (size_t o = b; o < e; o++) row[o] += bias[o];
                }
        }
    }
}

void ops_matmul_forward_stacked(float *const *outs, const float *in, const float *weight, const int *out_dims,
                                int count, int n, int in_dim) {
    CHECK(count >= 1 && count <= CPU_MAX_SEGMENTS, "stack at most 4 weights per call",
          "ops_matmul_forward_stacked: %d weights", count);
    CpuOutput stacked = {.count = count};
    int panels_whole = 1;  // every weight a whole number of panels: one product by the stack
    for (int j = 0; j < count; j++) {
        stacked.begin[j + 1] = stacked.begin[j] + out_dims[j];
        stacked.out[j] = outs[j];
        panels_whole &= out_dims[j] % CPU_PACKED_PANEL == 0;
    }
    const int out_dim = stacked.begin[count];
    if (panels_whole && matmul_by_packed_copy(&stacked, in, weight, NULL, n, in_dim, out_dim, 0)) return;
    for (int j = 0; j < count; j++)
        ops_matmul_forward(outs[j], in, weight + (size_t)stacked.begin[j] * in_dim, NULL, n, in_dim, out_dims[j], 0);
}

void ops_matmul_backward(float *d_in, float *d_weight, float *d_bias, const float *d_out, const float *in,
                         const float *weight, int n, int in_dim, int out_dim, int accumulate_d_in) {
    const int threads = omp_get_max_threads();
    const int in_by_rows = n >= MIN_ROWS_PER_THREAD * threads;
    const int w_by_rows = out_dim >= 16 * threads;
#pragma omp parallel if (cpu_parallel((double)n * in_dim * out_dim / 8))
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t b, e;
        if (d_in) {
            if (in_by_rows) {
                // d_in[b:e] (rows, I) = d_out[b:e] (rows, O) @ W (O, I)
                cpu_split((size_t)n, t, nt, &b, &e);
                cpu_sgemm(0, 0, (int)(e - b), in_dim, out_dim, 1.0f, d_out + b * out_dim, out_dim, weight, in_dim,
                          accumulate_d_in ? 1.0f : 0.0f, d_in + b * in_dim, in_dim);
            } else {
                // d_in[:, b:e] (N, cols) = d_out (N, O) @ W[:, b:e]
                cpu_split((size_t)in_dim, t, nt, &b, &e);
                cpu_sgemm(0, 0, n, (int)(e - b), out_dim, 1.0f, d_out, out_dim, weight + b, in_dim,
                          accumulate_d_in ? 1.0f : 0.0f, d_in + b, in_dim);
            }
        }
        if (d_weight) {
            if (w_by_rows) {
                // d_W[b:e] (rows, I) += d_out[:, b:e]^T (rows, N) @ in (N, I)
                cpu_split((size_t)out_dim, t, nt, &b, &e);
                cpu_sgemm(1, 0, (int)(e - b), in_dim, n, 1.0f, d_out + b, out_dim, in, in_dim, 1.0f,
                          d_weight + b * in_dim, in_dim);
            } else {
                // d_W[:, b:e] (O, cols) += d_out^T (O, N) @ in[:, b:e] (N, cols)
                cpu_split((size_t)in_dim, t, nt, &b, &e);
                cpu_sgemm(1, 0, out_dim, (int)(e - b), n, 1.0f, d_out, out_dim, in + b, in_dim, 1.0f, d_weight + b,
                          in_dim);
            }
        }
        if (d_bias) {
            cpu_split((size_t)out_dim, t, nt, &b, &e);
            for (int i = 0; i < n; i++) {
                const float *row = d_out + (size_t)i * out_dim;
                for (size_t o = b; o < e; o++) d_bias[o] += row[o];
            }
        }
    }
}
