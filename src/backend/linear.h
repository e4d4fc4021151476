/* linear.h — transitional: main.c/pipeline.c still include this path; the GEMM
 * kernel lives in backend/cpu/linear.h. Removed once they use backend.h. */
#include "backend/cpu/linear.h"
