/* bench_sae.c — training speed of our SAE trainer (src/analysis/sae/sae.h) on N × d
 * f32 rows from a .npy file (run by tools/bench/sae.sh, which times SAELens on the same
 * rows beside it: tools/bench/sae_saelens.py), and the export used by
 * tools/reference/check_saelens.py.
 *
 *   mpiexec -np P bench_sae --npy ROWS.npy [--arch topk|relu|batchtopk] [--d-sae F]
 *           [--k 32] [--aux-k A] [--batch 4096] [--steps 40] [--warmup 3] [--seed 1]
 *           [--profile S] [--tag TEXT] [--device cpu|cuda]
 *   bench_sae --npy ROWS.npy --export DIR [--arch ...] [--steps 20] [--check-rows 256] ...
 *
 * Set-up (untimed): every rank reads the whole file (npy_read_f32);
 * sae_config_default(arch, d, F) with k, aux_k (default d/2, SAELens' AuxK heuristic),
 * total_steps = warmup + steps; sae_init_weights(seed); the input scale from the first
 * batch (sae_compute_input_scale, all ranks); b_dec as the recipe says
 * (sae_init_b_dec: geometric median for topk/batchtopk, mean for relu; 30 iterations).
 *
 * Training: step t uses global batch b = t mod (N / batch), rows [b·batch, (b+1)·batch);
 * rank r takes its contiguous share [r·batch/P, (r+1)·batch/P) of it, and calls
 * sae_train_step(m, rows, n_local, MPI_COMM_WORLD, &met) (MPI_COMM_NULL when P = 1),
 * exactly what `transpolmo sae` does per step. The first `warmup` steps are untimed;
 * then a barrier, and the wall time of the next `steps` steps (each step ends with
 * every rank holding the updated weights, so no further barrier is needed; the time is
 * rank 0's, and the slowest rank's is printed too). rows_per_s = steps · batch /
 * train_s. The per-step times give step_s_median / step_s_min.
 *
 * --profile S: after the timed steps, S more steps with sae_train_step's body spelt out
 * with timers between the phases (sae_forward; sae_backward; the two MPI_Allreduce of
 * the gradient and the stats; sae_apply_step), medians per phase, and alone, on the
 * same shapes (median of S): the encoder GEMM (cblas_sgemm n_local × F × d, what
 * sae_forward starts with), the full-size memset of the gradient, and for relu the three
 * other dense GEMMs of the step.
 *
 * --export DIR: trains `steps` steps (with warmup 0), then writes
 *   DIR/               sae_export_saelens() (cfg.json + sae_weights.safetensors)
 *   DIR/rows.npy       the first --check-rows rows of the file (input units)
 *   DIR/recon_ours.npy sae_reconstruct() of those rows (input units)
 *   DIR/codes_ours.npy sae_encode() of those rows ([R, F]: the exported SAE gives the
 *                      same codes on raw rows, the input scale being folded in)
 *   DIR/recon_reader.npy  saelens_load() + saelens_reconstruct() (our reader of the
 *                      export, SAELens' inference rule in C)
 *
 * --device cuda (relu, topk, batchtopk): the SAE on GPU dist_local_rank() through
 * sae_use_backend (what `transpolmo sae --device cuda` does), called right after
 * sae_init_weights; the rows stay host memory and sae_train_step uploads each batch;
 * the gradient is summed by NCCL when P > 1. The timed span ends with a be_sync. No
 * GPU: one line {"bench":"sae",...,"skipped":"no GPU: ..."} and exit 0. Not with
 * --profile or --export (their phases are spelt out on the CPU).
 *
 * Output: one JSON line per result on rank 0's stdout.
 */
#include "analysis/sae/sae.h"
#include "analysis/sae/sae_export.h"
#include "core/dtype.h"
#include "core/error.h"
#include "dist/world.h"
#include "io/npy.h"

#define BENCH_NAME "bench_sae"
#include "bench_common.h"

#include <cblas.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int openblas_get_num_threads(void);

static double min_of(const double *v, int n)
{
    double m = INFINITY;
    for (int i = 0; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}

static double max_all(double x)
{
    MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return x;
}

/* The step-by-step body of sae_train_step (sae.c), with timers between the phases. */
typedef struct {
    double fwd, bwd, comm, apply;
} phase_t;

static void profiled_step(sae_model *m, const float *rows, int64_t n_local, int64_t n_global, MPI_Comm comm,
                          phase_t *ph)
{
    double t0 = now_s();
    CHECK(sae_forward(m, rows, n_local, n_global, comm));
    double t1 = now_s();
    CHECK(sae_backward(m));
    double t2 = now_s();
    if (comm != MPI_COMM_NULL) {
        size_t ns;
        double *st = sae_stats(m, &ns);
        const size_t P = (size_t)m->n_params, chunk = (size_t)1 << 28;
        for (size_t off = 0; off < P; off += chunk) {
            int cnt = (int)(P - off < chunk ? P - off : chunk);
            MPI_Allreduce(MPI_IN_PLACE, m->grad + off, cnt, MPI_FLOAT, MPI_SUM, comm);
        }
        CHECK(dist_allreduce_sum_f64(comm, st, ns));
    }
    double t3 = now_s();
    sae_metrics met;
    CHECK(sae_apply_step(m, &met));
    double t4 = now_s();
    ph->fwd = t1 - t0, ph->bwd = t2 - t1, ph->comm = t3 - t2, ph->apply = t4 - t3;
}

static float *alloc_f32(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) DIE("out of memory for %zu floats", n);
    return p;
}

static void fill(float *x, size_t n, uint64_t seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)(s >> 40) / (float)(1 << 24) - 0.5f;
    }
}

/* Dense GEMMs of the step alone, on n × F × d (median of reps): the encoder
 * (pre = x̃ W_encᵀ) for every architecture; relu adds the decoder (f W_dec), ∂W_dec
 * (fᵀ δ), ∂pre (δ W_decᵀ) and ∂W_enc (Gᵀ x̃). */
static void gemm_alone(int64_t n, int64_t F, int64_t d, int reps, int relu, double *enc_s, double *dense_s,
                       double *memset_s, size_t P)
{
    float *A = alloc_f32((size_t)(n * d)), *W = alloc_f32((size_t)(F * d)), *C = alloc_f32((size_t)(n * F));
    float *D = alloc_f32((size_t)(n * d)), *G = alloc_f32((size_t)(F * d)), *g = alloc_f32(P);
    fill(A, (size_t)(n * d), 1), fill(W, (size_t)(F * d), 2), fill(D, (size_t)(n * d), 3);
    double *te = calloc((size_t)reps, sizeof *te), *td = calloc((size_t)reps, sizeof *td),
           *tm = calloc((size_t)reps, sizeof *tm);
    for (int r = 0; r < reps + 1; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)F, (int)d, 1.0f, A, (int)d, W, (int)d,
                    0.0f, C, (int)F);
        double t1 = now_s();
        if (relu) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)d, (int)F, 1.0f, C, (int)F, W,
                        (int)d, 0.0f, D, (int)d);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)F, (int)d, (int)n, 1.0f, C, (int)F, D, (int)d,
                        0.0f, G, (int)d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)F, (int)d, 1.0f, D, (int)d, W, (int)d,
                        0.0f, C, (int)F);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)F, (int)d, (int)n, 1.0f, C, (int)F, A, (int)d,
                        0.0f, G, (int)d);
        }
        double t2 = now_s();
        memset(g, 0, P * sizeof *g);
        double t3 = now_s();
        if (r > 0) te[r - 1] = t1 - t0, td[r - 1] = t2 - t0, tm[r - 1] = t3 - t2;
    }
    *enc_s = median(te, reps), *dense_s = median(td, reps), *memset_s = median(tm, reps);
    free(A), free(W), free(C), free(D), free(G), free(g), free(te), free(td), free(tm);
}

static void write_npy2(const char *dir, const char *name, int64_t r, int64_t c, const float *data)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int64_t shape[2] = {r, c};
    CHECK(npy_write(path, TP_DTYPE_F32, 2, shape, data));
}

int main(int argc, char **argv)
{
    CHECK(dist_init(&argc, &argv));
    g_rank = dist_rank();
    const int size = dist_size();
    const char *npy = NULL, *export_dir = NULL, *tag = "", *device = "cpu";
    sae_arch arch = SAE_TOPK;
    int64_t F = 0, k = 32, aux_k = -1, batch = 4096, steps = 40, warmup = 3, check_rows = 256;
    int profile = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) DIE("%s needs a value (see the comment at the top of bench_sae.c)", a);
        i++;
        if (!strcmp(a, "--npy")) npy = v;
        else if (!strcmp(a, "--arch")) CHECK(sae_arch_parse(v, &arch));
        else if (!strcmp(a, "--d-sae")) F = atoll(v);
        else if (!strcmp(a, "--k")) k = atoll(v);
        else if (!strcmp(a, "--aux-k")) aux_k = atoll(v);
        else if (!strcmp(a, "--batch")) batch = atoll(v);
        else if (!strcmp(a, "--steps")) steps = atoll(v);
        else if (!strcmp(a, "--warmup")) warmup = atoll(v);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)atoll(v);
        else if (!strcmp(a, "--profile")) profile = atoi(v);
        else if (!strcmp(a, "--export")) export_dir = v;
        else if (!strcmp(a, "--check-rows")) check_rows = atoll(v);
        else if (!strcmp(a, "--tag")) tag = v;
        else if (!strcmp(a, "--device")) device = v;
        else DIE("unknown option %s", a);
    }
    if (!npy) DIE("--npy ROWS.npy is required");
    if (export_dir) warmup = 0, profile = 0;
    tp_backend *be = backend_cpu();
    if (!strcmp(device, "cuda")) {
        if (profile > 0 || export_dir) DIE("--device cuda: not with --profile or --export");
        tp_backend_options bo = {.device = dist_local_rank()};
        tp_status bs = backend_open("cuda", &bo, &be);
        if (bs == TP_ERR_NO_DEVICE || bs == TP_ERR_CONFIG) {   /* no GPU, or a build without CUDA */
            if (g_rank == 0) printf("{\"bench\":\"sae\",\"kind\":\"train\",\"impl\":\"c\",\"device\":\"cuda\","
                                    "\"skipped\":\"%s\"}\n", tp_err_msg());
            dist_finalize();
            return 0;
        }
        CHECK(bs);
    } else if (strcmp(device, "cpu")) {
        DIE("--device %s: cpu or cuda", device);
    }
    npy_array X;
    double t_read = now_s();
    CHECK(npy_read_f32(npy, &X));
    t_read = now_s() - t_read;
    if (X.ndim != 2) DIE("%s: expected a 2-D array", npy);
    const int64_t N = X.shape[0], d = X.shape[1];
    const float *rows = X.data;
    if (F <= 0) F = 8 * d;
    if (aux_k < 0) aux_k = d / 2 < F ? d / 2 : F;
    if (batch < size || batch > N) DIE("--batch %lld: must be in [ranks, rows = %lld]", (long long)batch, (long long)N);
    const int64_t n_batches = N / batch;
    const int64_t max_local = (batch + size - 1) / size;
    const MPI_Comm comm = size > 1 ? MPI_COMM_WORLD : MPI_COMM_NULL;
    const int64_t lo = (int64_t)g_rank * batch / size, hi = (int64_t)(g_rank + 1) * batch / size;

    sae_config cfg = sae_config_default(arch, d, F);
    if (arch != SAE_RELU) cfg.k = k;
    cfg.aux_k = arch == SAE_RELU ? 0 : aux_k;
    cfg.total_steps = warmup + steps + profile;
    sae_model m;
    CHECK(sae_init(&m, &cfg, max_local));
    CHECK(sae_init_weights(&m, seed));
    if (be != backend_cpu()) CHECK(sae_use_backend(&m, be));
    double t_init = now_s();
    CHECK(sae_compute_input_scale(rows + (size_t)lo * (size_t)d, hi - lo, d, comm, &m.input_scale));
    CHECK(sae_init_b_dec(&m, rows + (size_t)lo * (size_t)d, hi - lo, comm, cfg.b_dec_init, 30));
    t_init = now_s() - t_init;

    const int64_t total = warmup + steps;
    double *step_t = calloc((size_t)(steps > 0 ? steps : 1), sizeof *step_t);
    sae_metrics met = {0}, first = {0};
    double train_s = 0, t_start = 0;
    for (int64_t t = 0; t < total; t++) {
        if (t == warmup) {
            MPI_Barrier(MPI_COMM_WORLD);
            t_start = now_s();
        }
        const float *b = rows + ((size_t)(t % n_batches) * (size_t)batch + (size_t)lo) * (size_t)d;
        double t0 = now_s();
        CHECK(sae_train_step(&m, b, hi - lo, comm, &met));
        if (t >= warmup) step_t[t - warmup] = now_s() - t0;
        if (t == 0) first = met;
    }
    CHECK(be_sync(be));
    train_s = now_s() - t_start;
    double train_s_max = max_all(train_s);

    const char *an = sae_arch_name(arch);
    if (g_rank == 0 && !export_dir)
        printf("{\"bench\":\"sae\",\"kind\":\"train\",\"impl\":\"c\",\"device\":\"%s\",\"tag\":\"%s\",\"arch\":\"%s\",\"ranks\":%d,"
               "\"blas_threads\":%d,\"rows_file\":%lld,\"d\":%lld,\"F\":%lld,\"k\":%lld,\"aux_k\":%lld,"
               "\"batch\":%lld,\"warmup\":%lld,\"steps\":%lld,\"train_s\":%.6f,\"train_s_slowest\":%.6f,"
               "\"rows_per_s\":%.2f,\"step_s_median\":%.6f,\"step_s_min\":%.6f,\"read_s\":%.3f,\"init_s\":%.3f,"
               "\"loss_first\":%.6g,\"loss_last\":%.6g,\"fvu_last\":%.6g,\"l0_last\":%.4g,\"aux_last\":%.6g,"
               "\"dead_frac_last\":%.4g}\n",
               device, tag, an, size, openblas_get_num_threads(), (long long)N, (long long)d, (long long)F,
               (long long)cfg.k, (long long)cfg.aux_k, (long long)batch, (long long)warmup, (long long)steps,
               train_s, train_s_max, (double)(steps * batch) / train_s, median(step_t, (int)steps),
               min_of(step_t, (int)steps), t_read, t_init, first.loss, met.loss, met.fvu, met.l0, met.aux,
               met.dead_frac);
    fflush(stdout);

    if (profile > 0) {
        double *pf = calloc((size_t)profile * 5, sizeof *pf);
        for (int p = 0; p < profile; p++) {
            int64_t t = total + p;
            const float *b = rows + ((size_t)(t % n_batches) * (size_t)batch + (size_t)lo) * (size_t)d;
            phase_t ph;
            MPI_Barrier(MPI_COMM_WORLD);
            profiled_step(&m, b, hi - lo, batch, comm, &ph);
            pf[p] = ph.fwd, pf[profile + p] = ph.bwd, pf[2 * profile + p] = ph.comm, pf[3 * profile + p] = ph.apply;
            pf[4 * profile + p] = ph.fwd + ph.bwd + ph.comm + ph.apply;
        }
        double enc_s, dense_s, memset_s;
        MPI_Barrier(MPI_COMM_WORLD);
        gemm_alone(hi - lo, F, d, profile, arch == SAE_RELU, &enc_s, &dense_s, &memset_s, (size_t)m.n_params);
        double ph_med[5];
        for (int q = 0; q < 5; q++) ph_med[q] = median(pf + (size_t)q * (size_t)profile, profile);
        /* rank 0's figures; rank 1's differ little (same shapes) */
        if (g_rank == 0)
            printf("{\"bench\":\"sae\",\"kind\":\"profile\",\"impl\":\"c\",\"tag\":\"%s\",\"arch\":\"%s\",\"ranks\":%d,"
                   "\"blas_threads\":%d,\"n_local\":%lld,\"reps\":%d,\"forward_s\":%.6f,\"backward_s\":%.6f,"
                   "\"allreduce_s\":%.6f,\"apply_s\":%.6f,\"step_s\":%.6f,\"enc_gemm_alone_s\":%.6f,"
                   "\"dense_gemms_alone_s\":%.6f,\"grad_memset_alone_s\":%.6f,\"n_params\":%lld}\n",
                   tag, an, size, openblas_get_num_threads(), (long long)(hi - lo), profile, ph_med[0], ph_med[1],
                   ph_med[2], ph_med[3], ph_med[4], enc_s, dense_s, memset_s, (long long)m.n_params);
        fflush(stdout);
        free(pf);
    }

    if (export_dir && g_rank == 0) {
        const int64_t R = check_rows < N ? check_rows : N;
        json_t *extra = json_pack("{s:s}", "bench_rows", npy);
        CHECK(sae_export_saelens(&m, export_dir, "bench.hook_resid_post", "bench-rows", extra));
        json_decref(extra);
        float *recon = alloc_f32((size_t)(R * d)), *codes = alloc_f32((size_t)(R * F));
        float *recon2 = alloc_f32((size_t)(R * d));
        CHECK(sae_reconstruct(&m, rows, R, recon));
        CHECK(sae_encode(&m, rows, R, codes));
        saelens_sae s;
        CHECK(saelens_load(export_dir, &s));
        CHECK(saelens_reconstruct(&s, rows, R, recon2, NULL));
        saelens_free(&s);
        write_npy2(export_dir, "rows.npy", R, d, rows);
        write_npy2(export_dir, "recon_ours.npy", R, d, recon);
        write_npy2(export_dir, "codes_ours.npy", R, F, codes);
        write_npy2(export_dir, "recon_reader.npy", R, d, recon2);
        printf("{\"bench\":\"sae\",\"kind\":\"export\",\"arch\":\"%s\",\"dir\":\"%s\",\"d\":%lld,\"F\":%lld,\"k\":%lld,"
               "\"steps\":%lld,\"rows\":%lld,\"input_scale\":%.9g,\"threshold\":%.9g,\"loss_last\":%.6g,"
               "\"fvu_last\":%.6g,\"l0_last\":%.4g}\n",
               an, export_dir, (long long)d, (long long)F, (long long)cfg.k, (long long)steps, (long long)R,
               m.input_scale, m.threshold, met.loss, met.fvu, met.l0);
        free(recon), free(codes), free(recon2);
    }
    free(step_t);
    sae_free(&m);
    if (be != backend_cpu()) backend_close(be);
    npy_free(&X);
    dist_finalize();
    return 0;
}
