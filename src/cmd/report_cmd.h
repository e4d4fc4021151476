/* report_cmd.h — `transpolmo report`: the run's findings as one self-contained HTML
 * page, <run>/docs/findings/report.html (or --html PATH), from what the run directory
 * holds (report/report_html.h). Rank 0 writes; the other ranks wait for its verdict. */
#ifndef TP_REPORT_CMD_H
#define TP_REPORT_CMD_H

#include "cli.h"

tp_status report_cmd_run(tp_cli *cli);

#endif
