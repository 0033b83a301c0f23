// Weight swaps of the engine (see engine.h): IN_FLIGHT applies new weights at once (between
// two steps) and every started sequence goes on with its KV cache, counting the update; one
// that has lived through more than max_updates updates is cancelled. DRAIN stages the newest
// weights on the host and applies them once no started sequence is left (running or
// preempted), admitting only started sequences meanwhile, so each finishes on its version.
#include <stdio.h>
#include <string.h>

#include "infer/engine_internal.h"

int engine_started_count(const Engine *e) {
    int n = e->n_running;  // every running sequence has started
    for (int i = 0; i < e->n_queue; i++) n += e->queue[i]->started;
    return n;
}

static void load_weights(Engine *e, const float *host_params, int version) {
    ops_copy_to_device(e->model->params, host_params, e->model->n_params * sizeof(float));
    model_params_changed(e->model);
    e->version = version;
}

static Seq *first_over_limit(const Engine *e) {
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i]->n_updates > e->cfg.max_updates) return e->running[i];
    for (int i = 0; i < e->n_queue; i++)
        if (e->queue[i]->started && e->queue[i]->n_updates > e->cfg.max_updates) return e->queue[i];
    return NULL;
}

// Counts the update for every started sequence and cancels those over max_updates.
static void count_update(Engine *e) {
    for (int i = 0; i < e->n_running; i++) e->running[i]->n_updates++;
    for (int i = 0; i < e->n_queue; i++) e->queue[i]->n_updates += e->queue[i]->started;
    if (e->cfg.max_updates < 0) return;
    Seq *s;
    while ((s = first_over_limit(e)) != NULL) {
        char reason[160];
        snprintf(reason, sizeof reason, "lived through %d weight updates, more than max_updates = %d", s->n_updates,
                 e->cfg.max_updates);
        engine_finish(e, s, FINISH_CANCELLED, reason);
    }
}

void engine_set_weights(Engine *e, const float *host_params, int version) {
    if (e->cfg.swap_mode == ENGINE_SWAP_DRAIN && engine_started_count(e) > 0) {
        if (!e->staged) e->staged = xmalloc(e->model->n_params * sizeof(float));
        // ops_copy_to_host, not memcpy: the weight receiver hands out device buffers (CUDA).
        ops_copy_to_host(e->staged, host_params, e->model->n_params * sizeof(float));
        e->staged_version = version;
        return;
    }
    const int had_weights = e->version >= 0;
    load_weights(e, host_params, version);
    e->staged_version = -1;
    if (had_weights) count_update(e);
}

void engine_apply_staged_if_idle(Engine *e) {
    if (e->staged_version < 0 || engine_started_count(e) > 0) return;
    load_weights(e, e->staged, e->staged_version);
    e->staged_version = -1;
}
