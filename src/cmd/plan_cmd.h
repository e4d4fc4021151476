/* plan_cmd.h — `transpolmo plan CONFIG --ranks N [--nodes M --gpus-per-rank G
 * --mem-per-rank GB] [--json]`: what each phase of the run CONFIG describes will
 * cost (time, peak memory per rank, disk, bytes between ranks) before it runs, with a
 * warning and what to change when a rank would not fit (plan_model.h);
 * `transpolmo plan --calibrate [--calibration FILE]` measures this machine's rates
 * (plan_calib.h). docs/planning.md. */
#ifndef TP_PLAN_CMD_H
#define TP_PLAN_CMD_H

#include "cli.h"

tp_status plan_cmd_run(tp_cli *cli);

#endif
