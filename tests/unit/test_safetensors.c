/* test_safetensors.c — st_write/st_open round trip, a file laid out byte for byte as
 * the Python safetensors library writes it, every corruption the reader must
 * refuse (status and a one-line message naming the file and the problem), and
 * sharded directories with their index.
 */
#include "io/safetensors.h"
#include "tp_test.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The message is one line, names `path` and contains every keyword. */
static void assert_message(const char *path, const char *const *keywords)
{
    const char *msg = tp_err_msg();
    ck_assert_msg(strchr(msg, '\n') == NULL, "message is not one line: %s", msg);
    ck_assert_msg(strstr(msg, path) != NULL, "message does not name %s: %s", path, msg);
    for (size_t i = 0; keywords && keywords[i]; i++)
        ck_assert_msg(strstr(msg, keywords[i]) != NULL, "message lacks '%s': %s", keywords[i], msg);
}

#define KW(...) ((const char *const[]){__VA_ARGS__, NULL})

static void expect_open_file_fails(const char *path, tp_status want, const char *const *keywords)
{
    st_file *f = (st_file *)0x1;
    tp_err_clear();
    tp_status st = st_open_file(path, &f);
    ck_assert_msg(st == want, "%s: got %s, want %s (%s)", path, tp_status_name(st),
                  tp_status_name(want), tp_err_msg());
    ck_assert_msg(f == NULL, "out not cleared on failure");
    assert_message(path, keywords);
}

/* Header exactly as given (no padding added) followed by `data_len` bytes. */
static const char *write_raw_st(const char *name, const char *header, size_t data_len)
{
    const char *path = tp_test_tmp_path(name);
    size_t hl = strlen(header);
    size_t total = 8 + hl + data_len;
    unsigned char *buf = calloc(1, total);
    ck_assert(buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, header, hl);
    ck_assert_int_eq(tp_test_write_file(path, buf, total), 0);
    free(buf);
    return path;
}

static const char *write_bytes(const char *name, const void *bytes, size_t n)
{
    const char *path = tp_test_tmp_path(name);
    ck_assert_int_eq(tp_test_write_file(path, bytes, n), 0);
    return path;
}

static unsigned char *read_whole(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    ck_assert_msg(fp != NULL, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)len + 1);
    ck_assert(buf && fread(buf, 1, (size_t)len, fp) == (size_t)len);
    fclose(fp);
    *n = (size_t)len;
    return buf;
}

/* ---- round trip ------------------------------------------------------------------- */

START_TEST(test_write_read_round_trip)
{
    uint16_t emb[12];
    for (int i = 0; i < 12; i++) emb[i] = (uint16_t)(0x3f80 + i);
    float bias[2] = {0.5f, -1.25f};
    float scalar[1] = {42.0f};
    int64_t ids[3] = {7, -1, (int64_t)1 << 40};
    uint8_t mask[2] = {1, 0};
    int64_t s_emb[2] = {3, 4}, s_bias[1] = {2}, s_empty[2] = {0, 5}, s_ids[1] = {3}, s_mask[1] = {2};
    st_write_tensor ts[] = {
        {"model.embed_tokens.weight", TP_DTYPE_BF16, 2, s_emb, emb},
        {"bias", TP_DTYPE_F32, 1, s_bias, bias},
        {"scalar", TP_DTYPE_F32, 0, NULL, scalar},
        {"empty", TP_DTYPE_F16, 2, s_empty, NULL},
        {"ids", TP_DTYPE_I64, 1, s_ids, ids},
        {"mask", TP_DTYPE_BOOL, 1, s_mask, mask},
    };
    const char *md[] = {"format", "pt", "note", "written by test", NULL};
    const char *path = tp_test_tmp_path("round.safetensors");
    ck_assert_msg(st_write(path, ts, 6, md) == TP_OK, "%s", tp_err_msg());

    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_msg(!file_exists(tmp), "temporary file left behind");

    /* Header length is a multiple of 8 and the padding is spaces. */
    size_t n;
    unsigned char *raw = read_whole(path, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | raw[i];
    ck_assert_uint_eq(hl % 8, 0);
    ck_assert_uint_eq(raw[8], '{');
    size_t last = 8 + hl - 1;
    while (raw[last] == ' ') last--;
    ck_assert_uint_eq(raw[last], '}');
    ck_assert_uint_eq(n, 8 + hl + 24 + 8 + 4 + 0 + 24 + 2);
    free(raw);

    st_file *f;
    ck_assert_msg(st_open_file(path, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert_uint_eq(st_count(f), 6);
    ck_assert_uint_eq(st_total_bytes(f), 24 + 8 + 4 + 0 + 24 + 2);
    /* st_at is in name order. */
    static const char *sorted[] = {"bias", "empty", "ids", "mask", "model.embed_tokens.weight",
                                   "scalar"};
    for (size_t i = 0; i < 6; i++) ck_assert_str_eq(st_at(f, i)->name, sorted[i]);
    ck_assert_ptr_null(st_at(f, 6));
    for (size_t i = 0; i < 6; i++) {
        const st_tensor *t = st_find(f, ts[i].name);
        ck_assert_msg(t != NULL, "%s not found", ts[i].name);
        ck_assert_str_eq(t->name, ts[i].name);
        ck_assert_str_eq(t->file, path);
        ck_assert_int_eq(t->dtype, ts[i].dtype);
        ck_assert_int_eq(t->ndim, ts[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) {
            ck_assert_int_eq(t->shape[d], ts[i].shape[d]);
            numel *= ts[i].shape[d];
        }
        ck_assert_int_eq(t->numel, numel);
        ck_assert_uint_eq(t->nbytes, (size_t)numel * tp_dtype_size(t->dtype));
        if (t->nbytes) ck_assert(memcmp(t->data, ts[i].data, t->nbytes) == 0);
    }
    ck_assert_ptr_null(st_find(f, "missing"));
    ck_assert_ptr_null(st_find(f, ""));
    st_close(f);

    /* Writing again replaces the file atomically. */
    ck_assert(st_write(path, ts + 1, 1, NULL) == TP_OK);
    ck_assert(st_open_file(path, &f) == TP_OK);
    ck_assert_uint_eq(st_count(f), 1);
    st_close(f);
}
END_TEST

/* Our header for one tensor must be byte-identical to the reference writer's. */
START_TEST(test_write_matches_reference_bytes)
{
    float a[2] = {1.0f, 2.0f};
    int64_t shape[1] = {2};
    st_write_tensor t = {"a", TP_DTYPE_F32, 1, shape, a};
    const char *md[] = {"format", "pt", NULL};
    const char *path = tp_test_tmp_path("ref.safetensors");
    ck_assert(st_write(path, &t, 1, md) == TP_OK);
    static const char want_header[] =
        "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
        "\"data_offsets\":[0,8]}}   "; /* 85 bytes + 3 spaces = 88 */
    size_t n;
    unsigned char *raw = read_whole(path, &n);
    ck_assert_uint_eq(n, 8 + 88 + 8);
    static const unsigned char want_len[8] = {88, 0, 0, 0, 0, 0, 0, 0};
    ck_assert(memcmp(raw, want_len, 8) == 0);
    ck_assert_msg(memcmp(raw + 8, want_header, 88) == 0, "header: %.88s", (const char *)raw + 8);
    ck_assert(memcmp(raw + 96, a, 8) == 0);
    free(raw);
}
END_TEST

/* Bytes as huggingface safetensors (save_file with metadata={"format": "pt"}) lays
 * them out for {"weight": bf16 [[1, -2], [0.5, 3]], "bias": f32 [0.25, -1]}: tensors
 * sorted by dtype (larger first) then name, compact JSON, __metadata__ first, header
 * padded with spaces to a multiple of 8. */
START_TEST(test_read_python_written_file)
{
    static const char header[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"weight\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}"
        "  "; /* 150 bytes of JSON + 2 spaces = 152 */
    static const unsigned char len[8] = {0x98, 0, 0, 0, 0, 0, 0, 0};
    static const unsigned char data[16] = {
        0x00, 0x00, 0x80, 0x3e, 0x00, 0x00, 0x80, 0xbf, /* bias: 0.25, -1.0 (f32 LE) */
        0x80, 0x3f, 0x00, 0xc0, 0x00, 0x3f, 0x40, 0x40, /* weight: 1, -2, 0.5, 3 (bf16 LE) */
    };
    ck_assert_uint_eq(sizeof header - 1, 152);
    unsigned char file[8 + 152 + 16];
    memcpy(file, len, 8);
    memcpy(file + 8, header, 152);
    memcpy(file + 160, data, 16);
    const char *path = write_bytes("python.safetensors", file, sizeof file);

    st_file *f;
    ck_assert_msg(st_open_file(path, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert_uint_eq(st_count(f), 2);
    const st_tensor *b = st_find(f, "bias"), *w = st_find(f, "weight");
    ck_assert(b && w);
    ck_assert_int_eq(b->dtype, TP_DTYPE_F32);
    ck_assert_int_eq(w->dtype, TP_DTYPE_BF16);
    ck_assert_int_eq(w->ndim, 2);
    ck_assert_int_eq(w->shape[0], 2);
    ck_assert_int_eq(w->shape[1], 2);
    float bf[2], wf[4];
    tp_convert_to_f32(b->dtype, b->data, bf, 2);
    tp_convert_to_f32(w->dtype, w->data, wf, 4);
    ck_assert(bf[0] == 0.25f && bf[1] == -1.0f);
    ck_assert(wf[0] == 1.0f && wf[1] == -2.0f && wf[2] == 0.5f && wf[3] == 3.0f);
    st_close(f);
}
END_TEST

START_TEST(test_find_many)
{
    enum { N = 1000 };
    static char names[N][32];
    static float vals[N];
    static st_write_tensor ts[N];
    static const int64_t one[1] = {1};
    for (int i = 0; i < N; i++) {
        /* Names in an order unlike the sorted one. */
        snprintf(names[i], sizeof names[i], "layers.%d.w", (i * 7919) % N);
        vals[i] = (float)i;
        ts[i] = (st_write_tensor){names[i], TP_DTYPE_F32, 1, one, &vals[i]};
    }
    const char *path = tp_test_tmp_path("many.safetensors");
    ck_assert(st_write(path, ts, N, NULL) == TP_OK);
    st_file *f;
    ck_assert(st_open_file(path, &f) == TP_OK);
    ck_assert_uint_eq(st_count(f), N);
    for (int i = 0; i < N; i++) {
        const st_tensor *t = st_find(f, names[i]);
        ck_assert(t != NULL);
        float v;
        memcpy(&v, t->data, 4);
        ck_assert(v == (float)i);
    }
    for (size_t i = 1; i < st_count(f); i++)
        ck_assert(strcmp(st_at(f, i - 1)->name, st_at(f, i)->name) < 0);
    st_close(f);
}
END_TEST

/* ---- corrupt files ------------------------------------------------------------------ */

START_TEST(test_bad_length_field)
{
    expect_open_file_fails(write_bytes("short.safetensors", "abcde", 5), TP_ERR_FORMAT,
                           KW("5 bytes", "shorter than the 8-byte header length"));
    expect_open_file_fails(write_bytes("empty.safetensors", "", 0), TP_ERR_FORMAT,
                           KW("0 bytes", "shorter"));

    unsigned char zero[16] = {0};
    expect_open_file_fails(write_bytes("hl0.safetensors", zero, sizeof zero), TP_ERR_FORMAT,
                           KW("header length is 0"));

    unsigned char big[20] = {0xe8, 0x03}; /* 1000, but only 12 bytes follow */
    memcpy(big + 8, "{}          ", 12);
    expect_open_file_fails(write_bytes("hlbig.safetensors", big, sizeof big), TP_ERR_FORMAT,
                           KW("header length 1000", "12 bytes", "truncated"));

    unsigned char huge[16] = {0, 0, 0, 0x10}; /* 256 MiB */
    expect_open_file_fails(write_bytes("hlhuge.safetensors", huge, sizeof huge), TP_ERR_FORMAT,
                           KW("header length 268435456", "limit"));

    unsigned char all_ff[16];
    memset(all_ff, 0xff, sizeof all_ff); /* 2^64-1: must not wrap any size arithmetic */
    expect_open_file_fails(write_bytes("hlff.safetensors", all_ff, sizeof all_ff), TP_ERR_FORMAT,
                           KW("header length", "limit"));
}
END_TEST

START_TEST(test_bad_json)
{
    expect_open_file_fails(write_raw_st("trunc_json.safetensors", "{\"a\": {\"dtype\"", 0),
                           TP_ERR_FORMAT, KW("not valid JSON"));
    expect_open_file_fails(write_raw_st("array.safetensors", "[1, 2]", 0), TP_ERR_FORMAT,
                           KW("not a JSON object"));
    expect_open_file_fails(write_raw_st("string.safetensors", "\"x\"", 0), TP_ERR_FORMAT,
                           KW("not a JSON object"));
    /* Garbage after the object (not whitespace padding) is not a valid header. */
    expect_open_file_fails(write_raw_st("trailing.safetensors", "{} x", 0), TP_ERR_FORMAT,
                           KW("not valid JSON"));
    expect_open_file_fails(
        write_raw_st("dup.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                     8),
        TP_ERR_FORMAT, KW("duplicate", "a"));
    expect_open_file_fails(write_raw_st("md.safetensors", "{\"__metadata__\": [1]}", 0),
                           TP_ERR_FORMAT, KW("__metadata__"));
    expect_open_file_fails(write_raw_st("md2.safetensors", "{\"__metadata__\": {\"k\": 1}}", 0),
                           TP_ERR_FORMAT, KW("__metadata__", "'k'", "not a string"));
}
END_TEST

typedef struct {
    const char *file;
    const char *header;
    size_t data_len;
    tp_status status;
    const char *kw[4];
} bad_entry_case;

START_TEST(test_bad_entries)
{
    static const bad_entry_case cases[] = {
        {"not_obj.safetensors", "{\"x\": 5}", 0, TP_ERR_FORMAT, {"'x'", "not a JSON object"}},
        {"no_dtype.safetensors", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         TP_ERR_FORMAT, {"'x'", "missing \"dtype\""}},
        {"dtype_int.safetensors", "{\"x\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         TP_ERR_FORMAT, {"'x'", "\"dtype\" is not a string"}},
        {"no_shape.safetensors", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
         TP_ERR_FORMAT, {"'x'", "missing \"shape\""}},
        {"shape_str.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}",
         4, TP_ERR_FORMAT, {"'x'", "\"shape\" is not an array"}},
        {"shape_real.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}",
         4, TP_ERR_FORMAT, {"'x'", "shape[0] is not an integer"}},
        {"no_offs.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, TP_ERR_FORMAT,
         {"'x'", "missing \"data_offsets\""}},
        {"offs_one.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}",
         4, TP_ERR_FORMAT, {"'x'", "\"data_offsets\" is not an array of two integers"}},
        {"offs_str.safetensors",
         "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",\"4\"]}}", 4,
         TP_ERR_FORMAT, {"'x'", "\"data_offsets\" is not an array of two integers"}},
        {"neg_dim.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,4]}}",
         4, TP_ERR_FORMAT, {"'x'", "negative dimension -2"}},
        {"ndim9.safetensors",
         "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         TP_ERR_UNSUPPORTED, {"'x'", "9 dims"}},
        {"overflow.safetensors",
         "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
         4, TP_ERR_FORMAT, {"'x'", "overflows"}},
        {"neg_off.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
         4, TP_ERR_FORMAT, {"'x'", "negative data_offsets [-4, 0]"}},
        {"begin_end.safetensors",
         "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, TP_ERR_FORMAT,
         {"'x'", "data_offsets [8, 4]", "begin > end"}},
        {"size.safetensors", "{\"x\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,8]}}",
         12, TP_ERR_FORMAT, {"'x'", "span 8 bytes", "shape [2, 3] of BF16 needs 12"}},
        {"beyond.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
         8, TP_ERR_FORMAT,
         {"'x'", "data_offsets [0, 16] beyond the data section (8 bytes)", "truncated"}},
        {"overlap.safetensors",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, TP_ERR_FORMAT, {"'a' [0, 8]", "'b' [4, 12]", "overlap"}},
        {"contained.safetensors",
         "{\"big\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"mid\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
         "\"end\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         16, TP_ERR_FORMAT, {"'big'", "overlap"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_entry_case *c = &cases[i];
        const char *kw[5] = {c->kw[0], c->kw[1], c->kw[2], c->kw[3], NULL};
        expect_open_file_fails(write_raw_st(c->file, c->header, c->data_len), c->status, kw);
    }
}
END_TEST

START_TEST(test_unsupported_dtype_message)
{
    /* The exact wording a user sees for a float8 checkpoint. */
    const char *path = write_raw_st("f8.safetensors",
                                    "{\"x\":{\"dtype\":\"F8_E5M2\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4);
    expect_open_file_fails(path, TP_ERR_UNSUPPORTED, NULL);
    char want[700];
    snprintf(want, sizeof want, "%s: tensor 'x': unsupported dtype 'F8_E5M2'", path);
    ck_assert_msg(strncmp(tp_err_msg(), want, strlen(want)) == 0, "%s", tp_err_msg());
}
END_TEST

START_TEST(test_good_edge_cases)
{
    /* Empty header object; zero-size tensors sharing an offset; whitespace padding. */
    st_file *f;
    const char *p = write_raw_st("empty_obj.safetensors", "{}      ", 0);
    ck_assert_msg(st_open_file(p, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert_uint_eq(st_count(f), 0);
    ck_assert_ptr_null(st_find(f, "x"));
    st_close(f);
    p = write_raw_st("zeros.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[4,4]},"
                     "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"d\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[4,5]}}",
                     5);
    ck_assert_msg(st_open_file(p, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert_uint_eq(st_count(f), 4);
    ck_assert_uint_eq(st_total_bytes(f), 5);
    st_close(f);
}
END_TEST

/* The tensors must tile the data section exactly (the Rust reference's
 * Metadata::validate): a gap, bytes after the last tensor, or a header length that
 * does not match the header shift every tensor and are refused. */
START_TEST(test_not_tiled)
{
    expect_open_file_fails(
        write_raw_st("gap.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[6,10]}}",
                     10),
        TP_ERR_FORMAT, KW("'b'", "data byte 6", "ends at 4", "do not tile"));
    expect_open_file_fails(
        write_raw_st("tail.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 6),
        TP_ERR_FORMAT, KW("fill 4 bytes of the 6-byte data section"));
    expect_open_file_fails(
        write_raw_st("start.safetensors",
                     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 6),
        TP_ERR_FORMAT, KW("'a'", "data byte 2", "do not tile"));

    /* A real file whose header length is 2 short: the header's padding becomes the
     * first 2 bytes of the data section, every tensor 2 bytes off. */
    float w[4] = {1, 2, 3, 4};
    const int64_t shape[1] = {4};
    const st_write_tensor t[1] = {{"w", TP_DTYPE_F32, 1, shape, w}};
    const char *good = tp_test_tmp_path("hl_short_src.safetensors");
    ck_assert_msg(st_write(good, t, 1, NULL) == TP_OK, "%s", tp_err_msg());
    size_t n;
    unsigned char *buf = read_whole(good, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    /* Make room for 2 spaces of padding, then claim the old length. */
    unsigned char *bad = malloc(n + 2);
    ck_assert(bad);
    memcpy(bad, buf, 8 + hl);
    memcpy(bad + 8 + hl, "  ", 2);
    memcpy(bad + 8 + hl + 2, buf + 8 + hl, n - 8 - hl);
    expect_open_file_fails(write_bytes("hl_short.safetensors", bad, n + 2), TP_ERR_FORMAT,
                           KW("fill 16 bytes of the 18-byte data section"));
    free(bad);
    free(buf);
}
END_TEST

/* Finiteness: exponent bits all ones is Inf or NaN in every float format; the
 * message names the file, the tensor and the element. Bytes of one dtype read as
 * another (F32 labelled F16) show up this way. */
START_TEST(test_check_finite)
{
    enum { N = 10000 }; /* more than one scan block */
    float *f32 = calloc(N, sizeof *f32);
    uint16_t *h = calloc(N, sizeof *h);
    double *f64 = calloc(N, sizeof *f64);
    ck_assert(f32 && h && f64);
    for (int i = 0; i < N; i++) f32[i] = (float)i * 0.5f - 7, h[i] = 0x3c00, f64[i] = i;
    const int64_t shape[1] = {N};
    const st_write_tensor t[4] = {{"f32", TP_DTYPE_F32, 1, shape, f32},
                                  {"f16", TP_DTYPE_F16, 1, shape, h},
                                  {"bf16", TP_DTYPE_BF16, 1, shape, h},
                                  {"f64", TP_DTYPE_F64, 1, shape, f64}};
    const char *path = tp_test_tmp_path("finite.safetensors");
    ck_assert_msg(st_write(path, t, 4, NULL) == TP_OK, "%s", tp_err_msg());
    st_file *f;
    ck_assert_msg(st_open_file(path, &f) == TP_OK, "%s", tp_err_msg());
    for (size_t i = 0; i < st_count(f); i++)
        ck_assert_msg(st_check_finite(st_at(f, i)) == TP_OK, "%s", tp_err_msg());
    st_close(f);

    /* 0x7c00 is F16 +Inf but a finite BF16 (2^121); 0x7f80 is BF16 +Inf. */
    f32[N - 1] = NAN;
    h[9000] = 0x7c00;
    f64[5] = -INFINITY;
    ck_assert_msg(st_write(path, t, 4, NULL) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg(st_open_file(path, &f) == TP_OK, "%s", tp_err_msg());
    struct { const char *name; tp_status want; const char *kw; } cases[] = {
        {"f32", TP_ERR_FORMAT, "element 9999 of 10000"},
        {"f16", TP_ERR_FORMAT, "element 9000 of 10000"},
        {"bf16", TP_OK, NULL},
        {"f64", TP_ERR_FORMAT, "element 5 of 10000"},
    };
    for (size_t i = 0; i < 4; i++) {
        tp_err_clear();
        tp_status st = st_check_finite(st_find(f, cases[i].name));
        ck_assert_msg(st == cases[i].want, "%s: %s", cases[i].name, tp_err_msg());
        char tn[16];
        snprintf(tn, sizeof tn, "'%s'", cases[i].name);
        if (cases[i].kw) assert_message(path, KW(tn, cases[i].kw, "non-finite"));
    }
    st_close(f);
    h[9000] = 0x3c00;
    h[3] = 0xff80; /* BF16 -Inf; F16 NaN */
    ck_assert_msg(st_write(path, t, 4, NULL) == TP_OK, "%s", tp_err_msg());
    ck_assert_msg(st_open_file(path, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert(st_check_finite(st_find(f, "bf16")) == TP_ERR_FORMAT);
    assert_message(path, KW("'bf16'", "element 3 of"));
    ck_assert(st_check_finite(st_find(f, "f16")) == TP_ERR_FORMAT);
    st_close(f);
    free(f32), free(h), free(f64);
}
END_TEST

START_TEST(test_missing_and_unreadable)
{
    const char *path = tp_test_tmp_path("does_not_exist.safetensors");
    expect_open_file_fails(path, TP_ERR_IO, KW("No such file or directory"));
    expect_open_file_fails(tp_test_tmpdir(), TP_ERR_IO, KW("not a regular file"));
}
END_TEST

/* ---- writing errors ----------------------------------------------------------------- */

START_TEST(test_write_errors)
{
    float v[2] = {1, 2};
    int64_t shape[1] = {2}, neg[1] = {-1};
    st_write_tensor dup[2] = {{"a", TP_DTYPE_F32, 1, shape, v}, {"a", TP_DTYPE_F32, 1, shape, v}};
    const char *path = tp_test_tmp_path("w.safetensors");
    ck_assert_int_eq(st_write(path, dup, 2, NULL), TP_ERR_RANGE);
    assert_message(path, KW("'a'", "twice"));
    st_write_tensor reserved = {"__metadata__", TP_DTYPE_F32, 1, shape, v};
    ck_assert_int_eq(st_write(path, &reserved, 1, NULL), TP_ERR_RANGE);
    st_write_tensor bad_shape = {"a", TP_DTYPE_F32, 1, neg, v};
    ck_assert_int_eq(st_write(path, &bad_shape, 1, NULL), TP_ERR_RANGE);
    st_write_tensor bad_utf8 = {"\xff\xfe", TP_DTYPE_F32, 1, shape, v};
    ck_assert_int_eq(st_write(path, &bad_utf8, 1, NULL), TP_ERR_RANGE);
    const char *md_odd[] = {"format", NULL};
    st_write_tensor ok = {"a", TP_DTYPE_F32, 1, shape, v};
    ck_assert_int_eq(st_write(path, &ok, 1, md_odd), TP_ERR_RANGE);
    ck_assert(!file_exists(path));

    const char *nodir = tp_test_tmp_path("no/such/dir/x.safetensors");
    ck_assert_int_eq(st_write(nodir, &ok, 1, NULL), TP_ERR_IO);
    assert_message(nodir, KW("No such file or directory"));
}
END_TEST

/* A full disk: RLIMIT_FSIZE makes write() fail with EFBIG once the file reaches the
 * limit, the same path through the code as ENOSPC. */
START_TEST(test_write_disk_full)
{
    enum { N = 1 << 16 };
    static float big[N];
    int64_t shape[1] = {N};
    st_write_tensor t = {"big", TP_DTYPE_F32, 1, shape, big};
    const char *path = tp_test_tmp_path("full.safetensors");
    struct rlimit old, lim;
    ck_assert(getrlimit(RLIMIT_FSIZE, &old) == 0);
    lim = old;
    lim.rlim_cur = 4096;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    ck_assert(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    tp_status st = st_write(path, &t, 1, NULL);
    ck_assert(setrlimit(RLIMIT_FSIZE, &old) == 0); /* restore before asserting (CK_FORK=no) */
    signal(SIGXFSZ, old_handler);
    ck_assert_int_eq(st, TP_ERR_IO);
    assert_message(path, KW("File too large"));
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_msg(!file_exists(tmp), "partial temporary file left behind");
    ck_assert_msg(!file_exists(path), "partial file renamed into place");
}
END_TEST

/* ---- directories and shards -------------------------------------------------------------- */

static const char *make_dir(const char *name)
{
    const char *d = tp_test_tmp_path(name);
    ck_assert(mkdir(d, 0755) == 0 || errno == EEXIST);
    return d;
}

static void write_in(const char *dir, const char *name, const st_write_tensor *ts, size_t n)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ck_assert_msg(st_write(p, ts, n, NULL) == TP_OK, "%s", tp_err_msg());
}

static void write_text_in(const char *dir, const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    ck_assert(tp_test_write_file(p, text, strlen(text)) == 0);
}

static float va[2] = {1, 2}, vb[3] = {3, 4, 5}, vc[1] = {6};
static int64_t sa[1] = {2}, sb[1] = {3}, sc[1] = {1};

static const char *make_sharded(const char *name, const char *index_text)
{
    const char *dir = make_dir(name);
    st_write_tensor s1[2] = {{"a", TP_DTYPE_F32, 1, sa, va}, {"b", TP_DTYPE_F32, 1, sb, vb}};
    st_write_tensor s2[1] = {{"c", TP_DTYPE_F32, 1, sc, vc}};
    write_in(dir, "model-00001-of-00002.safetensors", s1, 2);
    write_in(dir, "model-00002-of-00002.safetensors", s2, 1);
    write_text_in(dir, "model.safetensors.index.json", index_text);
    return dir;
}

static const char good_index[] =
    "{\"metadata\": {\"total_size\": 24},\n"
    " \"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\",\n"
    "                \"b\": \"model-00001-of-00002.safetensors\",\n"
    "                \"c\": \"model-00002-of-00002.safetensors\"}}\n";

static void expect_open_dir_fails(const char *dir, tp_status want, const char *const *must)
{
    st_file *f = (st_file *)0x1;
    tp_err_clear();
    tp_status st = st_open_dir(dir, &f);
    ck_assert_msg(st == want, "%s: got %s want %s (%s)", dir, tp_status_name(st),
                  tp_status_name(want), tp_err_msg());
    ck_assert_ptr_null(f);
    assert_message(dir, must);
}

START_TEST(test_sharded_dir)
{
    const char *dir = make_sharded("sharded", good_index);
    st_file *f;
    ck_assert_msg(st_open_dir(dir, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert_uint_eq(st_count(f), 3);
    ck_assert_uint_eq(st_total_bytes(f), 24);
    const st_tensor *a = st_find(f, "a"), *b = st_find(f, "b"), *c = st_find(f, "c");
    ck_assert(a && b && c);
    ck_assert(strstr(a->file, "model-00001-of-00002.safetensors") != NULL);
    ck_assert_str_eq(a->file, b->file);
    ck_assert(strstr(c->file, "model-00002-of-00002.safetensors") != NULL);
    ck_assert(memcmp(b->data, vb, sizeof vb) == 0);
    ck_assert(memcmp(c->data, vc, sizeof vc) == 0);
    st_close(f);

    /* The fingerprint (store provenance) covers both shards and sees a changed byte
     * in a shard's data even with its size and mtime kept. */
    fs_fingerprint fp0, fp1;
    ck_assert_msg(st_fingerprint_dir(dir, &fp0) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(fp0.files, 2);
    char p2[600];
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    size_t n2;
    unsigned char *b2 = read_whole(p2, &n2);
    b2[n2 - 1] ^= 1;
    ck_assert_int_eq(tp_test_write_file(p2, b2, n2), 0);
    free(b2);
    ck_assert_msg(st_fingerprint_dir(dir, &fp1) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(fp1.bytes, fp0.bytes);
    ck_assert(fp1.hash != fp0.hash);

    /* A directory with a single model.safetensors. */
    const char *single = make_dir("single");
    st_write_tensor t = {"w", TP_DTYPE_F32, 1, sa, va};
    write_in(single, "model.safetensors", &t, 1);
    ck_assert_msg(st_open_dir(single, &f) == TP_OK, "%s", tp_err_msg());
    ck_assert_uint_eq(st_count(f), 1);
    st_close(f);
    ck_assert_msg(st_fingerprint_dir(single, &fp0) == TP_OK, "%s", tp_err_msg());
    ck_assert_int_eq(fp0.files, 1);
}
END_TEST

START_TEST(test_sharded_errors)
{
    /* Index names a shard that is not there: name the shard and the index. */
    const char *dir = make_sharded("missing_shard",
                                   "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                                   " \"z\": \"model-00003-of-00003.safetensors\"}}");
    expect_open_dir_fails(dir, TP_ERR_IO,
                          KW("model-00003-of-00003.safetensors", "model.safetensors.index.json",
                             "No such file or directory"));

    /* Index lists a tensor its shard does not hold. */
    dir = make_sharded("absent_tensor",
                       "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                       " \"d\": \"model-00001-of-00002.safetensors\"}}");
    expect_open_dir_fails(dir, TP_ERR_FORMAT,
                          KW("'d'", "model-00001-of-00002.safetensors",
                             "model.safetensors.index.json", "not in this shard"));

    /* Index puts a tensor in the wrong shard. */
    dir = make_sharded("wrong_shard",
                       "{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                       " \"c\": \"model-00001-of-00002.safetensors\","
                       " \"x\": \"model-00002-of-00002.safetensors\"}}");
    expect_open_dir_fails(dir, TP_ERR_FORMAT, KW("'c'", "model-00002-of-00002.safetensors"));

    /* The same tensor in two shards. */
    dir = make_dir("dup_shards");
    st_write_tensor t = {"a", TP_DTYPE_F32, 1, sa, va};
    write_in(dir, "s1.safetensors", &t, 1);
    write_in(dir, "s2.safetensors", &t, 1);
    write_text_in(dir, "model.safetensors.index.json",
                  "{\"weight_map\": {\"a\": \"s1.safetensors\", \"b\": \"s2.safetensors\"}}");
    expect_open_dir_fails(dir, TP_ERR_FORMAT, KW("'a'", "s1.safetensors", "s2.safetensors", "both"));

    /* A corrupt shard reports the shard's own path. */
    dir = make_sharded("corrupt_shard", good_index);
    char shard2[600];
    snprintf(shard2, sizeof shard2, "%s/model-00002-of-00002.safetensors", dir);
    ck_assert(tp_test_write_file(shard2, "\x04\0\0\0\0\0\0\0[1] ", 12) == 0);
    expect_open_dir_fails(dir, TP_ERR_FORMAT,
                          KW("model-00002-of-00002.safetensors", "not a JSON object"));

    /* Broken indexes. */
    dir = make_sharded("bad_index_json", "{\"weight_map\": ");
    expect_open_dir_fails(dir, TP_ERR_FORMAT, KW("model.safetensors.index.json", "not valid JSON"));
    dir = make_sharded("no_weight_map", "{\"metadata\": {}}");
    expect_open_dir_fails(dir, TP_ERR_FORMAT, KW("model.safetensors.index.json", "weight_map"));
    dir = make_sharded("empty_weight_map", "{\"weight_map\": {}}");
    expect_open_dir_fails(dir, TP_ERR_FORMAT, KW("weight_map", "empty"));
    dir = make_sharded("escape_shard", "{\"weight_map\": {\"a\": \"../x.safetensors\"}}");
    expect_open_dir_fails(dir, TP_ERR_FORMAT, KW("'a'", "shard file name"));
    dir = make_sharded("int_shard", "{\"weight_map\": {\"a\": 1}}");
    expect_open_dir_fails(dir, TP_ERR_FORMAT, KW("'a'", "shard file name"));

    /* Neither file. */
    dir = make_dir("empty_model_dir");
    expect_open_dir_fails(dir, TP_ERR_IO,
                          KW("neither", "model.safetensors", "model.safetensors.index.json"));
    const char *nodir = tp_test_tmp_path("no_such_model_dir");
    expect_open_dir_fails(nodir, TP_ERR_IO, KW("No such file or directory"));
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("io");
    tcase_add_test(tc, test_write_read_round_trip);
    tcase_add_test(tc, test_write_matches_reference_bytes);
    tcase_add_test(tc, test_read_python_written_file);
    tcase_add_test(tc, test_find_many);
    tcase_add_test(tc, test_bad_length_field);
    tcase_add_test(tc, test_bad_json);
    tcase_add_test(tc, test_bad_entries);
    tcase_add_test(tc, test_unsupported_dtype_message);
    tcase_add_test(tc, test_good_edge_cases);
    tcase_add_test(tc, test_not_tiled);
    tcase_add_test(tc, test_check_finite);
    tcase_add_test(tc, test_missing_and_unreadable);
    tcase_add_test(tc, test_write_errors);
    tcase_add_test(tc, test_write_disk_full);
    tcase_add_test(tc, test_sharded_dir);
    tcase_add_test(tc, test_sharded_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tp_test_run_suite(safetensors_suite()); }
