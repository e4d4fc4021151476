/* cuda_backend.h — the CUDA backend's entry points for the registry (backend.c).
 * Built only when nvcc is found (TP_HAVE_CUDA). Everything else of the CUDA backend
 * is reached through the table (backend.h). */
#ifndef TP_BACKEND_CUDA_BACKEND_H
#define TP_BACKEND_CUDA_BACKEND_H

#include "backend/backend.h"

/* A backend on GPU opt->device: stream, cuBLAS handle, the filled table. No usable
 * GPU is TP_ERR_NO_DEVICE with the driver's reason. */
tp_status backend_cuda_open(const tp_backend_options *opt, tp_backend **out);
void backend_cuda_close(tp_backend *be);

#endif
