// Helpers shared by the CUDA kernels (not part of the op interface): the backend's context
// (device, compute stream, cuBLAS handle), reusable scratch memory, the bf16 shadow of the
// registered parameter buffer, launch geometry, and deterministic warp / block reductions.
//
// Every op runs on ONE compute stream, in the order the host calls them. Device-to-device
// collectives (collective.cu) use a side stream and order themselves against this one with
// events. Reductions never use atomics: each sum is a fixed tree that depends only on the
// launch shape, and launch shapes depend only on the problem size, so results are bitwise
// reproducible on a given GPU.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda/cuda_check.h"

extern "C" {
#include "ops.h"
}

// ---------------------------------------------------------------------------------------
// Context (memory.cu). Each accessor initialises the backend on first use (ops_init(0)).

cudaStream_t cuda_stream(void);
cublasHandle_t cuda_cublas(void);
int cuda_device(void);
int cuda_sm_count(void);  // streaming multiprocessors of the device

// Scratch memory kept between calls, one buffer per slot, grown on demand (growing waits for
// the stream, so the old buffer is no longer in use). An op may hold several slots at once but
// must not request the same slot twice.
enum {
    SCRATCH_BF16_A = 0,  // activations converted to bf16 for a GEMM
    SCRATCH_BF16_B,
    SCRATCH_PARTIAL,     // per-chunk partial sums of column reductions
    SCRATCH_ATTENTION,   // attention backward: D = rowsum(d_out * out)
    SCRATCH_INDEX,       // embedding backward: token groups
    SCRATCH_SAMPLE,      // sampling: z and w of every logits row
    SCRATCH_COUNT
};
void *cuda_scratch(int slot, size_t bytes);

// The bf16 copy of `count` floats of the registered parameter buffer starting at `weight`
// (refreshed first if the buffer was written since), or NULL when `weight` lies outside it.
const __nv_bfloat16 *cuda_bf16_weight(const float *weight, size_t count);
// [ptr, ptr + bytes) was just written (or is about to be, in stream order): if it overlaps
// the registered parameter buffer, the bf16 shadow is refreshed before its next use.
void cuda_note_write(const void *ptr, size_t bytes);

// dst (n) = bf16(src (n)), round to nearest even, on the compute stream.
void cuda_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n);
// out (cols) += sum over c < chunks of partial (chunks, cols), added in chunk order.
void cuda_add_partial_sums(float *out, const float *partial, int chunks, int cols);
// Row chunks for a two-pass column reduction of `rows` rows: fixed by the size alone.
static inline int cuda_row_chunks(int rows) { return rows < 64 ? (rows > 0 ? rows : 1) : 64; }

// ---------------------------------------------------------------------------------------
// Launch geometry.

#define CUDA_THREADS 256
// Blocks for a grid-stride loop over n items (capped; the loop covers the rest).
static inline unsigned cuda_grid(size_t n, int threads = CUDA_THREADS) {
    size_t blocks = (n + (size_t)threads - 1) / (size_t)threads;
    if (blocks < 1) blocks = 1;
    if (blocks > 65536) blocks = 65536;
    return (unsigned)blocks;
}

// ---------------------------------------------------------------------------------------
// Deterministic reductions. Butterfly sums give every lane the same value (float addition is
// commutative, so both partners of a pair compute the same sum).

#define FULL_MASK 0xffffffffu

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
    for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(FULL_MASK, x, offset);
    return x;
}

__device__ __forceinline__ float warp_max(float x) {
    for (int offset = 16; offset > 0; offset >>= 1) x = fmaxf(x, __shfl_xor_sync(FULL_MASK, x, offset));
    return x;
}

// Integer maximum over the warp (exact, so any order gives the same result).
template <typename T>
__device__ __forceinline__ T warp_max_int(T x) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        const T y = __shfl_xor_sync(FULL_MASK, x, offset);
        x = y > x ? y : x;
    }
    return x;
}

// Integer maximum over the block; same rules as block_sum below.
template <typename T>
__device__ T block_max_int(T x, T *shared, T lowest) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = warp_max_int(x);
    __syncthreads();
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    if (warp == 0) {
        T y = lane < warps ? shared[lane] : lowest;
        y = warp_max_int(y);
        if (lane == 0) shared[32] = y;
    }
    __syncthreads();
    return shared[32];
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `shared` holds 33 values. Contains __syncthreads: every thread must call it.
template <typename T>
__device__ T block_sum(T x, T *shared) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
    x = warp_sum(x);
    __syncthreads();  // `shared` may still be read by a previous call
    if (lane == 0) shared[warp] = x;
    __syncthreads();
    if (warp == 0) {
        T y = lane < warps ? shared[lane] : T(0);
        y = warp_sum(y);
        if (lane == 0) shared[32] = y;
    }
    __syncthreads();
    return shared[32];
}
