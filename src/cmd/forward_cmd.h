/* forward_cmd.h — `transpolmo forward`: run the model on a prompt or token ids,
 * print the top next tokens of each sequence (with the position they follow and,
 * when the model has a tokenizer, their text), optionally save capture points and
 * logits as .npy. */
#ifndef TP_FORWARD_CMD_H
#define TP_FORWARD_CMD_H

#include "cli.h"
#include "core/error.h"

tp_status forward_cmd_run(tp_cli *cli);

#endif
