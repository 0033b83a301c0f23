// llama2.c's legacy model file (.bin, "version 0", as written by its export.py):
//   int32 header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
//   (vocab_size < 0: the output classifier is stored separately at the end), then fp32:
//   token_embedding (V, D), rms_att (L, D), wq (L, D, D), wk (L, KV, D), wv (L, KV, D),
//   wo (L, D, D), rms_ffn (L, D), w1 (L, F, D), w2 (L, D, F), w3 (L, F, D), rms_final (D),
//   freq_cis_real (seq_len, hd/2), freq_cis_imag (seq_len, hd/2) (skipped), [wcls (V, D)].
// w1 is the gate, w3 the up and w2 the down projection; q/k rows are already in the
// interleaved RoPE order this code base uses. RMSNorm eps 1e-5, RoPE theta 10000.
#pragma once
#include "core/error.h"
#include "model/model.h"

// What a llama2.c file cannot store and every reader assumes.
#define LLAMA2C_ROPE_THETA 10000.0
#define LLAMA2C_NORM_EPS 1e-5

// Reads and checks the header (the file size must match it exactly). 0 or -1 + err.
int llama2c_read_config(const char *path, ModelConfig *out, ErrorBuf *err);
Model *llama2c_load(const char *path, ErrorBuf *err);
// Writes a model in the same format (needs head_dim == dim / n_heads and no q/k/v biases).
int llama2c_save(const Model *m, const char *path, ErrorBuf *err);
