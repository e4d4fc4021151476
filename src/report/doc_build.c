/* doc_build.c — the inputs, the shared helpers, provenance, the whole document and
 * its summary (doc_build.h). */
#include "report/doc_build.h"

#include "core/fsutil.h"
#include "io/store.h"
#include "run_layout.h"

#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- helpers ----------------------------------------------------------------------------------- */

json_t *doc_ev(const char *file, const char *fmt, ...)
{
    char ptr[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ptr, sizeof ptr, fmt, ap);
    va_end(ap);
    return json_pack("{s:s, s:s}", "file", file, "pointer", ptr);
}

double doc_num(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

json_t *doc_real(double v) { return isfinite(v) ? json_real(v) : json_null(); }

void doc_claim(json_t *claims, const char *section, json_t *verified, json_t *evidence, const char *fmt, ...)
{
    char text[1024], id[32];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    snprintf(id, sizeof id, "C%zu", json_array_size(claims) + 1);
    json_array_append_new(claims, json_pack("{s:s, s:s, s:s, s:o, s:o}", "id", id, "section", section, "statement",
                                            text, "verified", verified ? verified : json_null(), "evidence",
                                            evidence ? evidence : json_array()));
}

void doc_head_name(char *buf, size_t n, int layer, int head) { snprintf(buf, n, "L%dH%d", layer, head); }

int doc_parse_head(const json_t *v, int *layer, int *head)
{
    if (json_is_object(v)) {
        json_t *l = json_object_get(v, "layer"), *h = json_object_get(v, "head");
        if (!json_is_integer(l) || !json_is_integer(h)) return 0;
        *layer = (int)json_integer_value(l), *head = (int)json_integer_value(h);
        return 1;
    }
    const char *s = json_string_value(v);
    if (!s) return 0;
    char tail;
    if (sscanf(s, "a%d.h%d%c", layer, head, &tail) == 2) return 1;
    if (sscanf(s, "L%dH%d%c", layer, head, &tail) == 2) return 1;
    if (sscanf(s, "%d.%d%c", layer, head, &tail) == 2) return 1;
    return 0;
}

/* ---- inputs ------------------------------------------------------------------------------------ */

/* FNV-1a 64 of a file's bytes; -1 in *bytes when unreadable. */
static uint64_t file_fnv(const char *path, long long *bytes)
{
    uint64_t h = 14695981039346656037ULL;
    FILE *f = fopen(path, "rb");
    *bytes = -1;
    if (!f) return 0;
    unsigned char buf[1 << 16];
    size_t n;
    long long total = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 1099511628211ULL;
        total += (long long)n;
    }
    int bad = ferror(f);
    fclose(f);
    *bytes = bad ? -1 : total;
    return h;
}

static void hex64(char *buf, size_t n, uint64_t h) { snprintf(buf, n, "%016llx", (unsigned long long)h); }

/* Loads artifact as JSON into *out (NULL when absent) and records it in in->read. */
static tp_status load(doc_inputs *in, const char *artifact, json_t **out)
{
    char path[TP_PATH_MAX], hex[24];
    TP_CHECK(run_path(path, sizeof path, in->run_dir, artifact));
    *out = NULL;
    if (!fs_exists(path)) {
        json_array_append_new(in->read, json_pack("{s:s, s:b}", "file", artifact, "present", 0));
        return TP_OK;
    }
    json_error_t e;
    *out = json_load_file(path, 0, &e);
    if (!*out) return tp_err(TP_ERR_FORMAT, "document: %s: line %d: %s", path, e.line, e.text);
    long long bytes;
    hex64(hex, sizeof hex, file_fnv(path, &bytes));
    json_array_append_new(in->read, json_pack("{s:s, s:b, s:I, s:s}", "file", artifact, "present", 1, "bytes",
                                              (json_int_t)bytes, "fnv1a64", hex));
    return TP_OK;
}

tp_status doc_inputs_load(const char *run_dir, doc_inputs *in)
{
    memset(in, 0, sizeof *in);
    in->run_dir = run_dir;
    in->read = json_array();
    if (!in->read) return tp_err(TP_ERR_NOMEM, "document: inputs");
    TP_CHECK(load(in, RUN_ARCHITECTURE_JSON, &in->architecture));
    if (!in->architecture)
        return tp_err(TP_ERR_IO, "document: %s/%s is missing (run `transpolmo inspect --out %s` first)", run_dir,
                      RUN_ARCHITECTURE_JSON, run_dir);
    TP_CHECK(load(in, RUN_CAPTURE_SUMMARY_JSON, &in->capture_summary));
    TP_CHECK(load(in, RUN_GEOMETRY_JSON, &in->geometry));
    TP_CHECK(load(in, RUN_SAE_SUMMARY_JSON, &in->sae_summary));
    TP_CHECK(load(in, RUN_FEATURES_CATALOG_JSON, &in->catalog));
    TP_CHECK(load(in, RUN_CIRCUITS_HEAD_SCORES_JSON, &in->head_scores));
    TP_CHECK(load(in, RUN_CIRCUITS_WEIGHTS_JSON, &in->weights));
    TP_CHECK(load(in, RUN_CIRCUITS_LIBRARY_JSON, &in->library));
    TP_CHECK(load(in, RUN_VERIFICATION_JSON, &in->verification));
    TP_CHECK(load(in, RUN_VERSIONS_JSON, &in->versions));
    return TP_OK;
}

void doc_inputs_free(doc_inputs *in)
{
    json_t **all[] = {&in->architecture, &in->geometry, &in->sae_summary, &in->catalog, &in->head_scores, &in->weights,
                      &in->library, &in->verification, &in->versions, &in->capture_summary, &in->read};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
        json_decref(*all[i]);
        *all[i] = NULL;
    }
}

/* ---- provenance -------------------------------------------------------------------------------- */

/* The store's provenance attributes (model, tokenizer and corpus hashes, sampling). */
static json_t *store_provenance(const char *run_dir)
{
    static const char *const keys[] = {"transpolmo_version", "model_path", "model_config_hash", "tokenizer_hash",
                                       "corpus", "corpus_hash", "sampling_seed", "num_samples", "seq_len",
                                       "packing", "hooks", "dtype", "mask", "weights_bytes", "weights_mtime_ns",
                                       "weights_fingerprint", "corpus_bytes", "corpus_mtime_ns", "corpus_fingerprint",
                                       NULL};
    char path[TP_PATH_MAX], buf[1024];
    if (run_path(path, sizeof path, run_dir, RUN_STORE) != TP_OK || !fs_exists(path)) return json_null();
    tp_store *s = NULL;
    if (store_open_read(path, MPI_COMM_SELF, &s) != TP_OK) return json_null();
    json_t *o = json_object();
    for (const char *const *k = keys; *k; k++) {
        const char *v = store_attr(s, *k, buf, sizeof buf);
        if (v && *v) json_object_set_new(o, *k, json_string(v));
    }
    store_close(s);
    return o;
}

/* .phases/<name>.done: the resume hash of every completed phase. */
static json_t *phase_markers(const char *run_dir)
{
    char dir[TP_PATH_MAX];
    json_t *o = json_object();
    if (run_path(dir, sizeof dir, run_dir, RUN_PHASES_DIR) != TP_OK) return o;
    DIR *d = opendir(dir);
    if (!d) return o;
    struct dirent *e;
    char *names[256];
    int n = 0;
    while ((e = readdir(d)) && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 5 && !strcmp(e->d_name + l - 5, ".done")) names[n++] = strndup(e->d_name, l - 5);
    }
    closedir(d);
    for (int i = 1; i < n; i++)   /* sorted: the same document whatever readdir's order */
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1], names[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        char path[TP_PATH_MAX], line[64] = "";
        if (names[i] && run_marker_path(path, sizeof path, run_dir, names[i]) == TP_OK) {
            FILE *f = fopen(path, "r");
            if (f) {
                if (!fgets(line, sizeof line, f)) line[0] = '\0';
                fclose(f);
            }
            line[strcspn(line, "\n")] = '\0';
            json_object_set_new(o, names[i], json_string(line));
        }
        free(names[i]);
    }
    return o;
}

json_t *doc_provenance(const doc_inputs *in)
{
    char path[TP_PATH_MAX], hex[24] = "", when[32];
    long long bytes = -1;
    if (run_path(path, sizeof path, in->run_dir, RUN_CONFIG_YAML) == TP_OK && fs_exists(path))
        hex64(hex, sizeof hex, file_fnv(path, &bytes));
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *model = json_object_get(in->architecture, "model"), *store = store_provenance(in->run_dir);
    json_t *m = json_pack("{s:O, s:O, s:O}", "path", json_object_get(model, "path") ?: json_null(), "architecture",
                          json_object_get(model, "architecture") ?: json_null(), "family",
                          json_object_get(model, "family") ?: json_null());
    json_object_set(m, "config_hash", json_object_get(store, "model_config_hash") ?: json_null());
    json_object_set(m, "tokenizer_hash", json_object_get(store, "tokenizer_hash") ?: json_null());
    json_t *corpus = json_pack("{s:O, s:O, s:O, s:O, s:O, s:O}", "path", json_object_get(store, "corpus") ?: json_null(),
        "hash", json_object_get(store, "corpus_hash") ?: json_null(), "sampling_seed",
        json_object_get(store, "sampling_seed") ?: json_null(), "num_samples",
        json_object_get(store, "num_samples") ?: json_null(), "seq_len", json_object_get(store, "seq_len") ?: json_null(),
        "documents", json_object_get(in->capture_summary, "documents") ?: json_null());
    json_object_set(corpus, "rows", json_object_get(in->capture_summary, "rows") ?: json_null());
    json_t *p = json_pack("{s:s, s:s, s:o, s:o, s:{s:s, s:o, s:I}, s:O, s:o, s:o, s:O}", "generated_at", when,
        "transpolmo_version", TP_VERSION, "model", m, "corpus", corpus, "config", "file", RUN_CONFIG_YAML, "fnv1a64",
        hex[0] ? json_string(hex) : json_null(), "bytes", (json_int_t)bytes, "versions",
        in->versions ? in->versions : json_null(), "phases", phase_markers(in->run_dir), "store", store, "inputs",
        in->read);
    return p;
}

/* ---- the document ------------------------------------------------------------------------------ */

tp_status doc_build(const char *run_dir, const document_settings *ds, json_t **out)
{
    doc_inputs in;
    *out = NULL;
    tp_status st = doc_inputs_load(run_dir, &in);
    if (st != TP_OK) {
        doc_inputs_free(&in);
        return st;
    }
    json_t *claims = json_array(), *model = json_object_get(in.architecture, "model");
    const char *path = json_string_value(json_object_get(model, "path")), *name = path ? strrchr(path, '/') : NULL;
    name = name ? name + 1 : path ? path : "model";
    char title[512];
    if (ds->title && ds->title[0]) snprintf(title, sizeof title, "%s", ds->title);
    else snprintf(title, sizeof title, "%s — model documentation", name);
    json_t *doc = json_pack("{s:s, s:s, s:s}", "schema", DOC_SCHEMA, "title", title, "model", name);
    json_object_set_new(doc, "provenance", doc_provenance(&in));
    json_object_set_new(doc, "architecture", doc_architecture(&in, claims));
    json_object_set_new(doc, "geometry", doc_geometry(&in, claims));
    json_object_set_new(doc, "features", doc_features(&in, ds, claims));
    json_object_set_new(doc, "heads", doc_heads(&in, claims));
    json_object_set_new(doc, "circuits", doc_circuits(&in, claims));
    json_object_set_new(doc, "verification", doc_verification(&in));
    json_object_set_new(doc, "transparency", doc_transparency(doc, ds));
    json_object_set_new(doc, "claims", claims);
    doc_inputs_free(&in);
    *out = doc;
    return TP_OK;
}

/* ---- summary.json ------------------------------------------------------------------------------ */

static json_int_t count_true(const json_t *arr, const char *key)
{
    json_int_t n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) n += json_is_true(json_object_get(v, key));
    return n;
}

static json_int_t sum_key(const json_t *arr, const char *key)
{
    json_int_t n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) n += json_integer_value(json_object_get(v, key));
    return n;
}

json_t *doc_summary(const json_t *doc)
{
    json_t *t = json_object_get(doc, "transparency"), *f = json_object_get(doc, "features"),
           *h = json_object_get(doc, "heads"), *c = json_object_get(doc, "circuits"), *g = json_object_get(doc, "geometry"),
           *v = json_object_get(doc, "verification"), *saes = json_object_get(f, "saes"),
           *tasks = json_object_get(c, "tasks"), *classes = json_object_get(h, "classes"),
           *claims = json_object_get(doc, "claims"), *cfg = json_object_get(json_object_get(doc, "architecture"), "config");
    json_int_t documented = 0, described = 0, above_bar = 0, verified = 0;
    size_t i;
    json_t *s;
    json_array_foreach(saes, i, s) {
        json_t *cov = json_object_get(s, "coverage");
        documented += (json_int_t)json_array_size(json_object_get(s, "features"));
        described += json_integer_value(json_object_get(cov, "n_described"));
        above_bar += json_integer_value(json_object_get(cov, "n_described_above_bar"));
        verified += json_integer_value(json_object_get(cov, "n_verified"));
    }
    json_t *by_class = json_object(), *bc = json_object_get(h, "by_class"), *names;
    const char *cls;
    json_object_foreach(bc, cls, names) json_object_set_new(by_class, cls, json_integer((json_int_t)json_array_size(names)));
    json_t *profile = json_object(), *dims = json_object_get(t, "dimensions"), *dim;
    const char *dn;
    json_object_foreach(dims, dn, dim) json_object_set(profile, dn, json_object_get(dim, "value"));
    json_int_t claims_verified = count_true(claims, "verified");
    return json_pack("{s:s, s:O, s:O, s:{s:O, s:O, s:O, s:o}, s:{s:O, s:O, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
                     "s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:O, s:{s:s, s:s, s:s}}",
        "schema", DOC_SUMMARY_SCHEMA, "model", json_object_get(doc, "model"), "title", json_object_get(doc, "title"),
        "transparency", "score", json_object_get(t, "score") ?: json_null(), "target",
        json_object_get(t, "target") ?: json_null(), "meets_target", json_object_get(t, "meets_target") ?: json_null(),
        "profile", profile,
        "counts", "layers", json_object_get(cfg, "num_layers") ?: json_null(), "heads_per_layer",
        json_object_get(cfg, "num_attention_heads") ?: json_null(), "geometry_layers",
        (json_int_t)json_array_size(json_object_get(g, "layers")), "saes", (json_int_t)json_array_size(saes),
        "features_live", sum_key(saes, "n_live"), "features_dead", sum_key(saes, "n_dead"), "features_documented",
        documented, "features_described", described, "features_described_above_bar", above_bar, "features_verified",
        verified, "head_classes",
        (json_int_t)json_array_size(classes), "heads_by_class", by_class, "heads_classified",
        json_integer_value(json_object_get(h, "n_classified")), "heads_verified",
        json_integer_value(json_object_get(h, "n_verified")), "circuit_tasks", (json_int_t)json_array_size(tasks),
        "circuits_can_do", count_true(tasks, "can_do"), "circuits_verified", count_true(tasks, "verified"), "claims",
        (json_int_t)json_array_size(claims), "claims_verified", claims_verified,
        "verification_present", json_object_get(v, "present") ?: json_false(),
        "files", "documentation", RUN_DOCS_JSON, "report", RUN_DOCS_MD, "definition", "docs/transparency.md");
}
