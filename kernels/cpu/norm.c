// CPU RMSNorm: out = in * rstd * weight, rstd = 1/sqrt(mean(in^2) + eps), and its backward.
// Rows are split among threads; the weight gradient is summed per thread, then the partial
// sums are added in thread order (deterministic for a given thread count).
#include <math.h>
#include <omp.h>
#include <stdlib.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

void ops_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int n, int dim, float eps) {
#pragma omp parallel for schedule(static) if (cpu_parallel(2.0 * n * dim))
    for (int i = 0; i < n; i++) {
        const float *x = in + (size_t)i * dim;
        float *y = out + (size_t)i * dim;
        float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
        for (int j = 0; j < dim; j++) ss += x[j] * x[j];
        const float r = 1.0f / sqrtf(ss / (float)dim + eps);
        if (rstd) rstd[i] = r;
#pragma omp simd
        for (int j = 0; j < dim; j++) y[j] = (x[j] * r) * weight[j];
    }
}

// With y_j = x_j r w_j and r = (mean(x^2) + eps)^(-1/2):
//   dL/dx_j = r w_j dy_j - x_j r^3 / D * sum_k w_k dy_k x_k,   dL/dw_j = sum_rows dy_j x_j r.
void ops_rmsnorm_backward(float *d_in, float *d_weight, const float *d_out, const float *in, const float *weight,
                          const float *rstd, int n, int dim) {
    const int threads = omp_get_max_threads();
    float *partial = NULL;  // (threads, D) per-thread weight-gradient sums
    if (d_weight) {
        partial = calloc((size_t)threads * dim, sizeof(float));
        CHECK(partial != NULL, "out of memory", "rmsnorm backward scratch of %d x %d floats", threads, dim);
    }
#pragma omp parallel if (cpu_parallel(3.0 * n * dim))
    {
        const int t = omp_get_thread_num();
        size_t b, e;
        cpu_split((size_t)n, t, omp_get_num_threads(), &b, &e);
        float *dw = partial ? partial + (size_t)t * dim : NULL;
        for (size_t i = b; i < e; i++) {
            const float *x = in + i * dim, *dy = d_out + i * dim;
            float *dx = d_in + i * dim;
            const float r = rstd[i];
            float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
            for (int j = 0; j < dim; j++) dot += weight[j] * dy[j] * x[j];
            const float c = r * r * r * dot / (float)dim;
#pragma omp simd
            for (int j = 0; j < dim; j++) dx[j] += r * weight[j] * dy[j] - x[j] * c;
            if (dw) {
#pragma omp simd
                for (int j = 0; j < dim; j++) dw[j] += dy[j] * x[j] * r;
            }
        }
    }
    if (d_weight) {
        for (int t = 0; t < threads; t++)
            for (int j = 0; j < dim; j++) d_weight[j] += partial[(size_t)t * dim + j];
        free(partial);
    }
}
