// guess: a multi-turn game. The environment holds a secret number in 1..env.guess.max_number;
// on each turn the model guesses and the environment answers whether the secret is higher or
// lower, until the guess is right or env.guess.max_turns guesses are spent.
//
//   prompt      "guess 1-<max>\n"           e.g. "guess 1-32\n"
//   model turn  a number                    e.g. "16"
//   env turn    "higher\n" (the secret is larger), "lower\n", or "invalid\n" when the turn is
//               not a number; after a right guess or the last allowed one the episode ends
//   answer      binary search from the middle, as turns: "16" "higher\n" "24" "lower\n" "20"
//   info        the secret
//
// In token terms a rollout reads "guess 1-32\n16<eos>higher\n24<eos>lower\n20<eos>".
// A turn counts as a guess when its trimmed text is an integer (at most 32 bytes, valid
// UTF-8, no NUL); other turns are wasted. Reward: 0 when no guess within max_turns is right;
// 1 when the right guess comes within B = floor(log2(max_number)) + 1 turns (what binary
// search needs at worst, so optimal play always earns 1); after that it falls linearly,
// 1 - 0.8 * (t - B) / (max_turns - B + 1) for a right guess at turn t > B (never below 0.2).
// Metrics: found, turns (model turns until the right guess, or all of them), invalid.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/builtin.h"
#include "env/env_impl.h"
#include "env/text.h"

#define MAX_GUESS_BYTES 32

typedef struct {
    int max_number, max_turns;
    int binary_turns;  // B: worst case of binary search over 1..max_number
    double eval_fraction;
} Guess;

static const char *const METRICS[] = {"found", "turns", "invalid", NULL};

static int bit_length(int n) {
    int b = 0;
    for (; n > 0; n >>= 1) b++;
    return b;
}

static int generate(const Env *env, Rng *rng, Problem *out, ErrorBuf *err) {
    const Guess *g = env->state;
    int secret = 1 + (int)rng_below(rng, (uint64_t)g->max_number);
    StrBuf prompt = {0}, info = {0};
    sb_printf(&prompt, "guess 1-%d\n", g->max_number);
    sb_printf(&info, "%d", secret);
    out->prompt = sb_take(&prompt);
    out->info = sb_take(&info);
    // The reference conversation: binary search.
    char *texts[2 * 64];
    TurnRole roles[2 * 64];
    int n = 0, lo = 1, hi = g->max_number;
    for (;;) {
        int guess = lo + (hi - lo) / 2;
        StrBuf t = {0};
        sb_printf(&t, "%d", guess);
        roles[n] = TURN_MODEL;
        texts[n++] = sb_take(&t);
        if (guess == secret) break;
        roles[n] = TURN_ENV;
        texts[n++] = xstrdup(secret > guess ? "higher\n" : "lower\n");
        if (secret > guess) lo = guess + 1;
        else hi = guess - 1;
    }
    env_set_reference_turns(out, n, roles, texts);
    for (int i = 0; i < n; i++) free(texts[i]);
    return 0;
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Guess *g = env->state;
    return env_generate(env, split, index, g->eval_fraction, generate, out, err);
}

// The guess a turn makes: 0 and *value, or -1 when the turn is not a number.
static int read_guess(const Turn *turn, int64_t *value) {
    if (text_check(turn->text, turn->len, MAX_GUESS_BYTES, 0) != TEXT_OK) return -1;
    return text_parse_int(text_trim(turn->text, turn->len), value);
}

static int read_secret(const Problem *p, int64_t *secret) {
    return p->info ? text_parse_int((Span){p->info, strlen(p->info)}, secret) : -1;
}

static int respond(Env *env, const Problem *p, const Transcript *t, char **reply, size_t *reply_len) {
    const Guess *g = env->state;
    *reply = NULL;
    *reply_len = 0;
    int64_t secret, guess;
    if (!t || !t->turns || t->n_turns < 1 || t->turns[t->n_turns - 1].role != TURN_MODEL || read_secret(p, &secret))
        return 0;
    int valid = read_guess(&t->turns[t->n_turns - 1], &guess) == 0;
    if (valid && guess == secret) return 0;
    if (env_model_turns(t) >= g->max_turns) return 0;
    const char *text = !valid ? "invalid\n" : secret > guess ? "higher\n" : "lower\n";
    *reply = xstrdup(text);
    *reply_len = strlen(text);
    return 1;
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Guess *g = env->state;
    int64_t secret, guess;
    int turns = 0, invalid = 0, found = 0;
    if (read_secret(p, &secret) == 0 && t && t->turns) {
        for (int i = 0; i < t->n_turns && turns < g->max_turns && !found; i++) {
            if (t->turns[i].role != TURN_MODEL) continue;
            turns++;
            if (read_guess(&t->turns[i], &guess) != 0) invalid++;
            else found = guess == secret;
        }
    }
    double reward = 0;
    if (found) {
        int over = turns - g->binary_turns;
        reward = over <= 0 ? 1.0 : 1.0 - 0.8 * over / (double)(g->max_turns - g->binary_turns + 1);
    }
    env_metrics_fill(metrics, METRICS, (double[]){found, turns, invalid});
    return reward;
}

Env *env_guess_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    int max_number = cfg->guess.max_number, max_turns = cfg->guess.max_turns;
    if (max_number < 2 || max_turns < bit_length(max_number) || max_turns > 64) {
        error_set(err, "env guess: bad settings: need env.guess.max_number >= 2 and env.guess.max_turns between "
                       "floor(log2(max_number)) + 1 = %d and 64", bit_length(max_number));
        return NULL;
    }
    Guess *g = xcalloc(1, sizeof *g);
    g->max_number = max_number;
    g->max_turns = max_turns;
    g->binary_turns = bit_length(max_number);
    g->eval_fraction = cfg->eval_fraction;
    Env *env = env_alloc("guess", max_turns, seed, g, METRICS);
    env->problem = problem;
    env->respond = respond;
    env->score = score;
    return env;
}
