/* plan_model.c — the planner's cost model (plan_model.h); docs/planning.md explains
 * each term and what it was checked against. */
#include "cmd/plan_model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

void plan_rates_default(plan_rates *r)
{
    /* Conservative: below what `plan --calibrate` measured on the 2-core development
     * VM (docs/planning.md), so an uncalibrated plan errs long. */
    *r = (plan_rates){
        .threads = 2,
        .linear_f32_gflops = 40,
        .linear_bf16_gflops = 30, /* as on a CPU without AVX512-BF16 (widened to f32) */
        .attention_gflops = 8,
        .gemm_f64_gflops = 15,
        .sae_topk_rate = 1.0e10,
        .sae_relu_rate = 4.0e9,
        .sae_param_ns = 2.0,
        .write_mib_s = 300,
        .read_mib_s = 1000,
        .allreduce_mib_s = 1000,
        .tokenize_rows_s = 1.0e6,
        .base_rss_mib = 180,
        /* geometry, CE softmax, f32 GEMM, start: about half what the development VM measured */
        .geo_cov_rate = {2e10, 3e10},
        .geo_eig_rate = {1.5e9, 5e9},
        .geo_id_rate = {1e10, 1e10},
        .geo_local_rate = {5e9, 5e9},
        .geo_id_query_s = {5e-5, 4e-4},
        .geo_local_query_s = {6e-4, 4e-3},
        .geo_kmeans_rate = {1.2e9, 3e9},
        .geo_kmeans_init_rate = {1e9, 1e9},
        .geo_sil_rate = {1e10, 1e10},
        .geo_thread_gain = {2, 2},   /* as if the stages scaled with threads */
        .lse_ns = 11,
        .kl_ns = 11,
        .gemm_f32_gflops = 40,
        .startup_s = 0.3,
        .sae_step_rate = {1.5e10, 3e10},
        .sae_step_param_ns = {5, 5},
        .sae_encode_rate = {4e10, 6e10},
        .exit_rss_mib = 240,
        .gpu_linear_gflops = 100000,
        .gpu_sae_rate = 2.0e13,
        .gpu_mem_gib = 80,
    };
    snprintf(r->source, sizeof r->source, "built-in defaults (no calibration file; run `transpolmo plan --calibrate`)");
}

/* ---- the model's sizes ----------------------------------------------------------- */

typedef struct {
    const char *key, *name;
    int d, F, L, H, K, V, max_pos;
} builtin_shape;

/* Published config.json values of the OLMo-2 releases (see docs/planning.md for the
 * sources and which were checked). */
static const builtin_shape builtins[] = {
    {"1b", "allenai/OLMo-2-0425-1B", 2048, 8192, 16, 16, 16, 100352, 4096},
    {"7b", "allenai/OLMo-2-1124-7B", 4096, 11008, 32, 32, 32, 100352, 4096},
    {"13b", "allenai/OLMo-2-1124-13B", 5120, 13824, 40, 40, 40, 100352, 4096},
    {"32b", "allenai/OLMo-2-0325-32B", 5120, 27648, 64, 40, 8, 100352, 4096},
};

const char *plan_builtin_names(void) { return "1b, 7b, 13b, 32b (or their Hugging Face names)"; }

tp_status plan_builtin_shape(const char *name, tp_model_config *out)
{
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++) {
        const builtin_shape *b = &builtins[i];
        if (strcasecmp(name, b->key) && strcasecmp(name, b->name) && !strstr(name, b->name + 7)) continue;
        memset(out, 0, sizeof *out);
        out->arch = TP_ARCH_OLMO2;
        snprintf(out->architecture, sizeof out->architecture, "Olmo2ForCausalLM");
        snprintf(out->model_type, sizeof out->model_type, "olmo2");
        snprintf(out->torch_dtype, sizeof out->torch_dtype, "bfloat16");
        snprintf(out->name, sizeof out->name, "%s", b->name);
        out->vocab_size = b->V, out->hidden_size = b->d, out->intermediate_size = b->F, out->num_layers = b->L;
        out->num_heads = b->H, out->num_kv_heads = b->K, out->head_dim = b->d / b->H;
        out->max_position_embeddings = b->max_pos, out->rms_norm_eps = 1e-6, out->rope_theta = 500000;
        out->bos_token_id = -1, out->eos_token_id = 100257, out->pad_token_id = 100277;
        return TP_OK;
    }
    return tp_err(TP_ERR_CONFIG, "plan: no built-in shape '%s' (known: %s; or give --model-config FILE)", name,
                  plan_builtin_names());
}

/* Elements of one decoder layer's matrices (q, k, v, o, gate, up, down). */
static double layer_params(const tp_model_config *c)
{
    double d = c->hidden_size, F = c->intermediate_size, qd = (double)c->num_heads * c->head_dim,
           kd = (double)c->num_kv_heads * c->head_dim;
    return d * qd + 2 * d * kd + qd * d + 3 * d * F;
}

static double checkpoint_elems(const tp_model_config *c)
{
    double e = (double)c->vocab_size * c->hidden_size;
    return e * (c->tie_word_embeddings ? 1 : 2) + c->num_layers * layer_params(c);
}

/* Forward scratch of forward_new for `rows` rows (forward.c alloc_scratch): x, xn,
 * ao [d]; q, z [H·dh]; k, v [K·dh]; gate, up [F] floats per row. */
static double forward_scratch(const tp_model_config *c, double rows)
{
    double qd = (double)c->num_heads * c->head_dim, kd = (double)c->num_kv_heads * c->head_dim;
    return rows * 4.0 * (3.0 * c->hidden_size + 2 * qd + 2 * kd + 2.0 * c->intermediate_size) + rows * 40.0;
}

/* Distinct embedding rows a sample of `rows` tokens touches (pages of the mmap):
 * uniform draws from the ids the tokenizer can give, a lower bound for Zipf text
 * would be smaller; conservative. */
static double embed_rows_touched(const plan_input *in)
{
    double V = (double)in->mc.vocab_size, Vt = in->tokenizer_vocab > 0 && in->tokenizer_vocab < V ? (double)in->tokenizer_vocab : V;
    return Vt * (1.0 - exp(-(double)in->rows / Vt));
}

/* ---- per phase --------------------------------------------------------------------- */

typedef struct {
    const plan_input *in;
    const plan_rates *rt;
    plan_result *out;
    double R;                    /* ranks */
    double speed;                /* this rank's rate / the calibrated rate */
    double threads;              /* this rank's threads */
    double base;                 /* bytes */
    double unmasked;
} ctx;

static void add_peak(char *buf, size_t n, const char *what, double bytes)
{
    size_t l = strlen(buf);
    if (bytes < 0.5 * MIB || l + 24 >= n) return;
    snprintf(buf + l, n - l, "%s%s %.0f MiB", l ? ", " : "", what, bytes / MIB);
}

static double linear_rate(const ctx *c)
{
    double r = c->in->gpus_per_rank > 0 ? c->rt->gpu_linear_gflops * c->in->gpus_per_rank
                                        : (c->in->weight_bytes < 4 && !c->in->upfront ? c->rt->linear_bf16_gflops
                                                                                     : c->rt->linear_f32_gflops) * c->speed;
    return r * 1e9;
}

/* One forward over `tokens` tokens in sequences of mean length T, layers 0..last. */
static double forward_time(const ctx *c, double tokens, double T, int last, bool head)
{
    const tp_model_config *mc = &c->in->mc;
    double layers = last + 1, qd = (double)mc->num_heads * mc->head_dim;
    double lin = 2.0 * tokens * layers * layer_params(mc) + (head ? 2.0 * tokens * mc->vocab_size * mc->hidden_size : 0);
    double attn = 2.0 * tokens * layers * T * qd;
    double attn_rate = (c->in->gpus_per_rank > 0 ? c->rt->gpu_linear_gflops * 0.3 : c->rt->attention_gflops * c->speed) * 1e9;
    /* norms, RoPE, SiLU, residual adds: memory-bound passes over the activations,
     * ~30 floats per hidden unit and token at ~2 GB/s per thread. */
    double elem = tokens * layers * 30.0 * mc->hidden_size * 4.0 / (2e9 * c->speed * c->rt->threads);
    return lin / linear_rate(c) + attn / attn_rate + elem;
}

/* Bytes of the weights a forward through layers 0..last touches (in the mmap). */
static double weights_touched(const plan_input *in, int last, bool head)
{
    const tp_model_config *mc = &in->mc;
    double wb = in->upfront ? 4.0 : in->weight_bytes;
    double b = (last + 1) * layer_params(mc) * wb + embed_rows_touched(in) * mc->hidden_size * in->weight_bytes;
    if (head) b += (double)mc->vocab_size * mc->hidden_size * wb;
    return b;
}

static void plan_inspect(ctx *c, plan_phase *p)
{
    const plan_input *in = c->in;
    double wbytes = checkpoint_elems(&in->mc) * in->weight_bytes;
    p->modelled = false;
    /* Reads every matrix once (norms, statistics); rank 0 alone. */
    p->time_s = p->io_s = wbytes / (c->rt->read_mib_s * MIB) + 1.0;
    p->rss_bytes = c->base + wbytes;
    p->shared_bytes = wbytes;
    add_peak(p->peak, sizeof p->peak, "weights (mmap)", wbytes);
    snprintf(p->note, sizeof p->note, "reads every weight once; inspect.spectra adds SVDs of each matrix (rank 0)");
}

static void plan_capture(ctx *c, plan_phase *p)
{
    const plan_input *in = c->in;
    const tp_model_config *mc = &in->mc;
    double R = c->R, cols = 0;
    for (int i = 0; i < in->n_points; i++) cols += (double)in->point_cols[i];
    double T = in->seqs > 0 ? (double)in->rows / in->seqs : in->seq_len;
    /* buffers are sized for batch x seq_len rows but a page is resident only once
     * written: the largest unit's rows, about batch x 1.25 x the mean sequence */
    double rows_b = fmin((double)in->batch * in->seq_len, (double)in->batch * T * 1.25);
    /* time: the forward over this rank's rows, the store's writes (ranks write in
     * parallel into one file: the file system's bandwidth is shared by a node), the
     * model load and the tokenization. */
    p->compute_s = forward_time(c, (double)in->rows / R, T, in->last_layer, false);
    p->disk_bytes = (double)in->rows * cols * in->store_dtype_bytes + (double)in->rows * 13.0 + (double)in->docs * 20.0 +
                    (double)mc->vocab_size * 16.0;
    p->io_s = p->disk_bytes / (c->rt->write_mib_s * MIB * in->nodes);
    /* the process started, the model opened (every page of the checkpoint read once
     * through the mmap), the tokenizer loaded (~2 M vocabulary entries a second) and
     * the sample tokenized */
    double startup = c->rt->startup_s + checkpoint_elems(mc) * in->weight_bytes / (c->rt->read_mib_s * MIB) +
                     (double)in->rows / c->rt->tokenize_rows_s + mc->vocab_size / 2e6;
    p->time_s = p->compute_s + p->io_s + startup;
    p->comm_bytes = 0;   /* barriers at flush points; every rank writes its own rows */
    /* memory */
    /* Measured on the 1B-shaped model: capture's peak holds every page of the
     * checkpoint (opening the model reads all of it once), not only the layers the
     * forward uses; f32 copies with weight_conversion = upfront. */
    double w = fmax(weights_touched(in, in->last_layer, false), checkpoint_elems(mc) * in->weight_bytes);
    double fwd = forward_scratch(mc, rows_b), pts = rows_b * cols * 4.0;
    /* on a GPU the rows come down into two sets of pinned host buffers (capture's
     * double buffering), each resident in full (page-locked) */
    if (in->gpus_per_rank > 0) pts = 2.0 * (double)in->batch * in->seq_len * cols * 4.0;
    double data = (double)in->rows * 4.0 * 2 + (double)in->rows / R * 13.0 + (double)in->seqs * 16.0 + (double)in->docs * 40.0;
    double vocab = (double)mc->vocab_size * 24.0;
    p->shared_bytes = in->upfront ? 0 : w;
    p->rss_bytes = c->base + w + fwd + pts + data + vocab;
    add_peak(p->peak, sizeof p->peak, in->upfront ? "weights f32" : "weights (mmap)", w);
    add_peak(p->peak, sizeof p->peak, "forward", fwd);
    add_peak(p->peak, sizeof p->peak, in->gpus_per_rank > 0 ? "capture bufs (2 pinned sets)" : "capture bufs", pts);
    add_peak(p->peak, sizeof p->peak, "sample", data + vocab);
    snprintf(p->note, sizeof p->note, "%.3g rows x %.0f cols x %.0f B; layers 0..%d", (double)in->rows, cols,
             in->store_dtype_bytes, in->last_layer);
}

/* A geometry rate at width d: measured at d = 256 and 2048 (plan_calib.c), log-linear
 * between them, the nearer one outside. */
static double geo_at(const double v[2], double d)
{
    double t = (log(d) - log(256.0)) / (log(2048.0) - log(256.0));
    t = t < 0 ? 0 : t > 1 ? 1 : t;
    return exp((1 - t) * log(v[0]) + t * log(v[1]));
}

/* Geometry's rate for a rank of c->threads threads, as a multiple of the calibrated
 * (rt->threads) rates at width d: from the measured 1-thread / calibrated time ratio
 * g, 1/g at 1 thread, 1 at the calibrated count, linear between, proportional
 * beyond (plan_model.h, geo_thread_gain). */
static double geo_speed(const ctx *c, double d)
{
    double T = c->rt->threads > 0 ? c->rt->threads : 1, t = c->threads;
    if (T <= 1 || t >= T) return t / T;
    double g = geo_at(c->rt->geo_thread_gain, d);
    return (1.0 + (g - 1.0) * (t - 1.0) / (T - 1.0)) / g;
}

static void plan_geometry(ctx *c, plan_phase *p)
{
    const plan_input *in = c->in;
    const plan_rates *rt = c->rt;
    double R = c->R, N = (double)in->rows, n_unm = c->unmasked;
    double keep = in->geo_max_rows > 0 && in->geo_max_rows < n_unm ? (double)in->geo_max_rows : n_unm;
    double f64 = rt->gemm_f64_gflops * 1e9 * c->speed, peak_extra = 0, x_max = 0, comm = 0, comp = 0, io = 0;
    int npts = 0;
    /* Lloyd stops when the assignment stops changing: 13-100 iterations were seen on
     * the checked runs (docs/planning.md); the plan takes 40, or max_iter if lower. */
    double iters = in->kmeans_max_iter < 40 ? (double)in->kmeans_max_iter : 40;
    for (int i = 0; i < in->n_points; i++) {
        if (!in->point_geo[i]) continue;
        npts++;
        double d = (double)in->point_cols[i], sp = geo_speed(c, d);
        io += N * d * in->store_dtype_bytes / (rt->read_mib_s * MIB * in->nodes);
        /* PCA: the covariance over every unmasked row (rows split over the ranks) and its
         * eigendecomposition (pdsyevd). svd with n >= d: pdgeqrf of the rows (2 n d²,
         * split) and dgesdd of the d x d R on one rank (~20 d³ with both vector sets:
         * 5000 x 2048 took 7.8 s, BENCHMARKS.md); n < d: pdgesvd, ~4 n d² + 9 d³. */
        double pca = !in->pca_svd ? n_unm * d * d / (geo_at(rt->geo_cov_rate, d) * sp * R) +
                                        d * d * d / (geo_at(rt->geo_eig_rate, d) * sp * R)
                     : keep >= d ? 2.0 * keep * d * d / (f64 * R) + 20.0 * d * d * d / f64
                                 : 4.0 * keep * d * d / (f64 * R) + 9.0 * d * d * d / f64;
        /* Every stage below splits over the ranks (measured on the 1B-shaped check: 2
         * ranks of 1 thread ran each stage 1.6-2x faster than 1 rank of 2 threads):
         * pdsyevd is distributed, the kNN searches split the rows, the silhouette the
         * rows of its distance matrix. MLE + TwoNN: one k-NN search of the query
         * sample against the rows in memory, plus a cost per query (gather, merge).
         * Local geometry: the same for its sample plus a local PCA per point. */
        double qid = (double)(in->id_sample && in->id_sample < keep ? in->id_sample : (int64_t)keep);
        double qloc = (double)(in->local_sample && in->local_sample < keep ? in->local_sample : (int64_t)keep);
        double id = qid / R * (keep * d / (geo_at(rt->geo_id_rate, d) * sp) + geo_at(rt->geo_id_query_s, d) / sp);
        double local = qloc / R * (keep * d / (geo_at(rt->geo_local_rate, d) * sp) + geo_at(rt->geo_local_query_s, d) / sp);
        /* k-means: k-means++ on its sample, Lloyd iterations over the rows, then the
         * rows nearest each centre (one more pass); silhouette among its sample only. */
        double init = (double)(in->kmeans_init_sample && in->kmeans_init_sample < keep ? in->kmeans_init_sample : (int64_t)keep);
        double km = (iters * keep / geo_at(rt->geo_kmeans_rate, d) + (init + keep) / geo_at(rt->geo_kmeans_init_rate, d)) *
                    (double)in->kmeans_k * d / (sp * R);
        double ss = (double)(in->sil_sample && in->sil_sample < keep ? in->sil_sample : (int64_t)keep);
        double sil = ss * ss * d / (geo_at(rt->geo_sil_rate, d) * sp * R);
        /* norm statistics: a few passes over the rows in memory */
        double norms = keep / R * d * 40.0 / (2e9 * sp);
        comp += pca + id + local + km + sil + norms;
        comm += 8.0 * d * d * 2 + iters * in->kmeans_k * d * 8.0 + (double)(in->id_sample + in->local_sample) * d * 4.0;
        /* memory: X held, the read block, covariance and ScaLAPACK pieces, then the
         * largest of the sampled stages (queries replicated on every rank). */
        double X = keep / R * d * 4.0;
        double pca_mem = 8.0 * d * d * (1.0 + 3.0 / R) + 4096.0 * d * 4.0;
        /* svd: the rows in f64, block-cyclic, plus the redistribution's send and receive
         * buffers, and R and Vᵀ (d x d) on one rank */
        if (in->pca_svd) pca_mem += 2.0 * 8.0 * keep / R * d + 2.0 * 8.0 * d * d;
        /* each sample is at most the rows there are (a sample of 10000 from 6366 rows
         * is every row: 0.4x less than the setting on the 1B-shaped check) */
        double stage = fmax(fmax(2.0 * qloc * d * 4.0 + 2 * 64.0 * (in->local_k + 2) * d * 4.0, qid * d * 4.0),
                            fmax(init * d * 4.0, ss * d * 4.0));
        if (X + pca_mem + stage > x_max + peak_extra) x_max = X, peak_extra = pca_mem + stage;
    }
    p->compute_s = comp, p->io_s = io;
    p->comm_s = R > 1 ? comm / (c->rt->allreduce_mib_s * MIB) : 0;
    /* the process: start, MPI, the store opened and its row index read */
    p->time_s = comp + io + p->comm_s + rt->startup_s;
    p->comm_bytes = R > 1 ? comm : 0;
    double masks = N / R * 2.0 + keep / R * 8.0;
    p->rss_bytes = c->base + x_max + peak_extra + masks;
    add_peak(p->peak, sizeof p->peak, "rows in memory", x_max);
    add_peak(p->peak, sizeof p->peak, "PCA + samples", peak_extra);
    snprintf(p->note, sizeof p->note, "%d point(s), %.3g rows in memory over %d rank(s)", npts, keep, (int)R);
}

static void plan_sae(ctx *c, plan_phase *p)
{
    const plan_input *in = c->in;
    const tp_model_config *mc = &in->mc;
    double R = c->R, n_unm = c->unmasked;
    if (in->sae_skip) {
        snprintf(p->note, sizeof p->note, "sae.skip: not run");
        p->rss_bytes = 0;
        return;
    }
    double sum_d = 0, dmax = 0, P_all = 0, work = 0, jobs_mem = 0, F_max = 0, encode = 0, logit_attr = 0;
    double B = (double)in->sae_batch, b_local = ceil(B / R);
    /* held-out rows: as the phase will choose them when plan counted the documents
     * (row_stream_hold_out_domain), else the eval_fraction share */
    double eval = in->eval_rows > 0 ? (double)in->eval_rows : n_unm * in->eval_fraction, train = n_unm - eval;
    double window = (double)in->window_chunks * in->chunk_rows;
    /* windows of window_chunks chunks; a window's rows are cut into batches of B */
    double W = ceil(fmax(train, 1.0) / window), last = train - (W - 1) * window;
    double steps = (double)in->sae_epochs * ((W - 1) * ceil(window / B) + ceil(fmax(last, 1.0) / B));
    bool gpu = in->gpus_per_rank > 0;
    /* relu: the topk rates scaled by what relu/topk measured at d 512 */
    double relu = in->sae_relu ? c->rt->sae_relu_rate / c->rt->sae_topk_rate : 1.0;
    double V = (double)mc->vocab_size, elem_bps = 2e9 * c->speed * c->rt->threads;
    int njobs = 0;
    for (int i = 0; i < in->n_points; i++) {
        if (!in->point_sae[i]) continue;
        njobs++;
        double d = (double)in->point_cols[i];
        double F = in->sae_hidden > 0 ? (double)in->sae_hidden : (double)in->sae_expansion * d;
        double P = 2 * F * d + F + d;
        F_max = fmax(F_max, F);
        sum_d += d, dmax = fmax(dmax, d), P_all += P;
        /* training: every step, this rank's rows of the batch (rows · d · d_sae at the
         * step rate measured nearest this width) and the per-step part per parameter */
        double rate = gpu ? c->rt->gpu_sae_rate : geo_at(c->rt->sae_step_rate, d) * relu * c->speed;
        work += steps * (b_local * d * F / rate + P * geo_at(c->rt->sae_step_param_ns, d) * 1e-9 / c->speed);
        /* after training: the held-out rows encoded and reconstructed (two encoder
         * passes), then every unmasked row encoded for the catalog; ranks share both */
        double enc = gpu ? c->rt->gpu_sae_rate : geo_at(c->rt->sae_encode_rate, d) * c->speed;
        encode += (2.0 * eval + n_unm) / R * d * F / enc;
        /* rank 0's catalog merge: the logit attribution of the detailed latents, W_U and
         * W_E against their decoder / encoder directions (be_gemm_f32, blocks of
         * vocabulary rows converted to f32 once per block of 512 latents), and three
         * heaps offered every (latent, token) score */
        if (mc->hidden_size == (int)d) {
            double det = fmin(F, in->catalog_max_detailed > 0 ? (double)in->catalog_max_detailed : F);
            logit_attr += 2.0 * 2.0 * det * V * d / (c->rt->gemm_f32_gflops * 1e9 * c->speed) +
                          2.0 * ceil(det / 512) * V * d * 4.0 / elem_bps + 3.0 * det * V * 4.0 / elem_bps;
        }
        double ws = b_local * (F * (in->sae_relu ? 2 : 1) + 4 * d + 2.0 * (in->sae_k + in->sae_aux_k)) * 4.0 + F * 32.0;
        jobs_mem += 4.0 * P * 4.0 + ws;
    }
    c->out->sae_steps = (int64_t)steps;
    c->out->sae_d_sae = (int64_t)F_max;
    /* the windows every rank reads whole, once per epoch; the held-out and catalog passes read every row again */
    p->io_s = ((double)in->sae_epochs + 1) * n_unm * sum_d * 4.0 / (c->rt->read_mib_s * MIB);
    double ar = 2.0 * (R - 1) / R * 4.0 * P_all;   /* ring all-reduce, per step and rank */
    p->comm_bytes = R > 1 ? steps * ar : 0;
    p->comm_s = R > 1 ? steps * (4.0 * P_all / (c->rt->allreduce_mib_s * MIB) + 30e-6) : 0;
    /* CE evaluation (sae_ce.c), per SAE: the held-out documents through the whole model
     * three times (clean, zero-ablated, SAE spliced; the clean pass is redone for each
     * SAE), all logits; on each row log Σ exp three times and the KL twice, over the
     * vocabulary, in f64. Ranks split the documents. */
    double T = in->seqs > 0 ? (double)in->rows / in->seqs : in->seq_len;
    double ce_tokens = in->ce_tokens > 0 ? (double)in->ce_tokens
                       : in->docs > 0 ? fmin((double)in->sae_eval_docs, fmax(1.0, in->docs * in->eval_fraction)) *
                                            (double)in->rows / in->docs : 0;
    double ce = njobs && in->sae_eval_docs
                    ? njobs * (3.0 * forward_time(c, ce_tokens / R, T, mc->num_layers - 1, true) +
                               ce_tokens / R * V * (3.0 * c->rt->lse_ns + 2.0 * c->rt->kl_ns) * 1e-9 / c->speed)
                    : 0;
    /* the model opened (every page of the checkpoint read once through the mmap) for
     * the CE evaluation and the catalog's logit attribution and token text */
    double open = checkpoint_elems(mc) * in->weight_bytes / (c->rt->read_mib_s * MIB);
    p->compute_s = work + encode + ce + logit_attr;
    p->time_s = p->compute_s + p->io_s + p->comm_s + open + c->rt->startup_s;
    /* memory: the window (every capture point's rows) and every SAE with its Adam
     * state live throughout; the CE evaluation adds the whole model, a forward and
     * two [rows, vocab] logit buffers. */
    double win = fmin(window, n_unm) * sum_d * 4.0 + (double)in->chunk_rows * dmax * 4.0 + (double)in->rows * 2.0;
    double rows_b = fmin((double)in->batch * in->seq_len, (double)in->batch * T * 1.25);
    double wall = fmax(weights_touched(in, mc->num_layers - 1, true), checkpoint_elems(mc) * in->weight_bytes);
    double ce_mem = in->sae_eval_docs ? wall + forward_scratch(mc, rows_b) +
                                            2.0 * rows_b * mc->vocab_size * 4.0 + 2 * rows_b * dmax * 4.0 : 0;
    /* catalog: each rank's heaps (top_k + 64 reservoir entries of 16 B per latent);
     * rank 0 then builds features_catalog.json as one jansson tree, ~7x the file
     * (measured on the bundled model: 52.6 MB of JSON, 365 MB more on rank 0). */
    double det = fmin(F_max, in->catalog_max_detailed > 0 ? (double)in->catalog_max_detailed : F_max);
    double json_bytes = njobs * det * ((double)in->catalog_top_k * (in->catalog_context + 2) * 22.0 + 1000.0);
    double catalog = njobs * F_max * ((double)in->catalog_top_k + 64) * 16.0 + 7.0 * json_bytes;
    p->disk_bytes = json_bytes * 1.08 + 2.0 * 4.0 * P_all /* export + last checkpoint: weights */ +
                    4.0 * 4.0 * P_all /* checkpoint: weights, Adam m and v */;
    double stage = fmax(ce_mem, catalog);
    p->shared_bytes = in->sae_eval_docs && !in->upfront ? wall : 0;
    p->rss_bytes = c->base + win + jobs_mem + stage;
    add_peak(p->peak, sizeof p->peak, "window", win);
    add_peak(p->peak, sizeof p->peak, "SAEs+Adam", jobs_mem);
    add_peak(p->peak, sizeof p->peak, ce_mem >= catalog ? "CE eval (model+logits)" : "catalog", stage);
    snprintf(p->note, sizeof p->note, "%d SAE(s), d_sae %.0f, %.0f steps of %.0f rows; all-reduce %.1f MiB/step; CE on "
             "%.0f tokens", njobs, F_max, steps, B, 4.0 * P_all / MIB, ce_tokens);
}

static void plan_small(ctx *c, plan_phase *p, const char *note)
{
    p->modelled = false;
    p->rss_bytes = c->base;
    snprintf(p->note, sizeof p->note, "%s", note);
}

static const char *const phase_names[PLAN_NPHASES] = {"inspect", "capture", "geometry", "sae", "circuits", "verify", "document"};

void plan_estimate(const plan_input *in, const plan_rates *rt, plan_result *out)
{
    memset(out, 0, sizeof *out);
    int rpn = (in->ranks + in->nodes - 1) / in->nodes;
    out->ranks_per_node = rpn;
    double cores = in->cores_per_node > 0 ? in->cores_per_node : rt->threads;
    out->threads_per_rank = cores / rpn >= 1 ? floor(cores / rpn) : 1;
    /* several ranks: Open MPI's shared-memory transport maps its segments into each
     * (measured: +30-35 MiB per rank on the development VM) */
    ctx c = {.in = in, .rt = rt, .out = out, .R = in->ranks, .base = (rt->base_rss_mib + (in->ranks > 1 ? 32 : 0)) * MIB,
             .speed = out->threads_per_rank / (rt->threads > 0 ? rt->threads : 1), .threads = out->threads_per_rank};
    /* masked rows: the first position of every sequence (capture.mask_first) */
    c.unmasked = (double)(in->rows - in->seqs);
    for (int i = 0; i < PLAN_NPHASES; i++) out->ph[i].name = phase_names[i], out->ph[i].modelled = true;
    plan_inspect(&c, &out->ph[PLAN_INSPECT]);
    plan_capture(&c, &out->ph[PLAN_CAPTURE]);
    plan_geometry(&c, &out->ph[PLAN_GEOMETRY]);
    plan_sae(&c, &out->ph[PLAN_SAE]);
    /* circuits/verify: a few hundred prompts forward and backward (docs/circuits.md);
     * document: rank 0 reads the results JSON files. */
    double prompts = 256 * 32.0;
    double fb = 3.0 * forward_time(&c, prompts / c.R, 32, in->mc.num_layers - 1, true);
    double cv_mem = c.base + weights_touched(in, in->mc.num_layers - 1, true) + 3.0 * forward_scratch(&in->mc, 256) +
                    256.0 * in->mc.vocab_size * 8.0;
    plan_small(&c, &out->ph[PLAN_CIRCUITS], "rough: prompts forward + backward, whole model");
    out->ph[PLAN_CIRCUITS].time_s = 10 * fb, out->ph[PLAN_CIRCUITS].rss_bytes = cv_mem;
    out->ph[PLAN_CIRCUITS].shared_bytes = weights_touched(in, in->mc.num_layers - 1, true);
    plan_small(&c, &out->ph[PLAN_VERIFY], "rough: ablations over prompts, whole model");
    out->ph[PLAN_VERIFY].time_s = 5 * fb, out->ph[PLAN_VERIFY].rss_bytes = cv_mem;
    out->ph[PLAN_VERIFY].shared_bytes = out->ph[PLAN_CIRCUITS].shared_bytes;
    plan_small(&c, &out->ph[PLAN_DOCUMENT], "small: rank 0 reads results/ (seconds)");
    out->ph[PLAN_DOCUMENT].time_s = 5;
    out->weights_bytes = checkpoint_elems(&in->mc) * in->weight_bytes;
    /* no process of this binary peaks below what loading and unloading its libraries
     * costs (measured by --calibrate as `transpolmo version`'s peak) */
    for (int i = 0; i < PLAN_NPHASES; i++) out->ph[i].rss_bytes = fmax(out->ph[i].rss_bytes, rt->exit_rss_mib * MIB);

    /* Fit: a node's ranks share the weights' pages; the rest is each rank's own. */
    double node = in->node_mem_gib * GIB;
    double budget = in->mem_per_rank_gib > 0 ? in->mem_per_rank_gib * GIB : node / rpn;
    out->rank_budget_bytes = budget;
    out->fits = true;
    size_t al = 0;
    for (int i = 0; i < PLAN_NPHASES; i++) {
        plan_phase *p = &out->ph[i];
        out->total_time_s += p->time_s;
        double own = p->rss_bytes - p->shared_bytes;
        double need = own + p->shared_bytes / rpn;   /* per rank, the shared pages split over the node's ranks */
        if (budget > 0 && need > budget) {
            out->fits = false;
            const char *fix = i == PLAN_CAPTURE ? "fewer layers or capture points per run (layers, capture.hooks), a smaller "
                                                  "forward.batch_size or data.seq_len, capture.dtype bf16"
                              : i == PLAN_GEOMETRY ? "geometry.max_rows (rows held in memory), more ranks, fewer "
                                                     "geometry.id/local/kmeans samples"
                              : i == PLAN_SAE ? "smaller sae.window_chunks or sae.chunk_rows, fewer sae.hooks per run, "
                                                "a smaller sae.expansion, a smaller forward.batch_size (CE evaluation) "
                                                "or sae.eval.num_samples 0, more ranks"
                                              : "more memory per rank or fewer ranks per node";
            al += (size_t)snprintf(out->advice + al, al < sizeof out->advice ? sizeof out->advice - al : 0,
                                   "%s needs %.1f GiB per rank (budget %.1f GiB): %s. ", p->name, need / GIB,
                                   budget / GIB, fix);
            if (al >= sizeof out->advice) al = sizeof out->advice - 1;
        }
    }
}
