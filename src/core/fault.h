/* fault.h — one switch for fault injection, and what a terminated rank says.
 *
 * The resume and failure tests stop a run at a chosen place:
 *
 *   TP_FAULT=<phase>.<point>[@<n>][:<rank>][/<action>]
 *
 *   phase   a phase name (`transpolmo phases`)
 *   point   start (before the phase's work), outputs (its outputs written, its marker
 *           not yet), or one of the phase's own points (tp_phase.faults: capture.unit,
 *           sae.step, geometry.point, ...)
 *   n       the n-th time this rank reaches the point (default 1)
 *   rank    the rank that fails (default 0)
 *   action  kill (SIGKILL, the default), term (SIGTERM: what Slurm sends at the time
 *           limit or on scancel), fail (an error returned there: "injected fault") or
 *           pause (the rank waits there for a signal, then goes on: a test sends
 *           SIGTERM, scancel or SIGUSR1 at a known point)
 *
 * e.g. TP_FAULT=sae.step@7:1/term. A phase calls tp_fault("sae", "step") at each of its
 * points; with TP_FAULT unset that is one comparison. The pipeline checks the switch
 * against the phases before anything runs (a misspelt point is an error, not a test
 * that silently never fails).
 *
 * SIGTERM and SIGINT: tp_fault_install_signals() makes a rank that receives one say
 * so on stderr in one line (rank, signal, phase, "rerun to resume") and then end by
 * that signal as it would have without the handler: nothing is marked complete, and
 * the rerun resumes from the last commit point.
 */
#ifndef TP_FAULT_H
#define TP_FAULT_H

#include "core/error.h"

typedef enum { TP_FAULT_KILL, TP_FAULT_TERM, TP_FAULT_FAIL, TP_FAULT_PAUSE } tp_fault_action;

typedef struct {
    char phase[32];
    char point[32];
    long n;            /* >= 1 */
    int rank;          /* >= 0 */
    tp_fault_action action;
} tp_fault_spec;

/* Parses a TP_FAULT value (syntax only; the names are checked by the pipeline). */
tp_status tp_fault_parse(const char *text, tp_fault_spec *out);

/* The switch as parsed from the environment; NULL when TP_FAULT is unset or empty.
 * A malformed value is reported by tp_fault_check_env(). */
const tp_fault_spec *tp_fault_env(void);
tp_status tp_fault_check_env(void);

/* Called at a fault point: when the switch names this phase and point, this rank
 * and this is its n-th arrival, dies by SIGKILL or SIGTERM, returns an error, or
 * waits for a signal. */
tp_status tp_fault(const char *phase, const char *point);

/* The phase now running on this rank, for the message of a terminated rank ("" or
 * NULL: none). Keeps a pointer: pass a string that lives as long as the program. */
void tp_fault_set_phase(const char *phase);

/* SIGTERM and SIGINT handlers (after MPI_Init, so that they replace any installed
 * there); the rank in the message is tp_log_rank_id() at the time of the call. */
void tp_fault_install_signals(void);

#endif
