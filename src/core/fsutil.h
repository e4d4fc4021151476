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
#include <stdio.h>

tp_status fs_mkdir_p(const char *path);                   /* like mkdir -p */
bool fs_exists(const char *path);
/* Removes dir and the directories below it that hold no file, and nothing else
 * (a failed command's empty run folders). */
void fs_rmdir_empty(const char *dir);
tp_status fs_mkdir_parent(const char *path);              /* mkdir -p of dirname(path) */
/* Opens "<path>.tmp" for writing; commit with fs_commit, or fs_abort on failure. */
tp_status fs_open_tmp(const char *path, FILE **f);
tp_status fs_commit(FILE *f, const char *path);           /* fflush+fsync+fclose+rename */
void fs_abort(FILE *f, const char *path);                  /* fclose + unlink tmp */
tp_status fs_write_atomic(const char *path, const void *data, size_t n);
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

#endif
