// JSON Lines files (the datasets of env.jsonl, env.code and sft.data): the file is read whole
// and each line that is not blank is handed to a callback with its 1-based line number, so
// that every reader reports problems as FILE:LINE and treats files alike: a UTF-8 byte-order
// mark at the start is skipped, "\r\n" line ends are accepted, blank (whitespace-only) lines
// are skipped, and a line longer than the limit is an error naming the setting that raises it.
#pragma once
#include <stddef.h>

#include "core/error.h"

// Called for each non-blank line (len bytes at text, without the line end; text[len] is not
// necessarily NUL). Returns 0 to go on, or -1 with err set to stop the read.
typedef int (*JsonLineFn)(void *ctx, const char *path, int line, const char *text, size_t len, ErrorBuf *err);

// Reads path (a regular file of at most max_file_bytes) and calls fn on each non-blank line.
// max_line_key names the setting of max_line_bytes in the error for a longer line. Returns the
// number of lines handed to fn (0 for a file with none), or -1 with err set (the file's, or
// fn's error).
int json_lines_read(const char *path, size_t max_file_bytes, size_t max_line_bytes, const char *max_line_key,
                    JsonLineFn fn, void *ctx, ErrorBuf *err);
