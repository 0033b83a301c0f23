// Helpers shared by the unit tests (see test_util.h).
#include "common/test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *test_models_dir(void) {
    const char *dir = getenv("ASYNCRL_MODELS");
    if (!dir || !dir[0]) dir = "../shared/models";
    if (access(dir, R_OK) != 0) {
        printf("# models directory %s not found (set ASYNCRL_MODELS)\n", dir);
        return NULL;
    }
    return dir;
}

const char *test_model_file(const char *name) {
    static char path[1024];
    const char *dir = test_models_dir();
    if (!dir) return NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, R_OK) != 0) {
        printf("# %s not found\n", path);
        return NULL;
    }
    return path;
}

const char *test_fixture(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "tests/fixtures/%s", name);
    return path;
}

double test_tolerance_ratio(const float *a, const float *b, size_t n, double atol, double rtol) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= worst)) worst = r;  // NaN propagates as "worst"
        if (isnan(r)) return INFINITY;
    }
    return worst;
}

void test_assert_close(const char *what, const float *a, const float *b, size_t n, double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= 1.0)) {
            print_error("%s: index %zu: got %.8g, expected %.8g (atol %g, rtol %g)\n", what, i, (double)a[i],
                        (double)b[i], atol, rtol);
            fail();
        }
    }
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        if (len) *len = (size_t)n;
    }
    return buf;
}

void test_round_to_half(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(_Float16)x[i];
}
