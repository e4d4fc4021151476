/* cpu.h — transitional: main.c/pipeline.c (and the CUDA test) still include this
 * path; the CPU kernels live in backend/cpu/cpu.h. Removed once they use backend.h. */
#include "backend/cpu/cpu.h"
