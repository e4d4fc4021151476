/* cpu_backend.h — the CPU backend's entry points for the registry (backend.c).
 * Everything else of the CPU backend is reached through the table (backend.h). */
#ifndef TP_BACKEND_CPU_BACKEND_H
#define TP_BACKEND_CPU_BACKEND_H

#include "backend/backend.h"

/* The process-wide CPU backend, created on first call with default options. */
tp_backend *backend_cpu_get(void);
/* Applies options (threads, own GEMM) to the singleton; returns it. */
tp_status backend_cpu_configure(const tp_backend_options *opt, tp_backend **out);

#endif
