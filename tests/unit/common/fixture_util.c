// Helpers for tests that read the PyTorch reference fixtures (see fixture_util.h).
#include "common/fixture_util.h"

#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "model/hf.h"

float *fixture_tensor(const SafetensorsFile *f, const char *name, size_t *numel) {
    const StTensor *t = safetensors_find(f, name);
    if (!t) return NULL;
    float *out = malloc((size_t)t->numel * sizeof(float) + 4);
    ErrorBuf err;
    if (safetensors_read_f32(f, t, out, &err) != 0) {
        print_error("%s\n", err.msg);
        fail();
    }
    if (numel) *numel = (size_t)t->numel;
    return out;
}

int32_t *fixture_ints(const float *x, size_t n) {
    int32_t *v = malloc((n ? n : 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) v[i] = (int32_t)x[i];
    return v;
}

float *fixture_to_model_layout(const Model *m, const ModelTensor *t, const float *hf) {
    float *out = malloc(t->numel * sizeof(float));
    int heads = 0;
    if (t->kind == TENSOR_WQ || t->kind == TENSOR_BQ) heads = m->config.n_heads;
    if (t->kind == TENSOR_WK || t->kind == TENSOR_BK) heads = m->config.n_kv_heads;
    if (heads)
        hf_rows_to_interleaved(out, hf, heads, m->config.head_dim, t->ndim == 2 ? t->shape[1] : 1);
    else
        memcpy(out, hf, t->numel * sizeof(float));
    return out;
}

int32_t *fixture_json_ids(const Json *a) {
    int32_t *ids = malloc((size_t)(a->count ? a->count : 1) * sizeof(int32_t));
    for (int i = 0; i < a->count; i++) ids[i] = (int32_t)a->items[i].number;
    return ids;
}
