// The orchestrator's loop: scheduling of rollout groups over the inference ranks, completions,
// scoring, rescheduling, and the run from warm-up to shutdown (see orchestrator.h).
#include "orch/orchestrator.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "comm/mpi_check.h"
#include "core/files.h"
#include "core/log.h"
#include "core/rng.h"
#include "orch/advantage.h"
#include "orch/codec.h"
#include "model/model_load.h"
#include "orch/orch_state.h"
#include "core/signals.h"
#include "io/checkpoint.h"

// ---------------------------------------------------------------------------------------------
// Small containers

void group_list_push(GroupList *l, Group *g) {
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->items = xrealloc(l->items, sizeof(Group *) * (size_t)l->cap);
    }
    l->items[l->count++] = g;
}

void group_list_remove_at(GroupList *l, int i) {
    memmove(l->items + i, l->items + i + 1, sizeof(Group *) * (size_t)(l->count - i - 1));
    l->count--;
}

static void map_grow(RequestMap *m);

static RequestSlot *map_find(RequestMap *m, uint64_t id) {
    if (!m->cap) return NULL;
    for (uint64_t i = rng_hash64(id) & (uint64_t)(m->cap - 1);; i = (i + 1) & (uint64_t)(m->cap - 1)) {
        if (m->slots[i].id == id) return &m->slots[i];
        if (m->slots[i].id == 0) return NULL;
    }
}

static void map_put(RequestMap *m, uint64_t id, Group *g, int sample) {
    if (2 * (m->count + 1) > m->cap) map_grow(m);
    uint64_t i = rng_hash64(id) & (uint64_t)(m->cap - 1);
    while (m->slots[i].id != 0) i = (i + 1) & (uint64_t)(m->cap - 1);
    m->slots[i] = (RequestSlot){id, g, sample};
    m->count++;
}

static void map_grow(RequestMap *m) {
    RequestMap bigger = {xcalloc((size_t)(m->cap ? 2 * m->cap : 1024), sizeof(RequestSlot)), m->cap ? 2 * m->cap : 1024, 0};
    for (int i = 0; i < m->cap; i++)
        if (m->slots[i].id) map_put(&bigger, m->slots[i].id, m->slots[i].group, m->slots[i].sample);
    free(m->slots);
    *m = bigger;
}

// Removes id by re-inserting the rest of its cluster (keeps probing correct).
static void map_remove(RequestMap *m, uint64_t id) {
    RequestSlot *slot = map_find(m, id);
    if (!slot) return;
    uint64_t i = (uint64_t)(slot - m->slots);
    m->slots[i].id = 0;
    m->count--;
    for (i = (i + 1) & (uint64_t)(m->cap - 1); m->slots[i].id; i = (i + 1) & (uint64_t)(m->cap - 1)) {
        RequestSlot s = m->slots[i];
        m->slots[i].id = 0;
        m->count--;
        map_put(m, s.id, s.group, s.sample);
    }
}

double orch_now(const Orch *o) { return MPI_Wtime() - o->t_start; }

// ---------------------------------------------------------------------------------------------
// Groups and requests

uint64_t orch_request_seed(const Orch *o, const Group *g, int sample) {
    // Deterministic mode: (seed, step, problem, sample); otherwise the group id keeps streams apart.
    uint64_t parts[6] = {(uint64_t)o->cfg->run.seed, (uint64_t)g->eval, (uint64_t)g->step, g->problem_index,
                         (uint64_t)sample, (uint64_t)g->attempts};
    if (!o->cfg->run.deterministic) parts[2] = g->id;
    Rng r;
    rng_seed_tuple(&r, 6, parts);
    return rng_next(&r);
}

Group *orch_new_group(Orch *o, int env, EnvSplit split, uint64_t index, int n_samples, int step, int eval) {
    Problem p;
    ErrorBuf err;
    memset(&p, 0, sizeof p);
    if (env < 0) env = env_mix_pick(&o->mix, split, index);
    if (o->envs[env]->problem(o->envs[env], split, index, &p, &err) != 0)
        FATAL("check the environment's settings (env.*) and its data files", "%s problem %llu: %s",
              split == ENV_SPLIT_EVAL ? "eval" : "train", (unsigned long long)index, err.msg);
    Group *g = xcalloc(1, sizeof(Group));
    // Evaluation groups count apart (their ids from 2^62 on): where an evaluation falls between
    // the hand-outs of two steps is a matter of timing, and RL group ids (/rollouts/group) must
    // not depend on it in deterministic mode.
    const uint64_t id = eval ? EVAL_GROUP_IDS + ++o->next_eval_group : ++o->next_group;
    if (group_init(g, id, env, index, split, &p, n_samples, &o->codec, &o->lim, &err) != 0)
        FATAL("shorten the environment's prompts or raise the limit named", "environment %s: %s", o->envs[env]->name,
              err.msg);
    g->step = step;
    g->eval = eval;
    return g;
}

// Requests are collected per inference rank and sent as one message by orch_flush: a round of
// groups reaches an engine at once, so in deterministic mode its batches do not depend on timing.
static Request *outgoing_slot(Orch *o, int rank) {
    RequestList *l = &o->outgoing[rank];
    if (l->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = xrealloc(l->items, sizeof(Request) * (size_t)l->cap);
    }
    return &l->items[l->count++];
}

void orch_flush(Orch *o) {
    for (int r = 0; r < o->n_inf; r++) {
        RequestList *l = &o->outgoing[r];
        if (l->count == 0) continue;
        ByteWriter w;
        bw_init(&w, 4096);
        encode_requests(&w, l->items, l->count);
        outbox_send(&o->out, &w, o->L->first_inference + r, MSG_REQUESTS, MPI_COMM_WORLD);
        o->inf_load[r] += l->count;
        for (int i = 0; i < l->count; i++) free(l->items[i].prompt);
        l->count = 0;
    }
}

void orch_dispatch(Orch *o, Group *g, int rank) {
    const Config *cfg = o->cfg;
    for (int s = 0; s < g->n; s++) {
        Sample *x = &g->samples[s];
        if (x->state != SAMPLE_WAITING) continue;
        Request *q = outgoing_slot(o, rank);
        sample_make_request(g, s, &o->lim, q);
        q->id = ++o->next_request;
        q->seed = orch_request_seed(o, g, s);
        q->version = g->version;
        int greedy = g->eval && s == 0;
        q->temperature = (float)cfg->inference.temperature;
        q->top_p = (float)cfg->inference.top_p;
        q->top_k = cfg->inference.top_k;
        q->min_p = (float)cfg->inference.min_p;
        q->flags = (greedy ? REQ_GREEDY : 0u) | (g->eval ? REQ_EVAL : 0u);
        q->n_stop = 1;
        q->stop[0] = o->codec.eos;
        // The prompt is copied: the sample's token array may grow before the flush.
        int32_t *prompt = xmalloc(sizeof(int32_t) * (size_t)(q->n_prompt ? q->n_prompt : 1));
        memcpy(prompt, q->prompt, sizeof(int32_t) * (size_t)q->n_prompt);
        q->prompt = prompt;
        x->state = SAMPLE_RUNNING;
        x->request_id = q->id;
        x->rank = rank;
        map_put(&o->map, q->id, g, s);
    }
}

// Cancels the requests of g still running on inference; their completions will be ignored.
static void cancel_group_requests(Orch *o, Group *g) {
    for (int r = 0; r < o->n_inf; r++) {
        uint64_t *ids = xmalloc(sizeof(uint64_t) * (size_t)g->n);
        uint32_t n = 0;
        for (int s = 0; s < g->n; s++) {
            Sample *x = &g->samples[s];
            if (x->state == SAMPLE_RUNNING && x->rank == r) {
                ids[n++] = x->request_id;
                map_remove(&o->map, x->request_id);
                x->state = SAMPLE_WAITING;
            }
        }
        if (n) {
            Cancel c = {.all = 0, .n = n, .ids = ids};
            ByteWriter w;
            bw_init(&w, 64);
            encode_cancel(&w, &c);
            outbox_send(&o->out, &w, o->L->first_inference + r, MSG_CANCEL, MPI_COMM_WORLD);
        }
        free(ids);
    }
}

// DESIGN section 2: a token trained at step n is no older than v(n - async_level -
// max_off_policy_steps). Whether RL group g, trained at step_fill or later, holds an older token:
// a multi-turn sample's earlier turns can, since each turn is a request of its own whose weight
// updates inference counts from 0. (Deterministic mode names exact versions: never.)
static int group_too_old(const Orch *o, const Group *g) {
    if (g->eval || o->cfg->run.deterministic) return 0;
    const int oldest_allowed = o->step_fill - o->cfg->run.async_level - o->cfg->orchestrator.max_off_policy_steps;
    for (int s = 0; s < g->n; s++) {
        int lo, hi;
        sample_version_range(&g->samples[s], &lo, &hi);
        if (lo >= 0 && lo < oldest_allowed) return 1;
    }
    return 0;
}

// The whole group starts over (its running requests cancelled); counted in groups_rescheduled.
static void reschedule_group(Orch *o, Group *g, const char *why) {
    LOG_DEBUG("group %llu rescheduled: %s", (unsigned long long)g->id, why);
    cancel_group_requests(o, g);
    group_restart(g);
    if (!g->eval && o->step_fill < o->cfg->run.max_steps) o->stats[o->step_fill].rescheduled_groups += 1;
}

static int min_inference_version(const Orch *o) {
    int v = o->inf_version[0];
    for (int r = 1; r < o->n_inf; r++)
        if (o->inf_version[r] < v) v = o->inf_version[r];
    return v;
}

// Requests outstanding on a rank, counting those collected but not yet sent.
static int rank_load(const Orch *o, int r) { return o->inf_load[r] + o->outgoing[r].count; }

static int least_loaded_rank(const Orch *o) {
    int best = 0;
    for (int r = 1; r < o->n_inf; r++)
        if (rank_load(o, r) < rank_load(o, best)) best = r;
    return best;
}

// ---------------------------------------------------------------------------------------------
// Scoring

// A scored group: advantages, then evaluation results, the ready buffer, or dropped.
static void finalize_group(Orch *o, Group *g) {
    int lengths[4096];
    double rewards[4096], adv[4096];
    CHECK(g->n <= 4096, "orchestrator.group_size is at most 4096", "group of %d samples", g->n);
    for (int s = 0; s < g->n; s++) {
        rewards[s] = g->samples[s].reward;
        lengths[s] = sample_completion_tokens(&g->samples[s]);
    }
    compute_advantages(rewards, lengths, g->n, o->cfg->loss.std_normalize, o->cfg->loss.length_weighted_mean, adv);
    for (int s = 0; s < g->n; s++) g->samples[s].advantage = adv[s];
    if (!g->eval) {
        double mean = 0;
        for (int s = 0; s < g->n; s++) mean += rewards[s] / g->n;
        pools_record(&o->pools, g->problem.id, mean, o->cfg->orchestrator.easy_threshold,
                     o->cfg->orchestrator.hard_threshold);
    }
    if (g->eval) {
        group_list_push(&o->eval_done, g);
        o->eval_pending--;
        return;
    }
    if (o->cfg->orchestrator.drop_zero_advantage && advantages_all_zero(adv, g->n)) {
        if (o->step_fill < o->cfg->run.max_steps) o->stats[o->step_fill].dropped_groups += 1;
        o->dropped_in_row++;
        if (o->dropped_in_row % 1000 == 0)
            LOG_WARN("%d groups in a row had zero advantage (every sample got the same reward): the policy may have "
                     "collapsed, or the task is too hard or too easy for it", o->dropped_in_row);
        if (o->dropped_in_row >= o->cfg->orchestrator.max_dropped_groups && !o->stop) {
            LOG_ERROR("stopping: %d groups in a row had zero advantage (orchestrator.max_dropped_groups); no batch can "
                      "be filled. Check the rewards (a collapsed policy, a verifier that always gives the same score), "
                      "or set orchestrator.drop_zero_advantage = false", o->dropped_in_row);
            o->stop = 1;
        }
        group_free(g);
        free(g);
        return;
    }
    o->dropped_in_row = 0;
    group_list_push(&o->ready, g);
}

// Every sample of g is done: it leaves the active list and is scored (maybe asynchronously).
static void finish_group(Orch *o, Group *g) {
    for (int i = 0; i < o->active.count; i++)
        if (o->active.items[i] == g) {
            group_list_remove_at(&o->active, i);
            break;
        }
    if (group_score_begin(g, o->envs[g->env])) finalize_group(o, g);
    else group_list_push(&o->scoring, g);
}

static int poll_scoring(Orch *o) {
    int done = 0;
    for (int i = o->scoring.count - 1; i >= 0; i--) {
        Group *g = o->scoring.items[i];
        if (!group_score_poll(g, o->envs[g->env])) continue;
        group_list_remove_at(&o->scoring, i);
        finalize_group(o, g);
        done++;
    }
    return done;
}

static void handle_completions(Orch *o, const Received *msg) {
    Completion *comps;
    int n;
    ErrorBuf err;
    EngineTotals totals;
    if (decode_completions(msg->data, msg->len, &o->plim, &comps, &n, &totals, &err) != 0)
        FATAL("an inference rank sent a damaged message: a bug or mismatched binaries", "from rank %d: %s",
              msg->source, err.msg);
    int rank = msg->source - o->L->first_inference;
    CHECK(rank >= 0 && rank < o->n_inf, "", "completions from rank %d, which is not an inference rank", msg->source);
    o->inf_meter[rank].latest = totals;
    for (int i = 0; i < n; i++) {
        const Completion *c = &comps[i];
        o->inf_load[rank]--;
        RequestSlot *slot = map_find(&o->map, c->id);
        if (!slot) continue;  // cancelled by us
        Group *g = slot->group;
        int s = slot->sample;
        map_remove(&o->map, c->id);
        if (c->finish == FINISH_CANCELLED || c->finish == FINISH_REJECTED) {
            if (c->finish == FINISH_REJECTED)
                FATAL("the prompt or a setting does not fit the inference engine", "inference rejected a request of "
                      "environment %s: %s", o->envs[g->env]->name, c->reason);
            reschedule_group(o, g, c->reason);  // lived through too many weight updates
            continue;
        }
        if (sample_complete(g, s, c, o->envs[g->env], &o->codec, &o->lim)) {
            if (g->n_done == g->n) finish_group(o, g);
        }
    }
    completions_free(comps, n);
}

static void handle_weights_loaded(Orch *o, const Received *msg) {
    WeightsLoaded wl;
    ErrorBuf err;
    if (decode_weights_loaded(msg->data, msg->len, &wl, &err) != 0)
        FATAL("an inference rank sent a damaged message", "from rank %d: %s", msg->source, err.msg);
    int rank = msg->source - o->L->first_inference;
    CHECK(rank >= 0 && rank < o->n_inf, "", "weights-loaded from rank %d, not an inference rank", msg->source);
    if (wl.version > o->inf_version[rank]) o->inf_version[rank] = wl.version;
}

static void handle_step_done(Orch *o, const Received *msg) {
    StepDone s;
    ErrorBuf err;
    if (decode_step_done(msg->data, msg->len, &o->plim, &s, &err) != 0)
        FATAL("the trainer root sent a damaged message", "%s", err.msg);
    if (s.flags & STEP_SFT) {
        orch_sft_step_done(o, &s);
    } else {
        orch_step_done(o, &s);
        o->steps_done = s.step + 1;
        o->trainer_idle_since = orch_now(o);
        o->trainer_version = s.version;
    }
    if (s.flags & STEP_STOP) o->stop = o->trainer_stop = 1;
    step_done_free(&s);
}

static void handle_control(Orch *o, const Received *msg) {
    Control c;
    ErrorBuf err;
    if (decode_control(msg->data, msg->len, &c, &err) != 0) FATAL("the trainer root sent a damaged message", "%s", err.msg);
    CHECK(c.kind == CONTROL_CHECKPOINT_DONE, "", "orchestrator got control message kind %u", c.kind);
    o->ckpt_acked = c.step;
    o->ckpt_ok = c.ok;
    if (c.ok) LOG_INFO("checkpoint of step %d written: %s", c.step, c.text);
    else LOG_ERROR("checkpoint of step %d failed: %s (the previous checkpoints are intact)", c.step, c.text);
    control_free(&c);
}

// A stop signal that reached a trainer or inference rank: the job stops as for rank 0's own.
static void handle_stop(Orch *o, const Received *msg) {
    int sig;
    ErrorBuf err;
    if (decode_stop(msg->data, msg->len, &sig, &err) != 0) FATAL("a bug or mismatched binaries", "%s", err.msg);
    if (o->forwarded_signal == 0) {
        // (Usually every rank gets the signal, rank 0 too; say so only when rank 0 did not.)
        if (!signals_stop_requested())
            LOG_WARN("rank %d received signal %d: the job stops as for a signal to rank 0", msg->source, sig);
        o->forwarded_signal = sig;
    }
}

int orch_stop_signal(const Orch *o) {
    const int sig = signals_stop_requested();
    return sig ? sig : o->forwarded_signal;
}

// Problem indices handed out but not trained: every RL group still ready or in flight.
static int64_t *pending_problems(const Orch *o, uint32_t *n) {
    int64_t *p = xmalloc(sizeof(int64_t) * (size_t)(o->ready.count + o->active.count + o->scoring.count + o->n_reissue + 1));
    uint32_t k = 0;
    for (int i = o->reissue_head; i < o->n_reissue; i++) p[k++] = o->reissue[i];
    for (int i = 0; i < o->ready.count; i++) p[k++] = (int64_t)o->ready.items[i]->problem_index;
    for (int i = 0; i < o->scoring.count; i++)
        if (!o->scoring.items[i]->eval) p[k++] = (int64_t)o->scoring.items[i]->problem_index;
    for (int i = 0; i < o->active.count; i++)
        if (!o->active.items[i]->eval) p[k++] = (int64_t)o->active.items[i]->problem_index;
    *n = k;
    return p;
}

void orch_request_checkpoint(Orch *o, int step) {
    o->ckpt_requested = step;
    Control c = {.kind = CONTROL_CHECKPOINT, .step = step, .cursor = (int64_t)o->cursor,
                 .sft_cursor = (int64_t)o->sft_cursor, .next_group = (int64_t)o->next_group,
                 .next_request = (int64_t)o->next_request, .rr_rank = o->rr_rank};
    if (o->cfg->run.deterministic) {
        // Step `step`'s groups may be out already: record the counters as that step began, so a
        // resumed run hands out the very same groups (nothing else is in flight at a boundary).
        if (o->det_marked >= step) {
            c.cursor = (int64_t)o->det_mark.cursor;
            c.next_group = (int64_t)o->det_mark.next_group;
            c.next_request = (int64_t)o->det_mark.next_request;
            c.rr_rank = o->det_mark.rr_rank;
        }
        c.pending = xmalloc(sizeof(int64_t));
        c.n_pending = 0;
    } else {
        c.pending = pending_problems(o, &c.n_pending);
    }
    int n_easy, n_hard;
    c.easy = (int64_t *)idset_list(&o->pools.easy, &n_easy);
    c.hard = (int64_t *)idset_list(&o->pools.hard, &n_hard);
    c.n_easy = (uint32_t)n_easy;
    c.n_hard = (uint32_t)n_hard;
    ByteWriter w;
    bw_init(&w, 256);
    encode_control(&w, &c);
    outbox_send(&o->out, &w, o->L->trainer_root, MSG_CONTROL, MPI_COMM_WORLD);
    control_free(&c);
}

static int periodic_eval(Orch *o);

int orch_wait_checkpoint(Orch *o, int step) {
    Backoff b;
    backoff_reset(&b);
    while (o->ckpt_acked < step) {
        int progressed = orch_poll(o);
        progressed |= periodic_eval(o);
        if (progressed) backoff_reset(&b);
        else backoff_sleep(&b);
    }
    periodic_eval(o);  // (that of the step itself, when the step and its checkpoint came together)
    return o->ckpt_ok;
}

int orch_poll(Orch *o) {
    int handled = 0;
    Received msg;
    while (msg_try_recv(MPI_COMM_WORLD, MPI_ANY_SOURCE, MPI_ANY_TAG, &msg)) {
        handled++;
        switch (msg.tag) {
            case MSG_COMPLETIONS: handle_completions(o, &msg); break;
            case MSG_WEIGHTS_LOADED: handle_weights_loaded(o, &msg); break;
            case MSG_STEP_DONE: handle_step_done(o, &msg); break;
            case MSG_CONTROL: handle_control(o, &msg); break;
            case MSG_STOP: handle_stop(o, &msg); break;
            default:
                FATAL("ranks of different versions, or a bug", "orchestrator got an unexpected %s message (tag %d) "
                      "from rank %d", msg_type_name(msg.tag), msg.tag, msg.source);
        }
        received_free(&msg);
    }
    outbox_progress(&o->out);
    handled += poll_scoring(o);
    // Multi-turn samples waiting for their next turn go back to their rank. In deterministic mode
    // they go in rounds: only once no sample is generating, all together.
    int running = 0;
    if (o->cfg->run.deterministic)
        for (int i = 0; i < o->active.count && !running; i++)
            for (int s = 0; s < o->active.items[i]->n; s++) running |= o->active.items[i]->samples[s].state == SAMPLE_RUNNING;
    for (int i = 0; i < o->active.count && !running; i++) {
        Group *g = o->active.items[i];
        int waiting = 0, rank = -1;
        for (int s = 0; s < g->n; s++) {
            if (g->samples[s].state == SAMPLE_WAITING) waiting = 1;
            if (g->samples[s].rank >= 0) rank = g->samples[s].rank;
        }
        if (waiting && group_too_old(o, g)) reschedule_group(o, g, "its earlier turns are too old for the next step");
        if (waiting) orch_dispatch(o, g, rank >= 0 && g->attempts == 0 ? rank : least_loaded_rank(o));
    }
    orch_flush(o);
    return handled;
}

// ---------------------------------------------------------------------------------------------
// Scheduling of RL groups

// Samples of RL groups handed out and not yet scored (generating, or being scored).
static int rl_samples_in_flight(const Orch *o) {
    int n = 0;
    for (int i = 0; i < o->active.count; i++)
        if (!o->active.items[i]->eval) n += o->active.items[i]->n;
    for (int i = 0; i < o->scoring.count; i++)
        if (!o->scoring.items[i]->eval) n += o->scoring.items[i]->n;
    return n;
}

// The step a new group would most likely land in, given what is ready and in flight.
static int target_step(const Orch *o) {
    return o->step_fill + (orch_ready_samples(o) + rl_samples_in_flight(o)) / o->cfg->orchestrator.batch_size;
}

// Hands out new groups while inference has room and the staleness bound allows.
// The next training problem: those a checkpoint left untrained first, then the cursor.
static uint64_t next_problem(Orch *o) {
    if (o->reissue_head < o->n_reissue) return (uint64_t)o->reissue[o->reissue_head++];
    return o->cursor++;
}

// A new RL group for the next problem that the pools do not skip (NULL when too many in a row
// are skipped: every problem seems pooled).
static Group *next_group(Orch *o, int n_samples, int step) {
    const Config *cfg = o->cfg;
    for (int tries = 0; tries < 1000; tries++) {
        uint64_t index = next_problem(o);
        Group *g = orch_new_group(o, -1, ENV_SPLIT_TRAIN, index, n_samples, step, 0);
        if (!pools_skip(&o->pools, g->problem.id, index, (uint64_t)cfg->run.seed, cfg->orchestrator.easy_keep,
                        cfg->orchestrator.hard_keep)) {
            o->skipped_in_row = 0;
            return g;
        }
        if (step >= 0 && step < cfg->run.max_steps) o->stats[step].skipped += 1;
        group_free(g);
        free(g);
        if (++o->skipped_in_row >= 100000) {
            LOG_ERROR("stopping: the last %d problems were all in the easy or hard pools: raise orchestrator.easy_keep "
                      "/ hard_keep or use more problems", o->skipped_in_row);
            o->stop = 1;
            return NULL;
        }
    }
    return NULL;
}

static void schedule_async(Orch *o) {
    const int G = o->cfg->orchestrator.group_size, k = o->cfg->run.async_level;
    for (;;) {
        int target = target_step(o);
        if (target >= o->cfg->run.max_steps) return;
        if (min_inference_version(o) < target - k) return;
        int rank = least_loaded_rank(o);
        if (rank_load(o, rank) + G > o->capacity) return;
        Group *g = next_group(o, G, target);
        if (!g) return;
        g->version = -1;
        group_list_push(&o->active, g);
        orch_dispatch(o, g, rank);
    }
}

// Deterministic mode: step n's groups all at once, fixed order and ranks, exact version.
static void schedule_deterministic(Orch *o) {
    const Config *cfg = o->cfg;
    const int G = cfg->orchestrator.group_size, n = o->step_fill;
    if (n >= cfg->run.max_steps || rl_samples_in_flight(o) > 0) return;
    int have = orch_ready_samples(o);
    if (have >= cfg->orchestrator.batch_size) return;
    int version = n - cfg->run.async_level > 0 ? n - cfg->run.async_level : 0;
    if (o->trainer_version < version) return;  // the trainer has not produced it yet
    int groups = (cfg->orchestrator.batch_size - have) / G;
    if (o->det_marked < n) {  // the counters as step n begins: what a checkpoint at boundary n records
        o->det_marked = n;
        o->det_mark = (DetMark){o->cursor, o->next_group, o->next_request, o->rr_rank};
    }
    for (int j = 0; j < groups; j++) {
        Group *g = next_group(o, G, n);
        if (!g) return;
        g->version = version;
        group_list_push(&o->active, g);
        orch_dispatch(o, g, o->rr_rank);
        o->rr_rank = (o->rr_rank + 1) % o->n_inf;
    }
}

static void schedule(Orch *o) {
    if (o->stop) return;
    if (o->cfg->run.deterministic) schedule_deterministic(o);
    else schedule_async(o);
    orch_flush(o);
}

// ---------------------------------------------------------------------------------------------
// The run

// Continues from a checkpoint: counters, problems to hand out again, steps already trained.
static void load_resume_state(Orch *o, const char *path) {
    CheckpointState st;
    ErrorBuf err;
    if (checkpoint_read_state(path, &st, NULL, &err) != 0) FATAL("pick another checkpoint (checkpoint.resume)", "%s", err.msg);
    CHECK(st.step <= o->cfg->run.max_steps || o->cfg->run.max_steps == 0, "raise run.max_steps to continue this run",
          "the checkpoint is at step %lld, beyond run.max_steps = %d", (long long)st.step, o->cfg->run.max_steps);
    o->resumed = 1;
    o->step_fill = o->steps_done = (int)st.step;
    o->trainer_version = (int)st.step;
    o->sft_done = (int)st.sft_done;
    o->cursor = (uint64_t)st.cursor;
    o->sft_cursor = (uint64_t)st.sft_cursor;
    o->next_group = (uint64_t)st.next_group;
    o->next_request = (uint64_t)st.next_request;
    o->rr_rank = (int)st.rr_rank % o->n_inf;
    o->reissue = st.pending;
    o->n_reissue = (int)st.n_pending;
    st.pending = NULL;
    for (int64_t i = 0; i < st.n_easy; i++) idset_add(&o->pools.easy, (uint64_t)st.easy[i]);
    for (int64_t i = 0; i < st.n_hard; i++) idset_add(&o->pools.hard, (uint64_t)st.hard[i]);
    LOG_INFO("resumed at step %lld: %d problem(s) handed out before the checkpoint are asked again, then problem %llu on; "
             "pools: %d easy, %d hard", (long long)o->steps_done, o->n_reissue, (unsigned long long)o->cursor,
             o->pools.easy.count, o->pools.hard.count);
    checkpoint_state_free(&st);
    o->ckpt_acked = (int)st.step;
}

// A sample (prompt, turns, completion) fits a training row (seq_len positions for seq_len + 1
// tokens), the model's context (max_seq_len tokens) and the inference engine's context, which a
// KV cache of inference.kv_blocks blocks can make shorter (a longer prompt would be rejected).
static void sample_limit(const Config *cfg, const ModelConfig *shape, int generated, RolloutLimits *lim) {
    const long kv_tokens = (long)cfg->inference.kv_blocks * cfg->inference.kv_block_size;
    lim->max_total = cfg->trainer.seq_len + 1;
    snprintf(lim->max_total_by, sizeof lim->max_total_by, "trainer.seq_len = %d", cfg->trainer.seq_len);
    if (shape->max_seq_len < lim->max_total) {
        lim->max_total = shape->max_seq_len;
        snprintf(lim->max_total_by, sizeof lim->max_total_by, "the model's max_seq_len");
    }
    if (generated && cfg->inference.kv_blocks > 0 && kv_tokens < lim->max_total) {
        lim->max_total = (int)kv_tokens;
        snprintf(lim->max_total_by, sizeof lim->max_total_by,
                 "the KV cache: inference.kv_blocks = %d x kv_block_size = %d", cfg->inference.kv_blocks,
                 cfg->inference.kv_block_size);
    }
}

// A run resumed from step N with checkpoints of later steps beside it (a rollback) moves those
// aside first (checkpoint_set_aside_newer says why). Runs under the run directory's lock.
static void set_aside_newer_checkpoints(const Orch *o, const Config *cfg) {
    char where[2 * CFG_STR_MAX];
    ErrorBuf err;
    const int moved = checkpoint_set_aside_newer(cfg->run.output_dir, o->steps_done, where, sizeof where, &err);
    if (moved < 0)
        FATAL("the checkpoints of later steps must move out of the way of this run's own; move them by hand",
              "rolling back to step %d: %s", o->steps_done, err.msg);
    if (moved > 0)
        LOG_INFO("rolling back to step %d: moved the %d checkpoint%s of later steps to %s (they belong to the "
                 "abandoned continuation; \"latest\" no longer takes them)",
                 o->steps_done, moved, moved == 1 ? "" : "s", where);
}

void orch_list_example(char *list, size_t size, int nth, const char *where, int tokens) {
    if (nth > 3) return;
    const size_t at = strlen(list);
    const int most = (int)(size / 4);  // each of the 3 gets its share (long paths are cut)
    snprintf(list + at, size - at, "%s%.*s (%d tokens)", nth > 1 ? ", " : "", most, where, tokens);
}

// Checks one problem's prompt; adds it to the list of those too long.
static void check_prompt(const Orch *o, Env *env, EnvSplit split, uint64_t index, int *bad, int *longest,
                         char *examples, size_t size) {
    Problem p;
    ErrorBuf err;
    if (env->problem(env, split, index, &p, &err) != 0)
        FATAL("check the environment's settings (env.*) and its data files", "environment %s: %s", env->name, err.msg);
    int tokens;
    if (!prompt_fits(&o->codec, &o->lim, p.prompt ? p.prompt : "", &tokens)) {
        orch_list_example(examples, size, ++*bad, p.where ? p.where : "a problem", tokens);
        if (tokens > *longest) *longest = tokens;
    }
    problem_free(&p);
}

static void fail_prompts(const Orch *o, const Env *env, int bad, int n, const char *what, int longest,
                         const char *examples) {
    FATAL("shorten or remove those prompts, or raise the limit named",
          "environment %s: %d of its %d %s prompts leave no room for a completion in a sample of at most %d tokens "
          "(set by %s), the longest %d tokens: %s%s",
          env->name, bad, n, what, o->lim.max_total, o->lim.max_total_by, longest, examples, bad > 3 ? ", ..." : "");
}

// Every prompt this job can draw from the environments that read their problems from a file
// must leave room for a completion: a prompt too long is found at start-up, with its FILE:LINE,
// rather than when it is first drawn, hours into a run. That is every train prompt when RL steps
// are to run, and the evaluation's. (Generated problems are short by construction.)
static void check_prompts(Orch *o) {
    if (o->cfg->run.max_steps > 0)
        for (int e = 0; e < o->n_envs; e++) {
            Env *env = o->envs[e];
            if (!env->problem_count) continue;
            const int n = env->problem_count(env, ENV_SPLIT_TRAIN);
            int bad = 0, longest = 0;
            char examples[512] = "";
            for (int i = 0; i < n; i++) check_prompt(o, env, ENV_SPLIT_TRAIN, (uint64_t)i, &bad, &longest, examples,
                                                     sizeof examples);
            if (bad) fail_prompts(o, env, bad, n, "train", longest, examples);
        }
    orch_plan_eval(o);
    for (int e = 0; e < o->n_envs; e++) {
        Env *env = o->envs[e];
        if (!env->problem_count) continue;
        int bad = 0, longest = 0, n = 0;
        char examples[512] = "";
        for (int p = 0; p < o->n_eval_problems; p++)
            if (o->eval_env[p] == e)
                n++, check_prompt(o, env, ENV_SPLIT_EVAL, o->eval_index[p], &bad, &longest, examples, sizeof examples);
        if (bad) fail_prompts(o, env, bad, n, "eval", longest, examples);
    }
}

static void setup(Orch *o, const Config *cfg, const Layout *L, const char *resume_path) {
    memset(o, 0, sizeof *o);
    o->cfg = cfg;
    o->L = L;
    o->t_start = MPI_Wtime();
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    o->job_started = (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
    outbox_init(&o->out);
    ErrorBuf err;
    if (env_mix_init(&o->mix, &cfg->env, (uint64_t)cfg->run.seed, &err) != 0)
        FATAL("fix the env.* settings", "%s", err.msg);
    o->envs = o->mix.envs;
    o->n_envs = o->mix.count;
    if (codec_open(&o->codec, cfg, &err) != 0) FATAL("check model.tokenizer", "%s", err.msg);
    ModelConfig shape;
    if (model_shape_from_config(cfg, &shape, &err) != 0) FATAL("check the model.* settings", "%s", err.msg);
    sample_limit(cfg, &shape, 1, &o->lim);
    sample_limit(cfg, &shape, 0, &o->sft_lim);
    o->lim.max_tokens = cfg->inference.max_tokens;
    check_prompts(o);
    proto_limits_from_config(cfg, codec_vocab_size(&o->codec), &o->plim);
    o->n_inf = L->n_inference;
    o->inf_version = xmalloc(sizeof(int) * (size_t)o->n_inf);
    for (int r = 0; r < o->n_inf; r++) o->inf_version[r] = -1;
    o->inf_load = xcalloc((size_t)o->n_inf, sizeof(int));
    o->inf_meter = xcalloc((size_t)o->n_inf, sizeof(InferenceMeter));
    for (int r = 0; r < o->n_inf; r++)
        o->inf_meter[r] = (InferenceMeter){.latest.clock_s = -1, .marked.clock_s = -1, .tokens_per_s = NAN,
                                           .busy_frac = NAN};
    o->outgoing = xcalloc((size_t)o->n_inf, sizeof(RequestList));
    const int G = cfg->orchestrator.group_size;
    o->capacity = cfg->orchestrator.groups_per_rank ? cfg->orchestrator.groups_per_rank * G
                                                    : cfg->inference.max_seqs + G;
    if (o->capacity < G) o->capacity = G;
    o->stats = xcalloc((size_t)(cfg->run.max_steps > 0 ? cfg->run.max_steps : 1), sizeof(StepStats));
    o->trainer_version = 0;  // v0: the initial (or warmed-up) policy the trainer publishes
    o->steps_done = 0;
    o->ckpt_acked = -1;
    o->ckpt_requested = -1;
    o->det_marked = -1;
    if (resume_path[0]) load_resume_state(o, resume_path);

    ErrorBuf dir_err;
    if (make_dirs(cfg->run.output_dir, &dir_err) != 0)
        FATAL("set run.output_dir to a directory this job may create and write", "run.output_dir: %s", dir_err.msg);
    // A job Slurm requeued after a node failure may find the lock of its previous allocation
    // still held by the filesystem for a while (an NFS lease runs out after ~90 s): it waits.
    const char *restarts = getenv("SLURM_RESTART_COUNT");
    const int lock_wait_s = restarts && atoi(restarts) > 0 ? 180 : 0;
    if (lock_wait_s)
        LOG_INFO("a requeued job: it waits up to %d s if %s/.asyncrl.lock is still held", lock_wait_s,
                 cfg->run.output_dir);
    int no_locks = 0;
    if (run_dir_lock(cfg->run.output_dir, lock_wait_s, &no_locks, &dir_err) != 0)
        FATAL("each job needs a run.output_dir of its own that it can write", "%s", dir_err.msg);
    if (no_locks)
        LOG_WARN("%s: the filesystem does not support file locks, so nothing stops a second job from writing to this "
                 "run.output_dir", cfg->run.output_dir);
    // A job that only evaluates a run's checkpoint (asyncrl eval; asyncrl sft when the checkpoint's
    // warm-up is already done) adds its rows to the run's metrics, which keep every row (a
    // checkpoint of step 400 must not cut a 600-step run back) and the run's config.
    const int eval_of_run =
        o->resumed && cfg->run.max_steps == 0 && !config_warmup_pending(cfg, o->steps_done, o->sft_done);
    if (o->resumed && !eval_of_run) set_aside_newer_checkpoints(o, cfg);
    char path[CFG_STR_MAX + 32];
    snprintf(path, sizeof path, "%s/metrics.h5", cfg->run.output_dir);
    int n_step, n_eval;
    const char *const *step_names = orch_step_metric_names(o, &n_step);
    const char *const *eval_names = orch_eval_metric_names(o, &n_eval);
    MetricsTable tables[2] = {{"eval", eval_names, n_eval, 1}, ORCH_SFT_TABLE};
    char env_names[1024] = "";
    for (int e = 0; e < o->n_envs; e++) {
        if (e) strncat(env_names, ",", sizeof env_names - strlen(env_names) - 1);
        strncat(env_names, o->envs[e]->name, sizeof env_names - strlen(env_names) - 1);
    }
    char *text = eval_of_run ? NULL : config_to_text(cfg);
    o->mw = metrics_open(path, step_names, n_step, tables, 2, text, env_names, cfg->log.rollouts,
                         eval_of_run ? METRICS_APPEND : o->resumed ? o->steps_done : -1);
    free(text);
    // The evaluation at the resume step stays in the metrics (the checkpoint's policy): a periodic
    // one is not taken again.
    if (o->resumed && !eval_of_run && metrics_table_last_step(o->mw, 0) == o->steps_done) o->eval_step = o->steps_done;
}

static void teardown(Orch *o) {
    metrics_close(o->mw);
    for (int i = 0; i < o->active.count; i++) group_free(o->active.items[i]), free(o->active.items[i]);
    for (int i = 0; i < o->ready.count; i++) group_free(o->ready.items[i]), free(o->ready.items[i]);
    for (int i = 0; i < o->scoring.count; i++) group_free(o->scoring.items[i]), free(o->scoring.items[i]);
    free(o->scoring.items);
    free(o->active.items);
    free(o->ready.items);
    free(o->eval_done.items);
    free(o->map.slots);
    env_mix_free(&o->mix);
    pools_free(&o->pools);
    codec_close(&o->codec);
    free(o->inf_version);
    free(o->inf_load);
    free(o->inf_meter);
    for (int r = 0; r < o->n_inf; r++) free(o->outgoing[r].items);
    free(o->outgoing);
    free(o->stats);
    free(o->reissue);
    free(o->step_names);
    free(o->eval_names);
    free(o->eval_env);
    free(o->eval_index);
    free(o->eval_position);
    outbox_free(&o->out);
}

// Waits (sleeping) until every inference rank holds at least `version`. Deterministic mode
// does not wait: each request names its version and inference switches to it when idle.
static void wait_inference_version(Orch *o, int version) {
    if (o->cfg->run.deterministic) return;
    Backoff b;
    backoff_reset(&b);
    while (min_inference_version(o) < version) {
        if (orch_poll(o)) backoff_reset(&b);
        else backoff_sleep(&b);
    }
}

static void shutdown_ranks(Orch *o) {
    ByteWriter w;
    for (int r = 0; r < o->n_inf; r++) {
        Cancel c = {.all = 1};
        bw_init(&w, 16);
        encode_cancel(&w, &c);
        outbox_send(&o->out, &w, o->L->first_inference + r, MSG_CANCEL, MPI_COMM_WORLD);
    }
    for (int rank = 1; rank < o->L->world_size; rank++) {
        bw_init(&w, 1);
        outbox_send(&o->out, &w, rank, MSG_SHUTDOWN, MPI_COMM_WORLD);
    }
    outbox_flush(&o->out);
    // Messages already on their way here (completions sent just before the shutdown arrived) must
    // be received: a send larger than MPI's eager limit completes only then, and its rank would
    // wait for it forever while this one sits in MPI_Finalize. A rank's bye comes after all of
    // them (messages from one rank arrive in order); everything else is dropped.
    int byes = 0;
    Backoff b;
    backoff_reset(&b);
    while (byes < o->L->world_size - 1) {
        Received msg;
        if (!msg_try_recv(MPI_COMM_WORLD, MPI_ANY_SOURCE, MPI_ANY_TAG, &msg)) {
            backoff_sleep(&b);
            continue;
        }
        byes += msg.tag == MSG_BYE;
        received_free(&msg);
        backoff_reset(&b);
    }
}

// Ready groups that a step would train with a token older than the staleness bound start over.
static void reschedule_stale_ready(Orch *o) {
    for (int i = o->ready.count - 1; i >= 0; i--) {
        Group *g = o->ready.items[i];
        if (!group_too_old(o, g)) continue;
        group_list_remove_at(&o->ready, i);
        reschedule_group(o, g, "it waited too long to be trained");
        group_list_push(&o->active, g);
    }
}

// Cancels every RL group still in flight (their problems stay pending for a checkpoint).
static void drop_rl_groups(Orch *o) {
    for (int i = o->active.count - 1; i >= 0; i--) {
        Group *g = o->active.items[i];
        cancel_group_requests(o, g);
        group_list_remove_at(&o->active, i);
        group_free(g);
        free(g);
    }
}

// Stops the job when its run directory was deleted, moved or replaced under it: its metrics
// would go on into a deleted file, and another job could take the directory. Checked at most
// once a second.
static void check_run_dir(Orch *o) {
    const double now = MPI_Wtime();
    if (now - o->run_dir_checked_at < 1.0) return;
    o->run_dir_checked_at = now;
    ErrorBuf err;
    if (run_dir_check(&err) != 0)
        FATAL("keep run.output_dir in place while the job runs; put it back (or set run.output_dir to where it "
              "went) and resume with --set checkpoint.resume=latest",
              "%s (after %d steps)", err.msg, o->steps_done);
}

// Fault injection for tests: ASYNCRL_FAULT_STOP_AFTER_BATCH=<step> raises SIGTERM in this rank
// right after the batch of that step is handed out, so that a test stops a job at a step of its
// choosing (with async_level 1, the steps before it then finish while the job stops).
static void fault_stop_after_batch(const Orch *o) {
    const char *v = getenv("ASYNCRL_FAULT_STOP_AFTER_BATCH");
    if (v && *v && atoi(v) == o->step_fill - 1) raise(SIGTERM);
}

// The evaluation of every eval.interval-th step (not the last: the final evaluation is that
// one), once the step is done. 1 when it ran.
static int periodic_eval(Orch *o) {
    const Config *cfg = o->cfg;
    if (cfg->eval.interval <= 0 || o->eval_pending != 0 || o->steps_done <= 0 || o->steps_done % cfg->eval.interval ||
        o->eval_step == o->steps_done || o->steps_done >= cfg->run.max_steps)
        return 0;
    orch_evaluate(o, o->steps_done, "periodic");
    return 1;
}

// Runs RL steps until max_steps, or until a stop signal or the trainer's stop flag. Returns the
// signal number that stopped it, or 0.
static int rl_loop(Orch *o) {
    const Config *cfg = o->cfg;
    Backoff b;
    backoff_reset(&b);
    o->trainer_idle_since = o->step_done_at = orch_now(o);
    while (o->steps_done < cfg->run.max_steps && !o->stop) {
        int sig = orch_stop_signal(o);
        if (sig) return sig;
        check_run_dir(o);
        double t0 = MPI_Wtime();
        schedule(o);
        int progressed = orch_poll(o);
        reschedule_stale_ready(o);
        while (o->step_fill < cfg->run.max_steps && orch_ready_samples(o) >= cfg->orchestrator.batch_size &&
               (!cfg->run.deterministic || rl_samples_in_flight(o) == 0)) {
            orch_send_batch(o);
            fault_stop_after_batch(o);
            int boundary = o->step_fill;
            if (cfg->checkpoint.interval > 0 && boundary % cfg->checkpoint.interval == 0 && boundary < cfg->run.max_steps)
                orch_request_checkpoint(o, boundary);
            progressed = 1;
        }
        progressed |= periodic_eval(o);
        o->busy_s += MPI_Wtime() - t0;
        if (progressed) backoff_reset(&b);
        else backoff_sleep(&b);
    }
    return 0;
}

// After a stop signal: the batches already sent are trained, a checkpoint of that boundary is
// written, and the job ends with status 0 (the rollouts in flight are asked again on resume).
static int stop_for_signal(Orch *o, int sig) {
    const int boundary = o->step_fill, warmup = config_warmup_pending(o->cfg, boundary, o->sft_done);
    char done[96];
    if (warmup)
        snprintf(done, sizeof done, "during the warm-up (%d of %d SFT steps done)", o->sft_done, o->cfg->sft.steps);
    else snprintf(done, sizeof done, "after %d step%s", boundary, boundary == 1 ? "" : "s");
    LOG_WARN("signal %d: the steps already handed to the trainer finish (with the periodic evaluations they reach), "
             "then a checkpoint is written and the job exits", sig);
    // The periodic checkpoint of this boundary may be asked for already: it is not written twice.
    if (o->ckpt_requested < boundary) orch_request_checkpoint(o, boundary);
    drop_rl_groups(o);
    // The steps that finish meanwhile get their periodic evaluations in the wait, as in a run not
    // stopped: a resumed run cannot make them (it starts from the boundary's weights).
    int ok = orch_wait_checkpoint(o, boundary);
    if (ok)
        printf("stopped by signal %d %s; checkpoint step_%06d.h5 written. Resume with the same command and "
               "--set checkpoint.resume=latest\n", sig, done, boundary);
    else
        printf("stopped by signal %d %s; the checkpoint FAILED (see above). Resume with "
               "--set checkpoint.resume=latest continues from the previous one\n", sig, done);
    fflush(stdout);
    return ok ? 0 : 1;
}

int orchestrator_run(const Config *cfg, const Layout *L, const char *resume_path) {
    Orch o;
    setup(&o, cfg, L, resume_path);
    LOG_INFO("orchestrator: %d environment(s), %d inference rank(s), %d trainer(s); %d steps of %d samples",
             o.n_envs, o.n_inf, L->n_trainers, cfg->run.max_steps, cfg->orchestrator.batch_size);
    // The warm-up (or what a checkpoint taken during it left of it) comes before any RL step.
    const int warmup = config_warmup_pending(cfg, o.steps_done, o.sft_done);
    if (o.steps_done > 0 && cfg->sft.steps > o.sft_done)
        LOG_WARN("sft.steps = %d but the checkpoint's run did %d warm-up steps before RL began: a warm-up is not "
                 "resumed after RL steps", cfg->sft.steps, o.sft_done);
    if (warmup) {
        const int sig = orch_sft(&o);
        if (sig) {
            const int status = stop_for_signal(&o, sig);
            shutdown_ranks(&o);
            teardown(&o);
            return status;
        }
    }
    wait_inference_version(&o, o.resumed ? o.steps_done : 0);
    // No RL steps to run (asyncrl eval, asyncrl sft): one evaluation of the policy as it is.
    if (cfg->run.max_steps == 0 || o.steps_done >= cfg->run.max_steps) {
        double reward = orch_evaluate(&o, o.steps_done, warmup ? "after SFT" : "final");
        printf("eval reward: %.4f\n", reward);
        fflush(stdout);
        int status = 0;
        if (cfg->checkpoint.at_end && warmup) {  // keep the warmed-up policy
            orch_request_checkpoint(&o, o.steps_done);
            if (!orch_wait_checkpoint(&o, o.steps_done)) status = 1;
        }
        shutdown_ranks(&o);
        teardown(&o);
        return status;
    }
    double before = o.resumed && !warmup ? NAN : orch_evaluate(&o, 0, "before RL");

    int status = 0, sig = rl_loop(&o);
    if (sig) {
        status = stop_for_signal(&o, sig);
    } else {
        // Batches already sent are trained before the end (a stop can come with some in flight).
        Backoff b;
        backoff_reset(&b);
        while (o.steps_done < o.step_fill) {
            if (orch_poll(&o)) backoff_reset(&b);
            else backoff_sleep(&b);
        }
        if (o.stop && o.trainer_stop)
            LOG_ERROR("the trainer stopped the run after %d steps in a row with a non-finite loss or gradient "
                      "(trainer.max_bad_steps); the last checkpoint holds the last good weights. Lower trainer.lr or "
                      "check the data", cfg->trainer.max_bad_steps);
        drop_rl_groups(&o);
        wait_inference_version(&o, o.trainer_version);
        double after = orch_evaluate(&o, o.steps_done, "after RL");
        if (cfg->checkpoint.at_end && o.ckpt_acked < o.steps_done) {
            orch_request_checkpoint(&o, o.steps_done);
            if (!orch_wait_checkpoint(&o, o.steps_done)) status = 1;
        }
        if (isfinite(before)) {
            LOG_INFO("eval reward before RL: %.4f   after RL: %.4f   (greedy, %d held-out problems)", before, after,
                     o.n_eval_problems);
            printf("eval reward before RL: %.4f\n", before);
        }
        printf("eval reward after RL:  %.4f\n", after);
        fflush(stdout);
        if (o.stop) status = 1;
    }
    shutdown_ranks(&o);
    teardown(&o);
    return status;
}
