/* features_cmd.h — `transpolmo features query`: the features of
 * <run>/results/features_catalog.json (docs/features.md) that pass every filter
 * given, one JSON object per line (the feature's entry with "layer" and "hook" in
 * front), in catalog order. Filters: --layer L, --hook NAME, --feature ID,
 * --token TEXT, --density-min X, --density-max X, --domain NAME [--domain-min F],
 * --dead, --limit N; --catalog FILE reads another file. Rank 0 prints. */
#ifndef TP_FEATURES_CMD_H
#define TP_FEATURES_CMD_H

#include "cli.h"

tp_status features_cmd_run(tp_cli *cli);

#endif
