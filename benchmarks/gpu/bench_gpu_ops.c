// Op-level throughput of the backend at the training shape, to see where a training step's
// time goes: each op is run `reps` times after a warm-up and timed between two
// ops_synchronize calls. Prints one line per op with milliseconds per call and the achieved
// TFLOPS (GEMMs, attention) or GB/s (memory-bound ops, counting bytes read + written once).
//
//   bench_gpu_ops [tokens dim heads kv_heads hidden vocab seq reps]
// Defaults: 8192 tokens (4 samples of 2048), dim 1024, 16 heads, 16 kv heads, hidden 2816,
// vocab 32000, 20 repetitions.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/rng.h"
#include "ops.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int arg(int argc, char **argv, int i, int def) { return argc > i ? atoi(argv[i]) : def; }

static float *random_device(size_t n, Rng *rng, float scale) {
    float *h = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) h[i] = scale * rng_normal(rng);
    float *d = ops_alloc(n * sizeof(float));
    ops_copy_to_device(d, h, n * sizeof(float));
    free(h);
    return d;
}

typedef struct {
    int reps;
    double t0;
} Timer;

static void start(Timer *t) {
    ops_synchronize();
    t->t0 = now();
}

// Ends a timing of t->reps calls; prints ms per call and the rate.
static void stop(Timer *t, const char *name, double flops, double bytes) {
    ops_synchronize();
    const double per_call = (now() - t->t0) / t->reps;
    printf("op %-40s %8.3f ms", name, per_call * 1e3);
    if (flops > 0) printf("  %7.1f TFLOPS", flops / per_call / 1e12);
    if (bytes > 0) printf("  %7.1f GB/s", bytes / per_call / 1e9);
    printf("\n");
}

int main(int argc, char **argv) {
    const int N = arg(argc, argv, 1, 8192), D = arg(argc, argv, 2, 1024), H = arg(argc, argv, 3, 16);
    const int KVH = arg(argc, argv, 4, 16), F = arg(argc, argv, 5, 2816), V = arg(argc, argv, 6, 32000);
    const int S = arg(argc, argv, 7, 2048), reps = arg(argc, argv, 8, 20);
    const int hd = D / H, Q = H * hd, KV = KVH * hd;
    ops_init(0);
    Rng rng;
    rng_seed(&rng, 3);
    // Registered parameters: the GEMM weights of one block and the LM head (bf16 path).
    const size_t w_qkvo = (size_t)(Q + 2 * KV) * D + (size_t)D * Q, w_mlp = 3 * (size_t)F * D, w_head = (size_t)V * D;
    float *params = random_device(w_qkvo + w_mlp + w_head + D, &rng, 0.02f);
    ops_params_updated(params, w_qkvo + w_mlp + w_head + D);
    float *wq = params, *w_gate = params + w_qkvo, *w_down = w_gate + 2 * (size_t)F * D, *w_head_p = params + w_qkvo + w_mlp;
    float *norm_w = w_head_p + w_head;
    float *x = random_device((size_t)N * D, &rng, 1), *y = random_device((size_t)N * F, &rng, 1);
    float *big = random_device((size_t)N * (V > F ? V : F), &rng, 1);
    float *grad_w = ops_alloc(w_head * sizeof(float));
    Timer t = {reps, 0};
    char name[96];

#define TIME(label, flops, bytes, call)          \
    do {                                          \
        call;                                     \
        start(&t);                                \
        for (int r_ = 0; r_ < reps; r_++) call;   \
        stop(&t, label, flops, bytes);            \
    } while (0)

    // GEMMs (bf16 weights, fp32 activations in and out).
    snprintf(name, sizeof name, "matmul fwd q (%dx%d @ %dx%d)", N, D, Q, D);
    TIME(name, 2.0 * N * D * Q, 0, ops_matmul_forward(big, x, wq, NULL, N, D, Q, 0));
    snprintf(name, sizeof name, "matmul fwd gate (%dx%d @ %dx%d)", N, D, F, D);
    TIME(name, 2.0 * N * D * F, 0, ops_matmul_forward(y, x, w_gate, NULL, N, D, F, 0));
    snprintf(name, sizeof name, "matmul fwd down (%dx%d @ %dx%d)", N, F, D, F);
    TIME(name, 2.0 * N * D * F, 0, ops_matmul_forward(x, y, w_down, NULL, N, F, D, 0));
    snprintf(name, sizeof name, "matmul fwd lm_head (%dx%d @ %dx%d)", N, D, V, D);
    TIME(name, 2.0 * N * D * V, 0, ops_matmul_forward(big, x, w_head_p, NULL, N, D, V, 0));
    snprintf(name, sizeof name, "matmul bwd lm_head d_in + d_W");
    TIME(name, 4.0 * N * D * V, 0, ops_matmul_backward(x, grad_w, NULL, big, x, w_head_p, N, D, V, 0));
    snprintf(name, sizeof name, "matmul fwd fp32 weight (%dx%d @ %dx%d)", N, D, Q, D);
    TIME(name, 2.0 * N * D * Q, 0, ops_matmul_forward(big, x, grad_w, NULL, N, D, Q, 0));

    // Attention over N / S samples of S tokens.
    int32_t *pos_h = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) pos_h[i] = i % S;
    int32_t *pos = ops_alloc(sizeof(int32_t) * N);
    ops_copy_to_device(pos, pos_h, sizeof(int32_t) * N);
    float *q = random_device((size_t)N * Q, &rng, 1), *k = random_device((size_t)N * KV, &rng, 1);
    float *v = random_device((size_t)N * KV, &rng, 1), *att = ops_alloc(sizeof(float) * N * Q);
    float *lse = ops_alloc(sizeof(float) * N * H), *dq = ops_alloc(sizeof(float) * N * Q);
    float *dk = ops_alloc(sizeof(float) * N * KV), *dv = ops_alloc(sizeof(float) * N * KV);
    const double att_flops = 4.0 * N * Q * ((S + 1) / 2.0);
    snprintf(name, sizeof name, "attention fwd (seq %d, %d heads, hd %d)", S, H, hd);
    TIME(name, att_flops, 0, ops_attention_forward(att, lse, q, k, v, pos, N, H, KVH, hd));
    TIME("attention bwd", 2.0 * att_flops, 0,
         ops_attention_backward(dq, dk, dv, att, att, lse, q, k, v, pos, N, H, KVH, hd));

    // Memory-bound ops.
    float *rstd = ops_alloc(sizeof(float) * N);
    TIME("rmsnorm fwd", 0, 2.0 * N * D * 4, ops_rmsnorm_forward(q, rstd, x, norm_w, N, D, 1e-5f));
    TIME("rmsnorm bwd (d_in, d_weight)", 0, 4.0 * N * D * 4,
         ops_rmsnorm_backward(q, grad_w, x, x, norm_w, rstd, N, D));
    TIME("swiglu fwd", 0, 3.0 * N * F * 4, ops_swiglu_forward(y, y, big, (size_t)N * F));
    int32_t *tok = ops_alloc(sizeof(int32_t) * N), *tgt = ops_alloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) pos_h[i] = (int32_t)rng_below(&rng, (uint64_t)V);
    ops_copy_to_device(tok, pos_h, sizeof(int32_t) * N);
    ops_copy_to_device(tgt, pos_h, sizeof(int32_t) * N);
    TIME("embedding bwd (host grouping)", 0, 2.0 * N * D * 4, ops_embedding_backward(grad_w, x, tok, N, D));
    float *logp = ops_alloc(sizeof(float) * N), *ent = ops_alloc(sizeof(float) * N), *l = ops_alloc(sizeof(float) * N);
    TIME("logprob fwd (lse, logp, entropy)", 0, (double)N * V * 4,
         ops_logprob_forward(logp, ent, l, big, tgt, N, V, 1.0f));
    TIME("logprob bwd (in place)", 0, 2.0 * N * V * 4,
         ops_logprob_backward(big, big, l, ent, tgt, logp, ent, N, V, 1.0f));
    const size_t np = w_head;
    float *m1 = ops_alloc(np * sizeof(float)), *m2 = ops_alloc(np * sizeof(float));
    TIME("adamw (lm_head-sized tensor)", 0, 7.0 * np * 4,
         ops_adamw(w_head_p, grad_w, m1, m2, np, 1e-6f, 0.9f, 0.999f, 1e-8f, 0.0f, 1.0f, 1));
    volatile double sink = 0;
    TIME("sum of squares (lm_head-sized)", 0, (double)np * 4, sink += ops_sum_squares(grad_w, np));
    (void)sink;
    ops_finalize();
    return 0;
}
