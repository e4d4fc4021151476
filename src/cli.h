/* cli.h — the options every command takes, applied to the config.
 *
 * `transpolmo <command> [args]`. Common options: --config FILE, --set key=value,
 * --model DIR, --num-samples N, --device cpu|cuda, --skip-sae, --layers 0,6,11,
 * --out DIR (each also as --opt=value). Precedence: built-in defaults < config file
 * < command line, whatever their order on the line. Anything else is left in
 * `rest` for the command to parse (cli_take_* helpers), and a command must reject
 * what it does not know (cli_reject_rest). After parsing, the shared sections are
 * read into cli->set and the run directory into cli->run_dir.
 */
#ifndef TP_CLI_H
#define TP_CLI_H

#include "core/config.h"
#include "core/error.h"
#include "core/fsutil.h"
#include "settings.h"

#include <stdbool.h>

#define CLI_MAX_REST 64

typedef struct tp_cli {
    const char *command;
    const char *subcommand;      /* a phase's subcommand (phase.h), or NULL */
    tp_config *cfg;
    tp_settings set;             /* the shared sections, read once by cli_parse */
    char run_dir[TP_PATH_MAX];   /* run.out_dir, or runs/<run.name> */
    int nrest;
    const char *rest[CLI_MAX_REST];
    bool rest_used[CLI_MAX_REST];
    int nasked;                  /* options the command looked for, for "did you mean" */
    const char *asked[CLI_MAX_REST];
} tp_cli;

/* Parses argv (argv[0] program, argv[1] command). A positional .yaml or .yml file right
 * after `run` is taken as the config file. */
tp_status cli_parse(int argc, char **argv, tp_cli *out);
void cli_free(tp_cli *cli);

/* Command-specific options: "--name VALUE" or "--name=VALUE". Returns NULL if absent. */
const char *cli_take_value(tp_cli *cli, const char *name);
bool cli_take_flag(tp_cli *cli, const char *name);
/* Next positional argument not yet taken, or NULL. */
const char *cli_take_positional(tp_cli *cli);
/* The subcommand of a phase: the first argument left to the command when it is not
 * an option ("trace" in `transpolmo circuits --model M trace --prompt P`), taken and
 * kept in cli->subcommand; NULL when there is none. */
const char *cli_take_subcommand(tp_cli *cli);
/* Error naming the first argument nobody took, with the nearest option the command
 * knows ("--layer": did you mean '--layers'?). */
tp_status cli_reject_rest(const tp_cli *cli);

#endif
