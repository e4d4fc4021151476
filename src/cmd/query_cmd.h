/* query_cmd.h — `transpolmo query <subject> [filters] [--json]`: questions answered
 * from the run's documentation, <run>/docs/findings/model_documentation.json (the
 * document phase, docs/document.md), or --doc FILE:
 *   features  --token TEXT (a top token, or a verified description's rule, contains it), --domain NAME
 *             (the feature's top domain), --layer L, --hook NAME, --verified
 *   heads     --class NAME, --layer L, --verified
 *   circuits  --task NAME, --verified
 *   layers    --geometry TEXT (the geometry label contains it), --layer L
 * A table by default, or --json: one JSON object per line (the documentation's own
 * entry, with "hook" in front for features); --limit N. A filter that cannot match
 * the documentation (an unknown class or task, a layer the model does not have) is an
 * error naming what exists (exit 2); a missing documentation is one error line naming
 * the file and the command that makes it; no match is "nothing matches" on stderr and
 * exit 0. Rank 0 prints. */
#ifndef TP_QUERY_CMD_H
#define TP_QUERY_CMD_H

#include "cli.h"

tp_status query_cmd_run(tp_cli *cli);

#endif
