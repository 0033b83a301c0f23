// CUDA backend: lifecycle (device choice, compute stream, cuBLAS handle), device memory,
// scratch buffers, the bf16 shadow of the registered parameter buffer, error hints, and two
// small helper kernels used by several ops (fp32 -> bf16, column sums of partial results).
//
// Device choice: a rank uses GPU (node-local rank mod GPU count). The node-local rank is
// ASYNCRL_LOCAL_RANK, which job_start (comm/layout.c) sets from its own collective
// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED) unless the user set it; else a launcher's variable
// (Open MPI's OMPI_COMM_WORLD_LOCAL_RANK, MPICH's MPI_LOCALRANKID, MVAPICH's
// MV2_COMM_WORLD_LOCAL_RANK, Slurm's SLURM_LOCALID); only when none is set and MPI is running
// does ops_init call MPI_Comm_split_type on MPI_COMM_WORLD itself, which is collective: every
// rank must then call ops_init. (ops_init never comes first because the orchestrator rank
// does not call ops_init: a collective there would hang the job.)
//
// Copies: ops_copy_to_device / ops_copy_to_host / ops_copy pass cudaMemcpyDefault, so the
// direction comes from the pointers themselves (unified virtual addressing): a device pointer
// where ops.h says "host" (a received weight buffer handed to code written for host floats)
// still copies correctly.
//
// Waiting: the device is initialised with cudaDeviceScheduleBlockingSync, so every
// synchronisation sleeps in the driver instead of spinning a core (several ranks may share
// the node's cores). ASYNCRL_CUDA_SPIN=1 selects spinning instead, for latency measurements.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.h"

extern "C" {
#include "core/log.h"
}

// ---------------------------------------------------------------------------------------
// Error hints and launch checks (cuda_check.h).

const char *cuda_error_hint(cudaError_t err) {
    switch (err) {
    case cudaErrorMemoryAllocation:
        return "the GPU is out of memory: reduce the micro-batch tokens or seq_len, the model size, or the number "
               "of ranks sharing this GPU";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInitializationError:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
        return "no usable GPU: check nvidia-smi, CUDA_VISIBLE_DEVICES, and that the driver supports CUDA 13";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInvalidKernelImage:
        return "this binary has no code for this GPU: rebuild with a matching CUDA_ARCH, e.g. make CUDA=1 "
               "CUDA_ARCH='-gencode arch=compute_90,code=sm_90'";
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorIllegalInstruction:
        return "a kernel failed (often an out-of-bounds access): rerun with ASYNCRL_CUDA_SYNC=1 to name the "
               "kernel, or under compute-sanitizer";
    case cudaErrorDevicesUnavailable:
        return "the GPU is busy or in exclusive-process mode: give each rank its own GPU or set the GPU's compute "
               "mode to default (nvidia-smi -c DEFAULT)";
    case cudaErrorInvalidValue:
        return "a CUDA call got an invalid argument: a bug in kernels/cuda; rerun with ASYNCRL_CUDA_SYNC=1";
    default:
        return "rerun with ASYNCRL_CUDA_SYNC=1 to find the op that failed";
    }
}

const char *cublas_error_hint(cublasStatus_t status) {
    switch (status) {
    case CUBLAS_STATUS_NOT_INITIALIZED:
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "cuBLAS could not start or allocate its workspace: the GPU may be out of memory";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "a GEMM got an invalid shape or leading dimension: a bug in the caller or kernels/cuda/matmul.cu";
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "this GPU cannot run bf16 GEMMs with fp32 accumulation (needs compute capability 8.0 or newer)";
    default:
        return "a GEMM failed on the GPU: rerun with ASYNCRL_CUDA_SYNC=1 to find the op";
    }
}

const char *nccl_error_hint(ncclResult_t result) {
    switch (result) {
    case ncclInvalidUsage:
        return "NCCL refused the call; two ranks of one communicator on the same GPU is the usual cause (set "
               "ASYNCRL_NCCL=0 to stage through host memory); rerun with NCCL_DEBUG=WARN for details";
    case ncclSystemError:
    case ncclRemoteError:
        return "a peer rank died or the network failed; rerun with NCCL_DEBUG=INFO for details";
    case ncclUnhandledCudaError:
        return "a CUDA call inside NCCL failed (often out of GPU memory); rerun with NCCL_DEBUG=WARN";
    default:
        return "rerun with NCCL_DEBUG=INFO for NCCL's own explanation";
    }
}

// ---------------------------------------------------------------------------------------
// Context.

static struct {
    int ready;
    int device;
    cudaStream_t stream;
    cublasHandle_t cublas;
    int sync_each_launch;  // ASYNCRL_CUDA_SYNC=1
    int sm_count;
} g_ctx;

// The bf16 shadow of the registered parameter buffer.
static struct {
    const float *base;  // (n) registered fp32 parameters; NULL when none
    size_t n;
    __nv_bfloat16 *shadow;  // (cap) bf16 copy of base
    size_t cap;
    int stale;  // base was written after the last refresh
} g_params;

static struct {
    void *ptr;
    size_t cap;
} g_scratch[SCRATCH_COUNT];

// A non-negative integer from the environment; 0 when unset or malformed.
static int env_int(const char *name, int *value) {
    const char *s = getenv(name);
    if (!s || !*s) return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < 0 || v > 1000000) {
        LOG_WARN("ignoring %s=%s: not a non-negative integer", name, s);
        return 0;
    }
    *value = (int)v;
    return 1;
}

static int node_local_rank(const char **source) {
    static const char *vars[] = {"ASYNCRL_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                 "MV2_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"};
    int value = 0;
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (env_int(vars[i], &value)) {
            *source = vars[i];
            return value;
        }
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) {
        MPI_Comm node;
        int rank = 0;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS)
            FATAL("set ASYNCRL_LOCAL_RANK to the rank's index on its node", "MPI_Comm_split_type failed");
        MPI_Comm_rank(node, &rank);
        MPI_Comm_free(&node);
        *source = "MPI_Comm_split_type";
        return rank;
    }
    *source = "default";
    return 0;
}

static void context_init(void) {
    int count = 0;
    CUDA_CHECK(cudaGetDeviceCount(&count));
    CHECK(count > 0, "no GPU is visible: check nvidia-smi and CUDA_VISIBLE_DEVICES", "cudaGetDeviceCount found 0 GPUs");
    const char *source = NULL;
    const int local = node_local_rank(&source);
    g_ctx.device = local % count;
    int spin = 0;
    env_int("ASYNCRL_CUDA_SPIN", &spin);
    const unsigned flags = spin ? cudaDeviceScheduleSpin : cudaDeviceScheduleBlockingSync;
    CUDA_CHECK(cudaInitDevice(g_ctx.device, flags, cudaInitDeviceFlagsAreValid));
    CUDA_CHECK(cudaSetDevice(g_ctx.device));
    CUDA_CHECK(cudaStreamCreateWithFlags(&g_ctx.stream, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&g_ctx.cublas));
    CUBLAS_CHECK(cublasSetStream(g_ctx.cublas, g_ctx.stream));
    env_int("ASYNCRL_CUDA_SYNC", &g_ctx.sync_each_launch);
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, g_ctx.device));
    g_ctx.sm_count = prop.multiProcessorCount;
    CHECK(prop.major >= 8, "use a GPU of compute capability 8.0 (Ampere) or newer",
          "GPU %d (%s) has compute capability %d.%d: bf16 tensor-core GEMMs need 8.0+", g_ctx.device, prop.name,
          prop.major, prop.minor);
    LOG_INFO("cuda: GPU %d of %d (%s, %.1f GiB, cc %d.%d), node-local rank %d from %s%s", g_ctx.device, count,
             prop.name, prop.totalGlobalMem / 1073741824.0, prop.major, prop.minor, local, source,
             g_ctx.sync_each_launch ? ", synchronising after every launch" : "");
    g_ctx.ready = 1;
}

static inline void ensure_context(void) {
    if (!g_ctx.ready) context_init();
}

cudaStream_t cuda_stream(void) {
    ensure_context();
    return g_ctx.stream;
}

cublasHandle_t cuda_cublas(void) {
    ensure_context();
    return g_ctx.cublas;
}

int cuda_device(void) {
    ensure_context();
    return g_ctx.device;
}

int cuda_sm_count(void) {
    ensure_context();
    return g_ctx.sm_count;
}

void cuda_launch_check_at(const char *file, int line, const char *kernel) {
    cudaError_t err = cudaGetLastError();
    // cudaErrorNotReady is a polling answer (cudaEventQuery), never a failed launch.
    if (err != cudaSuccess && err != cudaErrorNotReady)
        fatal_at(file, line, cuda_error_hint(err), "launching %s failed: %s (%s)", kernel, cudaGetErrorString(err),
                 cudaGetErrorName(err));
    if (g_ctx.sync_each_launch) {
        err = cudaStreamSynchronize(g_ctx.stream);
        if (err != cudaSuccess)
            fatal_at(file, line, cuda_error_hint(err), "kernel %s failed: %s (%s)", kernel, cudaGetErrorString(err),
                     cudaGetErrorName(err));
    }
}

// ---------------------------------------------------------------------------------------
// Lifecycle.

void ops_init(int threads) {
    (void)threads;  // the host side of this backend is one thread
    ensure_context();
}

void ops_finalize(void) {
    if (!g_ctx.ready) return;
    CUDA_CHECK(cudaStreamSynchronize(g_ctx.stream));
    for (int i = 0; i < SCRATCH_COUNT; i++) {
        CUDA_CHECK(cudaFree(g_scratch[i].ptr));
        g_scratch[i].ptr = NULL;
        g_scratch[i].cap = 0;
    }
    CUDA_CHECK(cudaFree(g_params.shadow));
    memset(&g_params, 0, sizeof g_params);
    CUBLAS_CHECK(cublasDestroy(g_ctx.cublas));
    CUDA_CHECK(cudaStreamDestroy(g_ctx.stream));
    memset(&g_ctx, 0, sizeof g_ctx);
}

const char *ops_backend_name(void) { return "cuda"; }

int ops_num_threads(void) { return 1; }

void ops_synchronize(void) { CUDA_CHECK(cudaStreamSynchronize(cuda_stream())); }

// One stream runs the whole batch: slices would only serialise.
int ops_batch_slices(int n_rows) {
    (void)n_rows;
    return 1;
}

void ops_run_slices(int n, void (*fn)(void *ctx, int slice), void *ctx) {
    for (int i = 0; i < n; i++) fn(ctx, i);
}

// ---------------------------------------------------------------------------------------
// Helper kernels.

__global__ void to_bf16_kernel(__nv_bfloat16 *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

void cuda_to_bf16(__nv_bfloat16 *dst, const float *src, size_t n) {
    if (n == 0) return;
    to_bf16_kernel<<<cuda_grid(n), CUDA_THREADS, 0, cuda_stream()>>>(dst, src, n);
    CUDA_LAUNCH_CHECK("to_bf16_kernel");
}

// out[c] += sum_k partial[k][c], k in order.
__global__ void add_partial_sums_kernel(float *out, const float *partial, int chunks, int cols) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float sum = 0.0f;
    for (int k = 0; k < chunks; k++) sum += partial[(size_t)k * cols + c];
    out[c] += sum;
}

void cuda_add_partial_sums(float *out, const float *partial, int chunks, int cols) {
    if (cols <= 0) return;
    add_partial_sums_kernel<<<(cols + CUDA_THREADS - 1) / CUDA_THREADS, CUDA_THREADS, 0, cuda_stream()>>>(
        out, partial, chunks, cols);
    CUDA_LAUNCH_CHECK("add_partial_sums_kernel");
}

// ---------------------------------------------------------------------------------------
// Scratch.

void *cuda_scratch(int slot, size_t bytes) {
    ensure_context();
    CHECK(slot >= 0 && slot < SCRATCH_COUNT, "a bug in kernels/cuda", "scratch slot %d", slot);
    if (bytes <= g_scratch[slot].cap && g_scratch[slot].ptr) return g_scratch[slot].ptr;
    CUDA_CHECK(cudaStreamSynchronize(g_ctx.stream));  // the old buffer may still be in use
    CUDA_CHECK(cudaFree(g_scratch[slot].ptr));
    g_scratch[slot].ptr = NULL;
    size_t cap = bytes + bytes / 4 + 256;
    cudaError_t err = cudaMalloc(&g_scratch[slot].ptr, cap);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();
        FATAL(cuda_error_hint(cudaErrorMemoryAllocation), "out of GPU memory for %zu bytes of scratch (slot %d): %s",
              cap, slot, cudaGetErrorString(err));
    }
    g_scratch[slot].cap = cap;
    return g_scratch[slot].ptr;
}

// ---------------------------------------------------------------------------------------
// The registered parameter buffer and its bf16 shadow.

static void refresh_shadow(void) {
    cuda_to_bf16(g_params.shadow, g_params.base, g_params.n);
    g_params.stale = 0;
}

void ops_params_updated(const float *params, size_t n) {
    ensure_context();
    if (!params || n == 0) {
        g_params.base = NULL;
        g_params.n = 0;
        return;
    }
    if (n > g_params.cap) {
        CUDA_CHECK(cudaStreamSynchronize(g_ctx.stream));
        CUDA_CHECK(cudaFree(g_params.shadow));
        g_params.shadow = NULL;
        cudaError_t err = cudaMalloc(&g_params.shadow, n * sizeof(__nv_bfloat16));
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            FATAL(cuda_error_hint(cudaErrorMemoryAllocation),
                  "out of GPU memory for the bf16 copy of %zu parameters (%.1f MiB): %s", n, n * 2 / 1048576.0,
                  cudaGetErrorString(err));
        }
        g_params.cap = n;
    }
    g_params.base = params;
    g_params.n = n;
    refresh_shadow();
}

const __nv_bfloat16 *cuda_bf16_weight(const float *weight, size_t count) {
    if (!g_params.base || !weight) return NULL;
    const uintptr_t begin = (uintptr_t)g_params.base, end = begin + g_params.n * sizeof(float);
    const uintptr_t p = (uintptr_t)weight, p_end = p + count * sizeof(float);
    if (p_end <= begin || p >= end) return NULL;
    CHECK(p >= begin && p_end <= end && (p - begin) % sizeof(float) == 0, "a bug in the caller's tensor table",
          "a weight of %zu floats straddles the edge of the registered parameter buffer", count);
    if (g_params.stale) refresh_shadow();
    return g_params.shadow + (p - begin) / sizeof(float);
}

void cuda_note_write(const void *ptr, size_t bytes) {
    if (!g_params.base || !ptr || bytes == 0) return;
    const uintptr_t begin = (uintptr_t)g_params.base, end = begin + g_params.n * sizeof(float);
    const uintptr_t p = (uintptr_t)ptr;
    if (p < end && p + bytes > begin) g_params.stale = 1;
}

// ---------------------------------------------------------------------------------------
// Device memory.

size_t ops_device_memory(void) {
    ensure_context();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return total_b;
}

void *ops_alloc(size_t bytes) {
    ensure_context();
    size_t rounded = (bytes + 255) / 256 * 256;
    if (rounded == 0) rounded = 256;
    CHECK(rounded >= bytes, "the requested size overflows", "ops_alloc(%zu bytes)", bytes);
    void *p = NULL;
    cudaError_t err = cudaMalloc(&p, rounded);
    if (err != cudaSuccess) {
        (void)cudaGetLastError();  // clear the (non-sticky) allocation error
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        FATAL(cuda_error_hint(cudaErrorMemoryAllocation),
              "out of GPU memory allocating %zu bytes (%.1f MiB); %.2f of %.2f GiB free on GPU %d: %s", bytes,
              bytes / 1048576.0, free_b / 1073741824.0, total_b / 1073741824.0, g_ctx.device,
              cudaGetErrorString(err));
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, rounded, g_ctx.stream));
    CUDA_CHECK(cudaStreamSynchronize(g_ctx.stream));  // zero before any stream may use it
    return p;
}

void ops_free(void *ptr) {
    if (!ptr) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));  // queued ops may still use it
    if (ptr == (void *)g_params.base) {
        g_params.base = NULL;
        g_params.n = 0;
    }
    CUDA_CHECK(cudaFree(ptr));
}

void ops_copy_to_device(void *dst, const void *src_host, size_t bytes) {
    if (!bytes) return;
    cudaStream_t stream = cuda_stream();
    cuda_note_write(dst, bytes);
    CUDA_CHECK(cudaMemcpyAsync(dst, src_host, bytes, cudaMemcpyDefault, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));  // the caller may reuse src_host at once
}

void ops_copy_to_host(void *dst_host, const void *src, size_t bytes) {
    if (!bytes) return;
    cudaStream_t stream = cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(dst_host, src, bytes, cudaMemcpyDefault, stream));
    CUDA_CHECK(cudaStreamSynchronize(stream));
}

void ops_copy(void *dst, const void *src, size_t bytes) {
    if (!bytes || dst == src) return;
    cudaStream_t stream = cuda_stream();
    cuda_note_write(dst, bytes);
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (d < s + bytes && s < d + bytes) {  // overlapping (memmove semantics): go through a copy
        void *tmp = NULL;
        CUDA_CHECK(cudaMalloc(&tmp, bytes));
        CUDA_CHECK(cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDefault, stream));
        CUDA_CHECK(cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyDefault, stream));
        CUDA_CHECK(cudaStreamSynchronize(stream));
        CUDA_CHECK(cudaFree(tmp));
        return;
    }
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream));
}

void ops_zero(void *ptr, size_t bytes) {
    if (!bytes) return;
    cudaStream_t stream = cuda_stream();
    cuda_note_write(ptr, bytes);
    CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, stream));
}
