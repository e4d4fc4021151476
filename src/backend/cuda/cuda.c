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
