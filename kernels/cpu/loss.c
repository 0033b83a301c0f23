// CPU log-probabilities and entropy of softmax(logits / T), and their gradient with respect
// to the logits, one row per token. The forward saves lse per row so the backward needs one
// pass over the row, written in place when d_logits aliases logits.
#include <math.h>
#include <omp.h>

#include "cpu/cpu.h"
#include "ops.h"

void ops_logprob_forward(float *logp, float *entropy, float *lse, const float *logits, const int32_t *targets, int n,
                         int vocab, float temperature) {
    const float inv_t = 1.0f / temperature;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * vocab;
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
        const float l = mx + log_sum;
        if (lse) lse[i] = l;
        if (entropy) entropy[i] = log_sum - sum_ez / sum_e;
        logp[i] = targets[i] >= 0 ? (z[targets[i]] * inv_t - mx) - log_sum : 0.0f;  // exact when z is huge
    }
}

// With z = logits / T, p = softmax(z), log p_j = z_j - lse, H = -sum p log p:
//   d logp_t / d z_j = [j == t] - p_j,   d H / d z_j = -p_j (log p_j + H),   d z / d logits = 1/T.
void ops_logprob_backward(float *d_logits, const float *logits, const float *lse, const float *entropy,
                          const int32_t *targets, const float *d_logp, const float *d_entropy, int n, int vocab,
                          float temperature) {
    const float inv_t = 1.0f / temperature;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * vocab;
        float *dz = d_logits + (size_t)i * vocab;
        const int t = targets[i];
        const float w = t >= 0 ? d_logp[i] : 0.0f;
        const float de = d_entropy ? d_entropy[i] : 0.0f;
        const float l = lse[i];
        if (de != 0.0f) {
            const float H = entropy[i];
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
}
