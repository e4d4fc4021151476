/* ablate_cmd.h — `transpolmo ablate`: ablate or steer heads, MLPs, neurons or SAE
 * features over prompts -> results/ablations/<name>.json (docs/verify.md). */
#ifndef TP_ABLATE_CMD_H
#define TP_ABLATE_CMD_H

#include "cli.h"

tp_status ablate_cmd_run(tp_cli *cli);

#endif
