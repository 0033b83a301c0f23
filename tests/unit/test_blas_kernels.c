// Tests of src/core/blas_kernels.c:
// - blas_better_core: only OpenBLAS's SSE3 fallback ("Prescott") is replaced, by its AVX-512
//   kernels where the processor has AVX-512, its AVX2 kernels where it has AVX2, else kept;
// - blas_use_processor_kernels, called first in main() as asyncrl does: on this processor the
//   loaded kernels are never the fallback when a better set exists, and a user's
//   OPENBLAS_CORETYPE is kept (the test runs itself again with one set).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/test_util.h"
#include "core/blas_kernels.h"

extern char *openblas_get_corename(void) __attribute__((weak));

static char **g_argv;
static int g_user_set_coretype;  // OPENBLAS_CORETYPE was in the environment we were started with

static void test_better_core_table(void **state) {
    (void)state;
    assert_string_equal(blas_better_core("Prescott", 1, 1), "SkylakeX");
    assert_string_equal(blas_better_core("Prescott", 0, 1), "Haswell");
    assert_null(blas_better_core("Prescott", 0, 0));  // nothing better to ask for
    assert_null(blas_better_core("Haswell", 1, 1));   // OpenBLAS knew the processor: keep its choice
    assert_null(blas_better_core("Zen", 1, 1));
    assert_null(blas_better_core("SkylakeX", 1, 1));
    assert_null(blas_better_core(NULL, 1, 1));
}

static void test_loaded_kernels_are_not_the_fallback(void **state) {
    (void)state;
    if (!openblas_get_corename) skip();  // a build without OpenBLAS
    if (g_user_set_coretype) skip();     // the user's choice is kept, whatever it is
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    const int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    const int has_avx2 = 0;
#endif
    const char *core = openblas_get_corename();
    print_message("OpenBLAS kernels: %s (OPENBLAS_CORETYPE=%s)\n", core,
                  getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset");
    if (has_avx2) assert_string_not_equal(core, "Prescott");
}

// Runs this test binary again with OPENBLAS_CORETYPE=Nehalem set: that choice must stand (the
// child checks it in main and exits 1 if not).
static void test_user_choice_is_kept(void **state) {
    (void)state;
    if (!openblas_get_corename) skip();
    const pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("OPENBLAS_CORETYPE", "Nehalem", 1);
        setenv("TEST_BLAS_KERNELS_CHILD", "1", 1);
        execv("/proc/self/exe", g_argv);
        _exit(127);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv) {
    (void)argc;
    g_user_set_coretype = getenv("OPENBLAS_CORETYPE") != NULL && !getenv("TEST_BLAS_KERNELS_RESTARTED");
    // What blas_use_processor_kernels sets is not the user's: mark the restart it may do.
    setenv("TEST_BLAS_KERNELS_RESTARTED", "1", 1);
    g_argv = argv;
    blas_use_processor_kernels(argv);
    if (getenv("TEST_BLAS_KERNELS_CHILD")) {  // the run of test_user_choice_is_kept
        const char *core = openblas_get_corename();
        if (strcmp(core, "Nehalem") == 0) return 0;
        fprintf(stderr, "OPENBLAS_CORETYPE=Nehalem was set but OpenBLAS loaded its %s kernels\n", core);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_better_core_table),
        cmocka_unit_test(test_loaded_kernels_are_not_the_fallback),
        cmocka_unit_test(test_user_choice_is_kept),
    };
    return cmocka_run_group_tests_name("blas_kernels", tests, NULL, NULL);
}
