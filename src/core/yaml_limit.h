/* yaml_limit.h — refuse YAML nested deeper than YAML_MAX_DEPTH before loading it.
 *
 * libyaml's loader is quadratic in the nesting depth (its scanner walks the stack of
 * open levels at every token): a 200k-deep file takes over a minute. No input of
 * ours nests more than a few levels, so every YAML reader first runs this check,
 * which stops at the first level too deep and so stays linear in the text. */
#ifndef TP_YAML_LIMIT_H
#define TP_YAML_LIMIT_H

#include "core/error.h"

#include <stddef.h>
#include <stdio.h>

#define YAML_MAX_DEPTH 64

/* TP_ERR_CONFIG "<path>:<line>: YAML nested deeper than 64 levels" when text[0..n)
 * nests too deep; TP_OK otherwise, also for a syntax error (the loader reports it). */
tp_status yaml_check_depth(const char *path, const char *text, size_t n);
/* The same for an open file, read from its start; leaves it rewound to the start. */
tp_status yaml_check_depth_file(const char *path, FILE *f);

#endif
