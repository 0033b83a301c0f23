// CUDA token embedding: the forward gathers rows of the table (one thread per element); the
// backward adds each gradient row into its token's row of d_table, deterministically and
// without atomics: the tokens are copied to the host and grouped by value (a stable sort, so
// each group lists its positions in order), then one block per distinct token sums its
// positions' gradient rows in that order and adds the sum to the table row it alone owns.
// The host round trip (N int32 each way) synchronises the stream once per backward.
#include <stdlib.h>

#include "cuda/cuda_common.h"

__global__ void embedding_forward_kernel(float *out, const int32_t *tokens, const float *table, int n, int dim) {
    const size_t total = (size_t)n * dim;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total; e += (size_t)gridDim.x * blockDim.x) {
        const size_t i = e / dim, j = e % dim;
        out[e] = table[(size_t)tokens[i] * dim + j];
    }
}

// groups (G + 1) offsets into order (N); group_token (G); one block per group.
__global__ void embedding_backward_kernel(float *d_table, const float *d_out, const int32_t *order,
                                          const int32_t *groups, const int32_t *group_token, int dim) {
    const int gidx = blockIdx.x;
    const int begin = groups[gidx], end = groups[gidx + 1];
    float *dst = d_table + (size_t)group_token[gidx] * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float sum = 0.0f;
        for (int p = begin; p < end; p++) sum += d_out[(size_t)order[p] * dim + j];
        dst[j] += sum;
    }
}

void ops_embedding_forward(float *out, const int32_t *tokens, const float *table, int n, int dim) {
    const size_t total = (size_t)n * dim;
    if (n <= 0 || dim <= 0) return;
    embedding_forward_kernel<<<cuda_grid(total), CUDA_THREADS, 0, cuda_stream()>>>(out, tokens, table, n, dim);
    CUDA_LAUNCH_CHECK("embedding_forward_kernel");
}

static int32_t *g_sort_tokens;  // host copy of the tokens, read by the comparator

static int compare_positions(const void *a, const void *b) {
    const int32_t pa = *(const int32_t *)a, pb = *(const int32_t *)b;
    const int32_t ta = g_sort_tokens[pa], tb = g_sort_tokens[pb];
    if (ta != tb) return ta < tb ? -1 : 1;
    return pa < pb ? -1 : (pa > pb);  // stable: positions in order within a token
}

void ops_embedding_backward(float *d_table, const float *d_out, const int32_t *tokens, int n, int dim) {
    if (n <= 0 || dim <= 0) return;
    // Host: positions sorted by token, then groups of equal tokens. Packed as one int32 array:
    // order (N) | groups (G + 1) | group_token (G), G <= N.
    int32_t *host_tokens = (int32_t *)malloc((size_t)n * sizeof(int32_t));
    int32_t *packed = (int32_t *)malloc((3 * (size_t)n + 1) * sizeof(int32_t));
    CHECK(host_tokens && packed, "out of host memory", "embedding backward index of %d tokens", n);
    ops_copy_to_host(host_tokens, tokens, (size_t)n * sizeof(int32_t));
    int32_t *order = packed;
    for (int i = 0; i < n; i++) order[i] = i;
    g_sort_tokens = host_tokens;
    qsort(order, (size_t)n, sizeof(int32_t), compare_positions);
    g_sort_tokens = NULL;
    int32_t *groups = packed + n;
    int n_groups = 0;
    for (int p = 0; p < n; p++)
        if (p == 0 || host_tokens[order[p]] != host_tokens[order[p - 1]]) groups[n_groups++] = p;
    groups[n_groups] = n;
    int32_t *group_token = groups + n_groups + 1;
    for (int gi = 0; gi < n_groups; gi++) group_token[gi] = host_tokens[order[groups[gi]]];
    const size_t used = (size_t)n + (size_t)n_groups + 1 + (size_t)n_groups;
    int32_t *dev = (int32_t *)cuda_scratch(SCRATCH_INDEX, used * sizeof(int32_t));
    ops_copy_to_device(dev, packed, used * sizeof(int32_t));
    free(host_tokens);
    free(packed);
    embedding_backward_kernel<<<n_groups, CUDA_THREADS, 0, cuda_stream()>>>(d_table, d_out, dev, dev + n,
                                                                            dev + n + n_groups + 1, dim);
    CUDA_LAUNCH_CHECK("embedding_backward_kernel");
}
