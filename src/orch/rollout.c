// Rollout groups: token assembly for single- and multi-turn episodes (see rollout.h).
#include "orch/rollout.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static void sample_reserve(Sample *s, int extra) {
    if (s->n + extra <= s->cap) return;
    int cap = s->cap ? s->cap : 64;
    while (cap < s->n + extra) cap *= 2;
    s->tokens = xrealloc(s->tokens, sizeof(int32_t) * (size_t)cap);
    s->mask = xrealloc(s->mask, (size_t)cap);
    s->logp = xrealloc(s->logp, sizeof(float) * (size_t)cap);
    s->version = xrealloc(s->version, sizeof(int32_t) * (size_t)cap);
    s->cap = cap;
}

static void sample_append(Sample *s, const int32_t *ids, int n, uint8_t mask, const float *logp, const int32_t *ver) {
    sample_reserve(s, n);
    for (int i = 0; i < n; i++) {
        s->tokens[s->n] = ids[i];
        s->mask[s->n] = mask;
        s->logp[s->n] = logp ? logp[i] : 0.0f;
        s->version[s->n] = ver ? ver[i] : -1;
        s->n++;
    }
}

static void free_turns(Sample *s) {
    for (int t = 0; t < s->n_turns; t++) free((char *)s->turns[t].text);
    free(s->turns);
    s->turns = NULL;
    s->n_turns = 0;
    s->model_turns = 0;
}

static void add_turn(Sample *s, TurnRole role, char *text, size_t len) {
    s->turns = xrealloc(s->turns, sizeof(Turn) * (size_t)(s->n_turns + 1));
    s->turns[s->n_turns++] = (Turn){role, text, len};
    if (role == TURN_MODEL) s->model_turns++;
}

// The prompt needs `count` tokens: a completion must still have 2 positions (a token and EOS).
static int room_for_completion(const RolloutLimits *lim, int count) { return count >= 0 && count < lim->max_total - 1; }

int prompt_fits(const TextCodec *codec, const RolloutLimits *lim, const char *prompt, int *tokens) {
    const size_t len = strlen(prompt);
    *tokens = -1;
    if (len + 2 < (size_t)lim->max_total - 1) return 1;
    int32_t *ids = xmalloc(sizeof(int32_t) * (len + 2));
    *tokens = codec->encode(codec->ctx, prompt, len, 1, ids, (int)(len + 2 < INT32_MAX ? len + 2 : INT32_MAX));
    free(ids);
    return room_for_completion(lim, *tokens);
}

int group_init(Group *g, uint64_t id, int env, uint64_t problem_index, EnvSplit split, Problem *problem, int n,
               const TextCodec *codec, const RolloutLimits *lim, ErrorBuf *err) {
    memset(g, 0, sizeof *g);
    g->id = id;
    g->env = env;
    g->problem_index = problem_index;
    g->split = split;
    g->problem = *problem;
    memset(problem, 0, sizeof *problem);
    g->n = n;
    g->samples = xcalloc((size_t)n, sizeof(Sample));
    int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)lim->max_total);
    const char *prompt = g->problem.prompt ? g->problem.prompt : "";
    int count = codec->encode(codec->ctx, prompt, strlen(prompt), 1, ids, lim->max_total);
    if (!room_for_completion(lim, count)) {
        free(ids);
        int rc = error_set(err, "the prompt of problem %llu leaves no room for a completion in a sample of at most %d "
                           "tokens (set by %s): shorten the environment's prompts or raise that limit",
                           (unsigned long long)problem_index, lim->max_total, lim->max_total_by);
        group_free(g);
        return rc;
    }
    for (int s = 0; s < n; s++) {
        sample_append(&g->samples[s], ids, count, 0, NULL, NULL);
        g->samples[s].prompt_len = count;
        g->samples[s].score_ticket = -1;
    }
    free(ids);
    return 0;
}

void group_restart(Group *g) {
    for (int s = 0; s < g->n; s++) {
        Sample *x = &g->samples[s];
        x->n = x->prompt_len;
        free_turns(x);
        x->state = SAMPLE_WAITING;
        x->finish = 0;
        x->truncated = 0;
        x->reward = x->advantage = 0;
        memset(&x->metrics, 0, sizeof x->metrics);
        x->score_ticket = -1;
    }
    g->n_done = g->n_scored = 0;
    g->attempts++;
}

void group_free(Group *g) {
    for (int s = 0; s < g->n; s++) {
        Sample *x = &g->samples[s];
        free(x->tokens);
        free(x->mask);
        free(x->logp);
        free(x->version);
        free_turns(x);
    }
    free(g->samples);
    problem_free(&g->problem);
    memset(g, 0, sizeof *g);
}

void sample_make_request(const Group *g, int s, const RolloutLimits *lim, Request *req) {
    const Sample *x = &g->samples[s];
    memset(req, 0, sizeof *req);
    req->group = g->id;
    req->step = g->step;
    req->n_prompt = x->n;
    req->prompt = x->tokens;
    int room = lim->max_total - x->n;
    req->max_tokens = room < lim->max_tokens ? room : lim->max_tokens;
    if (req->max_tokens < 1) req->max_tokens = 1;
}

int sample_complete(Group *g, int s, const Completion *c, Env *env, const TextCodec *codec, const RolloutLimits *lim) {
    Sample *x = &g->samples[s];
    int room = lim->max_total - x->n;
    int n = c->n < room ? c->n : room;
    sample_append(x, c->tokens, n, 1, c->logprobs, c->versions);
    x->finish = c->finish;
    if (c->finish == FINISH_LENGTH || n < c->n) x->truncated = 1;
    // The environment sees the turn's text without the stop token.
    int text_n = n;
    if (c->finish == FINISH_STOP && text_n > 0 && c->tokens[text_n - 1] == codec->eos) text_n--;
    char *text = NULL;
    size_t len = codec->decode(codec->ctx, c->tokens, text_n, &text);
    add_turn(x, TURN_MODEL, text, len);

    int more = 0;
    if (env->respond && x->model_turns < env->max_turns && !x->truncated && c->finish == FINISH_STOP) {
        char *reply = NULL;
        size_t reply_len = 0;
        Transcript tr = {x->turns, x->n_turns};
        if (env->respond(env, &g->problem, &tr, &reply, &reply_len) == 1 && reply) {
            int max = lim->max_total - x->n;
            int32_t *ids = xmalloc(sizeof(int32_t) * (size_t)(max > 0 ? max : 1));
            int count = max > 1 ? codec->encode(codec->ctx, reply, reply_len, 0, ids, max - 1) : -1;
            if (count >= 0) {
                sample_append(x, ids, count, 0, NULL, NULL);
                add_turn(x, TURN_ENV, reply, reply_len);
                reply = NULL;
                more = lim->max_total - x->n > 1;
                if (!more) x->truncated = 1;
            } else {
                x->truncated = 1;  // no room for the environment's reply: the episode ends here
            }
            free(ids);
        }
        free(reply);
    }
    x->state = more ? SAMPLE_WAITING : SAMPLE_DONE;
    if (!more) g->n_done++;
    return !more;
}

static double checked_reward(const Env *env, double r) {
    if (!(r >= 0.0 && r <= 1.0)) {
        LOG_WARN("environment %s gave reward %g outside [0, 1]; clamped", env->name, r);
        r = r > 1.0 ? 1.0 : 0.0;
    }
    return r;
}

void group_score(Group *g, Env *env) {
    for (int s = 0; s < g->n; s++) {
        Sample *x = &g->samples[s];
        Transcript tr = {x->turns, x->n_turns};
        memset(&x->metrics, 0, sizeof x->metrics);
        x->reward = checked_reward(env, env->score(env, &g->problem, &tr, &x->metrics));
    }
    g->n_scored = g->n;
}

int group_score_begin(Group *g, Env *env) {
    if (!env->score_begin || !env->score_poll) {
        group_score(g, env);
        return 1;
    }
    for (int s = 0; s < g->n; s++) {
        Sample *x = &g->samples[s];
        Transcript tr = {x->turns, x->n_turns};
        memset(&x->metrics, 0, sizeof x->metrics);
        x->score_ticket = env->score_begin(env, &g->problem, &tr);
        if (x->score_ticket < 0) {  // the environment could not start it: score it in place
            x->reward = checked_reward(env, env->score(env, &g->problem, &tr, &x->metrics));
            g->n_scored++;
        }
    }
    return g->n_scored == g->n;
}

int group_score_poll(Group *g, Env *env) {
    for (int s = 0; s < g->n && g->n_scored < g->n; s++) {
        Sample *x = &g->samples[s];
        if (x->score_ticket < 0) continue;
        double r;
        int rc = env->score_poll(env, x->score_ticket, &r, &x->metrics);
        if (rc == 0) continue;
        x->reward = rc == 1 ? checked_reward(env, r) : 0.0;
        x->score_ticket = -1;
        g->n_scored++;
    }
    return g->n_scored == g->n;
}

int sample_completion_tokens(const Sample *s) {
    int n = 0;
    for (int i = 0; i < s->n; i++) n += s->mask[i];
    return n;
}

void sample_version_range(const Sample *s, int *min_version, int *max_version) {
    int lo = -1, hi = -1;
    for (int i = 0; i < s->n; i++) {
        if (s->version[i] < 0) continue;
        if (lo < 0 || s->version[i] < lo) lo = s->version[i];
        if (s->version[i] > hi) hi = s->version[i];
    }
    *min_version = lo;
    *max_version = hi;
}
