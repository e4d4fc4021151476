/* pca.h — distributed PCA of activation rows (phase 3).
 *
 * Every rank holds its own rows (row-major [n_local, d] f32, disjoint across ranks,
 * n_local may be 0). Two methods, same outputs:
 *
 *   cov  Each rank accumulates, in f64 over row blocks (dsyrk), its column sums and
 *        the Gram matrix of its rows shifted by the first row it saw; the
 *        per-rank sums of squares are merged about the global mean (Chan, Golub &
 *        LeVeque 1979), which equals (XᵀX − n·μμᵀ) without its cancellation when
 *        the mean is large (LLM residual streams have a few huge-mean channels).
 *        Covariance = that / (n − 1), reduced with MPI_Allreduce, laid out
 *        block-cyclically on a BLACS grid, eigendecomposed by ScaLAPACK pdsyevd
 *        (on a single rank without a given grid: LAPACK dsyevd, faster there).
 *        The incremental API (pca_accum_*) lets a caller stream row blocks.
 *        With gram = f32 (geometry.pca.gram) the products run in f32 at twice the
 *        f64 rate: the shift is the mean of the rank's first PCA_F32_BLOCK_ROWS
 *        rows rounded to f32, so x − shift is exact in f64 and small: the large
 *        means never enter an f32 product. Its f32 rounding is multiplied
 *        PCA_F32_BLOCK_ROWS rows at a time (ssyrk) into an f32 partial Gram, which
 *        is added into the f64 one every PCA_F32_SUM_ROWS rows, so no f32 sum runs
 *        over more rows than that; the column sums are f64 sums of the exact
 *        differences, so the mean is as exact as with f64. The blocks follow the
 *        order rows are added in, whatever the sizes of the calls. Eigenvalues then
 *        err by about eps32·λ_max in absolute terms instead of ~1e-15·λ_max
 *        (BENCHMARKS.md, "Geometry: PCA": at most 1.4e-6 relative on the top 100
 *        of the benchmark rows, where scikit-learn's covariance_eigh, XᵀX in f32
 *        without a shift, errs by 1.3e-4).
 *   svd  The centred rows (f64) are redistributed to a block-cyclic N × d matrix
 *        (MPI_Alltoallv) and factored by pdgesvd; eigenvalues = s² / (n − 1).
 *        More accurate for small eigenvalues, but holds all N·d values (f64)
 *        across the ranks: for data sets that fit in memory.
 *
 * Results are replicated on every rank of the communicator. Eigenvalues are the
 * full spectrum (d values, descending; for svd with n < d the missing ones are
 * 0). Sign convention: each component's entry of largest |value| (the first
 * such entry on a tie) is positive.
 *
 * Summary numbers:
 *   intrinsic_dim_P   smallest k with Σ_{i<k} ratio_i ≥ P/100 (P = 90, 95, 99)
 *   participation     (Σλ)² / Σλ²
 *   effective_rank    exp(H(p)), p_i = λ_i / Σλ (Roy & Vetterli 2007)
 * Negative eigenvalues (rounding, rank-deficient data) count as 0 in the two
 * last; the ratios use Σλ over the full spectrum.
 *
 * All calls that take a communicator are collective over it, and fail on every
 * rank together (a rank whose own input is bad reports it; the others say that
 * another rank failed).
 */
#ifndef TP_PCA_H
#define TP_PCA_H

#include "core/error.h"
#include "dist/blacs.h"

#include <mpi.h>
#include <stdint.h>

typedef enum { PCA_METHOD_COV = 0, PCA_METHOD_SVD = 1 } pca_method;
typedef enum { PCA_GRAM_F64 = 0, PCA_GRAM_F32 = 1 } pca_gram;

typedef struct {
    pca_method method;          /* geometry.pca.method: cov | svd */
    pca_gram gram;              /* geometry.pca.gram: f64 | f32 products (cov only) */
    int64_t k;                  /* components to return (≤ d; svd: also ≤ n) */
    int nb;                     /* ScaLAPACK block size of the grid made when grid
                                   is NULL; default BLACS_DEFAULT_NB */
    const blacs_grid *grid;     /* NULL: a near-square grid over comm (made and freed
                                   inside); else used as is (its comm must be comm) */
} pca_options;

typedef struct {
    pca_method method;
    int64_t n, d, k;            /* rows over all ranks, columns, components */
    double *mean;               /* [d] */
    double *eigenvalues;        /* [d] descending, variance along each component */
    double *explained_variance_ratio;   /* [d] */
    double *components;         /* [k, d] row-major, unit rows, sign convention above */
    double total_variance;      /* Σλ */
    int64_t intrinsic_dim_90, intrinsic_dim_95, intrinsic_dim_99;
    double participation_ratio;
    double effective_rank;
} pca_result;

pca_options pca_options_default(void);
/* "cov" or "svd" → method; anything else is a TP_ERR_CONFIG naming the value. */
tp_status pca_method_parse(const char *s, pca_method *out);
const char *pca_method_name(pca_method m);
/* "f64" or "f32" → gram; anything else is a TP_ERR_CONFIG naming the value. */
tp_status pca_gram_parse(const char *s, pca_gram *out);
const char *pca_gram_name(pca_gram g);

tp_status pca_fit_distributed(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                              const pca_options *opt, pca_result *out);
void pca_result_free(pca_result *r);

/* Incremental cov method: init, add this rank's rows in any number of calls
 * (local, no communication; f64: converted PCA_BLOCK_ROWS rows at a time; f32:
 * the blocks above), finish (collective) into the result; opt->gram of finish
 * is not used (init's gram is). finish uses up the accumulated state: free the
 * accumulator after it. */
#define PCA_BLOCK_ROWS 256
#define PCA_F32_BLOCK_ROWS 1024   /* rows per ssyrk */
#define PCA_F32_SUM_ROWS 4096     /* rows summed in f32 before the f64 sum */
typedef struct pca_accum pca_accum;
tp_status pca_accum_init(int64_t d, pca_gram gram, pca_accum **out);
tp_status pca_accum_add(pca_accum *acc, const float *rows, int64_t n);
tp_status pca_accum_finish(pca_accum *acc, MPI_Comm comm, const pca_options *opt, pca_result *out);
void pca_accum_free(pca_accum *acc);

/* Fills the summary numbers and the ratios of r from r->eigenvalues (descending).
 * Exposed for tests and for callers that have a spectrum from elsewhere. */
void pca_summarise(pca_result *r);

#endif
