/* report_html.h — the run's findings as one self-contained HTML page.
 *
 * report_html_write reads what the run directory holds — results/architecture.json,
 * geometric_analysis.json, sae_summary.json, features_catalog.json (+ the store and
 * the SAE exports for activation histograms), circuits/head_scores.json,
 * circuits/trace/<id>.json, circuits/library.json and the circuit graphs' SVGs,
 * results/verification.json, docs/findings/summary.json (the transparency score) —
 * and writes one page: the score, PCA spectra and intrinsic dimension per layer, SAE
 * quality, a feature table and feature cards, the head-class grid and head table,
 * attention heat maps, circuit graphs, the verification results. A section whose
 * input is missing says "not run" and which command makes it; nothing missing is an
 * error. Figures are PNGs drawn with cairo (figures.h) and embedded as base64 data:
 * URIs, circuit graphs as inline SVG, CSS and the small script that sorts and
 * filters the tables inline: the page needs no network and no server. Every text
 * from the model or corpus is escaped (html.h). Written atomically (fs_write_atomic).
 * Rank 0 only (the caller's rank check); it opens the store with MPI_COMM_SELF.
 */
#ifndef TP_REPORT_HTML_WRITE_H
#define TP_REPORT_HTML_WRITE_H

#include "core/error.h"

/* out_path NULL: <run_dir>/docs/findings/report.html (RUN_DOCS_REPORT_HTML). */
tp_status report_html_write(const char *run_dir, const char *out_path);

#endif
