// The paged KV cache of an inference engine: a fixed budget of blocks of block_size token
// slots, for every layer's keys and values, handed out to sequences from a free list. Each
// sequence keeps a block table (the ids of its blocks in position order); the key / value of
// its token at position p live in slot table[p / block_size] * block_size + p % block_size of
// every layer (see ops_kv_cache_write / ops_paged_attention_forward in kernels/ops.h).
#pragma once
#include <stdint.h>

#include "core/error.h"

typedef struct {
    int n_layers, kv_dim;  // kv_dim = KVH * hd
    int block_size;        // tokens per block
    int n_blocks;          // blocks in the budget
    int kv_dtype;          // OpsKVDtype: fp32 or fp16 elements
    void *k, *v;           // device: L layers of n_blocks * block_size * kv_dim elements each, in the
                           // backend's cache layout (kernels/ops.h)
    int32_t *free_ids;     // host stack of free block ids (n_free of them)
    int n_free;
} KVCache;

// A sequence's blocks, in position order: blocks[i] holds positions i*bs .. (i+1)*bs - 1.
typedef struct {
    int32_t *blocks;  // host (cap)
    int n, cap;
} BlockTable;

// Allocates the cache (zeroed) of kv_dtype (OpsKVDtype) elements. -1 + err for sizes that are
// not positive or overflow, or an unknown element type.
int kvcache_init(KVCache *c, int n_layers, int kv_dim, int block_size, int n_blocks, int kv_dtype, ErrorBuf *err);
void kvcache_free(KVCache *c);
void *kvcache_layer_k(const KVCache *c, int layer);  // n_blocks * block_size * kv_dim elements
void *kvcache_layer_v(const KVCache *c, int layer);
int kvcache_blocks_used(const KVCache *c);

// Blocks a table must add to hold n_tokens positions (0 when it already does).
int block_table_missing(const KVCache *c, const BlockTable *t, int n_tokens);
// Grows the table to hold n_tokens positions. 0, or -1 (and nothing taken) when the free list
// is too short.
int block_table_grow(KVCache *c, BlockTable *t, int n_tokens);
// Returns every block of the table to the free list (the table keeps its capacity).
void block_table_release(KVCache *c, BlockTable *t);
void block_table_free(BlockTable *t);  // the host array (after a release)
// The cache slot of position pos (< t->n * block_size).
static inline int32_t block_table_slot(const KVCache *c, const BlockTable *t, int pos) {
    return t->blocks[pos / c->block_size] * c->block_size + pos % c->block_size;
}
