// Model shape: defaults (Llama's hidden-width rule), validation with messages that say what
// to change, a one-line description, and the mapping from the job config's model.* keys.
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "model/model.h"

// Limits that keep every size and count far from overflow (and reject nonsense headers).
#define MAX_DIM (1 << 16)
#define MAX_LAYERS 1024
#define MAX_HEADS 1024
#define MAX_HIDDEN (1 << 20)
#define MAX_VOCAB (1 << 22)
#define MAX_SEQ (1 << 20)

int model_hidden_dim_rule(int dim) {
    int hidden = 4 * dim;
    hidden = 2 * hidden / 3;
    return (hidden + 31) / 32 * 32;
}

static int check_range(const char *name, long long v, long long lo, long long hi, ErrorBuf *err) {
    if (v < lo || v > hi) return error_set(err, "model %s = %lld is out of range [%lld, %lld]", name, v, lo, hi);
    return 0;
}

int model_config_resolve(ModelConfig *c, ErrorBuf *err) {
    if (check_range("dim", c->dim, 1, MAX_DIM, err) || check_range("n_layers", c->n_layers, 1, MAX_LAYERS, err) ||
        check_range("n_heads", c->n_heads, 1, MAX_HEADS, err) ||
        check_range("n_kv_heads", c->n_kv_heads, 0, MAX_HEADS, err) ||
        check_range("head_dim", c->head_dim, 0, MAX_DIM, err) ||
        check_range("hidden_dim", c->hidden_dim, 0, MAX_HIDDEN, err) ||
        check_range("vocab_size", c->vocab_size, 1, MAX_VOCAB, err) ||
        check_range("max_seq_len", c->max_seq_len, 1, MAX_SEQ, err))
        return -1;
    if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
    if (c->head_dim == 0) {
        if (c->dim % c->n_heads != 0)
            return error_set(err, "model dim = %d is not divisible by n_heads = %d: choose n_heads dividing dim "
                                  "(or give head_dim explicitly)", c->dim, c->n_heads);
        c->head_dim = c->dim / c->n_heads;
    }
    if (c->head_dim % 2 != 0)
        return error_set(err, "model head_dim = %d is odd: RoPE rotates pairs, so the head size (dim / n_heads) "
                              "must be even", c->head_dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return error_set(err, "model n_heads = %d is not a multiple of n_kv_heads = %d: grouped-query attention "
                              "shares each key/value head among n_heads / n_kv_heads query heads",
                         c->n_heads, c->n_kv_heads);
    if ((long long)c->n_heads * c->head_dim > MAX_DIM)
        return error_set(err, "model n_heads * head_dim = %lld exceeds %d", (long long)c->n_heads * c->head_dim,
                         MAX_DIM);
    if (c->hidden_dim == 0) c->hidden_dim = model_hidden_dim_rule(c->dim);
    if (!(c->rope_theta >= 1.0 && c->rope_theta <= 1e12))
        return error_set(err, "model rope_theta = %g is out of range [1, 1e12]", c->rope_theta);
    if (!(c->norm_eps > 0.0 && c->norm_eps <= 1.0))
        return error_set(err, "model norm_eps = %g is out of range (0, 1]", c->norm_eps);
    c->tied_embeddings = c->tied_embeddings != 0;
    c->qkv_bias = c->qkv_bias != 0;
    return 0;
}

void model_config_describe(const ModelConfig *c, char *buf, size_t size) {
    snprintf(buf, size,
             "dim %d, %d layers, %d heads (%d kv, head %d), hidden %d, vocab %d, max_seq_len %d, rope_theta %g, "
             "%s embeddings%s",
             c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->hidden_dim, c->vocab_size,
             c->max_seq_len, c->rope_theta, c->tied_embeddings ? "tied" : "untied",
             c->qkv_bias ? ", q/k/v biases" : "");
}

int model_config_from(const Config *cfg, int tokenizer_vocab, ModelConfig *out, ErrorBuf *err) {
    memset(out, 0, sizeof *out);
    out->dim = cfg->model.dim;
    out->n_layers = cfg->model.n_layers;
    out->n_heads = cfg->model.n_heads;
    out->n_kv_heads = cfg->model.n_kv_heads;
    out->hidden_dim = cfg->model.hidden_dim;
    out->vocab_size = cfg->model.vocab_size ? cfg->model.vocab_size : tokenizer_vocab;
    out->max_seq_len = cfg->model.max_seq_len;
    out->rope_theta = cfg->model.rope_theta;
    out->norm_eps = cfg->model.norm_eps;
    out->tied_embeddings = cfg->model.tied_embeddings;
    if (model_config_resolve(out, err) != 0) {
        ErrorBuf inner = *err;
        return error_set(err, "%s (from the model.* keys of the config)", inner.msg);
    }
    return 0;
}
