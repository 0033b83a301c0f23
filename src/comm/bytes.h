// Byte buffers for messages: a growable writer and a bounds-checked reader. Every read checks
// that the bytes are there; counts are checked against the bytes left and against a caller's
// limit before anything is allocated, so a truncated or hostile buffer gives an error, never an
// overflow. Values are stored in the host's byte order (all ranks of a job share one ABI).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
    uint8_t *data;
    size_t len, cap;
} ByteWriter;

void bw_init(ByteWriter *w, size_t initial_cap);
void bw_free(ByteWriter *w);
void bw_put(ByteWriter *w, const void *src, size_t n);
void bw_u8(ByteWriter *w, uint8_t v);
void bw_u32(ByteWriter *w, uint32_t v);
void bw_i32(ByteWriter *w, int32_t v);
void bw_u64(ByteWriter *w, uint64_t v);
void bw_f32(ByteWriter *w, float v);
void bw_f64(ByteWriter *w, double v);
void bw_str(ByteWriter *w, const char *s, uint32_t max_len);  // u32 length + bytes (truncated to max_len)

typedef struct {
    const uint8_t *data;
    size_t len, pos;
    ErrorBuf *err;
    const char *what;  // message type being decoded, for error texts
} ByteReader;

void br_init(ByteReader *r, const void *data, size_t len, const char *what, ErrorBuf *err);
int br_get(ByteReader *r, void *dst, size_t n, const char *field);
int br_u8(ByteReader *r, uint8_t *v, const char *field);
int br_u32(ByteReader *r, uint32_t *v, const char *field);
int br_i32(ByteReader *r, int32_t *v, const char *field);
int br_u64(ByteReader *r, uint64_t *v, const char *field);
int br_f32(ByteReader *r, float *v, const char *field);
int br_f64(ByteReader *r, double *v, const char *field);
// Reads a u32 count and checks count <= max and count * elem_size <= bytes left.
int br_count(ByteReader *r, uint32_t *count, uint32_t max, size_t elem_size, const char *field);
// Reads an array of count elements into a new heap buffer (*out NULL when count is 0).
int br_array(ByteReader *r, void **out, uint32_t count, size_t elem_size, const char *field);
int br_str(ByteReader *r, char *dst, size_t dst_size, const char *field);  // NUL-terminates, truncates
int br_done(ByteReader *r);  // error if bytes are left over
