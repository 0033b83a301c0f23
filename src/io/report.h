// `asyncrl report RUN_DIR`: a summary of a run from its metrics.h5 (see io/metrics.h) and its
// checkpoints directory: steps done, wall time, the reward curve in numbers, evaluations,
// throughput, off-policy levels, masking, skipped steps and the checkpoints present. Works on
// a finished run and on one still being written (the file is opened as an HDF5 SWMR reader);
// a missing, damaged or foreign file is an error message, never a crash.
#pragma once
#include <stdio.h>

#include "core/error.h"

// Prints the summary of RUN_DIR (or of a metrics.h5 given directly) to out. 0, or -1 with err
// saying what was wrong and what to do.
int report_print(const char *run_dir, FILE *out, ErrorBuf *err);

int cmd_report(int argc, char **argv);
