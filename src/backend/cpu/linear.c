/* linear.c — the forward pass's GEMM, Y = X · Wᵀ (see linear.h).
 *
 * Blocking (BLIS-style, with W in the role of B):
 *   - X is packed once per block of rows (up to a 32 MiB budget) into tiles of MR = 12
 *     rows, as [k-block][tile][kc][12], so the kernel reads 12 consecutive floats per k;
 *   - a task owns NCP = 8 panels of NR = 32 output columns of one output; for each
 *     k-block of KC = 512 it converts and transposes its W rows into a [panel][kc][32]
 *     buffer (512 KiB, L2), then, MCT = 16 tiles at a time (384 KiB of X, L2), runs
 *     the 12x32 micro-kernel over every panel and tile;
 *   - the micro-kernel keeps the 12x32 block of Y in 24 zmm registers, loads two W
 *     vectors per k and broadcasts the 12 X values: 24 FMAs per 14 loads.
 * KC, NCP and MCT were picked on the 2-core Zen 4 box with tools/bench/bench_linear
 * (m = 512 and 1024, the forward pass's shapes) from KC 256..1024, NCP 2..8, MCT 8..32.
 * Edges: X rows past m are packed as zeros and never stored; W rows past n are
 * packed as zeros and Y columns past n are masked; k past the end of a block is
 * masked when loading.
 *
 * The bf16 path (cpu_linear_bf16_enable, every output BF16, a CPU with AVX512-BF16):
 * the same blocking and the same packed layouts, with a 4-byte slot holding a pair of
 * bf16 values (k, k+1) instead of one f32 at k. W is copied in its stored bits (no
 * conversion); X is rounded to bf16 once per call while packing (round to nearest
 * even, as tp_f32_to_bf16 and torch's .to(bfloat16)); the micro-kernel is the same
 * 12x32 block with VDPBF16PS in place of the FMA, two k per instruction. An odd k
 * block ends with a pair whose second half is zero in X and W.
 */
#include "backend/cpu/linear.h"

#include "backend/cpu/pool.h"

#include <stdlib.h>
#include <string.h>

#define MR 12
#define NR 32
#define KC 512  /* k-block */
#define NCP 8   /* panels per task: W buffer NCP*KC*NR floats = 512 KiB per thread */
#define MCT 16  /* tiles per row block inside a task: 16*MR*KC floats = 384 KiB of X */
#define XPACK_BYTES ((int64_t)32 << 20) /* packed-X budget that bounds MC */
#define MAX_THREADS 64

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define LIN_TARGET __attribute__((target("avx512f,avx512bw,avx512vl")))
#define LIN_INLINE LIN_TARGET static inline __attribute__((always_inline))
/* Only the micro-kernel needs AVX512-BF16; everything else of the bf16 path is AVX-512F/BW. */
#define LIN_BF16_TARGET __attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl")))

static int lin_enabled = 1, lin_bf16 = 0;

void cpu_linear_enable(int on) { lin_enabled = on != 0; }

int cpu_linear_supported(void)
{
    return lin_enabled && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}

int cpu_linear_bf16_supported(void) { return cpu_linear_supported() && __builtin_cpu_supports("avx512bf16"); }

void cpu_linear_bf16_enable(int on) { lin_bf16 = on != 0; }

int cpu_linear_bf16_active(void) { return lin_bf16 && cpu_linear_bf16_supported(); }

/* ---- workspace ------------------------------------------------------------------ */

static struct {
    float *xp;
    size_t xp_cap;                  /* floats */
    float *wbuf[MAX_THREADS];       /* NCP*KC*NR floats each */
} ws;

static float *grow(float **p, size_t *cap, size_t n)
{
    if (*cap >= n) return *p;
    size_t bytes = (n * sizeof(float) + 63) & ~(size_t)63;
    float *q = aligned_alloc(64, bytes);
    if (!q) return NULL;
    free(*p);
    *p = q, *cap = n;
    return q;
}

static int ws_threads(int nt)
{
    for (int t = 0; t < nt && t < MAX_THREADS; t++)
        if (!ws.wbuf[t] && !(ws.wbuf[t] = aligned_alloc(64, (size_t)NCP * KC * NR * sizeof(float))))
            return -1;
    return 0;
}

/* ---- loads and the 16x16 transpose ------------------------------------------------ */

/* The first n lanes (none for n <= 0: the bf16 packing asks past the end of k). */

/* Packing kind of the bf16 path: W's stored bf16 bits as 4-byte pairs (k, k+1). */
#define W_BF16_PAIRS ((cpu_wtype)(CPU_W_F16 + 1))

static inline __mmask16 lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? 0 : (__mmask16)((1u << n) - 1u); }
static inline __mmask32 lanes32(int64_t n) { return n >= 32 ? (__mmask32)~0u : n <= 0 ? 0 : (__mmask32)((1u << n) - 1u); }

/* 16 pairs of bf16 from the first `n` (<= 32, rest zero) floats at p, rounded to
 * nearest even on the bit pattern like tp_f32_to_bf16 (NaN stays a quiet NaN);
 * VCVTNE2PS2BF16 is not used: it flushes subnormals (core/dtype.c). */
LIN_INLINE __m512 bf16_pairs_from_f32(const float *p, int64_t n)
{
    __m256i h[2];
    for (int j = 0; j < 2; j++) {
        __m512i x = _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes(n - 16 * j < 0 ? 0 : n - 16 * j), p + 16 * j));
        __m512i hi = _mm512_srli_epi32(x, 16);
        __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)),
                                                       _mm512_and_si512(hi, _mm512_set1_epi32(1))), 16);
        __mmask16 nan = _mm512_cmp_ps_mask(_mm512_castsi512_ps(x), _mm512_castsi512_ps(x), _CMP_UNORD_Q);
        h[j] = _mm512_cvtepi32_epi16(_mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x0040)));
    }
    return _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(h[0]), h[1], 1));
}

/* 16 elements of a row of type `type`, lanes >= `valid` as zero, as f32; for
 * W_BF16_PAIRS, 16 pairs (32 bf16) with the first `valid32` bf16 kept. */
LIN_INLINE __m512 load16(const void *p, cpu_wtype type, __mmask16 valid, __mmask32 valid32)
{
    switch ((int)type) {
    case W_BF16_PAIRS:
        return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(valid32, p));
    case CPU_W_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(
            _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(valid, p)), 16));
    case CPU_W_F16:
        return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(valid, p));
    default:
        return _mm512_maskz_loadu_ps(valid, p);
    }
}

/* r[j] := column j of the 16x16 block whose rows are r[0..15]. */
LIN_INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]),
                c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int g = 0; g < 16; g += 8)
        for (int i = 0; i < 4; i++) {
            t[g + i] = _mm512_shuffle_f32x4(r[g + i], r[g + i + 4], 0x88);
            t[g + i + 4] = _mm512_shuffle_f32x4(r[g + i], r[g + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* ---- packing ---------------------------------------------------------------------- */

/* W rows [p0*NR, p1*NR) ∩ [0, n), columns [k0, k0+kc) -> buf[p-p0][kk][NR], kk over
 * the kd = kc values (kd = ceil(kc / 2) pairs for W_BF16_PAIRS). */
LIN_INLINE void pack_w_typed(const cpu_linear_out *o, cpu_wtype type, int64_t p0, int64_t p1,
                             int64_t k0, int64_t kc, float *buf)
{
    size_t esz = type == CPU_W_F32 ? 4 : 2, per = type == W_BF16_PAIRS ? 2 : 1; /* elements per slot */
    int64_t kd = (kc + (int64_t)per - 1) / (int64_t)per;
    const char *base = (const char *)o->w;
    for (int64_t p = p0; p < p1; p++) {
        float *d = buf + (size_t)(p - p0) * (size_t)kd * NR;
        for (int h = 0; h < 2; h++) {
            int64_t n0 = p * NR + h * 16;
            const char *row[16];
            for (int i = 0; i < 16; i++)
                row[i] = n0 + i < o->n ? base + ((size_t)(n0 + i) * (size_t)o->ldw + (size_t)k0) * esz : NULL;
            for (int64_t kk = 0; kk < kd; kk += 16) {
                __mmask16 km = lanes(kc - kk);
                __mmask32 km32 = lanes32(kc - 2 * kk);
                __m512 r[16];
                for (int i = 0; i < 16; i++)
                    r[i] = row[i] ? load16(row[i] + (size_t)kk * per * esz, type, km, km32) : _mm512_setzero_ps();
                transpose16(r);
                int nk = kd - kk < 16 ? (int)(kd - kk) : 16;
                for (int j = 0; j < nk; j++) _mm512_store_ps(d + (size_t)(kk + j) * NR + h * 16, r[j]);
            }
        }
    }
}

LIN_TARGET static void pack_w(const cpu_linear_out *o, int pairs, int64_t p0, int64_t p1, int64_t k0,
                              int64_t kc, float *buf)
{
    switch (pairs ? (int)W_BF16_PAIRS : (int)o->type) {
    case W_BF16_PAIRS: pack_w_typed(o, W_BF16_PAIRS, p0, p1, k0, kc, buf); break;
    case CPU_W_BF16: pack_w_typed(o, CPU_W_BF16, p0, p1, k0, kc, buf); break;
    case CPU_W_F16: pack_w_typed(o, CPU_W_F16, p0, p1, k0, kc, buf); break;
    default: pack_w_typed(o, CPU_W_F32, p0, p1, k0, kc, buf); break;
    }
}

/* One row block of a call: rows r0..r0+m-1 of X and of every Y. */
typedef struct {
    const float *x;           /* row r0 of X */
    int64_t ldx, r0, m, k, tiles; /* tiles = ceil(m / MR) */
    float *xp;
    const cpu_linear_out *outs;
    int pairs;                /* the bf16 path: 4-byte slots hold bf16 pairs (k, k+1) */
} lin_job;

/* Tasks of one output: NCP panels of NR columns each. */
static int64_t out_tasks(const cpu_linear_out *o) { return ((o->n + NR - 1) / NR + NCP - 1) / NCP; }

/* Packs X tile t (rows t*MR..) for every k-block: xp[kb][t][kd][MR], kd = kc values
 * or, on the bf16 path, kd = ceil(kc / 2) pairs rounded to bf16. */
LIN_TARGET static void pack_x_task(void *arg, int64_t t, int thread)
{
    const lin_job *J = arg;
    (void)thread;
    const float *row[16];
    for (int i = 0; i < 16; i++) {
        int64_t r = t * MR + i;
        row[i] = i < MR && r < J->m ? J->x + (size_t)r * (size_t)J->ldx : NULL;
    }
    int64_t per = J->pairs ? 2 : 1; /* k per slot */
    for (int64_t k0 = 0; k0 < J->k; k0 += KC) {
        int64_t kc = J->k - k0 < KC ? J->k - k0 : KC, kd = (kc + per - 1) / per;
        float *d = J->xp + (size_t)(k0 / per) * (size_t)J->tiles * MR + (size_t)t * (size_t)kd * MR;
        for (int64_t kk = 0; kk < kd; kk += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = !row[i]     ? _mm512_setzero_ps()
                       : J->pairs ? bf16_pairs_from_f32(row[i] + k0 + 2 * kk, kc - 2 * kk)
                                  : _mm512_maskz_loadu_ps(lanes(kc - kk), row[i] + k0 + kk);
            transpose16(r);
            int nk = kd - kk < 16 ? (int)(kd - kk) : 16;
            for (int j = 0; j < nk; j++) _mm512_mask_storeu_ps(d + (size_t)(kk + j) * MR, 0x0FFF, r[j]);
        }
    }
}

/* ---- the micro-kernel ------------------------------------------------------------- */

/* Both micro-kernels: y[0..R-1][0..31] = (first ? 0 : y) + Σ_kk x[kk][i] * w[kk][0..31];
 * columns masked by m0/m1. The block's sum starts from zero and is added to y once,
 * so an element is summed as K/KC chains of at most KC terms plus their sum, not one
 * chain of K. kern_begin zeroes the accumulators, kern_end adds and stores them. */
LIN_INLINE void kern_begin(const int R, const float *y, int64_t ldy, int first, __m512 *c0, __m512 *c1)
{
    if (!first) /* the y block is read at the end: start fetching it now */
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            _mm_prefetch((const char *)(y + (size_t)i * (size_t)ldy), _MM_HINT_T0);
            _mm_prefetch((const char *)(y + (size_t)i * (size_t)ldy + 16), _MM_HINT_T0);
        }
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) c0[i] = c1[i] = _mm512_setzero_ps();
}

LIN_INLINE void kern_end(const int R, __m512 *c0, __m512 *c1, float *y, int64_t ldy, int first, __mmask16 m0,
                         __mmask16 m1)
{
#pragma GCC unroll 12
    for (int i = 0; i < R; i++) {
        float *yi = y + (size_t)i * (size_t)ldy;
        if (!first) {
            c0[i] = _mm512_add_ps(c0[i], _mm512_maskz_loadu_ps(m0, yi));
            c1[i] = _mm512_add_ps(c1[i], _mm512_maskz_loadu_ps(m1, yi + 16));
        }
        _mm512_mask_storeu_ps(yi, m0, c0[i]);
        _mm512_mask_storeu_ps(yi + 16, m1, c1[i]);
    }
}

/* f32: one FMA per k. */
LIN_INLINE void kern(const int R, int64_t kc, const float *restrict x, const float *restrict w,
                     float *restrict y, int64_t ldy, int first, __mmask16 m0, __mmask16 m1)
{
    __m512 c0[MR], c1[MR];
    kern_begin(R, y, ldy, first, c0, c1);
    for (int64_t kk = 0; kk < kc; kk++) {
        __m512 w0 = _mm512_load_ps(w + kk * NR), w1 = _mm512_load_ps(w + kk * NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512 b = _mm512_set1_ps(x[kk * MR + i]);
            c0[i] = _mm512_fmadd_ps(w0, b, c0[i]);
            c1[i] = _mm512_fmadd_ps(w1, b, c1[i]);
        }
    }
    kern_end(R, c0, c1, y, ldy, first, m0, m1);
}

/* bf16: one VDPBF16PS per pair kk of k, c += x[2kk+1]·w[2kk+1], then + x[2kk]·w[2kk]
 * (Intel SDM order; each bf16 product is exact in f32, each add rounds to nearest
 * even, subnormal inputs and outputs are flushed to zero). */
LIN_BF16_TARGET static inline __attribute__((always_inline)) void
kern_bf16(const int R, int64_t kp, const float *restrict x, const float *restrict w, float *restrict y,
          int64_t ldy, int first, __mmask16 m0, __mmask16 m1)
{
    __m512 c0[MR], c1[MR];
    kern_begin(R, y, ldy, first, c0, c1);
    for (int64_t kk = 0; kk < kp; kk++) {
        __m512bh w0 = (__m512bh)_mm512_load_ps(w + kk * NR), w1 = (__m512bh)_mm512_load_ps(w + kk * NR + 16);
#pragma GCC unroll 12
        for (int i = 0; i < R; i++) {
            __m512bh b = (__m512bh)_mm512_set1_ps(x[kk * MR + i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], w0, b);
            c1[i] = _mm512_dpbf16_ps(c1[i], w1, b);
        }
    }
    kern_end(R, c0, c1, y, ldy, first, m0, m1);
}

/* kd: the block's depth in 4-byte slots (k values, or bf16 pairs). */
typedef void (*kern_fn)(int64_t kd, const float *, const float *, float *, int64_t, int, __mmask16, __mmask16);
#define KERN(R)                                                                                             \
    LIN_TARGET static void kern_##R(int64_t kd, const float *x, const float *w, float *y, int64_t ldy,        \
                                    int first, __mmask16 m0, __mmask16 m1)                                  \
    {                                                                                                       \
        kern(R, kd, x, w, y, ldy, first, m0, m1);                                                           \
    }                                                                                                       \
    LIN_BF16_TARGET static void kern_bf16_##R(int64_t kd, const float *x, const float *w, float *y,          \
                                              int64_t ldy, int first, __mmask16 m0, __mmask16 m1)           \
    {                                                                                                       \
        kern_bf16(R, kd, x, w, y, ldy, first, m0, m1);                                                      \
    }
KERN(1) KERN(2) KERN(3) KERN(4) KERN(5) KERN(6) KERN(7) KERN(8) KERN(9) KERN(10) KERN(11) KERN(12)
static const kern_fn kerns[MR + 1] = {NULL,   kern_1, kern_2, kern_3,  kern_4,  kern_5, kern_6,
                                      kern_7, kern_8, kern_9, kern_10, kern_11, kern_12};
static const kern_fn kerns_bf16[MR + 1] = {NULL,        kern_bf16_1, kern_bf16_2,  kern_bf16_3, kern_bf16_4,
                                           kern_bf16_5, kern_bf16_6, kern_bf16_7,  kern_bf16_8, kern_bf16_9,
                                           kern_bf16_10, kern_bf16_11, kern_bf16_12};

/* One task: NCP panels of one output, every k-block, every tile of the row block. */
LIN_TARGET static void gemm_task(void *arg, int64_t task, int thread)
{
    const lin_job *J = arg;
    const cpu_linear_out *o = J->outs; /* the outputs' tasks follow each other in order */
    for (; task >= out_tasks(o); o++) task -= out_tasks(o);
    int64_t npan = (o->n + NR - 1) / NR;
    int64_t p0 = task * NCP, p1 = p0 + NCP < npan ? p0 + NCP : npan;
    float *buf = ws.wbuf[thread];
    const kern_fn *kf = J->pairs ? kerns_bf16 : kerns;
    int64_t per = J->pairs ? 2 : 1; /* k per 4-byte slot */
    for (int64_t k0 = 0; k0 < J->k; k0 += KC) {
        int64_t kc = J->k - k0 < KC ? J->k - k0 : KC, kd = (kc + per - 1) / per;
        pack_w(o, J->pairs, p0, p1, k0, kc, buf);
        const float *xb = J->xp + (size_t)(k0 / per) * (size_t)J->tiles * MR;
        for (int64_t t0 = 0; t0 < J->tiles; t0 += MCT) {
            int64_t t1 = t0 + MCT < J->tiles ? t0 + MCT : J->tiles;
            for (int64_t p = p0; p < p1; p++) {
                int64_t c0 = p * NR, nc = o->n - c0;
                __mmask16 m0 = lanes(nc), m1 = lanes(nc - 16 < 0 ? 0 : nc - 16);
                const float *w = buf + (size_t)(p - p0) * (size_t)kd * NR;
                for (int64_t t = t0; t < t1; t++) {
                    int64_t r = J->m - t * MR < MR ? J->m - t * MR : MR;
                    kf[r](kd, xb + (size_t)t * (size_t)kd * MR, w,
                             o->y + (size_t)(J->r0 + t * MR) * (size_t)o->ldy + c0, o->ldy, k0 == 0, m0, m1);
                }
            }
        }
    }
}

int cpu_linear(int64_t m, int64_t k, const float *x, int64_t ldx, const cpu_linear_out *outs, int nout)
{
    if (!cpu_linear_supported()) return -1;
    if (m <= 0 || nout <= 0) return 0;
    int nt = cpu_get_threads();
    if (nt < 1) nt = 1;
    if (nt > MAX_THREADS) nt = MAX_THREADS;
    if (ws_threads(nt)) return -1;
    if (k <= 0) {
        for (int o = 0; o < nout; o++)
            for (int64_t i = 0; i < m; i++)
                memset(outs[o].y + (size_t)i * (size_t)outs[o].ldy, 0, (size_t)outs[o].n * sizeof(float));
        return 0;
    }

    /* Row blocks: as few as the packed-X budget allows, of equal size in tiles. */
    int64_t tiles_all = (m + MR - 1) / MR;
    int64_t max_tiles = XPACK_BYTES / ((int64_t)MR * k * (int64_t)sizeof(float));
    if (max_tiles < 8) max_tiles = 8;
    int64_t nblk = (tiles_all + max_tiles - 1) / max_tiles;
    int64_t blk_tiles = (tiles_all + nblk - 1) / nblk;
    if (!grow(&ws.xp, &ws.xp_cap, (size_t)blk_tiles * MR * (size_t)k)) return -1;

    int64_t ntasks = 0;
    int pairs = cpu_linear_bf16_active();
    for (int o = 0; o < nout; o++) {
        ntasks += out_tasks(&outs[o]);
        pairs &= outs[o].type == CPU_W_BF16;
    }
    for (int64_t t0 = 0; t0 < tiles_all; t0 += blk_tiles) {
        int64_t r0 = t0 * MR, rows = m - r0 < blk_tiles * MR ? m - r0 : blk_tiles * MR;
        lin_job J = {x + (size_t)r0 * (size_t)ldx, ldx, r0, rows, k, (rows + MR - 1) / MR, ws.xp, outs, pairs};
        cpu_parallel_for(J.tiles, pack_x_task, &J);
        cpu_parallel_for(ntasks, gemm_task, &J);
    }
    return 0;
}

#else /* not x86-64 GCC: the forward pass uses OpenBLAS */

int cpu_linear_supported(void) { return 0; }
void cpu_linear_enable(int on) { (void)on; }
int cpu_linear_bf16_supported(void) { return 0; }
void cpu_linear_bf16_enable(int on) { (void)on; }
int cpu_linear_bf16_active(void) { return 0; }
int cpu_linear(int64_t m, int64_t k, const float *x, int64_t ldx, const cpu_linear_out *outs, int nout)
{
    (void)m, (void)k, (void)x, (void)ldx, (void)outs, (void)nout;
    return -1;
}

#endif
