/* cuda.h — what the CUDA backend offers outside its table: the device probe and the
 * NCCL version. Everything else (buffers, kernels, cuBLAS) is reached through the
 * backend table (backend/backend.h), opened with backend_open("cuda", ...).
 *
 * Built only when nvcc is found (TP_HAVE_CUDA); include it under #ifdef TP_HAVE_CUDA.
 *
 * Errors: TP_ERR_NO_DEVICE when there is no usable GPU (no device, driver too old),
 * TP_ERR_CUDA for any other CUDA / NCCL failure; the message names the file, line,
 * failing call and the library's error string.
 */
#ifndef TP_BACKEND_CUDA_CUDA_H
#define TP_BACKEND_CUDA_CUDA_H

#include "core/error.h"

struct tp_backend;

#include <stddef.h>

/* Number of GPUs and the name of device 0 (name may be NULL). No GPU, or a driver
 * that cannot run this CUDA, → TP_ERR_NO_DEVICE, *n_devices = 0, and a message
 * like "no GPU: cudaGetDeviceCount: CUDA driver version is insufficient ... (35)". */
tp_status cuda_probe(int *n_devices, char *name, size_t n);

/* The NCCL library's version code (e.g. 22809 for 2.28.9); needs no GPU.
 * TP_ERR_UNSUPPORTED when built without NCCL (TP_HAVE_NCCL). */
tp_status cuda_nccl_version(int *version);

/* NCCL for one rank per GPU (dist/grad_allreduce.c builds the communicator over MPI).
 * Built with TP_HAVE_NCCL only. The id is ncclUniqueId's bytes, so callers need no
 * NCCL header. */
#ifdef TP_HAVE_NCCL
typedef struct { char bytes[128]; } cuda_nccl_id;   /* NCCL_UNIQUE_ID_BYTES */
typedef struct cuda_nccl cuda_nccl;
/* ncclGetUniqueId: on one rank, then broadcast to the others. */
tp_status cuda_nccl_unique_id(cuda_nccl_id *id);
/* ncclCommInitRank on be's device: rank of nranks, all with the same id. */
tp_status cuda_nccl_new(struct tp_backend *be, const cuda_nccl_id *id, int rank, int nranks, cuda_nccl **out);
/* In place: buf (n floats of be's memory) = the sum over the ranks; queued on be's
 * stream after its work, and waited for (the caller reads the result next). */
tp_status cuda_nccl_sum_f32(cuda_nccl *nc, float *buf, size_t n);
void cuda_nccl_free(cuda_nccl *nc);   /* NULL ok */
#endif

#endif
