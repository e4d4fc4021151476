/* document_phase.h — phase 6: the model documentation (docs/document.md).
 *
 * Rank 0 reads what every earlier phase left in the run directory (the results/ JSON files,
 * the store's provenance attributes, results/verification.json when the verify phase
 * ran) and writes, atomically:
 *   docs/findings/model_documentation.json   the documentation (doc_build.h; schema
 *                                            docs/schema/model_documentation.schema.json)
 *   docs/findings/model_documentation.md     the same as a readable report (doc_markdown.c)
 *   docs/findings/summary.json               quick statistics and the transparency score
 * The other ranks wait for rank 0's verdict (dist_agree). Its config section is
 * `document.*`; its resume hash also covers results/verification.json (inputs_hash),
 * so a verification run after the documentation reruns it.
 */
#ifndef TP_DOCUMENT_PHASE_H
#define TP_DOCUMENT_PHASE_H

#include "core/config.h"
#include "core/error.h"
#include "phase.h"
#include "report/doc_build.h"

extern const tp_cfg_section document_section;
extern const tp_phase document_phase;
tp_status document_settings_read(const tp_config *cfg, document_settings *out);
tp_status document_phase_run(const tp_config *cfg, const char *run_dir);
/* Rank 0's work: the three files from the run directory. */
tp_status document_write(const char *run_dir, const document_settings *ds);

#endif
