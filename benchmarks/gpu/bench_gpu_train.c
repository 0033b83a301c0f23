// Training throughput and MFU of the model on one GPU: forward + backward + clipped AdamW over
// packed rows (one sample of seq tokens per row), through the public model and optimizer API,
// so it measures what the trainer runs. Prints one result line on stdout:
//   train SHAPE params=P tokens/step=T tokens/s=X ms/step=Y TFLOPS=Z MFU=M
// and a per-phase breakdown on stderr. MFU counts the model FLOPs of a training step
// (3 x forward: every matmul including the LM head, plus causal attention scores and values)
// against the peak dense bf16 rate given as PEAK_TFLOPS (0: MFU not computed).
//
//   bench_gpu_train [dim layers heads kv_heads hidden vocab seq rows steps PEAK_TFLOPS]
// Defaults: the Llama shape of benchmarks/gpu/README.md (dim 1024, 24 layers, 16 heads,
// 16 kv heads, hidden 2816, vocab 32000, untied embeddings; 0.37B parameters), seq 2048,
// 4 rows (8192 tokens) per step, 10 timed steps after 2 warm-up steps.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "model/model.h"
#include "ops.h"
#include "train/optimizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int arg(int argc, char **argv, int i, int def) { return argc > i ? atoi(argv[i]) : def; }

// Model FLOPs of one training token (forward x 3) for samples of length seq.
static double train_flops_per_token(const ModelConfig *c, int seq) {
    const double D = c->dim, Q = (double)c->n_heads * c->head_dim, KV = (double)c->n_kv_heads * c->head_dim;
    const double F = c->hidden_dim, V = c->vocab_size;
    const double matmul_params = c->n_layers * (D * Q + 2 * D * KV + Q * D + 3 * D * F) + V * D;
    const double mean_context = (seq + 1) / 2.0;  // causal: token i sees i + 1 keys
    const double attention = c->n_layers * 4.0 * Q * mean_context;  // q.k and p.v, 2 FLOPs per MAC
    return 3.0 * (2.0 * matmul_params + attention);
}

int main(int argc, char **argv) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.dim = arg(argc, argv, 1, 1024);
    c.n_layers = arg(argc, argv, 2, 24);
    c.n_heads = arg(argc, argv, 3, 16);
    c.n_kv_heads = arg(argc, argv, 4, 16);
    c.hidden_dim = arg(argc, argv, 5, 2816);
    c.vocab_size = arg(argc, argv, 6, 32000);
    const int seq = arg(argc, argv, 7, 2048);
    const int rows = arg(argc, argv, 8, 4);
    const int steps = arg(argc, argv, 9, 10);
    const double peak_tflops = argc > 10 ? atof(argv[10]) : 0.0;
    c.max_seq_len = seq;
    c.rope_theta = 10000.0;
    c.norm_eps = 1e-5;
    c.tied_embeddings = 0;
    ops_init(0);
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    if (!m) {
        fprintf(stderr, "bench_gpu_train: %s\n", err.msg);
        return 1;
    }
    model_init_random(m, 1, 0.02f);
    model_params_changed(m);
    const int n = rows * seq;
    if (model_reserve(m, n, 1, &err) != 0) {
        fprintf(stderr, "bench_gpu_train: %s\n", err.msg);
        return 1;
    }
    OptimizerConfig oc = {.lr = 1e-4, .schedule = LR_CONSTANT, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = 0.01, .grad_clip = 1.0, .min_lr_ratio = 1};
    Optimizer *opt = optimizer_create(m, &oc, &err);
    if (!opt) {
        fprintf(stderr, "bench_gpu_train: %s\n", err.msg);
        return 1;
    }
    int32_t *tokens = malloc(sizeof(int32_t) * n), *positions = malloc(sizeof(int32_t) * n);
    int32_t *targets = malloc(sizeof(int32_t) * n);
    float *logp = malloc(sizeof(float) * n), *entropy = malloc(sizeof(float) * n), *d_logp = malloc(sizeof(float) * n);
    Rng rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < n; i++) {
        tokens[i] = (int32_t)rng_below(&rng, (uint64_t)c.vocab_size);
        positions[i] = i % seq;
    }
    for (int i = 0; i < n; i++) {
        targets[i] = positions[i] == seq - 1 ? -1 : tokens[i + 1];
        d_logp[i] = -1.0f / n;
    }
    const int warmup = 2;
    double t_fwd = 0, t_bwd = 0, t_opt = 0, t_total = 0, loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        ops_synchronize();
        const double t0 = now();
        if (model_forward_train(m, tokens, positions, targets, n, 1.0f, logp, entropy, &err) != 0) {
            fprintf(stderr, "bench_gpu_train: %s\n", err.msg);
            return 1;
        }
        const double t1 = now();  // the logp copy to the host synchronised
        if (model_backward(m, d_logp, NULL, &err) != 0) {
            fprintf(stderr, "bench_gpu_train: %s\n", err.msg);
            return 1;
        }
        ops_synchronize();
        const double t2 = now();
        OptimizerResult r = optimizer_step(opt, m);
        model_params_changed(m);
        model_zero_grads(m);
        ops_synchronize();
        const double t3 = now();
        loss = 0;
        for (int i = 0; i < n; i++) loss -= logp[i] / n;
        fprintf(stderr, "step %d: loss %.4f grad_norm %.3f  forward %.1f ms  backward %.1f ms  optimizer %.1f ms\n", s,
                loss, r.grad_norm, (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3);
        if (s >= warmup) t_fwd += t1 - t0, t_bwd += t2 - t1, t_opt += t3 - t2, t_total += t3 - t0;
    }
    const double tok_s = (double)n * steps / t_total;
    const double tflops = train_flops_per_token(&m->config, seq) * tok_s / 1e12;
    char shape[256];
    model_config_describe(&m->config, shape, sizeof shape);
    printf("train [%s] seq=%d params=%.3fB tokens/step=%d tokens/s=%.0f ms/step=%.1f (fwd %.1f bwd %.1f opt %.1f) "
           "model_TFLOPS=%.1f",
           shape, seq, m->n_params / 1e9, n, tok_s, t_total / steps * 1e3, t_fwd / steps * 1e3,
           t_bwd / steps * 1e3, t_opt / steps * 1e3, tflops);
    if (peak_tflops > 0) printf(" MFU=%.1f%% (peak %.0f TFLOPS bf16)", 100.0 * tflops / peak_tflops, peak_tflops);
    printf(" final_loss=%.4f\n", loss);
    free(tokens), free(positions), free(targets), free(logp), free(entropy), free(d_logp);
    optimizer_free(opt);
    model_free(m);
    ops_finalize();
    return 0;
}
