// Preemption signals: SIGTERM and SIGUSR1 (what Slurm sends before a time limit, directly or
// through the job script) do not kill a rank; they set a flag. The orchestrator polls it,
// lets the step in progress finish, has a checkpoint written, and ends the job with status 0.
// A trainer or inference rank that gets one passes it on to the orchestrator (MSG_STOP).
#pragma once

void signals_install(void);
int signals_stop_requested(void);  // the signal number received, or 0
