// Checkpoints: a round trip restores model, AdamW moments and counters bit for bit; `latest`
// skips incomplete and damaged files with a warning; a checkpoint of another model shape, a
// truncated or corrupted file, a missing directory and a full disk (a file-size limit) are
// clear errors that leave the previous checkpoints intact.
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/test_util.h"
#include "core/rng.h"
#include "core/files.h"
#include "io/checkpoint.h"
#include "ops.h"

static char g_dir[256];

static Model *make_model(int dim, uint64_t seed) {
    ModelConfig c = {.dim = dim, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = 37, .max_seq_len = 32,
                     .rope_theta = 10000, .norm_eps = 1e-5, .tied_embeddings = 0};
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    assert_non_null(m);
    model_init_random(m, seed, 0.02f);
    return m;
}

static Optimizer *make_optimizer(Model *m) {
    OptimizerConfig oc = {.lr = 1e-3, .schedule = LR_CONSTANT, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = 0.01, .grad_clip = 1.0, .total_steps = 10};
    ErrorBuf err;
    Optimizer *opt = optimizer_create(m, &oc, &err);
    assert_non_null(opt);
    // Distinct moments so the round trip is meaningful.
    float *h = malloc(sizeof(float) * m->n_params);
    Rng r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < m->n_params; i++) h[i] = rng_normal(&r);
    ops_copy_to_device(opt->m, h, sizeof(float) * m->n_params);
    for (size_t i = 0; i < m->n_params; i++) h[i] = rng_uniform_f(&r);
    ops_copy_to_device(opt->v, h, sizeof(float) * m->n_params);
    free(h);
    opt->step = 17;
    return opt;
}

static CheckpointState make_state(int64_t step) {
    CheckpointState st = {.step = step, .sft_done = 30, .bad_in_row = 1, .cursor = 4242, .sft_cursor = 960,
                          .next_group = 77, .next_request = 616, .rr_rank = 1, .seed = 1234, .n_pending = 3};
    st.pending = malloc(sizeof(int64_t) * 3);
    st.pending[0] = 4239, st.pending[1] = 4240, st.pending[2] = 4241;
    return st;
}

static void write_ok(const Model *m, const Optimizer *opt, int64_t step, int keep) {
    CheckpointState st = make_state(step);
    ErrorBuf err;
    char path[512];
    if (checkpoint_write(g_dir, m, opt, &st, NULL, 0, "run = { seed = 1L; };", keep, path, sizeof path, &err) != 0) {
        print_error("%s\n", err.msg);
        fail();
    }
    checkpoint_state_free(&st);
}

static void test_round_trip(void **state) {
    Model *m = make_model(16, 1);
    Optimizer *opt = make_optimizer(m);
    write_ok(m, opt, 12, 0);
    // A run directory that is gone (deleted or moved under the job) is not made again.
    CheckpointState gone_st = make_state(3);
    ErrorBuf gone;
    char gone_dir[300], gone_path[512];
    snprintf(gone_dir, sizeof gone_dir, "%s/moved_away", g_dir);
    assert_int_equal(checkpoint_write(gone_dir, m, opt, &gone_st, NULL, 0, "", 0, gone_path, sizeof gone_path, &gone), -1);
    assert_non_null(strstr(gone.msg, "is gone"));
    assert_int_equal(access(gone_dir, F_OK), -1);
    checkpoint_state_free(&gone_st);
    char path[512];
    ErrorBuf err;
    assert_int_equal(checkpoint_resolve(g_dir, "latest", path, sizeof path, &err), 1);
    assert_non_null(strstr(path, "checkpoints/step_000012.h5"));
    Model *m2 = make_model(16, 99);  // different weights until loaded
    Optimizer *opt2 = make_optimizer(m2);
    opt2->step = 0;
    ops_zero(opt2->m, sizeof(float) * m2->n_params);
    assert_int_equal(checkpoint_read_model(path, m2, &err), 0);
    assert_int_equal(checkpoint_read_optimizer(path, opt2, m2, &err), 0);
    assert_memory_equal(m2->params, m->params, sizeof(float) * m->n_params);
    assert_memory_equal(opt2->m, opt->m, sizeof(float) * m->n_params);
    assert_memory_equal(opt2->v, opt->v, sizeof(float) * m->n_params);
    assert_int_equal(opt2->step, 17);
    CheckpointState st;
    char *text;
    int rs = checkpoint_read_state(path, &st, &text, &err);
    if (rs) print_error("%s\n", err.msg);
    assert_int_equal(rs, 0);
    assert_int_equal(st.step, 12);
    assert_int_equal(st.cursor, 4242);
    assert_int_equal(st.next_request, 616);
    assert_int_equal(st.n_pending, 3);
    assert_int_equal(st.pending[2], 4241);
    assert_string_equal(text, "run = { seed = 1L; };");
    ModelConfig c;
    if (checkpoint_read_config(path, &c, &err) != 0) print_error("%s\n", err.msg);
    assert_int_equal(checkpoint_read_config(path, &c, &err), 0);
    assert_int_equal(c.dim, 16);
    assert_int_equal(c.n_kv_heads, 2);
    free(text);
    checkpoint_state_free(&st);
    // The model part opens in h5py as plain arrays under Hugging Face names.
    char cmd[800];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import h5py; f = h5py.File('%s', 'r'); "
             "print(f['model/model.layers.1.self_attn.k_proj.weight'].shape, f['model/lm_head.weight'].dtype)\" "
             "2>/dev/null | grep -q '(8, 16) float32'", path);
    if (system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) assert_int_equal(system(cmd), 0);
    optimizer_free(opt);
    optimizer_free(opt2);
    model_free(m);
    model_free(m2);
}

static void test_latest_skips_incomplete_and_keep(void **state) {
    Model *m = make_model(16, 1);
    Optimizer *opt = make_optimizer(m);
    write_ok(m, opt, 2, 2);
    write_ok(m, opt, 4, 2);
    write_ok(m, opt, 6, 2);  // keep = 2: step 2 goes
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/step_000002.h5", g_dir);
    assert_int_not_equal(access(path, F_OK), 0);
    // A leftover temporary file (a job killed while writing) and a newer file without `complete`
    // (a truncated copy) are both ignored by `latest`.
    snprintf(path, sizeof path, "%s/checkpoints/step_000008.h5.tmp", g_dir);
    FILE *f = fopen(path, "w");
    fputs("half a checkpoint", f);
    fclose(f);
    char src[512], dst[512];
    snprintf(src, sizeof src, "%s/checkpoints/step_000006.h5", g_dir);
    snprintf(dst, sizeof dst, "%s/checkpoints/step_000010.h5", g_dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "head -c 3000 %s > %s", src, dst);
    assert_int_equal(system(cmd), 0);
    ErrorBuf err;
    assert_int_equal(checkpoint_resolve(g_dir, "latest", path, sizeof path, &err), 1);
    assert_non_null(strstr(path, "step_000006.h5"));
    // Asking for the damaged one by step is an error that says so.
    assert_int_equal(checkpoint_resolve(g_dir, "10", path, sizeof path, &err), -1);
    assert_non_null(strstr(err.msg, "incomplete or damaged"));
    assert_int_equal(checkpoint_resolve(g_dir, "3", path, sizeof path, &err), -1);
    assert_non_null(strstr(err.msg, "does not exist"));
    assert_int_equal(checkpoint_resolve(g_dir, "none", path, sizeof path, &err), 0);
    assert_int_equal(checkpoint_resolve("/nonexistent/run", "latest", path, sizeof path, &err), 0);
    // Reading the truncated file directly is a clear error, not a crash.
    assert_int_equal(checkpoint_read_model(dst, m, &err), -1);
    assert_non_null(strstr(err.msg, "step_000010.h5"));
    optimizer_free(opt);
    model_free(m);
}

// A rollback to step 2 moves the later checkpoints (3, 4) aside, keeping 1 and 2; a second one
// to the same step gets a folder of its own; when no folder can be made, nothing moves.
static void test_set_aside_newer(void **state) {
    Model *m = make_model(16, 1);
    for (int step = 1; step <= 4; step++) write_ok(m, NULL, step, 0);
    char where[1024], path[1100];
    ErrorBuf err;
    assert_int_equal(checkpoint_set_aside_newer(g_dir, 2, where, sizeof where, &err), 2);
    snprintf(path, sizeof path, "%s/checkpoints/rolled_back_to_000002", g_dir);
    assert_string_equal(where, path);
    for (int step = 1; step <= 4; step++) {
        snprintf(path, sizeof path, "%s/checkpoints/step_%06d.h5", g_dir, step);
        assert_int_equal(access(path, F_OK) == 0, step <= 2);
        snprintf(path, sizeof path, "%s/step_%06d.h5", where, step);
        assert_int_equal(access(path, F_OK) == 0, step > 2);
    }
    assert_int_equal(checkpoint_newest(g_dir), 2);
    assert_int_equal(checkpoint_set_aside_newer(g_dir, 2, where, sizeof where, &err), 0);  // nothing later
    write_ok(m, NULL, 3, 0);
    assert_int_equal(checkpoint_set_aside_newer(g_dir, 2, where, sizeof where, &err), 1);
    assert_non_null(strstr(where, "rolled_back_to_000002_2"));
    // With every folder name taken, nothing moves and the error says so.
    for (int k = 3; k < 1000; k++) {
        snprintf(path, sizeof path, "%s/checkpoints/rolled_back_to_000002_%d", g_dir, k);
        assert_int_equal(mkdir(path, 0755), 0);
    }
    write_ok(m, NULL, 5, 0);
    assert_int_equal(checkpoint_set_aside_newer(g_dir, 2, where, sizeof where, &err), -1);
    assert_non_null(strstr(err.msg, "holds 999 rolled_back_to_000002 folders"));
    snprintf(path, sizeof path, "%s/checkpoints/step_000005.h5", g_dir);
    assert_int_equal(access(path, F_OK), 0);
    model_free(m);
}

static void test_other_shape_and_corruption(void **state) {
    Model *m = make_model(16, 1);
    write_ok(m, NULL, 5, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/step_000005.h5", g_dir);
    Model *wide = make_model(24, 1);
    ErrorBuf err;
    assert_int_equal(checkpoint_read_model(path, wide, &err), -1);
    assert_non_null(strstr(err.msg, "different model"));
    // The same shape under another RoPE base or RMSNorm epsilon is another model too.
    Model *other = make_model(16, 1);
    other->config.rope_theta = 10.0;
    assert_int_equal(checkpoint_read_model(path, other, &err), -1);
    assert_non_null(strstr(err.msg, "the config asks for rope_theta = 10 and norm_eps"));
    other->config.rope_theta = m->config.rope_theta;
    other->config.norm_eps = 0.5;
    assert_int_equal(checkpoint_read_model(path, other, &err), -1);
    assert_non_null(strstr(err.msg, "norm_eps = 0.5: resume with"));
    other->config.norm_eps = m->config.norm_eps;
    assert_int_equal(checkpoint_read_model(path, other, &err), 0);
    model_free(other);
    Optimizer *opt = make_optimizer(m);
    assert_int_equal(checkpoint_read_optimizer(path, opt, m, &err), -1);  // written without optimizer
    assert_non_null(strstr(err.msg, "no optimizer state"));
    // Flip bytes in the middle of the file: reading fails cleanly or reads other numbers, never crashes.
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    for (long off = 512; off < size; off += size / 7) {
        fseek(f, off, SEEK_SET);
        fputc(0xA5, f);
    }
    fclose(f);
    checkpoint_read_model(path, m, &err);
    CheckpointState st;
    if (checkpoint_read_state(path, &st, NULL, &err) == 0) checkpoint_state_free(&st);
    optimizer_free(opt);
    model_free(wide);
    model_free(m);
}

// A flipped bit inside a tensor's data fails that tensor's checksum: reading says the file is
// damaged instead of loading a wrong weight.
static void test_flipped_bit_fails_checksum(void **state) {
    Model *m = make_model(16, 1);
    write_ok(m, NULL, 7, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/step_000007.h5", g_dir);
    const ModelTensor *t = &m->tensors[m->n_tensors - 1];
    float *values = malloc(sizeof(float) * t->numel), probe[4];
    assert_true(t->numel >= 4);
    model_tensor_to_host(m->params, t, values);
    memcpy(probe, values, sizeof probe);  // its first 4 floats, to find its data in the file
    free(values);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f), at = -1;
    unsigned char *bytes = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    assert_int_equal(fread(bytes, 1, (size_t)size, f), (size_t)size);
    for (long i = 0; i + (long)sizeof probe <= size && at < 0; i++)
        if (memcmp(bytes + i, probe, sizeof probe) == 0) at = i;
    assert_true(at >= 0);  // the tensor's data as written
    fseek(f, at + 5, SEEK_SET);
    fputc(bytes[at + 5] ^ 0x10, f);
    fclose(f);
    free(bytes);
    Model *back = make_model(16, 2);
    ErrorBuf err;
    assert_int_equal(checkpoint_read_model(path, back, &err), -1);
    if (!strstr(err.msg, t->name) || !strstr(err.msg, "a checksum failed")) print_error("got: %s\n", err.msg);
    assert_non_null(strstr(err.msg, t->name));
    assert_non_null(strstr(err.msg, "a checksum failed"));
    model_free(back);
    model_free(m);
}

// What `asyncrl generate --model CHECKPOINT` uses: the HDF5 signature, the model alone, and the
// tokenizer of the config the checkpoint was written with.
static void test_model_and_tokenizer_for_generate(void **state) {
    Model *m = make_model(16, 3);
    CheckpointState st = make_state(4);
    ErrorBuf err;
    char path[512];
    assert_int_equal(checkpoint_write(g_dir, m, NULL, &st, NULL, 0, "model = { tokenizer = \"some/tok.bin\"; };", 0,
                                      path, sizeof path, &err), 0);
    checkpoint_state_free(&st);
    assert_true(file_is_hdf5(path));
    char text_file[600];
    snprintf(text_file, sizeof text_file, "%s/not_hdf5.bin", g_dir);
    FILE *f = fopen(text_file, "wb");
    fputs("\x89HDF but not quite", f);
    fclose(f);
    assert_false(file_is_hdf5(text_file));
    assert_false(file_is_hdf5("/nonexistent.h5"));
    char tok[256];
    assert_int_equal(checkpoint_read_tokenizer(path, tok, sizeof tok, &err), 0);
    assert_string_equal(tok, "some/tok.bin");
    Model *back = checkpoint_load_model(path, &err);
    assert_non_null(back);
    assert_int_equal(back->config.dim, 16);
    assert_memory_equal(back->params, m->params, sizeof(float) * m->n_params);
    model_free(back);
    assert_null(checkpoint_load_model(text_file, &err));
    assert_non_null(strstr(err.msg, "not_hdf5.bin"));
    unlink(text_file);
    model_free(m);
}

static void test_history(void **state) {
    Model *m = make_model(16, 1);
    float *a = malloc(sizeof(float) * m->n_params), *b = malloc(sizeof(float) * m->n_params);
    for (size_t i = 0; i < m->n_params; i++) a[i] = (float)i, b[i] = -(float)i;
    PolicySnapshot hist[2] = {{8, a}, {9, b}};
    CheckpointState st = make_state(10);
    ErrorBuf err;
    char path[512];
    assert_int_equal(checkpoint_write(g_dir, m, NULL, &st, hist, 2, "", 0, path, sizeof path, &err), 0);
    PolicySnapshot *got;
    int n;
    assert_int_equal(checkpoint_read_history(path, m->n_params, &got, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(got[0].version, 8);
    assert_int_equal(got[1].version, 9);
    assert_memory_equal(got[0].params, a, sizeof(float) * m->n_params);
    assert_memory_equal(got[1].params, b, sizeof(float) * m->n_params);
    for (int i = 0; i < 2; i++) free(got[i].params);
    free(got);
    assert_int_equal(checkpoint_read_history(path, m->n_params + 1, &got, &n, &err), -1);  // another model size
    free(a);
    free(b);
    checkpoint_state_free(&st);
    model_free(m);
}

static void test_full_disk(void **state) {
    Model *m = make_model(16, 1);
    write_ok(m, NULL, 1, 0);
    // A file-size limit makes the next write fail like a full disk would.
    struct rlimit old, small = {.rlim_cur = 4096, .rlim_max = RLIM_INFINITY};
    getrlimit(RLIMIT_FSIZE, &old);
    small.rlim_max = old.rlim_max;
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    CheckpointState st = make_state(2);
    ErrorBuf err;
    int rc = checkpoint_write(g_dir, m, NULL, &st, NULL, 0, "", 0, NULL, 0, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err.msg, "disk full"));
    char path[512];
    snprintf(path, sizeof path, "%s/checkpoints/step_000002.h5.tmp", g_dir);
    assert_int_not_equal(access(path, F_OK), 0);  // nothing half-written left behind
    assert_int_equal(checkpoint_resolve(g_dir, "latest", path, sizeof path, &err), 1);
    assert_non_null(strstr(path, "step_000001.h5"));
    // A directory that cannot be created is an error naming it.
    assert_int_equal(checkpoint_write("/proc/asyncrl-nope", m, NULL, &st, NULL, 0, "", 0, NULL, 0, &err), -1);
    assert_non_null(strstr(err.msg, "/proc/asyncrl-nope"));
    checkpoint_state_free(&st);
    model_free(m);
}

// A fresh run directory for each test (checkpoint_write never makes the run directory).
static int teardown(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/asyncrl-test-ckpt-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd);
}
static int setup(void **state) { return teardown(state) || mkdir(g_dir, 0755); }

int main(void) {
    ops_init(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_skips_incomplete_and_keep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_aside_newer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_shape_and_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_bit_fails_checksum, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_and_tokenizer_for_generate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_full_disk, setup, teardown),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
