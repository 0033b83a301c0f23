// Byte-level and llama2.c tokenizers (see tokenizer.h). The llama2.c merge loop keeps the
// score of every adjacent pair and only looks up the two pairs next to a merge, which gives
// run.c's result (the leftmost best pair each round) in O(n) lookups instead of O(n^2).
#include "model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BYTE_BOS 256
#define BYTE_EOS 257
#define BYTE_PAD 258
#define MAX_TOKENIZER_VOCAB (1 << 22)
#define MAX_PIECE_LENGTH 4096

static Tokenizer *byte_tokenizer(void) {
    Tokenizer *t = xcalloc(1, sizeof(Tokenizer));
    t->kind = TOKENIZER_BYTE;
    t->vocab_size = 259;
    t->bos_id = BYTE_BOS;
    t->eos_id = BYTE_EOS;
    t->pad_id = BYTE_PAD;
    for (int i = 0; i < 256; i++) t->byte_pieces[i] = (unsigned char)i;
    return t;
}

static int cmp_bytes(const char *a, int alen, const char *b, int blen) {
    int n = alen < blen ? alen : blen;
    int c = memcmp(a, b, (size_t)n);
    return c ? c : (alen > blen) - (alen < blen);
}

typedef struct {
    const char *piece;
    int len, id;
} SortEntry;

static int cmp_entries(const void *pa, const void *pb) {
    const SortEntry *a = pa, *b = pb;
    int c = cmp_bytes(a->piece, a->len, b->piece, b->len);
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

// Lowest id whose piece is exactly s[0..len), or -1.
static int lookup(const Tokenizer *t, const char *s, int len) {
    int lo = 0, hi = t->vocab_size;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, id = t->sorted[mid];
        if (cmp_bytes(t->pieces[id], t->piece_len[id], s, len) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo < t->vocab_size) {
        int id = t->sorted[lo];
        if (cmp_bytes(t->pieces[id], t->piece_len[id], s, len) == 0) return id;
    }
    return -1;
}

int tokenizer_piece_id(const Tokenizer *t, const char *s, int len) {
    return t->kind == TOKENIZER_LLAMA2C ? lookup(t, s, len) : -1;
}

static Tokenizer *load_llama2c(const char *path, ErrorBuf *err) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return error_set(err, "cannot open tokenizer %s (model.tokenizer is \"byte\" or a llama2.c "
                                   "tokenizer.bin)", path), NULL;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return error_set(err, "tokenizer %s is not a regular file", path), NULL;
    }
    const uint64_t size = (uint64_t)st.st_size;
    unsigned char *data = xmalloc(size ? size : 1);
    int ok = fread(data, 1, size, fp) == size;
    fclose(fp);
    if (!ok || size < 4) {
        free(data);
        return error_set(err, "tokenizer %s: cannot read it, or shorter than its 4-byte header", path), NULL;
    }
    int32_t max_len;
    memcpy(&max_len, data, 4);
    if (max_len < 1 || max_len > MAX_PIECE_LENGTH) {
        free(data);
        return error_set(err, "tokenizer %s: max_token_length %d is outside [1, %d]: not a llama2.c tokenizer.bin",
                         path, max_len, MAX_PIECE_LENGTH), NULL;
    }
    // First pass: count and check entries against the file size.
    uint64_t off = 4;
    int count = 0;
    while (off < size) {
        int32_t len;
        if (size - off < 8) {
            free(data);
            return error_set(err, "tokenizer %s: entry %d is truncated (score and length need 8 bytes, %llu left)",
                             path, count, (unsigned long long)(size - off)), NULL;
        }
        memcpy(&len, data + off + 4, 4);
        if (len < 0 || len > max_len || (uint64_t)len > size - off - 8) {
            free(data);
            return error_set(err, "tokenizer %s: entry %d has length %d (max_token_length %d, %llu bytes left): "
                                  "corrupt or truncated file", path, count, len, max_len,
                             (unsigned long long)(size - off - 8)), NULL;
        }
        off += 8 + (uint64_t)len;
        if (++count > MAX_TOKENIZER_VOCAB) {
            free(data);
            return error_set(err, "tokenizer %s has more than %d entries", path, MAX_TOKENIZER_VOCAB), NULL;
        }
    }
    if (count < 3 + 256) {
        free(data);
        return error_set(err, "tokenizer %s has %d entries: a llama2.c tokenizer has <unk>, <s>, </s> and 256 byte "
                              "pieces first", path, count), NULL;
    }
    Tokenizer *t = xcalloc(1, sizeof(Tokenizer));
    t->kind = TOKENIZER_LLAMA2C;
    t->vocab_size = count;
    t->bos_id = 1;
    t->eos_id = 2;
    t->pad_id = -1;
    t->max_token_length = max_len;
    t->pieces = xcalloc((size_t)count, sizeof(char *));
    t->piece_len = xcalloc((size_t)count, sizeof(int));
    t->scores = xcalloc((size_t)count, sizeof(float));
    off = 4;
    for (int i = 0; i < count; i++) {
        int32_t len;
        memcpy(&t->scores[i], data + off, 4);
        memcpy(&len, data + off + 4, 4);
        t->pieces[i] = xmalloc((size_t)len + 1);
        memcpy(t->pieces[i], data + off + 8, (size_t)len);
        t->pieces[i][len] = '\0';
        t->piece_len[i] = len;
        off += 8 + (uint64_t)len;
    }
    free(data);
    for (int i = 0; i < 256; i++) t->byte_pieces[i] = (unsigned char)i;
    SortEntry *entries = xmalloc((size_t)count * sizeof(SortEntry));
    for (int i = 0; i < count; i++) entries[i] = (SortEntry){t->pieces[i], t->piece_len[i], i};
    qsort(entries, (size_t)count, sizeof(SortEntry), cmp_entries);
    t->sorted = xmalloc((size_t)count * sizeof(int));
    for (int i = 0; i < count; i++) t->sorted[i] = entries[i].id;
    free(entries);
    return t;
}

Tokenizer *tokenizer_load(const char *spec, ErrorBuf *err) {
    if (!spec || !spec[0]) return error_set(err, "no tokenizer given: use \"byte\" or a tokenizer.bin path"), NULL;
    if (strcmp(spec, "byte") == 0) return byte_tokenizer();
    return load_llama2c(spec, err);
}

void tokenizer_free(Tokenizer *t) {
    if (!t) return;
    if (t->pieces)
        for (int i = 0; i < t->vocab_size; i++) free(t->pieces[i]);
    free(t->pieces);
    free(t->piece_len);
    free(t->scores);
    free(t->sorted);
    free(t);
}

// Score and id of the merge of ids a and b, id -1 when their concatenation is no piece.
static int pair_lookup(const Tokenizer *t, int a, int b, char *buf, float *score) {
    const int la = t->piece_len[a], lb = t->piece_len[b];
    memcpy(buf, t->pieces[a], (size_t)la);
    memcpy(buf + la, t->pieces[b], (size_t)lb);
    int id = lookup(t, buf, la + lb);
    *score = id >= 0 ? t->scores[id] : 0.0f;
    return id;
}

// As run.c, the merges run over BOS too (no piece starts with BOS's, so it never merges).
static int encode_llama2c(const Tokenizer *t, const unsigned char *text, size_t len, int add_bos, int32_t *ids) {
    int n = 0;
    if (add_bos) ids[n++] = t->bos_id;
    if (len > 0) {
        int space = lookup(t, " ", 1);
        ids[n++] = space >= 0 ? space : ' ' + 3;
    }
    // One token per code point (up to 4 bytes) when the vocabulary has it, else its bytes.
    char cp[8];
    int cp_len = 0;
    for (size_t i = 0; i < len; i++) {
        if ((text[i] & 0xC0) != 0x80) cp_len = 0;
        cp[cp_len++] = (char)text[i];
        const int next_continues = i + 1 < len && (text[i + 1] & 0xC0) == 0x80;
        if (next_continues && cp_len < 4) continue;
        int id = lookup(t, cp, cp_len);
        if (id >= 0) ids[n++] = id;
        else
            for (int j = 0; j < cp_len; j++) ids[n++] = (unsigned char)cp[j] + 3;
        cp_len = 0;
    }
    if (n < 2) return n;
    // pair_id[i] / pair_score[i]: the merge of ids[i] and ids[i+1].
    int *pair_id = xmalloc((size_t)n * sizeof(int));
    float *pair_score = xmalloc((size_t)n * sizeof(float));
    char *buf = xmalloc(2 * (size_t)t->max_token_length + 2);
    for (int i = 0; i + 1 < n; i++) pair_id[i] = pair_lookup(t, ids[i], ids[i + 1], buf, &pair_score[i]);
    for (;;) {
        int best = -1;
        float best_score = -1e10f;
        for (int i = 0; i + 1 < n; i++)
            if (pair_id[i] >= 0 && pair_score[i] > best_score) best_score = pair_score[i], best = i;
        if (best < 0) break;
        ids[best] = pair_id[best];
        memmove(ids + best + 1, ids + best + 2, (size_t)(n - best - 2) * sizeof(int32_t));
        const int shifted = n - best - 3 > 0 ? n - best - 3 : 0;  // pairs after the two that change
        memmove(pair_id + best + 1, pair_id + best + 2, (size_t)shifted * sizeof(int));
        memmove(pair_score + best + 1, pair_score + best + 2, (size_t)shifted * sizeof(float));
        n--;
        if (best > 0) pair_id[best - 1] = pair_lookup(t, ids[best - 1], ids[best], buf, &pair_score[best - 1]);
        if (best + 1 < n) pair_id[best] = pair_lookup(t, ids[best], ids[best + 1], buf, &pair_score[best]);
    }
    free(pair_id);
    free(pair_score);
    free(buf);
    return n;
}

int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_bos, int32_t *out, int max_out,
                     ErrorBuf *err) {
    int32_t *ids = xmalloc((len + 2) * sizeof(int32_t));
    int n = 0;
    if (t->kind == TOKENIZER_BYTE) {
        if (add_bos) ids[n++] = t->bos_id;
        for (size_t i = 0; i < len; i++) ids[n++] = (unsigned char)text[i];
    } else {
        n = encode_llama2c(t, (const unsigned char *)text, len, add_bos, ids);
    }
    if (n > max_out) {
        free(ids);
        return error_set(err, "the text encodes to %d tokens, more than the %d allowed", n, max_out);
    }
    memcpy(out, ids, (size_t)n * sizeof(int32_t));
    free(ids);
    return n;
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

const char *tokenizer_decode_piece(const Tokenizer *t, int prev, int id, size_t *len) {
    *len = 0;
    if (id < 0 || id >= t->vocab_size || id == t->bos_id || id == t->eos_id || id == t->pad_id) return "";
    if (t->kind == TOKENIZER_BYTE) {
        *len = 1;
        return (const char *)&t->byte_pieces[id];
    }
    const char *p = t->pieces[id];
    int n = t->piece_len[id];
    if (prev == t->bos_id && n > 0 && p[0] == ' ') p++, n--;
    if (n == 6 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>' && hex_digit(p[3]) >= 0 &&
        hex_digit(p[4]) >= 0) {
        *len = 1;
        return (const char *)&t->byte_pieces[hex_digit(p[3]) * 16 + hex_digit(p[4])];
    }
    *len = (size_t)n;
    return p;
}

size_t tokenizer_decode(const Tokenizer *t, const int32_t *ids, int n, char *buf, size_t size) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = tokenizer_decode_piece(t, i ? ids[i - 1] : -1, ids[i], &len);
        for (size_t j = 0; j < len; j++, total++)
            if (total + 1 < size) buf[total] = p[j];
    }
    if (size) buf[total < size ? total : size - 1] = '\0';
    return total;
}

int tokenizer_check_model(const Tokenizer *t, int model_vocab, ErrorBuf *err) {
    if (t->vocab_size == model_vocab) return 0;
    return error_set(err, "the tokenizer has %d tokens but the model's vocabulary has %d: use the tokenizer the "
                          "model was trained with (model.tokenizer), or set model.vocab_size to match", t->vocab_size,
                     model_vocab);
}
