// AdamW with global-norm clipping and LR schedules over the model's parameter table (see
// optimizer.h).
#include "train/optimizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "ops.h"

static int check_config(const OptimizerConfig *c, ErrorBuf *err) {
    if (!(c->lr >= 0.0 && c->lr <= 10.0)) return error_set(err, "optimizer lr = %g is out of range [0, 10]", c->lr);
    if (!(c->beta1 >= 0.0 && c->beta1 < 1.0) || !(c->beta2 >= 0.0 && c->beta2 < 1.0))
        return error_set(err, "optimizer betas (%g, %g) must lie in [0, 1)", c->beta1, c->beta2);
    if (!(c->eps > 0.0)) return error_set(err, "optimizer eps = %g must be > 0", c->eps);
    if (!(c->weight_decay >= 0.0)) return error_set(err, "optimizer weight_decay = %g must be >= 0", c->weight_decay);
    if (!(c->min_lr_ratio >= 0.0 && c->min_lr_ratio <= 1.0))
        return error_set(err, "optimizer min_lr_ratio = %g must lie in [0, 1]", c->min_lr_ratio);
    if (c->warmup_steps < 0 || c->total_steps < 0)
        return error_set(err, "optimizer warmup_steps = %d and total_steps = %d must be >= 0", c->warmup_steps,
                         c->total_steps);
    if (c->schedule != LR_CONSTANT && c->schedule != LR_LINEAR && c->schedule != LR_COSINE)
        return error_set(err, "optimizer schedule %d is unknown", (int)c->schedule);
    return 0;
}

Optimizer *optimizer_create(const Model *m, const OptimizerConfig *config, ErrorBuf *err) {
    if (check_config(config, err) != 0) return NULL;
    Optimizer *opt = xcalloc(1, sizeof(Optimizer));
    opt->config = *config;
    opt->n = m->n_params;
    opt->m = ops_alloc(opt->n * sizeof(float));
    opt->v = ops_alloc(opt->n * sizeof(float));
    return opt;
}

void optimizer_free(Optimizer *opt) {
    if (!opt) return;
    ops_free(opt->m);
    ops_free(opt->v);
    free(opt);
}

double optimizer_lr(const OptimizerConfig *c, long step) {
    if (c->warmup_steps > 0 && step <= c->warmup_steps) return c->lr * (double)step / c->warmup_steps;
    if (c->schedule == LR_CONSTANT) return c->lr;
    const long decay_steps = c->total_steps - c->warmup_steps;
    double progress = decay_steps > 0 ? (double)(step - c->warmup_steps) / decay_steps : 1.0;
    progress = progress < 0 ? 0 : progress > 1 ? 1 : progress;
    const double floor = c->min_lr_ratio;
    if (c->schedule == LR_LINEAR) return c->lr * (1.0 - (1.0 - floor) * progress);
    return c->lr * (floor + (1.0 - floor) * 0.5 * (1.0 + cos(M_PI * progress)));
}

double optimizer_grad_norm(const Model *m) { return sqrt(ops_sum_squares(m->grads, m->n_params)); }

OptimizerResult optimizer_step(Optimizer *opt, Model *m) {
    const OptimizerConfig *c = &opt->config;
    OptimizerResult r = {0};
    r.grad_norm = optimizer_grad_norm(m);
    r.lr = optimizer_lr(c, opt->step + 1);
    if (!isfinite(r.grad_norm)) {
        r.skipped = 1;
        r.clip_scale = 0.0;
        return r;
    }
    r.clip_scale = 1.0;
    if (c->grad_clip > 0.0) {
        const double coef = c->grad_clip / (r.grad_norm + 1e-6);
        r.clip_scale = coef < 1.0 ? coef : 1.0;
    }
    opt->step++;
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        const size_t o = t->offset;
        ops_adamw(m->params + o, m->grads + o, opt->m + o, opt->v + o, t->numel, (float)r.lr, (float)c->beta1,
                  (float)c->beta2, (float)c->eps, t->weight_decay ? (float)c->weight_decay : 0.0f,
                  (float)r.clip_scale, opt->step);
    }
    model_params_changed(m);
    return r;
}

int optimizer_config_from(const Config *cfg, int total_steps, OptimizerConfig *out, ErrorBuf *err) {
    memset(out, 0, sizeof *out);
    out->lr = cfg->trainer.lr;
    const char *s = cfg->trainer.lr_schedule;
    if (strcmp(s, "constant") == 0) out->schedule = LR_CONSTANT;
    else if (strcmp(s, "linear") == 0) out->schedule = LR_LINEAR;
    else if (strcmp(s, "cosine") == 0) out->schedule = LR_COSINE;
    else return error_set(err, "trainer.lr_schedule = \"%s\" is not one of constant, linear, cosine", s);
    out->warmup_steps = cfg->trainer.warmup_steps;
    out->total_steps = total_steps;
    out->min_lr_ratio = cfg->trainer.min_lr_ratio;
    out->beta1 = cfg->trainer.beta1;
    out->beta2 = cfg->trainer.beta2;
    out->eps = cfg->trainer.adam_eps;
    out->weight_decay = cfg->trainer.weight_decay;
    out->grad_clip = cfg->trainer.grad_clip;
    return check_config(out, err);
}
