// sorting: sort a short list of integers in ascending order.
//
//   prompt  "sort <numbers>="     e.g. "sort 5 3 9 3="  (env.sorting.min_len..max_len numbers in
//                                  env.sorting.min_value..max_value)
//   answer  the sorted numbers    e.g. "3 3 5 9"
//   info    the sorted numbers
//
// The output must be a list of integers separated by spaces and/or commas, optionally in
// [brackets] ("3 3 5 9", "3, 3, 5, 9", "[3,3,5,9]"); anything else scores 0. Reward 1 for the
// exact sorted list. With env.sorting.partial_credit, an output that holds exactly the given
// numbers in a wrong order earns 0.5 * (share of positions that are right), which is always
// below the exact score; other lists earn 0. Output over 16 bytes per number + 64 scores 0.
// Metrics: exact, format_ok (a list of integers), permutation (the given numbers, any order),
// position_acc (share of positions right, 0 when the length differs).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env/builtin.h"
#include "env/env_impl.h"
#include "env/text.h"

#define MAX_LEN 64

typedef struct {
    int min_len, max_len, min_value, max_value;
    int partial_credit;
    double eval_fraction;
} Sorting;

static const char *const METRICS[] = {"exact", "format_ok", "permutation", "position_acc", NULL};

static int compare_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void write_list(StrBuf *b, const int64_t *v, int n) {
    for (int i = 0; i < n; i++) sb_printf(b, "%s%lld", i ? " " : "", (long long)v[i]);
}

static int generate(const Env *env, Rng *rng, Problem *out, ErrorBuf *err) {
    const Sorting *s = env->state;
    int n = s->min_len + (int)rng_below(rng, (uint64_t)(s->max_len - s->min_len + 1));
    int64_t v[MAX_LEN];
    uint64_t span = (uint64_t)((int64_t)s->max_value - s->min_value + 1);
    for (int i = 0; i < n; i++) v[i] = s->min_value + (int64_t)rng_below(rng, span);
    StrBuf prompt = {0}, answer = {0};
    sb_printf(&prompt, "sort ");
    write_list(&prompt, v, n);
    sb_printf(&prompt, "=");
    qsort(v, (size_t)n, sizeof v[0], compare_int64);
    write_list(&answer, v, n);
    out->prompt = sb_take(&prompt);
    out->answer = sb_take(&answer);
    out->info = xstrdup(out->answer);
    return 0;
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Sorting *s = env->state;
    return env_generate(env, split, index, s->eval_fraction, generate, out, err);
}

// Parses "1 2 3", "1, 2, 3" or "[1,2,3]" into v (at most max numbers). Returns the count, or -1
// when the text is not such a list or holds more than max numbers.
static int parse_list(Span sp, int64_t *v, int max) {
    if (sp.len >= 2 && sp.s[0] == '[' && sp.s[sp.len - 1] == ']') sp = text_trim(sp.s + 1, sp.len - 2);
    int n = 0;
    size_t i = 0;
    while (i < sp.len) {
        size_t start = i;
        while (i < sp.len && sp.s[i] != ',' && !text_is_space(sp.s[i])) i++;
        if (i == start || n == max || text_parse_int((Span){sp.s + start, i - start}, &v[n]) != 0) return -1;
        n++;
        while (i < sp.len && text_is_space(sp.s[i])) i++;  // separator: spaces, at most one comma
        if (i < sp.len && sp.s[i] == ',') {
            i++;
            while (i < sp.len && text_is_space(sp.s[i])) i++;
            if (i == sp.len) return -1;  // trailing comma
        }
    }
    return n;
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Sorting *s = env->state;
    const Turn *turn = env_last_model_turn(t);
    double exact = 0, format_ok = 0, permutation = 0, position_acc = 0, reward = 0;
    int64_t want[MAX_LEN], got[MAX_LEN], got_sorted[MAX_LEN];
    int nw = p->info ? parse_list(text_trim(p->info, strlen(p->info)), want, MAX_LEN) : -1;
    int ng = -1;
    if (nw > 0 && turn && text_check(turn->text, turn->len, 16 * (size_t)nw + 64, 0) == TEXT_OK)
        ng = parse_list(text_trim(turn->text, turn->len), got, MAX_LEN);
    if (ng > 0) {
        format_ok = 1;
        if (ng == nw) {
            int right = 0;
            for (int i = 0; i < nw; i++) right += got[i] == want[i];
            position_acc = (double)right / nw;
            memcpy(got_sorted, got, sizeof(int64_t) * (size_t)ng);
            qsort(got_sorted, (size_t)ng, sizeof got_sorted[0], compare_int64);
            permutation = memcmp(got_sorted, want, sizeof(int64_t) * (size_t)nw) == 0;
            exact = right == nw;
        }
        reward = exact ? 1.0 : (s->partial_credit && permutation) ? 0.5 * position_acc : 0.0;
    }
    env_metrics_fill(metrics, METRICS, (double[]){exact, format_ok, permutation, position_acc});
    return reward;
}

Env *env_sorting_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    if (cfg->sorting.min_len < 1 || cfg->sorting.max_len > MAX_LEN || cfg->sorting.min_len > cfg->sorting.max_len ||
        cfg->sorting.min_value > cfg->sorting.max_value) {
        error_set(err, "env sorting: bad settings: need 1 <= env.sorting.min_len <= max_len <= %d and "
                       "env.sorting.min_value <= max_value", MAX_LEN);
        return NULL;
    }
    Sorting *s = xcalloc(1, sizeof *s);
    s->min_len = cfg->sorting.min_len;
    s->max_len = cfg->sorting.max_len;
    s->min_value = cfg->sorting.min_value;
    s->max_value = cfg->sorting.max_value;
    s->partial_credit = cfg->sorting.partial_credit;
    s->eval_fraction = cfg->eval_fraction;
    Env *env = env_alloc("sorting", 1, seed, s, METRICS);
    env->problem = problem;
    env->score = score;
    return env;
}
