// Types shared by the config loader and the modules that declare their own config keys
// (see config.h): key tables, and the list values a key may hold.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define CFG_STR_MAX 512
#define CFG_LIST_MAX 16
#define CFG_MAX_KEYS 256

typedef struct {
    int count;
    char items[CFG_LIST_MAX][64];
} CfgStrList;

typedef struct {
    int count;
    double items[CFG_LIST_MAX];
} CfgFloatList;

typedef enum { CFG_INT, CFG_INT64, CFG_FLOAT, CFG_BOOL, CFG_STRING, CFG_ENUM, CFG_STR_LIST, CFG_FLOAT_LIST, CFG_RESUME } CfgType;

typedef struct {
    const char *path;     // "trainer.lr"
    CfgType type;
    size_t offset;        // within the struct the table belongs to
    size_t size;          // of the field (strings: buffer size)
    const char *def;      // default, written as a --set value
    double min, max;      // inclusive range for numbers (and list items)
    const char *choices;  // CFG_ENUM: "a|b|c"
    const char *doc;
} ConfigKey;

// A table of keys living at `base` within Config, with an optional cross-key check.
typedef struct Config Config;
typedef struct {
    const ConfigKey *keys;
    int count;
    size_t base;
    int (*validate)(const Config *cfg, ErrorBuf *err);
} ConfigTable;

