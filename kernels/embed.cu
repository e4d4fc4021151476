/* embed.cu — token embedding: gather rows of an F32 / BF16 / F16 table and widen them
 * to f32 (kernels.h: kern_embed). */
#include "cuda_common.cuh"

/* f16 bits → f32, exactly as tp_f16_to_f32 (core/dtype.c) does it: Inf kept, NaN made
 * quiet (as VCVTPH2PS does), subnormals normalised. Integer arithmetic, so the result
 * does not depend on how the hardware converter treats NaN payloads. */
__device__ __forceinline__ float f16_bits_to_f32(unsigned h)
{
    unsigned sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0u));
    if (exp == 0u) {
        if (man == 0u) return __uint_as_float(sign);
        /* Shift the leading 1 (bit 31 - clz) up to bit 10, the implicit-bit position;
         * each shift lowers the exponent by one. */
        int s = __clz((int)man) - 21;
        man <<= s;
        return __uint_as_float(sign | (unsigned)(113 - s) << 23 | (man & 0x3ffu) << 13);
    }
    return __uint_as_float(sign | (exp + 112u) << 23 | man << 13);
}

/* Blocks stride over rows, threads over the row's d elements: one id load per row. */
__global__ void embed_kernel(float *__restrict__ out, const void *__restrict__ table, kern_dtype dt,
                             int64_t vocab, int64_t d, const int32_t *__restrict__ ids, int64_t rows,
                             unsigned long long *bad_row)
{
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        int64_t id = ids[r];
        float *o = out + r * d;
        if (id < 0 || id >= vocab) {
            /* Defined output for the bad row; the caller reports the first one. */
            if (threadIdx.x == 0) atomicMin(bad_row, (unsigned long long)r);
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) o[j] = 0.0f;
            continue;
        }
        size_t base = (size_t)id * (size_t)d;
        if (dt == KERN_F32) {
            const float *t = (const float *)table + base;
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) o[j] = t[j];
        } else if (dt == KERN_BF16) {
            const uint16_t *t = (const uint16_t *)table + base;
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) o[j] = __uint_as_float((unsigned)t[j] << 16);
        } else {
            const uint16_t *t = (const uint16_t *)table + base;
            for (int64_t j = threadIdx.x; j < d; j += blockDim.x) o[j] = f16_bits_to_f32(t[j]);
        }
    }
}

extern "C" cudaError_t kern_embed(cudaStream_t stream, float *out, const void *table, kern_dtype dt,
                                  int64_t vocab, int64_t d, const int32_t *ids, int64_t rows,
                                  unsigned long long *bad_row)
{
    if (rows < 0 || d < 1 || vocab < 0 || (dt != KERN_F32 && dt != KERN_BF16 && dt != KERN_F16))
        return cudaErrorInvalidValue;
    if (rows == 0) return cudaSuccess;
    unsigned grid = (unsigned)(rows < TP_CUDA_MAX_GRID ? rows : TP_CUDA_MAX_GRID);
    embed_kernel<<<grid, TP_CUDA_BLOCK, 0, stream>>>(out, table, dt, vocab, d, ids, rows, bad_row);
    return cudaGetLastError();
}
