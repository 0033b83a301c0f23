// The backward pass of a training forward: from d loss / d logp per token to the gradient of
// every parameter, accumulated into m->grads. Walks the blocks in reverse using the
// activations the forward kept; d_x carries d loss / d (residual stream) between blocks.
#include "model/model.h"
#include "ops.h"

// d_x (N, D) = d loss / d (stream after the last block), from d_logits in a->logits.
static void head_backward(Model *m, const float *x_final, int n) {
    const ModelConfig *c = &m->config;
    ModelActs *a = &m->acts;
    const int D = c->dim, V = c->vocab_size;
    // d_xn (N, D) = d_logits @ lm_head; d_lm_head += d_logits^T @ xn_final
    ops_matmul_backward(a->d_xn, m->d_lm_head, NULL, a->logits, a->xn_final, m->lm_head, n, D, V, 0);
    ops_zero(a->d_x, (size_t)n * D * sizeof(float));
    ops_rmsnorm_backward(a->d_x, m->d_final_norm, a->d_xn, x_final, m->final_norm, a->rstd_final, n, D);
}

// Block l: d_x holds d loss / d x_out on entry and d loss / d x_in on return.
static void block_backward(Model *m, int l, const float *x_in, const float *x_mid, const float *xn1,
                           const float *rstd1, const float *q, const float *k, const float *v, const float *att,
                           const float *lse, const float *xn2, const float *rstd2, const float *gate,
                           const float *up, const float *act, int n) {
    const ModelConfig *c = &m->config;
    ModelActs *a = &m->acts;
    const LayerWeights *w = &m->layers[l];
    const LayerWeights *g = &m->layer_grads[l];
    const int D = c->dim, Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim, F = c->hidden_dim;
    // MLP: x_out = x_mid + act @ Wd^T, act = silu(xn2 Wg^T) * (xn2 Wu^T), xn2 = norm(x_mid).
    ops_matmul_backward(a->d_act, g->w_down, NULL, a->d_x, act, w->w_down, n, F, D, 0);
    ops_swiglu_backward(a->d_gate, a->d_up, a->d_act, gate, up, (size_t)n * F);
    ops_matmul_backward(a->d_xn, g->w_gate, NULL, a->d_gate, xn2, w->w_gate, n, D, F, 0);
    ops_matmul_backward(a->d_xn, g->w_up, NULL, a->d_up, xn2, w->w_up, n, D, F, 1);
    ops_rmsnorm_backward(a->d_x, g->ffn_norm, a->d_xn, x_mid, w->ffn_norm, rstd2, n, D);
    // Attention: x_mid = x_in + att @ Wo^T, att = attention(rope(q), rope(k), v) of xn1 = norm(x_in).
    ops_matmul_backward(a->d_att, g->wo, NULL, a->d_x, att, w->wo, n, Q, D, 0);
    ops_attention_backward(a->d_q, a->d_k, a->d_v, a->d_att, att, lse, q, k, v, a->positions, n, c->n_heads,
                           c->n_kv_heads, c->head_dim);
    ops_rope_backward(a->d_q, a->positions, m->rope_cos, m->rope_sin, n, c->n_heads, c->head_dim);
    ops_rope_backward(a->d_k, a->positions, m->rope_cos, m->rope_sin, n, c->n_kv_heads, c->head_dim);
    ops_matmul_backward(a->d_xn, g->wq, g->bq, a->d_q, xn1, w->wq, n, D, Q, 0);
    ops_matmul_backward(a->d_xn, g->wk, g->bk, a->d_k, xn1, w->wk, n, D, KV, 1);
    ops_matmul_backward(a->d_xn, g->wv, g->bv, a->d_v, xn1, w->wv, n, D, KV, 1);
    ops_rmsnorm_backward(a->d_x, g->attn_norm, a->d_xn, x_in, w->attn_norm, rstd1, n, D);
}

int model_backward(Model *m, const float *d_logp, const float *d_entropy, ErrorBuf *err) {
    const ModelConfig *c = &m->config;
    ModelActs *a = &m->acts;
    if (!a->training || !m->grads) return error_set(err, "model_backward needs model_reserve(..., training = 1)");
    if (!a->has_backward)
        return error_set(err, "model_backward needs a model_forward_train first (each forward allows one backward)");
    a->has_backward = 0;
    const int n = a->n;
    const size_t T = a->max_tokens, D = c->dim, Q = (size_t)c->n_heads * c->head_dim;
    const size_t KV = (size_t)c->n_kv_heads * c->head_dim, F = c->hidden_dim;
    ops_copy_to_device(a->d_logp, d_logp, (size_t)n * sizeof(float));
    if (d_entropy) ops_copy_to_device(a->d_entropy, d_entropy, (size_t)n * sizeof(float));
    // d_logits, written over the logits.
    ops_logprob_backward(a->logits, a->logits, a->loss_lse, a->entropy, a->targets, a->d_logp,
                         d_entropy ? a->d_entropy : NULL, n, c->vocab_size, a->temperature);
    head_backward(m, a->x + (size_t)c->n_layers * T * D, n);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const size_t s = (size_t)l;
        block_backward(m, l, a->x + s * T * D, a->x_mid + s * T * D, a->xn1 + s * T * D, a->rstd1 + s * T,
                       a->q + s * T * Q, a->k + s * T * KV, a->v + s * T * KV, a->att + s * T * Q,
                       a->lse + s * T * c->n_heads, a->xn2 + s * T * D, a->rstd2 + s * T, a->gate + s * T * F,
                       a->up + s * T * F, a->act + s * T * F, n);
    }
    ops_embedding_backward(m->d_embed, a->d_x, a->tokens, n, c->dim);
    return 0;
}
