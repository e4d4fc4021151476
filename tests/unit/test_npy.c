/* test_npy.c — .npy write/read round trip for every dtype, files laid out byte for
 * byte as numpy writes them (v1.0, v2.0, v3.0), and every error case with a
 * one-line message naming the file.
 */
#include "io/npy.h"
#include "tp_test.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void assert_message(const char *path, const char *const *keywords)
{
    const char *msg = tp_err_msg();
    ck_assert_msg(strchr(msg, '\n') == NULL, "message is not one line: %s", msg);
    ck_assert_msg(strstr(msg, path) != NULL, "message does not name %s: %s", path, msg);
    for (size_t i = 0; keywords && keywords[i]; i++)
        ck_assert_msg(strstr(msg, keywords[i]) != NULL, "message lacks '%s': %s", keywords[i], msg);
}

#define KW(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_read_fails(const char *path, tp_status want, const char *const *keywords)
{
    npy_array a;
    tp_err_clear();
    tp_status st = npy_read(path, &a);
    ck_assert_msg(st == want, "%s: got %s want %s (%s)", path, tp_status_name(st),
                  tp_status_name(want), tp_err_msg());
    ck_assert_ptr_null(a.data);
    assert_message(path, keywords);
}

/* A v1.0 file with `dict` padded as numpy pads it (data at a multiple of 64). */
static const char *write_v1(const char *name, const char *dict, const void *data, size_t n)
{
    size_t dl = strlen(dict);
    size_t hl = dl + 1;
    hl += (64 - (10 + hl) % 64) % 64;
    unsigned char *buf = malloc(10 + hl + n + 1);
    ck_assert(buf);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hl & 0xff);
    buf[9] = (unsigned char)(hl >> 8);
    memcpy(buf + 10, dict, dl);
    memset(buf + 10 + dl, ' ', hl - dl - 1);
    buf[10 + hl - 1] = '\n';
    if (n) memcpy(buf + 10 + hl, data, n);
    const char *path = tp_test_tmp_path(name);
    ck_assert(tp_test_write_file(path, buf, 10 + hl + n) == 0);
    free(buf);
    return path;
}

/* ---- round trips ------------------------------------------------------------------ */

START_TEST(test_round_trip_all_dtypes)
{
    static const tp_dtype types[] = {TP_DTYPE_F32, TP_DTYPE_F64, TP_DTYPE_F16, TP_DTYPE_I64,
                                     TP_DTYPE_I32, TP_DTYPE_I16, TP_DTYPE_I8,  TP_DTYPE_U8,
                                     TP_DTYPE_BOOL};
    static const int64_t s3[3] = {2, 3, 4}, s1[1] = {5}, s0[2] = {0, 3};
    static const struct {
        int ndim;
        const int64_t *shape;
        size_t numel;
    } shapes[] = {{3, s3, 24}, {1, s1, 5}, {0, NULL, 1}, {2, s0, 0}};
    unsigned char src[24 * 8];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (unsigned char)(i * 37 + 1);
    for (size_t i = 0; i < 24; i++) src[i] &= 1; /* BOOL wants 0/1 */
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            char name[64];
            snprintf(name, sizeof name, "rt_%s_%zu.npy", tp_dtype_name(types[t]), s);
            const char *path = tp_test_tmp_path(name);
            ck_assert_msg(npy_write(path, types[t], shapes[s].ndim, shapes[s].shape, src) == TP_OK,
                          "%s", tp_err_msg());
            char tmp[600];
            snprintf(tmp, sizeof tmp, "%s.tmp", path);
            ck_assert(!file_exists(tmp));

            /* Data starts at a multiple of 64; the header ends in '\n'. */
            FILE *fp = fopen(path, "rb");
            ck_assert(fp);
            unsigned char pre[10];
            ck_assert(fread(pre, 1, 10, fp) == 10);
            size_t hl = pre[8] | (size_t)pre[9] << 8;
            ck_assert_uint_eq((10 + hl) % 64, 0);
            ck_assert(fseek(fp, (long)(10 + hl - 1), SEEK_SET) == 0);
            ck_assert_int_eq(fgetc(fp), '\n');
            fclose(fp);
            ck_assert(memcmp(pre, "\x93NUMPY\x01\x00", 8) == 0);

            npy_array a;
            ck_assert_msg(npy_read(path, &a) == TP_OK, "%s", tp_err_msg());
            ck_assert_int_eq(a.dtype, types[t]);
            ck_assert_int_eq(a.ndim, shapes[s].ndim);
            for (int d = 0; d < a.ndim; d++) ck_assert_int_eq(a.shape[d], shapes[s].shape[d]);
            ck_assert_int_eq(a.numel, (int64_t)shapes[s].numel);
            ck_assert(memcmp(a.data, src, shapes[s].numel * tp_dtype_size(types[t])) == 0);
            npy_free(&a);
            ck_assert_ptr_null(a.data);
        }
    }
}
END_TEST

START_TEST(test_read_f32_converts)
{
    int32_t iv[4] = {-3, 0, 7, 1 << 20};
    int64_t shape[2] = {2, 2};
    const char *path = tp_test_tmp_path("i32.npy");
    ck_assert(npy_write(path, TP_DTYPE_I32, 2, shape, iv) == TP_OK);
    npy_array a;
    ck_assert_msg(npy_read_f32(path, &a) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(a.dtype, TP_DTYPE_F32);
    ck_assert_int_eq(a.ndim, 2);
    const float *f = a.data;
    ck_assert(f[0] == -3.0f && f[1] == 0.0f && f[2] == 7.0f && f[3] == 1048576.0f);
    npy_free(&a);

    uint16_t hv[3] = {0x3c00, 0xc000, 0x7c00}; /* 1, -2, inf */
    int64_t s3[1] = {3};
    path = tp_test_tmp_path("f16.npy");
    ck_assert(npy_write(path, TP_DTYPE_F16, 1, s3, hv) == TP_OK);
    ck_assert(npy_read_f32(path, &a) == TP_OK);
    f = a.data;
    ck_assert(f[0] == 1.0f && f[1] == -2.0f && f[2] > 3.4e38f);
    npy_free(&a);

    float fv[2] = {0.5f, -0.25f};
    int64_t s2[1] = {2};
    path = tp_test_tmp_path("f32.npy");
    ck_assert(npy_write(path, TP_DTYPE_F32, 1, s2, fv) == TP_OK);
    ck_assert(npy_read_f32(path, &a) == TP_OK);
    ck_assert(memcmp(a.data, fv, sizeof fv) == 0);
    npy_free(&a);
}
END_TEST

/* np.save("x.npy", np.arange(6, dtype="<f4").reshape(2, 3)) — byte for byte. */
START_TEST(test_read_numpy_v1_bytes)
{
    static const char dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
    unsigned char file[128 + 24];
    memcpy(file, "\x93NUMPY\x01\x00\x76\x00", 10); /* header length 118: 10 + 118 = 128 */
    ck_assert_uint_eq(sizeof dict - 1, 59);
    memcpy(file + 10, dict, 59);
    memset(file + 69, ' ', 58);
    file[127] = '\n';
    static const unsigned char data[24] = {
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40, /* 0 1 2 */
        0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xa0, 0x40, /* 3 4 5 */
    };
    memcpy(file + 128, data, 24);
    const char *path = tp_test_tmp_path("numpy_v1.npy");
    ck_assert(tp_test_write_file(path, file, sizeof file) == 0);

    npy_array a;
    ck_assert_msg(npy_read(path, &a) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(a.dtype, TP_DTYPE_F32);
    ck_assert_int_eq(a.ndim, 2);
    ck_assert_int_eq(a.shape[0], 2);
    ck_assert_int_eq(a.shape[1], 3);
    for (int i = 0; i < 6; i++) ck_assert(((float *)a.data)[i] == (float)i);
    npy_free(&a);

    /* Our writer produces exactly these bytes for the same array. */
    float v[6] = {0, 1, 2, 3, 4, 5};
    int64_t shape[2] = {2, 3};
    const char *mine = tp_test_tmp_path("mine_v1.npy");
    ck_assert(npy_write(mine, TP_DTYPE_F32, 2, shape, v) == TP_OK);
    FILE *fp = fopen(mine, "rb");
    ck_assert(fp);
    unsigned char back[sizeof file + 1];
    ck_assert_uint_eq(fread(back, 1, sizeof back, fp), sizeof file);
    fclose(fp);
    ck_assert(memcmp(back, file, sizeof file) == 0);
}
END_TEST

/* Version 2.0/3.0 (u32 header length), a 1-d "(3,)" tuple, Python 2 "3L" longs,
 * a 0-d "()" shape and keys in another order. */
START_TEST(test_read_v2_v3_and_variants)
{
    for (int major = 2; major <= 3; major++) {
        static const char dict[] = "{'descr': '|i1', 'fortran_order': False, 'shape': (3,), }";
        size_t dl = sizeof dict - 1;
        size_t hl = dl + 1 + (64 - (12 + dl + 1) % 64) % 64;
        unsigned char file[256];
        memcpy(file, "\x93NUMPY", 6);
        file[6] = (unsigned char)major;
        file[7] = 0;
        file[8] = (unsigned char)hl;
        file[9] = file[10] = file[11] = 0;
        memcpy(file + 12, dict, dl);
        memset(file + 12 + dl, ' ', hl - dl - 1);
        file[12 + hl - 1] = '\n';
        file[12 + hl] = 0xff;
        file[13 + hl] = 0x00;
        file[14 + hl] = 0x7f;
        char name[32];
        snprintf(name, sizeof name, "v%d.npy", major);
        const char *path = tp_test_tmp_path(name);
        ck_assert(tp_test_write_file(path, file, 12 + hl + 3) == 0);
        npy_array a;
        ck_assert_msg(npy_read(path, &a) == TP_OK, "%s", tp_err_msg());
        ck_assert_int_eq(a.dtype, TP_DTYPE_I8);
        ck_assert_int_eq(a.ndim, 1);
        ck_assert_int_eq(a.shape[0], 3);
        const int8_t *v = a.data;
        ck_assert(v[0] == -1 && v[1] == 0 && v[2] == 127);
        npy_free(&a);
    }

    int64_t six[6] = {1, 2, 3, 4, 5, 6};
    const char *path = write_v1("py2.npy", "{'descr': '<i8', 'fortran_order': False, 'shape': (2L, 3L), }",
                                six, sizeof six);
    npy_array a;
    ck_assert_msg(npy_read(path, &a) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(a.ndim, 2);
    ck_assert_int_eq(a.shape[1], 3);
    npy_free(&a);

    double d = 2.5;
    path = write_v1("scalar.npy", "{'shape': (), 'fortran_order': False, 'descr': '<f8'}", &d, 8);
    ck_assert_msg(npy_read(path, &a) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(a.ndim, 0);
    ck_assert_int_eq(a.numel, 1);
    ck_assert(*(double *)a.data == 2.5);
    npy_free(&a);
}
END_TEST

/* ---- errors ---------------------------------------------------------------------- */

START_TEST(test_read_errors)
{
    float v[6] = {0};
    expect_read_fails(tp_test_tmp_path("absent.npy"), TP_ERR_IO, KW("No such file or directory"));
    expect_read_fails(tp_test_tmpdir(), TP_ERR_IO, KW("not a regular file"));

    const char *p = tp_test_tmp_path("magic.npy");
    ck_assert(tp_test_write_file(p, "\x93NUMPZ\x01\x00\x10\x00{}", 12) == 0);
    expect_read_fails(p, TP_ERR_FORMAT, KW("bad magic"));
    p = tp_test_tmp_path("tiny.npy");
    ck_assert(tp_test_write_file(p, "\x93NU", 3) == 0);
    expect_read_fails(p, TP_ERR_FORMAT, KW("bad magic"));
    p = tp_test_tmp_path("short_pre.npy");
    ck_assert(tp_test_write_file(p, "\x93NUMPY\x01", 7) == 0);
    expect_read_fails(p, TP_ERR_FORMAT, KW("7 bytes", "too short"));
    p = tp_test_tmp_path("version.npy");
    ck_assert(tp_test_write_file(p, "\x93NUMPY\x04\x00\x00\x00\x00\x00", 12) == 0);
    expect_read_fails(p, TP_ERR_UNSUPPORTED, KW("version 4.0"));
    p = tp_test_tmp_path("hlen.npy");
    ck_assert(tp_test_write_file(p, "\x93NUMPY\x01\x00\xff\x00{}", 12) == 0);
    expect_read_fails(p, TP_ERR_FORMAT, KW("header length 255", "past the end"));

    p = write_v1("fortran.npy", "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", v,
                 sizeof v);
    expect_read_fails(p, TP_ERR_UNSUPPORTED, KW("Fortran", "fortran_order True"));
    p = write_v1("big.npy", "{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", v,
                 sizeof v);
    expect_read_fails(p, TP_ERR_UNSUPPORTED, KW("big-endian", "'>f4'"));
    p = write_v1("c8.npy", "{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", v,
                 sizeof v);
    expect_read_fails(p, TP_ERR_UNSUPPORTED, KW("unsupported dtype '<c8'"));
    p = write_v1("u4.npy", "{'descr': '<U4', 'fortran_order': False, 'shape': (1,), }", v,
                 sizeof v);
    expect_read_fails(p, TP_ERR_UNSUPPORTED, KW("unsupported dtype '<U4'"));
    p = write_v1("struct.npy",
                 "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", v, 4);
    expect_read_fails(p, TP_ERR_UNSUPPORTED, KW("structured"));
    p = write_v1("trunc.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", v,
                 20);
    expect_read_fails(p, TP_ERR_FORMAT, KW("data is 20 bytes", "(2, 3) of F32 needs 24", "truncated"));
    p = write_v1("noshape.npy", "{'descr': '<f4', 'fortran_order': False, }", v, 4);
    expect_read_fails(p, TP_ERR_FORMAT, KW("lacks 'shape'"));
    p = write_v1("negdim.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", v, 4);
    expect_read_fails(p, TP_ERR_FORMAT, KW("shape"));
    p = write_v1("ndim9.npy",
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }", v, 4);
    expect_read_fails(p, TP_ERR_UNSUPPORTED, KW("more than 8 dimensions"));
    p = write_v1("extra.npy",
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", v, 4);
    expect_read_fails(p, TP_ERR_FORMAT, KW("unexpected key 'x'"));
    p = write_v1("notdict.npy", "['descr', '<f4']", v, 4);
    expect_read_fails(p, TP_ERR_FORMAT, KW("not a dict"));
    p = write_v1("badbool.npy", "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", v, 4);
    expect_read_fails(p, TP_ERR_FORMAT, KW("fortran_order"));
    p = write_v1("unterminated.npy", "{'descr': '<f4, 'fortran_order': False}", v, 4);
    expect_read_fails(p, TP_ERR_FORMAT, KW("npy header"));
    p = write_v1("overflow.npy",
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", v, 4);
    expect_read_fails(p, TP_ERR_FORMAT, KW("overflows"));
}
END_TEST

START_TEST(test_write_errors)
{
    uint16_t h[2] = {0, 0};
    int64_t shape[1] = {2}, neg[1] = {-2};
    const char *p = tp_test_tmp_path("bf16.npy");
    ck_assert_int_eq(npy_write(p, TP_DTYPE_BF16, 1, shape, h), TP_ERR_UNSUPPORTED);
    assert_message(p, KW("BF16"));
    ck_assert_int_eq(npy_write(p, TP_DTYPE_F32, 1, neg, h), TP_ERR_RANGE);
    ck_assert_int_eq(npy_write(p, TP_DTYPE_F32, 9, shape, h), TP_ERR_RANGE);
    ck_assert(!file_exists(p));
    p = tp_test_tmp_path("no/such/dir/x.npy");
    ck_assert_int_eq(npy_write(p, TP_DTYPE_I16, 1, shape, h), TP_ERR_IO);
    assert_message(p, KW("No such file or directory"));
}
END_TEST

/* A full disk, simulated with RLIMIT_FSIZE (write fails with EFBIG). */
START_TEST(test_write_disk_full)
{
    enum { N = 1 << 16 };
    static int32_t big[N];
    int64_t shape[1] = {N};
    const char *path = tp_test_tmp_path("full.npy");
    struct rlimit old, lim;
    ck_assert(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    tp_status st = npy_write(path, TP_DTYPE_I32, 1, shape, big);
    ck_assert(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, old_handler);
    ck_assert_int_eq(st, TP_ERR_IO);
    assert_message(path, KW("File too large"));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert(!file_exists(tmp));
    ck_assert(!file_exists(path));
}
END_TEST

static Suite *npy_suite(void)
{
    Suite *s = suite_create("npy");
    TCase *tc = tcase_create("io");
    tcase_add_test(tc, test_round_trip_all_dtypes);
    tcase_add_test(tc, test_read_f32_converts);
    tcase_add_test(tc, test_read_numpy_v1_bytes);
    tcase_add_test(tc, test_read_v2_v3_and_variants);
    tcase_add_test(tc, test_read_errors);
    tcase_add_test(tc, test_write_errors);
    tcase_add_test(tc, test_write_disk_full);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tp_test_run_suite(npy_suite()); }
