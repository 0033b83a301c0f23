// Tokenizers: the byte-level one round-trips every byte string; llama2.c's tok512.bin encodes
// exactly as run.c (expected ids from the independent Python transcription of run.c's encode
// in tests/fixtures/make_model_fixtures.py) and decodes back to the text; corrupt tokenizer
// files and a vocabulary that does not fit the model give clear errors; the Hugging Face
// tokenizer files written for both encode like them (checked with the `tokenizers` library).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/test_util.h"
#include "core/json.h"
#include "core/rng.h"
#include "model/hf_tokenizer.h"
#include "model/tokenizer.h"

static void test_byte_tokenizer(void **state) {
    (void)state;
    ErrorBuf err;
    Tokenizer *t = tokenizer_load("byte", &err);
    assert_non_null(t);
    assert_int_equal(t->vocab_size, 259);
    assert_int_equal(t->bos_id, 256);
    assert_int_equal(t->eos_id, 257);
    char text[300];
    for (int i = 0; i < 300; i++) text[i] = (char)(i * 37 + 11);  // every byte value, NUL included
    int32_t ids[310];
    int n = tokenizer_encode(t, text, 300, 1, ids, 310, &err);
    assert_int_equal(n, 301);
    assert_int_equal(ids[0], 256);
    for (int i = 0; i < 300; i++) assert_int_equal(ids[i + 1], (unsigned char)text[i]);
    char out[400];
    size_t len = tokenizer_decode(t, ids, n, out, sizeof out);
    assert_int_equal(len, 300);
    assert_memory_equal(out, text, 300);
    size_t plen;
    tokenizer_decode_piece(t, -1, t->eos_id, &plen);
    assert_int_equal(plen, 0);
    // Too little room is an error, not an overflow.
    assert_int_equal(tokenizer_encode(t, text, 300, 1, ids, 10, &err), -1);
    assert_non_null(strstr(err.msg, "301 tokens, more than the 10 allowed"));
    // Truncated decode still reports the full length and NUL-terminates.
    assert_int_equal(tokenizer_decode(t, ids + 1, 5, out, 3), 5);
    assert_int_equal(strlen(out), 2);
    assert_int_equal(tokenizer_check_model(t, 259, &err), 0);
    tokenizer_free(t);
}

static void test_llama2c_encode_matches_reference(void **state) {
    (void)state;
    const char *path = test_model_file("tok512.bin");
    if (!path) skip();
    ErrorBuf err;
    Tokenizer *t = tokenizer_load(path, &err);
    if (!t) print_error("%s\n", err.msg);
    assert_non_null(t);
    assert_int_equal(t->vocab_size, 512);
    size_t len;
    char *text = test_read_file(test_fixture("model/tokenizer_cases.json"), &len);
    assert_non_null(text);
    Json *root = json_parse(text, len, &err);
    assert_non_null(root);
    const Json *cases = json_get(root, "cases");
    assert_non_null(cases);
    assert_true(cases->count >= 10);
    for (int c = 0; c < cases->count; c++) {
        const Json *bytes = json_get(&cases->items[c], "bytes"), *want = json_get(&cases->items[c], "ids");
        const int add_bos = json_get(&cases->items[c], "add_bos")->boolean;
        char *s = malloc((size_t)bytes->count + 1);
        for (int i = 0; i < bytes->count; i++) s[i] = (char)(int)bytes->items[i].number;
        int32_t ids[600];
        int n = tokenizer_encode(t, s, (size_t)bytes->count, add_bos, ids, 600, &err);
        if (n != want->count) print_error("case %d: %d ids, expected %d\n", c, n, want->count);
        assert_int_equal(n, want->count);
        for (int i = 0; i < n; i++) {
            if (ids[i] != (int32_t)want->items[i].number)
                print_error("case %d: id %d is %d, expected %d\n", c, i, ids[i], (int)want->items[i].number);
            assert_int_equal(ids[i], (int32_t)want->items[i].number);
        }
        // Decoding after BOS gives the text back exactly (dummy prefix stripped, byte pieces raw).
        if (add_bos) {
            char out[1024];
            size_t dl = tokenizer_decode(t, ids, n, out, sizeof out);
            assert_int_equal(dl, bytes->count);
            assert_memory_equal(out, s, dl);
        }
        free(s);
    }
    json_free(root);
    free(text);
    // A known id sequence: "Once upon a time" with BOS.
    int32_t ids[32];
    int n = tokenizer_encode(t, "Once upon a time", 16, 1, ids, 32, &err);
    assert_true(n >= 4 && n <= 8);
    assert_int_equal(ids[0], 1);
    assert_int_equal(tokenizer_check_model(t, 512, &err), 0);
    assert_int_equal(tokenizer_check_model(t, 259, &err), -1);
    assert_non_null(strstr(err.msg, "the tokenizer has 512 tokens but the model's vocabulary has 259"));
    tokenizer_free(t);
}

// Writes a tokenizer file from raw parts into a temporary path.
static const char *write_tmp(const void *data, size_t len) {
    static char path[64];
    snprintf(path, sizeof path, "/tmp/asyncrl_tok_XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

// A valid llama2.c-style tokenizer of 3 specials + 256 byte pieces + extra pieces.
static unsigned char *valid_tokenizer(size_t *len) {
    unsigned char *buf = malloc(20000), *p = buf;
    int32_t max_len = 8;
    memcpy(p, &max_len, 4), p += 4;
    for (int i = 0; i < 3 + 256 + 4; i++) {
        char piece[16];
        if (i < 3) snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "<s>" : "</s>");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else snprintf(piece, sizeof piece, "%s", i == 259 ? "ab" : i == 260 ? " " : i == 261 ? "a" : "b");
        float score = -(float)i;
        int32_t l = (int32_t)strlen(piece);
        memcpy(p, &score, 4), memcpy(p + 4, &l, 4), memcpy(p + 8, piece, (size_t)l);
        p += 8 + l;
    }
    *len = (size_t)(p - buf);
    return buf;
}

static void expect_load_error(const void *data, size_t len, const char *needle) {
    ErrorBuf err = {{0}};
    const char *path = write_tmp(data, len);
    Tokenizer *t = tokenizer_load(path, &err);
    unlink(path);
    if (t || !strstr(err.msg, needle)) print_error("expected an error containing \"%s\", got \"%s\"\n", needle, err.msg);
    assert_null(t);
    assert_non_null(strstr(err.msg, needle));
}

static void test_bad_tokenizer_files(void **state) {
    (void)state;
    size_t len;
    unsigned char *buf = valid_tokenizer(&len);
    ErrorBuf err;
    const char *path = write_tmp(buf, len);
    Tokenizer *t = tokenizer_load(path, &err);
    unlink(path);
    assert_non_null(t);
    assert_int_equal(t->vocab_size, 263);
    int32_t ids[16];
    assert_int_equal(tokenizer_encode(t, "ab", 2, 0, ids, 16, &err), 2);  // " " "a" "b" -> " " "ab"
    assert_int_equal(ids[0], 260);
    assert_int_equal(ids[1], 259);
    assert_int_equal(tokenizer_encode(t, "ac", 2, 0, ids, 16, &err), 3);  // 'c' falls back to <0x63>
    assert_int_equal(ids[2], 'c' + 3);
    tokenizer_free(t);

    expect_load_error(buf, 2, "shorter than its 4-byte header");
    expect_load_error(buf, len - 1, "entry 262 has length 1");  // last piece cut short
    expect_load_error(buf, len - 5, "is truncated");            // inside the score/length pair
    unsigned char *bad = malloc(len);
    memcpy(bad, buf, len);
    int32_t huge = 1 << 30;
    memcpy(bad, &huge, 4);
    expect_load_error(bad, len, "max_token_length 1073741824 is outside");
    memcpy(bad, buf, len);
    int32_t neg = -5;
    memcpy(bad + 8, &neg, 4);  // first entry's length
    expect_load_error(bad, len, "entry 0 has length -5");
    expect_load_error(buf, 4 + 13 + 11 + 12, "has 3 entries");  // <unk> <s> </s> only
    free(bad);
    free(buf);
    assert_null(tokenizer_load("/nonexistent/tok.bin", &err));
    assert_non_null(strstr(err.msg, "cannot open tokenizer /nonexistent/tok.bin"));
    assert_null(tokenizer_load("", &err));
    assert_non_null(strstr(err.msg, "no tokenizer given"));
}

// Texts for the Hugging Face export check: fixed ones (spaces, newlines, code points the
// vocabulary lacks) and random mixtures of fragments that exercise the merges.
#define N_TEXTS 300
static void make_texts(char texts[][256]) {
    static const char *const FIXED[] = {"", "Once upon a time, there was a little girl named Lily.", "hello  world\n",
                                        "  two leading spaces", "Él café 中文 🙂 naïve", "a\tb\r\nc", "\"quoted\" \\ back", "x</s>y <s> <unk> <pad>",
                                        "The end.\n\nThe next day, Tom and Sue went to the park."};
    static const char *const FRAGMENTS[] = {"the", " the", "and", " a", " little", "girl", " boy", "ed", "ing", " was",
                                            ".", ",", "!", " ", "  ", "\n", "Lily", "Tom", "é", "中", "🙂", "xyz",
                                            "qu", "happy", " played", "said", "\"", "'s", "123", "-"};
    const int n_fixed = (int)(sizeof FIXED / sizeof FIXED[0]), n_frag = (int)(sizeof FRAGMENTS / sizeof FRAGMENTS[0]);
    Rng rng;
    rng_seed(&rng, 2026);
    for (int i = 0; i < N_TEXTS; i++) {
        if (i < n_fixed) {
            snprintf(texts[i], 256, "%s", FIXED[i]);
            continue;
        }
        texts[i][0] = '\0';
        const int parts = 1 + (int)rng_below(&rng, 24);
        for (int k = 0; k < parts && strlen(texts[i]) < 200; k++)
            strcat(texts[i], FRAGMENTS[rng_below(&rng, (uint64_t)n_frag)]);
    }
}

// Writes the tokenizer's Hugging Face files into a new directory and the texts with our ids
// (BOS first) as JSON lines; checks the files' structure; then tests/check_hf_tokenizer.py
// encodes and decodes the texts with the `tokenizers` library (skipped where it is missing).
static void check_hf_export(const Tokenizer *t, const char *name, int min_merges) {
    char dir[256], cases[300];
    snprintf(dir, sizeof dir, "/tmp/asyncrl-test-hftok-%s-%d", name, (int)getpid());
    snprintf(cases, sizeof cases, "%s/cases.jsonl", dir);
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    assert_int_equal(system(cmd), 0);
    ErrorBuf err;
    assert_int_equal(hf_tokenizer_save(t, 256, dir, &err), 0);
    // Structure: every id in the vocabulary once, the special tokens, merges for llama2.c.
    char path[300];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    size_t len;
    char *text = test_read_file(path, &len);
    assert_non_null(text);
    Json *root = json_parse(text, len, &err);
    if (!root) print_error("tokenizer.json: %s\n", err.msg);
    assert_non_null(root);
    const Json *model = json_get(root, "model"), *vocab = json_get(model, "vocab"), *merges = json_get(model, "merges");
    assert_int_equal(vocab->count, t->vocab_size);
    char *seen = calloc((size_t)t->vocab_size, 1);
    for (int i = 0; i < vocab->count; i++) {
        const int id = (int)vocab->items[i].number;
        assert_true(id >= 0 && id < t->vocab_size && !seen[id]);
        seen[id] = 1;
    }
    free(seen);
    for (int i = 0; i < vocab->count; i++)  // every name once (a JSON object with a repeated key loses an id)
        for (int k = i + 1; k < vocab->count; k++)
            if (strcmp(vocab->keys[i], vocab->keys[k]) == 0) fail_msg("vocabulary name \"%s\" repeats", vocab->keys[i]);
    assert_true(t->kind == TOKENIZER_BYTE ? merges->count == 0 : merges->count > min_merges);
    assert_int_equal(json_get(root, "added_tokens")->count, 3);
    json_free(root);
    free(text);
    // The texts with our ids.
    char(*texts)[256] = malloc(sizeof(char[256]) * N_TEXTS);
    make_texts(texts);
    FILE *f = fopen(cases, "w");
    assert_non_null(f);
    for (int i = 0; i < N_TEXTS; i++) {
        int32_t ids[600];
        const int n = tokenizer_encode(t, texts[i], strlen(texts[i]), 1, ids, 600, &err);
        assert_true(n > 0);
        fprintf(f, "{\"text\": ");
        json_write_string(f, texts[i], strlen(texts[i]));
        fprintf(f, ", \"ids\": [");
        for (int k = 0; k < n; k++) fprintf(f, "%s%d", k ? ", " : "", ids[k]);
        fprintf(f, "]}\n");
    }
    fclose(f);
    free(texts);
    snprintf(cmd, sizeof cmd, "python3 tests/check_hf_tokenizer.py %s %s", dir, cases);
    const int rc = system(cmd);
    const int status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) print_message("could not remove %s\n", dir);
    if (status == 77 || status == 127) skip();  // (the `tokenizers` library, or python3, is missing)
    assert_int_equal(status, 0);
}

static void test_hf_export_byte(void **state) {
    (void)state;
    ErrorBuf err;
    Tokenizer *t = tokenizer_load("byte", &err);
    check_hf_export(t, "byte", 0);
    tokenizer_free(t);
}

static void test_hf_export_llama2c(void **state) {
    (void)state;
    const char *path = test_model_file("tok512.bin");
    if (!path) skip();
    ErrorBuf err;
    Tokenizer *t = tokenizer_load(path, &err);
    assert_non_null(t);
    check_hf_export(t, "tok512", 100);
    tokenizer_free(t);
}

// A vocabulary with what real ones rarely hold: no " " piece, a literal "▁", a piece named like
// a special token, a repeated piece, pieces that are not strict UTF-8 (overlong, surrogate), an
// empty one, quotes and backslashes, spaces inside and at the end, and a NaN score.
static void test_hf_export_odd_pieces(void **state) {
    (void)state;
    static const char *const EXTRA[] = {"a", "b", "c", "ab", "abc", "bc", "\xE2\x96\x81", "<s>", "\xC0\xAF",
                                        "\xED\xA0\x80", "ab", "", "x\"y\\", "a b", "b ", "t", "h", "e", "th",
                                        "the", "he", " t", "d", "cd"};
    const int n_extra = (int)(sizeof EXTRA / sizeof EXTRA[0]);
    unsigned char *buf = malloc(20000), *p = buf;
    int32_t max_len = 8;
    memcpy(p, &max_len, 4), p += 4;
    for (int i = 0; i < 3 + 256 + n_extra; i++) {
        char piece[16];
        if (i < 3) snprintf(piece, sizeof piece, "%s", i == 0 ? "<unk>" : i == 1 ? "\n<s>\n" : "\n</s>\n");
        else if (i < 259) snprintf(piece, sizeof piece, "<0x%02X>", i - 3);
        else snprintf(piece, sizeof piece, "%s", EXTRA[i - 259]);
        float score = -(float)i;
        if (i == 259 + n_extra - 1) score = NAN;  // "cd": never merged by our encoder
        int32_t l = (int32_t)strlen(piece);
        memcpy(p, &score, 4), memcpy(p + 4, &l, 4), memcpy(p + 8, piece, (size_t)l);
        p += 8 + l;
    }
    const char *path = write_tmp(buf, (size_t)(p - buf));
    free(buf);
    ErrorBuf err;
    Tokenizer *t = tokenizer_load(path, &err);
    unlink(path);
    assert_non_null(t);
    check_hf_export(t, "odd", 3);
    tokenizer_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_byte_tokenizer),
        cmocka_unit_test(test_llama2c_encode_matches_reference),
        cmocka_unit_test(test_bad_tokenizer_files),
        cmocka_unit_test(test_hf_export_byte),
        cmocka_unit_test(test_hf_export_llama2c),
        cmocka_unit_test(test_hf_export_odd_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
