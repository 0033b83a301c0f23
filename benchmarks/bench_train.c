// Training-step throughput of the CPU model: forward + backward + clipped AdamW over packed
// rows (one sample of seq_len tokens per row, as the PyTorch twin bench_train_torch.py does),
// for a named llama2.c shape. Each step is timed alone and the median step counts (robust to
// other jobs on a shared machine). Prints one line: "asyncrl SHAPE TOKENS_PER_STEP
// TOKENS_PER_S MS_PER_STEP" plus a per-phase breakdown (means) on stderr.
//
//   bench_train SHAPE [rows] [seq_len] [steps] [threads]
//   SHAPE: stories260K (dim 64, 5 layers, 8 heads, 4 kv heads, hidden 172, vocab 512)
//          stories15M  (dim 288, 6 layers, 6 heads, hidden 768, vocab 32000)
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas_kernels.h"
#include "core/rng.h"
#include "model/model.h"
#include "ops.h"
#include "train/optimizer.h"

static int shape(const char *name, ModelConfig *c) {
    memset(c, 0, sizeof *c);
    c->rope_theta = 10000.0;
    c->norm_eps = 1e-5;
    c->tied_embeddings = 1;
    if (strcmp(name, "stories260K") == 0) {
        c->dim = 64, c->n_layers = 5, c->n_heads = 8, c->n_kv_heads = 4, c->hidden_dim = 172;
        c->vocab_size = 512, c->max_seq_len = 512;
    } else if (strcmp(name, "stories15M") == 0) {
        c->dim = 288, c->n_layers = 6, c->n_heads = 6, c->n_kv_heads = 6, c->hidden_dim = 768;
        c->vocab_size = 32000, c->max_seq_len = 256;
    } else {
        return -1;
    }
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    blas_use_processor_kernels(argv);  // as asyncrl does: first, it may run the program again
    if (argc < 2) {
        fprintf(stderr, "usage: bench_train stories260K|stories15M [rows] [seq_len] [steps] [threads]\n");
        return 2;
    }
    ModelConfig c;
    if (shape(argv[1], &c) != 0) {
        fprintf(stderr, "unknown shape %s\n", argv[1]);
        return 2;
    }
    const int rows = argc > 2 ? atoi(argv[2]) : 4;
    const int seq = argc > 3 ? atoi(argv[3]) : c.max_seq_len;
    const int steps = argc > 4 ? atoi(argv[4]) : 5;
    const int threads = argc > 5 ? atoi(argv[5]) : 2;
    ops_init(threads);
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    if (!m) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    model_init_random(m, 1, 0.02f);
    const int n = rows * seq;
    if (model_reserve(m, n, 1, &err) != 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    OptimizerConfig oc = {.lr = 1e-4, .schedule = LR_CONSTANT, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = 0.01, .grad_clip = 1.0, .min_lr_ratio = 1};
    Optimizer *opt = optimizer_create(m, &oc, &err);
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
        d_logp[i] = -1.0f / n;  // mean negative log-likelihood
    }
    double t_fwd = 0, t_bwd = 0, t_opt = 0;
    double *step_time = malloc(sizeof(double) * (size_t)steps);
    const int warmup = 2;
    for (int s = 0; s < warmup + steps; s++) {
        double t0 = omp_get_wtime();
        model_zero_grads(m);
        if (model_forward_train(m, tokens, positions, targets, n, 1.0f, logp, entropy, &err) != 0) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t1 = omp_get_wtime();
        model_backward(m, d_logp, NULL, &err);
        double t2 = omp_get_wtime();
        optimizer_step(opt, m);
        double t3 = omp_get_wtime();
        if (s >= warmup) t_fwd += t1 - t0, t_bwd += t2 - t1, t_opt += t3 - t2, step_time[s - warmup] = t3 - t0;
    }
    double loss = 0;
    for (int i = 0; i < n; i++) loss -= targets[i] >= 0 ? logp[i] : 0;
    fprintf(stderr, "asyncrl %s: %d x %d tokens, %d threads: forward %.1f ms, backward %.1f ms, optimizer %.1f ms "
                    "per step (loss %.3f)\n", argv[1], rows, seq, threads, 1e3 * t_fwd / steps, 1e3 * t_bwd / steps,
            1e3 * t_opt / steps, loss / (n - rows));
    qsort(step_time, (size_t)steps, sizeof(double), cmp_double);
    const double median = step_time[steps / 2];
    printf("asyncrl %s %d %.1f %.2f\n", argv[1], n, n / median, 1e3 * median);
    free(step_time);
    free(tokens), free(positions), free(targets), free(logp), free(entropy), free(d_logp);
    optimizer_free(opt);
    model_free(m);
    return 0;
}
