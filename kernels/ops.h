// The op set the model, trainer and inference engine compute with: memory on the compute
// device, and one function per layer kind (forward and backward). The CPU backend
// (kernels/cpu/, fp32, OpenBLAS + OpenMP) and the CUDA backend (kernels/cuda/) implement
// exactly these signatures, so code above this header never needs a backend #ifdef.
//
// Conventions (every backend keeps them):
// - Every float / int32_t pointer below is DEVICE memory from ops_alloc (or a pointer into such
//   an allocation) unless the comment says "host". On CPU device memory is host memory, but
//   callers must still go through ops_copy_to_device / ops_copy_to_host so the CUDA build works.
// - Tensors are dense row-major fp32; shape comments use N = tokens (rows), D = width,
//   H = query heads, KVH = key/value heads, hd = head size, V = vocabulary, F = MLP width.
//   A "weight" is (O, I) row-major, the PyTorch nn.Linear layout: out = in @ W^T.
// - Sizes are passed explicitly; no op keeps pointers after it returns, no op calls back.
// - "+=" in a comment means the op accumulates into its output (callers zero it first when
//   they need a plain result); "=" means it overwrites.
// - Ops may run asynchronously on a device (stream order); functions returning a value to
//   the host (ops_sum_squares) and ops_copy_to_host synchronise.
// - The CPU backend is deterministic for a fixed thread count (no atomics, reductions in a
//   fixed order); other backends say in their own files what they guarantee.
#pragma once
#include <stddef.h>
#include <stdint.h>

// ---------------------------------------------------------------------------------------
// Backend lifecycle.

// threads > 0: compute threads of this process (CPU: OpenMP threads; BLAS runs one thread
// inside each, so there is a single thread pool); threads <= 0: the OpenMP default.
// Idempotent; may be called again to change the thread count.
void ops_init(int threads);
void ops_finalize(void);
const char *ops_backend_name(void);  // "cpu" or "cuda"
int ops_num_threads(void);
void ops_synchronize(void);  // waits until every queued op has finished (CPU: nothing to do)

// Independent slices of a batch (the sequences of an inference step, infer/forward.c): how many
// slices a backend runs a batch of n_rows rows in at once, and running them. The CPU backend
// gives each thread one slice when each gets at least OPS_MIN_SLICE_ROWS rows and the largest
// registered parameter buffer fits in the L3 (each slice reads every weight): a thread then
// keeps its rows through every op of a layer, which no longer move between cores' caches and
// no longer wait for each other op by op. Anything else (and the CUDA backend): 1.
// ops_run_slices calls fn(ctx, i) for i in [0, n), concurrently on the CPU, where the ops fn
// calls run on its thread alone; fn must only touch its own slice's rows.
#define OPS_MIN_SLICE_ROWS 12
int ops_batch_slices(int n_rows);
void ops_run_slices(int n, void (*fn)(void *ctx, int slice), void *ctx);

// Registers a parameter buffer whose contents changed (loaded, optimizer step, weight
// broadcast). Backends keep derived copies of the weights in it and refresh them before their
// next use: CUDA a bf16 shadow of the last registered buffer, the CPU backend copies packed
// for decode-sized matmuls (kernels/cpu/packed_matmul.c). Writes by ops (copies, zero, add,
// scale, AdamW, collectives) into a registered buffer are noticed too; writes by other means
// need this call again. params: device, n floats.
void ops_params_updated(const float *params, size_t n);

// ---------------------------------------------------------------------------------------
// Device memory. ops_alloc returns zero-filled memory aligned to at least 64 bytes and never
// returns NULL (an allocation failure ends the job naming the size). ops_free(NULL) is a no-op.

void *ops_alloc(size_t bytes);
void ops_free(void *ptr);
void ops_copy_to_device(void *dst, const void *src_host, size_t bytes);  // host -> device
void ops_copy_to_host(void *dst_host, const void *src, size_t bytes);    // device -> host
void ops_copy(void *dst, const void *src, size_t bytes);                 // device -> device
void ops_zero(void *ptr, size_t bytes);
// Total memory of the device in bytes (the CPU: the machine's physical memory), 0 if unknown;
// for refusing, with a clear message, a buffer that could never fit (the KV cache).
size_t ops_device_memory(void);

// ---------------------------------------------------------------------------------------
// Linear layers. weight (O, I), bias (O) or NULL.

// out (N, O) = in (N, I) @ weight^T + bias; with accumulate != 0: out += (the same).
void ops_matmul_forward(float *out, const float *in, const float *weight, const float *bias, int n, int in_dim,
                        int out_dim, int accumulate);
// outs[j] (N, out_dims[j]) = in (N, I) @ W_j^T for the count (1..4) weights W_j (out_dims[j], I)
// that lie one after another from `weight` (a layer's q, k and v projections, or its gate and
// up projections, in the parameter layout): the same results as one ops_matmul_forward per
// weight, in one product where the backend can (the CPU's packed decode products, when each
// out_dims[j] is a multiple of 16).
void ops_matmul_forward_stacked(float *const *outs, const float *in, const float *weight, const int *out_dims,
                                int count, int n, int in_dim);
// d_in (N, I) = d_out (N, O) @ weight   (+= when accumulate_d_in != 0)
// d_weight (O, I) += d_out^T @ in
// d_bias (O) += sum over rows of d_out
// Any of d_in, d_weight, d_bias may be NULL to skip it.
void ops_matmul_backward(float *d_in, float *d_weight, float *d_bias, const float *d_out, const float *in,
                         const float *weight, int n, int in_dim, int out_dim, int accumulate_d_in);

// ---------------------------------------------------------------------------------------
// RMSNorm: out = in * rstd * weight with rstd = 1 / sqrt(mean(in^2) + eps) per row.

// out (N, D) =; rstd (N) = (saved for backward; may be NULL); in (N, D); weight (D).
void ops_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight, int n, int dim, float eps);
// d_in (N, D) +=; d_weight (D) += (may be NULL); d_out, in (N, D); rstd (N) from the forward.
void ops_rmsnorm_backward(float *d_in, float *d_weight, const float *d_out, const float *in, const float *weight,
                          const float *rstd, int n, int dim);

// ---------------------------------------------------------------------------------------
// Rotary position embedding, interleaved-pairs convention (Meta's / llama2.c's): within each
// head, the pairs (x[2j], x[2j+1]) for j < hd/2 are rotated by the angle pos * theta^(-2j/hd).
// (Hugging Face Llama rotates (x[j], x[j + hd/2]); the HF loader permutes the rows of the q
// and k projections into this convention.)

// cos_table, sin_table (max_pos, hd/2) =, computed in double precision then rounded.
void ops_rope_table(float *cos_table, float *sin_table, int max_pos, int head_dim, double theta);
// x (N, n_heads, hd) rotated in place; positions (N) in [0, max_pos). Works for q and k alike.
void ops_rope_forward(float *x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                      int n_heads, int head_dim);
// The inverse rotation, applied in place to the gradient d_x (N, n_heads, hd).
void ops_rope_backward(float *d_x, const int32_t *positions, const float *cos_table, const float *sin_table, int n,
                       int n_heads, int head_dim);

// ---------------------------------------------------------------------------------------
// Causal self-attention over packed rows with grouped-query attention.
//
// The N tokens hold several samples back to back. positions (N) restart at 0 where a sample
// begins and count up by one inside it: token i belongs to the sample that starts at row
// i - positions[i], and attends to the rows i - positions[i] .. i (its own sample, causally;
// never across samples). Callers guarantee positions[0] == 0 and, for i > 0, positions[i] == 0
// or positions[i] == positions[i-1] + 1 (model_forward_train checks it). Query head h reads
// key/value head h / (H / KVH). Scores are scaled by 1/sqrt(hd).
// Memory: backends work per sample segment (never an (N x N) matrix); the CPU backend uses
// per-thread scratch of (2 hd + 16) x (longest sample) floats.

// out (N, H, hd) =; lse (N, H) = logsumexp of each score row (saved for backward; may be NULL);
// q (N, H, hd); k, v (N, KVH, hd).
void ops_attention_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim);
// d_q (N, H, hd) =; d_k, d_v (N, KVH, hd) =; d_out, out (N, H, hd); lse (N, H) from the
// forward. Probabilities are recomputed from q, k and lse (flash-attention style).
void ops_attention_backward(float *d_q, float *d_k, float *d_v, const float *d_out, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *positions, int n, int n_heads, int n_kv_heads, int head_dim);

// ---------------------------------------------------------------------------------------
// SwiGLU: out = silu(gate) * up, silu(x) = x * sigmoid(x). All (N, F) viewed as n floats.

void ops_swiglu_forward(float *out, const float *gate, const float *up, size_t n);
// d_gate =, d_up =. d_gate may alias gate and d_up may alias up (elementwise, read first).
void ops_swiglu_backward(float *d_gate, float *d_up, const float *d_out, const float *gate, const float *up,
                         size_t n);

// ---------------------------------------------------------------------------------------
// Token embedding. tokens (N) in [0, V) (callers check the range).

// out (N, D) = table[tokens]; table (V, D).
void ops_embedding_forward(float *out, const int32_t *tokens, const float *table, int n, int dim);
// d_table (V, D) += scatter of d_out (N, D) by tokens (repeated tokens add up).
void ops_embedding_backward(float *d_table, const float *d_out, const int32_t *tokens, int n, int dim);

// ---------------------------------------------------------------------------------------
// Log-probabilities and entropy at a temperature T: z = logits / T,
//   lse[i] = logsumexp(z[i]), logp[i] = z[i][targets[i]] - lse[i],
//   entropy[i] = -sum_j p_ij log p_ij with p = softmax(z[i]) (= lse[i] - sum_j p_ij z_ij).
// A row with targets[i] < 0 has no target: logp[i] = 0 and no logp gradient.

// logp (N) =; entropy (N) = (may be NULL); lse (N) = (saved for backward; may be NULL);
// logits (N, V); targets (N) in [-1, V).
void ops_logprob_forward(float *logp, float *entropy, float *lse, const float *logits, const int32_t *targets, int n,
                         int vocab, float temperature);
// d_logits (N, V) = d/d logits of sum_i (d_logp[i] * logp[i] + d_entropy[i] * entropy[i]).
// d_entropy may be NULL (no entropy term; entropy may then be NULL too). d_logits may alias
// logits (the row is overwritten in place, so no second (N, V) buffer is needed).
void ops_logprob_backward(float *d_logits, const float *logits, const float *lse, const float *entropy,
                          const int32_t *targets, const float *d_logp, const float *d_entropy, int n, int vocab,
                          float temperature);

// ---------------------------------------------------------------------------------------
// Elementwise helpers and reductions.

void ops_add(float *y, const float *x, size_t n);       // y (n) += x (n)
void ops_scale(float *x, float scale, size_t n);        // x (n) *= scale
// Sum of x[i]^2 over n floats, accumulated in double, returned to the host (synchronises).
double ops_sum_squares(const float *x, size_t n);

// ---------------------------------------------------------------------------------------
// AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias correction), one tensor:
//   g = grads * grad_scale            (grad_scale folds in gradient clipping; 1 = none)
//   params *= 1 - lr * weight_decay
//   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
//   params -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
// params, m, v (n) updated in place; grads (n) read only; step >= 1 counts this update.
void ops_adamw(float *params, const float *grads, float *m, float *v, size_t n, float lr, float beta1, float beta2,
               float eps, float weight_decay, float grad_scale, long step);

// ---------------------------------------------------------------------------------------
// Inference: paged KV cache, attention of new query rows against it, sampling.
//
// The cache of one layer holds n_blocks blocks of block_size token slots, for keys and for
// values: k_cache and v_cache are n_blocks * block_size * KVH * hd elements each (ops_alloc'd,
// zeroed) of the cache's element type, kv_dtype (OpsKVDtype: fp32, or fp16 for half the
// memory and memory traffic), in a layout private to the backend: only the ops below read or
// write them. A sequence owns a list of blocks, its row of a block table (S, max_blocks) of
// block ids; the key / value of its token at position p lie in slot
// table[p / block_size] * block_size + p % block_size. Keys are stored after RoPE. (CPU
// layout: block b, kv head g holds its keys transposed, (hd, block_size), at
// ((b * KVH + g) * hd) * block_size elements, and its values as rows, (block_size, hd), at the
// same offset of v_cache. CUDA layout: slot-major rows, (n_slots, KVH*hd).)
typedef enum {
    OPS_KV_F32 = 0,  // keys and values as computed
    OPS_KV_F16 = 1,  // IEEE half, rounded to nearest even when written (|x| > 65504 becomes inf)
} OpsKVDtype;
static inline size_t ops_kv_dtype_bytes(int kv_dtype) { return kv_dtype == OPS_KV_F16 ? 2 : 4; }

// Stores row i of k and v (N, KVH*hd) as the key / value of cache slot slots[i], i < n.
// slots (N) distinct, in [0, n_blocks * block_size) (callers check).
void ops_kv_cache_write(void *k_cache, void *v_cache, const float *k, const float *v, const int32_t *slots, int n,
                        int n_kv_heads, int head_dim, int block_size, int kv_dtype);
// The inverse, for tests and debugging: k, v (N, KVH*hd) = the keys / values of slots (N)
// (with fp16, the rounded values the cache holds).
void ops_kv_cache_read(float *k, float *v, const void *k_cache, const void *v_cache, const int32_t *slots, int n,
                       int n_kv_heads, int head_dim, int block_size, int kv_dtype);

// Causal attention of new query rows against the paged cache (decode: one row per sequence;
// chunked prefill: several consecutive rows of one sequence), grouped-query, scores scaled by
// 1/sqrt(hd). The rows of sequence s are q rows query_start[s] .. query_start[s+1]-1 (n_q >= 1
// of them); its context ctx = context_len[s] counts the tokens in its cache INCLUDING these
// rows (their k/v were written by ops_kv_cache_write before the call), so row j (0-based) of
// s has position ctx - n_q + j and attends to the keys at positions 0 .. ctx - n_q + j.
// Query head h reads key/value head h / (H / KVH). Keys and values of an fp16 cache are
// widened to fp32, and everything else runs in fp32.
//   out (N, H*hd) =; q (N, H*hd) with N = query_start[S]; k_cache, v_cache as above;
//   block_tables (S, max_blocks) with ctx <= max_blocks * block_size for every s;
//   query_start (S+1) with query_start[0] = 0, increasing; context_len (S) >= n_q.
// Memory: never a (T x T) matrix; the CPU backend uses per-thread scratch of O(4 G x max ctx)
// floats (G = H / KVH), plus hd x block_size with fp16. Batch invariance: the CPU backend computes each (row, head) with the
// same arithmetic in the same order whatever else is in the call (so a sequence's outputs do
// not depend on its batch, and recomputing a cache by prefill gives the values decode gave).
void ops_paged_attention_forward(float *out, const float *q, const void *k_cache, const void *v_cache,
                                 const int32_t *block_tables, const int32_t *query_start, const int32_t *context_len,
                                 int n_seqs, int max_blocks, int block_size, int n_heads, int n_kv_heads, int head_dim,
                                 int kv_dtype);

// Per-row sampling settings (an array of these lives in device memory).
typedef struct {
    float temperature;  // T > 0 (greedy rows: T <= 0 is read as 1, for the logprob only)
    float top_p;        // keep the shortest rank prefix holding this much probability; >= 1: off
    float min_p;        // drop tokens with p < min_p * p_max; <= 0: off
    int32_t top_k;      // keep the top_k first tokens of the rank order; <= 0 or >= V: off
    int32_t greedy;     // 1: the first token of the rank order (argmax, lowest id on ties)
    int32_t pad_;
    uint64_t seed;      // the row's random stream ...
    uint64_t counter;   // ... and the draw within it (a sequence uses its token index)
} OpsSampleParams;

// Samples one token per logits row and returns its logprob under the UNTRUNCATED distribution
// at temperature T: logprobs[i] = z[tok] - logsumexp(z) with z = logits[i] / T (what the
// trainer recomputes as log_softmax(logits / T)), also for greedy and filtered rows.
//   tokens (N) =, logprobs (N) =; logits (N, V); params (N).
// Rule (row by row, independent of the other rows):
//   1. z_j = logits_j / T. Rank order: j before k iff z_j > z_k, or z_j == z_k and j < k.
//   2. greedy: tok = the first token of the rank order. Otherwise the kept set K is a prefix of
//      the rank order: the first top_k tokens; then, of those, the shortest prefix whose mass
//      under softmax(z) renormalised over them reaches top_p * (their total mass); then drop
//      every token with w_j = exp(z_j - max z) < min_p.
//   3. u = uniform(seed, counter) in [0, 1), target = u * sum_{j in K} w_j; tok = the first j
//      in ascending id order such that sum_{k in K, k <= j} w_k > target (the last kept id if
//      rounding leaves none).
//   uniform(seed, counter) = (rng_mix(seed, counter) >> 11) * 2^-53, with src/core/rng.h's
//   splitmix64-based rng_mix: h(x) = splitmix64 finaliser of x + 0x9e3779b97f4a7c15,
//   rng_mix(a, b) = h(h(a) ^ (b + 0x632be59bd9b4e019)). Counter-based, so a device reproduces
//   the stream from (seed, counter) alone and a preempted sequence resumes its stream exactly.
// Sums of w run in double on the CPU. NaN logits count as -inf (never sampled); a row with no
// finite maximum (all NaN / -inf, or a +inf) gives its first maximal id (else 0) and a NaN
// logprob: garbage never gives an id outside [0, V).
void ops_sample(int32_t *tokens, float *logprobs, const float *logits, const OpsSampleParams *params, int n,
                int vocab);
