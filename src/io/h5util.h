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
