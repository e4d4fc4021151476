/* cuda_common.cuh — what the .cu files share: launch geometry and the grid-stride
 * loop. CUDA C++ only; includes nothing from src/ (errors go back to the caller as
 * cudaError_t, see kernels.h).
 */
#ifndef TP_KERNELS_CUDA_COMMON_CUH
#define TP_KERNELS_CUDA_COMMON_CUH

// defines: kern_* launch functions (C linkage), kern_dtype
#include "kernels.h"

#include <cuda_runtime.h>

#include <limits.h>

/* Threads per block for the element-wise and row kernels: a multiple of the warp
 * size, enough to hide latency on one row of a few thousand floats. */
#define TP_CUDA_BLOCK 256
/* Grid cap for grid-stride loops: plenty of blocks to fill any current GPU. */
#define TP_CUDA_MAX_GRID 65535

/* Blocks for a grid-stride loop over n elements. */
static inline unsigned cuda_grid_for(size_t n)
{
    size_t b = (n + TP_CUDA_BLOCK - 1) / TP_CUDA_BLOCK;
    return (unsigned)(b < TP_CUDA_MAX_GRID ? b : TP_CUDA_MAX_GRID);
}

#define GRID_STRIDE(i, n)                                                        \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);     \
         i += (size_t)gridDim.x * blockDim.x)

#endif
