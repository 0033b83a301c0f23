// A step's batch: taking scored groups, packing them for the trainers, logging the rollouts,
// and, when the trainer reports the step done, the step's metrics line (see orch_state.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "orch/orch_state.h"
#include "orch/packing.h"

// Metrics computed by the orchestrator; the trainer's come with its step-done message.
static const char *ORCH_METRICS[] = {"reward_mean", "samples", "groups_dropped", "groups_rescheduled",
                                     "pool_easy", "pool_hard", "problems_skipped",
                                     "completion_len_mean", "seq_len_mean", "seq_len_max", "truncated_frac",
                                     "off_policy_mean", "off_policy_max"};
static const char *TRAINER_METRICS[] = {"loss", "entropy", "mismatch_kl", "masked_low", "masked_high", "masked_seq",
                                        "grad_norm", "lr", "skipped", "trainer_tokens"};
// Timing lives apart (/steps/timing/...), so the other datasets are bit-identical between two
// deterministic runs.
static const char *TIMING_METRICS[] = {"timing/step_s", "timing/trainer_s", "timing/trainer_wait_s",
                                       "timing/rollout_wait_s", "timing/inference_tokens_per_s",
                                       "timing/inference_busy_frac", "timing/inference_idle_s",
                                       "timing/trainer_tokens_per_s", "timing/weights_broadcast_s", "timing/elapsed_s",
                                       "timing/orchestrator_busy_s", "timing/job_started"};
#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

const char *const *orch_step_metric_names(const Orch *o, int *n) {
    Orch *w = (Orch *)o;
    if (!w->step_names) {
        int total = COUNT(ORCH_METRICS) + COUNT(TRAINER_METRICS) + COUNT(TIMING_METRICS) + o->n_envs;
        w->step_names = xcalloc((size_t)total, sizeof(char *));
        int k = 0;
        for (int i = 0; i < COUNT(ORCH_METRICS); i++) w->step_names[k++] = ORCH_METRICS[i];
        for (int e = 0; e < o->n_envs; e++) {
            char *name = xmalloc(64);
            snprintf(name, 64, "reward/%s", o->envs[e]->name);
            w->step_names[k++] = name;
        }
        for (int i = 0; i < COUNT(TRAINER_METRICS); i++) w->step_names[k++] = TRAINER_METRICS[i];
        for (int i = 0; i < COUNT(TIMING_METRICS); i++) w->step_names[k++] = TIMING_METRICS[i];
        w->n_step_names = k;
    }
    *n = o->n_step_names;
    return o->step_names;
}

int orch_ready_samples(const Orch *o) {
    int n = 0;
    for (int i = 0; i < o->ready.count; i++) n += o->ready.items[i]->n;
    return n;
}

static int by_group_id(const void *a, const void *b) {
    const Group *x = *(Group *const *)a, *y = *(Group *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

// Adds one sample to the step's statistics and to the rollout records.
static void account_sample(Orch *o, StepStats *st, const Group *g, int s, RolloutRecord *rec) {
    const Sample *x = &g->samples[s];
    int step = o->step_fill;
    st->reward_sum += x->reward;
    st->reward_n += 1;
    if (g->env < 16) st->env_reward_sum[g->env] += x->reward, st->env_reward_n[g->env] += 1;
    int completion = sample_completion_tokens(x);
    st->completion_len_sum += completion;
    st->seq_len_sum += x->n;
    if (x->n > st->seq_len_max) st->seq_len_max = x->n;
    st->truncated += x->truncated;
    for (int i = 0; i < x->n; i++) {
        if (!x->mask[i]) continue;
        double off = (double)(step - x->version[i]);
        st->off_policy_sum += off;
        st->off_policy_n += 1;
        if (off > st->off_policy_max) st->off_policy_max = off;
    }
    int vmin, vmax;
    sample_version_range(x, &vmin, &vmax);
    *rec = (RolloutRecord){.step = step, .group = g->id, .problem = g->problem_index, .env = g->env, .sample = s,
                           .reward = x->reward, .advantage = x->advantage, .prompt_len = x->prompt_len,
                           .completion_len = x->n - x->prompt_len, .version_min = vmin, .version_max = vmax,
                           .finish = x->finish, .tokens = x->tokens, .token_versions = x->version};
}

void orch_send_batch(Orch *o) {
    const Config *cfg = o->cfg;
    const int batch = cfg->orchestrator.batch_size, T = o->L->n_trainers;
    if (cfg->run.deterministic) qsort(o->ready.items, (size_t)o->ready.count, sizeof(Group *), by_group_id);
    int n_groups = 0, n = 0;
    while (n < batch) n += o->ready.items[n_groups++]->n;
    CHECK(n == batch, "orchestrator.batch_size must be a multiple of group_size", "batch of %d samples", n);

    StepStats *st = &o->stats[o->step_fill];
    st->step = o->step_fill;
    st->valid = 1;
    st->samples = n;
    PackSample *ps = xcalloc((size_t)n, sizeof(PackSample));
    RolloutRecord *recs = xcalloc((size_t)n, sizeof(RolloutRecord));
    int k = 0;
    for (int gi = 0; gi < n_groups; gi++) {
        const Group *g = o->ready.items[gi];
        for (int s = 0; s < g->n; s++, k++) {
            const Sample *x = &g->samples[s];
            ps[k] = (PackSample){x->n, x->tokens, x->mask, x->logp, (float)x->advantage};
            account_sample(o, st, g, s, &recs[k]);
        }
    }
    Batch *batches = xcalloc((size_t)T, sizeof(Batch));
    ErrorBuf err;
    if (pack_samples(ps, n, cfg->trainer.seq_len, T, o->step_fill, 0, batches, &err) < 0)
        FATAL("raise trainer.seq_len or lower inference.max_tokens", "step %d: %s", o->step_fill, err.msg);
    for (int t = 0; t < T; t++) {
        ByteWriter w;
        bw_init(&w, 1 << 16);
        encode_batch(&w, &batches[t]);
        outbox_send(&o->out, &w, o->L->trainer_root + t, MSG_BATCH, MPI_COMM_WORLD);
        batch_free(&batches[t]);
    }
    double now = orch_now(o);
    st->rollout_wait_s = now > o->trainer_idle_since && o->steps_done == o->step_fill ? now - o->trainer_idle_since : 0;
    metrics_write_rollouts(o->mw, recs, n);
    for (int gi = 0; gi < n_groups; gi++) {
        group_free(o->ready.items[gi]);
        free(o->ready.items[gi]);
    }
    memmove(o->ready.items, o->ready.items + n_groups, sizeof(Group *) * (size_t)(o->ready.count - n_groups));
    o->ready.count -= n_groups;
    free(batches);
    free(ps);
    free(recs);
    o->step_fill++;
}

// Every inference rank whose totals moved on since the last step is measured between the two
// (its tokens/s and busy share over the time between them on its own clock); the others keep
// their last measure. *tokens_per_s sums the measured ranks, *busy_frac averages them (NaN while
// none is).
static void measure_inference(Orch *o, double *tokens_per_s, double *busy_frac) {
    double tokens = 0, busy = 0;
    int measured = 0;
    for (int r = 0; r < o->n_inf; r++) {
        InferenceMeter *m = &o->inf_meter[r];
        const double dt = m->latest.clock_s - m->marked.clock_s;
        if (m->latest.clock_s >= 0 && m->marked.clock_s >= 0 && dt > 0) {
            m->tokens_per_s = (m->latest.decode_tokens - m->marked.decode_tokens) / dt;
            m->busy_frac = (m->latest.busy_s - m->marked.busy_s) / dt;
        }
        m->marked = m->latest;
        if (isfinite(m->tokens_per_s)) tokens += m->tokens_per_s, busy += m->busy_frac, measured++;
    }
    *tokens_per_s = measured ? tokens : NAN;
    *busy_frac = measured ? busy / measured : NAN;
}

// "%.0f" of a rate, or "-" while it is not measured.
static const char *rate_text(char *buf, size_t size, double v) {
    if (isfinite(v)) snprintf(buf, size, "%.0f", v);
    else snprintf(buf, size, "-");
    return buf;
}

void orch_step_done(Orch *o, const StepDone *s) {
    const Config *cfg = o->cfg;
    CHECK(s->step >= 0 && s->step < cfg->run.max_steps, "", "step-done for step %d outside the run", s->step);
    StepStats *st = &o->stats[s->step];
    int n_names;
    orch_step_metric_names(o, &n_names);
    const char **names = xcalloc((size_t)(n_names + s->n_metrics), sizeof(char *));
    double *values = xcalloc((size_t)(n_names + s->n_metrics), sizeof(double));
    int k = 0;
#define PUT(name, value) (names[k] = (name), values[k++] = (value))
    double reward = st->reward_n ? st->reward_sum / st->reward_n : NAN;
    PUT("reward_mean", reward);
    PUT("samples", st->samples);
    PUT("groups_dropped", st->dropped_groups);
    PUT("groups_rescheduled", st->rescheduled_groups);
    PUT("pool_easy", o->pools.easy.count);
    PUT("pool_hard", o->pools.hard.count);
    PUT("problems_skipped", st->skipped);
    PUT("completion_len_mean", st->reward_n ? st->completion_len_sum / st->reward_n : NAN);
    PUT("seq_len_mean", st->reward_n ? st->seq_len_sum / st->reward_n : NAN);
    PUT("seq_len_max", st->seq_len_max);
    PUT("truncated_frac", st->reward_n ? st->truncated / st->reward_n : NAN);
    double off_mean = st->off_policy_n ? st->off_policy_sum / st->off_policy_n : 0;
    PUT("off_policy_mean", off_mean);
    PUT("off_policy_max", st->off_policy_max);
    for (int e = 0; e < o->n_envs && e < 16; e++)
        PUT(o->step_names[COUNT(ORCH_METRICS) + e], st->env_reward_n[e] ? st->env_reward_sum[e] / st->env_reward_n[e] : NAN);
    for (int i = 0; i < s->n_metrics; i++) PUT(s->metrics[i].name, s->metrics[i].value);
    // Inference throughput from the engines' own counters (see InferenceMeter).
    const double now = orch_now(o), step_s = now - o->step_done_at;
    double tokens_per_s, busy_frac;
    measure_inference(o, &tokens_per_s, &busy_frac);
    PUT("timing/inference_tokens_per_s", tokens_per_s);
    PUT("timing/inference_busy_frac", busy_frac);
    PUT("timing/inference_idle_s", step_s * (1 - busy_frac));
    PUT("timing/rollout_wait_s", st->rollout_wait_s);
    // Wall time since the previous step ended (the first step of a job: since RL began), so the
    // step times add up to the run's time (from a batch's hand-out they overlap when async).
    PUT("timing/step_s", step_s);
    o->step_done_at = now;
    PUT("timing/elapsed_s", now);
    PUT("timing/job_started", o->job_started);
    PUT("timing/orchestrator_busy_s", o->busy_s - o->busy_at_step);
    o->busy_at_step = o->busy_s;
#undef PUT
    metrics_write_step(o->mw, s->step, names, values, k);

    if (s->step % cfg->log.print_every == 0 || s->step + 1 == cfg->run.max_steps) {
        char envs[256] = "";
        if (o->n_envs > 1) {
            size_t used = 0;
            for (int e = 0; e < o->n_envs && e < 16 && used < sizeof envs - 40; e++)
                used += (size_t)snprintf(envs + used, sizeof envs - used, "%s%s %.3f", e ? ", " : " (", o->envs[e]->name,
                                         st->env_reward_n[e] ? st->env_reward_sum[e] / st->env_reward_n[e] : NAN);
            if (used < sizeof envs - 2) strcat(envs, ")");
        }
        char rate[32], idle[32];
        const char *idle_text = isfinite(busy_frac) ? (snprintf(idle, sizeof idle, "%.2fs", step_s * (1 - busy_frac)), idle)
                                                    : "-";
        printf("step %4d | reward %.3f%s | loss %+.4f | entropy %.3f | mismatch_kl %.2e | masked %.3f/%.3f/%.3f | "
               "grad_norm %.3f | lr %.2e | off-policy %.2f/%.0f | len %.1f | trunc %.2f | inference %s tok/s | "
               "trainer %.0f tok/s | waits: trainer %.2fs inference %s%s\n",
               s->step, reward, envs, step_done_get(s, "loss", NAN), step_done_get(s, "entropy", NAN),
               step_done_get(s, "mismatch_kl", NAN), step_done_get(s, "masked_low", NAN),
               step_done_get(s, "masked_high", NAN), step_done_get(s, "masked_seq", NAN),
               step_done_get(s, "grad_norm", NAN), step_done_get(s, "lr", NAN), off_mean, st->off_policy_max,
               st->reward_n ? st->completion_len_sum / st->reward_n : 0, st->reward_n ? st->truncated / st->reward_n : 0,
               rate_text(rate, sizeof rate, tokens_per_s), step_done_get(s, "timing/trainer_tokens_per_s", 0),
               step_done_get(s, "timing/trainer_wait_s", 0), idle_text,
               (s->flags & STEP_SKIPPED) ? " | SKIPPED (non-finite)" : "");
        fflush(stdout);
    }
    free(names);
    free(values);
}
