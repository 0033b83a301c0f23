// Advantages, zero-advantage filtering and packing: every sample lands in exactly one row with
// positions restarting at 0 and targets shifted by one; rows never exceed seq_len; a sample
// that is too long is a clear error; uneven row counts are padded for the trainers.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/rng.h"
#include "orch/advantage.h"
#include "orch/packing.h"

static void test_advantages(void **state) {
    double r[4] = {1, 0, 0.5, 0.5}, a[4];
    int len[4] = {10, 30, 20, 20};
    compute_advantages(r, len, 4, 0, 0, a);
    assert_true(fabs(a[0] - 0.5) < 1e-12 && fabs(a[1] + 0.5) < 1e-12 && fabs(a[2]) < 1e-12);
    // Length-weighted baseline: (10*1 + 30*0 + 20*0.5 + 20*0.5) / 80 = 0.375.
    compute_advantages(r, len, 4, 0, 1, a);
    assert_true(fabs(a[0] - 0.625) < 1e-12 && fabs(a[1] + 0.375) < 1e-12);
    // Std normalisation: sample std of {1,0,.5,.5} = sqrt(0.5/3).
    compute_advantages(r, len, 4, 1, 0, a);
    assert_true(fabs(a[0] - 0.5 / (sqrt(0.5 / 3) + 1e-6)) < 1e-9);
    double same[3] = {0.7, 0.7, 0.7};
    compute_advantages(same, len, 3, 1, 0, a);
    assert_true(advantages_all_zero(a, 3));
    compute_advantages(r, len, 4, 0, 0, a);
    assert_false(advantages_all_zero(a, 4));
}

typedef struct {
    int32_t tokens[64];
    uint8_t mask[64];
    float logp[64];
} SampleData;

static void make_samples(SampleData *data, PackSample *s, int n, Rng *rng, int max_len) {
    for (int i = 0; i < n; i++) {
        int len = 2 + (int)rng_below(rng, (uint64_t)(max_len - 1));
        int prompt = 1 + (int)rng_below(rng, (uint64_t)(len - 1));
        for (int j = 0; j < len; j++) {
            data[i].tokens[j] = 1000 * i + j;
            data[i].mask[j] = j >= prompt;
            data[i].logp[j] = j >= prompt ? -0.01f * (float)(j + 1) : 0.0f;
        }
        s[i] = (PackSample){len, data[i].tokens, data[i].mask, data[i].logp, (float)i * 0.1f - 1.0f};
    }
}

static void check_packing(int n, int seq_len, int trainers, int max_len, uint64_t seed) {
    Rng rng;
    rng_seed(&rng, seed);
    SampleData *data = calloc((size_t)n, sizeof(SampleData));
    PackSample *s = calloc((size_t)n, sizeof(PackSample));
    make_samples(data, s, n, &rng, max_len);
    Batch *b = calloc((size_t)trainers, sizeof(Batch));
    ErrorBuf err;
    int rows = pack_samples(s, n, seq_len, trainers, 5, 0, b, &err);
    assert_true(rows > 0);
    int *seen = calloc((size_t)n, sizeof(int));
    long total_positions = 0, expect_positions = 0;
    for (int i = 0; i < n; i++) expect_positions += s[i].n - 1;
    for (int t = 0; t < trainers; t++) {
        assert_int_equal(b[t].n_rows, rows);
        assert_int_equal(b[t].step, 5);
        for (int r = 0; r < rows; r++) {
            int len = b[t].row_len[r];
            assert_true(len >= 0 && len <= seq_len);
            total_positions += len;
            for (int j = 0; j < len; j++) {
                size_t o = (size_t)r * (size_t)seq_len + (size_t)j;
                int id = b[t].sample[o], pos = b[t].position[o];
                assert_true(id >= 0 && id < n);
                if (pos == 0) seen[id]++;
                // Input is token pos of the sample, target is token pos + 1 with its mask/logp/adv.
                assert_int_equal(b[t].input[o], data[id].tokens[pos]);
                assert_int_equal(b[t].target[o], data[id].tokens[pos + 1]);
                assert_int_equal(b[t].mask[o], data[id].mask[pos + 1]);
                assert_true(b[t].logp_infer[o] == (data[id].mask[pos + 1] ? data[id].logp[pos + 1] : 0.0f));
                assert_true(b[t].advantage[o] == (b[t].mask[o] ? s[id].advantage : 0.0f));
                if (j > 0 && pos != 0) assert_int_equal(pos, b[t].position[o - 1] + 1);
            }
            for (int j = len; j < seq_len; j++) assert_int_equal(b[t].mask[(size_t)r * (size_t)seq_len + (size_t)j], 0);
        }
        batch_free(&b[t]);
    }
    assert_int_equal(total_positions, expect_positions);
    for (int i = 0; i < n; i++) assert_int_equal(seen[i], 1);
    free(seen);
    free(b);
    free(s);
    free(data);
}

static void test_pack_every_sample_once(void **state) {
    check_packing(40, 64, 1, 60, 1);
    check_packing(40, 64, 2, 60, 2);
    check_packing(33, 40, 3, 40, 3);
    check_packing(1, 64, 4, 10, 4);  // one sample, four trainers: three get only padding
}

static void test_first_fit_decreasing_is_tight(void **state) {
    // Lengths 9,9,5,5,4,4 -> positions 8,8,4,4,3,3 into rows of 12: [8,4] [8,4] [3,3] = 3 rows.
    int lens[6] = {9, 5, 4, 9, 5, 4};
    SampleData data[6];
    PackSample s[6];
    for (int i = 0; i < 6; i++) {
        for (int j = 0; j < lens[i]; j++) data[i].tokens[j] = j, data[i].mask[j] = 1, data[i].logp[j] = -1;
        s[i] = (PackSample){lens[i], data[i].tokens, data[i].mask, data[i].logp, 1};
    }
    Batch b[2];
    ErrorBuf err;
    assert_int_equal(pack_samples(s, 6, 12, 1, 0, 0, b, &err), 3);
    assert_int_equal(b[0].row_len[0], 12);
    assert_int_equal(b[0].row_len[1], 12);
    assert_int_equal(b[0].row_len[2], 6);
    batch_free(&b[0]);
    // Two trainers: 3 rows padded to 4, two each; the padding row is empty.
    assert_int_equal(pack_samples(s, 6, 12, 2, 0, 0, b, &err), 2);
    int empty = (b[0].row_len[1] == 0) + (b[1].row_len[1] == 0) + (b[0].row_len[0] == 0) + (b[1].row_len[0] == 0);
    assert_int_equal(empty, 1);
    batch_free(&b[0]);
    batch_free(&b[1]);
}

static void test_sample_too_long(void **state) {
    int32_t tokens[20] = {0};
    uint8_t mask[20] = {0};
    float logp[20] = {0};
    PackSample s = {20, tokens, mask, logp, 0};
    Batch b[1];
    ErrorBuf err;
    assert_int_equal(pack_samples(&s, 1, 18, 1, 0, 0, b, &err), -1);
    assert_non_null(strstr(err.msg, "20 tokens"));
    assert_non_null(strstr(err.msg, "trainer.seq_len"));
    s.n = 19;  // exactly seq_len positions fits
    assert_int_equal(pack_samples(&s, 1, 18, 1, 0, 0, b, &err), 1);
    assert_int_equal(b[0].row_len[0], 18);
    batch_free(&b[0]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_advantages),
        cmocka_unit_test(test_pack_every_sample_once),
        cmocka_unit_test(test_first_fit_decreasing_is_tight),
        cmocka_unit_test(test_sample_too_long),
    };
    return cmocka_run_group_tests_name("packing", tests, NULL, NULL);
}
