/* capture_phase.h — phase 2: ranks shard the sampled corpus and write the model's
 * activations at the configured capture points into <run>/activations.h5.
 *
 * Work is cut into units of forward.batch_size consecutive sequences (the same units
 * whatever the number of ranks, so a sequence is always computed in the same batch
 * and the file is bit-identical for any np); ranks own contiguous runs of units
 * balanced by token count. After each round every rank writes its unit's rows,
 * the ranks meet at flush points where the rows are made durable and their units
 * marked complete; a rerun skips complete units, so a killed job resumes without
 * losing or duplicating a row. The datasets are marked complete after the last unit.
 * Summary: results/capture_summary.json.
 */
#ifndef TP_CAPTURE_PHASE_H
#define TP_CAPTURE_PHASE_H

#include "core/config.h"
#include "core/dtype.h"
#include "core/error.h"
#include "phase.h"

#include <stdbool.h>
#include <stddef.h>

/* The capture.* section, typed. */
typedef struct {
    const char *const *hooks;   /* capture.hooks */
    size_t n_hooks;
    tp_dtype dtype;             /* capture.dtype: F32, F16 or BF16 */
    const char *dtype_name;     /* as written: "f32", "f16", "bf16" */
    bool mask_first;            /* capture.mask_first */
    bool mask_bos;              /* capture.mask_bos */
} capture_settings;

extern const tp_phase capture_phase;
tp_status capture_settings_read(const tp_config *cfg, capture_settings *out);
tp_status capture_phase_run(const tp_config *cfg, const char *run_dir);

#endif
