// The run's metrics file <out>/metrics.h5, written by the orchestrator in HDF5 SWMR mode so
// that h5py (swmr=True) and h5dump can read it while the job runs:
//   /steps/<name>          float64, one extendable dataset per metric, row i = step i (NaN
//                          where a metric was not produced at that step)
//   /rollouts/<column>     one row per rollout: step, group, problem, env, sample, reward,
//                          advantage, prompt_len, completion_len, version_min, version_max,
//                          finish, token_offset, n_tokens
//   /rollouts/tokens, /rollouts/token_versions   every rollout's tokens (prompt then
//                          completion, flat; rows slice them with token_offset/n_tokens) and
//                          the policy version of each (-1 for prompt and environment tokens)
//   /<table>/<name>        row tables such as /eval (one row per evaluation) and /sft (one row
//                          per warm-up step), each with a "step" column
//   attributes on /: config (the resolved config text), env_names, created
// Every dataset is created when the file is opened (SWMR forbids creating them later), so the
// caller names its metrics up front. Each write is flushed, so a killed job loses at most the
// step in progress.
#pragma once
#include <stdint.h>

typedef struct MetricsWriter MetricsWriter;

typedef struct {
    int32_t step;
    uint64_t group, problem;
    int32_t env, sample;
    double reward, advantage;
    int32_t prompt_len, completion_len;
    int32_t version_min, version_max;
    int32_t finish;
    const int32_t *tokens;          // (prompt_len + completion_len) or NULL when tokens are not kept
    const int32_t *token_versions;  // same length, -1 on prompt/environment tokens
} RolloutRecord;

typedef struct {
    const char *name;            // group name, e.g. "eval"
    const char *const *columns;  // column names; must include "step"
    int n_columns;
    int rl_steps;                // 1: "step" is an RL step (rows of later steps go on resume)
} MetricsTable;

// Opens (creating or, with resume_steps >= 0, reopening and cutting back to that many step rows,
// the rollouts of earlier steps and the table rows of steps up to resume_steps: a row of step N
// belongs to the checkpoint of step N) and starts SWMR writing. resume_steps =
// METRICS_APPEND reopens and keeps every row (an evaluation of a run's checkpoint adds its rows);
// config_text NULL keeps the file's config attribute.
#define METRICS_APPEND INT64_MAX
MetricsWriter *metrics_open(const char *path, const char *const *step_names, int n_step,
                            const MetricsTable *tables, int n_tables, const char *config_text,
                            const char *env_names, int keep_tokens, int64_t resume_steps);
// Writes the values of step `step`; names not declared at open are reported once and skipped.
void metrics_write_step(MetricsWriter *m, int64_t step, const char *const *names, const double *values, int n);
void metrics_write_rollouts(MetricsWriter *m, const RolloutRecord *records, int n);
// Appends a row to table `table` (index into the tables given at open) for step `step`.
void metrics_write_row(MetricsWriter *m, int table, int64_t step, const char *const *names, const double *values,
                       int n);
// The step of table `table`'s last row, or -1 when it has none.
int64_t metrics_table_last_step(const MetricsWriter *m, int table);
void metrics_flush(MetricsWriter *m);
void metrics_close(MetricsWriter *m);
