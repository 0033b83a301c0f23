// CPU elementwise helpers: y += x, x *= s, and the sum of squares (for the gradient norm),
// summed per thread in double and added in thread order (deterministic per thread count).
#include <omp.h>
#include <stdlib.h>

#include "core/error.h"
#include "cpu/cpu.h"
#include "ops.h"

void ops_add(float *y, const float *x, size_t n) {
#pragma omp parallel for simd schedule(static) if (cpu_parallel((double)n))
    for (size_t i = 0; i < n; i++) y[i] += x[i];
    cpu_note_write(y, n * sizeof(float));
}

void ops_scale(float *x, float scale, size_t n) {
#pragma omp parallel for simd schedule(static) if (cpu_parallel((double)n))
    for (size_t i = 0; i < n; i++) x[i] *= scale;
    cpu_note_write(x, n * sizeof(float));
}

double ops_sum_squares(const float *x, size_t n) {
    const int threads = omp_get_max_threads();
    double partial[256] = {0};
    CHECK(threads <= 256, "use at most 256 threads", "ops_sum_squares with %d threads", threads);
#pragma omp parallel if (cpu_parallel((double)n))
    {
        size_t b, e;
        cpu_split(n, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        double sum = 0.0;
        // Blocks of float sums (vectorised) added into a double: accurate and fast.
        for (size_t i = b; i < e; i += 1024) {
            const size_t stop = i + 1024 < e ? i + 1024 : e;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (size_t j = i; j < stop; j++) s += x[j] * x[j];
            sum += s;
        }
        partial[omp_get_thread_num()] = sum;
    }
    double total = 0.0;
    for (int t = 0; t < threads; t++) total += partial[t];
    return total;
}
