// The inference forward pass of one engine step: the rows of several sequences (a decode
// token each, or a chunk of a prompt) go through the model's blocks together, so every weight
// matrix is one GEMM over all the rows; attention reads each sequence's paged KV cache, into
// which the step first writes its rows' keys and values. Only the rows that are sampled go
// through the output layer (in chunks of logit_rows, bounding the logits buffer).
#pragma once
#include <stdint.h>

#include "core/error.h"
#include "infer/kvcache.h"
#include "model/model.h"

// One step's rows, filled on the host by the scheduler (or a test). Sequence s owns rows
// query_start[s] .. query_start[s+1]-1: its tokens at consecutive positions ending at
// context_len[s] - 1 (the rows are its last tokens, not yet in the cache).
typedef struct {
    int n_rows, n_seqs, n_sample;
    int32_t *tokens;        // (max_rows) token ids
    int32_t *positions;     // (max_rows) positions
    int32_t *slots;         // (max_rows) cache slot of each row's key / value
    int32_t *query_start;   // (max_seqs + 1)
    int32_t *context_len;   // (max_seqs) tokens in the sequence's cache after this step
    int32_t *block_tables;  // (max_seqs, max_blocks) block ids (unused entries 0)
    int32_t *sample_rows;   // (max_seqs) rows whose logits are wanted, in order
} InferBatch;

typedef struct {
    int max_rows, max_seqs, max_blocks, logit_rows;
    InferBatch batch;  // host arrays
    // Device copies of the batch.
    int32_t *d_tokens, *d_positions, *d_slots, *d_query_start, *d_context_len, *d_block_tables, *d_sample_rows;
    // Device activations.
    float *x;            // (R, D) residual stream
    float *xn;           // (R, D) normed input of the current sub-block
    float *q, *att;      // (R, H*hd)
    float *k, *v;        // (R, KVH*hd)
    float *gate, *up, *act;  // (R, F)
    float *x_sample;     // (max_seqs, D) final stream of the sampled rows
    float *xn_head;      // (logit_rows, D)
    float *logits;       // (logit_rows, V)
} InferForward;

// Buffers for steps of up to max_rows rows of up to max_seqs sequences whose block tables
// have up to max_blocks entries; logits for logit_rows rows at a time.
int infer_forward_init(InferForward *f, const ModelConfig *c, int max_rows, int max_seqs, int max_blocks,
                       int logit_rows, ErrorBuf *err);
void infer_forward_free(InferForward *f);
// Copies f->batch to the device and runs embedding and every block over its rows, writing the
// rows' keys and values into the cache; leaves the final stream of the sample rows in x_sample.
void infer_forward_blocks(InferForward *f, const Model *m, KVCache *cache);
// f->logits (count, V) = output layer of sample rows first .. first+count-1 (count <= logit_rows).
void infer_forward_logits(InferForward *f, const Model *m, int first, int count);
