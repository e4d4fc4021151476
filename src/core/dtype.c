/* dtype.c — element sizes and names, f16/bf16 <-> f32 conversion.
 *
 * Three kernel sets: portable C ("scalar"), AVX2 + F16C ("f16c") and AVX-512F
 * ("avx512"). The set is picked once, at first use, from __builtin_cpu_supports,
 * never from the build's -march, so one binary runs at full speed everywhere. Every
 * kernel must give the same bits as the scalar code; tests/unit/test_dtype.c checks
 * that on NaN payloads, infinities, subnormals and rounding ties.
 *
 * Conventions all kernels share (chosen to match what the hardware converters do,
 * so the vector paths need no fix-ups):
 *   f32 -> bf16: round to nearest even on the bit pattern; NaN -> top 16 bits with
 *                the quiet bit (0x0040) set, so a payload that lived only in the low
 *                bits cannot turn into Inf.
 *   f32 -> f16:  IEEE round to nearest even (VCVTPS2PH with imm RC = nearest);
 *                NaN -> sign | 0x7e00 | top 9 payload bits.
 *   f16 -> f32:  exact; NaN -> quiet NaN with the payload shifted up (VCVTPH2PS).
 *
 * AVX-512 BF16 (VCVTNEPS2BF16) is deliberately not used for f32 -> bf16: it
 * treats subnormal inputs as zero (Intel SDM pseudo-code; seen on AMD Zen 4:
 * 0x007fffff -> 0x0000 where RNE gives 0x0080), so it would not be bit-identical to
 * the scalar path, nor to PyTorch's bf16 rounding. The
 * AVX-512F integer rounding below costs ~6 instructions per 16 floats and the loop
 * is memory bound anyway.
 */
#include "core/dtype.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

static const struct {
    const char *name;
    size_t size;
} dtype_info[TP_DTYPE_COUNT] = {
    [TP_DTYPE_F32] = {"F32", 4},  [TP_DTYPE_F16] = {"F16", 2}, [TP_DTYPE_BF16] = {"BF16", 2},
    [TP_DTYPE_F64] = {"F64", 8},  [TP_DTYPE_I64] = {"I64", 8}, [TP_DTYPE_I32] = {"I32", 4},
    [TP_DTYPE_I16] = {"I16", 2},  [TP_DTYPE_I8] = {"I8", 1},   [TP_DTYPE_U8] = {"U8", 1},
    [TP_DTYPE_BOOL] = {"BOOL", 1},
};

size_t tp_dtype_size(tp_dtype t)
{
    return ((unsigned)t < TP_DTYPE_COUNT) ? dtype_info[t].size : 0;
}

const char *tp_dtype_name(tp_dtype t)
{
    return ((unsigned)t < TP_DTYPE_COUNT) ? dtype_info[t].name : "?";
}

int tp_dtype_from_name(const char *name)
{
    if (!name) return -1;
    for (int t = 0; t < TP_DTYPE_COUNT; t++)
        if (strcmp(name, dtype_info[t].name) == 0) return t;
    return -1;
}

int tp_dtype_is_float(tp_dtype t)
{
    return t == TP_DTYPE_F32 || t == TP_DTYPE_F16 || t == TP_DTYPE_BF16 || t == TP_DTYPE_F64;
}

/* ---- scalar conversions (the reference every kernel must match) ---------- */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float tp_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t tp_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    /* Adding 0x7fff plus the kept LSB rounds half to even; a carry into the
     * exponent is correct (it rounds up to the next binade or to Inf). */
    uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
    uint32_t quiet_nan = (x >> 16) | 0x0040u;
    /* Written as a select so the loop over it vectorises without branches. */
    return (uint16_t)(((x & 0x7fffffffu) > 0x7f800000u) ? quiet_nan : rounded);
}

float tp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    if (exp == 0x1f) /* Inf, or NaN made quiet as VCVTPH2PS does */
        return bits_f32(sign | 0x7f800000u | (man << 13) | (man ? 0x00400000u : 0));
    if (exp == 0) {
        if (man == 0) return bits_f32(sign);
        /* Subnormal: shift the leading 1 up to the implicit-bit position. */
        int e = 1;
        while (!(man & 0x400u)) {
            man <<= 1;
            e--;
        }
        return bits_f32(sign | (uint32_t)(e + 112) << 23 | (man & 0x3ffu) << 13);
    }
    return bits_f32(sign | (exp + 112) << 23 | man << 13);
}

uint16_t tp_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) /* NaN: quiet bit + top payload bits, as VCVTPS2PH does */
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    /* 0x477ff000 = 65520, halfway between 65504 (max f16) and 2^16: ties go to the
     * even neighbour, which is Inf. */
    if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
    if (x >= 0x38800000u) { /* >= 2^-14: normal f16 */
        uint32_t r = (x + 0x0fffu + ((x >> 13) & 1u)) >> 13;
        return (uint16_t)(sign | (r - (112u << 10)));
    }
    /* Below 2^-25 everything rounds to zero (2^-25 itself is a tie, goes to 0). */
    if (x < 0x33000000u) return sign;
    /* Subnormal f16: value = man * 2^(e-150), unit 2^-24, so shift by 126 - e. */
    uint32_t e = x >> 23;
    uint32_t man = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14..24 */
    uint32_t r = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return (uint16_t)(sign | r);
}

/* ---- kernels ---------------------------------------------------------------- */

typedef void (*to_f32_fn)(const void *restrict in, float *restrict out, size_t n);
typedef void (*from_f32_fn)(const float *restrict in, void *restrict out, size_t n);

typedef struct {
    const char *name;
    to_f32_fn bf16_to_f32, f16_to_f32;
    from_f32_fn f32_to_bf16, f32_to_f16;
} kernel_set;

/* Inputs come straight from an mmap and may be unaligned: load through memcpy. */
static void scalar_bf16_to_f32(const void *restrict in, float *restrict out, size_t n)
{
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = tp_bf16_to_f32(h);
    }
}

static void scalar_f16_to_f32(const void *restrict in, float *restrict out, size_t n)
{
    const unsigned char *p = in;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        out[i] = tp_f16_to_f32(h);
    }
}

static void scalar_f32_to_bf16(const float *restrict in, void *restrict out, size_t n)
{
    unsigned char *p = out;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = tp_f32_to_bf16(in[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void scalar_f32_to_f16(const float *restrict in, void *restrict out, size_t n)
{
    unsigned char *p = out;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = tp_f32_to_f16(in[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static const kernel_set kernels_scalar = {"scalar", scalar_bf16_to_f32, scalar_f16_to_f32,
                                          scalar_f32_to_bf16, scalar_f32_to_f16};

#if defined(__x86_64__)

/* The tails (n % 16, n % 8) go through a zero-padded stack block and the same
 * vector code, so a tail element gets exactly the bits a body element would. */

#define AVX512 __attribute__((target("avx512f")))

AVX512 static inline __m512i avx512_bf16x16_to_f32(__m256i h)
{
    return _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
}

AVX512 static inline __m256i avx512_f32x16_to_bf16(__m512i x)
{
    const __m512i one = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i quiet = _mm512_set1_epi32(0x0040);
    __m512i hi = _mm512_srli_epi32(x, 16);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(x, bias), _mm512_and_si512(hi, one)), 16);
    __m512 xf = _mm512_castsi512_ps(x);
    __mmask16 nan = _mm512_cmp_ps_mask(xf, xf, _CMP_UNORD_Q);
    r = _mm512_mask_or_epi32(r, nan, hi, quiet);
    return _mm512_cvtepi32_epi16(r); /* values are < 2^16, truncation is exact */
}

AVX512 static void avx512_bf16_to_f32(const void *restrict in, float *restrict out, size_t n)
{
    const unsigned char *p = in;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(p + 2 * i));
        _mm512_storeu_si512(out + i, avx512_bf16x16_to_f32(h));
    }
    if (i < n) {
        uint16_t hb[16] = {0};
        float fb[16];
        memcpy(hb, p + 2 * i, 2 * (n - i));
        _mm512_storeu_si512(fb, avx512_bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)hb)));
        memcpy(out + i, fb, sizeof(float) * (n - i));
    }
}

AVX512 static void avx512_f32_to_bf16(const float *restrict in, void *restrict out, size_t n)
{
    unsigned char *p = out;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i x = _mm512_loadu_si512(in + i);
        _mm256_storeu_si256((__m256i *)(p + 2 * i), avx512_f32x16_to_bf16(x));
    }
    if (i < n) {
        float fb[16] = {0};
        uint16_t hb[16];
        memcpy(fb, in + i, sizeof(float) * (n - i));
        _mm256_storeu_si256((__m256i *)hb, avx512_f32x16_to_bf16(_mm512_loadu_si512(fb)));
        memcpy(p + 2 * i, hb, 2 * (n - i));
    }
}

AVX512 static void avx512_f16_to_f32(const void *restrict in, float *restrict out, size_t n)
{
    const unsigned char *p = in;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(p + 2 * i));
        _mm512_storeu_ps(out + i, _mm512_cvtph_ps(h));
    }
    if (i < n) {
        uint16_t hb[16] = {0};
        float fb[16];
        memcpy(hb, p + 2 * i, 2 * (n - i));
        _mm512_storeu_ps(fb, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)hb)));
        memcpy(out + i, fb, sizeof(float) * (n - i));
    }
}

/* Rounding comes from the immediate, not MXCSR, so a caller's rounding mode
 * cannot change the result. */
#define F16_ROUND (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

AVX512 static void avx512_f32_to_f16(const float *restrict in, void *restrict out, size_t n)
{
    unsigned char *p = out;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x = _mm512_loadu_ps(in + i);
        _mm256_storeu_si256((__m256i *)(p + 2 * i), _mm512_cvtps_ph(x, F16_ROUND));
    }
    if (i < n) {
        float fb[16] = {0};
        uint16_t hb[16];
        memcpy(fb, in + i, sizeof(float) * (n - i));
        _mm256_storeu_si256((__m256i *)hb, _mm512_cvtps_ph(_mm512_loadu_ps(fb), F16_ROUND));
        memcpy(p + 2 * i, hb, 2 * (n - i));
    }
}

static const kernel_set kernels_avx512 = {"avx512", avx512_bf16_to_f32, avx512_f16_to_f32,
                                          avx512_f32_to_bf16, avx512_f32_to_f16};

/* AVX2 for the bf16 integer arithmetic, F16C for the f16 converts. */
#define AVX2 __attribute__((target("avx2,f16c")))

AVX2 static inline __m256i avx2_bf16x8_to_f32(__m128i h)
{
    return _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
}

AVX2 static inline __m128i avx2_f32x8_to_bf16(__m256i x)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i quiet = _mm256_set1_epi32(0x0040);
    __m256i hi = _mm256_srli_epi32(x, 16);
    __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(x, bias), _mm256_and_si256(hi, one)), 16);
    __m256 xf = _mm256_castsi256_ps(x);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(xf, xf, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan);
    /* Pack 8 x u32 (all < 2^16) to u16: packus works per 128-bit lane, so pack the
     * two halves against each other. */
    return _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
}

AVX2 static void avx2_bf16_to_f32(const void *restrict in, float *restrict out, size_t n)
{
    const unsigned char *p = in;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(p + 2 * i));
        _mm256_storeu_si256((__m256i *)(out + i), avx2_bf16x8_to_f32(h));
    }
    if (i < n) {
        uint16_t hb[8] = {0};
        float fb[8];
        memcpy(hb, p + 2 * i, 2 * (n - i));
        _mm256_storeu_si256((__m256i *)fb, avx2_bf16x8_to_f32(_mm_loadu_si128((const __m128i *)hb)));
        memcpy(out + i, fb, sizeof(float) * (n - i));
    }
}

AVX2 static void avx2_f32_to_bf16(const float *restrict in, void *restrict out, size_t n)
{
    unsigned char *p = out;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(in + i));
        _mm_storeu_si128((__m128i *)(p + 2 * i), avx2_f32x8_to_bf16(x));
    }
    if (i < n) {
        float fb[8] = {0};
        uint16_t hb[8];
        memcpy(fb, in + i, sizeof(float) * (n - i));
        _mm_storeu_si128((__m128i *)hb, avx2_f32x8_to_bf16(_mm256_loadu_si256((const __m256i *)fb)));
        memcpy(p + 2 * i, hb, 2 * (n - i));
    }
}

AVX2 static void f16c_f16_to_f32(const void *restrict in, float *restrict out, size_t n)
{
    const unsigned char *p = in;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(p + 2 * i));
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
    }
    if (i < n) {
        uint16_t hb[8] = {0};
        float fb[8];
        memcpy(hb, p + 2 * i, 2 * (n - i));
        _mm256_storeu_ps(fb, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)hb)));
        memcpy(out + i, fb, sizeof(float) * (n - i));
    }
}

AVX2 static void f16c_f32_to_f16(const float *restrict in, void *restrict out, size_t n)
{
    unsigned char *p = out;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(in + i);
        _mm_storeu_si128((__m128i *)(p + 2 * i), _mm256_cvtps_ph(x, F16_ROUND));
    }
    if (i < n) {
        float fb[8] = {0};
        uint16_t hb[8];
        memcpy(fb, in + i, sizeof(float) * (n - i));
        _mm_storeu_si128((__m128i *)hb, _mm256_cvtps_ph(_mm256_loadu_ps(fb), F16_ROUND));
        memcpy(p + 2 * i, hb, 2 * (n - i));
    }
}

static const kernel_set kernels_f16c = {"f16c", avx2_bf16_to_f32, f16c_f16_to_f32,
                                        avx2_f32_to_bf16, f16c_f32_to_f16};

static int have_avx512(void)
{
    __builtin_cpu_init(); /* needed if we run before libgcc's constructor */
    return __builtin_cpu_supports("avx512f");
}

static int have_f16c(void)
{
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return 0; /* also proves the OS saves ymm */
#if defined(__clang__)
    /* clang's __builtin_cpu_supports has no "f16c" (as of clang 14): ask CPUID. */
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
#else
    return __builtin_cpu_supports("f16c");
#endif
}

#endif /* __x86_64__ */

/* The choice is made once; the atomic makes a first-use race between threads
 * harmless (both compute the same pointer). */
static _Atomic(const kernel_set *) chosen_kernels;

static const kernel_set *kernels(void)
{
    const kernel_set *k = atomic_load_explicit(&chosen_kernels, memory_order_acquire);
    if (k) return k;
    k = &kernels_scalar;
#if defined(__x86_64__)
    if (have_avx512())
        k = &kernels_avx512;
    else if (have_f16c())
        k = &kernels_f16c;
#endif
    atomic_store_explicit(&chosen_kernels, k, memory_order_release);
    return k;
}

const char *tp_dtype_kernel_name(void) { return kernels()->name; }

/* NULL if the named kernel is unknown or this CPU/build cannot run it. */
static const kernel_set *kernels_named(const char *name)
{
    if (!name) return NULL;
    if (strcmp(name, "scalar") == 0) return &kernels_scalar;
#if defined(__x86_64__)
    if (strcmp(name, "avx512") == 0) return have_avx512() ? &kernels_avx512 : NULL;
    if (strcmp(name, "f16c") == 0) return have_f16c() ? &kernels_f16c : NULL;
#endif
    return NULL;
}

/* ---- dispatch ---------------------------------------------------------------- */

/* Integer sources are cold (npy fixtures, token ids); a plain cast loop suffices. */
#define CAST_LOOP(T)                                         \
    do {                                                     \
        const unsigned char *p_ = in;                        \
        for (size_t i_ = 0; i_ < n; i_++) {                  \
            T v_;                                            \
            memcpy(&v_, p_ + sizeof(T) * i_, sizeof(T));     \
            out[i_] = (float)v_;                             \
        }                                                    \
    } while (0)

static void convert_to_f32(const kernel_set *k, tp_dtype src, const void *restrict in,
                           float *restrict out, size_t n)
{
    if (n == 0) return; /* in/out may be NULL then; memcpy must not see them */
    switch (src) {
    case TP_DTYPE_F32: memcpy(out, in, n * sizeof(float)); return;
    case TP_DTYPE_BF16: k->bf16_to_f32(in, out, n); return;
    case TP_DTYPE_F16: k->f16_to_f32(in, out, n); return;
    case TP_DTYPE_F64: CAST_LOOP(double); return;
    case TP_DTYPE_I64: CAST_LOOP(int64_t); return;
    case TP_DTYPE_I32: CAST_LOOP(int32_t); return;
    case TP_DTYPE_I16: CAST_LOOP(int16_t); return;
    case TP_DTYPE_I8: CAST_LOOP(int8_t); return;
    case TP_DTYPE_U8: CAST_LOOP(uint8_t); return;
    case TP_DTYPE_BOOL: {
        const unsigned char *p = in;
        for (size_t i = 0; i < n; i++) out[i] = p[i] != 0;
        return;
    }
    case TP_DTYPE_COUNT: break;
    }
    /* A dtype outside the enum is a bug in the caller, not bad user input (user
     * dtypes are validated where they are parsed), and this API has no status. */
    fprintf(stderr, "transpolmo: internal error: tp_convert_to_f32: invalid dtype %d\n", (int)src);
    abort();
}

static void convert_from_f32(const kernel_set *k, tp_dtype dst, const float *restrict in,
                             void *restrict out, size_t n)
{
    if (n == 0) return;
    switch (dst) {
    case TP_DTYPE_F32: memcpy(out, in, n * sizeof(float)); return;
    case TP_DTYPE_BF16: k->f32_to_bf16(in, out, n); return;
    case TP_DTYPE_F16: k->f32_to_f16(in, out, n); return;
    case TP_DTYPE_F64: {
        unsigned char *p = out;
        for (size_t i = 0; i < n; i++) {
            double d = in[i];
            memcpy(p + sizeof d * i, &d, sizeof d);
        }
        return;
    }
    default: break;
    }
    fprintf(stderr, "transpolmo: internal error: tp_convert_from_f32: %s is not a float dtype\n",
            tp_dtype_name(dst));
    abort();
}

void tp_convert_to_f32(tp_dtype src, const void *restrict in, float *restrict out, size_t n)
{
    convert_to_f32(kernels(), src, in, out, n);
}

void tp_convert_from_f32(tp_dtype dst, const float *restrict in, void *restrict out, size_t n)
{
    convert_from_f32(kernels(), dst, in, out, n);
}

int tp_convert_to_f32_with(const char *kernel, tp_dtype src, const void *restrict in,
                           float *restrict out, size_t n)
{
    const kernel_set *k = kernels_named(kernel);
    if (!k) return 0;
    convert_to_f32(k, src, in, out, n);
    return 1;
}

int tp_convert_from_f32_with(const char *kernel, tp_dtype dst, const float *restrict in,
                             void *restrict out, size_t n)
{
    const kernel_set *k = kernels_named(kernel);
    if (!k) return 0;
    convert_from_f32(k, dst, in, out, n);
    return 1;
}
