/* sae_phase.h — phase 4: sparse autoencoders trained data-parallel on the store's
 * rows, evaluated, exported in the SAELens layout, and catalogued (docs/sae.md).
 *
 * One SAE per selected capture point (sae.hooks); all of them train in one pass over
 * the rows: row_stream.h gives the same shuffled global batches for any number of
 * ranks, each rank computes the gradient of its share of a batch, one MPI_Allreduce
 * sums it, and every rank takes the same Adam step (sae.h). Rank 0 writes.
 *
 * Resume: every sae.checkpoint_every steps rank 0 writes each SAE's full state
 * (<dir>/checkpoint-<step>.safetensors: weights, Adam moments, step, RNG, dead-latent
 * counters) and then results/sae_checkpoint.json naming that step and the data
 * position; a rerun with the same configuration continues from there and ends at the
 * weights an uninterrupted run reaches.
 *
 * Outputs: results/sae_layer_<L>/{cfg.json, sae_weights.safetensors} (sae_export.h),
 * results/sae_summary.json (training curve, evaluation on held-out rows: FVU,
 * explained variance, L0, dead and dense latents; CE-loss recovered and KL on held-out
 * text), results/features_catalog.json.
 */
#ifndef TP_SAE_PHASE_H
#define TP_SAE_PHASE_H

#include "core/config.h"
#include "core/error.h"

tp_status sae_phase_run(const tp_config *cfg, const char *run_dir);

#endif
