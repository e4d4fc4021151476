/* fsutil.h — files written so that a failure never leaves a half-written result.
 *
 * Outputs are written to "<path>.tmp", flushed and checked (a full disk is an error
 * naming the file), then renamed over <path>: an earlier result stays intact until
 * the new one is complete.
 */
#ifndef TP_FSUTIL_H
#define TP_FSUTIL_H

#include "core/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

tp_status fs_mkdir_p(const char *path);                   /* like mkdir -p */
bool fs_exists(const char *path);
/* Removes dir and the directories below it that hold no file, and nothing else
 * (a failed command's empty run folders). */
void fs_rmdir_empty(const char *dir);
tp_status fs_mkdir_parent(const char *path);              /* mkdir -p of dirname(path) */
/* A hook run once, by the next write through this module (fs_open_tmp and what
 * uses it) or the activation store, then forgotten; NULL: none. The pipeline sets
 * one per phase to remove the phase's marker before its outputs start to change,
 * and not before: a command refused before writing leaves the phase complete. */
void fs_on_first_write(tp_status (*fn)(void *arg), void *arg);
tp_status fs_before_write(void);
/* Opens "<path>.tmp" for writing; commit with fs_commit, or fs_abort on failure. */
tp_status fs_open_tmp(const char *path, FILE **f);
tp_status fs_commit(FILE *f, const char *path);           /* fflush+fsync+fclose+rename */
void fs_abort(FILE *f, const char *path);                  /* fclose + unlink tmp */
tp_status fs_write_atomic(const char *path, const void *data, size_t n);
/* Why a write at path (or, when path does not exist, in its directory) fails, as an
 * errno: EROFS on a read-only file system, ENOSPC when no block is left, else 0. For
 * writers whose library loses the OS error: MPI-IO reports a short write on a full
 * disk, or a read-only file system, without errno. */
int fs_write_errno(const char *path);
/* Dumps JSON (indent 2, keys in insertion order) atomically. */
tp_status fs_write_json(const char *path, const json_t *j);
/* The same without indentation (large outputs: the features catalog). */
tp_status fs_write_json_compact(const char *path, const json_t *j);
/* Longest path a buffer of ours holds (Linux PATH_MAX); a longer one is an error
 * naming it, never a silently cut name. */
#define TP_PATH_MAX 4096
/* snprintf into buf; TP_ERR_RANGE "path too long ..." when it does not fit. */
tp_status fs_path(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Joins a and b with one '/' into buf (fs_path's error when too long). */
tp_status fs_join(char *buf, size_t n, const char *a, const char *b);

/* A cheap fingerprint of input files (weights, corpus) for a store's provenance:
 * total size, newest modification time (ns), and FNV-1a over each file's name, size,
 * its first `head` bytes and FS_FINGERPRINT_SAMPLES blocks of 4 KiB spread evenly
 * over the rest (the last ending at the end of the file). A few dozen reads per file
 * whatever its size, so fingerprinting a 32B model costs milliseconds; a file
 * replaced in place changes its mtime, and a file copied over with the same size and
 * time still changes a sampled block unless the change misses every sample. */
#define FS_FINGERPRINT_SAMPLES 16
typedef struct {
    int64_t bytes, mtime_ns;
    uint64_t hash;
    int files;
} fs_fingerprint;
void fs_fingerprint_init(fs_fingerprint *fp);
tp_status fs_fingerprint_add(fs_fingerprint *fp, const char *path, uint64_t head);

#endif
