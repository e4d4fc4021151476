/* doc_circuits.c — the head classes (results/circuits/head_scores.json, with the
 * weight circuits' strongest compositions), the circuits of the circuit library
 * (results/circuits/library.json and each task's kept graph), and the verification
 * block (results/verification.json) as documentation sections (doc_build.h). */
#include "report/doc_build.h"

#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The verification entry of head (layer, head) and class cls (any class when the
 * entry names none); NULL: not tested. */
static json_t *find_head(const json_t *heads, int layer, int head, const char *cls, size_t *at)
{
    size_t i;
    json_t *v;
    json_array_foreach(heads, i, v) {
        int l, h;
        if (!doc_parse_head(v, &l, &h) || l != layer || h != head) continue;
        const char *c = json_string_value(json_object_get(v, "class"));
        if (c && cls && strcmp(c, cls)) continue;
        *at = i;
        return v;
    }
    return NULL;
}

static json_t *find_task(const json_t *circuits, const char *task, size_t *at)
{
    size_t i;
    json_t *v;
    json_array_foreach(circuits, i, v) {
        const char *t = json_string_value(json_object_get(v, "task"));
        if (t && task && !strcmp(t, task)) {
            *at = i;
            return v;
        }
    }
    return NULL;
}

json_t *doc_heads(const doc_inputs *in, json_t *claims)
{
    const json_t *hs = in->head_scores;
    if (!hs)
        return json_pack("{s:b, s:[], s:{}, s:[], s:I, s:I, s:s}", "present", 0, "classes", "by_class", "unclassified",
                         "n_classified", (json_int_t)0, "n_verified", (json_int_t)0, "note",
                         RUN_CIRCUITS_HEAD_SCORES_JSON " is missing: the circuits phase did not run");
    int L = (int)json_integer_value(json_object_get(hs, "n_layers")), H = (int)json_integer_value(json_object_get(hs, "n_heads"));
    const json_t *vheads = json_object_get(in->verification, "heads");
    uint8_t *classified = calloc((size_t)(L * H > 0 ? L * H : 1), 1), *verified = calloc((size_t)(L * H > 0 ? L * H : 1), 1);
    json_t *classes = json_array(), *by_class = json_object(), *c;
    size_t i;
    json_array_foreach(json_object_get(hs, "classes"), i, c) {
        int l = (int)json_integer_value(json_object_get(c, "layer")), h = (int)json_integer_value(json_object_get(c, "head"));
        const char *cls = json_string_value(json_object_get(c, "class")) ?: "?";
        char name[32];
        doc_head_name(name, sizeof name, l, h);
        size_t vi = 0;
        json_t *v = find_head(vheads, l, h, cls, &vi), *ev = json_array();
        json_array_append_new(ev, doc_ev(RUN_CIRCUITS_HEAD_SCORES_JSON, "/classes/%zu", i));
        json_t *vflag = v ? json_boolean(json_is_true(json_object_get(v, "verified"))) : json_null();
        if (v) json_array_append_new(ev, doc_ev(RUN_VERIFICATION_JSON, "/heads/%zu", vi));
        json_t *e = json_pack("{s:s, s:i, s:i, s:s, s:o, s:o, s:o, s:O}", "name", name, "layer", l, "head", h, "class",
            cls, "score", doc_real(doc_num(c, "score")), "threshold", doc_real(doc_num(c, "threshold")), "null_baseline",
            doc_real(doc_num(c, "null_baseline")), "verified", vflag);
        json_object_set_new(e, "verification", v ? json_pack("{s:O, s:O, s:O}", "task", json_object_get(v, "task") ?: json_null(),
            "effect", json_object_get(v, "effect") ?: json_null(), "baseline", json_object_get(v, "baseline") ?: json_null())
            : json_null());
        json_object_set_new(e, "source", json_string("head_scores"));
        json_object_set_new(e, "evidence", ev);
        json_array_append_new(classes, e);
        json_t *list = json_object_get(by_class, cls);
        if (!list) json_object_set_new(by_class, cls, list = json_array());
        json_array_append_new(list, json_string(name));
        if (l >= 0 && l < L && h >= 0 && h < H) {
            classified[l * H + h] = 1;
            if (json_is_true(vflag)) verified[l * H + h] = 1;
        }
        doc_claim(claims, "heads", vflag, json_deep_copy(ev), "%s is a %s head: score %.3f against a null baseline of "
                  "%.3f (threshold %.2f)", name, cls, doc_num(c, "score"), doc_num(c, "null_baseline"),
                  doc_num(c, "threshold"));
    }
    /* heads the verification tested under a class head_scores does not give them (e.g. an induction
     * stripe at the class threshold): listed too, their source and evidence saying so */
    json_t *vh;
    json_array_foreach(vheads, i, vh) {
        int l = (int)json_integer_value(json_object_get(vh, "layer")), h = (int)json_integer_value(json_object_get(vh, "head"));
        const char *cls = json_string_value(json_object_get(vh, "class"));
        size_t k;
        int listed = 0;
        json_t *c2;
        json_array_foreach(json_object_get(hs, "classes"), k, c2)
            listed |= json_integer_value(json_object_get(c2, "layer")) == l &&
                      json_integer_value(json_object_get(c2, "head")) == h && cls &&
                      !strcmp(json_string_value(json_object_get(c2, "class")) ?: "", cls);
        if (listed || !cls || l < 0 || l >= L || h < 0 || h >= H) continue;
        char name[32];
        doc_head_name(name, sizeof name, l, h);
        json_t *vflag = json_boolean(json_is_true(json_object_get(vh, "verified"))), *ev = json_array();
        json_array_append_new(ev, doc_ev(RUN_VERIFICATION_JSON, "/heads/%zu", i));
        const char *src = json_string_value(json_object_get(vh, "source"));
        double score = doc_num(vh, "score");
        if (src && !strcmp(src, "induction_stripe") && json_is_array(json_object_get(hs, "induction_stripe"))) {
            json_array_append_new(ev, doc_ev(RUN_CIRCUITS_HEAD_SCORES_JSON, "/induction_stripe/%d/%d", l, h));
            score = json_number_value(json_array_get(json_array_get(json_object_get(hs, "induction_stripe"), (size_t)l),
                                                     (size_t)h));
        }
        json_t *e = json_pack("{s:s, s:i, s:i, s:s, s:o, s:n, s:n, s:o}", "name", name, "layer", l, "head", h, "class",
            cls, "score", doc_real(score), "threshold", "null_baseline", "verified", vflag);
        json_object_set_new(e, "verification", json_pack("{s:O, s:O, s:O}", "task", json_object_get(vh, "task") ?: json_null(),
            "effect", json_object_get(vh, "effect") ?: json_null(), "baseline", json_object_get(vh, "baseline") ?: json_null()));
        json_object_set_new(e, "source", json_pack("s+", "verification: ", src ? src : "tested"));
        json_object_set_new(e, "evidence", ev);
        json_array_append_new(classes, e);
        json_t *list = json_object_get(by_class, cls);
        if (!list) json_object_set_new(by_class, cls, list = json_array());
        json_array_append_new(list, json_string(name));
        classified[l * H + h] = 1;
        if (json_is_true(vflag)) verified[l * H + h] = 1;
        doc_claim(claims, "heads", vflag, json_deep_copy(ev), "%s tested as a %s head (%s%s%.3f), not labelled so by "
                  "head_scores.json", name, cls, src ? src : "verification", src ? " " : "", score);
    }
    json_t *unclassified = json_array();
    json_int_t n_classified = 0, n_verified = 0;
    for (int k = 0; k < L * H; k++) {
        n_classified += classified[k], n_verified += verified[k];
        if (classified[k]) continue;
        char name[32];
        doc_head_name(name, sizeof name, k / H, k % H);
        json_array_append_new(unclassified, json_string(name));
    }
    free(classified), free(verified);
    /* the strongest compositions from the weights alone (no prompt; not an intervention) */
    json_t *comp = json_array(), *top = json_object_get(json_object_get(in->weights, "composition"), "top");
    static const char *const modes[] = {"q", "k", "v"};
    for (int m = 0; m < 3; m++) {
        json_t *t = json_array_get(json_object_get(top, modes[m]), 0);
        if (!t) continue;
        json_t *ev = json_pack("[o]", doc_ev(RUN_CIRCUITS_WEIGHTS_JSON, "/composition/top/%s/0", modes[m]));
        json_array_append_new(comp, json_pack("{s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:O}", "mode", modes[m], "from_layer",
            json_integer_value(json_object_get(t, "from_layer")), "from_head", json_integer_value(json_object_get(t, "from_head")),
            "to_layer", json_integer_value(json_object_get(t, "to_layer")), "to_head",
            json_integer_value(json_object_get(t, "to_head")), "score", doc_real(doc_num(t, "score")),
            "ratio_to_baseline_mean", doc_real(doc_num(t, "ratio_to_baseline_mean")), "evidence", ev));
        doc_claim(claims, "heads", NULL, ev, "strongest %s-composition in the weights: L%lldH%lld -> L%lldH%lld, score "
                  "%.3f (%.1f x the random baseline)", modes[m], (long long)json_integer_value(json_object_get(t, "from_layer")),
                  (long long)json_integer_value(json_object_get(t, "from_head")),
                  (long long)json_integer_value(json_object_get(t, "to_layer")),
                  (long long)json_integer_value(json_object_get(t, "to_head")), doc_num(t, "score"),
                  doc_num(t, "ratio_to_baseline_mean"));
    }
    return json_pack("{s:b, s:i, s:i, s:O, s:o, s:o, s:o, s:I, s:I, s:O, s:o, s:[o]}", "present", 1, "n_layers", L,
        "n_heads", H, "thresholds", json_object_get(json_object_get(hs, "settings"), "thresholds") ?: json_null(),
        "classes", classes, "by_class", by_class, "unclassified", unclassified, "n_classified", n_classified,
        "n_verified", n_verified, "best", json_object_get(hs, "best") ?: json_null(), "weight_composition", comp,
        "evidence", doc_ev(RUN_CIRCUITS_HEAD_SCORES_JSON, "/classes"));
}

/* The kept graph of a task: its head names and MLP layers. */
static void graph_components(const char *run_dir, const char *graph, json_t *heads, json_t *mlps)
{
    char art[TP_PATH_MAX];
    if (!graph || snprintf(art, sizeof art, "%s/%s.json", RUN_CIRCUITS_DIR, graph) >= (int)sizeof art) return;
    json_t *g = run_load_json(run_dir, art), *n;
    size_t i;
    json_array_foreach(json_object_get(g, "nodes"), i, n) {
        const char *kind = json_string_value(json_object_get(n, "kind")), *id = json_string_value(json_object_get(n, "id"));
        int l, h;
        if (kind && !strcmp(kind, "head") && doc_parse_head(json_object_get(n, "id"), &l, &h)) {
            char name[32];
            doc_head_name(name, sizeof name, l, h);
            json_array_append_new(heads, json_string(name));
        } else if (id && id[0] == 'm' && sscanf(id + 1, "%d", &l) == 1) {
            json_array_append_new(mlps, json_integer(l));
        }
    }
    json_decref(g);
}

json_t *doc_circuits(const doc_inputs *in, json_t *claims)
{
    if (!in->library)
        return json_pack("{s:b, s:[], s:s}", "present", 0, "tasks", "note",
                         RUN_CIRCUITS_LIBRARY_JSON " is missing: the circuits phase did not run");
    const json_t *vcirc = json_object_get(in->verification, "circuits");
    json_t *tasks = json_array(), *t;
    size_t i;
    json_array_foreach(json_object_get(in->library, "tasks"), i, t) {
        const char *name = json_string_value(json_object_get(t, "name")) ?: "?";
        const char *graph = json_string_value(json_object_get(t, "graph"));
        json_t *fa = json_object_get(t, "faithfulness"), *heads = json_array(), *mlps = json_array(), *ev = json_array();
        graph_components(in->run_dir, graph, heads, mlps);
        json_array_append_new(ev, doc_ev(RUN_CIRCUITS_LIBRARY_JSON, "/tasks/%zu", i));
        char art[TP_PATH_MAX];
        if (graph && snprintf(art, sizeof art, "%s/%s.json", RUN_CIRCUITS_DIR, graph) < (int)sizeof art)
            json_array_append_new(ev, doc_ev(art, "/nodes"));
        size_t vi = 0;
        json_t *v = find_task(vcirc, name, &vi);
        json_t *vflag = v ? json_boolean(json_is_true(json_object_get(v, "verified"))) : json_null();
        if (v) {
            json_array_append_new(ev, doc_ev(RUN_VERIFICATION_JSON, "/circuits/%zu", vi));
            /* the heads the verification names are the circuit's when it lists them */
            json_t *vh = json_object_get(v, "heads");
            if (json_array_size(vh)) {
                json_array_clear(heads);
                size_t k;
                json_t *x;
                json_array_foreach(vh, k, x) {
                    int l, h;
                    char hn[32];
                    if (!doc_parse_head(x, &l, &h)) continue;
                    doc_head_name(hn, sizeof hn, l, h);
                    json_array_append_new(heads, json_string(hn));
                }
            }
        }
        json_t *top = json_array(), *th;
        size_t k;
        json_array_foreach(json_object_get(t, "top_heads"), k, th) {
            int l, h;
            char hn[32];
            if (!doc_parse_head(json_object_get(th, "node"), &l, &h)) continue;
            doc_head_name(hn, sizeof hn, l, h);
            json_array_append_new(top, json_pack("{s:s, s:o}", "name", hn, "score", doc_real(doc_num(th, "score"))));
        }
        json_t *e = json_pack("{s:s, s:O, s:O, s:o, s:o, s:o, s:O}", "task", name, "description",
            json_object_get(t, "description") ?: json_null(), "can_do", json_object_get(t, "can_do") ?: json_null(),
            "ld_clean", doc_real(doc_num(t, "ld_clean")), "ld_corr", doc_real(doc_num(t, "ld_corr")), "pairs",
            json_integer(json_integer_value(json_object_get(t, "prompts"))), "why", json_object_get(t, "why") ?: json_null());
        json_object_set_new(e, "faithfulness", json_pack("{s:o, s:o, s:O, s:o, s:I, s:I, s:o}", "cpr",
            doc_real(doc_num(fa, "cpr")), "cmd", doc_real(doc_num(fa, "cmd")), "reached",
            json_object_get(fa, "reached") ?: json_null(), "kept_k_percent", doc_real(doc_num(fa, "kept_k_percent")),
            "kept_nodes", json_integer_value(json_object_get(fa, "kept_nodes")), "kept_edges",
            json_integer_value(json_object_get(fa, "kept_edges")), "threshold", doc_real(doc_num(fa, "threshold"))));
        json_object_set_new(e, "graph", graph ? json_string(graph) : json_null());
        json_object_set_new(e, "heads", heads);
        json_object_set_new(e, "mlps", mlps);
        json_object_set_new(e, "top_heads", top);
        json_object_set_new(e, "verified", json_incref(vflag));
        json_object_set_new(e, "verification", v ? json_pack("{s:O, s:O, s:O}", "faithfulness",
            json_object_get(v, "faithfulness") ?: json_null(), "completeness", json_object_get(v, "completeness") ?: json_null(),
            "complement", json_object_get(v, "complement") ?: json_null()) : json_null());
        json_object_set_new(e, "evidence", ev);
        doc_claim(claims, "circuits", vflag, json_deep_copy(ev), "task %s: the model %s it (logit difference %.2f clean vs "
                  "%.2f corrupted); a circuit of %lld nodes and %lld edges (%g %% of the edges) recovers f >= %.2f of it, "
                  "CPR %.3f, CMD %.3f", name, json_is_true(json_object_get(t, "can_do")) ? "does" : "does not do",
                  doc_num(t, "ld_clean"), doc_num(t, "ld_corr"), (long long)json_integer_value(json_object_get(fa, "kept_nodes")),
                  (long long)json_integer_value(json_object_get(fa, "kept_edges")), doc_num(fa, "kept_k_percent"),
                  doc_num(fa, "threshold"), doc_num(fa, "cpr"), doc_num(fa, "cmd"));
        json_array_append_new(tasks, e);
    }
    return json_pack("{s:b, s:o, s:O, s:[o]}", "present", 1, "tasks", tasks, "definitions",
                     json_object_get(in->library, "definitions") ?: json_null(), "evidence",
                     doc_ev(RUN_CIRCUITS_LIBRARY_JSON, "/tasks"));
}

json_t *doc_verification(const doc_inputs *in)
{
    const json_t *v = in->verification;
    if (!v)
        return json_pack("{s:b, s:s, s:n, s:n, s:[], s:s}", "present", 0, "file", RUN_VERIFICATION_JSON, "schema",
                         "summary", "skipped", "note",
                         "nothing was verified by intervention: " RUN_VERIFICATION_JSON " is absent (the verify phase "
                         "did not run), so every verified flag is null and every verified share of the transparency "
                         "score is 0");
    json_t *skipped = json_object_get(v, "skipped");
    return json_pack("{s:b, s:s, s:O, s:O, s:O, s:o, s:O, s:s}", "present", 1, "file", RUN_VERIFICATION_JSON, "schema",
        json_object_get(v, "schema") ?: json_null(), "summary", json_object_get(v, "summary") ?: json_null(), "settings",
        json_object_get(v, "settings") ?: json_null(), "skipped", skipped ? json_incref(skipped) : json_array(),
        "model", json_object_get(v, "model") ?: json_null(), "note",
        "verified flags: true / false where the verification tested the item, null where it did not");
}
