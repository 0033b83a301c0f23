// Easy/hard problem pools: the id set, the thresholds, and that a pooled problem is asked
// again with the configured probability (deterministically for a given seed and index).
#include <stdlib.h>

#include "common/test_util.h"
#include "orch/pools.h"

static void test_idset(void **state) {
    IdSet s = {0};
    for (uint64_t i = 0; i < 5000; i++) idset_add(&s, i * 7919);
    idset_add(&s, 0);  // id 0 is stored too
    idset_add(&s, 7919);  // again: no duplicate
    assert_int_equal(s.count, 5000);
    for (uint64_t i = 0; i < 5000; i++) assert_true(idset_has(&s, i * 7919));
    assert_false(idset_has(&s, 3));
    int n;
    uint64_t *list = idset_list(&s, &n);
    assert_int_equal(n, 5000);
    free(list);
    idset_free(&s);
    assert_false(idset_has(&s, 7919));
}

static void test_thresholds_and_keep(void **state) {
    ProblemPools p = {0};
    pools_record(&p, 11, 1.0, 1.0, 0.0);   // easy
    pools_record(&p, 12, 0.0, 1.0, 0.0);   // hard
    pools_record(&p, 13, 0.5, 1.0, 0.0);   // neither
    pools_record(&p, 14, 1.0, 1.01, -0.01);  // thresholds off
    assert_true(idset_has(&p.easy, 11) && idset_has(&p.hard, 12));
    assert_false(idset_has(&p.easy, 13) || idset_has(&p.hard, 13) || idset_has(&p.easy, 14));
    // Unpooled problems are never skipped; pooled ones are asked again with probability keep.
    int skip_easy = 0, skip_hard = 0, n = 20000;
    for (int i = 0; i < n; i++) {
        assert_false(pools_skip(&p, 13, (uint64_t)i, 5, 0.0, 0.0));
        skip_easy += pools_skip(&p, 11, (uint64_t)i, 5, 0.1, 0.3);
        skip_hard += pools_skip(&p, 12, (uint64_t)i, 5, 0.1, 0.3);
    }
    assert_true(abs(skip_easy - (int)(0.9 * n)) < 300);  // binomial sd ~42
    assert_true(abs(skip_hard - (int)(0.7 * n)) < 300);
    assert_int_equal(pools_skip(&p, 11, 77, 5, 0.5, 0.5), pools_skip(&p, 11, 77, 5, 0.5, 0.5));
    assert_false(pools_skip(&p, 11, 77, 5, 1.0, 1.0));
    pools_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idset),
        cmocka_unit_test(test_thresholds_and_keep),
    };
    return cmocka_run_group_tests_name("pools", tests, NULL, NULL);
}
