/* pipeline.h — the phases in order, and `transpolmo run`.
 *
 * pipeline.c holds the list of phase descriptors (phase.h) — the one place a new
 * phase is added — and what is derived from it: the configuration schema (the
 * shared sections plus each phase's own), `transpolmo phases`, the CLI's phase
 * commands, and `run`. `run` runs each phase whose outputs are missing or whose
 * marker (.phases/<name>.done) holds another resume hash; a killed job therefore
 * resumes at the first incomplete phase. A phase that completes records what it ran
 * with (.phases/<name>.config.yaml, .versions.json, with the true rank count), then
 * its marker, then the run's own config.yaml and versions.json: a command that is
 * refused or fails leaves all of them as they were.
 */
#ifndef TP_PIPELINE_H
#define TP_PIPELINE_H

#include "core/config.h"
#include "core/error.h"
#include "phase.h"

#include <stdbool.h>
#include <stdio.h>

const tp_phase *const *pipeline_phases(int *n);
const tp_phase *pipeline_find(const char *name);
/* Is the phase complete in run_dir for this configuration? (Every rank reads the
 * same files, so they agree.) */
bool pipeline_phase_complete(const tp_phase *p, const tp_config *cfg, const char *run_dir);
/* Runs one phase now (the phase's own command), records it and marks it complete. */
tp_status pipeline_run_phase(const tp_phase *p, const tp_config *cfg, const char *run_dir);
/* `transpolmo run`: every phase in order, skipping complete ones. */
tp_status pipeline_run_all(const tp_config *cfg, const char *run_dir);
/* Writes the run's config.yaml and versions.json (rank 0). */
tp_status pipeline_record_run(const tp_config *cfg, const char *run_dir);
/* `transpolmo phases`: one name per line, or (json) an array of
 * {name, help, outputs, needs, config_section, reads}. */
tp_status pipeline_print_phases(FILE *f, bool json);

/* TP_FAULT (core/fault.h) checked against the phases and their points: a malformed
 * value or an unknown phase or point is a configuration error. */
tp_status pipeline_check_fault(void);

#endif
