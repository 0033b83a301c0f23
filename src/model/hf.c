// Hugging Face directory loader / writer (see hf.h): config.json mapping with explicit
// rejection of unsupported features, sharded safetensors, q/k row permutation for RoPE.
#include "model/hf.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/files.h"
#include "core/json.h"
#include "model/safetensors.h"

#define MAX_JSON_FILE (64u << 20)

static Json *read_json_file(const char *path, ErrorBuf *err) {
    size_t n;
    char *text = file_read_all(path, MAX_JSON_FILE, &n, err);
    if (!text) return NULL;
    ErrorBuf jerr;
    Json *root = json_parse(text, n, &jerr);
    free(text);
    if (!root) return error_set(err, "%s: %s", path, jerr.msg), NULL;
    if (root->type != JSON_OBJECT) {
        json_free(root);
        return error_set(err, "%s: expected a JSON object", path), NULL;
    }
    return root;
}

// Integer field: required (def < 0 means required) or default; a value beyond +-2^30 is an
// error here (model_config_resolve checks each field's own range). 0 or -1 + err.
static int get_int(const Json *cfg, const char *path, const char *key, long long def, int *out, ErrorBuf *err) {
    const Json *v = json_get(cfg, key);
    if (!v || v->type == JSON_NULL) {
        if (def < 0) return error_set(err, "%s: missing \"%s\"", path, key);
        *out = (int)def;
        return 0;
    }
    long long x;
    if (json_get_int(cfg, key, &x) != 0) return error_set(err, "%s: \"%s\" must be an integer", path, key);
    if (x > (1 << 30) || x < -(1 << 30))
        return error_set(err, "%s: \"%s\" = %lld is out of range (not a model this size)", path, key, x);
    *out = (int)x;
    return 0;
}

// Number field: left as it is when absent or null. 0 or -1 + err.
static int get_number(const Json *cfg, const char *path, const char *key, double *out, ErrorBuf *err) {
    const Json *v = json_get(cfg, key);
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_NUMBER) return error_set(err, "%s: \"%s\" must be a number", path, key);
    *out = v->number;
    return 0;
}

// Boolean field: false when absent or null. 0 or -1 + err.
static int get_bool(const Json *cfg, const char *path, const char *key, int *out, ErrorBuf *err) {
    const Json *v = json_get(cfg, key);
    *out = 0;
    if (!v || v->type == JSON_NULL) return 0;
    if (v->type != JSON_BOOL) return error_set(err, "%s: \"%s\" must be true or false", path, key);
    *out = v->boolean;
    return 0;
}

static int not_null(const Json *cfg, const char *key) {
    const Json *v = json_get(cfg, key);
    return v && v->type != JSON_NULL;
}

// The llama features asyncrl does not implement, each an error when set to true.
static int check_unsupported_flags(const Json *cfg, const char *path, ErrorBuf *err) {
    static const char *const flags[][2] = {
        {"attention_bias", "biases on q/k/v/o projections are not supported for llama models"},
        {"mlp_bias", "MLP biases are not supported"},
        {"use_sliding_window", "sliding-window attention is not supported (full attention only)"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        int on;
        if (get_bool(cfg, path, flags[i][0], &on, err)) return -1;
        if (on) return error_set(err, "%s: %s = true: %s", path, flags[i][0], flags[i][1]);
    }
    return 0;
}

static int parse_config(const Json *cfg, const char *path, ModelConfig *c, ErrorBuf *err) {
    memset(c, 0, sizeof *c);
    const char *type = json_get_string(cfg, "model_type");
    const Json *arch = json_get(cfg, "architectures");
    const char *arch0 = arch && arch->type == JSON_ARRAY && arch->count > 0 && arch->items[0].type == JSON_STRING
                            ? arch->items[0].string : NULL;
    int qwen2;
    if (type ? strcmp(type, "llama") == 0 : (arch0 && strcmp(arch0, "LlamaForCausalLM") == 0)) qwen2 = 0;
    else if (type ? strcmp(type, "qwen2") == 0 : (arch0 && strcmp(arch0, "Qwen2ForCausalLM") == 0)) qwen2 = 1;
    else
        return error_set(err, "%s: model_type \"%s\" (architecture %s) is not supported: asyncrl loads llama "
                              "(LlamaForCausalLM) and qwen2 (Qwen2ForCausalLM)",
                         path, type ? type : "?", arch0 ? arch0 : "?");
    if (get_int(cfg, path, "hidden_size", -1, &c->dim, err)) return -1;
    if (get_int(cfg, path, "num_hidden_layers", -1, &c->n_layers, err)) return -1;
    if (get_int(cfg, path, "num_attention_heads", -1, &c->n_heads, err)) return -1;
    if (get_int(cfg, path, "num_key_value_heads", c->n_heads > 0 ? c->n_heads : 1, &c->n_kv_heads, err)) return -1;
    if (get_int(cfg, path, "head_dim", 0, &c->head_dim, err)) return -1;
    if (get_int(cfg, path, "intermediate_size", -1, &c->hidden_dim, err)) return -1;
    if (c->hidden_dim == 0) return error_set(err, "%s: intermediate_size must be positive", path);
    if (get_int(cfg, path, "vocab_size", -1, &c->vocab_size, err)) return -1;
    if (get_int(cfg, path, "max_position_embeddings", 2048, &c->max_seq_len, err)) return -1;
    c->norm_eps = 1e-6;
    if (get_number(cfg, path, "rms_norm_eps", &c->norm_eps, err)) return -1;
    if (get_bool(cfg, path, "tie_word_embeddings", &c->tied_embeddings, err)) return -1;
    c->qkv_bias = qwen2;
    // RoPE: transformers 5 writes rope_parameters {rope_theta, rope_type}; older files
    // rope_theta (+ rope_scaling) at the top.
    c->rope_theta = 10000.0;
    if (get_number(cfg, path, "rope_theta", &c->rope_theta, err)) return -1;
    const Json *rp = json_get(cfg, "rope_parameters");
    if (rp && rp->type == JSON_OBJECT) {
        if (get_number(rp, path, "rope_theta", &c->rope_theta, err)) return -1;
        const char *rt = json_get_string(rp, "rope_type");
        if (rt && strcmp(rt, "default") != 0)
            return error_set(err, "%s: rope_parameters.rope_type \"%s\" is not supported (only \"default\" RoPE)",
                             path, rt);
    }
    if (not_null(cfg, "rope_scaling"))
        return error_set(err, "%s: rope_scaling is set; RoPE scaling is not supported", path);
    const char *act = json_get_string(cfg, "hidden_act");
    if (act && strcmp(act, "silu") != 0)
        return error_set(err, "%s: hidden_act \"%s\" is not supported (only silu / SwiGLU)", path, act);
    if (check_unsupported_flags(cfg, path, err)) return -1;
    const Json *lt = json_get(cfg, "layer_types");
    if (lt && lt->type == JSON_ARRAY)
        for (int i = 0; i < lt->count; i++)
            if (lt->items[i].type != JSON_STRING || strcmp(lt->items[i].string, "full_attention") != 0)
                return error_set(err, "%s: layer_types[%d] is not \"full_attention\"; only full attention is "
                                      "supported", path, i);
    ErrorBuf inner;
    if (model_config_resolve(c, &inner) != 0) return error_set(err, "%s: %s", path, inner.msg);
    return 0;
}

int hf_read_config(const char *dir, ModelConfig *out, ErrorBuf *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT && stat(dir, &st) == 0)  // (a missing dir: read_json_file says so)
        return error_set(err, "%s has no config.json: a model is a Hugging Face directory (config.json + "
                              "model.safetensors) or a llama2.c .bin file", dir);
    Json *cfg = read_json_file(path, err);
    if (!cfg) return -1;
    int rc = parse_config(cfg, path, out, err);
    json_free(cfg);
    return rc;
}

void hf_rows_to_interleaved(float *dst, const float *src, int n_heads, int head_dim, int cols) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < half; j++) {
            const size_t base = (size_t)h * head_dim;
            memcpy(dst + (base + 2 * j) * cols, src + (base + j) * cols, (size_t)cols * sizeof(float));
            memcpy(dst + (base + 2 * j + 1) * cols, src + (base + j + half) * cols, (size_t)cols * sizeof(float));
        }
}

void hf_rows_to_halves(float *dst, const float *src, int n_heads, int head_dim, int cols) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++)
        for (int j = 0; j < half; j++) {
            const size_t base = (size_t)h * head_dim;
            memcpy(dst + (base + j) * cols, src + (base + 2 * j) * cols, (size_t)cols * sizeof(float));
            memcpy(dst + (base + j + half) * cols, src + (base + 2 * j + 1) * cols, (size_t)cols * sizeof(float));
        }
}

// Heads of a q / k tensor (weight or bias), 0 for tensors that are not permuted.
static int rope_heads(const ModelConfig *c, TensorKind kind) {
    if (kind == TENSOR_WQ || kind == TENSOR_BQ) return c->n_heads;
    if (kind == TENSOR_WK || kind == TENSOR_BK) return c->n_kv_heads;
    return 0;
}

// The shard files of a directory: the index's weight_map, or model.safetensors alone.
typedef struct {
    int n_files;
    SafetensorsFile *files;
} Shards;

static void shards_close(Shards *s) {
    for (int i = 0; i < s->n_files; i++) safetensors_close(&s->files[i]);
    free(s->files);
    memset(s, 0, sizeof *s);
}

static int shards_open(const char *dir, Shards *s, ErrorBuf *err) {
    memset(s, 0, sizeof *s);
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        s->files = xcalloc(1, sizeof(SafetensorsFile));
        if (safetensors_open(&s->files[0], path, err) != 0) {
            free(s->files);
            s->files = NULL;
            return -1;
        }
        s->n_files = 1;
        return 0;
    }
    Json *index = read_json_file(path, err);
    if (!index) return -1;
    const Json *map = json_get(index, "weight_map");
    if (!map || map->type != JSON_OBJECT) {
        json_free(index);
        return error_set(err, "%s: missing \"weight_map\" object", path);
    }
    s->files = xcalloc((size_t)map->count + 1, sizeof(SafetensorsFile));
    for (int i = 0; i < map->count; i++) {
        const Json *f = &map->items[i];
        if (f->type != JSON_STRING || !f->string[0] || strchr(f->string, '/') || strcmp(f->string, "..") == 0 ||
            strlen(f->string) != f->string_len) {
            error_set(err, "%s: weight_map[\"%s\"] must name a file inside the directory", path, map->keys[i]);
            goto fail;
        }
        int known = 0;
        for (int j = 0; j < s->n_files; j++) {
            const char *name = strrchr(s->files[j].path, '/') + 1;
            if (strcmp(name, f->string) == 0) known = 1;
        }
        if (known) continue;
        char shard[4096];
        snprintf(shard, sizeof shard, "%s/%s", dir, f->string);
        if (safetensors_open(&s->files[s->n_files], shard, err) != 0) goto fail;
        s->n_files++;
    }
    json_free(index);
    return 0;
fail:
    json_free(index);
    shards_close(s);
    return -1;
}

static const StTensor *shards_find(const Shards *s, const char *name, const SafetensorsFile **file) {
    for (int i = 0; i < s->n_files; i++) {
        const StTensor *t = safetensors_find(&s->files[i], name);
        if (t) {
            *file = &s->files[i];
            return t;
        }
    }
    return NULL;
}

// A tensor in the files that the model does not use. Rotary caches are harmless; a tied
// model may carry lm_head.weight as a copy of the embedding.
static int ignorable(const Model *m, const char *name) {
    const size_t n = strlen(name), suffix = strlen("rotary_emb.inv_freq");
    if (n >= suffix && strcmp(name + n - suffix, "rotary_emb.inv_freq") == 0) return 1;
    return m->config.tied_embeddings && strcmp(name, "lm_head.weight") == 0;
}

static int load_weights(Model *m, const Shards *s, const char *dir, ErrorBuf *err) {
    for (int i = 0; i < s->n_files; i++)
        for (int j = 0; j < s->files[i].n_tensors; j++) {
            const char *name = s->files[i].tensors[j].name;
            if (!model_find_tensor(m, name) && !ignorable(m, name))
                return error_set(err, "%s: unexpected tensor \"%s\": the checkpoint has parts this Llama/Qwen2 "
                                      "model does not (an unsupported architecture feature?)",
                                 s->files[i].path, name);
        }
    size_t biggest = 0;
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].numel > biggest) biggest = m->tensors[i].numel;
    float *buf = xmalloc(biggest * sizeof(float)), *perm = xmalloc(biggest * sizeof(float));
    int rc = 0;
    for (int i = 0; i < m->n_tensors && rc == 0; i++) {
        const ModelTensor *t = &m->tensors[i];
        const SafetensorsFile *file = NULL;
        const StTensor *st = shards_find(s, t->name, &file);
        if (!st) {
            rc = error_set(err, "%s: tensor \"%s\" is missing from the checkpoint", dir, t->name);
            break;
        }
        int same = st->ndim == t->ndim && st->shape[0] == t->shape[0] && (t->ndim == 1 || st->shape[1] == t->shape[1]);
        if (!same) {
            char got[128] = "";
            size_t len = 0;
            for (int d = 0; d < st->ndim && len < sizeof got - 24; d++)
                len += (size_t)snprintf(got + len, sizeof got - len, "%s%lld", d ? ", " : "", (long long)st->shape[d]);
            char want[64];
            if (t->ndim == 2) snprintf(want, sizeof want, "%d, %d", t->shape[0], t->shape[1]);
            else snprintf(want, sizeof want, "%d", t->shape[0]);
            rc = error_set(err, "%s: tensor \"%s\" has shape [%s], config.json implies [%s]", file->path, t->name,
                           got, want);
            break;
        }
        if (safetensors_read_f32(file, st, buf, err) != 0) {
            rc = -1;
            break;
        }
        const int heads = rope_heads(&m->config, t->kind);
        if (heads) {
            hf_rows_to_interleaved(perm, buf, heads, m->config.head_dim, t->ndim == 2 ? t->shape[1] : 1);
            model_tensor_from_host(m->params, t, perm);
        } else {
            model_tensor_from_host(m->params, t, buf);
        }
    }
    free(buf);
    free(perm);
    return rc;
}

Model *hf_load(const char *dir, ErrorBuf *err) {
    ModelConfig c;
    if (hf_read_config(dir, &c, err) != 0) return NULL;
    Shards s;
    if (shards_open(dir, &s, err) != 0) return NULL;
    Model *m = model_create(&c, err);
    if (m && (load_weights(m, &s, dir, err) != 0 || model_check_finite(m, dir, err) != 0)) {
        model_free(m);
        m = NULL;
    }
    shards_close(&s);
    if (m) model_params_changed(m);
    return m;
}

static int write_config(const Model *m, const char *dir, int bos_id, int eos_id, ErrorBuf *err) {
    const ModelConfig *c = &m->config;
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return error_set(err, "cannot create %s: %s", tmp, strerror(errno));
    const int qwen2 = c->qkv_bias;
    fprintf(fp, "{\n");
    fprintf(fp, "  \"architectures\": [\"%s\"],\n", qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM");
    fprintf(fp, "  \"model_type\": \"%s\",\n", qwen2 ? "qwen2" : "llama");
    fprintf(fp, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n", c->dim, c->hidden_dim);
    fprintf(fp, "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n", c->n_layers, c->n_heads);
    fprintf(fp, "  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n", c->n_kv_heads, c->head_dim);
    fprintf(fp, "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n", c->vocab_size, c->max_seq_len);
    fprintf(fp, "  \"rope_theta\": %.17g,\n  \"rms_norm_eps\": %.17g,\n", c->rope_theta, c->norm_eps);
    fprintf(fp, "  \"tie_word_embeddings\": %s,\n", c->tied_embeddings ? "true" : "false");
    fprintf(fp, "  \"hidden_act\": \"silu\",\n");
    if (bos_id >= 0) fprintf(fp, "  \"bos_token_id\": %d,\n", bos_id);
    if (eos_id >= 0) fprintf(fp, "  \"eos_token_id\": %d,\n", eos_id);
    if (qwen2) fprintf(fp, "  \"use_sliding_window\": false,\n");
    else fprintf(fp, "  \"attention_bias\": false,\n  \"mlp_bias\": false,\n");
    fprintf(fp, "  \"initializer_range\": 0.02,\n  \"torch_dtype\": \"float32\"\n}\n");
    if (fclose(fp) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return error_set(err, "cannot write %s", path);
    }
    return 0;
}

typedef struct {
    const Model *m;
    float *scratch;
} SaveCtx;

static void fetch_tensor(void *vctx, int i, float *out) {
    SaveCtx *ctx = vctx;
    const Model *m = ctx->m;
    const ModelTensor *t = &m->tensors[i];
    const int heads = rope_heads(&m->config, t->kind);
    if (!heads) {
        model_tensor_to_host(m->params, t, out);
        return;
    }
    model_tensor_to_host(m->params, t, ctx->scratch);
    hf_rows_to_halves(out, ctx->scratch, heads, m->config.head_dim, t->ndim == 2 ? t->shape[1] : 1);
}

int hf_save(const Model *m, const char *dir, int bos_id, int eos_id, ErrorBuf *err) {
    if (make_dirs(dir, err) != 0) return -1;
    if (write_config(m, dir, bos_id, eos_id, err) != 0) return -1;
    const int n = m->n_tensors;
    const char **names = xcalloc((size_t)n, sizeof(char *));
    int *ndims = xcalloc((size_t)n, sizeof(int));
    int64_t(*shapes)[ST_MAX_DIMS] = xcalloc((size_t)n, sizeof *shapes);
    size_t biggest = 0;
    for (int i = 0; i < n; i++) {
        names[i] = m->tensors[i].name;
        ndims[i] = m->tensors[i].ndim;
        shapes[i][0] = m->tensors[i].shape[0];
        shapes[i][1] = m->tensors[i].shape[1];
        if (m->tensors[i].numel > biggest) biggest = m->tensors[i].numel;
    }
    SaveCtx ctx = {m, xmalloc(biggest * sizeof(float))};
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int rc = safetensors_write(path, n, names, ndims, (const int64_t(*)[ST_MAX_DIMS])shapes, fetch_tensor, &ctx, err);
    free(ctx.scratch);
    free(names);
    free(ndims);
    free(shapes);
    return rc;
}
