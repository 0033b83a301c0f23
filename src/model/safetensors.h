// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw tensor bytes (offsets relative to the end of the header). The reader checks
// the whole header against the file size before anything is read or allocated from it;
// tensors of dtype F32, BF16 and F16 convert to fp32. The writer writes F32.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER (100u << 20)  // 100 MiB, as the reference implementation

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 } StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t numel;
    uint64_t begin, end;  // absolute byte offsets in the file
} StTensor;

typedef struct {
    char *path;
    uint64_t file_size;
    int n_tensors;
    StTensor *tensors;
} SafetensorsFile;

// Reads and validates the header of `path`. 0, or -1 with err naming the file and the problem.
int safetensors_open(SafetensorsFile *f, const char *path, ErrorBuf *err);
void safetensors_close(SafetensorsFile *f);
const StTensor *safetensors_find(const SafetensorsFile *f, const char *name);
// Reads tensor t into out (t->numel floats, host), converting to fp32.
int safetensors_read_f32(const SafetensorsFile *f, const StTensor *t, float *out, ErrorBuf *err);

// Writes an F32 file of n tensors. names[i], ndims[i], shapes[i] describe tensor i; its data
// is asked for in order by fetch(ctx, i, out) into a host buffer of numel floats, so a large
// model is never copied to the host at once. The file is written under a temporary name and
// renamed when complete.
typedef void (*StFetch)(void *ctx, int i, float *out);
int safetensors_write(const char *path, int n, const char *const *names, const int *ndims,
                      const int64_t (*shapes)[ST_MAX_DIMS], StFetch fetch, void *ctx, ErrorBuf *err);
