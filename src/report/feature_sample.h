/* feature_sample.h — activations of chosen SAE features over a sample of the store's
 * rows, for the report's histograms.
 *
 * The catalog keeps a feature's density, mean, max, top contexts and a handful of
 * quantile samples, not its distribution. The report draws one from the run itself:
 * the SAE export results/sae_layer_<L>/ (SAELens layout, sae_export.h) applied, by SAELens'
 * rule, to up to max_rows unmasked rows of activations.h5 taken in 64 evenly spaced
 * contiguous blocks (deterministic; every row when the store has no more than
 * max_rows). Activations are in the catalog's units (the export folds the input
 * scale in). Rank 0 reads the store alone (MPI_COMM_SELF).
 */
#ifndef TP_REPORT_FEATURE_SAMPLE_H
#define TP_REPORT_FEATURE_SAMPLE_H

#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t rows;          /* unmasked rows encoded */
    int n;                 /* features asked */
    float **fired;         /* [n]: the activations > 0 of feature i */
    size_t *n_fired;       /* [n] */
} feature_sample;

/* The activations of features ids[0..n) of the SAE on capture point `hook`. An
 * error (no store, no SAE export, a capture point the store lacks or has not
 * completed) leaves *out empty and says why. */
tp_status feature_sample_read(const char *run_dir, const char *hook, const int *ids, int n, int64_t max_rows,
                              feature_sample *out);
void feature_sample_free(feature_sample *s);

#endif
