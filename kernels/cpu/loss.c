// CPU log-probabilities and entropy of softmax(logits / T), and their gradient with respect
// to the logits, one row per token. The forward saves lse per row so the backward needs one
// pass over the row, written in place when d_logits aliases logits. Row loops are compiled
// twice (baseline and AVX2+FMA, see cpu.h).

#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#include <math.h>
#include <omp.h>

#include "cpu/cpu.h"
#include "ops.h"

static CPU_INLINE void forward_row(float *logp, float *entropy, float *lse, const float *restrict z, int target,
                                   int vocab, float inv_t) {
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < vocab; j++) mx = z[j] > mx ? z[j] : mx;
    mx *= inv_t;
    // sum_e = sum exp(z/T - max), sum_ez = sum exp(z/T - max) * (z/T - max)
    float sum_e = 0.0f, sum_ez = 0.0f;
#pragma omp simd reduction(+ : sum_e, sum_ez)
    for (int j = 0; j < vocab; j++) {
        const float s = z[j] * inv_t - mx;
        const float e = cpu_expf(s);
        sum_e += e;
        sum_ez += e * s;
    }
    const float log_sum = logf(sum_e);
    if (lse) *lse = mx + log_sum;
    if (entropy) *entropy = log_sum - sum_ez / sum_e;
    *logp = target >= 0 ? (z[target] * inv_t - mx) - log_sum : 0.0f;  // exact even when z is huge
}

// With z = logits / T, p = softmax(z), log p_j = z_j - lse, H = -sum p log p:
//   d logp_t / d z_j = [j == t] - p_j,   d H / d z_j = -p_j (log p_j + H),   d z / d logits = 1/T.
static CPU_INLINE void backward_row(float *dz, const float *z, float l, float H, int t, float w, float de, int vocab,
                                    float inv_t) {
    if (de != 0.0f) {
#pragma omp simd
        for (int j = 0; j < vocab; j++) {
            const float lp = z[j] * inv_t - l;
            const float p = cpu_expf(lp);
            dz[j] = (-w * p - de * p * (lp + H)) * inv_t;
        }
    } else {
        const float c = -w * inv_t;
#pragma omp simd
        for (int j = 0; j < vocab; j++) dz[j] = c * cpu_expf(z[j] * inv_t - l);
    }
    if (t >= 0) dz[t] += w * inv_t;
}

CPU_AVX2 static void forward_row_avx2(float *logp, float *entropy, float *lse, const float *z, int target, int vocab,
                                      float inv_t) {
    forward_row(logp, entropy, lse, z, target, vocab, inv_t);
}
static void forward_row_base(float *logp, float *entropy, float *lse, const float *z, int target, int vocab,
                             float inv_t) {
    forward_row(logp, entropy, lse, z, target, vocab, inv_t);
}
CPU_AVX2 static void backward_row_avx2(float *dz, const float *z, float l, float H, int t, float w, float de,
                                       int vocab, float inv_t) {
    backward_row(dz, z, l, H, t, w, de, vocab, inv_t);
}
static void backward_row_base(float *dz, const float *z, float l, float H, int t, float w, float de, int vocab,
                              float inv_t) {
    backward_row(dz, z, l, H, t, w, de, vocab, inv_t);
}

void ops_logprob_forward(float *logp, float *entropy, float *lse, const float *logits, const int32_t *targets, int n,
                         int vocab, float temperature) {
    const float inv_t = 1.0f / temperature;
    const int avx2 = cpu_has_avx2();
#pragma omp parallel for schedule(static) if (cpu_parallel(8.0 * n * vocab))
    for (int i = 0; i < n; i++) {
        float *e = entropy ? entropy + i : NULL, *l = lse ? lse + i : NULL;
        const float *z = logits + (size_t)i * vocab;
        if (avx2) forward_row_avx2(logp + i, e, l, z, targets[i], vocab, inv_t);
        else forward_row_base(logp + i, e, l, z, targets[i], vocab, inv_t);
    }
}

void ops_logprob_backward(float *d_logits, const float *logits, const float *lse, const float *entropy,
                          const int32_t *targets, const float *d_logp, const float *d_entropy, int n, int vocab,
                          float temperature) {
    const float inv_t = 1.0f / temperature;
    const int avx2 = cpu_has_avx2();
#pragma omp parallel for schedule(static) if (cpu_parallel(8.0 * n * vocab))
    for (int i = 0; i < n; i++) {
        const int t = targets[i];
        const float w = t >= 0 ? d_logp[i] : 0.0f, de = d_entropy ? d_entropy[i] : 0.0f;
        const float H = de != 0.0f ? entropy[i] : 0.0f;
        float *dz = d_logits + (size_t)i * vocab;
        const float *z = logits + (size_t)i * vocab;
        if (avx2) backward_row_avx2(dz, z, lse[i], H, t, w, de, vocab, inv_t);
        else backward_row_base(dz, z, lse[i], H, t, w, de, vocab, inv_t);
    }
}
