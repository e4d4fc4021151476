/* config.h — the effective configuration: built-in defaults < YAML file < command line.
 *
 * Keys are dotted paths ("data.num_samples") declared in sections: a section is a
 * table of keys, each with a type, a default, a range or a set of allowed values, and
 * a one-line help. Core knows no section: the application's schema is the shared
 * sections (model, data, forward, ...) plus each phase's own, assembled by
 * tp_config_app_schema(), which the application defines (src/pipeline.c). A YAML
 * file is nested mappings of those keys (block or flow style). An unknown key (with
 * the nearest valid one suggested), a wrong type or an out-of-range value is a
 * one-line error naming the key, the file and the line ("configs/x.yaml:12:
 * data.num_samples: expected an integer >= 1, got 'many'"); on the command line the
 * origin is "--set" or the option name. Each phase reads its keys once into a typed
 * struct; getting an undeclared key is a programming error and aborts.
 */
#ifndef TP_CONFIG_H
#define TP_CONFIG_H

#include "core/error.h"

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    TP_CFG_STRING,      /* optionally restricted to a set of values */
    TP_CFG_INT,
    TP_CFG_FLOAT,
    TP_CFG_BOOL,
    TP_CFG_INT_LIST,    /* YAML sequence or "0,6,11" */
    TP_CFG_STRING_LIST  /* YAML sequence or "a,b,c" */
} tp_cfg_type;

/* One key of a section. Every value, the default included, is parsed from text by
 * the same code (lists: "a,b"), so a default that breaks its own range is caught
 * when a config is made. */
typedef struct {
    const char *key;        /* dotted path, starting with its section's name */
    tp_cfg_type type;
    const char *def;        /* default as text */
    double lo, hi;          /* numeric range (list items too); ±INFINITY = no bound */
    bool lo_open;           /* (lo, hi] instead of [lo, hi] */
    const char *allowed;    /* "a|b|c" for restricted strings, NULL otherwise */
    const char *help;
} tp_cfg_key;

/* Range shorthands for tp_cfg_key tables. */
#define TP_CFG_ANY -INFINITY, INFINITY, false
#define TP_CFG_MIN(a) (a), INFINITY, false
#define TP_CFG_IN(a, b) (a), (b), false
#define TP_CFG_ABOVE_TO(a, b) (a), (b), true

/* A section: "data" holds "data.*"; a section may be one key of its own name
 * ("layers", "device"). Keys are written and documented in section order. */
typedef struct {
    const char *name;
    const tp_cfg_key *keys;
    size_t n;
} tp_cfg_section;
#define TP_CFG_SECTION(name, table) {(name), (table), sizeof(table) / sizeof((table)[0])}
#define TP_CFG_MAX_KEYS 1024

typedef struct tp_config tp_config;

/* Built-in defaults of the given sections (order kept). */
tp_status tp_config_new_schema(const tp_cfg_section *const *sections, size_t n, tp_config **out);
/* The application's schema; defined by the application, not by core. */
const tp_cfg_section *const *tp_config_app_schema(size_t *n);
/* tp_config_new_schema over tp_config_app_schema(). */
tp_status tp_config_new(tp_config **out);
void tp_config_free(tp_config *c);

/* Merges a YAML file over the current values. */
tp_status tp_config_load_file(tp_config *c, const char *path);
/* Sets one key from text, parsed by its type; origin names where it came from
 * (NULL means "--set"). List keys take "0,6,11" or "[0, 6, 11]". */
tp_status tp_config_set(tp_config *c, const char *key, const char *value, const char *origin);
/* "key=value" as given to --set. */
tp_status tp_config_set_kv(tp_config *c, const char *kv);

const char *tp_config_str(const tp_config *c, const char *key);
int64_t tp_config_int(const tp_config *c, const char *key);
double tp_config_float(const tp_config *c, const char *key);
bool tp_config_bool(const tp_config *c, const char *key);
size_t tp_config_int_list(const tp_config *c, const char *key, const int64_t **items);
size_t tp_config_str_list(const tp_config *c, const char *key, const char *const **items);
/* Where the current value came from: "default", "FILE:LINE", "--set", "--layers"... */
const char *tp_config_origin(const tp_config *c, const char *key);

/* Writes the effective config as YAML (nested, every key, origin as a comment),
 * readable back by tp_config_load_file. */
tp_status tp_config_write_yaml(const tp_config *c, FILE *f);
/* FNV-1a 64 of canonical "key=value\n" lines, sorted by key, values rendered as in
 * the YAML, origins left out (provenance, phase skip). */
uint64_t tp_config_hash(const tp_config *c);
/* The same over the keys starting with one of `prefixes` (NULL-terminated; a key
 * such as "device" is its own prefix): what a phase's result depends on. */
uint64_t tp_config_hash_prefixes(const tp_config *c, const char *const *prefixes);
/* Writes the application's schema (key, type, default, allowed range, help) as Markdown. */
void tp_config_write_schema_md(FILE *f);

#endif
