#include "dist/blacs.h"

#include "dist/mpi_check.h"

#include <stdlib.h>
#include <string.h>

void blacs_grid_shape(int nranks, int *nprow, int *npcol)
{
    int r = 1;
    for (int i = 1; (long)i * i <= nranks; i++)
        if (nranks % i == 0) r = i;
    *nprow = r;
    *npcol = nranks > 0 ? nranks / r : 1;
}

tp_status blacs_grid_init(MPI_Comm comm, int nb, blacs_grid *g)
{
    int size;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    int nprow, npcol;
    blacs_grid_shape(size, &nprow, &npcol);
    return blacs_grid_init_shape(comm, nprow, npcol, nb, g);
}

tp_status blacs_grid_init_shape(MPI_Comm comm, int nprow, int npcol, int nb, blacs_grid *g)
{
    memset(g, 0, sizeof *g);
    g->ctxt = -1;
    g->sys_handle = -1;
    g->myrow = g->mycol = -1;
    int size;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    /* Every rank sees the same arguments, so these fail on all ranks alike. */
    if (nprow < 1 || npcol < 1 || (long)nprow * npcol > size)
        return tp_err(TP_ERR_RANGE, "BLACS grid %d x %d does not fit in %d ranks", nprow, npcol, size);
    g->comm = comm;
    g->nprow = nprow;
    g->npcol = npcol;
    g->nb = nb > 0 ? nb : BLACS_DEFAULT_NB;
    g->rank_of = tp_malloc((size_t)nprow * (size_t)npcol * sizeof(int));
    int *coords = tp_malloc(2 * (size_t)size * sizeof(int));
    /* An allocation failure on one rank must not leave the others in the collectives
     * below: agree first. */
    int bad = !g->rank_of || !coords, any_bad = bad;
    int rc = MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, comm);
    if (rc != MPI_SUCCESS || any_bad) {
        free(coords);
        free(g->rank_of);
        g->rank_of = NULL;
        if (bad) return TP_ERR_NOMEM;
        return tp_err(TP_ERR_NOMEM, "BLACS grid: allocation failed on another rank");
    }

    g->sys_handle = Csys2blacs_handle(comm);
    g->ctxt = g->sys_handle;
    /* Row-major placement of the first nprow·npcol ranks; the others get ctxt -1. */
    Cblacs_gridinit(&g->ctxt, "Row", nprow, npcol);
    if (g->ctxt >= 0) {
        int pr, pc;
        Cblacs_gridinfo(g->ctxt, &pr, &pc, &g->myrow, &g->mycol);
        g->in_grid = g->myrow >= 0 && g->mycol >= 0;
    }
    if (!g->in_grid) g->myrow = g->mycol = -1;
    int mine[2] = {g->myrow, g->mycol};
    rc = MPI_Allgather(mine, 2, MPI_INT, coords, 2, MPI_INT, comm);
    if (rc != MPI_SUCCESS) {
        free(coords);
        blacs_grid_free(g);
        return tp_err(TP_ERR_MPI, "BLACS grid: MPI_Allgather of grid positions failed");
    }
    for (int i = 0; i < nprow * npcol; i++) g->rank_of[i] = -1;
    for (int r = 0; r < size; r++) {
        int pr = coords[2 * r], pc = coords[2 * r + 1];
        if (pr >= 0 && pc >= 0 && pr < nprow && pc < npcol) g->rank_of[pr * npcol + pc] = r;
    }
    free(coords);
    for (int i = 0; i < nprow * npcol; i++) {
        if (g->rank_of[i] < 0) {
            blacs_grid_free(g);
            return tp_err(TP_ERR_INTERNAL, "BLACS grid %d x %d: position (%d, %d) has no rank",
                          nprow, npcol, i / npcol, i % npcol);
        }
    }
    return TP_OK;
}

void blacs_grid_free(blacs_grid *g)
{
    if (g->ctxt >= 0) Cblacs_gridexit(g->ctxt);
    if (g->sys_handle >= 0) Cfree_blacs_system_handle(g->sys_handle);
    free(g->rank_of);
    memset(g, 0, sizeof *g);
    g->ctxt = -1;
    g->sys_handle = -1;
    g->myrow = g->mycol = -1;
}

int blacs_numroc(int n, int nb, int iproc, int nprocs)
{
    int src = 0;
    return numroc_(&n, &nb, &iproc, &src, &nprocs);
}

int blacs_local_to_global(int l, int nb, int iproc, int nprocs)
{
    return ((l / nb) * nprocs + iproc) * nb + l % nb;
}

tp_status blacs_matrix_init(const blacs_grid *g, int m, int n, blacs_matrix *A)
{
    memset(A, 0, sizeof *A);
    A->m = m;
    A->n = n;
    if (m < 0 || n < 0) return tp_err(TP_ERR_RANGE, "distributed matrix %d x %d: negative size", m, n);
    if (!g->in_grid) {
        /* ScaLAPACK's convention for a rank outside the grid: context -1. */
        A->desc[0] = 1;
        A->desc[1] = -1;
        A->desc[2] = m;
        A->desc[3] = n;
        A->desc[4] = A->desc[5] = g->nb;
        A->desc[8] = A->lld = 1;
        return TP_OK;
    }
    A->mloc = blacs_numroc(m, g->nb, g->myrow, g->nprow);
    A->nloc = blacs_numroc(n, g->nb, g->mycol, g->npcol);
    A->lld = A->mloc > 1 ? A->mloc : 1;
    int zero = 0, info = 0;
    descinit_(A->desc, &m, &n, &g->nb, &g->nb, &zero, &zero, &g->ctxt, &A->lld, &info);
    if (info != 0)
        return tp_err(TP_ERR_INTERNAL, "descinit failed for a %d x %d matrix (info %d)", m, n, info);
    return TP_OK;
}

size_t blacs_matrix_local_size(const blacs_matrix *A)
{
    size_t s = (size_t)A->lld * (size_t)A->nloc;
    return s ? s : 1;
}

void blacs_scatter_replicated(const blacs_grid *g, const blacs_matrix *A, const double *full,
                              double *local)
{
    if (!g->in_grid) return;
    for (int lj = 0; lj < A->nloc; lj++) {
        size_t gj = (size_t)blacs_local_to_global(lj, g->nb, g->mycol, g->npcol);
        double *dst = local + (size_t)lj * A->lld;
        for (int li = 0; li < A->mloc; li++) {
            size_t gi = (size_t)blacs_local_to_global(li, g->nb, g->myrow, g->nprow);
            dst[li] = full[gj * (size_t)A->m + gi];
        }
    }
}

tp_status blacs_gather_replicated(const blacs_grid *g, const blacs_matrix *A, const double *local,
                                  int i0, int mi, int j0, int nj, double *out)
{
    if (i0 < 0 || j0 < 0 || mi < 0 || nj < 0 || i0 + mi > A->m || j0 + nj > A->n)
        return tp_err(TP_ERR_RANGE, "gather of [%d:%d, %d:%d] from a %d x %d matrix", i0, i0 + mi,
                      j0, j0 + nj, A->m, A->n);
    size_t total = (size_t)mi * (size_t)nj;
    memset(out, 0, total * sizeof *out);
    if (g->in_grid) {
        for (int lj = 0; lj < A->nloc; lj++) {
            int gj = blacs_local_to_global(lj, g->nb, g->mycol, g->npcol);
            if (gj < j0 || gj >= j0 + nj) continue;
            const double *src = local + (size_t)lj * A->lld;
            double *dst = out + (size_t)(gj - j0) * mi;
            for (int li = 0; li < A->mloc; li++) {
                int gi = blacs_local_to_global(li, g->nb, g->myrow, g->nprow);
                if (gi >= i0 && gi < i0 + mi) dst[gi - i0] = src[li];
            }
        }
    }
    /* Each entry is held by exactly one rank, the others add zeros: the sum is exact. */
    const size_t chunk = (size_t)1 << 28;
    for (size_t off = 0; off < total; off += chunk) {
        int cnt = (int)(total - off < chunk ? total - off : chunk);
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, out + off, cnt, MPI_DOUBLE, MPI_SUM, g->comm));
    }
    return TP_OK;
}
