// llama2.c .bin reader and writer (see llama2c.h). The header is validated as a model shape
// and the exact file size it implies is compared with the real one before anything is
// allocated from it.
#include "model/llama2c.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/files.h"
#include "ops.h"

// Bytes the weights of a shape take (after the 28-byte header).
static uint64_t weights_bytes(const ModelConfig *c) {
    const uint64_t D = c->dim, L = c->n_layers, F = c->hidden_dim, V = c->vocab_size;
    const uint64_t KV = (uint64_t)c->n_kv_heads * c->head_dim, S = c->max_seq_len, half = c->head_dim / 2;
    uint64_t floats = V * D + L * D + L * D * D + 2 * L * KV * D + L * D * D + L * D + 3 * L * F * D + D;
    floats += 2 * S * half;
    if (!c->tied_embeddings) floats += V * D;
    return floats * 4;
}

static int read_header(FILE *fp, const char *path, ModelConfig *c, uint64_t *file_size, ErrorBuf *err) {
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) return error_set(err, "%s is not a regular file", path);
    *file_size = (uint64_t)st.st_size;
    int32_t h[7];
    if (*file_size < sizeof h || fread(h, sizeof(int32_t), 7, fp) != 7)
        return error_set(err, "%s: %llu bytes is too short for a llama2.c model (28-byte header)", path,
                         (unsigned long long)*file_size);
    if (memcmp(h, HDF5_SIGNATURE, 8) == 0)
        return error_set(err, "%s is an HDF5 file (an asyncrl checkpoint?), not a llama2.c .bin: a job starts from "
                              "a checkpoint's weights with model.source = \"checkpoint\", and `asyncrl generate "
                              "--model` takes checkpoints too", path);
    memset(c, 0, sizeof *c);
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->vocab_size = h[5] < 0 ? (h[5] == INT32_MIN ? -1 : -h[5]) : h[5];
    c->tied_embeddings = h[5] > 0;
    c->max_seq_len = h[6];
    c->rope_theta = LLAMA2C_ROPE_THETA;
    c->norm_eps = LLAMA2C_NORM_EPS;
    if (h[1] <= 0 || h[4] <= 0)
        return error_set(err, "%s: header has hidden_dim = %d, n_kv_heads = %d: both must be positive (not a "
                              "llama2.c model file?)", path, h[1], h[4]);
    ErrorBuf inner;
    if (model_config_resolve(c, &inner) != 0)
        return error_set(err, "%s: bad llama2.c header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab "
                              "%d, seq_len %d): %s", path, h[0], h[1], h[2], h[3], h[4], h[5], h[6], inner.msg);
    const uint64_t want = 28 + weights_bytes(c);
    if (want != *file_size)
        return error_set(err, "%s: the header (dim %d, hidden %d, layers %d, heads %d, kv heads %d, vocab %d, "
                              "seq_len %d) implies %llu bytes but the file has %llu: truncated, or not a llama2.c "
                              "legacy (version 0) file", path, h[0], h[1], h[2], h[3], h[4], h[5], h[6],
                         (unsigned long long)want, (unsigned long long)*file_size);
    return 0;
}

int llama2c_read_config(const char *path, ModelConfig *out, ErrorBuf *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return error_set(err, "cannot open the model file %s: %s", path, strerror(errno));
    uint64_t size;
    int rc = read_header(fp, path, out, &size, err);
    fclose(fp);
    return rc;
}

// The table entry of kind `kind` in block `layer` (-1 for globals).
static const ModelTensor *find_kind(const Model *m, TensorKind kind, int layer) {
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].kind == kind && m->tensors[i].layer == layer) return &m->tensors[i];
    return NULL;
}

// llama2.c's order: each kind for all layers in turn.
static const TensorKind LAYER_ORDER[] = {TENSOR_ATTN_NORM, TENSOR_WQ, TENSOR_WK, TENSOR_WV, TENSOR_WO,
                                         TENSOR_FFN_NORM, TENSOR_W_GATE, TENSOR_W_DOWN, TENSOR_W_UP};

Model *llama2c_load(const char *path, ErrorBuf *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return error_set(err, "cannot open the model file %s: %s", path, strerror(errno)), NULL;
    ModelConfig c;
    uint64_t size;
    if (read_header(fp, path, &c, &size, err) != 0) {
        fclose(fp);
        return NULL;
    }
    Model *m = model_create(&c, err);
    if (!m) {
        fclose(fp);
        return NULL;
    }
    size_t biggest = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > biggest) biggest = m->tensors[i].numel;
    float *buf = xmalloc(biggest * sizeof(float));
    int ok = 1;
#define READ_INTO(t)                                                                      \
    do {                                                                                  \
        ok = ok && fread(buf, sizeof(float), (t)->numel, fp) == (t)->numel;               \
        if (ok) model_tensor_from_host(m->params, (t), buf);                               \
    } while (0)
    READ_INTO(find_kind(m, TENSOR_EMBED, -1));
    for (size_t k = 0; k < sizeof LAYER_ORDER / sizeof LAYER_ORDER[0]; k++)
        for (int l = 0; l < c.n_layers; l++) READ_INTO(find_kind(m, LAYER_ORDER[k], l));
    READ_INTO(find_kind(m, TENSOR_FINAL_NORM, -1));
    const long skip = 2L * c.max_seq_len * (c.head_dim / 2) * (long)sizeof(float);  // freq_cis_real, _imag
    ok = ok && fseeko(fp, (off_t)skip, SEEK_CUR) == 0;
    if (!c.tied_embeddings) READ_INTO(find_kind(m, TENSOR_LM_HEAD, -1));
#undef READ_INTO
    fclose(fp);
    free(buf);
    if (!ok) {
        model_free(m);
        return error_set(err, "%s: read error (file changed while loading?)", path), NULL;
    }
    if (model_check_finite(m, path, err) != 0) {
        model_free(m);
        return NULL;
    }
    model_params_changed(m);
    return m;
}

int llama2c_save(const Model *m, const char *path, ErrorBuf *err) {
    const ModelConfig *c = &m->config;
    if (c->qkv_bias || c->head_dim * c->n_heads != c->dim)
        return error_set(err, "llama2.c files cannot hold q/k/v biases or head_dim != dim / n_heads");
    // The format has no field for them: a reader assumes llama2.c's values.
    if (c->rope_theta != LLAMA2C_ROPE_THETA || c->norm_eps != LLAMA2C_NORM_EPS)
        return error_set(err, "llama2.c files cannot hold rope_theta = %g / norm_eps = %g (readers assume %g and %g), "
                         "so the model would compute another function: convert to a Hugging Face directory "
                         "(--format hf)", c->rope_theta, c->norm_eps, LLAMA2C_ROPE_THETA, LLAMA2C_NORM_EPS);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) return error_set(err, "cannot create %s: %s", tmp, strerror(errno));
    int32_t h[7] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                    c->tied_embeddings ? c->vocab_size : -c->vocab_size, c->max_seq_len};
    int ok = fwrite(h, sizeof h, 1, fp) == 1;
    size_t biggest = (size_t)c->max_seq_len * (c->head_dim / 2);
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > biggest) biggest = m->tensors[i].numel;
    float *buf = xmalloc(biggest * sizeof(float));
#define WRITE_FROM(t)                                                         \
    do {                                                                      \
        model_tensor_to_host(m->params, (t), buf);                            \
        ok = ok && fwrite(buf, sizeof(float), (t)->numel, fp) == (t)->numel;  \
    } while (0)
    WRITE_FROM(find_kind(m, TENSOR_EMBED, -1));
    for (size_t k = 0; k < sizeof LAYER_ORDER / sizeof LAYER_ORDER[0]; k++)
        for (int l = 0; l < c->n_layers; l++) WRITE_FROM(find_kind(m, LAYER_ORDER[k], l));
    WRITE_FROM(find_kind(m, TENSOR_FINAL_NORM, -1));
    const size_t table = (size_t)c->max_seq_len * (c->head_dim / 2);
    ops_copy_to_host(buf, m->rope_cos, table * sizeof(float));
    ok = ok && fwrite(buf, sizeof(float), table, fp) == table;
    ops_copy_to_host(buf, m->rope_sin, table * sizeof(float));
    ok = ok && fwrite(buf, sizeof(float), table, fp) == table;
    if (!c->tied_embeddings) WRITE_FROM(find_kind(m, TENSOR_LM_HEAD, -1));
#undef WRITE_FROM
    free(buf);
    return file_commit(fp, ok, tmp, path, err);
}
