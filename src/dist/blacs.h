/* blacs.h — the BLACS process grid and block-cyclic matrices (ScaLAPACK).
 *
 * blacs_grid_init makes an nprow × npcol grid over all ranks of an MPI
 * communicator, near square (nprow = the largest divisor of the rank count that is
 * ≤ its square root: 1×1, 1×2, 1×3, 2×2, 2×3, 2×4, 3×3 ...); blacs_grid_init_shape
 * takes the shape (nprow·npcol ≤ ranks; the ranks left over sit outside the grid,
 * in_grid = false, and take part only in the MPI collectives below). Grid
 * position (r, c) is found through an all-gather, not assumed.
 *
 * Matrices are 2-D block-cyclic with square nb × nb blocks, source process (0, 0),
 * local arrays column-major (ScaLAPACK's). blacs_scatter_replicated copies each
 * rank's part out of a matrix every rank holds whole (no communication);
 * blacs_gather_replicated gives every rank of the communicator a sub-matrix of a
 * distributed one (one MPI_Allreduce over the communicator).
 *
 * Debian ships no ScaLAPACK header: the prototypes are declared here. Fortran
 * routines take every argument by pointer; character arguments add trailing
 * size_t hidden lengths.
 */
#ifndef TP_DIST_BLACS_H
#define TP_DIST_BLACS_H

#include "core/error.h"

#include <mpi.h>
#include <stdbool.h>
#include <stddef.h>

#define BLACS_DEFAULT_NB 64
#define BLACS_DLEN 9   /* length of a ScaLAPACK array descriptor */

typedef struct {
    MPI_Comm comm;        /* the communicator the grid was made from (not owned) */
    int sys_handle;       /* BLACS system handle of comm (Csys2blacs_handle) */
    int ctxt;             /* grid context; -1 on ranks outside the grid */
    int nprow, npcol;
    int myrow, mycol;     /* -1 outside the grid */
    bool in_grid;
    int nb;               /* block size for matrices on this grid */
    int *rank_of;         /* [nprow * npcol]: comm rank at (r, c), index r * npcol + c */
} blacs_grid;

/* Near-square shape for `nranks` ranks (nprow ≤ npcol, nprow·npcol = nranks). */
void blacs_grid_shape(int nranks, int *nprow, int *npcol);
/* Grid over every rank of comm, near-square. nb ≤ 0 means BLACS_DEFAULT_NB.
 * Collective over comm. */
tp_status blacs_grid_init(MPI_Comm comm, int nb, blacs_grid *g);
tp_status blacs_grid_init_shape(MPI_Comm comm, int nprow, int npcol, int nb, blacs_grid *g);
/* Collective over comm. Safe on a zeroed or already freed grid. */
void blacs_grid_free(blacs_grid *g);

/* Number of rows (or columns) of an n-long dimension held by process `iproc` of
 * `nprocs`, block size nb, source process 0 (ScaLAPACK NUMROC). */
int blacs_numroc(int n, int nb, int iproc, int nprocs);
/* Global index (0-based) of local index `l` (0-based) on process iproc. */
int blacs_local_to_global(int l, int nb, int iproc, int nprocs);

/* A distributed m × n matrix on grid g: descriptor and local array size. */
typedef struct {
    int desc[BLACS_DLEN];
    int m, n;
    int mloc, nloc;      /* local rows/cols on this rank (0 outside the grid) */
    int lld;             /* local leading dimension (≥ 1) */
} blacs_matrix;

/* Fills the descriptor for an m × n matrix with g->nb blocks (DESCINIT). Outside
 * the grid the descriptor's context is -1 and mloc = nloc = 0. */
tp_status blacs_matrix_init(const blacs_grid *g, int m, int n, blacs_matrix *A);
/* Local array length in doubles (lld · nloc, ≥ 1 so that it can be allocated). */
size_t blacs_matrix_local_size(const blacs_matrix *A);

/* local ← this rank's part of `full`, an m × n column-major matrix (leading
 * dimension m) that every rank holds. Nothing to do outside the grid. */
void blacs_scatter_replicated(const blacs_grid *g, const blacs_matrix *A, const double *full,
                              double *local);
/* out (column-major, mi × nj, leading dimension mi) ← A[i0:i0+mi, j0:j0+nj] on every
 * rank of g->comm. Collective over g->comm. */
tp_status blacs_gather_replicated(const blacs_grid *g, const blacs_matrix *A, const double *local,
                                  int i0, int mi, int j0, int nj, double *out);

/* ---- ScaLAPACK / BLACS prototypes (no header on Debian) ----------------------- */
int Csys2blacs_handle(MPI_Comm comm);
void Cfree_blacs_system_handle(int handle);
void Cblacs_get(int ctxt, int what, int *val);
void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int ctxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia,
              const int *ja, const int *desca, double *w, double *z, const int *iz, const int *jz,
              const int *descz, double *work, const int *lwork, int *iwork, const int *liwork,
              int *info, size_t jobz_len, size_t uplo_len);
void pdgeqrf_(const int *m, const int *n, double *a, const int *ia, const int *ja, const int *desca,
              double *tau, double *work, const int *lwork, int *info);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
              const int *ia, const int *ja, const int *desca, double *s, double *u, const int *iu,
              const int *ju, const int *descu, double *vt, const int *ivt, const int *jvt,
              const int *descvt, double *work, const int *lwork, int *info, size_t jobu_len,
              size_t jobvt_len);

#endif
