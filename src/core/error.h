/* error.h — status codes and error messages.
 *
 * Library code returns tp_status. On failure it records a one-line message with
 * tp_err(); callers that propagate add nothing (TP_CHECK), callers that know more
 * context may prefix it (tp_err_prefix). Only main.c and phase drivers print the
 * message and exit. The message buffer is per thread.
 */
#ifndef TP_ERROR_H
#define TP_ERROR_H

#include <stddef.h>

typedef enum {
    TP_OK = 0,
    TP_ERR_IO,        /* file missing, read/write failure, disk full */
    TP_ERR_FORMAT,    /* malformed user input: safetensors, JSON, YAML, npy */
    TP_ERR_CONFIG,    /* bad configuration key, type or value */
    TP_ERR_UNSUPPORTED, /* valid input we do not handle (architecture, dtype) */
    TP_ERR_RANGE,     /* index or value out of range */
    TP_ERR_NOMEM,
    TP_ERR_MPI,
    TP_ERR_HDF5,
    TP_ERR_CUDA,
    TP_ERR_NO_DEVICE, /* asked for a GPU where there is none */
    TP_ERR_INTERNAL,
    TP_ERR_STOPPED    /* stopped at a safe point on request (SIGUSR1, dist/stop.h): rerun to resume */
} tp_status;

/* Records the message "<text>" and where it was raised ("src/file.c:123"), and
 * returns code. Users see the message; the place is for --verbose and bug reports. */
tp_status tp_err_at(tp_status code, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
#define tp_err(code, ...) tp_err_at((code), __FILE__, __LINE__, __VA_ARGS__)

/* Prepends "<text>: " to the current message (for context like a file name). */
void tp_err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const char *tp_err_msg(void);   /* last message, "" if none */
const char *tp_err_where(void); /* where it was raised: "src/io/store.c:120", "" if none */
/* Puts back a message saved from tp_err_msg(): cleanup after a failure (closing
 * files, ...) may fail too, and the first failure is the one to report. */
void tp_err_restore(const char *saved);
void tp_err_clear(void);
const char *tp_status_name(tp_status s);

/* Propagate a failure of one of our calls. */
#define TP_CHECK(expr)                          \
    do {                                        \
        tp_status tp_check_s_ = (expr);         \
        if (tp_check_s_ != TP_OK) return tp_check_s_; \
    } while (0)

/* Same, jumping to a cleanup label with `st` set. */
#define TP_CHECK_GOTO(expr, st, label)          \
    do {                                        \
        (st) = (expr);                          \
        if ((st) != TP_OK) goto label;          \
    } while (0)

/* Allocation helpers that fail with a message naming the size. */
void *tp_malloc(size_t n);                     /* NULL on failure, message set */
void *tp_calloc(size_t count, size_t size);
#define TP_ALLOC(ptr, count)                                                     \
    do {                                                                         \
        (ptr) = tp_calloc((size_t)(count), sizeof(*(ptr)));                      \
        if (!(ptr)) return TP_ERR_NOMEM;                                         \
    } while (0)

#endif
