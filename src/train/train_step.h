// One optimizer step of data-parallel training on this trainer rank's rows of a batch: the
// global count of loss tokens is all-reduced first (it normalises the loss on every rank
// alike), then each micro-batch of `micro_rows` rows runs forward, the loss, and backward;
// gradients are summed across the trainer ranks, clipped, and AdamW steps — unless the loss or
// the gradient norm is not finite, in which case nothing changes. Every trainer rank ends with
// the same weights.
#pragma once
#include <mpi.h>

#include "collective.h"
#include "comm/protocol.h"
#include "model/model.h"
#include "train/loss.h"
#include "train/optimizer.h"

typedef struct {
    Model *model;
    Optimizer *opt;
    MPI_Comm comm;           // the trainer ranks
    DeviceComm *dc;
    int micro_rows;
    float temperature;       // the sampling temperature: RL logprobs are log_softmax(logits / T) (SFT: T = 1)
    // Called between micro-batches (may be NULL): the trainer root drives the weight broadcast
    // it started, which MPI only moves forward inside MPI calls.
    void (*progress)(void *ctx);
    void *progress_ctx;
    // Host scratch for one micro-batch: (micro_rows * seq_len).
    int cap;
    int32_t *tokens, *positions, *targets, *samples;
    uint8_t *mask;
    float *logp_infer, *advantage, *logp, *entropy, *d_logp;
} TrainStep;

typedef struct {
    LossStats loss;          // summed over every trainer rank
    double tokens;           // tokens processed by every trainer rank
    double grad_norm, lr;
    int skipped;             // non-finite loss or gradient: no update
} TrainStepResult;

void train_step_init(TrainStep *ts, Model *model, Optimizer *opt, MPI_Comm comm, int micro_rows, int seq_len,
                     float temperature);
void train_step_free(TrainStep *ts);
TrainStepResult train_step_run(TrainStep *ts, const Batch *batch, const LossConfig *loss);
