// The inference engine on the real llama2.c model ../shared/models/stories260K.bin (skips when
// absent): greedy generation equals, token for token, transformers' LlamaForCausalLM.generate
// (do_sample=False, its own KV cache) on the same weights, for four prompts decoded together
// in one batch and with small KV blocks, chunked prefill and a prompt running into the end of
// the 512-token context (tests/fixtures/infer/stories260K_generate.json, made by
// tests/fixtures/make_infer_fixtures.py).
#include <stdlib.h>
#include <string.h>

#include "common/fixture_util.h"
#include "common/test_util.h"
#include "core/json.h"
#include "infer/engine.h"
#include "model/llama2c.h"
#include "ops.h"

typedef struct {
    Model *m;
    Json *expected;
    char *text;
} Fixture;

static int setup(void **state) {
    ops_init(1);
    Fixture *f = calloc(1, sizeof(Fixture));
    *state = f;
    const char *path = test_model_file("stories260K.bin");
    if (!path) return 0;
    ErrorBuf err;
    f->m = llama2c_load(path, &err);
    if (!f->m) {
        printf("# %s\n", err.msg);
        return -1;
    }
    size_t len;
    f->text = test_read_file(test_fixture("infer/stories260K_generate.json"), &len);
    if (!f->text) return -1;
    f->expected = json_parse(f->text, len, &err);
    return f->expected ? 0 : -1;
}

static int teardown(void **state) {
    Fixture *f = *state;
    model_free(f->m);
    json_free(f->expected);
    free(f->text);
    free(f);
    return 0;
}

static Engine *make_engine(const Model *m, int max_seqs, int block_size, int prefill_chunk) {
    EngineConfig ec = {.max_seqs = max_seqs, .kv_block_size = block_size, .kv_blocks = 0,
                       .prefill_chunk = prefill_chunk, .swap_mode = ENGINE_SWAP_IN_FLIGHT, .max_updates = -1};
    ErrorBuf err;
    Engine *e = engine_create(&m->config, &ec, &err);
    if (!e) print_error("%s\n", err.msg);
    assert_non_null(e);
    float *host = malloc(m->n_params * sizeof(float));
    ops_copy_to_host(host, m->params, m->n_params * sizeof(float));
    engine_set_weights(e, host, 0);
    free(host);
    return e;
}

static void run_cases(Fixture *f, int block_size, int prefill_chunk) {
    const Json *cases = json_get(f->expected, "cases");
    assert_non_null(cases);
    const int n = cases->count;
    Engine *e = make_engine(f->m, n, block_size, prefill_chunk);
    ErrorBuf err;
    for (int i = 0; i < n; i++) {
        const Json *c = &cases->items[i];
        int32_t *prompt = fixture_json_ids(json_get(c, "prompt_ids"));
        EngineRequest req = {.id = (uint64_t)i, .prompt = prompt, .n_prompt = json_get(c, "prompt_ids")->count,
                             .max_tokens = 1000, .temperature = 1.0f, .top_p = 1.0f, .greedy = 1, .seed = 7};
        req.max_tokens = i == n - 1 ? 1000 : json_get(c, "greedy_ids")->count;  // the last runs to the context
        assert_int_equal(engine_add(e, &req, &err), 0);
        free(prompt);
    }
    while (engine_step(e) > 0) {
    }
    Completion *done;
    const int n_done = engine_take_finished(e, &done);
    assert_int_equal(n_done, n);
    for (int k = 0; k < n_done; k++) {
        const Completion *c = &done[k];
        const Json *want = json_get(&cases->items[c->id], "greedy_ids");
        int32_t *ids = fixture_json_ids(want);
        assert_int_equal(c->finish, FINISH_LENGTH);
        assert_int_equal(c->n, want->count);
        for (int j = 0; j < c->n; j++) {
            if (c->tokens[j] != ids[j]) {
                print_error("case %d: token %d is %d, transformers wrote %d\n", (int)c->id, j, c->tokens[j], ids[j]);
                fail();
            }
            assert_true(c->logprobs[j] <= 0.0f && c->logprobs[j] > -20.0f);
            assert_int_equal(c->versions[j], 0);
        }
        free(ids);
    }
    completions_free(done, n_done);
    engine_free(e);
}

static void test_greedy_matches_transformers(void **state) {
    Fixture *f = *state;
    if (!f->m) skip();
    run_cases(f, 16, 512);
}

// Small blocks and a prefill chunk shorter than the prompts: same tokens.
static void test_greedy_small_blocks_chunked_prefill(void **state) {
    Fixture *f = *state;
    if (!f->m) skip();
    run_cases(f, 3, 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_matches_transformers),
        cmocka_unit_test(test_greedy_small_blocks_chunked_prefill),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
