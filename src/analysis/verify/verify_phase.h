/* verify_phase.h — phase 7: do the run's findings hold up under intervention?
 * (docs/verify.md, "verify").
 *
 * `transpolmo verify` reads the run's SAE catalog (phase 4) and circuits (phase 5)
 * and writes results/verification.json:
 *   features  per SAE its top features (verify_features.h): ablated on their top
 *             contexts against random contexts, steered towards the tokens the
 *             catalog says they promote, and described by a rule scored on held-out
 *             contexts (describe.h)
 *   heads     each head of a class with a defining task (induction, previous-token)
 *             ablated on that task against the other heads of its layer
 *             (verify_heads.h)
 *   circuits  each task of the circuit library: its heads and their complement
 *             ablated (zero, mean, resample), faithfulness and completeness
 * Every number comes with its sample size and a bootstrap interval (core/bootstrap.h).
 * Prompts are split over the ranks and gathered on rank 0 (ablate.h), which writes
 * the file: the same JSON for any number of ranks. A run without SAEs (sae.skip, or
 * no catalog) still verifies heads and circuits and lists what it skipped and why.
 */
#ifndef TP_VERIFY_PHASE_H
#define TP_VERIFY_PHASE_H

#include "analysis/circuits/circuits_common.h"
#include "analysis/verify/intervention.h"
#include "core/config.h"
#include "core/error.h"
#include "phase.h"
#include "settings.h"

#include <jansson.h>
#include <stdint.h>

/* The verify.* section, typed. */
typedef struct {
    uint64_t seed;                 /* verify.seed */
    int bootstrap;                 /* verify.bootstrap */
    int64_t stat_docs;             /* verify.stat_docs */
    int features_per_sae;          /* verify.features.per_sae */
    int contexts;                  /* verify.features.contexts */
    int random_contexts;           /* verify.features.random_contexts */
    int context_before, context_after;   /* verify.features.context_before, _after */
    double steer;                  /* verify.features.steer: α = this × the feature's max activation */
    int promoted;                  /* verify.features.promoted_tokens */
    double min_precision;          /* verify.describe.min_precision */
    double min_f1, min_correlation;      /* verify.describe.min_f1, .min_correlation */
    int head_prompts, head_length; /* verify.heads.prompts, .length */
    iv_mode head_mode;             /* verify.heads.mode */
    int circuit_pairs;             /* verify.circuits.pairs */
    iv_mode circuit_mode;          /* verify.circuits.mode */
    double min_faithfulness, min_completeness;   /* verify.circuits.faithfulness, .completeness */
} verify_settings;

extern const tp_cfg_section verify_section;
extern const tp_phase verify_phase;
tp_status verify_settings_read(const tp_config *cfg, verify_settings *out);
json_t *verify_settings_json(const verify_settings *s);
tp_status verify_phase_run(const tp_config *cfg, const char *run_dir);

/* What the steps share: the model (circuits_ctx: model, tokenizer, BOS), the settings,
 * the statistics documents of mean/resample ablation, and the list of what was
 * skipped. */
typedef struct {
    const tp_settings *set;
    const verify_settings *vs;
    const circuits_ctx *cx;
    const char *run_dir;
    tp_dataset stats;              /* held-out corpus documents (verify.stat_docs) */
    const char *stats_source;      /* in words: which documents */
    tp_forward *stats_fwd;         /* one forward pass for every statistics collection */
    iv_set *head_stats;            /* every head, statistics collected once (iv_share_statistics) */
    json_t *skipped;               /* [{"what", "why"}] */
} verify_ctx;

/* An intervention on targets[0..n) under `mode` (α: IV_STEER), its statistics
 * collected on vx->stats when the mode needs them (sets of heads share one
 * collection over every head of the model, made at the first need). Collective. */
tp_status verify_intervention(verify_ctx *vx, const iv_target *targets, int n, iv_mode mode, double alpha,
                              iv_set **out);
/* Appends {"what", "why"} to vx->skipped and logs it (rank 0). */
void verify_skip(verify_ctx *vx, const char *what, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The bootstrap estimate of the mean of x[0..n) as {"mean", "ci95_low", "ci95_high",
 * "n"} (seed: verify.seed + salt). */
json_t *verify_ci(const verify_settings *vs, const double *x, size_t n, uint64_t salt);
/* Its numbers (NaN for null). */
void verify_ci_get(const json_t *ci, double *mean, double *lo, double *hi);

#endif
