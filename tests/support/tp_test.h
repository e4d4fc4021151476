/* tp_test.h — helpers shared by the Check tests.
 *
 * tp_test_data(rel) gives an absolute path under tests/data (TP_TEST_DATA);
 * tp_test_tmpdir() makes a fresh temporary directory; tp_test_run_suite runs one
 * suite and returns the process exit code.
 */
#ifndef TP_TEST_H
#define TP_TEST_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>

const char *tp_test_data(const char *rel);      /* static buffer, rotating (8 slots) */
const char *tp_test_tmpdir(void);               /* static, created once per process */
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
/* Writes `n` bytes to path; returns 0 on success. */
int tp_test_write_file(const char *path, const void *data, size_t n);

#endif
