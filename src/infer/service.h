// An inference rank: takes rollout requests from the orchestrator, runs them through the
// engine (continuous batching), sends completions back as sequences finish, and takes new
// weights from the trainer root between two engine steps (in flight by default; draining
// first when in-flight updates are off; at exactly the version a request names in
// deterministic mode). It acknowledges every version it starts sampling with. It sleeps when
// there is nothing to do.
#pragma once
#include "comm/layout.h"
#include "core/config.h"

int inference_run(const Config *cfg, const Layout *layout);
