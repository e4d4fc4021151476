/* bench_pca.c — the distributed PCA (src/analysis/geometry/pca.h) on N × d f32 rows
 * read from a .npy file (run by tools/bench/pca.sh, which times NumPy and scikit-learn
 * on the same file beside it; tools/bench/make_pca_rows.py writes the rows).
 *
 *   mpiexec -np P bench_pca --npy ROWS.npy [--rows N] [--k 100] [--gram f64|f32] [--nb 64] [--grid RxC]
 *           [--reps 1] [--no-cov] [--eig-cov COV.npy] [--eig-routines pdsyevd,pdsyevr]
 *           [--svd-rows S] [--out PREFIX] [--tag TEXT]
 *
 * Each rank reads its contiguous slice of the first N rows (rows [r·N/P, (r+1)·N/P))
 * with pread, untimed but reported (read_s). Then, each printed by rank 0 as one JSON
 * line per repetition (times are the slowest rank's, in seconds):
 *
 *   kind "cov"  the incremental cov method as a caller streams rows:
 *               accum_s   pca_accum_init + pca_accum_add over this rank's rows (local
 *                         dsyrk, or with --gram f32 ssyrk blocks summed in f64; no
 *                         communication);
 *               finish_s  pca_accum_finish after a barrier: the global mean, the merge
 *                         and MPI_Allreduce of the packed d(d+1)/2 sums of squares, the
 *                         BLACS grid, pdsyevd, the gather of k components, the summary;
 *               total_s   accum_s + waiting for the slowest rank + finish_s;
 *               reduce_s  dist_allreduce_sum_f64 of d(d+1)/2 + d doubles alone (the
 *                         reduction inside finish, timed apart since pca.c does not
 *                         expose its split);
 *               decomp_s  finish_s − reduce_s: the decomposition part of finish.
 *               With --out, rank 0 writes PREFIX.{eigenvalues,components,mean}.npy (f64)
 *               of the last repetition for the parity check.
 *   kind "eig"  (--eig-cov) the eigendecomposition alone, on a d × d f64 covariance
 *               every rank reads (pca_numpy.py writes NumPy's, so that both sides
 *               decompose the same matrix): the ScaLAPACK call only (eig_s; jobz V, all
 *               eigenvectors, as pca.c asks), on the grid and nb of the options, for
 *               each routine of --eig-routines (pdsyevd with pca.c's workspace rule,
 *               pdsyevr, pdsyev; and dsyevd: LAPACK's, on rank 0 alone, the reference
 *               for what a 1 × 1 grid could call instead); setup_s = scatter +
 *               workspace query + allocation.
 *               max_rel_top10 compares the top 10 eigenvalues with the first routine's.
 *   kind "svd"  (--svd-rows S) pca_fit_distributed with the svd method (pdgesvd) on the
 *               first S rows, and the cov method on the same rows (cov_same_rows_s);
 *               max_rel_top10 compares their top 10 eigenvalues.
 */
#define _POSIX_C_SOURCE 200809L
#include "analysis/geometry/pca.h"
#include "core/dtype.h"
#include "core/error.h"
#include "dist/blacs.h"
#include "dist/world.h"
#include "io/npy.h"

#define BENCH_NAME "bench_pca"
#include "bench_common.h"

#include <cblas.h>
#include <errno.h>
#include <lapacke.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void pdsyevr_(const char *jobz, const char *range, const char *uplo, const int *n, double *a,
              const int *ia, const int *ja, const int *desca, const double *vl, const double *vu,
              const int *il, const int *iu, int *m, int *nz, double *w, double *z, const int *iz,
              const int *jz, const int *descz, double *work, const int *lwork, int *iwork,
              const int *liwork, int *info, size_t jobz_len, size_t range_len, size_t uplo_len);
void pdsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *ia, const int *ja,
             const int *desca, double *w, double *z, const int *iz, const int *jz, const int *descz,
             double *work, const int *lwork, int *info, size_t jobz_len, size_t uplo_len);

static double max_all(double v)
{
    double m = v;
    MPI_Allreduce(&v, &m, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    return m;
}

/* ---- the row file: header, then each rank's slice by pread --------------------- */

typedef struct {
    int64_t n, d;
    long offset;   /* of the data */
} npy_info;

static void npy_header(const char *path, npy_info *info)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) DIE("%s: %s", path, strerror(errno));
    unsigned char pre[12];
    if (pread(fd, pre, sizeof pre, 0) != (ssize_t)sizeof pre || memcmp(pre, "\x93NUMPY", 6) != 0)
        DIE("%s: not a .npy file", path);
    size_t hlen, hstart;
    if (pre[6] == 1) hlen = pre[8] | (size_t)pre[9] << 8, hstart = 10;
    else hlen = pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24, hstart = 12;
    char *h = calloc(hlen + 1, 1);
    if (!h || pread(fd, h, hlen, (off_t)hstart) != (ssize_t)hlen) DIE("%s: truncated header", path);
    close(fd);
    if (!strstr(h, "'<f4'")) DIE("%s: dtype is not <f4 (header %s)", path, h);
    if (!strstr(h, "'fortran_order': False")) DIE("%s: not C order", path);
    const char *s = strstr(h, "'shape': (");
    long long n = 0, d = 0;
    if (!s || sscanf(s, "'shape': (%lld, %lld)", &n, &d) != 2 || n <= 0 || d <= 0)
        DIE("%s: shape is not (N, d)", path);
    info->n = n, info->d = d, info->offset = (long)(hstart + hlen);
    free(h);
}

/* Rows [r0, r1) of the file into a new buffer. */
static float *read_rows(const char *path, const npy_info *info, int64_t r0, int64_t r1)
{
    size_t bytes = (size_t)(r1 - r0) * (size_t)info->d * sizeof(float);
    float *buf = malloc(bytes ? bytes : 1);
    if (!buf) DIE("out of memory for %zu bytes of rows", bytes);
    int fd = open(path, O_RDONLY);
    if (fd < 0) DIE("%s: %s", path, strerror(errno));
    off_t off = info->offset + (off_t)r0 * info->d * (off_t)sizeof(float);
    size_t done = 0;
    while (done < bytes) {
        ssize_t got = pread(fd, (char *)buf + done, bytes - done, off + (off_t)done);
        if (got <= 0) DIE("%s: read failed at byte %lld: %s", path, (long long)(off + done), strerror(errno));
        done += (size_t)got;
    }
    close(fd);
    return buf;
}

static void write_f64(const char *prefix, const char *what, int ndim, int64_t a, int64_t b, const double *v)
{
    char path[4096];
    snprintf(path, sizeof path, "%s.%s.npy", prefix, what);
    int64_t shape[2] = {a, b};
    CHECK(npy_write(path, TP_DTYPE_F64, ndim, shape, v));
}

/* ---- eigendecomposition alone -------------------------------------------------- */

/* One call of `routine` on the replicated d × d matrix cov; returns the call's time
 * (slowest rank) and the eigenvalues (ascending, as ScaLAPACK gives them) in w. */
static double eig_once(const blacs_grid *g, const char *routine, const double *cov, int d, double *w,
                       double *setup_s)
{
    double t0 = now_s();
    if (strcmp(routine, "dsyevd") == 0) {   /* LAPACK on rank 0; the others wait */
        double *a = malloc((size_t)d * (size_t)d * sizeof(double));
        if (!a) DIE("out of memory");
        memcpy(a, cov, (size_t)d * (size_t)d * sizeof(double));
        *setup_s = max_all(now_s() - t0);
        MPI_Barrier(MPI_COMM_WORLD);
        double t1 = now_s();
        int info = g_rank == 0 ? LAPACKE_dsyevd(LAPACK_COL_MAJOR, 'V', 'U', d, a, d, w) : 0;
        double t = max_all(now_s() - t1);
        if (info != 0) DIE("dsyevd: info %d", info);
        MPI_Bcast(w, d, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        free(a);
        return t;
    }
    blacs_matrix A, Z;
    CHECK(blacs_matrix_init(g, d, d, &A));
    CHECK(blacs_matrix_init(g, d, d, &Z));
    double *a = malloc(blacs_matrix_local_size(&A) * sizeof(double));
    double *z = malloc(blacs_matrix_local_size(&Z) * sizeof(double));
    if (!a || !z) DIE("out of memory");
    double *work = NULL;
    int *iwork = NULL;
    int info = 0, one = 1, query = -1, lwork = 0, liwork = 0, m = 0, nz = 0;
    double vl = 0, vu = 0;
    if (g->in_grid) {
        blacs_scatter_replicated(g, &A, cov, a);
        double wq = 0;
        int iq = 0;
        if (strcmp(routine, "pdsyevd") == 0) {
            pdsyevd_("V", "U", &d, a, &one, &one, A.desc, w, z, &one, &one, Z.desc, &wq, &query, &iq, &query,
                     &info, 1, 1);
            /* pca.c's rule: the query leaves out what the final PDORMTR needs. */
            double nbd = g->nb, np = Z.mloc, nq = Z.nloc;
            double ormtr = 2.0 * d + fmax(nbd * (nbd - 1) / 2, (np + nq) * nbd) + nbd * nbd;
            wq = fmax(wq, ormtr);
        } else if (strcmp(routine, "pdsyevr") == 0) {
            pdsyevr_("V", "A", "U", &d, a, &one, &one, A.desc, &vl, &vu, &one, &d, &m, &nz, w, z, &one, &one,
                     Z.desc, &wq, &query, &iq, &query, &info, 1, 1, 1);
        } else if (strcmp(routine, "pdsyev") == 0) {
            pdsyev_("V", "U", &d, a, &one, &one, A.desc, w, z, &one, &one, Z.desc, &wq, &query, &info, 1, 1);
        } else {
            DIE("unknown routine %s (pdsyevd, pdsyevr, pdsyev, dsyevd)", routine);
        }
        if (info != 0) DIE("%s workspace query: info %d", routine, info);
        double lw = wq * 1.01 + 1024;
        if (lw > INT_MAX) DIE("%s: workspace of %.0f doubles", routine, lw);
        lwork = (int)lw;
        liwork = iq + 64;
        work = malloc((size_t)lwork * sizeof(double));
        iwork = malloc((size_t)liwork * sizeof(int));
        if (!work || !iwork) DIE("out of memory for the %s workspace", routine);
    }
    *setup_s = max_all(now_s() - t0);
    MPI_Barrier(MPI_COMM_WORLD);
    double t1 = now_s();
    if (g->in_grid) {
        if (strcmp(routine, "pdsyevd") == 0)
            pdsyevd_("V", "U", &d, a, &one, &one, A.desc, w, z, &one, &one, Z.desc, work, &lwork, iwork, &liwork,
                     &info, 1, 1);
        else if (strcmp(routine, "pdsyevr") == 0)
            pdsyevr_("V", "A", "U", &d, a, &one, &one, A.desc, &vl, &vu, &one, &d, &m, &nz, w, z, &one, &one,
                     Z.desc, work, &lwork, iwork, &liwork, &info, 1, 1, 1);
        else
            pdsyev_("V", "U", &d, a, &one, &one, A.desc, w, z, &one, &one, Z.desc, work, &lwork, &info, 1, 1);
    }
    double t = max_all(now_s() - t1);
    if (info != 0) DIE("%s: info %d", routine, info);
    if (g->in_grid && strcmp(routine, "pdsyevr") == 0 && (m != d || nz != d))
        DIE("pdsyevr found %d eigenvalues, %d vectors of %d", m, nz, d);
    MPI_Bcast(w, d, MPI_DOUBLE, g->rank_of[0], MPI_COMM_WORLD);
    free(a), free(z), free(work), free(iwork);
    return t;
}

/* max over i < 10 of |a_i − b_i| / |b_i|, both descending. */
static double rel_top10(const double *a, const double *b, int64_t d)
{
    double m = 0;
    for (int64_t i = 0; i < 10 && i < d; i++) m = fmax(m, fabs(a[i] - b[i]) / fabs(b[i]));
    return m;
}

int main(int argc, char **argv)
{
    CHECK(dist_init(&argc, &argv));
    g_rank = dist_rank();
    const int size = dist_size();
    const char *npy = NULL, *eig_cov = NULL, *prefix = NULL, *tag = "";
    char routines[256] = "pdsyevd";
    int64_t n_use = 0, k = 100, svd_rows = 0;
    int nb = BLACS_DEFAULT_NB, reps = 1, nprow = 0, npcol = 0, do_cov = 1;
    pca_gram gram = PCA_GRAM_F64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-cov")) { do_cov = 0; continue; }
        if (!v) DIE("%s needs a value (see the comment at the top of bench_pca.c)", a);
        i++;
        if (!strcmp(a, "--npy")) npy = v;
        else if (!strcmp(a, "--rows")) n_use = atoll(v);
        else if (!strcmp(a, "--k")) k = atoll(v);
        else if (!strcmp(a, "--gram")) CHECK(pca_gram_parse(v, &gram));
        else if (!strcmp(a, "--nb")) nb = atoi(v);
        else if (!strcmp(a, "--grid")) { if (sscanf(v, "%dx%d", &nprow, &npcol) != 2) DIE("--grid RxC"); }
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--eig-cov")) eig_cov = v;
        else if (!strcmp(a, "--eig-routines")) snprintf(routines, sizeof routines, "%s", v);
        else if (!strcmp(a, "--svd-rows")) svd_rows = atoll(v);
        else if (!strcmp(a, "--out")) prefix = v;
        else if (!strcmp(a, "--tag")) tag = v;
        else DIE("unknown option %s", a);
    }
    if (!npy) DIE("--npy ROWS.npy is required");
    npy_info info;
    npy_header(npy, &info);
    const int64_t N = n_use > 0 && n_use < info.n ? n_use : info.n, d = info.d;
    if (svd_rows > info.n) svd_rows = info.n;

    blacs_grid grid = {.ctxt = -1, .sys_handle = -1};
    if (nprow > 0) CHECK(blacs_grid_init_shape(MPI_COMM_WORLD, nprow, npcol, nb, &grid));
    else CHECK(blacs_grid_init(MPI_COMM_WORLD, nb, &grid));
    pca_options opt = pca_options_default();
    opt.k = k;
    opt.gram = gram;
    opt.nb = nb;
    opt.grid = &grid;
    char common[512];
    snprintf(common, sizeof common,
             "\"bench\":\"pca\",\"tag\":\"%s\",\"d\":%lld,\"ranks\":%d,\"grid\":\"%dx%d\",\"nb\":%d,"
             "\"blas_threads\":%d,\"k\":%lld,\"gram\":\"%s\"",
             tag, (long long)d, size, grid.nprow, grid.npcol, grid.nb, openblas_get_num_threads(), (long long)k,
             pca_gram_name(gram));

    if (do_cov) {
        int64_t r0 = (int64_t)g_rank * N / size, r1 = (int64_t)(g_rank + 1) * N / size;
        double t = now_s();
        float *rows = read_rows(npy, &info, r0, r1);
        double read_s = max_all(now_s() - t);
        /* The reduction alone, at the size finish reduces. */
        size_t nred = (size_t)d * (size_t)(d + 1) / 2 + (size_t)d;
        double *red = calloc(nred, sizeof(double));
        if (!red) DIE("out of memory");
        for (int rep = 0; rep < reps; rep++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now_s();
            pca_accum *acc = NULL;
            CHECK(pca_accum_init(d, gram, &acc));
            CHECK(pca_accum_add(acc, rows, r1 - r0));
            double t1 = now_s();
            MPI_Barrier(MPI_COMM_WORLD);
            double t2 = now_s();
            pca_result res;
            CHECK(pca_accum_finish(acc, MPI_COMM_WORLD, &opt, &res));
            double t3 = now_s();
            pca_accum_free(acc);
            double accum_s = max_all(t1 - t0), finish_s = max_all(t3 - t2), total_s = max_all(t3 - t0);
            MPI_Barrier(MPI_COMM_WORLD);
            double t4 = now_s();
            CHECK(dist_allreduce_sum_f64(MPI_COMM_WORLD, red, nred));
            double reduce_s = max_all(now_s() - t4);
            if (g_rank == 0) {
                printf("{%s,\"kind\":\"cov\",\"method\":\"cov\",\"n\":%lld,\"rep\":%d,\"read_s\":%.4f,"
                       "\"accum_s\":%.4f,\"finish_s\":%.4f,\"total_s\":%.4f,\"reduce_s\":%.4f,\"decomp_s\":%.4f,"
                       "\"accum_gflops\":%.2f,\"lambda1\":%.10g,\"lambda10\":%.10g,\"total_variance\":%.10g,"
                       "\"intrinsic_dim_90\":%lld,\"participation_ratio\":%.6g,\"effective_rank\":%.6g}\n",
                       common, (long long)N, rep, read_s, accum_s, finish_s, total_s, reduce_s, finish_s - reduce_s,
                       (double)N * (double)d * (double)(d + 1) / accum_s * 1e-9, res.eigenvalues[0],
                       res.eigenvalues[d > 9 ? 9 : d - 1], res.total_variance, (long long)res.intrinsic_dim_90,
                       res.participation_ratio, res.effective_rank);
                fflush(stdout);
                if (prefix && rep == reps - 1) {
                    write_f64(prefix, "eigenvalues", 1, d, 0, res.eigenvalues);
                    write_f64(prefix, "components", 2, k, d, res.components);
                    write_f64(prefix, "mean", 1, d, 0, res.mean);
                }
            }
            pca_result_free(&res);
        }
        free(red);
        free(rows);
    }

    if (eig_cov) {
        npy_array c;
        CHECK(npy_read(eig_cov, &c));
        if (c.dtype != TP_DTYPE_F64 || c.ndim != 2 || c.shape[0] != d || c.shape[1] != d)
            DIE("%s: want a %lld x %lld f64 matrix", eig_cov, (long long)d, (long long)d);
        const double *cov = c.data;   /* symmetric: row- or column-major alike */
        double *w = malloc((size_t)d * sizeof(double)), *ref = malloc((size_t)d * sizeof(double));
        double *desc = malloc((size_t)d * sizeof(double));
        if (!w || !ref || !desc) DIE("out of memory");
        int first = 1;
        for (char *save = NULL, *r = strtok_r(routines, ",", &save); r; r = strtok_r(NULL, ",", &save)) {
            for (int rep = 0; rep < reps; rep++) {
                double setup_s = 0, eig_s = eig_once(&grid, r, cov, (int)d, w, &setup_s);
                for (int64_t i = 0; i < d; i++) desc[i] = w[d - 1 - i];
                if (first) memcpy(ref, desc, (size_t)d * sizeof(double)), first = 0;
                if (g_rank == 0) {
                    printf("{%s,\"kind\":\"eig\",\"routine\":\"%s\",\"rep\":%d,\"eig_s\":%.4f,\"setup_s\":%.4f,"
                           "\"lambda1\":%.10g,\"max_rel_top10\":%.3g}\n",
                           common, r, rep, eig_s, setup_s, desc[0], rel_top10(desc, ref, d));
                    fflush(stdout);
                }
            }
        }
        free(w), free(ref), free(desc);
        npy_free(&c);
    }

    if (svd_rows > 0) {
        int64_t r0 = (int64_t)g_rank * svd_rows / size, r1 = (int64_t)(g_rank + 1) * svd_rows / size;
        float *rows = read_rows(npy, &info, r0, r1);
        int64_t ks = k < svd_rows ? k : svd_rows;
        pca_options o = opt;
        o.k = ks;
        for (int rep = 0; rep < reps; rep++) {
            pca_result rs, rc;
            o.method = PCA_METHOD_SVD;
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now_s();
            CHECK(pca_fit_distributed(rows, r1 - r0, d, MPI_COMM_WORLD, &o, &rs));
            double svd_s = max_all(now_s() - t0);
            o.method = PCA_METHOD_COV;
            MPI_Barrier(MPI_COMM_WORLD);
            t0 = now_s();
            CHECK(pca_fit_distributed(rows, r1 - r0, d, MPI_COMM_WORLD, &o, &rc));
            double cov_s = max_all(now_s() - t0);
            if (g_rank == 0) {
                printf("{%s,\"kind\":\"svd\",\"method\":\"svd\",\"n\":%lld,\"rep\":%d,\"svd_s\":%.4f,"
                       "\"cov_same_rows_s\":%.4f,\"lambda1\":%.10g,\"max_rel_top10\":%.3g}\n",
                       common, (long long)svd_rows, rep, svd_s, cov_s, rs.eigenvalues[0],
                       rel_top10(rs.eigenvalues, rc.eigenvalues, d));
                fflush(stdout);
            }
            pca_result_free(&rs);
            pca_result_free(&rc);
        }
        free(rows);
    }

    blacs_grid_free(&grid);
    dist_finalize();
    return 0;
}
