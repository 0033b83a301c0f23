// Decode and prefill throughput of the inference engine (src/infer/engine.h) on CPU.
//
//   bench_decode MODEL [--threads N] [--seqs 1,8,64,256] [--prompt P] [--new G] [--prefill-seqs S]
//                [--repeat R] [--kv-cache fp32|fp16] [--verbose 1]
//
// MODEL: a llama2.c .bin file, or "stories15M-shape" (dim 288, 6 layers, 6 heads, hidden 768,
// vocab 32000, context 256, tied embeddings: llama2.c's stories15M, random weights), or
// "stories110M-shape" (dim 768, 12 layers, 12 heads, hidden 2048, the same otherwise: 440 MB
// of fp32 weights, more than most L3 caches hold; make bench runs it at 1 and 64 sequences only).
// Decode: for each concurrency n, n requests with P-token prompts (random ids) sample G new
// tokens each at temperature 1 (no stop tokens); the time from the step where every sequence
// has its first token to the end counts the tokens generated in it (steady decoding; contexts
// grow from P to P + G). Prefill: S requests of the longest prompt that fits (context - 8)
// and 1 new token each: prompt tokens / time. Each measurement runs R times (default 3; the
// single stream 3R times; the concurrencies take turns, R rounds of them, so that their
// ratios compare the same minutes of a shared machine) and reports the best (the machine may
// be shared) and every run, one line per measurement:
//   decode seqs=64 context=17..144 tok/s=12345.6 (best of 3: ...)
// --kv-cache fp16 runs the engine with an fp16 KV cache (inference.kv_cache_dtype); the lines
// then end their label with " kv=fp16".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/blas_kernels.h"
#include "core/rng.h"
#include "infer/engine.h"
#include "model/llama2c.h"
#include "ops.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {  // CPU time of the process (all threads)
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static Model *load_model(const char *spec) {
    ErrorBuf err;
    Model *m;
    const int s15 = strcmp(spec, "stories15M-shape") == 0, s110 = strcmp(spec, "stories110M-shape") == 0;
    if (s15 || s110) {
        ModelConfig c = {.dim = s15 ? 288 : 768, .n_layers = s15 ? 6 : 12, .n_heads = s15 ? 6 : 12,
                         .n_kv_heads = s15 ? 6 : 12, .hidden_dim = s15 ? 768 : 2048, .vocab_size = 32000,
                         .max_seq_len = 256, .rope_theta = 10000.0, .norm_eps = 1e-5, .tied_embeddings = 1};
        m = model_create(&c, &err);
        if (m) model_init_random(m, 1, 0.02f);
    } else {
        m = llama2c_load(spec, &err);
    }
    if (!m) {
        fprintf(stderr, "error: %s\n", err.msg);
        exit(2);
    }
    return m;
}

static int g_kv_dtype = OPS_KV_F32;

static Engine *make_engine(const Model *m, int max_seqs, int prefill_chunk) {
    EngineConfig ec = {.max_seqs = max_seqs, .kv_block_size = 16, .kv_blocks = 0, .kv_dtype = g_kv_dtype,
                       .prefill_chunk = prefill_chunk, .swap_mode = ENGINE_SWAP_IN_FLIGHT, .max_updates = -1};
    ErrorBuf err;
    Engine *e = engine_create(&m->config, &ec, &err);
    if (!e) {
        fprintf(stderr, "error: %s\n", err.msg);
        exit(2);
    }
    float *h = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(h, m->params, m->n_params * sizeof(float));
    engine_set_weights(e, h, 0);
    free(h);
    return e;
}

static void add_requests(Engine *e, const Model *m, int n, int prompt_len, int new_tokens, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    int32_t *prompt = malloc((size_t)prompt_len * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < prompt_len; j++) prompt[j] = (int32_t)rng_below(&rng, (uint64_t)m->config.vocab_size);
        EngineRequest r = {.id = (uint64_t)i, .prompt = prompt, .n_prompt = prompt_len, .max_tokens = new_tokens,
                           .temperature = 1.0f, .top_p = 1.0f, .seed = seed + (uint64_t)i};
        ErrorBuf err;
        if (engine_add(e, &r, &err) != 0) {
            fprintf(stderr, "error: %s\n", err.msg);
            exit(2);
        }
    }
    free(prompt);
}

static void drain(Engine *e) {
    Completion *c;
    const int n = engine_take_finished(e, &c);
    completions_free(c, n);
}

static double bench_decode(const Model *m, int n, int prompt_len, int new_tokens, int verbose) {
    Engine *e = make_engine(m, n, 512);
    add_requests(e, m, n, prompt_len, new_tokens, 1234);
    // Until every sequence has its first token (prefill done).
    EngineStats st;
    do {
        engine_step(e);
        engine_stats(e, &st);
    } while (st.decode_tokens < n);
    const double t0 = now(), c0 = cpu_now(), tokens0 = st.decode_tokens;
    int steps = 0;
    while (engine_step(e) > 0) steps++;
    const double dt = now() - t0, cpu = cpu_now() - c0;
    engine_stats(e, &st);
    const double tokens = st.decode_tokens - tokens0;
    if (verbose)
        printf("  run: decode seqs=%d tok/s=%.1f tokens=%.0f steps=%d seconds=%.3f ms/step=%.3f cpu_seconds=%.3f "
               "context=%d..%d\n", n, tokens / dt, tokens, steps, dt, 1e3 * dt / (steps ? steps : 1), cpu,
               prompt_len + 1, prompt_len + new_tokens);
    drain(e);
    engine_free(e);
    return tokens / dt;
}

// The engine's steady state, as on an inference rank that has served requests before: a first
// round of the same shape packs the weights and touches the KV cache and the activations (page
// faults), and is not timed (PyTorch's side warms up too).
static double bench_prefill(const Model *m, int n, int prompt_len, int verbose) {
    Engine *e = make_engine(m, n, 512);
    add_requests(e, m, n, prompt_len, 1, 98);
    while (engine_step(e) > 0) {
    }
    drain(e);
    add_requests(e, m, n, prompt_len, 1, 99);
    const double t0 = now(), c0 = cpu_now();
    while (engine_step(e) > 0) {
    }
    const double dt = now() - t0, cpu = cpu_now() - c0;
    EngineStats st;
    engine_stats(e, &st);
    if (verbose)
        printf("  run: prefill seqs=%d prompt=%d tok/s=%.1f tokens=%.0f seconds=%.3f cpu_seconds=%.3f chunk=512\n", n,
               prompt_len, (double)n * prompt_len / dt, (double)n * prompt_len, dt, cpu);
    drain(e);
    engine_free(e);
    return (double)n * prompt_len / dt;
}

// One result line: the best of the runs (the machine may be shared: the best run is the least
// disturbed one), then every run.
static void report(const char *label, const double *runs, int repeat) {
    double best = 0.0;
    for (int r = 0; r < repeat; r++) best = runs[r] > best ? runs[r] : best;
    printf("%s tok/s=%.1f (best of %d:", label, best, repeat);
    for (int r = 0; r < repeat; r++) printf(" %.1f", runs[r]);
    printf(")\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    blas_use_processor_kernels(argv);  // as asyncrl does: first, it may run the program again
    if (argc < 2) {
        fprintf(stderr, "usage: bench_decode MODEL [--threads N] [--seqs 1,8,64,256] [--prompt P] [--new G] "
                        "[--prefill-seqs S] [--repeat R] [--kv-cache fp32|fp16] [--verbose 1]\n");
        return 2;
    }
    int threads = 2, prompt_len = 16, new_tokens = 128, prefill_seqs = 8, repeat = 3, verbose = 0;
    char seqs[256] = "1,8,64,256";
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seqs") == 0) snprintf(seqs, sizeof seqs, "%s", argv[i + 1]);
        else if (strcmp(argv[i], "--prompt") == 0) prompt_len = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--new") == 0) new_tokens = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--prefill-seqs") == 0) prefill_seqs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--repeat") == 0) repeat = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--verbose") == 0) verbose = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--kv-cache") == 0 && strcmp(argv[i + 1], "fp16") == 0) g_kv_dtype = OPS_KV_F16;
        else if (strcmp(argv[i], "--kv-cache") == 0 && strcmp(argv[i + 1], "fp32") == 0) g_kv_dtype = OPS_KV_F32;
        else if (strcmp(argv[i], "--kv-cache") == 0) {
            fprintf(stderr, "--kv-cache %s: expected fp32 or fp16\n", argv[i + 1]);
            return 2;
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (repeat < 1 || repeat > 100) repeat = 1;
    // The concurrencies run in rounds (1, 8, 64, 256, then again), not each R times in a row:
    // the VM's speed drifts by 10-20% over minutes, and the goal compares 64 sequences with the
    // single stream, so both should see the same minutes. A single stream runs 3 times a round:
    // it is short (a fraction of a second) and memory-bound, so another tenant's memory traffic
    // sways it the most.
    enum { MAX_CONCURRENCIES = 16 };
    int counts[MAX_CONCURRENCIES], n_counts = 0;
    for (char *tok = strtok(seqs, ","); tok; tok = strtok(NULL, ",")) {
        const int n = atoi(tok);
        if (n < 1 || n > 4096 || n_counts == MAX_CONCURRENCIES) {
            fprintf(stderr, "error: --seqs wants up to %d concurrencies of 1..4096 sequences, comma-separated "
                            "(got \"%s\")\n", MAX_CONCURRENCIES, tok);
            return 2;
        }
        counts[n_counts++] = n;
    }
    ops_init(threads);
    Model *m = load_model(argv[1]);
    char desc[256];
    model_config_describe(&m->config, desc, sizeof desc);
    printf("model %s: %s; %zu parameters; %d threads\n", argv[1], desc, m->n_params, ops_num_threads());
    if (prompt_len + new_tokens > m->config.max_seq_len) new_tokens = m->config.max_seq_len - prompt_len;
    double runs[100];
    char label[128];
    const char *kv_suffix = g_kv_dtype == OPS_KV_F16 ? " kv=fp16" : "";
    double decode_runs[MAX_CONCURRENCIES][100];
    int times[MAX_CONCURRENCIES] = {0};
    for (int r = 0; r < repeat; r++)
        for (int c = 0; c < n_counts; c++)
            for (int k = 0; k < (counts[c] == 1 && 3 * repeat <= 100 ? 3 : 1); k++)
                decode_runs[c][times[c]++] = bench_decode(m, counts[c], prompt_len, new_tokens, verbose);
    for (int c = 0; c < n_counts; c++) {
        snprintf(label, sizeof label, "decode seqs=%d context=%d..%d%s", counts[c], prompt_len + 1,
                 prompt_len + new_tokens, kv_suffix);
        report(label, decode_runs[c], times[c]);
    }
    if (prefill_seqs > 0) {
        const int prompt = m->config.max_seq_len - 8;
        for (int r = 0; r < repeat; r++) runs[r] = bench_prefill(m, prefill_seqs, prompt, verbose);
        snprintf(label, sizeof label, "prefill seqs=%d prompt=%d chunk=512%s", prefill_seqs, prompt, kv_suffix);
        report(label, runs, repeat);
    }
    model_free(m);
    return 0;
}
