// HDF5 helpers (see h5util.h).
#include "io/h5util.h"

#include <stdlib.h>
#include <string.h>

void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

void h5_print_stack(void) { H5Eprint2(H5E_DEFAULT, stderr); }

// H5Pset_file_locking exists from HDF5 1.10.7 and 1.12.1 (older libraries lock as they always did;
// the HDF5_USE_FILE_LOCKING environment variable still turns it off there).
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
#define H5UTIL_FILE_LOCKING 1
#endif

static hid_t fapl_with_locking(int use_locks) {
    hid_t fapl = H5_CHECK(H5Pcreate(H5P_FILE_ACCESS), "");
#ifdef H5UTIL_FILE_LOCKING
    H5_CHECK(H5Pset_file_locking(fapl, use_locks ? 1 : 0, 1), "");
#else
    (void)use_locks;
#endif
    return fapl;
}

hid_t h5_fapl_read(void) { return fapl_with_locking(0); }

hid_t h5_fapl_write(void) { return fapl_with_locking(1); }

static herr_t find_lock_error(unsigned n, const H5E_error2_t *e, void *found) {
    (void)n;
    if (e->desc && strstr(e->desc, "unable to lock file")) *(int *)found = 1;
    return 0;
}

int h5_lock_failed(void) {
    int found = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, find_lock_error, &found);
    return found;
}

hid_t h5_create_extendable(hid_t loc, const char *name, hid_t type, hsize_t chunk) {
    hsize_t dims[1] = {0}, max[1] = {H5S_UNLIMITED}, chunks[1] = {chunk ? chunk : 1024};
    hid_t space = H5_CHECK(H5Screate_simple(1, dims, max), "");
    hid_t dcpl = H5_CHECK(H5Pcreate(H5P_DATASET_CREATE), "");
    H5_CHECK(H5Pset_chunk(dcpl, 1, chunks), "");
    hid_t lcpl = H5_CHECK(H5Pcreate(H5P_LINK_CREATE), "");
    H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), "");
    hid_t ds = H5Dcreate2(loc, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    if (ds < 0) {
        h5_print_stack();
        FATAL("the output directory may be full or not writable, or two datasets clash by name",
              "cannot create HDF5 dataset %s", name);
    }
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(space);
    return ds;
}

int h5_is_1d(hid_t dataset) {
    hid_t space = H5Dget_space(dataset);
    const int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (space >= 0) H5Sclose(space);
    return rank == 1;
}

hsize_t h5_length(hid_t dataset) {
    if (!h5_is_1d(dataset)) {
        char name[256] = "?";
        H5Iget_name(dataset, name, sizeof name);
        FATAL("the file is damaged or was written by another program: move it away", "dataset %s should be 1-D "
              "and is not", name);
    }
    hid_t space = H5_CHECK(H5Dget_space(dataset), "");
    hsize_t dims[1] = {0};
    H5_CHECK(H5Sget_simple_extent_dims(space, dims, NULL), "");
    H5Sclose(space);
    return dims[0];
}

void h5_set_length(hid_t dataset, hsize_t n) {
    hsize_t dims[1] = {n};
    H5_CHECK(H5Dset_extent(dataset, dims), "the disk may be full");
}

void h5_write_at(hid_t dataset, hid_t type, const void *buf, hsize_t offset, hsize_t n) {
    if (n == 0) return;
    if (h5_length(dataset) < offset + n) h5_set_length(dataset, offset + n);
    hid_t file_space = H5_CHECK(H5Dget_space(dataset), "");
    hsize_t start[1] = {offset}, count[1] = {n};
    H5_CHECK(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, count, NULL), "");
    hid_t mem_space = H5_CHECK(H5Screate_simple(1, count, NULL), "");
    H5_CHECK(H5Dwrite(dataset, type, mem_space, file_space, H5P_DEFAULT, buf), "the disk may be full");
    H5Sclose(mem_space);
    H5Sclose(file_space);
}

void h5_append(hid_t dataset, hid_t type, const void *buf, hsize_t n) {
    h5_write_at(dataset, type, buf, h5_length(dataset), n);
}

static void attr_write(hid_t loc, const char *name, hid_t type, hid_t space, const void *value) {
    if (H5Aexists(loc, name) > 0) H5_CHECK(H5Adelete(loc, name), "");
    hid_t attr = H5_CHECK(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT), "the disk may be full");
    H5_CHECK(H5Awrite(attr, type, value), "");
    H5Aclose(attr);
}

void h5_attr_string(hid_t loc, const char *name, const char *value) {
    hid_t type = H5_CHECK(H5Tcopy(H5T_C_S1), "");
    size_t n = strlen(value);
    H5_CHECK(H5Tset_size(type, n ? n : 1), "");
    H5_CHECK(H5Tset_strpad(type, H5T_STR_NULLTERM), "");
    H5_CHECK(H5Tset_cset(type, H5T_CSET_UTF8), "");
    hid_t space = H5_CHECK(H5Screate(H5S_SCALAR), "");
    if (n) {
        attr_write(loc, name, type, space, value);
    } else {
        char empty[1] = {0};
        attr_write(loc, name, type, space, empty);
    }
    H5Sclose(space);
    H5Tclose(type);
}

void h5_attr_i64(hid_t loc, const char *name, int64_t value) {
    hid_t space = H5_CHECK(H5Screate(H5S_SCALAR), "");
    attr_write(loc, name, H5T_NATIVE_INT64, space, &value);
    H5Sclose(space);
}

void h5_attr_f64(hid_t loc, const char *name, double value) {
    hid_t space = H5_CHECK(H5Screate(H5S_SCALAR), "");
    attr_write(loc, name, H5T_NATIVE_DOUBLE, space, &value);
    H5Sclose(space);
}

static int read_attr(hid_t loc, const char *name, hid_t mem_type, void *value) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0) return -1;
    int rc = H5Aread(attr, mem_type, value) < 0 ? -1 : 0;
    H5Aclose(attr);
    return rc;
}

int h5_read_attr_i64(hid_t loc, const char *name, int64_t *value) { return read_attr(loc, name, H5T_NATIVE_INT64, value); }
int h5_read_attr_f64(hid_t loc, const char *name, double *value) { return read_attr(loc, name, H5T_NATIVE_DOUBLE, value); }

char *h5_read_attr_string(hid_t loc, const char *name) {
    if (H5Aexists(loc, name) <= 0) return NULL;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0) return NULL;
    hid_t type = H5Aget_type(attr);
    char *out = NULL;
    if (type >= 0 && H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
        size_t n = H5Tget_size(type);
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, n + 1);
        H5Tset_strpad(mem, H5T_STR_NULLTERM);
        H5Tset_cset(mem, H5Tget_cset(type));  // HDF5 does not convert between character sets
        out = xcalloc(n + 2, 1);
        if (H5Aread(attr, mem, out) < 0) {
            free(out);
            out = NULL;
        }
        H5Tclose(mem);
    }
    if (type >= 0) H5Tclose(type);
    H5Aclose(attr);
    return out;
}

int h5_exists(hid_t loc, const char *path) {
    char buf[1024];
    if (strlen(path) >= sizeof buf) return 0;
    strcpy(buf, path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (H5Lexists(loc, buf, H5P_DEFAULT) <= 0) return 0;
            *p = saved;
            if (!saved) return 1;
        }
    }
}
