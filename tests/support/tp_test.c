#include "tp_test.h"

#include "analysis/capture/capture_phase.h"
#include "backend/backend.h"
#include "core/config.h"
#include "core/error.h"
#include "io/store.h"
#include "settings.h"

#include <mpi.h>

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *tp_test_data(const char *rel)
{
    static char bufs[8][4096];
    static int slot = 0;
    const char *root = getenv("TP_TEST_DATA");
    if (!root) root = "tests/data";
    char *b = bufs[slot++ % 8];
    snprintf(b, 4096, "%s/%s", root, rel);
    return b;
}

const char *tp_test_tmpdir(void)
{
    static char dir[256];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/tp_test_XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); exit(2); }
    }
    return dir;
}

const char *tp_test_tmp_path(const char *name)
{
    static char bufs[8][1024];
    static int slot = 0;
    char *b = bufs[slot++ % 8];
    int n = snprintf(b, sizeof bufs[0], "%s/%s", tp_test_tmpdir(), name);
    if (n < 0 || (size_t)n >= sizeof bufs[0]) { fprintf(stderr, "tp_test_tmp_path: name too long\n"); abort(); }
    return b;
}

double tp_test_rel_err(const float *a, const float *ref, size_t n)
{
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) md = d;   /* NaN propagates as a failure */
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

double tp_test_rel_err_f64(const double *a, const double *ref, size_t n)
{
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs(a[i] - ref[i]);
        if (!(d <= md)) md = d;
        if (fabs(ref[i]) > mr) mr = fabs(ref[i]);
    }
    return mr > 0 ? md / mr : md;
}

tp_config *tp_test_bundled_config(void)
{
    const char *src = getenv("TP_SOURCE_DIR");
    ck_assert_msg(src, "TP_SOURCE_DIR is not set");
    tp_config *cfg = NULL;
    ck_assert(tp_config_new(&cfg) == TP_OK);
    char path[4096];
    snprintf(path, sizeof path, "%s/models/olmo2-tiny", src);
    ck_assert_msg(tp_config_set(cfg, "model.path", path, "test") == TP_OK, "%s", tp_err_msg());
    snprintf(path, sizeof path, "%s/data/corpus/heldout.jsonl", src);
    ck_assert_msg(tp_config_set(cfg, "data.corpus", path, "test") == TP_OK, "%s", tp_err_msg());
    return cfg;
}

void *tp_test_on_device(tp_backend *be, const void *host, size_t bytes)
{
    void *d = NULL;
    TP_ASSERT_OK(be_alloc(be, bytes, &d));
    TP_ASSERT_OK(be_upload(be, d, host, bytes));
    return d;
}

tp_status tp_test_capture(const tp_config *cfg, tp_backend *be, const char *name, char *store, size_t n)
{
    const char *dir = tp_test_tmp_path(name);
    mkdir(dir, 0755);
    snprintf(store, n, "%s/activations.h5", dir);
    backend_set_default(be);
    tp_status st = capture_phase_run(cfg, dir);
    backend_set_default(NULL);
    return st;
}

double tp_test_store_diff(const char *a_path, const char *b_path, int *same_bits)
{
    tp_store *a, *b;
    ck_assert_msg(store_open_read(a_path, MPI_COMM_SELF, &a) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg(store_open_read(b_path, MPI_COMM_SELF, &b) == TP_OK, "%s", tp_err_msg());
    int64_t n = store_rows(a);
    ck_assert_int_gt(n, 0);
    ck_assert_int_eq(store_rows(b), n);
    ck_assert(store_is_complete(a, "tokens") && store_is_complete(b, "tokens"));
    int32_t *ta = malloc((size_t)n * 4), *tb = malloc((size_t)n * 4);
    ck_assert(ta && tb);
    ck_assert(store_read_i32(a, "tokens", 0, n, ta) == TP_OK && store_read_i32(b, "tokens", 0, n, tb) == TP_OK);
    ck_assert(!memcmp(ta, tb, (size_t)n * 4));
    ck_assert_int_eq(store_num_acts(a), store_num_acts(b));
    double worst = 0;
    *same_bits = 1;
    for (int i = 0; i < store_num_acts(a); i++) {
        const store_act_spec *sa = store_act(a, i);
        int j = store_find_act(b, sa->name);
        ck_assert_msg(j >= 0, "/acts/%s missing from %s", sa->name, b_path);
        size_t cnt = (size_t)n * (size_t)sa->cols;
        float *x = malloc(cnt * 4), *y = malloc(cnt * 4);
        ck_assert(x && y);
        ck_assert(store_read_acts(a, i, 0, n, x) == TP_OK && store_read_acts(b, j, 0, n, y) == TP_OK);
        if (memcmp(x, y, cnt * 4)) *same_bits = 0;
        double e = tp_test_rel_err(x, y, cnt);
        if (!(e <= worst)) worst = e;
        free(x), free(y);
    }
    free(ta), free(tb);
    ck_assert(store_close(a) == TP_OK && store_close(b) == TP_OK);
    return worst;
}

const tp_settings *tp_test_settings_of(const tp_config *cfg)
{
    static tp_settings s;
    ck_assert_msg(settings_read(cfg, &s) == TP_OK, "%s", tp_err_msg());
    return &s;
}

int tp_test_write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

static int run(Suite *s, int nofork)
{
    SRunner *sr = srunner_create(s);
    if (nofork) srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

int tp_test_run_suite(Suite *s) { return run(s, 0); }
int tp_test_run_suite_nofork(Suite *s) { return run(s, 1); }

void tp_test_uneven_slice(int64_t n, int rank, int size, int64_t *row0, int64_t *rows)
{
    int64_t wsum = 0, before = 0;
    for (int q = 0; q < size; q++) {
        int64_t w = (size >= 4 && q == 2) ? 0 : q + 1;
        if (q < rank) before += w;
        wsum += w;
    }
    int64_t w = (size >= 4 && rank == 2) ? 0 : rank + 1;
    *row0 = n * before / wsum;
    *rows = n * (before + w) / wsum - *row0;
}

int tp_test_run_suite_mpi(Suite *s)
{
    int rc = tp_test_run_suite_nofork(s), worst = rc;
    MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}

char *tp_test_read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)len + 1);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = '\0';
    fclose(f);
    if (n) *n = (size_t)len;
    return b;
}

uint64_t tp_test_rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

float *tp_test_rand_f32(uint64_t *state, size_t n, float lo, float hi)
{
    float *a = malloc((n ? n : 1) * sizeof *a);
    if (!a) abort();
    for (size_t i = 0; i < n; i++)
        a[i] = lo + (hi - lo) * (float)((double)(tp_test_rng_next(state) >> 11) / 9007199254740992.0);
    return a;
}
