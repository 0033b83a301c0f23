// CPU rotary position embedding, interleaved pairs (x[2j], x[2j+1]) per head rotated by
// pos * theta^(-2j/hd); the backward applies the inverse rotation to the gradient.
#include <math.h>
#include <omp.h>

#include "cpu/cpu.h"
#include "ops.h"

void ops_rope_table(float *cos_table, float *sin_table, int max_pos, int head_dim, double theta) {
    const int half = head_dim / 2;
#pragma omp parallel for schedule(static) if (cpu_parallel(20.0 * max_pos * half))
    for (int p = 0; p < max_pos; p++)
        for (int j = 0; j < half; j++) {
            const double freq = pow(theta, -2.0 * j / head_dim);
            const double angle = (double)p * freq;
            cos_table[(size_t)p * half + j] = (float)cos(angle);
            sin_table[(size_t)p * half + j] = (float)sin(angle);
        }
}

// sign = +1 rotates forward, -1 rotates back (the transpose of the rotation).
static void rope_rotate(float *x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                        int n_heads, int head_dim, float sign) {
    const int half = head_dim / 2;
#pragma omp parallel for schedule(static) if (cpu_parallel(2.0 * n * n_heads * head_dim))
    for (int i = 0; i < n; i++) {
        const float *c = cos_table + (size_t)positions[i] * half;
        const float *s = sin_table + (size_t)positions[i] * half;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)i * n_heads + h) * head_dim;
            for (int j = 0; j < half; j++) {
                const float x0 = v[2 * j], x1 = v[2 * j + 1];
                const float sn = sign * s[j];
                v[2 * j] = x0 * c[j] - x1 * sn;
                v[2 * j + 1] = x0 * sn + x1 * c[j];
            }
        }
    }
}

void ops_rope_forward(float *x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                      int n_heads, int head_dim) {
    rope_rotate(x, positions, cos_table, sin_table, n, n_heads, head_dim, 1.0f);
}

void ops_rope_backward(float *d_x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                       int n_heads, int head_dim) {
    rope_rotate(d_x, positions, cos_table, sin_table, n, n_heads, head_dim, -1.0f);
}
