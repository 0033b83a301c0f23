// The Llama transformer (RMSNorm, RoPE, grouped-query attention, SwiGLU, optional tied
// embeddings, optional q/k/v biases as in Qwen2), its parameter table, and the forward and
// backward passes over packed rows used for training.
//
// Memory. Parameters live in ONE contiguous device buffer `params` (n_params floats), the
// gradients in `grads` with the same layout; the optimizer keeps m and v in that layout too.
// The table `tensors` names every tensor with its Hugging Face name and its offset (in floats,
// valid in params, grads, m and v alike), so a weight broadcast is one call over `params` and a
// checkpoint writes one dataset per table entry.
//
// Conventions. q and k projections are stored with their rows in the interleaved-pairs RoPE
// order (llama2.c / Meta); the HF loader and writer permute from / to Hugging Face's halves
// order (see hf.h). All tensor pointers in Model (params, grads, layer pointers, activations)
// are DEVICE memory (kernels/ops.h); functions taking `host` arrays say so.
//
// Passes. model_reserve() allocates activations for at most max_tokens tokens per pass (and
// the gradient buffer when training). A training micro-batch is:
//     model_forward_train(m, tokens, positions, targets, n, T, logp, entropy, err);
//     ... the RL loss turns logp into d_logp = d loss / d logp (per token) ...
//     model_backward(m, d_logp, NULL, err);        // grads += d loss / d params
// repeated for each micro-batch, then an optimizer step (train/optimizer.h) and
// model_zero_grads(). Packed rows: positions restart at 0 where a sample begins and count up
// by one inside it; attention stays inside a sample (see ops_attention_forward).
//
// Reuse by an inference engine: the per-layer steps (model_block_*) are public and take
// explicit device buffers, so a KV-cache decode loop can call model_embed, model_block_qkv,
// (its own cached attention), model_block_attn_out, model_block_mlp and model_block_head.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/config_types.h"
#include "core/error.h"

// ---------------------------------------------------------------------------------------
// Shape.

typedef struct {
    int dim;              // D, model width
    int n_layers;         // L
    int n_heads;          // H, query heads
    int n_kv_heads;       // KVH, key/value heads; 0 = n_heads (resolved by model_config_resolve)
    int head_dim;         // hd, even; 0 = dim / n_heads
    int hidden_dim;       // F, SwiGLU width; 0 = Llama's rule (model_hidden_dim_rule)
    int vocab_size;       // V
    int max_seq_len;      // longest sample (size of the RoPE tables)
    double rope_theta;    // RoPE base
    double norm_eps;      // RMSNorm epsilon
    int tied_embeddings;  // 1: the output layer is model.embed_tokens.weight (no lm_head tensor)
    int qkv_bias;         // 1: q/k/v projections have biases (Qwen2)
} ModelConfig;

// Llama's SwiGLU width: hidden = 4*dim, then 2*hidden/3, rounded up to a multiple of 32.
int model_hidden_dim_rule(int dim);
// Fills the 0 = default fields (n_kv_heads, head_dim, hidden_dim) and checks every field:
// positive sizes, dim divisible by n_heads when head_dim is derived, even head_dim,
// n_heads divisible by n_kv_heads, sizes small enough that no count overflows. 0 or -1 + err.
int model_config_resolve(ModelConfig *c, ErrorBuf *err);
// One line for logs: "dim 64, 5 layers, 8 heads (4 kv, head 8), hidden 172, vocab 512, ...".
void model_config_describe(const ModelConfig *c, char *buf, size_t size);
// The shape of a new model from the config's model.* keys (source = init): vocab_size 0 takes
// tokenizer_vocab, n_kv_heads 0 = n_heads, hidden_dim 0 = the Llama rule. Resolved and checked.
int model_config_from(const Config *cfg, int tokenizer_vocab, ModelConfig *out, ErrorBuf *err);

// ---------------------------------------------------------------------------------------
// Parameter table.

typedef enum {
    TENSOR_EMBED,       // model.embed_tokens.weight            (V, D)
    TENSOR_ATTN_NORM,   // model.layers.N.input_layernorm.weight (D)
    TENSOR_WQ,          // ...self_attn.q_proj.weight           (H*hd, D)   rows in RoPE-pair order
    TENSOR_BQ,          // ...self_attn.q_proj.bias             (H*hd)      qkv_bias only
    TENSOR_WK,          // ...self_attn.k_proj.weight           (KVH*hd, D) rows in RoPE-pair order
    TENSOR_BK,          // ...self_attn.k_proj.bias             (KVH*hd)
    TENSOR_WV,          // ...self_attn.v_proj.weight           (KVH*hd, D)
    TENSOR_BV,          // ...self_attn.v_proj.bias             (KVH*hd)
    TENSOR_WO,          // ...self_attn.o_proj.weight           (D, H*hd)
    TENSOR_FFN_NORM,    // ...post_attention_layernorm.weight   (D)
    TENSOR_W_GATE,      // ...mlp.gate_proj.weight              (F, D)
    TENSOR_W_UP,        // ...mlp.up_proj.weight                (F, D)
    TENSOR_W_DOWN,      // ...mlp.down_proj.weight              (D, F)
    TENSOR_FINAL_NORM,  // model.norm.weight                    (D)
    TENSOR_LM_HEAD,     // lm_head.weight                       (V, D)      untied only
} TensorKind;

typedef struct {
    char name[96];     // Hugging Face name, e.g. "model.layers.3.self_attn.q_proj.weight"
    TensorKind kind;
    int layer;         // block index, -1 for embed / final norm / lm_head
    int ndim;          // 1 or 2
    int shape[2];      // (rows, cols) row-major; 1-D tensors use shape[0]
    size_t numel;
    size_t offset;     // in floats, from the start of params (and of grads, m, v)
    int weight_decay;  // 1 for matrices (AdamW decays them), 0 for norm weights and biases
} ModelTensor;

// Pointers of one block into a params-layout buffer (params or grads). Biases are NULL
// without qkv_bias.
typedef struct {
    float *attn_norm;        // (D)
    float *wq, *bq;          // (H*hd, D), (H*hd)
    float *wk, *bk;          // (KVH*hd, D), (KVH*hd)
    float *wv, *bv;          // (KVH*hd, D), (KVH*hd)
    float *wo;               // (D, H*hd)
    float *ffn_norm;         // (D)
    float *w_gate, *w_up;    // (F, D)
    float *w_down;           // (D, F)
} LayerWeights;

// Activations of the last forward (device). With training, every per-layer buffer holds
// n_layers slices of (max_tokens, ...); without, one slice reused by every layer.
typedef struct {
    void *block;         // one device allocation holding every buffer below
    size_t block_bytes;
    int max_tokens, training;
    int n;               // tokens of the last forward
    int has_backward;    // the last forward was a training forward not yet consumed by backward
    float temperature;
    int32_t *tokens, *positions, *targets;  // (T)
    float *x;            // training: (L+1, T, D) stream entering each block (+ after the last);
                         // otherwise (T, D) updated in place
    float *x_mid;        // training: (L, T, D) stream after attention; otherwise aliases x
    float *xn1, *rstd1;  // (L|1, T, D), (L|1, T): attention-input norm
    float *q, *k, *v;    // (L|1, T, H*hd), (L|1, T, KVH*hd), q and k after RoPE
    float *att, *lse;    // (L|1, T, H*hd) attention output, (L|1, T, H) its logsumexp
    float *xn2, *rstd2;  // (L|1, T, D), (L|1, T): MLP-input norm
    float *gate, *up, *act;  // (L|1, T, F)
    float *xn_final, *rstd_final;  // (T, D), (T)
    float *logits;       // (T, V); the backward overwrites it with d_logits
    float *loss_lse, *logp, *entropy;  // (T)
    // Backward scratch (training only).
    float *d_x, *d_xn;           // (T, D)
    float *d_q, *d_att;          // (T, H*hd)
    float *d_k, *d_v;            // (T, KVH*hd)
    float *d_gate, *d_up, *d_act;  // (T, F)
    float *d_logp, *d_entropy;   // (T)
} ModelActs;

typedef struct {
    ModelConfig config;
    int n_tensors;
    ModelTensor *tensors;        // host table, in layout order
    size_t n_params;
    float *params;               // device (n_params)
    float *grads;                // device (n_params); NULL until model_reserve(training = 1)
    // Pointers into params (and the same into grads).
    float *embed, *final_norm, *lm_head;         // (V, D), (D), (V, D) (lm_head == embed when tied)
    float *d_embed, *d_final_norm, *d_lm_head;   // into grads, NULL without grads
    LayerWeights *layers;        // host array [L] of pointers into params
    LayerWeights *layer_grads;   // host array [L] of pointers into grads, NULL without grads
    float *rope_cos, *rope_sin;  // device (max_seq_len, hd/2)
    ModelActs acts;              // empty until model_reserve
} Model;

// ---------------------------------------------------------------------------------------
// Life cycle and table.

// Resolves and checks the config (err names what is wrong; nothing is allocated then),
// allocates zeroed params, builds the table and the RoPE tables.
Model *model_create(const ModelConfig *config, ErrorBuf *err);
void model_free(Model *m);
// Fresh Llama init: every matrix and the embedding ~ normal(0, init_std), norms 1, biases 0.
// Each tensor draws from its own stream seeded by (seed, tensor index): deterministic for a
// seed whatever the thread count.
void model_init_random(Model *m, uint64_t seed, float init_std);
// Allocates activations for passes of up to max_tokens tokens; training = 1 also allocates
// the gradient buffer (zeroed) and the backward scratch. May be called again to resize.
int model_reserve(Model *m, int max_tokens, int training, ErrorBuf *err);
// Device bytes model_reserve allocates for activations (not counting grads: n_params floats).
// About 4 * max_tokens * (V + L * (5 D + 2 H*hd + 2 KVH*hd + 3 F + H + 2)) with training; the
// logits (max_tokens x V) dominate for large vocabularies.
size_t model_reserve_bytes(const ModelConfig *config, int max_tokens, int training);
void model_zero_grads(Model *m);
// Call after writing params directly (loading, optimizer step, broadcast): lets the backend
// refresh derived copies (ops_params_updated).
void model_params_changed(Model *m);

const ModelTensor *model_find_tensor(const Model *m, const char *name);  // NULL if absent
// Host copies of one tensor out of / into any params-layout device buffer (params, grads,
// m, v): host arrays of t->numel floats.
void model_tensor_to_host(const float *buffer, const ModelTensor *t, float *host);
void model_tensor_from_host(float *buffer, const ModelTensor *t, const float *host);
// 0 when every weight of m is finite; -1 + err naming `source`, the first tensor with a NaN or
// an infinity and where (a damaged file, or a model saved after it diverged).
int model_check_finite(const Model *m, const char *source, ErrorBuf *err);
// Layer pointers into a params-layout device buffer (used for params, grads, and by backends).
void model_layer_pointers(const Model *m, float *buffer, int layer, LayerWeights *out);

// ---------------------------------------------------------------------------------------
// Training passes over one packed batch. Host arrays in, host arrays out.

// tokens (n) in [0, V); positions (n) per the packing rule with positions < max_seq_len;
// targets (n) in [-1, V) (-1: no target, logp 0). logp (n) = log_softmax(logits / T)[target],
// entropy (n) of softmax(logits / T) (may be NULL). Keeps the activations for model_backward.
int model_forward_train(Model *m, const int32_t *tokens, const int32_t *positions, const int32_t *targets, int n,
                        float temperature, float *logp, float *entropy, ErrorBuf *err);
// Adds to grads the gradient of sum_i d_logp[i] * logp[i] (+ d_entropy[i] * entropy[i] when
// d_entropy is not NULL) for the last model_forward_train. Host arrays of n. Consumes the
// activations (a second backward needs a new forward).
int model_backward(Model *m, const float *d_logp, const float *d_entropy, ErrorBuf *err);

// Logits for evaluation and reference checks: all_positions = 1 writes (n, V) floats to
// logits_host, 0 writes only the last row's (V). Needs model_reserve (training or not);
// overwrites the activations of an unfinished training pass.
int model_forward_logits(Model *m, const int32_t *tokens, const int32_t *positions, int n, int all_positions,
                         float *logits_host, ErrorBuf *err);

// Checks a packed batch on the host: sizes, token and target ranges, the positions rule.
int model_check_batch(const Model *m, const int32_t *tokens, const int32_t *positions, const int32_t *targets, int n,
                      ErrorBuf *err);

// ---------------------------------------------------------------------------------------
// Building blocks (device buffers, n rows), shared by the passes above and an inference
// engine. Each writes only the buffers it is given.

// x (N, D) = embedding rows of tokens (N).
void model_embed(const Model *m, float *x, const int32_t *tokens, int n);
// Attention inputs of block `layer`: xn (N, D) = rmsnorm(x), rstd (N) (may be NULL),
// q (N, H*hd), k and v (N, KVH*hd) = projections (+ biases), RoPE on q and k at positions (N).
void model_block_qkv(const Model *m, int layer, const float *x, float *xn, float *rstd, float *q, float *k, float *v,
                     const int32_t *positions, int n);
// x_out (N, D) = x_in + att (N, H*hd) @ Wo^T; x_out may equal x_in.
void model_block_attn_out(const Model *m, int layer, float *x_out, const float *x_in, const float *att, int n);
// x_out (N, D) = x_in + down(silu(gate(xn)) * up(xn)) with xn = rmsnorm(x_in). Writes xn (N, D),
// rstd (N) (may be NULL), gate, up, act (N, F). x_out may equal x_in.
void model_block_mlp(const Model *m, int layer, float *x_out, const float *x_in, float *xn, float *rstd, float *gate,
                     float *up, float *act, int n);
// logits (N, V) = final_norm(x) @ lm_head^T; writes xn (N, D) and rstd (N) (may be NULL).
void model_block_head(const Model *m, float *logits, float *xn, float *rstd, const float *x, int n);
