// The model's life cycle: the parameter table (Hugging Face names, offsets into the one
// params buffer), allocation of params / grads / activations, RoPE tables, random init.
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "ops.h"

static void add_tensor(Model *m, TensorKind kind, int layer, const char *suffix, int ndim, int rows, int cols,
                       size_t *offset) {
    ModelTensor *t = &m->tensors[m->n_tensors++];
    memset(t, 0, sizeof *t);
    if (layer >= 0)
        snprintf(t->name, sizeof t->name, "model.layers.%d.%s", layer, suffix);
    else
        snprintf(t->name, sizeof t->name, "%s", suffix);
    t->kind = kind;
    t->layer = layer;
    t->ndim = ndim;
    t->shape[0] = rows;
    t->shape[1] = ndim == 2 ? cols : 1;
    t->numel = (size_t)rows * (ndim == 2 ? (size_t)cols : 1);
    t->offset = *offset;
    t->weight_decay = ndim == 2;
    *offset += t->numel;
}

// The table in layout order: embed, then per block the HF order, then the final norm and
// the untied output layer.
static void build_table(Model *m) {
    const ModelConfig *c = &m->config;
    const int D = c->dim, Q = c->n_heads * c->head_dim, KV = c->n_kv_heads * c->head_dim, F = c->hidden_dim;
    const int per_layer = 9 + (c->qkv_bias ? 3 : 0);
    m->tensors = xcalloc((size_t)c->n_layers * per_layer + 3, sizeof(ModelTensor));
    size_t off = 0;
    add_tensor(m, TENSOR_EMBED, -1, "model.embed_tokens.weight", 2, c->vocab_size, D, &off);
    for (int l = 0; l < c->n_layers; l++) {
        add_tensor(m, TENSOR_ATTN_NORM, l, "input_layernorm.weight", 1, D, 0, &off);
        add_tensor(m, TENSOR_WQ, l, "self_attn.q_proj.weight", 2, Q, D, &off);
        if (c->qkv_bias) add_tensor(m, TENSOR_BQ, l, "self_attn.q_proj.bias", 1, Q, 0, &off);
        add_tensor(m, TENSOR_WK, l, "self_attn.k_proj.weight", 2, KV, D, &off);
        if (c->qkv_bias) add_tensor(m, TENSOR_BK, l, "self_attn.k_proj.bias", 1, KV, 0, &off);
        add_tensor(m, TENSOR_WV, l, "self_attn.v_proj.weight", 2, KV, D, &off);
        if (c->qkv_bias) add_tensor(m, TENSOR_BV, l, "self_attn.v_proj.bias", 1, KV, 0, &off);
        add_tensor(m, TENSOR_WO, l, "self_attn.o_proj.weight", 2, D, Q, &off);
        add_tensor(m, TENSOR_FFN_NORM, l, "post_attention_layernorm.weight", 1, D, 0, &off);
        add_tensor(m, TENSOR_W_GATE, l, "mlp.gate_proj.weight", 2, F, D, &off);
        add_tensor(m, TENSOR_W_UP, l, "mlp.up_proj.weight", 2, F, D, &off);
        add_tensor(m, TENSOR_W_DOWN, l, "mlp.down_proj.weight", 2, D, F, &off);
    }
    add_tensor(m, TENSOR_FINAL_NORM, -1, "model.norm.weight", 1, D, 0, &off);
    if (!c->tied_embeddings) add_tensor(m, TENSOR_LM_HEAD, -1, "lm_head.weight", 2, c->vocab_size, D, &off);
    m->n_params = off;
}

void model_layer_pointers(const Model *m, float *buffer, int layer, LayerWeights *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        if (t->layer != layer) continue;
        float *p = buffer + t->offset;
        switch (t->kind) {
        case TENSOR_ATTN_NORM: out->attn_norm = p; break;
        case TENSOR_WQ: out->wq = p; break;
        case TENSOR_BQ: out->bq = p; break;
        case TENSOR_WK: out->wk = p; break;
        case TENSOR_BK: out->bk = p; break;
        case TENSOR_WV: out->wv = p; break;
        case TENSOR_BV: out->bv = p; break;
        case TENSOR_WO: out->wo = p; break;
        case TENSOR_FFN_NORM: out->ffn_norm = p; break;
        case TENSOR_W_GATE: out->w_gate = p; break;
        case TENSOR_W_UP: out->w_up = p; break;
        case TENSOR_W_DOWN: out->w_down = p; break;
        default: break;
        }
    }
}

// Global tensors (embed, final norm, output layer) of a params-layout buffer.
static void global_pointers(const Model *m, float *buffer, float **embed, float **final_norm, float **lm_head) {
    *embed = *final_norm = *lm_head = NULL;
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        if (t->kind == TENSOR_EMBED) *embed = buffer + t->offset;
        if (t->kind == TENSOR_FINAL_NORM) *final_norm = buffer + t->offset;
        if (t->kind == TENSOR_LM_HEAD) *lm_head = buffer + t->offset;
    }
    if (!*lm_head) *lm_head = *embed;  // tied
}

Model *model_create(const ModelConfig *config, ErrorBuf *err) {
    ModelConfig c = *config;
    if (model_config_resolve(&c, err) != 0) return NULL;
    Model *m = xcalloc(1, sizeof(Model));
    m->config = c;
    build_table(m);
    m->params = ops_alloc(m->n_params * sizeof(float));
    m->layers = xcalloc((size_t)c.n_layers, sizeof(LayerWeights));
    for (int l = 0; l < c.n_layers; l++) model_layer_pointers(m, m->params, l, &m->layers[l]);
    global_pointers(m, m->params, &m->embed, &m->final_norm, &m->lm_head);
    const size_t table = (size_t)c.max_seq_len * (c.head_dim / 2);
    m->rope_cos = ops_alloc(table * sizeof(float));
    m->rope_sin = ops_alloc(table * sizeof(float));
    ops_rope_table(m->rope_cos, m->rope_sin, c.max_seq_len, c.head_dim, c.rope_theta);
    return m;
}

static void free_acts(ModelActs *a) {
    ops_free(a->block);
    memset(a, 0, sizeof *a);
}

void model_free(Model *m) {
    if (!m) return;
    free_acts(&m->acts);
    ops_free(m->params);
    ops_free(m->grads);
    ops_free(m->rope_cos);
    ops_free(m->rope_sin);
    free(m->layers);
    free(m->layer_grads);
    free(m->tensors);
    free(m);
}

void model_init_random(Model *m, uint64_t seed, float init_std) {
    size_t biggest = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > biggest) biggest = m->tensors[i].numel;
    float *host = xmalloc(biggest * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++) {
        const ModelTensor *t = &m->tensors[i];
        Rng rng;
        rng_seed_tuple(&rng, 3, (uint64_t[]){seed, 0x6d6f64656cULL /* "model" */, (uint64_t)i});
        for (size_t j = 0; j < t->numel; j++) {
            if (t->kind == TENSOR_ATTN_NORM || t->kind == TENSOR_FFN_NORM || t->kind == TENSOR_FINAL_NORM)
                host[j] = 1.0f;
            else if (t->ndim == 1)
                host[j] = 0.0f;  // biases
            else
                host[j] = init_std * rng_normal(&rng);
        }
        model_tensor_from_host(m->params, t, host);
    }
    free(host);
    model_params_changed(m);
}

// Lays the activation buffers out in one block starting at `base` (NULL: only sizes them);
// every buffer starts 64-byte aligned. Returns the block's size in bytes.
static size_t layout_acts(ModelActs *a, char *base, const ModelConfig *c, int max_tokens, int training) {
    const size_t T = (size_t)max_tokens, D = c->dim, Q = (size_t)c->n_heads * c->head_dim;
    const size_t KV = (size_t)c->n_kv_heads * c->head_dim, F = c->hidden_dim, V = c->vocab_size;
    const size_t L = training ? (size_t)c->n_layers : 1;
    size_t off = 0;
#define CARVE(field, count)                                                \
    do {                                                                   \
        a->field = base ? (void *)(base + off) : NULL;                     \
        off += ((count) * sizeof(float) + 63) / 64 * 64;                   \
    } while (0)
    CARVE(tokens, T);
    CARVE(positions, T);
    CARVE(targets, T);
    CARVE(x, (training ? L + 1 : 1) * T * D);
    if (training) CARVE(x_mid, L * T * D);
    else a->x_mid = a->x;
    CARVE(xn1, L * T * D);
    CARVE(rstd1, L * T);
    CARVE(q, L * T * Q);
    CARVE(k, L * T * KV);
    CARVE(v, L * T * KV);
    CARVE(att, L * T * Q);
    CARVE(lse, L * T * c->n_heads);
    CARVE(xn2, L * T * D);
    CARVE(rstd2, L * T);
    CARVE(gate, L * T * F);
    CARVE(up, L * T * F);
    CARVE(act, L * T * F);
    CARVE(xn_final, T * D);
    CARVE(rstd_final, T);
    CARVE(logits, T * V);
    CARVE(loss_lse, T);
    CARVE(logp, T);
    CARVE(entropy, T);
    if (training) {
        CARVE(d_x, T * D);
        CARVE(d_xn, T * D);
        CARVE(d_q, T * Q);
        CARVE(d_att, T * Q);
        CARVE(d_k, T * KV);
        CARVE(d_v, T * KV);
        CARVE(d_gate, T * F);
        CARVE(d_up, T * F);
        CARVE(d_act, T * F);
        CARVE(d_logp, T);
        CARVE(d_entropy, T);
    }
#undef CARVE
    return off;
}

size_t model_reserve_bytes(const ModelConfig *config, int max_tokens, int training) {
    ModelActs a;
    memset(&a, 0, sizeof a);
    return layout_acts(&a, NULL, config, max_tokens, training);
}

int model_reserve(Model *m, int max_tokens, int training, ErrorBuf *err) {
    const ModelConfig *c = &m->config;
    if (max_tokens < 1 || max_tokens > (1 << 24))
        return error_set(err, "max tokens per pass = %d is out of range [1, %d]", max_tokens, 1 << 24);
    free_acts(&m->acts);
    ModelActs *a = &m->acts;
    const size_t bytes = layout_acts(a, NULL, c, max_tokens, training);
    a->block = ops_alloc(bytes);
    layout_acts(a, a->block, c, max_tokens, training);
    a->block_bytes = bytes;
    a->max_tokens = max_tokens;
    a->training = training != 0;
    if (training && !m->grads) {
        m->grads = ops_alloc(m->n_params * sizeof(float));
        m->layer_grads = xcalloc((size_t)c->n_layers, sizeof(LayerWeights));
        for (int l = 0; l < c->n_layers; l++) model_layer_pointers(m, m->grads, l, &m->layer_grads[l]);
        global_pointers(m, m->grads, &m->d_embed, &m->d_final_norm, &m->d_lm_head);
    }
    return 0;
}

void model_zero_grads(Model *m) {
    if (m->grads) ops_zero(m->grads, m->n_params * sizeof(float));
}

void model_params_changed(Model *m) { ops_params_updated(m->params, m->n_params); }

const ModelTensor *model_find_tensor(const Model *m, const char *name) {
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0) return &m->tensors[i];
    return NULL;
}

void model_tensor_to_host(const float *buffer, const ModelTensor *t, float *host) {
    ops_copy_to_host(host, buffer + t->offset, t->numel * sizeof(float));
}

void model_tensor_from_host(float *buffer, const ModelTensor *t, const float *host) {
    ops_copy_to_device(buffer + t->offset, host, t->numel * sizeof(float));
}

int model_check_finite(const Model *m, const char *source, ErrorBuf *err) {
    size_t max = 1;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > max) max = m->tensors[i].numel;
    float *host = xmalloc(max * sizeof(float));  // (numel)
    int rc = 0;
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const ModelTensor *t = &m->tensors[i];
        model_tensor_to_host(m->params, t, host);
        for (size_t k = 0; k < t->numel; k++)
            if (!isfinite(host[k])) {
                rc = error_set(err, "%s: weight %s[%zu] is %g: the file is damaged, or the model was saved after "
                               "it diverged; use another model or checkpoint", source, t->name, k, (double)host[k]);
                break;
            }
    }
    free(host);
    return rc;
}
