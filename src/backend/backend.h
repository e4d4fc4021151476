/* backend.h — the one table of operations the model and the analyses call.
 *
 * A backend is a struct of named slots (function pointers) plus a context, in the
 * shape of ggml's ggml_backend_i: `struct tp_backend { name; iface; context; }`.
 * backend/cpu/ fills every slot; backend/cuda/ fills what its kernels implement. A
 * slot a backend does not implement is NULL, and calling it through the wrappers
 * below fails with "op <slot> is not available on <backend>" (TP_ERR_UNSUPPORTED).
 *
 * Memory. Every pointer an op takes is memory of that backend: alloc/free give it,
 * upload/download copy between it and host memory, sync waits for queued work. On
 * the CPU backend that memory is host memory (`host_memory` is 1): upload and
 * download are memcpy and callers may read a buffer directly. On a device backend
 * ops may be queued: a download (or sync) is where results become visible and where
 * a failure of queued work is reported.
 *
 * Argument structs and arrays (tp_linear_out, tp_attn_shape, tp_attn_seq) are host
 * memory; the buffers they point to are memory of the backend.
 *
 * Conventions: row-major, f32 activations; weights of `linear` in their stored
 * dtype (F32, BF16, F16); leading dimensions in elements. The CPU results are
 * bit-identical for any thread count, and a row's result does not depend on the
 * other rows of the call.
 *
 * Backward ops sit beside their forward op (`<op>_bwd`), take the forward op's
 * arguments plus the upstream gradient, and write (or, where stated, accumulate)
 * the gradients of the inputs, in f32. They differentiate with respect to the
 * activations only: no op forms a weight gradient except rmsnorm_bwd's optional dw
 * and embed_bwd. The CPU fills them (model/backward.h is their caller); a device
 * backend may leave them NULL.
 *
 * Adding a backend: a folder backend/<name>/ with a file that fills a tp_backend_i
 * with designated initialisers (`.rmsnorm = my_rmsnorm,`) and one line in the
 * registry of backend.c.
 */
#ifndef TP_BACKEND_H
#define TP_BACKEND_H

#include "core/dtype.h"
#include "core/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tp_backend tp_backend;

/* ---- argument types ---------------------------------------------------------- */

/* One output of `linear`: Y[m, n] (row stride ldy) = X · Wᵀ, W [n, k] as nn.Linear
 * stores it (row stride ldw elements), of dtype F32, BF16 or F16. */
typedef struct {
    const void *w;
    int64_t n, ldw;
    tp_dtype dtype;
    float *y;
    int64_t ldy;
} tp_linear_out;

/* Causal attention over a batch of sequences of different lengths. Sequence s has
 * nq queries at positions off..off+nq-1 and keys/values at positions 0..off+nq-1;
 * query head h reads kv head h / (H/K). For each (sequence, head):
 *   p[i, j] = softmax_j(scale * q_i · k_j) over j <= off+i (f32, like torch's eager
 *   attention), z_i = p_i · V.
 * Modes: FUSED writes z only; PATTERN writes p only, into seqs[s].p = [H, nq, off+nq]
 * (masked entries exactly 0); PV writes z from seqs[s].p (after a hook may have
 * edited it). PATTERN then PV gives the same bits as FUSED. */
typedef struct {
    const float *q;          /* [nq, ldq]: the sequence's first query row, head 0 */
    const float *k, *v;      /* [off+nq, ldk]: keys / values from position 0 */
    float *z;                /* [nq, ldz]: output, head h at column h*dh */
    float *p;                /* [H, nq, off+nq] pattern (PATTERN / PV modes) */
    int64_t nq, off;
} tp_attn_seq;

typedef struct {
    int H, K, dh;
    int64_t ldq, ldk, ldz;
    float scale;
} tp_attn_shape;

typedef enum { TP_ATTN_FUSED = 0, TP_ATTN_PATTERN, TP_ATTN_PV } tp_attn_mode;

/* The gradients of one sequence of `attention_bwd`, in the layouts of the forward's
 * buffers: dz like z (row stride ldz), dq like q (ldq), dk and dv like k and v (ldk,
 * off+nq rows from position 0). dp, when not NULL, receives d/dpattern [H, nq, off+nq]
 * = dz_i · v_j for every (i, j), the masked upper part included, as autograd gives it
 * for the eager pattern tensor (z = pattern @ V reads every entry). */
typedef struct {
    const float *dz;
    float *dq, *dk, *dv;
    float *dp;
} tp_attn_grad;

/* The SAE's sparse codes of n rows as CSR (analysis/sae/sae.h, TopK): row r's entries
 * are [ptr[r], ptr[r+1]) of idx (latent) and val (its activation). An entry with
 * val ≤ 0 is padding and is skipped by every op (the CPU writes only positive ones;
 * a GPU writes k slots a row). */
typedef struct {
    const int64_t *ptr;
    const int32_t *idx;
    const float *val;
} tp_sae_codes;

/* Arguments of `sae_sparse_bwd`: the gradient of a TopK SAE's loss (sae.h) from one
 * forward pass. grad [2Fd + F + d] in sae.h's layout (W_enc, W_dec, b_enc, b_dec) is
 * written. For each row r, in row order, first its codes (residual gradient
 * coef·delta[r]) then its AuxK codes (aux_coef·adelta[r]); aux.ptr NULL: none. */
typedef struct {
    int64_t n, d, F;
    tp_sae_codes codes, aux;
    const float *delta, *adelta;    /* [n, d]: x̂ − u, ê − e */
    const float *xt;                /* [n, d]: the encoder's input */
    const float *W_enc, *W_dec;     /* [F, d] */
    float coef, aux_coef;           /* 2/N, 2α/N */
    bool sub_b_dec;                 /* apply_b_dec_to_input: b_dec also reaches pre through x̃ */
    float *grad;
} tp_sae_bwd;

/* Arguments of `sae_adam` (sae.h's optimiser steps 1–4): P parameters in sae.h's
 * layout, W_dec at params + F·d (its gradient at grad + F·d). */
typedef struct {
    int64_t P, F, d;
    float *params, *grad, *m, *v;
    bool decoder_unit_norm;
    double max_grad_norm;           /* 0: no clipping */
    float step_size, bc2, eps;      /* lr_t/(1−β1^t), √(1−β2^t), ε */
    float w1, b2, w2;               /* 1−β1, β2, 1−β2 */
} tp_sae_adam;

/* Arguments of `sae_relu_bwd_init` and `sae_relu_bwd_pre`: the gradient of a ReLU
 * SAE's loss (sae.h) from one forward pass, grad [2Fd + F + d] in sae.h's layout.
 * The caller runs, on the same backend: sae_relu_bwd_init; (n > 0) the gemms
 * ∂W_dec = coef·fᵀ·delta and G = coef·delta·W_decᵀ; sae_relu_bwd_pre; the gemm
 * ∂W_enc = Gᵀ·x̃ and, when b_dec is subtracted from the input, ∂b_dec −= W_encᵀ·∂b_enc. */
typedef struct {
    int64_t n, d, F;
    const float *f;                 /* [n, F]: the codes (pre after sae_relu) */
    const float *delta;             /* [n, d]: x̂ − u */
    const float *W_dec;             /* [F, d] */
    const float *dec_norm;          /* [F]: ‖W_dec[i]‖ as sae_relu wrote it */
    float coef, l1_coef;            /* 2/N, λ_t/N */
    float *G;                       /* [n, F]: coef·delta·W_decᵀ in, ∂L/∂pre out */
    float *colsum;                  /* [F] scratch: Σ_r f[r] */
    float *grad;
} tp_sae_relu_bwd;

typedef enum { TP_NO_TRANS = 0, TP_TRANS = 1 } tp_trans;

/* What a backend says about itself (versions.json, logs). */
typedef struct {
    const char *name;          /* "cpu", "cuda" */
    const char *device;        /* "x86-64 (avx512f)", "NVIDIA H200" */
    const char *kernels;       /* CPU features the kernels dispatch on */
    const char *linear_gemm;   /* "transpolmo-avx512", "transpolmo-avx512-bf16" (BF16 weights on the
                                  AVX512-BF16 kernel), "openblas", "cublas" */
    const char *blas;          /* the BLAS library as it describes itself ("OpenBLAS 0.3.21 ...") */
    int threads;               /* compute threads of this process (CPU) */
} tp_backend_info;

/* forward.bf16_compute: BF16 weights times X rounded to bf16 on AVX512-BF16 (auto:
 * where the CPU has it; on: an error where it does not), or f32 X times widened W. */
typedef enum { TP_BF16_COMPUTE_AUTO = 0, TP_BF16_COMPUTE_ON, TP_BF16_COMPUTE_OFF } tp_bf16_compute;

/* Settings a backend is opened with (from the config's forward.* keys). backend_open
 * with NULL options uses the config's defaults: {.own_gemm = true}, the rest 0
 * (bf16_compute auto). */
typedef struct {
    int threads;               /* 0: the library default */
    bool own_gemm;             /* CPU: TranspOLMo's AVX-512 GEMM where the CPU has it (forward.gemm auto) */
    tp_bf16_compute bf16_compute; /* CPU, own GEMM: forward.bf16_compute */
    int device;                /* GPU ordinal */
    bool tf32;                 /* CUDA: TF32 tensor cores for f32 GEMMs */
} tp_backend_options;

/* ---- the table ---------------------------------------------------------------- */

/* Completion handles of download_async: a double buffer needs two. */
enum { TP_BE_COPY_SLOTS = 2 };

typedef struct {
    /* buffers */
    tp_status (*alloc)(tp_backend *be, size_t bytes, void **ptr);   /* bytes 0 gives NULL */
    void (*free)(tp_backend *be, void *ptr);                        /* NULL ok */
    tp_status (*upload)(tp_backend *be, void *dst, const void *host_src, size_t bytes);
    tp_status (*download)(tp_backend *be, void *host_dst, const void *src, size_t bytes);
    /* dst = src, both memory of this backend, not overlapping (the KV cache, gathers) */
    tp_status (*copy)(tp_backend *be, void *dst, const void *src, size_t bytes);
    tp_status (*sync)(tp_backend *be);
    void (*info)(const tp_backend *be, tp_backend_info *out);
    /* Weight streaming (model/model_device.c). prefetch queues dst = host_src on a copy
     * lane of its own, after the work queued so far (so a buffer the queued ops still
     * read is overwritten only when they are done), and returns without waiting for
     * the copy; host_src must stay valid and unchanged until a prefetch_wait or sync.
     * prefetch_wait makes the ops queued after it wait for every prefetch queued
     * before it. On the CPU a memcpy and nothing. */
    tp_status (*prefetch)(tp_backend *be, void *dst, const void *host_src, size_t bytes);
    tp_status (*prefetch_wait)(tp_backend *be);
    /* Pinned host memory (capture's double buffers): host memory the device can copy
     * into without the host waiting. CUDA: cudaHostAlloc; CPU: aligned malloc. bytes 0
     * gives NULL; host_free(NULL) is fine. */
    tp_status (*host_alloc)(tp_backend *be, size_t bytes, void **ptr);
    void (*host_free)(tp_backend *be, void *ptr);
    /* host_dst = src (memory of this backend), queued after the work queued so far and
     * returning without waiting: the caller may go on queueing ops that overwrite src
     * (the copy is done before they run). host_dst must be host_alloc memory, left
     * alone until `wait` on the same slot (0 <= slot < TP_BE_COPY_SLOTS) returns; a
     * wait covers every download_async queued on its slot before it. wait is where a
     * failure of the queued work is reported. CPU: memcpy, and wait returns at once. */
    tp_status (*download_async)(tp_backend *be, void *host_dst, const void *src, size_t bytes, int slot);
    tp_status (*wait)(tp_backend *be, int slot);

    /* forward-pass ops (and their backward beside them) */

    /* Every output from the same X [m, k] (row stride ldx), summed in f32. */
    tp_status (*linear)(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx,
                        const tp_linear_out *outs, int nout);
    /* dX [m, k] (row stride ldx) = Σ_i dY_i · W_i, written: dy[i] is [m, outs[i].n]
     * with outs[i].ldy's row stride (the gradient of outs[i].y); outs[i].y is not
     * read. x is not read either (no weight gradient) and may be NULL. */
    tp_status (*linear_bwd)(tp_backend *be, int64_t m, int64_t k, const float *x, int64_t ldx,
                            const tp_linear_out *outs, int nout, const float *const *dy, float *dx);
    /* out[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w   (out may alias x) */
    tp_status (*rmsnorm)(tp_backend *be, float *out, const float *x, const float *w, int64_t rows, int64_t d,
                         float eps);
    /* With r = 1/sqrt(mean(x²) + eps) per row and g = dout:
     *   dx = r · (g⊙w − x · r² · Σ(g⊙w⊙x) / d)     written; dx may alias dout
     *   dw = Σ_rows g ⊙ x · r                        written; dw NULL: not wanted */
    tp_status (*rmsnorm_bwd)(tp_backend *be, float *dx, float *dw, const float *dout, const float *x,
                             const float *w, int64_t rows, int64_t d, float eps);
    /* In place on x [rows, nh*dh], rotate_half convention (pairs (i, i+dh/2) of each
     * head); row r is at position pos[r]; cos, sin are [max_pos, dh/2] tables. */
    tp_status (*rope)(tp_backend *be, float *x, int64_t rows, int nh, int dh, const int32_t *pos,
                      const float *cos, const float *sin);
    /* In place: dx holds d/d(rotated x) and becomes d/dx, the rotation by −angle
     * (a rotation's Jacobian is its transpose). */
    tp_status (*rope_bwd)(tp_backend *be, float *dx, int64_t rows, int nh, int dh, const int32_t *pos,
                          const float *cos, const float *sin);
    tp_status (*attention)(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs, int nseq,
                           tp_attn_mode mode);
    /* Gradients of z through the causal attention above, per sequence: grads[s] for
     * seqs[s] (q, k, v as the forward read them; z is not read). The pattern P0 is
     * recomputed from q and k with the forward's own arithmetic (the same bits as
     * PATTERN mode), so nothing [H, T, T] is kept between forward and backward. When
     * seqs[s].p is not NULL it is the pattern z was made from (PV mode after a hook
     * edited it): dv = pᵀ·dz and d/dp = dz·vᵀ use it, and the softmax's Jacobian is
     * taken at P0 (an edit's own Jacobian counts as the identity). dq, dk, dv are
     * written (dk, dv summed over the H/K query heads that share a kv head). The
     * signature differs from the forward's by grads[]: a varlen batch's sequences
     * sit at different rows, so each needs its own gradient pointers. */
    tp_status (*attention_bwd)(tp_backend *be, const tp_attn_shape *a, const tp_attn_seq *seqs,
                               const tp_attn_grad *grads, int nseq);
    /* gate[i] = silu(gate[i]) * up[i] */
    tp_status (*silu_mul)(tp_backend *be, float *gate, const float *up, size_t n);
    /* gate, up: the inputs of silu_mul (before it overwrote gate). With s = σ(gate):
     *   dgate = dout · up · s · (1 + gate · (1 − s)),  dup = dout · gate · s
     * both written; either may alias dout. */
    tp_status (*silu_mul_bwd)(tp_backend *be, float *dgate, float *dup, const float *dout, const float *gate,
                              const float *up, size_t n);
    /* y[i] += x[i] */
    tp_status (*add)(tp_backend *be, float *y, const float *x, size_t n);
    /* out[r, :] = table[ids[r], :] widened to f32; table [vocab, d] of dtype dt (an id
     * outside [0, vocab) is TP_ERR_RANGE naming it and its row). */
    tp_status (*embed)(tp_backend *be, float *out, const void *table, tp_dtype dt, int64_t vocab, int64_t d,
                       const int32_t *ids, int64_t rows);
    /* dtable[ids[r], :] += dout[r, :], accumulated (the caller zeroes dtable; a token
     * that occurs twice gets both rows); f32 [vocab, d]. Ids are checked as in embed. */
    tp_status (*embed_bwd)(tp_backend *be, float *dtable, const float *dout, int64_t vocab, int64_t d,
                           const int32_t *ids, int64_t rows);

    /* dense linear algebra of the analyses (BLAS semantics, row-major) */

    /* C[m,n] = alpha · op(A) · op(B) + beta · C, f32 */
    tp_status (*gemm_f32)(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k, float alpha,
                          const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                          int64_t ldc);
    /* the same in f64 */
    tp_status (*gemm_f64)(tp_backend *be, tp_trans ta, tp_trans tb, int64_t m, int64_t n, int64_t k,
                          double alpha, const double *A, int64_t lda, const double *B, int64_t ldb, double beta,
                          double *C, int64_t ldc);
    /* y = alpha · op(A) · x + beta · y, A [m, n], f32 */
    tp_status (*gemv_f32)(tp_backend *be, tp_trans ta, int64_t m, int64_t n, float alpha, const float *A,
                          int64_t lda, const float *x, float beta, float *y);
    /* Upper triangle of C [n, n] = alpha · op(A)ᵀ-product + beta · C: with ta = TRANS,
     * C = alpha · Aᵀ A + beta C for A [k, n]; with NO_TRANS, alpha · A Aᵀ for A [n, k]. */
    tp_status (*syrk_f64)(tp_backend *be, tp_trans ta, int64_t n, int64_t k, double alpha, const double *A,
                          int64_t lda, double beta, double *C, int64_t ldc);
    /* the same in f32 (twice the f64 rate on CPUs; PCA sums its block products in f64) */
    tp_status (*syrk_f32)(tp_backend *be, tp_trans ta, int64_t n, int64_t k, float alpha, const float *A,
                          int64_t lda, float beta, float *C, int64_t ldc);
    /* Upper triangle of A [n, n] += alpha · x xᵀ */
    tp_status (*syr_f64)(tp_backend *be, int64_t n, double alpha, const double *x, double *A, int64_t lda);
    /* level 1, f64: dot, y += alpha x, ‖x‖₂, x *= alpha */
    tp_status (*dot_f64)(tp_backend *be, int64_t n, const double *x, const double *y, double *out);
    tp_status (*axpy_f64)(tp_backend *be, int64_t n, double alpha, const double *x, double *y);
    tp_status (*nrm2_f64)(tp_backend *be, int64_t n, const double *x, double *out);
    tp_status (*scal_f64)(tp_backend *be, int64_t n, double alpha, double *x);

    /* SAE training, TopK (analysis/sae/sae.h; the f64 sums here and in the ReLU ops
     * below are memory of this backend and are added to, so the caller zeroes them) */

    /* u = s·x, x̃ = u − b_dec (sub_b_dec) or u; sum_u[j] += Σ_r u[r,j], *sqnorm += Σ‖u‖²
     * (either NULL: not wanted). x, u, xt [n, d]. */
    tp_status (*sae_encode_in)(tp_backend *be, const float *x, int64_t n, int64_t d, float s, const float *b_dec,
                               bool sub_b_dec, float *u, float *xt, double *sum_u, double *sqnorm);
    /* Per row r of pre [n, F]: pre[r] += bias (NULL: none), then the k largest of
     * pre[r][cand[j]], j < n_cand (cand NULL: of all F), ties to the lower index,
     * into codes (ptr [n+1], idx, val of room n·k); entries ≤ 0 dropped or padding. */
    tp_status (*sae_topk)(tp_backend *be, float *pre, int64_t n, int64_t F, const float *bias, const int32_t *cand,
                          int64_t n_cand, int64_t k, int64_t *ptr, int32_t *idx, float *val);
    /* out [n, d]: (b − u when u is given, else out as it is) + Σ val·W[idx] over the
     * row's codes; then fires[idx] += 1 and *active += 1 per code (fires NULL: not
     * counted) and *sqsum += Σ out². */
    tp_status (*sae_decode)(tp_backend *be, int64_t n, int64_t d, tp_sae_codes codes, const float *W,
                            const float *b, const float *u, float *out, double *fires, double *active,
                            double *sqsum);
    tp_status (*sae_sparse_bwd)(tp_backend *be, const tp_sae_bwd *a);

    /* Steps 1–4 of sae.h's optimiser step; *grad_norm (host) = ‖g‖₂ before clipping. */
    tp_status (*sae_adam)(tp_backend *be, const tp_sae_adam *a, double *grad_norm);

    /* SAE training, ReLU (L1 penalty weighted by the decoder norms; the dense
     * products are gemm_f32 / gemv_f32 between these) */

    /* dec_norm[i] = ‖W_dec[i]‖ (W_dec [F, d], summed in f64, rounded to f32); then per
     * row r of pre [n, F]: f = max(pre[r] + b_enc, 0) in place; *l1 += Σ f_i·dec_norm_i
     * (f64), fires[i] += 1 and *active += 1 per f_i > 0. */
    tp_status (*sae_relu)(tp_backend *be, float *pre, int64_t n, int64_t F, int64_t d, const float *b_enc,
                          const float *W_dec, float *dec_norm, double *fires, double *active, double *l1);
    /* delta [n, d] += b − u (b − u rounded first, b [d] per row), then *sqsum += Σ delta²
     * (f64): the residual after the decode gemm delta = f·W_dec. */
    tp_status (*sae_residual)(tp_backend *be, int64_t n, int64_t d, const float *b, const float *u, float *delta,
                              double *sqsum);
    /* grad = 0, then ∂b_dec = Σ_r coef·delta[r] (f32, in row order). Before the gemms. */
    tp_status (*sae_relu_bwd_init)(tp_backend *be, const tp_sae_relu_bwd *a);
    /* After the gemms (tp_sae_relu_bwd): colsum = Σ_r f[r] (f32, row order); ∂W_dec[i]
     * += (l1_coef·colsum_i/dec_norm_i)·W_dec[i] where colsum_i > 0 and dec_norm_i > 0;
     * G[r, i] = f[r, i] > 0 ? G[r, i] + l1_coef·dec_norm_i : 0; ∂b_enc += Σ_r G[r]
     * (f32, row order). n ≥ 1. */
    tp_status (*sae_relu_bwd_pre)(tp_backend *be, const tp_sae_relu_bwd *a);
} tp_backend_i;

struct tp_backend {
    const char *name;
    bool host_memory;          /* buffers are host memory: hooks read them in place */
    tp_backend_i iface;
    void *context;
};

/* ---- choosing a backend ------------------------------------------------------- */

/* Opens the backend called `name` ("cpu", "cuda"). An unknown name, or one this
 * build lacks, is TP_ERR_CONFIG listing the known ones; "cuda" without a GPU is
 * TP_ERR_NO_DEVICE. The CPU backend is a process-wide singleton (its thread pool):
 * opening it again reconfigures it. */
tp_status backend_open(const char *name, const tp_backend_options *opt, tp_backend **out);
void backend_close(tp_backend *be);   /* NULL and the CPU singleton ok */
/* The process-wide CPU backend (created on first use with default options). The
 * analyses run their host-side linear algebra on it. */
tp_backend *backend_cpu(void);
/* The backend the model runs on: backend_cpu() unless backend_set_default() chose
 * another (main does, from the `device` key). */
tp_backend *backend_default(void);
void backend_set_default(tp_backend *be);
/* Names of the backends this build has, "cpu, cuda". */
const char *backend_names(void);

/* TP_ERR_UNSUPPORTED: "op <op> is not available on <backend>". */
tp_status backend_unsupported(const tp_backend *be, const char *op);
/* TP_ERR_RANGE unless 0 <= slot < TP_BE_COPY_SLOTS (download_async, wait). */
tp_status backend_check_copy_slot(const tp_backend *be, int slot);

/* ---- calling an op -------------------------------------------------------------
 * be_<slot>(be, ...) calls the slot, or fails with backend_unsupported when it is
 * NULL. */
#define TP_BE_CALL(be, slot, ...) \
    ((be)->iface.slot ? (be)->iface.slot((be), __VA_ARGS__) : backend_unsupported((be), #slot))

#define be_alloc(be, ...) TP_BE_CALL(be, alloc, __VA_ARGS__)
#define be_upload(be, ...) TP_BE_CALL(be, upload, __VA_ARGS__)
#define be_download(be, ...) TP_BE_CALL(be, download, __VA_ARGS__)
#define be_copy(be, ...) TP_BE_CALL(be, copy, __VA_ARGS__)
#define be_prefetch(be, ...) TP_BE_CALL(be, prefetch, __VA_ARGS__)
#define be_host_alloc(be, ...) TP_BE_CALL(be, host_alloc, __VA_ARGS__)
#define be_download_async(be, ...) TP_BE_CALL(be, download_async, __VA_ARGS__)
#define be_linear(be, ...) TP_BE_CALL(be, linear, __VA_ARGS__)
#define be_linear_bwd(be, ...) TP_BE_CALL(be, linear_bwd, __VA_ARGS__)
#define be_rmsnorm(be, ...) TP_BE_CALL(be, rmsnorm, __VA_ARGS__)
#define be_rmsnorm_bwd(be, ...) TP_BE_CALL(be, rmsnorm_bwd, __VA_ARGS__)
#define be_rope(be, ...) TP_BE_CALL(be, rope, __VA_ARGS__)
#define be_rope_bwd(be, ...) TP_BE_CALL(be, rope_bwd, __VA_ARGS__)
#define be_attention(be, ...) TP_BE_CALL(be, attention, __VA_ARGS__)
#define be_attention_bwd(be, ...) TP_BE_CALL(be, attention_bwd, __VA_ARGS__)
#define be_silu_mul(be, ...) TP_BE_CALL(be, silu_mul, __VA_ARGS__)
#define be_silu_mul_bwd(be, ...) TP_BE_CALL(be, silu_mul_bwd, __VA_ARGS__)
#define be_add(be, ...) TP_BE_CALL(be, add, __VA_ARGS__)
#define be_embed(be, ...) TP_BE_CALL(be, embed, __VA_ARGS__)
#define be_embed_bwd(be, ...) TP_BE_CALL(be, embed_bwd, __VA_ARGS__)
#define be_gemm_f32(be, ...) TP_BE_CALL(be, gemm_f32, __VA_ARGS__)
#define be_gemm_f64(be, ...) TP_BE_CALL(be, gemm_f64, __VA_ARGS__)
#define be_gemv_f32(be, ...) TP_BE_CALL(be, gemv_f32, __VA_ARGS__)
#define be_syrk_f64(be, ...) TP_BE_CALL(be, syrk_f64, __VA_ARGS__)
#define be_syrk_f32(be, ...) TP_BE_CALL(be, syrk_f32, __VA_ARGS__)
#define be_syr_f64(be, ...) TP_BE_CALL(be, syr_f64, __VA_ARGS__)
#define be_dot_f64(be, ...) TP_BE_CALL(be, dot_f64, __VA_ARGS__)
#define be_axpy_f64(be, ...) TP_BE_CALL(be, axpy_f64, __VA_ARGS__)
#define be_nrm2_f64(be, ...) TP_BE_CALL(be, nrm2_f64, __VA_ARGS__)
#define be_scal_f64(be, ...) TP_BE_CALL(be, scal_f64, __VA_ARGS__)
#define be_sae_encode_in(be, ...) TP_BE_CALL(be, sae_encode_in, __VA_ARGS__)
#define be_sae_topk(be, ...) TP_BE_CALL(be, sae_topk, __VA_ARGS__)
#define be_sae_decode(be, ...) TP_BE_CALL(be, sae_decode, __VA_ARGS__)
#define be_sae_sparse_bwd(be, ...) TP_BE_CALL(be, sae_sparse_bwd, __VA_ARGS__)
#define be_sae_adam(be, ...) TP_BE_CALL(be, sae_adam, __VA_ARGS__)
#define be_sae_relu(be, ...) TP_BE_CALL(be, sae_relu, __VA_ARGS__)
#define be_sae_residual(be, ...) TP_BE_CALL(be, sae_residual, __VA_ARGS__)
#define be_sae_relu_bwd_init(be, ...) TP_BE_CALL(be, sae_relu_bwd_init, __VA_ARGS__)
#define be_sae_relu_bwd_pre(be, ...) TP_BE_CALL(be, sae_relu_bwd_pre, __VA_ARGS__)

static inline tp_status be_sync(tp_backend *be)
{
    return be->iface.sync ? be->iface.sync(be) : TP_OK;
}
static inline tp_status be_prefetch_wait(tp_backend *be)
{
    return be->iface.prefetch_wait ? be->iface.prefetch_wait(be) : TP_OK;
}
static inline void be_free(tp_backend *be, void *ptr)
{
    if (ptr && be->iface.free) be->iface.free(be, ptr);
}
static inline tp_status be_wait(tp_backend *be, int slot)
{
    return be->iface.wait ? be->iface.wait(be, slot) : TP_OK;
}
static inline void be_host_free(tp_backend *be, void *ptr)
{
    if (ptr && be->iface.host_free) be->iface.host_free(be, ptr);
}
static inline void be_info(const tp_backend *be, tp_backend_info *out)
{
    *out = (tp_backend_info){.name = be->name, .device = "", .kernels = "", .linear_gemm = "", .blas = "",
                             .threads = 1};
    if (be->iface.info) be->iface.info(be, out);
}

#endif
