/* doc_features.c — the features section: per SAE its quality (results/sae_summary.json),
 * the share of its activation energy in verified features, and the documented
 * features (the document.features_per_sae live features of largest activation mass,
 * plus every feature results/verification.json tested) with their descriptions and
 * evidence (doc_build.h). */
#include "report/doc_build.h"

#include "report/transparency.h"
#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t id;
    double mass;
} ranked;

static int by_mass_desc(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->mass != y->mass) return x->mass > y->mass ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static json_t *find_by_key(const json_t *arr, const char *key, const char *value, size_t *at)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(json_object_get(v, key));
        if (s && value && !strcmp(s, value)) {
            if (at) *at = i;
            return v;
        }
    }
    return NULL;
}

/* The verification item of feature id (NULL: not tested). */
static json_t *find_item(const json_t *items, int64_t id, size_t *at)
{
    size_t i;
    json_t *v;
    json_array_foreach(items, i, v) {
        json_t *f = json_object_get(v, "feature");
        if (json_is_integer(f) && json_integer_value(f) == id) {
            *at = i;
            return v;
        }
    }
    return NULL;
}

/* The description's score: detection F1, else the simulation's correlation (NaN: none). */
static double description_score(const json_t *d, const char **name)
{
    double f1 = doc_num(json_object_get(d, "detection"), "f1");
    if (isfinite(f1)) { *name = "detection.f1"; return f1; }
    double r = doc_num(json_object_get(d, "simulation"), "correlation");
    *name = isfinite(r) ? "simulation.correlation" : NULL;
    return r;
}

/* Whether a verification description reaches the bar: its score when it has one,
 * else the verify phase's own verdict (passes). */
static int description_above_bar(const json_t *d, double bar)
{
    const char *name;
    double s = description_score(d, &name);
    if (isfinite(s)) return s >= bar;
    return json_is_true(json_object_get(d, "passes"));
}

/* The tokens the feature fires on most, by activation over its top contexts. */
static json_t *top_tokens(const json_t *f, int keep)
{
    const json_t *ctx = json_object_get(f, "top_contexts");
    size_t n = json_array_size(ctx), m = 0;
    const char **tok = calloc(n ? n : 1, sizeof *tok);
    double *w = calloc(n ? n : 1, sizeof *w), total = 0;
    json_t *out = json_array();
    if (!tok || !w) goto done;
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(ctx, i);
        const char *t = json_string_value(json_object_get(c, "token"));
        double a = doc_num(c, "activation");
        if (!t || !isfinite(a)) continue;
        size_t k = 0;
        while (k < m && strcmp(tok[k], t)) k++;
        if (k == m) tok[m++] = t;
        w[k] += a, total += a;
    }
    for (int r = 0; r < keep && total > 0; r++) {
        size_t best = m;
        for (size_t k = 0; k < m; k++)
            if (w[k] > 0 && (best == m || w[k] > w[best])) best = k;
        if (best == m) break;
        json_array_append_new(out, json_pack("{s:s, s:f}", "token", tok[best], "share", w[best] / total));
        w[best] = 0;
    }
done:
    free(tok), free(w);
    return out;
}

/* 'fires on " to" (63 %), " not" (10 %) of its top activation; mostly code (45 % of its mass); promotes " be"' */
static void catalog_description(const json_t *f, const json_t *tokens, char *buf, size_t n)
{
    size_t len = 0;
    if (json_array_size(tokens)) {
        len += (size_t)snprintf(buf + len, n - len, "fires on");
        size_t i;
        json_t *t;
        json_array_foreach(tokens, i, t) {
            if (len >= n) break;
            len += (size_t)snprintf(buf + len, n - len, "%s \"%s\" (%.0f %%)", i ? "," : "",
                                    json_string_value(json_object_get(t, "token")), 100 * doc_num(t, "share"));
        }
        if (len < n) len += (size_t)snprintf(buf + len, n - len, " of its top activations");
    }
    const char *dom = json_string_value(json_object_get(f, "top_domain"));
    double share = doc_num(json_object_get(f, "domain_profile"), dom ? dom : "");
    if (dom && isfinite(share) && len < n)
        len += (size_t)snprintf(buf + len, n - len, "%s%s %s (%.0f %% of its activation mass)", len ? "; " : "",
                                share >= 0.5 ? "mostly in" : "most in", dom, 100 * share);
    json_t *pro = json_object_get(f, "promotes");
    for (size_t i = 0; i < 3 && i < json_array_size(pro) && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s\"%s\"", i ? ", " : (len ? "; promotes " : "promotes "),
                                json_string_value(json_object_get(json_array_get(pro, i), "token")) ?: "?");
    if (!len) snprintf(buf, n, "no description: the catalog has no detail for this feature");
}

static json_t *token_list(const json_t *arr, size_t keep)
{
    json_t *out = json_array();
    for (size_t i = 0; i < keep && i < json_array_size(arr); i++) {
        const char *t = json_string_value(json_object_get(json_array_get(arr, i), "token"));
        if (t) json_array_append_new(out, json_string(t));
    }
    return out;
}

/* One documented feature. ci: the SAE's index in the catalog; vi / it: the
 * verification block and item (NULL item: not tested). */
static json_t *feature_entry(const json_t *f, size_t ci, int64_t id, const json_t *item, size_t vi, size_t ii,
                             int have_verification, double bar, const char *hook, json_t *claims)
{
    json_t *tokens = top_tokens(f, 3), *ev = json_array();
    json_array_append_new(ev, doc_ev(RUN_FEATURES_CATALOG_JSON, "/saes/%zu/features/%lld", ci, (long long)id));
    const char *dom = json_string_value(json_object_get(f, "top_domain"));
    json_t *e = json_pack("{s:I, s:o, s:I, s:o, s:o, s:o, s:f}", "id", (json_int_t)id, "density",
        doc_real(doc_num(f, "density")), "fires", json_integer_value(json_object_get(f, "fires")), "mean_activation",
        doc_real(doc_num(f, "mean_activation")), "max_activation", doc_real(doc_num(f, "max_activation")),
        "activation_mass", doc_real(doc_num(f, "activation_mass")), "energy",
        transparency_feature_energy(json_integer_value(json_object_get(f, "fires")), doc_num(f, "mean_activation")));
    json_object_set_new(e, "top_domain", dom ? json_string(dom) : json_null());
    json_object_set_new(e, "top_domain_share", doc_real(doc_num(json_object_get(f, "domain_profile"), dom ? dom : "")));
    json_object_set_new(e, "top_tokens", tokens);
    json_object_set_new(e, "promotes", token_list(json_object_get(f, "promotes"), 5));
    json_object_set_new(e, "example", json_object_get(json_array_get(json_object_get(f, "top_contexts"), 0), "context")
                                          ? json_deep_copy(json_object_get(json_array_get(json_object_get(f, "top_contexts"), 0), "context"))
                                          : json_null());
    json_object_set_new(e, "monosemanticity", doc_real(doc_num(json_object_get(f, "monosemanticity"), "score")));
    json_t *desc;
    char text[1024];
    json_t *vd = item ? json_object_get(item, "description") : NULL;
    if (vd) {
        const char *name = NULL;
        double s = description_score(vd, &name);
        json_t *rule = json_object_get(vd, "rule");
        char *dumped = rule && !json_is_string(rule) ? json_dumps(rule, JSON_COMPACT) : NULL;
        snprintf(text, sizeof text, "%s", json_is_string(rule) ? json_string_value(rule) : dumped ? dumped : "(no rule)");
        free(dumped);
        desc = json_pack("{s:s, s:s, s:O, s:O, s:o, s:o, s:O, s:O, s:O, s:b, s:f}", "text", text, "source",
            "verification", "kind", json_object_get(vd, "kind") ?: json_null(), "rule", rule ?: json_null(), "score",
            doc_real(s), "score_name", name ? json_string(name) : json_null(), "detection",
            json_object_get(vd, "detection") ?: json_null(), "simulation", json_object_get(vd, "simulation") ?: json_null(),
            "passes", json_object_get(vd, "passes") ?: json_null(), "above_bar", description_above_bar(vd, bar), "bar", bar);
        json_array_append_new(ev, doc_ev(RUN_VERIFICATION_JSON, "/features/%zu/items/%zu/description", vi, ii));
    } else {
        catalog_description(f, tokens, text, sizeof text);
        desc = json_pack("{s:s, s:s, s:s, s:n, s:n, s:b, s:f}", "text", text, "source", "catalog", "kind",
                         "top activations (not scored)", "score", "passes", "above_bar", 0, "bar", bar);
    }
    json_object_set_new(e, "description", desc);
    json_t *verified = item ? json_boolean(json_is_true(json_object_get(item, "verified"))) : json_null();
    (void)have_verification;
    json_object_set_new(e, "verified", verified);
    if (item) {
        json_object_set(e, "ablation", json_object_get(item, "ablation") ?: json_null());
        json_object_set(e, "steering", json_object_get(item, "steering") ?: json_null());
        json_array_append_new(ev, doc_ev(RUN_VERIFICATION_JSON, "/features/%zu/items/%zu", vi, ii));
    }
    json_object_set_new(e, "evidence", ev);
    doc_claim(claims, "features", json_incref(verified), json_deep_copy(ev), "%s feature %lld: %s", hook,
              (long long)id, text);
    return e;
}

/* One SAE's section. */
static json_t *sae_entry(const doc_inputs *in, const document_settings *ds, const json_t *cs, size_t ci, json_t *claims)
{
    const char *hook = json_string_value(json_object_get(cs, "hook")) ?: "?";
    size_t si = 0, vi = 0;
    json_t *summ = find_by_key(json_object_get(in->sae_summary, "saes"), "hook", hook, &si);
    json_t *ver = find_by_key(json_object_get(in->verification, "features"), "hook", hook, &vi);
    json_t *items = json_object_get(ver, "items"), *feats = json_object_get(cs, "features");
    json_t *eval = json_object_get(summ, "evaluation");
    size_t nf = json_array_size(feats);
    ranked *order = malloc((nf ? nf : 1) * sizeof *order);
    if (!order) return json_null();
    double e_live = 0, e_ver = 0;
    json_int_t n_live = 0, n_desc = 0, n_pass = 0, n_ver = 0, n_tested = 0;
    size_t nr = 0;
    for (size_t i = 0; i < nf; i++) {
        json_t *f = json_array_get(feats, i);
        int64_t id = json_integer_value(json_object_get(f, "id")), fires = json_integer_value(json_object_get(f, "fires"));
        if (fires <= 0) continue;
        double e = transparency_feature_energy(fires, doc_num(f, "mean_activation"));
        n_live++, e_live += e;
        size_t ii;
        json_t *it = find_item(items, id, &ii);
        if (it) {
            n_tested++;
            if (json_is_true(json_object_get(it, "verified"))) n_ver++, e_ver += e;
            json_t *d = json_object_get(it, "description");
            if (d && description_above_bar(d, ds->description_bar)) n_desc++;
            if (json_is_true(json_object_get(d, "passes"))) n_pass++;   /* the verify phase's own criterion */
        }
        double mass = doc_num(f, "activation_mass");
        if (json_object_get(f, "top_contexts") || it) order[nr++] = (ranked){id, isfinite(mass) ? mass : e};
    }
    qsort(order, nr, sizeof *order, by_mass_desc);
    json_t *docd = json_array();
    for (size_t r = 0; r < nr; r++) {
        size_t ii = 0;
        json_t *it = find_item(items, order[r].id, &ii);
        if ((int64_t)r >= ds->features_per_sae && !it) continue;
        json_t *f = json_array_get(feats, (size_t)order[r].id);
        if (json_integer_value(json_object_get(f, "id")) != order[r].id) continue;   /* catalogs list every id in order */
        json_array_append_new(docd, feature_entry(f, ci, order[r].id, it, vi, ii, in->verification != NULL,
                                                  ds->description_bar, hook, claims));
    }
    free(order);
    double ev = doc_num(eval, "explained_variance"), ce = doc_num(json_object_get(eval, "ce"), "ce_loss_recovered");
    transparency_sae ts = {.explained_variance = ev, .energy_live = e_live, .energy_verified = e_ver};
    json_t *evidence = json_pack("[o]", doc_ev(RUN_FEATURES_CATALOG_JSON, "/saes/%zu", ci));
    if (summ) json_array_append_new(evidence, doc_ev(RUN_SAE_SUMMARY_JSON, "/saes/%zu/evaluation", si));
    if (ver) json_array_append_new(evidence, doc_ev(RUN_VERIFICATION_JSON, "/features/%zu", vi));
    json_t *verification = ver ? json_pack("{s:O, s:O, s:O, s:O}", "tested", json_object_get(ver, "tested") ?: json_null(),
        "verified", json_object_get(ver, "verified") ?: json_null(), "described",
        json_object_get(ver, "described") ?: json_null(), "criterion", json_object_get(ver, "criterion") ?: json_null())
        : json_null();
    json_t *e = json_pack("{s:s, s:I, s:O, s:I, s:I, s:I, s:I, s:b, s:o, s:o, s:o, s:o}", "hook", hook, "layer",
        json_integer_value(json_object_get(cs, "layer")), "architecture",
        json_object_get(cs, "architecture") ?: json_null(), "d_sae", json_integer_value(json_object_get(cs, "d_sae")),
        "n_live", n_live, "n_dead", json_integer_value(json_object_get(cs, "n_dead")), "n_dense",
        json_integer_value(json_object_get(cs, "n_dense")), "mlp_point", strstr(hook, "mlp") != NULL,
        "explained_variance", doc_real(ev), "fvu", doc_real(doc_num(eval, "fvu")), "l0", doc_real(doc_num(eval, "l0")),
        "ce_loss_recovered", doc_real(ce));
    json_object_set_new(e, "coverage", json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "n_live", n_live,
        "n_tested", n_tested, "n_verified", n_ver, "n_described", n_pass, "n_described_above_bar", n_desc, "energy_live",
        e_live, "energy_verified", e_ver,
        "verified_share", transparency_sae_verified_share(&ts)));
    json_object_set_new(e, "verification", verification);
    json_object_set_new(e, "features", docd);
    json_object_set_new(e, "evidence", evidence);
    doc_claim(claims, "features", NULL, json_deep_copy(evidence),
              "the %s SAE on %s (%lld latents, %lld live) explains %.1f %% of the held-out variance at L0 %.1f%s%.1f %s",
              json_string_value(json_object_get(cs, "architecture")) ?: "?", hook,
              (long long)json_integer_value(json_object_get(cs, "d_sae")), (long long)n_live, 100 * ev,
              doc_num(eval, "l0"), isfinite(ce) ? "; CE loss recovered " : "", isfinite(ce) ? 100 * ce : 0.0,
              isfinite(ce) ? "%" : "");
    return e;
}

json_t *doc_features(const doc_inputs *in, const document_settings *ds, json_t *claims)
{
    if (!in->catalog)
        return json_pack("{s:b, s:f, s:[], s:s}", "present", 0, "description_bar", ds->description_bar, "saes", "note",
                         RUN_FEATURES_CATALOG_JSON " is missing: no SAE was trained (the sae phase did not run or "
                         "sae.skip)");
    json_t *saes = json_array(), *cs;
    size_t i;
    json_array_foreach(json_object_get(in->catalog, "saes"), i, cs) json_array_append_new(saes, sae_entry(in, ds, cs, i, claims));
    char note[256];
    snprintf(note, sizeof note, "per SAE the %lld live features of largest activation mass, plus every feature the "
             "verification tested; `transpolmo features query` lists them all", (long long)ds->features_per_sae);
    return json_pack("{s:b, s:f, s:I, s:o, s:s}", "present", 1, "description_bar", ds->description_bar,
                     "features_per_sae", (json_int_t)ds->features_per_sae, "saes", saes, "note", note);
}
