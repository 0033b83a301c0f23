// The supervised warm-up (`sft.steps` steps before RL, or `asyncrl sft`): batches of prompts with
// their reference answers, from the environments (sft.data = "env") or from a JSONL file of
// {"prompt": ..., "completion": ...} lines; the loss is cross-entropy on the answer tokens.
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "comm/transport.h"
#include "core/json.h"
#include "core/json_lines.h"
#include "core/log.h"
#include "orch/orch_state.h"
#include "orch/packing.h"

#define SFT_MAX_FILE_BYTES (1LL << 30)

static const char *SFT_COLUMNS[] = {"step", "loss", "grad_norm", "lr", "trainer_tokens"};
const MetricsTable ORCH_SFT_TABLE = {"sft", SFT_COLUMNS, 5, 0};  // warm-up steps, never cut on resume

typedef struct {
    char **prompts, **answers;
    int *lines;  // the line of each example in the file
    int count;
} SftData;

// The first present member of two names (NULL when neither is there); *used names it.
static const Json *member(const Json *obj, const char *name, const char *alias, const char **used) {
    const Json *v = json_get(obj, name);
    *used = name;
    if (!v) v = json_get(obj, alias), *used = alias;
    return v;
}

static int load_line(void *ctx, const char *path, int line, const char *text, size_t len, ErrorBuf *err) {
    SftData *d = ctx;
    ErrorBuf jerr;
    Json *j = json_parse(text, len, &jerr);
    if (!j) return error_set(err, "%s:%d: %s", path, line, jerr.msg);
    const char *pname, *cname;
    const Json *p = member(j, "prompt", "question", &pname), *c = member(j, "completion", "answer", &cname);
    int rc = 0;
    if (j->type != JSON_OBJECT)
        rc = error_set(err, "%s:%d: expected a JSON object like {\"prompt\": \"...\", \"completion\": \"...\"}", path,
                       line);
    else if (!p || !c)
        rc = error_set(err, "%s:%d: no \"%s\" (or \"%s\") member", path, line, !p ? "prompt" : "completion",
                       !p ? "question" : "answer");
    else if (p->type != JSON_STRING || p->string_len == 0 || strlen(p->string) != p->string_len)
        rc = error_set(err, "%s:%d: \"%s\" must be a non-empty string without NUL characters", path, line, pname);
    else if (c->type != JSON_STRING || c->string_len == 0 || strlen(c->string) != c->string_len)
        rc = error_set(err, "%s:%d: \"%s\" must be a non-empty string without NUL characters", path, line, cname);
    if (rc == 0) {
        d->prompts = xrealloc(d->prompts, sizeof(char *) * (size_t)(d->count + 1));
        d->answers = xrealloc(d->answers, sizeof(char *) * (size_t)(d->count + 1));
        d->lines = xrealloc(d->lines, sizeof(int) * (size_t)(d->count + 1));
        d->lines[d->count] = line;
        d->prompts[d->count] = xstrdup(p->string);
        d->answers[d->count] = xstrdup(c->string);
        d->count++;
    }
    json_free(j);
    return rc;
}

static void free_data(SftData *d) {
    for (int i = 0; i < d->count; i++) free(d->prompts[i]), free(d->answers[i]);
    free(d->prompts);
    free(d->answers);
    free(d->lines);
    memset(d, 0, sizeof *d);
}

typedef struct {
    int32_t *tokens;
    uint8_t *mask;
    float *logp;
    int n;
} SftSample;

static int sample_reserve_all(SftSample *s, int max) {
    s->tokens = xmalloc(sizeof(int32_t) * (size_t)max);
    s->mask = xcalloc((size_t)max, 1);
    s->logp = xcalloc((size_t)max, sizeof(float));
    s->n = 0;
    return 0;
}

// Appends text (no BOS); mask 1 marks tokens the model should learn to produce. -1 if it
// does not fit in max tokens.
static int append_text(Orch *o, SftSample *s, const char *text, size_t len, uint8_t mask, int bos, int max) {
    int got = o->codec.encode(o->codec.ctx, text, len, bos, s->tokens + s->n, max - s->n);
    if (got < 0) return -1;
    for (int i = 0; i < got; i++) s->mask[s->n + i] = mask;
    s->n += got;
    return 0;
}

static int append_eos(Orch *o, SftSample *s, int max) {
    if (s->n >= max) return -1;
    s->mask[s->n] = 1;
    s->tokens[s->n++] = o->codec.eos;
    return 0;
}

// Tokenizes BOS + prompt + answer + EOS; the loss covers the answer and EOS. A multi-turn
// reference (answer_turns) becomes model turns (each ended by EOS, in the loss) and environment
// turns (masked out), as the rollouts of that environment look.
static int make_sample(Orch *o, const char *prompt, const char *answer, const Turn *turns, int n_turns,
                       SftSample *s) {
    int max = o->sft_lim.max_total;
    sample_reserve_all(s, max);
    if (append_text(o, s, prompt, strlen(prompt), 0, 1, max)) return -1;
    if (n_turns == 0) {
        if (append_text(o, s, answer, strlen(answer), 1, 0, max) || append_eos(o, s, max)) return -1;
        return 0;
    }
    for (int t = 0; t < n_turns; t++) {
        int model = turns[t].role == TURN_MODEL;
        if (append_text(o, s, turns[t].text, turns[t].len, (uint8_t)model, 0, max)) return -1;
        if (model && append_eos(o, s, max)) return -1;
    }
    return 0;
}

static void free_sample(SftSample *s) {
    free(s->tokens);
    free(s->mask);
    free(s->logp);
}

// Whether an example fits in a sample, and if not its tokens (*tokens; -1 when it was not encoded:
// an example of n bytes never needs more than n + 5 tokens, so short ones are not).
static int example_fits(Orch *o, const char *prompt, const char *answer, const Turn *turns, int n_turns,
                        int *tokens) {
    *tokens = -1;
    size_t bytes = strlen(prompt) + 3 * (size_t)(n_turns + 1);
    if (n_turns == 0) bytes += strlen(answer);
    for (int t = 0; t < n_turns; t++) bytes += turns[t].len;
    if (bytes + 2 <= (size_t)o->sft_lim.max_total) return 1;
    SftSample s;
    const int saved = o->sft_lim.max_total;
    o->sft_lim.max_total = (int)(bytes + 2 < INT32_MAX ? bytes + 2 : INT32_MAX);  // room to count them all
    make_sample(o, prompt, answer, turns, n_turns, &s);
    o->sft_lim.max_total = saved;
    *tokens = s.n;
    free_sample(&s);
    return *tokens <= saved;
}

static void fail_too_long(const Orch *o, const char *source, int bad, int n, const char *examples) {
    FATAL("shorten or remove those examples, or raise the limit named",
          "%s: %d of %d warm-up examples do not fit in a sample of at most %d tokens (set by %s): %s%s", source, bad,
          n, o->sft_lim.max_total, o->sft_lim.max_total_by, examples, bad > 3 ? ", ..." : "");
}

// Loads sft.data. A bad line, or an example too long for a sample, is an error naming the file
// and line, found before the warm-up starts rather than when the example is first drawn.
static void load_data(Orch *o, const char *path, SftData *d) {
    memset(d, 0, sizeof *d);
    ErrorBuf err;
    if (json_lines_read(path, SFT_MAX_FILE_BYTES, SFT_MAX_FILE_BYTES, "the file size limit", load_line, d, &err) < 0)
        FATAL("sft.data is \"env\" or a JSONL file of {\"prompt\": ..., \"completion\": ...} lines", "sft.data: %s",
              err.msg);
    if (d->count == 0)
        FATAL("give at least one {\"prompt\": ..., \"completion\": ...} line", "sft.data: %s holds no examples", path);
    int bad = 0;
    char examples[512] = "";
    for (int i = 0; i < d->count; i++) {
        int tokens;
        if (example_fits(o, d->prompts[i], d->answers[i], NULL, 0, &tokens)) continue;
        char where[CFG_STR_MAX + 16];
        snprintf(where, sizeof where, "%s:%d", path, d->lines[i]);
        orch_list_example(examples, sizeof examples, ++bad, where, tokens);
    }
    if (bad) fail_too_long(o, "sft.data", bad, d->count, examples);
}

// The same check for the reference answers of environments that read their problems from a
// file (sft.data = "env"); generated problems are short by construction.
static void check_env_examples(Orch *o) {
    for (int e = 0; e < o->n_envs; e++) {
        Env *env = o->envs[e];
        if (!env->problem_count) continue;
        const int n = env->problem_count(env, ENV_SPLIT_TRAIN);
        int bad = 0;
        char examples[512] = "";
        for (int i = 0; i < n; i++) {
            Problem p;
            ErrorBuf err;
            if (env->problem(env, ENV_SPLIT_TRAIN, (uint64_t)i, &p, &err) != 0)
                FATAL("check the env.* settings", "environment %s: %s", env->name, err.msg);
            int tokens;
            if (p.answer && !example_fits(o, p.prompt, p.answer, p.answer_turns, p.n_answer_turns, &tokens))
                orch_list_example(examples, sizeof examples, ++bad, p.where ? p.where : "a problem", tokens);
            problem_free(&p);
        }
        if (bad) {
            char source[64];
            snprintf(source, sizeof source, "environment %s", env->name);
            fail_too_long(o, source, bad, n, examples);
        }
    }
}

static void send_sft_batch(Orch *o, const SftData *data, int step) {
    const Config *cfg = o->cfg;
    const int n = cfg->sft.batch_size, T = o->L->n_trainers;
    SftSample *samples = xcalloc((size_t)n, sizeof(SftSample));
    PackSample *ps = xcalloc((size_t)n, sizeof(PackSample));
    for (int i = 0; i < n; i++) {
        uint64_t index = o->sft_cursor++;
        int rc;
        if (data) {
            rc = make_sample(o, data->prompts[index % (uint64_t)data->count],
                             data->answers[index % (uint64_t)data->count], NULL, 0, &samples[i]);
        } else {
            int e = 0;
            Problem p;
            ErrorBuf err;
            memset(&p, 0, sizeof p);
            if (env_mix_problem(&o->mix, ENV_SPLIT_TRAIN, index, &e, &p, &err) != 0)
                FATAL("check the env.* settings", "SFT problem %llu: %s", (unsigned long long)index, err.msg);
            if (!p.answer) FATAL("use sft.data = a JSONL file, or sft.steps = 0", "environment %s has no reference "
                                 "answers for the warm-up", o->envs[e]->name);
            rc = make_sample(o, p.prompt, p.answer, p.answer_turns, p.n_answer_turns, &samples[i]);
            problem_free(&p);
        }
        if (rc != 0)
            FATAL("raise that limit, or shorten the data", "SFT sample %llu does not fit: a sample may have at most %d "
                  "tokens (set by %s)", (unsigned long long)index, o->sft_lim.max_total, o->sft_lim.max_total_by);
        ps[i] = (PackSample){samples[i].n, samples[i].tokens, samples[i].mask, samples[i].logp, 1.0f};
    }
    Batch *batches = xcalloc((size_t)T, sizeof(Batch));
    ErrorBuf err;
    if (pack_samples(ps, n, cfg->trainer.seq_len, T, step, BATCH_SFT, batches, &err) < 0)
        FATAL("raise trainer.seq_len", "SFT step %d: %s", step, err.msg);
    for (int t = 0; t < T; t++) {
        ByteWriter w;
        bw_init(&w, 1 << 16);
        encode_batch(&w, &batches[t]);
        outbox_send(&o->out, &w, o->L->trainer_root + t, MSG_BATCH, MPI_COMM_WORLD);
        batch_free(&batches[t]);
    }
    for (int i = 0; i < n; i++) free_sample(&samples[i]);
    free(samples);
    free(ps);
    free(batches);
}

void orch_sft_step_done(Orch *o, const StepDone *s) {
    const char *names[] = {"loss", "grad_norm", "lr", "trainer_tokens"};
    double values[4];
    for (int i = 0; i < 4; i++) values[i] = step_done_get(s, names[i], 0);
    metrics_write_row(o->mw, 1, s->step, names, values, 4);
    int every = o->cfg->sft.steps >= 20 ? o->cfg->sft.steps / 10 : 1;
    if (s->step % every == 0 || s->step + 1 == o->cfg->sft.steps)
        printf("sft step %4d | loss %.4f | grad_norm %.3f | lr %.2e\n", s->step, values[0], values[1], values[2]);
    fflush(stdout);
    o->sft_done = s->step + 1;
}

int orch_sft(Orch *o) {
    const Config *cfg = o->cfg;
    SftData jsonl;
    const SftData *data = NULL;
    if (strcmp(cfg->sft.data, "env") != 0) {
        load_data(o, cfg->sft.data, &jsonl);
        data = &jsonl;
        LOG_INFO("SFT warm-up: %d steps of %d samples from %s (%d examples)", cfg->sft.steps, cfg->sft.batch_size,
                 cfg->sft.data, jsonl.count);
    } else {
        check_env_examples(o);
        LOG_INFO("SFT warm-up: %d steps of %d samples on the environments' reference answers", cfg->sft.steps,
                 cfg->sft.batch_size);
    }
    // Keep up to two batches queued at the trainers so they never wait for the next one. A resumed
    // warm-up goes on from the checkpoint's step.
    int sent = o->sft_done, sig = 0;
    Backoff b;
    backoff_reset(&b);
    while (o->sft_done < sent || (!sig && o->sft_done < cfg->sft.steps)) {
        if (!sig) sig = orch_stop_signal(o);
        while (!sig && sent < cfg->sft.steps && sent < o->sft_done + 2) send_sft_batch(o, data, sent++);
        if (orch_poll(o)) backoff_reset(&b);
        else backoff_sleep(&b);
    }
    if (data) free_data(&jsonl);
    return sig;
}
