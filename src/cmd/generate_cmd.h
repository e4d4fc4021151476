/* generate_cmd.h — `transpolmo generate`: greedy decoding with the KV cache from a
 * text prompt (or token ids); prints the continuation and its ids. */
#ifndef TP_GENERATE_CMD_H
#define TP_GENERATE_CMD_H

#include "cli.h"

tp_status generate_cmd_run(tp_cli *cli);

#endif
