// The job's configuration: libconfig files with the groups run, ranks, model, trainer, loss,
// orchestrator, env, inference, sft, eval, checkpoint and log. Every key is declared once in
// a table (its type, default, range and meaning: `asyncrl defaults` prints them), and every
// key of a file is checked against it: unknown keys, wrong types and values out of range are
// errors naming the key, the file and line, and what was expected. `--set group.key=value`
// overrides any key. The resolved config is kept as libconfig text for checkpoints and logs.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "core/config_types.h"
#include "env/env_config.h"

struct Config {
    struct {
        char output_dir[CFG_STR_MAX];
        int64_t seed;
        int max_steps;
        int async_level;
        int deterministic;
        int threads;
    } run;
    struct {
        int trainers;
        int inference;
    } ranks;
    struct {
        char source[16];      // init | llama2c | hf
        char path[CFG_STR_MAX];
        char tokenizer[CFG_STR_MAX];
        int dim, n_layers, n_heads, n_kv_heads, hidden_dim, vocab_size, max_seq_len;
        double rope_theta, norm_eps, init_std;
        int tied_embeddings;
    } model;
    struct {
        double lr;
        char lr_schedule[16];  // constant | linear | cosine
        int warmup_steps;
        double min_lr_ratio;
        double weight_decay, beta1, beta2, adam_eps, grad_clip;
        int seq_len;
        int micro_rows;
        int max_bad_steps;
    } trainer;
    struct {
        char type[16];         // icepop | gspo | dppo
        double mask_low, mask_high, seq_mask_low, kl_tau;
        double gspo_clip_low, gspo_clip_high;
        double dppo_delta;
        int std_normalize;
        int length_weighted_mean;
    } loss;
    struct {
        int batch_size;
        int group_size;
        int max_off_policy_steps;
        int in_flight_updates;
        int drop_zero_advantage;
        int max_dropped_groups;
        int groups_per_rank;
        double easy_threshold, easy_keep;
        double hard_threshold, hard_keep;
    } orchestrator;
    EnvConfig env;             // env.tasks, env.weights and each environment's settings
    struct {
        double temperature, top_p, min_p;
        int top_k;
        int max_tokens;
        int max_seqs;
        int kv_block_size;
        int kv_blocks;
        char kv_cache_dtype[8];  // fp32 | fp16
        int prefill_chunk;
    } inference;
    struct {
        int steps;
        double lr;
        int batch_size;
        char data[CFG_STR_MAX];  // "env" or a JSONL file of {"prompt","completion"}
    } sft;
    struct {
        int interval;
        int problems;
        int samples;
        double pass_threshold;
    } eval;
    struct {
        int interval;
        char resume[32];       // none | latest | a step number
        int keep;
        int at_end;
    } checkpoint;
    struct {
        char level[8];         // debug | info | warn | error
        int rollouts;
        int print_every;
    } log;

    // Bookkeeping, not keys.
    char file[CFG_STR_MAX];    // where the config came from ("" for defaults only)
    int origin[CFG_MAX_KEYS];  // per key: 0 default, >0 line in file, -1 --set, -2 config text
};

void config_defaults(Config *cfg);
// Reads `path`, applies the overrides ("group.key=value") and validates. 0 or -1 with err.
int config_load(Config *cfg, const char *path, char **overrides, int n_overrides, ErrorBuf *err);
// Same from text (the resolved config another rank or a checkpoint carries).
int config_load_text(Config *cfg, const char *text, const char *origin, char **overrides, int n_overrides,
                     ErrorBuf *err);
int config_set(Config *cfg, const char *assignment, ErrorBuf *err);  // one "group.key=value"
int config_validate(const Config *cfg, ErrorBuf *err);              // cross-key rules
int config_check_world(const Config *cfg, int world_size, ErrorBuf *err);
// The resolved config as libconfig text (heap string): every key with its value.
char *config_to_text(const Config *cfg);
void config_print_defaults(FILE *out);
// "file:line", "--set" or "default" for a key path (one of four rotating static buffers,
// so a message may name up to four origins).
const char *config_origin(const Config *cfg, const char *path);
int config_world_size(const Config *cfg);  // 1 + trainers + inference
// Whether a run at (steps_done RL steps, sft_done warm-up steps) still has warm-up steps to do:
// the warm-up comes before RL and is not taken up again after an RL step (orchestrator and
// trainer both decide by this).
int config_warmup_pending(const Config *cfg, int steps_done, int sft_done);
