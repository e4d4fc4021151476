/* pipeline.h — the phases in order, and `transpolmo run`.
 *
 * A phase is a driver `tp_status fn(cfg, run_dir)` plus the outputs that prove it
 * complete and the config keys its result depends on. `run` makes the run
 * directory, records the effective config (config.yaml) and library versions
 * (versions.json), then runs each phase whose outputs are missing or were made
 * under a different value of its keys (marker .phases/<name>.done). A killed job
 * therefore resumes at the first incomplete phase.
 */
#ifndef TP_PIPELINE_H
#define TP_PIPELINE_H

#include "core/config.h"
#include "core/error.h"

typedef tp_status (*tp_phase_fn)(const tp_config *cfg, const char *run_dir);

typedef struct {
    const char *name;              /* also the CLI command */
    tp_phase_fn run;
    const char *const *outputs;    /* relative to the run dir, NULL-terminated */
    const char *const *depends;    /* config key prefixes, NULL-terminated */
} tp_phase;

const tp_phase *pipeline_phases(int *n);
const tp_phase *pipeline_find(const char *name);
/* Runs one phase now (the phase's own command) and marks it complete. */
tp_status pipeline_run_phase(const tp_phase *p, const tp_config *cfg, const char *run_dir);
/* `transpolmo run`: every phase in order, skipping complete ones. */
tp_status pipeline_run_all(const tp_config *cfg, const char *run_dir);
/* Writes config.yaml and versions.json into the run dir (rank 0). */
tp_status pipeline_record_run(const tp_config *cfg, const char *run_dir);

#endif
