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
#include "io/checkpoint.h"
#include "model/model_load.h"
#include "ops.h"
#include "train/loss.h"
#include "train/optimizer.h"
#include "train/train_step.h"

typedef struct {
    const Config *cfg;
    const Layout *L;
    Model *model;
    Optimizer *opt;          // RL (and, during the warm-up, the SFT optimizer)
    TrainStep step;
    LossConfig rl_loss, sft_loss;
    ProtoLimits plim;
    int is_root;
    WeightsSender sender;
    int bad_in_row;
    int sft_done;
    int steps_done;          // RL steps trained (the current policy version)
    // Deterministic mode: the last async_level published policies (host copies), which the
    // next steps' rollouts are generated with; saved in checkpoints so a resume is exact.
    PolicySnapshot *history;
    int n_history, max_history;
    double wait_s;        // waiting for the current batch
    double broadcast_s_logged;  // broadcast seconds already reported
} Trainer;

// Publishes the current weights as `version` (root only), remembering them for the history.
static void publish(Trainer *t, int version) {
    if (!t->is_root) return;
    if (t->max_history > 0) {
        size_t bytes = sizeof(float) * t->model->n_params;
        if (t->n_history == t->max_history) {  // drop the oldest, reuse its buffer
            float *oldest = t->history[0].params;
            memmove(t->history, t->history + 1, sizeof(PolicySnapshot) * (size_t)(t->n_history - 1));
            t->n_history--;
            t->history[t->n_history].params = oldest;
        } else {
            t->history[t->n_history].params = xmalloc(bytes);
        }
        ops_copy_to_host(t->history[t->n_history].params, t->model->params, bytes);
        t->history[t->n_history].version = version;
        t->n_history++;
    }
    weights_publish(&t->sender, t->model->params, version);
}

// How many history entries a checkpoint at this boundary keeps: all but the current policy
// (which is the checkpoint's model). The history is in version order, the newest last.
static int history_for_checkpoint(const Trainer *t) {
    int n = t->n_history;
    if (n > 0 && t->history[n - 1].version == t->steps_done) n--;
    return n;
}

static void write_checkpoint(Trainer *t, const Control *req) {
    Control ack = {.kind = CONTROL_CHECKPOINT_DONE, .step = req->step, .ok = 0};
    if (req->step != t->steps_done) {
        snprintf(ack.text, sizeof ack.text, "asked for step %d but the trainer is at step %d", req->step, t->steps_done);
    } else {
        CheckpointState st = {.step = t->steps_done, .optimizer_step = t->opt->step, .sft_done = t->sft_done,
                              .bad_in_row = t->bad_in_row, .cursor = req->cursor, .sft_cursor = req->sft_cursor,
                              .next_group = req->next_group, .next_request = req->next_request,
                              .rr_rank = req->rr_rank, .seed = t->cfg->run.seed, .n_pending = req->n_pending,
                              .pending = req->pending, .n_easy = req->n_easy, .easy = req->easy,
                              .n_hard = req->n_hard, .hard = req->hard};
        int n_hist = history_for_checkpoint(t);
        char *text = config_to_text(t->cfg);
        ErrorBuf err;
        if (checkpoint_write(t->cfg->run.output_dir, t->model, t->opt, &st, t->history, n_hist, text,
                             t->cfg->checkpoint.keep, ack.text, sizeof ack.text, &err) == 0)
            ack.ok = 1;
        else
            snprintf(ack.text, sizeof ack.text, "%.500s", err.msg);
        free(text);
    }
    ByteWriter w;
    bw_init(&w, 700);
    encode_control(&w, &ack);
    msg_send_now(&w, 0, MSG_CONTROL, MPI_COMM_WORLD);
    bw_free(&w);
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
    step_done_add(&s, "timing/weights_broadcast_s", t->sender.seconds - t->broadcast_s_logged);
    t->broadcast_s_logged = t->sender.seconds;
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

// The optimizer changes after the warm-up; the step core follows it.
static void set_optimizer(Trainer *t, Optimizer *opt) {
    optimizer_free(t->opt);
    t->opt = opt;
    t->step.opt = opt;
}

static void train_step(Trainer *t, const Batch *b) {
    const int sft = (b->flags & BATCH_SFT) != 0;
    double t0 = MPI_Wtime();
    TrainStepResult res = train_step_run(&t->step, b, sft ? &t->sft_loss : &t->rl_loss);
    const LossStats st = res.loss;
    double norm = res.grad_norm, lr = res.lr, tokens = res.tokens;
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
            set_optimizer(t, make_optimizer(t->cfg, t->model, 0));  // RL: fresh moments, its own schedule
            publish(t, 0);
        }
    } else {
        CHECK(b->step == t->steps_done, "a bug in the step order", "trainer got step %d at step %d", b->step,
              t->steps_done);
        t->steps_done = b->step + 1;
        publish(t, t->steps_done);
    }
}

// Continues from a checkpoint: weights, AdamW moments and counters; re-publishes the policies the
// next rollouts need.
static void resume_from(Trainer *t, const char *path) {
    ErrorBuf err;
    CheckpointState st;
    if (checkpoint_read_state(path, &st, NULL, &err) != 0 || checkpoint_read_model(path, t->model, &err) != 0)
        FATAL("check checkpoint.resume and the model.* settings", "%s", err.msg);
    t->steps_done = (int)st.step;
    t->sft_done = (int)st.sft_done;
    t->bad_in_row = (int)st.bad_in_row;
    checkpoint_state_free(&st);
    // A checkpoint taken during the warm-up goes on with the warm-up's optimizer; its policy v0 is
    // published when the warm-up ends.
    const int warmup = config_warmup_pending(t->cfg, t->steps_done, t->sft_done);
    set_optimizer(t, make_optimizer(t->cfg, t->model, warmup));
    if (checkpoint_read_optimizer(path, t->opt, t->model, &err) != 0)
        FATAL("this checkpoint cannot continue training", "%s", err.msg);
    if (warmup && t->is_root)
        LOG_INFO("trainer resumed the warm-up at SFT step %d of %d from %s", t->sft_done, t->cfg->sft.steps, path);
    if (!warmup && t->is_root) {
        PolicySnapshot *hist;
        int n;
        if (checkpoint_read_history(path, t->model->n_params, &hist, &n, &err) != 0) FATAL("", "%s", err.msg);
        float *current = t->model->params;
        for (int i = 0; i < n; i++) {  // the earlier policies first, in version order
            t->model->params = hist[i].params;  // publish reads through ops_copy_to_host
            publish(t, (int)hist[i].version);
            t->model->params = current;
            free(hist[i].params);
        }
        free(hist);
        publish(t, t->steps_done);
        LOG_INFO("trainer resumed at step %d (optimizer step %ld) from %s", t->steps_done, t->opt->step, path);
    }
}

static void progress_broadcast(void *ctx) { weights_sender_progress(ctx); }

int trainer_run(const Config *cfg, const Layout *L, const char *resume_path) {
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
    train_step_init(&t.step, t.model, t.opt, L->trainers, cfg->trainer.micro_rows, cfg->trainer.seq_len,
                    (float)cfg->inference.temperature);
    loss_config_from(cfg, &t.rl_loss);
    t.sft_loss = t.rl_loss;
    t.sft_loss.type = LOSS_SFT;
    proto_limits_from_config(cfg, t.model->config.vocab_size, &t.plim);
    if (t.is_root) {
        weights_sender_init(&t.sender, L, t.model->n_params);
        t.step.progress = progress_broadcast;
        t.step.progress_ctx = &t.sender;
        char shape[256];
        model_config_describe(&t.model->config, shape, sizeof shape);
        LOG_INFO("model: %s; %.2fM parameters; %d trainer rank(s)", shape, (double)t.model->n_params / 1e6,
                 L->n_trainers);
    }
    // The k policies before the current one, and the current one.
    t.max_history = cfg->run.deterministic && cfg->run.async_level > 0 ? cfg->run.async_level + 1 : 0;
    t.history = xcalloc((size_t)(t.max_history + 1), sizeof(PolicySnapshot));
    if (resume_path[0]) resume_from(&t, resume_path);
    else if (cfg->sft.steps == 0) publish(&t, 0);

    Backoff b;
    backoff_reset(&b);
    double idle_since = MPI_Wtime();
    for (;;) {
        Received msg;
        stop_signal_forward();
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
        if (msg.tag == MSG_CONTROL) {
            Control c;
            if (decode_control(msg.data, msg.len, &c, &err) != 0) FATAL("a damaged message from the orchestrator", "%s", err.msg);
            received_free(&msg);
            CHECK(t.is_root && c.kind == CONTROL_CHECKPOINT, "a bug", "trainer got control kind %u", c.kind);
            const double t0 = MPI_Wtime();
            write_checkpoint(&t, &c);
            control_free(&c);
            idle_since += MPI_Wtime() - t0;  // (writing a checkpoint is not waiting for a batch)
            continue;
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
    msg_send_empty(0, MSG_BYE, MPI_COMM_WORLD);  // (its sends to the orchestrator all waited for completion)
    if (t.is_root) weights_sender_finish(&t.sender);
    for (int i = 0; i < t.n_history; i++) free(t.history[i].params);
    free(t.history);
    train_step_free(&t.step);
    optimizer_free(t.opt);
    model_free(t.model);
    ops_finalize();
    return 0;
}
