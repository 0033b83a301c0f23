// Checkpoints <run.output_dir>/checkpoints/step_NNNNNN.h5 (DESIGN.md section 5):
//   /model/<tensor>            every parameter under its Hugging Face name, float32, with its
//                              shape (opens in h5py as plain arrays)
//   /optimizer/m/<tensor>, /optimizer/v/<tensor>   AdamW moments, same names and shapes
//   /orchestrator/pending      problem indices handed out but not trained yet (re-issued first
//                              on resume, so no problem is replayed or skipped)
//   /orchestrator/easy, /orchestrator/hard   the problem pools (ids)
//   /history/v_<version>       deterministic mode with async_level k: the params (flat, float32)
//                              of the k policies before this one, which the next steps' rollouts
//                              use, so a resumed run reproduces the uninterrupted one exactly
//   attributes on /: step (RL steps trained = policy version), optimizer_step, sft_done,
//   bad_in_row, cursor, sft_cursor, next_group, next_request, rr_rank, seed, the model shape
//   (dim, n_layers, n_heads, n_kv_heads, head_dim, hidden_dim, vocab_size, max_seq_len,
//   tied_embeddings, qkv_bias, rope_theta, norm_eps), config (the full config text), and
//   `complete`, written last.
// A checkpoint is written to step_NNNNNN.h5.tmp, flushed, fsync'ed and renamed; `keep` bounds
// how many complete ones stay. Every randomness of a run is derived from run.seed and the
// (step, problem, sample) it serves, so no generator state needs saving beyond the counters.
#pragma once
#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "train/optimizer.h"

typedef struct {
    int64_t step;            // RL steps trained; the checkpoint's policy version
    int64_t optimizer_step;  // AdamW updates (the schedule position)
    int64_t sft_done;        // warm-up steps done
    int64_t bad_in_row;      // non-finite steps in a row so far
    int64_t cursor, sft_cursor;       // next training / warm-up problem index
    int64_t next_group, next_request; // id counters
    int64_t rr_rank;                  // deterministic mode's next inference rank
    int64_t seed;
    int64_t n_pending;
    int64_t *pending;        // (n_pending) problem indices to re-issue first
    int64_t n_easy, n_hard;
    int64_t *easy, *hard;    // problem ids in the easy / hard pools (orchestrator.easy_threshold)
} CheckpointState;

void checkpoint_state_free(CheckpointState *st);

typedef struct {
    int64_t version;
    float *params;           // host, n_params floats
} PolicySnapshot;

// Writes checkpoint `st->step` under out_dir/checkpoints (created if needed) and removes the
// oldest complete ones beyond `keep` (0 = keep all). opt may be NULL (no /optimizer). On error
// nothing is left behind (the temporary file is removed) and the previous checkpoints are
// untouched. path_out (may be NULL) receives the final path.
int checkpoint_write(const char *out_dir, const Model *m, const Optimizer *opt, const CheckpointState *st,
                     const PolicySnapshot *history, int n_history, const char *config_text, int keep, char *path_out,
                     size_t path_size, ErrorBuf *err);

// Resolves checkpoint.resume: "none" -> 0; "latest" -> the newest complete checkpoint (1, path
// filled; incomplete or unreadable ones are skipped with a warning; 0 when there is none);
// a step number -> that checkpoint (1), or -1 + err when it is missing or incomplete.
int checkpoint_resolve(const char *out_dir, const char *resume, char *path, size_t path_size, ErrorBuf *err);
// The step of the newest complete checkpoint in out_dir/checkpoints, or -1 when there is none.
int64_t checkpoint_newest(const char *out_dir);
// A run resumed from `step` abandons the checkpoints of later steps: left in place, checkpoint.keep
// would prune the new run's own checkpoints ahead of them and a later "latest" would take them.
// Moves them (complete or not) into a new folder out_dir/checkpoints/rolled_back_to_NNNNNN (a
// suffix _2, _3, ... when it exists), whose path goes to `where`. Returns how many moved (0:
// none, nothing created), or -1 with err.
int checkpoint_set_aside_newer(const char *out_dir, int64_t step, char *where, size_t where_size, ErrorBuf *err);

// Reading. Each checks what it reads and fails with a clear message (never a crash).
int checkpoint_read_state(const char *path, CheckpointState *st, char **config_text, ErrorBuf *err);
// The model shape stored in the checkpoint.
int checkpoint_read_config(const char *path, ModelConfig *mc, ErrorBuf *err);
// Loads /model into m; the checkpoint's shape must equal m's (names the first difference).
int checkpoint_read_model(const char *path, Model *m, ErrorBuf *err);
// A new model of the checkpoint's shape with its /model weights (NULL + err on failure).
Model *checkpoint_load_model(const char *path, ErrorBuf *err);
// model.tokenizer of the config the checkpoint was written with ("byte" or a path, relative to
// the directory the job ran in), into buf.
int checkpoint_read_tokenizer(const char *path, char *buf, size_t size, ErrorBuf *err);
int checkpoint_read_optimizer(const char *path, Optimizer *opt, const Model *m, ErrorBuf *err);
// The stored earlier policies (oldest first, heap arrays of n_params floats each); *n may be 0.
int checkpoint_read_history(const char *path, size_t n_params, PolicySnapshot **out, int *n, ErrorBuf *err);
