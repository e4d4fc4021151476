/* test_dtype.c — dtype names/sizes, scalar f16/bf16 rounding, and every vector
 * kernel bit-identical to the scalar path.
 *
 * The scalar rounding is checked without trusting any other converter: every
 * midpoint between two adjacent f16 (bf16) values is exactly representable in f32,
 * so rounding the midpoint, and its f32 neighbours on either side, has exactly one
 * right answer that the test derives from the enumeration of all 65536 patterns.
 */
#include "core/dtype.h"
#include "tp_test.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const all_kernels[] = {"scalar", "f16c", "avx512"};
#define N_KERNELS (sizeof all_kernels / sizeof all_kernels[0])

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng_next(void) /* splitmix64: deterministic, so failures reproduce */
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- names and sizes ------------------------------------------------------- */

START_TEST(test_names_sizes)
{
    static const char *names[] = {"F32", "F16", "BF16", "F64", "I64",
                                  "I32", "I16", "I8",   "U8",  "BOOL"};
    static const size_t sizes[] = {4, 2, 2, 8, 8, 4, 2, 1, 1, 1};
    for (int t = 0; t < TP_DTYPE_COUNT; t++) {
        ck_assert_str_eq(tp_dtype_name((tp_dtype)t), names[t]);
        ck_assert_uint_eq(tp_dtype_size((tp_dtype)t), sizes[t]);
        ck_assert_int_eq(tp_dtype_from_name(names[t]), t);
    }
    ck_assert_int_eq(tp_dtype_from_name("F8_E5M2"), -1);
    ck_assert_int_eq(tp_dtype_from_name("f32"), -1); /* safetensors spelling is exact */
    ck_assert_int_eq(tp_dtype_from_name(""), -1);
    ck_assert_int_eq(tp_dtype_from_name(NULL), -1);
    ck_assert(tp_dtype_is_float(TP_DTYPE_BF16) && tp_dtype_is_float(TP_DTYPE_F64));
    ck_assert(!tp_dtype_is_float(TP_DTYPE_I32) && !tp_dtype_is_float(TP_DTYPE_BOOL));
    ck_assert_uint_eq(tp_dtype_size(TP_DTYPE_COUNT), 0);
}
END_TEST

START_TEST(test_kernel_name)
{
    const char *k = tp_dtype_kernel_name();
    ck_assert(strcmp(k, "avx512") == 0 || strcmp(k, "f16c") == 0 || strcmp(k, "scalar") == 0);
#if defined(__x86_64__) && !defined(__clang__) /* clang lacks the "f16c" query */
    /* The dispatcher must take the best kernel the CPU offers. */
    if (__builtin_cpu_supports("avx512f")) ck_assert_str_eq(k, "avx512");
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c")) ck_assert_str_eq(k, "f16c");
#endif
    float x = 1.0f;
    uint16_t unused;
    ck_assert_int_eq(tp_convert_from_f32_with("no-such-kernel", TP_DTYPE_BF16, &x, &unused, 1), 0);
    fprintf(stderr, "test_dtype: dispatcher picked '%s'; kernels runnable here:", k);
    for (size_t i = 0; i < N_KERNELS; i++) {
        uint16_t h;
        if (tp_convert_from_f32_with(all_kernels[i], TP_DTYPE_BF16, &x, &h, 1))
            fprintf(stderr, " %s", all_kernels[i]);
    }
    fprintf(stderr, "\n");
}
END_TEST

/* ---- scalar known values ---------------------------------------------------- */

START_TEST(test_bf16_known)
{
    ck_assert(tp_bf16_to_f32(0x3f80) == 1.0f);
    ck_assert(tp_bf16_to_f32(0xc000) == -2.0f);
    ck_assert(isinf(tp_bf16_to_f32(0x7f80)) && tp_bf16_to_f32(0x7f80) > 0);
    ck_assert(isnan(tp_bf16_to_f32(0x7fc0)));
    ck_assert_uint_eq(bits_of(tp_bf16_to_f32(0x0001)), 0x00010000u); /* subnormal */

    ck_assert_uint_eq(tp_f32_to_bf16(1.0f), 0x3f80);
    ck_assert_uint_eq(tp_f32_to_bf16(-0.0f), 0x8000);
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x3f808000u)), 0x3f80); /* tie, even below */
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x3f818000u)), 0x3f82); /* tie, even above */
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x3f808001u)), 0x3f81); /* just above tie */
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x3f807fffu)), 0x3f80);
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x007fffffu)), 0x0080); /* subnormal rounds up */
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x00008000u)), 0x0000); /* tie to even zero */
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x7f7fffffu)), 0x7f80); /* FLT_MAX -> Inf */
    ck_assert_uint_eq(tp_f32_to_bf16(INFINITY), 0x7f80);
    ck_assert_uint_eq(tp_f32_to_bf16(-INFINITY), 0xff80);
    /* NaN whose payload is only in the low 16 bits must stay NaN. */
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x7f800001u)), 0x7fc0);
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0xffc00000u)), 0xffc0);
    ck_assert_uint_eq(tp_f32_to_bf16(float_of(0x7fffffffu)), 0x7fff);
}
END_TEST

START_TEST(test_f16_known)
{
    ck_assert(tp_f16_to_f32(0x3c00) == 1.0f);
    ck_assert(tp_f16_to_f32(0xc000) == -2.0f);
    ck_assert(tp_f16_to_f32(0x7bff) == 65504.0f);
    ck_assert(tp_f16_to_f32(0x0001) == ldexpf(1.0f, -24));
    ck_assert(tp_f16_to_f32(0x03ff) == 1023.0f * ldexpf(1.0f, -24));
    ck_assert(tp_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    ck_assert_uint_eq(bits_of(tp_f16_to_f32(0x8000)), 0x80000000u);
    ck_assert_uint_eq(bits_of(tp_f16_to_f32(0x7c00)), 0x7f800000u);
    ck_assert_uint_eq(bits_of(tp_f16_to_f32(0xfc00)), 0xff800000u);
    ck_assert_uint_eq(bits_of(tp_f16_to_f32(0x7e00)), 0x7fc00000u);
    ck_assert_uint_eq(bits_of(tp_f16_to_f32(0x7c01)), 0x7fc02000u); /* sNaN made quiet */

    ck_assert_uint_eq(tp_f32_to_f16(1.0f), 0x3c00);
    ck_assert_uint_eq(tp_f32_to_f16(0.1f), 0x2e66);
    ck_assert_uint_eq(tp_f32_to_f16(-0.0f), 0x8000);
    ck_assert_uint_eq(tp_f32_to_f16(65504.0f), 0x7bff);
    ck_assert_uint_eq(tp_f32_to_f16(65519.996f), 0x7bff);
    ck_assert_uint_eq(tp_f32_to_f16(65520.0f), 0x7c00);  /* tie goes to even: Inf */
    ck_assert_uint_eq(tp_f32_to_f16(1e10f), 0x7c00);
    ck_assert_uint_eq(tp_f32_to_f16(-1e10f), 0xfc00);
    ck_assert_uint_eq(tp_f32_to_f16(1.0f + ldexpf(1.0f, -11)), 0x3c00);      /* tie, down */
    ck_assert_uint_eq(tp_f32_to_f16(1.0f + 3 * ldexpf(1.0f, -11)), 0x3c02);  /* tie, up */
    ck_assert_uint_eq(tp_f32_to_f16(ldexpf(1.0f, -24)), 0x0001);
    ck_assert_uint_eq(tp_f32_to_f16(ldexpf(1.0f, -25)), 0x0000);             /* tie to 0 */
    ck_assert_uint_eq(tp_f32_to_f16(nextafterf(ldexpf(1.0f, -25), 1.0f)), 0x0001);
    ck_assert_uint_eq(tp_f32_to_f16(3 * ldexpf(1.0f, -25)), 0x0002);         /* tie, up */
    ck_assert_uint_eq(tp_f32_to_f16(ldexpf(1.0f, -14)), 0x0400);
    ck_assert_uint_eq(tp_f32_to_f16(float_of(0x00000001u)), 0x0000);         /* f32 subnormal */
    ck_assert_uint_eq(tp_f32_to_f16(float_of(0x80000001u)), 0x8000);
    ck_assert_uint_eq(tp_f32_to_f16(INFINITY), 0x7c00);
    ck_assert_uint_eq(tp_f32_to_f16(float_of(0x7f800001u)), 0x7e00);
    ck_assert_uint_eq(tp_f32_to_f16(float_of(0xffffffffu)), 0xffff);
}
END_TEST

/* ---- exhaustive scalar checks ------------------------------------------------ */

typedef float (*widen_fn)(uint16_t);
typedef uint16_t (*narrow_fn)(float);

/* Every non-NaN pattern round-trips; NaNs round-trip once quiet. */
static void check_round_trip(widen_fn widen, narrow_fn narrow, uint16_t quiet_bit)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = widen((uint16_t)h);
        uint16_t back = narrow(f);
        if (isnan(f))
            ck_assert_msg(back == (h | quiet_bit), "NaN %04x -> %04x", h, back);
        else
            ck_assert_msg(back == h, "%04x -> %a -> %04x", h, (double)f, back);
    }
}

START_TEST(test_round_trip_all_patterns)
{
    check_round_trip(tp_bf16_to_f32, tp_f32_to_bf16, 0x0040);
    check_round_trip(tp_f16_to_f32, tp_f32_to_f16, 0x0200);
}
END_TEST

/* For adjacent positive finite a < b: the midpoint goes to whichever has an even
 * last bit, and the f32 just below/above it goes to a/b. Covers every binade,
 * subnormals and the overflow edge (max finite and Inf as "b"). */
static void check_midpoints(widen_fn widen, narrow_fn narrow, uint16_t inf)
{
    for (uint32_t a = 0; a < inf; a++) {
        uint32_t b = a + 1;
        float fa = widen((uint16_t)a), fb = widen((uint16_t)b);
        /* Exact: a midpoint needs one bit more than the format has. For b = Inf the
         * rounding boundary is half an ulp above the largest finite value. */
        float mid = (b == inf) ? fa + (fa - widen((uint16_t)(a - 1))) / 2 : fa + (fb - fa) / 2;
        ck_assert_msg(mid > fa && mid < fb, "midpoint of %04x not exact", a);
        uint16_t even = (a & 1) ? (uint16_t)b : (uint16_t)a;
        ck_assert_msg(narrow(mid) == even, "midpoint %a: got %04x want %04x", (double)mid,
                      narrow(mid), even);
        ck_assert_msg(narrow(nextafterf(mid, 0.0f)) == a, "below midpoint of %04x", a);
        ck_assert_msg(narrow(nextafterf(mid, INFINITY)) == b, "above midpoint of %04x", a);
        ck_assert(narrow(-mid) == (even | 0x8000));
    }
}

START_TEST(test_midpoints_bf16)
{
    check_midpoints(tp_bf16_to_f32, tp_f32_to_bf16, 0x7f80);
}
END_TEST

START_TEST(test_midpoints_f16)
{
    check_midpoints(tp_f16_to_f32, tp_f32_to_f16, 0x7c00);
}
END_TEST

/* ---- kernels vs scalar ---------------------------------------------------------- */

/* Random f32 bit patterns, salted with the cases most likely to expose a kernel
 * that differs: ties for both formats, NaN payloads, subnormals, overflow edges. */
static void fill_specials(uint32_t *x, size_t n)
{
    static const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u,
        0xff800001u, 0x7fffffffu, 0x7f80ffffu, 0x00000001u, 0x007fffffu, 0x80400000u,
        0x3f808000u, 0x3f818000u, 0x477ff000u, 0x477fefffu, 0x33000000u, 0x33000001u,
        0x387fe000u, 0x38800000u, 0x7f7fffffu, 0xff7fffffu, 0x00008000u, 0x00018000u};
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rng_next();
        switch (r % 6) {
        case 0: x[i] = special[(r >> 8) % (sizeof special / sizeof special[0])]; break;
        case 1: x[i] = ((uint32_t)(r >> 32) & 0xffff0000u) | 0x8000u; break; /* bf16 tie */
        case 2: x[i] = ((uint32_t)(r >> 32) & 0xffffe000u) | 0x1000u; break; /* f16 tie */
        case 3: x[i] = (uint32_t)(r >> 32) & 0x807fffffu; break;            /* subnormal */
        case 4: x[i] = ((uint32_t)(r >> 32) & 0x807fffffu) | 0x7f800000u; break; /* Inf/NaN */
        default: x[i] = (uint32_t)(r >> 32); break;
        }
    }
}

/* Lengths around the 8- and 16-wide bodies and their tails. */
static const size_t lengths[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 100, 1027, 4099};
#define GUARD 32
#define SENTINEL 0xA5

START_TEST(test_kernels_from_f32)
{
    static const tp_dtype dsts[] = {TP_DTYPE_BF16, TP_DTYPE_F16};
    size_t maxn = 4099;
    uint32_t *x = malloc(maxn * 4);
    uint16_t *want = malloc(maxn * 2);
    unsigned char *got = malloc(maxn * 2 + 1 + GUARD);
    ck_assert(x && want && got);
    int ran_any_vector = 0;
    for (int rep = 0; rep < 20; rep++) {
        fill_specials(x, maxn);
        for (size_t d = 0; d < 2; d++) {
            for (size_t i = 0; i < maxn; i++)
                want[i] = dsts[d] == TP_DTYPE_BF16 ? tp_f32_to_bf16(float_of(x[i]))
                                                  : tp_f32_to_f16(float_of(x[i]));
            for (size_t k = 0; k < N_KERNELS; k++) {
                for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++) {
                    size_t n = lengths[li];
                    /* Odd byte offset: outputs may land anywhere in a caller's buffer. */
                    size_t off = rep & 1;
                    memset(got, SENTINEL, maxn * 2 + 1 + GUARD);
                    if (!tp_convert_from_f32_with(all_kernels[k], dsts[d], (const float *)x,
                                                  got + off, n))
                        continue;
                    if (k > 0) ran_any_vector = 1;
                    ck_assert_msg(memcmp(got + off, want, 2 * n) == 0,
                                  "kernel %s, %s, n=%zu differs from scalar", all_kernels[k],
                                  tp_dtype_name(dsts[d]), n);
                    for (size_t g = 0; g < GUARD; g++)
                        ck_assert_msg(got[off + 2 * n + g] == SENTINEL,
                                      "kernel %s wrote past n=%zu", all_kernels[k], n);
                }
            }
        }
    }
    /* The public entry point must agree too. */
    tp_convert_from_f32(TP_DTYPE_BF16, (const float *)x, got, maxn);
    for (size_t i = 0; i < maxn; i++) want[i] = tp_f32_to_bf16(float_of(x[i]));
    ck_assert(memcmp(got, want, 2 * maxn) == 0);
#if defined(__x86_64__) && !defined(__clang__)
    if (__builtin_cpu_supports("avx512f") || __builtin_cpu_supports("f16c"))
        ck_assert_msg(ran_any_vector, "CPU has vector units but no vector kernel ran");
#endif
    (void)ran_any_vector;
    free(x);
    free(want);
    free(got);
}
END_TEST

START_TEST(test_kernels_to_f32)
{
    /* All 65536 patterns, in a shuffled order so every tail sees varied values. */
    size_t n_all = 65536;
    uint16_t *h = malloc(n_all * 2 + 1);
    uint32_t *want = malloc(n_all * 4);
    unsigned char *got = malloc(n_all * 4 + GUARD);
    ck_assert(h && want && got);
    for (size_t i = 0; i < n_all; i++) h[i] = (uint16_t)i;
    for (size_t i = n_all - 1; i > 0; i--) {
        size_t j = rng_next() % (i + 1);
        uint16_t t = h[i];
        h[i] = h[j];
        h[j] = t;
    }
    static const tp_dtype srcs[] = {TP_DTYPE_BF16, TP_DTYPE_F16};
    for (size_t d = 0; d < 2; d++) {
        for (size_t i = 0; i < n_all; i++)
            want[i] = bits_of(srcs[d] == TP_DTYPE_BF16 ? tp_bf16_to_f32(h[i]) : tp_f16_to_f32(h[i]));
        for (size_t k = 0; k < N_KERNELS; k++) {
            size_t ns[sizeof lengths / sizeof lengths[0] + 1];
            memcpy(ns, lengths, sizeof lengths);
            ns[sizeof lengths / sizeof lengths[0]] = n_all;
            for (size_t li = 0; li < sizeof ns / sizeof ns[0]; li++) {
                size_t n = ns[li];
                memset(got, SENTINEL, n_all * 4 + GUARD);
                if (!tp_convert_to_f32_with(all_kernels[k], srcs[d], h, (float *)got, n)) continue;
                ck_assert_msg(memcmp(got, want, 4 * n) == 0, "kernel %s, %s, n=%zu differs",
                              all_kernels[k], tp_dtype_name(srcs[d]), n);
                for (size_t g = 0; g < GUARD; g++)
                    ck_assert_msg(got[4 * n + g] == SENTINEL, "kernel %s wrote past n=%zu",
                                  all_kernels[k], n);
            }
            /* Input straight from an mmap may sit at an odd address. */
            unsigned char *odd = malloc(2 * 1027 + 1);
            ck_assert(odd);
            memcpy(odd + 1, h, 2 * 1027);
            if (tp_convert_to_f32_with(all_kernels[k], srcs[d], odd + 1, (float *)got, 1027))
                ck_assert(memcmp(got, want, 4 * 1027) == 0);
            free(odd);
        }
    }
    tp_convert_to_f32(TP_DTYPE_F16, h, (float *)got, n_all);
    for (size_t i = 0; i < n_all; i++) want[i] = bits_of(tp_f16_to_f32(h[i]));
    ck_assert(memcmp(got, want, 4 * n_all) == 0);
    free(h);
    free(want);
    free(got);
}
END_TEST

/* ---- other dtypes ------------------------------------------------------------------ */

START_TEST(test_other_dtypes)
{
    float out[4];
    double d[4] = {1.5, -2.25, 1e300, 0.1};
    tp_convert_to_f32(TP_DTYPE_F64, d, out, 4);
    ck_assert(out[0] == 1.5f && out[1] == -2.25f && isinf(out[2]) && out[3] == 0.1f);

    int64_t i64[3] = {-3, 0, (int64_t)1 << 40};
    tp_convert_to_f32(TP_DTYPE_I64, i64, out, 3);
    ck_assert(out[0] == -3.0f && out[1] == 0.0f && out[2] == 1099511627776.0f);
    int32_t i32[2] = {-7, 123456};
    tp_convert_to_f32(TP_DTYPE_I32, i32, out, 2);
    ck_assert(out[0] == -7.0f && out[1] == 123456.0f);
    int16_t i16[2] = {-32768, 5};
    tp_convert_to_f32(TP_DTYPE_I16, i16, out, 2);
    ck_assert(out[0] == -32768.0f && out[1] == 5.0f);
    int8_t i8[2] = {-128, 127};
    tp_convert_to_f32(TP_DTYPE_I8, i8, out, 2);
    ck_assert(out[0] == -128.0f && out[1] == 127.0f);
    uint8_t u8[2] = {255, 0};
    tp_convert_to_f32(TP_DTYPE_U8, u8, out, 2);
    ck_assert(out[0] == 255.0f && out[1] == 0.0f);
    uint8_t b[3] = {1, 0, 1};
    tp_convert_to_f32(TP_DTYPE_BOOL, b, out, 3);
    ck_assert(out[0] == 1.0f && out[1] == 0.0f && out[2] == 1.0f);

    float f[3] = {1.0f, -0.5f, 3.25f};
    tp_convert_to_f32(TP_DTYPE_F32, f, out, 3);
    ck_assert(memcmp(out, f, sizeof f) == 0);
    double wide[3];
    tp_convert_from_f32(TP_DTYPE_F64, f, wide, 3);
    ck_assert(wide[0] == 1.0 && wide[1] == -0.5 && wide[2] == 3.25);
    float back[3];
    tp_convert_from_f32(TP_DTYPE_F32, f, back, 3);
    ck_assert(memcmp(back, f, sizeof f) == 0);
    tp_convert_to_f32(TP_DTYPE_BF16, NULL, NULL, 0); /* n = 0 touches nothing */
}
END_TEST

static Suite *dtype_suite(void)
{
    Suite *s = suite_create("dtype");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_names_sizes);
    tcase_add_test(tc, test_kernel_name);
    tcase_add_test(tc, test_bf16_known);
    tcase_add_test(tc, test_f16_known);
    tcase_add_test(tc, test_round_trip_all_patterns);
    tcase_add_test(tc, test_midpoints_bf16);
    tcase_add_test(tc, test_midpoints_f16);
    tcase_add_test(tc, test_kernels_from_f32);
    tcase_add_test(tc, test_kernels_to_f32);
    tcase_add_test(tc, test_other_dtypes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tp_test_run_suite(dtype_suite()); }
