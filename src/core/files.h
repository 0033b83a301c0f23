// Filesystem helpers: directories for run outputs (metrics, checkpoints, converted models)
// and whole-file reads for the readers of small input files (JSONL data, JSON configs).
#pragma once
#include <stddef.h>
#include <stdio.h>

#include "core/error.h"

// The 8 bytes every HDF5 file starts with (checkpoints are HDF5: model loaders tell them apart).
#define HDF5_SIGNATURE "\x89HDF\r\n\x1a\n"
// Whether path is a readable file that starts with HDF5_SIGNATURE (as asyncrl's checkpoints and
// metrics files do).
int file_is_hdf5(const char *path);

// Creates directory `path` and any missing parents (mkdir -p), mode 0755. An existing
// directory is fine; -1 + err names the component that could not be created and why.
int make_dirs(const char *path, ErrorBuf *err);

// Takes an exclusive lock on DIR/.asyncrl.lock (flock) for the rest of the process and writes
// "host pid" into it, so that a second job writing to the same run directory stops at once
// instead of truncating this one's metrics. 0 when held (or when the filesystem has no locks:
// *unsupported = 1, the caller warns); -1 + err naming the holder when another process still
// has it after wait_s seconds of retrying once a second (0: no retry).
int run_dir_lock(const char *dir, int wait_s, int *unsupported, ErrorBuf *err);

// -1 + err (run_dir_lock's, naming the holder) when another process holds DIR's lock now; 0
// otherwise (no lock file, a free lock, or a filesystem without locks). Takes nothing.
int run_dir_busy(const char *dir, ErrorBuf *err);

// 0 while the lock file run_dir_lock took is still there as the same file; -1 + err when the
// run directory was deleted, moved or replaced under the job (whose metrics would then go to a
// deleted file while another job could take the directory). 0 when no lock was taken.
int run_dir_check(ErrorBuf *err);

// The whole of regular file `path`, NUL-terminated (*len bytes before the NUL), in a buffer
// the caller frees. NULL + err (naming the file and why) when it cannot be opened, is not a
// regular file, is larger than max_bytes, or cannot be read whole.
char *file_read_all(const char *path, size_t max_bytes, size_t *len, ErrorBuf *err);

// Ends an atomic write of `path` through its temporary `tmp`, open as fp: flushes, syncs and
// closes fp and renames tmp to path when `ok` (every write succeeded) and all that works;
// otherwise removes tmp and returns -1 + err ("cannot write PATH"). fp is closed either way.
int file_commit(FILE *fp, int ok, const char *tmp, const char *path, ErrorBuf *err);
