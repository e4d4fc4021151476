/* text.c — edit distance and nearest names (text.h). */
#include "core/text.h"

#include <string.h>

#define TEXT_MAX 256

size_t tp_edit_distance(const char *a, size_t na, const char *b, size_t nb)
{
    if (na >= TEXT_MAX || nb >= TEXT_MAX) return (size_t)-1;
    size_t prev[TEXT_MAX + 1], cur[TEXT_MAX + 1];
    for (size_t j = 0; j <= nb; j++) prev[j] = j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (nb + 1) * sizeof prev[0]);
    }
    return prev[nb];
}

const char *tp_nearest(const char *word, const char *const *candidates, size_t n)
{
    size_t len = strlen(word), best_d = 4;
    const char *best = NULL;
    for (size_t i = 0; i < n; i++) {
        size_t d = tp_edit_distance(word, len, candidates[i], strlen(candidates[i]));
        if (d < best_d && d < len) best_d = d, best = candidates[i];
    }
    return best;
}
