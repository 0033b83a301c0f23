// stories: RL for a pretrained base model of TinyStories (llama2.c's stories260K with its
// 512-token vocabulary), which cannot follow instructions but can continue a story. The
// prompt is a story opening that introduces a character and an object; the reward is a
// property the continuation can earn: that it keeps to the opening's character and object.
//
//   prompt  an opening from a few templates, e.g.
//           "Once upon a time, there was a little girl named Lily. She loved her red ball."
//   answer  a plausible continuation that uses both, e.g.
//           " Lily took the ball to the park. She played with the ball all day. ..."
//   info    "<name>|<object>"     e.g. "Lily|ball"
//
// Reward = (share of the two target words that occur in the continuation), each matched as a
// whole word, case-insensitively, plural or possessive allowed ("balls", "Lily's"). Guards
// (any failing one scores 0): at least env.stories.min_words words, at most
// env.stories.max_chars bytes, no runaway repetition, valid UTF-8 without NUL.
// Measured with scripts/stories_baseline.py (stories260K, temperature 1, 200 problems x 8
// samples): mean reward 0.385 with 64-token continuations (name 0.44, object 0.33; 15 % of
// samples earn 1, 38 % earn 0) and 0.53 with 128 tokens; 97 % of the groups of 8 have
// different rewards, so GRPO has a signal from the start and room to improve.
// Metrics: name, object (each 0/1), words, format_ok (the guards passed).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/builtin.h"
#include "env/env_impl.h"
#include "env/text.h"

typedef struct {
    int min_words, max_chars;
    double eval_fraction;
} Stories;

typedef struct {
    const char *name;
    int girl;
} Character;

static const Character NAMES[] = {
    {"Lily", 1}, {"Tom", 0},  {"Ben", 0},  {"Sue", 1},  {"Mia", 1},  {"Max", 0},  {"Tim", 0},
    {"Anna", 1}, {"Sam", 0},  {"Lucy", 1}, {"Jack", 0}, {"Zoe", 1},  {"Amy", 1},  {"Leo", 0},
    {"Kate", 1}, {"Mark", 0}, {"Sara", 1}, {"Jake", 0}, {"Ella", 1}, {"Joe", 0},
};
static const char *const OBJECTS[] = {"ball", "doll", "kite", "car",  "hat",  "book", "box",     "cake",
                                      "toy",  "boat", "bike", "drum", "train", "truck", "balloon"};
static const char *const COLORS[] = {"red", "blue", "green", "yellow", "pink", "shiny"};
#define COUNT(a) ((uint64_t)(sizeof(a) / sizeof((a)[0])))

// Openings and continuations: %1$s name, %2$s object, %3$s color, %4$s She/He, %5$s her/his,
// %6$s girl/boy. Every template uses the name and the object.
static const char *const OPENINGS[] = {
    "Once upon a time, there was a little %6$s named %1$s. %4$s loved %5$s %3$s %2$s.",
    "One day, %1$s found a %3$s %2$s in the park. %4$s was very happy.",
    "%1$s had a %3$s %2$s. %4$s played with it every day.",
    "Once upon a time, %1$s went to the park with %5$s %3$s %2$s.",
};
static const char *const CONTINUATIONS[] = {
    " One day, %1$s could not find the %2$s. %4$s looked everywhere. At last, %1$s found the %2$s under the "
    "bed and smiled.",
    " %1$s showed the %2$s to %5$s friend. They played with the %2$s together all day. %1$s was very happy.",
    " %1$s took the %2$s outside to play. The sun was warm and the sky was blue. %1$s and the %2$s had a lot of fun.",
};

static const char *const METRICS[] = {"name", "object", "words", "format_ok", NULL};

// Formats a template; the compiler cannot check a format from a table, so the arguments are
// always the same six strings.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static char *fill(const char *tmpl, const Character *c, const char *object, const char *color) {
    StrBuf b = {0};
    sb_printf(&b, tmpl, c->name, object, color, c->girl ? "She" : "He", c->girl ? "her" : "his",
              c->girl ? "girl" : "boy");
    return sb_take(&b);
}
#pragma GCC diagnostic pop

static int generate(const Env *env, Rng *rng, Problem *out, ErrorBuf *err) {
    const Character *c = &NAMES[rng_below(rng, COUNT(NAMES))];
    const char *object = OBJECTS[rng_below(rng, COUNT(OBJECTS))];
    const char *color = COLORS[rng_below(rng, COUNT(COLORS))];
    out->prompt = fill(OPENINGS[rng_below(rng, COUNT(OPENINGS))], c, object, color);
    out->answer = fill(CONTINUATIONS[rng_below(rng, COUNT(CONTINUATIONS))], c, object, color);
    StrBuf info = {0};
    sb_printf(&info, "%s|%s", c->name, object);
    out->info = sb_take(&info);
    return 0;
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Stories *s = env->state;
    return env_generate(env, split, index, s->eval_fraction, generate, out, err);
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Stories *s = env->state;
    const Turn *turn = env_last_model_turn(t);
    double name = 0, object = 0, words = 0, format_ok = 0;
    const char *bar = p->info ? strchr(p->info, '|') : NULL;
    if (bar && turn) {
        words = text_count_words(turn->text, turn->len);
        if (text_check(turn->text, turn->len, (size_t)s->max_chars, 1) == TEXT_OK && words >= s->min_words) {
            char who[32];
            snprintf(who, sizeof who, "%.*s", (int)(bar - p->info), p->info);
            format_ok = 1;
            name = text_has_word(turn->text, turn->len, who);
            object = text_has_word(turn->text, turn->len, bar + 1);
        }
    }
    env_metrics_fill(metrics, METRICS, (double[]){name, object, words, format_ok});
    return (name + object) / 2.0;
}

Env *env_stories_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    Stories *s = xcalloc(1, sizeof *s);
    s->min_words = cfg->stories.min_words;
    s->max_chars = cfg->stories.max_chars;
    s->eval_fraction = cfg->eval_fraction;
    Env *env = env_alloc("stories", 1, seed, s, METRICS);
    env->problem = problem;
    env->score = score;
    return env;
}
