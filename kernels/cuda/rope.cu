// CUDA rotary position embedding, interleaved pairs (x[2j], x[2j+1]) per head rotated by
// pos * theta^(-2j/hd); one thread per (row, head, pair). The backward rotates the gradient
// back (the transpose of the rotation). The cos/sin table is computed on the host in double
// precision, exactly as the CPU backend does, then copied to the device.
#include <math.h>
#include <stdlib.h>

#include "cuda/cuda_common.h"

void ops_rope_table(float *cos_table, float *sin_table, int max_pos, int head_dim, double theta) {
    const int half = head_dim / 2;
    const size_t count = (size_t)max_pos * half;
    if (count == 0) return;
    float *c = (float *)malloc(count * sizeof(float)), *s = (float *)malloc(count * sizeof(float));
    CHECK(c && s, "out of host memory", "rope table of %zu entries", count);
    for (int p = 0; p < max_pos; p++)
        for (int j = 0; j < half; j++) {
            const double freq = pow(theta, -2.0 * j / head_dim);
            const double angle = (double)p * freq;
            c[(size_t)p * half + j] = (float)cos(angle);
            s[(size_t)p * half + j] = (float)sin(angle);
        }
    ops_copy_to_device(cos_table, c, count * sizeof(float));
    ops_copy_to_device(sin_table, s, count * sizeof(float));
    free(c);
    free(s);
}

// x (N, H, hd) in place; sign = +1 forward, -1 backward.
__global__ void rope_kernel(float *x, const int32_t *positions, const float *cos_table, const float *sin_table,
                            int n, int n_heads, int head_dim, float sign) {
    const int half = head_dim / 2;
    const size_t total = (size_t)n * n_heads * half;
    for (size_t t = blockIdx.x * (size_t)blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
        const int j = (int)(t % half);
        const size_t row_head = t / half;  // row * n_heads + head
        const size_t row = row_head / n_heads;
        const size_t at = (size_t)positions[row] * half + j;
        const float c = cos_table[at], s = sign * sin_table[at];
        float *v = x + row_head * (size_t)head_dim + 2 * j;
        const float x0 = v[0], x1 = v[1];
        v[0] = x0 * c - x1 * s;
        v[1] = x0 * s + x1 * c;
    }
}

static void rope_rotate(float *x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                        int n_heads, int head_dim, float sign) {
    const int half = head_dim / 2;
    const size_t total = (size_t)n * n_heads * half;
    if (total == 0) return;
    rope_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cuda_stream()>>>(x, positions, cos_table, sin_table, n, n_heads,
                                                                      head_dim, sign);
    CUDA_LAUNCH_CHECK("rope_kernel");
}

void ops_rope_forward(float *x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                      int n_heads, int head_dim) {
    rope_rotate(x, positions, cos_table, sin_table, n, n_heads, head_dim, 1.0f);
}

void ops_rope_backward(float *d_x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                       int n_heads, int head_dim) {
    rope_rotate(d_x, positions, cos_table, sin_table, n, n_heads, head_dim, -1.0f);
}
