// The batched inference forward over a step's rows with the paged KV cache (see forward.h):
// the model's own building blocks (model_embed, model_block_qkv, model_block_attn_out,
// model_block_mlp, model_block_head) around ops_kv_cache_write + ops_paged_attention_forward.
// Where the backend asks for it (ops_batch_slices: the CPU with enough rows per thread), the
// layers run as concurrent slices of whole sequences, one per thread, each with its own rows of
// every buffer; the output layer then takes the whole batch again.
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

// The rows of sequences [s0, s1) (rows query_start[s0] .. query_start[s1]) through every layer.
static void blocks_of_seqs(InferForward *f, const Model *m, KVCache *cache, int s0, int s1) {
    const ModelConfig *c = &m->config;
    const InferBatch *b = &f->batch;
    const int r0 = b->query_start[s0], n = b->query_start[s1] - r0;
    const size_t D = c->dim, Q = (size_t)c->n_heads * c->head_dim, KV = (size_t)c->n_kv_heads * c->head_dim;
    const size_t F = c->hidden_dim, r = (size_t)r0;
    float *x = f->x + r * D, *xn = f->xn + r * D, *q = f->q + r * Q, *att = f->att + r * Q;
    float *k = f->k + r * KV, *v = f->v + r * KV, *gate = f->gate + r * F, *up = f->up + r * F, *act = f->act + r * F;
    model_embed(m, x, f->d_tokens + r, n);
    for (int l = 0; l < c->n_layers; l++) {
        void *k_cache = kvcache_layer_k(cache, l), *v_cache = kvcache_layer_v(cache, l);
        model_block_qkv(m, l, x, xn, NULL, q, k, v, f->d_positions + r, n);
        ops_kv_cache_write(k_cache, v_cache, k, v, f->d_slots + r, n, c->n_kv_heads, c->head_dim, cache->block_size,
                           cache->kv_dtype);
        // query_start holds rows of the whole step: q and att are passed whole.
        ops_paged_attention_forward(f->att, f->q, k_cache, v_cache, f->d_block_tables + (size_t)s0 * f->max_blocks,
                                    f->d_query_start + s0, f->d_context_len + s0, s1 - s0, f->max_blocks,
                                    cache->block_size, c->n_heads, c->n_kv_heads, c->head_dim, cache->kv_dtype);
        model_block_attn_out(m, l, x, x, att, n);
        model_block_mlp(m, l, x, x, xn, NULL, gate, up, act, n);
    }
}

#define MAX_SLICES 256

typedef struct {
    InferForward *f;
    const Model *m;
    KVCache *cache;
    int seq_begin[MAX_SLICES + 1];  // slice i: sequences seq_begin[i] .. seq_begin[i + 1]
} Slices;

static void run_slice(void *ctx, int i) {
    Slices *sl = ctx;
    blocks_of_seqs(sl->f, sl->m, sl->cache, sl->seq_begin[i], sl->seq_begin[i + 1]);
}

// What sequence s costs a step, roughly, in multiply-adds per layer: its rows times the layer's
// weights, plus its attention, whose multiply-adds read the cache and cost about ATTN_COST
// times as much as a weight's in the products (stories15M shape on 2 threads, 64 sequences at
// context ~80: attention 15% of a step, the layers' products 34%).
#define ATTN_COST 10.0
static double seq_cost(const InferBatch *b, const ModelConfig *c, int s) {
    const double rows = b->query_start[s + 1] - b->query_start[s];
    const double D = c->dim, Q = (double)c->n_heads * c->head_dim, KV = (double)c->n_kv_heads * c->head_dim;
    const double layer = D * (Q + 2 * KV) + Q * D + 3 * D * c->hidden_dim;
    return rows * (layer + ATTN_COST * 2.0 * Q * b->context_len[s]);
}

// Splits the step's sequences into `parts` runs of about equal cost (a sequence stays whole);
// returns parts, or 1 when some run would get fewer than OPS_MIN_SLICE_ROWS rows (a long
// prefill chunk among few rows).
static int split_seqs(const InferBatch *b, const ModelConfig *c, int parts, int *seq_begin) {
    if (parts <= 1) return 1;  // (the common small step: no costs to add up)
    if (parts > MAX_SLICES) parts = MAX_SLICES;
    double total = 0.0;
    for (int s = 0; s < b->n_seqs; s++) total += seq_cost(b, c, s);
    seq_begin[0] = 0;
    double before = 0.0;  // the cost of sequences [0, s)
    for (int i = 1, s = 0; i < parts; i++) {
        const double target = total * i / parts;
        // the boundary nearest the target: past every sequence whose middle lies before it
        while (s < b->n_seqs) {
            const double cost = seq_cost(b, c, s);
            if (before + cost / 2 > target) break;
            before += cost;
            s++;
        }
        seq_begin[i] = s;
    }
    seq_begin[parts] = b->n_seqs;
    for (int i = 0; i < parts; i++)
        if (b->query_start[seq_begin[i + 1]] - b->query_start[seq_begin[i]] < OPS_MIN_SLICE_ROWS) return 1;
    return parts;
}

void infer_forward_blocks(InferForward *f, const Model *m, KVCache *cache) {
    const ModelConfig *c = &m->config;
    const InferBatch *b = &f->batch;
    upload_batch(f);
    Slices sl = {.f = f, .m = m, .cache = cache};
    const int slices = split_seqs(b, c, ops_batch_slices(b->n_rows), sl.seq_begin);
    if (slices > 1) {
        ops_run_slices(slices, run_slice, &sl);
    } else {
        blocks_of_seqs(f, m, cache, 0, b->n_seqs);
    }
    // x_sample (n_sample, D) = the sampled rows of x (a row gather, which is what embedding does).
    if (b->n_sample > 0) ops_embedding_forward(f->x_sample, f->d_sample_rows, f->x, b->n_sample, c->dim);
}

void infer_forward_logits(InferForward *f, const Model *m, int first, int count) {
    const size_t D = m->config.dim;
    model_block_head(m, f->logits, f->xn_head, NULL, f->x_sample + (size_t)first * D, count);
}
