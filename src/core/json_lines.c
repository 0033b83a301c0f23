// JSON Lines files, line by line (see json_lines.h).
#include "core/json_lines.h"

#include <stdlib.h>
#include <string.h>

#include "core/files.h"

static int is_blank(const char *text, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\f' && text[i] != '\v') return 0;
    return 1;
}

int json_lines_read(const char *path, size_t max_file_bytes, size_t max_line_bytes, const char *max_line_key,
                    JsonLineFn fn, void *ctx, ErrorBuf *err) {
    size_t len;
    char *buf = file_read_all(path, max_file_bytes, &len, err);
    if (!buf) return -1;
    size_t at = len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;  // a UTF-8 byte-order mark
    int line = 0, handed = 0;
    while (at < len) {
        line++;
        const char *start = buf + at;
        const char *nl = memchr(start, '\n', len - at);
        size_t n = nl ? (size_t)(nl - start) : len - at;
        at += n + (nl != NULL);
        if (n > 0 && start[n - 1] == '\r') n--;
        if (is_blank(start, n)) continue;
        if (n > max_line_bytes) {
            free(buf);
            return error_set(err, "%s:%d: line is %zu bytes, longer than %s = %zu", path, line, n, max_line_key,
                             max_line_bytes);
        }
        if (fn(ctx, path, line, start, n, err) != 0) {
            free(buf);
            return -1;
        }
        handed++;
    }
    free(buf);
    return handed;
}
