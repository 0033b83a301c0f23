// Tests of every op in kernels/ops.h against independent references: each forward against a
// naive double-precision implementation written here, each backward against central finite
// differences of that double-precision forward (so a backward is never checked against the
// code it differentiates). Data goes through ops_alloc / ops_copy_* so the same tests can run
// on any backend. Two threads, so the parallel splits are exercised. The CPU backend has an
// AVX-512 build of its packed decode GEMM and AVX2+FMA and baseline builds of its hot loops:
// the whole group runs three times, then with ASYNCRL_CPU_NO_AVX512=1, then also with
// ASYNCRL_CPU_BASELINE=1 (on a processor without AVX-512 the first two runs are the same).
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/rng.h"
#include "ops.h"

// ---------------------------------------------------------------------------------------
// Helpers: host arrays, device copies, finite differences.

static Rng g_rng;

static float *randn(size_t n, float scale) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&g_rng);
    return x;
}

static float *dev(const void *host, size_t bytes) {
    void *d = ops_alloc(bytes);
    ops_copy_to_device(d, host, bytes);
    return d;
}

static float *host(const void *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    ops_copy_to_host(h, d, n * sizeof(float));
    return h;
}

static double *to_double(const float *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof(double));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

// A scalar function of a double array (the loss sum_i R_i f(x)_i through a reference forward).
typedef double (*ScalarFn)(const double *x, void *ctx);

// Central differences of fn at x for the listed indices (all when idx is NULL), compared with
// the analytic gradient `grad` (float).
static void check_grad(const char *what, ScalarFn fn, void *ctx, double *x, size_t n, const float *grad,
                       const size_t *idx, size_t n_idx, double atol, double rtol) {
    const size_t count = idx ? n_idx : n;
    float *num = malloc(count * sizeof(float)), *ana = malloc(count * sizeof(float));
    for (size_t c = 0; c < count; c++) {
        const size_t i = idx ? idx[c] : c;
        const double h = 1e-5 * (1.0 + fabs(x[i]));
        const double keep = x[i];
        x[i] = keep + h;
        const double fp = fn(x, ctx);
        x[i] = keep - h;
        const double fm = fn(x, ctx);
        x[i] = keep;
        num[c] = (float)((fp - fm) / (2 * h));
        ana[c] = grad[i];
    }
    test_assert_close(what, ana, num, count, atol, rtol);
    free(num);
    free(ana);
}

static double dot_d(const double *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static int setup(void **state) {
    (void)state;
    ops_init(2);
    rng_seed(&g_rng, 1234);
    return 0;
}

// ---------------------------------------------------------------------------------------
// matmul

typedef struct {
    int n, in_dim, out_dim;
    const double *in, *w, *b;  // the two that are not varied are read from here
    const float *R;            // (N, O) loss weights
    int vary;                  // 0: in, 1: w, 2: b
} MatmulCtx;

static void ref_matmul(double *out, const double *in, const double *w, const double *b, int n, int I, int O) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < O; o++) {
            double s = b ? b[o] : 0.0;
            for (int k = 0; k < I; k++) s += in[(size_t)i * I + k] * w[(size_t)o * I + k];
            out[(size_t)i * O + o] = s;
        }
}

static double matmul_loss(const double *x, void *vctx) {
    MatmulCtx *c = vctx;
    double *out = malloc((size_t)c->n * c->out_dim * sizeof(double));
    ref_matmul(out, c->vary == 0 ? x : c->in, c->vary == 1 ? x : c->w, c->vary == 2 ? x : c->b, c->n, c->in_dim,
               c->out_dim);
    double l = dot_d(out, c->R, (size_t)c->n * c->out_dim);
    free(out);
    return l;
}

static void matmul_case(int n, int I, int O, int with_bias) {
    float *in = randn((size_t)n * I, 1), *w = randn((size_t)O * I, 0.5f), *b = randn(O, 1);
    float *R = randn((size_t)n * O, 1), *prev = randn((size_t)n * O, 1), *prev_din = randn((size_t)n * I, 1);
    float *d_in = dev(in, (size_t)n * I * 4), *d_w = dev(w, (size_t)O * I * 4), *d_b = dev(b, (size_t)O * 4);
    float *d_out = dev(prev, (size_t)n * O * 4);
    // Forward with and without accumulation against the double reference.
    double *din = to_double(in, (size_t)n * I), *dw = to_double(w, (size_t)O * I), *db = to_double(b, O);
    double *ref = malloc((size_t)n * O * sizeof(double));
    ref_matmul(ref, din, dw, with_bias ? db : NULL, n, I, O);
    float *ref_f = malloc((size_t)n * O * sizeof(float)), *ref_acc = malloc((size_t)n * O * sizeof(float));
    for (size_t i = 0; i < (size_t)n * O; i++) ref_f[i] = (float)ref[i], ref_acc[i] = (float)(ref[i] + prev[i]);
    ops_matmul_forward(d_out, d_in, d_w, with_bias ? d_b : NULL, n, I, O, 1);
    float *got = host(d_out, (size_t)n * O);
    test_assert_close("matmul forward (accumulate)", got, ref_acc, (size_t)n * O, 1e-4, 1e-4);
    free(got);
    ops_matmul_forward(d_out, d_in, d_w, with_bias ? d_b : NULL, n, I, O, 0);
    got = host(d_out, (size_t)n * O);
    test_assert_close("matmul forward", got, ref_f, (size_t)n * O, 1e-4, 1e-4);
    free(got);
    // Backward: d_in overwritten, then accumulated; d_w and d_b accumulate onto a start value.
    float *g_w0 = randn((size_t)O * I, 1), *g_b0 = randn(O, 1);
    float *dd_out = dev(R, (size_t)n * O * 4), *dd_in = dev(prev_din, (size_t)n * I * 4);
    float *dd_w = dev(g_w0, (size_t)O * I * 4), *dd_b = dev(g_b0, (size_t)O * 4);
    ops_matmul_backward(dd_in, dd_w, with_bias ? dd_b : NULL, dd_out, d_in, d_w, n, I, O, 0);
    float *g_in = host(dd_in, (size_t)n * I), *g_w = host(dd_w, (size_t)O * I), *g_b = host(dd_b, O);
    for (size_t i = 0; i < (size_t)O * I; i++) g_w[i] -= g_w0[i];
    for (int i = 0; i < O; i++) g_b[i] -= g_b0[i];
    MatmulCtx c = {n, I, O, din, dw, with_bias ? db : NULL, R, 0};
    check_grad("matmul d_in", matmul_loss, &c, din, (size_t)n * I, g_in, NULL, 0, 1e-3, 1e-3);
    c.vary = 1;
    check_grad("matmul d_weight", matmul_loss, &c, dw, (size_t)O * I, g_w, NULL, 0, 1e-3, 1e-3);
    if (with_bias) {
        c.vary = 2;
        check_grad("matmul d_bias", matmul_loss, &c, db, O, g_b, NULL, 0, 1e-3, 1e-3);
    } else {
        for (int i = 0; i < O; i++) assert_true(g_b[i] == 0.0f);
    }
    // accumulate_d_in adds onto what is there.
    ops_matmul_backward(dd_in, NULL, NULL, dd_out, d_in, d_w, n, I, O, 1);
    float *g_in2 = host(dd_in, (size_t)n * I), *twice = malloc((size_t)n * I * 4);
    for (size_t i = 0; i < (size_t)n * I; i++) twice[i] = 2 * g_in[i];
    test_assert_close("matmul d_in accumulate", g_in2, twice, (size_t)n * I, 1e-5, 1e-5);
    free(g_in2), free(twice);
    free(g_in), free(g_w), free(g_b), free(g_w0), free(g_b0), free(ref), free(ref_f), free(ref_acc);
    free(din), free(dw), free(db), free(in), free(w), free(b), free(R), free(prev), free(prev_din);
    ops_free(d_in), ops_free(d_w), ops_free(d_b), ops_free(d_out), ops_free(dd_out), ops_free(dd_in);
    ops_free(dd_w), ops_free(dd_b);
}

static void test_matmul(void **state) {
    (void)state;
    matmul_case(70, 12, 9, 1);   // rows split among threads
    matmul_case(3, 40, 50, 0);   // few rows: columns split
    matmul_case(5, 7, 3, 1);     // tiny output: d_weight split by columns
}

// Weights inside a parameter buffer registered with ops_params_updated: the CPU backend
// multiplies decode-sized inputs by a packed copy, which must follow every update of the
// buffer, give each row the same bits whatever the other rows, and match the reference.
static void packed_case(float *d_buf, size_t offset, int n, int I, int O, int with_bias) {
    float *w = host(d_buf + offset, (size_t)O * I);
    float *in = randn((size_t)n * I, 1), *b = randn(O, 1), *prev = randn((size_t)n * O, 1);
    float *d_in = dev(in, (size_t)n * I * 4), *d_b = dev(b, (size_t)O * 4), *d_out = dev(prev, (size_t)n * O * 4);
    double *din = to_double(in, (size_t)n * I), *dw = to_double(w, (size_t)O * I), *db = to_double(b, O);
    double *ref = malloc((size_t)n * O * sizeof(double));
    ref_matmul(ref, din, dw, with_bias ? db : NULL, n, I, O);
    float *ref_f = malloc((size_t)n * O * sizeof(float)), *ref_acc = malloc((size_t)n * O * sizeof(float));
    for (size_t i = 0; i < (size_t)n * O; i++) ref_f[i] = (float)ref[i], ref_acc[i] = (float)(ref[i] + prev[i]);
    ops_matmul_forward(d_out, d_in, d_buf + offset, with_bias ? d_b : NULL, n, I, O, 1);
    float *got = host(d_out, (size_t)n * O);
    test_assert_close("packed matmul forward (accumulate)", got, ref_acc, (size_t)n * O, 1e-4, 1e-4);
    free(got);
    ops_matmul_forward(d_out, d_in, d_buf + offset, with_bias ? d_b : NULL, n, I, O, 0);
    got = host(d_out, (size_t)n * O);
    test_assert_close("packed matmul forward", got, ref_f, (size_t)n * O, 1e-4, 1e-4);
    // Row by row alone: the same bits as in the batch.
    float *d_one = ops_alloc((size_t)O * 4);
    for (int i = 0; i < n; i += n / 3 + 1) {
        ops_matmul_forward(d_one, d_in + (size_t)i * I, d_buf + offset, with_bias ? d_b : NULL, 1, I, O, 0);
        float *one = host(d_one, O);
        assert_memory_equal(one, got + (size_t)i * O, (size_t)O * sizeof(float));
        free(one);
    }
    free(got), free(w), free(in), free(b), free(prev), free(din), free(dw), free(db), free(ref), free(ref_f);
    free(ref_acc);
    ops_free(d_in), ops_free(d_b), ops_free(d_out), ops_free(d_one);
}

static void test_matmul_packed(void **state) {
    (void)state;
    // The third weight is wide enough that 64 rows of output (2 MB) are stored past the caches
    // in the first round (streamed from 2 MB, whatever this machine's L3) and plainly in the
    // second (streamed only from 1 GB).
    // The fourth has 5 panels: 3 chunks of a pair for 2 threads, so once packed the last chunk
    // goes out as two row parts.
    const int I1 = 24, O1 = 37, I2 = 64, O2 = 48, I3 = 16, O3 = 8200, I4 = 24, O4 = 75;
    const size_t off2 = (size_t)O1 * I1 + 3, off3 = off2 + (size_t)O2 * I2 + 5, off4 = off3 + (size_t)O3 * I3 + 7;
    const size_t total = off4 + (size_t)O4 * I4 + 1;
    for (int round = 0; round < 2; round++) {  // the second round: a freed buffer, a new one
        setenv("ASYNCRL_CPU_STREAM_MIN_BYTES", round == 0 ? "2097152" : "1073741824", 1);
        float *buf = randn(total, 0.5f);
        float *d_buf = dev(buf, total * 4);
        ops_params_updated(d_buf, total);
        const int ns[] = {1, 2, 5, 6, 7, 13, 64, 200};
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            packed_case(d_buf, 0, ns[k], I1, O1, (int)(k % 2));
            packed_case(d_buf, off2, ns[k], I2, O2, (int)(k % 2 == 0));
        }
        // An update of the buffer (as an optimizer step or a weight swap makes): the next
        // products use the new weights.
        float *fresh = randn(total, 0.5f);
        ops_copy_to_device(d_buf, fresh, total * 4);
        ops_params_updated(d_buf, total);
        packed_case(d_buf, 0, 9, I1, O1, 1);
        packed_case(d_buf, off2, 64, I2, O2, 0);
        packed_case(d_buf, off3, 64, I3, O3, round);
        packed_case(d_buf, off3, 70, I3, O3 - 2, !round);  // a width not a multiple of 4: plain stores
        for (int rows = 24; rows <= 64; rows += 40)         // packed by the first call, then split
            for (int again = 0; again < 2; again++) packed_case(d_buf, off4, rows + again * 7, I4, O4, again);
        free(buf), free(fresh);
        ops_free(d_buf);
    }
    unsetenv("ASYNCRL_CPU_STREAM_MIN_BYTES");
}

// Weights stacked one after another (a layer's q, k, v or gate, up projections): one
// ops_matmul_forward_stacked gives each output the bits of one ops_matmul_forward per weight,
// and matches the reference; inside a registered buffer (the packed path: one product by the
// stack, with panel pairs that would span two outputs split), outside one (BLAS, weight by
// weight), with widths that are not whole panels (weight by weight), from 1 row to more than
// the packed path takes, and (packed: rows do not depend on their batch) from concurrent threads
// each on its own rows (batch slices).
static void stacked_case(const float *d_w, const int *dims, int count, int n, int I, int packed) {
    int total = 0;
    for (int j = 0; j < count; j++) total += dims[j];
    float *in = randn((size_t)n * I, 1);
    float *d_in = dev(in, (size_t)n * I * 4);
    float *d_outs[4], *d_sep[4];
    for (int j = 0; j < count; j++) {
        d_outs[j] = ops_alloc((size_t)n * dims[j] * 4);
        d_sep[j] = ops_alloc((size_t)n * dims[j] * 4);
    }
    ops_matmul_forward_stacked(d_outs, d_in, d_w, dims, count, n, I);
    float *w = host(d_w, (size_t)total * I);
    double *din = to_double(in, (size_t)n * I), *ref = malloc((size_t)n * total * sizeof(double));
    for (int j = 0, row = 0; j < count; row += dims[j], j++) {
        ops_matmul_forward(d_sep[j], d_in, d_w + (size_t)row * I, NULL, n, I, dims[j], 0);
        float *got = host(d_outs[j], (size_t)n * dims[j]), *sep = host(d_sep[j], (size_t)n * dims[j]);
        assert_memory_equal(got, sep, (size_t)n * dims[j] * sizeof(float));
        double *dw = to_double(w + (size_t)row * I, (size_t)dims[j] * I);
        ref_matmul(ref, din, dw, NULL, n, I, dims[j]);
        float *ref_f = malloc((size_t)n * dims[j] * sizeof(float));
        for (size_t i = 0; i < (size_t)n * dims[j]; i++) ref_f[i] = (float)ref[i];
        test_assert_close("stacked matmul", got, ref_f, (size_t)n * dims[j], 1e-4, 1e-4);
        // Two threads at once, each on its half of the rows, as batch slices call it.
        if (packed && n >= 2) {
            ops_zero(d_outs[j], (size_t)n * dims[j] * 4);
#pragma omp parallel num_threads(2)
            {
                const int t = omp_get_thread_num(), r0 = n * t / 2, r1 = n * (t + 1) / 2;
                float *halves[4];
                for (int q = 0; q < count; q++) halves[q] = d_outs[q] + (size_t)r0 * dims[q];
                ops_matmul_forward_stacked(halves, d_in + (size_t)r0 * I, d_w, dims, count, r1 - r0, I);
            }
            float *again = host(d_outs[j], (size_t)n * dims[j]);
            assert_memory_equal(again, sep, (size_t)n * dims[j] * sizeof(float));
            free(again);
        }
        free(got), free(sep), free(dw), free(ref_f);
    }
    for (int j = 0; j < count; j++) ops_free(d_outs[j]), ops_free(d_sep[j]);
    free(in), free(w), free(din), free(ref);
    ops_free(d_in);
}

static void test_matmul_stacked(void **state) {
    (void)state;
    const int qkv[] = {48, 16, 16}, gate_up[] = {32, 64}, ragged[] = {20, 12};  // ragged: not whole panels
    const int I = 40, total = 48 + 16 + 16 + 32 + 64 + 20 + 12;
    float *buf = randn((size_t)total * I + 8, 0.5f);
    float *d_buf = dev(buf, ((size_t)total * I + 8) * 4), *d_loose = dev(buf, (size_t)total * I * 4);
    ops_params_updated(d_buf, (size_t)total * I + 8);
    const size_t off2 = (size_t)80 * I, off3 = off2 + (size_t)96 * I;
    const int ns[] = {1, 5, 13, 64, 300};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const int packed = ns[k] <= 256;  // (the CPU backend's MAX_PACKED_ROWS)
        stacked_case(d_buf, qkv, 3, ns[k], I, packed);
        stacked_case(d_buf + off2, gate_up, 2, ns[k], I, packed);
        stacked_case(d_buf + off3, ragged, 2, ns[k], I, packed);
        stacked_case(d_loose, qkv, 3, ns[k], I, 0);  // not in a registered buffer
    }
    free(buf);
    ops_free(d_buf), ops_free(d_loose);
}

// ---------------------------------------------------------------------------------------
// rmsnorm

typedef struct {
    int n, dim;
    double eps;
    const double *x, *w;
    const float *R;
    int vary;  // 0: x, 1: w
} NormCtx;

static void ref_rmsnorm(double *out, const double *x, const double *w, int n, int dim, double eps) {
    for (int i = 0; i < n; i++) {
        double ss = 0;
        for (int j = 0; j < dim; j++) ss += x[(size_t)i * dim + j] * x[(size_t)i * dim + j];
        double r = 1.0 / sqrt(ss / dim + eps);
        for (int j = 0; j < dim; j++) out[(size_t)i * dim + j] = x[(size_t)i * dim + j] * r * w[j];
    }
}

static double norm_loss(const double *v, void *vctx) {
    NormCtx *c = vctx;
    double *out = malloc((size_t)c->n * c->dim * sizeof(double));
    ref_rmsnorm(out, c->vary == 0 ? v : c->x, c->vary == 1 ? v : c->w, c->n, c->dim, c->eps);
    double l = dot_d(out, c->R, (size_t)c->n * c->dim);
    free(out);
    return l;
}

// The AVX-512 and AVX2 builds of the packed product run the same FMA chains: the same bits for
// every row count a micro-kernel has (1 to 12), full and partial panels, single and paired.
static void test_matmul_packed_builds_agree(void **state) {
    (void)state;
    const int I = 40, O = 1000 + 8;  // 63 panels, the last one half full
    float *buf = randn((size_t)O * I, 0.5f);
    float *d_w = dev(buf, (size_t)O * I * 4);
    ops_params_updated(d_w, (size_t)O * I);
    const char *saved = getenv("ASYNCRL_CPU_NO_AVX512");
    char *saved_copy = saved ? strdup(saved) : NULL;
    for (int n = 1; n <= 26; n += (n < 13 ? 1 : 13)) {
        float *in = randn((size_t)n * I, 1);
        float *d_in = dev(in, (size_t)n * I * 4), *d_out = ops_alloc((size_t)n * O * 4);
        unsetenv("ASYNCRL_CPU_NO_AVX512");
        ops_matmul_forward(d_out, d_in, d_w, NULL, n, I, O, 0);
        float *fastest = host(d_out, (size_t)n * O);
        setenv("ASYNCRL_CPU_NO_AVX512", "1", 1);
        ops_matmul_forward(d_out, d_in, d_w, NULL, n, I, O, 0);
        float *avx2 = host(d_out, (size_t)n * O);
        assert_memory_equal(fastest, avx2, (size_t)n * O * sizeof(float));
        free(in), free(fastest), free(avx2);
        ops_free(d_in), ops_free(d_out);
    }
    if (saved_copy) setenv("ASYNCRL_CPU_NO_AVX512", saved_copy, 1);
    else unsetenv("ASYNCRL_CPU_NO_AVX512");
    free(saved_copy), free(buf);
    ops_free(d_w);
}

// The CPU backend's threads flush denormals (memory.c: they cost Intel cores a microcode assist
// each): after ops_init, a product below FLT_MIN is 0 on every OpenMP thread, and a denormal
// input reads as 0.
static void test_cpu_flushes_denormals(void **state) {
    (void)state;
    if (strcmp(ops_backend_name(), "cpu") != 0) skip();
#if defined(__x86_64__)
    int flushed = 0, threads = 0;
#pragma omp parallel reduction(+ : flushed, threads)
    {
        volatile float tiny = 1e-30f, scale = 1e-10f, denormal_bits;
        const unsigned one = 1;  // the smallest denormal
        memcpy((void *)&denormal_bits, &one, sizeof one);
        flushed += tiny * scale == 0.0f && denormal_bits * 2.0f == 0.0f;
        threads++;
    }
    assert_int_equal(flushed, threads);
#else
    skip();
#endif
}

static void test_rmsnorm(void **state) {
    (void)state;
    const int n = 9, dim = 24;
    const float eps = 1e-5f;
    float *x = randn((size_t)n * dim, 2), *w = randn(dim, 1), *R = randn((size_t)n * dim, 1);
    float *start = randn((size_t)n * dim, 1);
    float *d_x = dev(x, sizeof(float) * n * dim), *d_w = dev(w, sizeof(float) * dim);
    float *d_out = ops_alloc(sizeof(float) * n * dim), *d_rstd = ops_alloc(sizeof(float) * n);
    ops_rmsnorm_forward(d_out, d_rstd, d_x, d_w, n, dim, eps);
    double *xd = to_double(x, (size_t)n * dim), *wd = to_double(w, dim);
    double *ref = malloc(sizeof(double) * n * dim);
    ref_rmsnorm(ref, xd, wd, n, dim, eps);
    float *ref_f = malloc(sizeof(float) * n * dim);
    for (int i = 0; i < n * dim; i++) ref_f[i] = (float)ref[i];
    float *got = host(d_out, (size_t)n * dim);
    test_assert_close("rmsnorm forward", got, ref_f, (size_t)n * dim, 1e-5, 1e-5);
    // d_in accumulates onto `start`; d_weight onto zero.
    float *dd_out = dev(R, sizeof(float) * n * dim), *dd_x = dev(start, sizeof(float) * n * dim);
    float *dd_w = ops_alloc(sizeof(float) * dim);
    ops_rmsnorm_backward(dd_x, dd_w, dd_out, d_x, d_w, d_rstd, n, dim);
    float *g_x = host(dd_x, (size_t)n * dim), *g_w = host(dd_w, dim);
    for (int i = 0; i < n * dim; i++) g_x[i] -= start[i];
    NormCtx c = {n, dim, eps, xd, wd, R, 0};
    check_grad("rmsnorm d_in", norm_loss, &c, xd, (size_t)n * dim, g_x, NULL, 0, 1e-4, 1e-3);
    c.vary = 1;
    check_grad("rmsnorm d_weight", norm_loss, &c, wd, dim, g_w, NULL, 0, 1e-4, 1e-3);
    free(x), free(w), free(R), free(start), free(xd), free(wd), free(ref), free(ref_f), free(got), free(g_x),
        free(g_w);
    ops_free(d_x), ops_free(d_w), ops_free(d_out), ops_free(d_rstd), ops_free(dd_out), ops_free(dd_x),
        ops_free(dd_w);
}

// ---------------------------------------------------------------------------------------
// rope

typedef struct {
    int n, heads, hd;
    const int32_t *pos;
    double theta;
    const float *R;
} RopeCtx;

static void ref_rope(double *out, const double *x, const int32_t *pos, int n, int heads, int hd, double theta) {
    for (int i = 0; i < n; i++)
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < hd / 2; j++) {
                double a = pos[i] * pow(theta, -2.0 * j / hd);
                const double *v = x + ((size_t)i * heads + h) * hd;
                double *o = out + ((size_t)i * heads + h) * hd;
                o[2 * j] = v[2 * j] * cos(a) - v[2 * j + 1] * sin(a);
                o[2 * j + 1] = v[2 * j] * sin(a) + v[2 * j + 1] * cos(a);
            }
}

static double rope_loss(const double *x, void *vctx) {
    RopeCtx *c = vctx;
    size_t m = (size_t)c->n * c->heads * c->hd;
    double *out = malloc(m * sizeof(double));
    ref_rope(out, x, c->pos, c->n, c->heads, c->hd, c->theta);
    double l = dot_d(out, c->R, m);
    free(out);
    return l;
}

static void test_rope(void **state) {
    (void)state;
    const int n = 7, heads = 3, hd = 8, max_pos = 300;
    const double theta = 10000.0;
    int32_t pos[7] = {0, 1, 2, 0, 1, 250, 299};
    const size_t m = (size_t)n * heads * hd;
    float *x = randn(m, 1), *R = randn(m, 1);
    float *d_cos = ops_alloc(sizeof(float) * max_pos * hd / 2), *d_sin = ops_alloc(sizeof(float) * max_pos * hd / 2);
    ops_rope_table(d_cos, d_sin, max_pos, hd, theta);
    int32_t *d_pos = (int32_t *)dev(pos, sizeof pos);
    float *d_x = dev(x, m * 4);
    ops_rope_forward(d_x, d_pos, d_cos, d_sin, n, heads, hd);
    double *xd = to_double(x, m), *ref = malloc(m * sizeof(double));
    ref_rope(ref, xd, pos, n, heads, hd, theta);
    float *ref_f = malloc(m * 4);
    for (size_t i = 0; i < m; i++) ref_f[i] = (float)ref[i];
    float *got = host(d_x, m);
    test_assert_close("rope forward", got, ref_f, m, 1e-5, 1e-5);
    // The head's first pair at position 0 is untouched; position 1 rotates pair 0 by 1 radian.
    assert_true(got[0] == x[0] && got[1] == x[1]);
    float *d_g = dev(R, m * 4);
    ops_rope_backward(d_g, d_pos, d_cos, d_sin, n, heads, hd);
    float *g = host(d_g, m);
    RopeCtx c = {n, heads, hd, pos, theta, R};
    check_grad("rope backward", rope_loss, &c, xd, m, g, NULL, 0, 1e-5, 1e-4);
    free(x), free(R), free(xd), free(ref), free(ref_f), free(got), free(g);
    ops_free(d_cos), ops_free(d_sin), ops_free(d_pos), ops_free(d_x), ops_free(d_g);
}

// ---------------------------------------------------------------------------------------
// attention

typedef struct {
    int n, H, KVH, hd;
    const int32_t *pos;
    const double *q, *k, *v;
    const float *R;
    int vary;  // 0 q, 1 k, 2 v
} AttnCtx;

// Written from the definition: token i attends to rows i - pos[i] .. i of its sample.
static void ref_attention(double *out, double *lse, const double *q, const double *k, const double *v,
                          const int32_t *pos, int n, int H, int KVH, int hd) {
    double *s = malloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++) {
            const int g = h / (H / KVH), first = i - pos[i];
            double mx = -INFINITY;
            for (int j = first; j <= i; j++) {
                double d = 0;
                for (int e = 0; e < hd; e++)
                    d += q[((size_t)i * H + h) * hd + e] * k[((size_t)j * KVH + g) * hd + e];
                s[j] = d / sqrt((double)hd);
                if (s[j] > mx) mx = s[j];
            }
            double z = 0;
            for (int j = first; j <= i; j++) z += exp(s[j] - mx);
            if (lse) lse[(size_t)i * H + h] = mx + log(z);
            for (int e = 0; e < hd; e++) {
                double o = 0;
                for (int j = first; j <= i; j++) o += exp(s[j] - mx) / z * v[((size_t)j * KVH + g) * hd + e];
                out[((size_t)i * H + h) * hd + e] = o;
            }
        }
    free(s);
}

static double attn_loss(const double *x, void *vctx) {
    AttnCtx *c = vctx;
    size_t m = (size_t)c->n * c->H * c->hd;
    double *out = malloc(m * sizeof(double));
    ref_attention(out, NULL, c->vary == 0 ? x : c->q, c->vary == 1 ? x : c->k, c->vary == 2 ? x : c->v, c->pos,
                  c->n, c->H, c->KVH, c->hd);
    double l = dot_d(out, c->R, m);
    free(out);
    return l;
}

static size_t *sample_indices(size_t n, size_t count) {
    size_t *idx = malloc(count * sizeof(size_t));
    for (size_t i = 0; i < count; i++) idx[i] = (size_t)rng_below(&g_rng, n);
    return idx;
}

static void attention_case(const int *lens, int n_samples, int H, int KVH, int hd) {
    int n = 0;
    for (int s = 0; s < n_samples; s++) n += lens[s];
    int32_t *pos = malloc(sizeof(int32_t) * n);
    for (int s = 0, i = 0; s < n_samples; s++)
        for (int p = 0; p < lens[s]; p++) pos[i++] = p;
    const size_t mq = (size_t)n * H * hd, mk = (size_t)n * KVH * hd;
    float *q = randn(mq, 1), *k = randn(mk, 1), *v = randn(mk, 1), *R = randn(mq, 1);
    float *d_q = dev(q, mq * 4), *d_k = dev(k, mk * 4), *d_v = dev(v, mk * 4);
    int32_t *d_pos = (int32_t *)dev(pos, sizeof(int32_t) * n);
    float *d_out = ops_alloc(mq * 4), *d_lse = ops_alloc(sizeof(float) * n * H);
    ops_attention_forward(d_out, d_lse, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    double *qd = to_double(q, mq), *kd = to_double(k, mk), *vd = to_double(v, mk);
    double *ref = malloc(mq * sizeof(double)), *ref_lse = malloc(sizeof(double) * n * H);
    ref_attention(ref, ref_lse, qd, kd, vd, pos, n, H, KVH, hd);
    float *ref_f = malloc(mq * 4), *ref_lse_f = malloc(sizeof(float) * n * H);
    for (size_t i = 0; i < mq; i++) ref_f[i] = (float)ref[i];
    for (int i = 0; i < n * H; i++) ref_lse_f[i] = (float)ref_lse[i];
    float *got = host(d_out, mq), *got_lse = host(d_lse, (size_t)n * H);
    test_assert_close("attention forward", got, ref_f, mq, 1e-5, 1e-4);
    test_assert_close("attention lse", got_lse, ref_lse_f, (size_t)n * H, 1e-5, 1e-5);
    // Backward: garbage in the outputs first, since they are overwritten.
    float *dd_out = dev(R, mq * 4), *dd_q = dev(R, mq * 4), *dd_k = dev(k, mk * 4), *dd_v = dev(v, mk * 4);
    ops_attention_backward(dd_q, dd_k, dd_v, dd_out, d_out, d_lse, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    float *gq = host(dd_q, mq), *gk = host(dd_k, mk), *gv = host(dd_v, mk);
    AttnCtx c = {n, H, KVH, hd, pos, qd, kd, vd, R, 0};
    const size_t checks = 150;
    size_t *iq = sample_indices(mq, checks), *ik = sample_indices(mk, checks);
    check_grad("attention d_q", attn_loss, &c, qd, mq, gq, iq, checks, 1e-4, 1e-3);
    c.vary = 1;
    check_grad("attention d_k", attn_loss, &c, kd, mk, gk, ik, checks, 1e-4, 1e-3);
    c.vary = 2;
    check_grad("attention d_v", attn_loss, &c, vd, mk, gv, ik, checks, 1e-4, 1e-3);
    free(iq), free(ik), free(pos), free(q), free(k), free(v), free(R), free(qd), free(kd), free(vd), free(ref);
    free(ref_lse), free(ref_f), free(ref_lse_f), free(got), free(got_lse), free(gq), free(gk), free(gv);
    ops_free(d_q), ops_free(d_k), ops_free(d_v), ops_free(d_pos), ops_free(d_out), ops_free(d_lse);
    ops_free(dd_out), ops_free(dd_q), ops_free(dd_k), ops_free(dd_v);
}

static void test_attention(void **state) {
    (void)state;
    // Segments longer than the 64-row query block, single tokens, grouped-query heads.
    const int lens[] = {70, 1, 5, 33, 2};
    attention_case(lens, 5, 4, 2, 8);
    const int lens2[] = {9, 4};
    attention_case(lens2, 2, 3, 3, 6);   // plain multi-head attention
    const int lens3[] = {130};
    attention_case(lens3, 1, 2, 1, 4);   // one kv head for all
    // Head sizes through the specialised loops (16, 48; 88 = 64 + 24 in two slices) and the
    // generic one (hd 6 above, 36 here).
    const int lens4[] = {40, 17};
    attention_case(lens4, 2, 4, 2, 16);
    const int lens5[] = {20, 3};
    attention_case(lens5, 2, 2, 1, 48);
    attention_case(lens5, 2, 2, 2, 88);
    attention_case(lens5, 2, 1, 1, 36);
}

// A packed row gives each sample exactly what it gets alone: the samples do not see each other.
static void test_attention_packed_isolation(void **state) {
    (void)state;
    const int H = 2, KVH = 1, hd = 4, la = 6, lb = 5, n = la + lb;
    const size_t mq = (size_t)n * H * hd, mk = (size_t)n * KVH * hd;
    float *q = randn(mq, 1), *k = randn(mk, 1), *v = randn(mk, 1);
    int32_t pos[11];
    for (int i = 0; i < n; i++) pos[i] = i < la ? i : i - la;
    float *d_q = dev(q, mq * 4), *d_k = dev(k, mk * 4), *d_v = dev(v, mk * 4), *d_out = ops_alloc(mq * 4);
    int32_t *d_pos = (int32_t *)dev(pos, sizeof pos);
    ops_attention_forward(d_out, NULL, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    float *packed = host(d_out, mq);
    // Sample b alone (rows la..n-1).
    float *d_qb = dev(q + (size_t)la * H * hd, (size_t)lb * H * hd * 4);
    float *d_kb = dev(k + (size_t)la * KVH * hd, (size_t)lb * KVH * hd * 4);
    float *d_vb = dev(v + (size_t)la * KVH * hd, (size_t)lb * KVH * hd * 4);
    float *d_ob = ops_alloc((size_t)lb * H * hd * 4);
    int32_t *d_posb = (int32_t *)dev(pos + la, sizeof(int32_t) * lb);
    ops_attention_forward(d_ob, NULL, d_qb, d_kb, d_vb, d_posb, lb, H, KVH, hd);
    float *alone = host(d_ob, (size_t)lb * H * hd);
    assert_memory_equal(alone, packed + (size_t)la * H * hd, (size_t)lb * H * hd * sizeof(float));
    free(q), free(k), free(v), free(packed), free(alone);
    ops_free(d_q), ops_free(d_k), ops_free(d_v), ops_free(d_out), ops_free(d_pos), ops_free(d_qb), ops_free(d_kb);
    ops_free(d_vb), ops_free(d_ob), ops_free(d_posb);
}

// ---------------------------------------------------------------------------------------
// swiglu

typedef struct {
    size_t n;
    const double *g, *u;
    const float *R;
    int vary;
} SwigluCtx;

static double swiglu_loss(const double *x, void *vctx) {
    SwigluCtx *c = vctx;
    const double *g = c->vary == 0 ? x : c->g, *u = c->vary == 1 ? x : c->u;
    double l = 0;
    for (size_t i = 0; i < c->n; i++) l += c->R[i] * g[i] / (1 + exp(-g[i])) * u[i];
    return l;
}

static void test_swiglu(void **state) {
    (void)state;
    const size_t n = 301;
    float *g = randn(n, 3), *u = randn(n, 1), *R = randn(n, 1);
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f;  // saturated and zero
    float *d_g = dev(g, n * 4), *d_u = dev(u, n * 4), *d_o = ops_alloc(n * 4);
    ops_swiglu_forward(d_o, d_g, d_u, n);
    float *got = host(d_o, n), *ref = malloc(n * 4);
    for (size_t i = 0; i < n; i++) ref[i] = (float)((double)g[i] / (1 + exp(-(double)g[i])) * u[i]);
    test_assert_close("swiglu forward", got, ref, n, 1e-6, 1e-5);
    // In place: d_gate over gate, d_up over up.
    float *d_R = dev(R, n * 4);
    ops_swiglu_backward(d_g, d_u, d_R, d_g, d_u, n);
    float *gg = host(d_g, n), *gu = host(d_u, n);
    double *gd = to_double(g, n), *ud = to_double(u, n);
    SwigluCtx c = {n, gd, ud, R, 0};
    check_grad("swiglu d_gate", swiglu_loss, &c, gd, n, gg, NULL, 0, 1e-5, 1e-4);
    c.vary = 1;
    check_grad("swiglu d_up", swiglu_loss, &c, ud, n, gu, NULL, 0, 1e-5, 1e-4);
    free(g), free(u), free(R), free(got), free(ref), free(gg), free(gu), free(gd), free(ud);
    ops_free(d_g), ops_free(d_u), ops_free(d_o), ops_free(d_R);
}

// ---------------------------------------------------------------------------------------
// embedding

static void test_embedding(void **state) {
    (void)state;
    const int V = 11, D = 5, n = 8;
    const int32_t tokens[8] = {3, 0, 10, 3, 3, 7, 0, 1};
    float *table = randn((size_t)V * D, 1), *R = randn((size_t)n * D, 1), *start = randn((size_t)V * D, 1);
    float *d_t = dev(table, sizeof(float) * V * D), *d_o = ops_alloc(sizeof(float) * n * D);
    int32_t *d_tok = (int32_t *)dev(tokens, sizeof tokens);
    ops_embedding_forward(d_o, d_tok, d_t, n, D);
    float *got = host(d_o, (size_t)n * D);
    for (int i = 0; i < n; i++) assert_memory_equal(got + i * D, table + tokens[i] * D, D * sizeof(float));
    float *d_R = dev(R, sizeof(float) * n * D), *d_g = dev(start, sizeof(float) * V * D);
    ops_embedding_backward(d_g, d_R, d_tok, n, D);
    float *g = host(d_g, (size_t)V * D), *ref = malloc(sizeof(float) * V * D);
    for (int r = 0; r < V; r++)
        for (int j = 0; j < D; j++) {
            double s = start[r * D + j];
            for (int i = 0; i < n; i++)
                if (tokens[i] == r) s += R[i * D + j];
            ref[r * D + j] = (float)s;
        }
    test_assert_close("embedding backward", g, ref, (size_t)V * D, 1e-6, 1e-6);
    free(table), free(R), free(start), free(got), free(g), free(ref);
    ops_free(d_t), ops_free(d_o), ops_free(d_tok), ops_free(d_R), ops_free(d_g);
}

// ---------------------------------------------------------------------------------------
// logprob / entropy

typedef struct {
    int n, V;
    double T;
    const int32_t *targets;
    const float *wl, *we;  // weights of logp and entropy in the loss
} LogprobCtx;

static void ref_logprob(double *logp, double *ent, const double *logits, const int32_t *targets, int n, int V,
                        double T) {
    for (int i = 0; i < n; i++) {
        const double *z = logits + (size_t)i * V;
        double mx = -INFINITY, s = 0, h = 0;
        for (int j = 0; j < V; j++) mx = fmax(mx, z[j] / T);
        for (int j = 0; j < V; j++) s += exp(z[j] / T - mx);
        double lse = mx + log(s);
        for (int j = 0; j < V; j++) {
            double lp = z[j] / T - lse;
            h -= exp(lp) * lp;
        }
        logp[i] = targets[i] >= 0 ? z[targets[i]] / T - lse : 0.0;
        ent[i] = h;
    }
}

static double logprob_loss(const double *x, void *vctx) {
    LogprobCtx *c = vctx;
    double *lp = malloc(sizeof(double) * c->n), *h = malloc(sizeof(double) * c->n);
    ref_logprob(lp, h, x, c->targets, c->n, c->V, c->T);
    double l = 0;
    for (int i = 0; i < c->n; i++) l += c->wl[i] * lp[i] + (c->we ? c->we[i] * h[i] : 0.0);
    free(lp), free(h);
    return l;
}

static void test_logprob(void **state) {
    (void)state;
    const int n = 6, V = 37;
    const float T = 0.7f;
    const int32_t targets[6] = {0, 36, 5, -1, 5, 12};
    float *logits = randn((size_t)n * V, 3), *wl = randn(n, 1), *we = randn(n, 1);
    logits[5 * V + 12] = 60.0f;  // a nearly one-hot row: stable, entropy about 0
    float *d_l = dev(logits, sizeof(float) * n * V);
    int32_t *d_t = (int32_t *)dev(targets, sizeof targets);
    float *d_lp = ops_alloc(sizeof(float) * n), *d_h = ops_alloc(sizeof(float) * n), *d_lse = ops_alloc(sizeof(float) * n);
    ops_logprob_forward(d_lp, d_h, d_lse, d_l, d_t, n, V, T);
    float *lp = host(d_lp, n), *h = host(d_h, n);
    double *ld = to_double(logits, (size_t)n * V), rlp[6], rh[6];
    ref_logprob(rlp, rh, ld, targets, n, V, T);
    float rlp_f[6], rh_f[6];
    for (int i = 0; i < n; i++) rlp_f[i] = (float)rlp[i], rh_f[i] = (float)rh[i];
    test_assert_close("logp", lp, rlp_f, n, 1e-5, 1e-5);
    test_assert_close("entropy", h, rh_f, n, 1e-5, 1e-4);
    assert_true(lp[3] == 0.0f);
    // Gradient of logp terms only, into a separate buffer.
    float *d_wl = dev(wl, sizeof(float) * n), *d_we = dev(we, sizeof(float) * n);
    float *d_g = ops_alloc(sizeof(float) * n * V);
    ops_logprob_backward(d_g, d_l, d_lse, NULL, d_t, d_wl, NULL, n, V, T);
    float *g = host(d_g, (size_t)n * V);
    LogprobCtx c = {n, V, T, targets, wl, NULL};
    check_grad("logprob d_logits", logprob_loss, &c, ld, (size_t)n * V, g, NULL, 0, 1e-5, 1e-3);
    // With the entropy term, in place over the logits.
    ops_logprob_backward(d_l, d_l, d_lse, d_h, d_t, d_wl, d_we, n, V, T);
    float *g2 = host(d_l, (size_t)n * V);
    c.we = we;
    check_grad("logprob+entropy d_logits (in place)", logprob_loss, &c, ld, (size_t)n * V, g2, NULL, 0, 1e-5, 1e-3);
    free(logits), free(wl), free(we), free(lp), free(h), free(ld), free(g), free(g2);
    ops_free(d_l), ops_free(d_t), ops_free(d_lp), ops_free(d_h), ops_free(d_lse), ops_free(d_wl), ops_free(d_we);
    ops_free(d_g);
}

// Large logits must not overflow: a row of huge values gives finite logp and entropy log(V).
static void test_logprob_stable(void **state) {
    (void)state;
    const int V = 1000;
    float *logits = malloc(sizeof(float) * V);
    for (int j = 0; j < V; j++) logits[j] = 1e4f;
    int32_t target = 3;
    float *d_l = dev(logits, sizeof(float) * V), *d_lp = ops_alloc(4), *d_h = ops_alloc(4), *d_lse = ops_alloc(4);
    int32_t *d_t = (int32_t *)dev(&target, 4);
    ops_logprob_forward(d_lp, d_h, d_lse, d_l, d_t, 1, V, 1.0f);
    float lp, h;
    ops_copy_to_host(&lp, d_lp, 4);
    ops_copy_to_host(&h, d_h, 4);
    assert_true(fabs(lp + log(V)) < 1e-4);
    assert_true(fabs(h - log(V)) < 1e-3);
    free(logits);
    ops_free(d_l), ops_free(d_lp), ops_free(d_h), ops_free(d_lse), ops_free(d_t);
}

// ---------------------------------------------------------------------------------------
// elementwise, reductions, adamw

static void test_elementwise(void **state) {
    (void)state;
    const size_t n = 5000;
    float *x = randn(n, 1), *y = randn(n, 1);
    float *d_x = dev(x, n * 4), *d_y = dev(y, n * 4);
    ops_add(d_y, d_x, n);
    ops_scale(d_y, 0.5f, n);
    float *got = host(d_y, n), *ref = malloc(n * 4);
    double ss = 0;
    for (size_t i = 0; i < n; i++) ref[i] = (y[i] + x[i]) * 0.5f, ss += (double)x[i] * x[i];
    assert_memory_equal(got, ref, n * sizeof(float));
    assert_true(fabs(ops_sum_squares(d_x, n) - ss) < 1e-4 * ss);
    assert_true(ops_sum_squares(d_x, 0) == 0.0);
    free(x), free(y), free(got), free(ref);
    ops_free(d_x), ops_free(d_y);
}

// Three AdamW steps against the update rule written out in double precision.
static void test_adamw(void **state) {
    (void)state;
    const size_t n = 1001;
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, gs = 0.5f;
    float *p = randn(n, 1), *m = calloc(n, 4), *v = calloc(n, 4);
    double *pr = to_double(p, n), *mr = calloc(n, 8), *vr = calloc(n, 8);
    float *d_p = dev(p, n * 4), *d_m = dev(m, n * 4), *d_v = dev(v, n * 4);
    for (long step = 1; step <= 3; step++) {
        float *g = randn(n, 1);
        g[0] = 0.0f;
        float *d_g = dev(g, n * 4);
        ops_adamw(d_p, d_g, d_m, d_v, n, lr, b1, b2, eps, wd, gs, step);
        for (size_t i = 0; i < n; i++) {
            double gi = (double)g[i] * gs;
            pr[i] *= 1 - (double)lr * wd;
            mr[i] = b1 * mr[i] + (1 - (double)b1) * gi;
            vr[i] = b2 * vr[i] + (1 - (double)b2) * gi * gi;
            double mh = mr[i] / (1 - pow(b1, step)), vh = vr[i] / (1 - pow(b2, step));
            pr[i] -= lr * mh / (sqrt(vh) + eps);
        }
        free(g);
        ops_free(d_g);
    }
    float *got = host(d_p, n), *ref = malloc(n * 4);
    for (size_t i = 0; i < n; i++) ref[i] = (float)pr[i];
    test_assert_close("adamw params", got, ref, n, 1e-6, 1e-5);
    free(p), free(m), free(v), free(pr), free(mr), free(vr), free(got), free(ref);
    ops_free(d_p), ops_free(d_m), ops_free(d_v);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul),     cmocka_unit_test(test_matmul_packed),
        cmocka_unit_test(test_matmul_packed_builds_agree), cmocka_unit_test(test_matmul_stacked),
        cmocka_unit_test(test_cpu_flushes_denormals),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),       cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_packed_isolation),
        cmocka_unit_test(test_swiglu),     cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_logprob),    cmocka_unit_test(test_logprob_stable),
        cmocka_unit_test(test_elementwise), cmocka_unit_test(test_adamw),
    };
    int failed = cmocka_run_group_tests_name("ops (fastest build)", tests, setup, NULL);
    setenv("ASYNCRL_CPU_NO_AVX512", "1", 1);  // on a processor with AVX-512: its AVX2 build
    failed += cmocka_run_group_tests_name("ops (AVX2 build)", tests, setup, NULL);
    setenv("ASYNCRL_CPU_BASELINE", "1", 1);
    failed += cmocka_run_group_tests_name("ops (baseline build)", tests, setup, NULL);
    return failed;
}
