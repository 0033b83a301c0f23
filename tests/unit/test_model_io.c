// Model files and untrusted input: HF (safetensors + config.json) and llama2.c writers round
// trip bitwise; every kind of bad input (truncated or inconsistent .bin, bad safetensors
// headers, unsupported config.json features, shapes that do not divide, tokenizer / model
// vocabulary mismatch, batches that break the packing rules) gives an error that says what is
// wrong, never a crash. Set ASYNCRL_EXPORT_DIR=DIR to also write the llama fixture through
// hf_save into DIR (for make_model_fixtures.py --check-export DIR, the transformers check).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/test_util.h"
#include "core/config.h"
#include "core/json.h"
#include "model/hf.h"
#include "model/llama2c.h"
#include "model/model.h"
#include "model/model_load.h"
#include "model/safetensors.h"
#include "ops.h"

static char g_tmp[64];

static int setup(void **state) {
    (void)state;
    ops_init(2);
    snprintf(g_tmp, sizeof g_tmp, "/tmp/asyncrl_io_XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp_path(const char *name) {
    static char path[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(path[k], sizeof path[k], "%s/%s", g_tmp, name);
    return path[k];
}

static void write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static Model *random_model_rope(int tied, int bias, int kv_heads, double rope_theta, double norm_eps) {
    ModelConfig c = {.dim = 24, .n_layers = 2, .n_heads = 4, .n_kv_heads = kv_heads, .hidden_dim = 40,
                     .vocab_size = 30, .max_seq_len = 16, .rope_theta = rope_theta, .norm_eps = norm_eps,
                     .tied_embeddings = tied, .qkv_bias = bias};
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    assert_non_null(m);
    model_init_random(m, 11, 0.5f);
    // Make biases and norms non-trivial so a mixed-up tensor shows.
    float *h = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(h, m->params, m->n_params * sizeof(float));
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].ndim == 1)
            for (size_t j = 0; j < m->tensors[i].numel; j++) h[m->tensors[i].offset + j] += 0.01f * (float)(i + j);
    ops_copy_to_device(m->params, h, m->n_params * sizeof(float));
    free(h);
    return m;
}

// A RoPE base and RMSNorm epsilon other than llama2.c's, so that a format that lost them shows.
static Model *random_model(int tied, int bias, int kv_heads) { return random_model_rope(tied, bias, kv_heads, 5000, 1e-6); }
// A model a llama2.c file can hold (its fixed RoPE base and epsilon).
static Model *llama2c_model(int tied) {
    return random_model_rope(tied, 0, 2, LLAMA2C_ROPE_THETA, LLAMA2C_NORM_EPS);
}

static void assert_same_params(const Model *a, const Model *b) {
    assert_int_equal(a->n_params, b->n_params);
    assert_memory_equal(&a->config, &b->config, sizeof(ModelConfig));
    float *pa = malloc(a->n_params * 4), *pb = malloc(a->n_params * 4);
    ops_copy_to_host(pa, a->params, a->n_params * 4);
    ops_copy_to_host(pb, b->params, a->n_params * 4);
    assert_memory_equal(pa, pb, a->n_params * 4);
    free(pa), free(pb);
}

// ---------------------------------------------------------------------------------------
// Round trips.

static void test_hf_round_trip(void **state) {
    (void)state;
    const int variants[3][3] = {{0, 0, 2}, {1, 0, 1}, {0, 1, 2}};  // untied GQA, tied MQA, Qwen2 biases
    for (int v = 0; v < 3; v++) {
        Model *m = random_model(variants[v][0], variants[v][1], variants[v][2]);
        char dir[64];
        snprintf(dir, sizeof dir, "hf%d", v);
        ErrorBuf err;
        assert_int_equal(hf_save(m, tmp_path(dir), -1, -1, &err), 0);
        Model *back = hf_load(tmp_path(dir), &err);
        if (!back) print_error("%s\n", err.msg);
        assert_non_null(back);
        assert_same_params(m, back);
        // The written header is valid and F32, q rows are back in HF order (differ from ours).
        char file[96];
        snprintf(file, sizeof file, "%s/model.safetensors", dir);
        SafetensorsFile f;
        assert_int_equal(safetensors_open(&f, tmp_path(file), &err), 0);
        assert_int_equal(f.n_tensors, m->n_tensors);
        const StTensor *q = safetensors_find(&f, "model.layers.0.self_attn.q_proj.weight");
        assert_non_null(q);
        assert_int_equal(q->dtype, ST_F32);
        float *hf_q = malloc(q->numel * 4), *ours = malloc(q->numel * 4), *ours2 = malloc(q->numel * 4);
        assert_int_equal(safetensors_read_f32(&f, q, hf_q, &err), 0);
        model_tensor_to_host(m->params, model_find_tensor(m, q->name), ours);
        assert_memory_not_equal(hf_q, ours, q->numel * 4);
        hf_rows_to_interleaved(ours2, hf_q, 4, 6, 24);
        assert_memory_equal(ours2, ours, q->numel * 4);
        free(hf_q), free(ours), free(ours2);
        safetensors_close(&f);
        model_free(m), model_free(back);
    }
    const char *dir = getenv("ASYNCRL_EXPORT_DIR");
    if (dir && dir[0]) {
        ErrorBuf err;
        Model *m = hf_load(test_fixture("model/llama"), &err);
        assert_non_null(m);
        assert_int_equal(hf_save(m, dir, -1, -1, &err), 0);
        printf("# wrote the llama fixture through hf_save to %s\n", dir);
        model_free(m);
    }
}

static void test_llama2c_round_trip(void **state) {
    (void)state;
    for (int tied = 0; tied < 2; tied++) {
        Model *m = llama2c_model(tied);
        ErrorBuf err;
        const char *path = tmp_path("m.bin");
        assert_int_equal(llama2c_save(m, path, &err), 0);
        Model *back = llama2c_load(path, &err);
        if (!back) print_error("%s\n", err.msg);
        assert_non_null(back);
        // llama2.c fixes eps 1e-5 and theta 10000: compare the weights.
        float *pa = malloc(m->n_params * 4), *pb = malloc(m->n_params * 4);
        ops_copy_to_host(pa, m->params, m->n_params * 4);
        ops_copy_to_host(pb, back->params, m->n_params * 4);
        assert_int_equal(m->n_params, back->n_params);
        assert_memory_equal(pa, pb, m->n_params * 4);
        assert_int_equal(back->config.tied_embeddings, tied);
        free(pa), free(pb);
        model_free(m), model_free(back);
    }
    Model *bias = random_model(0, 1, 2);
    ErrorBuf err;
    assert_int_equal(llama2c_save(bias, tmp_path("b.bin"), &err), -1);
    assert_non_null(strstr(err.msg, "cannot hold q/k/v biases"));
    model_free(bias);
    Model *rope = random_model(0, 0, 2);  // rope_theta 5000: a .bin would be read with 10000
    assert_int_equal(llama2c_save(rope, tmp_path("r.bin"), &err), -1);
    assert_non_null(strstr(err.msg, "cannot hold rope_theta = 5000 / norm_eps = 1e-06"));
    model_free(rope);
}

// A write that fails part-way (a file-size limit, as a full disk): both writers report it, leave
// no temporary file and keep the file that was there before.
static void test_writers_on_full_disk(void **state) {
    (void)state;
    Model *m = llama2c_model(0);
    ErrorBuf err;
    const char *bin = tmp_path("full.bin");
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tmp_path("full_hf"));
    assert_int_equal(llama2c_save(m, bin, &err), 0);
    struct stat before;
    assert_int_equal(stat(bin, &before), 0);
    struct rlimit old, small;
    getrlimit(RLIMIT_FSIZE, &old);
    small = (struct rlimit){.rlim_cur = 2048, .rlim_max = old.rlim_max};
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    const int rc_bin = llama2c_save(m, bin, &err);
    char bin_msg[sizeof err.msg];
    snprintf(bin_msg, sizeof bin_msg, "%s", err.msg);
    const int rc_hf = hf_save(m, dir, -1, -1, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc_bin, -1);
    assert_non_null(strstr(bin_msg, "cannot write"));
    assert_non_null(strstr(bin_msg, "full.bin"));
    assert_int_equal(rc_hf, -1);
    assert_non_null(strstr(err.msg, "cannot write"));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", bin);
    assert_int_not_equal(access(tmp, F_OK), 0);
    snprintf(tmp, sizeof tmp, "%s/model.safetensors.tmp", dir);
    assert_int_not_equal(access(tmp, F_OK), 0);
    struct stat after;
    assert_int_equal(stat(bin, &after), 0);
    assert_int_equal(after.st_size, before.st_size);  // the old file intact
    model_free(m);
}

// ---------------------------------------------------------------------------------------
// Bad llama2.c files.

static void expect_bin_error(const void *data, size_t len, const char *needle) {
    const char *path = tmp_path("bad.bin");
    write_file(path, data, len);
    ErrorBuf err = {{0}};
    Model *m = llama2c_load(path, &err);
    if (m || !strstr(err.msg, needle)) print_error("expected \"%s\", got \"%s\"\n", needle, err.msg);
    assert_null(m);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_llama2c_files(void **state) {
    (void)state;
    Model *m = llama2c_model(0);
    ErrorBuf err;
    const char *path = tmp_path("good.bin");
    assert_int_equal(llama2c_save(m, path, &err), 0);
    size_t len;
    char *good = test_read_file(path, &len);
    assert_non_null(good);
    expect_bin_error(good, len - 1, "but the file has");   // truncated by one byte
    char *longer = malloc(len + 4);
    memcpy(longer, good, len);
    memset(longer + len, 0, 4);
    expect_bin_error(longer, len + 4, "but the file has");  // trailing bytes
    free(longer);
    expect_bin_error(good, 20, "too short for a llama2.c model");
    int32_t h[7];
    memcpy(h, good, sizeof h);
    int32_t bad[7];
    memcpy(bad, h, sizeof h);
    bad[3] = 5;  // heads: 24 % 5 != 0
    expect_bin_error(bad, sizeof bad, "not divisible by n_heads = 5");
    memcpy(bad, h, sizeof h);
    bad[0] = 20, bad[3] = 4;  // head size 5: odd
    expect_bin_error(bad, sizeof bad, "is odd");
    memcpy(bad, h, sizeof h);
    bad[4] = 3;  // 4 heads, 3 kv heads
    expect_bin_error(bad, sizeof bad, "not a multiple of n_kv_heads = 3");
    memcpy(bad, h, sizeof h);
    bad[2] = -1;
    expect_bin_error(bad, sizeof bad, "n_layers = -1 is out of range");
    memcpy(bad, h, sizeof h);
    bad[5] = INT32_MIN;
    expect_bin_error(bad, sizeof bad, "vocab_size = -1 is out of range");
    memcpy(bad, h, sizeof h);
    bad[0] = 1 << 30;  // huge dim: rejected before any allocation
    expect_bin_error(bad, sizeof bad, "dim = 1073741824 is out of range");
    memcpy(bad, h, sizeof h);
    bad[1] = 0;
    expect_bin_error(bad, sizeof bad, "both must be positive");
    assert_null(llama2c_load(tmp_path("missing.bin"), &err));
    assert_non_null(strstr(err.msg, "cannot open the model file"));
    assert_non_null(strstr(err.msg, strerror(ENOENT)));  // and why
    free(good);
    model_free(m);
}

// ---------------------------------------------------------------------------------------
// Bad safetensors files and HF directories.

// A safetensors file from a header text and `data_len` zero bytes of data.
static void write_safetensors(const char *path, const char *header, size_t data_len, uint64_t claimed_len) {
    size_t hl = strlen(header);
    unsigned char *buf = calloc(1, 8 + hl + data_len);
    uint64_t l = claimed_len ? claimed_len : hl;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(l >> (8 * i));
    memcpy(buf + 8, header, hl);
    write_file(path, buf, 8 + hl + data_len);
    free(buf);
}

static void expect_st_error(const char *header, size_t data_len, uint64_t claimed_len, const char *needle) {
    const char *path = tmp_path("bad.safetensors");
    write_safetensors(path, header, data_len, claimed_len);
    SafetensorsFile f;
    ErrorBuf err = {{0}};
    int rc = safetensors_open(&f, path, &err);
    if (rc == 0 || !strstr(err.msg, needle)) print_error("expected \"%s\", got \"%s\"\n", needle, err.msg);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_safetensors(void **state) {
    (void)state;
    // A good one first: two tensors, F32 and BF16, converted.
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[8,12]},\"__metadata__\":{}}";
    const char *path = tmp_path("good.safetensors");
    size_t hl = strlen(good);
    unsigned char *buf = calloc(1, 8 + hl + 12);
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, good, hl);
    float a[2] = {1.5f, -2.0f};
    memcpy(buf + 8 + hl, a, 8);
    buf[8 + hl + 8] = 0x80, buf[8 + hl + 9] = 0x3f;    // bf16 1.0
    buf[8 + hl + 10] = 0x40, buf[8 + hl + 11] = 0xc0;  // bf16 -3.0
    write_file(path, buf, 8 + hl + 12);
    free(buf);
    SafetensorsFile f;
    ErrorBuf err;
    assert_int_equal(safetensors_open(&f, path, &err), 0);
    assert_int_equal(f.n_tensors, 2);
    float out[2];
    assert_int_equal(safetensors_read_f32(&f, safetensors_find(&f, "a"), out, &err), 0);
    assert_true(out[0] == 1.5f && out[1] == -2.0f);
    assert_int_equal(safetensors_read_f32(&f, safetensors_find(&f, "b"), out, &err), 0);
    assert_true(out[0] == 1.0f && out[1] == -3.0f);
    safetensors_close(&f);

    const char *t1 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    expect_st_error(t1, 8, 1000000, "header length 1000000 is beyond the file size");
    expect_st_error(t1, 8, (uint64_t)1 << 62, "is beyond the file size");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",", 8, 0, "the header is not valid JSON");
    expect_st_error("[1,2]", 0, 0, "not a JSON object");
    expect_st_error(t1, 4, 0, "outside the 4 data bytes");                       // data cut short
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,4]}}", 8, 0, "outside");
    expect_st_error("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, 0,
                    "has dtype I64; supported dtypes are F32, BF16 and F16");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0,
                    "make 12 bytes but data_offsets span 8");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, 0,
                    "not a non-negative integer");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
                    "\"data_offsets\":[0,8]}}", 8, 0, "overflows");
    expect_st_error("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "has no \"dtype\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, 0, "needs \"data_offsets\"");
    expect_st_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, "appears twice");
    expect_st_error("", 0, 0, "not valid JSON");  // an empty header
    write_file(tmp_path("short.safetensors"), "abc", 3);
    assert_int_equal(safetensors_open(&f, tmp_path("short.safetensors"), &err), -1);
    assert_non_null(strstr(err.msg, "3 bytes is too short for a safetensors file"));
    assert_int_equal(safetensors_open(&f, tmp_path("nothing.safetensors"), &err), -1);
    assert_non_null(strstr(err.msg, "cannot open"));
}

// An HF directory: the saved random model with config.json edited by `edit` (a replacement of
// one substring), loaded; the error must contain needle.
static void expect_hf_error(const char *from, const char *to, const char *needle) {
    Model *m = random_model(0, 0, 2);
    ErrorBuf err = {{0}};
    const char *dir = tmp_path("hfbad");
    assert_int_equal(hf_save(m, dir, -1, -1, &err), 0);
    model_free(m);
    char cfg_path[300];
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    if (from) {
        size_t len;
        char *text = test_read_file(cfg_path, &len);
        char *at = strstr(text, from);
        assert_non_null(at);
        char *edited = malloc(len + strlen(to) + 1);
        size_t head = (size_t)(at - text);
        memcpy(edited, text, head);
        strcpy(edited + head, to);
        strcat(edited, at + strlen(from));
        write_text(cfg_path, edited);
        free(text), free(edited);
    }
    Model *bad = hf_load(dir, &err);
    if (bad || !strstr(err.msg, needle)) print_error("expected \"%s\", got \"%s\"\n", needle, err.msg);
    assert_null(bad);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_hf_directories(void **state) {
    (void)state;
    expect_hf_error("\"model_type\": \"llama\"", "\"model_type\": \"mistral\"", "model_type \"mistral\"");
    expect_hf_error("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", "hidden_act \"gelu\" is not supported");
    expect_hf_error("\"attention_bias\": false", "\"attention_bias\": true", "attention_bias = true");
    expect_hf_error("\"mlp_bias\": false", "\"mlp_bias\": true", "mlp_bias = true");
    expect_hf_error("\"rope_theta\"", "\"rope_scaling\": {\"type\": \"linear\"}, \"rope_theta\"",
                    "rope_scaling is set");
    expect_hf_error("\"rope_theta\"", "\"rope_parameters\": {\"rope_type\": \"yarn\"}, \"rope_theta\"",
                    "rope_type \"yarn\" is not supported");
    expect_hf_error("\"hidden_size\": 24,", "", "missing \"hidden_size\"");
    expect_hf_error("\"hidden_size\": 24", "\"hidden_size\": \"big\"", "\"hidden_size\" must be an integer");
    // Values of the wrong type or beyond int are errors, not defaults or wrapped numbers.
    expect_hf_error("\"hidden_size\": 24", "\"hidden_size\": 1099511627776",
                    "\"hidden_size\" = 1099511627776 is out of range");
    expect_hf_error("\"max_position_embeddings\"", "\"max_position_embeddings\": -5000000000, \"x\"",
                    "\"max_position_embeddings\" = -5000000000 is out of range");
    expect_hf_error("\"rms_norm_eps\"", "\"rms_norm_eps\": \"1e-5\", \"x\"", "\"rms_norm_eps\" must be a number");
    expect_hf_error("\"rope_theta\"", "\"rope_parameters\": {\"rope_theta\": [1]}, \"x\"",
                    "\"rope_theta\" must be a number");
    expect_hf_error("\"tie_word_embeddings\"", "\"tie_word_embeddings\": \"yes\", \"x\"",
                    "\"tie_word_embeddings\" must be true or false");
    expect_hf_error("\"attention_bias\": false", "\"attention_bias\": 1", "\"attention_bias\" must be true or false");
    // Shapes that do not divide (head_dim removed so it is derived from hidden_size).
    expect_hf_error("\"num_attention_heads\": 4,\n  \"num_key_value_heads\": 2,\n  \"head_dim\": 6",
                    "\"num_attention_heads\": 5,\n  \"num_key_value_heads\": 5", "not divisible by n_heads = 5");
    expect_hf_error("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3", "not a multiple of n_kv_heads = 3");
    expect_hf_error("\"head_dim\": 6", "\"head_dim\": 7", "is odd");
    // The weights disagree with config.json.
    expect_hf_error("\"intermediate_size\": 40", "\"intermediate_size\": 41",
                    "tensor \"model.layers.0.mlp.gate_proj.weight\" has shape [40, 24], config.json implies [41, 24]");
    expect_hf_error("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3",
                    "tensor \"model.layers.2.input_layernorm.weight\" is missing");
    expect_hf_error("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1",
                    "unexpected tensor \"model.layers.1.");
    expect_hf_error("\"model_type\": \"llama\"", "\"model_type\": \"qwen2\"",
                    "tensor \"model.layers.0.self_attn.q_proj.bias\" is missing");
    ErrorBuf err;
    assert_null(hf_load(tmp_path("no_such_dir"), &err));
    assert_non_null(strstr(err.msg, "cannot open"));
    const char *empty = tmp_path("empty_dir");  // a directory, but not a model
    assert_int_equal(mkdir(empty, 0700), 0);
    assert_null(hf_load(empty, &err));
    assert_non_null(strstr(err.msg, "has no config.json: a model is a Hugging Face directory"));
    rmdir(empty);
}

// Sharded checkpoints: an index naming files outside the directory is refused; a real
// two-file split loads.
static void test_hf_sharded(void **state) {
    (void)state;
    Model *m = random_model(1, 0, 2);
    ErrorBuf err;
    const char *dir = tmp_path("sharded");
    assert_int_equal(hf_save(m, dir, -1, -1, &err), 0);
    char from[300], to[300], index[300];
    snprintf(from, sizeof from, "%s/model.safetensors", dir);
    snprintf(to, sizeof to, "%s/part-1.safetensors", dir);
    assert_int_equal(rename(from, to), 0);
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    // Every tensor in part-1 (one shard named by the index).
    char *text = malloc(100000);
    size_t len = (size_t)sprintf(text, "{\"metadata\":{},\"weight_map\":{");
    for (int i = 0; i < m->n_tensors; i++)
        len += (size_t)sprintf(text + len, "%s\"%s\":\"part-1.safetensors\"", i ? "," : "", m->tensors[i].name);
    strcpy(text + len, "}}");
    write_text(index, text);
    Model *back = hf_load(dir, &err);
    if (!back) print_error("%s\n", err.msg);
    assert_non_null(back);
    assert_same_params(m, back);
    model_free(back);
    write_text(index, "{\"weight_map\":{\"model.norm.weight\":\"../../etc/passwd\"}}");
    assert_null(hf_load(dir, &err));
    assert_non_null(strstr(err.msg, "must name a file inside the directory"));
    write_text(index, "{\"weight_map\":{\"model.norm.weight\":\"missing.safetensors\"}}");
    assert_null(hf_load(dir, &err));
    assert_non_null(strstr(err.msg, "cannot open"));
    write_text(index, "{\"nothing\":1}");
    assert_null(hf_load(dir, &err));
    assert_non_null(strstr(err.msg, "missing \"weight_map\""));
    free(text);
    model_free(m);
}

// ---------------------------------------------------------------------------------------
// Shapes, batches, configs.

static void test_config_validation(void **state) {
    (void)state;
    ErrorBuf err;
    ModelConfig c = {.dim = 30, .n_layers = 1, .n_heads = 4, .vocab_size = 10, .max_seq_len = 8, .rope_theta = 1e4,
                     .norm_eps = 1e-5};
    assert_null(model_create(&c, &err));
    assert_non_null(strstr(err.msg, "dim = 30 is not divisible by n_heads = 4"));
    c.dim = 12;  // head 3: odd
    assert_null(model_create(&c, &err));
    assert_non_null(strstr(err.msg, "head_dim = 3 is odd"));
    c.dim = 16, c.n_kv_heads = 3;
    assert_null(model_create(&c, &err));
    assert_non_null(strstr(err.msg, "n_heads = 4 is not a multiple of n_kv_heads = 3"));
    c.n_kv_heads = 0, c.vocab_size = 0;
    assert_null(model_create(&c, &err));
    assert_non_null(strstr(err.msg, "vocab_size = 0 is out of range"));
    c.vocab_size = 10, c.norm_eps = 0;
    assert_null(model_create(&c, &err));
    assert_non_null(strstr(err.msg, "norm_eps"));
    c.norm_eps = 1e-5;
    Model *m = model_create(&c, &err);
    assert_non_null(m);
    assert_int_equal(m->config.n_kv_heads, 4);
    assert_int_equal(m->config.head_dim, 4);
    assert_int_equal(m->config.hidden_dim, model_hidden_dim_rule(16));
    // Llama's rule: 4*288 = 1152 -> 768 -> 768; 4*64 = 256 -> 170 -> 192.
    assert_int_equal(model_hidden_dim_rule(288), 768);
    assert_int_equal(model_hidden_dim_rule(64), 192);
    char line[256];
    model_config_describe(&m->config, line, sizeof line);
    assert_non_null(strstr(line, "dim 16, 1 layers, 4 heads (4 kv, head 4)"));
    model_free(m);
}

static void test_bad_batches(void **state) {
    (void)state;
    Model *m = random_model(0, 0, 2);  // vocab 30, max_seq_len 16
    ErrorBuf err;
    int32_t tok[20] = {0}, pos[20], tgt[20] = {0};
    float logp[20];
    for (int i = 0; i < 20; i++) pos[i] = i % 10;
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 5, 1.0f, logp, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "training = 1"));
    assert_int_equal(model_reserve(m, 12, 1, &err), 0);
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 12, 1.0f, logp, NULL, &err), 0);
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 13, 1.0f, logp, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "a pass of 13 tokens does not fit: this model was reserved for 1..12"));
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 0, 1.0f, logp, NULL, &err), -1);
    tok[3] = 30;
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 5, 1.0f, logp, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "token 30 at row 3 is outside the vocabulary [0, 30)"));
    tok[3] = 0, tgt[2] = -2;
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 5, 1.0f, logp, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "target -2 at row 2"));
    tgt[2] = -1;  // allowed: no target
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 5, 1.0f, logp, NULL, &err), 0);
    assert_true(logp[2] == 0.0f);
    pos[4] = 7;
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 5, 1.0f, logp, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "positions at row 4 go 3 -> 7"));
    pos[4] = 4, pos[0] = 1;
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 5, 1.0f, logp, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "positions at row 0"));
    pos[0] = 0;
    assert_int_equal(model_forward_train(m, tok, pos, tgt, 5, 0.0f, logp, NULL, &err), -1);
    assert_non_null(strstr(err.msg, "temperature"));
    // A sample longer than max_seq_len (16).
    assert_int_equal(model_reserve(m, 20, 0, &err), 0);
    int32_t longpos[20];
    for (int i = 0; i < 20; i++) longpos[i] = i;
    float logits[30];
    assert_int_equal(model_forward_logits(m, tok, longpos, 20, 0, logits, &err), -1);
    assert_non_null(strstr(err.msg, "position 16 at row 16 is outside [0, 16)"));
    assert_int_equal(model_reserve(m, 0, 0, &err), -1);
    assert_non_null(strstr(err.msg, "out of range"));
    model_free(m);
}

static void test_load_from_config(void **state) {
    (void)state;
    Config cfg;
    config_defaults(&cfg);
    Model *m;
    Tokenizer *t;
    ErrorBuf err;
    // init with the byte tokenizer: vocabulary from the tokenizer, Llama hidden rule.
    assert_int_equal(model_load_from_config(&cfg, &m, &t, &err), 0);
    assert_int_equal(m->config.vocab_size, 259);
    assert_int_equal(m->config.dim, cfg.model.dim);
    assert_int_equal(m->config.hidden_dim, model_hidden_dim_rule(cfg.model.dim));
    model_free(m);
    tokenizer_free(t);
    cfg.model.n_heads = 5;
    assert_int_equal(model_load_from_config(&cfg, &m, &t, &err), -1);
    assert_non_null(strstr(err.msg, "not divisible by n_heads = 5"));
    assert_null(m);
    cfg.model.n_heads = 4;
    cfg.model.vocab_size = 300;  // an explicit vocabulary that does not fit the tokenizer
    assert_int_equal(model_load_from_config(&cfg, &m, &t, &err), -1);
    assert_non_null(strstr(err.msg, "the tokenizer has 259 tokens but the model's vocabulary has 300"));
    const char *bin = test_model_file("stories260K.bin");
    if (bin) {
        cfg.model.vocab_size = 0;
        snprintf(cfg.model.source, sizeof cfg.model.source, "llama2c");
        snprintf(cfg.model.path, sizeof cfg.model.path, "%s", bin);
        assert_int_equal(model_load_from_config(&cfg, &m, &t, &err), -1);  // byte tokenizer, 512-token model
        assert_non_null(strstr(err.msg, "the tokenizer has 259 tokens but the model's vocabulary has 512"));
        const char *tok = test_model_file("tok512.bin");
        if (tok) {
            snprintf(cfg.model.tokenizer, sizeof cfg.model.tokenizer, "%s", tok);
            assert_int_equal(model_load_from_config(&cfg, &m, &t, &err), 0);
            assert_int_equal(m->config.n_layers, 5);
            model_free(m);
            tokenizer_free(t);
        }
    }
    snprintf(cfg.model.source, sizeof cfg.model.source, "hf");
    snprintf(cfg.model.path, sizeof cfg.model.path, "%s", test_fixture("model/qwen2"));
    snprintf(cfg.model.tokenizer, sizeof cfg.model.tokenizer, "byte");
    assert_int_equal(model_load_from_config(&cfg, &m, &t, &err), -1);
    assert_non_null(strstr(err.msg, "the tokenizer has 259 tokens but the model's vocabulary has 64"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_round_trip),      cmocka_unit_test(test_llama2c_round_trip),
        cmocka_unit_test(test_bad_llama2c_files),  cmocka_unit_test(test_bad_safetensors),
        cmocka_unit_test(test_bad_hf_directories), cmocka_unit_test(test_hf_sharded),
        cmocka_unit_test(test_config_validation),  cmocka_unit_test(test_bad_batches),
        cmocka_unit_test(test_load_from_config),   cmocka_unit_test(test_writers_on_full_disk),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
