// Tests of the inference ops in kernels/ops.h against independent references written here:
// - ops_kv_cache_write puts rows in their slots and touches nothing else (read back with
//   ops_kv_cache_read, the cache layout being the backend's own);
// - ops_paged_attention_forward equals double-precision causal attention computed from
//   plain per-sequence key/value arrays (no cache), for decode rows and prefill chunks,
//   GQA and MHA, shuffled block tables; a sequence's rows do not depend on the other rows;
// - ops_sample: greedy argmax (lowest id on ties); the logprob is log_softmax(logits / T) of
//   the untruncated distribution; empirical frequencies under temperature, top-k, top-p,
//   min-p and their combination match the distribution of ops.h's rule (chi-square, fixed
//   seeds; the same check against a wrong distribution fails); the draw is the documented
//   inverse CDF of uniform(seed, counter); rows are independent of their batch; garbage
//   logits give valid ids.
// Data goes through ops_alloc / ops_copy_*, so the tests run on any backend.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/test_util.h"
#include "core/rng.h"
#include "ops.h"

static Rng g_rng;

static int setup(void **state) {
    (void)state;
    ops_init(2);
    rng_seed(&g_rng, 99);
    return 0;
}

static void *dev(const void *host, size_t bytes) {
    void *d = ops_alloc(bytes ? bytes : 1);
    if (bytes) ops_copy_to_device(d, host, bytes);
    return d;
}

static float *randn(size_t n, float scale) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&g_rng);
    return x;
}

// ---------------------------------------------------------------------------------------
// Paged attention.

typedef struct {
    int n_seqs, H, KVH, hd, bs, n_blocks, max_blocks;
    const int *ctx, *n_q;  // per sequence: context after the call, new rows
    int kv_dtype;          // OPS_KV_F32 (0) or OPS_KV_F16
    int poison;            // every slot first holds keys of NaN and values of +inf (left in unused slots)
} AttnCase;


// Double-precision attention of row j (of n_q) of one sequence with keys / values (ctx, KVH*hd).
static void ref_attention_row(double *out, const float *q, const float *K, const float *V, int ctx, int n_q, int j,
                              int H, int KVH, int hd) {
    const int keys = ctx - n_q + j + 1, group = H / KVH;
    double *p = malloc((size_t)keys * sizeof(double));
    for (int h = 0; h < H; h++) {
        const int g = h / group;
        double mx = -INFINITY, sum = 0.0;
        for (int t = 0; t < keys; t++) {
            double s = 0.0;
            for (int d = 0; d < hd; d++) s += (double)q[h * hd + d] * K[((size_t)t * KVH + g) * hd + d];
            p[t] = s / sqrt((double)hd);
            mx = p[t] > mx ? p[t] : mx;
        }
        for (int t = 0; t < keys; t++) sum += p[t] = exp(p[t] - mx);
        for (int d = 0; d < hd; d++) {
            double o = 0.0;
            for (int t = 0; t < keys; t++) o += p[t] * V[((size_t)t * KVH + g) * hd + d];
            out[h * hd + d] = o / sum;
        }
    }
    free(p);
}

static void attention_case(const AttnCase *c) {
    const int S = c->n_seqs, kv_dim = c->KVH * c->hd, q_dim = c->H * c->hd;
    const size_t n_slots = (size_t)c->n_blocks * c->bs;
    // Blocks handed out in a shuffled order, so tables are not contiguous.
    int *perm = malloc((size_t)c->n_blocks * sizeof(int));
    for (int i = 0; i < c->n_blocks; i++) perm[i] = i;
    for (int i = c->n_blocks - 1; i > 0; i--) {
        const int j = (int)rng_below(&g_rng, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    int32_t *tables = calloc((size_t)S * c->max_blocks, sizeof(int32_t));
    int32_t *qs = calloc((size_t)S + 1, sizeof(int32_t)), *ctx = calloc((size_t)S, sizeof(int32_t));
    int next_block = 0;
    for (int s = 0; s < S; s++) {
        const int nb = (c->ctx[s] + c->bs - 1) / c->bs;
        for (int b = 0; b < nb; b++) tables[s * c->max_blocks + b] = perm[next_block++];
        qs[s + 1] = qs[s] + c->n_q[s];
        ctx[s] = c->ctx[s];
    }
    assert_true(next_block <= c->n_blocks);
    const int N = qs[S];
    // Per-sequence keys / values of every position: the prefix ones are written to the cache
    // first (as earlier steps would), then this call's rows.
    float **K = malloc((size_t)S * sizeof(float *)), **V = malloc((size_t)S * sizeof(float *));
    int n_prefix = 0;
    for (int s = 0; s < S; s++) n_prefix += c->ctx[s] - c->n_q[s];
    float *k_pre = malloc((size_t)(n_prefix + 1) * kv_dim * sizeof(float));
    float *v_pre = malloc((size_t)(n_prefix + 1) * kv_dim * sizeof(float));
    int32_t *pre_slots = malloc((size_t)(n_prefix + 1) * sizeof(int32_t));
    float *k_new = malloc((size_t)N * kv_dim * sizeof(float)), *v_new = malloc((size_t)N * kv_dim * sizeof(float));
    int32_t *slots = malloc((size_t)N * sizeof(int32_t));
    int pi = 0;
    for (int s = 0; s < S; s++) {
        K[s] = randn((size_t)c->ctx[s] * kv_dim, 1.0f);
        V[s] = randn((size_t)c->ctx[s] * kv_dim, 1.0f);
        for (int p = 0; p < c->ctx[s]; p++) {
            const int32_t slot = tables[s * c->max_blocks + p / c->bs] * c->bs + p % c->bs;
            const int j = p - (c->ctx[s] - c->n_q[s]);
            const int row = j < 0 ? pi++ : qs[s] + j;
            memcpy((j < 0 ? k_pre : k_new) + (size_t)row * kv_dim, K[s] + (size_t)p * kv_dim, kv_dim * sizeof(float));
            memcpy((j < 0 ? v_pre : v_new) + (size_t)row * kv_dim, V[s] + (size_t)p * kv_dim, kv_dim * sizeof(float));
            (j < 0 ? pre_slots : slots)[row] = slot;
        }
    }
    // The cache gets the values as computed; an fp16 cache holds them rounded, which is what
    // reading back and the reference attention then see.
    const int f16 = c->kv_dtype == OPS_KV_F16;
    if (f16)
        for (int s = 0; s < S; s++) {
            test_round_to_half(K[s], (size_t)c->ctx[s] * kv_dim);
            test_round_to_half(V[s], (size_t)c->ctx[s] * kv_dim);
        }
    const size_t elem = ops_kv_dtype_bytes(c->kv_dtype);
    float *q = randn((size_t)N * q_dim, 1.0f);
    void *d_k = ops_alloc(n_slots * kv_dim * elem), *d_v = ops_alloc(n_slots * kv_dim * elem);
    float *d_kp = dev(k_pre, (size_t)n_prefix * kv_dim * 4), *d_vp = dev(v_pre, (size_t)n_prefix * kv_dim * 4);
    int32_t *d_pslots = dev(pre_slots, (size_t)n_prefix * 4);
    float *d_kn = dev(k_new, (size_t)N * kv_dim * 4), *d_vn = dev(v_new, (size_t)N * kv_dim * 4);
    int32_t *d_slots = dev(slots, (size_t)N * 4), *d_tables = dev(tables, (size_t)S * c->max_blocks * 4);
    int32_t *d_qs = dev(qs, (size_t)(S + 1) * 4), *d_ctx = dev(ctx, (size_t)S * 4);
    float *d_q = dev(q, (size_t)N * q_dim * 4), *d_out = ops_alloc((size_t)N * q_dim * 4);
    // Reading every slot back: the written rows, and zeros (the fresh cache) or the poison
    // everywhere else.
    float *want_k = calloc(n_slots * kv_dim, sizeof(float)), *want_v = calloc(n_slots * kv_dim, sizeof(float));
    int32_t *all_slots = malloc(n_slots * sizeof(int32_t));
    for (size_t i = 0; i < n_slots; i++) all_slots[i] = (int32_t)i;
    int32_t *d_all = dev(all_slots, n_slots * 4);
    if (c->poison) {
        for (size_t i = 0; i < n_slots * kv_dim; i++) want_k[i] = NAN, want_v[i] = INFINITY;
        float *d_pk = dev(want_k, n_slots * kv_dim * 4), *d_pv = dev(want_v, n_slots * kv_dim * 4);
        ops_kv_cache_write(d_k, d_v, d_pk, d_pv, d_all, (int)n_slots, c->KVH, c->hd, c->bs, c->kv_dtype);
        ops_free(d_pk);
        ops_free(d_pv);
    }
    ops_kv_cache_write(d_k, d_v, d_kp, d_vp, d_pslots, n_prefix, c->KVH, c->hd, c->bs, c->kv_dtype);
    ops_kv_cache_write(d_k, d_v, d_kn, d_vn, d_slots, N, c->KVH, c->hd, c->bs, c->kv_dtype);
    for (int r = 0; r < n_prefix; r++) {
        memcpy(want_k + (size_t)pre_slots[r] * kv_dim, k_pre + (size_t)r * kv_dim, kv_dim * sizeof(float));
        memcpy(want_v + (size_t)pre_slots[r] * kv_dim, v_pre + (size_t)r * kv_dim, kv_dim * sizeof(float));
    }
    for (int r = 0; r < N; r++) {
        memcpy(want_k + (size_t)slots[r] * kv_dim, k_new + (size_t)r * kv_dim, kv_dim * sizeof(float));
        memcpy(want_v + (size_t)slots[r] * kv_dim, v_new + (size_t)r * kv_dim, kv_dim * sizeof(float));
    }
    if (f16) test_round_to_half(want_k, n_slots * kv_dim), test_round_to_half(want_v, n_slots * kv_dim);
    float *d_rk = ops_alloc(n_slots * kv_dim * 4), *d_rv = ops_alloc(n_slots * kv_dim * 4);
    ops_kv_cache_read(d_rk, d_rv, d_k, d_v, d_all, (int)n_slots, c->KVH, c->hd, c->bs, c->kv_dtype);
    float *k_after = malloc(n_slots * kv_dim * sizeof(float)), *v_after = malloc(n_slots * kv_dim * sizeof(float));
    ops_copy_to_host(k_after, d_rk, n_slots * kv_dim * 4);
    ops_copy_to_host(v_after, d_rv, n_slots * kv_dim * 4);
    assert_memory_equal(k_after, want_k, n_slots * kv_dim * sizeof(float));
    assert_memory_equal(v_after, want_v, n_slots * kv_dim * sizeof(float));

    ops_paged_attention_forward(d_out, d_q, d_k, d_v, d_tables, d_qs, d_ctx, S, c->max_blocks, c->bs, c->H, c->KVH,
                                c->hd, c->kv_dtype);
    float *out = malloc((size_t)N * q_dim * sizeof(float)), *want = malloc((size_t)N * q_dim * sizeof(float));
    ops_copy_to_host(out, d_out, (size_t)N * q_dim * 4);
    double *row = malloc((size_t)q_dim * sizeof(double));
    for (int s = 0; s < S; s++)
        for (int j = 0; j < c->n_q[s]; j++) {
            const int r = qs[s] + j;
            ref_attention_row(row, q + (size_t)r * q_dim, K[s], V[s], c->ctx[s], c->n_q[s], j, c->H, c->KVH, c->hd);
            for (int i = 0; i < q_dim; i++) want[(size_t)r * q_dim + i] = (float)row[i];
        }
    test_assert_close("paged attention", out, want, (size_t)N * q_dim, 2e-5, 1e-4);

    // The AVX2 copy gives the same bits as the copy that ran (on a processor with AVX-512, its
    // copy, which scores 16 keys and sums 16 value floats per vector).
    const char *no_avx512 = getenv("ASYNCRL_CPU_NO_AVX512");
    char *saved_no_avx512 = no_avx512 ? strdup(no_avx512) : NULL;
    setenv("ASYNCRL_CPU_NO_AVX512", "1", 1);
    ops_paged_attention_forward(d_out, d_q, d_k, d_v, d_tables, d_qs, d_ctx, S, c->max_blocks, c->bs, c->H, c->KVH,
                                c->hd, c->kv_dtype);
    if (saved_no_avx512) setenv("ASYNCRL_CPU_NO_AVX512", saved_no_avx512, 1);
    else unsetenv("ASYNCRL_CPU_NO_AVX512");
    free(saved_no_avx512);
    float *avx2_out = malloc((size_t)N * q_dim * sizeof(float));
    ops_copy_to_host(avx2_out, d_out, (size_t)N * q_dim * 4);
    assert_memory_equal(avx2_out, out, (size_t)N * q_dim * sizeof(float));
    free(avx2_out);

    // Batch invariance: each sequence alone gives bit-identical rows.
    float *alone = malloc((size_t)N * q_dim * sizeof(float));
    for (int s = 0; s < S; s++) {
        int32_t qs1[2] = {0, c->n_q[s]};
        int32_t *d_qs1 = dev(qs1, 8), *d_ctx1 = dev(&ctx[s], 4);
        ops_paged_attention_forward(d_out, d_q + (size_t)qs[s] * q_dim, d_k, d_v, d_tables + (size_t)s * c->max_blocks,
                                    d_qs1, d_ctx1, 1, c->max_blocks, c->bs, c->H, c->KVH, c->hd, c->kv_dtype);
        ops_copy_to_host(alone + (size_t)qs[s] * q_dim, d_out, (size_t)c->n_q[s] * q_dim * 4);
        ops_free(d_qs1);
        ops_free(d_ctx1);
    }
    assert_memory_equal(alone, out, (size_t)N * q_dim * sizeof(float));

    for (int s = 0; s < S; s++) free(K[s]), free(V[s]);
    free(K), free(V), free(perm), free(tables), free(qs), free(ctx), free(k_pre), free(v_pre), free(pre_slots);
    free(k_new), free(v_new), free(slots), free(q), free(want_k), free(want_v), free(all_slots), free(k_after);
    free(v_after), free(out), free(want), free(row), free(alone);
    void *d[] = {d_k, d_v, d_kp, d_vp, d_pslots, d_kn, d_vn, d_slots, d_tables, d_qs, d_ctx, d_q, d_out, d_all, d_rk,
                 d_rv};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) ops_free(d[i]);
}

static void test_paged_attention_gqa(void **state) {
    (void)state;
    // Decode (1 row), a prefill chunk after a prefix, a whole prompt, a 1-token sequence.
    const int ctx[] = {13, 20, 7, 1}, n_q[] = {1, 6, 7, 1};
    AttnCase c = {.n_seqs = 4, .H = 4, .KVH = 2, .hd = 8, .bs = 4, .n_blocks = 16, .max_blocks = 6, .ctx = ctx,
                  .n_q = n_q};
    attention_case(&c);
    c.kv_dtype = OPS_KV_F16;
    attention_case(&c);
}

static void test_paged_attention_mha_and_mqa(void **state) {
    (void)state;
    const int ctx[] = {9, 33, 2}, n_q[] = {9, 1, 2};
    AttnCase mha = {.n_seqs = 3, .H = 3, .KVH = 3, .hd = 6, .bs = 5, .n_blocks = 12, .max_blocks = 7, .ctx = ctx,
                    .n_q = n_q};
    attention_case(&mha);
    AttnCase mqa = {.n_seqs = 3, .H = 6, .KVH = 1, .hd = 10, .bs = 1, .n_blocks = 50, .max_blocks = 33, .ctx = ctx,
                    .n_q = n_q};
    attention_case(&mqa);
}

static void test_paged_attention_head_sizes(void **state) {
    (void)state;
    // Head sizes with their own value loops (48: 6 vector chains; 16: 2 vectors x 2 partial
    // sums; 72: 64 + 8), contexts over several 16-key blocks with 8-key and single-key tails.
    const int ctx[] = {45, 40, 3}, n_q[] = {1, 9, 3};
    AttnCase h48 = {.n_seqs = 3, .H = 2, .KVH = 2, .hd = 48, .bs = 16, .n_blocks = 12, .max_blocks = 3, .ctx = ctx,
                    .n_q = n_q};
    attention_case(&h48);
    AttnCase h16 = {.n_seqs = 3, .H = 4, .KVH = 1, .hd = 16, .bs = 16, .n_blocks = 12, .max_blocks = 3, .ctx = ctx,
                    .n_q = n_q};
    attention_case(&h16);
    AttnCase h72 = {.n_seqs = 3, .H = 3, .KVH = 3, .hd = 72, .bs = 8, .n_blocks = 24, .max_blocks = 6, .ctx = ctx,
                    .n_q = n_q};
    attention_case(&h72);
}

static void test_paged_attention_small_heads(void **state) {
    (void)state;
    // Heads of up to 16 floats in blocks of a multiple of 8 slots (the CPU backend's small-head
    // path, values stored transposed): heads of 8 (GQA, as stories260K), 16 and 4 (no copy of
    // its own), blocks of 8, 16 and 32; decode rows and prefill chunks, contexts ending inside
    // a group of 8 keys, on a boundary, at 1 key; fp32 and fp16.
    const int ctx[] = {45, 40, 3, 1, 8, 17, 64}, n_q[] = {1, 9, 3, 1, 1, 5, 2};
    const int bs[] = {16, 8, 32};
    for (int b = 0; b < 3; b++)
        for (int f16 = 0; f16 <= 1; f16++) {
            const int max_blocks = (64 + bs[b] - 1) / bs[b];
            AttnCase h8 = {.n_seqs = 7, .H = 8, .KVH = 4, .hd = 8, .bs = bs[b], .n_blocks = 7 * max_blocks,
                           .max_blocks = max_blocks, .ctx = ctx, .n_q = n_q, .kv_dtype = f16 ? OPS_KV_F16 : 0};
            attention_case(&h8);
            AttnCase h16 = h8, h4 = h8;
            h16.H = 4, h16.KVH = 1, h16.hd = 16;
            attention_case(&h16);
            h4.H = 6, h4.KVH = 2, h4.hd = 4;
            attention_case(&h4);
        }
}

// Attention of S sequences (contexts ctx, n_q new rows each, blocks in order) with query heads
// sharing kv heads (H / KVH of them each), against the same call with every kv head written
// once per query head that reads it (KVH = H): the same bits. On the CPU, heads of 8 floats
// that share a kv head go through the small-head path two at a time, sharing each key and value
// load; alone, each head must compute exactly the same.
static void gqa_matches_duplicated_heads(int H, int KVH, int hd, int kv_dtype) {
    enum { S = 4, BS = 16, MAX_BLOCKS = 5 };
    const int ctx[S] = {37, 16, 1, 70}, n_q[S] = {1, 5, 1, 3}, G = H / KVH;
    int32_t tables[S * MAX_BLOCKS], qs[S + 1] = {0}, slots[S * MAX_BLOCKS * BS];
    int n_slots = 0;
    for (int s = 0; s < S; s++) {
        for (int b = 0; b < MAX_BLOCKS; b++) tables[s * MAX_BLOCKS + b] = s * MAX_BLOCKS + b;
        for (int p = 0; p < ctx[s]; p++) slots[n_slots++] = (s * MAX_BLOCKS + p / BS) * BS + p % BS;
        qs[s + 1] = qs[s] + n_q[s];
    }
    const int N = qs[S];
    float *k = randn((size_t)n_slots * KVH * hd, 1.0f), *v = randn((size_t)n_slots * KVH * hd, 1.0f);
    const size_t dup_floats = (size_t)n_slots * H * hd;
    float *k_dup = malloc(dup_floats * sizeof(float)), *v_dup = malloc(dup_floats * sizeof(float));
    for (int i = 0; i < n_slots; i++)
        for (int h = 0; h < H; h++) {
            memcpy(k_dup + ((size_t)i * H + h) * hd, k + ((size_t)i * KVH + h / G) * hd, hd * sizeof(float));
            memcpy(v_dup + ((size_t)i * H + h) * hd, v + ((size_t)i * KVH + h / G) * hd, hd * sizeof(float));
        }
    float *q = randn((size_t)N * H * hd, 1.0f), *out[2];
    const size_t cells = (size_t)S * MAX_BLOCKS * BS, elem = ops_kv_dtype_bytes(kv_dtype);
    int32_t *d_slots = dev(slots, (size_t)n_slots * 4), *d_tables = dev(tables, sizeof tables);
    int32_t *d_qs = dev(qs, sizeof qs), *d_ctx = dev(ctx, sizeof ctx);
    float *d_q = dev(q, (size_t)N * H * hd * 4), *d_out = ops_alloc((size_t)N * H * hd * 4);
    for (int dup = 0; dup <= 1; dup++) {
        const int kvh = dup ? H : KVH;
        void *d_k = ops_alloc(cells * kvh * hd * elem), *d_v = ops_alloc(cells * kvh * hd * elem);
        float *d_kr = dev(dup ? k_dup : k, (size_t)n_slots * kvh * hd * 4);
        float *d_vr = dev(dup ? v_dup : v, (size_t)n_slots * kvh * hd * 4);
        ops_kv_cache_write(d_k, d_v, d_kr, d_vr, d_slots, n_slots, kvh, hd, BS, kv_dtype);
        ops_paged_attention_forward(d_out, d_q, d_k, d_v, d_tables, d_qs, d_ctx, S, MAX_BLOCKS, BS, H, kvh, hd,
                                    kv_dtype);
        out[dup] = malloc((size_t)N * H * hd * sizeof(float));
        ops_copy_to_host(out[dup], d_out, (size_t)N * H * hd * 4);
        ops_free(d_k), ops_free(d_v), ops_free(d_kr), ops_free(d_vr);
    }
    assert_memory_equal(out[0], out[1], (size_t)N * H * hd * sizeof(float));
    free(k), free(v), free(k_dup), free(v_dup), free(q), free(out[0]), free(out[1]);
    void *d[] = {d_slots, d_tables, d_qs, d_ctx, d_q, d_out};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) ops_free(d[i]);
}

static void test_paged_attention_gqa_as_duplicated_heads(void **state) {
    (void)state;
    // Heads of 8 in pairs (stories260K: 8 heads, 4 kv heads), groups of 3 (a pair and one
    // alone) and 4; heads of 16 and 48 for the other paths; fp32 and fp16 caches.
    for (int f16 = 0; f16 <= 1; f16++) {
        const int kv = f16 ? OPS_KV_F16 : OPS_KV_F32;
        gqa_matches_duplicated_heads(8, 4, 8, kv);
        gqa_matches_duplicated_heads(6, 2, 8, kv);
        gqa_matches_duplicated_heads(8, 2, 8, kv);
        gqa_matches_duplicated_heads(4, 2, 16, kv);
        gqa_matches_duplicated_heads(4, 2, 48, kv);
    }
}

static void test_paged_attention_ignores_other_slots(void **state) {
    (void)state;
    // Slots that no row may see (the rest of a sequence's last block, blocks of no sequence)
    // hold keys of NaN and values of +inf: the rows still equal the reference, for small heads
    // (whose loops run over whole groups of 8 keys and mask the rest) and other heads.
    const int ctx[] = {45, 13, 3, 1, 20}, n_q[] = {1, 4, 3, 1, 1};
    AttnCase small = {.n_seqs = 5, .H = 8, .KVH = 4, .hd = 8, .bs = 16, .n_blocks = 20, .max_blocks = 3, .ctx = ctx,
                      .n_q = n_q, .poison = 1};
    attention_case(&small);
    small.kv_dtype = OPS_KV_F16;
    attention_case(&small);
    AttnCase large = {.n_seqs = 5, .H = 2, .KVH = 1, .hd = 48, .bs = 16, .n_blocks = 20, .max_blocks = 3, .ctx = ctx,
                      .n_q = n_q, .poison = 1};
    attention_case(&large);
}

// The baseline (SSE2) copy of the small-head path, fp32 and fp16 (widened block by block),
// against the reference too.
static void test_paged_attention_baseline_copy(void **state) {
    (void)state;
    const int ctx[] = {45, 40, 3}, n_q[] = {1, 9, 3};
    AttnCase c = {.n_seqs = 3, .H = 8, .KVH = 4, .hd = 8, .bs = 16, .n_blocks = 12, .max_blocks = 3, .ctx = ctx,
                  .n_q = n_q};
    setenv("ASYNCRL_CPU_BASELINE", "1", 1);
    attention_case(&c);
    c.kv_dtype = OPS_KV_F16;
    attention_case(&c);
    unsetenv("ASYNCRL_CPU_BASELINE");
}

static void test_paged_attention_fp16_cache(void **state) {
    (void)state;
    // An fp16 cache: slots read back as the written values rounded to half precision, and
    // attention equals the double-precision reference over those rounded keys and values
    // (decode rows, prefill chunks, GQA, MHA, heads of 48 over 16-key blocks with tails).
    const int ctx[] = {45, 40, 3, 17}, n_q[] = {1, 9, 3, 1};
    AttnCase h48 = {.n_seqs = 4, .H = 2, .KVH = 2, .hd = 48, .bs = 16, .n_blocks = 16, .max_blocks = 3, .ctx = ctx,
                    .n_q = n_q, .kv_dtype = OPS_KV_F16};
    attention_case(&h48);
    AttnCase gqa = {.n_seqs = 4, .H = 6, .KVH = 2, .hd = 10, .bs = 5, .n_blocks = 30, .max_blocks = 9, .ctx = ctx,
                    .n_q = n_q, .kv_dtype = OPS_KV_F16};
    attention_case(&gqa);
}

static void test_paged_attention_many_decodes(void **state) {
    (void)state;
    // Enough decode rows that each task takes several kv heads (at least 8 tasks per thread
    // remain up to 4 threads): the batch result must still equal the reference and, bit for
    // bit, each sequence decoded alone (one task per head).
    enum { S = 40 };
    int ctx[S], n_q[S];
    for (int s = 0; s < S; s++) ctx[s] = 1 + (s * 7) % 23, n_q[s] = 1;
    AttnCase c = {.n_seqs = S, .H = 4, .KVH = 2, .hd = 8, .bs = 4, .n_blocks = S * 6, .max_blocks = 6, .ctx = ctx,
                  .n_q = n_q};
    attention_case(&c);
}

// ---------------------------------------------------------------------------------------
// Sampling.

static void run_sample(int32_t *tokens, float *logprobs, const float *logits, const OpsSampleParams *params, int n,
                       int vocab) {
    float *d_logits = dev(logits, (size_t)n * vocab * 4);
    OpsSampleParams *d_params = dev(params, (size_t)n * sizeof(OpsSampleParams));
    int32_t *d_tokens = ops_alloc((size_t)n * 4);
    float *d_logprobs = ops_alloc((size_t)n * 4);
    ops_sample(d_tokens, d_logprobs, d_logits, d_params, n, vocab);
    ops_copy_to_host(tokens, d_tokens, (size_t)n * 4);
    ops_copy_to_host(logprobs, d_logprobs, (size_t)n * 4);
    ops_free(d_logits), ops_free(d_params), ops_free(d_tokens), ops_free(d_logprobs);
}

static OpsSampleParams plain(float T, uint64_t seed, uint64_t counter) {
    OpsSampleParams p = {.temperature = T, .top_p = 1.0f, .min_p = 0.0f, .top_k = 0, .greedy = 0, .seed = seed,
                         .counter = counter};
    return p;
}

// log_softmax(logits / T)[tok] in double.
static double ref_logprob(const float *logits, int vocab, double T, int tok) {
    double mx = -INFINITY, sum = 0.0;
    for (int j = 0; j < vocab; j++) mx = logits[j] / T > mx ? logits[j] / T : mx;
    for (int j = 0; j < vocab; j++) sum += exp(logits[j] / T - mx);
    return logits[tok] / T - mx - log(sum);
}

// The distribution ops.h's rule samples from, in double with a full sort: probabilities at
// temperature T, the top_k first of the rank order, the shortest prefix reaching top_p of
// their mass, min_p relative to the largest, renormalised. probs (V) =.
static void ref_distribution(double *probs, const float *logits, int vocab, const OpsSampleParams *p) {
    int *order = malloc((size_t)vocab * sizeof(int));
    double *w = malloc((size_t)vocab * sizeof(double));
    double mx = -INFINITY;
    for (int j = 0; j < vocab; j++) mx = logits[j] / p->temperature > mx ? logits[j] / p->temperature : mx;
    for (int j = 0; j < vocab; j++) w[j] = exp(logits[j] / p->temperature - mx), order[j] = j;
    for (int i = 1; i < vocab; i++)  // insertion sort by (w desc, id asc)
        for (int j = i; j > 0 && (w[order[j]] > w[order[j - 1]] ||
                                  (w[order[j]] == w[order[j - 1]] && order[j] < order[j - 1]));
             j--) {
            const int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    int keep = p->top_k > 0 && p->top_k < vocab ? p->top_k : vocab;
    if (p->top_p < 1.0f) {
        double mass = 0.0, acc = 0.0;
        for (int i = 0; i < keep; i++) mass += w[order[i]];
        int n = 0;
        while (n < keep && acc < p->top_p * mass) acc += w[order[n++]];
        keep = n;
    }
    double total = 0.0;
    for (int j = 0; j < vocab; j++) probs[j] = 0.0;
    for (int i = 0; i < keep; i++)
        if (w[order[i]] >= p->min_p) probs[order[i]] = w[order[i]], total += w[order[i]];
    for (int j = 0; j < vocab; j++) probs[j] /= total;
    free(order);
    free(w);
}

// Chi-square statistic of counts (n draws) against probs; tokens with probability 0 must not
// appear (returns INFINITY if one does).
static double chi_square(const int *counts, const double *probs, int vocab, int n) {
    double chi = 0.0;
    for (int j = 0; j < vocab; j++) {
        if (probs[j] == 0.0) {
            if (counts[j] != 0) return INFINITY;
            continue;
        }
        const double e = probs[j] * n;
        chi += (counts[j] - e) * (counts[j] - e) / e;
    }
    return chi;
}

enum { STAT_V = 10, STAT_N = 20000 };
static const float STAT_LOGITS[STAT_V] = {1.2f, -0.3f, 2.0f, 0.5f, 2.0f, -1.5f, 0.9f, 0.0f, -0.7f, 1.6f};

// Draws STAT_N tokens with p (counters 0..N-1, all rows of one call) and checks frequencies.
static void check_frequencies(const char *what, OpsSampleParams p) {
    float *logits = malloc((size_t)STAT_N * STAT_V * sizeof(float));
    OpsSampleParams *params = malloc((size_t)STAT_N * sizeof(OpsSampleParams));
    for (int i = 0; i < STAT_N; i++) {
        memcpy(logits + (size_t)i * STAT_V, STAT_LOGITS, sizeof STAT_LOGITS);
        params[i] = p;
        params[i].counter = (uint64_t)i;
    }
    int32_t *tokens = malloc(STAT_N * sizeof(int32_t));
    float *logprobs = malloc(STAT_N * sizeof(float));
    run_sample(tokens, logprobs, logits, params, STAT_N, STAT_V);
    int counts[STAT_V] = {0};
    for (int i = 0; i < STAT_N; i++) {
        assert_true(tokens[i] >= 0 && tokens[i] < STAT_V);
        counts[tokens[i]]++;
        // The logprob of the untruncated distribution at temperature T.
        const double want = ref_logprob(STAT_LOGITS, STAT_V, p.temperature, tokens[i]);
        if (fabs(logprobs[i] - want) > 1e-5) {
            print_error("%s: logprob of token %d is %g, log_softmax(logits/T) gives %g\n", what, tokens[i],
                        (double)logprobs[i], want);
            fail();
        }
    }
    double probs[STAT_V];
    ref_distribution(probs, STAT_LOGITS, STAT_V, &p);
    int df = -1;
    for (int j = 0; j < STAT_V; j++) df += probs[j] > 0.0;
    const double chi = chi_square(counts, probs, STAT_V, STAT_N);
    // 99.99th percentile of chi-square for df <= 9 is below 34; a fixed seed makes it exact.
    printf("# %s: chi-square %.2f with %d degrees of freedom\n", what, chi, df);
    if (!(chi < 34.0)) {
        print_error("%s: chi-square %.2f against the intended distribution\n", what, chi);
        fail();
    }
    // The same counts against a wrong distribution (temperature 1, no cuts) must fail,
    // unless the setting is that distribution.
    OpsSampleParams wrong = plain(1.0f, 0, 0);
    double wrong_probs[STAT_V];
    ref_distribution(wrong_probs, STAT_LOGITS, STAT_V, &wrong);
    double diff = 0.0;
    for (int j = 0; j < STAT_V; j++) diff += fabs(wrong_probs[j] - probs[j]);
    if (diff > 0.05) assert_true(chi_square(counts, wrong_probs, STAT_V, STAT_N) > 100.0);
    free(logits), free(params), free(tokens), free(logprobs);
}

static void test_sample_frequencies(void **state) {
    (void)state;
    OpsSampleParams p = plain(1.0f, 11, 0);
    check_frequencies("temperature 1", p);
    p.temperature = 0.6f;
    check_frequencies("temperature 0.6", p);
    p.temperature = 2.5f;
    check_frequencies("temperature 2.5", p);
    p = plain(1.0f, 12, 0);
    p.top_k = 3;  // ids 2 and 4 tie at the top: both kept, then id 9
    check_frequencies("top-k 3", p);
    p.top_k = 2;
    check_frequencies("top-k 2 (a tie)", p);
    p = plain(0.8f, 13, 0);
    p.top_p = 0.7f;
    check_frequencies("top-p 0.7", p);
    p.top_p = 0.05f;  // only the first of the rank order: id 2 (tied with 4, lower id)
    check_frequencies("top-p 0.05", p);
    p = plain(1.0f, 14, 0);
    p.min_p = 0.3f;
    check_frequencies("min-p 0.3", p);
    p = plain(1.3f, 15, 0);
    p.top_k = 6;
    p.top_p = 0.9f;
    p.min_p = 0.1f;
    check_frequencies("top-k 6, top-p 0.9, min-p 0.1, T 1.3", p);
}

static void test_sample_greedy_and_logprob(void **state) {
    (void)state;
    enum { N = 6, V = 300 };
    float *logits = randn((size_t)N * V, 3.0f);
    logits[1 * V + 17] = logits[1 * V + 200] = 50.0f;  // a tie at the top of row 1: id 17 wins
    OpsSampleParams params[N];
    for (int i = 0; i < N; i++) {
        params[i] = plain(0.5f + 0.3f * i, 5, (uint64_t)i);
        params[i].greedy = 1;
    }
    params[5].temperature = 0.0f;  // greedy with T 0: logprob at T = 1
    int32_t tokens[N];
    float logprobs[N];
    run_sample(tokens, logprobs, logits, params, N, V);
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int j = 1; j < V; j++)
            if (logits[(size_t)i * V + j] > logits[(size_t)i * V + best]) best = j;
        assert_int_equal(tokens[i], best);
        const double T = params[i].temperature > 0 ? params[i].temperature : 1.0;
        assert_true(fabs(logprobs[i] - ref_logprob(logits + (size_t)i * V, V, T, best)) < 1e-5);
    }
    assert_int_equal(tokens[1], 17);
    free(logits);
}

// The draw is the documented inverse CDF of uniform(seed, counter) = (rng_mix >> 11) * 2^-53,
// in ascending id order; a row's token does not depend on the other rows of the call. Rows
// alternate T = 0.9 and T = 1 (at T = 1 the CPU kernel reads the logits row in place).
static void test_sample_stream_rule_and_batch_independence(void **state) {
    (void)state;
    enum { N = 300, V = 50 };
    float *logits = randn((size_t)N * V, 2.0f);
    OpsSampleParams *params = malloc(N * sizeof(OpsSampleParams));
    for (int i = 0; i < N; i++) params[i] = plain(i % 2 ? 1.0f : 0.9f, 1000 + (uint64_t)(i % 7), (uint64_t)i);
    int32_t *tokens = malloc(N * sizeof(int32_t));
    float *logprobs = malloc(N * sizeof(float));
    run_sample(tokens, logprobs, logits, params, N, V);
    int matched = 0;
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * V, T = params[i].temperature;
        double mx = -INFINITY, total = 0.0;
        for (int j = 0; j < V; j++) mx = row[j] / T > mx ? row[j] / T : mx;
        for (int j = 0; j < V; j++) total += exp(row[j] / T - mx);
        const double u = (double)(rng_mix(params[i].seed, params[i].counter) >> 11) * 0x1.0p-53;
        double acc = 0.0;
        int want = V - 1;
        for (int j = 0; j < V; j++) {
            acc += exp(row[j] / T - mx);
            if (acc > u * total) {
                want = j;
                break;
            }
        }
        matched += tokens[i] == want;
    }
    assert_int_equal(matched, N);  // float rounding could in principle flip a boundary; it does not here
    // Row i alone (a batch of one), and the rows in reverse order: the same tokens and logprobs.
    for (int i = 0; i < N; i += 37) {
        int32_t t;
        float lp;
        run_sample(&t, &lp, logits + (size_t)i * V, &params[i], 1, V);
        assert_int_equal(t, tokens[i]);
        assert_memory_equal(&lp, &logprobs[i], sizeof(float));
    }
    float *rev = malloc((size_t)N * V * sizeof(float));
    OpsSampleParams *rev_p = malloc(N * sizeof(OpsSampleParams));
    for (int i = 0; i < N; i++) {
        memcpy(rev + (size_t)i * V, logits + (size_t)(N - 1 - i) * V, V * sizeof(float));
        rev_p[i] = params[N - 1 - i];
    }
    int32_t *rev_t = malloc(N * sizeof(int32_t));
    float *rev_lp = malloc(N * sizeof(float));
    run_sample(rev_t, rev_lp, rev, rev_p, N, V);
    for (int i = 0; i < N; i++) assert_int_equal(rev_t[i], tokens[N - 1 - i]);
    // Another seed gives another stream.
    int differ = 0;
    for (int i = 0; i < N; i++) params[i].seed += 1;
    int32_t *other = malloc(N * sizeof(int32_t));
    run_sample(other, logprobs, logits, params, N, V);
    for (int i = 0; i < N; i++) differ += other[i] != tokens[i];
    assert_true(differ > N / 4);
    free(logits), free(params), free(tokens), free(logprobs), free(rev), free(rev_p), free(rev_t), free(rev_lp);
    free(other);
}

// On a processor with AVX-512 the sampler's AVX-512 build runs the AVX2 build's operations
// lane for lane: the same tokens and logprob bits, for every kind of row (T = 1 read in place,
// other temperatures, top-k, top-p, min-p, greedy, a NaN at T = 1).
static void test_sample_builds_agree(void **state) {
    (void)state;
    enum { N = 40, V = 3000 };
    float *logits = randn((size_t)N * V, 3.0f);
    logits[(size_t)7 * V + 11] = NAN;
    OpsSampleParams params[N];
    for (int i = 0; i < N; i++) {
        params[i] = plain(i % 3 == 0 ? 1.0f : 0.5f + 0.1f * (float)(i % 7), 77, (uint64_t)i);
        if (i % 5 == 1) params[i].top_k = 20 + i;
        if (i % 5 == 2) params[i].top_p = 0.8f;
        if (i % 5 == 3) params[i].min_p = 0.05f;
        if (i % 10 == 4) params[i].greedy = 1;
    }
    params[7].temperature = 1.0f;
    int32_t fast_t[N], avx2_t[N];
    float fast_lp[N], avx2_lp[N];
    run_sample(fast_t, fast_lp, logits, params, N, V);
    setenv("ASYNCRL_CPU_NO_AVX512", "1", 1);
    run_sample(avx2_t, avx2_lp, logits, params, N, V);
    unsetenv("ASYNCRL_CPU_NO_AVX512");
    assert_memory_equal(fast_t, avx2_t, sizeof fast_t);
    assert_memory_equal(fast_lp, avx2_lp, sizeof fast_lp);
    assert_int_not_equal(fast_t[7], 11);
    free(logits);
}

static void test_sample_garbage_logits(void **state) {
    (void)state;
    enum { N = 5, V = 8 };
    float logits[N * V];
    for (int i = 0; i < N * V; i++) logits[i] = (float)(i % 5);
    for (int j = 0; j < V; j++) logits[0 * V + j] = NAN;       // all NaN
    for (int j = 0; j < V; j++) logits[1 * V + j] = -INFINITY;  // all -inf
    logits[2 * V + 3] = INFINITY;                               // +inf
    logits[3 * V + 1] = NAN;                                    // one NaN among numbers: never sampled
    OpsSampleParams params[N];
    for (int i = 0; i < N; i++) params[i] = plain(1.0f, 3, (uint64_t)i);
    params[4].top_p = 0.5f, params[4].top_k = 3;
    for (int rep = 0; rep < 50; rep++) {
        for (int i = 0; i < N; i++) params[i].counter = (uint64_t)rep;
        int32_t tokens[N];
        float logprobs[N];
        run_sample(tokens, logprobs, logits, params, N, V);
        for (int i = 0; i < N; i++) assert_true(tokens[i] >= 0 && tokens[i] < V);
        assert_int_equal(tokens[2], 3);
        assert_int_not_equal(tokens[3], 1);
        assert_true(isfinite(logprobs[3]));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paged_attention_gqa),
        cmocka_unit_test(test_paged_attention_mha_and_mqa),
        cmocka_unit_test(test_paged_attention_head_sizes),
        cmocka_unit_test(test_paged_attention_small_heads),
        cmocka_unit_test(test_paged_attention_gqa_as_duplicated_heads),
        cmocka_unit_test(test_paged_attention_ignores_other_slots),
        cmocka_unit_test(test_paged_attention_baseline_copy),
        cmocka_unit_test(test_paged_attention_fp16_cache),
        cmocka_unit_test(test_paged_attention_many_decodes),
        cmocka_unit_test(test_sample_frequencies),
        cmocka_unit_test(test_sample_greedy_and_logprob),
        cmocka_unit_test(test_sample_stream_rule_and_batch_independence),
        cmocka_unit_test(test_sample_builds_agree),
        cmocka_unit_test(test_sample_garbage_logits),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
