// `asyncrl generate` (see generate.h): loads a llama2.c .bin file, a Hugging Face directory or
// an asyncrl checkpoint (detected), a tokenizer (--tokenizer; for a .bin file the tokenizer.bin
// beside it, like llama2.c's -z; for a directory its tokenizer.bin, or the byte tokenizer when
// the vocabulary is the byte tokenizer's; for a checkpoint the model.tokenizer of the config it
// was trained with), encodes the prompt after BOS, and runs one request through the
// engine, printing each new token's text as soon as it is sampled. Stops at max tokens, at
// the end of the context, or at EOS / BOS (llama2.c's stories models end a story with BOS).
// Speed (tokens/s of the generated tokens) goes to stderr.
#include "infer/generate.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/error.h"
#include "infer/engine.h"
#include "infer/sampler.h"
#include "io/checkpoint.h"
#include "model/model_load.h"
#include "model/tokenizer.h"
#include "ops.h"

#define USAGE                                                                                              \
    "usage: asyncrl generate --model M [--tokenizer T] [--prompt STR] [--temperature X] [--top-p X]\n"      \
    "                        [--top-k N] [--min-p X] [-n N] [--seed S] [--greedy] [--threads N]\n"          \
    "                        [--kv-cache T]\n"                                                               \
    "  --model M        a llama2.c .bin file, a Hugging Face directory (config.json + safetensors) or an\n"  \
    "                   asyncrl checkpoint (runs/NAME/checkpoints/step_NNNNNN.h5)\n"                         \
    "  --tokenizer T    \"byte\" or a llama2.c tokenizer.bin (default: tokenizer.bin beside a .bin model or\n" \
    "                   inside a directory; the byte tokenizer for a 259-token vocabulary; a checkpoint's\n" \
    "                   model.tokenizer)\n"                                                                    \
    "  --prompt STR     text to continue (default: empty, start from BOS)\n"                                \
    "  --temperature X  1.0 by default; 0 = greedy        --top-p X  0.9 by default (1 = off)\n"            \
    "  --top-k N        0 = off (default)                 --min-p X  0 = off (default)\n"                  \
    "  -n N             tokens to generate (default 256; the context may end it sooner)\n"                 \
    "  --seed S         random seed (default: the time)   --greedy   argmax decoding\n"                     \
    "  --threads N      compute threads (default: OpenMP's)\n"                                            \
    "  --kv-cache T     fp32 (default) or fp16: the KV cache's element type (fp16 halves its memory)\n"

typedef struct {
    const char *model, *tokenizer, *prompt;
    float temperature, top_p, min_p;
    int top_k, n, greedy, threads, kv_dtype;
    unsigned long long seed;
} GenerateArgs;

static int parse_number(const char *opt, const char *text, double lo, double hi, double *out, ErrorBuf *err) {
    char *end;
    errno = 0;
    const double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= lo && v <= hi))
        return error_set(err, "%s '%s' is not a number in [%g, %g]", opt, text, lo, hi);
    *out = v;
    return 0;
}

// Whether o is one of the options that take a value (each has a branch in parse_args).
static int takes_value(const char *o) {
    static const char *const names[] = {"--model", "-m", "--tokenizer", "-z", "--prompt", "-i", "--temperature", "-t",
                                        "--top-p", "-p", "--min-p", "--top-k", "-n", "--max-tokens", "--seed", "-s",
                                        "--threads", "--kv-cache"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
        if (strcmp(o, names[k]) == 0) return 1;
    return 0;
}

static int parse_args(int argc, char **argv, GenerateArgs *a, ErrorBuf *err) {
    memset(a, 0, sizeof *a);
    a->prompt = "";
    a->temperature = 1.0f;
    a->top_p = 0.9f;
    a->n = 256;
    a->seed = (unsigned long long)time(NULL);
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (strcmp(o, "--greedy") == 0) {
            a->greedy = 1;
            continue;
        }
        if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) return error_set(err, "help");
        if (!takes_value(o)) return error_set(err, "unknown option '%s'", o);
        if (i + 1 >= argc) return error_set(err, "%s needs a value", o);
        const char *v = argv[++i];
        double x;
        if (strcmp(o, "--model") == 0 || strcmp(o, "-m") == 0) {
            a->model = v;
        } else if (strcmp(o, "--tokenizer") == 0 || strcmp(o, "-z") == 0) {
            a->tokenizer = v;
        } else if (strcmp(o, "--prompt") == 0 || strcmp(o, "-i") == 0) {
            a->prompt = v;
        } else if (strcmp(o, "--temperature") == 0 || strcmp(o, "-t") == 0) {
            if (parse_number(o, v, 0, 100, &x, err) || (x > 0 && x < SAMPLER_MIN_TEMPERATURE))
                return error_set(err, "--temperature '%s' is not 0 (greedy) or a number in [%g, 100]", v,
                                 (double)SAMPLER_MIN_TEMPERATURE);
            a->temperature = (float)x;
        } else if (strcmp(o, "--top-p") == 0 || strcmp(o, "-p") == 0) {
            if (parse_number(o, v, 1e-6, 1, &x, err)) return -1;
            a->top_p = (float)x;
        } else if (strcmp(o, "--min-p") == 0) {
            if (parse_number(o, v, 0, 1, &x, err)) return -1;
            a->min_p = (float)x;
        } else if (strcmp(o, "--top-k") == 0) {
            if (parse_number(o, v, 0, 1 << 30, &x, err) || x != (int)x) return error_set(err, "--top-k '%s' is not "
                                                                                              "an integer >= 0", v);
            a->top_k = (int)x;
        } else if (strcmp(o, "-n") == 0 || strcmp(o, "--max-tokens") == 0) {
            if (parse_number(o, v, 1, 1 << 30, &x, err) || x != (int)x) return error_set(err, "-n '%s' is not an "
                                                                                              "integer >= 1", v);
            a->n = (int)x;
        } else if (strcmp(o, "--seed") == 0 || strcmp(o, "-s") == 0) {
            char *end;
            errno = 0;
            a->seed = strtoull(v, &end, 10);
            if (errno || end == v || *end) return error_set(err, "--seed '%s' is not an unsigned integer", v);
        } else if (strcmp(o, "--threads") == 0) {
            if (parse_number(o, v, 1, 4096, &x, err) || x != (int)x) return error_set(err, "--threads '%s' is not "
                                                                                           "an integer >= 1", v);
            a->threads = (int)x;
        } else if (strcmp(o, "--kv-cache") == 0) {
            a->kv_dtype = engine_kv_dtype(v);
            if (a->kv_dtype < 0)
                return error_set(err, "--kv-cache '%s' is not a KV cache type: use fp32 or fp16", v);
        } else {
            return error_set(err, "unknown option '%s'", o);  // (a name in takes_value without a branch)
        }
    }
    if (!a->model) return error_set(err, "--model is required");
    if (a->temperature == 0.0f) a->greedy = 1;
    return 0;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// The tokenizer to use when --tokenizer is not given (into buf), or -1 + err.
static int default_tokenizer(const char *model, ModelFileKind kind, int vocab, char *buf, size_t size, ErrorBuf *err) {
    if (kind == MODEL_FILE_CHECKPOINT) {
        if (checkpoint_read_tokenizer(model, buf, size, err) != 0) return -1;
        if (strcmp(buf, "byte") == 0 || file_exists(buf)) return 0;
        return error_set(err, "the checkpoint was trained with model.tokenizer = \"%s\", which is not there from this "
                              "directory: give --tokenizer", buf);
    }
    if (kind == MODEL_FILE_HF_DIR) {
        snprintf(buf, size, "%s/tokenizer.bin", model);
    } else {
        const char *slash = strrchr(model, '/');
        const int dir_len = slash ? (int)(slash - model) : 0;
        snprintf(buf, size, "%.*s%stokenizer.bin", dir_len, model, slash ? "/" : "");
    }
    if (file_exists(buf)) return 0;
    if (vocab == 259) {
        snprintf(buf, size, "byte");
        return 0;
    }
    return error_set(err, "no tokenizer: %s does not exist; give --tokenizer (a llama2.c tokenizer.bin such as "
                          "tok512.bin, or \"byte\")", buf);
}

// Prints a piece like llama2.c's safe_printf: a lone byte that is neither printable nor
// whitespace is skipped.
static void print_piece(const char *p, size_t len) {
    if (len == 0) return;
    if (len == 1 && !(isprint((unsigned char)p[0]) || isspace((unsigned char)p[0]))) return;
    fwrite(p, 1, len, stdout);
    fflush(stdout);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int generate(const GenerateArgs *a, Model *m, const Tokenizer *tok, ErrorBuf *err) {
    const int max_prompt = (int)strlen(a->prompt) + 2;
    int32_t *prompt = xmalloc((size_t)max_prompt * sizeof(int32_t));
    const int n_prompt = tokenizer_encode(tok, a->prompt, strlen(a->prompt), 1, prompt, max_prompt, err);
    if (n_prompt < 0) {
        free(prompt);
        return -1;
    }
    EngineConfig ec = {.max_seqs = 1, .kv_block_size = 16, .kv_blocks = 0, .prefill_chunk = 512,
                       .swap_mode = ENGINE_SWAP_IN_FLIGHT, .max_updates = -1, .kv_dtype = a->kv_dtype};
    Engine *e = engine_create(&m->config, &ec, err);
    if (!e) {
        free(prompt);
        return -1;
    }
    float *host = xmalloc(m->n_params * sizeof(float));
    ops_copy_to_host(host, m->params, m->n_params * sizeof(float));
    engine_set_weights(e, host, 0);
    free(host);
    int32_t stop[2] = {tok->eos_id, tok->bos_id};
    EngineRequest req = {.id = 1, .prompt = prompt, .n_prompt = n_prompt, .max_tokens = a->n,
                         .temperature = a->temperature, .top_p = a->top_p, .min_p = a->min_p, .top_k = a->top_k,
                         .greedy = a->greedy, .seed = a->seed, .stop = stop, .n_stop = 2};
    if (engine_add(e, &req, err) != 0) {
        engine_free(e);
        free(prompt);
        return -1;
    }
    // The prompt as text (llama2.c's run prints it as it is fed).
    for (int i = 1; i < n_prompt; i++) {
        size_t len;
        const char *p = tokenizer_decode_piece(tok, prompt[i - 1], prompt[i], &len);
        print_piece(p, len);
    }
    const double start = now_seconds();
    double first_token = 0.0;
    int shown = 0, prev = prompt[n_prompt - 1];
    Completion *done = NULL;
    int n_done = 0;
    while (n_done == 0) {
        if (engine_step(e) == 0 && engine_active(e) == 0 && engine_queued(e) == 0) {
            n_done = engine_take_finished(e, &done);
            break;
        }
        const int32_t *gen;
        int n_gen = engine_peek(e, 1, &gen);
        if (n_gen < 0) {  // finished: its tokens are in the completion
            n_done = engine_take_finished(e, &done);
            if (n_done < 1) break;
            gen = done[0].tokens;
            n_gen = done[0].n;
        }
        if (n_gen > 0 && first_token == 0.0) first_token = now_seconds();
        for (; shown < n_gen; shown++) {
            size_t len;
            const char *p = tokenizer_decode_piece(tok, prev, gen[shown], &len);
            print_piece(p, len);
            prev = gen[shown];
        }
    }
    const double end = now_seconds();
    printf("\n");
    fflush(stdout);  // the text before the tok/s lines on stderr, also when both go to one pipe
    int rc = 0;
    if (n_done > 0 && done[0].finish == FINISH_REJECTED) rc = error_set(err, "%s", done[0].reason);
    if (rc == 0 && shown > 0) {
        fprintf(stderr, "achieved tok/s: %.1f (%d tokens in %.3f s; prompt of %d tokens and first token in %.3f s; "
                        "%d threads, %s backend)\n",
                shown / (end - start), shown, end - start, n_prompt, first_token - start, ops_num_threads(),
                ops_backend_name());
        if (shown > 1 && end > first_token)
            fprintf(stderr, "decode tok/s after the first token: %.1f\n", (shown - 1) / (end - first_token));
    }
    completions_free(done, n_done);
    engine_free(e);
    free(prompt);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    GenerateArgs a;
    ErrorBuf err = {{0}};
    if (parse_args(argc, argv, &a, &err) != 0) {
        if (strcmp(err.msg, "help") == 0) {
            fputs(USAGE, stdout);
            return 0;
        }
        fprintf(stderr, "error: %s\n%s", err.msg, USAGE);
        return 2;
    }
    ops_init(a.threads);
    const ModelFileKind kind = model_file_kind(a.model);
    Model *m = model_load_file(a.model, &err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 2;
    }
    char tok_path[4096];
    const char *tok_spec = a.tokenizer;
    if (!tok_spec) {
        if (default_tokenizer(a.model, kind, m->config.vocab_size, tok_path, sizeof tok_path, &err) != 0) {
            fprintf(stderr, "error: %s\n", err.msg);
            model_free(m);
            return 2;
        }
        tok_spec = tok_path;
    }
    Tokenizer *tok = tokenizer_load(tok_spec, &err);
    if (!tok || tokenizer_check_model(tok, m->config.vocab_size, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        tokenizer_free(tok);
        model_free(m);
        return 2;
    }
    const int rc = generate(&a, m, tok, &err);
    if (rc != 0) fprintf(stderr, "error: %s\n", err.msg);
    tokenizer_free(tok);
    model_free(m);
    ops_finalize();
    return rc == 0 ? 0 : 1;
}
