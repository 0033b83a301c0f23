// Helpers for tests that read the PyTorch reference fixtures (safetensors files made by the
// scripts in tests/) and load their tensors into a model.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "model/model.h"
#include "model/safetensors.h"

// Tensor `name` of a fixture as a host float array the caller frees (NULL if absent); *numel
// its element count (numel may be NULL). A read error fails the test.
float *fixture_tensor(const SafetensorsFile *f, const char *name, size_t *numel);
// x (n) as integers (token ids and positions are stored as floats in the fixtures).
int32_t *fixture_ints(const float *x, size_t n);
// The Hugging Face-layout array of tensor t converted to this model's layout (q/k rows
// permuted to interleaved RoPE pairs); the caller frees it.
float *fixture_to_model_layout(const Model *m, const ModelTensor *t, const float *hf);
// The numbers of JSON array a as token ids (the caller frees them).
int32_t *fixture_json_ids(const Json *a);
