// `asyncrl convert IN OUT [--format hf|llama2c]`: a model between formats. IN is a checkpoint
// (step_NNNNNN.h5), a Hugging Face directory (config.json + safetensors) or a llama2.c .bin; OUT
// is a Hugging Face directory (default; loads in transformers and vLLM; config.json names the
// tokenizer's BOS and EOS ids; a checkpoint's llama2.c tokenizer is copied in as tokenizer.bin,
// but no Hugging Face tokenizer is written) or a llama2.c .bin. OUT must not exist yet (or be an
// empty directory): a model already there is never overwritten.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/cli.h"
#include "core/config_types.h"
#include "core/files.h"
#include "core/json.h"
#include "io/checkpoint.h"
#include "model/hf.h"
#include "model/llama2c.h"
#include "model/model_load.h"
#include "model/tokenizer.h"
#include "ops.h"

// A checkpoint's llama2.c tokenizer (model.tokenizer of its config) into DIR/tokenizer.bin, where
// `asyncrl generate --model DIR` looks for it. Nothing for the byte tokenizer; a note when the
// file is not there from this directory. 0, or 1 when the copy failed.
static int copy_checkpoint_tokenizer(const char *checkpoint, const char *dir) {
    char tok[CFG_STR_MAX];
    ErrorBuf err;
    if (checkpoint_read_tokenizer(checkpoint, tok, sizeof tok, &err) != 0 || strcmp(tok, "byte") == 0) return 0;
    size_t len;
    char *bytes = file_read_all(tok, (size_t)1 << 30, &len, &err);
    if (!bytes) {
        printf("note: the checkpoint's tokenizer %s is not there from this directory; copy it to %s/tokenizer.bin "
               "for `asyncrl generate --model %s`\n", tok, dir, dir);
        return 0;
    }
    char path[4096], tmp[4100];
    snprintf(path, sizeof path, "%s/tokenizer.bin", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    const int ok = f && fwrite(bytes, 1, len, f) == len;
    free(bytes);
    if (!f || file_commit(f, ok, tmp, path, &err) != 0) {
        if (!f) fprintf(stderr, "error: cannot create %s: %s\n", tmp, strerror(errno));
        else fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    printf("copied the tokenizer %s to %s\n", tok, path);
    return 0;
}

// The BOS and EOS ids of the model's tokenizer, for config.json (-1 when unknown): a checkpoint's
// tokenizer (byte, or llama2.c's, whose ids are always 1 and 2); for a .bin, the byte
// tokenizer's when the vocabulary is its size (a model trained here with it), else llama2.c's;
// what a Hugging Face input's config.json says (a single id each; a list is left out).
static void special_ids(const char *in, ModelFileKind kind, int vocab_size, int *bos, int *eos) {
    *bos = *eos = -1;
    ErrorBuf err;
    if (kind == MODEL_FILE_CHECKPOINT) {
        char spec[CFG_STR_MAX];
        if (checkpoint_read_tokenizer(in, spec, sizeof spec, &err) != 0) return;
        Tokenizer *t = tokenizer_load(strcmp(spec, "byte") == 0 ? "byte" : spec, &err);
        if (t) *bos = t->bos_id, *eos = t->eos_id, tokenizer_free(t);
        else *bos = 1, *eos = 2;  // a llama2.c tokenizer not found from here: its ids are fixed
    } else if (kind == MODEL_FILE_LLAMA2C) {
        Tokenizer *byte = tokenizer_load("byte", &err);
        if (byte && byte->vocab_size == vocab_size) *bos = byte->bos_id, *eos = byte->eos_id;
        else *bos = 1, *eos = 2;
        tokenizer_free(byte);
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/config.json", in);
        size_t len;
        char *text = file_read_all(path, (size_t)1 << 24, &len, &err);
        Json *j = text ? json_parse(text, len, &err) : NULL;
        const Json *b = j ? json_get(j, "bos_token_id") : NULL, *e = j ? json_get(j, "eos_token_id") : NULL;
        if (b && b->type == JSON_NUMBER && b->number >= 0 && b->number < 1e9) *bos = (int)b->number;
        if (e && e->type == JSON_NUMBER && e->number >= 0 && e->number < 1e9) *eos = (int)e->number;
        json_free(j);
        free(text);
    }
}

// 0 when OUT is free to write: nothing there, or an empty directory (hf). Anything else is
// refused: convert never overwrites a model, nor mixes its files into another's directory.
static int check_output_free(const char *out, const char *format) {
    struct stat st;
    if (stat(out, &st) != 0) return 0;
    int empty_dir = 0;
    if (S_ISDIR(st.st_mode) && strcmp(format, "hf") == 0) {
        DIR *d = opendir(out);
        empty_dir = d != NULL;
        for (struct dirent *e; d && (e = readdir(d)) != NULL;)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty_dir = 0;
        if (d) closedir(d);
    }
    if (empty_dir) return 0;
    fprintf(stderr, "error: %s already exists (%s): convert does not overwrite; remove it or give another OUT\n", out,
            !S_ISDIR(st.st_mode) ? "a file" : strcmp(format, "hf") == 0 ? "a directory that is not empty" : "a directory");
    return 1;
}

#define CONVERT_USAGE                                                                      \
    "usage: asyncrl convert IN OUT [--format hf|llama2c]\n"                               \
    "  IN: a checkpoint (.h5), a Hugging Face directory or a llama2.c .bin\n"             \
    "  OUT: a Hugging Face directory (hf) or a llama2.c .bin file (llama2c), not there yet; without\n" \
    "       --format, an OUT ending in .bin is llama2c, anything else hf\n"

// A usage error: the message, then the usage; exit status 2.
static int convert_usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "error: ");
    fprintf(stderr, msg, arg);
    fprintf(stderr, "\n" CONVERT_USAGE);
    return 2;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            printf(CONVERT_USAGE);
            return 0;
        } else if (strcmp(a, "--format") == 0) {
            if (i + 1 >= argc) return convert_usage_error("%s needs a value: hf or llama2c", a);
            format = argv[++i];
            if (strcmp(format, "hf") != 0 && strcmp(format, "llama2c") != 0)
                return convert_usage_error("--format '%s' is not a format: use hf or llama2c", format);
        } else if (strncmp(a, "--", 2) == 0) {
            return convert_usage_error("unknown option '%s'", a);
        } else if (!in) {
            in = a;
        } else if (!out) {
            out = a;
        } else {
            return convert_usage_error("unexpected argument '%s': give one input and one output", a);
        }
    }
    if (!in || !out) return convert_usage_error("%s", !in ? "give the model to convert (IN) and where to write it (OUT)"
                                                          : "give where to write the model (OUT)");
    if (!format) {  // an OUT named *.bin is a llama2.c file, anything else a Hugging Face directory
        const size_t n = strlen(out);
        format = n > 4 && strcmp(out + n - 4, ".bin") == 0 ? "llama2c" : "hf";
    }
    if (check_output_free(out, format) != 0) return 2;
    ops_init(1);
    ErrorBuf err;
    Model *m = model_load_file(in, &err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    int bos, eos;
    special_ids(in, model_file_kind(in), m->config.vocab_size, &bos, &eos);
    int rc = strcmp(format, "hf") == 0 ? hf_save(m, out, bos, eos, &err) : llama2c_save(m, out, &err);
    if (rc != 0) fprintf(stderr, "error: %s\n", err.msg);
    else {
        char shape[256];
        model_config_describe(&m->config, shape, sizeof shape);
        printf("wrote %s (%s): %s\n", out, format, shape);
        if (strcmp(format, "hf") == 0 && model_file_kind(in) == MODEL_FILE_CHECKPOINT)
            rc = copy_checkpoint_tokenizer(in, out);
    }
    model_free(m);
    ops_finalize();
    return rc ? 1 : 0;
}
