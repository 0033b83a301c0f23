// `asyncrl convert IN OUT [--format hf|llama2c]`: a model between formats. IN is a checkpoint
// (step_NNNNNN.h5), a Hugging Face directory (config.json + safetensors) or a llama2.c .bin; OUT
// is a Hugging Face directory (default; loads in transformers and vLLM) or a llama2.c .bin.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cli.h"
#include "io/checkpoint.h"
#include "model/hf.h"
#include "model/llama2c.h"
#include "ops.h"

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static Model *load_any(const char *in, ErrorBuf *err) {
    if (is_dir(in)) return hf_load(in, err);
    if (ends_with(in, ".h5") || checkpoint_is_hdf5(in)) return checkpoint_load_model(in, err);
    return llama2c_load(in, err);
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = "hf";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--format") == 0 && i + 1 < argc) format = argv[++i];
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else {
            fprintf(stderr, "error: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (!in || !out || (strcmp(format, "hf") != 0 && strcmp(format, "llama2c") != 0)) {
        fprintf(stderr, "usage: asyncrl convert IN OUT [--format hf|llama2c]\n"
                        "  IN: a checkpoint (.h5), a Hugging Face directory or a llama2.c .bin\n"
                        "  OUT: a Hugging Face directory (hf, the default) or a llama2.c .bin file\n");
        return 2;
    }
    ops_init(1);
    ErrorBuf err;
    Model *m = load_any(in, &err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    int rc = strcmp(format, "hf") == 0 ? hf_save(m, out, &err) : llama2c_save(m, out, &err);
    if (rc != 0) fprintf(stderr, "error: %s\n", err.msg);
    else {
        char shape[256];
        model_config_describe(&m->config, shape, sizeof shape);
        printf("wrote %s (%s): %s\n", out, format, shape);
    }
    model_free(m);
    ops_finalize();
    return rc ? 1 : 0;
}
