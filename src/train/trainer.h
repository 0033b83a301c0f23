// A trainer rank: receives packed batches from the orchestrator, runs the model forward and
// the loss (icepop / gspo / dppo, or cross-entropy for the SFT warm-up), backward, reduces the
// gradients across trainer ranks (normalised by the step's global count of loss tokens), clips
// them, steps AdamW, and, on the root, reports the step's metrics and publishes the new
// weights to the inference ranks. A non-finite loss or gradient skips the update; too many in
// a row stop the run.
#pragma once
#include "comm/layout.h"
#include "core/config.h"

// resume_path: the checkpoint to continue from ("" for a fresh run).
int trainer_run(const Config *cfg, const Layout *layout, const char *resume_path);
