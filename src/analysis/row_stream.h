/* row_stream.h — activation rows streamed from the store in a seeded, shuffled order
 * that does not depend on the number of ranks (SAE training, phase 4).
 *
 * The store's rows are cut into chunks of `chunk_rows` consecutive rows. A seeded
 * fraction of the chunks (eval_fraction, at least one when it is > 0) is held out
 * for evaluation; the rest are training chunks. Epoch e visits the training chunks
 * in a seeded permutation, `window_chunks` at a time: a window's unmasked rows
 * (/mask = 1) are read (every rank reads the same window) and shuffled by a seeded
 * permutation. The training order is therefore a function of (store, seed,
 * chunk_rows, window_chunks) only: the same global batches for any number of ranks;
 * a caller takes batch j of a window as rows [j·B, (j+1)·B) and each rank its
 * contiguous share of that batch (row_stream_share).
 *
 * Memory: window_chunks · chunk_rows · Σ d_i floats per rank, whatever the store's size.
 * Every call that reads is collective (the store's metadata reads are collective).
 */
#ifndef TP_ROW_STREAM_H
#define TP_ROW_STREAM_H

#include "core/error.h"
#include "io/store.h"

#include <mpi.h>
#include <stdint.h>

typedef struct {
    int64_t chunk_rows;      /* rows per chunk (≥ 1) */
    int64_t window_chunks;   /* chunks shuffled together (≥ 1) */
    double eval_fraction;    /* [0, 0.5]: share of chunks held out */
    uint64_t seed;
} row_stream_options;

typedef struct row_stream row_stream;

/* acts: the store's capture points to stream together (indices of store_act). */
tp_status row_stream_open(tp_store *s, MPI_Comm comm, const int *acts, int n_acts, const row_stream_options *opt,
                          row_stream **out);
void row_stream_close(row_stream *rs);

int64_t row_stream_train_rows(const row_stream *rs);   /* unmasked rows in training chunks */
int64_t row_stream_eval_rows(const row_stream *rs);    /* unmasked rows in held-out chunks */
int64_t row_stream_windows(const row_stream *rs);      /* windows per epoch */

/* Unmasked rows window w of epoch e will hold (no reading). */
int64_t row_stream_window_rows(row_stream *rs, int64_t epoch, int64_t w);
/* Reads window w (0 ≤ w < row_stream_windows) of epoch e: *n shuffled rows; rows[i]
 * points at [*n, d_i] for act i (owned by the stream, valid until the next read);
 * store_rows (may be NULL) gets [*n] the store row of each. Collective. */
tp_status row_stream_read_window(row_stream *rs, int64_t epoch, int64_t w, int64_t *n, float *const **rows,
                                 const int64_t **store_rows);
/* Up to `max` held-out rows (in store order, from the first held-out chunks) of act
 * i into out [*n, d_i]; store_rows (may be NULL) [*n]. Collective. */
tp_status row_stream_read_eval(row_stream *rs, int act_i, int64_t max, float *out, int64_t *store_rows, int64_t *n);

/* This rank's contiguous share [*lo, *hi) of a batch of n rows over `size` ranks. */
void row_stream_share(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

#endif
