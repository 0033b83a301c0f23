// GPU tests of the op set: every op of kernels/ops.h as the built backend (CUDA) runs it,
// compared with the CPU backend's op (ref_ops_*, from the reference archive the Makefile builds)
// on the same random inputs, plus the properties the CPU tests cannot see: bitwise determinism
// of repeated calls, the bf16 weight shadow being refreshed after every kind of write, and the
// memory ops' edge cases.
//
// Tolerances: fp32 ops are compared at fp32 accuracy (the summation orders differ). A GEMM whose
// weight lies in the registered parameter buffer runs in bf16 with fp32 accumulation, and is
// checked element by element against the bf16 error bound
//     |got - ref| <= 2^-7 * sum_k |a_k| |b_k| + 1e-5
// (each operand rounded to bf16 has relative error <= 2^-9, so each product <= ~2^-8; the bound
// doubles that), with sum_k |a_k||b_k| computed by the reference GEMM on absolute values.
//
// `make CUDA=1 test-gpu` runs it on a GPU. `make gpu-tests-on-cpu` builds the same file against
// the CPU backend (CPU compared with itself) to check the harness on a machine without a GPU;
// the checks that only make sense on CUDA (bf16 really used) are skipped there.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/rng.h"
#include "ops.h"
#include "ref_ops.h"

// ---------------------------------------------------------------------------------------
// Helpers. Reference ops run on host memory (malloc); the ops under test on ops_alloc memory.

static Rng g_rng;
static int g_cuda;  // the backend under test is CUDA

static float *randn(size_t n, float scale) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&g_rng);
    return x;
}

static float *copy_of(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static float *abs_of(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
    return y;
}

static float *dev(const float *host, size_t n) {
    float *d = ops_alloc(n * sizeof(float));
    ops_copy_to_device(d, host, n * sizeof(float));
    return d;
}

static int32_t *dev_i(const int32_t *host, size_t n) {
    int32_t *d = ops_alloc(n * sizeof(int32_t));
    ops_copy_to_device(d, host, n * sizeof(int32_t));
    return d;
}

static float *host(const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    ops_copy_to_host(h, d, n * sizeof(float));
    return h;
}

// Compares device result d (n) with the host reference ref.
static void expect_close(const char *what, const float *d, const float *ref, size_t n, double atol, double rtol) {
    float *got = host(d, n);
    test_assert_close(what, got, ref, n, atol, rtol);
    free(got);
}

static void expect_equal(const char *what, const float *d, const float *ref, size_t n) {
    float *got = host(d, n);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &ref[i], sizeof(float)) != 0)
            fail_msg("%s: index %zu differs: %.9g vs %.9g", what, i, got[i], ref[i]);
    free(got);
}

// |got - ref| <= rel * bound + atol for every element (bound >= 0).
static void expect_within_bound(const char *what, const float *d, const float *ref, const float *bound, size_t n,
                                double rel, double atol) {
    float *got = host(d, n);
    double worst = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const double allowed = rel * bound[i] + atol, err = fabs((double)got[i] - ref[i]);
        const double ratio = isfinite(got[i]) ? err / allowed : INFINITY;
        if (ratio > worst) worst = ratio, at = i;
    }
    if (worst > 1.0)
        fail_msg("%s: index %zu got %.9g want %.9g, error %.3g exceeds the bound %.3g", what, at, got[at], ref[at],
                 fabs((double)got[at] - ref[at]), rel * bound[at] + atol);
    free(got);
}

// Largest |d - ref| (to show that a bf16 path differs from fp32 at all).
static double max_diff(const float *d, const float *ref, size_t n) {
    float *got = host(d, n);
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)got[i] - ref[i]));
    free(got);
    return m;
}

static void expect_same_bits(const char *what, const float *d1, const float *d2, size_t n) {
    float *a = host(d1, n), *b = host(d2, n);
    if (memcmp(a, b, n * sizeof(float)) != 0) fail_msg("%s: two identical calls gave different bits", what);
    free(a);
    free(b);
}

#define BF16_REL (1.0 / 128.0)

static int setup(void **state) {
    (void)state;
    ops_init(2);
    ref_ops_init(2);
    rng_seed(&g_rng, 4321);
    g_cuda = strcmp(ops_backend_name(), "cuda") == 0;
    print_message("# backend under test: %s\n", ops_backend_name());
    return 0;
}

// ---------------------------------------------------------------------------------------
// Memory.

static void test_memory(void **state) {
    (void)state;
    const size_t n = 100003;
    float *d = ops_alloc(n * sizeof(float));
    float *zeros = calloc(n, sizeof(float));
    expect_equal("ops_alloc zero-fills", d, zeros, n);
    float *x = randn(n, 1);
    ops_copy_to_device(d, x, n * sizeof(float));
    expect_equal("copy to device and back", d, x, n);
    float *e = ops_alloc(n * sizeof(float));
    ops_copy(e, d, n * sizeof(float));
    expect_equal("device to device copy", e, x, n);
    // Overlapping copies have memmove semantics, both directions.
    ops_copy(d + 10, d, (n - 10) * sizeof(float));
    memmove(x + 10, x, (n - 10) * sizeof(float));
    expect_equal("overlapping copy forward", d, x, n);
    ops_copy(d, d + 7, (n - 7) * sizeof(float));
    memmove(x, x + 7, (n - 7) * sizeof(float));
    expect_equal("overlapping copy backward", d, x, n);
    ops_zero(d + 5, 100 * sizeof(float));
    memset(x + 5, 0, 100 * sizeof(float));
    expect_equal("ops_zero of a range", d, x, n);
    // A device pointer where ops.h says host still copies (the direction comes from the pointers).
    ops_copy_to_device(e, d, n * sizeof(float));
    expect_equal("ops_copy_to_device from device memory", e, x, n);
    void *tiny = ops_alloc(0);
    assert_non_null(tiny);
    ops_free(tiny);
    ops_free(NULL);
    ops_synchronize();
    ops_free(d), ops_free(e);
    free(zeros), free(x);
}

// ---------------------------------------------------------------------------------------
// Matmul: fp32 path (weight outside the registered buffer).

static void matmul_fp32_case(int n, int I, int O, int with_bias) {
    const size_t nI = (size_t)n * I, nO = (size_t)n * O, OI = (size_t)O * I;
    float *in = randn(nI, 1), *w = randn(OI, 0.5f), *b = randn(O, 1), *prev = randn(nO, 1);
    float *d_in = dev(in, nI), *d_w = dev(w, OI), *d_b = dev(b, O), *d_out = dev(prev, nO);
    const float *bias_h = with_bias ? b : NULL, *bias_d = with_bias ? d_b : NULL;
    float *ref = copy_of(prev, nO);
    ops_matmul_forward(d_out, d_in, d_w, bias_d, n, I, O, 1);
    ref_ops_matmul_forward(ref, in, w, bias_h, n, I, O, 1);
    expect_close("matmul fp32 forward (accumulate)", d_out, ref, nO, 1e-4, 1e-4);
    ops_matmul_forward(d_out, d_in, d_w, bias_d, n, I, O, 0);
    ref_ops_matmul_forward(ref, in, w, bias_h, n, I, O, 0);
    expect_close("matmul fp32 forward", d_out, ref, nO, 1e-4, 1e-4);

    float *R = randn(nO, 1), *gw0 = randn(OI, 1), *gb0 = randn(O, 1), *gin0 = randn(nI, 1);
    float *dd_out = dev(R, nO), *dd_in = dev(gin0, nI), *dd_w = dev(gw0, OI), *dd_b = dev(gb0, O);
    float *r_in = copy_of(gin0, nI), *r_w = copy_of(gw0, OI), *r_b = copy_of(gb0, O);
    ops_matmul_backward(dd_in, dd_w, with_bias ? dd_b : NULL, dd_out, d_in, d_w, n, I, O, 0);
    ref_ops_matmul_backward(r_in, r_w, with_bias ? r_b : NULL, R, in, w, n, I, O, 0);
    expect_close("matmul fp32 d_in", dd_in, r_in, nI, 1e-4, 1e-4);
    expect_close("matmul fp32 d_weight (+=)", dd_w, r_w, OI, 1e-3, 1e-4);
    expect_close("matmul fp32 d_bias (+=)", dd_b, r_b, O, 1e-3, 1e-4);
    ops_matmul_backward(dd_in, NULL, NULL, dd_out, d_in, d_w, n, I, O, 1);
    ref_ops_matmul_backward(r_in, NULL, NULL, R, in, w, n, I, O, 1);
    expect_close("matmul fp32 d_in (accumulate)", dd_in, r_in, nI, 1e-4, 1e-4);
    free(in), free(w), free(b), free(prev), free(ref), free(R), free(gw0), free(gb0), free(gin0);
    free(r_in), free(r_w), free(r_b);
    ops_free(d_in), ops_free(d_w), ops_free(d_b), ops_free(d_out), ops_free(dd_out), ops_free(dd_in);
    ops_free(dd_w), ops_free(dd_b);
}

static void test_matmul_fp32(void **state) {
    (void)state;
    matmul_fp32_case(70, 12, 9, 1);
    matmul_fp32_case(3, 40, 50, 0);
    matmul_fp32_case(257, 300, 130, 1);
    matmul_fp32_case(1, 64, 1000, 0);  // one decode row
}

// ---------------------------------------------------------------------------------------
// Matmul: bf16 path (weight inside the registered parameter buffer).

static void matmul_bf16_case(int n, int I, int O, int with_bias) {
    const size_t nI = (size_t)n * I, nO = (size_t)n * O, OI = (size_t)O * I;
    const size_t offset = 37, total = offset + OI + 11;  // other parameters around the weight
    float *params = randn(total, 0.5f);
    const float *w = params + offset;
    float *d_params = dev(params, total);
    ops_params_updated(d_params, total);
    const float *d_w = d_params + offset;
    float *in = randn(nI, 1), *b = randn(O, 1), *prev = randn(nO, 1);
    float *d_in = dev(in, nI), *d_b = dev(b, O), *d_out = dev(prev, nO);
    const float *bias_h = with_bias ? b : NULL, *bias_d = with_bias ? d_b : NULL;
    float *abs_in = abs_of(in, nI), *abs_w = abs_of(w, OI);

    // Forward: bound = |in| @ |W|^T.
    float *bound = malloc(nO * sizeof(float)), *ref = copy_of(prev, nO);
    ref_ops_matmul_forward(bound, abs_in, abs_w, NULL, n, I, O, 0);
    ops_matmul_forward(d_out, d_in, d_w, bias_d, n, I, O, 1);
    ref_ops_matmul_forward(ref, in, w, bias_h, n, I, O, 1);
    expect_within_bound("matmul bf16 forward (accumulate)", d_out, ref, bound, nO, BF16_REL, 1e-5);
    ops_matmul_forward(d_out, d_in, d_w, bias_d, n, I, O, 0);
    ref_ops_matmul_forward(ref, in, w, bias_h, n, I, O, 0);
    expect_within_bound("matmul bf16 forward", d_out, ref, bound, nO, BF16_REL, 1e-5);
    if (g_cuda && I >= 8) assert_true(max_diff(d_out, ref, nO) > 0.0);  // bf16 was really used

    // Backward: d_in bound = |d_out| @ |W|, d_weight bound = |d_out|^T @ |in|.
    float *R = randn(nO, 1), *abs_R = abs_of(R, nO), *gin0 = randn(nI, 1), *gw0 = randn(OI, 1), *gb0 = randn(O, 1);
    float *bound_in = malloc(nI * sizeof(float)), *bound_w = calloc(OI, sizeof(float));
    ref_ops_matmul_backward(bound_in, bound_w, NULL, abs_R, abs_in, abs_w, n, I, O, 0);
    float *dd_out = dev(R, nO), *dd_in = dev(gin0, nI), *dd_w = dev(gw0, OI), *dd_b = dev(gb0, O);
    float *r_in = copy_of(gin0, nI), *r_w = copy_of(gw0, OI), *r_b = copy_of(gb0, O);
    ops_matmul_backward(dd_in, dd_w, with_bias ? dd_b : NULL, dd_out, d_in, d_w, n, I, O, 0);
    ref_ops_matmul_backward(r_in, r_w, with_bias ? r_b : NULL, R, in, w, n, I, O, 0);
    expect_within_bound("matmul bf16 d_in", dd_in, r_in, bound_in, nI, BF16_REL, 1e-5);
    expect_within_bound("matmul bf16 d_weight (+=, fp32 accumulation)", dd_w, r_w, bound_w, OI, BF16_REL, 1e-4);
    expect_close("matmul d_bias (+=)", dd_b, r_b, O, 1e-3, 1e-4);
    ops_matmul_backward(dd_in, NULL, NULL, dd_out, d_in, d_w, n, I, O, 1);
    ref_ops_matmul_backward(r_in, NULL, NULL, R, in, w, n, I, O, 1);
    for (size_t i = 0; i < nI; i++) bound_in[i] *= 2;  // two bf16 products summed
    expect_within_bound("matmul bf16 d_in (accumulate)", dd_in, r_in, bound_in, nI, BF16_REL, 2e-5);

    free(params), free(in), free(b), free(prev), free(abs_in), free(abs_w), free(bound), free(ref), free(R);
    free(abs_R), free(gin0), free(gw0), free(gb0), free(bound_in), free(bound_w), free(r_in), free(r_w), free(r_b);
    ops_free(d_params);  // also unregisters it
    ops_free(d_in), ops_free(d_b), ops_free(d_out), ops_free(dd_out), ops_free(dd_in), ops_free(dd_w);
    ops_free(dd_b);
}

static void test_matmul_bf16(void **state) {
    (void)state;
    matmul_bf16_case(64, 128, 96, 1);
    matmul_bf16_case(3, 40, 50, 0);
    matmul_bf16_case(1, 1024, 33, 0);  // decode: one row, long rows
    matmul_bf16_case(300, 33, 7, 1);   // odd sizes, misaligned weight
    matmul_bf16_case(512, 256, 512, 0);
}

// Every way the parameters can change reaches the bf16 copy before the next GEMM.
static void expect_forward_with(const char *what, const float *d_w, const float *w, int n, int I, int O) {
    const size_t nI = (size_t)n * I, nO = (size_t)n * O;
    float *in = randn(nI, 1), *d_in = dev(in, nI), *d_out = ops_alloc(nO * sizeof(float));
    float *ref = malloc(nO * sizeof(float)), *bound = malloc(nO * sizeof(float));
    float *abs_in = abs_of(in, nI), *abs_w = abs_of(w, (size_t)O * I);
    ops_matmul_forward(d_out, d_in, d_w, NULL, n, I, O, 0);
    ref_ops_matmul_forward(ref, in, w, NULL, n, I, O, 0);
    ref_ops_matmul_forward(bound, abs_in, abs_w, NULL, n, I, O, 0);
    expect_within_bound(what, d_out, ref, bound, nO, BF16_REL, 1e-5);
    free(in), free(ref), free(bound), free(abs_in), free(abs_w);
    ops_free(d_in), ops_free(d_out);
}

static void test_params_shadow_refresh(void **state) {
    (void)state;
    const int n = 8, I = 32, O = 16;
    const size_t OI = (size_t)O * I;
    float *w = randn(OI, 1), *d_w = dev(w, OI);
    ops_params_updated(d_w, OI);
    expect_forward_with("registered weights", d_w, w, n, I, O);
    // Written by a host copy, without ops_params_updated.
    free(w);
    w = randn(OI, 1);
    ops_copy_to_device(d_w, w, OI * sizeof(float));
    expect_forward_with("after ops_copy_to_device into the parameters", d_w, w, n, I, O);
    // An optimizer step.
    float *g = randn(OI, 1), *m = calloc(OI, sizeof(float)), *v = calloc(OI, sizeof(float));
    float *d_g = dev(g, OI), *d_m = dev(m, OI), *d_v = dev(v, OI);
    ops_adamw(d_w, d_g, d_m, d_v, OI, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 1);
    ref_ops_adamw(w, g, m, v, OI, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1.0f, 1);
    float *w_now = host(d_w, OI);  // the step's exact result (FMA contraction may differ by an ulp)
    test_assert_close("adamw on registered parameters", w_now, w, OI, 1e-6, 1e-5);
    expect_forward_with("after ops_adamw on the parameters", d_w, w_now, n, I, O);
    // Scale, add, zero, device copy.
    ops_scale(d_w, -2.0f, OI);
    for (size_t i = 0; i < OI; i++) w_now[i] *= -2.0f;
    expect_forward_with("after ops_scale", d_w, w_now, n, I, O);
    ops_add(d_w, d_g, OI);
    for (size_t i = 0; i < OI; i++) w_now[i] += g[i];
    expect_forward_with("after ops_add", d_w, w_now, n, I, O);
    ops_copy(d_w, d_g, OI * sizeof(float));
    expect_forward_with("after ops_copy into the parameters", d_w, g, n, I, O);
    ops_zero(d_w, OI / 2 * sizeof(float));
    for (size_t i = 0; i < OI / 2; i++) g[i] = 0.0f;
    expect_forward_with("after ops_zero of half the parameters", d_w, g, n, I, O);
    // A second buffer registered instead (inference swapping in received weights).
    float *w2 = randn(OI, 1), *d_w2 = dev(w2, OI);
    ops_params_updated(d_w2, OI);
    expect_forward_with("a newly registered buffer", d_w2, w2, n, I, O);
    expect_forward_with("the old buffer, no longer registered (fp32)", d_w, g, n, I, O);
    free(w), free(g), free(m), free(v), free(w_now), free(w2);
    ops_free(d_w), ops_free(d_g), ops_free(d_m), ops_free(d_v), ops_free(d_w2);
}

// ---------------------------------------------------------------------------------------
// RMSNorm.

static void rmsnorm_case(int n, int dim) {
    const size_t nd = (size_t)n * dim;
    const float eps = 1e-5f;
    float *x = randn(nd, 2), *w = randn(dim, 1), *R = randn(nd, 1), *start = randn(nd, 1), *dw0 = randn(dim, 1);
    float *d_x = dev(x, nd), *d_w = dev(w, dim), *d_out = ops_alloc(nd * sizeof(float));
    float *d_rstd = ops_alloc((size_t)n * sizeof(float));
    float *ref = malloc(nd * sizeof(float)), *ref_rstd = malloc((size_t)n * sizeof(float));
    ops_rmsnorm_forward(d_out, d_rstd, d_x, d_w, n, dim, eps);
    ref_ops_rmsnorm_forward(ref, ref_rstd, x, w, n, dim, eps);
    expect_close("rmsnorm forward", d_out, ref, nd, 1e-5, 1e-5);
    expect_close("rmsnorm rstd", d_rstd, ref_rstd, n, 1e-6, 1e-5);
    float *d_out2 = ops_alloc(nd * sizeof(float));
    ops_rmsnorm_forward(d_out2, NULL, d_x, d_w, n, dim, eps);  // rstd may be NULL
    expect_same_bits("rmsnorm forward without rstd", d_out2, d_out, nd);
    float *dd_out = dev(R, nd), *dd_x = dev(start, nd), *dd_w = dev(dw0, dim);
    float *r_x = copy_of(start, nd), *r_w = copy_of(dw0, dim);
    ops_rmsnorm_backward(dd_x, dd_w, dd_out, d_x, d_w, d_rstd, n, dim);
    ref_ops_rmsnorm_backward(r_x, r_w, R, x, w, ref_rstd, n, dim);
    expect_close("rmsnorm d_in (+=)", dd_x, r_x, nd, 1e-5, 1e-4);
    expect_close("rmsnorm d_weight (+=)", dd_w, r_w, dim, 1e-3, 1e-4);
    ops_rmsnorm_backward(dd_x, NULL, dd_out, d_x, d_w, d_rstd, n, dim);  // d_weight may be NULL
    ref_ops_rmsnorm_backward(r_x, NULL, R, x, w, ref_rstd, n, dim);
    expect_close("rmsnorm d_in (+= again, no d_weight)", dd_x, r_x, nd, 2e-5, 1e-4);
    free(x), free(w), free(R), free(start), free(dw0), free(ref), free(ref_rstd), free(r_x), free(r_w);
    ops_free(d_x), ops_free(d_w), ops_free(d_out), ops_free(d_rstd), ops_free(d_out2), ops_free(dd_out);
    ops_free(dd_x), ops_free(dd_w);
}

static void test_rmsnorm(void **state) {
    (void)state;
    rmsnorm_case(9, 24);
    rmsnorm_case(3, 37);
    rmsnorm_case(1000, 1024);
    rmsnorm_case(70, 4096);
}

// ---------------------------------------------------------------------------------------
// RoPE.

static void rope_case(int n, int heads, int hd, int max_pos, double theta, const int32_t *pos) {
    const size_t half = (size_t)hd / 2, tab = (size_t)max_pos * half, m = (size_t)n * heads * hd;
    float *d_cos = ops_alloc(tab * sizeof(float)), *d_sin = ops_alloc(tab * sizeof(float));
    float *r_cos = malloc(tab * sizeof(float)), *r_sin = malloc(tab * sizeof(float));
    ops_rope_table(d_cos, d_sin, max_pos, hd, theta);
    ref_ops_rope_table(r_cos, r_sin, max_pos, hd, theta);
    expect_equal("rope cos table", d_cos, r_cos, tab);
    expect_equal("rope sin table", d_sin, r_sin, tab);
    float *x = randn(m, 1), *d_x = dev(x, m);
    int32_t *d_pos = dev_i(pos, (size_t)n);
    ops_rope_forward(d_x, d_pos, d_cos, d_sin, n, heads, hd);
    ref_ops_rope_forward(x, pos, r_cos, r_sin, n, heads, hd);
    expect_close("rope forward", d_x, x, m, 1e-6, 1e-5);
    ops_rope_backward(d_x, d_pos, d_cos, d_sin, n, heads, hd);
    ref_ops_rope_backward(x, pos, r_cos, r_sin, n, heads, hd);
    expect_close("rope backward", d_x, x, m, 1e-6, 1e-5);
    free(r_cos), free(r_sin), free(x);
    ops_free(d_cos), ops_free(d_sin), ops_free(d_x), ops_free(d_pos);
}

static void test_rope(void **state) {
    (void)state;
    const int32_t pos[7] = {0, 1, 2, 0, 1, 250, 299};
    rope_case(7, 3, 8, 300, 10000.0, pos);
    int32_t *many = malloc(512 * sizeof(int32_t));
    for (int i = 0; i < 512; i++) many[i] = i;
    rope_case(512, 16, 64, 2048, 500000.0, many);
    rope_case(33, 2, 128, 512, 10000.0, many);
    free(many);
}

// ---------------------------------------------------------------------------------------
// Attention.

static void attention_case(const int *lens, int n_samples, int H, int KVH, int hd) {
    int n = 0;
    for (int s = 0; s < n_samples; s++) n += lens[s];
    int32_t *pos = malloc(sizeof(int32_t) * n);
    for (int s = 0, i = 0; s < n_samples; s++)
        for (int p = 0; p < lens[s]; p++) pos[i++] = p;
    const size_t mq = (size_t)n * H * hd, mk = (size_t)n * KVH * hd, nh = (size_t)n * H;
    float *q = randn(mq, 1), *k = randn(mk, 1), *v = randn(mk, 1), *R = randn(mq, 1);
    float *d_q = dev(q, mq), *d_k = dev(k, mk), *d_v = dev(v, mk);
    int32_t *d_pos = dev_i(pos, (size_t)n);
    float *d_out = ops_alloc(mq * sizeof(float)), *d_lse = ops_alloc(nh * sizeof(float));
    float *r_out = malloc(mq * sizeof(float)), *r_lse = malloc(nh * sizeof(float));
    ops_attention_forward(d_out, d_lse, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    ref_ops_attention_forward(r_out, r_lse, q, k, v, pos, n, H, KVH, hd);
    expect_close("attention forward", d_out, r_out, mq, 2e-5, 1e-4);
    expect_close("attention lse", d_lse, r_lse, nh, 1e-5, 1e-5);
    // Backward into buffers holding garbage (the outputs are overwritten).
    float *dd_out = dev(R, mq), *dd_q = dev(R, mq), *dd_k = dev(k, mk), *dd_v = dev(v, mk);
    float *r_q = copy_of(R, mq), *r_k = copy_of(k, mk), *r_v = copy_of(v, mk);
    ops_attention_backward(dd_q, dd_k, dd_v, dd_out, d_out, d_lse, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    ref_ops_attention_backward(r_q, r_k, r_v, R, r_out, r_lse, q, k, v, pos, n, H, KVH, hd);
    expect_close("attention d_q", dd_q, r_q, mq, 1e-4, 1e-3);
    expect_close("attention d_k", dd_k, r_k, mk, 1e-4, 1e-3);
    expect_close("attention d_v", dd_v, r_v, mk, 1e-4, 1e-3);
    // Deterministic: the same call again gives the same bits.
    float *d_out2 = ops_alloc(mq * sizeof(float)), *dd_q2 = ops_alloc(mq * sizeof(float));
    float *dd_k2 = ops_alloc(mk * sizeof(float)), *dd_v2 = ops_alloc(mk * sizeof(float));
    ops_attention_forward(d_out2, NULL, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    ops_attention_backward(dd_q2, dd_k2, dd_v2, dd_out, d_out, d_lse, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    expect_same_bits("attention forward twice", d_out2, d_out, mq);
    expect_same_bits("attention d_q twice", dd_q2, dd_q, mq);
    expect_same_bits("attention d_k twice", dd_k2, dd_k, mk);
    expect_same_bits("attention d_v twice", dd_v2, dd_v, mk);
    free(pos), free(q), free(k), free(v), free(R), free(r_out), free(r_lse), free(r_q), free(r_k), free(r_v);
    ops_free(d_q), ops_free(d_k), ops_free(d_v), ops_free(d_pos), ops_free(d_out), ops_free(d_lse);
    ops_free(dd_out), ops_free(dd_q), ops_free(dd_k), ops_free(dd_v), ops_free(d_out2), ops_free(dd_q2);
    ops_free(dd_k2), ops_free(dd_v2);
}

static void test_attention(void **state) {
    (void)state;
    const int a[] = {70, 1, 5, 33, 2};
    attention_case(a, 5, 4, 2, 8);        // segments longer than a 32-key chunk, single tokens
    const int b[] = {9, 4};
    attention_case(b, 2, 3, 3, 6);        // plain multi-head, odd head size
    const int c[] = {130};
    attention_case(c, 1, 2, 1, 4);        // one kv head for all
    const int d[] = {300, 200, 12, 1};
    attention_case(d, 4, 8, 2, 64);       // a Llama-like head size with GQA
    const int e[] = {257};
    attention_case(e, 1, 4, 4, 128);
    const int f[] = {40, 33};
    attention_case(f, 2, 2, 1, 256);      // the largest supported head size
    const int g[] = {1000};
    attention_case(g, 1, 2, 2, 32);       // a long sample
}

// A packed row gives each sample exactly (bitwise) what it gets alone.
static void test_attention_packed_isolation(void **state) {
    (void)state;
    const int H = 4, KVH = 2, hd = 64, la = 45, lb = 38, n = la + lb;
    const size_t mq = (size_t)n * H * hd, mk = (size_t)n * KVH * hd;
    float *q = randn(mq, 1), *k = randn(mk, 1), *v = randn(mk, 1);
    int32_t pos[83];
    for (int i = 0; i < n; i++) pos[i] = i < la ? i : i - la;
    float *d_q = dev(q, mq), *d_k = dev(k, mk), *d_v = dev(v, mk), *d_out = ops_alloc(mq * sizeof(float));
    int32_t *d_pos = dev_i(pos, (size_t)n);
    ops_attention_forward(d_out, NULL, d_q, d_k, d_v, d_pos, n, H, KVH, hd);
    const size_t qb = (size_t)lb * H * hd, kb = (size_t)lb * KVH * hd;
    float *d_qb = dev(q + (size_t)la * H * hd, qb), *d_kb = dev(k + (size_t)la * KVH * hd, kb);
    float *d_vb = dev(v + (size_t)la * KVH * hd, kb), *d_ob = ops_alloc(qb * sizeof(float));
    int32_t *d_posb = dev_i(pos + la, (size_t)lb);
    ops_attention_forward(d_ob, NULL, d_qb, d_kb, d_vb, d_posb, lb, H, KVH, hd);
    expect_same_bits("sample b packed after a vs alone", d_out + (size_t)la * H * hd, d_ob, qb);
    free(q), free(k), free(v);
    ops_free(d_q), ops_free(d_k), ops_free(d_v), ops_free(d_out), ops_free(d_pos), ops_free(d_qb);
    ops_free(d_kb), ops_free(d_vb), ops_free(d_ob), ops_free(d_posb);
}

// ---------------------------------------------------------------------------------------
// SwiGLU.

static void test_swiglu(void **state) {
    (void)state;
    const size_t n = 100003;
    float *g = randn(n, 3), *u = randn(n, 1), *R = randn(n, 1);
    g[0] = -100.0f, g[1] = 100.0f, g[2] = 0.0f;  // saturated and zero
    float *d_g = dev(g, n), *d_u = dev(u, n), *d_o = ops_alloc(n * sizeof(float)), *d_R = dev(R, n);
    float *ref = malloc(n * sizeof(float));
    ops_swiglu_forward(d_o, d_g, d_u, n);
    ref_ops_swiglu_forward(ref, g, u, n);
    expect_close("swiglu forward", d_o, ref, n, 1e-6, 1e-5);
    // In place: d_gate over gate, d_up over up.
    float *r_g = copy_of(g, n), *r_u = copy_of(u, n);
    ops_swiglu_backward(d_g, d_u, d_R, d_g, d_u, n);
    ref_ops_swiglu_backward(r_g, r_u, R, r_g, r_u, n);
    expect_close("swiglu d_gate (in place)", d_g, r_g, n, 1e-6, 1e-5);
    expect_close("swiglu d_up (in place)", d_u, r_u, n, 1e-6, 1e-5);
    free(g), free(u), free(R), free(ref), free(r_g), free(r_u);
    ops_free(d_g), ops_free(d_u), ops_free(d_o), ops_free(d_R);
}

// ---------------------------------------------------------------------------------------
// Embedding.

static void embedding_case(int V, int D, int n) {
    int32_t *tokens = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++) tokens[i] = (int32_t)rng_below(&g_rng, (uint64_t)V);
    tokens[0] = V - 1;  // the last row is reachable
    const size_t VD = (size_t)V * D, nD = (size_t)n * D;
    float *table = randn(VD, 1), *R = randn(nD, 1), *start = randn(VD, 1);
    float *d_t = dev(table, VD), *d_o = ops_alloc(nD * sizeof(float)), *d_R = dev(R, nD);
    int32_t *d_tok = dev_i(tokens, (size_t)n);
    float *ref = malloc(nD * sizeof(float));
    ops_embedding_forward(d_o, d_tok, d_t, n, D);
    ref_ops_embedding_forward(ref, tokens, table, n, D);
    expect_equal("embedding forward", d_o, ref, nD);
    float *d_g = dev(start, VD), *d_g2 = dev(start, VD), *r_g = copy_of(start, VD);
    ops_embedding_backward(d_g, d_R, d_tok, n, D);
    ref_ops_embedding_backward(r_g, R, tokens, n, D);
    expect_close("embedding backward (+=, repeated tokens add up)", d_g, r_g, VD, 1e-4, 1e-5);
    ops_embedding_backward(d_g2, d_R, d_tok, n, D);
    expect_same_bits("embedding backward twice", d_g2, d_g, VD);
    free(tokens), free(table), free(R), free(start), free(ref), free(r_g);
    ops_free(d_t), ops_free(d_o), ops_free(d_R), ops_free(d_tok), ops_free(d_g), ops_free(d_g2);
}

static void test_embedding(void **state) {
    (void)state;
    embedding_case(11, 5, 8);
    embedding_case(50, 300, 5000);   // about 100 repeats of every token
    embedding_case(32000, 64, 777);  // a real vocabulary, mostly distinct tokens
}

// ---------------------------------------------------------------------------------------
// Log-probabilities and entropy.

static void logprob_case(int n, int V, float T, float scale) {
    const size_t nV = (size_t)n * V;
    float *logits = randn(nV, scale), *wl = randn(n, 1), *we = randn(n, 1);
    int32_t *targets = malloc(sizeof(int32_t) * n);
    for (int i = 0; i < n; i++) targets[i] = (int32_t)rng_below(&g_rng, (uint64_t)V);
    targets[n > 3 ? 3 : 0] = -1;  // a row without target
    targets[n - 1] = V - 1;
    logits[(size_t)(n - 1) * V + 1] = 60.0f * scale;  // a nearly one-hot row
    float *d_l = dev(logits, nV), *d_lp = ops_alloc(n * sizeof(float)), *d_h = ops_alloc(n * sizeof(float));
    float *d_lse = ops_alloc(n * sizeof(float));
    int32_t *d_t = dev_i(targets, (size_t)n);
    float *r_lp = malloc(n * sizeof(float)), *r_h = malloc(n * sizeof(float)), *r_lse = malloc(n * sizeof(float));
    ops_logprob_forward(d_lp, d_h, d_lse, d_l, d_t, n, V, T);
    ref_ops_logprob_forward(r_lp, r_h, r_lse, logits, targets, n, V, T);
    expect_close("logp", d_lp, r_lp, n, 1e-4, 1e-5);
    expect_close("entropy", d_h, r_h, n, 1e-4, 1e-4);
    expect_close("lse", d_lse, r_lse, n, 1e-4, 1e-6);
    float *lp = host(d_lp, n);
    assert_true(lp[n > 3 ? 3 : 0] == 0.0f);
    free(lp);
    float *d_lp2 = ops_alloc(n * sizeof(float));
    ops_logprob_forward(d_lp2, NULL, NULL, d_l, d_t, n, V, T);  // entropy and lse may be NULL
    expect_same_bits("logp without entropy and lse", d_lp2, d_lp, n);
    // Backward of the logp terms into a separate buffer.
    float *d_wl = dev(wl, n), *d_we = dev(we, n), *d_g = ops_alloc(nV * sizeof(float));
    float *r_g = malloc(nV * sizeof(float));
    ops_logprob_backward(d_g, d_l, d_lse, NULL, d_t, d_wl, NULL, n, V, T);
    ref_ops_logprob_backward(r_g, logits, r_lse, NULL, targets, wl, NULL, n, V, T);
    expect_close("logprob d_logits", d_g, r_g, nV, 1e-7, 1e-4);
    // With the entropy term, in place over the logits.
    float *r_l = copy_of(logits, nV);
    ops_logprob_backward(d_l, d_l, d_lse, d_h, d_t, d_wl, d_we, n, V, T);
    ref_ops_logprob_backward(r_l, r_l, r_lse, r_h, targets, wl, we, n, V, T);
    expect_close("logprob+entropy d_logits (in place)", d_l, r_l, nV, 1e-7, 1e-4);
    free(logits), free(wl), free(we), free(targets), free(r_lp), free(r_h), free(r_lse), free(r_g), free(r_l);
    ops_free(d_l), ops_free(d_lp), ops_free(d_h), ops_free(d_lse), ops_free(d_t), ops_free(d_lp2);
    ops_free(d_wl), ops_free(d_we), ops_free(d_g);
}

static void test_logprob(void **state) {
    (void)state;
    logprob_case(6, 37, 0.7f, 3.0f);
    logprob_case(16, 32000, 1.0f, 2.0f);
    logprob_case(5, 50257, 0.5f, 1.0f);
}

// Huge equal logits: finite logp = -log V and entropy log V.
static void test_logprob_stable(void **state) {
    (void)state;
    const int V = 1000;
    float *logits = malloc(sizeof(float) * V);
    for (int j = 0; j < V; j++) logits[j] = 1e4f;
    int32_t target = 3;
    float *d_l = dev(logits, V), *d_lp = ops_alloc(4), *d_h = ops_alloc(4), *d_lse = ops_alloc(4);
    int32_t *d_t = dev_i(&target, 1);
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
// AdamW, elementwise helpers, sum of squares.

static void test_adamw(void **state) {
    (void)state;
    const size_t n = 100003;
    float *p = randn(n, 1), *m = calloc(n, 4), *v = calloc(n, 4);
    float *d_p = dev(p, n), *d_m = dev(m, n), *d_v = dev(v, n);
    for (long step = 1; step <= 3; step++) {
        float *g = randn(n, 1);
        g[0] = 0.0f;
        float *d_g = dev(g, n);
        ops_adamw(d_p, d_g, d_m, d_v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step);
        ref_ops_adamw(p, g, m, v, n, 1e-2f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, step);
        free(g);
        ops_free(d_g);
    }
    expect_close("adamw params", d_p, p, n, 1e-6, 1e-5);
    expect_close("adamw m", d_m, m, n, 1e-7, 1e-5);
    expect_close("adamw v", d_v, v, n, 1e-8, 1e-5);
    free(p), free(m), free(v);
    ops_free(d_p), ops_free(d_m), ops_free(d_v);
}

static void test_elementwise(void **state) {
    (void)state;
    const size_t n = 1000003;
    float *x = randn(n, 1), *y = randn(n, 1);
    float *d_x = dev(x, n), *d_y = dev(y, n);
    ops_add(d_y, d_x, n);
    ops_scale(d_y, 0.5f, n);
    ref_ops_add(y, x, n);
    ref_ops_scale(y, 0.5f, n);
    expect_equal("add then scale", d_y, y, n);
    double exact = 0.0;
    for (size_t i = 0; i < n; i++) exact += (double)x[i] * x[i];
    const double ss = ops_sum_squares(d_x, n);
    assert_true(fabs(ss - exact) <= 1e-6 * exact);
    assert_true(ops_sum_squares(d_x, n) == ss);  // deterministic
    assert_true(fabs(ss - ref_ops_sum_squares(x, n)) <= 1e-5 * exact);
    assert_true(ops_sum_squares(d_x, 0) == 0.0);
    const double x0 = (double)x[0] * x[0];
    assert_true(fabs(ops_sum_squares(d_x, 1) - x0) <= 1e-6 * x0);
    free(x), free(y);
    ops_free(d_x), ops_free(d_y);
}

// ---------------------------------------------------------------------------------------
// Inference: KV cache write, paged attention, sampling.

// A paged cache holding one sequence of L tokens (blocks in shuffled order) plus garbage.
typedef struct {
    int L, KVH, hd, bs, n_blocks, max_blocks;
    int32_t *table;     // (max_blocks)
    float *k, *v;       // (L, KVH*hd) the sequence's keys / values by position
    float *k_cache, *v_cache;  // (n_blocks*bs, KVH*hd) host: every slot's key / value as rows
} PagedSeq;

static void paged_seq(PagedSeq *p, int L, int KVH, int hd, int bs) {
    const int kv_dim = KVH * hd;
    p->L = L, p->KVH = KVH, p->hd = hd, p->bs = bs;
    p->max_blocks = (L + bs - 1) / bs;
    p->n_blocks = p->max_blocks + 3;
    p->table = malloc(sizeof(int32_t) * p->max_blocks);
    int32_t *perm = malloc(sizeof(int32_t) * p->n_blocks);
    for (int i = 0; i < p->n_blocks; i++) perm[i] = i;
    for (int i = p->n_blocks - 1; i > 0; i--) {
        const int j = (int)rng_below(&g_rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int b = 0; b < p->max_blocks; b++) p->table[b] = perm[b];
    free(perm);
    p->k = randn((size_t)L * kv_dim, 1), p->v = randn((size_t)L * kv_dim, 1);
    const size_t slots = (size_t)p->n_blocks * bs;
    p->k_cache = randn(slots * kv_dim, 1), p->v_cache = randn(slots * kv_dim, 1);  // garbage elsewhere
    for (int t = 0; t < L; t++) {
        const size_t slot = (size_t)p->table[t / bs] * bs + t % bs;
        memcpy(p->k_cache + slot * kv_dim, p->k + (size_t)t * kv_dim, kv_dim * sizeof(float));
        memcpy(p->v_cache + slot * kv_dim, p->v + (size_t)t * kv_dim, kv_dim * sizeof(float));
    }
}

static void paged_seq_free(PagedSeq *p) { free(p->table), free(p->k), free(p->v), free(p->k_cache), free(p->v_cache); }


// Each backend keeps the cache in its own layout (ops.h), so both are compared through
// ops_kv_cache_read: every slot reads back what was last written to it (fp16: rounded).
static void kv_cache_write_case(int kv_dtype) {
    const int n = 37, KVH = 2, hd = 48, kv_dim = KVH * hd, bs = 4, n_slots = 100;
    float *init_k = randn((size_t)n_slots * kv_dim, 1), *init_v = randn((size_t)n_slots * kv_dim, 1);
    float *k = randn((size_t)n * kv_dim, 1), *v = randn((size_t)n * kv_dim, 1);
    int32_t all[100], slots[37];
    for (int i = 0; i < n_slots; i++) all[i] = i;
    for (int i = 0; i < n; i++) slots[i] = (i * 53 + 7) % n_slots;  // distinct, scattered
    const size_t bytes = (size_t)n_slots * kv_dim * sizeof(float);
    const size_t cache_bytes = (size_t)n_slots * kv_dim * ops_kv_dtype_bytes(kv_dtype);
    void *k_cache = calloc(1, cache_bytes), *v_cache = calloc(1, cache_bytes);
    void *d_kc = ops_alloc(cache_bytes), *d_vc = ops_alloc(cache_bytes);
    float *d_ik = dev(init_k, (size_t)n_slots * kv_dim), *d_iv = dev(init_v, (size_t)n_slots * kv_dim);
    float *d_k = dev(k, (size_t)n * kv_dim), *d_v = dev(v, (size_t)n * kv_dim);
    int32_t *d_all = dev_i(all, n_slots), *d_slots = dev_i(slots, n);
    ops_kv_cache_write(d_kc, d_vc, d_ik, d_iv, d_all, n_slots, KVH, hd, bs, kv_dtype);
    ops_kv_cache_write(d_kc, d_vc, d_k, d_v, d_slots, n, KVH, hd, bs, kv_dtype);
    ref_ops_kv_cache_write(k_cache, v_cache, init_k, init_v, all, n_slots, KVH, hd, bs, kv_dtype);
    ref_ops_kv_cache_write(k_cache, v_cache, k, v, slots, n, KVH, hd, bs, kv_dtype);
    float *rk = malloc(bytes), *rv = malloc(bytes);
    float *d_rk = ops_alloc(bytes), *d_rv = ops_alloc(bytes);
    ops_kv_cache_read(d_rk, d_rv, d_kc, d_vc, d_all, n_slots, KVH, hd, bs, kv_dtype);
    ref_ops_kv_cache_read(rk, rv, k_cache, v_cache, all, n_slots, KVH, hd, bs, kv_dtype);
    expect_equal("kv cache keys", d_rk, rk, (size_t)n_slots * kv_dim);
    expect_equal("kv cache values", d_rv, rv, (size_t)n_slots * kv_dim);
    if (kv_dtype == OPS_KV_F16) test_round_to_half(k, (size_t)n * kv_dim);
    for (int i = 0; i < n; i++)  // and the reference read back holds the new rows
        assert_memory_equal(rk + (size_t)slots[i] * kv_dim, k + (size_t)i * kv_dim, kv_dim * sizeof(float));
    free(init_k), free(init_v), free(k), free(v), free(k_cache), free(v_cache), free(rk), free(rv);
    ops_free(d_kc), ops_free(d_vc), ops_free(d_ik), ops_free(d_iv), ops_free(d_k), ops_free(d_v);
    ops_free(d_all), ops_free(d_slots), ops_free(d_rk), ops_free(d_rv);
}

static void test_kv_cache_write(void **state) {
    (void)state;
    kv_cache_write_case(OPS_KV_F32);
    kv_cache_write_case(OPS_KV_F16);
}

// Paged attention against the CPU op (a prefill chunk of one sequence and decode rows of
// others, in one call), and against the training attention over the same keys: on CUDA both
// run the same device code, so a prefill of the whole sequence and the decode of its last
// token equal ops_attention_forward's rows bit for bit. With an fp16 cache every key and value
// is first rounded to half precision, so the cache holds them exactly and the same holds.
static void paged_case(int H, int KVH, int hd, int bs, int L, int kv_dtype) {
    const int q_dim = H * hd, kv_dim = KVH * hd;
    PagedSeq a, b;
    paged_seq(&a, L, KVH, hd, bs);
    paged_seq(&b, L / 2 + 1, KVH, hd, bs);
    if (kv_dtype == OPS_KV_F16) {
        PagedSeq *both[2] = {&a, &b};
        for (int i = 0; i < 2; i++) {
            const size_t slots = (size_t)both[i]->n_blocks * bs;
            test_round_to_half(both[i]->k, (size_t)both[i]->L * kv_dim);
            test_round_to_half(both[i]->v, (size_t)both[i]->L * kv_dim);
            test_round_to_half(both[i]->k_cache, slots * kv_dim);
            test_round_to_half(both[i]->v_cache, slots * kv_dim);
        }
    }
    const size_t elem = ops_kv_dtype_bytes(kv_dtype);
    // One cache holding both: b's blocks after a's.
    const size_t slots_a = (size_t)a.n_blocks * bs, slots_b = (size_t)b.n_blocks * bs;
    float *k_cache = malloc((slots_a + slots_b) * kv_dim * sizeof(float));
    float *v_cache = malloc((slots_a + slots_b) * kv_dim * sizeof(float));
    memcpy(k_cache, a.k_cache, slots_a * kv_dim * sizeof(float));
    memcpy(v_cache, a.v_cache, slots_a * kv_dim * sizeof(float));
    memcpy(k_cache + slots_a * kv_dim, b.k_cache, slots_b * kv_dim * sizeof(float));
    memcpy(v_cache + slots_a * kv_dim, b.v_cache, slots_b * kv_dim * sizeof(float));
    const int max_blocks = a.max_blocks > b.max_blocks ? a.max_blocks : b.max_blocks;
    int32_t *tables = calloc((size_t)2 * max_blocks, sizeof(int32_t));
    for (int i = 0; i < a.max_blocks; i++) tables[i] = a.table[i];
    for (int i = 0; i < b.max_blocks; i++) tables[max_blocks + i] = b.table[i] + a.n_blocks;
    // Sequence a: its last 5 rows as a prefill chunk; sequence b: one decode row.
    const int n_q_a = L < 5 ? L : 5;
    int32_t qs[3] = {0, n_q_a, n_q_a + 1}, ctx[2] = {L, b.L};
    const int N = qs[2];
    float *q = randn((size_t)N * q_dim, 1);
    // Each backend's cache, in its own layout, written slot by slot from the rows.
    const int n_all = (int)(slots_a + slots_b);
    int32_t *all = malloc(sizeof(int32_t) * n_all);
    for (int i = 0; i < n_all; i++) all[i] = i;
    void *d_kc = ops_alloc((size_t)n_all * kv_dim * elem), *d_vc = ops_alloc((size_t)n_all * kv_dim * elem);
    float *d_rows_k = dev(k_cache, (size_t)n_all * kv_dim), *d_rows_v = dev(v_cache, (size_t)n_all * kv_dim);
    int32_t *d_all = dev_i(all, n_all);
    ops_kv_cache_write(d_kc, d_vc, d_rows_k, d_rows_v, d_all, n_all, KVH, hd, bs, kv_dtype);
    void *ref_kc = malloc((size_t)n_all * kv_dim * elem), *ref_vc = malloc((size_t)n_all * kv_dim * elem);
    ref_ops_kv_cache_write(ref_kc, ref_vc, k_cache, v_cache, all, n_all, KVH, hd, bs, kv_dtype);
    int32_t *d_tables = dev_i(tables, (size_t)2 * max_blocks), *d_qs = dev_i(qs, 3), *d_ctx = dev_i(ctx, 2);
    float *d_q = dev(q, (size_t)N * q_dim), *d_out = ops_alloc((size_t)N * q_dim * sizeof(float));
    float *ref = malloc((size_t)N * q_dim * sizeof(float));
    ops_paged_attention_forward(d_out, d_q, d_kc, d_vc, d_tables, d_qs, d_ctx, 2, max_blocks, bs, H, KVH, hd, kv_dtype);
    ref_ops_paged_attention_forward(ref, q, ref_kc, ref_vc, tables, qs, ctx, 2, max_blocks, bs, H, KVH, hd, kv_dtype);
    expect_close("paged attention", d_out, ref, (size_t)N * q_dim, 2e-5, 1e-4);

    // Prefill of all of a, compared with the training attention over a's keys and values.
    float *qa = randn((size_t)L * q_dim, 1), *d_qa = dev(qa, (size_t)L * q_dim);
    int32_t qs_a[2] = {0, L}, ctx_a = L, *pos = malloc(sizeof(int32_t) * L);
    for (int i = 0; i < L; i++) pos[i] = i;
    int32_t *d_qs_a = dev_i(qs_a, 2), *d_ctx_a = dev_i(&ctx_a, 1), *d_pos = dev_i(pos, L);
    float *d_ka = dev(a.k, (size_t)L * kv_dim), *d_va = dev(a.v, (size_t)L * kv_dim);
    float *d_paged = ops_alloc((size_t)L * q_dim * sizeof(float)), *d_train = ops_alloc((size_t)L * q_dim * sizeof(float));
    ops_paged_attention_forward(d_paged, d_qa, d_kc, d_vc, d_tables, d_qs_a, d_ctx_a, 1, max_blocks, bs, H, KVH, hd,
                                kv_dtype);
    ops_attention_forward(d_train, NULL, d_qa, d_ka, d_va, d_pos, L, H, KVH, hd);
    // Decode of a's last token alone.
    int32_t qs_1[2] = {0, 1}, *d_qs_1 = dev_i(qs_1, 2);
    float *d_dec = ops_alloc((size_t)q_dim * sizeof(float));
    ops_paged_attention_forward(d_dec, d_qa + (size_t)(L - 1) * q_dim, d_kc, d_vc, d_tables, d_qs_1, d_ctx_a, 1,
                                max_blocks, bs, H, KVH, hd, kv_dtype);
    if (g_cuda) {
        expect_same_bits("paged prefill vs training attention", d_paged, d_train, (size_t)L * q_dim);
        expect_same_bits("paged decode vs training attention (last row)", d_dec, d_train + (size_t)(L - 1) * q_dim,
                         q_dim);
    } else {
        float *t = host(d_train, (size_t)L * q_dim);
        expect_close("paged prefill vs training attention", d_paged, t, (size_t)L * q_dim, 2e-5, 1e-4);
        expect_close("paged decode vs training attention", d_dec, t + (size_t)(L - 1) * q_dim, q_dim, 2e-5, 1e-4);
        free(t);
    }
    paged_seq_free(&a), paged_seq_free(&b);
    free(k_cache), free(v_cache), free(tables), free(q), free(ref), free(qa), free(pos), free(all), free(ref_kc),
        free(ref_vc);
    ops_free(d_rows_k), ops_free(d_rows_v), ops_free(d_all);
    ops_free(d_kc), ops_free(d_vc), ops_free(d_tables), ops_free(d_qs), ops_free(d_ctx), ops_free(d_q);
    ops_free(d_out), ops_free(d_qa), ops_free(d_qs_a), ops_free(d_ctx_a), ops_free(d_pos), ops_free(d_ka);
    ops_free(d_va), ops_free(d_paged), ops_free(d_train), ops_free(d_qs_1), ops_free(d_dec);
}

static void test_paged_attention(void **state) {
    (void)state;
    for (int kv_dtype = OPS_KV_F32; kv_dtype <= OPS_KV_F16; kv_dtype++) {
        paged_case(4, 2, 8, 4, 13, kv_dtype);
        paged_case(3, 3, 6, 5, 33, kv_dtype);
        paged_case(8, 2, 64, 16, 300, kv_dtype);
        paged_case(2, 1, 128, 1, 70, kv_dtype);  // one token per block
    }
}

// Sampling: the same tokens as the CPU op, and logprobs within float rounding.
static void test_sample(void **state) {
    (void)state;
    enum { N = 64 };
    const int V = 5003;
    float *logits = randn((size_t)N * V, 2.5f);
    OpsSampleParams params[N];
    for (int i = 0; i < N; i++) {
        OpsSampleParams p = {.temperature = 0.6f + 0.05f * (i % 9), .top_p = 1.0f, .min_p = 0.0f, .top_k = 0,
                             .greedy = 0, .pad_ = 0, .seed = 1000 + (uint64_t)i, .counter = (uint64_t)(i * 7)};
        switch (i % 8) {
        case 0: p.greedy = 1; break;
        case 1: p.top_k = 1 + i % 40; break;
        case 2: p.top_p = 0.8f; break;
        case 3: p.min_p = 0.05f; break;
        case 4: p.top_k = 50, p.top_p = 0.9f, p.min_p = 0.02f; break;
        case 5: p.temperature = 0.0f, p.greedy = 1; break;
        case 6: p.top_p = 0.0f; break;  // keeps the first token only
        default: break;
        }
        params[i] = p;
    }
    // Ties at the top (lowest id first), a -0/+0 tie, masked tokens, and garbage rows.
    logits[(size_t)8 * V + 10] = logits[(size_t)8 * V + 3000] = 40.0f;
    logits[(size_t)9 * V + 11] = logits[(size_t)9 * V + 12] = 40.0f;
    for (int j = 0; j < V; j += 3) logits[(size_t)10 * V + j] = -INFINITY;
    for (int j = 0; j < V; j++) logits[(size_t)16 * V + j] = -1.0f - fabsf(logits[(size_t)16 * V + j]);
    logits[(size_t)16 * V + 7] = -0.0f, logits[(size_t)16 * V + 20] = 0.0f;  // row 16 is greedy
    for (int j = 0; j < V; j++) logits[(size_t)(N - 1) * V + j] = NAN;
    logits[(size_t)(N - 2) * V + 77] = INFINITY;
    float *d_logits = dev(logits, (size_t)N * V);
    OpsSampleParams *d_params = ops_alloc(sizeof params);
    ops_copy_to_device(d_params, params, sizeof params);
    int32_t *d_tokens = ops_alloc(N * sizeof(int32_t));
    float *d_logprobs = ops_alloc(N * sizeof(float));
    ops_sample(d_tokens, d_logprobs, d_logits, d_params, N, V);
    int32_t tokens[N], ref_tokens[N];
    float logprobs[N], ref_logprobs[N];
    ops_copy_to_host(tokens, d_tokens, sizeof tokens);
    ops_copy_to_host(logprobs, d_logprobs, sizeof logprobs);
    ref_ops_sample(ref_tokens, ref_logprobs, logits, (const RefOpsSampleParams *)params, N, V);
    for (int i = 0; i < N; i++) {
        if (tokens[i] != ref_tokens[i]) fail_msg("row %d: token %d, the CPU op draws %d", i, tokens[i], ref_tokens[i]);
        if (isnan(ref_logprobs[i])) {
            assert_true(isnan(logprobs[i]));
        } else if (!(fabs(logprobs[i] - ref_logprobs[i]) <= 1e-5 + 1e-5 * fabs(ref_logprobs[i]))) {
            fail_msg("row %d: logprob %.9g, the CPU op gives %.9g", i, logprobs[i], ref_logprobs[i]);
        }
    }
    assert_int_equal(tokens[8], 10);
    assert_int_equal(tokens[16], 7);
    assert_int_equal(tokens[N - 2], 77);
    // Deterministic, and a row does not depend on its batch.
    int32_t again[N], one;
    float lp_one;
    ops_sample(d_tokens, d_logprobs, d_logits, d_params, N, V);
    ops_copy_to_host(again, d_tokens, sizeof again);
    assert_memory_equal(again, tokens, sizeof tokens);
    ops_sample(d_tokens, d_logprobs, d_logits + (size_t)4 * V, d_params + 4, 1, V);
    ops_copy_to_host(&one, d_tokens, sizeof one);
    ops_copy_to_host(&lp_one, d_logprobs, sizeof lp_one);
    assert_int_equal(one, tokens[4]);
    assert_memory_equal(&lp_one, &logprobs[4], sizeof lp_one);
    free(logits);
    ops_free(d_logits), ops_free(d_params), ops_free(d_tokens), ops_free(d_logprobs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_matmul_fp32),
        cmocka_unit_test(test_matmul_bf16),
        cmocka_unit_test(test_params_shadow_refresh),
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_attention_packed_isolation),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_logprob),
        cmocka_unit_test(test_logprob_stable),
        cmocka_unit_test(test_adamw),
        cmocka_unit_test(test_elementwise),
        cmocka_unit_test(test_kv_cache_write),
        cmocka_unit_test(test_paged_attention),
        cmocka_unit_test(test_sample),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
