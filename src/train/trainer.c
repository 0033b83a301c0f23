// The trainer rank's loop (see trainer.h).
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective.h"
#include "comm/mpi_check.h"
#include "comm/protocol.h"
#include "comm/transport.h"
#include "comm/weights.h"
#include "core/log.h"
#include "model/model_load.h"
#include "ops.h"
#include "train/loss.h"
#include "train/optimizer.h"

typedef struct {
    const Config *cfg;
    const Layout *L;
    Model *model;
    Optimizer *opt;          // RL (and, during the warm-up, the SFT optimizer)
    DeviceComm *dc;
    LossConfig rl_loss, sft_loss;
    ProtoLimits plim;
    int is_root;
    WeightsSender sender;
    int bad_in_row;
    int sft_done;
    // Per micro-batch host scratch: (micro_rows * seq_len).
    int cap;
    int32_t *tokens, *positions, *targets, *samples;
    uint8_t *mask;
    float *logp_infer, *advantage, *logp, *entropy, *d_logp;
    double wait_s;        // waiting for the current batch
} Trainer;

static void scratch_init(Trainer *t) {
    t->cap = t->cfg->trainer.seq_len * t->cfg->trainer.micro_rows;
    size_t n = (size_t)t->cap;
    t->tokens = xmalloc(sizeof(int32_t) * n);
    t->positions = xmalloc(sizeof(int32_t) * n);
    t->targets = xmalloc(sizeof(int32_t) * n);
    t->samples = xmalloc(sizeof(int32_t) * n);
    t->mask = xmalloc(n);
    t->logp_infer = xmalloc(sizeof(float) * n);
    t->advantage = xmalloc(sizeof(float) * n);
    t->logp = xmalloc(sizeof(float) * n);
    t->entropy = xmalloc(sizeof(float) * n);
    t->d_logp = xmalloc(sizeof(float) * n);
}

static void scratch_free(Trainer *t) {
    free(t->tokens); free(t->positions); free(t->targets); free(t->samples); free(t->mask);
    free(t->logp_infer); free(t->advantage); free(t->logp); free(t->entropy); free(t->d_logp);
}

// Concatenates rows [r0, r1) of the batch into the scratch arrays; returns the token count.
static int gather_rows(Trainer *t, const Batch *b, int r0, int r1) {
    int n = 0;
    for (int r = r0; r < r1; r++) {
        size_t o = (size_t)r * (size_t)b->seq_len;
        int len = b->row_len[r];
        memcpy(t->tokens + n, b->input + o, sizeof(int32_t) * (size_t)len);
        memcpy(t->positions + n, b->position + o, sizeof(int32_t) * (size_t)len);
        memcpy(t->targets + n, b->target + o, sizeof(int32_t) * (size_t)len);
        memcpy(t->samples + n, b->sample + o, sizeof(int32_t) * (size_t)len);  // unique per sample in a batch
        memcpy(t->mask + n, b->mask + o, (size_t)len);
        memcpy(t->logp_infer + n, b->logp_infer + o, sizeof(float) * (size_t)len);
        memcpy(t->advantage + n, b->advantage + o, sizeof(float) * (size_t)len);
        n += len;
    }
    return n;
}

static double batch_loss_tokens(const Batch *b) {
    double n = 0;
    for (int r = 0; r < b->n_rows; r++)
        for (int i = 0; i < b->row_len[r]; i++) n += b->mask[(size_t)r * (size_t)b->seq_len + (size_t)i];
    return n;
}

// Forward, loss and backward over every micro-batch of this rank's rows; gradients summed
// over the trainer ranks. Returns the step's reduced statistics.
static LossStats compute_gradients(Trainer *t, const Batch *b, const LossConfig *lc, double *tokens_out) {
    // The global count of loss tokens normalises the loss on every rank alike.
    double local = batch_loss_tokens(b), global = 0;
    MPI_CHECK(MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, t->L->trainers));
    model_zero_grads(t->model);
    LossStats st = {0};
    double tokens = 0;
    const float temperature = (float)t->cfg->inference.temperature;
    ErrorBuf err;
    for (int r0 = 0; r0 < b->n_rows; r0 += t->cfg->trainer.micro_rows) {
        int r1 = r0 + t->cfg->trainer.micro_rows < b->n_rows ? r0 + t->cfg->trainer.micro_rows : b->n_rows;
        int n = gather_rows(t, b, r0, r1);
        if (n == 0) continue;
        tokens += n;
        if (model_forward_train(t->model, t->tokens, t->positions, t->targets, n, temperature, t->logp, t->entropy,
                                &err) != 0)
            FATAL("the orchestrator sent a batch this model cannot take", "step %d: %s", b->step, err.msg);
        loss_forward_backward(lc, n, t->logp, t->logp_infer, t->advantage, t->mask, t->samples, global, t->d_logp, &st);
        for (int i = 0; i < n; i++)
            if (t->mask[i]) st.entropy += t->entropy[i];
        if (model_backward(t->model, t->d_logp, NULL, &err) != 0) FATAL("", "step %d backward: %s", b->step, err.msg);
    }
    devcomm_allreduce_sum(t->dc, t->model->grads, t->model->n_params);
    double sums[8] = {st.loss, st.tokens, st.masked_low, st.masked_high, st.masked_seq, st.mismatch_kl, st.entropy, tokens};
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sums, 8, MPI_DOUBLE, MPI_SUM, t->L->trainers));
    LossStats out = {sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6]};
    *tokens_out = sums[7];
    return out;
}

static void send_step_done(Trainer *t, const Batch *b, const LossStats *st, double grad_norm, double lr, int skipped,
                           int stop, double tokens, double train_s) {
    StepDone s = {.step = b->step, .version = (b->flags & BATCH_SFT) ? 0 : b->step + 1};
    s.flags = (skipped ? STEP_SKIPPED : 0u) | ((b->flags & BATCH_SFT) ? STEP_SFT : 0u) | (stop ? STEP_STOP : 0u);
    double n = st->tokens > 0 ? st->tokens : 1;
    step_done_add(&s, "loss", st->loss);
    step_done_add(&s, "entropy", st->entropy / n);
    step_done_add(&s, "mismatch_kl", st->mismatch_kl / n);
    step_done_add(&s, "masked_low", st->masked_low / n);
    step_done_add(&s, "masked_high", st->masked_high / n);
    step_done_add(&s, "masked_seq", st->masked_seq / n);
    step_done_add(&s, "grad_norm", grad_norm);
    step_done_add(&s, "lr", lr);
    step_done_add(&s, "skipped", skipped);
    step_done_add(&s, "trainer_tokens", tokens);
    step_done_add(&s, "timing/trainer_s", train_s);
    step_done_add(&s, "timing/trainer_wait_s", t->wait_s);
    step_done_add(&s, "timing/trainer_tokens_per_s", train_s > 0 ? tokens / train_s : 0);
    step_done_add(&s, "timing/weights_broadcast_s", t->sender.seconds);
    ByteWriter w;
    bw_init(&w, 1024);
    encode_step_done(&w, &s);
    msg_send_now(&w, 0, MSG_STEP_DONE, MPI_COMM_WORLD);
    bw_free(&w);
    step_done_free(&s);
}

// The optimizer of the warm-up (constant sft.lr) or of RL (the trainer.* schedule over
// run.max_steps); each starts with fresh moments.
static Optimizer *make_optimizer(const Config *cfg, const Model *m, int sft) {
    OptimizerConfig oc;
    ErrorBuf err;
    if (optimizer_config_from(cfg, cfg->run.max_steps, &oc, &err) != 0) FATAL("check the trainer.* keys", "%s", err.msg);
    if (sft) {
        oc.lr = cfg->sft.lr;
        oc.schedule = LR_CONSTANT;
        oc.warmup_steps = 0;
    }
    Optimizer *opt = optimizer_create(m, &oc, &err);
    if (!opt) FATAL("check the trainer.* keys", "%s", err.msg);
    return opt;
}

static void train_step(Trainer *t, const Batch *b) {
    const int sft = (b->flags & BATCH_SFT) != 0;
    double t0 = MPI_Wtime(), tokens;
    LossStats st = compute_gradients(t, b, sft ? &t->sft_loss : &t->rl_loss, &tokens);
    OptimizerResult res = {.grad_norm = NAN, .lr = optimizer_lr(&t->opt->config, t->opt->step + 1), .skipped = 1};
    if (isfinite(st.loss)) {
        res = optimizer_step(t->opt, t->model);
        if (!res.skipped) model_params_changed(t->model);
    }
    double norm = res.grad_norm, lr = res.lr;
    int skipped = res.skipped, stop = 0;
    if (skipped) {
        t->bad_in_row++;
        stop = t->bad_in_row >= t->cfg->trainer.max_bad_steps;
        if (t->is_root)
            LOG_WARN("step %d: non-finite %s; update skipped (%d in a row, stop at %d)", b->step,
                     isfinite(st.loss) ? "gradient" : "loss", t->bad_in_row, t->cfg->trainer.max_bad_steps);
    } else {
        t->bad_in_row = 0;
    }
    double train_s = MPI_Wtime() - t0;
    if (t->is_root) send_step_done(t, b, &st, norm, lr, skipped, stop, tokens, train_s);
    if (sft) {
        t->sft_done++;
        if (t->sft_done == t->cfg->sft.steps) {
            optimizer_free(t->opt);  // RL starts with fresh moments and its own schedule
            t->opt = make_optimizer(t->cfg, t->model, 0);
            if (t->is_root) weights_publish(&t->sender, t->model->params, 0);
        }
    } else if (t->is_root) {
        weights_publish(&t->sender, t->model->params, b->step + 1);
    }
}

int trainer_run(const Config *cfg, const Layout *L) {
    Trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.L = L;
    t.is_root = L->world_rank == L->trainer_root;
    ops_init(layout_compute_threads(cfg, L));
    ErrorBuf err;
    Tokenizer *tok = NULL;
    if (model_load_from_config(cfg, &t.model, &tok, &err) != 0) FATAL("check the model.* settings", "%s", err.msg);
    tokenizer_free(tok);
    if (model_reserve(t.model, cfg->trainer.seq_len * cfg->trainer.micro_rows, 1, &err) != 0)
        FATAL("lower trainer.seq_len or trainer.micro_rows", "%s", err.msg);
    t.opt = make_optimizer(cfg, t.model, cfg->sft.steps > 0);
    t.dc = devcomm_create(L->trainers);
    loss_config_from(cfg, &t.rl_loss);
    t.sft_loss = t.rl_loss;
    t.sft_loss.type = LOSS_SFT;
    proto_limits_from_config(cfg, t.model->config.vocab_size, &t.plim);
    scratch_init(&t);
    if (t.is_root) {
        weights_sender_init(&t.sender, L, t.model->n_params);
        char shape[256];
        model_config_describe(&t.model->config, shape, sizeof shape);
        LOG_INFO("model: %s; %.2fM parameters; %d trainer rank(s)", shape, (double)t.model->n_params / 1e6,
                 L->n_trainers);
        if (cfg->sft.steps == 0) weights_publish(&t.sender, t.model->params, 0);
    }

    Backoff b;
    backoff_reset(&b);
    double idle_since = MPI_Wtime();
    for (;;) {
        Received msg;
        if (!msg_try_recv(MPI_COMM_WORLD, 0, MPI_ANY_TAG, &msg)) {
            if (t.is_root) weights_sender_progress(&t.sender);
            backoff_sleep(&b);
            continue;
        }
        backoff_reset(&b);
        if (msg.tag == MSG_SHUTDOWN) {
            received_free(&msg);
            break;
        }
        CHECK(msg.tag == MSG_BATCH, "ranks of different versions, or a bug", "trainer got a %s message",
              msg_type_name(msg.tag));
        Batch batch;
        if (decode_batch(msg.data, msg.len, &t.plim, &batch, &err) != 0)
            FATAL("the orchestrator sent a damaged batch: a bug or mismatched binaries", "%s", err.msg);
        received_free(&msg);
        t.wait_s = MPI_Wtime() - idle_since;
        train_step(&t, &batch);
        batch_free(&batch);
        idle_since = MPI_Wtime();
    }
    if (t.is_root) weights_sender_finish(&t.sender);
    scratch_free(&t);
    devcomm_destroy(t.dc);
    optimizer_free(t.opt);
    model_free(t.model);
    ops_finalize();
    return 0;
}
