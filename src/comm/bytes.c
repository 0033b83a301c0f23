// Growable byte writer and bounds-checked byte reader (see bytes.h).
#include "comm/bytes.h"

#include <stdlib.h>
#include <string.h>

void bw_init(ByteWriter *w, size_t initial_cap) {
    w->cap = initial_cap ? initial_cap : 256;
    w->data = xmalloc(w->cap);
    w->len = 0;
}

void bw_free(ByteWriter *w) {
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
}

void bw_put(ByteWriter *w, const void *src, size_t n) {
    if (n == 0) return;
    if (w->len + n > w->cap) {
        while (w->len + n > w->cap) w->cap *= 2;
        w->data = xrealloc(w->data, w->cap);
    }
    memcpy(w->data + w->len, src, n);
    w->len += n;
}

void bw_u8(ByteWriter *w, uint8_t v) { bw_put(w, &v, 1); }
void bw_u32(ByteWriter *w, uint32_t v) { bw_put(w, &v, 4); }
void bw_i32(ByteWriter *w, int32_t v) { bw_put(w, &v, 4); }
void bw_u64(ByteWriter *w, uint64_t v) { bw_put(w, &v, 8); }
void bw_f32(ByteWriter *w, float v) { bw_put(w, &v, 4); }
void bw_f64(ByteWriter *w, double v) { bw_put(w, &v, 8); }

void bw_str(ByteWriter *w, const char *s, uint32_t max_len) {
    size_t n = strlen(s);
    if (n > max_len) n = max_len;
    bw_u32(w, (uint32_t)n);
    bw_put(w, s, n);
}

void br_init(ByteReader *r, const void *data, size_t len, const char *what, ErrorBuf *err) {
    r->data = data;
    r->len = len;
    r->pos = 0;
    r->err = err;
    r->what = what;
}

int br_get(ByteReader *r, void *dst, size_t n, const char *field) {
    if (n > r->len - r->pos)
        return error_set(r->err, "malformed %s message: truncated at field '%s' (needs %zu bytes at offset %zu of %zu)",
                         r->what, field, n, r->pos, r->len);
    if (n) memcpy(dst, r->data + r->pos, n);
    r->pos += n;
    return 0;
}

int br_u8(ByteReader *r, uint8_t *v, const char *field) { return br_get(r, v, 1, field); }
int br_u32(ByteReader *r, uint32_t *v, const char *field) { return br_get(r, v, 4, field); }
int br_i32(ByteReader *r, int32_t *v, const char *field) { return br_get(r, v, 4, field); }
int br_u64(ByteReader *r, uint64_t *v, const char *field) { return br_get(r, v, 8, field); }
int br_f32(ByteReader *r, float *v, const char *field) { return br_get(r, v, 4, field); }
int br_f64(ByteReader *r, double *v, const char *field) { return br_get(r, v, 8, field); }

int br_count(ByteReader *r, uint32_t *count, uint32_t max, size_t elem_size, const char *field) {
    if (br_u32(r, count, field)) return -1;
    if (*count > max)
        return error_set(r->err, "malformed %s message: field '%s' has %u entries, more than the limit %u", r->what,
                         field, *count, max);
    if (elem_size && (size_t)*count > (r->len - r->pos) / elem_size)
        return error_set(r->err, "malformed %s message: field '%s' claims %u entries but only %zu bytes are left",
                         r->what, field, *count, r->len - r->pos);
    return 0;
}

int br_array(ByteReader *r, void **out, uint32_t count, size_t elem_size, const char *field) {
    *out = NULL;
    if (count == 0) return 0;
    if ((size_t)count > (r->len - r->pos) / elem_size)
        return error_set(r->err, "malformed %s message: array '%s' of %u entries is truncated", r->what, field, count);
    *out = xmalloc((size_t)count * elem_size);
    return br_get(r, *out, (size_t)count * elem_size, field);
}

int br_str(ByteReader *r, char *dst, size_t dst_size, const char *field) {
    uint32_t n;
    if (br_count(r, &n, UINT32_MAX, 1, field)) return -1;
    size_t keep = n < dst_size - 1 ? n : dst_size - 1;
    memcpy(dst, r->data + r->pos, keep);
    dst[keep] = '\0';
    r->pos += n;
    return 0;
}

int br_done(ByteReader *r) {
    if (r->pos != r->len)
        return error_set(r->err, "malformed %s message: %zu unexpected bytes after the last field", r->what,
                         r->len - r->pos);
    return 0;
}
