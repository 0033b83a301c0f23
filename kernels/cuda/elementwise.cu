// CUDA elementwise helpers: y += x, x *= s, and the sum of squares (for the gradient norm).
// The sum of squares is deterministic: a fixed grid of SUMSQ_BLOCKS blocks sums in double
// with grid-stride loops and block trees, and one block adds the block results in a fixed
// tree; the launch shape never depends on the GPU.
#include "cuda/cuda_common.h"

#define SUMSQ_BLOCKS 512
#define SUMSQ_THREADS 256

__global__ void add_kernel(float *y, const float *x, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] += x[i];
}

__global__ void scale_kernel(float *x, float scale, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= scale;
}

// partial (SUMSQ_BLOCKS) = per-block sums of x^2.
__global__ void __launch_bounds__(SUMSQ_THREADS) sum_squares_kernel(double *partial, const float *x, size_t n) {
    __shared__ double shared[33];
    double sum = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        sum += (double)x[i] * (double)x[i];
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// total (1) = sum of partial (count), one block.
__global__ void __launch_bounds__(SUMSQ_THREADS) sum_partials_kernel(double *total, const double *partial, int count) {
    __shared__ double shared[33];
    double sum = 0.0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partial[i];
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) *total = sum;
}

void ops_add(float *y, const float *x, size_t n) {
    if (n == 0) return;
    cuda_note_write(y, n * sizeof(float));
    add_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream()>>>(y, x, n);
    CUDA_LAUNCH_CHECK("add_kernel");
}

void ops_scale(float *x, float scale, size_t n) {
    if (n == 0) return;
    cuda_note_write(x, n * sizeof(float));
    scale_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream()>>>(x, scale, n);
    CUDA_LAUNCH_CHECK("scale_kernel");
}

double ops_sum_squares(const float *x, size_t n) {
    if (n == 0) return 0.0;
    double *partial = (double *)cuda_scratch(SCRATCH_PARTIAL, (SUMSQ_BLOCKS + 1) * sizeof(double));
    double *total = partial + SUMSQ_BLOCKS;
    sum_squares_kernel<<<SUMSQ_BLOCKS, SUMSQ_THREADS, 0, cuda_stream()>>>(partial, x, n);
    CUDA_LAUNCH_CHECK("sum_squares_kernel");
    sum_partials_kernel<<<1, SUMSQ_THREADS, 0, cuda_stream()>>>(total, partial, SUMSQ_BLOCKS);
    CUDA_LAUNCH_CHECK("sum_partials_kernel");
    double result = 0.0;
    ops_copy_to_host(&result, total, sizeof result);
    return result;
}
