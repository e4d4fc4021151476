/* grad_allreduce.h — the in-place sum of a gradient buffer over the ranks of a
 * communicator, wherever the buffer lives, so the training code is the same on CPU
 * and GPU ranks:
 *   - `be` a host-memory backend (the CPU): MPI_Allreduce, in chunks that fit MPI's
 *     int counts;
 *   - a device backend (one rank per GPU): ncclAllReduce on the device buffer, on the
 *     backend's stream, with an NCCL communicator over the same ranks as `comm`,
 *     made on first use (ncclGetUniqueId on rank 0, MPI_Bcast, ncclCommInitRank) and
 *     kept for later calls with the same comm and backend.
 * Collective over comm; MPI_COMM_NULL is a no-op (one process). A device backend in a
 * build without NCCL is TP_ERR_UNSUPPORTED. */
#ifndef TP_DIST_GRAD_ALLREDUCE_H
#define TP_DIST_GRAD_ALLREDUCE_H

#include "backend/backend.h"
#include "core/error.h"

#include <mpi.h>

#include <stddef.h>

tp_status dist_grad_allreduce(MPI_Comm comm, tp_backend *be, float *buf, size_t n);
/* Destroys the NCCL communicator made by dist_grad_allreduce, if any (collective over
 * the ranks that made it). Nothing to do on CPU ranks. */
void dist_grad_allreduce_close(void);

#endif
