// Run under `mpirun -np 2` by tests/integration/data_parallel.sh: the same batch trained on one
// trainer rank and split over two trainer ranks gives the same update (fp32 tolerance), for the
// icepop loss and for SFT: the same all-reduced gradient and loss, and the same weights after
// the AdamW step. The global loss-token count makes the split invisible. And SFT is plain
// cross-entropy whatever the sampling temperature the trainer is set up with.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm/mpi_check.h"
#include "core/rng.h"
#include "ops.h"
#include "train/train_step.h"

enum { ROWS = 4, SEQ = 24, VOCAB = 41 };

static Model *make_model(void) {
    ModelConfig c = {.dim = 32, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .vocab_size = VOCAB, .max_seq_len = SEQ,
                     .rope_theta = 10000, .norm_eps = 1e-5, .tied_embeddings = 1};
    ErrorBuf err;
    Model *m = model_create(&c, &err);
    if (!m) FATAL("", "%s", err.msg);
    model_init_random(m, 7, 0.05f);
    if (model_reserve(m, SEQ, 1, &err) != 0) FATAL("", "%s", err.msg);
    return m;
}

static Optimizer *make_opt(Model *m) {
    OptimizerConfig oc = {.lr = 1e-2, .schedule = LR_CONSTANT, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = 0.01, .grad_clip = 1.0, .total_steps = 10};
    ErrorBuf err;
    Optimizer *o = optimizer_create(m, &oc, &err);
    if (!o) FATAL("", "%s", err.msg);
    return o;
}

// A batch of `rows` rows, each holding two or three samples; rows are chosen by `pick`.
static void make_batch(Batch *b, const int *pick, int n_pick) {
    batch_alloc(b, n_pick, SEQ);
    for (int k = 0; k < n_pick; k++) {
        int row = pick[k];
        Rng r;
        rng_seed_tuple(&r, 2, (uint64_t[]){99, (uint64_t)row});
        int len = SEQ - row, pos = 0, sample = row * 10;
        for (int i = 0; i < len; i++) {
            size_t o = (size_t)k * SEQ + (size_t)i;
            if (i == 9 || i == 17) pos = 0, sample++;
            b->input[o] = (int32_t)rng_below(&r, VOCAB);
            b->target[o] = (int32_t)rng_below(&r, VOCAB);
            b->position[o] = pos++;
            b->sample[o] = sample;
            b->mask[o] = pos > 3;
            b->logp_infer[o] = b->mask[o] ? -2.0f - rng_uniform_f(&r) : 0.0f;
            b->advantage[o] = b->mask[o] ? (float)(sample % 3) - 1.0f : 0.0f;
        }
        b->row_len[k] = len;
    }
}

typedef struct {
    float *params, *grads;
    double loss;
} Outcome;

static Outcome train(MPI_Comm comm, const int *pick, int n_pick, const LossConfig *lc, float temperature) {
    Model *m = make_model();
    Optimizer *o = make_opt(m);
    TrainStep ts;
    train_step_init(&ts, m, o, comm, 1, SEQ, temperature);
    Batch b;
    make_batch(&b, pick, n_pick);
    TrainStepResult r = train_step_run(&ts, &b, lc);
    Outcome out = {malloc(sizeof(float) * m->n_params), malloc(sizeof(float) * m->n_params), r.loss.loss};
    ops_copy_to_host(out.params, m->params, sizeof(float) * m->n_params);
    ops_copy_to_host(out.grads, m->grads, sizeof(float) * m->n_params);
    batch_free(&b);
    train_step_free(&ts);
    optimizer_free(o);
    model_free(m);
    return out;
}

static size_t g_n;

// Largest |a-b| relative to the largest |b| (gradients: fp32 sums in another order).
static double max_scaled_diff(const float *a, const float *b) {
    double worst = 0, scale = 0;
    for (size_t i = 0; i < g_n; i++) scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < g_n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst / (scale > 0 ? scale : 1);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) FATAL("run it with mpirun -np 2", "dp_equivalence needs 2 ranks, got %d", size);
    ops_init(1);
    MPI_Comm alone;
    MPI_Comm_split(MPI_COMM_WORLD, rank, 0, &alone);
    Model *probe = make_model();
    g_n = probe->n_params;
    model_free(probe);
    int all_rows[ROWS] = {0, 1, 2, 3};
    int mine[2] = {rank, rank + 2};
    LossConfig losses[2] = {{.type = LOSS_ICEPOP, .mask_low = 0.125, .mask_high = 8.0}, {.type = LOSS_SFT}};
    const char *names[2] = {"icepop", "sft"};
    int failures = 0;
    for (int l = 0; l < 2; l++) {
        Outcome one = train(alone, all_rows, ROWS, &losses[l], 1.0f);     // every row on one rank
        Outcome two = train(MPI_COMM_WORLD, mine, 2, &losses[l], 1.0f);  // half the rows on each of two
        double grad_diff = max_scaled_diff(one.grads, two.grads);
        // AdamW moves every weight by about lr; the two updates must agree far below that.
        double param_diff = 0, moved = 0, g_abs = 0;
        Model *init = make_model();
        float *p0 = malloc(sizeof(float) * g_n);
        ops_copy_to_host(p0, init->params, sizeof(float) * g_n);
        for (size_t i = 0; i < g_n; i++) {
            param_diff += fabs((double)one.params[i] - two.params[i]) / (double)g_n;
            moved = fmax(moved, fabs((double)one.params[i] - p0[i]));
            g_abs = fmax(g_abs, fabs((double)one.grads[i]));
        }
        double loss_diff = fabs(one.loss - two.loss) / fmax(1e-12, fabs(one.loss));
        double local[3] = {grad_diff, param_diff, loss_diff}, worst[3];
        MPI_Allreduce(local, worst, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (rank == 0) {
            int ok = worst[0] < 1e-5 && worst[1] < 1e-5 && worst[2] < 1e-5 && moved > 1e-3 && g_abs > 0;
            printf("%s - %s: one trainer vs two: same gradient (max diff %.1e of its scale), loss (rel %.1e) and "
                   "weights (mean diff %.1e, lr 1e-2)\n", ok ? "ok" : "not ok", names[l], worst[0], worst[2], worst[1]);
            failures += !ok;
        }
        free(p0);
        model_free(init);
        free(one.params), free(one.grads), free(two.params), free(two.grads);
    }
    // The warm-up ignores the sampling temperature (it once trained log_softmax(logits / T)).
    Outcome plain = train(alone, all_rows, ROWS, &losses[1], 1.0f);
    Outcome tempered = train(alone, all_rows, ROWS, &losses[1], 0.5f);
    if (rank == 0) {
        int same = plain.loss == tempered.loss && memcmp(plain.grads, tempered.grads, sizeof(float) * g_n) == 0;
        printf("%s - sft: the same loss and gradient with the trainer at temperature 0.5 as at 1 (loss %.4f vs %.4f)\n",
               same ? "ok" : "not ok", plain.loss, tempered.loss);
        failures += !same;
    }
    free(plain.params), free(plain.grads), free(tempered.params), free(tempered.grads);
    MPI_Bcast(&failures, 1, MPI_INT, 0, MPI_COMM_WORLD);
    MPI_Comm_free(&alone);
    MPI_Finalize();
    return failures ? 1 : 0;
}
