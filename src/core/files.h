// Filesystem helpers shared by the writers of run directories (metrics, checkpoints,
// converted models).
#pragma once
#include "core/error.h"

// Creates directory `path` and any missing parents (mkdir -p), mode 0755. An existing
// directory is fine; -1 + err names the component that could not be created and why.
int make_dirs(const char *path, ErrorBuf *err);
