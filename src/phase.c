/* phase.c — the resume hash of a phase (phase.h). */
#include "phase.h"

#include <stdio.h>
#include <string.h>

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv_add(uint64_t h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * FNV_PRIME;
    return h;
}

uint64_t phase_hash(const tp_phase *p, const tp_config *cfg)
{
    char own[80], line[128];
    uint64_t h = FNV_OFFSET;
    if (p->config) {
        snprintf(own, sizeof own, "%s.", p->config->name);
        const char *prefixes[] = {own, NULL};
        snprintf(line, sizeof line, "own=%016llx\n", (unsigned long long)tp_config_hash_prefixes(cfg, prefixes));
        h = fnv_add(h, line);
    }
    if (p->reads) {
        snprintf(line, sizeof line, "reads=%016llx\n", (unsigned long long)tp_config_hash_prefixes(cfg, p->reads));
        h = fnv_add(h, line);
    }
    if (p->inputs_hash) {
        snprintf(line, sizeof line, "inputs=%016llx\n", (unsigned long long)p->inputs_hash(cfg));
        h = fnv_add(h, line);
    }
    for (const tp_phase *const *n = p->needs; n && *n; n++) {
        snprintf(line, sizeof line, "needs %.64s=%016llx\n", (*n)->name, (unsigned long long)phase_hash(*n, cfg));
        h = fnv_add(h, line);
    }
    return h;
}
