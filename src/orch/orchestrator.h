// The orchestrator (rank 0): keeps every inference rank busy with rollout groups, scores
// finished groups with the environments, computes advantages, drops zero-advantage groups,
// packs each step's batch for the trainers, evaluates on held-out problems, and writes
// metrics.h5. It does little arithmetic and never spins: it sleeps whenever no message waits.
//
// Staleness (DESIGN.md section 2): with async_level k, a group that will land in step n's
// batch is only handed out once every inference rank holds a policy no older than v(n-k).
// Groups still in flight when a batch is full carry over to the next step. Inference cancels a
// sequence that lived through more than max_off_policy_steps weight updates, and the orchestrator
// reschedules its group. In deterministic mode step n's groups are handed out at once, in a
// fixed order to fixed ranks, each request naming the exact version v(max(0, n-k)).
#pragma once
#include "comm/layout.h"
#include "core/config.h"

// Runs the whole job on rank 0: optional SFT warm-up, evaluation, RL steps, final evaluation,
// shutdown of every rank. Returns the process exit status.
// resume_path: the checkpoint to continue from ("" for a fresh run).
int orchestrator_run(const Config *cfg, const Layout *layout, const char *resume_path);
