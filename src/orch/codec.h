// The orchestrator's text <-> token codec (rollout.h's TextCodec) over the tokenizer named by
// model.tokenizer: prompts and environment replies are encoded, model turns decoded for the
// verifiers.
#pragma once
#include "core/config.h"
#include "orch/rollout.h"

int codec_open(TextCodec *codec, const Config *cfg, ErrorBuf *err);
void codec_close(TextCodec *codec);
int codec_vocab_size(const TextCodec *codec);
