// The `code` environment (see code.h): JSONL loading and splits, prompts, program extraction,
// output comparison, and scoring through a sandbox pool.
#include "env/code.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/json.h"
#include "core/json_lines.h"
#include "core/log.h"
#include "core/rng.h"
#include "env/env_config.h"

static const char *const METRIC_NAMES[] = {"tests_passed", "tests_total", "syntax_error", "timeouts",
                                           "crashes",      "fenced",      "sandbox_errors", "run_ms", NULL};
enum { M_PASSED, M_TOTAL, M_SYNTAX, M_TIMEOUTS, M_CRASHES, M_FENCED, M_SANDBOX, M_RUN_MS, M_COUNT };

typedef struct {
    char *input, *output;
    size_t input_len, output_len;
} CodeTest;

typedef struct {
    char *prompt;     // as in the file
    char *reference;  // NULL when absent
    CodeTest *tests;
    int n_tests;
    int line;         // 1-based line in the file
    int split;        // ENV_SPLIT_TRAIN or ENV_SPLIT_EVAL
    uint64_t hash;    // of the prompt
} CodeProblem;

// One score_begin: a pool ticket per test, or an immediate result.
typedef struct {
    int used;
    int immediate;
    double reward;
    double m[M_COUNT];
    int problem;
    int n;
    int tickets[CODE_MAX_TESTS];
    int done[CODE_MAX_TESTS];
    SandboxResult results[CODE_MAX_TESTS];
} Scoring;

typedef struct {
    CodeProblem *problems;
    int n_problems;
    int *split[2];     // problem indices of each split, permuted by (seed, split)
    int split_n[2];
    char language[32]; // "python", or the interpreter's name
    SandboxConfig sandbox;
    unsigned layers;
    int max_parallel;
    SandboxPool *pool; // made on first use (ranks that only read prompts never start one)
    Scoring *scorings;
    int n_scorings;
    int warned_setup;
    char path[CFG_STR_MAX];  // the problems file (its tests are the expected outputs)
} CodeState;

// ---------------------------------------------------------------------------------------------
// Text helpers

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a, then mixed
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return rng_hash64(h);
}

static int is_eval_hash(uint64_t h, double fraction) { return (double)(h >> 11) * 0x1.0p-53 < fraction; }

int code_extract_program(const char *text, size_t len, const char **program, size_t *program_len) {
    *program = text;
    *program_len = len;
    if (!text || len < 3) return 0;
    const char *open = memmem(text, len, "```", 3);
    if (!open) return 0;
    const char *end = text + len;
    const char *p = open + 3;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *close_inline = memmem(p, (size_t)((nl ? nl : end) - p), "```", 3);
    if (close_inline) {  // ```print(1)``` on one line
        *program = p;
        *program_len = (size_t)(close_inline - p);
        return 1;
    }
    if (!nl) {  // a fence and nothing after its info string
        *program = end;
        *program_len = 0;
        return 1;
    }
    const char *body = nl + 1;
    const char *close = NULL;
    for (const char *q = body; q + 3 <= end; q++) {  // a closing fence at the start of a line
        q = memmem(q, (size_t)(end - q), "```", 3);
        if (!q) break;
        if (q == body || q[-1] == '\n') {
            close = q;
            break;
        }
    }
    if (!close) close = memmem(body, (size_t)(end - body), "```", 3);
    *program = body;
    *program_len = (size_t)((close ? close : end) - body);
    return 1;
}

// The next line of [*p, end) without trailing whitespace; advances *p. 0 at the end.
static int next_line(const char **p, const char *end, const char **line, size_t *line_len) {
    if (*p >= end) return 0;
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    *line = s;
    *line_len = (size_t)(e - s);
    return 1;
}

// Length of text without trailing blank lines (whitespace only).
static size_t without_trailing_blank(const char *s, size_t n) {
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) n--;
    return n;
}

int code_output_matches(const char *got, size_t got_len, const char *want, size_t want_len) {
    if (!got) got = "", got_len = 0;
    if (!want) want = "", want_len = 0;
    got_len = without_trailing_blank(got, got_len);
    want_len = without_trailing_blank(want, want_len);
    const char *a = got, *ae = got + got_len, *b = want, *be = want + want_len;
    for (;;) {
        const char *la, *lb;
        size_t na, nb;
        int ha = next_line(&a, ae, &la, &na), hb = next_line(&b, be, &lb, &nb);
        if (!ha || !hb) return ha == hb;
        if (na != nb || memcmp(la, lb, na) != 0) return 0;
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

static void problem_clear(CodeProblem *p) {
    free(p->prompt);
    free(p->reference);
    for (int i = 0; i < p->n_tests; i++) {
        free(p->tests[i].input);
        free(p->tests[i].output);
    }
    free(p->tests);
    memset(p, 0, sizeof *p);
}

static char *dup_bytes(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

// Parses one line. 0, or -1 with err naming path:line. *split_out: -1 (by hash), or a split.
static int parse_problem(const char *path, int line, const char *text, size_t len, CodeProblem *out, int *split_out,
                         ErrorBuf *err) {
    ErrorBuf jerr;
    Json *obj = json_parse(text, len, &jerr);
    if (!obj) return error_set(err, "%s:%d: %s", path, line, jerr.msg);
    memset(out, 0, sizeof *out);
    out->line = line;
    *split_out = -1;
    int rc = -1;
    const Json *prompt = json_get(obj, "prompt"), *tests = json_get(obj, "tests"), *ref = json_get(obj, "reference");
    const Json *split = json_get(obj, "split");
    if (obj->type != JSON_OBJECT) {
        error_set(err, "%s:%d: expected a JSON object like {\"prompt\": \"...\", \"tests\": [{\"input\": \"...\", "
                  "\"output\": \"...\"}]}", path, line);
    } else if (!prompt || prompt->type != JSON_STRING || prompt->string_len == 0 ||
               strlen(prompt->string) != prompt->string_len) {
        error_set(err, "%s:%d: \"prompt\" must be a non-empty string without NUL characters", path, line);
    } else if (!tests || tests->type != JSON_ARRAY || tests->count < 1 || tests->count > CODE_MAX_TESTS) {
        error_set(err, "%s:%d: \"tests\" must be an array of 1 to %d test objects {\"input\": \"...\", \"output\": "
                  "\"...\"}", path, line, CODE_MAX_TESTS);
    } else if (ref && (ref->type != JSON_STRING || strlen(ref->string) != ref->string_len)) {
        error_set(err, "%s:%d: \"reference\" must be a string without NUL characters (a correct program)", path, line);
    } else if (split && (split->type != JSON_STRING ||
                         (strcmp(split->string, "train") != 0 && strcmp(split->string, "eval") != 0))) {
        error_set(err, "%s:%d: \"split\" must be \"train\" or \"eval\"", path, line);
    } else {
        rc = 0;
        for (int i = 0; i < tests->count && rc == 0; i++) {
            const Json *t = &tests->items[i];
            const Json *in = json_get(t, "input"), *want = json_get(t, "output");
            if (t->type != JSON_OBJECT || !in || in->type != JSON_STRING || !want || want->type != JSON_STRING)
                rc = error_set(err, "%s:%d: test %d must be an object with string \"input\" and \"output\"", path,
                               line, i + 1);
        }
        if (rc == 0) {
            out->prompt = xstrdup(prompt->string);
            out->reference = ref ? xstrdup(ref->string) : NULL;
            out->hash = hash_bytes(prompt->string, prompt->string_len);
            out->n_tests = tests->count;
            out->tests = xcalloc((size_t)tests->count, sizeof *out->tests);
            for (int i = 0; i < tests->count; i++) {
                const Json *in = json_get(&tests->items[i], "input"), *want = json_get(&tests->items[i], "output");
                out->tests[i].input = dup_bytes(in->string, in->string_len);
                out->tests[i].input_len = in->string_len;
                out->tests[i].output = dup_bytes(want->string, want->string_len);
                out->tests[i].output_len = want->string_len;
            }
            if (split) *split_out = strcmp(split->string, "eval") == 0 ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN;
        }
    }
    json_free(obj);
    return rc;
}

typedef struct {
    CodeState *s;
    int cap;
    double eval_fraction;
} LoadCtx;

static int load_line(void *ctx, const char *path, int line, const char *text, size_t len, ErrorBuf *err) {
    LoadCtx *c = ctx;
    CodeState *s = c->s;
    if (s->n_problems == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        s->problems = xrealloc(s->problems, sizeof(CodeProblem) * (size_t)c->cap);
    }
    int split = -1;
    if (parse_problem(path, line, text, len, &s->problems[s->n_problems], &split, err)) return -1;
    CodeProblem *p = &s->problems[s->n_problems];
    p->split = split >= 0 ? split : is_eval_hash(p->hash, c->eval_fraction) ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN;
    s->n_problems++;
    return 0;
}

static int load_problems(CodeState *s, const char *path, double eval_fraction, ErrorBuf *err) {
    LoadCtx c = {s, 0, eval_fraction};
    ErrorBuf ferr;
    // (no limit on a line but the file's: a problem's tests may be long)
    if (json_lines_read(path, CODE_MAX_FILE_BYTES, CODE_MAX_FILE_BYTES, "the file size limit", load_line, &c, &ferr) <
        0)
        return error_set(err, "env.code.path: %s", ferr.msg);
    if (s->n_problems == 0) return error_set(err, "env.code.path: %s holds no problems", path);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Env callbacks

static CodeState *state_of(Env *env) { return env->state; }

static int code_problem(Env *env, EnvSplit split, uint64_t index, Problem *out, ErrorBuf *err) {
    CodeState *s = state_of(env);
    memset(out, 0, sizeof *out);
    if (split != ENV_SPLIT_TRAIN && split != ENV_SPLIT_EVAL) return error_set(err, "code: unknown split %d", (int)split);
    int n = s->split_n[split];
    const CodeProblem *p = &s->problems[s->split[split][index % (uint64_t)n]];
    const char *lang = s->language;
    int is_python = strcmp(lang, "python") == 0;
    size_t size = strlen(p->prompt) + 512;
    out->prompt = xmalloc(size);
    snprintf(out->prompt, size,
             "%s\n\nWrite a %s program that reads the input from standard input and prints the answer to standard "
             "output. Reply with the complete program in one ```%s code block.",
             p->prompt, is_python ? "Python 3" : lang, lang);
    if (p->reference) {
        size_t rl = strlen(p->reference);
        size = rl + strlen(lang) + 16;
        out->answer = xmalloc(size);
        snprintf(out->answer, size, "```%s\n%s%s```", lang, p->reference,
                 rl && p->reference[rl - 1] == '\n' ? "" : "\n");
    }
    char info[32];
    snprintf(info, sizeof info, "%d", (int)(p - s->problems));
    out->info = xstrdup(info);
    out->where = xmalloc(strlen(s->path) + 16);
    sprintf(out->where, "%s:%d", s->path, p->line);
    out->id = p->hash;
    return 0;
}

static int code_problem_count(const Env *env, EnvSplit split) {
    const CodeState *s = env->state;
    return s->split_n[split == ENV_SPLIT_EVAL];
}

// The problem a Problem refers to (by its info, checked against its id), or -1.
static int find_problem(const CodeState *s, const Problem *problem) {
    if (!problem || !problem->info) return -1;
    char *end;
    errno = 0;
    long i = strtol(problem->info, &end, 10);
    if (errno || end == problem->info || *end || i < 0 || i >= s->n_problems) return -1;
    return s->problems[i].hash == problem->id ? (int)i : -1;
}

static const Turn *last_model_turn(const Transcript *t) {
    if (!t || !t->turns) return NULL;
    for (int i = t->n_turns - 1; i >= 0; i--)
        if (t->turns[i].role == TURN_MODEL) return &t->turns[i];
    return NULL;
}

// Whether every directory above path lets others through and path lets others read it.
static int readable_by_others(const char *path) {
    char real[PATH_MAX];
    if (!realpath(path, real)) return 1;
    struct stat st;
    for (char *slash = strchr(real + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        const int pass = stat(real, &st) == 0 && (st.st_mode & S_IXOTH);
        *slash = '/';
        if (!pass) return 0;
    }
    return stat(real, &st) == 0 && (st.st_mode & S_IROTH);
}

// Only Landlock keeps a program from reading files its user may read: the problems file among
// them, whose tests hold the expected outputs (a program could print them without solving).
static void warn_readable_tests(const CodeState *s, unsigned layers) {
    if (layers & SANDBOX_LAYER_LANDLOCK) return;
    if ((layers & SANDBOX_LAYER_UID) && !readable_by_others(s->path)) return;
    LOG_WARN("code: without Landlock a program can read %s, and its tests' expected outputs: it could score without "
             "solving. %s", s->path, (layers & SANDBOX_LAYER_UID) ? "Make the file unreadable to others (chmod 600)"
             : "Run on a kernel with Landlock (5.13+), or as root so programs get a uid of their own, with the file "
               "unreadable to others (chmod 600)");
}

static void ensure_pool(Env *env) {
    CodeState *s = state_of(env);
    if (s->pool) return;
    ErrorBuf err;
    s->pool = sandbox_pool_create(&s->sandbox, s->max_parallel, &err);
    CHECK(s->pool, "see env.code.* (asyncrl defaults lists them)", "code: cannot start the sandbox pool: %s", err.msg);
    char names[128];
    LOG_INFO("code: sandbox pool of %d, isolation layers %s", sandbox_pool_max_parallel(s->pool),
             sandbox_layers_string(sandbox_pool_layers(s->pool), names, sizeof names));
    warn_readable_tests(s, sandbox_pool_layers(s->pool));
}

static int new_scoring(CodeState *s) {
    for (int i = 0; i < s->n_scorings; i++)
        if (!s->scorings[i].used) return i;
    int cap = s->n_scorings ? s->n_scorings * 2 : 16;
    s->scorings = xrealloc(s->scorings, sizeof(Scoring) * (size_t)cap);
    memset(s->scorings + s->n_scorings, 0, sizeof(Scoring) * (size_t)(cap - s->n_scorings));
    int i = s->n_scorings;
    s->n_scorings = cap;
    return i;
}

static int code_score_begin(Env *env, const Problem *problem, const Transcript *transcript) {
    CodeState *s = state_of(env);
    int id = new_scoring(s);
    Scoring *sc = &s->scorings[id];
    memset(sc, 0, sizeof *sc);
    sc->used = 1;
    sc->problem = find_problem(s, problem);
    const Turn *turn = last_model_turn(transcript);
    const char *program = NULL;
    size_t program_len = 0;
    if (sc->problem >= 0 && turn && turn->text && turn->len > 0 && turn->len <= ENV_MAX_OUTPUT_BYTES)
        sc->m[M_FENCED] = code_extract_program(turn->text, turn->len, &program, &program_len);
    if (sc->problem < 0) {
        LOG_WARN("code: score called with a problem this environment did not make (info \"%s\")",
                 problem && problem->info ? problem->info : "(none)");
    }
    size_t blank = 0;
    while (blank < program_len && (program[blank] == ' ' || program[blank] == '\n' || program[blank] == '\t' ||
                                   program[blank] == '\r'))
        blank++;
    if (sc->problem < 0 || blank == program_len) {  // nothing to run: 0 at once
        sc->immediate = 1;
        sc->m[M_TOTAL] = sc->problem >= 0 ? s->problems[sc->problem].n_tests : 0;
        return id;
    }
    ensure_pool(env);
    const CodeProblem *p = &s->problems[sc->problem];
    sc->n = p->n_tests;
    for (int i = 0; i < p->n_tests; i++)
        sc->tickets[i] = sandbox_pool_submit(s->pool, program, program_len, p->tests[i].input, p->tests[i].input_len);
    return id;
}

static int syntax_error(const SandboxResult *r) {
    if (r->reason != SANDBOX_CRASHED || !r->err) return 0;
    return memmem(r->err, r->err_len, "SyntaxError", 11) || memmem(r->err, r->err_len, "IndentationError", 16) ||
           memmem(r->err, r->err_len, "TabError", 8);
}

static void fill_metrics(const double *m, EnvMetrics *metrics) {
    if (!metrics) return;
    for (int i = 0; METRIC_NAMES[i]; i++) {
        if (metrics->count < 0 || metrics->count >= ENV_MAX_METRICS) return;
        snprintf(metrics->names[metrics->count], ENV_NAME_MAX, "%s", METRIC_NAMES[i]);
        metrics->values[metrics->count++] = m[i];
    }
}

static int code_score_poll(Env *env, int ticket, double *reward, EnvMetrics *metrics) {
    CodeState *s = state_of(env);
    if (ticket < 0 || ticket >= s->n_scorings || !s->scorings[ticket].used) return -1;
    Scoring *sc = &s->scorings[ticket];
    if (!sc->immediate) {
        int pending = 0;
        for (int i = 0; i < sc->n; i++) {
            if (sc->done[i]) continue;
            int rc = sandbox_pool_poll(s->pool, sc->tickets[i], &sc->results[i]);
            if (rc == 1) sc->done[i] = 1;
            else if (rc < 0) sc->done[i] = 1, sc->results[i].reason = SANDBOX_SETUP_ERROR;  // cannot happen
            else pending = 1;
        }
        if (pending) return 0;
        const CodeProblem *p = &s->problems[sc->problem];
        double passed = 0, wall = 0;
        for (int i = 0; i < sc->n; i++) {
            const SandboxResult *r = &sc->results[i];
            if (r->reason == SANDBOX_OK && !r->out_truncated &&
                code_output_matches(r->out, r->out_len, p->tests[i].output, p->tests[i].output_len))
                passed++;
            if (syntax_error(r)) sc->m[M_SYNTAX] = 1;
            if (r->reason == SANDBOX_TIMEOUT) sc->m[M_TIMEOUTS]++;
            if (r->reason != SANDBOX_OK && r->reason != SANDBOX_TIMEOUT && r->reason != SANDBOX_SETUP_ERROR)
                sc->m[M_CRASHES]++;
            if (r->reason == SANDBOX_SETUP_ERROR) {
                sc->m[M_SANDBOX]++;
                if (!s->warned_setup++) LOG_WARN("code: a sandbox failed (the run scores 0): %s", r->detail);
            }
            wall += r->wall_s;
            sandbox_result_free(&sc->results[i]);
        }
        sc->m[M_PASSED] = passed;
        sc->m[M_TOTAL] = sc->n;
        sc->m[M_RUN_MS] = sc->n ? 1000.0 * wall / sc->n : 0;
        sc->reward = sc->n ? passed / sc->n : 0;
    }
    if (reward) *reward = sc->reward;
    fill_metrics(sc->m, metrics);
    sc->used = 0;
    return 1;
}

static double code_score(Env *env, const Problem *problem, const Transcript *transcript, EnvMetrics *metrics) {
    CodeState *s = state_of(env);
    int ticket = code_score_begin(env, problem, transcript);
    Scoring *sc = &s->scorings[ticket];
    for (int i = 0; i < sc->n; i++) {
        if (sandbox_pool_wait(s->pool, sc->tickets[i], &sc->results[i]) != 0) sc->results[i].reason = SANDBOX_SETUP_ERROR;
        sc->done[i] = 1;
    }
    double reward = 0;
    code_score_poll(env, ticket, &reward, metrics);
    return reward;
}

static void code_destroy(Env *env) {
    CodeState *s = state_of(env);
    if (s) {
        sandbox_pool_destroy(s->pool);
        for (int i = 0; i < s->n_scorings; i++)
            for (int j = 0; j < CODE_MAX_TESTS; j++) sandbox_result_free(&s->scorings[i].results[j]);
        free(s->scorings);
        for (int i = 0; i < s->n_problems; i++) problem_clear(&s->problems[i]);
        free(s->problems);
        free(s->split[0]);
        free(s->split[1]);
        free(s);
    }
    free(env);
}

// ---------------------------------------------------------------------------------------------
// Construction

static void sandbox_config_from(const EnvConfig *cfg, SandboxConfig *sb, char *language, size_t language_size) {
    sandbox_config_defaults(sb);
    snprintf(sb->interpreter, sizeof sb->interpreter, "%s", cfg->code.interpreter);
    snprintf(sb->tmp_root, sizeof sb->tmp_root, "%s", cfg->code.tmp_dir);
    sb->timeout_s = cfg->code.timeout_s;
    sb->memory_mb = cfg->code.memory_mb;
    sb->file_mb = cfg->code.file_mb;
    sb->nproc = cfg->code.nproc;
    sb->max_output_bytes = (size_t)cfg->code.max_output_bytes;
    sb->uid_base = (uint32_t)cfg->code.uid_base;
    sb->uid_count = (uint32_t)cfg->code.uid_count;
    if (!cfg->code.namespaces) sb->disable |= SANDBOX_LAYER_NETNS | SANDBOX_LAYER_PIDNS | SANDBOX_LAYER_MNTNS;
    if (!cfg->code.landlock) sb->disable |= SANDBOX_LAYER_LANDLOCK;
    // The language shown to the model: the interpreter's file name ("python3" -> "python").
    char first[SANDBOX_PATH_MAX];
    snprintf(first, sizeof first, "%s", cfg->code.interpreter);
    char *sp = strpbrk(first, " \t");
    if (sp) *sp = '\0';
    const char *base = strrchr(first, '/');
    base = base ? base + 1 : first;
    if (strncmp(base, "python", 6) == 0) {
        snprintf(language, language_size, "python");
        snprintf(sb->program_name, sizeof sb->program_name, "main.py");
    } else {
        size_t n = strlen(base);
        if (n == 0) base = "program", n = 7;
        if (n >= language_size) n = language_size - 1;
        memcpy(language, base, n);
        language[n] = '\0';
        snprintf(sb->program_name, sizeof sb->program_name, "main");
    }
}

Env *env_code_create(const struct EnvConfig *cfg, uint64_t seed, ErrorBuf *err) {
    CodeState *s = xcalloc(1, sizeof *s);
    Env *env = xcalloc(1, sizeof *env);
    env->state = s;
    env->destroy = code_destroy;
    snprintf(env->name, sizeof env->name, "code");
    env->max_turns = 1;
    env->seed = seed;
    env->metric_names = METRIC_NAMES;
    env->problem = code_problem;
    env->problem_count = code_problem_count;
    env->score = code_score;
    env->score_begin = code_score_begin;
    env->score_poll = code_score_poll;
    sandbox_config_from(cfg, &s->sandbox, s->language, sizeof s->language);
    s->max_parallel = cfg->code.max_parallel;
    snprintf(s->path, sizeof s->path, "%s", cfg->code.path);
    if (sandbox_config_check(&s->sandbox, err) || sandbox_layers_for(&s->sandbox, &s->layers, err) ||
        load_problems(s, cfg->code.path, cfg->code.eval_fraction, err)) {
        code_destroy(env);
        return NULL;
    }
    for (int i = 0; i < s->n_problems; i++) {
        int split = s->problems[i].split;
        if (!s->split[split]) s->split[split] = xcalloc((size_t)s->n_problems, sizeof(int));
        s->split[split][s->split_n[split]++] = i;
    }
    if (s->split_n[ENV_SPLIT_TRAIN] == 0 || s->split_n[ENV_SPLIT_EVAL] == 0) {
        error_set(err, "env.code.path: %s has %d train and %d eval problems: both splits need one (change "
                  "env.code.eval_fraction = %g, or mark lines with \"split\": \"eval\" / \"train\")",
                  cfg->code.path, s->split_n[ENV_SPLIT_TRAIN], s->split_n[ENV_SPLIT_EVAL], cfg->code.eval_fraction);
        code_destroy(env);
        return NULL;
    }
    for (int split = 0; split < 2; split++) {  // a seeded permutation of each split
        Rng rng;
        rng_seed_tuple(&rng, 3, (uint64_t[]){seed, 0xC0DEull, (uint64_t)split});
        int *v = s->split[split];
        for (int i = s->split_n[split] - 1; i > 0; i--) {
            int j = (int)rng_below(&rng, (uint64_t)i + 1);
            int t = v[i];
            v[i] = v[j];
            v[j] = t;
        }
    }
    return env;
}

void code_env_pool_stats(Env *env, SandboxPoolStats *out) {
    CodeState *s = state_of(env);
    if (s->pool) sandbox_pool_stats(s->pool, out);
    else memset(out, 0, sizeof *out);
}

unsigned code_env_layers(Env *env) { return state_of(env)->layers; }
