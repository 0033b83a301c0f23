// The RL losses against an independent PyTorch implementation (tests/fixtures/make_loss_fixtures.py):
// loss value and d loss / d logp_train for icepop, gspo, dppo and sft on fixed batches.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/json.h"
#include "train/loss.h"

static float *float_array(const Json *arr, int *n) {
    *n = arr->count;
    float *out = malloc(sizeof(float) * (size_t)arr->count);
    for (int i = 0; i < arr->count; i++) out[i] = (float)arr->items[i].number;
    return out;
}

static void param(const Json *params, const char *name, double *dst) {
    double v;
    if (json_get_number(params, name, &v) == 0) *dst = v;
}

static void test_losses_match_pytorch(void **state) {
    size_t len;
    char *text = test_read_file(test_fixture("loss/loss_cases.json"), &len);
    assert_non_null(text);
    ErrorBuf err;
    Json *root = json_parse(text, len, &err);
    assert_non_null(root);
    const Json *cases = json_get(root, "cases");
    assert_true(cases && cases->count >= 8);
    int masked_cases = 0;
    for (int c = 0; c < cases->count; c++) {
        const Json *k = &cases->items[c];
        LossConfig lc = {0};
        assert_int_equal(loss_type_parse(json_get_string(k, "type"), &lc.type), 0);
        const Json *p = json_get(k, "params");
        param(p, "mask_low", &lc.mask_low);
        param(p, "mask_high", &lc.mask_high);
        param(p, "seq_mask_low", &lc.seq_mask_low);
        param(p, "kl_tau", &lc.kl_tau);
        param(p, "gspo_clip_low", &lc.gspo_clip_low);
        param(p, "gspo_clip_high", &lc.gspo_clip_high);
        param(p, "dppo_delta", &lc.dppo_delta);
        double norm, expect_loss;
        json_get_number(k, "norm", &norm);
        json_get_number(k, "loss", &expect_loss);
        int n, n2;
        float *logp = float_array(json_get(k, "logp"), &n);
        float *logp_infer = float_array(json_get(k, "logp_infer"), &n2);
        float *adv = float_array(json_get(k, "advantage"), &n2);
        float *grad = float_array(json_get(k, "grad"), &n2);
        uint8_t *mask = malloc((size_t)n);
        int32_t *sample = malloc(sizeof(int32_t) * (size_t)n);
        for (int i = 0; i < n; i++) {
            mask[i] = (uint8_t)json_get(k, "mask")->items[i].number;
            sample[i] = (int32_t)json_get(k, "sample")->items[i].number;
        }
        float *d = malloc(sizeof(float) * (size_t)n);
        LossStats st = {0};
        loss_forward_backward(&lc, n, logp, logp_infer, adv, mask, sample, norm, d, &st);
        if (fabs(st.loss - expect_loss) > 1e-5 * (1 + fabs(expect_loss))) {
            print_error("case %d (%s): loss %.9g, PyTorch %.9g\n", c, json_get_string(k, "type"), st.loss, expect_loss);
            fail();
        }
        test_assert_close(json_get_string(k, "type"), d, grad, (size_t)n, 1e-6, 1e-4);
        masked_cases += st.masked_low + st.masked_high + st.masked_seq > 0;
        free(logp); free(logp_infer); free(adv); free(grad); free(mask); free(sample); free(d);
    }
    // The fixture must exercise the masking rules, or the comparison proves little.
    assert_true(masked_cases >= 4);
    json_free(root);
    free(text);
}

// With r = 1 everywhere (on-policy), icepop's gradient is -A/norm per token and mismatch_kl is 0;
// the KL penalty adds neither loss nor gradient there.
static void test_on_policy_icepop(void **state) {
    LossConfig lc = {.type = LOSS_ICEPOP, .mask_low = 0.125, .mask_high = 8, .kl_tau = 0.5};
    float logp[4] = {-1, -2, -0.5f, -3}, adv[4] = {0, 0.5f, 0.5f, -1};
    uint8_t mask[4] = {0, 1, 1, 1};
    int32_t sample[4] = {0, 0, 0, 1};
    float d[4];
    LossStats st = {0};
    loss_forward_backward(&lc, 4, logp, logp, adv, mask, sample, 3.0, d, &st);
    assert_true(d[0] == 0.0f);
    assert_true(fabsf(d[1] + 0.5f / 3) < 1e-7f && fabsf(d[3] - 1.0f / 3) < 1e-7f);
    assert_true(st.tokens == 3 && fabs(st.mismatch_kl) < 1e-12);
    assert_true(fabs(st.loss - (-0.5 - 0.5 + 1.0) / 3) < 1e-7);
}

// gspo counts a clipped sample's tokens on the side it was clipped: a sequence ratio below
// 1 - clip_low with A < 0 in masked_low, above 1 + clip_high with A > 0 in masked_high; an
// unclipped sample in neither.
static void test_gspo_clip_sides(void **state) {
    LossConfig lc = {.type = LOSS_GSPO, .gspo_clip_low = 0.2, .gspo_clip_high = 0.2};
    // Three samples of two tokens: s = e^-1 with A = -1 (clipped low), s = e^1 with A = 1
    // (clipped high), s = e^-1 with A = 1 (not clipped: the unclipped objective is smaller).
    float logp_infer[6] = {-2, -2, -2, -2, -2, -2};
    float logp[6] = {-3, -3, -1, -1, -3, -3};
    float adv[6] = {-1, -1, 1, 1, 1, 1};
    uint8_t mask[6] = {1, 1, 1, 1, 1, 1};
    int32_t sample[6] = {0, 0, 1, 1, 2, 2};
    float d[6] = {0};
    LossStats st = {0};
    loss_forward_backward(&lc, 6, logp, logp_infer, adv, mask, sample, 6.0, d, &st);
    assert_true(st.masked_low == 2 && st.masked_high == 2 && st.tokens == 6);
    assert_true(d[0] == 0 && d[2] == 0 && d[4] != 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_losses_match_pytorch),
        cmocka_unit_test(test_on_policy_icepop),
        cmocka_unit_test(test_gspo_clip_sides),
    };
    return cmocka_run_group_tests_name("loss", tests, NULL, NULL);
}
