// TextCodec over model/tokenizer.h (see codec.h).
#include "orch/codec.h"

#include <stdlib.h>

#include "model/tokenizer.h"

static int encode(void *ctx, const char *text, size_t len, int add_bos, int32_t *out, int max) {
    ErrorBuf err;
    return tokenizer_encode(ctx, text, len, add_bos, out, max, &err);
}

static size_t decode(void *ctx, const int32_t *ids, int n, char **text) {
    size_t len = tokenizer_decode(ctx, ids, n, NULL, 0);
    *text = xmalloc(len + 1);
    tokenizer_decode(ctx, ids, n, *text, len + 1);
    return len;
}

int codec_open(TextCodec *codec, const Config *cfg, ErrorBuf *err) {
    Tokenizer *t = tokenizer_load(cfg->model.tokenizer, err);
    if (!t) return -1;
    codec->ctx = t;
    codec->bos = t->bos_id;
    codec->eos = t->eos_id;
    codec->encode = encode;
    codec->decode = decode;
    return 0;
}

void codec_close(TextCodec *codec) {
    tokenizer_free(codec->ctx);
    codec->ctx = NULL;
}

int codec_vocab_size(const TextCodec *codec) { return ((const Tokenizer *)codec->ctx)->vocab_size; }
