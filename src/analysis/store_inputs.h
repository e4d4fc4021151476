/* store_inputs.h — the store's inputs, fingerprinted at capture and checked by every
 * phase that reads the store.
 *
 * config.json and tokenizer.json are hashed whole (capture_phase.c); the weights and
 * the corpus are too big to hash on every phase, so they get fs_fingerprint's cheap
 * one (size, newest mtime, the safetensors headers and sampled blocks). Capture
 * records them as root attributes (docs/store.md: weights_bytes, weights_mtime_ns,
 * weights_fingerprint, corpus_bytes, corpus_mtime_ns, corpus_fingerprint) and refuses
 * to resume when they differ; geometry, sae, verify and document call store_inputs_check,
 * which recomputes them from the store's own model_path and corpus and refuses a
 * store whose inputs changed, in one line saying what changed.
 */
#ifndef TP_STORE_INPUTS_H
#define TP_STORE_INPUTS_H

#include "core/error.h"
#include "io/store.h"

#include <mpi.h>

#define STORE_INPUTS_N 6

typedef struct {
    char weights_fp[24], corpus_fp[24];
    int64_t weights_bytes, weights_mtime_ns, corpus_bytes, corpus_mtime_ns;
} store_inputs;

/* Fingerprints the weights under model_dir and the corpus files spec names. */
tp_status store_inputs_compute(const char *model_dir, const char *corpus_spec, store_inputs *out);
/* Its STORE_INPUTS_N provenance entries (pointing into in). */
void store_inputs_provenance(const store_inputs *in, store_prov out[STORE_INPUTS_N]);
/* Refuses (TP_ERR_CONFIG, one line naming the store, the input and what changed) a
 * store whose weights or corpus are no longer what it was captured from. A store
 * without these attributes (captured before they existed) is not checked. Every rank
 * computes the same; collective over comm. */
tp_status store_inputs_check(tp_store *s, const char *store_path, MPI_Comm comm);

#endif
