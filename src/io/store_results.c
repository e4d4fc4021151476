#include "io/store_results.h"

#include "core/fsutil.h"
#include "io/h5_check.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static tp_status fail(const char *path, const char *what)
{
    char m[256];
    return tp_err(TP_ERR_HDF5, "%s: %s failed: %s", path, what, h5_last_error(m, sizeof m));
}

/* The same with a cause kept at the failing call (the closes after it clear HDF5's
 * error stack). */
static tp_status fail_kept(const char *path, const char *what, const char *cause)
{
    return tp_err(TP_ERR_HDF5, "%s: %s failed: %s", path, what, cause);
}

static tp_status write_vec(hid_t g, const char *path, const char *name, int rank, const hsize_t *dims,
                           const double *data)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = sp < 0 ? -1 : H5Dcreate2(g, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    errno = 0;
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    char m[256] = "";
    if (e < 0) h5_cause(m, sizeof m, errno);
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (e < 0) {
        char what[160];
        snprintf(what, sizeof what, "writing %s", name);
        return fail_kept(path, what, m);
    }
    return TP_OK;
}

static tp_status attr_i64(hid_t g, const char *path, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    errno = 0;
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    char m[256] = "";
    if (e < 0) h5_cause(m, sizeof m, errno);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return e < 0 ? fail_kept(path, name, m) : TP_OK;
}

static tp_status attr_str(hid_t g, const char *path, const char *name, const char *v)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(v) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    errno = 0;
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, v);
    char m[256] = "";
    if (e < 0) h5_cause(m, sizeof m, errno);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return e < 0 ? fail_kept(path, name, m) : TP_OK;
}

tp_status store_write_pca(const char *path, const char *hook, const store_pca *p)
{
    TP_CHECK(fs_before_write());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    if (f < 0) return fail(path, "opening the store to write /pca");
    tp_status st = TP_OK;
    hid_t top = -1, g = -1;
    if (H5Lexists(f, "pca", H5P_DEFAULT) > 0) top = H5Gopen2(f, "pca", H5P_DEFAULT);
    else top = H5Gcreate2(f, "pca", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (top < 0) { st = fail(path, "creating /pca"); goto done; }
    if (H5Lexists(top, hook, H5P_DEFAULT) > 0 && H5Ldelete(top, hook, H5P_DEFAULT) < 0) {
        st = fail(path, "replacing an earlier /pca group");
        goto done;
    }
    g = H5Gcreate2(top, hook, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) { st = fail(path, "creating the /pca group"); goto done; }
    hsize_t dv[1] = {(hsize_t)p->d}, dm[2] = {(hsize_t)p->k, (hsize_t)p->d};
    TP_CHECK_GOTO(write_vec(g, path, "mean", 1, dv, p->mean), st, done);
    TP_CHECK_GOTO(write_vec(g, path, "eigenvalues", 1, dv, p->eigenvalues), st, done);
    TP_CHECK_GOTO(write_vec(g, path, "explained_variance_ratio", 1, dv, p->explained_variance_ratio), st, done);
    TP_CHECK_GOTO(write_vec(g, path, "components", 2, dm, p->components), st, done);
    TP_CHECK_GOTO(attr_i64(g, path, "n_rows", p->n_rows), st, done);
    TP_CHECK_GOTO(attr_i64(g, path, "k", p->k), st, done);
    TP_CHECK_GOTO(attr_str(g, path, "method", p->method), st, done);
    errno = 0;
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) {
        char m[256];
        st = fail_kept(path, "flushing /pca", h5_cause(m, sizeof m, errno));
        goto done;
    }
    TP_CHECK_GOTO(attr_i64(g, path, "complete", 1), st, done);
done:
    if (g >= 0) H5Gclose(g);
    if (top >= 0) H5Gclose(top);
    if (H5Fclose(f) < 0 && st == TP_OK) st = fail(path, "closing the store after writing /pca");
    return st;
}

tp_status store_read_pca_components(const char *path, const char *hook, int64_t k, int64_t d, double *out)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char name[512];
    snprintf(name, sizeof name, "/pca/%s/components", hook);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return fail(path, "opening the store");
    tp_status st = TP_OK;
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) {
        st = tp_err(TP_ERR_FORMAT, "%s: no dataset %s (run `transpolmo geometry`)", path, name);
    } else {
        hsize_t dims[2] = {0, 0};
        hid_t sp = H5Dget_space(ds);
        if (H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 ||
            dims[0] != (hsize_t)k || dims[1] != (hsize_t)d)
            st = tp_err(TP_ERR_FORMAT, "%s: %s is not [%lld, %lld]", path, name, (long long)k, (long long)d);
        else if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
            st = fail(path, name);
        H5Sclose(sp);
        H5Dclose(ds);
    }
    H5Fclose(f);
    return st;
}

struct store_serial {
    char path[TP_PATH_MAX];
    hid_t file;
};

tp_status store_serial_open(const char *path, store_serial **out)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    store_serial *h = tp_calloc(1, sizeof *h);
    if (!h) return TP_ERR_NOMEM;
    if (fs_path(h->path, sizeof h->path, "%s", path) != TP_OK) { free(h); return TP_ERR_RANGE; }
    h->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (h->file < 0) {
        free(h);
        return fail(path, "opening the store");
    }
    *out = h;
    return TP_OK;
}

void store_serial_close(store_serial *h)
{
    if (!h) return;
    H5Fclose(h->file);
    free(h);
}

/* The 1-D dataset `dataset` and its length. */
static tp_status open_1d(const store_serial *h, const char *dataset, hid_t *ds, hsize_t *len)
{
    *ds = H5Dopen2(h->file, dataset, H5P_DEFAULT);
    if (*ds < 0) return tp_err(TP_ERR_FORMAT, "%s: no dataset /%s", h->path, dataset);
    hid_t fs = H5Dget_space(*ds);
    int ok = H5Sget_simple_extent_ndims(fs) == 1 && H5Sget_simple_extent_dims(fs, len, NULL) >= 0;
    H5Sclose(fs);
    if (ok) return TP_OK;
    H5Dclose(*ds);
    return tp_err(TP_ERR_FORMAT, "%s: /%s is not a 1-D dataset", h->path, dataset);
}

static tp_status read_1d(const store_serial *h, const char *dataset, hid_t memtype, int64_t row0, int64_t n, void *out)
{
    hid_t ds;
    hsize_t len = 0;
    TP_CHECK(open_1d(h, dataset, &ds, &len));
    tp_status st = TP_OK;
    if (row0 < 0 || n < 1 || (hsize_t)(row0 + n) > len) {
        st = tp_err(TP_ERR_RANGE, "%s: rows %lld..%lld of /%s outside [0, %llu)", h->path, (long long)row0,
                    (long long)(row0 + n), dataset, (unsigned long long)len);
    } else {
        hsize_t start[1] = {(hsize_t)row0}, count[1] = {(hsize_t)n};
        hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, count, NULL);
        if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
            H5Dread(ds, memtype, ms, fs, H5P_DEFAULT, out) < 0)
            st = fail(h->path, dataset);
        H5Sclose(ms);
        H5Sclose(fs);
    }
    H5Dclose(ds);
    return st;
}

tp_status store_serial_read_i32(store_serial *h, const char *dataset, int64_t row0, int64_t n, int32_t *out)
{
    return read_1d(h, dataset, H5T_NATIVE_INT32, row0, n, out);
}

tp_status store_serial_read_i64(store_serial *h, const char *dataset, int64_t row0, int64_t n, int64_t *out)
{
    return read_1d(h, dataset, H5T_NATIVE_INT64, row0, n, out);
}

tp_status store_serial_length(store_serial *h, const char *dataset, int64_t *n)
{
    hid_t ds;
    hsize_t len = 0;
    TP_CHECK(open_1d(h, dataset, &ds, &len));
    H5Dclose(ds);
    *n = (int64_t)len;
    return TP_OK;
}

tp_status store_read_i32_serial(const char *path, const char *dataset, int64_t row0, int64_t n, int32_t *out)
{
    store_serial *h;
    TP_CHECK(store_serial_open(path, &h));
    tp_status st = store_serial_read_i32(h, dataset, row0, n, out);
    store_serial_close(h);
    return st;
}

tp_status store_read_i64_serial(const char *path, const char *dataset, int64_t row0, int64_t n, int64_t *out)
{
    store_serial *h;
    TP_CHECK(store_serial_open(path, &h));
    tp_status st = store_serial_read_i64(h, dataset, row0, n, out);
    store_serial_close(h);
    return st;
}

tp_status store_dataset_length_serial(const char *path, const char *dataset, int64_t *n)
{
    store_serial *h;
    TP_CHECK(store_serial_open(path, &h));
    tp_status st = store_serial_length(h, dataset, n);
    store_serial_close(h);
    return st;
}
