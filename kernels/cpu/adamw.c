// CPU AdamW for one tensor, the same arithmetic as torch.optim.AdamW: decoupled weight decay,
// moments updated by lerp / mul-add, bias corrections computed in double then used in float.
#include <math.h>
#include <omp.h>

#include "ops.h"

void ops_adamw(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, long step) {
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const float step_size = (float)((double)lr / bc1);
    const float bc2_sqrt = (float)sqrt(bc2);
    const float decay = 1.0f - lr * weight_decay;
    const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = grads[i] * grad_scale;
        const float p = params[i] * decay;
        const float mi = m[i] + one_minus_b1 * (g - m[i]);
        const float vi = v[i] * beta2 + one_minus_b2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
    }
}
