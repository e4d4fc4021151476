/* inspect_phase.h — phase 1: the model's architecture and architectural constraints.
 *
 * Writes <run>/results/architecture.json: architecture and config, shapes and dtypes,
 * parameter counts per component, and per layer the Frobenius norms of every weight
 * matrix, statistics of the norm weights and (inspect.spectra) the singular-value
 * spectra with effective and stable rank of W_Q, W_K, W_V, W_O per head and of the
 * three MLP matrices. Layers are shared out over the MPI ranks; rank 0 writes.
 */
#ifndef TP_INSPECT_PHASE_H
#define TP_INSPECT_PHASE_H

#include "core/config.h"
#include "core/error.h"
#include "phase.h"

#include <jansson.h>

extern const tp_phase inspect_phase;
tp_status inspect_phase_run(const tp_config *cfg, const char *run_dir);
/* The document itself (rank 0 gets it, others NULL); used by the phase and tests. */
tp_status inspect_build(const tp_config *cfg, json_t **doc);

#endif
