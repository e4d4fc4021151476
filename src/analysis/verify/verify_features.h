/* verify_features.h — do the catalog's features do what it says? (phase 7)
 *
 * For each SAE of results/features_catalog.json, its verify.features.per_sae detailed
 * features of largest activation mass (ties: lower id). Contexts are windows of the
 * activation store: for an anchor row r, the rows of r's sequence from
 * r − context_before to r + context_after (clipped to the sequence), read from
 * /tokens with the true activation a_f(t) of the feature at each row (the store's
 * activations at the SAE's hook through the SAE's export, SAELens' rule; the store
 * computed them with the whole sequence before them). Anchors:
 *   top       the catalog's top_contexts of the feature (first verify.features.contexts)
 *   quantile  its quantile_samples
 *   random    verify.features.random_contexts unmasked rows drawn uniformly by
 *             verify.seed (one set per SAE, shared by its features)
 *
 * Ablation (intervention.h, mode zero: a_f set to 0 in the spliced forward pass on the
 * window alone; ablate.h): per window ΔCE and KL (the mean over its positions). With
 * the windows as units, mean and 95 % bootstrap interval of each on the top windows
 * and on the random ones. Passes: KL on top > ci95_high of KL on random (the effect
 * where the feature fires is beyond what it does on random text).
 * Steering: x += α·W_dec[f] at every position of each random window, α =
 * verify.features.steer × the feature's max activation; per window the mean over the
 * first verify.features.promoted_tokens of the catalog's `promotes` of Δ log p(token)
 * at the last position (and Δ logit). Passes: ci95_low of the mean Δ log p > 0
 * (the promoted tokens rise). Without `promotes` in the catalog (no logit attribution)
 * steering is null and the ablation alone decides.
 * Verified: the ablation passes and the steering passes (or is null).
 *
 * Description (describe.h): train = the even-indexed top and quantile windows and the
 * first half of the random ones, held out = the odd-indexed ones and the second half.
 * The rule is fitted on train (desc_choose, verify.describe.min_precision) and scored on
 * the held-out windows: detection (accuracy, precision, recall, F1 over windows) and
 * simulation (Pearson r over their tokens). Passes (the feature is "described"):
 * F1 ≥ verify.describe.min_f1 and r ≥ verify.describe.min_correlation.
 */
#ifndef TP_VERIFY_FEATURES_H
#define TP_VERIFY_FEATURES_H

#include "analysis/verify/verify_phase.h"

/* The "features" array (one object per SAE). A run without a catalog or store adds
 * a skip and gives an empty array. Collective; rank 0 gets the array, others NULL. */
tp_status verify_features(verify_ctx *vx, json_t **out);

#endif
