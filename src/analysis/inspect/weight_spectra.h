/* weight_spectra.h — singular-value spectra of weight matrices (architectural
 * constraints of the seed): the spectrum, effective rank and stable rank of a block
 * of a stored matrix (a head's slice of W_Q, a whole MLP matrix, ...).
 *
 * effective rank = exp(H(p)), p_i = s_i / sum s  (Roy & Vetterli 2007)
 * stable rank    = ||W||_F^2 / s_max^2
 * Singular values by LAPACK dgesdd (values only) on an f64 copy of the block.
 */
#ifndef TP_WEIGHT_SPECTRA_H
#define TP_WEIGHT_SPECTRA_H

#include "core/error.h"
#include "model/model.h"

typedef struct {
    double *sv;              /* descending, n values, malloc'ed */
    int n;
    double frobenius, spectral, effective_rank, stable_rank;
} tp_spectrum;

/* Spectrum of W[r0:r0+nr, c0:c0+nc]. */
tp_status spectrum_of_block(const tp_mat *W, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                            tp_spectrum *out);
/* Effective and stable rank from given singular values (descending). */
void spectrum_ranks(tp_spectrum *s);
void spectrum_free(tp_spectrum *s);
/* Frobenius norm of a whole matrix in f64. */
double mat_frobenius(const tp_mat *W);

#endif
