/* features_index.h — the features catalog on disk and its index (docs/features.md,
 * "Files"), written by the SAE phase and read by `transpolmo features query`.
 *
 * The catalog (results/features_catalog.json) is one JSON document in which every
 * line is compact JSON: "{", the top-level keys one per line, `"saes":[`, for each
 * SAE "{" and its keys one per line, `"features":[`, then ONE FEATURE OBJECT PER LINE
 * (followed by "," but the last), "]", "}" (so less, grep and jq all work on it).
 *
 * The index (results/features_catalog.index.tsv) is tab-separated UTF-8 text:
 *   line 1  "# transpolmo.features_index/1" and tab-separated key=value fields:
 *           catalog_bytes, catalog_mtime_ns (the catalog's size and modification time
 *           when both were written: a catalog that differs is stale), catalog_schema,
 *           saes = a compact JSON array, per SAE {hook, layer, d_sae, features, rows,
 *           domain_rows}
 *   line 2  the column names (features_index_columns)
 *   then    one line per feature, in catalog order.
 * Cells: `\`, tab, newline and carriage return as \\, \t, \n, \r; integers in decimal,
 * reals as %.9g (the catalog's precision, so the index and the catalog give the same
 * numbers); an empty cell is null/absent. top_tokens, promoted_tokens and
 * domain_profile are compact JSON. offset and length are the byte span of the feature's object in the
 * catalog (its line, without the trailing comma and newline).
 */
#ifndef TP_FEATURES_INDEX_H
#define TP_FEATURES_INDEX_H

#include "core/error.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#define FEATURES_CATALOG_SCHEMA "transpolmo.features_catalog/2"
#define FEATURES_INDEX_SCHEMA "transpolmo.features_index/1"

typedef enum {
    FX_SAE,              /* index of the SAE in "saes" */
    FX_HOOK,
    FX_LAYER,
    FX_FEATURE,          /* the feature's id */
    FX_FIRES,
    FX_DENSITY,
    FX_MEAN,             /* mean_activation */
    FX_MAX,              /* max_activation */
    FX_DEAD,             /* 1: fired on no row */
    FX_DENSE,            /* 1: in the layer's dense_features */
    FX_TOP_DOMAIN,       /* top_domain (or the largest share of domain_profile) */
    FX_TOP_DOMAIN_SHARE, /* its share of the activation mass */
    FX_TOP_TOKEN,        /* the token of the first top context */
    FX_TOP_CONTEXT,      /* its context */
    FX_TOKENS,           /* top_tokens, JSON: the distinct activating tokens of top_contexts */
    FX_PROMOTES,         /* promoted_tokens, JSON: the distinct tokens of promotes */
    FX_DOMAIN_PROFILE,   /* JSON: {domain: share} */
    FX_OFFSET,
    FX_LENGTH,
    FX_NCOLS
} features_index_col;

extern const char *const features_index_columns[FX_NCOLS];

/* An index in memory: cells point into one buffer (unescaped, NUL-terminated). */
typedef struct {
    char *buf;
    int64_t n_rows;
    char **cell;                 /* [n_rows × FX_NCOLS]: row r, column c at cell[r·FX_NCOLS + c] */
    json_t *saes;                /* the header's per-SAE array */
    int64_t catalog_bytes, catalog_mtime_ns;   /* −1 when built from a parsed catalog */
    char catalog_schema[64];
} features_index;

/* Writes the catalog document with one feature per line and its index, both to .tmp
 * files, then renames the catalog and the index (a failure before leaves the old pair;
 * one between the renames leaves a stale index, which readers detect). */
tp_status features_file_write(const char *path, const char *index_path, const json_t *doc);

/* Reads index_path. TP_ERR_IO if it cannot be read, TP_ERR_FORMAT if it is not an
 * index of this format (message naming the file and line). */
tp_status features_index_load(const char *index_path, features_index *out);
/* Whether the index describes the catalog at catalog_path as it is now (size and
 * modification time as recorded). */
int features_index_fresh(const features_index *x, const char *catalog_path);
/* The same table from a parsed catalog (schema /1 or /2): what the index of that
 * catalog would hold, offsets −1. */
tp_status features_index_from_doc(const json_t *doc, features_index *out);
void features_index_free(features_index *x);

/* The feature object at [offset, offset + length) of an open catalog. */
tp_status features_file_read_feature(FILE *catalog, const char *path, int64_t offset, int64_t length, json_t **out);

#endif
