/* hook_select.h — which of the store's capture points a phase analyses.
 *
 * A string list (the keys geometry.hooks, sae.hooks) names capture points as stored
 * (blocks.3.hook_resid_post) or per-layer (hook_resid_post: that point at every
 * stored layer, only the selected `layers` when that key is set). An empty list
 * means every stored point of the selected layers (layer-less points such as
 * ln_final.hook_normalized included), in layer order. A name that matches nothing is
 * an error naming the key, where it was set, and what the store holds.
 */
#ifndef TP_HOOK_SELECT_H
#define TP_HOOK_SELECT_H

#include "core/error.h"
#include "io/store.h"

/* What a phase asks for: its list key's value and the selected layers. */
typedef struct {
    const char *key;              /* the list's config key ("geometry.hooks"), for messages */
    const char *origin;           /* where it was set ("default", "x.yaml:3", "--set") */
    const char *const *names;     /* its items */
    size_t n_names;
    const int64_t *layers;        /* `layers` (n_layers 0 = all) */
    size_t n_layers;
} hook_request;

/* acts [cap] receives store_act indices, *n of them, without repeats. */
tp_status hook_select(const hook_request *req, const tp_store *s, const char *store_path, int *acts, int *n, int cap);
/* The store's index datasets and the selected capture points must be marked
 * complete (a capture that did not finish is named, with how to finish it). */
tp_status hook_select_require_complete(tp_store *s, const char *store_path, const char *phase, const int *acts, int n);
/* The layer of a stored name ("blocks.L.…"), -1 for a layer-less point. */
int hook_select_layer(const char *name);

#endif
