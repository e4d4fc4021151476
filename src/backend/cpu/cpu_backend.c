/* cpu_backend.c — the CPU backend: backend.h's table filled with the kernels of
 * cpu.h, the GEMM of linear.h and OpenBLAS (blas.h).
 *
 * Host memory throughout: alloc is malloc, upload / download / copy are memcpy,
 * nothing is queued (sync does nothing). One process-wide instance, because the
 * thread pool and OpenBLAS's thread count are process-wide; its context holds the
 * f32 tile of the OpenBLAS path, which lives as long as the process. Every backward
 * slot is filled, each beside its forward one (f32; the kernels in cpu.h and blas.h).
 */
#include "backend/cpu/cpu_backend.h"

#include "backend/cpu/blas.h"     /* cpu_blas_linear, cpu_be_gemm_f32, ... (the OpenBLAS ops) */
#include "backend/cpu/cpu.h"      /* cpu_rmsnorm, cpu_rope, cpu_attention, cpu_silu_mul, cpu_add */
#include "backend/cpu/linear.h"   /* cpu_linear, cpu_linear_supported, cpu_linear_enable, cpu_linear_bf16_* */
#include "backend/cpu/sae_ops.h"  /* cpu_be_sae_*: the SAE's training ops */

#include <cblas.h>                /* openblas_get_config */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    cpu_wtile wtile;
} cpu_context;

/* ---- buffers -------------------------------------------------------------------- */

static tp_status cpu_be_alloc(tp_backend *be, size_t bytes, void **ptr)
{
    *ptr = NULL;
    if (!bytes) return TP_OK;
    *ptr = tp_malloc(bytes);
    return *ptr ? TP_OK : TP_ERR_NOMEM;
}

static void cpu_be_free(tp_backend *be, void *ptr) { free(ptr); }

static tp_status cpu_be_copy(tp_backend *be, void *dst, const void *src, size_t bytes)
{
    if (bytes && dst != src) memcpy(dst, src, bytes);
    return TP_OK;
}

static tp_status cpu_be_sync(tp_backend *be) { return TP_OK; }

/* Pinned memory is plain host memory here, aligned to a cache line (64 bytes: an
 * AVX-512 vector) like the device's copies would like. */
static tp_status cpu_be_host_alloc(tp_backend *be, size_t bytes, void **ptr)
{
    *ptr = NULL;
    if (!bytes) return TP_OK;
    if (posix_memalign(ptr, 64, bytes) != 0) {
        *ptr = NULL;
        return tp_err(TP_ERR_NOMEM, "out of memory allocating %zu bytes of host buffers", bytes);
    }
    return TP_OK;
}

/* Nothing is queued: the copy is done on return, and waiting is only the slot check. */
static tp_status cpu_be_download_async(tp_backend *be, void *host_dst, const void *src, size_t bytes, int slot)
{
    TP_CHECK(backend_check_copy_slot(be, slot));
    return cpu_be_copy(be, host_dst, src, bytes);
}

static tp_status cpu_be_wait(tp_backend *be, int slot) { return backend_check_copy_slot(be, slot); }

static void cpu_be_info(const tp_backend *be, tp_backend_info *out)
{
    static char device[64];
#if defined(__x86_64__)
    snprintf(device, sizeof device, "x86-64 (%s)", cpu_features());
#else
    snprintf(device, sizeof device, "cpu (%s)", cpu_features());
#endif
    *out = (tp_backend_info){.name = be->name, .device = device, .kernels = cpu_features(),
                             .linear_gemm = cpu_linear_bf16_active() ? "transpolmo-avx512-bf16"
                                            : cpu_linear_supported() ? "transpolmo-avx512" : "openblas",
                             .blas = openblas_get_config(), .threads = cpu_get_threads()};
}

/* ---- linear ----------------------------------------------------------------------- */

/* Below this many rows an f32 product is a matrix-vector one (a decoding step), where
 * OpenBLAS's GEMV beats packing the weights for a 12-row kernel. */
#define LINEAR_MIN_ROWS 4
/* Outputs per cpu_linear call (they share one packed X); more are split into groups,
 * which gives the same bits: an element's sum does not depend on the other outputs. */
#define LINEAR_GROUP 8

static int own_gemm_reads(tp_dtype dt)
{
    return dt == TP_DTYPE_F32 || dt == TP_DTYPE_BF16 || dt == TP_DTYPE_F16;
}

static tp_status linear_own(int64_t m, int64_t k, const float *x, int64_t ldx, const tp_linear_out *outs, int nout)
{
    cpu_linear_out o[LINEAR_GROUP];
    for (int i0 = 0; i0 < nout; i0 += LINEAR_GROUP) {
        int n = nout - i0 < LINEAR_GROUP ? nout - i0 : LINEAR_GROUP;
        for (int i = 0; i < n; i++) {
            const tp_linear_out *s = &outs[i0 + i];
            cpu_wtype t = s->dtype == TP_DTYPE_BF16 ? CPU_W_BF16 : s->dtype == TP_DTYPE_F16 ? CPU_W_F16 : CPU_W_F32;
            o[i] = (cpu_linear_out){s->w, s->n, s->ldw, t, s->y, s->ldy};
        }
        if (cpu_linear(m, k, x, ldx, o, n))
            return tp_err(TP_ERR_NOMEM, "linear: out of memory for the GEMM's packing workspace");
    }
    return TP_OK;
}

/* The AVX-512 GEMM when the CPU has it, it is enabled and it reads every weight
 * dtype, except for a few f32 rows; otherwise OpenBLAS, one output at a time. */
static tp_status cpu_be_linear(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx,
                               const tp_linear_out *outs, int nout)
{
    cpu_context *c = be->context;
    int use = cpu_linear_supported(), all_f32 = 1;
    for (int i = 0; use && i < nout; i++) {
        use = own_gemm_reads(outs[i].dtype);
        all_f32 &= outs[i].dtype == TP_DTYPE_F32;
    }
    if (use && (m >= LINEAR_MIN_ROWS || !all_f32)) return linear_own(m, k, x, ldx, outs, nout);
    for (int i = 0; i < nout; i++) TP_CHECK(cpu_blas_linear(&c->wtile, m, k, x, ldx, &outs[i]));
    return TP_OK;
}

/* dX = Σ dY_i · W_i on OpenBLAS whatever the forward took: sgemm NN reads W as it is
 * stored (the forward's own kernel packs W transposed for Y = X Wᵀ and has no NN
 * form), BF16/F16 through the same converted tiles. */
static tp_status cpu_be_linear_bwd(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx,
                                   const tp_linear_out *outs, int nout, const float *const *dy, float *dx)
{
    cpu_context *c = be->context;
    return cpu_blas_linear_bwd(&c->wtile, m, k, outs, nout, dy, dx, ldx);
}

/* ---- the other forward-pass ops --------------------------------------------------- */

static tp_status cpu_be_rmsnorm(tp_backend *be, float *out, const float *x, const float *w, int64_t rows, int64_t d,
                                float eps)
{
    cpu_rmsnorm(out, x, w, rows, d, eps);
    return TP_OK;
}

static tp_status cpu_be_rmsnorm_bwd(tp_backend *be, float *dx, float *dw, const float *dout, const float *x,
                                    const float *w, int64_t rows, int64_t d, float eps)
{
    if (cpu_rmsnorm_bwd(dx, dw, dout, x, w, rows, d, eps))
        return tp_err(TP_ERR_NOMEM, "rmsnorm_bwd: out of memory for the weight gradient's sums");
    return TP_OK;
}

static tp_status cpu_be_rope(tp_backend *be, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
                             const float *cos_t, const float *sin_t)
{
    cpu_rope(x, rows, nh, dh, pos, cos_t, sin_t);
    return TP_OK;
}

static tp_status cpu_be_rope_bwd(tp_backend *be, float *dx, int64_t rows, int nh, int dh, const int32_t *pos,
                                 const float *cos_t, const float *sin_t)
{
    cpu_rope_bwd(dx, rows, nh, dh, pos, cos_t, sin_t);
    return TP_OK;
}

static tp_status cpu_be_attention(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs, int nseq,
                                  tp_attn_mode mode)
{
    if (cpu_attention(a, seqs, nseq, mode))
        return tp_err(TP_ERR_NOMEM, "attention: out of memory for the per-thread score blocks");
    return TP_OK;
}

static tp_status cpu_be_attention_bwd(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs,
                                      const tp_attn_grad *grads, int nseq)
{
    if (a->K < 1 || a->H % a->K)
        return tp_err(TP_ERR_RANGE, "attention_bwd: %d query heads do not share %d kv heads evenly", a->H, a->K);
    if (cpu_attention_bwd(a, seqs, grads, nseq))
        return tp_err(TP_ERR_NOMEM, "attention_bwd: out of memory for the per-thread pattern blocks");
    return TP_OK;
}

static tp_status cpu_be_silu_mul(tp_backend *be, float *gate, const float *up, size_t n)
{
    cpu_silu_mul(gate, up, n);
    return TP_OK;
}

static tp_status cpu_be_silu_mul_bwd(tp_backend *be, float *dgate, float *dup, const float *dout,
                                     const float *gate, const float *up, size_t n)
{
    cpu_silu_mul_bwd(dgate, dup, dout, gate, up, n);
    return TP_OK;
}

static tp_status cpu_be_add(tp_backend *be, float *y, const float *x, size_t n)
{
    cpu_add(y, x, n);
    return TP_OK;
}

static tp_status cpu_be_embed(tp_backend *be, float *out, const void *table, tp_dtype dt, int64_t vocab, int64_t d,
                              const int32_t *ids, int64_t rows)
{
    size_t esz = tp_dtype_size(dt);
    for (int64_t r = 0; r < rows; r++) {
        int32_t id = ids[r];
        if (id < 0 || id >= vocab)
            return tp_err(TP_ERR_RANGE, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                          id, (long long)r, (long long)vocab);
        tp_convert_to_f32(dt, (const char *)table + (size_t)id * (size_t)d * esz, out + (size_t)r * (size_t)d,
                          (size_t)d);
    }
    return TP_OK;
}

static tp_status cpu_be_embed_bwd(tp_backend *be, float *dtable, const float *dout, int64_t vocab, int64_t d,
                                  const int32_t *ids, int64_t rows)
{
    for (int64_t r = 0; r < rows; r++)
        if (ids[r] < 0 || ids[r] >= vocab)
            return tp_err(TP_ERR_RANGE, "token id %d at position %lld is outside the vocabulary [0, %lld)",
                          ids[r], (long long)r, (long long)vocab);
    for (int64_t r = 0; r < rows; r++) cpu_add(dtable + (size_t)ids[r] * (size_t)d, dout + (size_t)r * (size_t)d,
                                               (size_t)d);
    return TP_OK;
}

/* ---- the table -------------------------------------------------------------------- */

static cpu_context cpu_ctx;

static tp_backend cpu_backend = {
    .name = "cpu",
    .host_memory = true,
    .iface = {
        .alloc = cpu_be_alloc,
        .free = cpu_be_free,
        .upload = cpu_be_copy,     /* host memory: every copy is a memcpy */
        .download = cpu_be_copy,
        .copy = cpu_be_copy,
        .sync = cpu_be_sync,
        .info = cpu_be_info,
        .prefetch = cpu_be_copy,   /* nothing is queued: a memcpy, done on return */
        .prefetch_wait = cpu_be_sync,
        .host_alloc = cpu_be_host_alloc,
        .host_free = cpu_be_free,
        .download_async = cpu_be_download_async,
        .wait = cpu_be_wait,

        .linear = cpu_be_linear,
        .linear_bwd = cpu_be_linear_bwd,
        .rmsnorm = cpu_be_rmsnorm,
        .rmsnorm_bwd = cpu_be_rmsnorm_bwd,
        .rope = cpu_be_rope,
        .rope_bwd = cpu_be_rope_bwd,
        .attention = cpu_be_attention,
        .attention_bwd = cpu_be_attention_bwd,
        .silu_mul = cpu_be_silu_mul,
        .silu_mul_bwd = cpu_be_silu_mul_bwd,
        .add = cpu_be_add,
        .embed = cpu_be_embed,
        .embed_bwd = cpu_be_embed_bwd,

        .gemm_f32 = cpu_be_gemm_f32,
        .gemm_f64 = cpu_be_gemm_f64,
        .gemv_f32 = cpu_be_gemv_f32,
        .syrk_f64 = cpu_be_syrk_f64,
        .syrk_f32 = cpu_be_syrk_f32,
        .syr_f64 = cpu_be_syr_f64,
        .dot_f64 = cpu_be_dot_f64,
        .axpy_f64 = cpu_be_axpy_f64,
        .nrm2_f64 = cpu_be_nrm2_f64,
        .scal_f64 = cpu_be_scal_f64,

        .sae_encode_in = cpu_be_sae_encode_in,
        .sae_topk = cpu_be_sae_topk,
        .sae_decode = cpu_be_sae_decode,
        .sae_sparse_bwd = cpu_be_sae_sparse_bwd,
        .sae_adam = cpu_be_sae_adam,
        .sae_relu = cpu_be_sae_relu,
        .sae_residual = cpu_be_sae_residual,
        .sae_relu_bwd_init = cpu_be_sae_relu_bwd_init,
        .sae_relu_bwd_pre = cpu_be_sae_relu_bwd_pre,
    },
    .context = &cpu_ctx,
};

tp_backend *backend_cpu_get(void) { return &cpu_backend; }

tp_status backend_cpu_configure(const tp_backend_options *opt, tp_backend **out)
{
    if (opt) {
        cpu_set_threads(opt->threads);   /* 0 leaves OpenBLAS's default */
        cpu_linear_enable(opt->own_gemm);
        if (opt->bf16_compute == TP_BF16_COMPUTE_ON && !cpu_linear_bf16_supported())
            return tp_err(TP_ERR_CONFIG, "forward.bf16_compute: on needs TranspOLMo's GEMM (forward.gemm: auto) on a "
                          "CPU with AVX512-BF16 and AVX-512 F/BW/VL; this %s; use auto (bf16 compute where the CPU "
                          "has it) or off", !opt->own_gemm ? "run has forward.gemm: openblas"
                                            : cpu_linear_supported() ? "CPU has no AVX512-BF16"
                                                                     : "CPU has no AVX-512");
        /* the same choice on every rank of a homogeneous job: the same kernel, the same bits */
        cpu_linear_bf16_enable(opt->bf16_compute != TP_BF16_COMPUTE_OFF);
    }
    *out = &cpu_backend;
    return TP_OK;
}
