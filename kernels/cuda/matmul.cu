// CUDA linear layers: out = in @ W^T (+ bias) and its backward, with cuBLAS.
//
// Precision: a weight that lies inside the registered parameter buffer (ops_params_updated)
// is read from its bf16 shadow; the activations (or output gradients) are converted to bf16
// into scratch, and cuBLAS multiplies bf16 x bf16 with fp32 accumulation into an fp32 result.
// Any other weight (a gradient, a test matrix) runs as a plain fp32 GEMM (no TF32). The
// weight gradient accumulates in fp32 (beta = 1) in both cases.
//
// Layout: cuBLAS is column-major; a row-major (r, c) matrix is the column-major (c, r) matrix
// with leading dimension c. So, for out (N, O) = in (N, I) @ W^T with W (O, I):
//   out^T (O x N, ld O) = op_T(W as I x O, ld I) * in^T (I x N, ld I)
//   d_in^T (I x N)      = W as (I x O, ld I) * d_out^T (O x N, ld O)
//   d_W^T (I x O)      += in^T (I x N, ld I) * op_T(d_out^T as O x N, ld O)
// The bias gradient is a column sum of d_out done in two deterministic passes.
#include "cuda/cuda_common.h"

typedef struct {
    const void *ptr;
    cudaDataType_t type;
} Operand;

// C (m x n, ldc, fp32, column-major) = op(A) op(B) + beta * C, fp32 accumulation.
static void gemm(cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, Operand a, int lda, Operand b,
                 int ldb, float beta, float *c, int ldc) {
    const float alpha = 1.0f;
    CUBLAS_CHECK(cublasGemmEx(cuda_cublas(), op_a, op_b, m, n, k, &alpha, a.ptr, a.type, lda, b.ptr, b.type, ldb,
                              &beta, c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CUDA_LAUNCH_CHECK("cublasGemmEx");
}

static Operand f32(const float *p) { return Operand{p, CUDA_R_32F}; }
static Operand bf16(const __nv_bfloat16 *p) { return Operand{p, CUDA_R_16BF}; }

// A bf16 copy of x (n floats) in scratch slot `slot`.
static const __nv_bfloat16 *bf16_copy(int slot, const float *x, size_t n) {
    __nv_bfloat16 *dst = (__nv_bfloat16 *)cuda_scratch(slot, n * sizeof(__nv_bfloat16));
    cuda_to_bf16(dst, x, n);
    return dst;
}

// out (N, O) += bias (O) on every row.
__global__ void add_bias_kernel(float *out, const float *bias, size_t n, int out_dim) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % out_dim];
}

// partial (chunks, O): partial[c][o] = sum of d_out[r][o] over the rows r of chunk c.
__global__ void bias_partial_kernel(float *partial, const float *d_out, int n, int out_dim, int rows_per_chunk) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x, chunk = blockIdx.y;
    if (o >= out_dim) return;
    const int begin = chunk * rows_per_chunk, end = min(n, begin + rows_per_chunk);
    float sum = 0.0f;
    for (int r = begin; r < end; r++) sum += d_out[(size_t)r * out_dim + o];
    partial[(size_t)chunk * out_dim + o] = sum;
}

void ops_matmul_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                        int out_dim, int accumulate) {
    if (n <= 0 || out_dim <= 0) return;
    const float beta = accumulate ? 1.0f : 0.0f;
    const __nv_bfloat16 *w16 = cuda_bf16_weight(weight, (size_t)out_dim * in_dim);
    if (w16) {
        const __nv_bfloat16 *in16 = bf16_copy(SCRATCH_BF16_A, in, (size_t)n * in_dim);
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, out_dim, n, in_dim, bf16(w16), in_dim, bf16(in16), in_dim, beta, out, out_dim);
    } else {
        gemm(CUBLAS_OP_T, CUBLAS_OP_N, out_dim, n, in_dim, f32(weight), in_dim, f32(in), in_dim, beta, out, out_dim);
    }
    if (bias) {
        const size_t total = (size_t)n * out_dim;
        add_bias_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cuda_stream()>>>(out, bias, total, out_dim);
        CUDA_LAUNCH_CHECK("add_bias_kernel");
    }
}

// One cuBLAS product per weight (each weight keeps its own bf16 shadow).
void ops_matmul_forward_stacked(float *const *outs, const float *in, const float *weight, const int *out_dims,
                                int count, int n, int in_dim) {
    size_t row = 0;
    for (int j = 0; j < count; j++) {
        ops_matmul_forward(outs[j], in, weight + row * in_dim, NULL, n, in_dim, out_dims[j], 0);
        row += (size_t)out_dims[j];
    }
}

void ops_matmul_backward(float *d_in, float *d_weight, float *d_bias, const float *d_out, const float *in,
                         const float *weight, int n, int in_dim, int out_dim, int accumulate_d_in) {
    if (n <= 0 || out_dim <= 0 || in_dim <= 0) return;
    const __nv_bfloat16 *w16 = cuda_bf16_weight(weight, (size_t)out_dim * in_dim);
    if (w16 && (d_in || d_weight)) {
        const __nv_bfloat16 *dout16 = bf16_copy(SCRATCH_BF16_A, d_out, (size_t)n * out_dim);
        if (d_in)
            gemm(CUBLAS_OP_N, CUBLAS_OP_N, in_dim, n, out_dim, bf16(w16), in_dim, bf16(dout16), out_dim,
                 accumulate_d_in ? 1.0f : 0.0f, d_in, in_dim);
        if (d_weight) {
            const __nv_bfloat16 *in16 = bf16_copy(SCRATCH_BF16_B, in, (size_t)n * in_dim);
            gemm(CUBLAS_OP_N, CUBLAS_OP_T, in_dim, out_dim, n, bf16(in16), in_dim, bf16(dout16), out_dim, 1.0f,
                 d_weight, in_dim);
        }
    } else {
        if (d_in)
            gemm(CUBLAS_OP_N, CUBLAS_OP_N, in_dim, n, out_dim, f32(weight), in_dim, f32(d_out), out_dim,
                 accumulate_d_in ? 1.0f : 0.0f, d_in, in_dim);
        if (d_weight)
            gemm(CUBLAS_OP_N, CUBLAS_OP_T, in_dim, out_dim, n, f32(in), in_dim, f32(d_out), out_dim, 1.0f, d_weight,
                 in_dim);
    }
    if (d_bias) {
        const int chunks = cuda_row_chunks(n), rows_per_chunk = (n + chunks - 1) / chunks;
        float *partial = (float *)cuda_scratch(SCRATCH_PARTIAL, (size_t)chunks * out_dim * sizeof(float));
        dim3 grid((out_dim + CUDA_THREADS - 1) / CUDA_THREADS, chunks);
        bias_partial_kernel<<<grid, CUDA_THREADS, 0, cuda_stream()>>>(partial, d_out, n, out_dim, rows_per_chunk);
        CUDA_LAUNCH_CHECK("bias_partial_kernel");
        cuda_add_partial_sums(d_bias, partial, chunks, out_dim);
    }
}
