// The batched inference forward over a step's rows with the paged KV cache (see forward.h):
// the model's own building blocks (model_embed, model_block_qkv, model_block_attn_out,
// model_block_mlp, model_block_head) around ops_kv_cache_write + ops_paged_attention_forward.
#include "infer/forward.h"

#include <stdlib.h>
#include <string.h>

#include "ops.h"

static float *floats(size_t n) { return ops_alloc(n * sizeof(float)); }
static int32_t *ints(size_t n) { return ops_alloc(n * sizeof(int32_t)); }

int infer_forward_init(InferForward *f, const ModelConfig *c, int max_rows, int max_seqs, int max_blocks,
                       int logit_rows, ErrorBuf *err) {
    memset(f, 0, sizeof *f);
    if (max_rows < 1 || max_seqs < 1 || max_blocks < 1 || logit_rows < 1)
        return error_set(err, "inference buffers: %d rows, %d sequences, %d blocks, %d logit rows must all be >= 1",
                         max_rows, max_seqs, max_blocks, logit_rows);
    if ((double)max_seqs * max_blocks > 1 << 30 || (double)max_rows * c->hidden_dim > 1e11)
        return error_set(err, "inference buffers for %d rows and %d sequences x %d blocks are too large: lower "
                              "inference.max_seqs or inference.prefill_chunk",
                         max_rows, max_seqs, max_blocks);
    const size_t R = max_rows, S = max_seqs, D = c->dim, Q = (size_t)c->n_heads * c->head_dim;
    const size_t KV = (size_t)c->n_kv_heads * c->head_dim, F = c->hidden_dim;
    f->max_rows = max_rows;
    f->max_seqs = max_seqs;
    f->max_blocks = max_blocks;
    f->logit_rows = logit_rows;
    InferBatch *b = &f->batch;
    b->tokens = xcalloc(R, sizeof(int32_t));
    b->positions = xcalloc(R, sizeof(int32_t));
    b->slots = xcalloc(R, sizeof(int32_t));
    b->query_start = xcalloc(S + 1, sizeof(int32_t));
    b->context_len = xcalloc(S, sizeof(int32_t));
    b->block_tables = xcalloc(S * max_blocks, sizeof(int32_t));
    b->sample_rows = xcalloc(S, sizeof(int32_t));
    f->d_tokens = ints(R);
    f->d_positions = ints(R);
    f->d_slots = ints(R);
    f->d_query_start = ints(S + 1);
    f->d_context_len = ints(S);
    f->d_block_tables = ints(S * max_blocks);
    f->d_sample_rows = ints(S);
    f->x = floats(R * D);
    f->xn = floats(R * D);
    f->q = floats(R * Q);
    f->att = floats(R * Q);
    f->k = floats(R * KV);
    f->v = floats(R * KV);
    f->gate = floats(R * F);
    f->up = floats(R * F);
    f->act = floats(R * F);
    f->x_sample = floats(S * D);
    f->xn_head = floats((size_t)logit_rows * D);
    f->logits = floats((size_t)logit_rows * c->vocab_size);
    return 0;
}

void infer_forward_free(InferForward *f) {
    InferBatch *b = &f->batch;
    free(b->tokens);
    free(b->positions);
    free(b->slots);
    free(b->query_start);
    free(b->context_len);
    free(b->block_tables);
    free(b->sample_rows);
    void *dev[] = {f->d_tokens, f->d_positions, f->d_slots, f->d_query_start, f->d_context_len, f->d_block_tables,
                   f->d_sample_rows, f->x, f->xn, f->q, f->att, f->k, f->v, f->gate, f->up, f->act, f->x_sample,
                   f->xn_head, f->logits};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) ops_free(dev[i]);
    memset(f, 0, sizeof *f);
}

static void upload_batch(InferForward *f) {
    const InferBatch *b = &f->batch;
    const size_t n = (size_t)b->n_rows, s = (size_t)b->n_seqs;
    ops_copy_to_device(f->d_tokens, b->tokens, n * sizeof(int32_t));
    ops_copy_to_device(f->d_positions, b->positions, n * sizeof(int32_t));
    ops_copy_to_device(f->d_slots, b->slots, n * sizeof(int32_t));
    ops_copy_to_device(f->d_query_start, b->query_start, (s + 1) * sizeof(int32_t));
    ops_copy_to_device(f->d_context_len, b->context_len, s * sizeof(int32_t));
    ops_copy_to_device(f->d_block_tables, b->block_tables, s * f->max_blocks * sizeof(int32_t));
    ops_copy_to_device(f->d_sample_rows, b->sample_rows, (size_t)b->n_sample * sizeof(int32_t));
}

void infer_forward_blocks(InferForward *f, const Model *m, KVCache *cache) {
    const ModelConfig *c = &m->config;
    const InferBatch *b = &f->batch;
    const int n = b->n_rows;
    upload_batch(f);
    model_embed(m, f->x, f->d_tokens, n);
    for (int l = 0; l < c->n_layers; l++) {
        void *k_cache = kvcache_layer_k(cache, l), *v_cache = kvcache_layer_v(cache, l);
        model_block_qkv(m, l, f->x, f->xn, NULL, f->q, f->k, f->v, f->d_positions, n);
        ops_kv_cache_write(k_cache, v_cache, f->k, f->v, f->d_slots, n, c->n_kv_heads, c->head_dim, cache->block_size,
                           cache->kv_dtype);
        ops_paged_attention_forward(f->att, f->q, k_cache, v_cache, f->d_block_tables, f->d_query_start,
                                    f->d_context_len, b->n_seqs, f->max_blocks, cache->block_size, c->n_heads,
                                    c->n_kv_heads, c->head_dim, cache->kv_dtype);
        model_block_attn_out(m, l, f->x, f->x, f->att, n);
        model_block_mlp(m, l, f->x, f->x, f->xn, NULL, f->gate, f->up, f->act, n);
    }
    // x_sample (n_sample, D) = the sampled rows of x (a row gather, which is what embedding does).
    if (b->n_sample > 0) ops_embedding_forward(f->x_sample, f->d_sample_rows, f->x, b->n_sample, c->dim);
}

void infer_forward_logits(InferForward *f, const Model *m, int first, int count) {
    const size_t D = m->config.dim;
    model_block_head(m, f->logits, f->xn_head, NULL, f->x_sample + (size_t)first * D, count);
}
