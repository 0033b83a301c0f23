// Forward, loss, backward, gradient all-reduce and AdamW for one step (see train_step.h).
#include "train/train_step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "comm/mpi_check.h"
#include "ops.h"

void train_step_init(TrainStep *ts, Model *model, Optimizer *opt, MPI_Comm comm, int micro_rows, int seq_len,
                     float temperature) {
    memset(ts, 0, sizeof *ts);
    ts->model = model;
    ts->opt = opt;
    ts->comm = comm;
    ts->dc = devcomm_create(comm);
    ts->micro_rows = micro_rows;
    ts->temperature = temperature;
    ts->cap = micro_rows * seq_len;
    size_t n = (size_t)ts->cap;
    ts->tokens = xmalloc(sizeof(int32_t) * n);
    ts->positions = xmalloc(sizeof(int32_t) * n);
    ts->targets = xmalloc(sizeof(int32_t) * n);
    ts->samples = xmalloc(sizeof(int32_t) * n);
    ts->mask = xmalloc(n);
    ts->logp_infer = xmalloc(sizeof(float) * n);
    ts->advantage = xmalloc(sizeof(float) * n);
    ts->logp = xmalloc(sizeof(float) * n);
    ts->entropy = xmalloc(sizeof(float) * n);
    ts->d_logp = xmalloc(sizeof(float) * n);
}

void train_step_free(TrainStep *ts) {
    devcomm_destroy(ts->dc);
    free(ts->tokens); free(ts->positions); free(ts->targets); free(ts->samples); free(ts->mask);
    free(ts->logp_infer); free(ts->advantage); free(ts->logp); free(ts->entropy); free(ts->d_logp);
    memset(ts, 0, sizeof *ts);
}

// Concatenates rows [r0, r1) of the batch into the scratch arrays; returns the token count.
// Each row starts a sample at position 0, so the concatenation is a valid packed sequence.
static int gather_rows(TrainStep *ts, const Batch *b, int r0, int r1) {
    int n = 0;
    for (int r = r0; r < r1; r++) {
        size_t o = (size_t)r * (size_t)b->seq_len, len = (size_t)b->row_len[r];
        memcpy(ts->tokens + n, b->input + o, sizeof(int32_t) * len);
        memcpy(ts->positions + n, b->position + o, sizeof(int32_t) * len);
        memcpy(ts->targets + n, b->target + o, sizeof(int32_t) * len);
        memcpy(ts->samples + n, b->sample + o, sizeof(int32_t) * len);  // unique per sample in a batch
        memcpy(ts->mask + n, b->mask + o, len);
        memcpy(ts->logp_infer + n, b->logp_infer + o, sizeof(float) * len);
        memcpy(ts->advantage + n, b->advantage + o, sizeof(float) * len);
        n += (int)len;
    }
    return n;
}

// Fault injection for tests: ASYNCRL_FAULT_NAN_STEPS="3,4" poisons the gradient at those RL steps,
// as a numerical blow-up would, to exercise the skip-and-stop path.
static int fault_nan_at(int step) {
    const char *list = getenv("ASYNCRL_FAULT_NAN_STEPS");
    if (!list) return 0;
    for (const char *p = list; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        if (v == step) return 1;
        p = *end == ',' ? end + 1 : end;
    }
    return 0;
}

static double loss_tokens(const Batch *b) {
    double n = 0;
    for (int r = 0; r < b->n_rows; r++)
        for (int i = 0; i < b->row_len[r]; i++) n += b->mask[(size_t)r * (size_t)b->seq_len + (size_t)i];
    return n;
}

TrainStepResult train_step_run(TrainStep *ts, const Batch *b, const LossConfig *lc) {
    double local = loss_tokens(b), global = 0;
    MPI_CHECK(MPI_Allreduce(&local, &global, 1, MPI_DOUBLE, MPI_SUM, ts->comm));
    model_zero_grads(ts->model);
    LossStats st = {0};
    double tokens = 0;
    ErrorBuf err;
    for (int r0 = 0; r0 < b->n_rows; r0 += ts->micro_rows) {
        int r1 = r0 + ts->micro_rows < b->n_rows ? r0 + ts->micro_rows : b->n_rows;
        int n = gather_rows(ts, b, r0, r1);
        if (n == 0) continue;
        tokens += n;
        // The warm-up is plain cross-entropy (T = 1): the exported model's logits are then the data's.
        const float T = lc->type == LOSS_SFT ? 1.0f : ts->temperature;
        if (model_forward_train(ts->model, ts->tokens, ts->positions, ts->targets, n, T, ts->logp, ts->entropy,
                                &err) != 0)
            FATAL("the orchestrator sent a batch this model cannot take", "step %d: %s", b->step, err.msg);
        loss_forward_backward(lc, n, ts->logp, ts->logp_infer, ts->advantage, ts->mask, ts->samples, global,
                              ts->d_logp, &st);
        for (int i = 0; i < n; i++)
            if (ts->mask[i]) st.entropy += ts->entropy[i];
        if (model_backward(ts->model, ts->d_logp, NULL, &err) != 0) FATAL("", "step %d backward: %s", b->step, err.msg);
        if (ts->progress) ts->progress(ts->progress_ctx);
    }
    if (fault_nan_at(b->step) && !(b->flags & BATCH_SFT)) {  // fault injection for tests
        float nan_value = NAN;
        ops_copy_to_device(ts->model->grads, &nan_value, sizeof nan_value);
    }
    devcomm_allreduce_sum(ts->dc, ts->model->grads, ts->model->n_params);
    double sums[8] = {st.loss, st.tokens, st.masked_low, st.masked_high, st.masked_seq, st.mismatch_kl, st.entropy,
                      tokens};
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, sums, 8, MPI_DOUBLE, MPI_SUM, ts->comm));
    TrainStepResult res = {.loss = {sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6]}, .tokens = sums[7],
                           .grad_norm = NAN, .lr = optimizer_lr(&ts->opt->config, ts->opt->step + 1), .skipped = 1};
    if (isfinite(res.loss.loss)) {
        OptimizerResult o = optimizer_step(ts->opt, ts->model);
        res.grad_norm = o.grad_norm;
        res.lr = o.lr;
        res.skipped = o.skipped;
        if (!o.skipped) model_params_changed(ts->model);
    }
    return res;
}
