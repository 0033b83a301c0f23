// Tests of the inference engine (src/infer/) on small random Llama models with grouped-query
// attention:
// - the batched KV-cache forward (chunked prefill and decode of several sequences of different
//   lengths in one pass) gives the logits of a full forward pass (model_forward_logits);
// - requests decoded together give the tokens and logprobs each gives alone (tokens exactly;
//   logprobs to ~1e-5: OpenBLAS rounds a row differently in GEMMs of different row counts);
// - preemption under a tiny KV budget gives the outputs of an ample budget (sampled);
// - weight swaps: IN_FLIGHT keeps the cache (the next token's logprob is that of the old
//   cache with the new weights, not of a restart) and versions tokens; DRAIN finishes a
//   request on its version while new ones wait; max_updates cancels;
// - cancel / cancel_all, stop tokens, max_tokens, a full context, rejected prompts;
// - bad settings and requests are clear errors; random garbage use never breaks invariants.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/rng.h"
#include "infer/engine.h"
#include "infer/forward.h"
#include "infer/kvcache.h"
#include "ops.h"

static ModelConfig small_config(int max_seq_len) {
    ModelConfig c = {.dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 0, .hidden_dim = 64,
                     .vocab_size = 48, .max_seq_len = max_seq_len, .rope_theta = 10000.0, .norm_eps = 1e-5,
                     .tied_embeddings = 0, .qkv_bias = 0};
    return c;
}

static Model *random_model(int max_seq_len, uint64_t seed) {
    ModelConfig c = small_config(max_seq_len);
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    assert_non_null(m);
    model_init_random(m, seed, 0.35f);
    return m;
}

static float *host_params(const Model *m) {
    float *h = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(h, m->params, m->n_params * sizeof(float));
    return h;
}

static EngineConfig engine_config(int max_seqs, int bs, int blocks, int chunk) {
    EngineConfig ec = {.max_seqs = max_seqs, .kv_block_size = bs, .kv_blocks = blocks, .prefill_chunk = chunk,
                       .swap_mode = ENGINE_SWAP_IN_FLIGHT, .max_updates = -1};
    return ec;
}

static Engine *engine_with(const Model *m, const EngineConfig *ec, int version) {
    ErrorBuf err;
    Engine *e = engine_create(&m->config, ec, &err);
    if (!e) print_error("engine_create: %s\n", err.msg);
    assert_non_null(e);
    float *h = host_params(m);
    engine_set_weights(e, h, version);
    free(h);
    return e;
}

static int setup(void **state) {
    (void)state;
    ops_init(2);
    return 0;
}

static void random_tokens(Rng *rng, int32_t *out, int n, int vocab) {
    for (int i = 0; i < n; i++) out[i] = (int32_t)rng_below(rng, (uint64_t)vocab);
}

// Runs until idle; returns the completions (sorted by id) and their count.
static int run_to_end(Engine *e, Completion **out) {
    for (int guard = 0; guard < 100000; guard++)
        if (engine_step(e) == 0 && engine_active(e) == 0) break;
    const int n = engine_take_finished(e, out);
    for (int i = 1; i < n; i++)  // insertion sort by id
        for (int j = i; j > 0 && (*out)[j].id < (*out)[j - 1].id; j--) {
            Completion t = (*out)[j];
            (*out)[j] = (*out)[j - 1], (*out)[j - 1] = t;
        }
    return n;
}

// ---------------------------------------------------------------------------------------
// The forward with the paged cache against a full forward.

// S sequences of len[s] tokens: prompt[s] prefilled in chunks of chunk[s], the rest decoded
// one per step, all in the same steps while they last. Every row's logits are checked against
// a full forward; with kv_dtype fp16 keys and values are rounded to half precision, so the
// logits only come close (atol, rtol). Returns all the logits, step by step, for
// test_forward_slices_change_nothing.
static float *forward_case(int S, const int *len, const int *prompt, const int *chunk, int kv_dtype, double atol,
                           double rtol) {
    Model *m = random_model(64, 1);
    const int V = m->config.vocab_size;
    enum { MAX_ROWS = 128, MAX_LEN = 40, N_BLOCKS = 256 };
    ErrorBuf err;
    Rng rng;
    rng_seed(&rng, 5);
    int32_t(*tokens)[MAX_LEN] = calloc((size_t)S, sizeof *tokens), positions[MAX_LEN];
    float **want = calloc((size_t)S, sizeof *want);
    assert_int_equal(model_reserve(m, MAX_LEN, 0, &err), 0);
    for (int i = 0; i < MAX_LEN; i++) positions[i] = i;
    int total_rows = 0;
    for (int s = 0; s < S; s++) {
        assert_true(len[s] <= MAX_LEN);
        random_tokens(&rng, tokens[s], len[s], V);
        want[s] = malloc((size_t)len[s] * V * sizeof(float));
        assert_int_equal(model_forward_logits(m, tokens[s], positions, len[s], 1, want[s], &err), 0);
        total_rows += len[s];
    }
    KVCache cache;
    InferForward f;
    assert_int_equal(kvcache_init(&cache, m->config.n_layers, m->config.n_kv_heads * m->config.head_dim, 4, N_BLOCKS,
                                  kv_dtype, &err),
                     0);
    // As many "sequences" as rows: every row's logits are sampled (sample_rows holds max_seqs).
    assert_int_equal(infer_forward_init(&f, &m->config, MAX_ROWS, MAX_ROWS, 16, MAX_ROWS, &err), 0);
    BlockTable *tables = calloc((size_t)S, sizeof *tables);
    int *done = calloc((size_t)S, sizeof *done);
    float *all = malloc((size_t)total_rows * V * sizeof(float));
    int steps = 0, rows_checked = 0, longest = 0;
    double worst = 0.0, largest = 0.0;
    for (int s = 0; s < S; s++) longest = len[s] > longest ? len[s] : longest;
    for (;;) {
        InferBatch *b = &f.batch;
        b->n_rows = b->n_seqs = b->n_sample = 0;
        int seq_of_row[MAX_ROWS], pos_of_row[MAX_ROWS];
        for (int s = 0; s < S; s++) {
            if (done[s] == len[s]) continue;
            int t = done[s] < prompt[s] ? chunk[s] : 1;
            if (t > prompt[s] - done[s] && done[s] < prompt[s]) t = prompt[s] - done[s];
            assert_true(b->n_rows + t <= MAX_ROWS);
            assert_int_equal(block_table_grow(&cache, &tables[s], done[s] + t), 0);
            const int si = b->n_seqs++;
            b->query_start[si] = b->n_rows;
            for (int j = 0; j < t; j++) {
                const int p = done[s] + j, r = b->n_rows++;
                b->tokens[r] = tokens[s][p];
                b->positions[r] = p;
                b->slots[r] = block_table_slot(&cache, &tables[s], p);
                b->sample_rows[b->n_sample++] = r;  // every row's logits, to check them all
                seq_of_row[r] = s, pos_of_row[r] = p;
            }
            b->query_start[si + 1] = b->n_rows;
            b->context_len[si] = done[s] + t;
            memset(b->block_tables + (size_t)si * f.max_blocks, 0, (size_t)f.max_blocks * sizeof(int32_t));
            memcpy(b->block_tables + (size_t)si * f.max_blocks, tables[s].blocks, (size_t)tables[s].n * sizeof(int32_t));
            done[s] += t;
        }
        if (b->n_rows == 0) break;
        steps++;
        infer_forward_blocks(&f, m, &cache);
        infer_forward_logits(&f, m, 0, b->n_sample);
        float *logits = all + (size_t)rows_checked * V;
        ops_copy_to_host(logits, f.logits, (size_t)b->n_sample * V * sizeof(float));
        for (int r = 0; r < b->n_rows; r++) {
            const float *got = logits + (size_t)r * V, *ref = want[seq_of_row[r]] + (size_t)pos_of_row[r] * V;
            test_assert_close("KV-cache logits vs full forward", got, ref, (size_t)V, atol, rtol);
            for (int j = 0; j < V; j++) {
                worst = fabs(got[j] - ref[j]) > worst ? fabs(got[j] - ref[j]) : worst;
                largest = fabs(ref[j]) > largest ? fabs(ref[j]) : largest;
            }
        }
        rows_checked += b->n_rows;
    }
    printf("# %d sequences, KV cache %s: largest logit difference to the full forward %.3g (largest logit %.3g)\n",
           S, kv_dtype ? "fp16" : "fp32", worst, largest);
    assert_int_equal(rows_checked, total_rows);
    assert_true(steps >= longest - 1);
    for (int s = 0; s < S; s++) {
        block_table_release(&cache, &tables[s]);
        block_table_free(&tables[s]);
        free(want[s]);
    }
    assert_int_equal(kvcache_blocks_used(&cache), 0);
    free(tables), free(done), free(want), free(tokens);
    infer_forward_free(&f);
    kvcache_free(&cache);
    model_free(m);
    return all;
}

// Three sequences: one prefilled in chunks of 4, one of 5, one decoded from its first token.
static float *three_sequences(int kv_dtype, double atol, double rtol) {
    const int len[3] = {12, 23, 40}, prompt[3] = {9, 16, 1}, chunk[3] = {4, 5, 1};
    return forward_case(3, len, prompt, chunk, kv_dtype, atol, rtol);
}

// 30 sequences of different lengths and prompts, prefilled in chunks of 1 to 4: from 24 rows a
// step the CPU backend runs the step as one slice of sequences per thread (ops_batch_slices),
// also when the rows of a prefill chunk and of decoded tokens mix.
enum { MANY = 30 };
static float *many_sequences(int kv_dtype, double atol, double rtol) {
    int len[MANY], prompt[MANY], chunk[MANY];
    for (int s = 0; s < MANY; s++) len[s] = 8 + (s * 7) % 13, prompt[s] = 1 + (s * 5) % 7, chunk[s] = 1 + s % 4;
    return forward_case(MANY, len, prompt, chunk, kv_dtype, atol, rtol);
}

static void test_forward_logits_match_full_forward(void **state) {
    (void)state;
    free(three_sequences(OPS_KV_F32, 2e-5, 1e-4));
    free(three_sequences(OPS_KV_F16, 4e-2, 1e-2));  // observed 0.014 of logits up to 6.8
    free(many_sequences(OPS_KV_F32, 2e-5, 1e-4));
    free(many_sequences(OPS_KV_F16, 4e-2, 1e-2));
}

// A step run as slices of sequences, one per thread, gives the bits of the same step on one
// thread (each op's result for a row does not depend on the rows beside it).
static void test_forward_slices_change_nothing(void **state) {
    (void)state;
    if (ops_batch_slices(MANY) < 2) skip();  // the CUDA backend runs a step whole (so does a CPU of unknown L3)
    assert_int_equal(ops_batch_slices(OPS_MIN_SLICE_ROWS), 1);
    // Weights that the cache would not hold (here: more than 1 byte): every slice would read
    // them from memory, so a step runs whole.
    Model *m = random_model(64, 1);
    setenv("ASYNCRL_CPU_SLICE_MAX_BYTES", "1", 1);
    assert_int_equal(ops_batch_slices(MANY), 1);
    unsetenv("ASYNCRL_CPU_SLICE_MAX_BYTES");
    assert_int_equal(ops_batch_slices(MANY), 2);
    model_free(m);
    int rows = 0;
    for (int s = 0; s < MANY; s++) rows += 8 + (s * 7) % 13;
    const size_t bytes = (size_t)rows * small_config(64).vocab_size * sizeof(float);
    for (int kv_dtype = OPS_KV_F32; kv_dtype <= OPS_KV_F16; kv_dtype++) {
        float *sliced = many_sequences(kv_dtype, 4e-2, 1e-2);
        ops_init(1);
        assert_int_equal(ops_batch_slices(MANY), 1);
        float *whole = many_sequences(kv_dtype, 4e-2, 1e-2);
        ops_init(2);
        assert_memory_equal(sliced, whole, bytes);
        free(sliced), free(whole);
    }
}

// ---------------------------------------------------------------------------------------
// Batching, preemption.

enum { N_REQ = 7 };

// A mix of sampling settings, prompt lengths and lengths.
static void make_requests(EngineRequest *reqs, int32_t prompts[][24], int vocab, int max_tokens_cap) {
    Rng rng;
    rng_seed(&rng, 77);
    for (int i = 0; i < N_REQ; i++) {
        const int n_prompt = 1 + (i * 5) % 20;
        random_tokens(&rng, prompts[i], n_prompt, vocab);
        EngineRequest r = {.id = 100 + (uint64_t)i, .prompt = prompts[i], .n_prompt = n_prompt,
                           .max_tokens = 6 + (i * 7) % 15, .temperature = 1.0f, .top_p = 1.0f, .seed = 1000 + i};
        if (r.max_tokens > max_tokens_cap) r.max_tokens = max_tokens_cap;
        switch (i % 5) {
        case 0: r.greedy = 1; break;
        case 1: r.temperature = 0.7f, r.top_p = 0.9f; break;
        case 2: r.top_k = 5; break;
        case 3: r.min_p = 0.1f, r.temperature = 1.3f; break;
        default: break;
        }
        reqs[i] = r;
    }
}

static double compare_completions(const Completion *a, const Completion *b, int n) {
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        assert_int_equal(a[i].id, b[i].id);
        assert_int_equal(a[i].finish, b[i].finish);
        assert_int_equal(a[i].n, b[i].n);
        for (int j = 0; j < a[i].n; j++) {
            if (a[i].tokens[j] != b[i].tokens[j]) {
                print_error("request %llu: token %d differs: %d vs %d\n", (unsigned long long)a[i].id, j,
                            a[i].tokens[j], b[i].tokens[j]);
                fail();
            }
            const double d = fabs((double)a[i].logprobs[j] - b[i].logprobs[j]);
            worst = d > worst ? d : worst;
        }
    }
    return worst;
}

static void batched_case(int kv_dtype) {
    Model *m = random_model(64, 2);
    EngineRequest reqs[N_REQ];
    int32_t prompts[N_REQ][24];
    make_requests(reqs, prompts, m->config.vocab_size, 40);
    ErrorBuf err;
    EngineConfig ec = engine_config(8, 4, 0, 7);
    ec.kv_dtype = kv_dtype;
    Engine *e = engine_with(m, &ec, 0);
    for (int i = 0; i < N_REQ; i++) assert_int_equal(engine_add(e, &reqs[i], &err), 0);
    Completion *together;
    assert_int_equal(run_to_end(e, &together), N_REQ);
    engine_free(e);
    Completion alone[N_REQ];
    EngineConfig ec1 = engine_config(1, 16, 0, 64);
    ec1.kv_dtype = kv_dtype;
    for (int i = 0; i < N_REQ; i++) {
        Engine *e1 = engine_with(m, &ec1, 0);
        assert_int_equal(engine_add(e1, &reqs[i], &err), 0);
        Completion *c;
        assert_int_equal(run_to_end(e1, &c), 1);
        alone[i] = c[0];
        free(c);
        engine_free(e1);
    }
    const double worst = compare_completions(together, alone, N_REQ);
    printf("# batched vs alone (KV cache %s): largest logprob difference %.3g\n", kv_dtype ? "fp16" : "fp32", worst);
    // The batch and the lone runs take different matmul paths (row counts), so k and v differ
    // in their last bits; rounded to fp16 such a difference can become one half-precision ulp.
    assert_true(worst <= (kv_dtype == OPS_KV_F16 ? 2e-3 : 3e-5));
    for (int i = 0; i < N_REQ; i++) {
        assert_int_equal(together[i].finish, FINISH_LENGTH);
        assert_int_equal(together[i].n, reqs[i].max_tokens);
        completion_free(&alone[i]);
    }
    completions_free(together, N_REQ);
    model_free(m);
}

static void test_batched_equals_alone(void **state) {
    (void)state;
    batched_case(OPS_KV_F32);
    batched_case(OPS_KV_F16);
}

static void preemption_case(int kv_dtype) {
    Model *m = random_model(64, 3);
    EngineRequest reqs[N_REQ];
    int32_t prompts[N_REQ][24];
    make_requests(reqs, prompts, m->config.vocab_size, 14);
    for (int i = 0; i < N_REQ; i++)  // total <= 24 tokens = the tiny cache's context
        if (reqs[i].n_prompt > 9) reqs[i].n_prompt = 9;
    ErrorBuf err;
    EngineConfig ample = engine_config(4, 4, 0, 5);
    EngineConfig tiny = engine_config(4, 4, 6, 5);  // 6 blocks of 4 tokens for 4 sequences
    ample.kv_dtype = tiny.kv_dtype = kv_dtype;
    Engine *a = engine_with(m, &ample, 0), *t = engine_with(m, &tiny, 0);
    assert_int_equal(engine_context(t), 24);
    for (int i = 0; i < N_REQ; i++) {
        assert_int_equal(engine_add(a, &reqs[i], &err), 0);
        assert_int_equal(engine_add(t, &reqs[i], &err), 0);
    }
    Completion *ca, *ct;
    assert_int_equal(run_to_end(a, &ca), N_REQ);
    assert_int_equal(run_to_end(t, &ct), N_REQ);
    EngineStats st;
    engine_stats(t, &st);
    printf("# tiny budget: %.0f preemptions, %.0f prefill tokens (ample: ", st.preemptions, st.prefill_tokens);
    assert_true(st.preemptions >= 3);
    assert_int_equal((int)st.kv_blocks_used, 0);
    assert_int_equal((int)st.kv_blocks_total, 6);
    EngineStats sa;
    engine_stats(a, &sa);
    printf("%.0f)\n", sa.prefill_tokens);
    assert_int_equal((int)sa.preemptions, 0);
    assert_true(st.prefill_tokens > sa.prefill_tokens);  // the recomputation
    assert_true(st.decode_tokens == sa.decode_tokens);
    const double worst = compare_completions(ct, ca, N_REQ);
    printf("# preempted vs not (KV cache %s): largest logprob difference %.3g\n", kv_dtype ? "fp16" : "fp32", worst);
    assert_true(worst <= 3e-5);
    completions_free(ca, N_REQ);
    completions_free(ct, N_REQ);
    engine_free(a);
    engine_free(t);
    model_free(m);
}

static void test_preemption_gives_same_outputs(void **state) {
    (void)state;
    preemption_case(OPS_KV_F32);
    preemption_case(OPS_KV_F16);
}

// ---------------------------------------------------------------------------------------
// Weight swaps.

// log_softmax(logits)[tok] in double.
static double log_softmax_at(const float *logits, int vocab, int tok) {
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < vocab; j++) mx = logits[j] > mx ? logits[j] : mx;
    for (int j = 0; j < vocab; j++) sum += exp(logits[j] - mx);
    return logits[tok] - mx - log(sum);
}

// Logits of the last of tokens[0..n) when positions 0..n-2 were cached by model a and the last
// row runs with model b (what an in-flight swap computes).
static void mixed_logits(const Model *a, const Model *b, const int32_t *tokens, int n, float *out) {
    ErrorBuf err;
    KVCache cache;
    InferForward f;
    assert_int_equal(
        kvcache_init(&cache, a->config.n_layers, a->config.n_kv_heads * a->config.head_dim, 8, 8, OPS_KV_F32, &err), 0);
    assert_int_equal(infer_forward_init(&f, &a->config, 64, 1, 8, 1, &err), 0);
    BlockTable t = {0};
    assert_int_equal(block_table_grow(&cache, &t, n), 0);
    for (int phase = 0; phase < 2; phase++) {
        const int first = phase == 0 ? 0 : n - 1, count = phase == 0 ? n - 1 : 1;
        InferBatch *bt = &f.batch;
        bt->n_rows = count, bt->n_seqs = 1, bt->n_sample = 1;
        for (int j = 0; j < count; j++) {
            bt->tokens[j] = tokens[first + j];
            bt->positions[j] = first + j;
            bt->slots[j] = block_table_slot(&cache, &t, first + j);
        }
        bt->query_start[0] = 0, bt->query_start[1] = count;
        bt->context_len[0] = first + count;
        memcpy(bt->block_tables, t.blocks, (size_t)t.n * sizeof(int32_t));
        bt->sample_rows[0] = count - 1;
        infer_forward_blocks(&f, phase == 0 ? a : b, &cache);
    }
    infer_forward_logits(&f, b, 0, 1);
    ops_copy_to_host(out, f.logits, (size_t)a->config.vocab_size * sizeof(float));
    block_table_release(&cache, &t);
    block_table_free(&t);
    infer_forward_free(&f);
    kvcache_free(&cache);
}

static void test_swap_in_flight_keeps_cache(void **state) {
    (void)state;
    Model *ma = random_model(64, 10), *mb = random_model(64, 11);
    const int V = ma->config.vocab_size;
    ErrorBuf err;
    EngineConfig ec = engine_config(2, 4, 0, 16);
    Engine *e = engine_with(ma, &ec, 0);
    assert_int_equal(engine_version(e), 0);
    int32_t prompt[5] = {3, 17, 40, 8, 22};
    EngineRequest r = {.id = 1, .prompt = prompt, .n_prompt = 5, .max_tokens = 10, .temperature = 1.0f,
                       .top_p = 1.0f, .greedy = 1};
    assert_int_equal(engine_add(e, &r, &err), 0);
    const int32_t *gen;
    while (engine_peek(e, 1, &gen) < 4) assert_true(engine_step(e) > 0);
    float *hb = host_params(mb);
    engine_set_weights(e, hb, 1);  // IN_FLIGHT: applies at once
    free(hb);
    assert_int_equal(engine_version(e), 1);
    assert_int_equal(engine_staged_version(e), -1);
    Completion *c;
    assert_int_equal(run_to_end(e, &c), 1);
    assert_int_equal(c->n, 10);
    for (int j = 0; j < 10; j++) assert_int_equal(c->versions[j], j < 4 ? 0 : 1);
    // Token 4 came from the old cache (prompt + 3 tokens by model a) and model b on token 3.
    int32_t seq[9];
    memcpy(seq, prompt, sizeof prompt);
    memcpy(seq + 5, c->tokens, 4 * sizeof(int32_t));
    float *logits = malloc((size_t)V * sizeof(float));
    mixed_logits(ma, mb, seq, 9, logits);
    const double want = log_softmax_at(logits, V, c->tokens[4]);
    assert_true(fabs(want - c->logprobs[4]) < 1e-5);
    int best = 0;
    for (int j = 1; j < V; j++) best = logits[j] > logits[best] ? j : best;
    assert_int_equal(c->tokens[4], best);
    // A restart (model b over all 9 tokens) would give another logprob: the cache was kept.
    int32_t pos[9];
    for (int i = 0; i < 9; i++) pos[i] = i;
    assert_int_equal(model_reserve(mb, 9, 0, &err), 0);
    assert_int_equal(model_forward_logits(mb, seq, pos, 9, 0, logits, &err), 0);
    const double restart = log_softmax_at(logits, V, c->tokens[4]);
    printf("# first token after the swap: logprob %.5f (old cache + new weights), %.5f after a restart\n",
           (double)c->logprobs[4], restart);
    assert_true(fabs(restart - c->logprobs[4]) > 1e-3);
    completions_free(c, 1);
    free(logits);
    engine_free(e);
    model_free(ma);
    model_free(mb);
}

static void test_swap_drain_and_max_updates(void **state) {
    (void)state;
    Model *ma = random_model(64, 20), *mb = random_model(64, 21);
    float *ha = host_params(ma), *hb = host_params(mb);
    ErrorBuf err;
    int32_t prompt[3] = {1, 2, 3};
    EngineRequest r = {.id = 1, .prompt = prompt, .n_prompt = 3, .max_tokens = 8, .temperature = 1.0f, .top_p = 1.0f,
                       .seed = 4};
    // DRAIN: request 1 finishes on version 0; request 2, added after the swap, waits and runs on 1.
    EngineConfig ec = engine_config(4, 4, 0, 16);
    ec.swap_mode = ENGINE_SWAP_DRAIN;
    Engine *e = engine_with(ma, &ec, 0);
    assert_int_equal(engine_add(e, &r, &err), 0);
    assert_true(engine_step(e) > 0);
    engine_set_weights(e, hb, 1);
    assert_int_equal(engine_version(e), 0);
    assert_int_equal(engine_staged_version(e), 1);
    EngineRequest r2 = r;
    r2.id = 2;
    assert_int_equal(engine_add(e, &r2, &err), 0);
    while (engine_peek(e, 1, NULL) >= 0) {
        assert_int_equal(engine_peek(e, 2, NULL), 0);  // waits
        assert_int_equal(engine_active(e), 1);
        assert_true(engine_step(e) > 0);
    }
    assert_int_equal(engine_version(e), 1);  // applied once request 1 finished
    assert_int_equal(engine_staged_version(e), -1);
    Completion *c;
    assert_int_equal(run_to_end(e, &c), 2);
    for (int j = 0; j < c[0].n; j++) assert_int_equal(c[0].versions[j], 0);
    for (int j = 0; j < c[1].n; j++) assert_int_equal(c[1].versions[j], 1);
    assert_int_equal(c[1].n, 8);
    completions_free(c, 2);
    engine_free(e);

    // max_updates = 1 (IN_FLIGHT): the second swap a sequence lives through cancels it.
    ec = engine_config(4, 4, 0, 16);
    ec.max_updates = 1;
    e = engine_with(ma, &ec, 0);
    r.max_tokens = 30;
    assert_int_equal(engine_add(e, &r, &err), 0);
    r2.max_tokens = 30;
    assert_int_equal(engine_add(e, &r2, &err), 0);
    assert_true(engine_step(e) > 0);
    assert_true(engine_step(e) > 0);
    engine_set_weights(e, hb, 1);
    assert_true(engine_step(e) > 0);
    assert_int_equal(engine_take_finished(e, &c), 0);
    engine_set_weights(e, ha, 2);
    assert_int_equal(engine_take_finished(e, &c), 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c[i].finish, FINISH_CANCELLED);
        assert_non_null(strstr(c[i].reason, "max_updates = 1"));
        assert_int_equal(c[i].n, 3);
        assert_int_equal(c[i].versions[0], 0);
        assert_int_equal(c[i].versions[2], 1);
    }
    completions_free(c, 2);
    assert_int_equal(engine_active(e) + engine_queued(e), 0);
    EngineStats st;
    engine_stats(e, &st);
    assert_int_equal((int)st.cancelled, 2);
    assert_int_equal((int)st.kv_blocks_used, 0);
    engine_free(e);
    free(ha);
    free(hb);
    model_free(ma);
    model_free(mb);
}

// ---------------------------------------------------------------------------------------
// Cancellation and finishing.

static void test_cancel(void **state) {
    (void)state;
    Model *m = random_model(64, 30);
    ErrorBuf err;
    EngineConfig ec = engine_config(2, 4, 0, 16);
    Engine *e = engine_with(m, &ec, 5);
    int32_t prompt[2] = {4, 5};
    EngineRequest r = {.prompt = prompt, .n_prompt = 2, .max_tokens = 20, .temperature = 1.0f, .top_p = 1.0f};
    for (int i = 0; i < 4; i++) {
        r.id = (uint64_t)i;
        assert_int_equal(engine_add(e, &r, &err), 0);
    }
    assert_int_equal(engine_queued(e), 4);
    assert_true(engine_step(e) > 0);
    assert_int_equal(engine_active(e), 2);
    assert_int_equal(engine_queued(e), 2);
    assert_int_equal(engine_cancel(e, 0, "stop now"), 0);  // running
    assert_int_equal(engine_cancel(e, 3, NULL), 0);        // queued
    assert_int_equal(engine_cancel(e, 3, NULL), -1);       // already finished
    assert_int_equal(engine_cancel(e, 99, NULL), -1);      // unknown
    Completion *c;
    assert_int_equal(engine_take_finished(e, &c), 2);
    assert_int_equal(c[0].id, 0);
    assert_int_equal(c[0].finish, FINISH_CANCELLED);
    assert_string_equal(c[0].reason, "stop now");
    assert_int_equal(c[0].n, 1);
    assert_int_equal(c[0].versions[0], 5);
    assert_int_equal(c[1].finish, FINISH_CANCELLED);
    assert_int_equal(c[1].n, 0);
    completions_free(c, 2);
    assert_true(engine_step(e) > 0);
    engine_cancel_all(e, "shutdown");
    assert_int_equal(engine_active(e) + engine_queued(e), 0);
    assert_int_equal(engine_take_finished(e, &c), 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(c[i].finish, FINISH_CANCELLED);
        assert_string_equal(c[i].reason, "shutdown");
    }
    completions_free(c, 2);
    assert_int_equal(engine_step(e), 0);
    EngineStats st;
    engine_stats(e, &st);
    assert_int_equal((int)st.kv_blocks_used, 0);
    engine_free(e);
    model_free(m);
}

static void test_finish_reasons(void **state) {
    (void)state;
    Model *m = random_model(16, 40);  // a 16-token context
    ErrorBuf err;
    EngineConfig ec = engine_config(4, 4, 0, 16);
    Engine *e = engine_with(m, &ec, 0);
    int32_t prompt[20];
    for (int i = 0; i < 20; i++) prompt[i] = i;
    // Greedy run of 8 tokens, to pick a stop token.
    EngineRequest r = {.id = 1, .prompt = prompt, .n_prompt = 4, .max_tokens = 8, .temperature = 1.0f,
                       .top_p = 1.0f, .greedy = 1};
    assert_int_equal(engine_add(e, &r, &err), 0);
    Completion *c;
    assert_int_equal(run_to_end(e, &c), 1);
    assert_int_equal(c->finish, FINISH_LENGTH);
    assert_int_equal(c->n, 8);
    int32_t stop = c->tokens[5];
    int first = 0;
    while (c->tokens[first] != stop) first++;
    completions_free(c, 1);
    // The same with a stop token: ends at its first occurrence, which is kept.
    r.id = 2, r.stop = &stop, r.n_stop = 1;
    assert_int_equal(engine_add(e, &r, &err), 0);
    assert_int_equal(run_to_end(e, &c), 1);
    assert_int_equal(c->finish, FINISH_STOP);
    assert_int_equal(c->n, first + 1);
    assert_int_equal(c->tokens[first], stop);
    completions_free(c, 1);
    // The context ends generation: 10 prompt tokens leave 6.
    EngineRequest full = {.id = 3, .prompt = prompt, .n_prompt = 10, .max_tokens = 100, .temperature = 1.0f,
                          .top_p = 1.0f};
    assert_int_equal(engine_add(e, &full, &err), 0);
    // Prompts that leave no room are rejected with a reason (16 and 20 tokens); 15 gives 1 token.
    EngineRequest big = full;
    big.id = 4, big.n_prompt = 16;
    assert_int_equal(engine_add(e, &big, &err), 0);
    big.id = 5, big.n_prompt = 20;
    assert_int_equal(engine_add(e, &big, &err), 0);
    big.id = 6, big.n_prompt = 15;
    assert_int_equal(engine_add(e, &big, &err), 0);
    const int n = run_to_end(e, &c);
    assert_int_equal(n, 4);
    assert_int_equal(c[0].id, 3);
    assert_int_equal(c[0].finish, FINISH_LENGTH);
    assert_int_equal(c[0].n, 6);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(c[i].finish, FINISH_REJECTED);
        assert_int_equal(c[i].n, 0);
        assert_non_null(strstr(c[i].reason, "context of 16 tokens"));
    }
    assert_int_equal(c[3].finish, FINISH_LENGTH);
    assert_int_equal(c[3].n, 1);
    completions_free(c, n);
    engine_free(e);
    model_free(m);
}

// ---------------------------------------------------------------------------------------
// Errors and garbage.

static void expect_create_error(const ModelConfig *mc, EngineConfig ec, const char *words) {
    ErrorBuf err = {{0}};
    Engine *e = engine_create(mc, &ec, &err);
    assert_null(e);
    if (!strstr(err.msg, words)) {
        print_error("error '%s' does not mention '%s'\n", err.msg, words);
        fail();
    }
}

static void expect_add_error(Engine *e, EngineRequest r, const char *words) {
    ErrorBuf err = {{0}};
    assert_int_equal(engine_add(e, &r, &err), -1);
    if (!strstr(err.msg, words)) {
        print_error("error '%s' does not mention '%s'\n", err.msg, words);
        fail();
    }
}

static void test_bad_settings_and_requests(void **state) {
    (void)state;
    ModelConfig mc = small_config(32);
    expect_create_error(&mc, engine_config(0, 4, 0, 8), "max_seqs = 0");
    expect_create_error(&mc, engine_config(4, 0, 0, 8), "kv_block_size = 0");
    expect_create_error(&mc, engine_config(4, 4, -1, 8), "kv_blocks = -1");
    expect_create_error(&mc, engine_config(4, 4, 0, 0), "prefill_chunk = 0");
    expect_create_error(&mc, engine_config(4, 4, 3, 8), "smaller than inference.max_seqs");
    EngineConfig bad_updates = engine_config(4, 4, 0, 8);
    bad_updates.max_updates = -2;
    expect_create_error(&mc, bad_updates, "max_updates");
    EngineConfig bad_dtype = engine_config(4, 4, 0, 8);
    bad_dtype.kv_dtype = 7;
    expect_create_error(&mc, bad_dtype, "unknown KV cache element type 7");
    // A cache larger than the device's memory is refused before it is allocated (on the CPU a
    // huge allocation may succeed, and the machine swaps or kills the job when it is touched).
    // Blocks of 64 MiB (64 layers x 16 tokens x 4096 values, keys and values, fp32): one more
    // than the memory holds stays far below the 2^31 slots of a cache on any machine.
    const size_t memory = ops_device_memory();
    assert_true(memory > 0);
    const double block_bytes = 2.0 * 64 * 16 * 4096 * 4;
    const int too_many = (int)((double)memory / block_bytes) + 1;
    KVCache big;
    ErrorBuf kv_err;
    assert_int_equal(kvcache_init(&big, 64, 4096, 16, too_many, OPS_KV_F32, &kv_err), -1);
    assert_non_null(strstr(kv_err.msg, "more than the device's"));
    assert_non_null(strstr(kv_err.msg, "inference.kv_blocks"));
    ModelConfig bad_model = mc;
    bad_model.n_heads = 3;  // dim 32 not divisible, and n_kv_heads 2 does not divide 3
    expect_create_error(&bad_model, engine_config(4, 4, 0, 8), "");

    Model *m = random_model(32, 50);
    EngineConfig ec = engine_config(2, 4, 0, 8);
    Engine *e = engine_with(m, &ec, 0);
    int32_t prompt[4] = {1, 2, 3, 4}, bad_tok[3] = {1, 48, 2}, neg_tok[2] = {-1, 0}, stop_bad = 99;
    EngineRequest ok = {.id = 1, .prompt = prompt, .n_prompt = 4, .max_tokens = 4, .temperature = 1.0f,
                        .top_p = 1.0f};
    EngineRequest r = ok;
    r.prompt = bad_tok, r.n_prompt = 3;
    expect_add_error(e, r, "token 48 at index 1 is outside the vocabulary [0, 48)");
    r.prompt = neg_tok, r.n_prompt = 2;
    expect_add_error(e, r, "token -1");
    r = ok, r.n_prompt = 0;
    expect_add_error(e, r, "empty");
    r = ok, r.prompt = NULL;
    expect_add_error(e, r, "empty");
    r = ok, r.max_tokens = 0;
    expect_add_error(e, r, "max_tokens = 0");
    r = ok, r.temperature = -1.0f;
    expect_add_error(e, r, "temperature");
    r = ok, r.temperature = NAN;
    expect_add_error(e, r, "temperature");
    r = ok, r.temperature = 0.0f;
    expect_add_error(e, r, "temperature");
    r = ok, r.temperature = 2e-38f;  // (logits / T would overflow to inf)
    expect_add_error(e, r, "temperature = 2e-38 must be finite and at least 1e-06");
    r = ok, r.top_p = 0.0f;
    expect_add_error(e, r, "top_p");
    r = ok, r.top_p = 1.5f;
    expect_add_error(e, r, "top_p");
    r = ok, r.min_p = -0.1f;
    expect_add_error(e, r, "min_p");
    r = ok, r.top_k = -3;
    expect_add_error(e, r, "top_k");
    r = ok, r.stop = &stop_bad, r.n_stop = 1;
    expect_add_error(e, r, "stop token 99");
    r = ok, r.n_stop = 2, r.stop = NULL;
    expect_add_error(e, r, "stop tokens");
    ErrorBuf err;
    assert_int_equal(engine_add(e, &ok, &err), 0);
    expect_add_error(e, ok, "already queued");
    assert_int_equal(engine_queued(e), 1);  // nothing else was queued
    // Greedy with temperature 0 is fine (logprob at T = 1).
    r = ok, r.id = 2, r.greedy = 1, r.temperature = 0.0f;
    assert_int_equal(engine_add(e, &r, &err), 0);
    Completion *c;
    assert_int_equal(run_to_end(e, &c), 2);
    completions_free(c, 2);
    engine_free(e);
    model_free(m);
}

// Before any weights nothing runs; afterwards it does.
static void test_no_weights_no_admission(void **state) {
    (void)state;
    Model *m = random_model(32, 60);
    ErrorBuf err;
    EngineConfig ec = engine_config(2, 4, 0, 8);
    Engine *e = engine_create(&m->config, &ec, &err);
    assert_non_null(e);
    assert_int_equal(engine_version(e), -1);
    assert_int_equal((int)engine_n_params(e), (int)m->n_params);
    int32_t prompt[2] = {1, 2};
    EngineRequest r = {.id = 1, .prompt = prompt, .n_prompt = 2, .max_tokens = 3, .temperature = 1.0f, .top_p = 1.0f};
    assert_int_equal(engine_add(e, &r, &err), 0);
    assert_int_equal(engine_step(e), 0);
    assert_int_equal(engine_queued(e), 1);
    float *h = host_params(m);
    engine_set_weights(e, h, 3);
    free(h);
    Completion *c;
    assert_int_equal(run_to_end(e, &c), 1);
    assert_int_equal(c->versions[0], 3);
    completions_free(c, 1);
    engine_free(e);
    model_free(m);
}

// Random requests (valid and not), cancels, swaps and steps under a small KV budget: every
// accepted request finishes exactly once with consistent arrays, and every block comes back.
static void test_random_use_keeps_invariants(void **state) {
    (void)state;
    Model *m = random_model(40, 70);
    float *h = host_params(m);
    const int V = m->config.vocab_size;
    Rng rng;
    rng_seed(&rng, 2024);
    for (int mode = 0; mode < 2; mode++) {
        EngineConfig ec = engine_config(3, 2, 8, 3);
        ec.swap_mode = mode ? ENGINE_SWAP_DRAIN : ENGINE_SWAP_IN_FLIGHT;
        ec.max_updates = 2;
        ErrorBuf err;
        Engine *e = engine_with(m, &ec, 0);
        int accepted = 0, finished = 0, version = 0;
        unsigned char seen[400] = {0};
        for (int it = 0; it < 400; it++) {
            const uint64_t action = rng_below(&rng, 10);
            if (action < 4) {
                int32_t prompt[24];
                const int n = (int)rng_below(&rng, 24);
                for (int i = 0; i < n; i++) prompt[i] = (int32_t)rng_below(&rng, (uint64_t)V + 2) - 1;
                EngineRequest r = {.id = (uint64_t)it, .prompt = prompt, .n_prompt = n,
                                   .max_tokens = (int)rng_below(&rng, 12) - 1,
                                   .temperature = rng_uniform_f(&rng) * 2.0f - 0.2f,
                                   .top_p = rng_uniform_f(&rng) * 1.2f, .min_p = rng_uniform_f(&rng) * 0.5f,
                                   .top_k = (int)rng_below(&rng, 8) - 1, .greedy = (int)rng_below(&rng, 2),
                                   .seed = rng_next(&rng)};
                if (engine_add(e, &r, &err) == 0) accepted++;
            } else if (action == 4) {
                engine_cancel(e, rng_below(&rng, (uint64_t)it + 1), "random");
            } else if (action == 5) {
                engine_set_weights(e, h, ++version);
            } else {
                engine_step(e);
            }
            Completion *c;
            const int n = engine_take_finished(e, &c);
            for (int i = 0; i < n; i++) {
                assert_true(c[i].id < 400);
                assert_int_equal(seen[c[i].id], 0);
                seen[c[i].id] = 1;
                assert_true(c[i].n >= 0 && c[i].n <= 11);
                for (int j = 0; j < c[i].n; j++) {
                    assert_true(c[i].tokens[j] >= 0 && c[i].tokens[j] < V);
                    assert_true(c[i].logprobs[j] <= 0.0f);
                    assert_true(c[i].versions[j] >= 0 && c[i].versions[j] <= version);
                }
            }
            finished += n;
            completions_free(c, n);
        }
        Completion *c;
        const int n = run_to_end(e, &c);
        finished += n;
        completions_free(c, n);
        assert_int_equal(finished, accepted);
        assert_true(accepted > 30);
        EngineStats st;
        engine_stats(e, &st);
        assert_int_equal((int)st.kv_blocks_used, 0);
        engine_free(e);
    }
    free(h);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_logits_match_full_forward),
        cmocka_unit_test(test_forward_slices_change_nothing),
        cmocka_unit_test(test_batched_equals_alone),
        cmocka_unit_test(test_preemption_gives_same_outputs),
        cmocka_unit_test(test_swap_in_flight_keeps_cache),
        cmocka_unit_test(test_swap_drain_and_max_updates),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_finish_reasons),
        cmocka_unit_test(test_bad_settings_and_requests),
        cmocka_unit_test(test_no_weights_no_admission),
        cmocka_unit_test(test_random_use_keeps_invariants),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
