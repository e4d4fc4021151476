/* npy.h — NumPy .npy files (format 1.0/2.0/3.0), little-endian, C order.
 *
 * Reads dtypes <f4 <f8 <f2 <i4 <i8 <i2 (and |u1 |i1 |b1) into memory owned by the
 * caller (free()). Writes any of those (v1.0, data 64-byte aligned, atomically via
 * path.tmp + rename); BF16 has no numpy dtype. Errors name the file and what is wrong
 * (bad magic, Fortran order, big-endian, unsupported dtype, truncated data).
 */
#ifndef TP_NPY_H
#define TP_NPY_H

#include "core/dtype.h"
#include "core/error.h"

#include <stdint.h>

#define NPY_MAX_DIMS 8

typedef struct {
    tp_dtype dtype;
    int ndim;
    int64_t shape[NPY_MAX_DIMS];
    int64_t numel;
    void *data;            /* malloc'ed, free with npy_free */
} npy_array;

tp_status npy_read(const char *path, npy_array *out);
/* Reads and converts to f32 whatever float/int dtype is stored. */
tp_status npy_read_f32(const char *path, npy_array *out);
tp_status npy_write(const char *path, tp_dtype dtype, int ndim, const int64_t *shape,
                    const void *data);
void npy_free(npy_array *a);

#endif
