// Rank- and role-tagged log lines (see log.h). Warnings and errors go to stderr.
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

static LogLevel g_level = LOG_LEVEL_INFO;

void log_set_level(LogLevel level) { g_level = level; }
LogLevel log_level(void) { return g_level; }

int log_level_parse(const char *name, LogLevel *out) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (LogLevel)i;
            return 0;
        }
    }
    return -1;
}

void log_emit(LogLevel level, const char *fmt, ...) {
    if (level < g_level) return;
    static const char *tags[] = {"debug", "info", "warn", "error"};
    char stamp[16];
    time_t now = time(NULL);
    struct tm tm_now;
    localtime_r(&now, &tm_now);
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm_now);
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    FILE *out = level >= LOG_LEVEL_WARN ? stderr : stdout;
    if (identity_rank() >= 0)
        fprintf(out, "[%s r%d %s] %s%s%s\n", stamp, identity_rank(), identity_role(),
                level == LOG_LEVEL_INFO ? "" : tags[level], level == LOG_LEVEL_INFO ? "" : ": ", msg);
    else
        fprintf(out, "[%s] %s%s%s\n", stamp, level == LOG_LEVEL_INFO ? "" : tags[level],
                level == LOG_LEVEL_INFO ? "" : ": ", msg);
    fflush(out);
}
