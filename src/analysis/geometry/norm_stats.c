#include "analysis/geometry/norm_stats.h"

#include "analysis/geometry/knn.h"
#include "analysis/geometry/local_geometry.h"
#include "dist/mpi_check.h"
#include "dist/world.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double NORM_PCTS[NORM_NPCT] = {1, 5, 25, 50, 75, 95, 99};

norm_stats_options norm_stats_options_default(void)
{
    norm_stats_options o = {.massive_ratio = 100, .max_list = 16};
    return o;
}

void norm_stats_result_free(norm_stats_result *r)
{
    free(r->massive_dim);
    free(r->massive_max_abs);
    free(r->massive_mean);
    free(r->massive_ratio);
    memset(r, 0, sizeof *r);
}

static const double *SORT_KEY;
static int cmp_by_key_desc(const void *a, const void *b)
{
    int64_t i = *(const int64_t *)a, j = *(const int64_t *)b;
    double x = SORT_KEY[i], y = SORT_KEY[j];
    if (x != y) return x < y ? 1 : -1;
    return (i > j) - (i < j);
}

tp_status norm_stats_compute(const float *rows, int64_t n_local, int64_t d, MPI_Comm comm,
                             const norm_stats_options *opt, norm_stats_result *out)
{
    memset(out, 0, sizeof *out);
    tp_status st = TP_OK;
    if (!opt || !(opt->massive_ratio > 0) || opt->max_list < 0)
        st = tp_err(TP_ERR_RANGE, "norm stats: massive_ratio must be > 0 and max_list >= 0");
    else if (d <= 0 || n_local < 0) st = tp_err(TP_ERR_RANGE, "norm stats: %lld rows of %lld columns",
                                                (long long)n_local, (long long)d);
    TP_CHECK(dist_agree(comm, st, "norm stats"));
    int64_t row0 = 0, n = 0;
    TP_CHECK(knn_row_offset(n_local, comm, &row0, &n));
    if (n < 2) return tp_err(TP_ERR_RANGE, "norm stats: %lld rows in all; need at least 2", (long long)n);
    out->n = n, out->d = d;

    int size;
    MPI_CHECK(MPI_Comm_size(comm, &size));
    /* acc: [0,d) Σx, [d,2d) Σ|x|, [2d,3d) Σu, then Σ‖x‖, Σ‖x‖², nonzero rows */
    size_t na = (size_t)(3 * d + 3);
    double *acc = tp_calloc(na, sizeof *acc), *mx = tp_calloc((size_t)d, sizeof *mx);
    double *norms = tp_malloc((size_t)(n_local ? n_local : 1) * sizeof *norms);
    double *all = tp_malloc((size_t)n * sizeof *all);
    int *counts = tp_malloc((size_t)size * sizeof *counts), *displs = tp_malloc((size_t)size * sizeof *displs);
    int64_t *order = tp_malloc((size_t)d * sizeof *order);
    double *tmp = tp_malloc((size_t)d * sizeof *tmp);
    st = acc && mx && norms && all && counts && displs && order && tmp ? TP_OK : TP_ERR_NOMEM;
    if (st == TP_OK && n > INT32_MAX) st = tp_err(TP_ERR_RANGE, "norm stats: %lld rows exceed MPI's int counts", (long long)n);
    if ((st = dist_agree(comm, st, "norm stats")) != TP_OK) goto done;

    for (int64_t r = 0; r < n_local; r++) {
        const float *x = rows + (size_t)r * (size_t)d;
        double ss = 0;
        for (int64_t j = 0; j < d; j++) {
            double v = x[j], a = fabs(v);
            acc[j] += v, acc[d + j] += a, ss += v * v;
            if (a > mx[j]) mx[j] = a;
        }
        double nr = sqrt(ss);
        norms[r] = nr;
        acc[3 * d] += nr, acc[3 * d + 1] += ss;
        if (nr > 0) {
            for (int64_t j = 0; j < d; j++) acc[2 * d + j] += x[j] / nr;
            acc[3 * d + 2] += 1;
        }
    }
    if ((st = dist_allreduce_sum_f64(comm, acc, na)) != TP_OK) goto done;
    MPI_CHECK_GOTO(MPI_Allreduce(MPI_IN_PLACE, mx, (int)d, MPI_DOUBLE, MPI_MAX, comm), st, done);
    int mine = (int)n_local;
    MPI_CHECK_GOTO(MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, comm), st, done);
    for (int r = 0, o = 0; r < size; r++) displs[r] = o, o += counts[r];
    MPI_CHECK_GOTO(MPI_Allgatherv(norms, mine, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, comm), st, done);

    /* Norms. */
    double mean = acc[3 * d] / (double)n, var = 0;
    out->norm_min = INFINITY, out->norm_max = 0;
    for (int64_t i = 0; i < n; i++) {
        var += (all[i] - mean) * (all[i] - mean);
        if (all[i] < out->norm_min) out->norm_min = all[i];
        if (all[i] > out->norm_max) out->norm_max = all[i];
    }
    out->norm_mean = mean, out->norm_std = sqrt(var / (double)n);
    for (int p = 0; p < NORM_NPCT; p++) out->norm_pct[p] = local_percentile(all, n, NORM_PCTS[p]);

    /* Massive coordinates. */
    for (int64_t j = 0; j < d; j++) tmp[j] = acc[d + j] / (double)n;
    out->typical_abs = local_percentile(tmp, d, 50);
    double thr = opt->massive_ratio * out->typical_abs;
    for (int64_t j = 0; j < d; j++) order[j] = j;
    SORT_KEY = mx;
    qsort(order, (size_t)d, sizeof *order, cmp_by_key_desc);
    for (int64_t j = 0; j < d; j++) out->n_massive += mx[j] >= thr && mx[j] > 0;
    out->n_listed = out->n_massive < opt->max_list ? out->n_massive : opt->max_list;
    size_t nl = (size_t)(out->n_listed ? out->n_listed : 1);
    out->massive_dim = tp_malloc(nl * sizeof *out->massive_dim);
    out->massive_max_abs = tp_malloc(nl * sizeof(double));
    out->massive_mean = tp_malloc(nl * sizeof(double));
    out->massive_ratio = tp_malloc(nl * sizeof(double));
    if (!out->massive_dim || !out->massive_max_abs || !out->massive_mean || !out->massive_ratio) {
        st = TP_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < out->n_listed; i++) {
        int64_t j = order[i];
        out->massive_dim[i] = j;
        out->massive_max_abs[i] = mx[j];
        out->massive_mean[i] = acc[j] / (double)n;
        out->massive_ratio[i] = out->typical_abs > 0 ? mx[j] / out->typical_abs : INFINITY;
    }

    /* Anisotropy. */
    double nz = acc[3 * d + 2], s2 = 0, mu2 = 0;
    out->zero_rows = n - (int64_t)nz;
    for (int64_t j = 0; j < d; j++) s2 += acc[2 * d + j] * acc[2 * d + j];
    out->mean_cosine = nz >= 2 ? (s2 - nz) / (nz * (nz - 1)) : NAN;
    for (int64_t j = 0; j < d; j++) {
        double mj = acc[j] / (double)n;
        mu2 += mj * mj;
    }
    out->mean_share = acc[3 * d + 1] > 0 ? mu2 / (acc[3 * d + 1] / (double)n) : NAN;
    /* Centred: Σ of (x − μ)/‖x − μ‖ needs the mean first: a second local pass. */
    {
        double *mu = tmp, *sc = tp_calloc((size_t)d + 1, sizeof *sc);
        if (!sc) { st = TP_ERR_NOMEM; goto done; }
        for (int64_t j = 0; j < d; j++) mu[j] = acc[j] / (double)n;
        for (int64_t r = 0; r < n_local; r++) {
            const float *x = rows + (size_t)r * (size_t)d;
            double ss = 0;
            for (int64_t j = 0; j < d; j++) ss += (x[j] - mu[j]) * (x[j] - mu[j]);
            if (ss <= 0) continue;
            double inv = 1.0 / sqrt(ss);
            for (int64_t j = 0; j < d; j++) sc[j] += (x[j] - mu[j]) * inv;
            sc[d] += 1;
        }
        st = dist_allreduce_sum_f64(comm, sc, (size_t)d + 1);
        if (st == TP_OK) {
            double c2 = 0, nc = sc[d];
            for (int64_t j = 0; j < d; j++) c2 += sc[j] * sc[j];
            out->mean_cosine_centred = nc >= 2 ? (c2 - nc) / (nc * (nc - 1)) : NAN;
        }
        free(sc);
    }
done:
    free(acc), free(mx), free(norms), free(all), free(counts), free(displs), free(order), free(tmp);
    if (st != TP_OK) norm_stats_result_free(out);
    return st;
}
