/* doc_score.c — the transparency score of the document: its inputs gathered from the
 * sections already built, the arithmetic of transparency.h, and every component with
 * the inputs it rests on (doc_build.h; the definition: docs/transparency.md). */
#include "report/doc_build.h"

#include "report/transparency.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Marks the heads named in names ("L1H3") covered. */
static void mark_heads(const json_t *names, uint8_t *covered, int L, int H)
{
    size_t i;
    json_t *n;
    json_array_foreach(names, i, n) {
        int l, h;
        if (doc_parse_head(n, &l, &h) && l >= 0 && l < L && h >= 0 && h < H) covered[l * H + h] = 1;
    }
}

static json_t *component(const char *name, double value, const char *definition, json_t *inputs)
{
    return json_pack("{s:s, s:f, s:s, s:o}", "name", name, "value", value, "definition", definition, "inputs", inputs);
}

json_t *doc_transparency(const json_t *doc, const document_settings *ds)
{
    const json_t *cfg = json_object_get(json_object_get(doc, "architecture"), "config");
    const json_t *saes = json_object_get(json_object_get(doc, "features"), "saes");
    const json_t *heads = json_object_get(doc, "heads"), *tasks = json_object_get(json_object_get(doc, "circuits"), "tasks");
    const json_t *geo = json_object_get(json_object_get(doc, "geometry"), "layers");
    int L = (int)json_integer_value(json_object_get(cfg, "num_layers"));
    int H = (int)json_integer_value(json_object_get(cfg, "num_attention_heads"));
    if (L < 0) L = 0;
    if (H < 0) H = 0;
    size_t ns = json_array_size(saes);
    transparency_sae *ts = calloc(ns ? ns : 1, sizeof *ts);
    uint8_t *covered = calloc((size_t)(L * H > 0 ? L * H : 1), 1), *mlp = calloc((size_t)(L ? L : 1), 1),
            *typed = calloc((size_t)(L ? L : 1), 1);
    if (!ts || !covered || !mlp || !typed) {
        free(ts), free(covered), free(mlp), free(typed);
        return json_null();
    }
    json_t *sae_inputs = json_array(), *s;
    size_t i;
    json_array_foreach(saes, i, s) {
        const json_t *cov = json_object_get(s, "coverage");
        ts[i] = (transparency_sae){.layer = (int)json_integer_value(json_object_get(s, "layer")),
            .mlp_point = json_is_true(json_object_get(s, "mlp_point")),
            .explained_variance = doc_num(s, "explained_variance"), .energy_live = doc_num(cov, "energy_live"),
            .energy_verified = doc_num(cov, "energy_verified"), .n_live = json_integer_value(json_object_get(cov, "n_live")),
            .n_described = json_integer_value(json_object_get(cov, "n_described_above_bar"))};
        json_array_append_new(sae_inputs, json_pack("{s:O, s:i, s:b, s:o, s:o, s:o, s:I, s:I, s:f}", "hook",
            json_object_get(s, "hook"), "layer", ts[i].layer, "mlp_point", ts[i].mlp_point, "explained_variance",
            doc_real(ts[i].explained_variance), "energy_live", doc_real(ts[i].energy_live), "energy_verified",
            doc_real(ts[i].energy_verified), "n_live", (json_int_t)ts[i].n_live, "n_described",
            (json_int_t)ts[i].n_described, "verified_share", transparency_sae_verified_share(&ts[i])));
    }
    /* heads: a verified class, or a head of a verified circuit */
    json_t *c;
    json_array_foreach(json_object_get(heads, "classes"), i, c) {
        int l = (int)json_integer_value(json_object_get(c, "layer")), h = (int)json_integer_value(json_object_get(c, "head"));
        if (json_is_true(json_object_get(c, "verified")) && l >= 0 && l < L && h >= 0 && h < H) covered[l * H + h] = 1;
    }
    json_t *verified_tasks = json_array();
    json_array_foreach(tasks, i, c) {
        if (!json_is_true(json_object_get(c, "verified"))) continue;
        json_array_append(verified_tasks, json_object_get(c, "task"));
        mark_heads(json_object_get(c, "heads"), covered, L, H);
        size_t k;
        json_t *m;
        json_array_foreach(json_object_get(c, "mlps"), k, m) {
            json_int_t l = json_integer_value(m);
            if (l >= 0 && l < L) mlp[l] = 1;
        }
    }
    json_t *g;
    json_array_foreach(geo, i, g) {
        json_int_t l = json_integer_value(json_object_get(g, "layer"));
        if (json_is_string(json_object_get(g, "label")) && l >= 0 && l < L) typed[l] = 1;
    }
    transparency_inputs in = {.n_layers = L, .n_heads = H, .saes = ts, .n_saes = ns, .head_covered = covered,
                              .mlp_in_circuit = mlp, .geometry_typed = typed};
    transparency_result r;
    transparency_compute(&in, &r);

    json_t *per_layer = json_array(), *covered_names = json_array(), *mlp_layers = json_array();
    for (int l = 0; l < L; l++) {
        double gl, sl, cl, u = transparency_layer(&in, l, &gl, &sl, &cl);
        json_array_append_new(per_layer, json_pack("{s:i, s:f, s:f, s:f, s:f}", "layer", l, "geometry", gl,
                                                   "verified_features", sl, "components", cl, "value", u));
        for (int h = 0; h < H; h++)
            if (covered[l * H + h]) {
                char n[32];
                doc_head_name(n, sizeof n, l, h);
                json_array_append_new(covered_names, json_string(n));
            }
        if (transparency_mlp_explained(&in, l)) json_array_append_new(mlp_layers, json_integer(l));
    }
    json_t *feature = json_pack("{s:f, s:f, s:o}", "value", r.feature_coverage, "weight", 1.0 / 3, "components", json_pack("[o, o]",
        component("variance_explained", r.variance_explained,
                  "mean over SAEs of (held-out 1 - FVU) x (activation energy of verified features / of live features)",
                  json_pack("{s:o}", "saes", json_incref(sae_inputs))),
        component("described_fraction", r.described_fraction,
                  "live features whose description scores at least the bar (detection F1, else the verify phase's "
                  "verdict) / live features",
                  json_pack("{s:I, s:I, s:f}", "described", (json_int_t)0, "live", (json_int_t)0, "bar",
                            ds->description_bar))));
    /* the counts behind D */
    json_int_t live = 0, described = 0;
    for (size_t k = 0; k < ns; k++) live += ts[k].n_live, described += ts[k].n_described;
    json_t *dinputs = json_object_get(json_array_get(json_object_get(feature, "components"), 1), "inputs");
    json_object_set_new(dinputs, "described", json_integer(described));
    json_object_set_new(dinputs, "live", json_integer(live));
    json_t *circuit = json_pack("{s:f, s:f, s:o}", "value", r.circuit_coverage, "weight", 1.0 / 3, "components",
        json_pack("[o, o]",
            component("heads_covered", r.heads_fraction, "heads in a verified class or a verified circuit / all heads",
                      json_pack("{s:I, s:I, s:o, s:o}", "covered", (json_int_t)r.heads_covered, "total",
                                (json_int_t)r.heads_total, "heads", covered_names, "verified_tasks", verified_tasks)),
            component("mlp_explained", r.mlp_fraction,
                      "MLP layers that are a node of a verified circuit, or whose MLP-output SAE has at least "
                      "mlp_feature_bar of its activation energy in verified features / all layers",
                      json_pack("{s:i, s:i, s:o, s:f}", "explained", r.mlp_explained, "total", r.mlp_total, "layers",
                                mlp_layers, "mlp_feature_bar", (double)TRANSPARENCY_MLP_FEATURE_BAR))));
    json_t *layer = json_pack("{s:f, s:f, s:o}", "value", r.layer_understanding, "weight", 1.0 / 3, "components",
        json_pack("[o]", component("per_layer", r.layer_understanding,
            "mean over layers of (geometry labelled + largest verified-feature share of its SAEs + share of its H heads "
            "and MLP covered) / 3", json_pack("{s:o}", "layers", per_layer))));
    json_t *out = json_pack("{s:f, s:f, s:b, s:{s:o, s:o, s:o}, s:f, s:f, s:s, s:[s, s, s, s, s]}", "score", r.score,
        "target", (double)TRANSPARENCY_TARGET, "meets_target", r.score >= TRANSPARENCY_TARGET, "dimensions",
        "feature_coverage", feature, "circuit_coverage", circuit, "layer_understanding", layer, "description_bar",
        ds->description_bar, "mlp_feature_bar", (double)TRANSPARENCY_MLP_FEATURE_BAR, "definition", "docs/transparency.md",
        "not_measured",
        "whether a description is the feature's true meaning (only how well it predicts the activations)",
        "features and circuits the run did not look for (unselected layers, points without an SAE, tasks outside the "
        "circuit library)",
        "the SAE's reconstruction error: variance the SAE does not explain counts as unexplained",
        "how much of the model's loss the verified parts account for (only their share of activation energy, heads and "
        "MLP layers)",
        "the energy proxy e_f = fires x mean^2 ignores each feature's spread of activations and decoder norm");
    json_decref(sae_inputs);
    free(ts), free(covered), free(mlp), free(typed);
    return out;
}
