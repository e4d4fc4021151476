/* cuda_check.h — CUDA_CHECK / CUBLAS_CHECK / NCCL_CHECK: library errors as tp_status.
 *
 * For functions returning tp_status: on failure the macros record
 * "<call>: <library error string> (<name> <code>) (file:line)" with tp_err and
 * return. A failure that means "there is no usable GPU" (no device, a driver too old
 * for this runtime, only the driver's link stub) comes back as TP_ERR_NO_DEVICE,
 * anything else as TP_ERR_CUDA. The kernels (kernels/) return cudaError_t and never
 * see tp_status: their launchers are called through CUDA_CHECK here.
 *
 * Host C only (gcc); NCCL_CHECK needs <nccl.h> included first.
 */
#ifndef TP_BACKEND_CUDA_CHECK_H
#define TP_BACKEND_CUDA_CHECK_H

#include "core/error.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

static inline int cuda_is_no_device(cudaError_t e)
{
    return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver || e == cudaErrorStubLibrary;
}

static inline tp_status cuda_err_at(cudaError_t e, const char *file, int line, const char *call)
{
    return tp_err_at(cuda_is_no_device(e) ? TP_ERR_NO_DEVICE : TP_ERR_CUDA, file, line, "%s: %s (%s %d)", call,
                     cudaGetErrorString(e), cudaGetErrorName(e), (int)e);
}

static inline tp_status cublas_err_at(cublasStatus_t s, const char *file, int line, const char *call)
{
    return tp_err_at(TP_ERR_CUDA, file, line, "%s: %s (%s %d)", call, cublasGetStatusString(s),
                     cublasGetStatusName(s), (int)s);
}

#define CUDA_CHECK(call)                                                    \
    do {                                                                    \
        cudaError_t cuda_check_e_ = (call);                                 \
        if (cuda_check_e_ != cudaSuccess)                                   \
            return cuda_err_at(cuda_check_e_, __FILE__, __LINE__, #call);   \
    } while (0)

/* Same, setting `st` and jumping to a cleanup label. */
#define CUDA_CHECK_GOTO(call, st, label)                                    \
    do {                                                                    \
        cudaError_t cuda_check_e_ = (call);                                 \
        if (cuda_check_e_ != cudaSuccess) {                                 \
            (st) = cuda_err_at(cuda_check_e_, __FILE__, __LINE__, #call);   \
            goto label;                                                     \
        }                                                                   \
    } while (0)

#define CUBLAS_CHECK(call)                                                  \
    do {                                                                    \
        cublasStatus_t cublas_check_s_ = (call);                            \
        if (cublas_check_s_ != CUBLAS_STATUS_SUCCESS)                       \
            return cublas_err_at(cublas_check_s_, __FILE__, __LINE__, #call); \
    } while (0)

/* Same, setting `st` and jumping to a cleanup label. */
#define CUBLAS_CHECK_GOTO(call, st, label)                                  \
    do {                                                                    \
        cublasStatus_t cublas_check_s_ = (call);                            \
        if (cublas_check_s_ != CUBLAS_STATUS_SUCCESS) {                     \
            (st) = cublas_err_at(cublas_check_s_, __FILE__, __LINE__, #call); \
            goto label;                                                     \
        }                                                                   \
    } while (0)

#define NCCL_CHECK(call)                                                    \
    do {                                                                    \
        ncclResult_t nccl_check_r_ = (call);                                \
        if (nccl_check_r_ != ncclSuccess)                                   \
            return tp_err_at(TP_ERR_CUDA, __FILE__, __LINE__, "%s: %s (%d)", #call, \
                             ncclGetErrorString(nccl_check_r_), (int)nccl_check_r_); \
    } while (0)

#endif
