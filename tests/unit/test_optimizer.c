// The optimizer: learning-rate schedules at hand-computed points, global-norm clipping (the
// norm returned before clipping, torch's clip coefficient), weight decay on matrices only,
// skipped updates on non-finite gradients, the config mapping. (The AdamW arithmetic itself is
// checked against torch.optim.AdamW in test_model.c and against a double-precision rule in
// test_ops.c.)
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/config.h"
#include "model/model.h"
#include "ops.h"
#include "train/optimizer.h"

static int setup(void **state) {
    (void)state;
    ops_init(2);
    return 0;
}

static void test_schedules(void **state) {
    (void)state;
    OptimizerConfig c = {.lr = 1.0, .schedule = LR_CONSTANT, .warmup_steps = 4, .total_steps = 14,
                         .min_lr_ratio = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    assert_true(fabs(optimizer_lr(&c, 1) - 0.25) < 1e-12);
    assert_true(fabs(optimizer_lr(&c, 4) - 1.0) < 1e-12);
    assert_true(fabs(optimizer_lr(&c, 100) - 1.0) < 1e-12);
    c.schedule = LR_LINEAR;  // decays over updates 5..14 (10 updates) from 1 to 0.1
    assert_true(fabs(optimizer_lr(&c, 2) - 0.5) < 1e-12);
    assert_true(fabs(optimizer_lr(&c, 9) - (1.0 - 0.9 * 0.5)) < 1e-12);
    assert_true(fabs(optimizer_lr(&c, 14) - 0.1) < 1e-12);
    assert_true(fabs(optimizer_lr(&c, 50) - 0.1) < 1e-12);
    c.schedule = LR_COSINE;
    assert_true(fabs(optimizer_lr(&c, 4) - 1.0) < 1e-12);
    assert_true(fabs(optimizer_lr(&c, 9) - 0.55) < 1e-12);  // half way: 0.1 + 0.9 * 0.5
    assert_true(fabs(optimizer_lr(&c, 14) - 0.1) < 1e-12);
    c.warmup_steps = 0;
    assert_true(fabs(optimizer_lr(&c, 0) - 1.0) < 1e-12);
    assert_true(fabs(optimizer_lr(&c, 7) - (0.1 + 0.45 * (1 + cos(M_PI * 0.5)))) < 1e-12);
}

static Model *tiny_model(void) {
    ModelConfig mc = {.dim = 8, .n_layers = 1, .n_heads = 2, .hidden_dim = 8, .vocab_size = 5, .max_seq_len = 4,
                      .rope_theta = 1e4, .norm_eps = 1e-5};
    ErrorBuf err;
    Model *m = model_create(&mc, &err);
    assert_non_null(m);
    model_init_random(m, 1, 1.0f);
    assert_int_equal(model_reserve(m, 4, 1, &err), 0);
    return m;
}

static void set_grads(Model *m, float value) {
    float *g = malloc(m->n_params * sizeof(float));
    for (size_t i = 0; i < m->n_params; i++) g[i] = value;
    ops_copy_to_device(m->grads, g, m->n_params * sizeof(float));
    free(g);
}

static float *params_host(const Model *m) {
    float *p = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(p, m->params, m->n_params * sizeof(float));
    return p;
}

static void test_clipping_and_decay(void **state) {
    (void)state;
    Model *m = tiny_model();
    OptimizerConfig c = {.lr = 0.1, .schedule = LR_CONSTANT, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                         .weight_decay = 0.5, .grad_clip = 1.0, .min_lr_ratio = 1};
    ErrorBuf err;
    Optimizer *opt = optimizer_create(m, &c, &err);
    assert_non_null(opt);
    // Zero gradients: only weight decay moves parameters, and only matrices.
    float *before = params_host(m);
    OptimizerResult r = optimizer_step(opt, m);
    assert_false(r.skipped);
    assert_true(r.grad_norm == 0.0);
    assert_true(r.clip_scale == 1.0);
    float *after = params_host(m);
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        for (size_t j = 0; j < t->numel; j++) {
            const float b = before[t->offset + j], a = after[t->offset + j];
            if (t->weight_decay) assert_true(a == b * (1.0f - 0.1f * 0.5f));
            else assert_true(a == b);
        }
    }
    // Gradients of 2 everywhere: norm 2 * sqrt(n), clip coefficient 1 / (norm + 1e-6).
    set_grads(m, 2.0f);
    r = optimizer_step(opt, m);
    const double norm = 2.0 * sqrt((double)m->n_params);
    assert_true(fabs(r.grad_norm - norm) < 1e-6 * norm);
    assert_true(fabs(r.clip_scale - 1.0 / (norm + 1e-6)) < 1e-12);
    assert_int_equal(opt->step, 2);
    // A non-finite gradient skips the update entirely.
    free(before);
    before = params_host(m);
    float nan_value = NAN;
    ops_copy_to_device(m->grads + 3, &nan_value, sizeof(float));
    r = optimizer_step(opt, m);
    assert_true(r.skipped);
    assert_int_equal(opt->step, 2);
    free(after);
    after = params_host(m);
    assert_memory_equal(before, after, m->n_params * sizeof(float));
    // No clipping when grad_clip <= 0.
    opt->config.grad_clip = 0.0;
    set_grads(m, 2.0f);
    r = optimizer_step(opt, m);
    assert_true(r.clip_scale == 1.0);
    free(before), free(after);
    optimizer_free(opt);
    model_free(m);
}

static void test_config(void **state) {
    (void)state;
    Config cfg;
    config_defaults(&cfg);
    OptimizerConfig c;
    ErrorBuf err;
    assert_int_equal(optimizer_config_from(&cfg, 100, &c, &err), 0);
    assert_true(c.lr == cfg.trainer.lr && c.beta1 == cfg.trainer.beta1 && c.beta2 == cfg.trainer.beta2);
    assert_true(c.weight_decay == cfg.trainer.weight_decay && c.grad_clip == cfg.trainer.grad_clip);
    assert_int_equal(c.total_steps, 100);
    snprintf(cfg.trainer.lr_schedule, sizeof cfg.trainer.lr_schedule, "cosine");
    assert_int_equal(optimizer_config_from(&cfg, 100, &c, &err), 0);
    assert_int_equal(c.schedule, LR_COSINE);
    snprintf(cfg.trainer.lr_schedule, sizeof cfg.trainer.lr_schedule, "exp");
    assert_int_equal(optimizer_config_from(&cfg, 100, &c, &err), -1);
    assert_non_null(strstr(err.msg, "trainer.lr_schedule = \"exp\""));
    OptimizerConfig bad = {.lr = 0.1, .beta1 = 1.0, .beta2 = 0.9, .eps = 1e-8};
    Model *m = tiny_model();
    assert_null(optimizer_create(m, &bad, &err));
    assert_non_null(strstr(err.msg, "betas (1, 0.9) must lie in [0, 1)"));
    model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_clipping_and_decay),
        cmocka_unit_test(test_config),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
