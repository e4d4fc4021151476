/* text.h — small string helpers for messages: the nearest of a set of names, for
 * "did you mean ...?" (config keys, commands, options). */
#ifndef TP_TEXT_H
#define TP_TEXT_H

#include <stddef.h>

/* Levenshtein distance of a[0..na) and b[0..nb); (size_t)-1 for strings longer than
 * 255 bytes (no name we suggest is). */
size_t tp_edit_distance(const char *a, size_t na, const char *b, size_t nb);
/* The candidate nearest to word, or NULL when none is within 3 edits and closer
 * than the word's own length ("x" suggests nothing). */
const char *tp_nearest(const char *word, const char *const *candidates, size_t n);

#endif
