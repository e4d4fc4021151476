/* capture_phase.h — phase 2: ranks shard the sampled corpus and write the model's
 * activations at the configured capture points into <run>/activations.h5.
 *
 * Work is cut into units of forward.batch_size consecutive sequences (the same units
 * whatever the number of ranks, so a sequence is always computed in the same batch
 * and the file is bit-identical for any np); ranks own contiguous runs of units
 * balanced by token count. After each round every rank writes its unit's rows
 * collectively, flushes, and marks the unit complete; a rerun skips complete units,
 * so a killed job resumes without losing or duplicating a row. The datasets are
 * marked complete after the last unit. Summary: results/capture_summary.json.
 */
#ifndef TP_CAPTURE_PHASE_H
#define TP_CAPTURE_PHASE_H

#include "core/config.h"
#include "core/error.h"

tp_status capture_phase_run(const tp_config *cfg, const char *run_dir);

#endif
