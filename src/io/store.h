/* store.h — the activation store: one HDF5 file per run, written collectively by
 * all ranks through MPI-IO (layout in docs/store.md):
 *
 *   /tokens         int32  [N]       token id of each row, document order
 *   /positions      int32  [N]       position of the row within its sequence
 *   /mask           uint8  [N]       1 = use the row in analyses (0: masked first/BOS rows)
 *   /row_doc        int32  [N]       the sampled document (0..D-1) the row's token comes from
 *   /doc_offsets    int64  [D+1]     first row of each sampled document
 *   /doc_index      int64  [D]       the document's index in the corpus
 *   /doc_domain     int32  [D]       the document's domain, an index into /domain_names
 *   /domain_names   uint8  [M, L]    domain names, NUL-padded
 *   /vocab_offsets  int64  [V+1]     token id t's text is /vocab_bytes[off[t]:off[t+1]] (UTF-8,
 *   /vocab_bytes    uint8  [B]       decoded alone, so a byte-level piece may be partial)
 *   /units_complete uint8  [U]       1 once a unit's rows are written and flushed
 *   /acts/<hook>    f32|f16|bf16 [N, d]   chunked by rows, unlimited first dimension;
 *                   attributes hook, layer, point, dtype, d, units
 *   root attributes: store_format, provenance (model, config/tokenizer/corpus
 *   hashes, weights and corpus fingerprints (analysis/store_inputs.h), seed, hooks,
 *   dtype, ...; numbers as integers); each dataset: complete.
 *
 * Rows are addressed globally; every write call is collective (a rank with nothing
 * to write passes n = 0) except store_write_acts, which is independent: each rank
 * writes its rows when it has them, so ranks do not wait for each other per unit. Reopening a store checks the provenance and refuses a
 * mismatch by name, so a rerun against another model or corpus cannot mix rows.
 */
#ifndef TP_STORE_H
#define TP_STORE_H

#include "core/dtype.h"
#include "core/error.h"

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_NAME_MAX 128

typedef struct {
    char name[STORE_NAME_MAX];   /* hook name, e.g. "blocks.3.hook_resid_post" */
    int64_t cols;
    tp_dtype dtype;              /* storage: F32, F16 or BF16 */
} store_act_spec;

/* One provenance attribute: a string (text != NULL) or an integer. */
typedef struct {
    const char *key;
    const char *text;
    int64_t num;
} store_prov;

typedef struct {
    int64_t n_rows, n_docs, n_units;
    const store_act_spec *acts;
    int n_acts;
    const store_prov *provenance;
    int n_provenance;
    int64_t n_domains, domain_name_len;     /* /domain_names [n_domains, len >= 1] */
    int64_t n_vocab, n_vocab_bytes;         /* /vocab_offsets [n_vocab + 1], /vocab_bytes */
} store_layout;

typedef struct tp_store tp_store;

/* Creates the file (and its datasets) or reopens an existing one and checks that
 * it has this layout and provenance. *created says which. Collective. */
tp_status store_open_write(const char *path, MPI_Comm comm, const store_layout *L, bool *created,
                           tp_store **out);
/* Opens for reading (every rank or one, comm decides). */
tp_status store_open_read(const char *path, MPI_Comm comm, tp_store **out);
tp_status store_close(tp_store *s);
/* Closes after a failure, keeping the first error's message. */
void store_close_after_error(tp_store *s);

/* Collective writes of rows [row0, row0+n) of this rank. */
tp_status store_write_index(tp_store *s, int64_t row0, int64_t n, const int32_t *tokens,
                            const int32_t *positions, const uint8_t *mask, const int32_t *row_doc);
/* Collective; only the writer's data is used. */
tp_status store_write_docs(tp_store *s, const int64_t *doc_offsets, const int64_t *doc_index,
                           const int32_t *doc_domain, bool writer);
tp_status store_write_tables(tp_store *s, const char *const *domains, int64_t n_domains, int64_t name_len,
                             const int64_t *vocab_offsets, int64_t n_vocab, const uint8_t *vocab_bytes,
                             bool writer);
/* Independent (not collective): rows [row0, row0+n) of one capture point; n = 0
 * does nothing. Rows reach the file (the OS) when it returns; store_flush makes them
 * durable. */
tp_status store_write_acts(tp_store *s, int act, int64_t row0, int64_t n, const float *rows);
/* Marks this rank's finished units (collective; n may be 0), then flushes. */
tp_status store_mark_units(tp_store *s, const int64_t *units, int n);
tp_status store_read_units(tp_store *s, uint8_t *done);   /* [n_units] */
tp_status store_flush(tp_store *s);
/* Sets complete = 1 on every dataset (after the last write and flush). Collective. */
tp_status store_mark_complete(tp_store *s);

/* Reading. store_open_write keeps the layout's order of capture points; a store
 * opened for reading lists them by name. */
int store_num_acts(const tp_store *s);
const store_act_spec *store_act(const tp_store *s, int i);
int store_find_act(const tp_store *s, const char *name);   /* -1 if absent */
int64_t store_rows(const tp_store *s);
bool store_is_complete(const tp_store *s, const char *dataset);
tp_status store_read_acts(tp_store *s, int act, int64_t row0, int64_t n, float *out);
tp_status store_read_i32(tp_store *s, const char *dataset, int64_t row0, int64_t n, int32_t *out);
tp_status store_read_u8(tp_store *s, const char *dataset, int64_t row0, int64_t n, uint8_t *out);
/* The document tables: every sampled document's rows, corpus index and domain. */
typedef struct {
    int64_t n_docs;
    int64_t *offsets;          /* [n_docs + 1] first row of each document */
    int64_t *index;            /* [n_docs] corpus index */
    int32_t *domain;           /* [n_docs] index into domain_names */
    char **domain_names;       /* [n_domains] */
    int n_domains;
} store_docs;
/* Reads and checks them (every rank reads the same; a store of format 1, without
 * /doc_domain, is named). Collective. */
tp_status store_read_docs(tp_store *s, store_docs *out);
void store_docs_free(store_docs *d);

/* Value of a root attribute as text into buf ("" if absent); integers in decimal. */
const char *store_attr(tp_store *s, const char *key, char *buf, size_t n);

#endif
