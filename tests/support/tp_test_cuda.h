/* tp_test_cuda.h — what the CUDA tests (test_cuda, test_cuda_parity) share beside
 * tp_test.h: a check of a kernel launcher's or the runtime's cudaError_t. Only for
 * targets built with CUDA. */
#ifndef TP_TEST_CUDA_H
#define TP_TEST_CUDA_H

#include <check.h>
#include <cuda_runtime_api.h>

/* `call` returns cudaSuccess; otherwise the test fails with the call and the error. */
#define CUDA_OK(call)                                                                          \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        ck_assert_msg(e_ == cudaSuccess, "%s: %s", #call, cudaGetErrorString(e_));             \
    } while (0)

#endif
