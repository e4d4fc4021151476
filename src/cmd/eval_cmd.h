/* eval_cmd.h — `transpolmo eval`: per-token loss and perplexity of the model over
 * sampled corpus documents (overall and per corpus domain), sequences sharded over
 * the MPI ranks; rank 0 writes <run>/results/eval.json. */
#ifndef TP_EVAL_CMD_H
#define TP_EVAL_CMD_H

#include "cli.h"

tp_status eval_cmd_run(tp_cli *cli);

#endif
