/* row_stream.h — activation rows streamed from the store in a seeded, shuffled order
 * that does not depend on the number of ranks (SAE training, phase 4), a held-out
 * set of whole documents, and passes over the held-out rows or every row.
 *
 * Held out: whole documents, stratified over the corpus domains: in each domain the
 * documents in a seeded order are taken while the rows taken stay nearest to
 * eval_fraction of the domain's unmasked rows; when every document of a domain is
 * longer than twice its share, its shortest one is held out, so every domain with
 * two documents or more is represented (a domain with one document keeps it for
 * training). Training rows are the unmasked rows (/mask = 1) of the other documents.
 *
 * Training order. The store's rows are cut into chunks of `chunk_rows` consecutive
 * rows; chunks holding training rows are the training chunks. Epoch e visits them in
 * a seeded permutation, `window_chunks` at a time: a window's training rows are read
 * (every rank reads the same window) and shuffled by a seeded permutation. The
 * order is a function of (store, seed, chunk_rows, window_chunks, eval_fraction)
 * only: the same global batches for any number of ranks; a caller takes batch j of
 * a window as rows [j·B, (j+1)·B) and each rank its contiguous share
 * (row_stream_share).
 *
 * Passes. row_stream_for_eval gives each rank its contiguous share of the held-out
 * rows, row_stream_for_all its contiguous share of every unmasked row, in blocks of
 * at most chunk_rows rows in store order, to a callback.
 *
 * Memory: window_chunks · chunk_rows · Σ d_i floats per rank, and a byte per store
 * row, whatever the store's size. Every call that reads is collective (the store's
 * metadata reads are collective).
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
    double eval_fraction;    /* [0, 0.5]: share of each domain's rows held out, as whole documents */
    uint64_t seed;
} row_stream_options;

/* What the held-out set and the training rows rest on, per domain. */
typedef struct {
    const char *name;
    int64_t docs, docs_held_out;
    int64_t train_rows, eval_rows;   /* unmasked rows */
} row_stream_domain;

typedef struct row_stream row_stream;

/* acts: the store's capture points to stream together (indices of store_act). */
tp_status row_stream_open(tp_store *s, MPI_Comm comm, const int *acts, int n_acts, const row_stream_options *opt,
                          row_stream **out);
void row_stream_close(row_stream *rs);

int64_t row_stream_train_rows(const row_stream *rs);   /* unmasked rows of training documents */
int64_t row_stream_eval_rows(const row_stream *rs);    /* unmasked rows of held-out documents */
int64_t row_stream_all_rows(const row_stream *rs);     /* every unmasked row */
int64_t row_stream_windows(const row_stream *rs);      /* windows per epoch */
/* Per domain; n_domains entries, valid while the stream lives. */
const row_stream_domain *row_stream_domains(const row_stream *rs, int *n_domains);
/* The domain (index into row_stream_domains) of a store row. */
int row_stream_domain_of(const row_stream *rs, int64_t row);
/* Whether a store row belongs to a held-out document. */
int row_stream_is_held_out(const row_stream *rs, int64_t row);
/* The corpus indices (the store's /doc_index) of the held-out documents,
 * round-robin over the domains (so any prefix is stratified too); *n of them, and
 * (domains, may be NULL) each one's domain. Valid while the stream lives. */
const int64_t *row_stream_held_out_docs(const row_stream *rs, int64_t *n, const int32_t **domains);

/* Training rows window w of epoch e will hold (no reading). */
int64_t row_stream_window_rows(row_stream *rs, int64_t epoch, int64_t w);
/* Reads window w (0 ≤ w < row_stream_windows) of epoch e: *n shuffled rows; rows[i]
 * points at [*n, d_i] for act i (owned by the stream, valid until the next read);
 * store_rows (may be NULL) gets [*n] the store row of each. Collective. */
tp_status row_stream_read_window(row_stream *rs, int64_t epoch, int64_t w, int64_t *n, float *const **rows,
                                 const int64_t **store_rows);

/* A block of rows of act i: rows [n, d_i], their store rows [n]. */
typedef tp_status (*row_stream_block_fn)(void *user, const float *rows, const int64_t *store_rows, int64_t n);
/* This rank's share of the held-out rows / of every unmasked row, block by block, in
 * store order. Collective; a failure of fn on one rank ends the pass on every rank
 * with that rank's message. */
tp_status row_stream_for_eval(row_stream *rs, int act_i, row_stream_block_fn fn, void *user);
tp_status row_stream_for_all(row_stream *rs, int act_i, row_stream_block_fn fn, void *user);

/* This rank's contiguous share [*lo, *hi) of a batch of n rows over `size` ranks. */
void row_stream_share(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* The held-out documents of domain `dom` (the rule above, exposed so that `transpolmo
 * plan` counts the same documents): doc_rows[k] unmasked rows and doc_domain[k] of
 * each of n_docs documents; sets held[k] = 1 for those held out. */
tp_status row_stream_hold_out_domain(const int64_t *doc_rows, const int32_t *doc_domain, int64_t n_docs, int dom,
                                     double eval_fraction, uint64_t seed, uint8_t *held);

#endif
