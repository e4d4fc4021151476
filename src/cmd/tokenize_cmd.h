/* tokenize_cmd.h — `transpolmo tokenize`: text or a file to token ids, or ids back to
 * text, with the model's tokenizer.json (--model DIR) or any one (--tokenizer FILE). */
#ifndef TP_TOKENIZE_CMD_H
#define TP_TOKENIZE_CMD_H

#include "cli.h"
#include "core/error.h"

tp_status tokenize_cmd_run(tp_cli *cli);

#endif
