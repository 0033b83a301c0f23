// Hugging Face checkpoints: a directory with config.json and model.safetensors (or shards
// listed in model.safetensors.index.json), for LlamaForCausalLM and Qwen2ForCausalLM.
//
// RoPE: Hugging Face rotates the two halves (x[j], x[j + hd/2]) of each head, this code base
// interleaved pairs (x[2j], x[2j+1]). The loader permutes the rows of every q_proj / k_proj
// weight (and bias) head by head, HF row j -> row 2j and HF row j + hd/2 -> row 2j + 1, which
// leaves attention scores unchanged; the writer applies the inverse, so a saved directory
// loads in transformers and computes the same logits.
//
// Unsupported features are rejected by name (rope_scaling, sliding windows, attention /
// MLP biases other than Qwen2's q/k/v biases, activations other than SiLU), as are missing,
// unexpected or mis-shaped tensors.
#pragma once
#include "core/error.h"
#include "model/model.h"

// Reads dir/config.json into a resolved ModelConfig.
int hf_read_config(const char *dir, ModelConfig *out, ErrorBuf *err);
// Creates the model of dir/config.json and loads its weights (F32, BF16 or F16 -> fp32).
Model *hf_load(const char *dir, ErrorBuf *err);
// Writes dir/config.json and dir/model.safetensors (F32); creates dir if needed. bos_id and
// eos_id (the tokenizer's; -1 when unknown) go into config.json as bos_token_id and
// eos_token_id, so that transformers' generate stops at the end of a sequence.
int hf_save(const Model *m, const char *dir, int bos_id, int eos_id, ErrorBuf *err);

// The row permutations, exposed for tests. rows = n_heads * head_dim rows of `cols` floats.
void hf_rows_to_interleaved(float *dst, const float *src, int n_heads, int head_dim, int cols);
void hf_rows_to_halves(float *dst, const float *src, int n_heads, int head_dim, int cols);
