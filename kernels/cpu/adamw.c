// CPU AdamW for one tensor, the same arithmetic as torch.optim.AdamW: decoupled weight decay,
// moments updated by lerp / mul-add, bias corrections computed in double then used in float.
// The chunk loop is compiled twice (baseline and AVX2+FMA, see cpu.h); sqrt needs no errno.

#pragma GCC optimize("no-math-errno")
#include <math.h>
#include <omp.h>

#include "cpu/cpu.h"
#include "ops.h"

typedef struct {
    float lr_decay, step_size, bc2_sqrt, eps, beta2, one_minus_b1, one_minus_b2, grad_scale;
} AdamConsts;

static CPU_INLINE void adamw_chunk(float *restrict params, const float *restrict grads, float *restrict m,
                                   float *restrict v, size_t n, AdamConsts c) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        const float g = grads[i] * c.grad_scale;
        const float p = params[i] * c.lr_decay;
        const float mi = m[i] + c.one_minus_b1 * (g - m[i]);
        const float vi = v[i] * c.beta2 + c.one_minus_b2 * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = p - c.step_size * (mi / (sqrtf(vi) / c.bc2_sqrt + c.eps));
    }
}

CPU_AVX2 static void adamw_avx2(float *p, const float *g, float *m, float *v, size_t n, AdamConsts c) {
    adamw_chunk(p, g, m, v, n, c);
}
static void adamw_base(float *p, const float *g, float *m, float *v, size_t n, AdamConsts c) {
    adamw_chunk(p, g, m, v, n, c);
}

void ops_adamw(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, long step) {
    const double bc1 = 1.0 - pow((double)beta1, (double)step);
    const double bc2 = 1.0 - pow((double)beta2, (double)step);
    const AdamConsts c = {.lr_decay = 1.0f - lr * weight_decay,
                          .step_size = (float)((double)lr / bc1),
                          .bc2_sqrt = (float)sqrt(bc2),
                          .eps = eps,
                          .beta2 = beta2,
                          .one_minus_b1 = 1.0f - beta1,
                          .one_minus_b2 = 1.0f - beta2,
                          .grad_scale = grad_scale};
    const int avx2 = cpu_has_avx2();
#pragma omp parallel if (cpu_parallel(4.0 * n))
    {
        size_t b, e;
        cpu_split(n, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        if (avx2) adamw_avx2(params + b, grads + b, m + b, v + b, e - b, c);
        else adamw_base(params + b, grads + b, m + b, v + b, e - b, c);
    }
    cpu_note_write(params, n * sizeof(float));
}
