#include "tp_test.h"

#include "core/config.h"
#include "core/error.h"
#include "settings.h"

#include <mpi.h>

#include <math.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
