// Decode throughput of the inference engine (src/infer) on one GPU, against the memory-
// bandwidth bound. S sequences with prompts of P tokens are admitted and prefilled; then
// `steps` engine steps each decode one token for every sequence (sampling at temperature 1),
// timed together. Prints one line:
//   decode seqs=S ctx=... tokens/s=X ms/step=Y bound_tokens/s=B fraction=F
// The bound is what HBM bandwidth allows if a step reads every byte it must once: the bf16
// weights of every GEMM (2 bytes per parameter, the LM head included) plus the fp32 keys and
// values of every sequence's context (2 x layers x ctx x KVH*hd x 4 bytes), divided into the
// bandwidth given as HBM_TBPS (0: no bound printed).
//
//   bench_gpu_decode [seqs prompt steps HBM_TBPS dim layers heads kv_heads hidden vocab]
// Defaults: 64 sequences, 128-token prompts, 64 steps, the training shape of README.md.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "infer/engine.h"
#include "model/model.h"
#include "ops.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int arg(int argc, char **argv, int i, int def) { return argc > i ? atoi(argv[i]) : def; }

int main(int argc, char **argv) {
    const int S = arg(argc, argv, 1, 64), P = arg(argc, argv, 2, 128), steps = arg(argc, argv, 3, 64);
    const double hbm_tbps = argc > 4 ? atof(argv[4]) : 0.0;
    ModelConfig c;
    memset(&c, 0, sizeof c);
    c.dim = arg(argc, argv, 5, 1024);
    c.n_layers = arg(argc, argv, 6, 24);
    c.n_heads = arg(argc, argv, 7, 16);
    c.n_kv_heads = arg(argc, argv, 8, 16);
    c.hidden_dim = arg(argc, argv, 9, 2816);
    c.vocab_size = arg(argc, argv, 10, 32000);
    c.max_seq_len = P + steps + 8;
    c.rope_theta = 10000.0;
    c.norm_eps = 1e-5;
    ops_init(0);
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    if (!m) {
        fprintf(stderr, "bench_gpu_decode: %s\n", err.msg);
        return 1;
    }
    model_init_random(m, 1, 0.02f);
    float *host = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(host, m->params, m->n_params * sizeof(float));
    const size_t n_params = m->n_params;
    const ModelConfig mc = m->config;
    model_free(m);  // the engine keeps its own copy
    const int block = 16, per_seq = (c.max_seq_len + block - 1) / block;
    EngineConfig ec = {.max_seqs = S, .kv_block_size = block, .kv_blocks = S * per_seq, .prefill_chunk = 2048,
                       .swap_mode = ENGINE_SWAP_IN_FLIGHT, .max_updates = -1};
    Engine *e = engine_create(&mc, &ec, &err);
    if (!e) {
        fprintf(stderr, "bench_gpu_decode: %s\n", err.msg);
        return 1;
    }
    engine_set_weights(e, host, 1);
    free(host);
    Rng rng;
    rng_seed(&rng, 9);
    int32_t *prompt = malloc(sizeof(int32_t) * P);
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < P; i++) prompt[i] = (int32_t)rng_below(&rng, (uint64_t)mc.vocab_size);
        EngineRequest r = {.id = (uint64_t)s, .prompt = prompt, .n_prompt = P, .max_tokens = steps + 4,
                           .temperature = 1.0f, .top_p = 1.0f, .seed = (uint64_t)s};
        if (engine_add(e, &r, &err) != 0) {
            fprintf(stderr, "bench_gpu_decode: %s\n", err.msg);
            return 1;
        }
    }
    // Prefill everything (each step also decodes the sequences already prefilled).
    EngineStats st;
    for (int guard = 0; guard < 100000; guard++) {
        engine_stats(e, &st);
        if (st.prefill_tokens >= (double)S * P && engine_queued(e) == 0) break;
        engine_step(e);
    }
    engine_step(e);  // warm-up decode step
    ops_synchronize();
    engine_stats(e, &st);
    const double decoded0 = st.decode_tokens;
    const double t0 = now();
    for (int i = 0; i < steps; i++) engine_step(e);
    ops_synchronize();
    const double seconds = now() - t0;
    engine_stats(e, &st);
    const double tokens = st.decode_tokens - decoded0;
    const double tok_s = tokens / seconds;
    const double ctx = P + steps / 2.0;  // mean context over the timed steps
    const double kv_dim = (double)mc.n_kv_heads * mc.head_dim;
    const double bytes = 2.0 * (double)n_params + (double)S * 2.0 * mc.n_layers * ctx * kv_dim * 4.0;
    printf("decode seqs=%d prompt=%d steps=%d tokens=%.0f tokens/s=%.0f ms/step=%.2f", S, P, steps, tokens, tok_s,
           seconds / steps * 1e3);
    if (hbm_tbps > 0) {
        const double bound = S / (bytes / (hbm_tbps * 1e12));
        printf(" bytes/step=%.3gGB bound_tokens/s=%.0f fraction=%.1f%%", bytes / 1e9, bound, 100.0 * tok_s / bound);
    }
    printf("\n");
    free(prompt);
    engine_free(e);
    ops_finalize();
    return 0;
}
