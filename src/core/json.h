// A small strict JSON reader (RFC 8259) for config.json, safetensors headers and JSONL
// datasets, plus a string escaper for writing JSON. Parsing never trusts its input: depth,
// sizes and escapes are checked, and an error names the byte offset where parsing stopped.
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct Json {
    JsonType type;
    int boolean;
    double number;
    char *string;        // JSON_STRING: UTF-8, NUL-terminated (may contain NULs via \u0000);
                         // JSON_NUMBER: the number as written (e.g. 2432902008176640000)
    size_t string_len;   // bytes in string, without the terminator
    int count;           // JSON_ARRAY / JSON_OBJECT: number of items
    struct Json *items;  // [count] values
    char **keys;         // JSON_OBJECT: [count] keys
} Json;

// Parses exactly one JSON value (surrounding whitespace allowed). Returns NULL and fills err
// on any error.
Json *json_parse(const char *text, size_t len, ErrorBuf *err);
void json_free(Json *json);

const Json *json_get(const Json *object, const char *key);        // NULL if absent or not an object
const char *json_get_string(const Json *object, const char *key);  // NULL if absent or not a string
// Reads an integer member; returns 0 on success, -1 if absent, not a number or not integral.
int json_get_int(const Json *object, const char *key, long long *out);
int json_get_number(const Json *object, const char *key, double *out);

// Writes s as a quoted JSON string with escapes (bytes >= 0x80 are copied as they are).
void json_write_string(FILE *out, const char *s, size_t len);
// The same without the quotes (for a string written in parts).
void json_write_escaped(FILE *out, const char *s, size_t len);
