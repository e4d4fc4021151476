#include "analysis/hook_select.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hook_select_layer(const char *name)
{
    int L = -1;
    if (sscanf(name, "blocks.%d.", &L) == 1) return L;
    return -1;
}

static int layer_selected(const int64_t *sel, size_t nsel, int L)
{
    if (!nsel) return 1;
    for (size_t i = 0; i < nsel; i++)
        if (sel[i] == L) return 1;
    return 0;
}

static tp_status add(int *acts, int *n, int cap, const char *key, int act)
{
    for (int i = 0; i < *n; i++)
        if (acts[i] == act) return TP_OK;
    if (*n == cap) return tp_err(TP_ERR_CONFIG, "%s: more than %d capture points", key, cap);
    acts[(*n)++] = act;
    return TP_OK;
}

static const tp_store *SORT_STORE;
static int cmp_act(const void *a, const void *b)
{
    const char *x = store_act(SORT_STORE, *(const int *)a)->name, *y = store_act(SORT_STORE, *(const int *)b)->name;
    int lx = hook_select_layer(x), ly = hook_select_layer(y);
    if (lx != ly) return lx < ly ? -1 : 1;   /* blocks.10 after blocks.9 */
    return strcmp(x, y);
}

tp_status hook_select(const hook_request *req, const tp_store *s, const char *store_path, int *acts, int *n, int cap)
{
    const char *const *hooks = req->names, *key = req->key;
    size_t nh = req->n_names;
    const int64_t *sel = req->layers;
    size_t nsel = req->n_layers;
    int na = store_num_acts(s);
    *n = 0;
    if (!nh) {
        for (int i = 0; i < na; i++) {
            int L = hook_select_layer(store_act(s, i)->name);
            if (L < 0 || layer_selected(sel, nsel, L)) TP_CHECK(add(acts, n, cap, key, i));
        }
        if (!*n) return tp_err(TP_ERR_CONFIG, "%s: %s holds no capture point of the selected layers", key, store_path);
        SORT_STORE = s;
        qsort(acts, (size_t)*n, sizeof *acts, cmp_act);
        return TP_OK;
    }
    for (size_t h = 0; h < nh; h++) {
        int act = store_find_act(s, hooks[h]);
        if (act >= 0) {
            TP_CHECK(add(acts, n, cap, key, act));
            continue;
        }
        int found = 0;
        size_t hl = strlen(hooks[h]);
        for (int i = 0; i < na; i++) {
            const char *nm = store_act(s, i)->name;
            int L = hook_select_layer(nm);
            const char *dot = L >= 0 ? strchr(nm + 7, '.') : NULL;
            if (dot && strlen(dot + 1) == hl && !strcmp(dot + 1, hooks[h]) && layer_selected(sel, nsel, L)) {
                TP_CHECK(add(acts, n, cap, key, i));
                found = 1;
            }
        }
        if (!found) {
            char list[1024] = "";
            for (int i = 0; i < na && strlen(list) < sizeof list - STORE_NAME_MAX - 8; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", store_act(s, i)->name);
            return tp_err(TP_ERR_CONFIG, "%s (%s): '%s' was not captured into %s (it holds: %s)", key,
                          req->origin, hooks[h], store_path, list);
        }
    }
    return TP_OK;
}

tp_status hook_select_require_complete(tp_store *s, const char *store_path, const char *phase, const int *acts, int n)
{
    static const char *const index[] = {"tokens", "positions", "mask"};
    char ds[STORE_NAME_MAX + 8];
    for (int i = -3; i < n; i++) {
        if (i < 0) snprintf(ds, sizeof ds, "%s", index[i + 3]);
        else snprintf(ds, sizeof ds, "acts/%s", store_act(s, acts[i])->name);
        if (!store_is_complete(s, ds))
            return tp_err(TP_ERR_FORMAT, "%s: %s: /%s is not marked complete (the capture did not finish; rerun "
                          "`transpolmo capture` to resume it)", phase, store_path, ds);
    }
    return TP_OK;
}
