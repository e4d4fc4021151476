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

#include <stddef.h>

/* Number of GPUs and the name of device 0 (name may be NULL). No GPU, or a driver
 * that cannot run this CUDA, → TP_ERR_NO_DEVICE, *n_devices = 0, and a message
 * like "no GPU: cudaGetDeviceCount: CUDA driver version is insufficient ... (35)". */
tp_status cuda_probe(int *n_devices, char *name, size_t n);

/* The NCCL library's version code (e.g. 22809 for 2.28.9); needs no GPU.
 * TP_ERR_UNSUPPORTED when built without NCCL (TP_HAVE_NCCL). */
tp_status cuda_nccl_version(int *version);

#endif
