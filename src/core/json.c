// Strict recursive-descent JSON parser with depth and size limits (see json.h).
#include "core/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 128

typedef struct {
    const char *p, *end, *start;
    ErrorBuf *err;
    int failed;
} Parser;

static void parse_error(Parser *ps, const char *what) {
    if (!ps->failed) error_set(ps->err, "invalid JSON at byte %zu: %s", (size_t)(ps->p - ps->start), what);
    ps->failed = 1;
}

static void skip_space(Parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int parse_value(Parser *ps, Json *out, int depth);
static void free_children(Json *json);

static int hex4(Parser *ps, unsigned *out) {
    if (ps->end - ps->p < 4) return parse_error(ps, "truncated \\u escape"), -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = ps->p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return parse_error(ps, "bad hex digit in \\u escape"), -1;
    }
    ps->p += 4;
    *out = v;
    return 0;
}

static size_t put_utf8(char *dst, unsigned cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) { dst[0] = (char)(0xC0 | (cp >> 6)); dst[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        dst[0] = (char)(0xE0 | (cp >> 12)); dst[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    dst[0] = (char)(0xF0 | (cp >> 18)); dst[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); dst[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// Parses a string starting at the opening quote; the decoded text is never longer than the source.
static int parse_string(Parser *ps, char **out, size_t *out_len) {
    ps->p++;  // opening quote
    const char *scan = ps->p;
    while (scan < ps->end && *scan != '"') scan += (*scan == '\\') ? 2 : 1;
    if (scan >= ps->end) return parse_error(ps, "unterminated string"), -1;
    char *buf = xmalloc((size_t)(scan - ps->p) + 1);
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        unsigned char c = (unsigned char)*ps->p;
        if (c < 0x20) { free(buf); return parse_error(ps, "control character in string"), -1; }
        if (c != '\\') { buf[n++] = (char)c; ps->p++; continue; }
        ps->p++;
        if (ps->p >= ps->end) { free(buf); return parse_error(ps, "truncated escape"), -1; }
        char e = *ps->p++;
        switch (e) {
            case '"': buf[n++] = '"'; break;
            case '\\': buf[n++] = '\\'; break;
            case '/': buf[n++] = '/'; break;
            case 'b': buf[n++] = '\b'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'n': buf[n++] = '\n'; break;
            case 'r': buf[n++] = '\r'; break;
            case 't': buf[n++] = '\t'; break;
            case 'u': {
                unsigned cp;
                if (hex4(ps, &cp)) { free(buf); return -1; }
                if (cp >= 0xD800 && cp < 0xDC00) {  // surrogate pair
                    unsigned lo;
                    if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                        free(buf); return parse_error(ps, "unpaired surrogate"), -1;
                    }
                    ps->p += 2;
                    if (hex4(ps, &lo)) { free(buf); return -1; }
                    if (lo < 0xDC00 || lo > 0xDFFF) { free(buf); return parse_error(ps, "bad low surrogate"), -1; }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp < 0xE000) {
                    free(buf); return parse_error(ps, "unpaired low surrogate"), -1;
                }
                n += put_utf8(buf + n, cp);  // at most 4 bytes for 6 or 12 source bytes
                break;
            }
            default: free(buf); return parse_error(ps, "unknown escape"), -1;
        }
    }
    ps->p++;  // closing quote
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

static int parse_number(Parser *ps, Json *out) {
    const char *s = ps->p;
    if (ps->p < ps->end && *ps->p == '-') ps->p++;
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return parse_error(ps, "bad number"), -1;
    if (*ps->p == '0') ps->p++;
    else while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return parse_error(ps, "bad fraction"), -1;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') return parse_error(ps, "bad exponent"), -1;
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') ps->p++;
    }
    size_t n = (size_t)(ps->p - s);
    if (n > 64) return parse_error(ps, "number too long"), -1;
    char tmp[72];
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    out->type = JSON_NUMBER;
    out->number = strtod(tmp, NULL);
    out->string = xstrdup(tmp);
    out->string_len = n;
    return 0;
}

static int expect_word(Parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return parse_error(ps, "unexpected token"), -1;
    ps->p += n;
    return 0;
}

static void push_item(Json *out, int *cap, Json *item, char *key) {
    if (out->count == *cap) {
        *cap = *cap ? 2 * *cap : 4;
        out->items = xrealloc(out->items, (size_t)*cap * sizeof(Json));
        if (out->type == JSON_OBJECT) out->keys = xrealloc(out->keys, (size_t)*cap * sizeof(char *));
    }
    out->items[out->count] = *item;
    if (out->type == JSON_OBJECT) out->keys[out->count] = key;
    out->count++;
}

static int parse_container(Parser *ps, Json *out, int depth, int is_object) {
    out->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    char close = is_object ? '}' : ']';
    int cap = 0;
    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return 0; }
    for (;;) {
        char *key = NULL;
        skip_space(ps);
        if (is_object) {
            size_t key_len;
            if (ps->p >= ps->end || *ps->p != '"') return parse_error(ps, "expected a string key"), -1;
            if (parse_string(ps, &key, &key_len)) return -1;
            // Python and jq keep the last of two equal keys, a first-match lookup the first: the
            // line would read differently here and there, so it is refused.
            for (int i = 0; i < out->count; i++) {
                if (strcmp(out->keys[i], key) != 0) continue;
                char what[128];
                snprintf(what, sizeof what, "the key \"%.60s\" appears twice in one object", key);
                free(key);
                return parse_error(ps, what), -1;
            }
            skip_space(ps);
            if (ps->p >= ps->end || *ps->p != ':') { free(key); return parse_error(ps, "expected ':'"), -1; }
            ps->p++;
        }
        Json item;
        memset(&item, 0, sizeof item);
        if (parse_value(ps, &item, depth + 1)) { free(key); free_children(&item); return -1; }
        push_item(out, &cap, &item, key);
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == close) { ps->p++; return 0; }
        return parse_error(ps, is_object ? "expected ',' or '}'" : "expected ',' or ']'"), -1;
    }
}

static int parse_value(Parser *ps, Json *out, int depth) {
    if (depth > JSON_MAX_DEPTH) return parse_error(ps, "nesting too deep"), -1;
    skip_space(ps);
    if (ps->p >= ps->end) return parse_error(ps, "unexpected end of input"), -1;
    switch (*ps->p) {
        case '{': return parse_container(ps, out, depth, 1);
        case '[': return parse_container(ps, out, depth, 0);
        case '"': out->type = JSON_STRING; return parse_string(ps, &out->string, &out->string_len);
        case 't': out->type = JSON_BOOL; out->boolean = 1; return expect_word(ps, "true");
        case 'f': out->type = JSON_BOOL; out->boolean = 0; return expect_word(ps, "false");
        case 'n': out->type = JSON_NULL; return expect_word(ps, "null");
        default: return parse_number(ps, out);
    }
}

static void free_children(Json *json) {
    if (!json) return;
    for (int i = 0; i < json->count; i++) {
        free_children(&json->items[i]);
        if (json->keys) free(json->keys[i]);
    }
    free(json->items);
    free(json->keys);
    free(json->string);
}

Json *json_parse(const char *text, size_t len, ErrorBuf *err) {
    Parser ps = {.p = text, .end = text + len, .start = text, .err = err, .failed = 0};
    Json *root = xcalloc(1, sizeof(Json));
    if (parse_value(&ps, root, 0) == 0) {
        skip_space(&ps);
        if (ps.p == ps.end) return root;
        parse_error(&ps, "trailing characters after the value");
    }
    free_children(root);
    free(root);
    return NULL;
}

void json_free(Json *json) {
    free_children(json);
    free(json);
}

const Json *json_get(const Json *object, const char *key) {
    if (!object || object->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < object->count; i++)
        if (strcmp(object->keys[i], key) == 0) return &object->items[i];
    return NULL;
}

const char *json_get_string(const Json *object, const char *key) {
    const Json *v = json_get(object, key);
    return v && v->type == JSON_STRING ? v->string : NULL;
}

int json_get_number(const Json *object, const char *key, double *out) {
    const Json *v = json_get(object, key);
    if (!v || v->type != JSON_NUMBER) return -1;
    *out = v->number;
    return 0;
}

int json_get_int(const Json *object, const char *key, long long *out) {
    double d;
    if (json_get_number(object, key, &d) || d != floor(d) || fabs(d) > 9e15) return -1;
    *out = (long long)d;
    return 0;
}

void json_write_string(FILE *out, const char *s, size_t len) {
    fputc('"', out);
    json_write_escaped(out, s, len);
    fputc('"', out);
}

void json_write_escaped(FILE *out, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(out, "\\%c", c);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c < 0x20) fprintf(out, "\\u%04x", c);
        else fputc(c, out);
    }
}
