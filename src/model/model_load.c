// The model and tokenizer of a job config (see model_load.h).
#include "model/model_load.h"

#include <string.h>
#include <sys/stat.h>

#include "core/config.h"
#include "core/files.h"
#include "io/checkpoint.h"
#include "model/hf.h"
#include "model/llama2c.h"

int model_load_from_config(const Config *cfg, Model **model_out, Tokenizer **tok_out, ErrorBuf *err) {
    *model_out = NULL;
    *tok_out = NULL;
    Tokenizer *tok = tokenizer_load(cfg->model.tokenizer, err);
    if (!tok) return -1;
    Model *m = NULL;
    const char *source = cfg->model.source;
    if (strcmp(source, "init") == 0) {
        ModelConfig mc;
        if (model_config_from(cfg, tok->vocab_size, &mc, err) == 0 && (m = model_create(&mc, err)) != NULL)
            model_init_random(m, (uint64_t)cfg->run.seed, (float)cfg->model.init_std);
    } else if (strcmp(source, "llama2c") == 0) {
        m = llama2c_load(cfg->model.path, err);
    } else if (strcmp(source, "hf") == 0) {
        m = hf_load(cfg->model.path, err);
    } else if (strcmp(source, "checkpoint") == 0) {
        m = checkpoint_load_model(cfg->model.path, err);
    } else {
        error_set(err, "model.source = \"%s\" is not one of init, llama2c, hf, checkpoint", source);
    }
    if (m && tokenizer_check_model(tok, m->config.vocab_size, err) != 0) {
        model_free(m);
        m = NULL;
    }
    if (!m) {
        tokenizer_free(tok);
        return -1;
    }
    *model_out = m;
    *tok_out = tok;
    return 0;
}

int model_shape_from_config(const Config *cfg, ModelConfig *mc, ErrorBuf *err) {
    if (strcmp(cfg->model.source, "llama2c") == 0) return llama2c_read_config(cfg->model.path, mc, err);
    if (strcmp(cfg->model.source, "hf") == 0) return hf_read_config(cfg->model.path, mc, err);
    if (strcmp(cfg->model.source, "checkpoint") == 0) return checkpoint_read_config(cfg->model.path, mc, err);
    Tokenizer *t = tokenizer_load(cfg->model.tokenizer, err);
    if (!t) return -1;
    int rc = model_config_from(cfg, t->vocab_size, mc, err);
    tokenizer_free(t);
    return rc;
}

ModelFileKind model_file_kind(const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return MODEL_FILE_HF_DIR;
    const size_t n = strlen(path);
    if (file_is_hdf5(path) || (n > 3 && strcmp(path + n - 3, ".h5") == 0)) return MODEL_FILE_CHECKPOINT;
    return MODEL_FILE_LLAMA2C;
}

Model *model_load_file(const char *path, ErrorBuf *err) {
    switch (model_file_kind(path)) {
        case MODEL_FILE_HF_DIR: return hf_load(path, err);
        case MODEL_FILE_CHECKPOINT: return checkpoint_load_model(path, err);
        default: return llama2c_load(path, err);
    }
}
