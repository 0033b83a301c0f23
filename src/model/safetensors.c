// safetensors reader (validating every header field against the file size) and F32 writer.
#include "model/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/files.h"
#include "core/json.h"

static const char *dtype_name(StDtype d) { return d == ST_F32 ? "F32" : d == ST_F16 ? "F16" : "BF16"; }
static size_t dtype_size(StDtype d) { return d == ST_F32 ? 4 : 2; }

static int parse_dtype(const char *s, StDtype *out) {
    if (strcmp(s, "F32") == 0) *out = ST_F32;
    else if (strcmp(s, "F16") == 0) *out = ST_F16;
    else if (strcmp(s, "BF16") == 0) *out = ST_BF16;
    else return -1;
    return 0;
}

void safetensors_close(SafetensorsFile *f) {
    if (!f) return;
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    memset(f, 0, sizeof *f);
}

// One header entry: checks types, shape, offsets against the data size. 0 or -1 + err.
static int parse_entry(const char *path, const char *name, const Json *e, uint64_t data_start, uint64_t data_size,
                       StTensor *t, ErrorBuf *err) {
    if (e->type != JSON_OBJECT) return error_set(err, "%s: header entry \"%s\" is not an object", path, name);
    const char *dtype = json_get_string(e, "dtype");
    if (!dtype) return error_set(err, "%s: tensor \"%s\" has no \"dtype\" string", path, name);
    if (parse_dtype(dtype, &t->dtype) != 0)
        return error_set(err, "%s: tensor \"%s\" has dtype %s; supported dtypes are F32, BF16 and F16", path, name,
                         dtype);
    const Json *shape = json_get(e, "shape");
    if (!shape || shape->type != JSON_ARRAY || shape->count > ST_MAX_DIMS)
        return error_set(err, "%s: tensor \"%s\" needs a \"shape\" array of at most %d sizes", path, name,
                         ST_MAX_DIMS);
    t->ndim = shape->count;
    uint64_t numel = 1;
    for (int d = 0; d < shape->count; d++) {
        const Json *s = &shape->items[d];
        if (s->type != JSON_NUMBER || s->number < 0 || s->number > 9e15 || s->number != (double)(int64_t)s->number)
            return error_set(err, "%s: tensor \"%s\" has a shape entry that is not a non-negative integer", path,
                             name);
        t->shape[d] = (int64_t)s->number;
        if (t->shape[d] != 0 && numel > UINT64_MAX / 8 / (uint64_t)t->shape[d])
            return error_set(err, "%s: tensor \"%s\" has a shape whose size overflows", path, name);
        numel *= (uint64_t)t->shape[d];
    }
    t->numel = numel;
    const Json *off = json_get(e, "data_offsets");
    if (!off || off->type != JSON_ARRAY || off->count != 2 || off->items[0].type != JSON_NUMBER ||
        off->items[1].type != JSON_NUMBER)
        return error_set(err, "%s: tensor \"%s\" needs \"data_offsets\": [begin, end]", path, name);
    const double b = off->items[0].number, en = off->items[1].number;
    if (b < 0 || en < b || b != (double)(uint64_t)b || en != (double)(uint64_t)en || en > (double)data_size)
        return error_set(err, "%s: tensor \"%s\" has data_offsets [%.0f, %.0f] outside the %llu data bytes of the "
                              "file (truncated or corrupt file?)",
                         path, name, b, en, (unsigned long long)data_size);
    if ((uint64_t)en - (uint64_t)b != numel * dtype_size(t->dtype))
        return error_set(err, "%s: tensor \"%s\": shape and dtype %s make %llu bytes but data_offsets span %llu",
                         path, name, dtype_name(t->dtype), (unsigned long long)(numel * dtype_size(t->dtype)),
                         (unsigned long long)((uint64_t)en - (uint64_t)b));
    t->begin = data_start + (uint64_t)b;
    t->end = data_start + (uint64_t)en;
    t->name = xstrdup(name);
    return 0;
}

int safetensors_open(SafetensorsFile *f, const char *path, ErrorBuf *err) {
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return error_set(err, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return error_set(err, "%s is not a regular file", path);
    }
    const uint64_t size = (uint64_t)st.st_size;
    unsigned char len_bytes[8];
    if (size < 8 || fread(len_bytes, 1, 8, fp) != 8) {
        fclose(fp);
        return error_set(err, "%s: %llu bytes is too short for a safetensors file (8-byte header length first)",
                         path, (unsigned long long)size);
    }
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = header_len << 8 | len_bytes[i];
    if (header_len > size - 8 || header_len > ST_MAX_HEADER) {
        fclose(fp);
        return error_set(err, "%s: header length %llu is beyond the file size %llu (or above %u): not a safetensors "
                              "file, or truncated", path, (unsigned long long)header_len, (unsigned long long)size,
                         ST_MAX_HEADER);
    }
    char *text = xmalloc(header_len + 1);
    if (fread(text, 1, header_len, fp) != header_len) {
        free(text);
        fclose(fp);
        return error_set(err, "%s: cannot read the %llu-byte header", path, (unsigned long long)header_len);
    }
    fclose(fp);
    ErrorBuf jerr;
    Json *root = json_parse(text, header_len, &jerr);
    free(text);
    if (!root) return error_set(err, "%s: the header is not valid JSON: %s", path, jerr.msg);
    if (root->type != JSON_OBJECT) {
        json_free(root);
        return error_set(err, "%s: the header is not a JSON object", path);
    }
    f->path = xstrdup(path);
    f->file_size = size;
    f->tensors = xcalloc((size_t)root->count + 1, sizeof(StTensor));
    const uint64_t data_start = 8 + header_len, data_size = size - data_start;
    for (int i = 0; i < root->count; i++) {
        if (strcmp(root->keys[i], "__metadata__") == 0) continue;
        for (int j = 0; j < f->n_tensors; j++)
            if (strcmp(f->tensors[j].name, root->keys[i]) == 0) {
                error_set(err, "%s: tensor \"%s\" appears twice in the header", path, root->keys[i]);
                goto fail;
            }
        if (parse_entry(path, root->keys[i], &root->items[i], data_start, data_size, &f->tensors[f->n_tensors],
                        err) != 0)
            goto fail;
        f->n_tensors++;
    }
    json_free(root);
    return 0;
fail:
    json_free(root);
    safetensors_close(f);
    return -1;
}

const StTensor *safetensors_find(const SafetensorsFile *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

static float bf16_to_f32(uint16_t h) {
    union {
        uint32_t u;
        float f;
    } v = {.u = (uint32_t)h << 16};
    return v.f;
}

static float f16_to_f32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    union {
        uint32_t u;
        float f;
    } v;
    if (exp == 0x1f) {
        v.u = sign | 0x7f800000u | (mant << 13);  // inf / nan
    } else if (exp != 0) {
        v.u = sign | ((exp + 112) << 23) | (mant << 13);
    } else {
        v.f = (float)mant * 0x1p-24f;  // zero and subnormals
        v.u |= sign;
    }
    return v.f;
}

int safetensors_read_f32(const SafetensorsFile *f, const StTensor *t, float *out, ErrorBuf *err) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) return error_set(err, "cannot open %s: %s", f->path, strerror(errno));
    const size_t bytes = (size_t)(t->end - t->begin);
    void *raw = t->dtype == ST_F32 ? (void *)out : xmalloc(bytes ? bytes : 1);
    int ok = fseeko(fp, (off_t)t->begin, SEEK_SET) == 0 && fread(raw, 1, bytes, fp) == bytes;
    fclose(fp);
    if (!ok) {
        if (raw != out) free(raw);
        return error_set(err, "%s: cannot read tensor \"%s\" (file changed or truncated?)", f->path, t->name);
    }
    if (t->dtype != ST_F32) {
        const unsigned char *b = raw;
        for (uint64_t i = 0; i < t->numel; i++) {
            const uint16_t h = (uint16_t)(b[2 * i] | b[2 * i + 1] << 8);
            out[i] = t->dtype == ST_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
        }
        free(raw);
    }
    return 0;
}

int safetensors_write(const char *path, int n, const char *const *names, const int *ndims,
                      const int64_t (*shapes)[ST_MAX_DIMS], StFetch fetch, void *ctx, ErrorBuf *err) {
    // Header text first (to know its length), in tensor order.
    size_t cap = 256 + (size_t)n * 256, len = 0;
    char *header = xmalloc(cap);
    uint64_t offset = 0, biggest = 0;
    len += (size_t)snprintf(header + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < n; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) numel *= (uint64_t)shapes[i][d];
        if (numel > biggest) biggest = numel;
        if (cap - len < strlen(names[i]) + 256) {
            cap = 2 * cap + strlen(names[i]) + 256;
            header = xrealloc(header, cap);
        }
        len += (size_t)snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[", names[i]);
        for (int d = 0; d < ndims[i]; d++)
            len += (size_t)snprintf(header + len, cap - len, "%s%lld", d ? "," : "", (long long)shapes[i][d]);
        len += (size_t)snprintf(header + len, cap - len, "],\"data_offsets\":[%llu,%llu]}",
                                (unsigned long long)offset, (unsigned long long)(offset + numel * 4));
        offset += numel * 4;
    }
    if (cap - len < 16) header = xrealloc(header, cap += 16);
    header[len++] = '}';
    while (len % 8) header[len++] = ' ';  // data starts 8-byte aligned, as the reference writer
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(header);
        return error_set(err, "cannot create %s: %s", tmp, strerror(errno));
    }
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) len_bytes[i] = (unsigned char)((uint64_t)len >> (8 * i));
    int ok = fwrite(len_bytes, 1, 8, fp) == 8 && fwrite(header, 1, len, fp) == len;
    free(header);
    float *buf = xmalloc((size_t)(biggest ? biggest : 1) * sizeof(float));
    for (int i = 0; i < n && ok; i++) {
        uint64_t numel = 1;
        for (int d = 0; d < ndims[i]; d++) numel *= (uint64_t)shapes[i][d];
        fetch(ctx, i, buf);
        ok = fwrite(buf, sizeof(float), (size_t)numel, fp) == numel;  // little-endian hosts only
    }
    free(buf);
    return file_commit(fp, ok, tmp, path, err);
}
