/* grad_allreduce.c — gradient all-reduce over MPI or NCCL (contract in
 * grad_allreduce.h). */
#include "dist/grad_allreduce.h"

#include "dist/mpi_check.h"

#if defined(TP_HAVE_CUDA) && defined(TP_HAVE_NCCL)
#include "backend/cuda/cuda.h"   /* cuda_nccl_* */
#endif

static tp_status mpi_sum_f32(MPI_Comm comm, float *buf, size_t n)
{
    const size_t chunk = (size_t)1 << 28;
    for (size_t off = 0; off < n; off += chunk) {
        int cnt = (int)(n - off < chunk ? n - off : chunk);
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf + off, cnt, MPI_FLOAT, MPI_SUM, comm));
    }
    return TP_OK;
}

#if defined(TP_HAVE_CUDA) && defined(TP_HAVE_NCCL)

/* One communicator per process: one rank drives one GPU. */
static struct {
    cuda_nccl *nccl;
    MPI_Comm comm;
    tp_backend *be;
} cached = {NULL, MPI_COMM_NULL, NULL};

static tp_status nccl_for(MPI_Comm comm, tp_backend *be, cuda_nccl **out)
{
    if (cached.nccl && cached.be == be) {
        int same = MPI_UNEQUAL;
        MPI_CHECK(MPI_Comm_compare(cached.comm, comm, &same));
        if (same == MPI_IDENT) {
            *out = cached.nccl;
            return TP_OK;
        }
    }
    dist_grad_allreduce_close();
    int rank, size;
    MPI_CHECK(MPI_Comm_rank(comm, &rank));
    MPI_CHECK(MPI_Comm_size(comm, &size));
    cuda_nccl_id id = {{0}};
    tp_status st = rank == 0 ? cuda_nccl_unique_id(&id) : TP_OK;
    /* rank 0's failure reaches everyone before the broadcast they would wait in */
    int ok = st == TP_OK, all_ok = 0;
    MPI_CHECK(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm));
    if (!all_ok) return st != TP_OK ? st : tp_err(TP_ERR_CUDA, "ncclGetUniqueId failed on rank 0");
    MPI_CHECK(MPI_Bcast(id.bytes, (int)sizeof id.bytes, MPI_BYTE, 0, comm));
    MPI_CHECK(MPI_Comm_dup(comm, &cached.comm));
    TP_CHECK(cuda_nccl_new(be, &id, rank, size, &cached.nccl));
    cached.be = be;
    *out = cached.nccl;
    return TP_OK;
}

void dist_grad_allreduce_close(void)
{
    if (cached.nccl) cuda_nccl_free(cached.nccl);
    if (cached.comm != MPI_COMM_NULL) (void)MPI_Comm_free(&cached.comm);
    cached.nccl = NULL, cached.comm = MPI_COMM_NULL, cached.be = NULL;
}

#else

void dist_grad_allreduce_close(void) {}

#endif

tp_status dist_grad_allreduce(MPI_Comm comm, tp_backend *be, float *buf, size_t n)
{
    if (comm == MPI_COMM_NULL || n == 0) return TP_OK;
    if (be->host_memory) return mpi_sum_f32(comm, buf, n);
#if defined(TP_HAVE_CUDA) && defined(TP_HAVE_NCCL)
    cuda_nccl *nc = NULL;
    TP_CHECK(nccl_for(comm, be, &nc));
    return cuda_nccl_sum_f32(nc, buf, n);
#else
    return tp_err(TP_ERR_UNSUPPORTED, "gradient all-reduce on backend %s: this build has no NCCL", be->name);
#endif
}
