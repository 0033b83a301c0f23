// AdamW over the model's parameter table, with global grad-norm clipping and learning-rate
// schedules. The state is the update count `step` and the moments m and v, each one device
// buffer in the params layout (a tensor's offset in the model table is its offset in m and v
// too), so a checkpoint saves step + /optimizer/m/<tensor> + /optimizer/v/<tensor>.
//
// One update (optimizer_step), the same arithmetic as PyTorch's
//   norm = clip_grad_norm_(params, grad_clip); torch.optim.AdamW(...).step()
// with two parameter groups (weight decay on matrices, none on norm weights and biases):
//   norm  = sqrt(sum of every gradient^2)                     (returned, before clipping)
//   scale = min(1, grad_clip / (norm + 1e-6))                  (1 when grad_clip <= 0)
//   lr    = the schedule at update step + 1
//   AdamW per tensor with g = grad * scale (ops_adamw).
// A non-finite norm skips the update (nothing changes) and says so in the result.
#pragma once
#include <stddef.h>

#include "core/config_types.h"
#include "core/error.h"
#include "model/model.h"

typedef enum { LR_CONSTANT = 0, LR_LINEAR = 1, LR_COSINE = 2 } LrSchedule;

typedef struct {
    double lr;             // peak learning rate
    LrSchedule schedule;
    int warmup_steps;      // linear warm-up from lr/warmup_steps to lr over this many updates
    int total_steps;       // linear / cosine decay reaches min_lr_ratio * lr at this update
    double min_lr_ratio;
    double beta1, beta2, eps, weight_decay;
    double grad_clip;      // max global gradient norm; <= 0: no clipping
} OptimizerConfig;

typedef struct {
    OptimizerConfig config;
    long step;             // updates done so far (the next one is step + 1)
    size_t n;              // floats in m and v (= model n_params)
    float *m, *v;          // device, params layout
} Optimizer;

typedef struct {
    double grad_norm;      // before clipping
    double clip_scale;     // factor applied to the gradients (1 = not clipped)
    double lr;             // learning rate of this update
    int skipped;           // 1: non-finite gradient norm, nothing was updated
} OptimizerResult;

// Checks the config (err names the bad field) and allocates zeroed moments for m.
Optimizer *optimizer_create(const Model *m, const OptimizerConfig *config, ErrorBuf *err);
void optimizer_free(Optimizer *opt);
// Learning rate of update number `step` (1-based) under config's schedule.
double optimizer_lr(const OptimizerConfig *config, long step);
// sqrt(sum of squares) of the model's gradient buffer.
double optimizer_grad_norm(const Model *m);
// One clipped AdamW update of m->params from m->grads (see above); grads are left as they are.
OptimizerResult optimizer_step(Optimizer *opt, Model *m);
// The trainer.* keys (lr, lr_schedule, warmup_steps, min_lr_ratio, weight_decay, beta1, beta2,
// adam_eps, grad_clip) with total_steps for the decay schedules.
int optimizer_config_from(const Config *cfg, int total_steps, OptimizerConfig *out, ErrorBuf *err);
