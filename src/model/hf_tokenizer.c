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

// Strict UTF-8 (what JSON strings and the tokenizers library take): no overlong forms, no
// surrogates, nothing above U+10FFFF.
static int valid_utf8(const unsigned char *s, int len) {
    for (int i = 0; i < len;) {
        const unsigned c = s[i];
        int n;
        unsigned lo = 0x80, hi = 0xBF;  // the allowed range of the second byte
        if (c < 0x80) n = 1;
        else if (c >= 0xC2 && c <= 0xDF) n = 2;
        else if (c >= 0xE0 && c <= 0xEF) n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4) n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else return 0;
        if (i + n > len) return 0;
        for (int k = 1; k < n; k++)
            if (s[i + k] < (k == 1 ? lo : 0x80) || s[i + k] > (k == 1 ? hi : 0xBF)) return 0;
        i += n;
    }
    return 1;
}

// The vocabulary as the Hugging Face files spell it: a distinct name per id, and which ids take
// part in merges.
typedef struct {
    char **name;         // [vocab] NUL-terminated UTF-8
    unsigned char *bpe;  // [vocab] 1: an ordinary piece, named by its text (spaces as "▁")
    int n;
} Names;

static char *dup_text(const char *s) {
    char *d = xmalloc(strlen(s) + 1);
    strcpy(d, s);
    return d;
}

// A llama2.c piece's text with each space as "▁".
static char *piece_name(const char *p, int len) {
    char *s = xmalloc(3 * (size_t)len + 1);
    size_t n = 0;
    for (int i = 0; i < len; i++) {
        if (p[i] == ' ') memcpy(s + n, SPACE_MARK, 3), n += 3;
        else s[n++] = p[i];
    }
    s[n] = '\0';
    return s;
}

typedef struct {
    const Names *v;
    int special_lo;  // first id of the three special tokens
} NameOrder;

// By name, then the id to keep first: the special tokens, then the lowest id (qsort_r).
static int name_order(const void *x, const void *y, void *ctx) {
    const NameOrder *o = ctx;
    const int a = *(const int *)x, b = *(const int *)y;
    const int c = strcmp(o->v->name[a], o->v->name[b]);
    if (c) return c;
    const int sa = a >= o->special_lo && a < o->special_lo + N_SPECIAL;
    const int sb = b >= o->special_lo && b < o->special_lo + N_SPECIAL;
    if (sa != sb) return sb - sa;
    return (a > b) - (a < b);
}

// Renames every id whose name an earlier one (in name_order) holds to "<unused_piece_ID>", and
// checks again (a piece may be named so itself: then with a "+" more). A renamed id takes no
// part in merges.
static void make_unique(Names *v, int special_lo) {
    int *order = xmalloc(sizeof(int) * (size_t)v->n);
    for (int round = 0; round < 4; round++) {
        for (int i = 0; i < v->n; i++) order[i] = i;
        NameOrder by = {v, special_lo};
        qsort_r(order, (size_t)v->n, sizeof(int), name_order, &by);
        int renamed = 0;
        for (int i = 1; i < v->n; i++) {
            if (strcmp(v->name[order[i]], v->name[order[i - 1]]) != 0) continue;
            const int id = order[i];
            char buf[64];
            snprintf(buf, sizeof buf, "<unused_piece_%d%.*s>", id, round, "+++");
            free(v->name[id]);
            v->name[id] = dup_text(buf);
            v->bpe[id] = 0;
            renamed++;
        }
        if (!renamed) break;
    }
    free(order);
}

// Our encoder merges a pair only into a piece scoring above -1e10 (its starting best score).
#define MERGE_MIN_SCORE -1e10f

static void names_make(Names *v, const Tokenizer *t) {
    v->n = t->vocab_size;
    v->name = xcalloc((size_t)v->n, sizeof(char *));
    v->bpe = xcalloc((size_t)v->n, 1);
    char buf[64];
    if (t->kind == TOKENIZER_BYTE) {
        for (int id = 0; id < v->n; id++) {
            if (id < 256) snprintf(buf, sizeof buf, "<0x%02X>", id);
            else snprintf(buf, sizeof buf, "%s", BYTE_SPECIAL[id - 256]);
            v->name[id] = dup_text(buf);
        }
        make_unique(v, 256);
        return;
    }
    const int has_space = tokenizer_piece_id(t, " ", 1) >= 0;
    for (int id = 0; id < v->n; id++) {
        const char *p = t->pieces[id];
        const int len = t->piece_len[id];
        if (id < N_SPECIAL) {
            v->name[id] = dup_text(LLAMA2C_SPECIAL[id]);
        } else if (!has_space && id == ' ' + N_SPECIAL) {
            // No " " piece: our encoder writes a space as byte 0x20's piece, which "▁" then names.
            v->name[id] = dup_text(SPACE_MARK);
        } else if (id < N_SPECIAL + 256 && is_byte_piece(p, len)) {
            v->name[id] = piece_name(p, len);  // (byte fallback finds these by name)
        } else if (len > 0 && !is_byte_piece(p, len) && valid_utf8((const unsigned char *)p, len)) {
            v->name[id] = piece_name(p, len);
            v->bpe[id] = tokenizer_piece_id(t, p, len) == id;  // (a repeated piece is never produced)
        } else {
            snprintf(buf, sizeof buf, "<unused_piece_%d>", id);  // (empty or invalid UTF-8)
            v->name[id] = dup_text(buf);
        }
    }
    make_unique(v, 0);
}

static void names_free(Names *v) {
    for (int i = 0; i < v->n; i++) free(v->name[i]);
    free(v->name);
    free(v->bpe);
}

static void write_name(FILE *f, const Names *v, int id) {
    json_write_string(f, v->name[id], strlen(v->name[id]));
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

// Every way of making an ordinary piece that our encoder can merge into (score above
// MERGE_MIN_SCORE, so never NaN) from two ordinary pieces, split at a character boundary,
// best-scoring first. *count is set; the caller frees.
static Merge *find_merges(const Tokenizer *t, const Names *v, int *count) {
    int n = 0, cap = 1024;
    Merge *m = xmalloc(sizeof(Merge) * (size_t)cap);
    for (int id = N_SPECIAL; id < t->vocab_size; id++) {
        if (!v->bpe[id] || !(t->scores[id] > MERGE_MIN_SCORE)) continue;
        const char *p = t->pieces[id];
        const int len = t->piece_len[id];
        for (int k = 1; k < len; k++) {
            if (((unsigned char)p[k] & 0xC0) == 0x80) continue;  // inside a character
            const int a = tokenizer_piece_id(t, p, k), b = tokenizer_piece_id(t, p + k, len - k);
            if (a < 0 || b < 0 || !v->bpe[a] || !v->bpe[b]) continue;
            if (n == cap) cap *= 2, m = xrealloc(m, sizeof(Merge) * (size_t)cap);
            m[n++] = (Merge){a, b, id, t->scores[id], k};
        }
    }
    qsort(m, (size_t)n, sizeof(Merge), merge_order);
    *count = n;
    return m;
}

static void write_added_tokens(FILE *f, const Tokenizer *t, const Names *v) {
    fprintf(f, "  \"added_tokens\": [");
    for (int i = 0; i < N_SPECIAL; i++) {
        const int id = t->kind == TOKENIZER_BYTE ? 256 + i : i;
        fprintf(f, "%s\n    {\"id\": %d, \"content\": ", i ? "," : "", id);
        write_name(f, v, id);
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

static void write_model(FILE *f, const Tokenizer *t, const Names *v) {
    const int llama = t->kind == TOKENIZER_LLAMA2C;
    fprintf(f, "  \"model\": {\"type\": \"BPE\", \"dropout\": null, \"unk_token\": %s, "
               "\"continuing_subword_prefix\": null, \"end_of_word_suffix\": null, \"fuse_unk\": %s, "
               "\"byte_fallback\": true,\n    \"vocab\": {",
            llama ? "\"<unk>\"" : "null", llama ? "true" : "false");
    for (int id = 0; id < t->vocab_size; id++) {
        fprintf(f, "%s\n      ", id ? "," : "");
        write_name(f, v, id);
        fprintf(f, ": %d", id);
    }
    fprintf(f, "\n    },\n    \"merges\": [");
    int n = 0;
    Merge *m = llama ? find_merges(t, v, &n) : NULL;
    for (int i = 0; i < n; i++) {
        // "a b": names hold no spaces (written as "▁"), so the legacy form every version reads
        fprintf(f, "%s\n      \"", i ? "," : "");
        json_write_escaped(f, v->name[m[i].a], strlen(v->name[m[i].a]));
        fputc(' ', f);
        json_write_escaped(f, v->name[m[i].b], strlen(v->name[m[i].b]));
        fputc('"', f);
    }
    free(m);
    fprintf(f, "\n    ]\n  }\n");
}

static void write_tokenizer_json(FILE *f, const Tokenizer *t, int max_seq_len) {
    (void)max_seq_len;  // (tokenizer_config.json holds it)
    const int llama = t->kind == TOKENIZER_LLAMA2C;
    Names v;
    names_make(&v, t);
    fprintf(f, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    write_added_tokens(f, t, &v);
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
    write_model(f, t, &v);
    fprintf(f, "}\n");
    names_free(&v);
}

static void write_tokenizer_config(FILE *f, const Tokenizer *t, int max_seq_len) {
    const int llama = t->kind == TOKENIZER_LLAMA2C;
    fprintf(f, "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n  \"bos_token\": \"<s>\",\n"
               "  \"eos_token\": \"</s>\",\n");
    if (llama) fprintf(f, "  \"unk_token\": \"<unk>\",\n");
    else fprintf(f, "  \"pad_token\": \"<pad>\",\n");
    // split_special_tokens: text such as "</s>" is encoded as its characters, as our encoder does
    fprintf(f, "  \"add_bos_token\": true,\n  \"add_eos_token\": false,\n  \"clean_up_tokenization_spaces\": false,\n"
               "  \"split_special_tokens\": true,\n  \"model_max_length\": %d\n}\n",
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

int hf_tokenizer_save(const Tokenizer *t, int max_seq_len, const char *dir, ErrorBuf *err) {
    if (t->kind == TOKENIZER_LLAMA2C && t->vocab_size < N_SPECIAL + 256)
        return error_set(err, "tokenizer of %d pieces: a llama2.c tokenizer has <unk>, <s>, </s> and 256 byte pieces",
                         t->vocab_size);
    if (write_file(dir, "tokenizer.json", write_tokenizer_json, t, max_seq_len, err) != 0) return -1;
    return write_file(dir, "tokenizer_config.json", write_tokenizer_config, t, max_seq_len, err);
}
