// CUDA sampling from logits rows (the rule is spelled out in kernels/ops.h): temperature,
// greedy, top-k, top-p, min-p, one uniform per row from the counter-based stream
// (seed, counter), and the logprob of the chosen token under the untruncated distribution.
//
// One block per row. Each token gets a 64-bit rank key, larger = earlier in the rank order:
// the float z = logits / T mapped to an order-preserving unsigned integer in the high half
// (NaN counted as -inf, -0 as +0), 0xFFFFFFFF - id in the low half (lower id first on ties);
// keys are distinct, so "j ranks no later than b" is "key_j >= key_b". The first token of the
// rank order is the maximum key. A kept rank prefix is a key threshold B, found without a
// sort by a bitwise search from the top bit: for top-k the largest B with count(key >= B) >= k,
// for top-p the largest B with mass(key >= B) >= top_p * (mass of the top-k set); each step is
// one block reduction over the row (64 steps). The draw: per-thread contiguous chunks of ids,
// their kept mass summed in double, the chunk where the cumulative mass passes u * total found
// in chunk order, then the token by a sequential scan from there. All sums are fixed trees or
// sequential: deterministic. (Mass sums are not added in the CPU backend's order, so a draw
// that falls within rounding of a boundary can pick the neighbouring token; never out of range.)
#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.h"

#define SAMPLE_THREADS 256

__device__ __forceinline__ uint64_t hash64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

// uniform(seed, counter) of ops.h: (rng_mix(seed, counter) >> 11) * 2^-53.
__device__ double stream_uniform(uint64_t seed, uint64_t counter) {
    const uint64_t r = hash64(hash64(seed) ^ (counter + 0x632be59bd9b4e019ULL));
    return (double)(r >> 11) * 0x1.0p-53;
}

__device__ __forceinline__ float z_of(float logit, float T) {
    float z = logit / T;
    if (z != z) z = -INFINITY;  // NaN: never sampled
    if (z == 0.0f) z = 0.0f;    // -0 ties with +0, as the float comparison of the rule says
    return z;
}

__device__ __forceinline__ unsigned long long rank_key(float z, int id) {
    uint32_t u = __float_as_uint(z);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)u << 32) | (0xFFFFFFFFu - (uint32_t)id);
}

__device__ __forceinline__ int id_of_key(unsigned long long key) { return (int)(0xFFFFFFFFu - (uint32_t)key); }

// z_row, w_row (V): this row's scratch.
__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(int32_t *tokens, float *logprobs, const float *logits, const OpsSampleParams *params, int vocab,
                  float *z_scratch, float *w_scratch) {
    __shared__ double sh_d[33];
    __shared__ unsigned long long sh_u[33];
    __shared__ int sh_i[33];
    __shared__ double chunk_mass[SAMPLE_THREADS];
    const size_t row = blockIdx.x;
    const int tid = threadIdx.x, nt = blockDim.x;
    const float *x = logits + row * vocab;
    float *z = z_scratch + row * vocab, *w = w_scratch + row * vocab;
    const OpsSampleParams p = params[row];
    const float T = p.temperature > 0.0f ? p.temperature : 1.0f;

    // The first token of the rank order (argmax, lowest id on ties).
    unsigned long long best = 0;
    for (int j = tid; j < vocab; j += nt) {
        z[j] = z_of(x[j], T);
        const unsigned long long key = rank_key(z[j], j);
        best = key > best ? key : best;
    }
    best = block_max_int(best, sh_u, 0ULL);
    const int argmax = id_of_key(best);
    const float zmax = z_of(x[argmax], T);
    if (!isfinite(zmax)) {  // garbage row (all NaN / -inf, or +inf): a valid id, NaN logprob
        if (tid == 0) tokens[row] = argmax, logprobs[row] = NAN;
        return;
    }
    double sum = 0.0;
    for (int j = tid; j < vocab; j += nt) {
        w[j] = expf(z[j] - zmax);
        sum += w[j];
    }
    sum = block_sum(sum, sh_d);
    const double lse = (double)zmax + log(sum);
    int tok = argmax;

    if (!p.greedy) {
        // The kept rank prefix: keys >= B (B = 0: no cut).
        unsigned long long B = 0;
        if (p.top_k > 0 && p.top_k < vocab) {
            for (int bit = 63; bit >= 0; bit--) {
                const unsigned long long trial = B | (1ULL << bit);
                int count = 0;
                for (int j = tid; j < vocab; j += nt) count += rank_key(z[j], j) >= trial;
                if (block_sum(count, sh_i) >= p.top_k) B = trial;
            }
        }
        if (p.top_p < 1.0f) {
            double mass = 0.0;
            for (int j = tid; j < vocab; j += nt)
                if (rank_key(z[j], j) >= B) mass += w[j];
            const double target = (double)p.top_p * block_sum(mass, sh_d);
            if (target > 0.0) {
                unsigned long long ans = 0;
                for (int bit = 63; bit >= 0; bit--) {
                    const unsigned long long trial = ans | (1ULL << bit);
                    const unsigned long long thr = trial > B ? trial : B;
                    double m = 0.0;
                    for (int j = tid; j < vocab; j += nt)
                        if (rank_key(z[j], j) >= thr) m += w[j];
                    if (block_sum(m, sh_d) >= target) ans = trial;
                }
                B = ans > B ? ans : B;
            } else {
                B = best;  // nothing to reach: keep the first token only
            }
        }
        // Kept: w_j >= min_p and key_j >= B. Mass per contiguous chunk of ids, then the draw.
        __syncthreads();  // z and w of every id are written
        const float min_w = p.min_p;
        const int chunk = (vocab + nt - 1) / nt, begin = tid * chunk, end = min(vocab, begin + chunk);
        double my_mass = 0.0;
        int last_kept = -1;
        for (int j = begin; j < end; j++)
            if (w[j] >= min_w && rank_key(z[j], j) >= B) my_mass += w[j], last_kept = j;
        chunk_mass[tid] = my_mass;
        last_kept = block_max_int(last_kept, sh_i, -1);  // also makes chunk_mass visible
        if (tid == 0) {
            double total = 0.0;
            for (int c = 0; c < nt; c++) total += chunk_mass[c];
            const double target = stream_uniform(p.seed, p.counter) * total;
            tok = last_kept >= 0 ? last_kept : argmax;
            double acc = 0.0;
            int c = 0;
            while (c < nt && !(acc + chunk_mass[c] > target)) acc += chunk_mass[c++];
            for (int j = c * chunk; c < nt && j < vocab; j++) {
                if (!(w[j] >= min_w && rank_key(z[j], j) >= B)) continue;
                acc += w[j];
                if (acc > target) {
                    tok = j;
                    break;
                }
            }
        }
    }
    if (tid == 0) {
        tokens[row] = tok;
        logprobs[row] = (float)((double)z_of(x[tok], T) - lse);
    }
}

void ops_sample(int32_t *tokens, float *logprobs, const float *logits, const OpsSampleParams *params, int n,
                int vocab) {
    if (n <= 0 || vocab <= 0) return;
    float *scratch = (float *)cuda_scratch(SCRATCH_SAMPLE, 2 * (size_t)n * vocab * sizeof(float));
    sample_kernel<<<n, SAMPLE_THREADS, 0, cuda_stream()>>>(tokens, logprobs, logits, params, vocab, scratch,
                                                           scratch + (size_t)n * vocab);
    CUDA_LAUNCH_CHECK("sample_kernel");
}
