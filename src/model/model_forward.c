// Forward passes: the per-block steps (shared with an inference engine), the training
// forward over a packed batch that keeps every block's activations for the backward, and a
// forward that returns logits. Also the host-side check of a packed batch.
#include <stdlib.h>

#include "model/model.h"
#include "ops.h"

void model_embed(const Model *m, float *x, const int32_t *tokens, int n) {
    ops_embedding_forward(x, tokens, m->embed, n, m->config.dim);
}

void model_block_qkv(const Model *m, int layer, const float *x, float *xn, float *rstd, float *q, float *k, float *v,
                     const int32_t *positions, int n) {
    const ModelConfig *c = &m->config;
    const LayerWeights *w = &m->layers[layer];
    const int D = c->dim, Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim;
    ops_rmsnorm_forward(xn, rstd, x, w->attn_norm, n, D, (float)c->norm_eps);
    // In the parameter layout wq, wk and wv lie one after another (without biases between them):
    // one stacked product, which on the CPU's decode path is one pass over the three.
    if (!w->bq && !w->bk && !w->bv && w->wk == w->wq + (size_t)Q * D && w->wv == w->wk + (size_t)KV * D) {
        float *const outs[3] = {q, k, v};
        const int dims[3] = {Q, KV, KV};
        ops_matmul_forward_stacked(outs, xn, w->wq, dims, 3, n, D);
    } else {
        ops_matmul_forward(q, xn, w->wq, w->bq, n, D, Q, 0);
        ops_matmul_forward(k, xn, w->wk, w->bk, n, D, KV, 0);
        ops_matmul_forward(v, xn, w->wv, w->bv, n, D, KV, 0);
    }
    ops_rope_forward(q, positions, m->rope_cos, m->rope_sin, n, c->n_heads, c->head_dim);
    ops_rope_forward(k, positions, m->rope_cos, m->rope_sin, n, c->n_kv_heads, c->head_dim);
}

void model_block_attn_out(const Model *m, int layer, float *x_out, const float *x_in, const float *att, int n) {
    const ModelConfig *c = &m->config;
    ops_copy(x_out, x_in, (size_t)n * c->dim * sizeof(float));
    ops_matmul_forward(x_out, att, m->layers[layer].wo, NULL, n, c->n_heads * c->head_dim, c->dim, 1);
}

void model_block_mlp(const Model *m, int layer, float *x_out, const float *x_in, float *xn, float *rstd, float *gate,
                     float *up, float *act, int n) {
    const ModelConfig *c = &m->config;
    const LayerWeights *w = &m->layers[layer];
    const int D = c->dim, F = c->hidden_dim;
    ops_rmsnorm_forward(xn, rstd, x_in, w->ffn_norm, n, D, (float)c->norm_eps);
    if (w->w_up == w->w_gate + (size_t)F * D) {  // the parameter layout: one stacked product
        float *const outs[2] = {gate, up};
        const int dims[2] = {F, F};
        ops_matmul_forward_stacked(outs, xn, w->w_gate, dims, 2, n, D);
    } else {
        ops_matmul_forward(gate, xn, w->w_gate, NULL, n, D, F, 0);
        ops_matmul_forward(up, xn, w->w_up, NULL, n, D, F, 0);
    }
    ops_swiglu_forward(act, gate, up, (size_t)n * F);
    ops_copy(x_out, x_in, (size_t)n * D * sizeof(float));
    ops_matmul_forward(x_out, act, w->w_down, NULL, n, F, D, 1);
}

void model_block_head(const Model *m, float *logits, float *xn, float *rstd, const float *x, int n) {
    const ModelConfig *c = &m->config;
    ops_rmsnorm_forward(xn, rstd, x, m->final_norm, n, c->dim, (float)c->norm_eps);
    ops_matmul_forward(logits, xn, m->lm_head, NULL, n, c->dim, c->vocab_size, 0);
}

int model_check_batch(const Model *m, const int32_t *tokens, const int32_t *positions, const int32_t *targets, int n,
                      ErrorBuf *err) {
    const ModelConfig *c = &m->config;
    if (m->acts.max_tokens == 0) return error_set(err, "model_reserve() was not called before a forward pass");
    if (n < 1 || n > m->acts.max_tokens)
        return error_set(err, "a pass of %d tokens does not fit: this model was reserved for 1..%d tokens per pass "
                              "(raise the trainer's tokens per micro-batch or split the batch)",
                         n, m->acts.max_tokens);
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return error_set(err, "token %d at row %d is outside the vocabulary [0, %d)", tokens[i], i,
                             c->vocab_size);
        if (targets && (targets[i] < -1 || targets[i] >= c->vocab_size))
            return error_set(err, "target %d at row %d is outside [-1, %d)", targets[i], i, c->vocab_size);
        const int p = positions[i];
        if (p < 0 || p >= c->max_seq_len)
            return error_set(err, "position %d at row %d is outside [0, %d): the sample is longer than the model's "
                                  "max_seq_len", p, i, c->max_seq_len);
        if (i == 0 ? p != 0 : (p != 0 && p != positions[i - 1] + 1))
            return error_set(err, "positions at row %d go %d -> %d: packed rows must count 0, 1, 2, ... within a "
                                  "sample and restart at 0 where a new sample begins", i,
                             i ? positions[i - 1] : -1, p);
    }
    return 0;
}

// Per-block activation slices: block l of a training pass, or the one reused slice.
typedef struct {
    float *x_in, *x_mid, *x_out, *xn1, *rstd1, *q, *k, *v, *att, *lse, *xn2, *rstd2, *gate, *up, *act;
} BlockActs;

static BlockActs block_acts(const Model *m, int l) {
    const ModelConfig *c = &m->config;
    const ModelActs *a = &m->acts;
    const size_t T = a->max_tokens, D = c->dim, Q = (size_t)c->n_heads * c->head_dim;
    const size_t KV = (size_t)c->n_kv_heads * c->head_dim, F = c->hidden_dim;
    const size_t s = a->training ? (size_t)l : 0;
    BlockActs b;
    b.x_in = a->x + s * T * D;
    b.x_out = a->training ? a->x + (s + 1) * T * D : a->x;
    b.x_mid = a->x_mid + s * T * D;
    b.xn1 = a->xn1 + s * T * D;
    b.rstd1 = a->rstd1 + s * T;
    b.q = a->q + s * T * Q;
    b.k = a->k + s * T * KV;
    b.v = a->v + s * T * KV;
    b.att = a->att + s * T * Q;
    b.lse = a->lse + s * T * c->n_heads;
    b.xn2 = a->xn2 + s * T * D;
    b.rstd2 = a->rstd2 + s * T;
    b.gate = a->gate + s * T * F;
    b.up = a->up + s * T * F;
    b.act = a->act + s * T * F;
    return b;
}

// Embedding and every block; leaves the final stream in the last block's x_out.
static float *forward_blocks(Model *m, int n) {
    const ModelConfig *c = &m->config;
    ModelActs *a = &m->acts;
    model_embed(m, a->x, a->tokens, n);
    float *x = a->x;
    for (int l = 0; l < c->n_layers; l++) {
        BlockActs b = block_acts(m, l);
        model_block_qkv(m, l, b.x_in, b.xn1, b.rstd1, b.q, b.k, b.v, a->positions, n);
        ops_attention_forward(b.att, b.lse, b.q, b.k, b.v, a->positions, n, c->n_heads, c->n_kv_heads, c->head_dim);
        model_block_attn_out(m, l, b.x_mid, b.x_in, b.att, n);
        model_block_mlp(m, l, b.x_out, b.x_mid, b.xn2, b.rstd2, b.gate, b.up, b.act, n);
        x = b.x_out;
    }
    return x;
}

int model_forward_train(Model *m, const int32_t *tokens, const int32_t *positions, const int32_t *targets, int n,
                        float temperature, float *logp, float *entropy, ErrorBuf *err) {
    ModelActs *a = &m->acts;
    if (!a->training) return error_set(err, "model_forward_train needs model_reserve(..., training = 1)");
    if (!(temperature > 0.0f)) return error_set(err, "temperature = %g must be > 0", (double)temperature);
    if (!targets) return error_set(err, "model_forward_train needs targets");
    if (model_check_batch(m, tokens, positions, targets, n, err) != 0) return -1;
    ops_copy_to_device(a->tokens, tokens, (size_t)n * sizeof(int32_t));
    ops_copy_to_device(a->positions, positions, (size_t)n * sizeof(int32_t));
    ops_copy_to_device(a->targets, targets, (size_t)n * sizeof(int32_t));
    a->n = n;
    a->temperature = temperature;
    const float *x = forward_blocks(m, n);
    model_block_head(m, a->logits, a->xn_final, a->rstd_final, x, n);
    ops_logprob_forward(a->logp, a->entropy, a->loss_lse, a->logits, a->targets, n, m->config.vocab_size,
                        temperature);
    ops_copy_to_host(logp, a->logp, (size_t)n * sizeof(float));
    if (entropy) ops_copy_to_host(entropy, a->entropy, (size_t)n * sizeof(float));
    a->has_backward = 1;
    return 0;
}

int model_forward_logits(Model *m, const int32_t *tokens, const int32_t *positions, int n, int all_positions,
                         float *logits_host, ErrorBuf *err) {
    ModelActs *a = &m->acts;
    if (model_check_batch(m, tokens, positions, NULL, n, err) != 0) return -1;
    ops_copy_to_device(a->tokens, tokens, (size_t)n * sizeof(int32_t));
    ops_copy_to_device(a->positions, positions, (size_t)n * sizeof(int32_t));
    a->n = n;
    a->has_backward = 0;
    const float *x = forward_blocks(m, n);
    const size_t D = m->config.dim, V = m->config.vocab_size;
    if (all_positions) {
        model_block_head(m, a->logits, a->xn_final, a->rstd_final, x, n);
        ops_copy_to_host(logits_host, a->logits, (size_t)n * V * sizeof(float));
    } else {
        model_block_head(m, a->logits, a->xn_final, a->rstd_final, x + (size_t)(n - 1) * D, 1);
        ops_copy_to_host(logits_host, a->logits, V * sizeof(float));
    }
    return 0;
}
