// Hugging Face tokenizer files for our tokenizers (see hf_tokenizer.h).
#include "model/hf_tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "core/json.h"

#define SPACE_MARK "\xE2\x96\x81"  // "▁" (U+2581), SentencePiece's space
#define N_SPECIAL 3                // llama2.c: <unk>, <s>, </s> are ids 0, 1, 2

static const char *const LLAMA2C_SPECIAL[N_SPECIAL] = {"<unk>", "<s>", "</s>"};
static const char *const BYTE_SPECIAL[N_SPECIAL] = {"<s>", "</s>", "<pad>"};  // ids 256, 257, 258

// "<0xNN>": a byte-fallback piece.
static int is_byte_piece(const char *p, int len) {
    return len == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>';
}

static int valid_utf8(const unsigned char *s, int len) {
    for (int i = 0; i < len;) {
        const int n = s[i] < 0x80 ? 1 : (s[i] & 0xE0) == 0xC0 ? 2 : (s[i] & 0xF0) == 0xE0 ? 3 : (s[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || i + n > len) return 0;
        for (int k = 1; k < n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += n;
    }
    return 1;
}

// A piece that takes part in the BPE model as itself: not special, not a byte piece, valid
// UTF-8, not empty, and the first piece with its bytes (a repeat is left out of the vocabulary).
static int ordinary(const Tokenizer *t, int id) {
    const char *p = t->pieces[id];
    const int len = t->piece_len[id];
    return id >= N_SPECIAL && len > 0 && !is_byte_piece(p, len) && valid_utf8((const unsigned char *)p, len) &&
           tokenizer_piece_id(t, p, len) == id;
}

// A llama2.c piece as the vocabulary spells it (each space as "▁"), JSON-escaped, no quotes.
static void write_piece_text(FILE *f, const char *p, int len) {
    for (int i = 0; i < len; i++) {
        const unsigned char c = (unsigned char)p[i];
        if (c == ' ') fputs(SPACE_MARK, f);
        else if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
}

static void write_piece(FILE *f, const char *p, int len) {
    fputc('"', f);
    write_piece_text(f, p, len);
    fputc('"', f);
}

// The vocabulary's name of token id.
static void write_token(FILE *f, const Tokenizer *t, int id) {
    char name[48];
    if (t->kind == TOKENIZER_BYTE) {
        if (id < 256) snprintf(name, sizeof name, "<0x%02X>", id);
        else snprintf(name, sizeof name, "%s", BYTE_SPECIAL[id - 256]);
    } else if (id < N_SPECIAL) {
        snprintf(name, sizeof name, "%s", LLAMA2C_SPECIAL[id]);
    } else if (is_byte_piece(t->pieces[id], t->piece_len[id]) || ordinary(t, id)) {
        write_piece(f, t->pieces[id], t->piece_len[id]);
        return;
    } else {
        snprintf(name, sizeof name, "<unused_piece_%d>", id);  // (invalid UTF-8, empty or repeated)
    }
    json_write_string(f, name, strlen(name));
}

typedef struct {
    int a, b, piece;  // piece = the concatenation of pieces a and b
    float score;      // the piece's
    int split;        // bytes of a
} Merge;

static int merge_order(const void *x, const void *y) {  // best score first, then piece id, then split
    const Merge *m = x, *n = y;
    if (m->score != n->score) return m->score > n->score ? -1 : 1;
    if (m->piece != n->piece) return m->piece < n->piece ? -1 : 1;
    return (m->split > n->split) - (m->split < n->split);
}

// Every way of making an ordinary piece from two ordinary pieces (split at a character
// boundary), best-scoring first. *count is set; the caller frees.
static Merge *find_merges(const Tokenizer *t, int *count) {
    int n = 0, cap = 1024;
    Merge *m = xmalloc(sizeof(Merge) * (size_t)cap);
    for (int id = N_SPECIAL; id < t->vocab_size; id++) {
        if (!ordinary(t, id)) continue;
        const char *p = t->pieces[id];
        const int len = t->piece_len[id];
        for (int k = 1; k < len; k++) {
            if (((unsigned char)p[k] & 0xC0) == 0x80) continue;  // inside a character
            const int a = tokenizer_piece_id(t, p, k), b = tokenizer_piece_id(t, p + k, len - k);
            if (a < 0 || b < 0 || !ordinary(t, a) || !ordinary(t, b)) continue;
            if (n == cap) cap *= 2, m = xrealloc(m, sizeof(Merge) * (size_t)cap);
            m[n++] = (Merge){a, b, id, t->scores[id], k};
        }
    }
    qsort(m, (size_t)n, sizeof(Merge), merge_order);
    *count = n;
    return m;
}

static void write_added_tokens(FILE *f, const Tokenizer *t) {
    fprintf(f, "  \"added_tokens\": [");
    for (int i = 0; i < N_SPECIAL; i++) {
        const int id = t->kind == TOKENIZER_BYTE ? 256 + i : i;
        fprintf(f, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", id);
        write_token(f, t, id);
        fprintf(f, ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, "
                   "\"special\": true}");
    }
    fprintf(f, "\n  ],\n");
}

// <s> $A (and <s> $A <s> $B for pairs), as our prompts start with BOS.
static void write_post_processor(FILE *f, const Tokenizer *t) {
    fprintf(f, "  \"post_processor\": {\"type\": \"TemplateProcessing\",\n"
               "    \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
               "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],\n"
               "    \"pair\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
               "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}, {\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 1}}, "
               "{\"Sequence\": {\"id\": \"B\", \"type_id\": 1}}],\n"
               "    \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [%d], \"tokens\": [\"<s>\"]}}},\n",
            t->bos_id);
}

static void write_model(FILE *f, const Tokenizer *t) {
    const int llama = t->kind == TOKENIZER_LLAMA2C;
    fprintf(f, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": %s, "
               "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": %s, "
               "\"byte_fallback\": true,\n    \"vocab\": {",
            llama ? "\"<unk>\"" : "null", llama ? "true" : "false");
    for (int id = 0; id < t->vocab_size; id++) {
        fprintf(f, "%s\n      ", id ? "," : "");
        write_token(f, t, id);
        fprintf(f, ": %d", id);
    }
    fprintf(f, "\n    },\n    \"merges\": [");
    int n = 0;
    Merge *m = llama ? find_merges(t, &n) : NULL;
    for (int i = 0; i < n; i++) {
        // "a b": the pieces hold no spaces (written as "▁"), so the legacy form every version reads
        fprintf(f, "%s\n      \"", i ? "," : "");
        write_piece_text(f, t->pieces[m[i].a], t->piece_len[m[i].a]);
        fputc(' ', f);
        write_piece_text(f, t->pieces[m[i].b], t->piece_len[m[i].b]);
        fputc('"', f);
    }
    free(m);
    fprintf(f, "\n    ]\n  }\n");
}

static void write_tokenizer_json(FILE *f, const Tokenizer *t) {
    const int llama = t->kind == TOKENIZER_LLAMA2C;
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    write_added_tokens(f, t);
    if (llama)
        fprintf(f, "  \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Prepend\", \"prepend\": "
                   "\"" SPACE_MARK "\"}, {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \""
                   SPACE_MARK "\"}]},\n");
    else
        fprintf(f, "  \"normalizer\": null,\n");
    fprintf(f, "  \"pre_tokenizer\": null,\n");
    write_post_processor(f, t);
    if (llama)
        fprintf(f, "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Replace\", \"pattern\": "
                   "{\"String\": \"" SPACE_MARK "\"}, \"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": "
                   "\"Fuse\"}, {\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}]},\n");
    else
        fprintf(f, "  \"decoder\": {\"type\": \"Sequence\", \"decoders\": [{\"type\": \"ByteFallback\"}, "
                   "{\"type\": \"Fuse\"}]},\n");
    write_model(f, t);
    fprintf(f, "}\n");
}

static void write_tokenizer_config(FILE *f, const Tokenizer *t, int max_seq_len) {
    const int llama = t->kind == TOKENIZER_LLAMA2C;
    fprintf(f, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"bos_token\": \"<s>\",\n"
               "  \"eos_token\": \"</s>\",\n");
    if (llama) fprintf(f, "  \"unk_token\": \"<unk>\",\n");
    else fprintf(f, "  \"pad_token\": \"<pad>\",\n");
    fprintf(f, "  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"clean_up_tokenization_spaces\": false,\n"
               "  \"model_max_length\": %d\n}\n",
            max_seq_len);
}

// Writes dir/name through a temporary file, renamed into place when every write succeeded.
static int write_file(const char *dir, const char *name, void (*fill)(FILE *, const Tokenizer *, int),
                      const Tokenizer *t, int max_seq_len, ErrorBuf *err) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return error_set(err, "cannot create %s: %s", tmp, strerror(errno));
    fill(f, t, max_seq_len);
    return file_commit(f, !ferror(f), tmp, path, err);
}

static void fill_tokenizer_json(FILE *f, const Tokenizer *t, int max_seq_len) {
    (void)max_seq_len;
    write_tokenizer_json(f, t);
}

int hf_tokenizer_save(const Tokenizer *t, int max_seq_len, const char *dir, ErrorBuf *err) {
    if (t->kind == TOKENIZER_LLAMA2C && t->vocab_size < N_SPECIAL + 256)
        return error_set(err, "tokenizer of %d pieces: a llama2.c tokenizer has <unk>, <s>, </s> and 256 byte pieces",
                         t->vocab_size);
    if (write_file(dir, "tokenizer.json", fill_tokenizer_json, t, max_seq_len, err) != 0) return -1;
    return write_file(dir, "tokenizer_config.json", write_tokenizer_config, t, max_seq_len, err);
}
