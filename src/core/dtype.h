/* dtype.h — element types of stored tensors and conversion to/from f32.
 *
 * Conversions pick their kernel at run time from what the CPU reports
 * (AVX-512F, else AVX2 + F16C, else portable C); the result is bit-identical
 * whichever kernel runs. AVX-512 BF16's convert is not used: it flushes subnormal
 * inputs to zero, so it cannot match round-to-nearest-even (see dtype.c).
 */
#ifndef TP_DTYPE_H
#define TP_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TP_DTYPE_F32 = 0,
    TP_DTYPE_F16,
    TP_DTYPE_BF16,
    TP_DTYPE_F64,
    TP_DTYPE_I64,
    TP_DTYPE_I32,
    TP_DTYPE_I16,
    TP_DTYPE_I8,
    TP_DTYPE_U8,
    TP_DTYPE_BOOL,
    TP_DTYPE_COUNT
} tp_dtype;

size_t tp_dtype_size(tp_dtype t);
const char *tp_dtype_name(tp_dtype t);           /* safetensors spelling: "F32", "BF16", ... */
/* Parses a safetensors dtype string; returns -1 if unknown. */
int tp_dtype_from_name(const char *name);
int tp_dtype_is_float(tp_dtype t);               /* F32, F16, BF16, F64 */

/* out[i] = (float)in[i]. F16 and BF16 widen exactly (a signalling NaN comes out
 * quiet), F64 rounds to nearest even; integer and BOOL dtypes are accepted too
 * (npy_read_f32) and cast as C casts them. */
void tp_convert_to_f32(tp_dtype src, const void *restrict in, float *restrict out, size_t n);
/* out[i] = in[i] rounded to dst (F32, F16, BF16; F64 widens) with round-to-nearest-
 * even. NaN stays NaN (quietened, sign and top payload bits kept, as the hardware
 * converters do); overflow gives Inf. Any other dst is a programming error: abort. */
void tp_convert_from_f32(tp_dtype dst, const float *restrict in, void *restrict out, size_t n);

float tp_bf16_to_f32(uint16_t h);
uint16_t tp_f32_to_bf16(float f);
float tp_f16_to_f32(uint16_t h);
uint16_t tp_f32_to_f16(float f);

/* Name of the conversion kernel chosen at run time ("avx512", "f16c", "scalar"). */
const char *tp_dtype_kernel_name(void);

/* Test and benchmark hooks: run the named kernel ("avx512", "f16c", "scalar")
 * whatever the dispatcher would pick. Return 1 if it ran, 0 if this CPU or build
 * lacks that kernel (out is then untouched). Same dtypes as the calls above. */
int tp_convert_to_f32_with(const char *kernel, tp_dtype src, const void *restrict in,
                           float *restrict out, size_t n);
int tp_convert_from_f32_with(const char *kernel, tp_dtype dst, const float *restrict in,
                             void *restrict out, size_t n);

#endif
