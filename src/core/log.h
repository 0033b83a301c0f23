// Logging: one line per event, prefixed with the time, the rank and its role, so that the
// interleaved output of many ranks can be read (and grepped) afterwards.
#pragma once

typedef enum { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO = 1, LOG_LEVEL_WARN = 2, LOG_LEVEL_ERROR = 3 } LogLevel;

void log_set_level(LogLevel level);
LogLevel log_level(void);
int log_level_parse(const char *name, LogLevel *out);  // 0 on success, -1 for an unknown name

__attribute__((format(printf, 2, 3)))
void log_emit(LogLevel level, const char *fmt, ...);

#define LOG_DEBUG(...) log_emit(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define LOG_INFO(...) log_emit(LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_WARN(...) log_emit(LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_ERROR(...) log_emit(LOG_LEVEL_ERROR, __VA_ARGS__)
