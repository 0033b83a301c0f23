// GPU tests of the whole model on the backend under test (CUDA: bf16 GEMMs with fp32 master
// weights), against PyTorch + transformers (the fixtures of tests/fixtures/make_model_fixtures.py
// that test_model.c checks the CPU build with) and against the real stories260K model's
// reference logprobs. The tolerances are those of bf16 arithmetic: loose elementwise bounds,
// plus a cosine similarity between each result and its reference, which stays near 1 under
// rounding noise and falls for any systematic error (a wrong transpose, a missed scale, a
// stale weight copy). Also: two identical training passes give the same bits (deterministic
// mode relies on it), a packed row equals its samples run alone, and the inference forward
// with the paged KV cache (chunked prefill, batched decode) gives the full forward's logits.
//
// Calibration (no GPU was available when this was written): the same fixtures run through
// PyTorch with every nn.Linear emulating the CUDA GEMMs (inputs, weights and output gradients
// rounded to bf16, fp32 accumulation) gave, against the fp32 references, logits cosine
// >= 0.99998 and max error <= 0.6% of the largest logit, entropy <= 1.7%, gradients cosine
// >= 0.9998 and max error <= 2% of the tensor's largest value, losses within 0.6%, and
// stories260K logp cosine 0.99999 with mean loss 0.5076 vs 0.5071. The bounds below leave a
// factor of about 2.5 (elementwise) to 10 (1 - cosine) above that.
//
// Built only for CUDA (make CUDA=1 test-gpu); `make gpu-tests-on-cpu` runs it on the CPU
// backend to check the harness.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fixture_util.h"
#include "common/test_util.h"
#include "core/json.h"
#include "core/rng.h"
#include "infer/forward.h"
#include "infer/kvcache.h"
#include "model/hf.h"
#include "model/llama2c.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "ops.h"

static int setup(void **state) {
    (void)state;
    ops_init(2);
    print_message("# backend under test: %s\n", ops_backend_name());
    return 0;
}

// ---------------------------------------------------------------------------------------
// Comparisons.

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) ab += (double)a[i] * b[i], aa += (double)a[i] * a[i], bb += (double)b[i] * b[i];
    if (aa == 0 && bb == 0) return 1.0;
    return ab / sqrt(aa * bb + 1e-300);
}

static double max_abs(const float *x, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

// Elementwise within rel * max|ref| (+ rel * |ref|), and cosine similarity >= min_cos.
static void expect_bf16_close(const char *what, const float *got, const float *ref, size_t n, double rel,
                              double min_cos) {
    const double scale = max_abs(ref, n);
    test_assert_close(what, got, ref, n, rel * scale + 1e-6, rel);
    const double c = cosine(got, ref, n);
    print_message("#   %-55s cosine %.6f\n", what, c);
    if (!(c >= min_cos)) fail_msg("%s: cosine similarity %.6f with the reference is below %.4f", what, c, min_cos);
}

// ---------------------------------------------------------------------------------------
// Against transformers.

static void check_against_transformers(const char *name) {
    char dir[256], exp_path[256];
    snprintf(dir, sizeof dir, "%s", test_fixture("model/"));
    strncat(dir, name, sizeof dir - strlen(dir) - 1);
    snprintf(exp_path, sizeof exp_path, "%s_expected.safetensors", dir);
    ErrorBuf err;
    SafetensorsFile ef;
    if (safetensors_open(&ef, exp_path, &err) != 0) {
        print_error("%s\n", err.msg);
        fail();
    }
    Model *m = hf_load(dir, &err);
    if (!m) print_error("%s\n", err.msg);
    assert_non_null(m);
    size_t n_tok;
    float *tokens_f = fixture_tensor(&ef, "tokens", &n_tok);
    float *positions_f = fixture_tensor(&ef, "positions", NULL), *targets_f = fixture_tensor(&ef, "targets", NULL);
    float *w = fixture_tensor(&ef, "d_logp", NULL), *u = fixture_tensor(&ef, "d_entropy", NULL);
    float *temp = fixture_tensor(&ef, "temperature", NULL), *loss_ref = fixture_tensor(&ef, "loss", NULL);
    const int n = (int)n_tok, V = m->config.vocab_size;
    int32_t *tokens = fixture_ints(tokens_f, n_tok), *positions = fixture_ints(positions_f, n_tok);
    int32_t *targets = fixture_ints(targets_f, n_tok);
    assert_int_equal(model_reserve(m, n, 1, &err), 0);
    print_message("# %s\n", name);

    float *logits = malloc(sizeof(float) * n * V), *logits_ref = fixture_tensor(&ef, "logits", NULL);
    assert_int_equal(model_forward_logits(m, tokens, positions, n, 1, logits, &err), 0);
    expect_bf16_close("logits", logits, logits_ref, (size_t)n * V, 0.03, 0.9999);
    float *logp = malloc(sizeof(float) * n), *ent = malloc(sizeof(float) * n);
    assert_int_equal(model_forward_train(m, tokens, positions, targets, n, temp[0], logp, ent, &err), 0);
    float *logp_ref = fixture_tensor(&ef, "logp", NULL), *ent_ref = fixture_tensor(&ef, "entropy", NULL);
    expect_bf16_close("logp", logp, logp_ref, n, 0.03, 0.9999);
    expect_bf16_close("entropy", ent, ent_ref, n, 0.05, 0.999);
    double loss = 0;
    for (int i = 0; i < n; i++) loss += (double)w[i] * logp[i] + (double)u[i] * ent[i];
    assert_true(fabs(loss - loss_ref[0]) <= 0.02 * fabs(loss_ref[0]) + 1e-3);

    assert_int_equal(model_backward(m, w, u, &err), 0);
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        char key[160];
        snprintf(key, sizeof key, "grad.%s", t->name);
        size_t numel;
        float *g_hf = fixture_tensor(&ef, key, &numel);
        assert_non_null(g_hf);
        assert_int_equal(numel, t->numel);
        float *g_ref = fixture_to_model_layout(m, t, g_hf), *g = malloc(t->numel * sizeof(float));
        model_tensor_to_host(m->grads, t, g);
        expect_bf16_close(t->name, g, g_ref, t->numel, 0.05, 0.999);
        free(g_hf), free(g_ref), free(g);
    }
    free(tokens_f), free(positions_f), free(targets_f), free(w), free(u), free(temp), free(loss_ref);
    free(tokens), free(positions), free(targets), free(logits), free(logits_ref), free(logp), free(ent);
    free(logp_ref), free(ent_ref);
    model_free(m);
    safetensors_close(&ef);
}

static void test_llama_matches_transformers(void **state) {
    (void)state;
    check_against_transformers("llama");
}

static void test_llama_tied_matches_transformers(void **state) {
    (void)state;
    check_against_transformers("llama_tied");
}

static void test_qwen2_matches_transformers(void **state) {
    (void)state;
    check_against_transformers("qwen2");
}

// ---------------------------------------------------------------------------------------
// The real stories260K model (skips when ../shared/models is absent).

static void test_stories260K(void **state) {
    (void)state;
    char model_path[1024], tok_path[1024];  // test_model_file returns a static buffer
    const char *p = test_model_file("stories260K.bin");
    if (!p) skip();
    snprintf(model_path, sizeof model_path, "%s", p);
    if (!(p = test_model_file("tok512.bin"))) skip();
    snprintf(tok_path, sizeof tok_path, "%s", p);
    ErrorBuf err;
    Model *m = llama2c_load(model_path, &err);
    if (!m) print_error("%s\n", err.msg);
    assert_non_null(m);
    Tokenizer *t = tokenizer_load(tok_path, &err);
    if (!t) print_error("%s\n", err.msg);
    assert_non_null(t);
    size_t len;
    char *text = test_read_file(test_fixture("model/stories260K_expected.json"), &len);
    assert_non_null(text);
    Json *ex = json_parse(text, len, &err);
    assert_non_null(ex);
    const char *story = json_get_string(ex, "story");
    const Json *want_logp = json_get(ex, "logp");
    int32_t ids[512], positions[512], targets[512];
    const int n = tokenizer_encode(t, story, strlen(story), 1, ids, 512, &err);
    assert_true(n > 10);
    for (int i = 0; i < n; i++) positions[i] = i, targets[i] = i + 1 < n ? ids[i + 1] : -1;
    assert_int_equal(model_reserve(m, n, 1, &err), 0);
    float logp[512], ref[512];
    assert_int_equal(model_forward_train(m, ids, positions, targets, n, 1.0f, logp, NULL, &err), 0);
    double loss = 0, ref_loss = 0;
    for (int i = 0; i < n - 1; i++) ref[i] = (float)want_logp->items[i].number, loss -= logp[i];
    assert_int_equal(json_get_number(ex, "mean_loss", &ref_loss), 0);
    loss /= n - 1;
    print_message("# stories260K mean loss %.5f (transformers fp32: %.5f)\n", loss, ref_loss);
    expect_bf16_close("stories260K logp", logp, ref, (size_t)n - 1, 0.05, 0.9999);
    assert_true(fabs(loss - ref_loss) < 0.02);
    json_free(ex);
    free(text);
    tokenizer_free(t);
    model_free(m);
}

// ---------------------------------------------------------------------------------------
// Determinism and packing.

static Model *small_random_model(uint64_t seed) {
    ModelConfig c = {.dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .hidden_dim = 256, .vocab_size = 300,
                     .max_seq_len = 200, .rope_theta = 10000, .norm_eps = 1e-5, .tied_embeddings = 0};
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    assert_non_null(m);
    model_init_random(m, seed, 0.05f);
    return m;
}

typedef struct {
    int n;
    int32_t tokens[300], positions[300], targets[300];
    float w[300];
} Batch;

static void make_batch(Batch *b, const int *lens, int n_samples, int vocab) {
    Rng rng;
    rng_seed(&rng, 17);
    int i = 0;
    for (int s = 0; s < n_samples; s++)
        for (int p = 0; p < lens[s]; p++, i++) {
            b->tokens[i] = (int32_t)rng_below(&rng, (uint64_t)vocab);
            b->positions[i] = p;
            b->targets[i] = p == lens[s] - 1 ? -1 : (int32_t)rng_below(&rng, (uint64_t)vocab);
            b->w[i] = b->targets[i] < 0 ? 0.0f : rng_normal(&rng);
        }
    b->n = i;
}

// Two identical training passes: the same logp and gradient bits.
static void test_training_pass_deterministic(void **state) {
    (void)state;
    const int lens[3] = {120, 33, 97};
    Batch b;
    Model *m = small_random_model(11);
    make_batch(&b, lens, 3, m->config.vocab_size);
    ErrorBuf err;
    assert_int_equal(model_reserve(m, b.n, 1, &err), 0);
    float logp1[300], logp2[300];
    float *g1 = malloc(m->n_params * sizeof(float)), *g2 = malloc(m->n_params * sizeof(float));
    for (int pass = 0; pass < 2; pass++) {
        model_zero_grads(m);
        assert_int_equal(model_forward_train(m, b.tokens, b.positions, b.targets, b.n, 0.8f, pass ? logp2 : logp1,
                                             NULL, &err), 0);
        assert_int_equal(model_backward(m, b.w, NULL, &err), 0);
        ops_copy_to_host(pass ? g2 : g1, m->grads, m->n_params * sizeof(float));
    }
    assert_memory_equal(logp1, logp2, (size_t)b.n * sizeof(float));
    assert_memory_equal(g1, g2, m->n_params * sizeof(float));
    double ss = 0;
    for (size_t i = 0; i < m->n_params; i++) ss += (double)g1[i] * g1[i];
    assert_true(ss > 1e-6);  // not trivially zero
    free(g1), free(g2);
    model_free(m);
}

// A packed row gives the logprobs and gradients of its samples run alone (summed), up to
// bf16 noise (GEMMs over different row counts may round differently).
static void test_packed_equals_separate(void **state) {
    (void)state;
    const int lens[3] = {9, 70, 4};
    Batch b;
    Model *m = small_random_model(7);
    make_batch(&b, lens, 3, m->config.vocab_size);
    ErrorBuf err;
    assert_int_equal(model_reserve(m, b.n, 1, &err), 0);
    float logp_packed[300], logp_sep[300];
    assert_int_equal(model_forward_train(m, b.tokens, b.positions, b.targets, b.n, 1.3f, logp_packed, NULL, &err), 0);
    assert_int_equal(model_backward(m, b.w, NULL, &err), 0);
    float *g_packed = malloc(m->n_params * sizeof(float)), *g_sep = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(g_packed, m->grads, m->n_params * sizeof(float));
    model_zero_grads(m);
    for (int s = 0, start = 0; s < 3; start += lens[s], s++) {
        assert_int_equal(model_forward_train(m, b.tokens + start, b.positions + start, b.targets + start, lens[s],
                                             1.3f, logp_sep + start, NULL, &err), 0);
        assert_int_equal(model_backward(m, b.w + start, NULL, &err), 0);
    }
    ops_copy_to_host(g_sep, m->grads, m->n_params * sizeof(float));
    expect_bf16_close("packed vs separate logp", logp_packed, logp_sep, (size_t)b.n, 0.01, 0.9999);
    expect_bf16_close("packed vs separate grads", g_packed, g_sep, m->n_params, 0.02, 0.999);
    free(g_packed), free(g_sep);
    model_free(m);
}

// ---------------------------------------------------------------------------------------
// KV-cache decode against the full forward.

// Three sequences go through the inference forward (src/infer/forward.h) as the engine runs
// them: prompts prefilled in chunks, then one token per step, all sequences in one batch, keys
// and values in the paged cache. Every row's logits must equal those of model_forward_logits
// over the whole sequence. On CUDA both sides use bf16 GEMMs and the same attention code
// (attention_row.cuh); they differ only by GEMM accumulation order over different row counts
// (and the rare bf16 rounding that order flips), hence the tolerances.
static void test_decode_matches_forward(void **state) {
    (void)state;
    ModelConfig c = {.dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .hidden_dim = 256, .vocab_size = 300,
                     .max_seq_len = 64, .rope_theta = 10000, .norm_eps = 1e-5, .tied_embeddings = 0};
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    assert_non_null(m);
    model_init_random(m, 21, 0.08f);
    const int V = c.vocab_size;
    enum { S = 3, MAXLEN = 40 };
    const int len[S] = {12, 23, 40}, prompt[S] = {9, 16, 1}, chunk[S] = {4, 5, 1};
    Rng rng;
    rng_seed(&rng, 5);
    int32_t tokens[S][MAXLEN], positions[MAXLEN];
    float *want[S];
    assert_int_equal(model_reserve(m, MAXLEN, 0, &err), 0);
    for (int i = 0; i < MAXLEN; i++) positions[i] = i;
    for (int s = 0; s < S; s++) {
        for (int i = 0; i < len[s]; i++) tokens[s][i] = (int32_t)rng_below(&rng, (uint64_t)V);
        want[s] = malloc((size_t)len[s] * V * sizeof(float));
        assert_int_equal(model_forward_logits(m, tokens[s], positions, len[s], 1, want[s], &err), 0);
    }
    KVCache cache;
    InferForward f;
    assert_int_equal(kvcache_init(&cache, c.n_layers, c.n_kv_heads * (c.dim / c.n_heads), 4, 40, OPS_KV_F32, &err), 0);
    assert_int_equal(infer_forward_init(&f, &m->config, 64, 64, 16, 64, &err), 0);
    BlockTable tables[S] = {{0}};
    int done[S] = {0}, rows_checked = 0;
    float *logits = malloc((size_t)64 * V * sizeof(float));
    double worst_cos = 1.0;
    for (;;) {
        InferBatch *b = &f.batch;
        b->n_rows = b->n_seqs = b->n_sample = 0;
        int seq_of_row[64], pos_of_row[64];
        for (int s = 0; s < S; s++) {
            if (done[s] == len[s]) continue;
            int t = done[s] < prompt[s] ? chunk[s] : 1;
            if (t > prompt[s] - done[s] && done[s] < prompt[s]) t = prompt[s] - done[s];
            assert_int_equal(block_table_grow(&cache, &tables[s], done[s] + t), 0);
            const int si = b->n_seqs++;
            b->query_start[si] = b->n_rows;
            for (int j = 0; j < t; j++) {
                const int p = done[s] + j, r = b->n_rows++;
                b->tokens[r] = tokens[s][p];
                b->positions[r] = p;
                b->slots[r] = block_table_slot(&cache, &tables[s], p);
                b->sample_rows[b->n_sample++] = r;
                seq_of_row[r] = s, pos_of_row[r] = p;
            }
            b->query_start[si + 1] = b->n_rows;
            b->context_len[si] = done[s] + t;
            memset(b->block_tables + (size_t)si * f.max_blocks, 0, (size_t)f.max_blocks * sizeof(int32_t));
            memcpy(b->block_tables + (size_t)si * f.max_blocks, tables[s].blocks, (size_t)tables[s].n * sizeof(int32_t));
            done[s] += t;
        }
        if (b->n_rows == 0) break;
        infer_forward_blocks(&f, m, &cache);
        infer_forward_logits(&f, m, 0, b->n_sample);
        ops_copy_to_host(logits, f.logits, (size_t)b->n_sample * V * sizeof(float));
        for (int r = 0; r < b->n_rows; r++) {
            const float *got = logits + (size_t)r * V, *ref = want[seq_of_row[r]] + (size_t)pos_of_row[r] * V;
            test_assert_close("KV-cache logits vs full forward", got, ref, (size_t)V, 0.01 * max_abs(ref, V) + 1e-5,
                              0.01);
            const double cs = cosine(got, ref, (size_t)V);
            worst_cos = cs < worst_cos ? cs : worst_cos;
            rows_checked++;
        }
    }
    print_message("# decode vs forward: %d rows, worst cosine %.7f\n", rows_checked, worst_cos);
    assert_true(worst_cos >= 0.9999);
    assert_int_equal(rows_checked, len[0] + len[1] + len[2]);
    for (int s = 0; s < S; s++) {
        block_table_release(&cache, &tables[s]);
        block_table_free(&tables[s]);
        free(want[s]);
    }
    free(logits);
    infer_forward_free(&f);
    kvcache_free(&cache);
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_matches_transformers),
        cmocka_unit_test(test_llama_tied_matches_transformers),
        cmocka_unit_test(test_qwen2_matches_transformers),
        cmocka_unit_test(test_stories260K),
        cmocka_unit_test(test_training_pass_deterministic),
        cmocka_unit_test(test_packed_equals_separate),
        cmocka_unit_test(test_decode_matches_forward),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
