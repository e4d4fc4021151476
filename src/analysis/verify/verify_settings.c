/* verify_settings.c — the verify.* section and its typed reading (verify_phase.h). */
#include "analysis/verify/ablate.h"
#include "analysis/verify/verify_phase.h"

#include <math.h>
#include <string.h>

static const tp_cfg_key verify_keys[] = {
    {"verify.seed", TP_CFG_INT, "7", TP_CFG_MIN(0), NULL, "seed of the random contexts, the repeated random-token prompts, the statistics documents, resample ablation and every bootstrap"},
    {"verify.bootstrap", TP_CFG_INT, "1000", TP_CFG_IN(10, 1000000), NULL, "bootstrap resamples behind every 95% interval"},
    {"verify.stat_docs", TP_CFG_INT, "16", TP_CFG_IN(1, 1000000), NULL, "held-out corpus documents (data.*, outside the run's sample) whose clean activations are the statistics of mean and resample ablation"},
    {"verify.features.per_sae", TP_CFG_INT, "8", TP_CFG_IN(0, 100000), NULL, "features verified per SAE: the catalog's detailed features of largest activation mass (0: none)"},
    {"verify.features.contexts", TP_CFG_INT, "12", TP_CFG_IN(2, 100000), NULL, "top-activating contexts of the catalog used per feature (at most the catalog's top_k)"},
    {"verify.features.random_contexts", TP_CFG_INT, "24", TP_CFG_IN(2, 100000), NULL, "random store windows per SAE: the baseline of the ablation, the contexts steered, and the negatives of the description's scoring"},
    {"verify.features.context_before", TP_CFG_INT, "12", TP_CFG_IN(0, 4096), NULL, "tokens of a context window before its activating (or drawn) token, within its sequence"},
    {"verify.features.context_after", TP_CFG_INT, "4", TP_CFG_IN(1, 4096), NULL, "tokens of a context window after its activating (or drawn) token, within its sequence"},
    {"verify.features.steer", TP_CFG_FLOAT, "2.0", TP_CFG_MIN(0), NULL, "steering: x += alpha * W_dec[f] at every position with alpha = this times the feature's max activation in the catalog"},
    {"verify.features.promoted_tokens", TP_CFG_INT, "5", TP_CFG_IN(1, 1000), NULL, "the catalog's top promoted tokens whose log-probabilities steering must raise"},
    {"verify.describe.min_precision", TP_CFG_FLOAT, "0.5", TP_CFG_IN(0, 1), NULL, "a rule keeps a key (token, bigram, domain) when the feature fires on at least this share of its training positions"},
    {"verify.describe.min_f1", TP_CFG_FLOAT, "0.6", TP_CFG_IN(0, 1), NULL, "a description passes when its held-out detection F1 is at least this ..."},
    {"verify.describe.min_correlation", TP_CFG_FLOAT, "0.3", TP_CFG_IN(-1, 1), NULL, "... and its held-out simulation correlation at least this"},
    {"verify.heads.prompts", TP_CFG_INT, "16", TP_CFG_IN(2, 100000), NULL, "repeated random-token prompts [BOS, r1..rL, r1..rL] of the induction task"},
    {"verify.heads.length", TP_CFG_INT, "16", TP_CFG_IN(2, 1048576), NULL, "L: random tokens in each half of an induction-task prompt"},
    {"verify.heads.mode", TP_CFG_STRING, "mean", TP_CFG_ANY, "zero|mean|resample", "how a head is ablated when its class is verified"},
    {"verify.circuits.pairs", TP_CFG_INT, "12", TP_CFG_IN(1, 100000), NULL, "prompt pairs drawn for a library task with a generator (tasks with explicit pairs use theirs)"},
    {"verify.circuits.mode", TP_CFG_STRING, "mean", TP_CFG_ANY, "zero|mean|resample", "the ablation behind a circuit's headline faithfulness and completeness (every mode is reported)"},
    {"verify.circuits.faithfulness", TP_CFG_FLOAT, "0.5", TP_CFG_MIN(-1000000), NULL, "a circuit is verified when its faithfulness (the logit difference kept with its complement ablated, as a share of the clean one) is at least this ..."},
    {"verify.circuits.completeness", TP_CFG_FLOAT, "0.5", TP_CFG_MIN(-1000000), NULL, "... and its completeness (the share removed with the circuit's heads ablated) at least this"},
};
const tp_cfg_section verify_section = TP_CFG_SECTION("verify", verify_keys);

tp_status verify_settings_read(const tp_config *cfg, verify_settings *s)
{
    memset(s, 0, sizeof *s);
    s->seed = (uint64_t)tp_config_int(cfg, "verify.seed");
    s->bootstrap = (int)tp_config_int(cfg, "verify.bootstrap");
    s->stat_docs = tp_config_int(cfg, "verify.stat_docs");
    s->features_per_sae = (int)tp_config_int(cfg, "verify.features.per_sae");
    s->contexts = (int)tp_config_int(cfg, "verify.features.contexts");
    s->random_contexts = (int)tp_config_int(cfg, "verify.features.random_contexts");
    s->context_before = (int)tp_config_int(cfg, "verify.features.context_before");
    s->context_after = (int)tp_config_int(cfg, "verify.features.context_after");
    s->steer = tp_config_float(cfg, "verify.features.steer");
    s->promoted = (int)tp_config_int(cfg, "verify.features.promoted_tokens");
    s->min_precision = tp_config_float(cfg, "verify.describe.min_precision");
    s->min_f1 = tp_config_float(cfg, "verify.describe.min_f1");
    s->min_correlation = tp_config_float(cfg, "verify.describe.min_correlation");
    s->head_prompts = (int)tp_config_int(cfg, "verify.heads.prompts");
    s->head_length = (int)tp_config_int(cfg, "verify.heads.length");
    s->circuit_pairs = (int)tp_config_int(cfg, "verify.circuits.pairs");
    s->min_faithfulness = tp_config_float(cfg, "verify.circuits.faithfulness");
    s->min_completeness = tp_config_float(cfg, "verify.circuits.completeness");
    TP_CHECK(iv_mode_parse(tp_config_str(cfg, "verify.heads.mode"), &s->head_mode));
    return iv_mode_parse(tp_config_str(cfg, "verify.circuits.mode"), &s->circuit_mode);
}

json_t *verify_settings_json(const verify_settings *s)
{
    return json_pack("{s:I, s:i, s:I, s:{s:i, s:i, s:i, s:i, s:i, s:f, s:i}, s:{s:f, s:f, s:f}, s:{s:i, s:i, s:s},"
                     " s:{s:i, s:s, s:f, s:f}}",
        "seed", (json_int_t)s->seed, "bootstrap", s->bootstrap, "stat_docs", (json_int_t)s->stat_docs, "features",
        "per_sae", s->features_per_sae, "contexts", s->contexts, "random_contexts", s->random_contexts,
        "context_before", s->context_before, "context_after", s->context_after, "steer", s->steer, "promoted_tokens",
        s->promoted, "describe", "min_precision", s->min_precision, "min_f1", s->min_f1, "min_correlation",
        s->min_correlation, "heads", "prompts", s->head_prompts, "length", s->head_length, "mode",
        iv_mode_name(s->head_mode), "circuits", "pairs", s->circuit_pairs, "mode", iv_mode_name(s->circuit_mode),
        "faithfulness", s->min_faithfulness, "completeness", s->min_completeness);
}

json_t *verify_ci(const verify_settings *vs, const double *x, size_t n, uint64_t salt)
{
    return ablate_ci_json(x, n, 1, 0, vs->bootstrap, vs->seed + salt);
}

static double num_or_nan(const json_t *v) { return json_is_number(v) ? json_number_value(v) : NAN; }

void verify_ci_get(const json_t *ci, double *mean, double *lo, double *hi)
{
    *mean = num_or_nan(json_object_get(ci, "mean"));
    if (lo) *lo = num_or_nan(json_object_get(ci, "ci95_low"));
    if (hi) *hi = num_or_nan(json_object_get(ci, "ci95_high"));
}
