// Shared helpers for the cmocka unit tests: includes in cmocka's required order, locating
// the shared pretrained models and committed fixtures, and float comparisons.
#pragma once
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
// clang-format on
#include <stdio.h>

// Directory holding stories260K.bin and tok512.bin: $ASYNCRL_MODELS, else ../shared/models.
// Returns NULL (and prints why) when it is missing, so the caller can skip().
const char *test_models_dir(void);
// Path of a file under the models directory (static buffer), or NULL when it is missing.
const char *test_model_file(const char *name);
// Path of a committed fixture under tests/fixtures/ (static buffer).
const char *test_fixture(const char *name);
// Largest |a-b| / (atol + rtol*|b|) over n values; <= 1 means every value is within tolerance.
double test_tolerance_ratio(const float *a, const float *b, size_t n, double atol, double rtol);
// Fails the test with the first offending index when the ratio above exceeds 1.
void test_assert_close(const char *what, const float *a, const float *b, size_t n, double atol, double rtol);
// x (n) rounded in place to IEEE half precision (nearest even): what an fp16 KV cache stores.
void test_round_to_half(float *x, size_t n);
// Reads a whole file into a heap buffer (NUL-terminated); NULL if it cannot be read.
char *test_read_file(const char *path, size_t *len);
