// Building the job's model and tokenizer from the config (model.* keys): the tokenizer named
// by model.tokenizer ("byte" or a tokenizer.bin), then the model by model.source:
//   init     a new model of the model.* shape (vocab_size 0 = the tokenizer's), initialised
//            with normal(0, model.init_std) from run.seed
//   llama2c  a llama2.c .bin file at model.path
//   hf       a Hugging Face directory at model.path (config.json + safetensors)
//   checkpoint  the model of an asyncrl checkpoint at model.path (its weights only: the new run
//            has its own optimizer state, steps and output directory)
// and checks that the tokenizer's vocabulary is the model's.
#pragma once
#include "core/config_types.h"
#include "core/error.h"
#include "model/model.h"
#include "model/tokenizer.h"

int model_load_from_config(const Config *cfg, Model **model_out, Tokenizer **tok_out, ErrorBuf *err);
// The model's shape alone (reads only headers / config.json; for init the tokenizer's size).
int model_shape_from_config(const Config *cfg, ModelConfig *out, ErrorBuf *err);

// What a model path names, told by what is there: a directory (Hugging Face), an asyncrl
// checkpoint (an HDF5 file, or a damaged one named *.h5, so that it is reported as one), or
// else a llama2.c .bin file. asyncrl generate and convert take any of them.
typedef enum { MODEL_FILE_LLAMA2C, MODEL_FILE_HF_DIR, MODEL_FILE_CHECKPOINT } ModelFileKind;
ModelFileKind model_file_kind(const char *path);
// The model at path, whichever its kind (NULL + err).
Model *model_load_file(const char *path, ErrorBuf *err);
