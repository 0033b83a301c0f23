// A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json, read by the `tokenizers`
// library, transformers' AutoTokenizer and vLLM) for our tokenizers, so that an exported model
// directory can be served with the tokenizer it was trained with.
//
//   byte:    a BPE model with no merges whose vocabulary is the 256 byte tokens <0x00>..<0xFF>
//            (ids 0..255) with byte fallback, so every character becomes its UTF-8 bytes, then
//            <s> (256), </s> (257), <pad> (258).
//   llama2.c: the layout of Llama 2's own tokenizer.json: the normaliser prepends "▁" (our
//            dummy-prefix space) and writes spaces as "▁"; a BPE model with byte fallback over
//            the pieces (spaces as "▁"); one merge (a, b) for every piece that is the
//            concatenation of two pieces a and b, ranked by the piece's score (best first), as
//            our encoder merges the best-scoring pair. The decoder undoes it and strips the
//            dummy prefix.
// Both add <s> in front (a template post-processor), as our prompts have BOS, and name the
// special tokens <unk> <s> </s> (<s> </s> <pad> for byte); tokenizer_config.json sets
// split_special_tokens, so that text such as "</s>" is encoded as characters, as ours does (a
// user of the bare tokenizers library sets encode_special_tokens = True). Every id gets a
// distinct name: a piece that repeats another, is empty or not strict UTF-8 is named
// <unused_piece_ID> and is never produced (as by our encoder). Encodings agree with
// tokenizer_encode except where two different merges of equal score compete (our encoder takes
// the leftmost, a BPE model the earlier rank) and for text holding "▁" itself.
#pragma once
#include "core/error.h"
#include "model/tokenizer.h"

// Writes dir/tokenizer.json and dir/tokenizer_config.json (model_max_length = max_seq_len).
int hf_tokenizer_save(const Tokenizer *t, int max_seq_len, const char *dir, ErrorBuf *err);
