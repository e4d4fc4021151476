/* doc_model.c — the architecture and its constraints (results/architecture.json) and
 * the geometry per layer (results/geometric_analysis.json) as documentation
 * sections (doc_build.h). */
#include "report/doc_build.h"

#include "run_layout.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static json_int_t ival(const json_t *o, const char *k) { return json_integer_value(json_object_get(o, k)); }

/* One constraint: a statement with its value and the pointer it comes from; also a claim. */
static void constraint(json_t *list, json_t *claims, const char *id, json_t *value, const char *pointer,
                       const char *statement)
{
    json_array_append_new(list, json_pack("{s:s, s:s, s:o, s:[o]}", "id", id, "statement", statement, "value", value,
                                          "evidence", doc_ev(RUN_ARCHITECTURE_JSON, "%s", pointer)));
    doc_claim(claims, "architecture", NULL, json_pack("[o]", doc_ev(RUN_ARCHITECTURE_JSON, "%s", pointer)), "%s",
              statement);
}

/* The largest and smallest effective rank of a layer's MLP matrices and per-head W_O. */
static json_t *spectra_summary(const json_t *layers)
{
    json_t *out = json_array(), *l;
    size_t i;
    json_array_foreach(layers, i, l) {
        json_t *sp = json_object_get(l, "spectra");
        if (!sp) continue;
        json_t *row = json_pack("{s:I}", "layer", ival(l, "layer"));
        static const char *const mats[] = {"mlp_gate_proj", "mlp_up_proj", "mlp_down_proj"};
        for (int k = 0; k < 3; k++) {
            json_t *m = json_object_get(sp, mats[k]);
            if (m) json_object_set_new(row, mats[k], json_pack("{s:o, s:o}", "effective_rank",
                doc_real(doc_num(m, "effective_rank")), "stable_rank", doc_real(doc_num(m, "stable_rank"))));
        }
        double lo = INFINITY, hi = -INFINITY;
        size_t h;
        json_t *wo;
        json_array_foreach(json_object_get(sp, "W_O"), h, wo) {
            double e = doc_num(wo, "effective_rank");
            if (isfinite(e)) lo = fmin(lo, e), hi = fmax(hi, e);
        }
        json_object_set_new(row, "W_O_effective_rank", json_pack("{s:o, s:o}", "min", doc_real(lo), "max", doc_real(hi)));
        json_object_set_new(row, "evidence", json_pack("[o]", doc_ev(RUN_ARCHITECTURE_JSON, "/layers/%zu/spectra", i)));
        json_array_append_new(out, row);
    }
    return out;
}

json_t *doc_architecture(const doc_inputs *in, json_t *claims)
{
    const json_t *a = in->architecture, *c = json_object_get(a, "config"), *p = json_object_get(a, "parameters"),
                 *model = json_object_get(a, "model");
    json_int_t d = ival(c, "hidden_size"), L = ival(c, "num_layers"), H = ival(c, "num_attention_heads"),
               K = ival(c, "num_key_value_heads"), dh = ival(c, "head_dim"), dm = ival(c, "intermediate_size"),
               V = ival(c, "vocab_size"), ctx = ival(c, "max_position_embeddings"), total = ival(p, "total");
    const char *family = json_string_value(json_object_get(model, "family")) ?: "?";
    json_t *cons = json_array();
    char s[512];
    snprintf(s, sizeof s, "%s (%s): %lld layers, %lld attention heads per layer of dimension %lld, residual stream "
             "d = %lld, MLP width %lld, vocabulary %lld, %.2f M parameters",
             json_string_value(json_object_get(model, "architecture")) ?: "?", family, (long long)L, (long long)H,
             (long long)dh, (long long)d, (long long)dm, (long long)V, (double)total / 1e6);
    constraint(cons, claims, "shape", json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "layers", L, "heads", H, "d_head", dh,
               "d_model", d, "d_mlp", dm, "parameters", total), "/config", s);
    snprintf(s, sizeof s, "every layer reads and writes one residual stream of %lld dimensions: more features than "
             "that at a layer can only be stored in superposition (not orthogonally)", (long long)d);
    constraint(cons, claims, "residual_width", json_integer(d), "/config/hidden_size", s);
    snprintf(s, sizeof s, "a head reads and writes through a %lld-dimensional subspace: its OV and QK circuits have "
             "rank at most %lld", (long long)dh, (long long)dh);
    constraint(cons, claims, "head_rank", json_integer(dh), "/config/head_dim", s);
    if (K > 0 && K < H) {
        snprintf(s, sizeof s, "grouped-query attention: %lld query heads share %lld key/value heads (%lld per group), "
                 "so the heads of a group attend with their own queries to the same keys and read the same values",
                 (long long)H, (long long)K, (long long)(H / K));
        constraint(cons, claims, "gqa", json_pack("{s:I, s:I}", "heads", H, "kv_heads", K), "/config/num_key_value_heads", s);
    }
    snprintf(s, sizeof s, "each MLP expands the stream %.1f-fold (%lld hidden units): at most %lld neuron directions "
             "per layer", d ? (double)dm / (double)d : 0.0, (long long)dm, (long long)dm);
    constraint(cons, claims, "mlp_width", json_integer(dm), "/config/intermediate_size", s);
    const json_t *rope = json_object_get(c, "rope");
    snprintf(s, sizeof s, "positions enter only through rotary embeddings (%s, theta %g) in the queries and keys; the "
             "context is at most %lld tokens", json_string_value(json_object_get(rope, "type")) ?: "?",
             doc_num(rope, "theta"), (long long)ctx);
    constraint(cons, claims, "positions", json_integer(ctx), "/config/rope", s);
    int tied = json_is_true(json_object_get(c, "tie_word_embeddings"));
    snprintf(s, sizeof s, "%s", tied ? "the unembedding is the embedding's transpose (tied)" :
             "the unembedding W_U is a separate matrix from the embedding W_E (untied): direct logit effects must be "
             "read through W_U");
    constraint(cons, claims, "embeddings", json_boolean(tied), "/config/tie_word_embeddings", s);
    if (!strcmp(family, "olmo2")) {
        snprintf(s, sizeof s, "OLMo-2 norms: each sub-block's output is RMS-normalised before it is added "
                 "(post_attention_layernorm, post_feedforward_layernorm) and queries and keys are RMS-normalised "
                 "(QK-norm); the residual stream itself is read unnormalised");
        constraint(cons, claims, "norms", json_string("post-norm + QK-norm"), "/layers/0/norm_weights", s);
    } else {
        snprintf(s, sizeof s, "pre-norm: each sub-block reads the RMS-normalised residual stream (input_layernorm, "
                 "post_attention_layernorm) and adds its output unnormalised");
        constraint(cons, claims, "norms", json_string("pre-norm"), "/layers/0/norm_weights", s);
    }
    json_t *out = json_pack("{s:b, s:O, s:O, s:O, s:o, s:o, s:[o]}", "present", 1, "model", model ?: json_null(),
        "config", c ?: json_null(), "parameters", p ?: json_null(), "constraints", cons, "weight_spectra",
        spectra_summary(json_object_get(a, "layers")), "evidence", doc_ev(RUN_ARCHITECTURE_JSON, "%s", ""));
    return out;
}

json_t *doc_geometry(const doc_inputs *in, json_t *claims)
{
    if (!in->geometry)
        return json_pack("{s:b, s:[], s:s}", "present", 0, "layers", "note",
                         RUN_GEOMETRY_JSON " is missing: the geometry phase did not run");
    json_t *layers = json_array(), *l;
    size_t i;
    json_array_foreach(json_object_get(in->geometry, "layers"), i, l) {
        json_t *gt = json_object_get(l, "geometry_type"), *pca = json_object_get(l, "pca"),
               *id = json_object_get(l, "intrinsic_dimension"), *lg = json_object_get(l, "local_geometry"),
               *nm = json_object_get(l, "norms"), *cl = json_object_get(l, "clusters");
        const char *label = json_string_value(json_object_get(gt, "label"));
        const char *hook = json_string_value(json_object_get(l, "hook")) ?: "?";
        json_t *row = json_pack("{s:s, s:I, s:I, s:O, s:O, s:O}", "hook", hook, "layer", ival(l, "layer"), "d",
            ival(l, "d"), "label", label ? json_object_get(gt, "label") : json_null(), "uncertain",
            json_object_get(gt, "uncertain") ?: json_null(), "how", json_object_get(gt, "how") ?: json_null());
        json_object_set_new(row, "pca_dim_90", json_integer(ival(pca, "intrinsic_dim_90pct_var")));
        json_object_set_new(row, "pca_dim_95", json_integer(ival(pca, "intrinsic_dim_95pct_var")));
        json_object_set_new(row, "participation_ratio", doc_real(doc_num(pca, "participation_ratio")));
        json_object_set_new(row, "mle", doc_real(doc_num(id, "mle")));
        json_object_set_new(row, "twonn", doc_real(doc_num(id, "twonn")));
        json_object_set_new(row, "local_dim_median", doc_real(doc_num(json_object_get(lg, "local_dim"), "median")));
        json_object_set_new(row, "tangent_angle_median_deg",
                            doc_real(doc_num(json_object_get(lg, "tangent_angle_deg"), "median")));
        json_object_set_new(row, "mean_cosine", doc_real(doc_num(nm, "mean_cosine")));
        json_object_set_new(row, "massive_dims", json_integer(ival(nm, "massive_dims_count")));
        json_object_set_new(row, "clusters", json_integer(ival(cl, "k")));
        json_object_set_new(row, "silhouette", doc_real(doc_num(cl, "silhouette")));
        json_object_set_new(row, "evidence", json_pack("[o, o]", doc_ev(RUN_GEOMETRY_JSON, "/layers/%zu/geometry_type", i),
                                                       doc_ev(RUN_GEOMETRY_JSON, "/layers/%zu/intrinsic_dimension", i)));
        doc_claim(claims, "geometry", NULL, json_pack("[o]", doc_ev(RUN_GEOMETRY_JSON, "/layers/%zu", i)),
                  "%s is a %s%s: PCA needs %lld of %lld directions for 90 %% of the variance, nonlinear intrinsic "
                  "dimension %.1f (MLE) / %.1f (TwoNN), mean cosine %.2f, %lld massive dimension(s)",
                  hook, label ? label : "(unlabelled) space", json_is_true(json_object_get(gt, "uncertain")) ?
                  " (uncertain)" : "", (long long)ival(pca, "intrinsic_dim_90pct_var"), (long long)ival(l, "d"),
                  doc_num(id, "mle"), doc_num(id, "twonn"), doc_num(nm, "mean_cosine"),
                  (long long)ival(nm, "massive_dims_count"));
        json_array_append_new(layers, row);
    }
    return json_pack("{s:b, s:o, s:O, s:[o]}", "present", 1, "layers", layers, "definitions",
                     json_object_get(in->geometry, "definitions") ?: json_null(), "evidence",
                     doc_ev(RUN_GEOMETRY_JSON, "/layers"));
}
