#include "backend/cpu.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>


#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define TP_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define TP_MULTIVERSION
#endif

void cpu_gemm_nt(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)k,
                alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

void cpu_gemm_nn(int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n, (blasint)k,
                alpha, A, (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

TP_MULTIVERSION
void cpu_rmsnorm(float *out, const float *x, const float *w, int64_t rows, int64_t d, float eps)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d;
        float *o = out + r * d;
        /* Sum of squares in f32 with 16 partial sums (vectorises; torch also reduces
         * in f32), mean then rsqrt as Olmo2RMSNorm / LlamaRMSNorm do. */
        float acc[16] = {0};
        int64_t i = 0;
        for (; i + 16 <= d; i += 16)
            for (int j = 0; j < 16; j++) acc[j] += xr[i + j] * xr[i + j];
        float ss = 0;
        for (int j = 0; j < 16; j++) ss += acc[j];
        for (; i < d; i++) ss += xr[i] * xr[i];
        float inv = 1.0f / sqrtf(ss / (float)d + eps);
        for (i = 0; i < d; i++) o[i] = w[i] * (xr[i] * inv);
    }
}

TP_MULTIVERSION
void cpu_silu_mul(float *restrict gate, const float *restrict up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

TP_MULTIVERSION
void cpu_add(float *restrict y, const float *restrict x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void cpu_softmax_causal(float *s, int64_t T, int64_t ld, float scale)
{
    cpu_softmax_causal_offset(s, T, ld, scale, 0);
}

TP_MULTIVERSION
void cpu_softmax_causal_offset(float *s, int64_t T, int64_t ld, float scale, int64_t offset)
{
    int64_t width = offset + T;
    for (int64_t i = 0; i < T; i++) {
        float *row = s + i * ld;
        int64_t n = offset + i + 1;
        float mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) {
            row[j] *= scale;
            mx = row[j] > mx ? row[j] : mx;
        }
        float sum = 0;
        for (int64_t j = 0; j < n; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int64_t j = 0; j < n; j++) row[j] *= inv;
        for (int64_t j = n; j < width; j++) row[j] = 0.0f;
    }
}

void cpu_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

int cpu_get_threads(void) { return openblas_get_num_threads(); }

const char *cpu_features(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "x86-64 baseline";
#else
    return "generic";
#endif
}
