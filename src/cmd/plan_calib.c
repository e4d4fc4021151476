/* plan_calib.c — kernel timings for the planner (plan_calib.h). */
#define _GNU_SOURCE   /* gethostname in strict C11 */
#include "cmd/plan_calib.h"

#include "analysis/geometry/intrinsic_dim.h"
#include "analysis/geometry/kmeans.h"
#include "analysis/geometry/local_geometry.h"
#include "analysis/geometry/pca.h"
#include "analysis/sae/sae.h"
#include "analysis/sae/sae_ce.h"
#include "backend/backend.h"
#include "backend/cpu/pool.h"   /* cpu_set_threads: geometry timed at 1 thread too */
#include "core/fsutil.h"
#include "core/log.h"
#include "core/progress.h"
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <hdf5.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <jansson.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

tp_status plan_calib_default_path(char *out, size_t n)
{
    const char *env = getenv("TP_CALIBRATION");
    if (env && *env) return fs_path(out, n, "%s", env);
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) return fs_path(out, n, "%s/transpolmo/calibration.json", xdg);
    return fs_path(out, n, "%s/.cache/transpolmo/calibration.json", home && *home ? home : ".");
}

/* Peak RSS of this process so far, MiB (Linux VmHWM). */
static double peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    if (f) fclose(f);
    return kb / 1024.0;
}

extern char **environ;

/* Peak RSS (MiB) of a process of this binary that does nothing (`transpolmo version`):
 * what loading its libraries and exiting cost, the floor of every phase's peak. */
static double noop_rss_mib(double *wall_s)
{
    double t0 = tp_now();
    pid_t pid;
    char *argv[] = {"transpolmo", "version", NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) return 0;
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid) return 0;
    *wall_s = tp_now() - t0;
    return (double)ru.ru_maxrss / 1024.0;
}

static float *random_floats(size_t n, uint64_t seed, float scale)
{
    float *p = tp_malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = scale * ((float)(seed >> 40) / (float)(1ull << 24) - 0.5f);
    }
    return p;
}

/* Best of `reps` runs of fn, at least min_s seconds in all. */
#define TIME_BEST(best, reps, stmt)                                  \
    do {                                                             \
        best = INFINITY;                                             \
        double t_all_ = tp_now();                                    \
        for (int r_ = 0; r_ < (reps) || tp_now() - t_all_ < 0.3; r_++) { \
            double t0_ = tp_now();                                   \
            st = (stmt);                                             \
            if (st != TP_OK) break;                                  \
            double dt_ = tp_now() - t0_;                             \
            if (dt_ < best) best = dt_;                              \
            if (r_ > 50) break;                                      \
        }                                                            \
    } while (0)

/* GFLOP/s of the linear op: m rows through an [n, k] weight of the given dtype. */
static tp_status time_linear(tp_backend *be, int64_t m, int64_t k, int64_t n, tp_dtype dt, double *gflops)
{
    float *x = random_floats((size_t)(m * k), 1, 1), *y = tp_malloc((size_t)(m * n) * sizeof *y);
    float *w32 = random_floats((size_t)(n * k), 2, 0.05f);
    uint16_t *w16 = dt == TP_DTYPE_BF16 ? tp_malloc((size_t)(n * k) * sizeof *w16) : NULL;
    tp_status st = x && y && w32 && (dt != TP_DTYPE_BF16 || w16) ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && w16)
        for (int64_t i = 0; i < n * k; i++) {
            uint32_t u;
            memcpy(&u, &w32[i], 4);
            w16[i] = (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
        }
    double best = INFINITY;
    if (st == TP_OK) {
        tp_linear_out o = {.w = w16 ? (const void *)w16 : (const void *)w32, .n = n, .ldw = k, .dtype = dt, .y = y, .ldy = n};
        TIME_BEST(best, 3, be_linear(be, m, k, x, k, &o, 1));
    }
    *gflops = st == TP_OK ? 2.0 * (double)m * (double)k * (double)n / best / 1e9 : 0;
    free(x), free(y), free(w32), free(w16);
    return st;
}

/* GFLOP/s of causal attention over nseq sequences of T tokens, H heads of dh. */
static tp_status time_attention(tp_backend *be, int T, int H, int dh, double *gflops)
{
    int nseq = 4;
    size_t ld = (size_t)H * (size_t)dh, rows = (size_t)nseq * (size_t)T;
    float *q = random_floats(rows * ld, 3, 1), *k = random_floats(rows * ld, 4, 1), *v = random_floats(rows * ld, 5, 1);
    float *z = tp_malloc(rows * ld * sizeof *z);
    tp_status st = q && k && v && z ? TP_OK : TP_ERR_NOMEM;
    tp_attn_seq seqs[4];
    for (int s = 0; s < nseq; s++)
        seqs[s] = (tp_attn_seq){.q = q + (size_t)s * T * ld, .k = k + (size_t)s * T * ld, .v = v + (size_t)s * T * ld,
                                .z = z + (size_t)s * T * ld, .nq = T, .off = 0};
    tp_attn_shape sh = {.H = H, .K = H, .dh = dh, .ldq = (int64_t)ld, .ldk = (int64_t)ld, .ldz = (int64_t)ld,
                        .scale = 1.0f / sqrtf((float)dh)};
    double best = INFINITY;
    if (st == TP_OK) TIME_BEST(best, 3, be_attention(be, &sh, seqs, nseq, TP_ATTN_FUSED));
    /* the FLOPs plan_model counts: 2 · T · H·dh per token (QKᵀ and PV, causal half) */
    *gflops = st == TP_OK ? 2.0 * (double)rows * T * (double)ld / best / 1e9 : 0;
    free(q), free(k), free(v), free(z);
    return st;
}

static tp_status time_gemm_f64(tp_backend *be, int64_t n, double *gflops)
{
    double *a = tp_malloc((size_t)(n * n) * sizeof *a), *b = tp_malloc((size_t)(n * n) * sizeof *b),
           *c = tp_malloc((size_t)(n * n) * sizeof *c);
    tp_status st = a && b && c ? TP_OK : TP_ERR_NOMEM;
    for (int64_t i = 0; st == TP_OK && i < n * n; i++) a[i] = (double)(i % 97) / 97.0, b[i] = (double)(i % 89) / 89.0;
    double best = INFINITY;
    if (st == TP_OK)
        TIME_BEST(best, 3, be_gemm_f64(be, TP_NO_TRANS, TP_TRANS, n, n, n, 1.0, a, n, b, n, 0.0, c, n));
    *gflops = st == TP_OK ? 2.0 * (double)n * n * n / best / 1e9 : 0;
    free(a), free(b), free(c);
    return st;
}

/* Geometry's stages, one rank (MPI_COMM_SELF), each through the phase's own function
 * with the phase's defaults, on random rows of d columns (a few directions carry most
 * of the variance, as in activations). The neighbour searches are timed at two row
 * counts, n1 and 4·n1, which separates their cost per query and row from their cost
 * per query alone (gathering the sample, merging candidate lists, the local PCA of
 * each neighbourhood). Rates in the units of plan_rates' geo_* fields. */
/* A cost t(x) = fixed + x / rate through two timings (x1, t1), (x2, t2), x1 < x2.
 * Timing noise on a loaded machine can make the slope or the intercept come out
 * <= 0: then all of t2 counts as per unit of x, and the fixed part is floored at 1 %
 * of t1. Every calibrated value must be positive (plan_calib_load refuses a file
 * otherwise): zeros from these splits failed cli.test_plan twice with CI running
 * beside it. */
static void fit_two_points(double x1, double t1, double x2, double t2, double *rate, double *fixed)
{
    double slope = (t2 - t1) / (x2 - x1), c = t1 - slope * x1;
    if (!(slope > 0) || !isfinite(slope)) slope = t2 / x2, c = 0;
    if (!(c >= 0.01 * t1)) c = 0.01 * t1;
    *rate = 1.0 / slope;
    *fixed = c;
}

static tp_status time_geometry(int64_t n1, int64_t d, int slot, plan_rates *r)
{
    const int64_t n2 = 4 * n1;
    float *X = random_floats((size_t)(n2 * d), 13, 1);
    if (!X) return TP_ERR_NOMEM;
    for (int64_t i = 0; i < n2; i++)
        for (int64_t j = 0; j < 16 && j < d; j++) X[(size_t)(i * d + j)] *= 8.0f;
    tp_status st = TP_OK;
    pca_accum *acc = NULL;
    pca_result pr = {0};
    pca_options po = pca_options_default();
    double t0 = tp_now();
    TP_CHECK_GOTO(pca_accum_init(d, po.gram, &acc), st, done);
    TP_CHECK_GOTO(pca_accum_add(acc, X, n1), st, done);
    double t1 = tp_now();
    r->geo_cov_rate[slot] = (double)n1 * d * d / (t1 - t0);
    TP_CHECK_GOTO(pca_accum_finish(acc, MPI_COMM_SELF, &po, &pr), st, done);
    r->geo_eig_rate[slot] = (double)d * d * d / (tp_now() - t1);
    double t_id[2], t_loc[2], q_id = 256, q_loc = 64;
    for (int pass = 0; pass < 2; pass++) {
        int64_t n = pass ? n2 : n1;
        intrinsic_dim_options io = intrinsic_dim_options_default();
        io.sample = (int64_t)q_id;
        intrinsic_dim_result idr = {0};
        double ta = tp_now();
        st = intrinsic_dim_estimate(X, n, d, MPI_COMM_SELF, &io, &idr);
        t_id[pass] = tp_now() - ta;
        intrinsic_dim_result_free(&idr);
        TP_CHECK_GOTO(st, st, done);
        local_geometry_options lo = local_geometry_options_default();
        lo.sample = (int64_t)q_loc;
        local_geometry_result lg = {0};
        ta = tp_now();
        st = local_geometry_estimate(X, n, d, MPI_COMM_SELF, &lo, &lg);
        t_loc[pass] = tp_now() - ta;
        local_geometry_result_free(&lg);
        TP_CHECK_GOTO(st, st, done);
    }
    /* t / q = per_query + rows · d / rate */
    const double x1 = (double)n1 * d, x2 = (double)n2 * d;
    fit_two_points(x1, t_id[0] / q_id, x2, t_id[1] / q_id, &r->geo_id_rate[slot], &r->geo_id_query_s[slot]);
    fit_two_points(x1, t_loc[0] / q_loc, x2, t_loc[1] / q_loc, &r->geo_local_rate[slot], &r->geo_local_query_s[slot]);
    /* k-means: one Lloyd iteration, then six; the difference is the iterations' cost,
     * the rest k-means++ on its sample and the final pass over the rows */
    kmeans_options ko = kmeans_options_default();
    ko.k = 8, ko.max_iter = 1, ko.init_sample = n1;
    kmeans_result kr = {0};
    double t5 = tp_now();
    TP_CHECK_GOTO(kmeans_fit_distributed(X, n2, d, MPI_COMM_SELF, &ko, &kr), st, done);
    double t_one = tp_now() - t5;
    int it_one = kr.iterations;
    kmeans_result_free(&kr);
    ko.max_iter = 6;
    t5 = tp_now();
    TP_CHECK_GOTO(kmeans_fit_distributed(X, n2, d, MPI_COMM_SELF, &ko, &kr), st, done);
    double t_six = tp_now() - t5;
    /* (converged as early as the one-iteration run, or a noisy difference: the six-
     * iteration run's time over all its iterations) */
    const double lloyd = (double)n2 * ko.k * d;
    r->geo_kmeans_rate[slot] = kr.iterations > it_one && t_six > t_one
                                   ? (double)(kr.iterations - it_one) * lloyd / (t_six - t_one)
                                   : (double)(kr.iterations > 0 ? kr.iterations : 1) * lloyd / t_six;
    r->geo_kmeans_init_rate[slot] =
        ((double)n1 + (double)n2) * ko.k * d / fmax(t_one - it_one * lloyd / r->geo_kmeans_rate[slot], 0.01 * t_one);
    double t6 = tp_now();
    double sil = 0;
    int64_t ss = 2048;
    st = kmeans_silhouette_distributed(X, kr.assign, n2, d, ko.k, ss, 3, MPI_COMM_SELF, &sil);
    if (st == TP_ERR_RANGE) st = TP_OK;   /* an undefined score took the same time */
    r->geo_sil_rate[slot] = (double)ss * ss * d / (tp_now() - t6);
    kmeans_result_free(&kr);
done:
    pca_result_free(&pr);
    pca_accum_free(acc);
    free(X);
    return st;
}

/* ns per logit of the CE evaluation's log Σ exp and KL passes (sae_ce.h), rows of
 * the 1B's vocabulary. */
static tp_status time_ce_softmax(double *lse_ns, double *kl_ns)
{
    const int V = 100352, rows = 16;
    float *zc = random_floats((size_t)V * rows, 17, 8), *zo = random_floats((size_t)V * rows, 19, 8);
    if (!zc || !zo) { free(zc), free(zo); return TP_ERR_NOMEM; }
    volatile double sink = 0;
    double t0 = tp_now();
    for (int i = 0; i < rows; i++) sink += sae_ce_row_lse(zc + (size_t)i * V, V);
    double t1 = tp_now();
    for (int i = 0; i < rows; i++) sink += sae_ce_row_kl(zc + (size_t)i * V, 1.0, zo + (size_t)i * V, 1.0, V);
    double t2 = tp_now();
    (void)sink;
    *lse_ns = (t1 - t0) / ((double)V * rows) * 1e9, *kl_ns = (t2 - t1) / ((double)V * rows) * 1e9;
    free(zc), free(zo);
    return TP_OK;
}

/* GFLOP/s of be_gemm_f32 at the catalog's logit-attribution shape: a block of 512
 * feature directions against 2048 vocabulary rows of d. */
static tp_status time_gemm_f32(tp_backend *be, int64_t d, double *gflops)
{
    int64_t m = 512, n = 2048;
    float *a = random_floats((size_t)(m * d), 21, 1), *b = random_floats((size_t)(n * d), 23, 1),
          *c = tp_malloc((size_t)(m * n) * sizeof *c);
    tp_status st = a && b && c ? TP_OK : TP_ERR_NOMEM;
    double best = INFINITY;
    if (st == TP_OK) TIME_BEST(best, 3, be_gemm_f32(be, TP_NO_TRANS, TP_TRANS, m, n, d, 1.0f, a, d, b, d, 0.0f, c, n));
    *gflops = st == TP_OK ? 2.0 * (double)m * n * d / best / 1e9 : 0;
    free(a), free(b), free(c);
    return st;
}

/* Seconds per SAE step of B rows (one process, no MPI). */
static tp_status time_sae_step(sae_arch arch, int64_t d, int64_t F, int64_t B, double *sec)
{
    sae_config c = sae_config_default(arch, d, F);
    c.total_steps = 1000;
    c.dead_tokens = 1 << 20;
    if (arch != SAE_RELU) c.aux_k = 256;
    sae_model m;
    TP_CHECK(sae_init(&m, &c, B));
    float *x = random_floats((size_t)(B * d), 7, 2);
    tp_status st = x ? sae_init_weights(&m, 1) : TP_ERR_NOMEM;
    sae_metrics met;
    double best = INFINITY;
    if (st == TP_OK) TIME_BEST(best, 3, sae_train_step(&m, x, B, MPI_COMM_NULL, &met));
    *sec = best;
    free(x);
    sae_free(&m);
    return st;
}

/* Seconds to encode B rows (sae_encode: what the held-out evaluation and the features
 * catalog run on every row). */
static tp_status time_sae_encode(int64_t d, int64_t F, int64_t B, double *sec)
{
    sae_config c = sae_config_default(SAE_TOPK, d, F);
    sae_model m;
    TP_CHECK(sae_init(&m, &c, B));
    float *x = random_floats((size_t)(B * d), 7, 2), *codes = tp_malloc((size_t)(B * F) * sizeof *codes);
    tp_status st = x && codes ? sae_init_weights(&m, 1) : TP_ERR_NOMEM;
    double best = INFINITY;
    if (st == TP_OK) TIME_BEST(best, 3, sae_encode(&m, x, B, codes));
    *sec = best;
    free(x), free(codes);
    sae_free(&m);
    return st;
}

/* An SAE step's per-row rate (d·F per second) and per-step part (ns per parameter,
 * 2·d·F of them) from its times s1, s2 at batch sizes B1 < B2 (fit_two_points). */
static void split_sae_step(double s1, double s2, int64_t B1, int64_t B2, int64_t d, int64_t F, double *row_rate,
                           double *param_ns)
{
    double rows_s, per_step;
    fit_two_points((double)B1, s1, (double)B2, s2, &rows_s, &per_step);
    *row_rate = (double)d * (double)F * rows_s;
    *param_ns = per_step / (2.0 * (double)d * (double)F) * 1e9;
}

/* The SAE step's per-row and per-step parts at the phase's shapes (d, d_sae = F),
 * from two batch sizes; and the encoder alone. */
static tp_status time_sae_shape(int64_t d, int64_t F, int slot, plan_rates *r)
{
    int64_t B1 = 128, B2 = 512;
    double s1, s2, e;
    TP_CHECK(time_sae_step(SAE_TOPK, d, F, B1, &s1));
    TP_CHECK(time_sae_step(SAE_TOPK, d, F, B2, &s2));
    split_sae_step(s1, s2, B1, B2, d, F, &r->sae_step_rate[slot], &r->sae_step_param_ns[slot]);
    TP_CHECK(time_sae_encode(d, F, B2, &e));
    r->sae_encode_rate[slot] = (double)B2 * d * F / e;
    return TP_OK;
}

/* HDF5 write of ~bytes (chunked f32 [rows, 1024], like the store), closed and
 * fsync'd; then read back. MiB/s each. */
static tp_status time_hdf5(const char *dir, double bytes, double *w_mib_s, double *r_mib_s)
{
    char path[TP_PATH_MAX];
    TP_CHECK(fs_path(path, sizeof path, "%s/plan-calibration-%d.h5", dir, (int)getpid()));
    hsize_t cols = 1024, rows = (hsize_t)(bytes / 4 / cols), blk = 4096;
    float *buf = random_floats((size_t)(blk * cols), 9, 1);
    if (!buf) return TP_ERR_NOMEM;
    tp_status st = TP_OK;
    double t0 = tp_now();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {rows, cols}, chunk[2] = {256, cols};
    hid_t space = H5Screate_simple(2, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 2, chunk);
    hid_t ds = f >= 0 ? H5Dcreate2(f, "x", H5T_NATIVE_FLOAT, space, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    if (f < 0 || ds < 0) st = tp_err(TP_ERR_IO, "plan --calibrate: cannot create %s", path);
    for (hsize_t r0 = 0; st == TP_OK && r0 < rows; r0 += blk) {
        hsize_t cnt[2] = {rows - r0 < blk ? rows - r0 : blk, cols}, off[2] = {r0, 0};
        hid_t mem = H5Screate_simple(2, cnt, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, off, NULL, cnt, NULL);
        if (H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, buf) < 0)
            st = tp_err(TP_ERR_IO, "plan --calibrate: write to %s failed", path);
        H5Sclose(mem);
    }
    if (ds >= 0) H5Dclose(ds);
    if (f >= 0) H5Fclose(f);
    int fd = open(path, O_RDONLY);
    if (fd >= 0) (void)fsync(fd), close(fd);
    double tw = tp_now() - t0;
    t0 = tp_now();
    f = st == TP_OK ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    ds = f >= 0 ? H5Dopen2(f, "x", H5P_DEFAULT) : -1;
    for (hsize_t r0 = 0; ds >= 0 && r0 < rows; r0 += blk) {
        hsize_t cnt[2] = {rows - r0 < blk ? rows - r0 : blk, cols}, off[2] = {r0, 0};
        hid_t mem = H5Screate_simple(2, cnt, NULL);
        H5Sselect_hyperslab(space, H5S_SELECT_SET, off, NULL, cnt, NULL);
        if (H5Dread(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, buf) < 0) st = tp_err(TP_ERR_IO, "read of %s failed", path);
        H5Sclose(mem);
    }
    if (ds >= 0) H5Dclose(ds);
    if (f >= 0) H5Fclose(f);
    double tr = tp_now() - t0;
    H5Sclose(space), H5Pclose(dcpl);
    unlink(path);
    free(buf);
    double mib = (double)rows * cols * 4 / (1024.0 * 1024.0);
    *w_mib_s = mib / tw, *r_mib_s = mib / tr;
    return st;
}

tp_status plan_calibrate(const char *dir, plan_rates *out)
{
    plan_rates r;
    plan_rates_default(&r);
    r.base_rss_mib = peak_rss_mib();
    /* twice: the first start may find the libraries' pages not yet cached */
    r.exit_rss_mib = dist_rank() == 0 ? noop_rss_mib(&r.startup_s) : 0;
    if (dist_rank() == 0) (void)noop_rss_mib(&r.startup_s);
    MPI_CHECK(MPI_Bcast(&r.exit_rss_mib, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Bcast(&r.startup_s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    if (r.exit_rss_mib <= 0) r.exit_rss_mib = r.base_rss_mib;
    tp_backend *be = backend_cpu();
    tp_backend_info bi;
    be_info(be, &bi);
    r.threads = bi.threads > 0 ? bi.threads : 1;
    int rank = dist_rank(), size = dist_size();
    tp_status st = TP_OK;
    /* linear: the shapes of a forward at d = 2048 (the 1B) and of the bundled model */
    double g1 = 0, g2 = 0, g3 = 0, b1 = 0, b2 = 0;
    TP_CHECK(time_linear(be, 512, 2048, 2048, TP_DTYPE_F32, &g1));
    TP_CHECK(time_linear(be, 512, 2048, 8192, TP_DTYPE_F32, &g2));
    TP_CHECK(time_linear(be, 1024, 256, 768, TP_DTYPE_F32, &g3));
    TP_CHECK(time_linear(be, 512, 2048, 2048, TP_DTYPE_BF16, &b1));
    TP_CHECK(time_linear(be, 512, 2048, 8192, TP_DTYPE_BF16, &b2));
    r.linear_f32_gflops = (g1 + g2) / 2, r.linear_bf16_gflops = (b1 + b2) / 2;
    tp_log_info("plan --calibrate: linear f32 %.1f / %.1f GFLOP/s (d=2048: attn / mlp shapes), %.1f (d=256); "
                "bf16 weights %.1f / %.1f", g1, g2, g3, b1, b2);
    double a1 = 0, a2 = 0;
    TP_CHECK(time_attention(be, 128, 8, 32, &a1));
    TP_CHECK(time_attention(be, 512, 16, 128, &a2));
    r.attention_gflops = (a1 + a2) / 2;
    tp_log_info("plan --calibrate: attention %.1f GFLOP/s (T=128, 8x32), %.1f (T=512, 16x128)", a1, a2);
    TP_CHECK(time_gemm_f64(be, 512, &r.gemm_f64_gflops));
    tp_log_info("plan --calibrate: f64 GEMM %.1f GFLOP/s (512^3)", r.gemm_f64_gflops);
    TP_CHECK(time_gemm_f32(be, 2048, &r.gemm_f32_gflops));
    /* the first call pays ScaLAPACK's and the pools' set-up: once, untimed */
    TP_CHECK(time_geometry(512, 64, 0, &r));
    /* twice each, the better of the two kept: a single run is at the mercy of whatever
     * else the machine does */
    for (int slot = 0; slot < 2; slot++) {
        plan_rates a = r, b = r, c = r;
        int64_t n = slot ? 2048 : 4096, d = slot ? 2048 : 256;
        double t0 = tp_now();
        TP_CHECK(time_geometry(n, d, slot, &a));
        double t1 = tp_now();
        TP_CHECK(time_geometry(n, d, slot, &b));
        double t_many = fmin(t1 - t0, tp_now() - t1), t_one = t_many;
        /* and at 1 thread, for ranks that get one (geo_thread_gain) */
        if (r.threads > 1) {
            cpu_set_threads(1);
            t0 = tp_now();
            st = time_geometry(n, d, slot, &c);
            t1 = tp_now();
            if (st == TP_OK) st = time_geometry(n, d, slot, &c);
            t_one = fmin(t1 - t0, tp_now() - t1);
            cpu_set_threads(r.threads);
            TP_CHECK(st);
        }
        r.geo_thread_gain[slot] = t_one / t_many;
        double *ra[] = {a.geo_cov_rate, a.geo_eig_rate, a.geo_id_rate, a.geo_local_rate, a.geo_kmeans_rate,
                        a.geo_kmeans_init_rate, a.geo_sil_rate},
               *rb[] = {b.geo_cov_rate, b.geo_eig_rate, b.geo_id_rate, b.geo_local_rate, b.geo_kmeans_rate,
                        b.geo_kmeans_init_rate, b.geo_sil_rate},
               *rr[] = {r.geo_cov_rate, r.geo_eig_rate, r.geo_id_rate, r.geo_local_rate, r.geo_kmeans_rate,
                        r.geo_kmeans_init_rate, r.geo_sil_rate};
        for (int i = 0; i < 7; i++) rr[i][slot] = fmax(ra[i][slot], rb[i][slot]);
        r.geo_id_query_s[slot] = fmin(a.geo_id_query_s[slot], b.geo_id_query_s[slot]);
        r.geo_local_query_s[slot] = fmin(a.geo_local_query_s[slot], b.geo_local_query_s[slot]);
    }
    tp_log_info("plan --calibrate: geometry (d 256 / 2048): covariance %.3g / %.3g rows*d^2/s, eigen %.3g / %.3g d^3/s, "
                "MLE+TwoNN %.3g / %.3g queries*rows*d/s + %.2g / %.2g s per query, local %.3g / %.3g + %.2g / %.2g s, "
                "k-means %.3g / %.3g per iteration + init %.3g / %.3g, silhouette %.3g / %.3g; 1 thread takes %.2f / %.2f "
                "x the time of %d", r.geo_cov_rate[0], r.geo_cov_rate[1], r.geo_eig_rate[0],
                r.geo_eig_rate[1], r.geo_id_rate[0], r.geo_id_rate[1], r.geo_id_query_s[0], r.geo_id_query_s[1],
                r.geo_local_rate[0], r.geo_local_rate[1], r.geo_local_query_s[0], r.geo_local_query_s[1],
                r.geo_kmeans_rate[0], r.geo_kmeans_rate[1], r.geo_kmeans_init_rate[0], r.geo_kmeans_init_rate[1],
                r.geo_sil_rate[0], r.geo_sil_rate[1], r.geo_thread_gain[0], r.geo_thread_gain[1], r.threads);
    TP_CHECK(time_ce_softmax(&r.lse_ns, &r.kl_ns));
    tp_log_info("plan --calibrate: CE log-sum-exp %.2f ns, KL %.2f ns per logit; f32 GEMM %.1f GFLOP/s; start of a "
                "process %.2f s", r.lse_ns, r.kl_ns, r.gemm_f32_gflops, r.startup_s);
    /* SAE: two batch sizes separate the per-row cost from the per-step one */
    int64_t d = 512, F = 4096, B1 = 256, B2 = 1024;
    double s1, s2, r1, r2;
    TP_CHECK(time_sae_step(SAE_TOPK, d, F, B1, &s1));
    TP_CHECK(time_sae_step(SAE_TOPK, d, F, B2, &s2));
    split_sae_step(s1, s2, B1, B2, d, F, &r.sae_topk_rate, &r.sae_param_ns);
    TP_CHECK(time_sae_step(SAE_RELU, d, F, B1, &r1));
    TP_CHECK(time_sae_step(SAE_RELU, d, F, B2, &r2));
    double per_row_relu = (r2 - r1) / (double)(B2 - B1);
    r.sae_relu_rate = (double)d * (double)F / (per_row_relu > 0 ? per_row_relu : r2 / (double)B2);
    tp_log_info("plan --calibrate: SAE step (d %lld, d_sae %lld): topk %.3g rows*d*d_sae/s + %.2f ns/param/step; "
                "relu %.3g", (long long)d, (long long)F, r.sae_topk_rate, r.sae_param_ns, r.sae_relu_rate);
    TP_CHECK(time_sae_shape(256, 2048, 0, &r));
    TP_CHECK(time_sae_shape(2048, 4096, 1, &r));
    tp_log_info("plan --calibrate: SAE topk (d 256, d_sae 2048 / d 2048, d_sae 4096): step %.3g / %.3g rows*d*d_sae/s "
                "+ %.2f / %.2f ns/param/step; encode %.3g / %.3g rows*d*d_sae/s", r.sae_step_rate[0],
                r.sae_step_rate[1], r.sae_step_param_ns[0], r.sae_step_param_ns[1], r.sae_encode_rate[0],
                r.sae_encode_rate[1]);
    if (rank == 0) {
        TP_CHECK(fs_mkdir_p(dir));
        st = time_hdf5(dir, 256.0 * 1024 * 1024, &r.write_mib_s, &r.read_mib_s);
        if (st == TP_OK) tp_log_info("plan --calibrate: HDF5 in %s: write %.0f MiB/s (fsync'd), read %.0f MiB/s", dir,
                                     r.write_mib_s, r.read_mib_s);
    }
    TP_CHECK(dist_agree(MPI_COMM_WORLD, st, "plan --calibrate"));
    if (size > 1) {
        size_t n = 16u << 20;
        float *buf = random_floats(n, 11, 1);
        st = buf ? TP_OK : TP_ERR_NOMEM;
        TP_CHECK(dist_agree(MPI_COMM_WORLD, st, "plan --calibrate"));
        double best = INFINITY;
        for (int rep = 0; rep < 3; rep++) {
            MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
            double t0 = tp_now();
            MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
            double dt = tp_now() - t0;
            if (dt < best) best = dt;
        }
        free(buf);
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &best, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
        r.allreduce_mib_s = (double)n * 4 / best / (1024.0 * 1024.0);
        tp_log_info("plan --calibrate: MPI_Allreduce of 64 MiB over %d ranks: %.0f MiB/s", size, r.allreduce_mib_s);
    }
    /* the slowest rank's rates: what a phase waits for */
    double *v[] = {&r.linear_f32_gflops, &r.linear_bf16_gflops, &r.attention_gflops, &r.gemm_f64_gflops,
                   &r.sae_topk_rate, &r.sae_relu_rate, &r.gemm_f32_gflops, &r.sae_step_rate[0], &r.sae_step_rate[1],
                   &r.sae_encode_rate[0], &r.sae_encode_rate[1],
                   &r.geo_cov_rate[0], &r.geo_cov_rate[1], &r.geo_eig_rate[0], &r.geo_eig_rate[1],
                   &r.geo_id_rate[0], &r.geo_id_rate[1], &r.geo_local_rate[0], &r.geo_local_rate[1],
                   &r.geo_kmeans_rate[0], &r.geo_kmeans_rate[1], &r.geo_kmeans_init_rate[0], &r.geo_kmeans_init_rate[1],
                   &r.geo_sil_rate[0], &r.geo_sil_rate[1]};
    double *w[] = {&r.sae_step_param_ns[0], &r.sae_step_param_ns[1], &r.geo_id_query_s[0], &r.geo_id_query_s[1], &r.geo_local_query_s[0], &r.geo_local_query_s[1],
                   &r.geo_thread_gain[0], &r.geo_thread_gain[1]};
    for (size_t i = 0; i < sizeof w / sizeof *w; i++)
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, w[i], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, v[i], 1, MPI_DOUBLE, MPI_MIN, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &r.sae_param_ns, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &r.lse_ns, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &r.kl_ns, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Bcast(&r.write_mib_s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    MPI_CHECK(MPI_Bcast(&r.read_mib_s, 1, MPI_DOUBLE, 0, MPI_COMM_WORLD));
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M", localtime(&now));
    snprintf(r.source, sizeof r.source, "calibrated on %s, %s, %d rank(s) x %d thread(s) (%s)", host, date, size,
             r.threads, bi.linear_gemm);
    r.calibrated = true;
    *out = r;
    return TP_OK;
}

static const struct {
    const char *key;
    size_t off;
} fields[] = {
#define F(x) {#x, offsetof(plan_rates, x)}
#define G(x) {#x "_d256", offsetof(plan_rates, x[0])}, {#x "_d2048", offsetof(plan_rates, x[1])}
    F(linear_f32_gflops), F(linear_bf16_gflops), F(attention_gflops), F(gemm_f64_gflops), F(sae_topk_rate),
    F(sae_relu_rate), F(sae_param_ns), F(write_mib_s), F(read_mib_s), F(allreduce_mib_s), F(tokenize_rows_s),
    F(base_rss_mib), F(exit_rss_mib), F(gpu_linear_gflops), F(gpu_sae_rate), F(gpu_mem_gib),
    G(sae_step_rate), G(sae_step_param_ns), G(sae_encode_rate), G(geo_cov_rate), G(geo_eig_rate), G(geo_id_rate), G(geo_local_rate), G(geo_id_query_s), G(geo_local_query_s), G(geo_kmeans_rate), G(geo_kmeans_init_rate), G(geo_sil_rate), G(geo_thread_gain),
    F(lse_ns), F(kl_ns), F(gemm_f32_gflops), F(startup_s),
#undef F
#undef G
};

tp_status plan_calib_save(const char *path, const plan_rates *r)
{
    /* never write what plan_calib_load refuses */
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        double x = *(const double *)((const char *)r + fields[i].off);
        if (!(x > 0) || !isfinite(x))
            return tp_err(TP_ERR_RANGE, "plan --calibrate: %s came out %g (timing noise?); %s not written, rerun",
                          fields[i].key, x, path);
    }
    json_t *j = json_pack("{s:s, s:i, s:s}", "format", "transpolmo-calibration-1", "threads", r->threads, "source",
                          r->source);
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        json_object_set_new(j, fields[i].key, json_real(*(const double *)((const char *)r + fields[i].off)));
    tp_status st = fs_mkdir_parent(path);
    if (st == TP_OK) st = fs_write_json(path, j);
    json_decref(j);
    return st;
}

tp_status plan_calib_load(const char *path, plan_rates *r, int *found)
{
    *found = 0;
    if (access(path, F_OK) != 0) return TP_OK;
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j) return tp_err(TP_ERR_FORMAT, "%s:%d: not JSON (%s); delete it or rerun `transpolmo plan --calibrate`", path,
                          e.line, e.text);
    tp_status st = TP_OK;
    if (strcmp(json_string_value(json_object_get(j, "format")) ? json_string_value(json_object_get(j, "format")) : "",
               "transpolmo-calibration-1"))
        st = tp_err(TP_ERR_FORMAT, "%s: not a calibration file (format is not transpolmo-calibration-1)", path);
    for (size_t i = 0; st == TP_OK && i < sizeof fields / sizeof *fields; i++) {
        json_t *v = json_object_get(j, fields[i].key);
        if (!v) continue;   /* an older file: the default stays */
        double x = json_number_value(v);
        if (!json_is_number(v) || !(x > 0) || !isfinite(x))
            st = tp_err(TP_ERR_FORMAT, "%s: %s must be a positive number", path, fields[i].key);
        else *(double *)((char *)r + fields[i].off) = x;
    }
    json_t *t = json_object_get(j, "threads");
    if (st == TP_OK && json_is_integer(t) && json_integer_value(t) > 0) r->threads = (int)json_integer_value(t);
    if (st == TP_OK) {
        const char *src = json_string_value(json_object_get(j, "source"));
        snprintf(r->source, sizeof r->source, "%s (%s)", path, src ? src : "calibration");
        r->calibrated = true;
        *found = 1;
    }
    json_decref(j);
    return st;
}
