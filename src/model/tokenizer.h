// Tokenizers: ids <-> text.
//   "byte": byte-level, for the built-in tasks: ids 0..255 are the bytes, then BOS (256),
//           EOS (257) and PAD (258); vocabulary 259. Every byte string round-trips exactly.
//   a path: llama2.c's tokenizer.bin (int32 max_token_length, then per token: float32 score,
//           int32 length, bytes), BOS 1, EOS 2. Encoding follows llama2.c's run.c exactly: a
//           dummy-prefix " " token when the text is not empty, one token per UTF-8 code point
//           that is in the vocabulary (else its bytes as <0xXX> tokens, id byte + 3), then
//           repeatedly the adjacent pair whose concatenation is the best-scoring vocabulary
//           entry is merged (leftmost on ties) until no pair merges. Decoding strips the leading
//           space of a piece that follows BOS and turns <0xXX> pieces into raw bytes.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef enum { TOKENIZER_BYTE = 0, TOKENIZER_LLAMA2C = 1 } TokenizerKind;

typedef struct {
    TokenizerKind kind;
    int vocab_size;
    int bos_id, eos_id, pad_id;  // pad_id -1 when there is none
    // llama2.c vocabulary (NULL for the byte tokenizer).
    char **pieces;               // [vocab_size], each NUL-terminated (may hold bytes >= 0x80)
    int *piece_len;              // [vocab_size]
    float *scores;               // [vocab_size]
    int max_token_length;
    int *sorted;                 // ids sorted by piece bytes (then id), for lookups
    unsigned char byte_pieces[256];
} Tokenizer;

// spec: "byte" or the path of a tokenizer.bin. NULL + err on bad input (the file is checked
// entry by entry against its size).
Tokenizer *tokenizer_load(const char *spec, ErrorBuf *err);
void tokenizer_free(Tokenizer *t);
// Encodes len bytes of text (any bytes; NUL is an ordinary byte), with BOS first when
// add_bos. Returns the number of ids written to out, or -1 + err when more than max_out
// ids would be needed. Never more than len + 2 ids.
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len, int add_bos, int32_t *out, int max_out,
                     ErrorBuf *err);
// The bytes of token `id` when it follows `prev` (for streaming output): *len bytes at the
// returned pointer (not NUL-terminated in general). Special tokens (BOS, EOS, PAD) and ids
// outside the vocabulary give 0 bytes.
const char *tokenizer_decode_piece(const Tokenizer *t, int prev, int id, size_t *len);
// The id of the llama2.c piece with exactly these len bytes (the lowest id when pieces repeat),
// or -1 (and always -1 for the byte tokenizer).
int tokenizer_piece_id(const Tokenizer *t, const char *s, int len);
// Decodes ids into buf (NUL-terminated, truncated to size); returns the full decoded length.
// The first id is decoded as if it followed BOS only when it does (prev = -1).
size_t tokenizer_decode(const Tokenizer *t, const int32_t *ids, int n, char *buf, size_t size);
// 0 when the tokenizer's vocabulary is the model's vocabulary size, else -1 + err.
int tokenizer_check_model(const Tokenizer *t, int model_vocab, ErrorBuf *err);
