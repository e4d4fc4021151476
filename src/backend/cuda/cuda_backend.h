/* cuda_backend.h — the CUDA backend's entry points for the registry (backend.c).
 * Built only when nvcc is found (TP_HAVE_CUDA). Everything else of the CUDA backend
 * is reached through the table (backend.h), but for the probe and the NCCL version
 * (backend/cuda/cuda.h). */
#ifndef TP_BACKEND_CUDA_BACKEND_H
#define TP_BACKEND_CUDA_BACKEND_H

#include "backend/backend.h"

/* A backend on GPU opt->device: a non-blocking stream, a cuBLAS handle bound to it
 * (TF32 math when opt->tf32), host_memory 0, the filled table. No usable GPU is
 * TP_ERR_NO_DEVICE with the driver's reason; a device ordinal outside [0, GPUs) is
 * TP_ERR_RANGE. *out is NULL on failure. */
tp_status backend_cuda_open(const tp_backend_options *opt, tp_backend **out);
/* Waits for the queued work, then frees the stream, the cuBLAS handle and the
 * context; buffers from alloc are the caller's to free before. A failure of queued
 * work that no sync or download has reported is lost: sync first to see it. NULL ok. */
void backend_cuda_close(tp_backend *be);

/* The table a CUDA backend is opened with, for tests that check which slots are
 * filled without a GPU. */
const tp_backend_i *backend_cuda_table(void);

#endif
