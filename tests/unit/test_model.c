// The model against PyTorch + transformers (fixtures made by tests/fixtures/make_model_fixtures.py):
// Hugging Face checkpoints (Llama untied with GQA, Llama tied, Qwen2 with q/k/v biases; BF16,
// F16 weights) load, and on one packed row of several samples give the same logits, per-token
// logprobs and entropies at temperature 0.7, the same loss and the same gradient of every
// parameter; one clipped AdamW step matches torch.optim.AdamW. Also: a packed row equals its
// samples run one by one, and random init is deterministic.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fixture_util.h"
#include "common/test_util.h"
#include "core/rng.h"
#include "model/hf.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "ops.h"
#include "train/optimizer.h"

static int setup(void **state) {
    (void)state;
    ops_init(2);
    return 0;
}

// Loads fixture `name`, checks logits, logp, entropy, loss and all gradients; with adamw,
// also the clipped AdamW step.
static void check_against_transformers(const char *name, int with_adamw) {
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
    assert_int_equal(model_reserve(m, n + 3, 1, &err), 0);

    float *logits = malloc(sizeof(float) * n * V);
    assert_int_equal(model_forward_logits(m, tokens, positions, n, 1, logits, &err), 0);
    float *logits_ref = fixture_tensor(&ef, "logits", NULL);
    test_assert_close("logits", logits, logits_ref, (size_t)n * V, 1e-4, 1e-4);
    // The last-position variant gives the last row.
    float *last = malloc(sizeof(float) * V);
    assert_int_equal(model_forward_logits(m, tokens, positions, n, 0, last, &err), 0);
    test_assert_close("last logits", last, logits_ref + (size_t)(n - 1) * V, V, 1e-4, 1e-4);

    float *logp = malloc(sizeof(float) * n), *ent = malloc(sizeof(float) * n);
    assert_int_equal(model_forward_train(m, tokens, positions, targets, n, temp[0], logp, ent, &err), 0);
    float *logp_ref = fixture_tensor(&ef, "logp", NULL), *ent_ref = fixture_tensor(&ef, "entropy", NULL);
    test_assert_close("logp", logp, logp_ref, n, 1e-4, 1e-4);
    test_assert_close("entropy", ent, ent_ref, n, 1e-4, 1e-4);
    double loss = 0;
    for (int i = 0; i < n; i++) loss += (double)w[i] * logp[i] + (double)u[i] * ent[i];
    float loss_f = (float)loss;
    test_assert_close("loss", &loss_f, loss_ref, 1, 1e-3, 1e-5);

    assert_int_equal(model_backward(m, w, u, &err), 0);
    int checked = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        char key[160];
        snprintf(key, sizeof key, "grad.%s", t->name);
        size_t numel;
        float *g_hf = fixture_tensor(&ef, key, &numel);
        if (!g_hf) {
            print_error("fixture lacks %s\n", key);
            fail();
        }
        assert_int_equal(numel, t->numel);
        float *g_ref = fixture_to_model_layout(m, t, g_hf), *g = malloc(t->numel * sizeof(float));
        model_tensor_to_host(m->grads, t, g);
        // Gradients are sums over tokens: tolerance relative to the tensor's scale.
        double scale = 0;
        for (size_t j = 0; j < t->numel; j++) scale = fmax(scale, fabs(g_ref[j]));
        test_assert_close(t->name, g, g_ref, t->numel, 2e-4 * scale + 1e-5, 1e-3);
        checked++;
        // The optimizer below starts from torch's gradients: Adam's first step is about
        // lr * sign(g), so fp32 noise in near-zero gradients would otherwise dominate.
        model_tensor_from_host(m->grads, t, g_ref);
        free(g_hf), free(g_ref), free(g);
    }
    assert_int_equal(checked, m->n_tensors);

    if (with_adamw) {
        float *hp = fixture_tensor(&ef, "adamw.hparams", NULL), *gn_ref = fixture_tensor(&ef, "grad_norm", NULL);
        OptimizerConfig oc = {.lr = hp[0], .schedule = LR_CONSTANT, .beta1 = hp[1], .beta2 = hp[2], .eps = hp[3],
                              .weight_decay = hp[4], .grad_clip = hp[5], .min_lr_ratio = 1.0};
        Optimizer *opt = optimizer_create(m, &oc, &err);
        assert_non_null(opt);
        OptimizerResult r = optimizer_step(opt, m);
        assert_false(r.skipped);
        assert_true(r.clip_scale < 1.0);  // the fixture clips
        float gn = (float)r.grad_norm;
        test_assert_close("grad_norm", &gn, gn_ref, 1, 0, 1e-5);
        int found = 0;
        for (int i = 0; i < m->n_tensors; i++) {
            const ModelTensor *t = &m->tensors[i];
            char key[160];
            snprintf(key, sizeof key, "adamw.%s", t->name);
            float *p_hf = fixture_tensor(&ef, key, NULL);
            if (!p_hf) continue;
            float *p_ref = fixture_to_model_layout(m, t, p_hf), *p = malloc(t->numel * sizeof(float));
            model_tensor_to_host(m->params, t, p);
            test_assert_close(key, p, p_ref, t->numel, 1e-6, 1e-5);
            found++;
            free(p_hf), free(p_ref), free(p);
        }
        assert_true(found >= 4);
        assert_int_equal(opt->step, 1);
        optimizer_free(opt);
        free(hp), free(gn_ref);
    }
    free(tokens_f), free(positions_f), free(targets_f), free(w), free(u), free(temp), free(loss_ref);
    free(tokens), free(positions), free(targets), free(logits), free(logits_ref), free(last), free(logp), free(ent);
    free(logp_ref), free(ent_ref);
    model_free(m);
    safetensors_close(&ef);
}

static void test_llama_matches_transformers(void **state) {
    (void)state;
    check_against_transformers("llama", 1);
}

static void test_llama_tied_matches_transformers(void **state) {
    (void)state;
    check_against_transformers("llama_tied", 0);
}

static void test_qwen2_matches_transformers(void **state) {
    (void)state;
    check_against_transformers("qwen2", 0);
}

// ---------------------------------------------------------------------------------------

static Model *small_random_model(uint64_t seed, int tied) {
    ModelConfig c = {.dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .hidden_dim = 48, .vocab_size = 50,
                     .max_seq_len = 80, .rope_theta = 10000, .norm_eps = 1e-5, .tied_embeddings = tied};
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    assert_non_null(m);
    model_init_random(m, seed, 0.3f);
    return m;
}

// A packed row of three samples gives the logprobs and gradients of the samples run alone
// (summed), to fp32 accuracy.
static void test_packed_equals_separate(void **state) {
    (void)state;
    const int lens[3] = {9, 70, 4}, n = 83;
    Model *m = small_random_model(7, 0);
    ErrorBuf err;
    assert_int_equal(model_reserve(m, n, 1, &err), 0);
    Rng rng;
    rng_seed(&rng, 99);
    int32_t tokens[83], positions[83], targets[83];
    float w[83];
    for (int s = 0, i = 0; s < 3; s++)
        for (int p = 0; p < lens[s]; p++, i++) {
            tokens[i] = (int32_t)rng_below(&rng, 50);
            positions[i] = p;
            targets[i] = p == lens[s] - 1 ? -1 : (int32_t)rng_below(&rng, 50);
            w[i] = targets[i] < 0 ? 0.0f : rng_normal(&rng);
        }
    float logp_packed[83], logp_sep[83];
    assert_int_equal(model_forward_train(m, tokens, positions, targets, n, 1.3f, logp_packed, NULL, &err), 0);
    assert_int_equal(model_backward(m, w, NULL, &err), 0);
    float *g_packed = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(g_packed, m->grads, m->n_params * sizeof(float));
    model_zero_grads(m);
    for (int s = 0, start = 0; s < 3; start += lens[s], s++) {
        assert_int_equal(model_forward_train(m, tokens + start, positions + start, targets + start, lens[s], 1.3f,
                                             logp_sep + start, NULL, &err), 0);
        assert_int_equal(model_backward(m, w + start, NULL, &err), 0);
    }
    float *g_sep = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(g_sep, m->grads, m->n_params * sizeof(float));
    test_assert_close("packed vs separate logp", logp_packed, logp_sep, n, 1e-5, 1e-5);
    // Per tensor, to fp32 accuracy relative to the tensor's largest gradient (the two runs add
    // the same terms in different orders).
    double ss = 0;
    for (int t = 0; t < m->n_tensors; t++) {
        const ModelTensor *mt = &m->tensors[t];
        double scale = 0;
        for (size_t i = 0; i < mt->numel; i++) scale = fmax(scale, fabs(g_sep[mt->offset + i]));
        test_assert_close(mt->name, g_packed + mt->offset, g_sep + mt->offset, mt->numel, 1e-4 * scale, 1e-4);
        ss += scale * scale;
    }
    assert_true(ss > 1e-3);  // the gradient is not trivially zero
    free(g_packed), free(g_sep);
    model_free(m);
}

// A training forward over one sample equals the eval forward, and backward is accepted once.
static void test_forward_modes_agree(void **state) {
    (void)state;
    Model *m = small_random_model(3, 1);
    ErrorBuf err;
    const int n = 12;
    int32_t tokens[12], positions[12], targets[12];
    for (int i = 0; i < n; i++) tokens[i] = (i * 7) % 50, positions[i] = i, targets[i] = (i * 3 + 1) % 50;
    float *lt = malloc(sizeof(float) * n * 50), *le = malloc(sizeof(float) * n * 50);
    assert_int_equal(model_reserve(m, n, 0, &err), 0);  // inference buffers: one slice reused
    assert_int_equal(model_forward_logits(m, tokens, positions, n, 1, le, &err), 0);
    float logp[12];
    assert_int_not_equal(model_forward_train(m, tokens, positions, targets, n, 1.0f, logp, NULL, &err), 0);
    assert_non_null(strstr(err.msg, "training = 1"));
    assert_int_equal(model_reserve(m, n, 1, &err), 0);
    assert_int_equal(m->acts.block_bytes, model_reserve_bytes(&m->config, n, 1));
    assert_true(model_reserve_bytes(&m->config, n, 1) > 2 * model_reserve_bytes(&m->config, n, 0));
    assert_int_equal(model_forward_logits(m, tokens, positions, n, 1, lt, &err), 0);
    test_assert_close("train-buffer vs eval-buffer logits", lt, le, (size_t)n * 50, 1e-6, 1e-6);
    float d[12] = {1};
    assert_int_not_equal(model_backward(m, d, NULL, &err), 0);  // no training forward yet
    assert_non_null(strstr(err.msg, "model_forward_train first"));
    assert_int_equal(model_forward_train(m, tokens, positions, targets, n, 1.0f, logp, NULL, &err), 0);
    assert_int_equal(model_backward(m, d, NULL, &err), 0);
    assert_int_not_equal(model_backward(m, d, NULL, &err), 0);  // consumed
    free(lt), free(le);
    model_free(m);
}

static void test_init_deterministic(void **state) {
    (void)state;
    Model *a = small_random_model(5, 0), *b = small_random_model(5, 0), *c = small_random_model(6, 0);
    float *pa = malloc(a->n_params * 4), *pb = malloc(a->n_params * 4), *pc = malloc(a->n_params * 4);
    ops_copy_to_host(pa, a->params, a->n_params * 4);
    ops_copy_to_host(pb, b->params, a->n_params * 4);
    ops_copy_to_host(pc, c->params, a->n_params * 4);
    assert_memory_equal(pa, pb, a->n_params * 4);
    assert_memory_not_equal(pa, pc, a->n_params * 4);
    // Norms are 1, matrices have the requested spread.
    const ModelTensor *norm = model_find_tensor(a, "model.layers.1.post_attention_layernorm.weight");
    const ModelTensor *wq = model_find_tensor(a, "model.layers.0.self_attn.q_proj.weight");
    assert_non_null(norm);
    assert_non_null(wq);
    for (size_t i = 0; i < norm->numel; i++) assert_true(pa[norm->offset + i] == 1.0f);
    double ss = 0;
    for (size_t i = 0; i < wq->numel; i++) ss += (double)pa[wq->offset + i] * pa[wq->offset + i];
    double std = sqrt(ss / wq->numel);
    assert_true(std > 0.27 && std < 0.33);
    free(pa), free(pb), free(pc);
    model_free(a), model_free(b), model_free(c);
}

// The table: HF names, contiguous offsets, decay flags, lookup.
static void test_parameter_table(void **state) {
    (void)state;
    Model *m = small_random_model(1, 0);
    size_t off = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        assert_int_equal(t->offset, off);
        off += t->numel;
        assert_int_equal(t->weight_decay, t->ndim == 2);
        assert_ptr_equal(model_find_tensor(m, t->name), t);
    }
    assert_int_equal(off, m->n_params);
    // 1 embed + 2 x 9 + final norm + lm_head
    assert_int_equal(m->n_tensors, 21);
    const ModelTensor *t = model_find_tensor(m, "model.layers.1.self_attn.k_proj.weight");
    assert_non_null(t);
    assert_int_equal(t->shape[0], 2 * 8);
    assert_int_equal(t->shape[1], 32);
    assert_ptr_equal(m->layers[1].wk, m->params + t->offset);
    assert_non_null(model_find_tensor(m, "lm_head.weight"));
    assert_null(model_find_tensor(m, "model.layers.2.self_attn.k_proj.weight"));
    model_free(m);
    Model *tied = small_random_model(1, 1);
    assert_null(model_find_tensor(tied, "lm_head.weight"));
    assert_ptr_equal(tied->lm_head, tied->embed);
    model_free(tied);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llama_matches_transformers),
        cmocka_unit_test(test_llama_tied_matches_transformers),
        cmocka_unit_test(test_qwen2_matches_transformers),
        cmocka_unit_test(test_packed_equals_separate),
        cmocka_unit_test(test_forward_modes_agree),
        cmocka_unit_test(test_init_deterministic),
        cmocka_unit_test(test_parameter_table),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
