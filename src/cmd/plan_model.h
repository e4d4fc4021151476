/* plan_model.h — what a run will cost, per phase, before it runs (`transpolmo plan`).
 *
 * A pure function of three things: the model's shapes (a config.json, or the built-in
 * table of OLMo-2 sizes), the run's settings (the typed structs the phases read:
 * rows, capture points, SAE widths, batch sizes ...) and the machine's rates
 * (plan_calib.h: measured by `transpolmo plan --calibrate`, else conservative
 * defaults). Nothing here reads a file or talks to MPI.
 *
 * The formulas follow the phase drivers (docs/planning.md says which buffer each
 * term is):
 *   time    work / measured rate, per kernel the phase runs: the linear layers
 *           (2 · params · tokens, in the weights' stored dtype), causal attention,
 *           geometry's stages (timed through their own functions at d 256 and 2048,
 *           split into a per-row and a per-query part), the SAE step and encoder
 *           (rows · d · d_sae, and per parameter and step), the CE evaluation's
 *           forwards and its log-sum-exp / KL over the vocabulary; plus bytes /
 *           bandwidth for HDF5 writes and reads, the checkpoint's pages and the
 *           gradient all-reduce; plus the process start. Ranks divide the work they
 *           share; rates scale with the cores each rank gets.
 *   memory  peak resident set per rank: the process's base (MPI, HDF5, OpenBLAS,
 *           measured) + the weights it touches (mmap: shared by the ranks of a
 *           node, counted in every rank's RSS once) + the phase's buffers at its
 *           largest stage.
 *   disk    the store: rows × Σ cols × dtype bytes + the index (docs/store.md).
 *   comm    bytes each rank sends: the SAE gradient all-reduce (2 (R−1)/R · 4P per
 *           step), geometry's covariance reduction and ScaLAPACK layout, k-means.
 */
#ifndef TP_PLAN_MODEL_H
#define TP_PLAN_MODEL_H

#include "model/model_config.h"

#include <stdbool.h>
#include <stdint.h>

/* Per-op rates of one process using `threads` compute threads. */
typedef struct {
    char source[512];            /* "calibration <path> (<date>, <machine>)" or "built-in defaults" */
    bool calibrated;
    int threads;                 /* threads the rates were measured with */
    double linear_f32_gflops;    /* the backend's linear op, f32 weights */
    double linear_bf16_gflops;   /* bf16 weights (converted as the GEMM packs them) */
    double attention_gflops;     /* causal attention, FLOPs 4 · nq · nk/2 · H · dh */
    double gemm_f64_gflops;      /* f64 GEMM (covariance, kNN, k-means) */
    double sae_topk_rate;        /* SAE training rows · d · d_sae per second (topk) */
    double sae_relu_rate;        /* the same, relu */
    double sae_param_ns;         /* per parameter and step: Adam and the rest of the step */
    double write_mib_s;          /* HDF5 write to the run directory, made durable */
    double read_mib_s;           /* HDF5 read back */
    double allreduce_mib_s;      /* MPI_Allreduce, bytes of the buffer per second */
    double tokenize_rows_s;      /* corpus tokens per second (dataset open) */
    double base_rss_mib;         /* RSS of a running process before a phase's own buffers */
    double exit_rss_mib;         /* peak RSS of a process that does nothing (libraries load and unload) */
    /* the SAE (topk) at the phase's shapes: d 256, d_sae 2048 [0] and d 2048, d_sae 4096 [1] */
    double sae_step_rate[2];     /* sae_train_step: rows · d · d_sae per second */
    double sae_step_param_ns[2]; /* its per-step part: ns per parameter (Adam, the decoder's renorm ...) */
    double sae_encode_rate[2];   /* sae_encode: rows · d · d_sae per second */
    /* geometry's kernels, timed through the phase's own functions on random rows
     * (one rank, MPI_COMM_SELF) at d = 256 and d = 2048 ([0], [1]); the plan
     * interpolates in log d. Units, per second: */
    double geo_cov_rate[2];      /* pca_accum_add: rows · d² */
    double geo_eig_rate[2];      /* pca_accum_finish (pdsyevd): d³ */
    double geo_id_rate[2];       /* intrinsic_dim_estimate: queries · rows · d */
    double geo_local_rate[2];    /* local_geometry_estimate: sampled points · rows · d */
    double geo_id_query_s[2];    /* intrinsic_dim_estimate: seconds per query beyond its rows · d */
    double geo_local_query_s[2]; /* local_geometry_estimate: seconds per point beyond its rows · d (local PCA) */
    double geo_kmeans_rate[2];   /* kmeans_fit_distributed's Lloyd iterations: iterations · rows · k · d */
    double geo_kmeans_init_rate[2]; /* the rest of it: k-means++ on its sample and the final pass, (sample + rows) · k · d */
    double geo_sil_rate[2];      /* kmeans_silhouette_distributed: sample² · d (distances among the sample) */
    /* the same stages' time at 1 thread / their time at `threads` (measured: the kNN,
     * local PCA and k-means loops gain little from a second thread, and 2 ranks of 1
     * thread ran geometry 1.3-2.5x faster than 1 rank of 2). A rank given t threads
     * runs geometry at the 1-thread rates when t = 1, at the `threads` rates when t =
     * threads, linearly between, and t / threads of the latter beyond. */
    double geo_thread_gain[2];
    double lse_ns;               /* sae_ce: log Σ exp over one logit, ns */
    double kl_ns;                /* sae_ce: KL term of one logit, ns */
    double gemm_f32_gflops;      /* be_gemm_f32 at the catalog's [512, d] x [2048, d]^T shape (logit attribution) */
    double startup_s;            /* a process of this binary started and ended (`transpolmo version`) */
    double gpu_linear_gflops;    /* --gpus-per-rank: built-in guesses, never measured here */
    double gpu_sae_rate;
    double gpu_mem_gib;
} plan_rates;

/* The built-in conservative rates (a 2-core x86 VM, no AVX-512 assumed). */
void plan_rates_default(plan_rates *r);

/* One SAE (a capture point it trains on). */
typedef struct {
    int64_t d;
} plan_sae_job;

#define PLAN_MAX_POINTS 512

typedef struct {
    /* model */
    tp_model_config mc;
    double weight_bytes;         /* bytes per stored weight element (2 bf16, 4 f32) */
    bool upfront;                /* model.weight_conversion = upfront */
    int64_t tokenizer_vocab;     /* ids the tokenizer can produce (<= vocab), 0: vocab */
    /* data */
    int64_t rows, seqs, docs;    /* the sample: tokens, sequences, documents */
    int seq_len, batch;          /* data.seq_len, forward.batch_size */
    /* capture */
    int n_points;
    int64_t point_cols[PLAN_MAX_POINTS];
    int point_layer[PLAN_MAX_POINTS];    /* -1: layer-less (embed, ln_final) */
    bool point_geo[PLAN_MAX_POINTS];     /* selected by geometry.hooks */
    bool point_sae[PLAN_MAX_POINTS];     /* selected by sae.hooks */
    int last_layer;              /* the forward stops after it */
    double store_dtype_bytes;
    /* geometry */
    int64_t geo_max_rows, geo_components, id_sample, id_k, local_sample, local_k;
    int64_t kmeans_k, kmeans_max_iter, kmeans_init_sample, sil_sample;
    bool pca_svd;
    /* sae */
    bool sae_skip;
    bool sae_relu;
    int64_t sae_expansion, sae_hidden, sae_k, sae_aux_k, sae_epochs, sae_batch;
    int64_t chunk_rows, window_chunks, sae_eval_docs, catalog_top_k, catalog_context, catalog_max_detailed;
    double eval_fraction;
    int64_t eval_rows;           /* held-out unmasked rows as the phase will choose them (0: unknown) */
    int64_t ce_tokens;           /* tokens of the documents the CE evaluation reads (0: unknown) */
    /* machine */
    int ranks, nodes, gpus_per_rank;
    int cores_per_node;
    double mem_per_rank_gib;     /* 0: node memory / ranks per node */
    double node_mem_gib;
} plan_input;

enum { PLAN_INSPECT = 0, PLAN_CAPTURE, PLAN_GEOMETRY, PLAN_SAE, PLAN_CIRCUITS, PLAN_VERIFY, PLAN_DOCUMENT, PLAN_NPHASES };

typedef struct {
    const char *name;
    bool modelled;               /* false: a rough figure ("small") */
    double time_s;
    double compute_s, io_s, comm_s;   /* parts of time_s */
    double rss_bytes;            /* peak RSS per rank, weights pages included */
    double shared_bytes;         /* of which mmap'd weights, shared by a node's ranks */
    double disk_bytes;           /* written to the run directory */
    double comm_bytes;           /* sent per rank */
    char peak[96];               /* what the peak is made of, largest terms */
    char note[160];
} plan_phase;

typedef struct {
    plan_phase ph[PLAN_NPHASES];
    int ranks_per_node;
    double threads_per_rank;
    double rank_budget_bytes;    /* memory a rank may use */
    double total_time_s;
    int64_t sae_steps, sae_d_sae;
    double weights_bytes;        /* the whole checkpoint */
    bool fits;
    char advice[1024];           /* what to change when a phase does not fit ("" if all fit) */
} plan_result;

void plan_estimate(const plan_input *in, const plan_rates *rt, plan_result *out);

/* Shapes of the OLMo-2 sizes this build knows by name ("allenai/OLMo-2-1124-7B",
 * "7b", ...): TP_OK with *out filled, TP_ERR_CONFIG naming the known ones. */
tp_status plan_builtin_shape(const char *name, tp_model_config *out);
/* "1b, 7b, 13b, 32b" */
const char *plan_builtin_names(void);

#endif
