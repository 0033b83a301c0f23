// The real pretrained llama2.c model ../shared/models/stories260K.bin with tok512.bin (skips
// when absent): it loads, its per-token logprobs on a short story equal those of transformers'
// Llama running the same weights (tests/fixtures/model/stories260K_expected.json), its loss on
// that story is low, and greedy decoding with full forwards reproduces the continuation the
// reference wrote, which the model scores at about 0.5 nats/token.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fixture_util.h"
#include "common/test_util.h"
#include "core/json.h"
#include "model/llama2c.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "ops.h"

typedef struct {
    Model *m;
    Tokenizer *t;
    Json *expected;
    char *text;
} Fixture;

static int setup(void **state) {
    ops_init(2);
    Fixture *f = calloc(1, sizeof(Fixture));
    *state = f;
    const char *model_path = test_model_file("stories260K.bin");
    if (!model_path) return 0;
    ErrorBuf err;
    f->m = llama2c_load(model_path, &err);
    if (!f->m) {
        printf("# %s\n", err.msg);
        return -1;
    }
    const char *tok_path = test_model_file("tok512.bin");
    if (tok_path) f->t = tokenizer_load(tok_path, &err);
    size_t len;
    f->text = test_read_file(test_fixture("model/stories260K_expected.json"), &len);
    if (!f->text) return -1;
    f->expected = json_parse(f->text, len, &err);
    return f->expected ? 0 : -1;
}

static int teardown(void **state) {
    Fixture *f = *state;
    model_free(f->m);
    tokenizer_free(f->t);
    json_free(f->expected);
    free(f->text);
    free(f);
    return 0;
}

static void test_loads_with_expected_shape(void **state) {
    Fixture *f = *state;
    if (!f->m) skip();
    const ModelConfig *c = &f->m->config;
    assert_int_equal(c->dim, 64);
    assert_int_equal(c->n_layers, 5);
    assert_int_equal(c->n_heads, 8);
    assert_int_equal(c->n_kv_heads, 4);
    assert_int_equal(c->hidden_dim, 172);
    assert_int_equal(c->vocab_size, 512);
    assert_int_equal(c->max_seq_len, 512);
    assert_true(c->tied_embeddings);
}

static void test_story_logprobs_match_reference(void **state) {
    Fixture *f = *state;
    if (!f->m || !f->t) skip();
    const char *story = json_get_string(f->expected, "story");
    const Json *want_ids = json_get(f->expected, "ids"), *want_logp = json_get(f->expected, "logp");
    ErrorBuf err;
    int32_t ids[512];
    int n = tokenizer_encode(f->t, story, strlen(story), 1, ids, 512, &err);
    assert_int_equal(n, want_ids->count);
    int32_t *ref_ids = fixture_json_ids(want_ids);
    assert_memory_equal(ids, ref_ids, (size_t)n * sizeof(int32_t));
    int32_t positions[512], targets[512];
    for (int i = 0; i < n; i++) positions[i] = i, targets[i] = i + 1 < n ? ids[i + 1] : -1;
    assert_int_equal(model_reserve(f->m, n, 1, &err), 0);
    float logp[512];
    assert_int_equal(model_forward_train(f->m, ids, positions, targets, n, 1.0f, logp, NULL, &err), 0);
    float ref[512];
    double loss = 0;
    for (int i = 0; i < n - 1; i++) ref[i] = (float)want_logp->items[i].number, loss -= logp[i];
    test_assert_close("stories260K logp", logp, ref, (size_t)n - 1, 2e-4, 1e-4);
    loss /= n - 1;
    double ref_loss;
    assert_int_equal(json_get_number(f->expected, "mean_loss", &ref_loss), 0);
    assert_true(fabs(loss - ref_loss) < 1e-4);
    assert_true(loss < 1.0);  // a real model on its own kind of text
    // The story round-trips through the tokenizer.
    char back[2048];
    assert_int_equal(tokenizer_decode(f->t, ids, n, back, sizeof back), strlen(story));
    assert_string_equal(back, story);
    free(ref_ids);
}

// Greedy decoding, one full forward per new token (no KV cache): the reference's continuation.
static void test_greedy_generation(void **state) {
    Fixture *f = *state;
    if (!f->m || !f->t) skip();
    const Json *want = json_get(f->expected, "greedy_ids");
    int32_t *ref = fixture_json_ids(want);
    ErrorBuf err;
    int32_t ids[200], positions[200];
    int n = tokenizer_encode(f->t, "Once upon a time", 16, 1, ids, 200, &err);
    assert_memory_equal(ids, ref, (size_t)n * sizeof(int32_t));
    assert_int_equal(model_reserve(f->m, want->count, 0, &err), 0);
    float logits[512];
    for (int i = 0; i < want->count; i++) positions[i] = i;
    while (n < want->count) {
        assert_int_equal(model_forward_logits(f->m, ids, positions, n, 0, logits, &err), 0);
        int best = 0;
        for (int j = 1; j < 512; j++)
            if (logits[j] > logits[best]) best = j;
        ids[n++] = best;
    }
    assert_memory_equal(ids, ref, (size_t)n * sizeof(int32_t));
    // The model's own text scores low.
    int32_t targets[200];
    float logp[200];
    for (int i = 0; i < n; i++) targets[i] = i + 1 < n ? ids[i + 1] : -1;
    assert_int_equal(model_reserve(f->m, n, 1, &err), 0);
    assert_int_equal(model_forward_train(f->m, ids, positions, targets, n, 1.0f, logp, NULL, &err), 0);
    double loss = 0;
    for (int i = 0; i < n - 1; i++) loss -= logp[i];
    loss /= n - 1;
    printf("# greedy continuation: mean loss %.4f nats/token\n", loss);
    assert_true(loss < 0.6);
    free(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_with_expected_shape),
        cmocka_unit_test(test_story_logprobs_match_reference),
        cmocka_unit_test(test_greedy_generation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
