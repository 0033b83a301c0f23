// Text helpers for the verifiers (see text.h). Nothing here trusts its input: lengths are
// checked before anything is copied, and numbers are parsed with explicit overflow checks.
#include "env/text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "env/env.h"

#define REPEAT_MAX_PERIOD 64
#define REPEAT_MIN_COPIES 4
#define REPEAT_MIN_BYTES 32
#define INT_LIMIT 1000000000000000000LL  // 10^18

static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c; }

int text_is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

Span text_trim(const char *s, size_t len) {
    if (!s) return (Span){"", 0};
    while (len > 0 && text_is_space(*s)) s++, len--;
    while (len > 0 && text_is_space(s[len - 1])) len--;
    return (Span){s, len};
}

int text_span_equal(Span a, Span b) { return a.len == b.len && (a.len == 0 || memcmp(a.s, b.s, a.len) == 0); }

int text_utf8_valid(const char *s, size_t len) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int extra;
        unsigned cp, min;
        if (c >= 0xC2 && c <= 0xDF) extra = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF) extra = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4) extra = 3, cp = c & 0x07, min = 0x10000;
        else return 0;  // stray continuation byte, overlong lead (C0, C1) or beyond U+10FFFF
        if (len - i <= (size_t)extra) return 0;
        for (int k = 1; k <= extra; k++) {
            unsigned cc = p[i + (size_t)k];
            if ((cc & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += (size_t)extra + 1;
    }
    return 1;
}

int text_repetitive(const char *s, size_t len) {
    for (size_t p = 1; p <= REPEAT_MAX_PERIOD && 2 * p <= len; p++) {
        // run = how many positions in a row satisfy s[i] == s[i + p]; a run of r positions is
        // a stretch of r + p bytes with period p, i.e. (r + p) / p copies of one block.
        size_t run = 0;
        for (size_t i = 0; i + p < len; i++) {
            if (s[i] != s[i + p]) {
                run = 0;
                continue;
            }
            run++;
            if (run + p >= REPEAT_MIN_COPIES * p && run + p >= REPEAT_MIN_BYTES) return 1;
        }
    }
    return 0;
}

TextStatus text_check(const char *s, size_t len, size_t max_len, int check_repeats) {
    if (max_len > ENV_MAX_OUTPUT_BYTES) max_len = ENV_MAX_OUTPUT_BYTES;
    if (!s || text_trim(s, len).len == 0) return TEXT_EMPTY;
    if (len > max_len) return TEXT_TOO_LONG;
    if (memchr(s, '\0', len)) return TEXT_NUL;
    if (!text_utf8_valid(s, len)) return TEXT_BAD_UTF8;
    if (check_repeats && text_repetitive(s, len)) return TEXT_REPETITIVE;
    return TEXT_OK;
}

const char *text_status_name(TextStatus status) {
    switch (status) {
        case TEXT_OK: return "ok";
        case TEXT_EMPTY: return "empty";
        case TEXT_TOO_LONG: return "too long";
        case TEXT_NUL: return "contains a NUL byte";
        case TEXT_BAD_UTF8: return "not valid UTF-8";
        case TEXT_REPETITIVE: return "runaway repetition";
    }
    return "?";
}

int text_parse_int(Span sp, int64_t *out) {
    size_t i = 0;
    int negative = 0;
    if (sp.len > 0 && (sp.s[0] == '-' || sp.s[0] == '+')) negative = sp.s[0] == '-', i = 1;
    if (i == sp.len || sp.len - i > 19) return -1;
    int64_t v = 0;
    for (; i < sp.len; i++) {
        if (!is_digit(sp.s[i])) return -1;
        int d = sp.s[i] - '0';
        if (v > (INT_LIMIT - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = negative ? -v : v;
    return 0;
}

int text_last_number(const char *s, size_t len, int allow_fraction, Span *number) {
    int found = 0;
    size_t i = 0;
    while (i < len) {
        if (!is_digit(s[i])) {
            i++;
            continue;
        }
        size_t start = i;
        while (i < len && is_digit(s[i])) i++;
        // Thousands separators in a decimal number: 1,234,567 (groups of exactly 3 digits after
        // a first group of 1 to 3), so "1,234" is not read as 234; "2,3" stays two numbers.
        if (allow_fraction && i - start <= 3)
            while (i + 3 < len && s[i] == ',' && is_digit(s[i + 1]) && is_digit(s[i + 2]) && is_digit(s[i + 3]) &&
                   !(i + 4 < len && is_digit(s[i + 4])))
                i += 4;
        // A fraction always belongs to the number (so "19.5" is not read as the integer 5).
        if (i + 1 < len && s[i] == '.' && is_digit(s[i + 1])) {
            i++;
            while (i < len && is_digit(s[i])) i++;
        }
        if (allow_fraction && i < len && (s[i] == 'e' || s[i] == 'E')) {
            size_t j = i + 1;
            if (j < len && (s[j] == '+' || s[j] == '-')) j++;
            if (j < len && is_digit(s[j])) {
                i = j;
                while (i < len && is_digit(s[i])) i++;
            }
        }
        if (start > 0 && (s[start - 1] == '-' || s[start - 1] == '+')) {
            char before = start >= 2 ? s[start - 2] : ' ';
            if (!is_alpha(before) && !is_digit(before) && before != ')') start--;
        }
        *number = (Span){s + start, i - start};
        found = 1;
    }
    return found;
}

int text_last_int(const char *s, size_t len, int64_t *out) {
    Span number;
    if (!text_last_number(s, len, 0, &number)) return 0;
    return text_parse_int(number, out) == 0 ? 1 : -1;
}

int text_last_double(const char *s, size_t len, double *out) {
    Span number;
    if (!text_last_number(s, len, 1, &number)) return 0;
    char buf[400];
    if (number.len >= sizeof buf) return 0;
    size_t n = 0;
    for (size_t i = 0; i < number.len; i++)
        if (number.s[i] != ',') buf[n++] = number.s[i];  // (thousands separators)
    buf[n] = '\0';
    double v = strtod(buf, NULL);
    if (!isfinite(v)) return 0;
    *out = v;
    return 1;
}

int text_is_one_number(const char *s, size_t len) {
    const Span t = text_trim(s, len);
    Span number;
    return t.len > 0 && text_last_number(t.s, t.len, 1, &number) && number.s == t.s && number.len == t.len;
}

int text_has_word(const char *s, size_t len, const char *word) {
    size_t wl = strlen(word);
    if (wl == 0 || wl > len) return 0;
    for (size_t i = 0; i + wl <= len; i++) {
        if (i > 0 && is_alpha(s[i - 1])) continue;
        size_t k = 0;
        while (k < wl && lower(s[i + k]) == lower(word[k])) k++;
        if (k < wl) continue;
        size_t j = i + wl;
        if (j == len || !is_alpha(s[j])) return 1;
        if (lower(s[j]) == 's' && (j + 1 == len || !is_alpha(s[j + 1]))) return 1;
    }
    return 0;
}

int text_count_words(const char *s, size_t len) {
    int n = 0, in_word = 0;
    for (size_t i = 0; i < len; i++) {
        int space = text_is_space(s[i]);
        if (!space && !in_word) n++;
        in_word = !space;
    }
    return n;
}

void sb_append(StrBuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void sb_printf(StrBuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    CHECK(n >= 0, "", "vsnprintf failed");
    if ((size_t)n < sizeof small) {
        sb_append(b, small, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_append(b, big, (size_t)n);
    free(big);
}

char *sb_take(StrBuf *b) {
    char *s = b->s ? b->s : xstrdup("");
    b->s = NULL;
    b->len = b->cap = 0;
    return s;
}
