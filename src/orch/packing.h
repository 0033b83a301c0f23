// Packing a step's samples into training rows (DESIGN.md section 3): samples sorted by length
// go first-fit-decreasing into rows of at most seq_len positions; positions restart at 0 for
// each sample (attention stays within a sample); the row count is padded with empty rows
// (loss mask 0) to a multiple of the trainer count, and rows are dealt out so each trainer
// gets the same number of rows and about the same number of tokens.
//
// A sample of L tokens t0..t(L-1) takes L-1 positions: inputs t0..t(L-2), targets t1..t(L-1);
// the target t(j) carries the loss mask, inference logprob and advantage of token j.
#pragma once
#include <stdint.h>

#include "comm/protocol.h"
#include "core/error.h"

typedef struct {
    int n;                  // tokens (prompt, completion and environment turns)
    const int32_t *tokens;  // (n)
    const uint8_t *mask;    // (n) 1 = a completion token the model sampled (trained on)
    const float *logp;      // (n) inference logprob of each token (0 where mask is 0)
    float advantage;        // the sample's advantage (1 for SFT)
} PackSample;

// Fills out[0..n_trainers-1] (each batch_alloc'ed here; free with batch_free). Returns the number
// of rows per trainer, or -1 with err (a sample longer than seq_len + 1 tokens).
int pack_samples(const PackSample *samples, int n_samples, int seq_len, int n_trainers, int step, uint32_t flags,
                 Batch *out, ErrorBuf *err);
