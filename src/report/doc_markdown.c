/* doc_markdown.c — model_documentation.md: the documentation JSON as a readable
 * report, like a paper's results section, every statement followed by the claim id
 * and the file#pointer of its measurement (doc_build.h). Made from the JSON alone. */
#include "report/doc_build.h"

#include "core/fsutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str(const json_t *o, const char *k) { return json_string_value(json_object_get(o, k)) ?: ""; }

static void num(FILE *f, double v, const char *fmt)
{
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("–", f);
}

/* Table cells: '|' and newlines would break the row. */
static void cell(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '|') fputs("\\|", f);
        else if (*s == '\n') fputs("\\n", f);
        else if (*s == '\r' || *s == '\t') fputc(' ', f);
        else fputc(*s, f);
    }
}

static const char *verified_word(const json_t *v)
{
    return json_is_true(v) ? "verified" : json_is_false(v) ? "not verified" : "untested";
}

static void evidence(FILE *f, const json_t *ev)
{
    size_t i;
    json_t *e;
    json_array_foreach(ev, i, e) fprintf(f, "%s`%s#%s`", i ? ", " : "", str(e, "file"), str(e, "pointer"));
}

/* Every claim of a section as a list item: statement, verdict, evidence. */
static void claims(FILE *f, const json_t *doc, const char *section)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(doc, "claims"), i, c) {
        if (strcmp(str(c, "section"), section)) continue;
        fprintf(f, "- **%s** %s (%s; ", str(c, "id"), str(c, "statement"), verified_word(json_object_get(c, "verified")));
        evidence(f, json_object_get(c, "evidence"));
        fputs(")\n", f);
    }
}

static void transparency(FILE *f, const json_t *t)
{
    fprintf(f, "## Transparency score\n\n**%.3f** (target %.2f: %s). Definition: `%s`.\n\n", json_number_value(json_object_get(t, "score")),
            json_number_value(json_object_get(t, "target")), json_is_true(json_object_get(t, "meets_target")) ? "met" : "not met",
            str(t, "definition"));
    fputs("| dimension | weight | value | component | value |\n|---|---:|---:|---|---:|\n", f);
    const char *dn;
    json_t *d;
    json_object_foreach(json_object_get(t, "dimensions"), dn, d) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(d, "components"), i, c) {
            if (i == 0) fprintf(f, "| %s | %.3f | %.3f ", dn, doc_num(d, "weight"), doc_num(d, "value"));
            else fputs("| | | ", f);
            fprintf(f, "| %s | %.3f |\n", str(c, "name"), doc_num(c, "value"));
        }
    }
    fputs("\nComponents and their inputs:\n\n", f);
    json_object_foreach(json_object_get(t, "dimensions"), dn, d) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(d, "components"), i, c) {
            char *in = json_dumps(json_object_get(c, "inputs"), JSON_COMPACT);
            fprintf(f, "- `%s.%s` = %.4f: %s. Inputs: `%s`\n", dn, str(c, "name"), doc_num(c, "value"), str(c, "definition"),
                    in ? in : "{}");
            free(in);
        }
    }
    fputs("\nWhat the score does not measure:\n\n", f);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(t, "not_measured"), i, s) fprintf(f, "- %s\n", json_string_value(s));
    fputs("\n", f);
}

static void architecture(FILE *f, const json_t *doc)
{
    const json_t *a = json_object_get(doc, "architecture");
    fputs("## 1. Architecture and its constraints\n\n", f);
    claims(f, doc, "architecture");
    const json_t *sp = json_object_get(a, "weight_spectra");
    if (json_array_size(sp)) {
        fputs("\nWeight spectra (effective rank, Roy & Vetterli 2007):\n\n| layer | MLP gate | MLP up | MLP down | W_O per head (min–max) |\n"
              "|---:|---:|---:|---:|---|\n", f);
        size_t i;
        json_t *r;
        json_array_foreach(sp, i, r) {
            fprintf(f, "| %lld | ", (long long)json_integer_value(json_object_get(r, "layer")));
            num(f, doc_num(json_object_get(r, "mlp_gate_proj"), "effective_rank"), "%.1f");
            fputs(" | ", f);
            num(f, doc_num(json_object_get(r, "mlp_up_proj"), "effective_rank"), "%.1f");
            fputs(" | ", f);
            num(f, doc_num(json_object_get(r, "mlp_down_proj"), "effective_rank"), "%.1f");
            fputs(" | ", f);
            num(f, doc_num(json_object_get(r, "W_O_effective_rank"), "min"), "%.1f");
            fputs("–", f);
            num(f, doc_num(json_object_get(r, "W_O_effective_rank"), "max"), "%.1f");
            fputs(" |\n", f);
        }
    }
    fputs("\n", f);
}

static void geometry(FILE *f, const json_t *doc)
{
    const json_t *g = json_object_get(doc, "geometry");
    fputs("## 2. Geometry of the representations\n\n", f);
    if (!json_is_true(json_object_get(g, "present"))) {
        fprintf(f, "%s.\n\n", str(g, "note"));
        return;
    }
    fputs("| capture point | label | PCA dims (90 %) | MLE | TwoNN | local dim | mean cosine | massive dims | silhouette |\n"
          "|---|---|---:|---:|---:|---:|---:|---:|---:|\n", f);
    size_t i;
    json_t *l;
    json_array_foreach(json_object_get(g, "layers"), i, l) {
        fprintf(f, "| %s | %s%s | %lld / %lld | ", str(l, "hook"), str(l, "label"),
                json_is_true(json_object_get(l, "uncertain")) ? " (uncertain)" : "",
                (long long)json_integer_value(json_object_get(l, "pca_dim_90")), (long long)json_integer_value(json_object_get(l, "d")));
        num(f, doc_num(l, "mle"), "%.1f");
        fputs(" | ", f);
        num(f, doc_num(l, "twonn"), "%.1f");
        fputs(" | ", f);
        num(f, doc_num(l, "local_dim_median"), "%.1f");
        fputs(" | ", f);
        num(f, doc_num(l, "mean_cosine"), "%.3f");
        fprintf(f, " | %lld | ", (long long)json_integer_value(json_object_get(l, "massive_dims")));
        num(f, doc_num(l, "silhouette"), "%.3f");
        fputs(" |\n", f);
    }
    fputs("\n", f);
    claims(f, doc, "geometry");
    fputs("\n", f);
}

static void features(FILE *f, const json_t *doc)
{
    const json_t *fs = json_object_get(doc, "features");
    fputs("## 3. Features\n\n", f);
    if (!json_is_true(json_object_get(fs, "present"))) {
        fprintf(f, "%s.\n\n", str(fs, "note"));
        return;
    }
    fprintf(f, "Descriptions count as good when their detection F1 is at least %.2f. Documented: %s.\n\n",
            doc_num(fs, "description_bar"), str(fs, "note"));
    fputs("| SAE | arch | latents | live | dead | explained variance | L0 | CE loss recovered | verified | described | "
          "verified energy share |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", f);
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(fs, "saes"), i, s) {
        const json_t *cov = json_object_get(s, "coverage");
        fprintf(f, "| %s | %s | %lld | %lld | %lld | ", str(s, "hook"), str(s, "architecture"),
                (long long)json_integer_value(json_object_get(s, "d_sae")), (long long)json_integer_value(json_object_get(s, "n_live")),
                (long long)json_integer_value(json_object_get(s, "n_dead")));
        num(f, 100 * doc_num(s, "explained_variance"), "%.1f %%");
        fputs(" | ", f);
        num(f, doc_num(s, "l0"), "%.1f");
        fputs(" | ", f);
        num(f, 100 * doc_num(s, "ce_loss_recovered"), "%.1f %%");
        fprintf(f, " | %lld | %lld | %.3f |\n", (long long)json_integer_value(json_object_get(cov, "n_verified")),
                (long long)json_integer_value(json_object_get(cov, "n_described")), doc_num(cov, "verified_share"));
    }
    json_array_foreach(json_object_get(fs, "saes"), i, s) {
        fprintf(f, "\n### %s\n\n| feature | density | description | source | score | verified | evidence |\n"
                   "|---:|---:|---|---|---:|---|---|\n", str(s, "hook"));
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(s, "features"), k, e) {
            const json_t *d = json_object_get(e, "description");
            fprintf(f, "| %lld | %.4f | ", (long long)json_integer_value(json_object_get(e, "id")), doc_num(e, "density"));
            cell(f, str(d, "text"));
            fprintf(f, " | %s | ", str(d, "source"));
            num(f, doc_num(d, "score"), "%.3f");
            fprintf(f, " | %s | ", verified_word(json_object_get(e, "verified")));
            evidence(f, json_object_get(e, "evidence"));
            fputs(" |\n", f);
        }
    }
    fputs("\nPer SAE:\n\n", f);
    size_t ci;
    json_t *c;
    json_array_foreach(json_object_get(doc, "claims"), ci, c) {
        if (strcmp(str(c, "section"), "features") || !strstr(str(c, "statement"), " SAE on ")) continue;
        fprintf(f, "- **%s** %s (", str(c, "id"), str(c, "statement"));
        evidence(f, json_object_get(c, "evidence"));
        fputs(")\n", f);
    }
    fputs("\n", f);
}

static void heads(FILE *f, const json_t *doc)
{
    const json_t *h = json_object_get(doc, "heads");
    fputs("## 4. Attention heads\n\n", f);
    if (!json_is_true(json_object_get(h, "present"))) {
        fprintf(f, "%s.\n\n", str(h, "note"));
        return;
    }
    fprintf(f, "%lld of %lld heads have a class (%lld verified by intervention).\n\n| class | heads |\n|---|---|\n",
            (long long)json_integer_value(json_object_get(h, "n_classified")),
            (long long)(json_integer_value(json_object_get(h, "n_layers")) * json_integer_value(json_object_get(h, "n_heads"))),
            (long long)json_integer_value(json_object_get(h, "n_verified")));
    const char *cls;
    json_t *names;
    json_object_foreach(json_object_get(h, "by_class"), cls, names) {
        fprintf(f, "| %s | ", cls);
        size_t i;
        json_t *n;
        json_array_foreach(names, i, n) fprintf(f, "%s%s", i ? ", " : "", json_string_value(n));
        fputs(" |\n", f);
    }
    fputs("\n", f);
    claims(f, doc, "heads");
    fputs("\n", f);
}

static void circuits(FILE *f, const json_t *doc)
{
    const json_t *c = json_object_get(doc, "circuits");
    fputs("## 5. Circuits\n\n", f);
    if (!json_is_true(json_object_get(c, "present"))) {
        fprintf(f, "%s.\n\n", str(c, "note"));
        return;
    }
    fputs("| task | can do | LD clean / corrupted | kept nodes / edges | CPR | CMD | heads | MLPs | verified |\n"
          "|---|---|---|---:|---:|---:|---|---|---|\n", f);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(c, "tasks"), i, t) {
        const json_t *fa = json_object_get(t, "faithfulness");
        fprintf(f, "| %s | %s | %.2f / %.2f | %lld / %lld | ", str(t, "task"),
                json_is_true(json_object_get(t, "can_do")) ? "yes" : "no", doc_num(t, "ld_clean"), doc_num(t, "ld_corr"),
                (long long)json_integer_value(json_object_get(fa, "kept_nodes")),
                (long long)json_integer_value(json_object_get(fa, "kept_edges")));
        num(f, doc_num(fa, "cpr"), "%.3f");
        fputs(" | ", f);
        num(f, doc_num(fa, "cmd"), "%.3f");
        fputs(" | ", f);
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(t, "heads"), k, x) fprintf(f, "%s%s", k ? ", " : "", json_string_value(x));
        fputs(" | ", f);
        json_array_foreach(json_object_get(t, "mlps"), k, x) fprintf(f, "%sm%lld", k ? ", " : "", (long long)json_integer_value(x));
        fprintf(f, " | %s |\n", verified_word(json_object_get(t, "verified")));
    }
    fputs("\n", f);
    claims(f, doc, "circuits");
    fputs("\n", f);
}

static void verification(FILE *f, const json_t *doc)
{
    const json_t *v = json_object_get(doc, "verification");
    fputs("## 6. Verification by intervention\n\n", f);
    if (!json_is_true(json_object_get(v, "present"))) {
        fprintf(f, "**Nothing was verified by intervention**: %s.\n\n", str(v, "note"));
        return;
    }
    char *s = json_dumps(json_object_get(v, "summary"), JSON_COMPACT);
    fprintf(f, "From `%s` (%s). Summary: `%s`. %s.\n\n", str(v, "file"), str(v, "schema"), s ? s : "{}", str(v, "note"));
    free(s);
    size_t n = json_array_size(json_object_get(v, "skipped"));
    if (n) fprintf(f, "%zu item(s) were skipped (listed under `verification.skipped`).\n\n", n);
}

static void provenance(FILE *f, const json_t *doc)
{
    const json_t *p = json_object_get(doc, "provenance"), *m = json_object_get(p, "model"), *c = json_object_get(p, "corpus");
    fputs("## 7. Provenance\n\n", f);
    fprintf(f, "- generated %s by TranspOLMo %s\n", str(p, "generated_at"), str(p, "transpolmo_version"));
    fprintf(f, "- model `%s` (%s), config.json hash %s, tokenizer hash %s\n", str(m, "path"), str(m, "architecture"),
            str(m, "config_hash"), str(m, "tokenizer_hash"));
    fprintf(f, "- corpus `%s` (hash %s), %s documents sampled with seed %s, sequences of %s tokens\n", str(c, "path"),
            str(c, "hash"), str(c, "num_samples"), str(c, "sampling_seed"), str(c, "seq_len"));
    fprintf(f, "- configuration `%s` (FNV-1a %s); phases and their resume hashes:", str(json_object_get(p, "config"), "file"),
            str(json_object_get(p, "config"), "fnv1a64"));
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(p, "phases"), k, v) fprintf(f, " %s `%s`", k, json_string_value(v));
    fputs("\n- inputs:", f);
    size_t i;
    json_array_foreach(json_object_get(p, "inputs"), i, v)
        fprintf(f, " `%s` %s", str(v, "file"), json_is_true(json_object_get(v, "present")) ? str(v, "fnv1a64") : "(absent)");
    fputs("\n", f);
}

tp_status doc_markdown_write(const json_t *doc, const char *path)
{
    FILE *f;
    TP_CHECK(fs_open_tmp(path, &f));
    const json_t *t = json_object_get(doc, "transparency"), *v = json_object_get(doc, "verification");
    fprintf(f, "# %s\n\n", str(doc, "title"));
    fprintf(f, "This report is generated from `model_documentation.json` (schema `%s`) in the same folder. Every "
               "statement carries its claim id and the file and JSON pointer of the measurement behind it; "
               "\"verified\" means an intervention (results/verification.json) confirmed it, \"untested\" that none "
               "was run on it.\n\n", str(doc, "schema"));
    fprintf(f, "**Transparency score %.3f** (feature coverage %.3f, circuit coverage %.3f, layer understanding %.3f; "
               "target %.2f). %s\n\n", doc_num(t, "score"),
            doc_num(json_object_get(json_object_get(t, "dimensions"), "feature_coverage"), "value"),
            doc_num(json_object_get(json_object_get(t, "dimensions"), "circuit_coverage"), "value"),
            doc_num(json_object_get(json_object_get(t, "dimensions"), "layer_understanding"), "value"),
            doc_num(t, "target"), json_is_true(json_object_get(v, "present")) ? "" :
            "Nothing was verified by intervention in this run (no results/verification.json).");
    architecture(f, doc);
    geometry(f, doc);
    features(f, doc);
    heads(f, doc);
    circuits(f, doc);
    verification(f, doc);
    transparency(f, t);
    provenance(f, doc);
    if (ferror(f)) {
        fs_abort(f, path);
        return tp_err(TP_ERR_IO, "document: cannot write %s", path);
    }
    return fs_commit(f, path);
}
