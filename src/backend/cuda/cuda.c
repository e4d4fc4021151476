/* cuda.c — the device probe and the NCCL version query of the CUDA backend
 * (contract in cuda.h). */
#include "backend/cuda/cuda.h"

#include "backend/cuda/cuda_check.h"

#include <stdio.h>

#ifdef TP_HAVE_NCCL
#include <nccl.h>
#endif

tp_status cuda_probe(int *n_devices, char *name, size_t n)
{
    *n_devices = 0;
    if (name && n) name[0] = '\0';
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        /* Any failure here means no usable GPU (no driver, driver older than the
         * runtime, no device); clear the error so later calls start clean. */
        (void)cudaGetLastError();
        return tp_err(TP_ERR_NO_DEVICE, "no GPU: cudaGetDeviceCount: %s (%d)",
                      cudaGetErrorString(e), (int)e);
    }
    if (count < 1) return tp_err(TP_ERR_NO_DEVICE, "no GPU: cudaGetDeviceCount found 0 devices");
    if (name && n) {
        struct cudaDeviceProp prop;
        CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
        snprintf(name, n, "%s", prop.name);
    }
    *n_devices = count;
    return TP_OK;
}

tp_status cuda_nccl_version(int *version)
{
    *version = 0;
#ifdef TP_HAVE_NCCL
    NCCL_CHECK(ncclGetVersion(version));
    return TP_OK;
#else
    return tp_err(TP_ERR_UNSUPPORTED, "cuda_nccl_version: built without NCCL (libnccl not found)");
#endif
}

#ifdef TP_HAVE_NCCL

#include "backend/cuda/cuda_ctx.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(cuda_nccl_id) == sizeof(ncclUniqueId), "cuda_nccl_id holds an ncclUniqueId");

/* The device and stream, not the context: the communicator may outlive the backend
 * (dist_finalize destroys it), and ncclCommDestroy needs the device only. */
struct cuda_nccl {
    ncclComm_t comm;
    int device;
    cudaStream_t stream;
};

tp_status cuda_nccl_unique_id(cuda_nccl_id *id)
{
    ncclUniqueId u;
    NCCL_CHECK(ncclGetUniqueId(&u));
    memcpy(id->bytes, &u, sizeof u);
    return TP_OK;
}

tp_status cuda_nccl_new(struct tp_backend *be, const cuda_nccl_id *id, int rank, int nranks, cuda_nccl **out)
{
    *out = NULL;
    if (be->host_memory || strcmp(be->name, "cuda") != 0)
        return tp_err(TP_ERR_INTERNAL, "cuda_nccl_new: backend %s is not a CUDA backend", be->name);
    cuda_nccl *nc = tp_calloc(1, sizeof *nc);
    if (!nc) return TP_ERR_NOMEM;
    nc->device = cuda_ctx_of(be)->device;
    nc->stream = cuda_ctx_of(be)->stream;
    ncclUniqueId u;
    memcpy(&u, id->bytes, sizeof u);
    cudaError_t e = cudaSetDevice(nc->device);
    if (e != cudaSuccess) {
        free(nc);
        return cuda_err_at(e, __FILE__, __LINE__, "cudaSetDevice(nc->device)");
    }
    ncclResult_t r = ncclCommInitRank(&nc->comm, nranks, u, rank);
    if (r != ncclSuccess) {
        tp_status st = tp_err(TP_ERR_CUDA, "ncclCommInitRank(rank %d of %d, device %d): %s (%d) — NCCL needs one GPU "
                              "per rank", rank, nranks, nc->device, ncclGetErrorString(r), (int)r);
        free(nc);
        return st;
    }
    *out = nc;
    return TP_OK;
}

tp_status cuda_nccl_sum_f32(cuda_nccl *nc, float *buf, size_t n)
{
    CUDA_CHECK(cudaSetDevice(nc->device));
    NCCL_CHECK(ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, nc->comm, nc->stream));
    CUDA_CHECK(cudaStreamSynchronize(nc->stream));
    return TP_OK;
}

void cuda_nccl_free(cuda_nccl *nc)
{
    if (!nc) return;
    (void)cudaSetDevice(nc->device);
    (void)ncclCommDestroy(nc->comm);
    free(nc);
}

#endif
