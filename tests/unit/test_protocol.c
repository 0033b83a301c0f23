// Protocol messages: every type survives an encode/decode round trip; truncated, bit-flipped
// and random buffers are rejected with a message (or decode to something within the limits),
// never a crash (run under ASan by `make sanitize`).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm/protocol.h"
#include "common/test_util.h"
#include "core/rng.h"

static ProtoLimits limits(void) {
    ProtoLimits lim = {.max_prompt = 64, .max_completion = 64, .max_records = 16, .max_rows = 8, .seq_len = 32,
                       .max_metrics = 32, .vocab_size = 300};
    return lim;
}

static Request make_request(uint64_t id, int n_prompt) {
    Request q = {.id = id, .group = id / 4, .step = 3, .n_prompt = n_prompt, .max_tokens = 20, .temperature = 0.7f,
                 .top_p = 0.9f, .min_p = 0.05f, .top_k = 40, .seed = 0xabcdef12345ULL + id, .version = -1, .flags = REQ_PIN_VERSION,
                 .n_stop = 2, .stop = {257, 10}};
    q.prompt = malloc(sizeof(int32_t) * (size_t)n_prompt);
    for (int i = 0; i < n_prompt; i++) q.prompt[i] = (int32_t)((i * 7 + (int)id) % 256);
    return q;
}

static Completion make_completion(uint64_t id, int n) {
    Completion c = {.id = id, .finish = FINISH_LENGTH, .n = n};
    c.tokens = malloc(sizeof(int32_t) * (size_t)n);
    c.logprobs = malloc(sizeof(float) * (size_t)n);
    c.versions = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++) {
        c.tokens[i] = (int32_t)((i * 13 + 1) % 300);
        c.logprobs[i] = -0.01f * (float)(i + 1);
        c.versions[i] = i < n / 2 ? 4 : 5;
    }
    snprintf(c.reason, sizeof c.reason, "swapped weights mid-sequence");
    return c;
}

static void make_batch(Batch *b) {
    batch_alloc(b, 3, 32);
    b->step = 11;
    b->flags = 0;
    int lens[3] = {32, 17, 0};
    for (int r = 0; r < 3; r++) {
        b->row_len[r] = lens[r];
        int pos = 0, sample = r * 10;
        for (int i = 0; i < lens[r]; i++) {
            size_t o = (size_t)r * 32 + (size_t)i;
            if (i == 12) pos = 0, sample++;
            b->input[o] = (i * 3) % 300;
            b->target[o] = (i * 5) % 300;
            b->position[o] = pos++;
            b->sample[o] = sample;
            b->mask[o] = (uint8_t)(i % 3 != 0);
            b->logp_infer[o] = b->mask[o] ? -0.5f : 0.0f;
            b->advantage[o] = b->mask[o] ? 0.25f : 0.0f;
        }
    }
}

static void test_requests_round_trip(void **state) {
    Request in[3] = {make_request(1, 5), make_request(2, 64), make_request(3, 1)};
    ByteWriter w;
    bw_init(&w, 0);
    encode_requests(&w, in, 3);
    ProtoLimits lim = limits();
    Request *out;
    int n;
    ErrorBuf err;
    assert_int_equal(decode_requests(w.data, w.len, &lim, &out, &n, &err), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out[i].id, in[i].id);
        assert_int_equal(out[i].group, in[i].group);
        assert_int_equal(out[i].n_prompt, in[i].n_prompt);
        assert_memory_equal(out[i].prompt, in[i].prompt, sizeof(int32_t) * (size_t)in[i].n_prompt);
        assert_true(out[i].temperature == in[i].temperature && out[i].top_p == in[i].top_p);
        assert_int_equal(out[i].top_k, 40);
        assert_int_equal(out[i].seed, in[i].seed);
        assert_int_equal(out[i].n_stop, 2);
        assert_int_equal(out[i].stop[0], 257);
        free(in[i].prompt);
    }
    requests_free(out, n);
    bw_free(&w);
}

static void test_completions_round_trip(void **state) {
    Completion in[2] = {make_completion(9, 10), make_completion(10, 0)};
    ByteWriter w;
    bw_init(&w, 0);
    EngineTotals tot = {123, 45, 6.5, 17.25}, tot2;
    encode_completions(&w, in, 2, &tot);
    ProtoLimits lim = limits();
    Completion *out;
    int n;
    ErrorBuf err;
    assert_int_equal(decode_completions(w.data, w.len, &lim, &out, &n, &tot2, &err), 0);
    assert_true(tot2.decode_tokens == 123 && tot2.busy_s == 6.5 && tot2.clock_s == 17.25);
    assert_int_equal(n, 2);
    assert_int_equal(out[0].n, 10);
    assert_memory_equal(out[0].tokens, in[0].tokens, 40);
    assert_memory_equal(out[0].logprobs, in[0].logprobs, 40);
    assert_memory_equal(out[0].versions, in[0].versions, 40);
    assert_string_equal(out[0].reason, in[0].reason);
    assert_int_equal(out[1].n, 0);
    completions_free(out, n);
    // Engine totals that are negative or not finite (a clock going back, a damaged message) are
    // refused: the inference meter divides by their differences.
    const EngineTotals bad[] = {{-1, 0, 0, 1}, {1, 0, NAN, 1}, {1, 0, 0, -0.5}, {1, 0, 0, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ByteWriter wb;
        bw_init(&wb, 0);
        encode_completions(&wb, in, 1, &bad[i]);
        assert_int_equal(decode_completions(wb.data, wb.len, &lim, &out, &n, &tot2, &err), -1);
        assert_non_null(strstr(err.msg, "negative or NaN engine totals"));
        bw_free(&wb);
    }
    completion_free(&in[0]);
    completion_free(&in[1]);
    bw_free(&w);
}

static void test_batch_round_trip(void **state) {
    Batch in, out;
    make_batch(&in);
    ByteWriter w;
    bw_init(&w, 0);
    encode_batch(&w, &in);
    ProtoLimits lim = limits();
    ErrorBuf err;
    assert_int_equal(decode_batch(w.data, w.len, &lim, &out, &err), 0);
    assert_int_equal(out.step, 11);
    assert_int_equal(out.n_rows, 3);
    size_t n = 3 * 32;
    assert_memory_equal(out.row_len, in.row_len, 12);
    assert_memory_equal(out.input, in.input, n * 4);
    assert_memory_equal(out.target, in.target, n * 4);
    assert_memory_equal(out.position, in.position, n * 4);
    assert_memory_equal(out.sample, in.sample, n * 4);
    assert_memory_equal(out.mask, in.mask, n);
    assert_memory_equal(out.logp_infer, in.logp_infer, n * 4);
    assert_memory_equal(out.advantage, in.advantage, n * 4);
    batch_free(&in);
    batch_free(&out);
    bw_free(&w);
}

// MSG_STOP carries one signal number: 4 bytes, 1..64; anything else is a damaged message.
static void test_stop_message(void **state) {
    ErrorBuf err;
    int sig = 0;
    const int32_t usr1 = 10, zero = 0;
    assert_int_equal(decode_stop(&usr1, sizeof usr1, &sig, &err), 0);
    assert_int_equal(sig, 10);
    assert_int_equal(decode_stop(&usr1, 3, &sig, &err), -1);
    assert_non_null(strstr(err.msg, "3 bytes"));
    assert_int_equal(decode_stop(&zero, sizeof zero, &sig, &err), -1);
    assert_non_null(strstr(err.msg, "signal number 0"));
}

static void test_small_messages_round_trip(void **state) {
    ProtoLimits lim = limits();
    ErrorBuf err;
    ByteWriter w;
    StepDone s = {.step = 4, .version = 5};
    step_done_add(&s, "loss", -0.25);
    step_done_add(&s, "grad_norm", 3.5);
    bw_init(&w, 0);
    encode_step_done(&w, &s);
    StepDone s2;
    assert_int_equal(decode_step_done(w.data, w.len, &lim, &s2, &err), 0);
    assert_int_equal(s2.n_metrics, 2);
    assert_true(step_done_get(&s2, "grad_norm", 0) == 3.5);
    assert_true(step_done_get(&s2, "missing", 7) == 7);
    step_done_free(&s);
    step_done_free(&s2);
    bw_free(&w);

    WeightsNotice wn = {.version = 7, .n_params = 123456789ULL}, wn2;
    bw_init(&w, 0);
    encode_weights_notice(&w, &wn);
    assert_int_equal(decode_weights_notice(w.data, w.len, &wn2, &err), 0);
    assert_int_equal(wn2.version, 7);
    assert_int_equal(wn2.n_params, 123456789ULL);
    bw_free(&w);

    int64_t pending[2] = {41, 42};
    Control ctl = {.kind = CONTROL_CHECKPOINT, .step = 6, .cursor = 99, .rr_rank = 1, .n_pending = 2, .pending = pending}, ctl2;
    bw_init(&w, 0);
    encode_control(&w, &ctl);
    assert_int_equal(decode_control(w.data, w.len, &ctl2, &err), 0);
    assert_int_equal(ctl2.step, 6);
    assert_int_equal(ctl2.cursor, 99);
    assert_int_equal(ctl2.pending[1], 42);
    control_free(&ctl2);
    bw_free(&w);

    WeightsLoaded wl = {.version = 3, .rank = 2}, wl2;
    bw_init(&w, 0);
    encode_weights_loaded(&w, &wl);
    assert_int_equal(decode_weights_loaded(w.data, w.len, &wl2, &err), 0);
    assert_int_equal(wl2.rank, 2);
    bw_free(&w);

    uint64_t ids[3] = {5, 6, 99};
    Cancel c = {.all = 0, .n = 3, .ids = ids}, c2;
    bw_init(&w, 0);
    encode_cancel(&w, &c);
    assert_int_equal(decode_cancel(w.data, w.len, &lim, &c2, &err), 0);
    assert_int_equal(c2.n, 3);
    assert_int_equal(c2.ids[2], 99);
    free(c2.ids);
    bw_free(&w);
}

// Decodes buf as every message type; whatever happens must not crash or leak.
static int decode_any(int type, const void *buf, size_t len, ErrorBuf *err) {
    ProtoLimits lim = limits();
    int rc = -1, n;
    switch (type) {
        case 0: { Request *r; rc = decode_requests(buf, len, &lim, &r, &n, err); if (!rc) requests_free(r, n); break; }
        case 1: { Completion *c; rc = decode_completions(buf, len, &lim, &c, &n, NULL, err); if (!rc) completions_free(c, n); break; }
        case 2: { Batch b; rc = decode_batch(buf, len, &lim, &b, err); if (!rc) batch_free(&b); break; }
        case 3: { StepDone s; rc = decode_step_done(buf, len, &lim, &s, err); if (!rc) step_done_free(&s); break; }
        case 4: { WeightsNotice m; rc = decode_weights_notice(buf, len, &m, err); break; }
        case 5: { WeightsLoaded m; rc = decode_weights_loaded(buf, len, &m, err); break; }
        case 6: { Cancel m; rc = decode_cancel(buf, len, &lim, &m, err); if (!rc) free(m.ids); break; }
        case 7: { Control m; rc = decode_control(buf, len, &m, err); if (!rc) control_free(&m); break; }
    }
    return rc;
}

static void encode_sample(int type, ByteWriter *w) {
    bw_init(w, 0);
    switch (type) {
        case 0: { Request q[2] = {make_request(1, 8), make_request(2, 3)}; encode_requests(w, q, 2); free(q[0].prompt); free(q[1].prompt); break; }
        case 1: { Completion c = make_completion(4, 6); encode_completions(w, &c, 1, NULL); completion_free(&c); break; }
        case 2: { Batch b; make_batch(&b); encode_batch(w, &b); batch_free(&b); break; }
        case 3: { StepDone s = {.step = 1, .version = 2}; step_done_add(&s, "loss", 1); encode_step_done(w, &s); step_done_free(&s); break; }
        case 4: { WeightsNotice m = {1, 10}; encode_weights_notice(w, &m); break; }
        case 5: { WeightsLoaded m = {1, 2}; encode_weights_loaded(w, &m); break; }
        case 6: { uint64_t ids[2] = {1, 2}; Cancel m = {0, 2, ids}; encode_cancel(w, &m); break; }
        case 7: { int64_t p[3] = {7, 8, 9}; Control m = {.kind = CONTROL_CHECKPOINT, .step = 4, .cursor = 12,
                                                        .n_pending = 3, .pending = p}; encode_control(w, &m); break; }
    }
}

static void test_truncated_buffers(void **state) {
    for (int type = 0; type < 8; type++) {
        ByteWriter w;
        encode_sample(type, &w);
        ErrorBuf err;
        assert_int_equal(decode_any(type, w.data, w.len, &err), 0);
        for (size_t cut = 0; cut < w.len; cut++) {
            err.msg[0] = '\0';
            uint8_t *copy = malloc(cut ? cut : 1);  // exact size so ASan sees any overread
            memcpy(copy, w.data, cut);
            assert_int_equal(decode_any(type, copy, cut, &err), -1);
            assert_true(strlen(err.msg) > 0);
            free(copy);
        }
        // One byte too many is also an error.
        uint8_t *longer = malloc(w.len + 1);
        memcpy(longer, w.data, w.len);
        longer[w.len] = 0;
        assert_int_equal(decode_any(type, longer, w.len + 1, &err), -1);
        assert_non_null(strstr(err.msg, "unexpected bytes"));
        free(longer);
        bw_free(&w);
    }
}

static void test_corrupted_buffers(void **state) {
    Rng rng;
    rng_seed(&rng, 42);
    int rejected = 0, total = 0;
    for (int type = 0; type < 8; type++) {
        ByteWriter w;
        encode_sample(type, &w);
        for (int trial = 0; trial < 3000; trial++) {
            uint8_t *copy = malloc(w.len);
            memcpy(copy, w.data, w.len);
            int flips = 1 + (int)rng_below(&rng, 4);
            for (int f = 0; f < flips; f++) copy[rng_below(&rng, w.len)] ^= (uint8_t)(1u << rng_below(&rng, 8));
            ErrorBuf err;
            rejected += decode_any(type, copy, w.len, &err) != 0;
            total++;
            free(copy);
        }
        bw_free(&w);
    }
    // Most flips hit payload bytes that stay valid; many must still be caught.
    assert_true(rejected > total / 10);
}

static void test_hostile_counts(void **state) {
    // A header claiming 2^31 prompt tokens in a 30-byte message must be refused before allocating.
    ByteWriter w;
    bw_init(&w, 0);
    Request q = make_request(1, 2);
    encode_requests(&w, &q, 1);
    free(q.prompt);
    // The prompt count sits after magic, type, count, id, group, step.
    size_t off = 4 + 4 + 4 + 8 + 8 + 4;  // unchanged by the fields after the prompt
    uint32_t huge = 0x7fffffffu;
    memcpy(w.data + off, &huge, 4);
    ProtoLimits lim = limits();
    lim.max_prompt = UINT32_MAX;
    Request *out;
    int n;
    ErrorBuf err;
    assert_int_equal(decode_requests(w.data, w.len, &lim, &out, &n, &err), -1);
    assert_non_null(strstr(err.msg, "prompt"));
    lim = limits();
    assert_int_equal(decode_requests(w.data, w.len, &lim, &out, &n, &err), -1);
    assert_non_null(strstr(err.msg, "more than the limit 64"));
    // A token id outside the vocabulary.
    bw_free(&w);
    bw_init(&w, 0);
    q = make_request(1, 2);
    q.prompt[1] = 300;
    encode_requests(&w, &q, 1);
    free(q.prompt);
    assert_int_equal(decode_requests(w.data, w.len, &lim, &out, &n, &err), -1);
    assert_non_null(strstr(err.msg, "is not a token id"));
    bw_free(&w);
}

static void test_random_buffers(void **state) {
    Rng rng;
    rng_seed(&rng, 7);
    for (int trial = 0; trial < 20000; trial++) {
        size_t len = rng_below(&rng, 200);
        uint8_t *buf = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rng_u32(&rng);
        if (len >= 8 && trial % 2) {  // a valid header, so the decoders go deeper
            uint32_t magic = 0x4c525341u, type = 101 + (uint32_t)(trial % 9);
            memcpy(buf, &magic, 4);
            memcpy(buf + 4, &type, 4);
        }
        ErrorBuf err;
        decode_any(trial % 8, buf, len, &err);
        free(buf);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests_round_trip),  cmocka_unit_test(test_completions_round_trip),
        cmocka_unit_test(test_batch_round_trip),     cmocka_unit_test(test_small_messages_round_trip),
        cmocka_unit_test(test_stop_message),
        cmocka_unit_test(test_truncated_buffers),    cmocka_unit_test(test_corrupted_buffers),
        cmocka_unit_test(test_hostile_counts),       cmocka_unit_test(test_random_buffers),
    };
    return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
