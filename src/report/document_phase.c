/* document_phase.c — phase 6: the driver, its settings and its descriptor
 * (document_phase.h). */
#include "report/document_phase.h"

#include "analysis/circuits/circuits_phase.h"
#include "analysis/geometry/geometry_phase.h"
#include "analysis/inspect/inspect_phase.h"
#include "analysis/sae/sae_phase.h"
#include "analysis/store_inputs.h"
#include "analysis/verify/verify_phase.h"
#include "core/fault.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "dist/world.h"
#include "report/report_html.h"
#include "run_layout.h"

#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

static const tp_cfg_key document_keys[] = {
    {"document.features_per_sae", TP_CFG_INT, "32", TP_CFG_MIN(0), NULL, "live features documented per SAE in model_documentation.json (those of largest activation mass), besides every feature the verification tested; `transpolmo features query` lists them all"},
    {"document.description_bar", TP_CFG_FLOAT, "0.7", TP_CFG_IN(0, 1), NULL, "detection F1 a feature's description must reach to count as a description in the transparency score (docs/transparency.md)"},
    {"document.title", TP_CFG_STRING, "", TP_CFG_ANY, NULL, "title of the documentation (empty: \"<model> — model documentation\")"},
};
const tp_cfg_section document_section = TP_CFG_SECTION("document", document_keys);

tp_status document_settings_read(const tp_config *cfg, document_settings *out)
{
    out->features_per_sae = tp_config_int(cfg, "document.features_per_sae");
    out->description_bar = tp_config_float(cfg, "document.description_bar");
    out->title = tp_config_str(cfg, "document.title");
    return TP_OK;
}

static tp_status write_json(const char *run_dir, const char *artifact, const json_t *j)
{
    char path[TP_PATH_MAX];
    TP_CHECK(run_path(path, sizeof path, run_dir, artifact));
    TP_CHECK(fs_mkdir_parent(path));
    return fs_write_json(path, j);
}

/* The documentation describes what the store was captured from: a store whose
 * weights or corpus changed since (store_inputs.h) is refused, not documented. */
static tp_status check_store(const char *run_dir)
{
    char path[TP_PATH_MAX];
    TP_CHECK(run_path(path, sizeof path, run_dir, RUN_STORE));
    if (!fs_exists(path)) return TP_OK;
    tp_store *s = NULL;
    TP_CHECK(store_open_read(path, MPI_COMM_SELF, &s));
    tp_status st = store_inputs_check(s, path, MPI_COMM_SELF);
    if (st != TP_OK) {
        store_close_after_error(s);
        return st;
    }
    return store_close(s);
}

tp_status document_write(const char *run_dir, const document_settings *ds)
{
    json_t *doc = NULL, *summary = NULL;
    char path[TP_PATH_MAX];
    tp_status st;
    TP_CHECK(check_store(run_dir));
    TP_CHECK_GOTO(doc_build(run_dir, ds, &doc), st, done);
    TP_CHECK_GOTO(write_json(run_dir, RUN_DOCS_JSON, doc), st, done);
    TP_CHECK_GOTO(tp_fault("document", "file"), st, done);
    TP_CHECK_GOTO(run_path(path, sizeof path, run_dir, RUN_DOCS_MD), st, done);
    TP_CHECK_GOTO(doc_markdown_write(doc, path), st, done);
    TP_CHECK_GOTO(tp_fault("document", "file"), st, done);
    summary = doc_summary(doc);
    if (!summary) {
        st = tp_err(TP_ERR_INTERNAL, "document: the summary could not be made");
        goto done;
    }
    TP_CHECK_GOTO(write_json(run_dir, RUN_DOCS_SUMMARY_JSON, summary), st, done);
    TP_CHECK_GOTO(tp_fault("document", "file"), st, done);
    /* the HTML report last: it shows the score from summary.json */
    TP_CHECK_GOTO(report_html_write(run_dir, NULL), st, done);
    json_t *t = json_object_get(doc, "transparency");
    tp_log_info("document: transparency %.3f (features %.3f, circuits %.3f, layers %.3f) -> %s/%s",
                json_number_value(json_object_get(t, "score")),
                json_number_value(json_object_get(json_object_get(json_object_get(t, "dimensions"), "feature_coverage"), "value")),
                json_number_value(json_object_get(json_object_get(json_object_get(t, "dimensions"), "circuit_coverage"), "value")),
                json_number_value(json_object_get(json_object_get(json_object_get(t, "dimensions"), "layer_understanding"), "value")),
                run_dir, RUN_DOCS_DIR);
    st = TP_OK;
done:
    json_decref(doc);
    json_decref(summary);
    return st;
}

tp_status document_phase_run(const tp_config *cfg, const char *run_dir)
{
    document_settings ds;
    TP_CHECK(document_settings_read(cfg, &ds));
    return dist_agree(MPI_COMM_WORLD, dist_rank() == 0 ? document_write(run_dir, &ds) : TP_OK,
                      "document (writing the documentation)");
}

/* "transparency 0.23 (features 0.00 | circuits 0.00 | layers 0.33); 15 head classes, 3 circuit tasks; nothing verified" */
static void document_headline(const char *run_dir, char *buf, size_t n)
{
    json_t *s = run_load_json(run_dir, RUN_DOCS_SUMMARY_JSON);
    if (!s) return;
    json_t *t = json_object_get(s, "transparency"), *p = json_object_get(t, "profile"), *c = json_object_get(s, "counts");
    snprintf(buf, n, "transparency %.3f (features %.3f | circuits %.3f | layers %.3f; target %.2f); %lld head classes, "
             "%lld circuit tasks, %lld features documented; %s", json_number_value(json_object_get(t, "score")),
             json_number_value(json_object_get(p, "feature_coverage")), json_number_value(json_object_get(p, "circuit_coverage")),
             json_number_value(json_object_get(p, "layer_understanding")), json_number_value(json_object_get(t, "target")),
             (long long)json_integer_value(json_object_get(c, "head_classes")),
             (long long)json_integer_value(json_object_get(c, "circuit_tasks")),
             (long long)json_integer_value(json_object_get(c, "features_documented")),
             json_is_true(json_object_get(s, "verification_present")) ? "with the verification" :
             "nothing verified by intervention");
    json_decref(s);
}

/* results/verification.json is an input: its contents (or its absence) are part of the
 * resume hash, so the documentation follows a verification run whether or not the
 * verify phase is among the needs. */
static uint64_t document_inputs_hash(const tp_config *cfg)
{
    char dir[TP_PATH_MAX], path[TP_PATH_MAX];
    if (run_dir_of(dir, sizeof dir, tp_config_str(cfg, "run.out_dir"), tp_config_str(cfg, "run.name")) != TP_OK ||
        run_path(path, sizeof path, dir, RUN_VERIFICATION_JSON) != TP_OK)
        return 0;
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint64_t h = 14695981039346656037ULL;
    int c;
    while ((c = getc(f)) != EOF) h = (h ^ (unsigned char)c) * 1099511628211ULL;
    fclose(f);
    return h;
}

static const char *const document_outputs[] = {RUN_DOCS_JSON, RUN_DOCS_MD, RUN_DOCS_SUMMARY_JSON, RUN_DOCS_REPORT_HTML,
                                               NULL};
/* Everything above it (results/verification.json is also hashed as an input: a
 * `transpolmo verify` run by hand reruns the documentation). */
static const tp_phase *const document_needs[] = {&inspect_phase, &geometry_phase, &sae_phase, &circuits_phase,
                                                 &verify_phase, NULL};

static const char *const document_faults[] = {"file", NULL};
const tp_phase document_phase = {
    .name = "document",
    .help = "phase 6: the model documentation and its transparency score -> docs/findings/model_documentation.{json,md}, "
            "summary.json",
    .run = document_phase_run,
    .outputs = document_outputs,
    .config = &document_section,
    .reads = NULL,
    .needs = document_needs,
    .usage = "  reads results/<name>.json (results/verification.json when present) and the store's provenance;\n"
             "  `transpolmo query` answers questions from its JSON (docs/document.md)\n",
    .headline = document_headline,
    .inputs_hash = document_inputs_hash,
    .faults = document_faults,
};
