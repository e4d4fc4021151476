/* cuda_common.cuh — what src/backend/cuda.c and the kernels share: the context
 * struct and the CUDA_CHECK / CUBLAS_CHECK / NCCL_CHECK macros.
 *
 * Included from C (cuda.c, gcc) and from CUDA C++ (nvcc), so it uses only what
 * both accept. The check macros are for functions returning tp_status: on failure
 * they record "<call>: <library error string> (<name> <code>) (file:line)" with
 * tp_err and return. A failure that means "there is no usable GPU" (no device,
 * a driver too old for this runtime, only the driver's link stub) comes back as
 * TP_ERR_NO_DEVICE, anything else as TP_ERR_CUDA.
 */
#ifndef TP_KERNELS_CUDA_COMMON_CUH
#define TP_KERNELS_CUDA_COMMON_CUH

/* First: cuda.h includes core/error.h with C linkage for the .cu files. */
#include "backend/cuda.h"

#ifdef __cplusplus
#include <cuda_runtime.h>
#else
#include <cuda_runtime_api.h>
#endif
#include <cublas_v2.h>

#include <limits.h>

struct cuda_ctx {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    int tf32;
};

/* Threads per block for the element-wise and row kernels: a multiple of the warp
 * size, enough to hide latency on one row of a few thousand floats. */
#define TP_CUDA_BLOCK 256
/* Grid cap for grid-stride loops: plenty of blocks to fill any current GPU. */
#define TP_CUDA_MAX_GRID 65535

static inline int cuda_is_no_device(cudaError_t e)
{
    return e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ||
           e == cudaErrorStubLibrary;
}

static inline tp_status cuda_err_at(cudaError_t e, const char *file, int line, const char *call)
{
    return tp_err_at(cuda_is_no_device(e) ? TP_ERR_NO_DEVICE : TP_ERR_CUDA, file, line,
                     "%s: %s (%s %d)", call, cudaGetErrorString(e), cudaGetErrorName(e), (int)e);
}

static inline tp_status cublas_err_at(cublasStatus_t s, const char *file, int line,
                                      const char *call)
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

/* After a <<<...>>> launch: a bad configuration shows up here, at the launch
 * site, rather than at the next synchronising call. */
#define CUDA_CHECK_LAUNCH(kernel)                                           \
    do {                                                                    \
        cudaError_t cuda_check_e_ = cudaGetLastError();                     \
        if (cuda_check_e_ != cudaSuccess)                                   \
            return cuda_err_at(cuda_check_e_, __FILE__, __LINE__, "launch of " #kernel); \
    } while (0)

#define NCCL_CHECK(call)                                                    \
    do {                                                                    \
        ncclResult_t nccl_check_r_ = (call);                                \
        if (nccl_check_r_ != ncclSuccess)                                   \
            return tp_err_at(TP_ERR_CUDA, __FILE__, __LINE__, "%s: %s (%d)", #call, \
                             ncclGetErrorString(nccl_check_r_), (int)nccl_check_r_); \
    } while (0)

/* Blocks for a grid-stride loop over n elements. */
static inline unsigned cuda_grid_for(size_t n)
{
    size_t b = (n + TP_CUDA_BLOCK - 1) / TP_CUDA_BLOCK;
    return (unsigned)(b < TP_CUDA_MAX_GRID ? b : TP_CUDA_MAX_GRID);
}

#endif
