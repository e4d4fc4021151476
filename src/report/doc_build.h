/* doc_build.h — the model documentation as one JSON document, built on rank 0 from
 * the run's results (docs/document.md): what each phase measured, in the words and
 * numbers of the run's own files, every claim with the file and JSON pointer
 * (RFC 6901) of the measurement behind it, the verification when
 * results/verification.json is there, and the transparency score.
 *
 * doc_build reads every input once (doc_inputs_load) and hands the parsed files to
 * one builder per section: doc_provenance (doc_build.c), doc_architecture and
 * doc_geometry (doc_model.c), doc_features (doc_features.c), doc_heads,
 * doc_circuits and doc_verification (doc_circuits.c), doc_transparency
 * (doc_score.c). A missing input leaves its section with "present": false and a note
 * saying which file is missing; only results/architecture.json is required.
 * Verified flags: true / false when results/verification.json tested the item, null
 * when it did not (or when there is no verification at all).
 */
#ifndef TP_DOC_BUILD_H
#define TP_DOC_BUILD_H

#include "core/error.h"

#include <jansson.h>
#include <stdint.h>

#define DOC_SCHEMA "transpolmo.model_documentation/1"
#define DOC_SUMMARY_SCHEMA "transpolmo.documentation_summary/1"

/* The document.* settings, typed (document_phase.c reads them). */
typedef struct {
    int64_t features_per_sae;   /* document.features_per_sae: live features documented per SAE */
    double description_bar;     /* document.description_bar: detection F1 a description must reach */
    const char *title;          /* document.title ("" = "<model> — model documentation") */
} document_settings;

/* Every file the documentation rests on, parsed (NULL: absent or unreadable). */
typedef struct {
    const char *run_dir;
    json_t *architecture, *geometry, *sae_summary, *catalog, *head_scores, *weights, *library, *verification,
        *versions, *capture_summary;
    json_t *read;     /* [{file, present, bytes, fnv1a64}]: provenance of every input */
} doc_inputs;

tp_status doc_inputs_load(const char *run_dir, doc_inputs *in);
void doc_inputs_free(doc_inputs *in);

/* The whole document (a new reference). */
tp_status doc_build(const char *run_dir, const document_settings *ds, json_t **out);

/* summary.json's object from the document (a new reference). */
json_t *doc_summary(const json_t *doc);

/* Markdown of the document, written atomically to path (doc_markdown.c). */
tp_status doc_markdown_write(const json_t *doc, const char *path);

/* ---- helpers the section builders share ---- */

/* {"file": file, "pointer": <printf of fmt>} */
json_t *doc_ev(const char *file, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A number, or NaN when missing or not a number. */
double doc_num(const json_t *obj, const char *key);
/* json_real(v), or null when v is not finite. */
json_t *doc_real(double v);
/* Appends {id, section, statement, verified, evidence} to claims; verified and
 * evidence are stolen (verified NULL: null). */
void doc_claim(json_t *claims, const char *section, json_t *verified, json_t *evidence, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* "L<l>H<h>" */
void doc_head_name(char *buf, size_t n, int layer, int head);
/* A head named as the verify phase, the circuits graphs or a user may name it
 * ("a1.h3", "L1H3", "1.3", {"layer", "head"}): 1 and its layer and head, else 0. */
int doc_parse_head(const json_t *v, int *layer, int *head);

/* Sections (each a new reference; claims gets the section's claims). */
json_t *doc_provenance(const doc_inputs *in);
json_t *doc_architecture(const doc_inputs *in, json_t *claims);
json_t *doc_geometry(const doc_inputs *in, json_t *claims);
json_t *doc_features(const doc_inputs *in, const document_settings *ds, json_t *claims);
json_t *doc_heads(const doc_inputs *in, json_t *claims);
json_t *doc_circuits(const doc_inputs *in, json_t *claims);
json_t *doc_verification(const doc_inputs *in);
/* The score from the sections already in doc (transparency.h). */
json_t *doc_transparency(const json_t *doc, const document_settings *ds);

#endif
