/* features_cmd.h — `transpolmo features query`: the features of
 * <run>/results/features_catalog.json (docs/features.md) that pass every filter
 * given: --layer L, --hook NAME, --feature ID, --token TEXT, --density-min X,
 * --density-max X, --domain NAME [--domain-min F], --dead. Output: a table (default
 * columns hook, feature, density, fires, mean, max, top_domain, share, top_token,
 * top_context; --fields a,b,c: index columns or feature keys), or --json: one JSON
 * object per feature (its whole entry with "layer" and "hook" in front, or the
 * --fields). --sort FIELD[:asc|desc] (default: catalog order), --limit N, --catalog
 * FILE. Filters and sorts on index columns run on the index
 * (results/features_catalog.index.tsv, io/features_index.h) when it matches the
 * catalog, reading only the printed features' lines; otherwise on the parsed catalog
 * (schema /1 or /2). A filter that cannot match the catalog's coverage (a layer,
 * hook, domain or feature id it does not have) is an error (exit 2); no match is
 * "no feature matches" on stderr and exit 0. Rank 0 prints. */
#ifndef TP_FEATURES_CMD_H
#define TP_FEATURES_CMD_H

#include "cli.h"

tp_status features_cmd_run(tp_cli *cli);

#endif
