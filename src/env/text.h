// Text helpers shared by the environments: the guard every verifier runs before it looks at a
// model output (size, NUL bytes, UTF-8, runaway repetition), trimming, integer and number
// parsing with overflow checks, whole-word search, and a growable string for building prompts.
// Everything takes (pointer, length): model output is arbitrary bytes, not a C string.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *s;
    size_t len;
} Span;

typedef enum {
    TEXT_OK = 0,
    TEXT_EMPTY,       // nothing but whitespace
    TEXT_TOO_LONG,    // over the caller's limit (or ENV_MAX_OUTPUT_BYTES)
    TEXT_NUL,         // contains a NUL byte
    TEXT_BAD_UTF8,    // not valid UTF-8
    TEXT_REPETITIVE,  // runaway repetition (see text_repetitive)
} TextStatus;

// Checks an output before a verifier parses it: not empty after trimming, at most max_len
// bytes (never more than ENV_MAX_OUTPUT_BYTES), no NUL byte, valid UTF-8, and with
// check_repeats also not a runaway repetition.
TextStatus text_check(const char *s, size_t len, size_t max_len, int check_repeats);
const char *text_status_name(TextStatus status);

int text_utf8_valid(const char *s, size_t len);
// True when some block of 1..64 bytes repeats back to back at least 4 times over at least 32
// bytes ("19 19 19 19 19 19 19 19 19 19 19", "Lily was happy. Lily was happy. ..."): the mark
// of a model stuck in a loop. Short or varied text never trips it.
int text_repetitive(const char *s, size_t len);

int text_is_space(char c);
Span text_trim(const char *s, size_t len);
int text_span_equal(Span a, Span b);

// Parses an optionally signed ("-" or "+") decimal integer that fills the whole span.
// Returns 0, or -1 when it is not one or lies outside [-10^18, 10^18].
int text_parse_int(Span sp, int64_t *out);
// The last number of the text: an optional sign (only where no letter, digit or ')' comes
// right before it), digits, an optional ".digits", and with allow_fraction thousands
// separators (1,234,567) and an exponent.
// Returns 1 and the number's span, or 0 when the text holds no number.
int text_last_number(const char *s, size_t len, int allow_fraction, Span *number);
// The last integer of the text: 1 found (in range), 0 none, -1 found but not representable.
int text_last_int(const char *s, size_t len, int64_t *out);
// The last number (decimal or exponent allowed): 1 found and finite, 0 none or not finite.
int text_last_double(const char *s, size_t len, double *out);
// 1 when the text (trimmed) is one number as text_last_double reads it: "12", "-3.5", "1,234".
int text_is_one_number(const char *s, size_t len);

// Case-insensitive whole-word search (ASCII letters): the word must not touch a letter on
// either side; a plural "s" or a possessive "'s" right after it still counts.
int text_has_word(const char *s, size_t len, const char *word);
// Number of words (maximal runs of non-space bytes).
int text_count_words(const char *s, size_t len);

// A growable heap string, always NUL-terminated.
typedef struct {
    char *s;
    size_t len, cap;
} StrBuf;

void sb_append(StrBuf *b, const char *s, size_t n);
__attribute__((format(printf, 2, 3)))
void sb_printf(StrBuf *b, const char *fmt, ...);
char *sb_take(StrBuf *b);  // the string (caller frees); the buffer is empty afterwards
