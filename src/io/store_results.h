/* store_results.h — analysis results written back into the activation store.
 *
 *   /pca/<hook>/mean                      f64 [d]
 *   /pca/<hook>/eigenvalues               f64 [d]   descending
 *   /pca/<hook>/explained_variance_ratio  f64 [d]
 *   /pca/<hook>/components                f64 [k, d] unit rows (sign: largest |entry| > 0)
 *   attributes of the group: n_rows, k, method ("cov"|"svd"), complete = 1 (last)
 *
 * One process writes (rank 0 of the geometry phase, after every rank closed the
 * store), through HDF5's default serial driver. An earlier group of the same name
 * is replaced; a failure leaves complete unset, so a reader can tell a half-written
 * group from a finished one.
 */
#ifndef TP_STORE_RESULTS_H
#define TP_STORE_RESULTS_H

#include "core/error.h"

#include <stdint.h>

typedef struct {
    const char *method;
    int64_t n_rows, d, k;
    const double *mean, *eigenvalues, *explained_variance_ratio, *components;
} store_pca;

tp_status store_write_pca(const char *path, const char *hook, const store_pca *p);
/* Reads /pca/<hook>/components back: *k and d must match; out [k, d]. For tests and
 * later phases. */
tp_status store_read_pca_components(const char *path, const char *hook, int64_t k, int64_t d, double *out);

/* Serial reading of the store's 1-D index datasets by one process (the parallel
 * handle closed or read-only): open once, read many windows, close. */
typedef struct store_serial store_serial;
tp_status store_serial_open(const char *path, store_serial **out);
void store_serial_close(store_serial *h);
tp_status store_serial_read_i32(store_serial *h, const char *dataset, int64_t row0, int64_t n, int32_t *out);
tp_status store_serial_read_i64(store_serial *h, const char *dataset, int64_t row0, int64_t n, int64_t *out);
/* Length of a 1-D dataset (TP_ERR_FORMAT if absent or not 1-D). */
tp_status store_serial_length(store_serial *h, const char *dataset, int64_t *n);

/* One-shot forms of the same (open, read, close).
 * Rows [row0, row0 + n) of a 1-D int32 dataset (/tokens, /positions). */
tp_status store_read_i32_serial(const char *path, const char *dataset, int64_t row0, int64_t n, int32_t *out);
/* Same for a 1-D int64 dataset (/doc_offsets, /doc_index). */
tp_status store_read_i64_serial(const char *path, const char *dataset, int64_t row0, int64_t n, int64_t *out);
/* Length of a 1-D dataset (serial; TP_ERR_FORMAT if absent or not 1-D). */
tp_status store_dataset_length_serial(const char *path, const char *dataset, int64_t *n);

#endif
