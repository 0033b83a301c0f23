// Decode-sized GEMMs against weights packed once per parameter update.
//
// With few rows (the decode of up to a few hundred sequences) a linear layer is
// out (N, O) = in (N, I) @ W^T with W (O, I) far larger than the input. OpenBLAS packs the
// part of W it reads on every call, which at 64 rows costs a fifth of a decode step, and
// first zeroes the output in a separate pass. Here W is packed once, after each change of the
// parameter buffer it lies in (ops_params_updated), into panels of PANEL output rows,
// Wp (ceil(O / PANEL), I, PANEL): panel p holds W[p*PANEL + j][k] at (p * I + k) * PANEL + j,
// zero past the last row. A micro-kernel keeps MR x PANEL sums in registers: for each k it
// reads PANEL packed weights and broadcasts MR inputs. Every output sums over k in order
// whatever the rows next to it, so a row's result does not depend on the batch.
//
// Weights that lie one after another (a layer's q, k and v projections) are packed as one
// stacked weight and multiplied in one pass (ops_matmul_forward_stacked): a CpuOutput sends
// each panel's columns to the output of the weight it belongs to (cpu.h), and a panel pair
// that would span two of them runs as two single panels. A single stream then forks its
// threads 4 times a layer instead of 7.
//
// Only weights inside a registered parameter buffer are packed (any other pointer returns
// NULL and the caller uses BLAS). The packed copies cost as much memory again as the weights
// that decode reads; they are made lazily, by the first call that needs them after an update,
// each thread packing the panels it then multiplies.
//
// An output far larger than the caches (the logits: 64 rows x 32000 ids is 8 MB) is written
// with non-temporal stores: a plain store first reads the line it writes into (a miss to
// memory for every 16 outputs), and those reads cost the output layer an eighth of its time.
// Where the L3 is large enough to keep it (see stream_output), plain stores leave it there.
#pragma GCC optimize("fp-contract=fast")
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>  // _mm_stream_ps, _mm_sfence: SSE, in every x86-64 build
#endif

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

#define PANEL CPU_PACKED_PANEL  // output columns per panel (16): two vectors of 8 floats
#define MR 6      // input rows per micro-kernel call
#define PREFETCH_MIN_GROUPS 3  // row groups from which the next panel is prefetched (bench_decode, see packed_gemm)
#define MAX_BUFFERS 64
// Outputs of at least this many bytes are stored past the caches (4x the L2 of Zen 2 / recent
// Intel cores; stories15M logits at 64 rows: 8 MB, its largest other decode output 0.2 MB),
// unless a 16th of the L3 is larger (see stream_output).
#define STREAM_MIN_BYTES (2u << 20)

typedef float v8 __attribute__((vector_size(32)));

// row[0, 16) = (a, b), past the caches when `stream` (row 16-byte aligned), else a plain store.
static CPU_INLINE void store_panel_row(float *row, v8 a, v8 b, int stream) {
#if defined(__x86_64__)
    if (stream) {
        _mm_stream_ps(row, (__m128)__builtin_shufflevector(a, a, 0, 1, 2, 3));
        _mm_stream_ps(row + 4, (__m128)__builtin_shufflevector(a, a, 4, 5, 6, 7));
        _mm_stream_ps(row + 8, (__m128)__builtin_shufflevector(b, b, 0, 1, 2, 3));
        _mm_stream_ps(row + 12, (__m128)__builtin_shufflevector(b, b, 4, 5, 6, 7));
        return;
    }
#endif
    memcpy(row, &a, sizeof a);
    memcpy(row + 8, &b, sizeof b);
}

// Whether the rows of an n x O output at `out` are stored past the caches: not when they are
// added to, nor for widths the 16-byte stores do not tile, nor below STREAM_MIN_BYTES, nor below
// a 16th of the L3. With an L3 of 16 MB (Zen 2) the logits would evict the weights the next
// step reads, and a plain store reads each line from memory first; with 260 MB (the Emerald
// Rapids VM) they stay in L3 for the sampler, which then reads them 3% of a stories15M step
// faster than from memory. ASYNCRL_CPU_STREAM_MIN_BYTES replaces the L3 bound (the tests run
// both paths); it and the L3 size are only looked up for outputs of STREAM_MIN_BYTES or more,
// so the products of a decode step's layers do not ask.
static int stream_output(const float *out, int n, int O, int accumulate) {
    const size_t bytes = (size_t)n * O * sizeof(float);
    if (accumulate || O % 4 != 0 || (uintptr_t)out % 16 != 0 || bytes < STREAM_MIN_BYTES) return 0;
    const char *env = getenv("ASYNCRL_CPU_STREAM_MIN_BYTES");
    if (env && *env) return bytes >= (size_t)strtoull(env, NULL, 10);
    const size_t l3 = cpu_l3_bytes();
    return l3 == 0 || bytes >= l3 / 16;
}

// The segment of `out` that holds column c, searched from segment s on (columns ascend).
static inline int segment_of(const CpuOutput *out, int c, int s) {
    while (c >= out->begin[s + 1]) s++;
    return s;
}

// Whether the product streams its output past the caches: a plain product (one segment) as
// stream_output says; stacked weights' outputs are a layer's few columns, never.
static int stream_segments(const CpuOutput *out, int n, int O, int accumulate) {
    return out->count == 1 && stream_output(out->out[0], n, O, accumulate);
}

struct CpuPackedWeight {
    const float *weight;  // (rows, cols) in a registered parameter buffer
    int rows, cols;
    float *packed;        // (ceil(rows / PANEL), cols, PANEL)
    unsigned long stamp;  // the buffer's update count when packed (0: never)
};

// Registered parameter buffers and how many times each was updated.
static struct {
    const float *base;
    size_t n;
    unsigned long updates;
} g_buffers[MAX_BUFFERS];
static int g_n_buffers;
// Each packed weight is its own allocation, so that a pointer to one stays valid while another
// is added (concurrent batch slices look weights up under a lock, see matmul.c).
static CpuPackedWeight **g_weights;
static int g_n_weights, g_cap_weights;

// Drops registered buffer b and the packed copies of its weights.
static void forget_buffer(int b) {
    const float *base = g_buffers[b].base, *end = base + g_buffers[b].n;
    for (int w = 0; w < g_n_weights; w++)
        if (g_weights[w]->weight >= base && g_weights[w]->weight < end) {
            ops_free(g_weights[w]->packed);
            free(g_weights[w]);
            g_weights[w--] = g_weights[--g_n_weights];
        }
    g_buffers[b] = g_buffers[--g_n_buffers];
}

void cpu_packed_params_updated(const float *params, size_t n) {
    for (int b = 0; b < g_n_buffers; b++)
        if (g_buffers[b].base == params) {
            if (g_buffers[b].n != n) {  // the same address for a buffer of another size: start afresh
                forget_buffer(b);
                break;
            }
            g_buffers[b].updates++;
            return;
        }
    if (g_n_buffers == MAX_BUFFERS) forget_buffer(0);
    g_buffers[g_n_buffers].base = params;
    g_buffers[g_n_buffers].n = n;
    g_buffers[g_n_buffers].updates = 1;
    g_n_buffers++;
}

void cpu_packed_forget(const void *ptr) {
    for (int b = 0; b < g_n_buffers; b++)
        if (g_buffers[b].base == (const float *)ptr) {
            forget_buffer(b);
            return;
        }
}

void cpu_note_write(const void *ptr, size_t bytes) {
    const char *p = ptr;
    for (int b = 0; b < g_n_buffers; b++) {
        const char *base = (const char *)g_buffers[b].base, *end = base + g_buffers[b].n * sizeof(float);
        if (p < end && p + bytes > base) g_buffers[b].updates++;
    }
}

size_t cpu_packed_largest_buffer(void) {
    size_t largest = 0;
    for (int b = 0; b < g_n_buffers; b++) largest = g_buffers[b].n > largest ? g_buffers[b].n : largest;
    return largest * sizeof(float);
}

// The update count of the registered buffer holding all of W (rows, cols), 0 when none does.
static unsigned long buffer_updates(const float *weight, int rows, int cols) {
    for (int b = 0; b < g_n_buffers; b++) {
        const float *base = g_buffers[b].base;
        if (weight >= base && weight + (size_t)rows * cols <= base + g_buffers[b].n) return g_buffers[b].updates;
    }
    return 0;
}

CpuPackedWeight *cpu_packed_weight(const float *weight, int rows, int cols, int *needs_packing) {
    const unsigned long updates = buffer_updates(weight, rows, cols);
    if (updates == 0) return NULL;
    CpuPackedWeight *pw = NULL;
    for (int w = 0; w < g_n_weights && !pw; w++)
        if (g_weights[w]->weight == weight && g_weights[w]->rows == rows && g_weights[w]->cols == cols) pw = g_weights[w];
    if (!pw) {
        if (g_n_weights == g_cap_weights) {
            g_cap_weights = g_cap_weights ? 2 * g_cap_weights : 64;
            g_weights = xrealloc(g_weights, sizeof *g_weights * (size_t)g_cap_weights);
        }
        pw = g_weights[g_n_weights++] = xmalloc(sizeof *pw);
        const size_t panels = ((size_t)rows + PANEL - 1) / PANEL;
        *pw = (CpuPackedWeight){.weight = weight, .rows = rows, .cols = cols, .stamp = 0,
                                .packed = ops_alloc(panels * (size_t)cols * PANEL * sizeof(float))};
    }
    *needs_packing = pw->stamp != updates;
    pw->stamp = updates;  // callers pack every panel before the result is used
    return pw;
}

int cpu_packed_panels(const CpuPackedWeight *pw) { return (pw->rows + PANEL - 1) / PANEL; }

void cpu_packed_pack(CpuPackedWeight *pw, int panel_begin, int panel_end) {
    const int cols = pw->cols;
    for (int p = panel_begin; p < panel_end; p++) {
        float *dst = pw->packed + (size_t)p * cols * PANEL;
        const int r0 = p * PANEL, nr = pw->rows - r0 < PANEL ? pw->rows - r0 : PANEL;
        if (nr < PANEL) memset(dst, 0, sizeof(float) * (size_t)cols * PANEL);
        for (int j = 0; j < nr; j++) {
            const float *src = pw->weight + (size_t)(r0 + j) * cols;
            for (int k = 0; k < cols; k++) dst[(size_t)k * PANEL + j] = src[k];
        }
    }
}

// c (mr, ncols) (+)= x (mr, K) @ panel^T, panel (K, PANEL) packed; mr <= MR a constant after
// inlining so the sums stay in registers. stream: store full rows past the caches (see top).
static CPU_INLINE void micro_kernel(int mr, const float *x, size_t ldx, const float *panel, int K, float *c,
                                    size_t ldc, int ncols, int accumulate, int stream) {
    v8 lo[MR], hi[MR];
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) lo[r] = (v8){0}, hi[r] = (v8){0};
    for (int k = 0; k < K; k++) {
        v8 w0, w1;  // (no function returns a vector: that would change the ABI between builds)
        memcpy(&w0, panel + (size_t)k * PANEL, sizeof w0);
        memcpy(&w1, panel + (size_t)k * PANEL + 8, sizeof w1);
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            const float xv = x[(size_t)r * ldx + k];
            lo[r] += xv * w0;
            hi[r] += xv * w1;
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        float *row = c + (size_t)r * ldc;
        if (ncols == PANEL) {
            v8 a = lo[r], b = hi[r];
            if (accumulate) {
                v8 c0, c1;
                memcpy(&c0, row, sizeof c0);
                memcpy(&c1, row + 8, sizeof c1);
                a += c0, b += c1;
            }
            store_panel_row(row, a, b, stream);
        } else {
            for (int j = 0; j < ncols; j++) {
                const float v = j < 8 ? lo[r][j] : hi[r][j - 8];
                row[j] = accumulate ? row[j] + v : v;
            }
        }
    }
}

static CPU_INLINE void packed_gemm(const CpuOutput *out, const float *in, const CpuPackedWeight *pw, int n,
                                   int panel_begin, int panel_end, int accumulate) {
    const int K = pw->cols, O = pw->rows;
    const int groups = (n + MR - 1) / MR, panels = (O + PANEL - 1) / PANEL;
    const int stream = stream_segments(out, n, O, accumulate);
    for (int p = panel_begin, s = 0; p < panel_end; p++) {
        const float *panel = pw->packed + (size_t)p * K * PANEL;
        const int c0 = p * PANEL;
        s = segment_of(out, c0, s);
        const int seg_end = out->begin[s + 1], ld = seg_end - out->begin[s];  // the segment's row length
        const int ncols = seg_end - c0 < PANEL ? seg_end - c0 : PANEL;
        // The next panel (PANEL floats per k); past panel_end another thread may take it, and
        // the prefetch is then wasted, once per chunk.
        const float *next = panel + (size_t)K * PANEL;
        // The rows go in `groups` groups of as even a size as can be (64 rows: 9 x 6 + 2 x 5, not
        // 10 x 6 + 4): a group of 4 rows has 8 sums, too few chains to hide the FMA latency.
        int i = 0;
        for (int g = 0, rows; i < n; i += rows, g++) {
            rows = n / groups + (g < n % groups);
            // With many row groups the next panel streams from memory across this panel's
            // groups (its first group would otherwise wait for it at several times the
            // memory's pace). With one or two groups the product runs at the memory's pace
            // anyway and the hardware prefetcher does better alone. Three groups are what a
            // batch slice of 25-36 rows makes (64 stories15M sequences on 2 threads, each
            // thread reading every layer weight from L3): prefetched, its layers' products
            // ran at ~305 GFLOP/s instead of ~275 (was 4 groups until then).
            if (groups >= PREFETCH_MIN_GROUPS && p + 1 < panels)
                for (int k = g * K / groups; k < (g + 1) * K / groups; k++)
                    __builtin_prefetch(next + (size_t)k * PANEL, 0, 3);
            const float *x = in + (size_t)i * K;
            float *c = out->out[s] + (size_t)i * ld + (c0 - out->begin[s]);
            switch (rows) {  // each count its own kernel
                case 6: micro_kernel(6, x, K, panel, K, c, ld, ncols, accumulate, stream); break;
                case 5: micro_kernel(5, x, K, panel, K, c, ld, ncols, accumulate, stream); break;
                case 4: micro_kernel(4, x, K, panel, K, c, ld, ncols, accumulate, stream); break;
                case 3: micro_kernel(3, x, K, panel, K, c, ld, ncols, accumulate, stream); break;
                case 2: micro_kernel(2, x, K, panel, K, c, ld, ncols, accumulate, stream); break;
                default: micro_kernel(1, x, K, panel, K, c, ld, ncols, accumulate, stream); break;
            }
        }
    }
#if defined(__x86_64__)
    if (stream) _mm_sfence();  // the streamed rows are visible before the caller's barrier
#endif
}

CPU_AVX2 static void packed_gemm_avx2(const CpuOutput *out, const float *in, const CpuPackedWeight *pw, int n, int pb,
                                      int pe, int accumulate) {
    packed_gemm(out, in, pw, n, pb, pe, accumulate);
}
static void packed_gemm_base(const CpuOutput *out, const float *in, const CpuPackedWeight *pw, int n, int pb, int pe,
                             int accumulate) {
    packed_gemm(out, in, pw, n, pb, pe, accumulate);
}

#if defined(__x86_64__) && defined(__GNUC__)
// The AVX-512 build. A register holds a whole panel row (16 floats) and there are 32 of them,
// so a micro-kernel multiplies up to MR512 rows by two panels at once: 2 x MR512 sums, two
// weight loads and MR512 broadcasts per k (the AVX2 kernel: 12 sums, 2 loads, 6 broadcasts).
// Each output is still one FMA chain over k in order, the same operations as the AVX2 build:
// the two give the same bits (test_ops), and a row does not depend on its batch.
#define MR512 12

typedef float v16 __attribute__((vector_size(64)));

// row[0, 16) (+)= a; past the caches when `stream` (row 16-byte aligned), else a plain store.
static CPU_INLINE void store_panel_row16(float *row, v16 a, int accumulate, int stream) {
    if (accumulate) {
        v16 old;
        memcpy(&old, row, sizeof old);
        a += old;
    }
    if (stream) {
        _mm_stream_ps(row, (__m128)__builtin_shufflevector(a, a, 0, 1, 2, 3));
        _mm_stream_ps(row + 4, (__m128)__builtin_shufflevector(a, a, 4, 5, 6, 7));
        _mm_stream_ps(row + 8, (__m128)__builtin_shufflevector(a, a, 8, 9, 10, 11));
        _mm_stream_ps(row + 12, (__m128)__builtin_shufflevector(a, a, 12, 13, 14, 15));
        return;
    }
    memcpy(row, &a, sizeof a);
}

// Lines to prefetch while a micro-kernel runs: [next, end), one every `every` k.
typedef struct {
    const char *next, *end;
    int every;
} Prefetch;

// c (mr, ncols) (+)= x (mr, K) @ [panel p, panel p+1 when np = 2]^T, the np panels lying one
// after the other (K * PANEL floats each); ncols <= np * PANEL counts the real columns. mr and np
// are constants after inlining, so the 2 x mr sums stay in registers. Meanwhile the lines of pf
// are asked for, spread over the k loop.
static CPU_INLINE void micro_kernel16(int mr, int np, const float *x, size_t ldx, const float *panel, int K,
                                      float *c, size_t ldc, int ncols, int accumulate, int stream, Prefetch pf) {
    v16 acc[2][MR512];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) acc[0][r] = acc[1][r] = (v16){0};
    const float *panel1 = panel + (size_t)K * PANEL;
    int countdown = pf.every;
    for (int k = 0; k < K; k++) {
        if (--countdown == 0) {
            countdown = pf.every;
            if (pf.next < pf.end) {
                __builtin_prefetch(pf.next, 0, 3);
                pf.next += 64;
            }
        }
        v16 w0, w1 = {0};
        memcpy(&w0, panel + (size_t)k * PANEL, sizeof w0);
        if (np == 2) memcpy(&w1, panel1 + (size_t)k * PANEL, sizeof w1);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const float xv = x[(size_t)r * ldx + k];
            acc[0][r] += xv * w0;
            if (np == 2) acc[1][r] += xv * w1;
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < np; q++) {
            float *row = c + (size_t)r * ldc + q * PANEL;
            const int cols = ncols - q * PANEL < PANEL ? ncols - q * PANEL : PANEL;
            if (cols == PANEL) {
                store_panel_row16(row, acc[q][r], accumulate, stream);
            } else {
                for (int j = 0; j < cols; j++) row[j] = accumulate ? row[j] + acc[q][r][j] : acc[q][r][j];
            }
        }
}

// mr rows by np panels, each count its own kernel.
#define MICRO16_CASE(rows)                                                                      \
    case rows:                                                                                  \
        if (np == 2) micro_kernel16(rows, 2, x, K, panel, K, c, ld, ncols, accumulate, stream, pf); \
        else micro_kernel16(rows, 1, x, K, panel, K, c, ld, ncols, accumulate, stream, pf);         \
        break;

CPU_AVX512 static void packed_gemm_avx512(const CpuOutput *out, const float *in, const CpuPackedWeight *pw, int n,
                                          int panel_begin, int panel_end, int accumulate) {
    const int K = pw->cols, O = pw->rows;
    const int groups = (n + MR512 - 1) / MR512, panels = (O + PANEL - 1) / PANEL;
    const int stream = stream_segments(out, n, O, accumulate);
    for (int p = panel_begin, np, s = 0; p < panel_end; p += np) {
        const int c0 = p * PANEL;
        s = segment_of(out, c0, s);
        const int seg_end = out->begin[s + 1], ld = seg_end - out->begin[s];  // the segment's row length
        np = panel_end - p >= 2 && c0 + PANEL < seg_end ? 2 : 1;  // a pair within one segment
        const float *panel = pw->packed + (size_t)p * K * PANEL;
        const int ncols = seg_end - c0 < np * PANEL ? seg_end - c0 : np * PANEL;
        const float *next = panel + (size_t)np * K * PANEL;  // the next pair (see packed_gemm)
        const size_t next_floats = (size_t)(p + np + 2 <= panels ? 2 : panels - p - np) * K * PANEL;
        int i = 0;
        for (int g = 0, rows; i < n; i += rows, g++) {
            rows = n / groups + (g < n % groups);  // as even as can be (64 rows: 4 x 11 + 2 x 10)
            // This group's share of the next pair, asked for one line every few k: issued in
            // one burst before the group (as the AVX2 build does), the prefetches waited for
            // free fill buffers, and the 64-row output layer took 4.3-4.4 ms instead of 3.8.
            Prefetch pf = {.next = (const char *)(next + g * next_floats / groups), .every = K + 1};
            pf.end = groups >= PREFETCH_MIN_GROUPS ? (const char *)(next + (g + 1) * next_floats / groups) : pf.next;
            const int lines = (int)((pf.end - pf.next) / 64);  // at most 2K / groups < K
            if (lines > 0) pf.every = K / lines;
            const float *x = in + (size_t)i * K;
            float *c = out->out[s] + (size_t)i * ld + (c0 - out->begin[s]);
            switch (rows) {
                MICRO16_CASE(12) MICRO16_CASE(11) MICRO16_CASE(10) MICRO16_CASE(9)
                MICRO16_CASE(8) MICRO16_CASE(7) MICRO16_CASE(6) MICRO16_CASE(5)
                MICRO16_CASE(4) MICRO16_CASE(3) MICRO16_CASE(2) default: MICRO16_CASE(1)
            }
        }
    }
    if (stream) _mm_sfence();
}
#endif

void cpu_packed_gemm(const CpuOutput *out, const float *in, const CpuPackedWeight *pw, int n, int panel_begin,
                     int panel_end, int accumulate) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (cpu_has_avx512()) {
        packed_gemm_avx512(out, in, pw, n, panel_begin, panel_end, accumulate);
        return;
    }
#endif
    if (cpu_has_avx2()) packed_gemm_avx2(out, in, pw, n, panel_begin, panel_end, accumulate);
    else packed_gemm_base(out, in, pw, n, panel_begin, panel_end, accumulate);
}
