/* fuzz_store_attrs — the attributes and layout of an activation store as
 * store_open_read and store_attr / store_is_complete / store_act read them.
 *
 * Fuzzing HDF5's own file format would fuzz libhdf5; what is ours is how we read
 * what a valid HDF5 file holds. So the bytes are a recipe: each step adds to a fresh
 * file a root attribute (provenance, store_format), an /acts/<hook> dataset, or a
 * "complete" attribute, of a type and shape the bytes choose (fixed or
 * variable-length strings, integers of 1-8 bytes, floats, scalars, arrays, null
 * dataspaces); the required index datasets may be left out. The store is then
 * opened as every phase opens it, and every attribute read as the phases read them.
 */
#include "fuzz.h"
#include "io/store.h"

#include <hdf5.h>
#include <mpi.h>

#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_ASAN 1
#endif
#endif
#ifdef FUZZ_ASAN
#include <sanitizer/lsan_interface.h>
#endif

typedef struct {
    const uint8_t *p;
    size_t n;
} reader;

static unsigned next(reader *r)
{
    if (!r->n) return 0;
    r->n--;
    return *r->p++;
}

static const char *const attr_names[] = {"store_format", "model", "seed", "hooks", "dtype", "config_hash",
                                         "corpus_hash", "tokenizer_hash", "seq_len", "complete", "units",
                                         "layer", "d", "hook", "point", ""};
#define N_NAMES (sizeof attr_names / sizeof *attr_names)

/* An attribute named `name` on obj, of a type and shape that the bytes choose. */
static void add_attr(hid_t obj, const char *name, reader *r)
{
    unsigned kind = next(r) % 8, count = next(r) % 5;   /* count 0: scalar */
    hsize_t dims[1] = {count ? count : 1};
    hid_t sp = kind == 7 ? H5Screate(H5S_NULL) : count ? H5Screate_simple(1, dims, NULL) : H5Screate(H5S_SCALAR);
    uint8_t buf[64] = {0};
    unsigned len = next(r) % 16 + 1;
    for (unsigned i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)(i < len * dims[0] ? next(r) : 0);
    hid_t t;
    const void *val = buf;
    const char *vlen[4];
    switch (kind) {
    case 0: case 7: t = H5Tcopy(H5T_C_S1); H5Tset_size(t, len); break;
    case 1: t = H5Tcopy(H5T_C_S1); H5Tset_size(t, len); H5Tset_strpad(t, H5T_STR_NULLPAD); break;
    case 2:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        for (int i = 0; i < 4; i++) vlen[i] = (const char *)buf + 16 * i;
        buf[15] = buf[31] = buf[47] = buf[63] = 0;
        val = vlen;
        break;
    case 3: t = H5Tcopy(H5T_STD_I32LE); break;
    case 4: t = H5Tcopy(H5T_STD_I64BE); break;
    case 5: t = H5Tcopy(H5T_IEEE_F64LE); break;
    default: t = H5Tcopy(H5T_STD_U8LE); break;
    }
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        if (kind != 7) H5Awrite(a, t, val);
        H5Aclose(a);
    }
    H5Tclose(t);
    H5Sclose(sp);
}

static hid_t add_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims)
{
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2(file, name, type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Sclose(sp);
    return ds;
}

static void make_store(const char *path, reader *r)
{
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) abort();
    unsigned leave_out = next(r);   /* bit i: leave required dataset i out */
    static const char *const required[3] = {"tokens", "doc_index", "units_complete"};
    for (int i = 0; i < 3; i++) {
        if (leave_out & (1u << i)) continue;
        hsize_t dims[2] = {next(r) % 8, 1};
        hid_t ds = add_dataset(file, required[i], H5T_STD_I32LE, 1 + (next(r) % 3 == 0), dims);
        if (ds >= 0 && next(r) % 2) add_attr(ds, "complete", r);
        if (ds >= 0) H5Dclose(ds);
    }
    for (int step = 0; step < 16 && r->n; step++) {
        unsigned op = next(r) % 3;
        if (op == 0) {   /* a root attribute */
            add_attr(file, attr_names[next(r) % N_NAMES], r);
        } else if (op == 1) {   /* a capture point */
            char name[64];
            snprintf(name, sizeof name, "acts/blocks.%u.hook_%s", next(r) % 4, next(r) % 2 ? "resid_post" : "mlp_out");
            int rank = 1 + (int)(next(r) % 4);
            hsize_t dims[4] = {next(r) % 4, next(r) % 5, 1 + next(r) % 2, 1};
            static const hid_t *const types[] = {&H5T_IEEE_F32LE_g, &H5T_IEEE_F64LE_g, &H5T_STD_I8LE_g,
                                                 &H5T_STD_U16LE_g, &H5T_NATIVE_FLOAT_g};
            hid_t t = H5Tcopy(*types[next(r) % 5]);
            unsigned f16 = next(r) % 3;   /* 1: IEEE half, 2: bfloat16, as the writer makes them */
            if (f16 == 1) { H5Tset_fields(t, 15, 10, 5, 0, 10); H5Tset_size(t, 2); H5Tset_ebias(t, 15); }
            if (f16 == 2) { H5Tset_fields(t, 15, 7, 8, 0, 7); H5Tset_size(t, 2); H5Tset_ebias(t, 127); }
            hid_t ds = H5Lexists(file, "acts", H5P_DEFAULT) > 0 && H5Lexists(file, name, H5P_DEFAULT) > 0
                           ? -1 : add_dataset(file, name, t, rank, dims);
            H5Tclose(t);
            while (ds >= 0 && next(r) % 2) add_attr(ds, attr_names[next(r) % N_NAMES], r);
            if (ds >= 0) H5Dclose(ds);
        } else if (H5Lexists(file, "acts", H5P_DEFAULT) > 0) {   /* a group or attribute under acts/ */
            hid_t g = H5Gopen2(file, "acts", H5P_DEFAULT);
            if (next(r) % 2) {
                char name[32];
                snprintf(name, sizeof name, "group%u", next(r) % 4);
                if (H5Lexists(g, name, H5P_DEFAULT) <= 0) {
                    hid_t sub = H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
                    if (sub >= 0) H5Gclose(sub);
                }
            } else {
                add_attr(g, "complete", r);
            }
            H5Gclose(g);
        }
    }
    if (H5Fclose(file) < 0) abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int ok;
    MPI_Initialized(&ok);
    /* What Open MPI allocates for itself is not ours to check: LeakSanitizer ignores
     * what is allocated while it is disabled. Never finalised: MPI_Finalize unloads
     * the plug-ins, and what they keep until exit could then not be named in
     * tests/fuzz/lsan.supp. */
#ifdef FUZZ_ASAN
    __lsan_disable();
#endif
    if (!ok) MPI_Init(argc, argv);
#ifdef FUZZ_ASAN
    __lsan_enable();
#endif
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    char path[200];
    snprintf(path, sizeof path, "%s/store.h5", fuzz_dir());
    make_store(path, &r);
    tp_store *s = NULL;
    if (store_open_read(path, MPI_COMM_SELF, &s) == TP_OK) {
        char buf[64];   /* smaller than some values: the reader must truncate, not overrun */
        for (size_t i = 0; i < N_NAMES; i++) (void)store_attr(s, attr_names[i], buf, sizeof buf);
        (void)store_is_complete(s, "tokens");
        (void)store_is_complete(s, "doc_index");
        (void)store_is_complete(s, "no_such_dataset");
        for (int i = 0; i < store_num_acts(s); i++) {
            const store_act_spec *a = store_act(s, i);
            char name[STORE_NAME_MAX + 8];
            snprintf(name, sizeof name, "acts/%s", a->name);
            (void)store_is_complete(s, name);
            if (store_find_act(s, a->name) < 0) abort();
        }
        (void)store_rows(s);
        store_close(s);
    }
    unlink(path);
    tp_err_clear();
    return 0;
}
