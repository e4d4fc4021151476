/* verify_heads.h — do the head classes and the circuits of phase 5 hold under ablation?
 *
 * Head classes (results/circuits/head_scores.json). A class is verified on the task
 * that defines it; induction and previous-token heads share one (a previous-token
 * head feeds the induction head through K-composition, so it acts on induction
 * through it):
 *   induction task  P prompts [BOS, r1..rL, r1..rL] of seeded random tokens
 *                   (verify.heads.prompts, .length; prompts.h: prompts_add_synthetic),
 *                   metric = the prompt's mean next-token cross-entropy (ablate.h ce)
 * For every layer with such a head, each head h of the layer is ablated alone
 * (verify.heads.mode) and gives per prompt p the effect e_h(p) = ΔCE (ablate.h
 * delta_ce). For a head h of class c:
 *   effect      e_h(p)
 *   baseline    b(p) = the mean of e_g(p) over the heads g of the same layer that do
 *               not have class c (the "random heads of the same layer")
 *   difference  e_h(p) − b(p)
 * each as a mean over the P prompts with its 95 % bootstrap interval (the prompts are
 * the units). Verified: the interval of the difference lies above 0 (ablating the head
 * hurts the task more than ablating the other heads of its layer does). Classes
 * without a defining task (bos, self, local, duplicate_token) are listed as skipped.
 *
 * Circuits (results/circuits/library.json and each task's kept graph
 * library_<name>.json). The task's pairs (a generator task draws
 * verify.circuits.pairs of them; explicit pairs as written) give per clean prompt i
 * LD_i = ℓ[target] − ℓ[distractor] at its last position (ℓ[target] alone without a
 * distractor), LD̄ = mean_i LD_i. With C = the heads of the kept circuit and C̄ =
 * every other head of the model, and LD_i(S) the same with the heads S ablated
 * (LD_i + Δℓ[target] − Δℓ[distractor], ablate.h delta_logit):
 *   faithfulness_i = LD_i(C̄) / LD̄          (what the circuit alone keeps; Wang et
 *                                            al. 2023 F(C)/F(M))
 *   completeness_i = 1 − LD_i(C) / LD̄      (what removing the circuit takes away)
 *   effect of head h ∈ C: (LD_i − LD_i({h})) / LD̄
 * each a mean over the pairs with its bootstrap interval (LD̄ held fixed), for zero,
 * mean and resample ablation. Verified: the task can be done (library can_do) and,
 * under verify.circuits.mode, faithfulness ≥ verify.circuits.faithfulness and
 * completeness ≥ verify.circuits.completeness. MLPs are not ablated: the circuit's
 * heads are what is tested.
 */
#ifndef TP_VERIFY_HEADS_H
#define TP_VERIFY_HEADS_H

#include "analysis/verify/verify_phase.h"

/* The "heads" array. Collective; rank 0 gets the array, the others NULL. */
tp_status verify_heads(verify_ctx *vx, json_t **out);
/* The "circuits" array. Collective; rank 0 gets it, the others NULL. */
tp_status verify_circuits(verify_ctx *vx, json_t **out);

#endif
