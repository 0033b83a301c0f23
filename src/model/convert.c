// `asyncrl convert IN OUT [--format hf|llama2c] [--tokenizer T]`: a model between formats. IN is
// a checkpoint (step_NNNNNN.h5), a Hugging Face directory (config.json + safetensors) or a
// llama2.c .bin; OUT is a Hugging Face directory (default; loads in transformers and vLLM:
// config.json names the tokenizer's BOS and EOS ids, and the model's tokenizer is written as
// tokenizer.json (model/hf_tokenizer.h), a llama2.c one also as tokenizer.bin; a Hugging Face
// input's tokenizer files are copied) or a llama2.c .bin. OUT must not exist yet (or be an
// empty directory): a model already there is never overwritten.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cli.h"
#include "core/config_types.h"
#include "core/files.h"
#include "core/json.h"
#include "io/checkpoint.h"
#include "model/hf.h"
#include "model/hf_tokenizer.h"
#include "model/llama2c.h"
#include "model/model_load.h"
#include "model/tokenizer.h"
#include "ops.h"

// The tokenizer files an HF directory may hold: those convert copies from an HF input (and
// writes, in part) and removes again when it fails.
static const char *const TOKENIZER_FILES[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                              "tokenizer.model", "tokenizer.bin", "generation_config.json"};
#define N_TOKENIZER_FILES (sizeof TOKENIZER_FILES / sizeof TOKENIZER_FILES[0])

// Copies file src to dir/name (atomically). 0, or 1 after an error message.
static int copy_file(const char *src, const char *dir, const char *name) {
    ErrorBuf err;
    size_t len;
    char *bytes = file_read_all(src, (size_t)1 << 30, &len, &err);
    if (!bytes) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    char path[4096], tmp[4100];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    const int ok = f && fwrite(bytes, 1, len, f) == len;
    free(bytes);
    if (!f || file_commit(f, ok, tmp, path, &err) != 0) {
        if (!f) fprintf(stderr, "error: cannot create %s: %s\n", tmp, strerror(errno));
        else fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    return 0;
}

// The model's tokenizer spec ("byte" or a llama2.c tokenizer.bin), "" when unknown: --tokenizer
// when given; a checkpoint's model.tokenizer; for a .bin, the byte tokenizer when the vocabulary
// is its size (a model trained here with it); the tokenizer.bin of a Hugging Face input that
// has no tokenizer.json (one written before convert wrote them). An HF input with a
// tokenizer.json brings its own files.
static void find_tokenizer(const char *in, ModelFileKind kind, int vocab_size, const char *given, char *spec,
                           size_t size) {
    ErrorBuf err;
    char path[4096];
    spec[0] = '\0';
    if (given) {
        snprintf(spec, size, "%s", given);
    } else if (kind == MODEL_FILE_CHECKPOINT) {
        if (checkpoint_read_tokenizer(in, spec, size, &err) != 0) spec[0] = '\0';
    } else if (kind == MODEL_FILE_LLAMA2C) {
        Tokenizer *byte = tokenizer_load("byte", &err);
        if (byte && byte->vocab_size == vocab_size) snprintf(spec, size, "byte");
        tokenizer_free(byte);
    } else {
        snprintf(path, sizeof path, "%s/tokenizer.json", in);
        if (access(path, F_OK) == 0) return;
        snprintf(path, sizeof path, "%s/tokenizer.bin", in);
        if (access(path, F_OK) == 0 && snprintf(spec, size, "%s", path) >= (int)size) spec[0] = '\0';
    }
}

// The tokenizer of spec for a model of vocab_size ids, or NULL with err set.
static Tokenizer *load_tokenizer(const char *spec, int vocab_size, ErrorBuf *err) {
    Tokenizer *t = tokenizer_load(spec, err);
    if (t && t->vocab_size != vocab_size) {
        error_set(err, "the tokenizer %s has %d tokens but the model's vocabulary has %d: give the tokenizer the model "
                       "was trained with",
                  spec, t->vocab_size, vocab_size);
        tokenizer_free(t);
        return NULL;
    }
    return t;
}

// The BOS and EOS ids for config.json (-1 when unknown): the tokenizer's; else llama2.c's 1 and 2
// for a checkpoint or .bin (whatever llama2.c tokenizer it has, those are its ids); what a
// Hugging Face input's config.json says (a single id each; a list is left out).
static void special_ids(const char *in, ModelFileKind kind, const Tokenizer *t, int *bos, int *eos) {
    *bos = *eos = -1;
    if (t) {
        *bos = t->bos_id, *eos = t->eos_id;
    } else if (kind != MODEL_FILE_HF_DIR) {
        *bos = 1, *eos = 2;
    } else {
        ErrorBuf err;
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

// The tokenizer files of a Hugging Face directory OUT: from the tokenizer when known (its
// tokenizer.json and tokenizer_config.json, and a llama2.c tokenizer.bin as it is, where
// `asyncrl generate --model OUT` looks for it); the files of a Hugging Face input; else a note
// (why: the reason the tokenizer found could not be used, or ""). 0, or 1 after an error.
static int write_tokenizer_files(const char *in, ModelFileKind kind, const Tokenizer *t, const char *spec,
                                 const char *why, int max_seq_len, const char *out) {
    if (t) {
        ErrorBuf err;
        if (hf_tokenizer_save(t, max_seq_len, out, &err) != 0) {
            fprintf(stderr, "error: %s\n", err.msg);
            return 1;
        }
        if (t->kind == TOKENIZER_LLAMA2C && copy_file(spec, out, "tokenizer.bin") != 0) return 1;
        printf("wrote the tokenizer (%s) as %s/tokenizer.json%s\n", spec, out,
               t->kind == TOKENIZER_LLAMA2C ? " and tokenizer.bin" : "");
        return 0;
    }
    if (kind == MODEL_FILE_HF_DIR) {
        int copied = 0;
        for (size_t i = 0; i < N_TOKENIZER_FILES; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", in, TOKENIZER_FILES[i]);
            if (access(path, F_OK) != 0) continue;
            if (copy_file(path, out, TOKENIZER_FILES[i]) != 0) return 1;
            copied++;
        }
        if (!copied) printf("note: %s holds no tokenizer files: give the model's with --tokenizer PATH\n", in);
        return 0;
    }
    if (why[0]) printf("note: no tokenizer written: %s\n", why);
    else printf("note: no tokenizer written (a llama2.c .bin does not name its own): give it with --tokenizer PATH\n");
    return 0;
}

// Removes what a failed convert wrote at OUT (a new file or directory, or the files it put in an
// empty directory), so that it can be run again.
static void discard_output(const char *out, int hf, int made_out) {
    if (!hf) {
        remove(out);
        return;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", out);
    remove(path);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    remove(path);
    for (size_t i = 0; i < N_TOKENIZER_FILES; i++) {
        snprintf(path, sizeof path, "%s/%s", out, TOKENIZER_FILES[i]);
        remove(path);
    }
    if (made_out) rmdir(out);
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
    "usage: asyncrl convert IN OUT [--format hf|llama2c] [--tokenizer T]\n"              \
    "  IN: a checkpoint (.h5), a Hugging Face directory or a llama2.c .bin\n"             \
    "  OUT: a Hugging Face directory (hf) or a llama2.c .bin file (llama2c), not there yet; without\n" \
    "       --format, an OUT ending in .bin is llama2c, anything else hf\n"              \
    "  --tokenizer T: the model's tokenizer (\"byte\" or a llama2.c tokenizer.bin), written into an hf\n" \
    "       OUT as tokenizer.json (default: a checkpoint's own, the byte tokenizer for a .bin of its\n" \
    "       size, an HF input's tokenizer files)\n"

// A usage error: the message, then the usage; exit status 2.
static int convert_usage_error(const char *msg, const char *arg) {
    fprintf(stderr, "error: ");
    fprintf(stderr, msg, arg);
    fprintf(stderr, "\n" CONVERT_USAGE);
    return 2;
}

int cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *format = NULL, *tokenizer = NULL;
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
        } else if (strcmp(a, "--tokenizer") == 0) {
            if (i + 1 >= argc || !argv[i + 1][0]) return convert_usage_error("%s needs a value: byte or a tokenizer.bin", a);
            tokenizer = argv[++i];
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
    const int hf = strcmp(format, "hf") == 0;
    if (tokenizer && !hf) return convert_usage_error("%s is for a Hugging Face OUT (a .bin holds no tokenizer)", "--tokenizer");
    if (check_output_free(out, format) != 0) return 2;
    struct stat st;
    const int made_out = stat(out, &st) != 0;  // (else an empty directory)
    ops_init(1);
    ErrorBuf err;
    Model *m = model_load_file(in, &err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    // The tokenizer (hf only): one named with --tokenizer must load and fit the model; one found
    // by itself that does not is left out with a note.
    const ModelFileKind kind = model_file_kind(in);
    char spec[CFG_STR_MAX] = "", why[CFG_STR_MAX + 256] = "";
    if (hf) find_tokenizer(in, kind, m->config.vocab_size, tokenizer, spec, sizeof spec);
    Tokenizer *t = spec[0] ? load_tokenizer(spec, m->config.vocab_size, &err) : NULL;
    if (!t && tokenizer) {
        fprintf(stderr, "error: --tokenizer: %s\n", err.msg);
        model_free(m);
        return 2;
    }
    if (!t && spec[0] && snprintf(why, sizeof why, "%s (give the right one with --tokenizer PATH)", err.msg) < 0)
        why[0] = '\0';
    int bos, eos;
    special_ids(in, kind, t, &bos, &eos);
    int rc = hf ? hf_save(m, out, bos, eos, &err) : llama2c_save(m, out, &err);
    if (rc != 0) fprintf(stderr, "error: %s\n", err.msg);
    else if (hf) rc = write_tokenizer_files(in, kind, t, spec, why, m->config.max_seq_len, out);
    if (rc != 0) {
        discard_output(out, hf, made_out);  // (OUT was new or empty: nothing of anyone else's is lost)
    } else {
        char shape[256];
        model_config_describe(&m->config, shape, sizeof shape);
        printf("wrote %s (%s): %s\n", out, format, shape);
    }
    tokenizer_free(t);
    model_free(m);
    ops_finalize();
    return rc ? 1 : 0;
}
