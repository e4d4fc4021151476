/* phase.h — what a phase is: one folder and one descriptor.
 *
 * A phase reads what earlier phases left in the run directory and adds its own
 * outputs (DESIGN.md). Its descriptor says everything the pipeline, the CLI, the
 * resume logic and the job chains need to know about it:
 *   name     the command (`transpolmo <name>`) and the marker .phases/<name>.done
 *   help     one line for `transpolmo help` and `transpolmo phases`
 *   run      the driver: reads its settings once, does its steps, writes atomically
 *   outputs  run-dir artifacts (run_layout.h) that prove it complete
 *   config   its own config section ("<name>.*" keys, declared beside the driver)
 *   reads    shared keys (settings.h sections) its results depend on
 *   needs    phases whose outputs it reads
 *   headline one line of what it found, for `run`'s log and summary
 *   subs     subcommands (`transpolmo <name> <sub> [options]`), each with its own
 *            options; `transpolmo <name>` alone runs the phase
 *   inputs_hash  files outside the config that its results depend on (e.g. the
 *            circuit library's task files), as one hash of their names and contents
 *   faults   its own fault-injection points (core/fault.h) besides start and outputs
 * Its resume hash is its own keys and `reads`, its inputs_hash, plus the hashes of
 * the phases it needs, so a change upstream reruns everything downstream and
 * nothing else.
 *
 * Adding a phase: a folder under analysis/ with the driver and its descriptor
 * (`const tp_phase foo_phase = {...}`), and one line in pipeline.c's list.
 */
#ifndef TP_PHASE_H
#define TP_PHASE_H

#include "core/config.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct tp_phase tp_phase;
typedef tp_status (*tp_phase_fn)(const tp_config *cfg, const char *run_dir);

/* The command line of a subcommand (cli.h); declared here so that this header
 * does not depend on the CLI. */
struct tp_cli;

/* One subcommand of a phase: `transpolmo <phase> <name> [options]`. `run` parses
 * its own options (cli_take_value ...) and rejects the rest; main prints `help`
 * and `usage` for `transpolmo <phase> <name> --help` and lists the table under
 * `transpolmo <phase> --help`. */
typedef struct {
    const char *name;
    tp_status (*run)(struct tp_cli *cli);
    const char *help;                    /* one line */
    const char *usage;                   /* option lines, or NULL */
} tp_phase_sub;

struct tp_phase {
    const char *name;
    const char *help;
    tp_phase_fn run;
    const char *const *outputs;          /* NULL-terminated */
    const tp_cfg_section *config;        /* NULL: no keys of its own */
    const char *const *reads;            /* NULL-terminated key prefixes ("data.", "layers") */
    const tp_phase *const *needs;        /* NULL-terminated */
    const char *usage;                   /* extra lines of `--help` (options), or NULL */
    /* One line of what the phase found, read from its outputs (rank 0, after it
     * ran or when it was skipped): `run` prints it per phase and in its summary.
     * NULL: none. A headline that cannot be made is left empty, not an error. */
    void (*headline)(const char *run_dir, char *buf, size_t n);
    /* Subcommands, ended by an entry whose name is NULL; NULL: none. The first
     * argument after the command that is not an option names one. */
    const tp_phase_sub *subs;
    /* A hash of the files outside the config that the results depend on (names and
     * contents; an unreadable one hashes as such, the run reports it). NULL: none. */
    uint64_t (*inputs_hash)(const tp_config *cfg);
    /* The points inside the phase where TP_FAULT can stop it (core/fault.h), each
     * reached with tp_fault(name, point); NULL-terminated. start and outputs are
     * every phase's (pipeline.c). NULL: none of its own. */
    const char *const *faults;
};

/* The resume hash: FNV-1a over the phase's own keys and `reads` (config's
 * canonical rendering), its inputs_hash and the hashes of every phase it needs. */
uint64_t phase_hash(const tp_phase *p, const tp_config *cfg);

#endif
