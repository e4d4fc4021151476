/* run_layout.h — every artifact of a run directory, named once.
 *
 * A run directory (`--out DIR`, default runs/<run.name>) holds what each phase
 * leaves for the next (DESIGN.md, "The pipeline"). Nothing else spells these
 * paths: phases, commands and tests name an artifact by its macro, and build its
 * path with run_path() (an error naming the path when it would not fit, never a
 * cut name).
 */
#ifndef TP_RUN_LAYOUT_H
#define TP_RUN_LAYOUT_H

#include "core/error.h"
#include "core/fsutil.h"

#include <jansson.h>
#include <stddef.h>

#define RUN_DEFAULT_PARENT "runs"                 /* runs/<run.name> */
/* the run as a whole */
#define RUN_CONFIG_YAML "config.yaml"             /* effective configuration */
#define RUN_VERSIONS_JSON "versions.json"         /* library versions, kernels, ranks */
#define RUN_PHASES_DIR ".phases"                  /* per phase: <phase>.done (the resume hash),
                                                     <phase>.config.yaml and <phase>.versions.json
                                                     (what it ran with) */
#define RUN_RESULTS_DIR "results"
/* phase 1 inspect */
#define RUN_ARCHITECTURE_JSON "results/architecture.json"
/* phase 2 capture */
#define RUN_STORE "activations.h5"
#define RUN_CAPTURE_SUMMARY_JSON "results/capture_summary.json"
/* phase 3 geometry */
#define RUN_GEOMETRY_JSON "results/geometric_analysis.json"
/* phase 4 sae: one SAELens folder per SAE (run_sae_dir), its training state under
 * checkpoints/sae/<folder name>/ (run_sae_checkpoint_dir), plus these */
#define RUN_SAE_SUMMARY_JSON "results/sae_summary.json"
#define RUN_SAE_CHECKPOINT_JSON "checkpoints/sae/checkpoint.json"   /* names the step to resume */
#define RUN_FEATURES_CATALOG_JSON "results/features_catalog.json"
#define RUN_FEATURES_INDEX "results/features_catalog.index.tsv"   /* features query's index */
#define RUN_CHECKPOINTS_DIR "checkpoints"                          /* training state, outside results/ */
/* phase 5 circuits: the phase writes the head scores and the weight circuits; its
 * subcommands write these two and the per-prompt files below */
#define RUN_CIRCUITS_DIR "results/circuits"
#define RUN_CIRCUITS_HEAD_SCORES_JSON "results/circuits/head_scores.json"
#define RUN_CIRCUITS_WEIGHTS_JSON "results/circuits/weight_circuits.json"
#define RUN_CIRCUITS_TRACE_DIR "results/circuits/trace"   /* <id>.json and <id>/layer_<L>.svg */
#define RUN_CIRCUITS_DLA_PREFIX "results/circuits/dla_"   /* dla_<id>.json */
#define RUN_CIRCUITS_ATTRIBUTE_PREFIX "results/circuits/attribute_"   /* attribute_<id>.json (every edge) */
#define RUN_CIRCUITS_PATCH_PREFIX "results/circuits/patch_"   /* patch_<name>.json (circuits patch) */
#define RUN_CIRCUITS_LIBRARY_JSON "results/circuits/library.json"   /* the circuit library (library.h) */
#define RUN_CIRCUITS_LIBRARY_GRAPH "library_"   /* + task name: its graph <dir>/library_<name>.json/.dot/.svg */
/* A circuit graph: RUN_CIRCUITS_DIR/<name>.json, .dot, .svg (circuit_graph.h cg_write) */
/* phase 7 verify: its output, which the document phase reads when present */
#define RUN_VERIFICATION_JSON "results/verification.json"
/* phase 6 document (rank 0): the documentation and what is made from it */
#define RUN_DOCS_DIR "docs/findings"
#define RUN_DOCS_JSON "docs/findings/model_documentation.json"   /* the documentation (schema in the repository:
                                                                    docs/schema/model_documentation.schema.json) */
#define RUN_DOCS_MD "docs/findings/model_documentation.md"       /* the same as a report */
#define RUN_DOCS_SUMMARY_JSON "docs/findings/summary.json"       /* quick statistics and the transparency score */
#define RUN_DOCS_REPORT_HTML "docs/findings/report.html"         /* report_html_write (report/report_html.h) */
#define RUN_DOCS_FIGURES_DIR "docs/findings/figures"
#define RUN_DOCS_SCREENSHOT "docs/findings/report.png"          /* headless Chromium's view of the report (tests) */
/* commands that are not phases */
#define RUN_EVAL_JSON "results/eval.json"
#define RUN_ABLATIONS_DIR "results/ablations"       /* ablate: <name>.json */
#define RUN_FORWARD_DIR "forward"                 /* forward --dump default */
/* submit (cmd/submit_cmd.h): the job chain, <k>-<phase>.sbatch, chain.sh,
 * submitted.tsv (phase, job id, script) and logs/<k>-<phase>-<job id>.out */
#define RUN_JOBS_DIR "jobs"
#define RUN_JOBS_CONFIG_YAML "jobs/config.yaml"   /* the configuration every job runs with */

/* buf = run_dir/artifact. */
tp_status run_path(char *buf, size_t n, const char *run_dir, const char *artifact);
/* buf = run_dir/.phases/<phase>.done */
tp_status run_marker_path(char *buf, size_t n, const char *run_dir, const char *phase);
/* buf = run_dir/.phases/<phase><suffix> (".config.yaml", ".versions.json") */
tp_status run_phase_file(char *buf, size_t n, const char *run_dir, const char *phase, const char *suffix);
/* The folder of the SAE trained on capture point `hook`: results/sae_layer_<L> for
 * blocks.L.hook_resid_post, results/sae_layer_<L>_<point> for other points of a
 * layer ('.' as '_'), results/sae_<name> for layer-less points. */
tp_status run_sae_dir(char *buf, size_t n, const char *run_dir, const char *hook);
/* A run artifact parsed as JSON (NULL when missing or unreadable: for headlines
 * and summaries, which skip what they cannot read). json_decref it. */
json_t *run_load_json(const char *run_dir, const char *artifact);

/* Where the SAE of `hook` keeps its training checkpoints: checkpoints/sae/<the name
 * of its run_sae_dir folder>. */
tp_status run_sae_checkpoint_dir(char *buf, size_t n, const char *run_dir, const char *hook);

/* The run directory of a configuration: out_dir, or runs/<run_name>. */
tp_status run_dir_of(char *buf, size_t n, const char *out_dir, const char *run_name);

#endif
