// CUDA RMSNorm: out = in * rstd * weight, rstd = 1/sqrt(mean(in^2) + eps), fused per row
// (one block per row: sum of squares by a block reduction, then the scaled write), and its
// backward: d_in per row in one block; d_weight as a column sum over rows in two
// deterministic passes (per-chunk partial sums, then the chunks added in order).
#include "cuda/cuda_common.h"

#define NORM_THREADS 256

__global__ void rmsnorm_forward_kernel(float *out, float *rstd, const float *in, const float *weight, int dim,
                                       float eps) {
    __shared__ float shared[33];
    const size_t row = blockIdx.x;
    const float *x = in + row * dim;
    float *y = out + row * dim;
    float ss = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) ss += x[j] * x[j];
    ss = block_sum(ss, shared);
    const float r = 1.0f / sqrtf(ss / (float)dim + eps);
    if (rstd && threadIdx.x == 0) rstd[row] = r;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) y[j] = (x[j] * r) * weight[j];
}

// dL/dx_j = r w_j dy_j - x_j r^3 / D * sum_k w_k dy_k x_k
__global__ void rmsnorm_backward_kernel(float *d_in, const float *d_out, const float *in, const float *weight,
                                        const float *rstd, int dim) {
    __shared__ float shared[33];
    const size_t row = blockIdx.x;
    const float *x = in + row * dim, *dy = d_out + row * dim;
    float *dx = d_in + row * dim;
    const float r = rstd[row];
    float dot = 0.0f;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dot += weight[j] * dy[j] * x[j];
    dot = block_sum(dot, shared);
    const float c = r * r * r * dot / (float)dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) dx[j] += r * weight[j] * dy[j] - x[j] * c;
}

// partial (chunks, D): partial[c][j] = sum over the rows i of chunk c of dy[i][j] x[i][j] rstd[i].
__global__ void rmsnorm_dweight_partial_kernel(float *partial, const float *d_out, const float *in,
                                               const float *rstd, int n, int dim, int rows_per_chunk) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (j >= dim) return;
    const int begin = chunk * rows_per_chunk, end = min(n, begin + rows_per_chunk);
    float sum = 0.0f;
    for (int i = begin; i < end; i++) sum += d_out[(size_t)i * dim + j] * in[(size_t)i * dim + j] * rstd[i];
    partial[(size_t)chunk * dim + j] = sum;
}

void ops_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int n, int dim, float eps) {
    if (n <= 0 || dim <= 0) return;
    rmsnorm_forward_kernel<<<n, NORM_THREADS, 0, cuda_stream()>>>(out, rstd, in, weight, dim, eps);
    CUDA_LAUNCH_CHECK("rmsnorm_forward_kernel");
}

void ops_rmsnorm_backward(float *d_in, float *d_weight, const float *d_out, const float *in, const float *weight,
                          const float *rstd, int n, int dim) {
    if (n <= 0 || dim <= 0) return;
    rmsnorm_backward_kernel<<<n, NORM_THREADS, 0, cuda_stream()>>>(d_in, d_out, in, weight, rstd, dim);
    CUDA_LAUNCH_CHECK("rmsnorm_backward_kernel");
    if (d_weight) {
        const int chunks = cuda_row_chunks(n), rows_per_chunk = (n + chunks - 1) / chunks;
        float *partial = (float *)cuda_scratch(SCRATCH_PARTIAL, (size_t)chunks * dim * sizeof(float));
        dim3 grid((dim + CUDA_THREADS - 1) / CUDA_THREADS, chunks);
        rmsnorm_dweight_partial_kernel<<<grid, CUDA_THREADS, 0, cuda_stream()>>>(partial, d_out, in, rstd, n, dim,
                                                                                rows_per_chunk);
        CUDA_LAUNCH_CHECK("rmsnorm_dweight_partial_kernel");
        cuda_add_partial_sums(d_weight, partial, chunks, dim);
    }
}
