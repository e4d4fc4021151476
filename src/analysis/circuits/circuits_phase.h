/* circuits_phase.h — phase 5: which heads do what, and which paths carry a
 * prediction (docs/circuits.md).
 *
 * `transpolmo circuits` (and the pipeline's phase) writes the head scores
 * (head_scores.h) and the weight circuits (weight_circuits.h) of the run's model.
 * `transpolmo circuits <sub> [options]` runs one piece from the table of
 * subcommands in circuits_phase.c: trace (attention of one prompt, trace.h),
 * heads, weights, dla (direct logit attribution, dla.h). Rank 0 writes every file;
 * work done per prompt is split over the ranks and gathered on rank 0 in prompt
 * order, so the JSON does not depend on the number of ranks.
 */
#ifndef TP_CIRCUITS_PHASE_H
#define TP_CIRCUITS_PHASE_H

#include "core/config.h"
#include "core/error.h"
#include "phase.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

/* Head classes with a threshold (head_scores.h: HS_CLASSES of them). */
#define CIRCUITS_NCLASSES 6

/* The circuits.* section, typed. */
typedef struct {
    uint64_t seed;                      /* circuits.seed */
    bool prepend_bos;                   /* circuits.prepend_bos */
    const char *prompts;                /* circuits.heads.prompts ("" = held-out corpus) */
    int64_t corpus_docs;                /* circuits.heads.corpus_docs */
    int64_t synthetic, synthetic_len;   /* circuits.heads.synthetic, .synthetic_len */
    int64_t null_shuffles;              /* circuits.heads.null_shuffles */
    int64_t local_window;               /* circuits.heads.local_window */
    int64_t examples;                   /* circuits.heads.examples */
    double null_margin;                 /* circuits.heads.null_margin */
    double threshold[CIRCUITS_NCLASSES];   /* circuits.heads.threshold.<class>, head_scores.h order */
    int64_t baseline_samples;           /* circuits.weights.baseline_samples */
    int64_t trace_top;                  /* circuits.trace.top */
    const char *trace_prompt;           /* circuits.trace.prompt ("" = none) */
    double faithfulness;                /* circuits.discover.faithfulness */
    int64_t discover_docs, discover_tries;   /* circuits.discover.corpus_docs, .resample_tries */
    int sae_features;                   /* circuits.discover.sae_features */
    const char *library_dir;            /* circuits.library.dir ("" = no library) */
    double library_margin;              /* circuits.library.margin */
    int64_t library_pairs;              /* circuits.library.pairs */
} circuits_settings;

extern const tp_cfg_section circuits_section;
extern const tp_phase circuits_phase;
tp_status circuits_settings_read(const tp_config *cfg, circuits_settings *out);
/* The settings as JSON (every file says what it ran with). */
json_t *circuits_settings_json(const circuits_settings *s);
tp_status circuits_phase_run(const tp_config *cfg, const char *run_dir);

/* The subcommands (circuits_cmd.c): options parsed from the command line. */
struct tp_cli;
tp_status circuits_trace_cmd(struct tp_cli *cli);
tp_status circuits_heads_cmd(struct tp_cli *cli);
tp_status circuits_weights_cmd(struct tp_cli *cli);
tp_status circuits_dla_cmd(struct tp_cli *cli);
tp_status circuits_attribute_cmd(struct tp_cli *cli);
tp_status circuits_discover_cmd(struct tp_cli *cli);

#endif
