// The paged KV cache: device storage for every layer's keys and values, a free list of block
// ids, and per-sequence block tables that grow a block at a time (see kvcache.h).
#include "infer/kvcache.h"

#include <stdlib.h>

#include "ops.h"

int kvcache_init(KVCache *c, int n_layers, int kv_dim, int block_size, int n_blocks, int kv_dtype, ErrorBuf *err) {
    *c = (KVCache){0};
    if (n_layers < 1 || kv_dim < 1) return error_set(err, "KV cache: %d layers of width %d", n_layers, kv_dim);
    if (block_size < 1) return error_set(err, "inference.kv_block_size = %d must be >= 1", block_size);
    if (n_blocks < 1) return error_set(err, "inference.kv_blocks = %d must be >= 1", n_blocks);
    if (kv_dtype != OPS_KV_F32 && kv_dtype != OPS_KV_F16)
        return error_set(err, "unknown KV cache element type %d (inference.kv_cache_dtype is fp32 or fp16)",
                         kv_dtype);
    const size_t elem = ops_kv_dtype_bytes(kv_dtype);
    const double elems = 2.0 * n_layers * (double)n_blocks * block_size * kv_dim;
    if ((double)n_blocks * block_size > INT32_MAX || elems * elem > (double)SIZE_MAX / 2)
        return error_set(err, "a KV cache of %d blocks x %d tokens x %d layers x %d values is too large: lower "
                              "inference.kv_blocks or inference.kv_block_size",
                         n_blocks, block_size, n_layers, kv_dim);
    const size_t memory = ops_device_memory();
    if (memory && elems * elem > (double)memory)
        return error_set(err, "a KV cache of %d blocks x %d tokens x %d layers needs %.1f GiB of keys and values, more "
                              "than the device's %.1f GiB: lower inference.kv_blocks (0 = enough for max_seqs "
                              "full-length sequences) or inference.max_seqs, or set inference.kv_cache_dtype = \"fp16\"",
                         n_blocks, block_size, n_layers, elems * elem / 1073741824.0, memory / 1073741824.0);
    c->n_layers = n_layers;
    c->kv_dim = kv_dim;
    c->block_size = block_size;
    c->n_blocks = n_blocks;
    c->kv_dtype = kv_dtype;
    const size_t per = (size_t)n_layers * n_blocks * block_size * kv_dim;
    c->k = ops_alloc(per * elem);
    c->v = ops_alloc(per * elem);
    c->free_ids = xmalloc((size_t)n_blocks * sizeof(int32_t));
    // Stack with block 0 on top, so a fresh cache hands out blocks 0, 1, 2, ...
    for (int i = 0; i < n_blocks; i++) c->free_ids[i] = n_blocks - 1 - i;
    c->n_free = n_blocks;
    return 0;
}

void kvcache_free(KVCache *c) {
    ops_free(c->k);
    ops_free(c->v);
    free(c->free_ids);
    *c = (KVCache){0};
}

// Bytes of one layer's keys (or values).
static size_t layer_bytes(const KVCache *c) {
    return (size_t)c->n_blocks * c->block_size * c->kv_dim * ops_kv_dtype_bytes(c->kv_dtype);
}

void *kvcache_layer_k(const KVCache *c, int layer) { return (char *)c->k + (size_t)layer * layer_bytes(c); }

void *kvcache_layer_v(const KVCache *c, int layer) { return (char *)c->v + (size_t)layer * layer_bytes(c); }

int kvcache_blocks_used(const KVCache *c) { return c->n_blocks - c->n_free; }

int block_table_missing(const KVCache *c, const BlockTable *t, int n_tokens) {
    const int need = (n_tokens + c->block_size - 1) / c->block_size;
    return need > t->n ? need - t->n : 0;
}

int block_table_grow(KVCache *c, BlockTable *t, int n_tokens) {
    const int missing = block_table_missing(c, t, n_tokens);
    if (missing == 0) return 0;
    if (missing > c->n_free) return -1;
    if (t->n + missing > t->cap) {
        t->cap = t->n + missing > 2 * t->cap ? t->n + missing : 2 * t->cap;
        t->blocks = xrealloc(t->blocks, (size_t)t->cap * sizeof(int32_t));
    }
    for (int i = 0; i < missing; i++) t->blocks[t->n++] = c->free_ids[--c->n_free];
    return 0;
}

void block_table_release(KVCache *c, BlockTable *t) {
    // Pushed in reverse so the sequence's first block is reused first.
    for (int i = t->n - 1; i >= 0; i--) c->free_ids[c->n_free++] = t->blocks[i];
    t->n = 0;
}

void block_table_free(BlockTable *t) {
    free(t->blocks);
    *t = (BlockTable){0};
}
