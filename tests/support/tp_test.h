/* tp_test.h — helpers shared by the Check tests.
 *
 * tp_test_data(rel) gives an absolute path under tests/data (TP_TEST_DATA);
 * tp_test_tmpdir() makes a fresh temporary directory and tp_test_tmp_path() names a
 * file in it; TP_ASSERT_ERR_HAS / TP_ASSERT_FAILS check error messages;
 * tp_test_rel_err compares arrays; tp_test_rng_next / tp_test_rand_f32 make
 * reproducible random data; TP_ASSERT_OK and tp_test_on_device serve the device
 * tests; tp_test_run_suite runs one suite and returns the process exit code.
 * Every test file uses these instead of its own copy.
 */
#ifndef TP_TEST_H
#define TP_TEST_H

#include "core/error.h"

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

const char *tp_test_data(const char *rel);      /* static buffer, rotating (8 slots) */
const char *tp_test_tmpdir(void);               /* static, created once per process */
/* <tmpdir>/<name>: 8 rotating static buffers (aborts on a name too long). */
const char *tp_test_tmp_path(const char *name);
/* Max |a − ref| / max |ref| over n values (NaN in a gives NaN: a failure). */
double tp_test_rel_err(const float *a, const float *ref, size_t n);
double tp_test_rel_err_f64(const double *a, const double *ref, size_t n);
/* splitmix64 on *state: deterministic, so a failure reproduces. */
uint64_t tp_test_rng_next(uint64_t *state);
/* n floats uniform in [lo, hi) from *state, malloc'ed (aborts when out of memory). */
float *tp_test_rand_f32(uint64_t *state, size_t n, float lo, float hi);

/* The last error message contains `needle` and is one line. */
#define TP_ASSERT_ERR_HAS(needle)                                                               \
    do {                                                                                        \
        const char *tp_msg_ = tp_err_msg();                                                     \
        ck_assert_msg(strstr(tp_msg_, (needle)) != NULL, "message '%s' lacks '%s'", tp_msg_, (needle)); \
        ck_assert_msg(strchr(tp_msg_, '\n') == NULL, "message '%s' spans lines", tp_msg_);      \
    } while (0)
/* `call` fails with status `code` and a message containing `needle`. */
#define TP_ASSERT_FAILS(call, code, needle)                                                     \
    do {                                                                                        \
        tp_status tp_st_ = (call);                                                              \
        ck_assert_msg(tp_st_ == (code), "%s: %s, want %s (%s)", #call, tp_status_name(tp_st_),  \
                      tp_status_name(code), tp_err_msg());                                      \
        TP_ASSERT_ERR_HAS(needle);                                                              \
    } while (0)
/* `call` returns TP_OK; otherwise the test fails with the call and the error message. */
#define TP_ASSERT_OK(call) ck_assert_msg((call) == TP_OK, "%s: %s", #call, tp_err_msg())
/* A copy of `bytes` bytes of host memory in backend be's memory (be_alloc + be_upload;
 * the caller frees with be_free); fails the test when either fails. */
struct tp_backend;
void *tp_test_on_device(struct tp_backend *be, const void *host, size_t bytes);
int tp_test_run_suite(Suite *s);                 /* srunner + exit code */
/* Same without forking (tests that initialise MPI or CUDA: a forked child breaks them). */
int tp_test_run_suite_nofork(Suite *s);
/* MPI tests: runs the suite without forking on every rank, and returns the worst
 * exit code over all ranks (so every rank exits with every rank's verdict). */
int tp_test_run_suite_mpi(Suite *s);
/* Rank `rank` of `size`'s contiguous, uneven slice of n rows for the MPI tests:
 * weights 1, 2, 3, ... with rank 2 empty when size >= 4 (a rank with no rows must
 * still take part in every collective). */
void tp_test_uneven_slice(int64_t n, int rank, int size, int64_t *row0, int64_t *rows);
/* A default configuration with model.path = the bundled models/olmo2-tiny and
 * data.corpus = data/corpus/heldout.jsonl under $TP_SOURCE_DIR (fails the test when
 * that is unset). */
struct tp_config;
struct tp_config *tp_test_bundled_config(void);
/* The shared sections of cfg read as the commands read them (settings.h); valid
 * until the next call and while cfg lives. */
const struct tp_settings *tp_test_settings_of(const struct tp_config *cfg);
/* Phase 2 (capture) of cfg with `be` as the default backend (the CPU's again after)
 * into <tmpdir>/<name>; the store's path into store[n]. */
struct tp_backend;
tp_status tp_test_capture(const struct tp_config *cfg, struct tp_backend *be, const char *name, char *store,
                          size_t n);
/* Two complete activation stores with the same rows, tokens and capture points (the
 * test fails otherwise): the largest relative difference of a capture point,
 * max|a − b| / max|b|, and whether every capture point has the same bits
 * (*same_bits). */
double tp_test_store_diff(const char *a, const char *b, int *same_bits);
/* The whole file, NUL-terminated, malloc'ed (n: its length, may be NULL); fails the
 * test when it cannot be read. */
char *tp_test_read_file(const char *path, size_t *n);
/* Writes `n` bytes to path; returns 0 on success. */
int tp_test_write_file(const char *path, const void *data, size_t n);

#endif
