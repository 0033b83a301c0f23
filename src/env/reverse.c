// reverse-text, as prime-rl's example environment: the model must write a short random text
// backwards; the reward is how similar its output is to the reversed text.
//
//   prompt  "rev <text>="        e.g. "rev hello="
//   answer  the text reversed    e.g. "olleh"
//   info    the reversed text
//
// The text has env.reverse.min_chars..max_chars characters drawn uniformly from
// env.reverse.alphabet (its first and last character are never spaces, so trimming the
// output cannot change the answer). Reward: the longest-common-subsequence ratio
// 2 * LCS(output, answer) / (len(output) + len(answer)) over bytes, after trimming whitespace
// around the output: in [0, 1] and 1 only for an exact match (the idea of difflib's
// SequenceMatcher.ratio, exact LCS here). Output longer than 4 * len(answer) + 16 bytes
// scores 0 (its ratio would be below 0.4 anyway), as does empty, NUL-holding or invalid UTF-8.
// Metrics: exact, format_ok (the output passed that guard), output_chars.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/builtin.h"
#include "env/env_config.h"
#include "env/env_impl.h"
#include "env/text.h"

typedef struct {
    int min_chars, max_chars;
    char alphabet[96];
    char visible[96];  // the alphabet without spaces (for the first and last character)
    double eval_fraction;
} Reverse;

static const char *const METRICS[] = {"exact", "format_ok", "output_chars", NULL};

static int generate(const Env *env, Rng *rng, Problem *out, ErrorBuf *err) {
    const Reverse *r = env->state;
    int n = r->min_chars + (int)rng_below(rng, (uint64_t)(r->max_chars - r->min_chars + 1));
    size_t na = strlen(r->alphabet), nv = strlen(r->visible);
    char *text = xmalloc((size_t)n + 1);
    for (int i = 0; i < n; i++) {
        int edge = i == 0 || i == n - 1;
        text[i] = edge ? r->visible[rng_below(rng, nv)] : r->alphabet[rng_below(rng, na)];
    }
    text[n] = '\0';
    char *reversed = xmalloc((size_t)n + 1);
    for (int i = 0; i < n; i++) reversed[i] = text[n - 1 - i];
    reversed[n] = '\0';
    StrBuf prompt = {0};
    sb_printf(&prompt, "rev %s=", text);
    out->prompt = sb_take(&prompt);
    out->answer = reversed;
    out->info = xstrdup(reversed);
    free(text);
    return 0;
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Reverse *r = env->state;
    return env_generate(env, split, index, r->eval_fraction, generate, out, err);
}

// Length of the longest common subsequence of a and b (two rows of the usual table).
static size_t lcs_length(const char *a, size_t na, const char *b, size_t nb) {
    size_t *prev = xcalloc(nb + 1, sizeof(size_t)), *cur = xcalloc(nb + 1, sizeof(size_t));
    for (size_t i = 1; i <= na; i++) {
        cur[0] = 0;
        for (size_t j = 1; j <= nb; j++) {
            if (a[i - 1] == b[j - 1]) cur[j] = prev[j - 1] + 1;
            else cur[j] = prev[j] > cur[j - 1] ? prev[j] : cur[j - 1];
        }
        size_t *t = prev;
        prev = cur;
        cur = t;
    }
    size_t n = prev[nb];
    free(prev);
    free(cur);
    return n;
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Turn *turn = env_last_model_turn(t);
    const char *want = p->info ? p->info : "";
    size_t nw = strlen(want);
    double exact = 0, format_ok = 0, reward = 0, chars = turn ? (double)turn->len : 0;
    if (turn && text_check(turn->text, turn->len, 4 * nw + 16, 0) == TEXT_OK) {
        format_ok = 1;
        Span out = text_trim(turn->text, turn->len);
        exact = text_span_equal(out, (Span){want, nw});
        reward = exact ? 1.0 : 2.0 * (double)lcs_length(out.s, out.len, want, nw) / (double)(out.len + nw);
    }
    env_metrics_fill(metrics, METRICS, (double[]){exact, format_ok, chars});
    return reward;
}

Env *env_reverse_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    Reverse *r = xcalloc(1, sizeof *r);
    r->min_chars = cfg->reverse.min_chars;
    r->max_chars = cfg->reverse.max_chars;
    r->eval_fraction = cfg->eval_fraction;
    snprintf(r->alphabet, sizeof r->alphabet, "%s", cfg->reverse.alphabet);
    size_t nv = 0;
    for (const char *c = r->alphabet; *c; c++)
        if (*c != ' ') r->visible[nv++] = *c;
    if (r->min_chars < 1 || r->min_chars > r->max_chars || strlen(r->alphabet) < 2 || nv == 0) {
        free(r);
        error_set(err, "env reverse: bad settings (env.reverse.min_chars/max_chars/alphabet): need 1 <= min_chars <= "
                       "max_chars and an alphabet of two or more characters, not only spaces");
        return NULL;
    }
    Env *env = env_alloc("reverse", 1, seed, r, METRICS);
    env->problem = problem;
    env->score = score;
    return env;
}
