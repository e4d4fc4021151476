/* fuzz.h — what every fuzz target (tests/fuzz/fuzz_<name>.c) shares.
 *
 * A target defines LLVMFuzzerTestOneInput(data, size): it hands the bytes to one
 * parser of user input and frees whatever the parser gave back, whatever it returned.
 * Built with TP_FUZZ=ON (clang, -fsanitize=fuzzer,address,undefined) libFuzzer
 * drives it; built without, replay.c replays files (the corpus and the
 * regressions) through it as a ctest test. Parsers that take a path get the bytes
 * through fuzz_write_file(): one file per process, rewritten per input.
 */
#ifndef TP_FUZZ_H
#define TP_FUZZ_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* This process's scratch directory (/tmp/tp-fuzz-<pid>), made on first use and
 * removed at exit with what fuzz_write_file put there. */
static char fuzz_dir_[64];
static char fuzz_files_[8][160];
static int fuzz_n_files_;

static inline void fuzz_cleanup_(void)
{
    for (int i = 0; i < fuzz_n_files_; i++) unlink(fuzz_files_[i]);
    rmdir(fuzz_dir_);
}

static inline const char *fuzz_dir(void)
{
    if (!fuzz_dir_[0]) {
        snprintf(fuzz_dir_, sizeof fuzz_dir_, "/tmp/tp-fuzz-%ld", (long)getpid());
        if (mkdir(fuzz_dir_, 0700) != 0 && access(fuzz_dir_, W_OK) != 0) abort();
        atexit(fuzz_cleanup_);
    }
    return fuzz_dir_;
}

/* Writes data to <fuzz_dir>/<name> and returns its path (static storage). */
static inline const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[160];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) abort();
    int known = 0;
    for (int i = 0; i < fuzz_n_files_; i++) known |= !strcmp(fuzz_files_[i], path);
    if (!known && fuzz_n_files_ < 8) snprintf(fuzz_files_[fuzz_n_files_++], sizeof fuzz_files_[0], "%s", path);
    return path;
}

#endif
