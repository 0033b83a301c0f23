// HDF5 helpers shared by the metrics writer and checkpoints: H5_CHECK (a failed HDF5 call
// ends the job with HDF5's own error stack, file, line, rank and a hint), extendable 1-D
// datasets that grow by appending, and attributes holding strings and scalars.
#pragma once
#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

// Turns off HDF5's automatic error printing: errors are printed once, by H5_CHECK.
void h5_quiet(void);
void h5_print_stack(void);

// File-access properties (close with H5Pclose). For reading files that are never written again
// (checkpoints) or are read beside their SWMR writer (report): no file lock, so reads work on
// filesystems without locks (NFS, Lustre mounted without flock) and beside any lock holder.
hid_t h5_fapl_read(void);
// For the metrics writer: HDF5's lock (it keeps a second writer out), ignored where the
// filesystem has locks disabled (ENOSYS).
hid_t h5_fapl_write(void);
// After a failed H5Fopen / H5Fcreate, before any other HDF5 call: 1 when the error stack says
// the file could not be locked.
int h5_lock_failed(void);
// What to do about a lock that failed on path (a hint for FATAL / error messages).
#define H5_LOCK_HINT                                                                                   \
    "HDF5 could not lock the file: another process has it open (a second job writing to the same "  \
    "run.output_dir?), or the filesystem does not support locks (NFS, Lustre without flock): there, " \
    "export HDF5_USE_FILE_LOCKING=FALSE before mpirun / srun"

#define H5_CHECK(call, hint)                                                            \
    ({                                                                                  \
        __typeof__(call) h5_rc_ = (call);                                               \
        if (h5_rc_ < 0) {                                                               \
            h5_print_stack();                                                           \
            FATAL((hint), "HDF5 call failed: %s", #call);                               \
        }                                                                               \
        h5_rc_;                                                                         \
    })

// Creates a chunked, unlimited 1-D dataset of `type` (length 0) under `loc`.
hid_t h5_create_extendable(hid_t loc, const char *name, hid_t type, hsize_t chunk);
// 1 when the dataset is 1-D. h5_length: the length of a 1-D dataset (any other shape is fatal:
// a damaged file, or one another program wrote).
int h5_is_1d(hid_t dataset);
hsize_t h5_length(hid_t dataset);
// Appends n elements of `type` from buf at the end of a 1-D extendable dataset.
void h5_append(hid_t dataset, hid_t type, const void *buf, hsize_t n);
// Writes n elements at offset (growing the dataset when needed).
void h5_write_at(hid_t dataset, hid_t type, const void *buf, hsize_t offset, hsize_t n);
void h5_set_length(hid_t dataset, hsize_t n);

void h5_attr_string(hid_t loc, const char *name, const char *value);
void h5_attr_i64(hid_t loc, const char *name, int64_t value);
void h5_attr_f64(hid_t loc, const char *name, double value);
// Reads attributes; 0 on success, -1 if missing or of another kind (no error printed).
int h5_read_attr_i64(hid_t loc, const char *name, int64_t *value);
int h5_read_attr_f64(hid_t loc, const char *name, double *value);
char *h5_read_attr_string(hid_t loc, const char *name);  // heap string or NULL
int h5_exists(hid_t loc, const char *path);                // link exists (each path component)
