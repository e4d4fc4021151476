#include "io/store.h"

#include "core/fsutil.h"
#include "io/h5_check.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STORE_MAX_ACTS 512
/* Chunks of whole rows, about 1 MiB: analyses read contiguous row blocks. */
#define CHUNK_BYTES ((int64_t)1 << 20)

/* The layout version written as the root attribute store_format; a store without
 * it (or of another version) is not resumed (the datasets it lacks cannot be
 * written into it). */
#define STORE_FORMAT 2

struct tp_store {
    char path[TP_PATH_MAX];
    hid_t file, dxpl;
    hid_t dxpl_ind;              /* independent transfers: store_write_acts */
    MPI_Comm comm;
    int64_t n_rows, n_docs, n_units;
    int n_acts;
    store_act_spec acts[STORE_MAX_ACTS];
    hid_t act_ds[STORE_MAX_ACTS];
};

/* Failure of an HDF5 call inside this file: message names the store's path. */
#define S_CHECK(s, expr)                                                             \
    do {                                                                             \
        if ((expr) < 0) {                                                            \
            char m_[256];                                                            \
            return tp_err(TP_ERR_HDF5, "%s: %s failed: %s", (s)->path, #expr,        \
                          h5_last_error(m_, sizeof m_));                             \
        }                                                                            \
    } while (0)

/* The cause of a failed call, kept before the closes that follow it clear HDF5's
 * error stack (err: errno for writes, reset before the call; 0 for reads and opens,
 * where HDF5's own probing leaves stale values); then the failure, naming the store
 * and what failed. */
#define S_KEEP_CAUSE(e, m, err)                                                      \
    char m[256] = "";                                                                \
    if ((e) < 0) h5_cause(m, sizeof m, (err))
#define S_CHECK_KEPT(s, e, m, what)                                                  \
    do {                                                                             \
        if ((e) < 0) return tp_err(TP_ERR_HDF5, "%s: %s failed: %s", (s)->path, what, m); \
    } while (0)

/* HDF5 has no half types built in: IEEE binary16 and bfloat16 as custom floats
 * (sign 15; exponent 10..14 bias 15 / 7..14 bias 127). HDF5 converts them to f32
 * for readers such as h5py (`ds.astype('f4')`). */
static hid_t storage_type(tp_dtype t)
{
    if (t == TP_DTYPE_F32) return H5Tcopy(H5T_IEEE_F32LE);
    hid_t h = H5Tcopy(H5T_IEEE_F32LE);
    if (h < 0) return h;
    herr_t e = t == TP_DTYPE_F16 ? H5Tset_fields(h, 15, 10, 5, 0, 10) : H5Tset_fields(h, 15, 7, 8, 0, 7);
    if (e >= 0) e = H5Tset_precision(h, 16);
    if (e >= 0) e = H5Tset_offset(h, 0);
    if (e >= 0) e = H5Tset_size(h, 2);
    if (e >= 0) e = H5Tset_ebias(h, t == TP_DTYPE_F16 ? 15 : 127);
    if (e < 0) { H5Tclose(h); return -1; }
    return h;
}

static void store_abandon(tp_store *s);

/* The OS error of a failed write: errno when the library kept it, else what the file
 * system says (MPI-IO reports a short write on a full disk without errno). */
static int write_errno(const tp_store *s)
{
    return errno ? errno : fs_write_errno(s->path);
}

static tp_status set_int_attr(tp_store *s, hid_t obj, const char *name, int value)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Aexists(obj, name) > 0 ? H5Aopen(obj, name, H5P_DEFAULT)
                                        : H5Acreate2(obj, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    errno = 0;
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT, &value);
    S_KEEP_CAUSE(e, cause, write_errno(s));
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    S_CHECK_KEPT(s, e, cause, "writing attribute");
    return TP_OK;
}

/* Number of values an attribute holds (a scalar: 1; an empty or null dataspace: 0). */
static hssize_t attr_points(hid_t a)
{
    hid_t sp = H5Aget_space(a);
    hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
    if (sp >= 0) H5Sclose(sp);
    return n;
}

static int get_int_attr(hid_t obj, const char *name)
{
    int v = 0;
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return 0;
    /* One value, an integer: H5Aread writes every element (tests/fuzz/fuzz_store_attrs). */
    hid_t t = H5Aget_type(a);
    if (attr_points(a) != 1 || H5Tget_class(t) != H5T_INTEGER || H5Aread(a, H5T_NATIVE_INT, &v) < 0) v = 0;
    H5Tclose(t);
    H5Aclose(a);
    return v;
}

static tp_status set_int64_attr(tp_store *s, hid_t obj, const char *name, int64_t value)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    errno = 0;
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &value);
    S_KEEP_CAUSE(e, cause, write_errno(s));
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    S_CHECK_KEPT(s, e, cause, "writing attribute");
    return TP_OK;
}

static tp_status set_str_attr_on(tp_store *s, hid_t obj, const char *key, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, key, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    errno = 0;
    herr_t e = a < 0 ? -1 : H5Awrite(a, t, value);
    S_KEEP_CAUSE(e, cause, write_errno(s));
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    S_CHECK_KEPT(s, e, cause, "writing attribute");
    return TP_OK;
}

static tp_status set_str_attr(tp_store *s, const char *key, const char *value)
{
    return set_str_attr_on(s, s->file, key, value);
}

/* A root attribute as text: a string as it is, an integer in decimal (stores of
 * format 1 wrote numbers as strings; both read the same). */
const char *store_attr(tp_store *s, const char *key, char *buf, size_t n)
{
    buf[0] = '\0';
    if (H5Aexists(s->file, key) <= 0) return buf;
    hid_t a = H5Aopen(s->file, key, H5P_DEFAULT);
    if (a < 0) return buf;
    hid_t ft = H5Aget_type(a);
    size_t sz = H5Tget_size(ft);
    char *tmp = calloc(1, sz + 1);
    int64_t v;
    /* One value only: H5Aread writes every element of an array attribute (found by
     * tests/fuzz/fuzz_store_attrs). */
    bool one = attr_points(a) == 1;
    if (one && tmp && H5Tget_class(ft) == H5T_STRING && !H5Tis_variable_str(ft) && H5Aread(a, ft, tmp) >= 0)
        snprintf(buf, n, "%s", tmp);
    else if (one && H5Tget_class(ft) == H5T_INTEGER && H5Aread(a, H5T_NATIVE_INT64, &v) >= 0)
        snprintf(buf, n, "%lld", (long long)v);
    free(tmp);
    H5Tclose(ft);
    H5Aclose(a);
    return buf;
}

static tp_status create_ds(tp_store *s, const char *name, hid_t ftype, int rank, int64_t rows, int64_t cols,
                           hid_t *out)
{
    hsize_t dims[2] = {(hsize_t)rows, (hsize_t)cols}, maxd[2] = {H5S_UNLIMITED, (hsize_t)cols};
    int64_t row_bytes = (rank == 2 ? cols : 1) * (int64_t)H5Tget_size(ftype);
    int64_t chunk_rows = CHUNK_BYTES / (row_bytes > 0 ? row_bytes : 1);
    if (chunk_rows < 1) chunk_rows = 1;
    if (chunk_rows > rows && rows > 0) chunk_rows = rows;
    hsize_t chunk[2] = {(hsize_t)chunk_rows, (hsize_t)cols};
    hid_t sp = H5Screate_simple(rank, dims, maxd);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    /* Rows are always written before they are read: skip the fill. */
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    errno = 0;
    hid_t ds = H5Dcreate2(s->file, name, ftype, sp, lcpl, dcpl, H5P_DEFAULT);
    S_KEEP_CAUSE(ds, cause, write_errno(s));
    H5Pclose(lcpl);
    H5Pclose(dcpl);
    H5Sclose(sp);
    S_CHECK_KEPT(s, ds, cause, "creating a dataset");
    tp_status st = set_int_attr(s, ds, "complete", 0);
    if (st != TP_OK) { H5Dclose(ds); return st; }
    if (out) *out = ds;
    else H5Dclose(ds);
    return TP_OK;
}

static tp_status open_file(const char *path, MPI_Comm comm, bool write, bool create, tp_store **out)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tp_store *s = tp_calloc(1, sizeof *s);
    if (!s) return TP_ERR_NOMEM;
    if (fs_path(s->path, sizeof s->path, "%s", path) != TP_OK) { free(s); return TP_ERR_RANGE; }
    s->comm = comm;
    s->file = s->dxpl = s->dxpl_ind = -1;
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, 1);
    H5Pset_coll_metadata_write(fapl, 1);
    if (create) s->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    else s->file = H5Fopen(path, write ? H5F_ACC_RDWR : H5F_ACC_RDONLY, fapl);
    char m[256];
    /* before H5Pclose clears the stack; errno is not asked: HDF5's probing of the
     * file leaves stale values behind (ENOENT for a file that exists). A write open
     * asks the file system instead (MPI-IO names no OS error for a read-only one). */
    if (s->file < 0) h5_cause(m, sizeof m, write ? fs_write_errno(path) : 0);
    H5Pclose(fapl);
    if (s->file < 0) {
        free(s);
        if (!create && access(path, F_OK) != 0)
            return tp_err(TP_ERR_IO, "activation store '%s' does not exist (run `transpolmo capture` first)", path);
        if (!create && strstr(m, "truncated"))
            return tp_err(TP_ERR_FORMAT, "activation store '%s' is truncated or corrupt (an interrupted copy or a full "
                          "disk?): %s", path, m);
        return tp_err(TP_ERR_HDF5, "cannot %s activation store '%s': %s", create ? "create" : "open", path, m);
    }
    s->dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(s->dxpl, H5FD_MPIO_COLLECTIVE);
    s->dxpl_ind = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(s->dxpl_ind, H5FD_MPIO_INDEPENDENT);
    *out = s;
    return TP_OK;
}

static hsize_t ds_rows(hid_t ds)
{
    hsize_t d[2] = {0, 0};
    hid_t sp = H5Dget_space(ds);
    H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp);
    return d[0];
}

static herr_t collect_act(hid_t group, const char *name, const H5L_info_t *info, void *data)
{
    (void)info;
    tp_store *s = data;
    if (s->n_acts >= STORE_MAX_ACTS) return 1;
    hid_t ds = H5Dopen2(group, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t sp = H5Dget_space(ds);
    hsize_t d[H5S_MAX_RANK] = {0};
    int rank = H5Sget_simple_extent_ndims(sp);   /* not [rows, d]: d[] would be written past */
    if (rank == 2) H5Sget_simple_extent_dims(sp, d, NULL);
    H5Sclose(sp);
    hid_t t = H5Dget_type(ds);
    if (rank != 2 || H5Tget_class(t) != H5T_FLOAT) {
        H5Tclose(t);
        H5Dclose(ds);
        tp_err(TP_ERR_FORMAT, "%s: /acts/%s is not a [rows, d] float dataset", s->path, name);
        return -1;
    }
    size_t sz = H5Tget_size(t);
    size_t epos, esize, mpos, msize, spos;
    H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize);
    H5Tclose(t);
    store_act_spec *a = &s->acts[s->n_acts];
    snprintf(a->name, sizeof a->name, "%s", name);
    a->cols = (int64_t)d[1];
    a->dtype = sz == 4 ? TP_DTYPE_F32 : (msize == 10 ? TP_DTYPE_F16 : TP_DTYPE_BF16);
    s->act_ds[s->n_acts++] = ds;
    return 0;
}

static tp_status load_acts(tp_store *s)
{
    s->n_acts = 0;
    if (H5Lexists(s->file, "acts", H5P_DEFAULT) <= 0) return TP_OK;
    hid_t g = H5Gopen2(s->file, "acts", H5P_DEFAULT);
    S_CHECK(s, g);
    tp_err_clear();
    herr_t e = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_act, s);
    S_KEEP_CAUSE(e, cause, 0);
    H5Gclose(g);
    if (e < 0 && tp_err_msg()[0]) return TP_ERR_FORMAT;   /* collect_act said what is wrong */
    S_CHECK_KEPT(s, e, cause, "listing /acts");
    return TP_OK;
}

static tp_status read_sizes(tp_store *s)
{
    const char *names[3] = {"tokens", "doc_index", "units_complete"};
    int64_t *dst[3] = {&s->n_rows, &s->n_docs, &s->n_units};
    for (int i = 0; i < 3; i++) {
        hid_t ds = H5Dopen2(s->file, names[i], H5P_DEFAULT);
        if (ds < 0)
            return tp_err(TP_ERR_FORMAT, "%s: not an activation store (no /%s)", s->path, names[i]);
        *dst[i] = (int64_t)ds_rows(ds);
        H5Dclose(ds);
    }
    return load_acts(s);
}

static const char *prov_text(const store_prov *p, char *buf, size_t n)
{
    if (p->text) return p->text;
    snprintf(buf, n, "%lld", (long long)p->num);
    return buf;
}

/* What a /acts dataset says about itself: the capture point, its layer and point,
 * the storage dtype, and what its numbers are. */
static tp_status describe_act(tp_store *s, hid_t ds, const store_act_spec *a)
{
    int L = -1, used = 0;
    const char *point = a->name;
    if (sscanf(a->name, "blocks.%d.%n", &L, &used) == 1 && used > 0) point = a->name + used;
    else L = -1;
    TP_CHECK(set_str_attr_on(s, ds, "hook", a->name));
    TP_CHECK(set_int64_attr(s, ds, "layer", L));
    TP_CHECK(set_str_attr_on(s, ds, "point", point));
    TP_CHECK(set_str_attr_on(s, ds, "dtype", a->dtype == TP_DTYPE_F16 ? "f16" : a->dtype == TP_DTYPE_BF16 ? "bf16" : "f32"));
    TP_CHECK(set_int64_attr(s, ds, "d", a->cols));
    return set_str_attr_on(s, ds, "units",
                           "the model's activation as computed in f32 (no scaling or normalisation), one row per token: "
                           "row i belongs to /tokens[i] (docs/hooks.md defines each point)");
}

/* A new store: provenance, every dataset, the format version. */
static tp_status create_layout(tp_store *s, const store_layout *L)
{
    tp_status st = set_int64_attr(s, s->file, "store_format", STORE_FORMAT);
    for (int i = 0; st == TP_OK && i < L->n_provenance; i++) {
        const store_prov *p = &L->provenance[i];
        st = p->text ? set_str_attr(s, p->key, p->text) : set_int64_attr(s, s->file, p->key, p->num);
    }
    if (st == TP_OK) st = create_ds(s, "tokens", H5T_STD_I32LE, 1, L->n_rows, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "positions", H5T_STD_I32LE, 1, L->n_rows, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "mask", H5T_STD_U8LE, 1, L->n_rows, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "row_doc", H5T_STD_I32LE, 1, L->n_rows, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "doc_offsets", H5T_STD_I64LE, 1, L->n_docs + 1, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "doc_index", H5T_STD_I64LE, 1, L->n_docs, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "doc_domain", H5T_STD_I32LE, 1, L->n_docs, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "domain_names", H5T_STD_U8LE, 2, L->n_domains, L->domain_name_len, NULL);
    if (st == TP_OK) st = create_ds(s, "vocab_offsets", H5T_STD_I64LE, 1, L->n_vocab + 1, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "vocab_bytes", H5T_STD_U8LE, 1, L->n_vocab_bytes, 1, NULL);
    if (st == TP_OK) st = create_ds(s, "units_complete", H5T_STD_U8LE, 1, L->n_units, 1, NULL);
    for (int i = 0; st == TP_OK && i < L->n_acts; i++) {
        s->acts[i] = L->acts[i];
        char name[STORE_NAME_MAX + 8];
        snprintf(name, sizeof name, "acts/%s", L->acts[i].name);
        hid_t t = storage_type(L->acts[i].dtype);
        if (t < 0) return tp_err(TP_ERR_HDF5, "%s: cannot make the storage type", s->path);
        st = create_ds(s, name, t, 2, L->n_rows, L->acts[i].cols, &s->act_ds[i]);
        H5Tclose(t);
        if (st == TP_OK) s->n_acts = i + 1;
        if (st == TP_OK) st = describe_act(s, s->act_ds[i], &L->acts[i]);
    }
    return st;
}

static tp_status check_provenance(tp_store *s, const store_layout *L)
{
    char got[4096], want[32];
    store_attr(s, "store_format", got, sizeof got);
    if (atoi(got) != STORE_FORMAT)
        return tp_err(TP_ERR_CONFIG, "%s was written in store format %s, this TranspOLMo writes format %d; use another "
                      "run directory or delete the store", s->path, got[0] ? got : "1", STORE_FORMAT);
    for (int i = 0; i < L->n_provenance; i++) {
        const store_prov *p = &L->provenance[i];
        store_attr(s, p->key, got, sizeof got);
        if (strcmp(got, prov_text(p, want, sizeof want)) != 0)
            return tp_err(TP_ERR_CONFIG,
                          "%s was made with %s = '%s', this run has '%s'; use another run directory "
                          "or delete the store",
                          s->path, p->key, got, prov_text(p, want, sizeof want));
    }
    if (s->n_rows != L->n_rows || s->n_docs != L->n_docs || s->n_units != L->n_units)
        return tp_err(TP_ERR_CONFIG, "%s: holds %lld rows / %lld documents / %lld units, this run needs %lld / %lld / %lld",
                      s->path, (long long)s->n_rows, (long long)s->n_docs, (long long)s->n_units,
                      (long long)L->n_rows, (long long)L->n_docs, (long long)L->n_units);
    for (int i = 0; i < L->n_acts; i++) {
        int k = store_find_act(s, L->acts[i].name);
        if (k < 0 || s->acts[k].cols != L->acts[i].cols || s->acts[k].dtype != L->acts[i].dtype)
            return tp_err(TP_ERR_CONFIG, "%s: dataset /acts/%s is missing or has another shape/dtype",
                          s->path, L->acts[i].name);
    }
    if (s->n_acts != L->n_acts)
        return tp_err(TP_ERR_CONFIG, "%s: holds %d capture points, this run asks for %d", s->path,
                      s->n_acts, L->n_acts);
    /* The file lists its datasets by name; writers address them in the layout's
     * order, so put them in that order. */
    for (int i = 0; i < L->n_acts; i++) {
        int k = store_find_act(s, L->acts[i].name);
        store_act_spec ta = s->acts[i];
        hid_t td = s->act_ds[i];
        s->acts[i] = s->acts[k], s->act_ds[i] = s->act_ds[k];
        s->acts[k] = ta, s->act_ds[k] = td;
    }
    return TP_OK;
}

tp_status store_open_write(const char *path, MPI_Comm comm, const store_layout *L, bool *created,
                           tp_store **out)
{
    if (L->n_acts > STORE_MAX_ACTS) return tp_err(TP_ERR_RANGE, "more than %d capture points", STORE_MAX_ACTS);
    int exists = access(path, F_OK) == 0, all_exist = 0;
    /* Every rank must take the same branch. */
    MPI_Allreduce(&exists, &all_exist, 1, MPI_INT, MPI_MIN, comm);
    tp_store *s;
    tp_status st;
    if (all_exist) {
        TP_CHECK(open_file(path, comm, true, false, &s));
        st = read_sizes(s);
        if (st == TP_OK) st = check_provenance(s, L);
        if (st != TP_OK) { store_abandon(s); return st; }
        *created = false;
        *out = s;
        return TP_OK;
    }
    TP_CHECK(fs_before_write());
    TP_CHECK(open_file(path, comm, true, true, &s));
    s->n_rows = L->n_rows, s->n_docs = L->n_docs, s->n_units = L->n_units;
    st = create_layout(s, L);
    if (st == TP_OK) {
        /* units_complete starts all zero (the fill was skipped). */
        int rank;
        MPI_Comm_rank(comm, &rank);
        uint8_t *zero = tp_calloc((size_t)(L->n_units ? L->n_units : 1), 1);
        if (!zero) st = TP_ERR_NOMEM;
        else {
            hid_t ds = H5Dopen2(s->file, "units_complete", H5P_DEFAULT);
            hid_t fs = H5Dget_space(ds);
            hsize_t cnt = (hsize_t)(rank == 0 ? L->n_units : 0);
            hid_t ms = H5Screate_simple(1, &(hsize_t){cnt ? cnt : 1}, NULL);
            if (!cnt) { H5Sselect_none(fs); H5Sselect_none(ms); }
            errno = 0;
            herr_t e = H5Dwrite(ds, H5T_NATIVE_UINT8, ms, fs, s->dxpl, zero);
            S_KEEP_CAUSE(e, cause, write_errno(s));
            H5Sclose(ms), H5Sclose(fs), H5Dclose(ds);
            free(zero);
            if (e < 0) st = tp_err(TP_ERR_HDF5, "%s: initialising /units_complete failed: %s", path, cause);
        }
    }
    if (st == TP_OK) st = store_flush(s);
    if (st != TP_OK) { store_abandon(s); return st; }
    *created = true;
    *out = s;
    return TP_OK;
}

tp_status store_open_read(const char *path, MPI_Comm comm, tp_store **out)
{
    tp_store *s;
    TP_CHECK(open_file(path, comm, false, false, &s));
    tp_status st = read_sizes(s);
    if (st != TP_OK) { store_abandon(s); return st; }
    *out = s;
    return TP_OK;
}

/* Closes after a failure: the error already recorded stays the one reported. */
void store_close_after_error(tp_store *s) { store_abandon(s); }

static void store_abandon(tp_store *s)
{
    char saved[2048];
    snprintf(saved, sizeof saved, "%s", tp_err_msg());
    store_close(s);
    tp_err_restore(saved);
}

tp_status store_close(tp_store *s)
{
    if (!s) return TP_OK;
    for (int i = 0; i < s->n_acts; i++) H5Dclose(s->act_ds[i]);
    if (s->dxpl >= 0) H5Pclose(s->dxpl);
    if (s->dxpl_ind >= 0) H5Pclose(s->dxpl_ind);
    errno = 0;
    herr_t e = s->file >= 0 ? H5Fclose(s->file) : 0;
    char m[256];
    if (e < 0) h5_cause(m, sizeof m, write_errno(s));
    char path[TP_PATH_MAX];
    snprintf(path, sizeof path, "%s", s->path);
    free(s);
    if (e < 0) return tp_err(TP_ERR_HDF5, "closing '%s' failed (disk full?): %s", path, m);
    return TP_OK;
}

/* One write of rows [row0, row0+n) of a 1-D or 2-D dataset: collective with
 * s->dxpl, independent with s->dxpl_ind. */
static tp_status write_rows(tp_store *s, hid_t dxpl, hid_t ds, hid_t memtype, int64_t row0, int64_t n,
                            int64_t cols, const void *buf, const char *what)
{
    hid_t fs = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(fs);
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)cols};
    hsize_t mdims[2] = {(hsize_t)(n ? n : 1), (hsize_t)cols};
    hid_t ms = H5Screate_simple(rank, mdims, NULL);
    herr_t e;
    if (n > 0) e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    else e = (H5Sselect_none(fs) < 0 || H5Sselect_none(ms) < 0) ? -1 : 0;
    static const char dummy[16];
    errno = 0;
    if (e >= 0) e = H5Dwrite(ds, memtype, ms, fs, dxpl, buf ? buf : dummy);
    char m[256];
    if (e < 0) h5_cause(m, sizeof m, write_errno(s));  /* before the closes clear the stack */
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return tp_err(TP_ERR_HDF5, "%s: writing %s rows %lld..%lld failed: %s", s->path, what,
                      (long long)row0, (long long)(row0 + n), m);
    return TP_OK;
}

static tp_status write_named(tp_store *s, const char *name, hid_t memtype, int64_t row0, int64_t n,
                             const void *buf)
{
    hid_t ds = H5Dopen2(s->file, name, H5P_DEFAULT);
    S_CHECK(s, ds);
    tp_status st = write_rows(s, s->dxpl, ds, memtype, row0, n, 1, buf, name);
    H5Dclose(ds);
    return st;
}

tp_status store_write_index(tp_store *s, int64_t row0, int64_t n, const int32_t *tokens,
                            const int32_t *positions, const uint8_t *mask, const int32_t *row_doc)
{
    TP_CHECK(fs_before_write());
    TP_CHECK(write_named(s, "tokens", H5T_NATIVE_INT32, row0, n, tokens));
    TP_CHECK(write_named(s, "positions", H5T_NATIVE_INT32, row0, n, positions));
    TP_CHECK(write_named(s, "row_doc", H5T_NATIVE_INT32, row0, n, row_doc));
    return write_named(s, "mask", H5T_NATIVE_UINT8, row0, n, mask);
}

tp_status store_write_docs(tp_store *s, const int64_t *doc_offsets, const int64_t *doc_index,
                           const int32_t *doc_domain, bool writer)
{
    TP_CHECK(fs_before_write());
    TP_CHECK(write_named(s, "doc_offsets", H5T_NATIVE_INT64, 0, writer ? s->n_docs + 1 : 0, doc_offsets));
    TP_CHECK(write_named(s, "doc_domain", H5T_NATIVE_INT32, 0, writer ? s->n_docs : 0, doc_domain));
    return write_named(s, "doc_index", H5T_NATIVE_INT64, 0, writer ? s->n_docs : 0, doc_index);
}

tp_status store_write_tables(tp_store *s, const char *const *domains, int64_t n_domains, int64_t name_len,
                             const int64_t *vocab_offsets, int64_t n_vocab, const uint8_t *vocab_bytes, bool writer)
{
    TP_CHECK(fs_before_write());
    uint8_t *names = NULL;
    if (writer) {
        if (!(names = tp_calloc((size_t)(n_domains * name_len + 1), 1))) return TP_ERR_NOMEM;
        for (int64_t i = 0; i < n_domains; i++)
            memcpy(names + i * name_len, domains[i], strnlen(domains[i], (size_t)name_len - 1));
    }
    hid_t ds = H5Dopen2(s->file, "domain_names", H5P_DEFAULT);
    S_CHECK(s, ds);
    tp_status st = write_rows(s, s->dxpl, ds, H5T_NATIVE_UINT8, 0, writer ? n_domains : 0, name_len, names,
                              "domain_names");
    H5Dclose(ds);
    free(names);
    TP_CHECK(st);
    TP_CHECK(write_named(s, "vocab_offsets", H5T_NATIVE_INT64, 0, writer ? n_vocab + 1 : 0, vocab_offsets));
    return write_named(s, "vocab_bytes", H5T_NATIVE_UINT8, 0, writer ? vocab_offsets[n_vocab] : 0, vocab_bytes);
}

tp_status store_write_acts(tp_store *s, int act, int64_t row0, int64_t n, const float *rows)
{
    TP_CHECK(fs_before_write());
    const store_act_spec *a = &s->acts[act];
    if (n <= 0) return TP_OK;   /* independent: nothing to do, no one to meet */
    if (a->dtype == TP_DTYPE_F32)
        return write_rows(s, s->dxpl_ind, s->act_ds[act], H5T_NATIVE_FLOAT, row0, n, a->cols, rows, a->name);
    /* Half types: convert here (round to nearest even), write the bits as they are. */
    size_t cnt = (size_t)(n * a->cols);
    uint16_t *half = tp_malloc((cnt ? cnt : 1) * sizeof *half);
    if (!half) return TP_ERR_NOMEM;
    if (cnt) tp_convert_from_f32(a->dtype, rows, half, cnt);
    hid_t t = storage_type(a->dtype);
    tp_status st = write_rows(s, s->dxpl_ind, s->act_ds[act], t, row0, n, a->cols, half, a->name);
    H5Tclose(t);
    free(half);
    return st;
}

tp_status store_mark_units(tp_store *s, const int64_t *units, int n)
{
    TP_CHECK(fs_before_write());
    hid_t ds = H5Dopen2(s->file, "units_complete", H5P_DEFAULT);
    S_CHECK(s, ds);
    hid_t fs = H5Dget_space(ds);
    hsize_t cnt = (hsize_t)(n > 0 ? n : 1);
    hid_t ms = H5Screate_simple(1, &cnt, NULL);
    hsize_t *coords = tp_malloc(cnt * sizeof *coords);
    uint8_t *ones = tp_malloc(cnt);
    herr_t e = (!coords || !ones) ? -1 : 0;
    if (e >= 0 && n > 0) {
        for (int i = 0; i < n; i++) coords[i] = (hsize_t)units[i], ones[i] = 1;
        e = H5Sselect_elements(fs, H5S_SELECT_SET, (size_t)n, coords);
    } else if (e >= 0) {
        e = (H5Sselect_none(fs) < 0 || H5Sselect_none(ms) < 0) ? -1 : 0;
    }
    errno = 0;
    if (e >= 0) e = H5Dwrite(ds, H5T_NATIVE_UINT8, ms, fs, s->dxpl, ones);
    S_KEEP_CAUSE(e, cause, write_errno(s));
    free(coords);
    free(ones);
    H5Sclose(ms), H5Sclose(fs), H5Dclose(ds);
    S_CHECK_KEPT(s, e, cause, "writing /units_complete");
    return store_flush(s);
}

tp_status store_read_units(tp_store *s, uint8_t *done)
{
    hid_t ds = H5Dopen2(s->file, "units_complete", H5P_DEFAULT);
    S_CHECK(s, ds);
    herr_t e = s->n_units ? H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, done) : 0;
    S_KEEP_CAUSE(e, cause, 0);
    H5Dclose(ds);
    S_CHECK_KEPT(s, e, cause, "reading /units_complete");
    return TP_OK;
}

tp_status store_flush(tp_store *s)
{
    errno = 0;
    if (H5Fflush(s->file, H5F_SCOPE_GLOBAL) < 0) {
        char m[256];
        return tp_err(TP_ERR_IO, "%s: flush failed (disk full?): %s", s->path,
                      h5_cause(m, sizeof m, write_errno(s)));
    }
    return TP_OK;
}

tp_status store_mark_complete(tp_store *s)
{
    TP_CHECK(fs_before_write());
    TP_CHECK(store_flush(s));
    const char *names[] = {"tokens", "positions", "mask", "row_doc", "doc_offsets", "doc_index", "doc_domain",
                           "domain_names", "vocab_offsets", "vocab_bytes", "units_complete"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        hid_t ds = H5Dopen2(s->file, names[i], H5P_DEFAULT);
        S_CHECK(s, ds);
        tp_status st = set_int_attr(s, ds, "complete", 1);
        H5Dclose(ds);
        TP_CHECK(st);
    }
    for (int i = 0; i < s->n_acts; i++) TP_CHECK(set_int_attr(s, s->act_ds[i], "complete", 1));
    return store_flush(s);
}

int store_num_acts(const tp_store *s) { return s->n_acts; }
const store_act_spec *store_act(const tp_store *s, int i) { return &s->acts[i]; }
int64_t store_rows(const tp_store *s) { return s->n_rows; }

int store_find_act(const tp_store *s, const char *name)
{
    for (int i = 0; i < s->n_acts; i++)
        if (!strcmp(s->acts[i].name, name)) return i;
    return -1;
}

bool store_is_complete(const tp_store *s, const char *dataset)
{
    hid_t ds = H5Dopen2(s->file, dataset, H5P_DEFAULT);
    if (ds < 0) return false;
    int c = get_int_attr(ds, "complete");
    H5Dclose(ds);
    return c == 1;
}

static tp_status read_rows(tp_store *s, hid_t ds, hid_t memtype, int64_t row0, int64_t n, int64_t cols,
                           void *out, const char *what)
{
    if (row0 < 0 || n < 0 || row0 + n > s->n_rows)
        return tp_err(TP_ERR_RANGE, "%s: rows %lld..%lld of %s outside [0, %lld)", s->path, (long long)row0,
                      (long long)(row0 + n), what, (long long)s->n_rows);
    hid_t fs = H5Dget_space(ds);
    int rank = H5Sget_simple_extent_ndims(fs);
    hsize_t start[2] = {(hsize_t)row0, 0}, count[2] = {(hsize_t)n, (hsize_t)cols};
    hsize_t mdims[2] = {(hsize_t)(n ? n : 1), (hsize_t)cols};
    hid_t ms = H5Screate_simple(rank, mdims, NULL);
    herr_t e = n ? H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL)
                 : (H5Sselect_none(fs) < 0 || H5Sselect_none(ms) < 0 ? -1 : 0);
    if (e >= 0) e = H5Dread(ds, memtype, ms, fs, H5P_DEFAULT, out);
    char m[256];
    if (e < 0) h5_cause(m, sizeof m, 0);  /* before the closes clear the stack */
    H5Sclose(ms);
    H5Sclose(fs);
    if (e < 0)
        return tp_err(TP_ERR_HDF5, "%s: reading %s rows %lld..%lld failed (truncated or corrupt store?): %s", s->path,
                      what, (long long)row0, (long long)(row0 + n), m);
    return TP_OK;
}

tp_status store_read_acts(tp_store *s, int act, int64_t row0, int64_t n, float *out)
{
    const store_act_spec *a = &s->acts[act];
    if (a->dtype == TP_DTYPE_F32)
        return read_rows(s, s->act_ds[act], H5T_NATIVE_FLOAT, row0, n, a->cols, out, a->name);
    size_t cnt = (size_t)(n * a->cols);
    uint16_t *half = tp_malloc((cnt ? cnt : 1) * sizeof *half);
    if (!half) return TP_ERR_NOMEM;
    hid_t t = storage_type(a->dtype);
    tp_status st = read_rows(s, s->act_ds[act], t, row0, n, a->cols, half, a->name);
    H5Tclose(t);
    if (st == TP_OK && cnt) tp_convert_to_f32(a->dtype, half, out, cnt);
    free(half);
    return st;
}

/* A 1-D index dataset by name (opened per call: the metadata read is collective). */
static tp_status read_named(tp_store *s, const char *dataset, hid_t memtype, int64_t row0, int64_t n, void *out)
{
    hid_t ds = H5Dopen2(s->file, dataset, H5P_DEFAULT);
    if (ds < 0) return tp_err(TP_ERR_FORMAT, "%s: no dataset /%s", s->path, dataset);
    tp_status st = read_rows(s, ds, memtype, row0, n, 1, out, dataset);
    H5Dclose(ds);
    return st;
}

tp_status store_read_u8(tp_store *s, const char *dataset, int64_t row0, int64_t n, uint8_t *out)
{
    return read_named(s, dataset, H5T_NATIVE_UINT8, row0, n, out);
}

tp_status store_read_i32(tp_store *s, const char *dataset, int64_t row0, int64_t n, int32_t *out)
{
    return read_named(s, dataset, H5T_NATIVE_INT32, row0, n, out);
}

/* A whole table (any length, 1-D or 2-D) of the store into out, which holds its
 * elements; *rows and *cols get its shape. A table the store lacks (format 1) is
 * named with how to make it. */
static tp_status read_table(tp_store *s, const char *dataset, hid_t memtype, size_t elem, void **out, int64_t *rows,
                            int64_t *cols)
{
    *out = NULL;
    hid_t ds = H5Dopen2(s->file, dataset, H5P_DEFAULT);
    if (ds < 0)
        return tp_err(TP_ERR_FORMAT, "%s has no /%s (made by an older TranspOLMo: rerun `transpolmo capture` into a new "
                      "run directory)", s->path, dataset);
    hid_t fs = H5Dget_space(ds);
    hsize_t d[2] = {0, 1};
    int nd = H5Sget_simple_extent_dims(fs, d, NULL);
    H5Sclose(fs);
    *rows = (int64_t)d[0], *cols = nd == 2 ? (int64_t)d[1] : 1;
    void *buf = tp_malloc((size_t)(*rows * *cols) * elem + 1);
    herr_t e = !buf ? -1 : (*rows > 0 && *cols > 0) ? H5Dread(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    char m[256];
    if (e < 0 && buf) h5_cause(m, sizeof m, 0);  /* before H5Dclose clears the stack */
    H5Dclose(ds);
    if (e < 0) {
        free(buf);
        return buf ? tp_err(TP_ERR_HDF5, "%s: reading /%s failed (truncated or corrupt store?): %s", s->path, dataset, m)
                   : TP_ERR_NOMEM;
    }
    *out = buf;
    return TP_OK;
}

tp_status store_read_docs(tp_store *s, store_docs *out)
{
    memset(out, 0, sizeof *out);
    int64_t r, c, nd, len;
    void *p = NULL;
    tp_status st = read_table(s, "doc_offsets", H5T_NATIVE_INT64, 8, &p, &r, &c);
    out->offsets = p, out->n_docs = r - 1;
    if (st == TP_OK && (st = read_table(s, "doc_index", H5T_NATIVE_INT64, 8, &p, &r, &c)) == TP_OK) out->index = p;
    if (st == TP_OK && (st = read_table(s, "doc_domain", H5T_NATIVE_INT32, 4, &p, &r, &c)) == TP_OK) out->domain = p;
    uint8_t *names = NULL;
    if (st == TP_OK && (st = read_table(s, "domain_names", H5T_NATIVE_UINT8, 1, &p, &nd, &len)) == TP_OK) names = p;
    if (st == TP_OK && !(out->domain_names = tp_calloc((size_t)(nd ? nd : 1), sizeof *out->domain_names))) st = TP_ERR_NOMEM;
    for (int64_t i = 0; st == TP_OK && i < nd; i++) {
        if (!(out->domain_names[i] = tp_calloc((size_t)len + 1, 1))) { st = TP_ERR_NOMEM; break; }
        memcpy(out->domain_names[i], names + i * len, (size_t)len);
        out->n_domains = (int)i + 1;
    }
    free(names);
    for (int64_t i = 0; st == TP_OK && i < out->n_docs; i++)
        if (out->domain[i] < 0 || out->domain[i] >= out->n_domains || out->offsets[i] > out->offsets[i + 1])
            st = tp_err(TP_ERR_FORMAT, "%s: document %lld has domain %d of %d or offsets %lld..%lld: a damaged store",
                        s->path, (long long)i, out->domain[i], out->n_domains, (long long)out->offsets[i],
                        (long long)out->offsets[i + 1]);
    if (st == TP_OK && out->offsets[out->n_docs] != s->n_rows)
        st = tp_err(TP_ERR_FORMAT, "%s: /doc_offsets ends at %lld, the store has %lld rows", s->path,
                    (long long)out->offsets[out->n_docs], (long long)s->n_rows);
    if (st != TP_OK) store_docs_free(out);
    return st;
}

void store_docs_free(store_docs *d)
{
    for (int i = 0; d->domain_names && i < d->n_domains; i++) free(d->domain_names[i]);
    free(d->domain_names), free(d->offsets), free(d->index), free(d->domain);
    memset(d, 0, sizeof *d);
}
