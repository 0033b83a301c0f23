// CPU token embedding: gather rows of the table; the backward scatter-adds gradient rows.
// The backward splits the columns among threads (not the tokens), so repeated tokens never
// race and the sums are deterministic.
#include <omp.h>
#include <string.h>

#include "cpu/cpu.h"
#include "ops.h"

void ops_embedding_forward(float *out, const int32_t *tokens, const float *table, int n, int dim) {
#pragma omp parallel for schedule(static) if (cpu_parallel((double)n * dim))
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * dim, table + (size_t)tokens[i] * dim, (size_t)dim * sizeof(float));
}

void ops_embedding_backward(float *d_table, const float *d_out, const int32_t *tokens, int n, int dim) {
#pragma omp parallel if (cpu_parallel((double)n * dim))
    {
        size_t b, e;
        cpu_split((size_t)dim, omp_get_thread_num(), omp_get_num_threads(), &b, &e);
        for (int i = 0; i < n; i++) {
            float *dst = d_table + (size_t)tokens[i] * dim;
            const float *src = d_out + (size_t)i * dim;
            for (size_t j = b; j < e; j++) dst[j] += src[j];
        }
    }
}
