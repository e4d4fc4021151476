/* sae.h — sparse autoencoders on activation rows: forward, hand-written backward,
 * Adam, data-parallel steps, checkpoints (phase 4, numerical core).
 *
 * Shapes. d = cfg.d_in, F = cfg.d_sae. Parameters live in ONE contiguous f32 block
 * (so one MPI_Allreduce sums the whole gradient), in this order:
 *   W_enc [F, d]   row i = encoder direction of latent i (SAELens' W_enc is its
 *                  transpose, [d, F]; exports transpose)
 *   W_dec [F, d]   row i = decoder direction w_i (SAELens layout)
 *   b_enc [F], b_dec [d]
 * The gradient and the Adam moments m, v have the same layout.
 *
 * Inputs. Rows x are row-major f32 [n, d]. The SAE works on s·x, where the input
 *   scale s = √d / mean_n ‖x_n‖ is computed once from a sample
 *   (sae_compute_input_scale, over all ranks) and stored, so that E‖s·x‖ = √d
 *   (Anthropic, April 2024 update). Everything below is in the scaled space.
 *
 * Forward, for a row x (scaled: u = s·x):
 *   x̃   = u − b_dec if cfg.apply_b_dec_to_input, else u
 *   pre = W_enc x̃ + b_enc                                       [F]
 *   relu       f = max(pre, 0)
 *   topk       f_i = max(pre_i, 0) for the k largest pre_i of the row (ties: lower
 *              index first), 0 elsewhere (SAELens/OpenAI: TopK, then ReLU)
 *   batchtopk  f_i = pre_i if pre_i ≥ θ_b and pre_i > 0, else 0, where θ_b is the
 *              (k·N)-th largest positive pre-activation over the GLOBAL batch of N
 *              rows (Bussmann et al. 2024, "BatchTopK"; all ranks together, found
 *              exactly by a 4-pass radix select on the float bits with one
 *              MPI_Allreduce of a 256-bin histogram per pass; ties at θ_b are all
 *              kept; with ≤ k·N positive values every positive one is kept and θ_b
 *              is the smallest of them). Selecting over the global batch makes np
 *              ranks give what one rank gives on the same batch.
 *   x̂   = Σ_i f_i w_i + b_dec   (sparse for topk/batchtopk: only the rows of
 *              W_dec of active latents are read)
 *
 * Loss over a global batch of N rows (all ranks), t = completed steps:
 *   L = (1/N) Σ_n ‖u_n − x̂_n‖²                                   recon
 *     + λ_t (1/N) Σ_n Σ_i f_ni ‖w_i‖₂                             relu only: L1
 *                                weighted by decoder norms (Anthropic April 2024)
 *     + α (1/N) Σ_n ‖e_n − ê_n‖²                                  topk/batchtopk: AuxK
 *   AuxK (Gao et al. 2024): e_n = u_n − x̂_n is held constant (no gradient flows
 *   through it); ê_n = Σ_{i∈A_n} max(pre_ni, 0) w_i (no bias), A_n = the
 *   min(aux_k, #dead) largest pre_ni among the dead latents; α = cfg.aux_coef
 *   (1/32). Dead: a latent that fired (f > 0) on no row of the last
 *   cfg.dead_tokens rows seen: since_fired[i] ≥ dead_tokens, counted before the
 *   step. No dead latent or aux_k = 0: no AuxK term. (OpenAI's code divides the
 *   AuxK error by the batch variance of e; we use the paper's plain squared error,
 *   as SAELens does, which needs no extra global statistic.)
 *   Every term is divided by the global N, so the sum over ranks of the local
 *   gradients is the gradient of the global mean.
 *
 * Schedules (T = cfg.total_steps, t = 0-based step, round(x) = ⌊x + ½⌋):
 *   λ_t  = λ · min(1, (t+1)/W),  W = round(l1_warmup_frac·T)  (W = 0: λ)
 *   lr_t = lr · min(1, (t+1)/Wl) · min(1, max(0, (T − t)/D)),
 *          Wl = round(lr_warmup_frac·T), D = round(lr_decay_frac·T)  (0: no ramp);
 *          so the LR falls linearly over the last D steps, to lr/D at t = T − 1.
 *
 * One optimiser step (sae_apply_step), identical on every rank, on the gradient
 * summed over ranks:
 *   1. if decoder_unit_norm: g_{w_i} −= (g_{w_i}·w_i) w_i  (OpenAI: the component
 *      along each unit decoder row is removed before Adam)
 *   2. if max_grad_norm > 0: g *= min(1, c / (‖g‖₂ + 1e-6))  (torch clip_grad_norm_)
 *   3. Adam (PyTorch's, no weight decay), f32 state, t' = t + 1:
 *      m = m + (1−β1)(g − m);  v = β2 v + (1−β2) g²;
 *      p −= (lr_t / (1 − β1^t')) · m / (√v / √(1 − β2^t') + ε)
 *   4. if decoder_unit_norm: w_i /= ‖w_i‖₂
 *   5. since_fired[i] = 0 if latent i fired in the global batch, else += N
 *   6. batchtopk: θ = θ_b at t = 0, then θ = (1 − η) θ + η θ_b (η = threshold_lr;
 *      SAELens' running threshold); inference uses f_i = pre_i·[pre_i > θ]
 *   7. t += 1
 *
 * Initialisation (sae_init_weights): w_i = uniform random directions (normalised
 *   Gaussians, splitmix64 + Box-Muller from the seed) scaled to init_dec_norm;
 *   W_enc = W_dec (the decoder's transpose in SAELens terms); b_enc = 0; b_dec = 0.
 *   sae_init_b_dec then sets b_dec to the mean or the geometric median of a
 *   sample of scaled rows: Weiszfeld iterations from the mean,
 *   y ← Σ x_n/max(‖x_n − y‖, 1e-12) / Σ 1/max(‖x_n − y‖, 1e-12), in f64, over
 *   all ranks, until the step is ≤ 1e-7·(‖y‖ + 1e-12) or max_iter.
 *
 * Metrics (sae_metrics, from the global sums): loss and its terms, FVU =
 *   Σ‖u − x̂‖² / Σ‖u − ū‖² (ū the batch mean), L0 = mean active latents per row,
 *   dead fraction (since_fired ≥ dead_tokens after the step), dense fraction
 *   (latents active on more than dense_freq of the batch's rows).
 *
 * Data parallelism. Each rank calls sae_forward on its own rows with the global
 *   row count, then sae_backward: m->grad holds its share of the global gradient
 *   and sae_stats() its local sums (f64). Sum both over the ranks (MPI_SUM) and
 *   call sae_apply_step everywhere: sae_train_step does exactly that (one
 *   MPI_Allreduce of the P-float gradient, one of the stats, and small ones: the
 *   row count, two failure agreements, batchtopk's 4 histograms). Every rank ends
 *   with the same bits. comm = MPI_COMM_NULL means one process, with no MPI call.
 *
 * Where it runs (sae_use_backend): on the CPU by default; every architecture's step
 *   (encode, select or ReLU, decode, AuxK, backward, optimiser) is written against
 *   the backend's sae_* ops and gemms, so the same code trains on a GPU, with the
 *   stats downloaded (f64, small) and summed over MPI and the gradient summed in
 *   device memory.
 *
 * Memory: everything is allocated by sae_init, sized by max_rows (local rows per
 *   step): [max_rows, F] pre-activations (and a second such buffer for relu's
 *   backward) plus a few [max_rows, d]; batchtopk's active list grows on demand.
 */
#ifndef TP_SAE_H
#define TP_SAE_H

#include "backend/backend.h"
#include "core/error.h"

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { SAE_RELU = 0, SAE_TOPK = 1, SAE_BATCHTOPK = 2 } sae_arch;
typedef enum { SAE_BDEC_ZERO = 0, SAE_BDEC_MEAN = 1, SAE_BDEC_GEOMETRIC_MEDIAN = 2 } sae_bdec_init;

typedef struct {
    sae_arch arch;
    int64_t d_in, d_sae;        /* d, F */
    int64_t k;                  /* topk: latents per row; batchtopk: mean per row */
    int64_t aux_k;              /* AuxK latents (0: none) */
    double aux_coef;            /* α */
    int64_t dead_tokens;        /* rows without firing after which a latent is dead */
    double l1_coef;             /* λ (relu) */
    double l1_warmup_frac;
    double lr, lr_warmup_frac, lr_decay_frac;
    int64_t total_steps;        /* T of the schedules */
    double beta1, beta2, eps;
    double max_grad_norm;       /* 0: no clipping */
    int apply_b_dec_to_input;   /* 0/1 */
    int decoder_unit_norm;      /* 0/1 */
    double init_dec_norm;       /* row norm of the initial decoder */
    sae_bdec_init b_dec_init;   /* for the driver: what sae_init_b_dec should do */
    double threshold_lr;        /* η of the batchtopk threshold */
    double dense_freq;          /* dense: active on more than this fraction of rows */
} sae_config;

typedef struct {
    int64_t step;               /* steps completed, after this one */
    int64_t rows;               /* N, global */
    double loss, recon, l1, aux;   /* loss and its terms as added (l1 and aux times
                                      their coefficients) */
    double fvu, l0, dead_frac, dense_frac;
    double lr, l1_coef, grad_norm; /* lr_t, λ_t, ‖g‖ before clipping */
    double threshold;           /* batchtopk: θ after the step, θ_b of the batch */
    double batch_threshold;
} sae_metrics;

typedef struct sae_workspace sae_workspace;

typedef struct {
    sae_config cfg;
    int64_t n_params;           /* P = 2·F·d + F + d */
    float *params;              /* [P] */
    float *W_enc, *W_dec, *b_enc, *b_dec;   /* views into params */
    float *grad, *adam_m, *adam_v;          /* [P] each */
    int64_t step;
    double input_scale;         /* s */
    double threshold;           /* batchtopk inference threshold θ */
    int64_t *since_fired;       /* [F] */
    uint64_t rng;               /* splitmix64 state (init, and for the driver) */
    int64_t max_rows;
    sae_workspace *ws;
} sae_model;

/* Stats buffer (f64, summed over ranks): these scalars, then Σu [d], then the
 * number of rows each latent fired on [F]. */
enum {
    SAE_ST_ROWS = 0, SAE_ST_RECON, SAE_ST_L1, SAE_ST_AUX, SAE_ST_ACTIVE, SAE_ST_SQNORM,
    SAE_ST_HEAD
};

const char *sae_arch_name(sae_arch a);                 /* "relu", "topk", "batchtopk" */
tp_status sae_arch_parse(const char *s, sae_arch *out); /* TP_ERR_CONFIG if unknown */
/* Defaults of each recipe (Anthropic April 2024 for relu; Gao et al. for topk). */
sae_config sae_config_default(sae_arch arch, int64_t d_in, int64_t d_sae);
tp_status sae_config_validate(const sae_config *cfg);  /* TP_ERR_CONFIG, one line */

/* Allocates everything (parameters zero); max_rows ≥ 1 local rows per step. */
tp_status sae_init(sae_model *m, const sae_config *cfg, int64_t max_rows);
void sae_free(sae_model *m);

/* Trains on backend `be` from now on (sae_init: backend_cpu()). A host-memory
 * backend trains on the host buffers; a device backend (--device cuda) gets the
 * parameters, gradient, Adam moments and the training workspace in its own memory, and
 * the step runs there through the backend's sae_* ops, the gradient summed by NCCL.
 * The host's params, adam_m, adam_v are then a copy, brought up to date by
 * sae_sync_host (sae_save, sae_encode, sae_reconstruct call it; so must any other
 * reader of m->params after a step); host changes (sae_init_weights, sae_init_b_dec)
 * reach the device before the next step. batchtopk's batch selection runs on the
 * host (the pre-activations come down, the codes go up); relu's dense products are
 * the backend's gemms, its elementwise parts the sae_relu, sae_residual and
 * sae_relu_bwd_* ops. */
tp_status sae_use_backend(sae_model *m, tp_backend *be);
tp_status sae_sync_host(const sae_model *m);

tp_status sae_init_weights(sae_model *m, uint64_t seed);
uint64_t sae_rng_next(sae_model *m);

/* s = √d / mean‖x‖ over the rows of every rank (collective unless MPI_COMM_NULL). */
tp_status sae_compute_input_scale(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                                  double *scale);
/* b_dec from the scaled rows (uses m->input_scale). Collective unless MPI_COMM_NULL. */
tp_status sae_init_b_dec(sae_model *m, const float *rows, int64_t n_local, MPI_Comm comm,
                         sae_bdec_init method, int max_iter);

double sae_lr_at(const sae_config *cfg, int64_t t);
double sae_l1_coef_at(const sae_config *cfg, int64_t t);

/* Forward pass on the local rows (n_local ≤ max_rows, may be 0); n_global = rows of
 * the global batch. Fills the local stats (sae_stats). Collective for batchtopk. */
tp_status sae_forward(sae_model *m, const float *rows, int64_t n_local, int64_t n_global, MPI_Comm comm);
/* Gradient of the last forward's loss w.r.t. every parameter into m->grad: this
 * rank's rows' share of the global-mean loss's gradient. */
tp_status sae_backward(sae_model *m);
/* The last forward's local stats buffer (f64, *n entries), to be summed over ranks. */
double *sae_stats(sae_model *m, size_t *n);
/* Metrics of a summed stats buffer (loss terms at step m->step, FVU, L0, dense). */
void sae_metrics_from_stats(const sae_model *m, const double *stats, sae_metrics *out);
/* Steps 1–7 above with m->grad and the stats already summed over ranks. */
tp_status sae_apply_step(sae_model *m, sae_metrics *out);
/* forward + backward + allreduce (gradient, stats) + apply step. Collective over
 * comm (MPI_COMM_NULL: one process). Fails on every rank together. */
tp_status sae_train_step(sae_model *m, const float *rows, int64_t n_local, MPI_Comm comm, sae_metrics *out);

/* Inference (no batch selection: batchtopk uses θ). Rows in input units, in blocks
 * of max_rows. codes: [n, F] dense, in the scaled space; recon: [n, d] in input
 * units (x̂ / s). Both use the workspace: not between sae_forward and sae_backward. */
tp_status sae_encode(sae_model *m, const float *rows, int64_t n, float *codes);
tp_status sae_reconstruct(sae_model *m, const float *rows, int64_t n, float *recon);

/* Checkpoint (safetensors, written atomically): parameters, Adam moments, step,
 * since_fired, input scale, θ, RNG state and the config. sae_load allocates m. */
tp_status sae_save(const sae_model *m, const char *path);
tp_status sae_load(const char *path, int64_t max_rows, sae_model *m);

#endif
