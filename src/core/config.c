// Config loading and validation (see config.h). The table below is the one place where
// every core key, its default, its range and its meaning are written down; env keys live in
// src/env/env_config.c and are handled the same way.
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEY(path, type, field, def, lo, hi, choices, doc) \
    {path, type, offsetof(Config, field), sizeof(((Config *)0)->field), def, lo, hi, choices, doc}
#define BIG 1e9

static const ConfigKey CORE_KEYS[] = {
    KEY("run.output_dir", CFG_STRING, run.output_dir, "runs/default", 0, 0, NULL,
        "directory for metrics.h5 (which holds the resolved config as its `config` attribute) and checkpoints"),
    KEY("run.seed", CFG_INT64, run.seed, "1234", 0, 9.2e18, NULL, "seed of every random stream of the run"),
    KEY("run.max_steps", CFG_INT, run.max_steps, "100", 0, BIG, NULL, "RL optimizer steps to run"),
    KEY("run.async_level", CFG_INT, run.async_level, "1", 0, 64, NULL,
        "k: inference runs up to k steps ahead of the trainer, so step n trains mostly on policies n-k..n; "
        "a rollout in flight or in a later turn may be up to orchestrator.max_off_policy_steps older "
        "still (0 = synchronous on-policy)"),
    KEY("run.deterministic", CFG_BOOL, run.deterministic, "false", 0, 0, NULL,
        "bit-identical runs: no in-flight updates, fixed request order, samplers seeded per sample"),
    KEY("run.threads", CFG_INT, run.threads, "0", 0, 1024, NULL,
        "compute threads per trainer/inference rank (0 = the cores of the node shared among them)"),

    KEY("ranks.trainers", CFG_INT, ranks.trainers, "1", 1, 65536, NULL, "trainer ranks (ranks 1..T)"),
    KEY("ranks.inference", CFG_INT, ranks.inference, "1", 1, 65536, NULL, "inference ranks (ranks T+1..T+I)"),

    KEY("model.source", CFG_ENUM, model.source, "init", 0, 0, "init|llama2c|hf|checkpoint",
        "init: new model from the model.* shape; llama2c: a llama2.c .bin; hf: safetensors + config.json; "
        "checkpoint: the model of an asyncrl checkpoint (a new run from its weights)"),
    KEY("model.path", CFG_STRING, model.path, "", 0, 0, NULL,
        "model file (llama2c), directory (hf) or checkpoint file (checkpoint)"),
    KEY("model.tokenizer", CFG_STRING, model.tokenizer, "byte", 0, 0, NULL,
        "\"byte\" (byte-level, for built-in tasks) or a llama2.c tokenizer.bin"),
    KEY("model.dim", CFG_INT, model.dim, "64", 8, 65536, NULL, "init: model width"),
    KEY("model.n_layers", CFG_INT, model.n_layers, "2", 1, 1024, NULL, "init: transformer blocks"),
    KEY("model.n_heads", CFG_INT, model.n_heads, "4", 1, 1024, NULL, "init: attention heads"),
    KEY("model.n_kv_heads", CFG_INT, model.n_kv_heads, "0", 0, 1024, NULL,
        "init: key/value heads for grouped-query attention (0 = n_heads)"),
    KEY("model.hidden_dim", CFG_INT, model.hidden_dim, "0", 0, 1 << 20, NULL,
        "init: SwiGLU hidden width (0 = Llama's rule from dim)"),
    KEY("model.vocab_size", CFG_INT, model.vocab_size, "0", 0, 1 << 22, NULL,
        "init: vocabulary size (0 = the tokenizer's)"),
    KEY("model.max_seq_len", CFG_INT, model.max_seq_len, "256", 8, 1 << 20, NULL,
        "init: longest sequence (prompt + completion) the model handles"),
    KEY("model.rope_theta", CFG_FLOAT, model.rope_theta, "10000.0", 1, 1e9, NULL, "init: RoPE base"),
    KEY("model.norm_eps", CFG_FLOAT, model.norm_eps, "1e-5", 1e-12, 1, NULL, "init: RMSNorm epsilon"),
    KEY("model.init_std", CFG_FLOAT, model.init_std, "0.02", 0, 10, NULL, "init: weight initialisation std"),
    KEY("model.tied_embeddings", CFG_BOOL, model.tied_embeddings, "true", 0, 0, NULL,
        "init: share the embedding and output matrices"),

    KEY("trainer.lr", CFG_FLOAT, trainer.lr, "3e-4", 0, 10, NULL, "peak learning rate of AdamW"),
    KEY("trainer.lr_schedule", CFG_ENUM, trainer.lr_schedule, "constant", 0, 0, "constant|linear|cosine",
        "learning-rate schedule after warm-up (linear and cosine decay to min_lr_ratio * lr)"),
    KEY("trainer.warmup_steps", CFG_INT, trainer.warmup_steps, "0", 0, BIG, NULL, "linear warm-up steps"),
    KEY("trainer.min_lr_ratio", CFG_FLOAT, trainer.min_lr_ratio, "0.1", 0, 1, NULL,
        "final learning rate of linear/cosine decay, as a fraction of lr"),
    KEY("trainer.weight_decay", CFG_FLOAT, trainer.weight_decay, "0.01", 0, 10, NULL,
        "AdamW weight decay (not applied to norm weights)"),
    KEY("trainer.beta1", CFG_FLOAT, trainer.beta1, "0.9", 0, 0.999999, NULL, "AdamW beta1"),
    KEY("trainer.beta2", CFG_FLOAT, trainer.beta2, "0.999", 0, 0.999999999, NULL, "AdamW beta2"),
    KEY("trainer.adam_eps", CFG_FLOAT, trainer.adam_eps, "1e-8", 1e-30, 1, NULL, "AdamW epsilon"),
    KEY("trainer.grad_clip", CFG_FLOAT, trainer.grad_clip, "1.0", 0, 1e9, NULL,
        "clip the global gradient norm to this (0 = no clipping)"),
    KEY("trainer.seq_len", CFG_INT, trainer.seq_len, "256", 8, 1 << 20, NULL,
        "tokens per packed training row; a sample longer than this is an error"),
    KEY("trainer.micro_rows", CFG_INT, trainer.micro_rows, "1", 1, 4096, NULL,
        "packed rows per forward/backward pass (gradient accumulation over the rest)"),
    KEY("trainer.max_bad_steps", CFG_INT, trainer.max_bad_steps, "3", 1, 1000, NULL,
        "non-finite loss or gradient: skip the update; this many in a row end the job"),

    KEY("loss.type", CFG_ENUM, loss.type, "icepop", 0, 0, "icepop|gspo|dppo",
        "icepop: token-level masked importance sampling; gspo: sequence-level ratio; dppo: "
        "mask by probability difference"),
    KEY("loss.mask_low", CFG_FLOAT, loss.mask_low, "0.125", 0, 1, NULL,
        "icepop: mask a token when its ratio r < mask_low"),
    KEY("loss.mask_high", CFG_FLOAT, loss.mask_high, "8.0", 1, 1e9, NULL,
        "icepop: mask a token when its ratio r > mask_high"),
    KEY("loss.seq_mask_low", CFG_FLOAT, loss.seq_mask_low, "0.0", 0, 1, NULL,
        "icepop: mask a whole sample when its smallest token ratio is below this (0 = off)"),
    KEY("loss.kl_tau", CFG_FLOAT, loss.kl_tau, "0.0", 0, 1e3, NULL,
        "weight of the KL penalty toward the sampling policy (icepop: tau*(r log r - r + 1); dppo: tau*(log r)^2)"),
    KEY("loss.gspo_clip_low", CFG_FLOAT, loss.gspo_clip_low, "3e-4", 0, 1, NULL,
        "gspo: clip the sequence ratio below 1 - clip_low"),
    KEY("loss.gspo_clip_high", CFG_FLOAT, loss.gspo_clip_high, "4e-4", 0, 1e3, NULL,
        "gspo: clip the sequence ratio above 1 + clip_high"),
    KEY("loss.dppo_delta", CFG_FLOAT, loss.dppo_delta, "0.2", 0, 1, NULL,
        "dppo: mask a token when its probability moved more than delta in the direction of its advantage "
        "(logged as masked_low, both directions)"),
    KEY("loss.std_normalize", CFG_BOOL, loss.std_normalize, "false", 0, 0, NULL,
        "divide advantages by the group's reward std (original GRPO)"),
    KEY("loss.length_weighted_mean", CFG_BOOL, loss.length_weighted_mean, "false", 0, 0, NULL,
        "baseline is the token-length-weighted mean reward of the group"),

    KEY("orchestrator.batch_size", CFG_INT, orchestrator.batch_size, "64", 1, 1 << 20, NULL,
        "samples trained per step (a multiple of group_size)"),
    KEY("orchestrator.group_size", CFG_INT, orchestrator.group_size, "8", 2, 4096, NULL,
        "samples per problem; advantages are relative to the group (so at least 2)"),
    KEY("orchestrator.max_off_policy_steps", CFG_INT, orchestrator.max_off_policy_steps, "8", 0, 1000, NULL,
        "a rollout that lived through more weight updates than this is cancelled and its group rescheduled"),
    KEY("orchestrator.in_flight_updates", CFG_BOOL, orchestrator.in_flight_updates, "true", 0, 0, NULL,
        "inference takes new weights between decode steps, keeping unfinished sequences"),
    KEY("orchestrator.drop_zero_advantage", CFG_BOOL, orchestrator.drop_zero_advantage, "true", 0, 0, NULL,
        "drop groups whose rewards are all equal (they carry no signal)"),
    KEY("orchestrator.max_dropped_groups", CFG_INT, orchestrator.max_dropped_groups, "20000", 1, 1e9, NULL,
        "end the run when this many groups in a row had zero advantage (a collapsed policy never fills a batch)"),
    KEY("orchestrator.groups_per_rank", CFG_INT, orchestrator.groups_per_rank, "0", 0, 65536, NULL,
        "groups kept queued on each inference rank (0 = enough to fill inference.max_seqs)"),
    KEY("orchestrator.easy_threshold", CFG_FLOAT, orchestrator.easy_threshold, "1.01", 0, 1.01, NULL,
        "a problem whose group mean reward reaches this joins the easy pool (above 1 = off); datasets that "
        "wrap around (jsonl, code) then mostly skip it"),
    KEY("orchestrator.easy_keep", CFG_FLOAT, orchestrator.easy_keep, "0.1", 0, 1, NULL,
        "chance that a problem of the easy pool is asked again when it comes up"),
    KEY("orchestrator.hard_threshold", CFG_FLOAT, orchestrator.hard_threshold, "-0.01", -0.01, 1, NULL,
        "a problem whose group mean reward is at most this joins the hard pool (below 0 = off)"),
    KEY("orchestrator.hard_keep", CFG_FLOAT, orchestrator.hard_keep, "0.3", 0, 1, NULL,
        "chance that a problem of the hard pool is asked again when it comes up"),

    KEY("inference.temperature", CFG_FLOAT, inference.temperature, "1.0", 1e-3, 100, NULL,
        "sampling temperature (the trainer's logprobs use the same)"),
    KEY("inference.top_p", CFG_FLOAT, inference.top_p, "1.0", 1e-6, 1, NULL, "nucleus sampling (1 = off)"),
    KEY("inference.top_k", CFG_INT, inference.top_k, "0", 0, 1 << 22, NULL, "top-k sampling (0 = off)"),
    KEY("inference.min_p", CFG_FLOAT, inference.min_p, "0.0", 0, 1, NULL, "min-p sampling (0 = off)"),
    KEY("inference.max_tokens", CFG_INT, inference.max_tokens, "64", 1, 1 << 20, NULL,
        "longest completion per model turn"),
    KEY("inference.max_seqs", CFG_INT, inference.max_seqs, "64", 1, 65536, NULL,
        "sequences decoded together on one inference rank"),
    KEY("inference.kv_block_size", CFG_INT, inference.kv_block_size, "16", 1, 4096, NULL,
        "tokens per KV-cache block"),
    KEY("inference.kv_blocks", CFG_INT, inference.kv_blocks, "0", 0, 1 << 26, NULL,
        "KV-cache blocks per inference rank (0 = enough for max_seqs full sequences)"),
    KEY("inference.kv_cache_dtype", CFG_ENUM, inference.kv_cache_dtype, "fp32", 0, 0, "fp32|fp16",
        "element type of the KV cache: fp16 halves its memory and the attention's memory traffic (keys and "
        "values rounded to half precision; the trainer's logprobs stay fp32)"),
    KEY("inference.prefill_chunk", CFG_INT, inference.prefill_chunk, "256", 1, 1 << 20, NULL,
        "prompt tokens prefilled per engine step"),

    KEY("sft.steps", CFG_INT, sft.steps, "0", 0, BIG, NULL, "supervised warm-up steps before RL (0 = none)"),
    KEY("sft.lr", CFG_FLOAT, sft.lr, "1e-3", 0, 10, NULL, "learning rate of the warm-up"),
    KEY("sft.batch_size", CFG_INT, sft.batch_size, "32", 1, 1 << 20, NULL, "samples per warm-up step"),
    KEY("sft.data", CFG_STRING, sft.data, "env", 0, 0, NULL,
        "\"env\": the environments' reference answers; or a JSONL file of {\"prompt\", \"completion\"} lines "
        "(\"question\", \"answer\" also read), each checked to fit a sample before the warm-up starts"),

    KEY("eval.interval", CFG_INT, eval.interval, "0", 0, BIG, NULL,
        "evaluate every this many steps (0 = only before and after RL)"),
    KEY("eval.problems", CFG_INT, eval.problems, "64", 0, 1 << 20, NULL, "held-out problems per evaluation (at most once each: an eval file with fewer gives fewer)"),
    KEY("eval.samples", CFG_INT, eval.samples, "4", 0, 1024, NULL,
        "sampled completions per problem (a greedy one is always made)"),
    KEY("eval.pass_threshold", CFG_FLOAT, eval.pass_threshold, "1.0", 0, 1, NULL,
        "a completion passes when its reward reaches this"),

    KEY("checkpoint.interval", CFG_INT, checkpoint.interval, "0", 0, BIG, NULL,
        "write a checkpoint every this many steps (0 = only at the end)"),
    KEY("checkpoint.resume", CFG_RESUME, checkpoint.resume, "none", 0, 0, NULL,
        "\"none\", \"latest\" (the newest complete checkpoint, if any) or a step number"),
    KEY("checkpoint.keep", CFG_INT, checkpoint.keep, "3", 0, 1 << 20, NULL,
        "checkpoints kept on disk, oldest deleted first (0 = all)"),
    KEY("checkpoint.at_end", CFG_BOOL, checkpoint.at_end, "true", 0, 0, NULL, "write a checkpoint when the run ends"),

    KEY("log.level", CFG_ENUM, log.level, "info", 0, 0, "debug|info|warn|error", "log verbosity"),
    KEY("log.rollouts", CFG_BOOL, log.rollouts, "true", 0, 0, NULL,
        "store every rollout's tokens in metrics.h5 (the rollout table is always kept)"),
    KEY("log.print_every", CFG_INT, log.print_every, "1", 1, BIG, NULL, "print a metrics line every this many steps"),
};

static int validate_core(const Config *cfg, ErrorBuf *err);

static const ConfigTable CORE_TABLE = {CORE_KEYS, (int)(sizeof CORE_KEYS / sizeof CORE_KEYS[0]), 0, validate_core};
static const ConfigTable *const TABLES[] = {&CORE_TABLE, &ENV_CONFIG_TABLE};
#define N_TABLES ((int)(sizeof TABLES / sizeof TABLES[0]))

// ---------------------------------------------------------------------------------------------
// Key lookup

typedef struct {
    const ConfigTable *table;
    const ConfigKey *key;
    int global;  // index into Config.origin
} KeyRef;

static int find_key(const char *path, KeyRef *ref) {
    int global = 0;
    for (int t = 0; t < N_TABLES; t++) {
        for (int i = 0; i < TABLES[t]->count; i++, global++) {
            if (strcmp(TABLES[t]->keys[i].path, path) == 0) {
                ref->table = TABLES[t];
                ref->key = &TABLES[t]->keys[i];
                ref->global = global;
                return 0;
            }
        }
    }
    return -1;
}

// True when some key lives under the group `prefix` ("env" or "env.reverse").
static int is_group(const char *prefix) {
    size_t n = strlen(prefix);
    for (int t = 0; t < N_TABLES; t++)
        for (int i = 0; i < TABLES[t]->count; i++)
            if (strncmp(TABLES[t]->keys[i].path, prefix, n) == 0 && TABLES[t]->keys[i].path[n] == '.') return 1;
    return 0;
}

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 80 || lb > 80) return 99;
    int prev[82], cur[82];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

// The closest known key to a misspelt one, also matching on the last component alone.
static const char *suggest(const char *path) {
    const char *best = NULL;
    int best_d = 4;
    const char *leaf = strrchr(path, '.');
    leaf = leaf ? leaf + 1 : path;
    for (int t = 0; t < N_TABLES; t++) {
        for (int i = 0; i < TABLES[t]->count; i++) {
            const char *cand = TABLES[t]->keys[i].path;
            int d = edit_distance(path, cand);
            const char *cand_leaf = strrchr(cand, '.') + 1;
            int dl = edit_distance(leaf, cand_leaf);
            if (dl == 0) d = d < 1 ? d : 1;
            if (d < best_d) best_d = d, best = cand;
        }
    }
    return best;
}

static void *field_ptr(Config *cfg, const KeyRef *ref) { return (char *)cfg + ref->table->base + ref->key->offset; }
static const void *field_cptr(const Config *cfg, const KeyRef *ref) {
    return (const char *)cfg + ref->table->base + ref->key->offset;
}

// ---------------------------------------------------------------------------------------------
// Values

static const char *type_name(CfgType type) {
    switch (type) {
        case CFG_INT: case CFG_INT64: return "an integer";
        case CFG_FLOAT: return "a number";
        case CFG_BOOL: return "true or false";
        case CFG_STRING: return "a string";
        case CFG_ENUM: return "one of the strings";
        case CFG_STR_LIST: return "a list of strings like [\"a\", \"b\"]";
        case CFG_FLOAT_LIST: return "a list of numbers like [1.0, 0.5]";
        case CFG_RESUME: return "\"none\", \"latest\" or a step number";
    }
    return "?";
}

static int check_number(const ConfigKey *key, double v, const char *where, ErrorBuf *err) {
    if (!isfinite(v) || v < key->min || v > key->max) {
        if (key->type == CFG_INT || key->type == CFG_INT64)
            return error_set(err, "%s: %s = %.17g is out of range: expected an integer in [%.0f, %.0f]", where,
                             key->path, v, key->min, key->max);
        return error_set(err, "%s: %s = %.17g is out of range: expected a number in [%.10g, %.10g]", where, key->path,
                         v, key->min, key->max);
    }
    return 0;
}

static int check_choice(const ConfigKey *key, const char *s, const char *where, ErrorBuf *err) {
    const char *c = key->choices;
    size_t n = strlen(s);
    while (c && *c) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (len == n && strncmp(c, s, n) == 0) return 0;
        c = bar ? bar + 1 : NULL;
    }
    return error_set(err, "%s: %s = \"%s\" is not allowed: expected one of %s", where, key->path, s, key->choices);
}

static int valid_resume(const char *s) {
    if (strcmp(s, "none") == 0 || strcmp(s, "latest") == 0) return 1;
    if (!*s) return 0;
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return strlen(s) < 12;
}

static int store_string(const ConfigKey *key, void *dst, const char *s, const char *where, ErrorBuf *err) {
    if (strlen(s) >= key->size)
        return error_set(err, "%s: %s is too long (%zu characters): at most %zu", where, key->path, strlen(s),
                         key->size - 1);
    if (key->type == CFG_ENUM && check_choice(key, s, where, err)) return -1;
    if (key->type == CFG_RESUME && !valid_resume(s))
        return error_set(err, "%s: %s = \"%s\": expected %s", where, key->path, s, type_name(key->type));
    strcpy(dst, s);
    return 0;
}

static int store_number(const ConfigKey *key, void *dst, double v, const char *where, ErrorBuf *err) {
    if ((key->type == CFG_INT || key->type == CFG_INT64) && v != floor(v))
        return error_set(err, "%s: %s = %g: expected an integer", where, key->path, v);
    if (check_number(key, v, where, err)) return -1;
    if (key->type == CFG_INT) *(int *)dst = (int)v;
    else if (key->type == CFG_INT64) *(int64_t *)dst = (int64_t)v;
    else *(double *)dst = v;
    return 0;
}

// An int64 key keeps every digit (through a double, seeds above 2^53 would collide).
static int store_int64(const ConfigKey *key, void *dst, long long v, const char *where, ErrorBuf *err) {
    if (check_number(key, (double)v, where, err)) return -1;
    *(int64_t *)dst = (int64_t)v;
    return 0;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

// Strips one pair of surrounding double quotes, if present.
static char *unquote(char *s) {
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s[n - 1] = '\0';
        return s + 1;
    }
    return s;
}

static int parse_double(const char *s, double *out) {
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return (end == s || *end != '\0' || errno == ERANGE) ? -1 : 0;
}

// Sets a key from text as written after "=" in --set (also used for the defaults).
static int set_from_text(Config *cfg, const KeyRef *ref, const char *text, const char *where, ErrorBuf *err) {
    const ConfigKey *key = ref->key;
    void *dst = field_ptr(cfg, ref);
    char buf[CFG_STR_MAX * 2];
    if (strlen(text) >= sizeof buf) return error_set(err, "%s: value of %s is too long", where, key->path);
    strcpy(buf, text);
    char *s = trim(buf);
    double v;
    if (key->type == CFG_INT64) {
        char *end;
        errno = 0;
        const long long exact = strtoll(s, &end, 10);
        if (*s && !*end && errno == 0) return store_int64(key, dst, exact, where, err);
    }
    switch (key->type) {
        case CFG_INT: case CFG_INT64: case CFG_FLOAT:
            if (parse_double(s, &v))
                return error_set(err, "%s: %s = \"%s\": expected %s", where, key->path, s, type_name(key->type));
            return store_number(key, dst, v, where, err);
        case CFG_BOOL:
            if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes")) *(int *)dst = 1;
            else if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no")) *(int *)dst = 0;
            else return error_set(err, "%s: %s = \"%s\": expected true or false", where, key->path, s);
            return 0;
        case CFG_STRING: case CFG_ENUM: case CFG_RESUME:
            return store_string(key, dst, unquote(s), where, err);
        case CFG_STR_LIST: case CFG_FLOAT_LIST: {
            size_t n = strlen(s);
            if (n >= 2 && (s[0] == '[' || s[0] == '(') && (s[n - 1] == ']' || s[n - 1] == ')')) {
                s[n - 1] = '\0';
                s++;
            }
            int count = 0;
            CfgStrList strs = {0};
            CfgFloatList nums = {0};
            char *save = NULL;
            for (char *item = strtok_r(s, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
                char *it = unquote(trim(item));
                if (count == CFG_LIST_MAX)
                    return error_set(err, "%s: %s has more than %d items", where, key->path, CFG_LIST_MAX);
                if (key->type == CFG_STR_LIST) {
                    if (strlen(it) >= sizeof strs.items[0] || !*it)
                        return error_set(err, "%s: %s: item \"%s\" is empty or too long", where, key->path, it);
                    strcpy(strs.items[count], it);
                } else {
                    if (parse_double(it, &v))
                        return error_set(err, "%s: %s: item \"%s\": expected a number", where, key->path, it);
                    if (check_number(key, v, where, err)) return -1;
                    nums.items[count] = v;
                }
                count++;
            }
            strs.count = nums.count = count;
            if (key->type == CFG_STR_LIST) *(CfgStrList *)dst = strs;
            else *(CfgFloatList *)dst = nums;
            return 0;
        }
    }
    return -1;
}

static const char *setting_type_name(int type) {
    switch (type) {
        case CONFIG_TYPE_INT: case CONFIG_TYPE_INT64: return "an integer";
        case CONFIG_TYPE_FLOAT: return "a number";
        case CONFIG_TYPE_STRING: return "a string";
        case CONFIG_TYPE_BOOL: return "a boolean";
        case CONFIG_TYPE_ARRAY: return "an array";
        case CONFIG_TYPE_LIST: return "a list";
        case CONFIG_TYPE_GROUP: return "a group";
    }
    return "something else";
}

static int is_number_type(int type) {
    return type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64 || type == CONFIG_TYPE_FLOAT;
}

static double setting_number(const config_setting_t *s) {
    int type = config_setting_type(s);
    if (type == CONFIG_TYPE_FLOAT) return config_setting_get_float(s);
    return (double)config_setting_get_int64(s);
}

// Sets a key from a parsed libconfig setting, checking its type.
static int set_from_setting(Config *cfg, const KeyRef *ref, const config_setting_t *s, const char *where,
                            ErrorBuf *err) {
    const ConfigKey *key = ref->key;
    void *dst = field_ptr(cfg, ref);
    int type = config_setting_type(s);
    switch (key->type) {
        case CFG_INT: case CFG_INT64:
            if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) break;
            if (key->type == CFG_INT64) return store_int64(key, dst, config_setting_get_int64(s), where, err);
            return store_number(key, dst, setting_number(s), where, err);
        case CFG_FLOAT:
            if (!is_number_type(type)) break;
            return store_number(key, dst, setting_number(s), where, err);
        case CFG_BOOL:
            if (type != CONFIG_TYPE_BOOL) break;
            *(int *)dst = config_setting_get_bool(s);
            return 0;
        case CFG_RESUME:
            if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64) {
                long long v = config_setting_get_int64(s);
                if (v < 0) return error_set(err, "%s: %s = %lld: a step number cannot be negative", where, key->path, v);
                snprintf(dst, key->size, "%lld", v);
                return 0;
            }
            /* fall through */
        case CFG_STRING: case CFG_ENUM:
            if (type != CONFIG_TYPE_STRING) break;
            return store_string(key, dst, config_setting_get_string(s), where, err);
        case CFG_STR_LIST: case CFG_FLOAT_LIST: {
            if (type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) break;
            int n = config_setting_length(s);
            if (n > CFG_LIST_MAX) return error_set(err, "%s: %s has %d items: at most %d", where, key->path, n, CFG_LIST_MAX);
            CfgStrList strs = {.count = n};
            CfgFloatList nums = {.count = n};
            for (int i = 0; i < n; i++) {
                const config_setting_t *item = config_setting_get_elem(s, (unsigned)i);
                int it = config_setting_type(item);
                if (key->type == CFG_STR_LIST) {
                    if (it != CONFIG_TYPE_STRING)
                        return error_set(err, "%s: %s: item %d is %s: expected %s", where, key->path, i,
                                         setting_type_name(it), type_name(key->type));
                    const char *v = config_setting_get_string(item);
                    if (!*v || strlen(v) >= sizeof strs.items[0])
                        return error_set(err, "%s: %s: item %d is empty or too long", where, key->path, i);
                    strcpy(strs.items[i], v);
                } else {
                    if (!is_number_type(it))
                        return error_set(err, "%s: %s: item %d is %s: expected %s", where, key->path, i,
                                         setting_type_name(it), type_name(key->type));
                    nums.items[i] = setting_number(item);
                    if (check_number(key, nums.items[i], where, err)) return -1;
                }
            }
            if (key->type == CFG_STR_LIST) *(CfgStrList *)dst = strs;
            else *(CfgFloatList *)dst = nums;
            return 0;
        }
    }
    if (key->type == CFG_ENUM)
        return error_set(err, "%s: %s is %s: expected one of the strings %s", where, key->path,
                         setting_type_name(type), key->choices);
    return error_set(err, "%s: %s is %s: expected %s", where, key->path, setting_type_name(type),
                     type_name(key->type));
}

// ---------------------------------------------------------------------------------------------
// Loading

void config_defaults(Config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    ErrorBuf err;
    int global = 0;
    for (int t = 0; t < N_TABLES; t++) {
        for (int i = 0; i < TABLES[t]->count; i++, global++) {
            KeyRef ref = {TABLES[t], &TABLES[t]->keys[i], global};
            CHECK(global < CFG_MAX_KEYS, "raise CFG_MAX_KEYS in config_types.h", "too many config keys");
            if (set_from_text(cfg, &ref, ref.key->def, "default", &err))
                FATAL("fix the default in the key table", "bad default for %s: %s", ref.key->path, err.msg);
        }
    }
}

static int walk(Config *cfg, const config_setting_t *group, const char *prefix, const char *file, ErrorBuf *err) {
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        char path[256];
        snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] ? "." : "", name ? name : "?");
        char where[CFG_STR_MAX + 32];
        snprintf(where, sizeof where, "%s:%d", file, (int)config_setting_source_line(s));
        KeyRef ref;
        if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
            if (find_key(path, &ref) == 0)
                return error_set(err, "%s: %s is a group: expected %s", where, path, type_name(ref.key->type));
            if (!is_group(path)) {
                const char *near = suggest(path);
                return error_set(err, "%s: unknown group '%s'%s%s%s; `asyncrl defaults` lists every key", where, path,
                                 near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
            }
            if (walk(cfg, s, path, file, err)) return -1;
            continue;
        }
        if (find_key(path, &ref) != 0) {
            const char *near = suggest(path);
            return error_set(err, "%s: unknown key '%s'%s%s%s; `asyncrl defaults` lists every key", where, path,
                             near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
        if (set_from_setting(cfg, &ref, s, where, err)) return -1;
        int line = (int)config_setting_source_line(s);
        cfg->origin[ref.global] = line > 0 ? line : -2;
    }
    return 0;
}

static int apply_overrides(Config *cfg, char **overrides, int n, ErrorBuf *err) {
    for (int i = 0; i < n; i++)
        if (config_set(cfg, overrides[i], err)) return -1;
    return 0;
}

// Line `line` (from 1) of text, or of the file at path when text is NULL, trimmed, into buf
// ("" when there is no such line).
static void source_line(const char *text, const char *path, int line, char *buf, size_t size) {
    buf[0] = '\0';
    FILE *f = text ? NULL : fopen(path, "r");
    if (!text && !f) return;
    char row[512];
    const char *at = text;
    for (int n = 1; n <= line; n++) {
        if (f) {
            if (!fgets(row, sizeof row, f)) break;
            while (!strchr(row, '\n') && fgets(row, sizeof row, f)) {}  // (a longer row: its first part was kept)
        } else {
            if (!at || !*at) break;
            const char *end = strchr(at, '\n');
            size_t len = end ? (size_t)(end - at) : strlen(at);
            snprintf(row, sizeof row, "%.*s", (int)(len < sizeof row - 1 ? len : sizeof row - 1), at);
            at = end ? end + 1 : NULL;
        }
        if (n == line) snprintf(buf, size, "%s", trim(row));
    }
    if (f) fclose(f);
}

// text: the parsed string (config_load_text), or NULL when it came from the file `origin`.
static int load_parsed(Config *cfg, config_t *lc, int ok, const char *origin, const char *text, char **overrides,
                       int n_overrides, ErrorBuf *err) {
    if (!ok) {
        const char *file = config_error_file(lc) ? config_error_file(lc) : origin;
        const int line = config_error_line(lc);
        char near[160];
        source_line(config_error_file(lc) ? NULL : text, file, line, near, sizeof near);
        int rc = error_set(err,
                           "%s:%d: %s%s%s%s (a setting is `key = value;` inside `group = { ... };`, strings in double "
                           "quotes; the mistake may be earlier: the end of the line before, or a quote or brace left "
                           "open above)",
                           file, line, config_error_text(lc), near[0] ? " near `" : "", near, near[0] ? "`" : "");
        config_destroy(lc);
        return rc;
    }
    int rc = walk(cfg, config_root_setting(lc), "", origin, err);
    config_destroy(lc);
    if (rc) return -1;
    if (apply_overrides(cfg, overrides, n_overrides, err)) return -1;
    return config_validate(cfg, err);
}

int config_load(Config *cfg, const char *path, char **overrides, int n_overrides, ErrorBuf *err) {
    config_defaults(cfg);
    snprintf(cfg->file, sizeof cfg->file, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) return error_set(err, "cannot open config file %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return error_set(err, "config file %s is a directory: give a config file (inputs/ holds ready ones)", path);
    }
    config_t lc;
    config_init(&lc);
    int ok = config_read(&lc, f) == CONFIG_TRUE;
    fclose(f);
    return load_parsed(cfg, &lc, ok, path, NULL, overrides, n_overrides, err);
}

int config_load_text(Config *cfg, const char *text, const char *origin, char **overrides, int n_overrides,
                     ErrorBuf *err) {
    config_defaults(cfg);
    snprintf(cfg->file, sizeof cfg->file, "%s", origin);
    config_t lc;
    config_init(&lc);
    int ok = config_read_string(&lc, text) == CONFIG_TRUE;
    return load_parsed(cfg, &lc, ok, origin, text, overrides, n_overrides, err);
}

int config_set(Config *cfg, const char *assignment, ErrorBuf *err) {
    const char *eq = strchr(assignment, '=');
    if (!eq) return error_set(err, "--set %s: expected group.key=value, e.g. --set trainer.lr=1e-4", assignment);
    char path[256];
    size_t n = (size_t)(eq - assignment);
    if (n >= sizeof path) return error_set(err, "--set %s: key too long", assignment);
    memcpy(path, assignment, n);
    path[n] = '\0';
    char *key = trim(path);
    KeyRef ref;
    if (find_key(key, &ref) != 0) {
        const char *near = suggest(key);
        return error_set(err, "--set %s: unknown key '%s'%s%s%s; `asyncrl defaults` lists every key", assignment, key,
                         near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
    }
    char where[300];
    snprintf(where, sizeof where, "--set %s", key);
    if (set_from_text(cfg, &ref, eq + 1, where, err)) return -1;
    cfg->origin[ref.global] = -1;
    return 0;
}

static void format_origin(const Config *cfg, const char *path, char *buf, size_t size) {
    KeyRef ref;
    if (find_key(path, &ref) != 0) {
        snprintf(buf, size, "unknown key");
        return;
    }
    int o = cfg->origin[ref.global];
    if (o > 0) snprintf(buf, size, "%s:%d", cfg->file, o);
    else if (o == -1) snprintf(buf, size, "--set");
    else if (o == -2) snprintf(buf, size, "%s", cfg->file);
    else snprintf(buf, size, "default");
}

const char *config_origin(const Config *cfg, const char *path) {
    static char bufs[4][CFG_STR_MAX + 32];  // rotating, so one message may name four origins
    static int next = 0;
    char *buf = bufs[next];
    next = (next + 1) % 4;
    format_origin(cfg, path, buf, sizeof bufs[0]);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// Cross-key rules

int config_world_size(const Config *cfg) { return 1 + cfg->ranks.trainers + cfg->ranks.inference; }

int config_warmup_pending(const Config *cfg, int steps_done, int sft_done) {
    return steps_done == 0 && sft_done < cfg->sft.steps;
}

static int validate_core(const Config *cfg, ErrorBuf *err) {
    const int batch = cfg->orchestrator.batch_size, group = cfg->orchestrator.group_size;
    if (batch % group != 0)
        return error_set(err,
                         "orchestrator.batch_size = %d (%s) is not a multiple of orchestrator.group_size = %d (%s): "
                         "a batch holds whole groups, e.g. batch_size = %d",
                         batch, config_origin(cfg, "orchestrator.batch_size"), group,
                         config_origin(cfg, "orchestrator.group_size"), (batch / group + 1) * group);
    if (strcmp(cfg->model.source, "init") == 0) {
        const int dim = cfg->model.dim, heads = cfg->model.n_heads;
        const int kv = cfg->model.n_kv_heads ? cfg->model.n_kv_heads : heads;
        if (dim % heads != 0)
            return error_set(err, "model.dim = %d (%s) is not divisible by model.n_heads = %d (%s)", dim,
                             config_origin(cfg, "model.dim"), heads, config_origin(cfg, "model.n_heads"));
        if ((dim / heads) % 2 != 0)
            return error_set(err, "model.dim / model.n_heads = %d (%s) is odd: RoPE needs an even head size",
                             dim / heads, config_origin(cfg, "model.dim"));
        if (heads % kv != 0)
            return error_set(err, "model.n_heads = %d (%s) is not a multiple of model.n_kv_heads = %d (%s)", heads,
                             config_origin(cfg, "model.n_heads"), kv, config_origin(cfg, "model.n_kv_heads"));
    } else if (!cfg->model.path[0]) {
        const char *what = strcmp(cfg->model.source, "hf") == 0 ? "directory with config.json and *.safetensors"
                           : strcmp(cfg->model.source, "checkpoint") == 0
                               ? "checkpoint file (runs/NAME/checkpoints/step_NNNNNN.h5)"
                               : "llama2.c .bin file";
        return error_set(err, "model.source = \"%s\" (%s) needs model.path: the %s", cfg->model.source,
                         config_origin(cfg, "model.source"), what);
    }
    if (cfg->loss.mask_low >= cfg->loss.mask_high)
        return error_set(err, "loss.mask_low = %g (%s) must be below loss.mask_high = %g (%s)", cfg->loss.mask_low,
                         config_origin(cfg, "loss.mask_low"), cfg->loss.mask_high, config_origin(cfg, "loss.mask_high"));
    if (!cfg->run.output_dir[0])
        return error_set(err, "run.output_dir (%s) is empty: give the directory the run writes to, e.g. runs/NAME",
                         config_origin(cfg, "run.output_dir"));
    if (cfg->inference.kv_blocks > 0 && cfg->inference.kv_blocks < cfg->inference.max_seqs)
        return error_set(err,
                         "inference.kv_blocks = %d (%s) is smaller than inference.max_seqs = %d (%s): every running "
                         "sequence needs at least one block of the KV cache; raise kv_blocks (0 = enough for max_seqs "
                         "full-length sequences) or lower max_seqs",
                         cfg->inference.kv_blocks, config_origin(cfg, "inference.kv_blocks"), cfg->inference.max_seqs,
                         config_origin(cfg, "inference.max_seqs"));
    if (cfg->inference.max_tokens >= cfg->trainer.seq_len)
        return error_set(err,
                         "inference.max_tokens = %d (%s) leaves no room for the prompt in trainer.seq_len = %d (%s): "
                         "raise seq_len or lower max_tokens",
                         cfg->inference.max_tokens, config_origin(cfg, "inference.max_tokens"), cfg->trainer.seq_len,
                         config_origin(cfg, "trainer.seq_len"));
    return 0;
}

int config_validate(const Config *cfg, ErrorBuf *err) {
    for (int t = 0; t < N_TABLES; t++)
        if (TABLES[t]->validate && TABLES[t]->validate(cfg, err)) return -1;
    return 0;
}

int config_check_world(const Config *cfg, int world_size, ErrorBuf *err) {
    int expected = config_world_size(cfg);
    if (world_size == expected) return 0;
    return error_set(err,
                     "the job has %d ranks but the config asks for %d: 1 orchestrator + ranks.trainers = %d (%s) + "
                     "ranks.inference = %d (%s). Run it with mpirun -np %d (rank 0 orchestrator, ranks 1..%d "
                     "trainers, ranks %d..%d inference), or change ranks.*",
                     world_size, expected, cfg->ranks.trainers, config_origin(cfg, "ranks.trainers"),
                     cfg->ranks.inference, config_origin(cfg, "ranks.inference"), expected, cfg->ranks.trainers,
                     cfg->ranks.trainers + 1, expected - 1);
}

// ---------------------------------------------------------------------------------------------
// Text

static void write_escaped(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fprintf(out, "\\%c", *s);
        else if (*s == '\n') fputs("\\n", out);
        else if (*s == '\t') fputs("\\t", out);
        else fputc(*s, out);
    }
    fputc('"', out);
}

static void write_double(FILE *out, double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    // Shortest text that reads back to the same double.
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    fputs(buf, out);
    if (!strpbrk(buf, ".eEn")) fputs(".0", out);  // keep it a float for libconfig
}

static void write_value(FILE *out, const ConfigKey *key, const void *p) {
    switch (key->type) {
        case CFG_INT: fprintf(out, "%d", *(const int *)p); break;
        case CFG_INT64: fprintf(out, "%lldL", (long long)*(const int64_t *)p); break;
        case CFG_FLOAT: write_double(out, *(const double *)p); break;
        case CFG_BOOL: fputs(*(const int *)p ? "true" : "false", out); break;
        case CFG_STRING: case CFG_ENUM: case CFG_RESUME: write_escaped(out, p); break;
        case CFG_STR_LIST: {
            const CfgStrList *l = p;
            fputc('[', out);
            for (int i = 0; i < l->count; i++) {
                if (i) fputs(", ", out);
                write_escaped(out, l->items[i]);
            }
            fputc(']', out);
            break;
        }
        case CFG_FLOAT_LIST: {
            const CfgFloatList *l = p;
            fputc('[', out);
            for (int i = 0; i < l->count; i++) {
                if (i) fputs(", ", out);
                write_double(out, l->items[i]);
            }
            fputc(']', out);
            break;
        }
    }
}

// Number of leading path components two dotted paths share.
static int common_groups(const char *a, const char *b) {
    int n = 0;
    for (;;) {
        const char *da = strchr(a, '.'), *db = strchr(b, '.');
        if (!da || !db || da - a != db - b || strncmp(a, b, (size_t)(da - a)) != 0) return n;
        n++;
        a = da + 1;
        b = db + 1;
    }
}

static int depth_of(const char *path) {
    int n = 0;
    for (; *path; path++) n += *path == '.';
    return n;
}

static void indent(FILE *out, int level) {
    for (int i = 0; i < level; i++) fputs("  ", out);
}

char *config_to_text(const Config *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    CHECK(out, "", "open_memstream failed");
    const char *prev = "";
    int open = 0;  // groups currently open
    int global = 0;
    for (int t = 0; t < N_TABLES; t++) {
        for (int i = 0; i < TABLES[t]->count; i++, global++) {
            const ConfigKey *key = &TABLES[t]->keys[i];
            KeyRef ref = {TABLES[t], key, global};
            int keep = common_groups(prev, key->path);
            while (open > keep) {
                open--;
                indent(out, open);
                fputs("};\n", out);
            }
            int depth = depth_of(key->path);
            const char *p = key->path;
            for (int d = 0; d < depth; d++) {
                const char *dot = strchr(p, '.');
                if (d >= open) {
                    indent(out, open);
                    fprintf(out, "%.*s = {\n", (int)(dot - p), p);
                    open++;
                }
                p = dot + 1;
            }
            indent(out, open);
            fprintf(out, "%s = ", p);
            write_value(out, key, field_cptr(cfg, &ref));
            fputs(";\n", out);
            prev = key->path;
        }
    }
    while (open > 0) {
        open--;
        indent(out, open);
        fputs("};\n", out);
    }
    fclose(out);
    return buf;
}

void config_print_defaults(FILE *out) {
    Config cfg;
    config_defaults(&cfg);
    fprintf(out, "# Every asyncrl config key, its default and its meaning. Set a key in a config file\n"
                 "# (group = { key = value; };) or on the command line with --set group.key=value.\n");
    for (int t = 0; t < N_TABLES; t++) {
        for (int i = 0; i < TABLES[t]->count; i++) {
            const ConfigKey *key = &TABLES[t]->keys[i];
            KeyRef ref;
            find_key(key->path, &ref);
            fprintf(out, "%-36s = ", key->path);
            write_value(out, key, field_cptr(&cfg, &ref));
            fprintf(out, "\n    %s", key->doc);
            if (key->type == CFG_ENUM) fprintf(out, " [%s]", key->choices);
            else if (key->type == CFG_INT || key->type == CFG_INT64)
                fprintf(out, " [%.0f..%.0f]", key->min, key->max);
            else if (key->type == CFG_FLOAT || key->type == CFG_FLOAT_LIST)
                fprintf(out, " [%.10g..%.10g]", key->min, key->max);
            fputc('\n', out);
        }
    }
}
