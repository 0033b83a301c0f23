// jsonl: questions and reference answers from a JSONL file (env.jsonl.path), one JSON object
// per line:
//
//   {"prompt": "What is 7 plus 5?", "answer": "12"}
//
// "question" is accepted for "prompt" and "completion" for "answer" (the first of each pair
// present is used); the answer may also be a JSON number. Other members are ignored. The file
// is read as core/json_lines.h reads JSON Lines (blank lines skipped, a byte-order mark and
// "\r\n" line ends accepted). A line that is not valid JSON, is not an object, lacks a field, holds a
// field of the wrong type, an empty prompt or a NUL character, is longer than
// env.jsonl.max_line_bytes, or (match = numeric) whose answer holds no number, is a load error
// naming the file and line. Each problem carries its FILE:LINE (Problem.where), so that the
// orchestrator's start-up check of prompt lengths names the line of a prompt too long.
//
//   prompt  the line's prompt, as it is        answer  the line's answer, as it is
//
// Splits: with env.jsonl.eval_path the eval split is that file and the train split the main
// file without the prompts that also occur in the eval file; otherwise a line is held out
// for eval when a hash of its prompt falls below env.jsonl.eval_fraction. Both splits must be
// non-empty. Problem `index` of a split is line perm[index mod n] of a permutation seeded by
// (seed, split), so indices wrap around.
//
// Reward: match = exact: 1 when the output equals the answer with whitespace trimmed around
// both. match = numeric: 1 when the last number of the output is within
// env.jsonl.tolerance * max(1, |answer|) of the last number of the answer (output over
// 4 * answer + 256 bytes or runaway repetition scores 0). Empty, NUL-holding or invalid UTF-8
// output scores 0.
// Metrics: exact (= the reward), format_ok (exact: the output passed the guard; numeric: it
// holds a number).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/json_lines.h"
#include "core/log.h"
#include "env/builtin.h"
#include "env/env_impl.h"
#include "env/text.h"

#define JSONL_MAX_FILE_BYTES (1LL << 30)

typedef struct {
    int count;
    char **prompts, **answers;  // (count)
    char **where;               // (count) "path:line" of each
    int *order;                 // (count) a seeded permutation
} Split;

typedef struct {
    int numeric;
    double tolerance;
    Split split[2];  // ENV_SPLIT_TRAIN, ENV_SPLIT_EVAL
} Jsonl;

static const char *const METRICS[] = {"exact", "format_ok", NULL};

static void split_push(Split *s, char *prompt, char *answer, const char *path, int line) {
    s->prompts = xrealloc(s->prompts, sizeof(char *) * (size_t)(s->count + 1));
    s->answers = xrealloc(s->answers, sizeof(char *) * (size_t)(s->count + 1));
    s->where = xrealloc(s->where, sizeof(char *) * (size_t)(s->count + 1));
    s->prompts[s->count] = prompt;
    s->answers[s->count] = answer;
    s->where[s->count] = xmalloc(strlen(path) + 16);
    sprintf(s->where[s->count], "%s:%d", path, line);
    s->count++;
}

static void split_free(Split *s) {
    for (int i = 0; i < s->count; i++) {
        free(s->prompts[i]);
        free(s->answers[i]);
        free(s->where[i]);
    }
    free(s->prompts);
    free(s->answers);
    free(s->where);
    free(s->order);
    memset(s, 0, sizeof *s);
}

static void jsonl_destroy(Env *env) {
    Jsonl *j = env->state;
    if (j) {
        split_free(&j->split[0]);
        split_free(&j->split[1]);
        free(j);
    }
    free(env);
}

// The first present member of two names; NULL when neither is there.
static const Json *member(const Json *obj, const char *name, const char *alias, const char **used) {
    const Json *v = json_get(obj, name);
    *used = name;
    if (!v) v = json_get(obj, alias), *used = alias;
    return v;
}

// Whether a JSON number was written as an integer: an optional '-' and digits only.
static int is_integer_literal(const char *s) {
    if (*s == '-') s++;
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

// Parses one line into a heap prompt and answer. 0, or -1 with err naming path:line.

static int parse_line(const char *path, int line, const char *text, size_t len, int numeric, char **prompt,
                      char **answer, ErrorBuf *err) {
    ErrorBuf jerr;
    Json *obj = json_parse(text, len, &jerr);
    if (!obj) return error_set(err, "%s:%d: %s", path, line, jerr.msg);
    int rc = -1;
    const char *pname, *aname;
    const Json *p = member(obj, "prompt", "question", &pname);
    const Json *a = member(obj, "answer", "completion", &aname);
    if (obj->type != JSON_OBJECT)
        error_set(err, "%s:%d: expected a JSON object like {\"prompt\": \"...\", \"answer\": \"...\"}", path, line);
    else if (!p)
        error_set(err, "%s:%d: no \"prompt\" (or \"question\") member", path, line);
    else if (!a)
        error_set(err, "%s:%d: no \"answer\" (or \"completion\") member", path, line);
    else if (p->type != JSON_STRING || p->string_len == 0 || strlen(p->string) != p->string_len)
        error_set(err, "%s:%d: \"%s\" must be a non-empty string without NUL characters", path, line, pname);
    else if (a->type != JSON_STRING && a->type != JSON_NUMBER)
        error_set(err, "%s:%d: \"%s\" must be a string or a number", path, line, aname);
    else if (a->type == JSON_STRING && strlen(a->string) != a->string_len)
        error_set(err, "%s:%d: \"%s\" holds a NUL character", path, line, aname);
    else {
        char num[72];
        if (a->type == JSON_NUMBER && is_integer_literal(a->string)) {
            snprintf(num, sizeof num, "%s", a->string);  // as written: 20! has more digits than a double
        } else if (a->type == JSON_NUMBER && fabs(a->number) < 1e15 && a->number == floor(a->number)) {
            snprintf(num, sizeof num, "%lld", (long long)a->number);  // 80, not 8e+01 (written 8e1 or 80.0)
        } else if (a->type == JSON_NUMBER) {
            for (int prec = 1; prec <= 17; prec++) {  // shortest text that reads back the same
                snprintf(num, sizeof num, "%.*g", prec, a->number);
                if (strtod(num, NULL) == a->number) break;
            }
        }
        const char *answer_text = a->type == JSON_NUMBER ? num : a->string;
        double v;
        if (numeric && text_last_double(answer_text, strlen(answer_text), &v) != 1) {
            error_set(err, "%s:%d: env.jsonl.match is numeric but \"%s\" holds no number", path, line, aname);
        } else if (numeric && !text_is_one_number(answer_text, strlen(answer_text))) {
            error_set(err, "%s:%d: env.jsonl.match is numeric but \"%s\" is \"%.40s\", not one number (such as 12, "
                      "-3.5 or 1,234): the last number of the output is compared with it", path, line, aname,
                      answer_text);
        } else {
            *prompt = xstrdup(p->string);
            *answer = xstrdup(answer_text);
            rc = 0;
        }
    }
    json_free(obj);
    return rc;
}

typedef struct {
    Jsonl *j;
    int numeric;
    int (*pick)(const char *prompt, void *ctx);  // the split a prompt goes to
    void *pick_ctx;
} LoadCtx;

static int load_line(void *ctx, const char *path, int line, const char *text, size_t len, ErrorBuf *err) {
    LoadCtx *c = ctx;
    char *prompt = NULL, *answer = NULL;
    if (parse_line(path, line, text, len, c->numeric, &prompt, &answer, err)) return -1;
    split_push(&c->j->split[c->pick(prompt, c->pick_ctx)], prompt, answer, path, line);
    return 0;
}

// Reads every line of path; pick(prompt, ctx) decides which split each goes to.
static int load_file(const char *path, int max_line, int numeric, Jsonl *j, int (*pick)(const char *, void *),
                     void *ctx, ErrorBuf *err) {
    LoadCtx c = {j, numeric, pick, ctx};
    ErrorBuf ferr;
    if (json_lines_read(path, JSONL_MAX_FILE_BYTES, (size_t)max_line, "env.jsonl.max_line_bytes", load_line, &c,
                        &ferr) < 0)
        return error_set(err, "env.jsonl: %s", ferr.msg);
    return 0;
}

static int pick_by_hash(const char *prompt, void *ctx) {
    return env_hash_is_eval(env_content_hash(prompt, NULL), *(const double *)ctx) ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN;
}
static int pick_train(const char *prompt, void *ctx) { return ENV_SPLIT_TRAIN; }
static int pick_eval(const char *prompt, void *ctx) { return ENV_SPLIT_EVAL; }

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

// Removes from the train split every prompt that also occurs in the eval split.
static void drop_eval_prompts(Jsonl *j, const char *path) {
    Split *train = &j->split[ENV_SPLIT_TRAIN], *eval = &j->split[ENV_SPLIT_EVAL];
    uint64_t *hashes = xmalloc(sizeof(uint64_t) * (size_t)(eval->count ? eval->count : 1));
    for (int i = 0; i < eval->count; i++) hashes[i] = env_content_hash(eval->prompts[i], NULL);
    qsort(hashes, (size_t)eval->count, sizeof hashes[0], compare_u64);
    int kept = 0, dropped = 0;
    for (int i = 0; i < train->count; i++) {
        uint64_t h = env_content_hash(train->prompts[i], NULL);
        int in_eval = 0;
        if (bsearch(&h, hashes, (size_t)eval->count, sizeof h, compare_u64))  // confirm a hash match by the text
            for (int k = 0; k < eval->count && !in_eval; k++) in_eval = strcmp(eval->prompts[k], train->prompts[i]) == 0;
        if (in_eval) {
            free(train->prompts[i]);
            free(train->answers[i]);
            free(train->where[i]);
            dropped++;
        } else {
            train->prompts[kept] = train->prompts[i];
            train->answers[kept] = train->answers[i];
            train->where[kept] = train->where[i];
            kept++;
        }
    }
    train->count = kept;
    free(hashes);
    if (dropped) LOG_WARN("env.jsonl: %d prompts of %s are also in the eval file; they are left out of training", dropped, path);
}

static void shuffle(Split *s, uint64_t seed, EnvSplit which) {
    s->order = xmalloc(sizeof(int) * (size_t)s->count);
    for (int i = 0; i < s->count; i++) s->order[i] = i;
    Rng rng;
    rng_seed_tuple(&rng, 3, (uint64_t[]){seed, 0x6a736f6e6cULL, (uint64_t)which});
    for (int i = s->count - 1; i > 0; i--) {
        int k = (int)rng_below(&rng, (uint64_t)i + 1);
        int t = s->order[i];
        s->order[i] = s->order[k];
        s->order[k] = t;
    }
}

static int problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    const Jsonl *j = env->state;
    memset(out, 0, sizeof *out);
    const Split *s = &j->split[split == ENV_SPLIT_EVAL];
    if (s->count == 0) return error_set(err, "env jsonl: the %s split is empty", split == ENV_SPLIT_EVAL ? "eval" : "train");
    int item = s->order[index % (uint64_t)s->count];
    out->prompt = xstrdup(s->prompts[item]);
    out->answer = xstrdup(s->answers[item]);
    out->where = xstrdup(s->where[item]);
    out->id = env_content_hash(out->prompt, NULL);
    return 0;
}

static int problem_count(const Env *env, EnvSplit split) {
    const Jsonl *j = env->state;
    return j->split[split == ENV_SPLIT_EVAL].count;
}

static double score(Env *env, const Problem *p, const Transcript *t, EnvMetrics *metrics) {
    const Jsonl *j = env->state;
    const Turn *turn = env_last_model_turn(t);
    const char *answer = p->answer ? p->answer : "";
    size_t na = strlen(answer);
    double exact = 0, format_ok = 0;
    if (!turn) {
        // nothing to score
    } else if (!j->numeric) {
        if (text_check(turn->text, turn->len, ENV_MAX_OUTPUT_BYTES, 0) == TEXT_OK) {
            format_ok = 1;
            exact = text_span_equal(text_trim(turn->text, turn->len), text_trim(answer, na));
        }
    } else if (text_check(turn->text, turn->len, 4 * na + 256, 1) == TEXT_OK) {
        double want, got;
        format_ok = text_last_double(turn->text, turn->len, &got) == 1;
        if (format_ok && text_last_double(answer, na, &want) == 1) {
            double scale = want < 0 ? -want : want;
            double diff = got - want;
            exact = (diff < 0 ? -diff : diff) <= j->tolerance * (scale > 1 ? scale : 1);
        }
    }
    env_metrics_fill(metrics, METRICS, (double[]){exact, format_ok});
    return exact;
}

Env *env_jsonl_create(const EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    const char *path = cfg->jsonl.path, *eval_path = cfg->jsonl.eval_path;
    if (!path[0]) {
        error_set(err, "env jsonl: env.jsonl.path is empty: give the dataset file");
        return NULL;
    }
    Jsonl *j = xcalloc(1, sizeof *j);
    j->numeric = strcmp(cfg->jsonl.match, "numeric") == 0;
    j->tolerance = cfg->jsonl.tolerance;
    Env *env = env_alloc("jsonl", 1, seed, j, METRICS);
    env->destroy = jsonl_destroy;
    env->problem = problem;
    env->problem_count = problem_count;
    env->score = score;
    double fraction = cfg->jsonl.eval_fraction;
    int rc = eval_path[0] ? load_file(path, cfg->jsonl.max_line_bytes, j->numeric, j, pick_train, NULL, err) ||
                                load_file(eval_path, cfg->jsonl.max_line_bytes, j->numeric, j, pick_eval, NULL, err)
                          : load_file(path, cfg->jsonl.max_line_bytes, j->numeric, j, pick_by_hash, &fraction, err);
    if (rc == 0 && eval_path[0]) drop_eval_prompts(j, path);
    if (rc == 0 && (j->split[0].count == 0 || j->split[1].count == 0)) {
        if (eval_path[0])
            rc = error_set(err, "env jsonl: %s has no %s problems (env.jsonl.%s)", j->split[1].count ? path : eval_path,
                           j->split[1].count ? "train" : "eval", j->split[1].count ? "path" : "eval_path");
        else
            rc = error_set(err,
                           "env jsonl: %s gives %d train and %d eval problems with env.jsonl.eval_fraction = %g: both "
                           "splits need at least one (change eval_fraction or give env.jsonl.eval_path)",
                           path, j->split[0].count, j->split[1].count, fraction);
    }
    if (rc) {
        env_destroy(env);
        return NULL;
    }
    shuffle(&j->split[0], seed, ENV_SPLIT_TRAIN);
    shuffle(&j->split[1], seed, ENV_SPLIT_EVAL);
    return env;
}
