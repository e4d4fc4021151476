/* h5_check.h — H5_CHECK(expr): HDF5 calls return a negative value (herr_t/hid_t)
 * on failure; record "<expr> failed: <innermost HDF5 message>" with file and line
 * and return TP_ERR_HDF5. HDF5's own error stack printing should be turned off
 * (H5Eset_auto2(H5E_DEFAULT, NULL, NULL)) by whoever opens files, so the one-line
 * message is the only output. */
#ifndef TP_H5_CHECK_H
#define TP_H5_CHECK_H

#include "core/error.h"

#include <hdf5.h>

/* Innermost message of the current HDF5 error stack ("" if none). Every HDF5 call
 * clears the stack, closes included: read it right at the failing call. */
const char *h5_last_error(char *buf, size_t n);
/* The same, and then the OS error `err` (an errno saved at the failing call, 0 for
 * none) unless the HDF5 message already gives it: "...: File too large". */
const char *h5_cause(char *buf, size_t n, int err);

#define H5_CHECK(expr)                                                             \
    do {                                                                           \
        if ((expr) < 0) {                                                          \
            char h5_msg_[256];                                                     \
            return tp_err(TP_ERR_HDF5, "%s failed: %s", #expr,                     \
                          h5_last_error(h5_msg_, sizeof h5_msg_));                 \
        }                                                                          \
    } while (0)

#endif
